//! Settings valid at http, server and location level, and how a level inherits them:
//! a value set at a deeper level wins, and nginx's defaults fill in what no level set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::admission::AdmissionPartial;
use super::charset::CharsetPartial;
use super::proxy::next_upstream;
use super::proxy_edits::ProxyEditsPartial;
use super::proxy_ssl::ProxySslPartial;
use super::uwsgi::UwsgiPartial;
use super::values::{flag, invalid_value, mime_types};
use super::values::{number, parse_size, templ, time, SIZE_HINT};
use super::{once, unreachable_directive, Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

/// Settings of one level before merging; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(super) struct Partial {
    proxy_set_header: Option<Vec<(String, Template)>>,
    proxy_http_version: Option<ProxyHttpVersion>,
    proxy_connect_timeout: Option<Duration>,
    proxy_read_timeout: Option<Duration>,
    proxy_send_timeout: Option<Duration>,
    proxy_next_upstream: Option<NextUpstream>,
    proxy_next_upstream_tries: Option<u32>,
    proxy_next_upstream_timeout: Option<Duration>,
    client_max_body_size: Option<u64>,
    client_header_timeout: Option<Duration>,
    client_body_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    /// `keepalive_timeout`'s second value, inherited on its own as nginx does.
    keepalive_header: Option<Duration>,
    keepalive_requests: Option<u32>,
    add_header: Option<Vec<AddHeader>>,
    add_trailer: Option<Vec<AddHeader>>,
    access_log: Option<AccessLogConf>,
    root: Option<DocRoot>,
    index: Option<Vec<Template>>,
    types: Option<Arc<MimeTypes>>,
    default_type: Option<String>,
    etag: Option<bool>,
    if_modified_since: Option<IfModifiedSince>,
    log_not_found: Option<bool>,
    open_log_file_cache: Option<Option<usize>>,
    autoindex: Option<bool>,
    autoindex_format: Option<ListingFormat>,
    autoindex_exact_size: Option<bool>,
    autoindex_localtime: Option<bool>,
    expires: Option<Option<ExpiresConf>>,
    disable_symlinks: Option<bool>,
    max_ranges: Option<Option<u32>>,
    underscores_in_headers: Option<bool>,
    ignore_invalid_headers: Option<bool>,
    proxy_request_buffering: Option<bool>,
    client_body_temp_path: Option<PathBuf>,
    client_body_buffer_size: Option<u64>,
    client_body_in_file_only: Option<BodyInFileOnly>,
    client_body_in_single_buffer: Option<bool>,
    send_timeout: Option<Duration>,
    limit_rate: Option<SizeValue>,
    limit_rate_after: Option<SizeValue>,
    error_pages: Option<Vec<ErrorPage>>,
    recursive_error_pages: Option<bool>,
    proxy_intercept_errors: Option<bool>,
    proxy_ignore_client_abort: Option<bool>,
    /// `error_log` of this level (the first).
    error_log: Option<ErrorLogConf>,
    resolver: Option<Arc<ResolverConf>>,
    resolver_timeout: Option<Duration>,
    absolute_redirect: Option<bool>,
    chunked_transfer_encoding: Option<bool>,
    large_client_header_buffers: Option<(usize, usize)>,
    max_headers: Option<usize>,
    proxy_buffer_size: Option<usize>,
    proxy_hide_header: Option<Vec<String>>,
    proxy_pass_header: Option<Vec<String>>,
    lingering_close: Option<LingeringMode>,
    lingering_time: Option<Duration>,
    lingering_timeout: Option<Duration>,
    keepalive_time: Option<Duration>,
    keepalive_disable: Option<KeepaliveDisable>,
    gzip_static: Option<GzipStatic>,
    gzip: Option<bool>,
    gzip_types: Option<GzipTypes>,
    gzip_min_length: Option<u64>,
    gzip_comp_level: Option<u32>,
    gzip_vary: Option<bool>,
    gzip_http_version: Option<u8>,
    gzip_proxied: Option<GzipProxied>,
    gzip_disable: Option<(Vec<regex::Regex>, bool)>,
    server_name_in_redirect: Option<bool>,
    port_in_redirect: Option<bool>,
    proxy_method: Option<Template>,
    proxy_set_body: Option<Template>,
    proxy_pass_request_headers: Option<bool>,
    proxy_pass_request_body: Option<bool>,
    proxy_ignore_headers: Option<IgnoreHeaders>,
    proxy_limit_rate: Option<u64>,
    proxy_bind: Option<Option<ProxyBind>>,
    /// `proxy_redirect`, `proxy_cookie_*`, merged list by list.
    pub(super) proxy_edits: ProxyEditsPartial,
    /// `http2 on|off` (http and server level): HTTP/2 on the server's addresses.
    pub(super) http2: Option<bool>,
    http2_max_concurrent_streams: Option<u32>,
    http2_body_preread_size: Option<u32>,
    http2_chunk_size: Option<usize>,
    /// `proxy_ssl_*`, merged directive by directive.
    pub(super) proxy_ssl: ProxySslPartial,
    /// `uwsgi_ssl_*` (for `uwsgi_pass suwsgi://`), the same settings as `proxy_ssl_*`.
    pub(super) uwsgi_ssl: ProxySslPartial,
    /// Not inherited (nginx keeps `try_files` per level).
    pub(super) try_files: Option<TryFiles>,
    /// Location only. Inherited by nested locations (and `if` blocks) that set no
    /// `root`: nginx keeps root and alias in one setting.
    pub(super) alias: Option<DocRoot>,
    /// Real client address, access rules, basic authentication.
    admission: AdmissionPartial,
    /// The uwsgi module's settings.
    uwsgi: UwsgiPartial,
    /// The charset module's settings.
    pub(super) charset: CharsetPartial,
}

impl Partial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &Partial) -> Partial {
        macro_rules! pick {
            ($($f:ident),*) => { Partial {
                $($f: self.$f.clone().or_else(|| parent.$f.clone()),)*
                try_files: self.try_files.clone(),
                alias: match self.root {
                    Some(_) => self.alias.clone(),
                    None => self.alias.clone().or_else(|| parent.alias.clone()),
                },
                proxy_ssl: self.proxy_ssl.over(&parent.proxy_ssl),
                uwsgi_ssl: self.uwsgi_ssl.over(&parent.uwsgi_ssl),
                proxy_edits: self.proxy_edits.over(&parent.proxy_edits),
                admission: self.admission.over(&parent.admission),
                uwsgi: self.uwsgi.over(&parent.uwsgi),
                charset: self.charset.over(&parent.charset),
            } };
        }
        pick!(
            proxy_set_header,
            proxy_http_version,
            proxy_connect_timeout,
            proxy_read_timeout,
            proxy_send_timeout,
            proxy_next_upstream,
            proxy_next_upstream_tries,
            proxy_next_upstream_timeout,
            client_max_body_size,
            client_header_timeout,
            client_body_timeout,
            keepalive_timeout,
            keepalive_header,
            keepalive_requests,
            http2,
            http2_max_concurrent_streams,
            http2_body_preread_size,
            http2_chunk_size,
            add_header,
            add_trailer,
            access_log,
            root,
            index,
            types,
            default_type,
            etag,
            if_modified_since,
            log_not_found,
            open_log_file_cache,
            autoindex,
            autoindex_format,
            autoindex_exact_size,
            autoindex_localtime,
            expires,
            disable_symlinks,
            max_ranges,
            underscores_in_headers,
            ignore_invalid_headers,
            proxy_request_buffering,
            client_body_temp_path,
            client_body_buffer_size,
            client_body_in_file_only,
            client_body_in_single_buffer,
            send_timeout,
            limit_rate,
            limit_rate_after,
            error_pages,
            recursive_error_pages,
            proxy_intercept_errors,
            proxy_ignore_client_abort,
            error_log,
            resolver,
            resolver_timeout,
            absolute_redirect,
            chunked_transfer_encoding,
            large_client_header_buffers,
            max_headers,
            proxy_buffer_size,
            proxy_hide_header,
            proxy_pass_header,
            lingering_close,
            lingering_time,
            lingering_timeout,
            keepalive_time,
            keepalive_disable,
            gzip_static,
            gzip,
            gzip_types,
            gzip_min_length,
            gzip_comp_level,
            gzip_vary,
            gzip_http_version,
            gzip_proxied,
            gzip_disable,
            server_name_in_redirect,
            port_in_redirect,
            proxy_method,
            proxy_set_body,
            proxy_pass_request_headers,
            proxy_pass_request_body,
            proxy_ignore_headers,
            proxy_limit_rate,
            proxy_bind
        )
    }

    /// In a location that passes to uWSGI, the uwsgi module's twins of the proxy
    /// module's settings take their place: `uwsgi_read_timeout` is what
    /// `proxy_read_timeout` is to `proxy_pass`, and the proxy's own are not used.
    fn with_uwsgi_twins(&self) -> Partial {
        let u = &self.uwsgi;
        Partial {
            proxy_set_header: None,
            proxy_connect_timeout: u.connect_timeout,
            proxy_read_timeout: u.read_timeout,
            proxy_send_timeout: u.send_timeout,
            proxy_next_upstream: u.next_upstream,
            proxy_next_upstream_tries: u.next_upstream_tries,
            proxy_next_upstream_timeout: u.next_upstream_timeout,
            proxy_hide_header: u.hide_header.clone(),
            proxy_pass_header: u.pass_header.clone(),
            proxy_intercept_errors: u.intercept_errors,
            proxy_ignore_client_abort: u.ignore_client_abort,
            proxy_request_buffering: u.request_buffering,
            proxy_buffer_size: u.buffer_size,
            ..self.clone()
        }
    }

    /// Fills nginx's defaults in.
    pub(super) fn finish(
        &self,
        action: Action,
        rewrite: Vec<RewriteOp>,
        prefix: &Path,
    ) -> Arc<LocSettings> {
        if matches!(&action, Action::Proxy(pp) if pp.protocol == UpstreamProtocol::Uwsgi) {
            return self
                .with_uwsgi_twins()
                .finish_as_is(action, rewrite, prefix);
        }
        self.finish_as_is(action, rewrite, prefix)
    }

    fn finish_as_is(
        &self,
        action: Action,
        rewrite: Vec<RewriteOp>,
        prefix: &Path,
    ) -> Arc<LocSettings> {
        let secs = Duration::from_secs;
        Arc::new(LocSettings {
            action,
            rewrite,
            admission: Arc::new(self.admission.finish()),
            limit_rate: self.limit_rate.clone().unwrap_or_default(),
            limit_rate_after: self.limit_rate_after.clone().unwrap_or_default(),
            proxy_set_header: self.proxy_set_header.clone().unwrap_or_default(),
            proxy_http_version: self.proxy_http_version.unwrap_or_default(),
            proxy_connect_timeout: self.proxy_connect_timeout.unwrap_or(secs(60)),
            proxy_read_timeout: self.proxy_read_timeout.unwrap_or(secs(60)),
            proxy_send_timeout: self.proxy_send_timeout.unwrap_or(secs(60)),
            proxy_next_upstream: self.proxy_next_upstream.unwrap_or_default(),
            proxy_next_upstream_tries: self.proxy_next_upstream_tries.unwrap_or(0),
            proxy_next_upstream_timeout: self.proxy_next_upstream_timeout.unwrap_or(Duration::ZERO),
            client_max_body_size: self.client_max_body_size.unwrap_or(1024 * 1024),
            client_header_timeout: self.client_header_timeout.unwrap_or(secs(60)),
            client_body_timeout: self.client_body_timeout.unwrap_or(secs(60)),
            keepalive_timeout: self.keepalive_timeout.unwrap_or(secs(75)),
            keepalive_header: self.keepalive_header,
            keepalive_requests: self.keepalive_requests.unwrap_or(1000),
            add_header: self.add_header.clone().unwrap_or_default(),
            add_trailer: self.add_trailer.clone().unwrap_or_default(),
            open_log_file_cache: self.open_log_file_cache.flatten(),
            access_log: self.access_log.clone().unwrap_or_else(|| {
                AccessLogConf::Logs(vec![AccessLogTarget {
                    path: prefix.join("logs/access.log"),
                    path_template: None,
                    format: None,
                    condition: None,
                    buffering: LogBuffering::default(),
                    syslog: None,
                }])
            }),
            proxy_request_buffering: self.proxy_request_buffering.unwrap_or(true),
            send_timeout: self.send_timeout.unwrap_or(secs(60)),
            client_body_buffer_size: self
                .client_body_buffer_size
                .unwrap_or(DEFAULT_CLIENT_BODY_BUFFER_SIZE),
            client_body_in_file_only: self.client_body_in_file_only.unwrap_or_default(),
            client_body_in_single_buffer: self.client_body_in_single_buffer.unwrap_or(false),
            client_body_temp_path: self
                .client_body_temp_path
                .clone()
                .unwrap_or_else(|| prefix.join("client_body_temp")),
            underscores_in_headers: self.underscores_in_headers.unwrap_or(false),
            error_pages: self.error_pages.clone().unwrap_or_default(),
            recursive_error_pages: self.recursive_error_pages.unwrap_or(false),
            proxy_intercept_errors: self.proxy_intercept_errors.unwrap_or(false),
            proxy_ignore_client_abort: self.proxy_ignore_client_abort.unwrap_or(false),
            error_log: self.error_log.clone(),
            resolver: self.resolver.clone(),
            absolute_redirect: self.absolute_redirect.unwrap_or(true),
            chunked_transfer_encoding: self.chunked_transfer_encoding.unwrap_or(true),
            large_client_header_buffers: self.large_client_header_buffers.unwrap_or((4, 8192)),
            max_headers: self.max_headers.unwrap_or(1000),
            proxy_buffer_size: self.proxy_buffer_size.unwrap_or(4096),
            proxy_hide_header: self.proxy_hide_header.clone().unwrap_or_default(),
            proxy_pass_header: self.proxy_pass_header.clone().unwrap_or_default(),
            lingering: Lingering {
                mode: self.lingering_close.unwrap_or_default(),
                time: self.lingering_time.unwrap_or(secs(30)),
                timeout: self.lingering_timeout.unwrap_or(secs(5)),
            },
            keepalive_time: self.keepalive_time.unwrap_or(secs(3600)),
            keepalive_disable: self.keepalive_disable.unwrap_or(KeepaliveDisable {
                msie6: true,
                safari: false,
            }),
            http2: Http2Settings {
                max_concurrent_streams: self.http2_max_concurrent_streams.unwrap_or(128),
                body_preread_size: self.http2_body_preread_size.unwrap_or(65536),
                chunk_size: self.http2_chunk_size.unwrap_or(8 * 1024),
            },
            uwsgi: Arc::new(self.uwsgi.finish()),
            charset: self.charset.finish(),
            gzip: GzipConf {
                enable: self.gzip.unwrap_or(false),
                types: self.gzip_types.clone().unwrap_or_default(),
                min_length: self.gzip_min_length.unwrap_or(20),
                level: self.gzip_comp_level.unwrap_or(1),
                vary: self.gzip_vary.unwrap_or(false),
                http_version_minor: self.gzip_http_version.unwrap_or(1),
                proxied: self.gzip_proxied.unwrap_or_default(),
                disable: self.gzip_disable.clone().unwrap_or_default().0,
                disable_msie6: self.gzip_disable.as_ref().is_some_and(|d| d.1),
            },
            server_name_in_redirect: self.server_name_in_redirect.unwrap_or(false),
            port_in_redirect: self.port_in_redirect.unwrap_or(true),
            proxy_edits: Arc::new(self.proxy_edits.finish()),
            proxy_method: self.proxy_method.clone(),
            proxy_set_body: self.proxy_set_body.clone(),
            proxy_pass_request_headers: self.proxy_pass_request_headers.unwrap_or(true),
            proxy_pass_request_body: self.proxy_pass_request_body.unwrap_or(true),
            proxy_ignore_headers: self.proxy_ignore_headers.unwrap_or_default(),
            proxy_limit_rate: self.proxy_limit_rate.unwrap_or(0),
            proxy_bind: self.proxy_bind.clone().flatten(),
            resolver_timeout: self.resolver_timeout.unwrap_or(secs(30)),
            ignore_invalid_headers: self.ignore_invalid_headers.unwrap_or(true),
            files: FilesConf {
                doc: match &self.alias {
                    Some(a) => a.clone(),
                    None => self
                        .root
                        .clone()
                        .unwrap_or_else(|| DocRoot::Root(prefix.join("html"))),
                },
                index: self
                    .index
                    .clone()
                    .unwrap_or_else(|| vec![Template::literal("index.html")]),
                try_files: self.try_files.clone(),
                types: self
                    .types
                    .clone()
                    .unwrap_or_else(|| Arc::new(MimeTypes::nginx_default())),
                default_type: self
                    .default_type
                    .clone()
                    .unwrap_or_else(|| "text/plain".to_owned()),
                etag: self.etag.unwrap_or(true),
                if_modified_since: self.if_modified_since.unwrap_or_default(),
                log_not_found: self.log_not_found.unwrap_or(true),
                autoindex: self.autoindex.unwrap_or(false),
                listing: {
                    let default = ListingConf::default();
                    ListingConf {
                        format: self.autoindex_format.unwrap_or(default.format),
                        exact_size: self.autoindex_exact_size.unwrap_or(default.exact_size),
                        localtime: self.autoindex_localtime.unwrap_or(default.localtime),
                    }
                },
                expires: self.expires.clone().flatten(),
                disable_symlinks: self.disable_symlinks.unwrap_or(false),
                max_ranges: self.max_ranges.flatten(),
                gzip_static: self.gzip_static.unwrap_or_default(),
            },
        })
    }
}

impl Validator<'_> {
    /// The value of `root` or `alias`: a path under the prefix, or a value with
    /// variables evaluated per request.
    pub(super) fn doc_root(&self, d: &Directive, uri: UriPart) -> Result<DocRoot> {
        let text = d.arg(0);
        if !text.contains('$') {
            let path = self.env.prefix.join(text);
            match uri {
                UriPart::Whole => return Ok(DocRoot::Root(path)),
                UriPart::AfterPrefix(location) => return Ok(DocRoot::Alias { path, location }),
                UriPart::None => {}
            }
        }
        let path = super::values::templ(d, text, &self.names)?;
        let circular = path.parts.iter().any(|p| {
            matches!(
                p,
                TemplatePart::Var(Var::RequestFilename | Var::DocumentRoot | Var::RealpathRoot)
            )
        });
        if circular {
            return Err(ConfigError::hinted(
                &d.span,
                format!("\"{}\" cannot use the variables it defines", d.name),
                "$request_filename, $document_root and $realpath_root are made from root and alias",
            ));
        }
        Ok(DocRoot::Vars {
            path,
            prefix: self.env.prefix.clone(),
            uri,
        })
    }

    /// Settings valid at http, server and location level.
    pub(super) fn setting(&mut self, p: &mut Partial, d: &Directive) -> Result<()> {
        let a0 = d.arg(0);
        match d.name.as_str() {
            "proxy_set_header" => {
                let value = templ(d, d.arg(1), &self.names)?;
                p.proxy_set_header
                    .get_or_insert_with(Vec::new)
                    .push((a0.to_owned(), value));
            }
            "add_header" | "add_trailer" => {
                let always = match d.args.get(2).map(|a| a.value.as_str()) {
                    None => false,
                    Some("always") => true,
                    Some(other) => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid parameter \"{other}\""),
                        ))
                    }
                };
                let value = templ(d, d.arg(1), &self.names)?;
                let lines = if d.name == "add_header" {
                    &mut p.add_header
                } else {
                    &mut p.add_trailer
                };
                lines.get_or_insert_with(Vec::new).push(AddHeader {
                    name: a0.to_owned(),
                    value,
                    always,
                });
            }
            "proxy_http_version" => {
                let v = match a0 {
                    "1.0" => ProxyHttpVersion::Http10,
                    "1.1" => ProxyHttpVersion::Http11,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"proxy_http_version\" directive, it must be \"1.0\" or \"1.1\""),
                        ))
                    }
                };
                once(&mut p.proxy_http_version, v, d)?;
            }
            "proxy_connect_timeout" => once(&mut p.proxy_connect_timeout, time(d, a0)?, d)?,
            "proxy_read_timeout" => once(&mut p.proxy_read_timeout, time(d, a0)?, d)?,
            "proxy_send_timeout" => once(&mut p.proxy_send_timeout, time(d, a0)?, d)?,
            "proxy_next_upstream_timeout" => {
                once(&mut p.proxy_next_upstream_timeout, time(d, a0)?, d)?
            }
            "client_header_timeout" => once(&mut p.client_header_timeout, time(d, a0)?, d)?,
            "client_body_timeout" => once(&mut p.client_body_timeout, time(d, a0)?, d)?,
            "send_timeout" => once(&mut p.send_timeout, time(d, a0)?, d)?,
            "proxy_next_upstream_tries" => {
                once(&mut p.proxy_next_upstream_tries, number(d, a0)?, d)?
            }
            "keepalive_requests" => once(&mut p.keepalive_requests, number(d, a0)?, d)?,
            "http2" => once(&mut p.http2, super::values::flag(d)?, d)?,
            "http2_max_concurrent_streams" => {
                once(&mut p.http2_max_concurrent_streams, number(d, a0)?, d)?
            }
            "http2_body_preread_size" => {
                let size = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                // nginx: the stream window it advertises, at most 2^31 - 1.
                let size = u32::try_from(size)
                    .ok()
                    .filter(|&s| s <= 0x7fff_ffff)
                    .ok_or_else(|| {
                        ConfigError::at(
                            &d.span,
                            "the maximum body preread buffer size is 2147483647",
                        )
                    })?;
                once(&mut p.http2_body_preread_size, size, d)?;
            }
            "http2_chunk_size" => {
                let size = parse_size(a0)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                if size == 0 {
                    return Err(ConfigError::at(
                        &d.span,
                        "the http2 chunk size cannot be zero",
                    ));
                }
                // nginx caps it at the largest frame it sends (16 KiB - 1... 2^24 - 1).
                once(&mut p.http2_chunk_size, size.min(0x00ff_ffff), d)?;
            }
            "limit_rate" | "limit_rate_after" => {
                let n = if a0.contains('$') {
                    SizeValue::Template(templ(d, a0, &self.names)?)
                } else {
                    SizeValue::Fixed(
                        parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?,
                    )
                };
                let slot = if d.name == "limit_rate" {
                    &mut p.limit_rate
                } else {
                    &mut p.limit_rate_after
                };
                once(slot, n, d)?;
            }
            "client_body_buffer_size" => {
                let n = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.client_body_buffer_size, n.max(1), d)?;
            }
            "client_body_in_file_only" => {
                let v = match a0 {
                    "off" => BodyInFileOnly::Off,
                    "on" => BodyInFileOnly::On,
                    "clean" => BodyInFileOnly::Clean,
                    _ => return Err(invalid_value(d, a0, Some("on, clean or off"))),
                };
                once(&mut p.client_body_in_file_only, v, d)?;
            }
            "client_body_in_single_buffer" => {
                once(&mut p.client_body_in_single_buffer, flag(d)?, d)?
            }
            "client_max_body_size" => {
                let n = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.client_max_body_size, n, d)?;
            }
            "keepalive_timeout" => {
                once(&mut p.keepalive_timeout, time(d, a0)?, d)?;
                if d.args.len() > 1 {
                    p.keepalive_header = Some(time(d, d.arg(1))?);
                }
            }
            "proxy_next_upstream" => once(&mut p.proxy_next_upstream, next_upstream(d)?, d)?,
            "access_log" => {
                let target = self.access_log(d)?;
                match (&mut p.access_log, target) {
                    // `off` anywhere in the level wins, as in nginx.
                    (Some(AccessLogConf::Off), _) => {}
                    (slot, None) if d.arg(0) == "off" => *slot = Some(AccessLogConf::Off),
                    (Some(AccessLogConf::Logs(v)), t) => v.extend(t),
                    (slot @ None, t) => *slot = Some(AccessLogConf::Logs(t.into_iter().collect())),
                }
            }
            "root" => {
                if d.args.len() != 1 {
                    return Err(ConfigError::at(
                        &d.span,
                        "invalid number of arguments in \"root\" directive",
                    ));
                }
                let root = self.doc_root(d, UriPart::Whole)?;
                once(&mut p.root, root, d)?;
            }
            "index" => {
                if d.args.iter().any(|a| a.value.is_empty()) {
                    return Err(ConfigError::at(
                        &d.span,
                        "index \"\" in \"index\" directive is invalid",
                    ));
                }
                let names = d
                    .args
                    .iter()
                    .map(|a| templ(d, &a.value, &self.names))
                    .collect::<Result<Vec<_>>>()?;
                once(&mut p.index, names, d)?;
            }
            "types" => {
                let mut t = MimeTypes::default();
                for c in d.block.as_deref().unwrap_or_default() {
                    for ext in &c.args {
                        t.by_ext
                            .insert(ext.value.to_ascii_lowercase(), c.name.clone());
                    }
                }
                once(&mut p.types, Arc::new(t), d)?;
            }
            "default_type" => once(&mut p.default_type, a0.to_owned(), d)?,
            "charset" | "source_charset" | "override_charset" | "charset_types" | "charset_map" => {
                self.charset_setting(&mut p.charset, d)?;
            }
            "etag" => once(&mut p.etag, flag(d)?, d)?,
            "log_not_found" => once(&mut p.log_not_found, flag(d)?, d)?,
            "open_log_file_cache" => {
                let cache = self.open_log_file_cache(d)?;
                once(&mut p.open_log_file_cache, cache, d)?;
            }
            n if n.starts_with("proxy_cache") || n == "proxy_no_cache" => {
                self.cache_directive(d)?
            }
            "error_page" => {
                let pages = error_page(d, &self.names)?;
                p.error_pages.get_or_insert_with(Vec::new).extend(pages);
            }
            "resolver" => once(&mut p.resolver, Arc::new(self.resolver(d)?), d)?,
            "gzip_static" => {
                let v = match a0 {
                    "off" => GzipStatic::Off,
                    "on" => GzipStatic::On,
                    "always" => GzipStatic::Always,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"gzip_static\" directive, it must be \"on\", \"off\" or \"always\""),
                        ))
                    }
                };
                once(&mut p.gzip_static, v, d)?;
            }
            "gzip_vary" => once(&mut p.gzip_vary, flag(d)?, d)?,
            "gzip" => once(&mut p.gzip, flag(d)?, d)?,
            "gzip_types" => once(&mut p.gzip_types, mime_types(d, Some("text/html")), d)?,
            "gzip_min_length" => {
                let n = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.gzip_min_length, n, d)?;
            }
            "gzip_comp_level" => {
                let level: u32 = number(d, a0)?;
                if !(1..=9).contains(&level) {
                    return Err(ConfigError::at(&d.span, "value must be between 1 and 9"));
                }
                once(&mut p.gzip_comp_level, level, d)?;
            }
            "gzip_buffers" => {
                // The output buffers of nginx's gzip filter; ferrolb sends what the
                // compressor gives for each piece it reads. Checked, then unused.
                let ok = number::<u32>(d, a0).is_ok_and(|n| n > 0)
                    && parse_size(d.arg(1)).is_some_and(|s| s > 0);
                if !ok {
                    return Err(invalid_value(
                        d,
                        &format!("{a0} {}", d.arg(1)),
                        Some("gzip_buffers takes NUMBER SIZE, as 16 8k"),
                    ));
                }
            }
            "gzip_http_version" => {
                let v = match a0 {
                    "1.0" => 0,
                    "1.1" => 1,
                    other => {
                        return Err(invalid_value(
                            d,
                            other,
                            Some("gzip_http_version takes 1.0 or 1.1"),
                        ))
                    }
                };
                once(&mut p.gzip_http_version, v, d)?;
            }
            "gzip_proxied" => {
                let mut set = 0u16;
                for a in &d.args {
                    set |= match a.value.as_str() {
                        "off" => GzipProxied::OFF,
                        "expired" => GzipProxied::EXPIRED,
                        "no-cache" => GzipProxied::NO_CACHE,
                        "no-store" => GzipProxied::NO_STORE,
                        "private" => GzipProxied::PRIVATE,
                        "no_last_modified" => GzipProxied::NO_LAST_MODIFIED,
                        "no_etag" => GzipProxied::NO_ETAG,
                        "auth" => GzipProxied::AUTH,
                        "any" => GzipProxied::ANY,
                        other => return Err(invalid_value(d, other, None)),
                    };
                }
                once(&mut p.gzip_proxied, GzipProxied(set), d)?;
            }
            "gzip_disable" => {
                let mut list = Vec::new();
                let mut msie6 = false;
                for a in &d.args {
                    if a.value == "msie6" {
                        msie6 = true;
                        continue;
                    }
                    let re = regex::RegexBuilder::new(&super::values::pcre(&a.value))
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| {
                            ConfigError::at(&d.span, format!("invalid regex \"{}\": {e}", a.value))
                        })?;
                    list.push(re);
                }
                once(&mut p.gzip_disable, (list, msie6), d)?;
            }
            "lingering_close" => {
                let v = match a0 {
                    "off" => LingeringMode::Off,
                    "on" => LingeringMode::On,
                    "always" => LingeringMode::Always,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"lingering_close\" directive, it must be \"off\", \"on\" or \"always\""),
                        ))
                    }
                };
                once(&mut p.lingering_close, v, d)?;
            }
            "lingering_time" => once(&mut p.lingering_time, time(d, a0)?, d)?,
            "lingering_timeout" => once(&mut p.lingering_timeout, time(d, a0)?, d)?,
            "keepalive_time" => once(&mut p.keepalive_time, time(d, a0)?, d)?,
            "keepalive_disable" => {
                let mut v = KeepaliveDisable::default();
                for a in &d.args {
                    match a.value.as_str() {
                        "none" => {}
                        "msie6" => v.msie6 = true,
                        "safari" => v.safari = true,
                        _ => return Err(invalid_value(d, &a.value, Some("none, msie6 or safari"))),
                    }
                }
                once(&mut p.keepalive_disable, v, d)?
            }
            "proxy_hide_header" => p
                .proxy_hide_header
                .get_or_insert_with(Vec::new)
                .push(a0.to_ascii_lowercase()),
            "proxy_pass_header" => p
                .proxy_pass_header
                .get_or_insert_with(Vec::new)
                .push(a0.to_ascii_lowercase()),
            "proxy_buffer_size" => {
                let size = parse_size(a0)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.proxy_buffer_size, size, d)?;
            }
            "large_client_header_buffers" => {
                let n: usize = number(d, a0)?;
                let size = parse_size(d.arg(1))
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| invalid_value(d, d.arg(1), Some(SIZE_HINT)))?;
                if n == 0 || size <= 1 {
                    return Err(ConfigError::at(&d.span, "invalid value"));
                }
                once(&mut p.large_client_header_buffers, (n, size), d)?;
            }
            "max_headers" => once(&mut p.max_headers, number(d, a0)?, d)?,
            "absolute_redirect" => once(&mut p.absolute_redirect, flag(d)?, d)?,
            "chunked_transfer_encoding" => once(&mut p.chunked_transfer_encoding, flag(d)?, d)?,
            "server_name_in_redirect" => once(&mut p.server_name_in_redirect, flag(d)?, d)?,
            "port_in_redirect" => once(&mut p.port_in_redirect, flag(d)?, d)?,
            "proxy_redirect"
            | "proxy_cookie_domain"
            | "proxy_cookie_path"
            | "proxy_cookie_flags" => self.proxy_edit_setting(&mut p.proxy_edits, d)?,
            "proxy_method" => once(&mut p.proxy_method, templ(d, a0, &self.names)?, d)?,
            "proxy_set_body" => once(&mut p.proxy_set_body, templ(d, a0, &self.names)?, d)?,
            "proxy_pass_request_headers" => once(&mut p.proxy_pass_request_headers, flag(d)?, d)?,
            "proxy_pass_request_body" => once(&mut p.proxy_pass_request_body, flag(d)?, d)?,
            "proxy_ignore_headers" => {
                let mut bits = IgnoreHeaders::default();
                for a in &d.args {
                    let bit = IgnoreHeaders::named(&a.value).ok_or_else(|| {
                        ConfigError::hinted(
                            &d.span,
                            format!("invalid value \"{}\"", a.value),
                            "proxy_ignore_headers takes X-Accel-Redirect, X-Accel-Expires, X-Accel-Limit-Rate, X-Accel-Buffering, X-Accel-Charset, Expires, Cache-Control, Set-Cookie and Vary",
                        )
                    })?;
                    bits.0 |= bit;
                }
                once(&mut p.proxy_ignore_headers, bits, d)?
            }
            "proxy_bind" => {
                if d.args.len() > 1 {
                    return Err(if d.arg(1) == "transparent" {
                        ConfigError::hinted(
                            &d.span,
                            "\"proxy_bind ... transparent\" is not supported",
                            "transparent proxying needs CAP_NET_ADMIN and policy routing for the replies; ferrolb binds only addresses of this host: drop \"transparent\"",
                        )
                    } else {
                        invalid_value(d, d.arg(1), None)
                    });
                }
                let bind = if a0 == "off" {
                    None
                } else if a0.contains('$') {
                    Some(ProxyBind::Template(templ(d, a0, &self.names)?))
                } else {
                    Some(ProxyBind::Addr(ProxyBind::parse_addr(a0).ok_or_else(|| {
                        ConfigError::hinted(
                            &d.span,
                            format!("invalid address \"{a0}\""),
                            "proxy_bind takes an address of this host, with an optional port: 127.0.0.2, 10.0.0.5:0, [::1]",
                        )
                    })?))
                };
                once(&mut p.proxy_bind, bind, d)?
            }
            "proxy_limit_rate" => {
                let rate = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.proxy_limit_rate, rate, d)?
            }
            "resolver_timeout" => once(&mut p.resolver_timeout, time(d, a0)?, d)?,
            "recursive_error_pages" => once(&mut p.recursive_error_pages, flag(d)?, d)?,
            "proxy_intercept_errors" => once(&mut p.proxy_intercept_errors, flag(d)?, d)?,
            "proxy_ignore_client_abort" => once(&mut p.proxy_ignore_client_abort, flag(d)?, d)?,
            "error_log" => self.first_error_log(&mut p.error_log, d)?,
            "autoindex" => once(&mut p.autoindex, flag(d)?, d)?,
            "autoindex_exact_size" => once(&mut p.autoindex_exact_size, flag(d)?, d)?,
            "autoindex_localtime" => once(&mut p.autoindex_localtime, flag(d)?, d)?,
            "autoindex_format" => {
                let v = match a0 {
                    "html" => ListingFormat::Html,
                    "xml" => ListingFormat::Xml,
                    "json" => ListingFormat::Json,
                    "jsonp" => ListingFormat::Jsonp,
                    other => return Err(ConfigError::at(&d.span, format!("invalid value \"{other}\" in \"autoindex_format\" directive, it must be \"html\", \"xml\", \"json\" or \"jsonp\""))),
                };
                once(&mut p.autoindex_format, v, d)?;
            }
            "underscores_in_headers" => once(&mut p.underscores_in_headers, flag(d)?, d)?,
            "proxy_request_buffering" => once(&mut p.proxy_request_buffering, flag(d)?, d)?,
            "client_body_temp_path" => {
                // Levels (`1 2`) only spread files over subdirectories: ferrolb
                // unlinks each file at once, so one directory serves.
                once(&mut p.client_body_temp_path, self.env.prefix.join(a0), d)?
            }
            "ignore_invalid_headers" => once(&mut p.ignore_invalid_headers, flag(d)?, d)?,
            "max_ranges" => {
                let n = number(d, a0)?;
                once(&mut p.max_ranges, Some(n), d)?;
            }
            "disable_symlinks" => {
                let v = match a0 {
                    "off" => false,
                    "on" if d.args.len() == 1 => true,
                    _ => {
                        return Err(ConfigError::hinted(
                            &d.span,
                            format!(
                                "invalid value \"{}\" in \"disable_symlinks\"",
                                d.args
                                    .iter()
                                    .map(|a| a.value.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                            "ferrolb supports \"disable_symlinks on|off\"",
                        ))
                    }
                };
                once(&mut p.disable_symlinks, v, d)?;
            }
            "if_modified_since" => {
                let v = match a0 {
                    "off" => IfModifiedSince::Off,
                    "exact" => IfModifiedSince::Exact,
                    "before" => IfModifiedSince::Before,
                    other => return Err(ConfigError::at(&d.span, format!("invalid value \"{other}\" in \"if_modified_since\" directive, it must be \"off\", \"exact\" or \"before\""))),
                };
                once(&mut p.if_modified_since, v, d)?;
            }
            "expires" => once(&mut p.expires, expires(d, &self.names)?, d)?,
            "try_files" => {
                let n = d.args.len();
                let files = d.args[..n - 1]
                    .iter()
                    .map(|a| {
                        Ok(TryEntry {
                            name: templ(d, &a.value, &self.names)?,
                            dir: a.value.ends_with('/'),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let last = d.arg(n - 1);
                let fallback = if let Some(code) = last.strip_prefix('=') {
                    match code.parse::<u16>() {
                        Ok(c) if (100..=999).contains(&c) => TryFallback::Status(c),
                        _ => {
                            return Err(ConfigError::at(
                                &d.span,
                                format!("invalid code \"{last}\""),
                            ))
                        }
                    }
                } else if last.starts_with('@') {
                    TryFallback::Named(last.to_owned())
                } else {
                    TryFallback::Uri(templ(d, last, &self.names)?)
                };
                once(&mut p.try_files, TryFiles { files, fallback }, d)?;
            }
            n if n.starts_with("proxy_ssl_") => self.proxy_ssl_setting(&mut p.proxy_ssl, d)?,
            n if n.starts_with("uwsgi_ssl_") => self.proxy_ssl_setting(&mut p.uwsgi_ssl, d)?,
            n if n.starts_with("uwsgi_") => self.uwsgi_setting(&mut p.uwsgi, d)?,
            "set_real_ip_from"
            | "real_ip_header"
            | "real_ip_recursive"
            | "allow"
            | "deny"
            | "auth_basic"
            | "auth_basic_user_file"
            | "satisfy"
            | "limit_except"
            | "limit_req"
            | "limit_req_status"
            | "limit_req_log_level"
            | "limit_req_dry_run"
            | "limit_conn"
            | "limit_conn_status"
            | "limit_conn_log_level"
            | "limit_conn_dry_run" => self.admission_setting(&mut p.admission, d)?,
            other => unreachable_directive(d, other)?,
        }
        Ok(())
    }
}

/// `error_page CODE ... [=[RESPONSE]] URI`, as nginx reads it: one entry per code.
fn error_page(d: &Directive, names: &super::rewrite::VarNames) -> Result<Vec<ErrorPage>> {
    let n = d.args.len();
    let uri = d.arg(n - 1);
    let (codes, response) = match d.arg(n - 2).strip_prefix('=') {
        Some(_) if n == 2 => return Err(invalid_value(d, d.arg(n - 2), None)),
        Some("") => (&d.args[..n - 2], ErrorPageStatus::OfPage),
        Some(code) => match code.parse::<u16>() {
            Ok(c) => (&d.args[..n - 2], ErrorPageStatus::Code(c)),
            Err(_) => return Err(invalid_value(d, d.arg(n - 2), None)),
        },
        None => (&d.args[..n - 1], ErrorPageStatus::Caught),
    };
    let mut target = templ(d, uri, names)?;
    let mut args = None;
    if target.is_literal() && uri.starts_with('/') {
        if let Some((path, a)) = uri.split_once('?') {
            target = Template::literal(path);
            args = Some(a.to_owned());
        }
    }
    codes
        .iter()
        .map(|a| {
            let status = match a.value.parse::<u16>() {
                Ok(s) if s != 499 => s,
                _ => return Err(invalid_value(d, &a.value, None)),
            };
            if !(300..=599).contains(&status) {
                return Err(ConfigError::at(
                    &d.span,
                    format!("value \"{}\" must be between 300 and 599", a.value),
                ));
            }
            // nginx answers its own 494–497 as 400 unless a page says otherwise.
            let response = match (response, status) {
                (ErrorPageStatus::Caught, 494..=497) => ErrorPageStatus::Code(400),
                (r, _) => r,
            };
            Ok(ErrorPage {
                status,
                response,
                target: target.clone(),
                args: args.clone(),
            })
        })
        .collect()
}

impl Validator<'_> {
    /// `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off] [status_zone=Z]`.
    /// Addresses are IPs (`[v6]`) or names, with `:port` or port 53; a name is looked
    /// up once, at load, and each of its addresses is a server, as nginx does.
    fn resolver(&self, d: &Directive) -> Result<ResolverConf> {
        let mut conf = ResolverConf {
            servers: Vec::new(),
            valid: None,
            ipv4: true,
            ipv6: true,
        };
        for a in &d.args {
            let v = a.value.as_str();
            let bad = || ConfigError::at(&d.span, format!("invalid parameter: {v}"));
            let on_off = |x: &str| match x {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err(bad()),
            };
            if let Some(t) = v.strip_prefix("valid=") {
                // nginx reads it in whole seconds: no `ms`; `valid=0` means the TTL.
                let time = super::values::parse_time(t)
                    .filter(|_| !t.contains("ms"))
                    .ok_or_else(bad)?;
                conf.valid = (!time.is_zero()).then_some(time);
            } else if let Some(x) = v.strip_prefix("ipv4=") {
                conf.ipv4 = on_off(x)?;
            } else if let Some(x) = v.strip_prefix("ipv6=") {
                conf.ipv6 = on_off(x)?;
            } else if v.starts_with("status_zone=") {
                // nginx Plus statistics; nothing to count here.
            } else {
                conf.servers.extend(self.resolver_servers(d, v)?);
            }
        }
        if !conf.ipv4 && !conf.ipv6 {
            return Err(ConfigError::at(
                &d.span,
                "\"ipv4\" and \"ipv6\" cannot both be \"off\"",
            ));
        }
        if conf.servers.is_empty() {
            return Err(ConfigError::at(&d.span, "no name servers defined"));
        }
        Ok(conf)
    }

    /// The servers one `resolver` address stands for.
    fn resolver_servers(&self, d: &Directive, v: &str) -> Result<Vec<std::net::SocketAddr>> {
        // A bare IPv6 address (nginx wants brackets; taken as written).
        if let Ok(ip) = v.parse::<std::net::IpAddr>() {
            return Ok(vec![std::net::SocketAddr::new(ip, 53)]);
        }
        let (host, port) = match super::address::parse_host_port(v) {
            Ok(hp) => hp,
            Err(super::address::HostPortError::InvalidPort) => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid port in resolver \"{v}\""),
                ))
            }
            Err(_) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("invalid resolver address \"{v}\""),
                    "write the DNS server's address or name, with :port if not 53 (127.0.0.11, [::1]:5353, dns.internal)",
                ))
            }
        };
        self.resolve(host, port.unwrap_or(53))
            .ok_or_else(|| ConfigError::at(&d.span, format!("host not found in resolver \"{v}\"")))
    }
}

/// `expires off|epoch|max|[modified] [-]TIME`; `None` for `off`.
fn expires(d: &Directive, names: &super::rewrite::VarNames) -> Result<Option<ExpiresConf>> {
    let bad = || {
        ConfigError::at(
            &d.span,
            format!(
                "invalid value \"{}\" in \"expires\"",
                d.arg(d.args.len() - 1)
            ),
        )
    };
    let (modified, v) = match (d.arg(0), d.args.len()) {
        ("modified", 2) => (true, d.arg(1)),
        (v, 1) => (false, v),
        _ => return Err(bad()),
    };
    if v.contains('$') {
        let value = templ(d, v, names)?;
        return Ok(Some(ExpiresConf::Var { modified, value }));
    }
    Ok(Expires::parse(modified, v)
        .map_err(|()| bad())?
        .map(ExpiresConf::Fixed))
}
