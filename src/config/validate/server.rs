//! `server` blocks: `listen`, `server_name`, a server-level `return`, and the
//! locations they hold (see `location`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use regex::RegexBuilder;

use super::address::{parse_host_port, parse_port, HostPortError};
use super::rewrite::Level;
use super::settings::Partial;
use super::tls::TlsPartial;
use super::{Result, Validator};
use crate::config::directives;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

impl Validator<'_> {
    /// A `server { }` block over the http-level settings `http`.
    pub(super) fn server(
        &mut self,
        d: &Directive,
        http: &Partial,
        http_tls: &TlsPartial,
    ) -> Result<ServerConf> {
        let mut p = Partial::default();
        let mut tls = TlsPartial::default();
        let mut listen: Vec<Listen> = Vec::new();
        let mut names = Vec::new();
        let mut primary_name = None;
        let mut raw_names: Vec<String> = Vec::new();
        let mut acme_line = None;
        let mut rewrite_ds = Vec::new();
        let mut loc_ds = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::SERVER)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "listen" => {
                    for l in self.listen(c)? {
                        if listen.iter().any(|x| x.addr == l.addr) {
                            return Err(ConfigError::at(
                                &c.span,
                                format!("a duplicate listen {}", l.addr),
                            ));
                        }
                        listen.push(l);
                    }
                }
                "server_name" => {
                    for a in &c.args {
                        // nginx's `$server_name` of `.example.com` is `example.com`.
                        primary_name.get_or_insert_with(|| {
                            a.value.strip_prefix('.').unwrap_or(&a.value).to_owned()
                        });
                        names.push(server_name(c, &a.value)?);
                        raw_names.push(a.value.clone());
                    }
                }
                "location" => loc_ds.push(c),
                "acme_certificate" => {
                    let line = self.acme_certificate_line(c)?;
                    super::once(&mut acme_line, line, c)?;
                }
                "return"
                | "rewrite"
                | "set"
                | "break"
                | "if"
                | "rewrite_log"
                | "uninitialized_variable_warn" => rewrite_ds.push(c),
                n if n.starts_with("ssl_") => self.tls_setting(&mut tls, c)?,
                _ => self.setting(&mut p, c)?,
            }
        }
        let merged = p.over(http);
        merged.charset.check(&d.span)?;
        let tls = tls.over(http_tls);
        if listen.is_empty() {
            let port = if self.env.is_root { 80 } else { 8000 };
            listen.push(Listen {
                addr: Endpoint::Inet(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
                default_server: false,
                ssl: false,
                http2: false,
                proxy_protocol: false,
                socket: None,
                span: d.span.clone(),
            });
        }
        if merged.http2 == Some(true) {
            for l in &mut listen {
                l.http2 = true;
            }
        }
        let acme = match acme_line {
            Some(line) => Some(self.acme_certificate(line, &raw_names)?),
            None => None,
        };
        if let (None, Some(cd)) = (&acme, tls.acme_certificate()) {
            // A TLS server of its own that would serve an always empty variable.
            if listen.iter().any(|l| l.ssl) {
                return Err(ConfigError::hinted(
                    &cd.span,
                    "\"$acme_certificate\" is empty in a server without \"acme_certificate\"",
                    "add acme_certificate ISSUER; to this server block",
                ));
            }
        }
        let server_tls = self.server_tls(&tls, d, acme.as_ref())?;
        if names.is_empty() {
            names.push(ServerName::Exact(String::new()));
        }
        let locations = self.locations(&loc_ds, &merged, None)?;
        // They run in nginx's server rewrite phase, before the location search.
        let rewrite = self.rewrite_ops(&rewrite_ds, &Level::Server)?;
        Ok(ServerConf {
            listen,
            server_names: names,
            primary_name: primary_name.unwrap_or_default(),
            locations,
            settings: merged.finish(Action::Static, rewrite, &self.env.prefix),
            verify_client: tls.verify_client(),
            tls: server_tls,
            span: d.span.clone(),
        })
    }

    /// `listen ADDR [params]`: one listen per address a host name resolves to.
    fn listen(&mut self, c: &Directive) -> Result<Vec<Listen>> {
        let mut default_server = false;
        let mut ssl = false;
        let mut http2 = false;
        let mut proxy_protocol = false;
        let mut socket = SocketOptions::default();
        let mut socket_set = false;
        for p in &c.args[1..] {
            let p = p.value.as_str();
            let name = p.split('=').next().unwrap_or(p);
            match name {
                "default_server" | "default" => default_server = true,
                "ssl" => ssl = true,
                "http2" => http2 = true,
                "quic" => return Err(ConfigError::at(
                    &c.span,
                    "\"quic\" parameter of \"listen\" is not supported: HTTP/3 is not supported",
                )),
                "proxy_protocol" => proxy_protocol = true,
                _ => {
                    if !self.listen_socket_option(c, p, &mut socket)? {
                        return Err(ConfigError::at(
                            &c.span,
                            format!("invalid parameter \"{p}\""),
                        ));
                    }
                    socket_set = true;
                }
            }
        }
        let socket = socket_set.then_some(socket);
        let written = c.arg(0);
        if let Some(path) = written.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("no path in the unix domain socket \"{written}\""),
                    "write listen unix:/run/ferrolb.sock;",
                ));
            }
            return Ok(vec![Listen {
                addr: Endpoint::Unix(path.into()),
                default_server,
                ssl,
                http2,
                proxy_protocol,
                socket,
                span: c.span.clone(),
            }]);
        }
        let (first, last_port) = super::listen::port_range(written).map_err(|e| {
            ConfigError::at(
                &c.span,
                format!("{e} in \"{written}\" of the \"listen\" directive"),
            )
        })?;
        let a = first.as_str();
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let invalid_port = || {
            ConfigError::at(
                &c.span,
                format!("invalid port in \"{a}\" of the \"listen\" directive"),
            )
        };
        let addrs = if a.bytes().all(|b| b.is_ascii_digit()) {
            vec![SocketAddr::new(
                any4,
                parse_port(a).ok_or_else(invalid_port)?,
            )]
        } else {
            let (host, port) = parse_host_port(a).map_err(|e| match e {
                HostPortError::InvalidPort => invalid_port(),
                _ => ConfigError::at(
                    &c.span,
                    format!("invalid host in \"{a}\" of the \"listen\" directive"),
                ),
            })?;
            let port = port.unwrap_or(80);
            if host == "*" {
                vec![SocketAddr::new(any4, port)]
            } else {
                self.resolve(host, port).ok_or_else(|| {
                    ConfigError::at(
                        &c.span,
                        format!("host not found in \"{a}\" of the \"listen\" directive"),
                    )
                })?
            }
        };
        let mut out = Vec::new();
        for addr in addrs {
            let last = last_port.unwrap_or(addr.port());
            for port in addr.port()..=last {
                let addr = SocketAddr::new(addr.ip(), port);
                // nginx: a name resolving to one address twice listens once.
                if out.iter().any(|l: &Listen| l.addr == Endpoint::Inet(addr)) {
                    continue;
                }
                out.push(Listen {
                    addr: Endpoint::Inet(addr),
                    default_server,
                    ssl,
                    http2,
                    proxy_protocol,
                    socket: socket.clone(),
                    span: c.span.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// One `server_name` value: exact, `*.x`/`.x`/`x.*` wildcard, or `~regex`.
pub(super) fn server_name(d: &Directive, v: &str) -> Result<ServerName> {
    if let Some(re) = v.strip_prefix('~') {
        // nginx compiles server name regexes caseless.
        let r = RegexBuilder::new(&super::values::pcre(re))
            .case_insensitive(true)
            .build()
            .map_err(|e| {
                ConfigError::at(&d.span, format!("invalid server name regex \"{v}\": {e}"))
            })?;
        return Ok(ServerName::Regex(r));
    }
    if v == "$hostname" {
        return Ok(ServerName::Exact(crate::config::hostname().to_owned()));
    }
    let lower = v.to_ascii_lowercase();
    let invalid = || ConfigError::at(&d.span, format!("invalid server name or wildcard \"{v}\""));
    if let Some(rest) = lower.strip_prefix('*') {
        if !rest.starts_with('.') || rest.len() < 2 || rest.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardStart {
            suffix: rest.to_owned(),
            matches_bare: false,
        });
    }
    if lower.starts_with('.') {
        if lower.len() < 2 || lower.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardStart {
            suffix: lower,
            matches_bare: true,
        });
    }
    if let Some(rest) = lower.strip_suffix('*') {
        if !rest.ends_with('.') || rest.len() < 2 || rest.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardEnd(rest.to_owned()));
    }
    if lower.contains('*') {
        return Err(invalid());
    }
    Ok(ServerName::Exact(lower))
}
