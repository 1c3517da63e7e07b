//! `geo` variables at run time: the address a request is looked up as (the client's,
//! or a variable's value; then, from a trusted proxy, the one `X-Forwarded-For`
//! names), and its value in the block's table.

use std::net::IpAddr;

use super::RequestVars;
use crate::config::geo::{self, Cidr, INADDR_NONE};
use crate::config::{GeoConf, GeoTable};

/// The value of `geo` block `g` for the request.
pub(super) fn value<'g>(g: &'g GeoConf, vars: &RequestVars<'_>) -> &'g str {
    lookup(g, address(g, vars))
}

/// The address `g` looks up, as `ngx_http_geo_addr`; `None` where nginx looks up
/// `255.255.255.255`: a Unix-socket client, or a source value that is no address.
fn address(g: &GeoConf, vars: &RequestVars<'_>) -> Option<IpAddr> {
    let addr = match &g.source {
        None => vars.remote.ip()?,
        Some(source) => {
            let mut text = Vec::new();
            vars.eval(source, &mut text);
            geo::parse_addr(std::str::from_utf8(&text).ok()?)?
        }
    };
    if g.proxies.is_empty() {
        return Some(addr);
    }
    let lines: Vec<&[u8]> = vars
        .head
        .header_values(vars.buf, "x-forwarded-for")
        .collect();
    Some(forwarded(addr, &lines, &g.proxies, g.proxy_recursive))
}

/// `ngx_http_get_forwarded_addr`: from a trusted proxy, the last address of the last
/// `X-Forwarded-For` line; with `recursive`, on back past every trusted proxy, line
/// by line.
pub fn forwarded(mut addr: IpAddr, lines: &[&[u8]], proxies: &[Cidr], recursive: bool) -> IpAddr {
    for line in lines.iter().rev() {
        let whole_line = walk_line(&mut addr, line, proxies, recursive);
        if !recursive || !whole_line {
            break;
        }
    }
    addr
}

fn is_separator(b: &u8) -> bool {
    matches!(b, b' ' | b',')
}

/// One line, from its end: true when every address of it was taken (so the walk may
/// go on to the line before).
fn walk_line(addr: &mut IpAddr, mut xff: &[u8], proxies: &[Cidr], recursive: bool) -> bool {
    loop {
        if !proxies.iter().any(|c| c.contains(*addr)) {
            return false;
        }
        // As nginx, the first byte is never taken for a separator.
        let mut len = xff.len();
        while len > 1 && is_separator(&xff[len - 1]) {
            len -= 1;
        }
        let start = match xff.get(1..len) {
            Some(rest) => rest.iter().rposition(is_separator).map_or(0, |i| i + 2),
            None => 0,
        };
        let parsed = std::str::from_utf8(&xff[start..len])
            .ok()
            .and_then(geo::parse_addr_port);
        let Some(ip) = parsed else {
            return false;
        };
        *addr = ip;
        if !recursive || start == 0 {
            return true;
        }
        xff = &xff[..start - 1];
    }
}

/// The value of `addr` in `g`'s table, as `ngx_http_geo_cidr_variable` and
/// `ngx_http_geo_range_variable` find it.
fn lookup(g: &GeoConf, addr: Option<IpAddr>) -> &str {
    let addr = addr.map(geo::unmap);
    let found = match &g.table {
        GeoTable::Cidr(nets) => match addr {
            Some(IpAddr::V6(a)) => nets.find_v6(u128::from(a)),
            Some(IpAddr::V4(a)) => nets.find_v4(u32::from(a)),
            None => nets.find_v4(INADDR_NONE),
        },
        GeoTable::Ranges { ranges, default } => {
            let ip = match addr {
                Some(IpAddr::V4(a)) => u32::from(a),
                _ => INADDR_NONE,
            };
            Some(ranges.find(ip).unwrap_or(default))
        }
    };
    found.map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_as_nginx_walks_it() {
        let proxies = [
            geo::parse_cidr("10.0.0.0/8").expect("net").0,
            geo::parse_cidr("192.168.1.1").expect("net").0,
        ];
        let one: &[&[u8]] = &[b"1.1.1.1, 10.0.0.5, 192.168.1.1"];
        // Not from a proxy: unchanged.
        assert_eq!(forwarded(ip("8.8.8.8"), one, &proxies, true), ip("8.8.8.8"));
        // Not recursive: the last address.
        assert_eq!(
            forwarded(ip("10.1.1.1"), one, &proxies, false),
            ip("192.168.1.1")
        );
        // Recursive: back past every proxy.
        assert_eq!(
            forwarded(ip("10.1.1.1"), one, &proxies, true),
            ip("1.1.1.1")
        );
        // Across lines, last line first.
        let two: &[&[u8]] = &[b"2.2.2.2", b"10.0.0.7,  ", b"10.0.0.9"];
        assert_eq!(
            forwarded(ip("10.1.1.1"), two, &proxies, true),
            ip("2.2.2.2")
        );
        assert_eq!(
            forwarded(ip("10.1.1.1"), two, &proxies, false),
            ip("10.0.0.9")
        );
        // A bad element stops the walk at the last good address.
        let bad: &[&[u8]] = &[b"1.1.1.1, junk, 10.0.0.3"];
        assert_eq!(
            forwarded(ip("10.1.1.1"), bad, &proxies, true),
            ip("10.0.0.3")
        );
        // Ports and brackets are taken off.
        let ported: &[&[u8]] = &[b"[2001:db8::1]:443"];
        assert_eq!(
            forwarded(ip("10.1.1.1"), ported, &proxies, false),
            ip("2001:db8::1")
        );
    }
}
