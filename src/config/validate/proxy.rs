//! `proxy_pass` (a declared upstream, or an implicit one made from `host:port`) and
//! the `proxy_next_upstream` condition list.

use std::time::Duration;

use super::address::{parse_host_port, HostPortError};
use super::location::is_regex;
use super::values::templ;
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

impl Validator<'_> {
    /// `proxy_pass http://host[:port][/uri]` in a location of `kind` and `pattern`.
    pub(super) fn proxy_pass(
        &mut self,
        d: &Directive,
        kind: LocationKind,
        pattern: &str,
    ) -> Result<ProxyPass> {
        self.proxy_pass_url(d, d.arg(0), kind, pattern)
    }

    /// The target of `url` (`http[s]://...`) for directive `d`.
    pub(super) fn proxy_pass_url(
        &mut self,
        d: &Directive,
        url: &str,
        kind: LocationKind,
        pattern: &str,
    ) -> Result<ProxyPass> {
        if url.contains('$') {
            return Ok(ProxyPass {
                protocol: UpstreamProtocol::Http,
                upstream: usize::MAX,
                scheme: "http".to_owned(),
                proxy_host: String::new(),
                uri: None,
                location_prefix: None,
                url: Some(templ(d, url, &self.names)?),
                tls: None,
            });
        }
        let lower = url.to_ascii_lowercase();
        let (scheme, default_port, rest) = if lower.starts_with("http://") {
            ("http", 80, &url[7..])
        } else if lower.starts_with("https://") {
            ("https", 443, &url[8..])
        } else {
            return Err(ConfigError::hinted(
                &d.span,
                format!("invalid URL prefix in \"{url}\""),
                "proxy_pass takes http://host[:port][/uri] or https://host[:port][/uri]",
            ));
        };
        if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case("unix:") {
            let mut pass = self.proxy_pass_unix(d, rest, kind, pattern)?;
            pass.scheme = scheme.to_owned();
            return Ok(pass);
        }
        let (hostport, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        if uri.is_some() && is_regex(kind) {
            return Err(ConfigError::at(
                &d.span,
                "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
            ));
        }
        let (host, port) = parse_host_port(hostport).map_err(|e| {
            ConfigError::at(
                &d.span,
                match e {
                    HostPortError::InvalidPort => {
                        format!("invalid port in upstream \"{hostport}\"")
                    }
                    HostPortError::NoHost => format!("no host in upstream \"{hostport}\""),
                    HostPortError::InvalidHost => {
                        format!("invalid host in upstream \"{hostport}\"")
                    }
                },
            )
        })?;
        let declared = self
            .upstreams
            .iter()
            .position(|u| !u.implicit && u.name.eq_ignore_ascii_case(host));
        let upstream = match (declared, port) {
            (Some(_), Some(port)) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("upstream \"{host}\" may not have port {port}"),
                    format!(
                    "ports go on the \"server\" lines of upstream \"{host}\"; write http://{host}"
                ),
                ))
            }
            (Some(i), None) => i,
            (None, port) => {
                let port = port.unwrap_or(default_port);
                let name = if host.contains(':') {
                    format!("[{}]:{port}", host.to_ascii_lowercase())
                } else {
                    format!("{}:{port}", host.to_ascii_lowercase())
                };
                match self
                    .upstreams
                    .iter()
                    .position(|u| u.implicit && u.name == name)
                {
                    Some(i) => i,
                    None => {
                        let addrs = self.resolve(host, port).ok_or_else(|| {
                            ConfigError::at(
                                &d.span,
                                format!("host not found in upstream \"{hostport}\""),
                            )
                        })?;
                        let peers = addrs
                            .into_iter()
                            .map(|addr| {
                                PeerConf::new(hostport.to_owned(), addr.into(), d.span.clone())
                            })
                            .collect();
                        self.upstreams.push(UpstreamConf {
                            name,
                            span: d.span.clone(),
                            implicit: true,
                            method: BalanceMethod::RoundRobin,
                            sticky: None,
                            peers,
                            keepalive: None,
                            keepalive_timeout: Duration::from_secs(60),
                            keepalive_time: Duration::from_secs(3600),
                            keepalive_requests: 1000,
                        });
                        self.upstreams.len() - 1
                    }
                }
            }
        };
        Ok(ProxyPass {
            protocol: UpstreamProtocol::Http,
            upstream,
            scheme: scheme.to_owned(),
            proxy_host: hostport.to_owned(),
            uri,
            location_prefix: (!is_regex(kind)).then(|| pattern.to_owned()),
            url: None,
            tls: None,
        })
    }

    /// `proxy_pass http://unix:/path.sock[:/uri]`: the path ends at the first `:`
    /// after it, as nginx reads it. The group is implicit, named `unix:/path.sock`,
    /// and `$proxy_host` is `localhost` (nginx's choice for Unix sockets).
    fn proxy_pass_unix(
        &mut self,
        d: &Directive,
        rest: &str,
        kind: LocationKind,
        pattern: &str,
    ) -> Result<ProxyPass> {
        let after = &rest[5..];
        let (path, uri) = match after.find(':') {
            Some(i) => (&after[..i], Some(after[i + 1..].to_owned())),
            None => (after, None),
        };
        if path.is_empty() {
            return Err(ConfigError::hinted(
                &d.span,
                format!("no path in the unix domain socket \"{rest}\""),
                "write proxy_pass http://unix:/run/app.sock; or http://unix:/run/app.sock:/uri/;",
            ));
        }
        if uri.as_deref().is_some_and(|u| !u.starts_with('/')) {
            return Err(ConfigError::hinted(
                &d.span,
                format!("invalid URI in \"{}\"", d.arg(0)),
                "the URI after the socket path starts with \"/\": http://unix:/run/app.sock:/uri/",
            ));
        }
        if uri.is_some() && is_regex(kind) {
            return Err(ConfigError::at(
                &d.span,
                "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
            ));
        }
        let name = format!("unix:{path}");
        let upstream = match self
            .upstreams
            .iter()
            .position(|u| u.implicit && u.name == name)
        {
            Some(i) => i,
            None => {
                let addr = Endpoint::Unix(path.into());
                self.upstreams.push(UpstreamConf {
                    name: name.clone(),
                    span: d.span.clone(),
                    implicit: true,
                    method: BalanceMethod::RoundRobin,
                    sticky: None,
                    peers: vec![PeerConf::new(name, addr, d.span.clone())],
                    keepalive: None,
                    keepalive_timeout: Duration::from_secs(60),
                    keepalive_time: Duration::from_secs(3600),
                    keepalive_requests: 1000,
                });
                self.upstreams.len() - 1
            }
        };
        Ok(ProxyPass {
            protocol: UpstreamProtocol::Http,
            upstream,
            scheme: "http".to_owned(),
            proxy_host: "localhost".to_owned(),
            uri,
            location_prefix: (!is_regex(kind)).then(|| pattern.to_owned()),
            url: None,
            tls: None,
        })
    }
}

/// `proxy_next_upstream` conditions; `off` only alone, each value once.
pub(super) fn next_upstream(d: &Directive) -> Result<NextUpstream> {
    let mut bits = 0u16;
    for a in &d.args {
        let v = a.value.as_str();
        let bit = match v {
            "off" if d.args.len() == 1 => return Ok(NextUpstream::OFF),
            "error" => NextUpstream::ERROR,
            "timeout" => NextUpstream::TIMEOUT,
            "invalid_header" => NextUpstream::INVALID_HEADER,
            "http_500" => NextUpstream::HTTP_500,
            "http_502" => NextUpstream::HTTP_502,
            "http_503" => NextUpstream::HTTP_503,
            "http_504" => NextUpstream::HTTP_504,
            "http_403" => NextUpstream::HTTP_403,
            "http_404" => NextUpstream::HTTP_404,
            "http_429" => NextUpstream::HTTP_429,
            "non_idempotent" => NextUpstream::NON_IDEMPOTENT,
            "off" => {
                return Err(ConfigError::hinted(
                    &d.span,
                    "invalid value \"off\" in \"proxy_next_upstream\" directive",
                    "\"off\" must be the only value",
                ))
            }
            other => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("invalid value \"{other}\" in \"proxy_next_upstream\" directive"),
                    "values are error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent, off",
                ))
            }
        };
        if bits & bit != 0 {
            return Err(ConfigError::at(&d.span, format!("duplicate value \"{v}\"")));
        }
        bits |= bit;
    }
    Ok(NextUpstream(bits))
}
