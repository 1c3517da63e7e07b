//! The address tables of `geo` blocks, and nginx's address syntax for them
//! (`ngx_inet_addr`, `ngx_ptocidr`, `ngx_parse_addr_port`, `ngx_cidr_match`).
//!
//! Two tables, as `ngx_http_geo_module.c` has: networks with longest-prefix match
//! ([`PrefixTable`], nginx's radix trees), and IPv4 ranges kept per /16 as nginx keeps
//! them ([`RangeTable`]), so that overlaps are accepted or refused exactly where nginx
//! accepts or refuses them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// nginx's `INADDR_NONE`: what a client without an IPv4 address (a Unix-socket client,
/// an unparsable source value, IPv6 in `ranges` mode) is looked up as.
pub const INADDR_NONE: u32 = 0xffff_ffff;

/// A network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cidr {
    /// IPv4, prefix length 0..=32.
    V4 {
        /// The network address.
        addr: u32,
        /// Prefix length.
        len: u8,
    },
    /// IPv6, prefix length 0..=128.
    V6 {
        /// The network address.
        addr: u128,
        /// Prefix length.
        len: u8,
    },
}

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl Cidr {
    /// Whether `ip` is in the network, as `ngx_cidr_match`: an IPv4-mapped IPv6
    /// address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, unmap(ip)) {
            (Cidr::V4 { addr, len }, IpAddr::V4(a)) => u32::from(a) & mask4(*len) == *addr,
            (Cidr::V6 { addr, len }, IpAddr::V6(a)) => u128::from(a) & mask6(*len) == *addr,
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; others unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// `ngx_inet_addr`: dotted decimal with exactly four parts, each at most 255 (an
/// empty part is 0, as nginx reads it). `255.255.255.255` is not an address here,
/// as in nginx, where it is the error value.
pub fn parse_ipv4(text: &str) -> Option<u32> {
    let (mut addr, mut octet, mut dots) = (0u32, 0u32, 0);
    for c in text.bytes() {
        match c {
            b'0'..=b'9' => {
                octet = octet * 10 + u32::from(c - b'0');
                if octet > 255 {
                    return None;
                }
            }
            b'.' => {
                addr = (addr << 8) + octet;
                octet = 0;
                dots += 1;
                if dots > 3 {
                    return None;
                }
            }
            _ => return None,
        }
    }
    let addr = (dots == 3).then(|| (addr << 8) + octet)?;
    (addr != INADDR_NONE).then_some(addr)
}

/// `ngx_parse_addr`: an IPv4 or IPv6 address without a port.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Some(a) = parse_ipv4(text) {
        return Some(IpAddr::V4(a.into()));
    }
    text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// `ngx_parse_addr_port`: an address, optionally with a port (`1.2.3.4:80`,
/// `[::1]:80`); the port is checked and dropped.
pub fn parse_addr_port(text: &str) -> Option<IpAddr> {
    if let Some(a) = parse_addr(text) {
        return Some(a);
    }
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => text.split_once(':')?,
    };
    let port: u32 = port
        .parse()
        .ok()
        .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))?;
    if !(1..=65535).contains(&port) {
        return None;
    }
    parse_addr(host)
}

/// A network as `ngx_ptocidr` reads it (`10.0.0.0/8`, `::1`, `2001:db8::/32`; no
/// length means the one address). The flag is true when host bits were set and have
/// been cleared (nginx warns: `low address bits of ... are meaningless`).
pub fn parse_cidr(text: &str) -> Option<(Cidr, bool)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let len = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            Some(l.parse::<u8>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    if let Some(a) = parse_ipv4(addr) {
        let len = len.unwrap_or(32);
        if len > 32 {
            return None;
        }
        let net = a & mask4(len);
        return Some((Cidr::V4 { addr: net, len }, net != a));
    }
    let a = u128::from(addr.parse::<Ipv6Addr>().ok()?);
    let len = len.unwrap_or(128);
    if len > 128 {
        return None;
    }
    let net = a & mask6(len);
    Some((Cidr::V6 { addr: net, len }, net != a))
}

/// Networks with values, found by longest prefix (nginx's radix trees): one table per
/// address family, each a map per prefix length.
#[derive(Debug, Clone, Default)]
pub struct PrefixTable<V> {
    v4: BTreeMap<u8, HashMap<u32, V>>,
    v6: BTreeMap<u8, HashMap<u128, V>>,
}

impl<V> PrefixTable<V> {
    /// Sets the value of a network, giving back the one it replaces.
    pub fn insert(&mut self, net: Cidr, value: V) -> Option<V> {
        match net {
            Cidr::V4 { addr, len } => self.v4.entry(len).or_default().insert(addr, value),
            Cidr::V6 { addr, len } => self.v6.entry(len).or_default().insert(addr, value),
        }
    }

    /// Removes a network (exactly as written, not the ones inside it); `None` when
    /// there was none.
    pub fn remove(&mut self, net: Cidr) -> Option<V> {
        match net {
            Cidr::V4 { addr, len } => self.v4.get_mut(&len)?.remove(&addr),
            Cidr::V6 { addr, len } => self.v6.get_mut(&len)?.remove(&addr),
        }
    }

    /// The value of an exact network.
    pub fn get(&self, net: Cidr) -> Option<&V> {
        match net {
            Cidr::V4 { addr, len } => self.v4.get(&len)?.get(&addr),
            Cidr::V6 { addr, len } => self.v6.get(&len)?.get(&addr),
        }
    }

    /// The value of the longest network holding an IPv4 address.
    pub fn find_v4(&self, ip: u32) -> Option<&V> {
        self.v4
            .iter()
            .rev()
            .find_map(|(len, nets)| nets.get(&(ip & mask4(*len))))
    }

    /// The value of the longest network holding an IPv6 address.
    pub fn find_v6(&self, ip: u128) -> Option<&V> {
        self.v6
            .iter()
            .rev()
            .find_map(|(len, nets)| nets.get(&(ip & mask6(*len))))
    }
}

/// One range inside a /16: low 16 bits of its first and last address.
#[derive(Debug, Clone)]
struct Range16<V> {
    start: u16,
    end: u16,
    value: V,
}

/// Why a range cannot be added: it overlaps this one (in one /16) without lying
/// inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// First address of the range it overlaps.
    pub start: u32,
    /// Last address of the range it overlaps.
    pub end: u32,
}

/// IPv4 ranges with values, kept per /16 (the high 16 bits) in address order, as
/// nginx's `geo ... { ranges; }`: a new range may lie inside an existing one (which it
/// splits) but may not overlap one partly.
#[derive(Debug, Clone)]
pub struct RangeTable<V> {
    chunks: HashMap<u16, Vec<Range16<V>>>,
}

impl<V> Default for RangeTable<V> {
    fn default() -> Self {
        RangeTable {
            chunks: HashMap::new(),
        }
    }
}

/// The /16 pieces of `start..=end`: (high 16 bits, low start, low end).
fn pieces(start: u32, end: u32) -> impl Iterator<Item = (u16, u16, u16)> {
    let first = start >> 16;
    let last = end >> 16;
    (first..=last).map(move |h| {
        let s = if h == first { start & 0xffff } else { 0 };
        let e = if h == last { end & 0xffff } else { 0xffff };
        // Each part fits: `h` < 2^16 and the low halves are masked.
        (h as u16, s as u16, e as u16)
    })
}

impl<V: Clone> RangeTable<V> {
    /// Adds `start..=end` (`start <= end`). `Ok(Some(old))` when it replaced a range
    /// of the same bounds in some /16 (nginx warns `duplicate range`), with the first
    /// value replaced.
    pub fn add(&mut self, start: u32, end: u32, value: V) -> Result<Option<V>, Overlap> {
        let mut replaced = None;
        for (h, s, e) in pieces(start, end) {
            let ranges = self.chunks.entry(h).or_default();
            let old = add_piece(ranges, s, e, &value).map_err(|(s, e)| Overlap {
                start: (u32::from(h) << 16) | u32::from(s),
                end: (u32::from(h) << 16) | u32::from(e),
            })?;
            replaced = replaced.or(old);
        }
        Ok(replaced)
    }

    /// Deletes the ranges of exactly these bounds in each /16; false when some /16 had
    /// none (nginx warns `no address range ... to delete`).
    pub fn delete(&mut self, start: u32, end: u32) -> bool {
        let mut all = true;
        for (h, s, e) in pieces(start, end) {
            let ranges = self.chunks.entry(h).or_default();
            match ranges.iter().position(|r| r.start == s && r.end == e) {
                Some(i) => {
                    ranges.remove(i);
                }
                None => all = false,
            }
        }
        all
    }

    /// The value of the range holding `ip`.
    pub fn find(&self, ip: u32) -> Option<&V> {
        // Both halves fit in 16 bits.
        let (h, n) = ((ip >> 16) as u16, (ip & 0xffff) as u16);
        self.chunks
            .get(&h)?
            .iter()
            .find(|r| r.start <= n && n <= r.end)
            .map(|r| &r.value)
    }
}

/// Adds `s..=e` to one /16's ordered ranges, following `ngx_http_geo_add_range`: the
/// last range not wholly after it decides. `Ok(Some(old))` when a range of the same
/// bounds is replaced; `Err` carries the range it overlaps.
fn add_piece<V: Clone>(
    ranges: &mut Vec<Range16<V>>,
    s: u16,
    e: u16,
    value: &V,
) -> Result<Option<V>, (u16, u16)> {
    let new = |start, end| Range16 {
        start,
        end,
        value: value.clone(),
    };
    let Some(i) = ranges.iter().rposition(|r| e >= r.start) else {
        ranges.insert(0, new(s, e));
        return Ok(None);
    };
    let (rs, re) = (ranges[i].start, ranges[i].end);
    if s > re {
        ranges.insert(i + 1, new(s, e));
    } else if s == rs && e == re {
        return Ok(Some(std::mem::replace(&mut ranges[i].value, value.clone())));
    } else if s > rs && e < re {
        // Inside: split the old range around the new one.
        let tail = Range16 {
            start: e + 1,
            end: re,
            value: ranges[i].value.clone(),
        };
        ranges[i].end = s - 1;
        ranges.insert(i + 1, new(s, e));
        ranges.insert(i + 2, tail);
    } else if s == rs && e < re {
        ranges[i].start = e + 1;
        ranges.insert(i, new(s, e));
    } else if s > rs && e == re {
        ranges[i].end = s - 1;
        ranges.insert(i + 1, new(s, e));
    } else {
        return Err((rs, re));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        parse_ipv4(s).expect("address")
    }

    #[test]
    fn addresses_as_nginx_reads_them() {
        assert_eq!(parse_ipv4("10.1.2.3"), Some(0x0a01_0203));
        assert_eq!(parse_ipv4("010.1.2.3"), Some(0x0a01_0203));
        assert_eq!(parse_ipv4("1.2.3"), None);
        assert_eq!(parse_ipv4("1.2.3.256"), None);
        assert_eq!(parse_ipv4("255.255.255.255"), None);
        assert_eq!(
            parse_addr_port("1.2.3.4:80"),
            Some("1.2.3.4".parse().expect("ip"))
        );
        assert_eq!(
            parse_addr_port("[::1]:80"),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(parse_addr_port("::1"), Some("::1".parse().expect("ip")));
        assert_eq!(parse_addr_port("[::1]"), None);
        assert_eq!(parse_addr_port("1.2.3.4:0"), None);
        assert_eq!(parse_addr_port("unknown"), None);
        assert_eq!(
            parse_cidr("10.1.2.3/8"),
            Some((
                Cidr::V4 {
                    addr: v4("10.0.0.0"),
                    len: 8
                },
                true
            ))
        );
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some((
                Cidr::V4 {
                    addr: v4("10.0.0.0"),
                    len: 8
                },
                false
            ))
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0/"), None);
        assert_eq!(
            parse_cidr("2001:db8::1/32"),
            Some((
                Cidr::V6 {
                    addr: 0x2001_0db8 << 96,
                    len: 32
                },
                true
            ))
        );
        let net = parse_cidr("192.168.0.0/16").expect("net").0;
        assert!(net.contains("192.168.3.4".parse().expect("ip")));
        assert!(net.contains("::ffff:192.168.3.4".parse().expect("ip")));
        assert!(!net.contains("192.169.0.1".parse().expect("ip")));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTable::default();
        for (net, v) in [
            ("0.0.0.0/0", "any"),
            ("10.0.0.0/8", "ten"),
            ("10.1.0.0/16", "ten-one"),
        ] {
            t.insert(parse_cidr(net).expect("net").0, v);
        }
        assert_eq!(t.find_v4(v4("10.1.2.3")), Some(&"ten-one"));
        assert_eq!(t.find_v4(v4("10.2.0.1")), Some(&"ten"));
        assert_eq!(t.find_v4(v4("11.0.0.1")), Some(&"any"));
        assert_eq!(
            t.remove(parse_cidr("10.1.0.0/16").expect("net").0),
            Some("ten-one")
        );
        assert_eq!(t.find_v4(v4("10.1.2.3")), Some(&"ten"));
        assert_eq!(t.remove(parse_cidr("10.1.0.0/16").expect("net").0), None);
    }

    #[test]
    fn ranges_split_and_refuse_overlaps_as_nginx() {
        let mut t = RangeTable::default();
        assert_eq!(t.add(v4("10.0.0.0"), v4("10.0.0.255"), "a"), Ok(None));
        // Inside: splits.
        assert_eq!(t.add(v4("10.0.0.10"), v4("10.0.0.20"), "b"), Ok(None));
        assert_eq!(t.find(v4("10.0.0.9")), Some(&"a"));
        assert_eq!(t.find(v4("10.0.0.15")), Some(&"b"));
        assert_eq!(t.find(v4("10.0.0.21")), Some(&"a"));
        // Partly over b and a's tail: refused, naming the last one it reaches.
        assert_eq!(
            t.add(v4("10.0.0.15"), v4("10.0.0.30"), "c"),
            Err(Overlap {
                start: v4("10.0.0.21"),
                end: v4("10.0.0.255")
            })
        );
        // Same bounds: replaces.
        assert_eq!(t.add(v4("10.0.0.10"), v4("10.0.0.20"), "d"), Ok(Some("b")));
        assert_eq!(t.find(v4("10.0.0.15")), Some(&"d"));
        // Across /16s, inside a different range in each.
        assert_eq!(t.add(v4("10.1.0.0"), v4("10.1.255.255"), "x"), Ok(None));
        assert_eq!(t.add(v4("10.2.0.0"), v4("10.2.255.255"), "y"), Ok(None));
        assert_eq!(t.add(v4("10.1.128.0"), v4("10.2.0.255"), "z"), Ok(None));
        assert_eq!(t.find(v4("10.1.200.1")), Some(&"z"));
        assert_eq!(t.find(v4("10.2.0.1")), Some(&"z"));
        assert_eq!(t.find(v4("10.2.1.1")), Some(&"y"));
        assert!(t.delete(v4("10.0.0.10"), v4("10.0.0.20")));
        assert_eq!(t.find(v4("10.0.0.15")), None);
        assert!(!t.delete(v4("10.0.0.10"), v4("10.0.0.20")));
        assert_eq!(t.find(v4("11.0.0.1")), None);
    }
}
