//! `host[:port]` as `server`, `proxy_pass` and `listen` write it, and looking the host
//! up. IP literals are taken as written; only names go to the configured
//! [`Resolve`](crate::config::Resolve), so a fixed table needs no entries for addresses.

use std::net::{IpAddr, SocketAddr};

use super::Validator;

/// Why `host[:port]` did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPortError {
    /// Port not in 1..=65535 or not a number.
    InvalidPort,
    /// Empty host.
    NoHost,
    /// An unbracketed IPv6 address or an unclosed `[`.
    InvalidHost,
}

/// Splits `host[:port]` / `[v6][:port]`; the host comes back without brackets.
pub fn parse_host_port(s: &str) -> std::result::Result<(&str, Option<u16>), HostPortError> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']').ok_or(HostPortError::InvalidHost)?;
        let after = &r[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(HostPortError::InvalidHost)?),
        };
        (&r[..end], port)
    } else {
        match s.rfind(':') {
            Some(i) if s[..i].contains(':') => return Err(HostPortError::InvalidHost),
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or(HostPortError::InvalidPort)?),
    };
    if host.is_empty() {
        return Err(HostPortError::NoHost);
    }
    Ok((host, port))
}

/// A port as nginx takes it: digits only, 1..=65535.
pub(super) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

impl Validator<'_> {
    /// Every address of `host` with `port`: an IP literal itself, a name whatever the
    /// configured resolver returns. `None` when the name is unknown or has no
    /// addresses, and the caller words the error for its directive.
    pub(super) fn resolve(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(vec![SocketAddr::new(ip, port)]);
        }
        let addrs = self.env.resolver.resolve(host, port).ok()?;
        (!addrs.is_empty()).then_some(addrs)
    }
}
