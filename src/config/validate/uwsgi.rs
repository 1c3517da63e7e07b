//! `uwsgi_pass` and the uwsgi module's settings. The target is an upstream group or an
//! address like `proxy_pass`'s, so requests to it go through the same groups,
//! balancing, health and retries; the settings that have a `proxy_*` twin
//! (`uwsgi_read_timeout`, `uwsgi_next_upstream`, `uwsgi_hide_header`, ...) are the
//! twin's values in a location that passes to uWSGI.

use std::time::Duration;

use super::proxy::next_upstream;
use super::values::{flag, invalid_value, number, parse_size, templ, time, SIZE_HINT};
use super::{once, Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

/// The uwsgi settings of one level before merging; `None`: not set here.
#[derive(Debug, Clone, Default)]
pub(super) struct UwsgiPartial {
    pub(super) params: Option<Vec<UwsgiParam>>,
    pub(super) modifier1: Option<u8>,
    pub(super) modifier2: Option<u8>,
    pub(super) pass_request_headers: Option<bool>,
    pub(super) pass_request_body: Option<bool>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) read_timeout: Option<Duration>,
    pub(super) send_timeout: Option<Duration>,
    pub(super) next_upstream: Option<NextUpstream>,
    pub(super) next_upstream_tries: Option<u32>,
    pub(super) next_upstream_timeout: Option<Duration>,
    pub(super) hide_header: Option<Vec<String>>,
    pub(super) pass_header: Option<Vec<String>>,
    pub(super) intercept_errors: Option<bool>,
    /// `uwsgi_ignore_client_abort`.
    pub(super) ignore_client_abort: Option<bool>,
    pub(super) request_buffering: Option<bool>,
    pub(super) buffer_size: Option<usize>,
}

impl UwsgiPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &UwsgiPartial) -> UwsgiPartial {
        macro_rules! pick {
            ($($f:ident),*) => { UwsgiPartial {
                $($f: self.$f.clone().or_else(|| parent.$f.clone()),)*
            } };
        }
        pick!(
            params,
            modifier1,
            modifier2,
            pass_request_headers,
            pass_request_body,
            connect_timeout,
            read_timeout,
            send_timeout,
            next_upstream,
            next_upstream_tries,
            next_upstream_timeout,
            hide_header,
            pass_header,
            intercept_errors,
            ignore_client_abort,
            request_buffering,
            buffer_size
        )
    }

    /// The request settings with nginx's defaults.
    pub(super) fn finish(&self) -> UwsgiConf {
        let params = self.params.clone().unwrap_or_default();
        let replaced_fields = params
            .iter()
            .filter_map(|p| p.name.strip_prefix("HTTP_").filter(|n| !n.is_empty()))
            .map(|n| n.to_ascii_lowercase().replace('-', "_"))
            .collect();
        UwsgiConf {
            params,
            replaced_fields,
            modifier1: self.modifier1.unwrap_or(0),
            modifier2: self.modifier2.unwrap_or(0),
            pass_request_headers: self.pass_request_headers.unwrap_or(true),
            pass_request_body: self.pass_request_body.unwrap_or(true),
        }
    }
}

impl Validator<'_> {
    /// `uwsgi_pass [uwsgi://]ADDRESS`: a group name, `host:port` or `unix:/path`; no
    /// URI. The address is resolved as `proxy_pass`'s.
    pub(super) fn uwsgi_pass(
        &mut self,
        d: &Directive,
        kind: LocationKind,
        pattern: &str,
    ) -> Result<ProxyPass> {
        let arg = d.arg(0);
        if arg.contains('$') {
            // Evaluated per request, found as `proxy_pass` with variables finds its
            // target.
            return Ok(ProxyPass {
                protocol: UpstreamProtocol::Uwsgi,
                upstream: usize::MAX,
                scheme: "uwsgi".to_owned(),
                proxy_host: String::new(),
                uri: None,
                location_prefix: None,
                url: Some(templ(d, arg, &self.names)?),
                tls: None,
            });
        }
        let lower = arg.to_ascii_lowercase();
        let tls = lower.starts_with("suwsgi://");
        let address = if tls {
            &arg[9..]
        } else if lower.starts_with("uwsgi://") {
            &arg[8..]
        } else {
            arg
        };
        let is_unix = address.len() >= 5 && address[..5].eq_ignore_ascii_case("unix:");
        let has_uri = if is_unix {
            address[5..].contains(':')
        } else {
            address.contains('/')
        };
        if has_uri || address.is_empty() {
            return Err(ConfigError::hinted(
                &d.span,
                format!("invalid address \"{arg}\" in \"uwsgi_pass\""),
                "uwsgi_pass takes an upstream name, host:port or unix:/path, without a URI",
            ));
        }
        if !is_unix && !address.contains(':') {
            let declared = self
                .upstreams
                .iter()
                .any(|u| !u.implicit && u.name.eq_ignore_ascii_case(address));
            if !declared {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("no port in upstream \"{address}\""),
                    "write the port (uwsgi_pass 127.0.0.1:8001;) or declare an upstream block of that name",
                ));
            }
        }
        let mut pass = self.proxy_pass_url(d, &format!("http://{address}"), kind, pattern)?;
        pass.protocol = UpstreamProtocol::Uwsgi;
        // `suwsgi`: connected over TLS with the `uwsgi_ssl_*` settings (see
        // `Validator::upstream_tls`, called once the location's settings are merged).
        pass.scheme = if tls { "suwsgi" } else { "uwsgi" }.to_owned();
        Ok(pass)
    }

    /// The uwsgi module's settings at http, server and location level.
    pub(super) fn uwsgi_setting(&mut self, p: &mut UwsgiPartial, d: &Directive) -> Result<()> {
        let a0 = d.arg(0);
        match d.name.as_str() {
            "uwsgi_param" => {
                let if_not_empty = match d.args.get(2).map(|a| a.value.as_str()) {
                    None => false,
                    Some("if_not_empty") => true,
                    Some(other) => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid parameter \"{other}\""),
                        ))
                    }
                };
                let value = templ(d, d.arg(1), &self.names)?;
                p.params.get_or_insert_with(Vec::new).push(UwsgiParam {
                    name: a0.to_owned(),
                    value,
                    if_not_empty,
                });
            }
            "uwsgi_modifier1" | "uwsgi_modifier2" => {
                let n: u32 = number(d, a0)?;
                let n = u8::try_from(n).map_err(|_| {
                    invalid_value(d, a0, Some("a uwsgi modifier is a number from 0 to 255"))
                })?;
                let slot = if d.name == "uwsgi_modifier1" {
                    &mut p.modifier1
                } else {
                    &mut p.modifier2
                };
                once(slot, n, d)?;
            }
            "uwsgi_pass_request_headers" => once(&mut p.pass_request_headers, flag(d)?, d)?,
            "uwsgi_pass_request_body" => once(&mut p.pass_request_body, flag(d)?, d)?,
            "uwsgi_connect_timeout" => once(&mut p.connect_timeout, time(d, a0)?, d)?,
            "uwsgi_read_timeout" => once(&mut p.read_timeout, time(d, a0)?, d)?,
            "uwsgi_send_timeout" => once(&mut p.send_timeout, time(d, a0)?, d)?,
            "uwsgi_next_upstream" => once(&mut p.next_upstream, next_upstream(d)?, d)?,
            "uwsgi_next_upstream_tries" => once(&mut p.next_upstream_tries, number(d, a0)?, d)?,
            "uwsgi_next_upstream_timeout" => once(&mut p.next_upstream_timeout, time(d, a0)?, d)?,
            "uwsgi_hide_header" => p
                .hide_header
                .get_or_insert_with(Vec::new)
                .push(a0.to_ascii_lowercase()),
            "uwsgi_pass_header" => p
                .pass_header
                .get_or_insert_with(Vec::new)
                .push(a0.to_ascii_lowercase()),
            "uwsgi_intercept_errors" => once(&mut p.intercept_errors, flag(d)?, d)?,
            "uwsgi_ignore_client_abort" => once(&mut p.ignore_client_abort, flag(d)?, d)?,
            "uwsgi_request_buffering" => once(&mut p.request_buffering, flag(d)?, d)?,
            "uwsgi_buffer_size" => {
                let size = parse_size(a0)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.buffer_size, size, d)?;
            }
            other => super::unreachable_directive(d, other)?,
        }
        Ok(())
    }
}
