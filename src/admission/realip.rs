//! nginx's `ngx_http_realip_module`: when the connection comes from a trusted proxy
//! (`set_real_ip_from`), the client address is the one that proxy reports in
//! `real_ip_header` (`X-Real-IP` by default, `X-Forwarded-For`, any header, or the
//! PROXY protocol header). In an address list the right-most entry is taken; with
//! `real_ip_recursive on` the walk goes on leftwards past every trusted address, so the
//! result is the right-most address that is not a trusted proxy (or the left-most one).
//! An entry may carry a port (`192.0.2.1:5000`, `[2001:db8::1]:443`); an entry that is
//! not an address ends the walk where it is.

use std::net::{IpAddr, SocketAddr};

use crate::config::{AddrMatch, RealIpConf, RealIpHeader};
use crate::http1::RequestHead;
use crate::net::{ClientAddr, ClientInfo};

/// True when `addr` is one of the trusted proxies.
fn trusted(from: &[AddrMatch], addr: ClientAddr) -> bool {
    from.iter().any(|m| m.matches(addr.ip()))
}

/// The client as `conf` makes it out for a request from `info` (whose `remote` is the
/// address in force); `None` when nothing changes (an untrusted peer, no such header,
/// no address in it).
pub fn real_client(
    conf: &RealIpConf,
    info: &ClientInfo,
    head: &RequestHead,
    buf: &[u8],
) -> Option<ClientInfo> {
    if !trusted(&conf.from, info.remote) {
        return None;
    }
    let found = match &conf.header {
        RealIpHeader::ProxyProtocol => {
            let pp = info.proxy_protocol.as_deref()?;
            let ip: IpAddr = pp.src_ip()?;
            SocketAddr::new(ip, pp.src_port)
        }
        RealIpHeader::XForwardedFor => {
            // Every line, as one list (nginx walks the lines from the last).
            let mut joined = Vec::new();
            for v in head.header_values(buf, "x-forwarded-for") {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v);
            }
            if joined.is_empty() && head.header_value(buf, "x-forwarded-for").is_none() {
                return None;
            }
            walk(&joined, &conf.from, conf.recursive)?
        }
        RealIpHeader::XRealIp => walk(
            head.header_value(buf, "x-real-ip")?,
            &conf.from,
            conf.recursive,
        )?,
        RealIpHeader::Other(name) => {
            walk(head.header_value(buf, name)?, &conf.from, conf.recursive)?
        }
    };
    Some(ClientInfo {
        remote: ClientAddr::Inet(found),
        ..info.clone()
    })
}

/// The address a list of addresses gives (see the module doc).
fn walk(list: &[u8], from: &[AddrMatch], recursive: bool) -> Option<SocketAddr> {
    let separator = |b: &u8| *b == b' ' || *b == b',';
    let mut end = list.len();
    let mut found = None;
    loop {
        while end > 1 && separator(&list[end - 1]) {
            end -= 1;
        }
        let start = list[..end].iter().rposition(separator).map_or(0, |i| i + 1);
        let Some(addr) = parse_addr_port(&list[start..end]) else {
            return found;
        };
        found = Some(addr);
        if !recursive || start == 0 || !trusted(from, ClientAddr::Inet(addr)) {
            return found;
        }
        end = start - 1;
    }
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`; a
/// missing port is 0 (nginx's, an empty `$remote_port`).
fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after {
            "" => 0,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some(SocketAddr::new(ip.parse().ok()?, port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (ip, port) = text.rsplit_once(':')?;
    Some(SocketAddr::new(
        ip.parse::<std::net::Ipv4Addr>().ok()?.into(),
        port.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<AddrMatch> {
        list.iter()
            .map(|s| match *s {
                "unix:" => AddrMatch::Unix,
                s => AddrMatch::Net(s.parse().expect("net")),
            })
            .collect()
    }

    fn ip(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn walked(list: &str, recursive: bool) -> Option<String> {
        let from = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        walk(list.as_bytes(), &from, recursive).map(|a| a.ip().to_string())
    }

    #[test]
    fn right_most_or_first_untrusted() {
        assert_eq!(walked("203.0.113.5", false), ip("203.0.113.5"));
        assert_eq!(
            walked("1.1.1.1, 203.0.113.5, 10.0.0.7", false),
            ip("10.0.0.7")
        );
        assert_eq!(
            walked("1.1.1.1, 203.0.113.5, 10.0.0.7", true),
            ip("203.0.113.5")
        );
        assert_eq!(walked("1.1.1.1,10.1.1.1 192.168.1.1", true), ip("1.1.1.1"));
        // All trusted: the left-most.
        assert_eq!(walked("10.0.0.1, 10.0.0.2", true), ip("10.0.0.1"));
        // Trailing separators are skipped; garbage stops the walk where it is.
        assert_eq!(walked("203.0.113.5, ", false), ip("203.0.113.5"));
        assert_eq!(walked("garbage, 10.0.0.3", true), ip("10.0.0.3"));
        assert_eq!(walked("10.0.0.3, garbage", true), None);
        assert_eq!(walked("", true), None);
        assert_eq!(walked("2001:db8::1, 10.0.0.3", true), ip("2001:db8::1"));
    }

    #[test]
    fn ports() {
        let p = |s: &str| parse_addr_port(s.as_bytes());
        assert_eq!(
            p("192.0.2.1:5000"),
            Some("192.0.2.1:5000".parse().expect("a"))
        );
        assert_eq!(
            p("[2001:db8::1]:443"),
            Some("[2001:db8::1]:443".parse().expect("a"))
        );
        assert_eq!(
            p("[2001:db8::1]"),
            Some("[2001:db8::1]:0".parse().expect("a"))
        );
        assert_eq!(p("::1"), Some("[::1]:0".parse().expect("a")));
        assert_eq!(p("192.0.2.1:x"), None);
        assert_eq!(p("host.example"), None);
    }

    #[test]
    fn trust_is_by_peer() {
        let from = nets(&["127.0.0.1/32", "unix:"]);
        assert!(trusted(&from, ClientAddr::Unix));
        assert!(trusted(
            &from,
            ClientAddr::Inet("127.0.0.1:9".parse().expect("a"))
        ));
        assert!(trusted(
            &from,
            ClientAddr::Inet("[::ffff:127.0.0.1]:9".parse().expect("a"))
        ));
        assert!(!trusted(
            &from,
            ClientAddr::Inet("127.0.0.2:9".parse().expect("a"))
        ));
    }
}
