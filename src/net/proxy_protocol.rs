//! The PROXY protocol header (v1 text, v2 binary) a load balancer in front sends
//! before the client's bytes, on a `listen ... proxy_protocol` address. Parsed as
//! nginx's `ngx_proxy_protocol.c` does: a v1 line of at most 107 bytes (`PROXY TCP4|TCP6
//! SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`), a v2 header of 16 bytes plus
//! its length; v2's `LOCAL` command and address families other than IPv4 and IPv6 carry
//! no address (the connection goes on as is). Anything else is a broken header and the
//! connection is closed.

use std::net::IpAddr;
use std::time::Duration;

use super::buffers::Buf;
use super::io::{self, IoFailure};
use super::Stream;

/// nginx's `NGX_PROXY_PROTOCOL_V1_MAX_HEADER`.
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header.
const V2_FIXED: usize = 16;

/// The addresses a PROXY header carries: the client (source) and the address it
/// connected to at the load balancer (destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddrs {
    /// `$proxy_protocol_addr`, as the header wrote it (v1) or as nginx prints it (v2).
    pub src_addr: String,
    /// `$proxy_protocol_port`.
    pub src_port: u16,
    /// `$proxy_protocol_server_addr`.
    pub dst_addr: String,
    /// `$proxy_protocol_server_port`.
    pub dst_port: u16,
    /// The TLVs after a v2 header's addresses, in order.
    pub tlvs: Vec<Tlv>,
}

/// One type-length-value entry of a v2 header: its type and value.
pub type Tlv = (u8, Vec<u8>);

impl ProxyAddrs {
    /// The source address as an IP address (v1 text that is not one gives `None`).
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.src_addr.parse().ok()
    }

    /// The value of the first TLV of `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(t, _)| *t == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The SSL TLV (0x20): its `verify` field and its sub-TLVs.
    pub fn ssl(&self) -> Option<(u32, Vec<Tlv>)> {
        let v = self.tlv(0x20)?;
        let verify = u32::from_be_bytes(v.get(1..5)?.try_into().ok()?);
        Some((verify, tlvs(&v[5..])))
    }
}

/// Type-length-value entries, up to the first one cut short.
fn tlvs(mut bytes: &[u8]) -> Vec<Tlv> {
    let mut out = Vec::new();
    while bytes.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
        let Some(value) = bytes.get(3..3 + len) else {
            break;
        };
        out.push((bytes[0], value.to_vec()));
        bytes = &bytes[3 + len..];
    }
    out
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of this many bytes, with its addresses when it has any.
    Header(usize, Option<ProxyAddrs>),
    /// More bytes are needed.
    Incomplete,
}

/// Why a connection's PROXY header was refused, in nginx's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyProtocolError {
    /// Not a PROXY header at all, or a malformed one.
    #[error("broken header: \"{0}\"")]
    Broken(String),
    /// A v2 header of another version.
    #[error("unknown PROXY protocol version: {0}")]
    Version(u8),
    /// A v2 header whose addresses are shorter than its family needs.
    #[error("PROXY protocol v2 header is too short for its address family")]
    Short,
}

fn broken(bytes: &[u8]) -> ProxyProtocolError {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len())
        .min(V1_MAX);
    ProxyProtocolError::Broken(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// Parses the header at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let sig_len = bytes.len().min(V2_SIG.len());
    if bytes[..sig_len] == V2_SIG[..sig_len] && sig_len > 0 {
        if sig_len < V2_SIG.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(bytes);
    }
    let prefix_len = bytes.len().min(6);
    if bytes[..prefix_len] != b"PROXY "[..prefix_len] {
        return Err(broken(bytes));
    }
    parse_v1(bytes)
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    let Some(lf) = bytes.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if bytes.len() >= V1_MAX {
            Err(broken(bytes))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if lf == 0 || bytes[lf - 1] != b'\r' {
        return Err(broken(bytes));
    }
    let line = std::str::from_utf8(&bytes[6..lf - 1]).map_err(|_| broken(bytes))?;
    if line.starts_with("UNKNOWN") {
        return Ok(Parsed::Header(lf + 1, None));
    }
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    if proto != "TCP4" && proto != "TCP6" {
        return Err(broken(bytes));
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(broken(bytes));
    };
    let addr_ok = |a: &str| a.parse::<IpAddr>().is_ok();
    let port = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u16>().ok())
            .flatten()
    };
    match (addr_ok(src), addr_ok(dst), port(sport), port(dport)) {
        (true, true, Some(src_port), Some(dst_port)) => Ok(Parsed::Header(
            lf + 1,
            Some(ProxyAddrs {
                src_addr: src.to_owned(),
                src_port,
                dst_addr: dst.to_owned(),
                dst_port,
                tlvs: Vec::new(),
            }),
        )),
        _ => Err(broken(bytes)),
    }
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyProtocolError> {
    if bytes.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let version = bytes[12] >> 4;
    if version != 2 {
        return Err(ProxyProtocolError::Version(version));
    }
    let len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let total = V2_FIXED + len;
    if bytes.len() < total {
        return Ok(Parsed::Incomplete);
    }
    // Only PROXY (1) carries addresses; LOCAL (0) is the balancer's own health check.
    if bytes[12] & 0x0f != 1 {
        return Ok(Parsed::Header(total, None));
    }
    let a = &bytes[V2_FIXED..total];
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    let addrs = match bytes[13] >> 4 {
        1 => {
            if a.len() < 12 {
                return Err(ProxyProtocolError::Short);
            }
            let ip = |at: usize| IpAddr::from([a[at], a[at + 1], a[at + 2], a[at + 3]]);
            Some(ProxyAddrs {
                src_addr: ip(0).to_string(),
                dst_addr: ip(4).to_string(),
                src_port: port(8),
                dst_port: port(10),
                tlvs: tlvs(&a[12..]),
            })
        }
        2 => {
            if a.len() < 36 {
                return Err(ProxyProtocolError::Short);
            }
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[at..at + 16]);
                IpAddr::from(o)
            };
            Some(ProxyAddrs {
                src_addr: ip(0).to_string(),
                dst_addr: ip(16).to_string(),
                src_port: port(32),
                dst_port: port(34),
                tlvs: tlvs(&a[36..]),
            })
        }
        // AF_UNSPEC, AF_UNIX: no address nginx uses.
        _ => None,
    };
    Ok(Parsed::Header(total, addrs))
}

/// Why reading a PROXY header failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The header was refused.
    #[error("{0}")]
    Invalid(#[from] ProxyProtocolError),
    /// The connection closed, failed, or sent nothing in time.
    #[error("{}", .0.describe())]
    Io(IoFailure),
}

/// Reads the PROXY header a connection starts with, within `limit`; returns its
/// addresses and a buffer with the bytes that followed it (the start of the first
/// request), empty when none arrived yet.
pub async fn read(
    stream: &Stream,
    limit: Duration,
) -> Result<(Option<ProxyAddrs>, Buf), ReadError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Buf::head();
    loop {
        if !buf.is_empty() {
            if let Parsed::Header(n, addrs) = parse(&buf)? {
                buf.drain(..n);
                return Ok((addrs, buf));
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(ReadError::Io(IoFailure::Timeout));
        }
        io::read_some(stream, &mut buf, crate::net::buffers::HEAD_BUF, left)
            .await
            .map_err(ReadError::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, addr: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(addr.len() as u16).to_be_bytes());
        h.extend_from_slice(addr);
        h.extend_from_slice(tail);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 80\r\nGET / HTTP/1.1\r\n";
        let Parsed::Header(n, Some(a)) = parse(h).expect("parse") else {
            panic!("no header")
        };
        assert_eq!(&h[n..], b"GET / HTTP/1.1\r\n");
        assert_eq!((a.src_addr.as_str(), a.src_port), ("192.0.2.7", 51000));
        assert_eq!((a.dst_addr.as_str(), a.dst_port), ("10.0.0.1", 80));
        let h = b"PROXY TCP6 2001:db8::1 ::1 1234 443\r\n";
        let Parsed::Header(n, Some(a)) = parse(h).expect("parse") else {
            panic!("no header")
        };
        assert_eq!((n, a.src_addr.as_str()), (h.len(), "2001:db8::1"));
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\nx").expect("parse"),
            Parsed::Header(24, None)
        );
    }

    #[test]
    fn v1_incomplete_and_broken() {
        for part in [&b"PRO"[..], b"PROXY TCP4 1.2.3.4", b"\r\n\r\n\0\r"] {
            assert_eq!(
                parse(part).expect("partial"),
                Parsed::Incomplete,
                "{part:?}"
            );
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n",
            b"PROXY TCP4 1.2.3.x 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
            &[b'P'; 200][..],
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyProtocolError::Broken(_))),
                "{bad:?}"
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n").unwrap_err().to_string(),
            "broken header: \"GET / HTTP/1.1\""
        );
    }

    #[test]
    fn v2_families_and_commands() {
        let addr4 = [192, 0, 2, 9, 10, 0, 0, 1, 0xc3, 0x50, 0, 80];
        let h = v2(1, 0x11, &addr4, b"GET");
        let Parsed::Header(n, Some(a)) = parse(&h).expect("parse") else {
            panic!("no header")
        };
        assert_eq!(&h[n..], b"GET");
        assert_eq!((a.src_addr.as_str(), a.src_port), ("192.0.2.9", 50000));
        assert_eq!((a.dst_addr.as_str(), a.dst_port), ("10.0.0.1", 80));
        // With TLVs after the addresses: they are skipped.
        let mut with_tlv = addr4.to_vec();
        with_tlv.extend_from_slice(&[0x04, 0, 1, 7]);
        assert!(matches!(
            parse(&v2(1, 0x11, &with_tlv, b"")),
            Ok(Parsed::Header(32, Some(_)))
        ));
        let mut addr6 = vec![0u8; 36];
        addr6[15] = 1;
        addr6[32..34].copy_from_slice(&4321u16.to_be_bytes());
        let Parsed::Header(_, Some(a)) = parse(&v2(1, 0x21, &addr6, b"")).expect("v6") else {
            panic!("no header")
        };
        assert_eq!((a.src_addr.as_str(), a.src_port), ("::1", 4321));
        // LOCAL, and a Unix family: a header without addresses.
        assert_eq!(
            parse(&v2(0, 0x11, &addr4, b"")).expect("local"),
            Parsed::Header(28, None)
        );
        assert_eq!(
            parse(&v2(1, 0x31, &[0; 216], b"")).expect("unix"),
            Parsed::Header(232, None)
        );
        // TLVs: top-level ones, and the SSL TLV's verify field and sub-TLVs.
        let mut with_tlvs = addr4.to_vec();
        with_tlvs.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        let mut ssl = vec![0x01, 0, 0, 0, 255];
        ssl.extend_from_slice(&[0x21, 0, 3, b'T', b'L', b'S']);
        with_tlvs.push(0x20);
        with_tlvs.extend_from_slice(&(ssl.len() as u16).to_be_bytes());
        with_tlvs.extend_from_slice(&ssl);
        with_tlvs.extend_from_slice(&[0xae, 0, 9]); // cut short: ignored
        let Parsed::Header(_, Some(a)) = parse(&v2(1, 0x11, &with_tlvs, b"")).expect("tlvs") else {
            panic!("no header")
        };
        assert_eq!(a.tlv(0x01), Some(&b"h2"[..]));
        assert_eq!(a.tlv(0xae), None);
        let (verify, subs) = a.ssl().expect("ssl tlv");
        assert_eq!((verify, subs), (255, vec![(0x21, b"TLS".to_vec())]));
        // Incomplete, short, another version.
        let h = v2(1, 0x11, &addr4, b"");
        assert_eq!(parse(&h[..20]).expect("partial"), Parsed::Incomplete);
        assert_eq!(
            parse(&v2(1, 0x11, &addr4[..8], b"")),
            Err(ProxyProtocolError::Short)
        );
        let mut v3 = h.clone();
        v3[12] = 0x31;
        assert_eq!(parse(&v3), Err(ProxyProtocolError::Version(3)));
    }
}
