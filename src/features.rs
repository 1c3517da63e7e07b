//! Which nginx modules ferrolb implements, for `-V`'s `configure arguments:` line.
//!
//! One row per nginx module whose presence `./configure` can change. The line is what
//! nginx's configure would have needed to build an nginx with the same module set: a
//! `--without-…` for each module nginx builds by default that ferrolb lacks, and a
//! `--with-…` for each optional module ferrolb implements. Flip `implemented` as
//! features land; nothing else needs to change.

/// One configurable nginx module.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Module {
    /// The name as in the configure flag: `http_gzip_module` for
    /// `--without-http_gzip_module`, `http-cache` for `--without-http-cache`.
    pub(crate) name: &'static str,
    /// Whether nginx 1.22 builds it unless told otherwise.
    pub(crate) nginx_default: bool,
    /// Whether ferrolb implements it.
    pub(crate) implemented: bool,
}

const fn m(name: &'static str, nginx_default: bool, implemented: bool) -> Module {
    Module {
        name,
        nginx_default,
        implemented,
    }
}

/// The table. Modules nginx always builds (core, http core, headers for `add_header`,
/// log for `access_log`, upstream round robin) have no flag and are not listed.
pub(crate) const MODULES: &[Module] = &[
    // Implemented (default in nginx, so no flag is printed).
    m("http_proxy_module", true, true),
    m("http_upstream_keepalive_module", true, true),
    m("http_upstream_hash_module", true, true),
    m("http_upstream_ip_hash_module", true, true),
    m("http_upstream_least_conn_module", true, true),
    m("http_upstream_random_module", true, true),
    // Peer state is shared by every worker thread, as the zone shares it between
    // nginx's workers; `zone` is checked as nginx checks it.
    m("http_upstream_zone_module", true, true),
    m("http_access_module", true, true),
    m("http_auth_basic_module", true, true),
    m("http_limit_conn_module", true, true),
    m("http_limit_req_module", true, true),
    m("http_rewrite_module", true, true),
    m("http_map_module", true, true),
    m("http_autoindex_module", true, true),
    m("http_geo_module", true, true),
    m("http_split_clients_module", true, true),
    // `charset`, `source_charset`, `override_charset`, `charset_types`, `charset_map`
    // (a map from utf-8 is refused).
    m("http_charset_module", true, true),
    // Default in nginx, not implemented.
    m("http_gzip_module", true, true),
    m("http_ssi_module", true, false),
    m("http_userid_module", true, false),
    m("http_mirror_module", true, false),
    m("http_referer_module", true, false),
    m("http_fastcgi_module", true, false),
    m("http_uwsgi_module", true, true),
    m("http_scgi_module", true, false),
    m("http_grpc_module", true, false),
    m("http_memcached_module", true, false),
    m("http_empty_gif_module", true, false),
    m("http_browser_module", true, false),
    m("http-cache", true, false),
    // Optional in nginx, not implemented (flip to print `--with-…`).
    m("http_ssl_module", false, true),
    m("http_v2_module", false, true),
    m("http_realip_module", false, true),
    m("http_gzip_static_module", false, true),
    m("http_stub_status_module", false, false),
    m("stream", false, false),
];

/// The `configure arguments:` value.
pub(crate) fn configure_arguments() -> String {
    MODULES
        .iter()
        .filter_map(|m| match (m.nginx_default, m.implemented) {
            (true, false) => Some(format!("--without-{}", m.name)),
            (false, true) => Some(format!("--with-{}", m.name)),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_missing_defaults_only() {
        let a = configure_arguments();
        assert!(!a.contains("http_gzip_module") && !a.contains("http_uwsgi_module"));
        assert!(a.contains("--without-http_fastcgi_module"));
        assert!(!a.contains("rewrite") && !a.contains("http_map_module"));
        assert!(a.contains("--without-http-cache"));
        assert!(!a.contains("http_proxy_module"));
        assert!(!a.contains("keepalive"));
        assert!(!a.contains("http_geo_module") && !a.contains("split_clients"));
        assert!(a.contains("--with-http_ssl_module"));
        assert!(a.contains("--with-http_realip_module"));
        assert!(a.contains("--with-http_gzip_static_module"));
        assert!(!a.contains("limit_req") && !a.contains("auth_basic"));
    }
}
