//! The socket options of `listen` (nginx's "listen options": `backlog=`, `rcvbuf=`,
//! `sndbuf=`, `reuseport`, `ipv6only=`, `so_keepalive=`, `deferred`, `fastopen=`,
//! `bind`), parsed as `ngx_http_core_listen` parses them, and port ranges
//! (`listen 8000-8003`, nginx 1.27.3 and later).

use super::values::{parse_size, parse_time};
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::{SoKeepalive, SocketOptions};

/// nginx's `ngx_atoi`: decimal digits only, no sign, fits an `i32`.
fn atoi(s: &str) -> Option<i32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Validator<'_> {
    /// Takes `p` into `opts` when it is a socket option of `listen`; `Ok(false)` when
    /// it is some other parameter.
    pub(super) fn listen_socket_option(
        &mut self,
        c: &Directive,
        p: &str,
        opts: &mut SocketOptions,
    ) -> Result<bool> {
        let invalid = |what: &str| ConfigError::at(&c.span, format!("invalid {what} \"{p}\""));
        if p == "bind" {
            opts.bind = true;
        } else if p == "reuseport" {
            opts.reuseport = true;
        } else if p == "deferred" {
            opts.deferred = true;
        } else if let Some(v) = p.strip_prefix("backlog=") {
            opts.backlog = atoi(v)
                .filter(|&n| n > 0)
                .ok_or_else(|| invalid("backlog"))?;
        } else if let Some(v) = p.strip_prefix("rcvbuf=") {
            opts.rcvbuf = Some(buffer_size(v).ok_or_else(|| invalid("rcvbuf"))?);
        } else if let Some(v) = p.strip_prefix("sndbuf=") {
            opts.sndbuf = Some(buffer_size(v).ok_or_else(|| invalid("sndbuf"))?);
        } else if let Some(v) = p.strip_prefix("fastopen=") {
            opts.fastopen = Some(atoi(v).ok_or_else(|| invalid("fastopen"))?);
        } else if let Some(v) = p.strip_prefix("ipv6only=") {
            opts.ipv6only = match v {
                "on" => true,
                "off" => false,
                // nginx's wording; anything not starting with "o" is an unknown parameter.
                _ if v.starts_with('o') => {
                    return Err(ConfigError::at(
                        &c.span,
                        format!("invalid ipv6only flags \"{v}\""),
                    ))
                }
                _ => return Ok(false),
            };
        } else if let Some(v) = p.strip_prefix("so_keepalive=") {
            opts.keepalive = Some(so_keepalive(v).ok_or_else(|| {
                ConfigError::at(&c.span, format!("invalid so_keepalive value: \"{v}\""))
            })?);
        } else if p.starts_with("accept_filter=") {
            // nginx on Linux says so at "emerg" level and starts anyway.
            self.warn(
                c,
                format!(
                    "accept filters \"{p}\" are not supported on this platform, ignored (FreeBSD's; \"deferred\" is Linux's like)"
                ),
            );
        } else if p.starts_with("setfib=") {
            return Err(ConfigError::hinted(
                &c.span,
                format!("invalid parameter \"{p}\": \"setfib\" is FreeBSD's (SO_SETFIB), not supported on Linux"),
                "remove it; on Linux, route with ip rule / policy routing instead",
            ));
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

/// `rcvbuf=` / `sndbuf=`: nginx's size syntax, as an `int` for `setsockopt`.
fn buffer_size(v: &str) -> Option<i32> {
    parse_size(v).and_then(|n| i32::try_from(n).ok())
}

/// `so_keepalive=on|off|[keepidle]:[keepintvl]:[keepcnt]`; the times take nginx's
/// units down to seconds (no `ms`), and at least one of the three must be given.
fn so_keepalive(v: &str) -> Option<SoKeepalive> {
    match v {
        "on" => {
            return Some(SoKeepalive::On {
                idle: None,
                interval: None,
                count: None,
            })
        }
        "off" => return Some(SoKeepalive::Off),
        _ => {}
    }
    let mut parts = v.splitn(3, ':');
    let secs = |s: Option<&str>| -> Option<Option<u32>> {
        match s {
            None | Some("") => Some(None),
            Some(s) if s.contains("ms") => None,
            Some(s) => u32::try_from(parse_time(s)?.as_secs()).ok().map(Some),
        }
    };
    let idle = secs(parts.next())?;
    let interval = secs(parts.next())?;
    let count = match parts.next() {
        None | Some("") => None,
        Some(s) => Some(u32::try_from(atoi(s)?).ok()?),
    };
    // nginx: a value of 0 counts as not given, and one of them must be there.
    let idle = idle.filter(|&n| n > 0);
    let interval = interval.filter(|&n| n > 0);
    let count = count.filter(|&n| n > 0);
    if idle.is_none() && interval.is_none() && count.is_none() {
        return None;
    }
    Some(SoKeepalive::On {
        idle,
        interval,
        count,
    })
}

/// Splits a port range off a `listen` address: `8000-8003`, `*:8000-8003`,
/// `[::1]:8000-8003` give the address with the first port and the last port.
/// `Err` carries nginx's reason (`invalid port`, `invalid port range`).
pub(super) fn port_range(a: &str) -> std::result::Result<(String, Option<u16>), &'static str> {
    if a.starts_with("unix:") {
        return Ok((a.to_owned(), None));
    }
    let port_start = if a.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        0
    } else if let Some(close) = a.rfind(']') {
        match a[close..].find(':') {
            Some(i) => close + i + 1,
            None => return Ok((a.to_owned(), None)),
        }
    } else {
        match a.rfind(':') {
            Some(i) => i + 1,
            None => return Ok((a.to_owned(), None)),
        }
    };
    let Some((first, last)) = a[port_start..].split_once('-') else {
        return Ok((a.to_owned(), None));
    };
    let last = atoi(last)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or("invalid port")?;
    let first_n = atoi(first)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or("invalid port")?;
    if first_n > last {
        return Err("invalid port range");
    }
    Ok((format!("{}{first}", &a[..port_start]), Some(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_forms() {
        assert_eq!(so_keepalive("off"), Some(SoKeepalive::Off));
        assert_eq!(
            so_keepalive("30m::10"),
            Some(SoKeepalive::On {
                idle: Some(1800),
                interval: None,
                count: Some(10)
            })
        );
        assert_eq!(
            so_keepalive(":5"),
            Some(SoKeepalive::On {
                idle: None,
                interval: Some(5),
                count: None
            })
        );
        assert_eq!(so_keepalive("::"), None);
        assert_eq!(so_keepalive("0:0:0"), None);
        assert_eq!(so_keepalive("10ms"), None);
        assert_eq!(so_keepalive("x"), None);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("8000-8003"), Ok(("8000".into(), Some(8003))));
        assert_eq!(
            port_range("127.0.0.1:8000-8001"),
            Ok(("127.0.0.1:8000".into(), Some(8001)))
        );
        assert_eq!(port_range("[::1]:80-81"), Ok(("[::1]:80".into(), Some(81))));
        assert_eq!(port_range("[::1]"), Ok(("[::1]".into(), None)));
        assert_eq!(port_range("localhost"), Ok(("localhost".into(), None)));
        assert_eq!(port_range("8003-8000"), Err("invalid port range"));
        assert_eq!(port_range("80-"), Err("invalid port"));
        assert_eq!(port_range("80-70000"), Err("invalid port"));
    }
}
