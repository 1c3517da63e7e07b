//! `upstream` blocks: their `server` lines (each name resolved once, every address a
//! peer), keepalive settings, the balancing method and `sticky`.

use std::net::SocketAddr;
use std::time::Duration;

use super::address::{parse_host_port, HostPortError};
use super::rewrite::VarNames;
use super::values::{invalid_value, number, parse_time, templ, time, TIME_HINT};
use super::{once, unreachable_directive, Result, Validator};
use crate::config::directives;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

impl Validator<'_> {
    /// An `upstream NAME { }` block, added to the declared upstreams.
    pub(super) fn upstream(&mut self, d: &Directive) -> Result<()> {
        let name = d.arg(0);
        if self
            .upstreams
            .iter()
            .any(|u| u.name.eq_ignore_ascii_case(name))
        {
            return Err(ConfigError::at(
                &d.span,
                format!("duplicate upstream \"{name}\""),
            ));
        }
        let mut peers = Vec::new();
        let mut keepalive = None;
        let mut keepalive_timeout = None;
        let mut keepalive_requests = None;
        let mut keepalive_time = None;
        let mut method = None;
        let mut sticky = None;
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::UPSTREAM)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "server" => peers.extend(self.peer(c)?),
                "keepalive" => {
                    let n: usize = number(c, c.arg(0))?;
                    if n == 0 {
                        return Err(invalid_value(c, "0", None));
                    }
                    once(&mut keepalive, n, c)?;
                }
                "keepalive_timeout" => once(&mut keepalive_timeout, time(c, c.arg(0))?, c)?,
                "keepalive_requests" => once(&mut keepalive_requests, number(c, c.arg(0))?, c)?,
                "keepalive_time" => once(&mut keepalive_time, time(c, c.arg(0))?, c)?,
                "least_conn" | "ip_hash" | "hash" | "random" | "least_time" => {
                    if method.is_some() {
                        self.warn(c, "load balancing method redefined".to_owned());
                    }
                    method = Some(balance_method(c, &self.names)?);
                }
                "sticky" => once(&mut sticky, sticky_conf(c)?, c)?,
                "zone" => self.upstream_zone(c)?,
                other => unreachable_directive(c, other)?,
            }
        }
        if peers.is_empty() {
            return Err(ConfigError::at(&d.span, "no servers are inside upstream"));
        }
        let method = method.unwrap_or_default();
        // nginx rejects `backup` once one of these methods is set; here the order of
        // the lines does not matter, so a backup that nginx would silently never use
        // is an error too.
        if let Some(b) = peers.iter().find(|p| p.backup && !method.allows_backup()) {
            return Err(ConfigError::hinted(
                &b.span,
                "balancing method does not support parameter \"backup\"",
                format!(
                    "\"{}\" never uses backup servers; remove \"backup\" or the method",
                    method.directive()
                ),
            ));
        }
        self.upstreams.push(UpstreamConf {
            name: name.to_owned(),
            span: d.span.clone(),
            implicit: false,
            method,
            sticky,
            peers,
            keepalive,
            keepalive_timeout: keepalive_timeout.unwrap_or(Duration::from_secs(60)),
            keepalive_requests: keepalive_requests.unwrap_or(1000),
            keepalive_time: keepalive_time.unwrap_or(Duration::from_secs(3600)),
        });
        Ok(())
    }

    /// One `server ADDR [params]` line: a peer per address the name resolves to.
    fn peer(&mut self, c: &Directive) -> Result<Vec<PeerConf>> {
        let addr = c.arg(0);
        let mut weight = 1;
        let mut max_fails = 1;
        let mut fail_timeout = Duration::from_secs(10);
        let mut backup = false;
        let mut down = false;
        let mut max_conns = 0;
        let mut slow_start = Duration::ZERO;
        for a in &c.args[1..] {
            let p = a.value.as_str();
            let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
            let num = |v: &str| -> Result<u32> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                v.parse().map_err(|_| bad())
            };
            if let Some(v) = p.strip_prefix("weight=") {
                weight = num(v)?;
                if weight == 0 {
                    return Err(bad());
                }
            } else if let Some(v) = p.strip_prefix("max_fails=") {
                max_fails = num(v)?;
            } else if let Some(v) = p.strip_prefix("fail_timeout=") {
                fail_timeout = parse_time(v).ok_or_else(bad)?;
            } else if let Some(v) = p.strip_prefix("max_conns=") {
                max_conns = num(v)?;
            } else if let Some(v) = p.strip_prefix("slow_start=") {
                slow_start = parse_time(v).ok_or_else(bad)?;
            } else if p == "backup" {
                backup = true;
            } else if p == "down" {
                down = true;
            } else {
                return Err(bad());
            }
        }
        let addrs = match addr.strip_prefix("unix:") {
            Some("") => {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("no path in the unix domain socket \"{addr}\""),
                    "write server unix:/run/app.sock;",
                ))
            }
            Some(path) => vec![Endpoint::Unix(path.into())],
            None => self
                .resolve_upstream(c, addr)?
                .into_iter()
                .map(Endpoint::Inet)
                .collect(),
        };
        Ok(addrs
            .into_iter()
            .map(|sa| PeerConf {
                name: addr.to_owned(),
                addr: sa,
                weight,
                max_fails,
                fail_timeout,
                backup,
                down,
                max_conns,
                slow_start,
                span: c.span.clone(),
            })
            .collect())
    }

    fn resolve_upstream(&mut self, d: &Directive, addr: &str) -> Result<Vec<SocketAddr>> {
        let (host, port) = parse_host_port(addr).map_err(|e| {
            ConfigError::at(
                &d.span,
                match e {
                    HostPortError::InvalidPort => format!("invalid port in upstream \"{addr}\""),
                    HostPortError::NoHost => format!("no host in upstream \"{addr}\""),
                    HostPortError::InvalidHost => format!("invalid host in upstream \"{addr}\""),
                },
            )
        })?;
        self.resolve(host, port.unwrap_or(80)).ok_or_else(|| {
            ConfigError::at(&d.span, format!("host not found in upstream \"{addr}\""))
        })
    }
}

/// One balancing method directive (`least_conn`, `ip_hash`, `hash`, `random`,
/// `least_time`); the argument count is already checked.
fn balance_method(c: &Directive, names: &VarNames) -> Result<BalanceMethod> {
    let bad = |a: &str| ConfigError::at(&c.span, format!("invalid parameter \"{a}\""));
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    Ok(match (c.name.as_str(), args.as_slice()) {
        ("least_conn", _) => BalanceMethod::LeastConn,
        ("ip_hash", _) => BalanceMethod::IpHash,
        ("hash", [key, rest @ ..]) => {
            if key.is_empty() {
                return Err(ConfigError::at(&c.span, "empty key in \"hash\""));
            }
            let consistent = match rest {
                [] => false,
                ["consistent"] => true,
                [other, ..] => return Err(bad(other)),
            };
            BalanceMethod::Hash {
                key: templ(c, key, names)?,
                consistent,
            }
        }
        ("random", []) => BalanceMethod::Random { two: false },
        ("random", ["two"] | ["two", "least_conn"]) => BalanceMethod::Random { two: true },
        ("random", ["two", other, ..] | [other, ..]) => {
            let hint = if *other == "least_time=header" || *other == "least_time=last_byte" {
                "\"random two least_time=\" is nginx Plus; use \"least_time\" or \"random two\""
            } else {
                "use \"random\", \"random two\" or \"random two least_conn\""
            };
            return Err(ConfigError::hinted(
                &c.span,
                format!("invalid parameter \"{other}\""),
                hint,
            ));
        }
        ("least_time", [point, rest @ ..]) => {
            let point = match *point {
                "header" => LatencyPoint::Header,
                "last_byte" => LatencyPoint::LastByte,
                other => {
                    return Err(ConfigError::hinted(
                        &c.span,
                        format!("invalid parameter \"{other}\""),
                        "use \"header\" or \"last_byte\"",
                    ))
                }
            };
            let mut inflight = false;
            let mut decay = None;
            for a in rest {
                if *a == "inflight" && !inflight {
                    inflight = true;
                } else if let Some(v) = a.strip_prefix("decay=").filter(|_| decay.is_none()) {
                    let t = parse_time(v)
                        .filter(|t| !t.is_zero())
                        .ok_or_else(|| invalid_value(c, a, Some(TIME_HINT)))?;
                    decay = Some(t);
                } else {
                    return Err(bad(a));
                }
            }
            BalanceMethod::LeastTime {
                point,
                inflight,
                decay: decay.unwrap_or(Duration::from_secs(10)),
            }
        }
        (_, _) => {
            return Err(ConfigError::at(
                &c.span,
                format!("invalid number of arguments in \"{}\" directive", c.name),
            ))
        }
    })
}

/// `sticky cookie NAME [expires=] [domain=] [path=] [httponly] [secure] [samesite=]`.
fn sticky_conf(c: &Directive) -> Result<StickyConf> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let (name, params) = match args.as_slice() {
        ["cookie", name, params @ ..] => (*name, params),
        ["cookie"] => {
            return Err(ConfigError::at(
                &c.span,
                "no cookie name in \"sticky cookie\"",
            ))
        }
        [mode, ..] => {
            return Err(ConfigError::hinted(
                &c.span,
                format!("\"sticky {mode}\" is not supported"),
                "use \"sticky cookie NAME\"",
            ))
        }
        [] => {
            return Err(ConfigError::at(
                &c.span,
                "invalid number of arguments in \"sticky\" directive",
            ))
        }
    };
    // A cookie name is an RFC 6265 token; anything else would break the header.
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    if !token(name) {
        return Err(ConfigError::at(
            &c.span,
            format!("invalid cookie name \"{name}\""),
        ));
    }
    let mut conf = StickyConf {
        cookie: name.to_owned(),
        expires: None,
        domain: None,
        path: None,
        httponly: false,
        secure: false,
        samesite: None,
    };
    // Attribute values go into the Set-Cookie header as written.
    let attr_ok = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    for p in params {
        let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
        if let Some(v) = p.strip_prefix("expires=") {
            conf.expires = Some(if v == "max" {
                Duration::from_secs(315_360_000)
            } else {
                parse_time(v).ok_or_else(|| invalid_value(c, p, Some(TIME_HINT)))?
            });
        } else if let Some(v) = p.strip_prefix("domain=") {
            conf.domain = Some(Some(v.to_owned()).filter(|v| attr_ok(v)).ok_or_else(bad)?);
        } else if let Some(v) = p.strip_prefix("path=") {
            conf.path = Some(Some(v.to_owned()).filter(|v| attr_ok(v)).ok_or_else(bad)?);
        } else if let Some(v) = p.strip_prefix("samesite=") {
            let v = match v.to_ascii_lowercase().as_str() {
                "strict" => "Strict",
                "lax" => "Lax",
                "none" => "None",
                _ => return Err(bad()),
            };
            conf.samesite = Some(v.to_owned());
        } else if *p == "httponly" {
            conf.httponly = true;
        } else if *p == "secure" {
            conf.secure = true;
        } else {
            return Err(bad());
        }
    }
    Ok(conf)
}

impl Validator<'_> {
    /// `zone NAME [SIZE]` in an upstream, checked as nginx checks it. ferrolb's peer
    /// state is shared by all worker threads anyway; the zone itself holds nothing.
    fn upstream_zone(&mut self, c: &Directive) -> Result<()> {
        let name = c.arg(0);
        if name.is_empty() {
            return Err(ConfigError::at(
                &c.span,
                format!("invalid zone name \"{name}\""),
            ));
        }
        let size = match c.args.get(1) {
            None => None,
            Some(a) => {
                let n = super::values::parse_size(&a.value).ok_or_else(|| {
                    ConfigError::at(&c.span, format!("invalid zone size \"{}\"", a.value))
                })?;
                // nginx: eight memory pages at least.
                if n < 8 * 4096 {
                    return Err(ConfigError::at(
                        &c.span,
                        format!("zone \"{name}\" is too small"),
                    ));
                }
                Some(n)
            }
        };
        self.upstream_zones
            .push((name.to_owned(), size, c.span.clone()));
        Ok(())
    }

    /// After the http block: a `zone NAME` without a size needs one with it.
    pub(super) fn upstream_zones_sized(&self) -> Result<()> {
        for (name, size, span) in &self.upstream_zones {
            if size.is_none()
                && !self
                    .upstream_zones
                    .iter()
                    .any(|(n, s, _)| n == name && s.is_some())
            {
                return Err(ConfigError::hinted(
                    span,
                    format!("zero size shared memory zone \"{name}\""),
                    format!("give the zone a size: zone {name} 64k;"),
                ));
            }
        }
        Ok(())
    }
}
