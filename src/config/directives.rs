//! The table of every directive ferrolb knows: where it may appear, how many
//! arguments it takes, and whether ferrolb acts on it, accepts and ignores it (with the
//! reason, for the README), or rejects it as not supported. Anything not in the table is
//! an unknown directive, as in nginx.

/// Bit for the main (top) level.
pub const MAIN: u8 = 1;
/// Bit for `events { }`.
pub const EVENTS: u8 = 1 << 1;
/// Bit for `http { }`.
pub const HTTP: u8 = 1 << 2;
/// Bit for `server { }` inside http.
pub const SERVER: u8 = 1 << 3;
/// Bit for `location { }`.
pub const LOCATION: u8 = 1 << 4;
/// Bit for `upstream { }`.
pub const UPSTREAM: u8 = 1 << 5;
/// Bit for an `if { }` block in a server (nginx's `NGX_HTTP_SIF_CONF`).
pub const SERVER_IF: u8 = 1 << 6;
/// Bit for an `if { }` block in a location (nginx's `NGX_HTTP_LIF_CONF`), an implicit
/// location of its own.
pub const LOCATION_IF: u8 = 1 << 7;
/// Where the rewrite module's directives may be: server, location and their `if`s.
pub const REWRITE: u8 = SERVER | LOCATION | SERVER_IF | LOCATION_IF;
/// http, server and location: where most proxy settings live.
pub const HSL: u8 = HTTP | SERVER | LOCATION;
/// Any context.
pub const ANY: u8 = 0xff;

/// What ferrolb does with a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Implemented.
    Handled,
    /// Accepted so that real nginx.conf files load; a warning gives the reason.
    Ignored(&'static str),
    /// Recognised but refused; the error gives the reason.
    Unsupported(&'static str),
    /// Obsolete in nginx, which warns and ignores it: `Some(directive)` names the one
    /// that took over (nginx's exact warning is given).
    Obsolete(Option<&'static str>),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The name; a trailing `*` matches any suffix (`gzip*`), a leading `*` any prefix
    /// (`*_temp_path`).
    pub name: &'static str,
    /// Bit set of allowed contexts.
    pub contexts: u8,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments; `usize::MAX` for any number.
    pub max_args: usize,
    /// True for `name … { }` directives.
    pub block: bool,
    /// What ferrolb does with it.
    pub kind: Kind,
}

const MANY: usize = usize::MAX;

const fn handled(name: &'static str, contexts: u8, min_args: usize, max_args: usize) -> Spec {
    Spec {
        name,
        contexts,
        min_args,
        max_args,
        block: false,
        kind: Kind::Handled,
    }
}

const fn block(name: &'static str, contexts: u8, min_args: usize, max_args: usize) -> Spec {
    Spec {
        name,
        contexts,
        min_args,
        max_args,
        block: true,
        kind: Kind::Handled,
    }
}

const fn ignored(name: &'static str, contexts: u8, why: &'static str) -> Spec {
    Spec {
        name,
        contexts,
        min_args: 0,
        max_args: MANY,
        block: false,
        kind: Kind::Ignored(why),
    }
}

const fn obsolete(name: &'static str, contexts: u8, instead: Option<&'static str>) -> Spec {
    Spec {
        name,
        contexts,
        min_args: 1,
        max_args: 1,
        block: false,
        kind: Kind::Obsolete(instead),
    }
}

const fn unsupported(name: &'static str, why: &'static str) -> Spec {
    Spec {
        name,
        contexts: ANY,
        min_args: 0,
        max_args: MANY,
        block: false,
        kind: Kind::Unsupported(why),
    }
}

const BUFFERING: &str = "ferrolb streams bodies and sizes its buffers itself";

/// Every directive ferrolb knows, in README order.
pub static DIRECTIVES: &[Spec] = &[
    // main
    handled("worker_processes", MAIN, 1, 1),
    block("events", MAIN, 0, 0),
    handled("worker_connections", EVENTS, 1, 1),
    ignored("use", EVENTS, "ferrolb picks the event mechanism itself"),
    ignored("multi_accept", EVENTS, "ferrolb accepts in its own way"),
    ignored(
        "accept_mutex",
        EVENTS,
        "ferrolb workers share listeners without a mutex",
    ),
    ignored(
        "accept_mutex_delay",
        EVENTS,
        "ferrolb workers share listeners without a mutex",
    ),
    handled("error_log", MAIN | HSL, 1, 2),
    handled("pid", MAIN, 1, 1),
    handled("daemon", MAIN, 1, 1),
    ignored(
        "master_process",
        MAIN,
        "ferrolb always runs one process with worker threads",
    ),
    ignored("user", MAIN, "ferrolb runs as the user that starts it"),
    ignored(
        "worker_rlimit_nofile",
        MAIN,
        "raise the limit with ulimit before starting ferrolb",
    ),
    ignored("load_module", MAIN, "ferrolb has no dynamic modules"),
    ignored("env", MAIN, "ferrolb does not clear the environment"),
    ignored(
        "pcre_jit",
        MAIN,
        "ferrolb's regex engine needs no JIT switch",
    ),
    ignored(
        "worker_cpu_affinity",
        MAIN,
        "worker threads are not pinned to CPUs",
    ),
    ignored(
        "worker_priority",
        MAIN,
        "worker threads keep the process priority",
    ),
    handled("worker_shutdown_timeout", MAIN, 1, 1),
    block("http", MAIN, 0, 0),
    handled("include", ANY, 1, 1),
    // http, server, location
    handled("proxy_pass", LOCATION | LOCATION_IF, 1, 1),
    handled("uwsgi_pass", LOCATION | LOCATION_IF, 1, 1),
    handled("uwsgi_param", HSL, 2, 3),
    handled("uwsgi_modifier1", HSL, 1, 1),
    handled("uwsgi_modifier2", HSL, 1, 1),
    handled("uwsgi_pass_request_headers", HSL, 1, 1),
    handled("uwsgi_pass_request_body", HSL, 1, 1),
    handled("uwsgi_connect_timeout", HSL, 1, 1),
    handled("uwsgi_read_timeout", HSL, 1, 1),
    handled("uwsgi_send_timeout", HSL, 1, 1),
    handled("uwsgi_next_upstream", HSL, 1, MANY),
    handled("uwsgi_next_upstream_tries", HSL, 1, 1),
    handled("uwsgi_next_upstream_timeout", HSL, 1, 1),
    handled("uwsgi_hide_header", HSL, 1, 1),
    handled("uwsgi_pass_header", HSL, 1, 1),
    handled("uwsgi_intercept_errors", HSL, 1, 1),
    handled("uwsgi_ignore_client_abort", HSL, 1, 1),
    handled("uwsgi_request_buffering", HSL, 1, 1),
    handled("uwsgi_buffer_size", HSL, 1, 1),
    ignored("uwsgi_buffering", HSL, BUFFERING),
    ignored("uwsgi_buffers", HSL, BUFFERING),
    ignored("uwsgi_busy_buffers_size", HSL, BUFFERING),
    ignored("uwsgi_max_temp_file_size", HSL, "ferrolb never buffers to disk"),
    ignored("uwsgi_temp_file_write_size", HSL, "ferrolb never buffers to disk"),
    unsupported("uwsgi_cache*", "ferrolb does not cache"),
    handled("uwsgi_ssl_verify", HSL, 1, 1),
    handled("uwsgi_ssl_verify_depth", HSL, 1, 1),
    handled("uwsgi_ssl_trusted_certificate", HSL, 1, 1),
    handled("uwsgi_ssl_server_name", HSL, 1, 1),
    handled("uwsgi_ssl_name", HSL, 1, 1),
    handled("uwsgi_ssl_certificate", HSL, 1, 1),
    handled("uwsgi_ssl_certificate_key", HSL, 1, 1),
    handled("uwsgi_ssl_ciphers", HSL, 1, 1),
    handled("uwsgi_ssl_session_reuse", HSL, 1, 1),
    handled("uwsgi_ssl_crl", HSL, 1, 1),
    handled("uwsgi_ssl_password_file", HSL, 1, 1),
    handled("uwsgi_ssl_protocols", HSL, 1, MANY),
    unsupported("uwsgi_ssl_conf_command", "ferrolb's TLS is rustls, not OpenSSL"),
    handled("proxy_set_header", HSL, 2, 2),
    handled("proxy_http_version", HSL, 1, 1),
    handled("proxy_connect_timeout", HSL, 1, 1),
    handled("proxy_read_timeout", HSL, 1, 1),
    handled("proxy_send_timeout", HSL, 1, 1),
    handled("proxy_next_upstream", HSL, 1, MANY),
    handled("proxy_next_upstream_tries", HSL, 1, 1),
    handled("proxy_next_upstream_timeout", HSL, 1, 1),
    handled("client_max_body_size", HSL, 1, 1),
    handled("client_header_timeout", HTTP | SERVER, 1, 1),
    handled("client_body_timeout", HSL, 1, 1),
    handled("keepalive_timeout", HSL, 1, 2),
    handled("keepalive_requests", HSL, 1, 1),
    // the rewrite module, and map
    handled("return", REWRITE, 1, 2),
    handled("rewrite", REWRITE, 2, 3),
    handled("set", REWRITE, 2, 2),
    handled("break", REWRITE, 0, 0),
    block("if", SERVER | LOCATION, 1, MANY),
    handled("rewrite_log", HSL | SERVER_IF | LOCATION_IF, 1, 1),
    handled(
        "uninitialized_variable_warn",
        HSL | SERVER_IF | LOCATION_IF,
        1,
        1,
    ),
    block("map", HTTP, 2, 2),
    block("geo", HTTP, 1, 2),
    block("split_clients", HTTP, 2, 2),
    handled("add_header", HSL | LOCATION_IF, 2, 3),
    handled("add_trailer", HSL | LOCATION_IF, 2, 3),
    handled("access_log", HSL, 1, MANY),
    handled("log_format", HTTP, 2, MANY),
    block("server", HTTP, 0, 0),
    handled("server_name", SERVER, 1, MANY),
    handled("listen", SERVER, 1, MANY),
    block("location", SERVER | LOCATION, 1, 2),
    block("upstream", HTTP, 1, 1),
    block("match", HTTP, 1, 1),
    handled("health_check", LOCATION, 0, MANY),
    // client identity and admission
    handled("set_real_ip_from", HSL, 1, 1),
    handled("real_ip_header", HSL, 1, 1),
    handled("real_ip_recursive", HSL, 1, 1),
    handled("allow", HSL, 1, 1),
    handled("deny", HSL, 1, 1),
    handled("auth_basic", HSL, 1, 1),
    handled("auth_basic_user_file", HSL, 1, 1),
    handled("satisfy", HSL, 1, 1),
    block("limit_except", LOCATION, 1, MANY),
    handled("limit_req_zone", HTTP, 3, 4),
    handled("limit_req", HSL, 1, 3),
    handled("limit_req_status", HSL, 1, 1),
    handled("limit_req_log_level", HSL, 1, 1),
    handled("limit_req_dry_run", HSL, 1, 1),
    handled("limit_conn_zone", HTTP, 2, 2),
    handled("limit_conn", HSL, 2, 2),
    handled("limit_conn_status", HSL, 1, 1),
    handled("limit_conn_log_level", HSL, 1, 1),
    handled("limit_conn_dry_run", HSL, 1, 1),
    handled("limit_rate", HSL, 1, 1),
    handled("limit_rate_after", HSL, 1, 1),
    handled("ferrolb_admin", HTTP, 1, 2),
    // upstream
    handled("server", UPSTREAM, 1, MANY),
    handled("keepalive", UPSTREAM, 1, 1),
    handled("keepalive_timeout", UPSTREAM, 1, 1),
    handled("keepalive_requests", UPSTREAM, 1, 1),
    handled("keepalive_time", UPSTREAM, 1, 1),
    // Peer state (failures, connections, round robin weights) is shared by every
    // worker thread, which is what the zone gives nginx's worker processes.
    handled("zone", UPSTREAM, 1, 2),
    handled("least_conn", UPSTREAM, 0, 0),
    handled("ip_hash", UPSTREAM, 0, 0),
    handled("hash", UPSTREAM, 1, 2),
    handled("random", UPSTREAM, 0, 2),
    handled("least_time", UPSTREAM, 1, 3),
    handled("sticky", UPSTREAM, 1, MANY),
    // accepted and ignored
    ignored(
        "sendfile",
        HSL,
        "ferrolb streams files in 64 KiB reads whatever it says",
    ),
    ignored("tcp_nopush", HSL, "only matters with sendfile"),
    ignored(
        "output_buffers",
        HSL,
        "ferrolb reads files in 64 KiB pieces whatever it says; the bytes sent are the same",
    ),
    ignored("tcp_nodelay", HSL, "ferrolb always sets TCP_NODELAY"),
    block("types", HSL, 0, 0),
    handled("default_type", HSL, 1, 1),
    handled("gzip_static", HSL, 1, 1),
    handled("gzip_vary", HSL, 1, 1),
    handled("gzip_http_version", HSL, 1, 1),
    handled("gzip_proxied", HSL, 1, MANY),
    handled("gzip_disable", HSL, 1, MANY),
    handled("gzip", HSL, 1, 1),
    handled("gzip_types", HSL, 1, MANY),
    handled("gzip_min_length", HSL, 1, 1),
    handled("gzip_comp_level", HSL, 1, 1),
    handled("gzip_buffers", HSL, 2, 2),
    ignored(
        "gzip_window",
        HSL,
        "zlib's window size changes the compressed bytes, not what they decompress to",
    ),
    ignored(
        "gzip_hash",
        HSL,
        "zlib's memory level changes the compressed bytes, not what they decompress to",
    ),
    ignored(
        "gzip_no_buffer",
        HSL,
        "ferrolb compresses each piece it reads as it comes",
    ),
    ignored(
        "postpone_gzipping",
        HSL,
        "ferrolb compresses each piece it reads as it comes",
    ),
    ignored(
        "server_tokens",
        HSL,
        "ferrolb's Server header is \"ferrolb\", without a version, either way",
    ),
    handled("charset", HSL | LOCATION_IF, 1, 1),
    handled("source_charset", HSL | LOCATION_IF, 1, 1),
    handled("override_charset", HSL | LOCATION_IF, 1, 1),
    handled("charset_types", HSL, 1, MANY),
    block("charset_map", HTTP, 2, 2),
    handled("root", HSL, 1, 1),
    handled("index", HSL, 1, MANY),
    handled("etag", HSL, 1, 1),
    handled("if_modified_since", HSL, 1, 1),
    handled("log_not_found", HSL, 1, 1),
    ignored(
        "log_subrequest",
        HSL,
        "ferrolb makes no subrequests, so there are none to log",
    ),
    handled("open_log_file_cache", HSL, 1, 4),
    handled("error_page", HSL, 2, MANY),
    handled("recursive_error_pages", HSL, 1, 1),
    handled("proxy_intercept_errors", HSL, 1, 1),
    handled("proxy_ignore_client_abort", HSL, 1, 1),
    handled("internal", LOCATION, 0, 0),
    handled("autoindex", HSL, 1, 1),
    handled("autoindex_format", HSL, 1, 1),
    handled("autoindex_exact_size", HSL, 1, 1),
    handled("autoindex_localtime", HSL, 1, 1),
    handled("expires", HSL, 1, 2),
    handled("disable_symlinks", HSL, 1, 2),
    handled("max_ranges", HSL, 1, 1),
    handled("try_files", SERVER | LOCATION, 2, MANY),
    handled("underscores_in_headers", HTTP | SERVER, 1, 1),
    handled("ignore_invalid_headers", HTTP | SERVER, 1, 1),
    handled("alias", LOCATION, 1, 1),
    // ACME (config/validate/acme.rs): the acme_issuer block's own directives are
    // checked there, as nginx's module checks them.
    block("acme_issuer", HTTP, 1, 1),
    handled("acme_shared_zone", HTTP, 1, 1),
    handled("acme_certificate", SERVER, 1, MANY),
    ignored(
        "ssl_certificate_cache",
        HSL,
        "certificates are read once per load (and $acme_certificate is held in memory), never per handshake",
    ),
    // TLS (config/validate/tls.rs)
    handled("ssl_certificate", HTTP | SERVER, 1, 1),
    handled("ssl_certificate_key", HTTP | SERVER, 1, 1),
    handled("ssl_protocols", HTTP | SERVER, 1, MANY),
    handled("ssl_ciphers", HTTP | SERVER, 1, 1),
    handled("ssl_prefer_server_ciphers", HTTP | SERVER, 1, 1),
    handled("ssl_ecdh_curve", HTTP | SERVER, 1, 1),
    handled("ssl_dhparam", HTTP | SERVER, 1, 1),
    handled("ssl_session_cache", HTTP | SERVER, 1, 2),
    handled("ssl_session_timeout", HTTP | SERVER, 1, 1),
    handled("ssl_session_tickets", HTTP | SERVER, 1, 1),
    handled("ssl_session_ticket_key", HTTP | SERVER, 1, 1),
    handled("ssl_verify_client", HTTP | SERVER, 1, 1),
    handled("ssl_verify_depth", HTTP | SERVER, 1, 1),
    handled("ssl_client_certificate", HTTP | SERVER, 1, 1),
    handled("ssl_trusted_certificate", HTTP | SERVER, 1, 1),
    handled("ssl_crl", HTTP | SERVER, 1, 1),
    handled("ssl_password_file", HTTP | SERVER, 1, 1),
    handled("ssl_stapling", HTTP | SERVER, 1, 1),
    handled("ssl_stapling_file", HTTP | SERVER, 1, 1),
    handled("ssl_stapling_verify", HTTP | SERVER, 1, 1),
    handled("ssl_stapling_responder", HTTP | SERVER, 1, 1),
    handled("ssl_reject_handshake", HTTP | SERVER, 1, 1),
    handled("ssl_early_data", HTTP | SERVER, 1, 1),
    ignored(
        "ssl_buffer_size",
        HTTP | SERVER,
        "rustls sizes its TLS records itself (up to 16 KiB)",
    ),
    handled("http2", HTTP | SERVER, 1, 1),
    handled("http2_max_concurrent_streams", HTTP | SERVER, 1, 1),
    handled("http2_body_preread_size", HTTP | SERVER, 1, 1),
    handled("http2_chunk_size", HSL, 1, 1),
    ignored(
        "http2_recv_buffer_size",
        MAIN | HTTP,
        "ferrolb's HTTP/2 codec reads into buffers of its own size",
    ),
    ignored(
        "http2_pool_size",
        HTTP | SERVER,
        "ferrolb has no memory pools; a connection's memory is bounded by its streams' windows",
    ),
    ignored(
        "http2_streams_index_size",
        HTTP | SERVER,
        "ferrolb's HTTP/2 codec sizes its stream table itself",
    ),
    obsolete(
        "http2_recv_timeout",
        HTTP | SERVER,
        Some("client_header_timeout"),
    ),
    obsolete(
        "http2_idle_timeout",
        HTTP | SERVER,
        Some("keepalive_timeout"),
    ),
    obsolete(
        "http2_max_requests",
        HTTP | SERVER,
        Some("keepalive_requests"),
    ),
    obsolete(
        "http2_max_field_size",
        HTTP | SERVER,
        Some("large_client_header_buffers"),
    ),
    obsolete(
        "http2_max_header_size",
        HTTP | SERVER,
        Some("large_client_header_buffers"),
    ),
    obsolete("http2_max_concurrent_pushes", HTTP | SERVER, None),
    obsolete("http2_push", HSL, None),
    obsolete("http2_push_preload", HSL, None),
    handled("proxy_ssl_verify", HSL, 1, 1),
    handled("proxy_ssl_verify_depth", HSL, 1, 1),
    handled("proxy_ssl_trusted_certificate", HSL, 1, 1),
    handled("proxy_ssl_server_name", HSL, 1, 1),
    handled("proxy_ssl_name", HSL, 1, 1),
    handled("proxy_ssl_certificate", HSL, 1, 1),
    handled("proxy_ssl_certificate_key", HSL, 1, 1),
    handled("proxy_ssl_protocols", HSL, 1, MANY),
    handled("proxy_ssl_ciphers", HSL, 1, 1),
    handled("proxy_ssl_session_reuse", HSL, 1, 1),
    handled("proxy_ssl_crl", HSL, 1, 1),
    handled("proxy_ssl_password_file", HSL, 1, 1),
    handled("client_body_buffer_size", HSL, 1, 1),
    handled("client_body_in_file_only", HSL, 1, 1),
    handled("client_body_in_single_buffer", HSL, 1, 1),
    ignored("client_header_buffer_size", HTTP | SERVER, BUFFERING),
    handled("large_client_header_buffers", HTTP | SERVER, 2, 2),
    handled("max_headers", HTTP | SERVER, 1, 1),
    ignored("proxy_buffering", HSL, BUFFERING),
    handled("proxy_buffer_size", HSL, 1, 1),
    handled("proxy_hide_header", HSL, 1, 1),
    handled("proxy_pass_header", HSL, 1, 1),
    handled("proxy_redirect", HSL, 1, 2),
    handled("proxy_cookie_domain", HSL, 1, 2),
    handled("proxy_cookie_path", HSL, 1, 2),
    handled("proxy_cookie_flags", HSL, 1, MANY),
    handled("proxy_method", HSL, 1, 1),
    handled("proxy_set_body", HSL, 1, 1),
    handled("proxy_pass_request_headers", HSL, 1, 1),
    handled("proxy_pass_request_body", HSL, 1, 1),
    handled("proxy_ignore_headers", HSL, 1, MANY),
    handled("proxy_limit_rate", HSL, 1, 1),
    handled("proxy_bind", HSL, 1, 2),
    handled("lingering_close", HSL, 1, 1),
    handled("lingering_time", HSL, 1, 1),
    handled("lingering_timeout", HSL, 1, 1),
    handled("keepalive_time", HSL, 1, 1),
    handled("keepalive_disable", HSL, 1, 3),
    ignored("proxy_buffers", HSL, BUFFERING),
    ignored("proxy_busy_buffers_size", HSL, BUFFERING),
    handled("proxy_request_buffering", HSL, 1, 1),
    ignored(
        "connection_pool_size",
        HTTP | SERVER,
        "memory pools tune nginx's allocator; ferrolb allocates per connection itself",
    ),
    ignored(
        "request_pool_size",
        HTTP | SERVER,
        "memory pools tune nginx's allocator; ferrolb allocates per connection itself",
    ),
    handled("client_body_temp_path", HSL, 1, 4),
    ignored(
        "proxy_max_temp_file_size",
        HSL,
        "ferrolb never buffers to disk",
    ),
    ignored(
        "*_temp_path",
        HSL,
        "ferrolb spools request bodies only (client_body_temp_path)",
    ),
    ignored(
        "open_file_cache*",
        HSL,
        "ferrolb opens and checks files on every request",
    ),
    ignored(
        "reset_timedout_connection",
        HSL,
        "timed-out connections are always closed",
    ),
    handled("send_timeout", HSL, 1, 1),
    ignored(
        "server_names_hash_*",
        HTTP,
        "server names are matched without a hash table",
    ),
    ignored(
        "types_hash_*",
        HSL,
        "MIME types are looked up without a hash table",
    ),
    ignored(
        "variables_hash_*",
        HTTP,
        "variables are resolved at load time",
    ),
    handled("resolver", HSL, 1, MANY),
    handled("absolute_redirect", HSL, 1, 1),
    handled("chunked_transfer_encoding", HSL, 1, 1),
    handled("server_name_in_redirect", HSL, 1, 1),
    handled("port_in_redirect", HSL, 1, 1),
    handled("resolver_timeout", HSL, 1, 1),
    // known to nginx, refused with a reason
    // Accepted with one warning per load: responses pass through uncached
    // (validate/cache.rs).
    handled("proxy_cache_path", HTTP, 2, MANY),
    handled("proxy_cache", HSL, 1, 1),
    handled("proxy_cache_key", HSL, 1, 1),
    handled("proxy_cache_valid", HSL, 1, MANY),
    handled("proxy_cache_bypass", HSL, 1, MANY),
    handled("proxy_no_cache", HSL, 1, MANY),
    handled("proxy_cache_use_stale", HSL, 1, MANY),
    handled("proxy_cache_lock", HSL, 1, 1),
    handled("proxy_cache_lock_timeout", HSL, 1, 1),
    handled("proxy_cache_lock_age", HSL, 1, 1),
    handled("proxy_cache_methods", HSL, 1, MANY),
    handled("proxy_cache_min_uses", HSL, 1, 1),
    handled("proxy_cache_revalidate", HSL, 1, 1),
    handled("proxy_cache_background_update", HSL, 1, 1),
    handled("proxy_cache_convert_head", HSL, 1, 1),
    handled("proxy_cache_max_range_offset", HSL, 1, 1),
    unsupported("proxy_cache*", "ferrolb does not cache"),
    unsupported("fastcgi_pass", "only HTTP and uwsgi upstreams are supported"),
    unsupported("grpc_pass", "only HTTP and uwsgi upstreams are supported"),
    // The rest of the uwsgi module, where nginx allows it (not in `if`).
    Spec {
        contexts: HSL,
        ..unsupported(
            "uwsgi_*",
            "ferrolb's uwsgi_pass has uwsgi_param, the modifiers, timeouts, next_upstream, header and buffering settings only",
        )
    },
    unsupported("stream", "only HTTP is proxied"),
    unsupported(
        "more_set_headers",
        "headers-more is a third-party module: write add_header NAME VALUE always; (and proxy_hide_header NAME; to replace an upstream field)",
    ),
    unsupported(
        "more_clear_headers",
        "headers-more is a third-party module: write proxy_hide_header NAME; for an upstream field",
    ),
    unsupported("ssl_conf_command", "ferrolb's TLS is rustls, not OpenSSL"),
    unsupported(
        "proxy_ssl_conf_command",
        "ferrolb's TLS is rustls, not OpenSSL",
    ),
    unsupported(
        "proxy_ssl_crl",
        "upstream certificates are not checked against CRLs yet",
    ),
    unsupported(
        "ssl_ocsp*",
        "client certificates are not checked by OCSP (ssl_crl is)",
    ),
    unsupported(
        "ssl",
        "write \"listen ... ssl\" instead (nginx 1.25 removed \"ssl on\")",
    ),
];

fn name_matches(pattern: &str, name: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        name.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        name.ends_with(suffix)
    } else {
        pattern == name
    }
}

/// The outcome of looking a directive up.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Known and allowed in this context.
    Found(&'static Spec),
    /// Known, but not in this context.
    NotAllowedHere,
    /// Not known.
    Unknown,
}

/// Looks `name` up for context bit `ctx`. A name may have rows for different contexts
/// (`keepalive_timeout` in http and in upstream mean different things).
pub fn lookup(name: &str, ctx: u8) -> Lookup {
    let mut known = false;
    for spec in DIRECTIVES {
        if name_matches(spec.name, name) {
            if spec.contexts & ctx != 0 {
                return Lookup::Found(spec);
            }
            known = true;
        }
    }
    if known {
        Lookup::NotAllowedHere
    } else {
        Lookup::Unknown
    }
}

/// The contexts `name` is allowed in, over all its rows (0 when unknown).
pub fn contexts_of(name: &str) -> u8 {
    DIRECTIVES
        .iter()
        .filter(|s| name_matches(s.name, name))
        .fold(0, |acc, s| acc | s.contexts)
}

/// True when `name` is a known directive anywhere (to spot a missing `;`).
pub fn is_known(name: &str) -> bool {
    DIRECTIVES.iter().any(|s| name_matches(s.name, name))
}

/// The known directive closest to a misspelt `name`, if one is close enough.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    let limit = (name.len() / 3).clamp(1, 3);
    DIRECTIVES
        .iter()
        .filter(|s| !s.name.contains('*'))
        .map(|s| (edit_distance(name, s.name), s.name))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

/// The directives accepted and ignored, as `(name, contexts, reason)` for documentation.
pub fn ignored_table() -> Vec<(&'static str, String, &'static str)> {
    DIRECTIVES
        .iter()
        .filter_map(|s| match s.kind {
            Kind::Ignored(why) => Some((s.name, context_names(s.contexts), why)),
            _ => None,
        })
        .collect()
}

/// `"http, server, location"` for a context bit set.
pub fn context_names(contexts: u8) -> String {
    if contexts == ANY {
        return "any".to_owned();
    }
    let names = [
        (MAIN, "main"),
        (EVENTS, "events"),
        (HTTP, "http"),
        (SERVER, "server"),
        (LOCATION, "location"),
        (UPSTREAM, "upstream"),
        (SERVER_IF, "if in server"),
        (LOCATION_IF, "if in location"),
    ];
    names
        .iter()
        .filter(|(bit, _)| contexts & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance over bytes (directive names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_context() {
        assert!(matches!(lookup("proxy_pass", LOCATION), Lookup::Found(_)));
        assert!(matches!(
            lookup("proxy_pass", SERVER),
            Lookup::NotAllowedHere
        ));
        assert!(matches!(lookup("frobnicate", HTTP), Lookup::Unknown));
        assert!(
            matches!(lookup("gzip_window", HTTP), Lookup::Found(s) if matches!(s.kind, Kind::Ignored(_)))
        );
        assert!(matches!(
            lookup("client_body_temp_path", HTTP),
            Lookup::Found(_)
        ));
        match lookup("keepalive_timeout", UPSTREAM) {
            Lookup::Found(s) => assert_eq!(s.max_args, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("proxy_pas"), Some("proxy_pass"));
        assert_eq!(did_you_mean("listne"), Some("listen"));
        assert_eq!(did_you_mean("zzzzzzzzzz"), None);
    }

    #[test]
    fn ignored_table_lists_reasons() {
        let t = ignored_table();
        assert!(t
            .iter()
            .any(|(n, c, _)| *n == "sendfile" && c == "http, server, location"));
        assert!(t.iter().all(|(_, _, why)| !why.is_empty()));
    }
}
