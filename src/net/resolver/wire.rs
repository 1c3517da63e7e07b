//! DNS messages as nginx's resolver writes and reads them (RFC 1035 section 4): the
//! A/AAAA query for a name, and the parts of an answer it looks at. Written here
//! rather than with a DNS crate because nginx's tolerance is part of its behaviour:
//! it follows names longer than RFC 1035's 255 bytes, never checks the owner names
//! of answer records, and logs and skips record types it does not know.

/// Record and query types nginx's name resolution deals with.
pub(super) const TYPE_A: u16 = 1;
/// `CNAME`: the name is an alias.
pub(super) const TYPE_CNAME: u16 = 5;
/// `AAAA`: an IPv6 address.
pub(super) const TYPE_AAAA: u16 = 28;
/// `DNAME`: skipped, its synthesized CNAME follows it.
pub(super) const TYPE_DNAME: u16 = 39;

/// The response codes nginx tells apart.
pub(super) const RCODE_FORMERR: u8 = 1;
/// Name error.
pub(super) const RCODE_NXDOMAIN: u8 = 3;
/// The highest code nginx reads an answer for; higher ones are logged and dropped.
pub(super) const RCODE_REFUSED: u8 = 5;

/// The header's length.
pub(super) const HEADER_LEN: usize = 12;

/// A recursive query for `name` (lower case, no trailing dot) of type `qtype`, or
/// `None` when nginx declines the name (empty, an empty label, a label over 255 bytes):
/// the lookup then ends with "Host not found" without asking.
pub(super) fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    if name.is_empty() {
        return None;
    }
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    // RD set; one question.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        // nginx writes a label's length as one byte and refuses only what does not
        // fit in it.
        let len = u8::try_from(label.len()).ok().filter(|l| *l > 0)?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    Some(q)
}

/// The fixed header of a response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub(super) id: u16,
    pub(super) flags: u16,
    pub(super) questions: u16,
    pub(super) answers: u16,
}

impl Header {
    /// The header of `buf`, or `None` when shorter than a header.
    pub(super) fn read(buf: &[u8]) -> Option<Header> {
        let word = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        (buf.len() >= HEADER_LEN).then(|| Header {
            id: word(0),
            flags: word(2),
            questions: word(4),
            answers: word(6),
        })
    }

    /// TC: the answer did not fit in the UDP datagram.
    pub(super) fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// The response code.
    pub(super) fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// A response (QR) to a standard query, without the bits nginx refuses.
    pub(super) fn is_standard_response(&self) -> bool {
        self.flags & 0xf870 == 0x8000
    }
}

/// nginx's text for a response code (and its timeout code).
pub(super) fn strerror(code: u16) -> &'static str {
    match code {
        1 => "Format error",
        2 => "Server failure",
        3 => "Host not found",
        4 => "Unimplemented",
        5 => "Operation refused",
        110 => "Operation timed out",
        _ => "Unknown error",
    }
}

/// The question of a response: `Ok((qtype, qclass, where the answers start))`,
/// or the error-log line nginx writes when the question is malformed.
pub(super) fn question(buf: &[u8], h: &Header) -> Result<(u16, u16, usize), &'static str> {
    const SHORT: &str = "short DNS response";
    if h.questions != 1 {
        return Err("invalid number of questions in DNS response");
    }
    let mut i = HEADER_LEN;
    loop {
        let Some(&b) = buf.get(i) else {
            return Err(SHORT);
        };
        if b & 0xc0 != 0 {
            return Err("unexpected compression pointer in DNS response");
        }
        if b == 0 {
            break;
        }
        i += 1 + usize::from(b);
    }
    if i == HEADER_LEN {
        return Err("zero-length domain name in DNS response");
    }
    i += 1;
    if i + 4 + usize::from(h.answers) * (2 + 10) > buf.len() {
        return Err(SHORT);
    }
    let qtype = u16::from_be_bytes([buf[i], buf[i + 1]]);
    let qclass = u16::from_be_bytes([buf[i + 2], buf[i + 3]]);
    Ok((qtype, qclass, i + 4))
}

/// The (compressed) name at `at` in `buf`, lower case, labels joined by dots; or the
/// error-log line nginx writes for a malformed one. At most 128 labels or pointers are
/// followed, as nginx, against pointer loops.
pub(super) fn name_at(buf: &[u8], at: usize) -> Result<String, &'static str> {
    const OUT: &str = "name is out of DNS response";
    let mut p = at;
    let mut name = Vec::new();
    for _ in 0..128 {
        let Some(&n) = buf.get(p) else {
            return Err(OUT);
        };
        p += 1;
        if n == 0 {
            if !name.is_empty() {
                name.pop();
            }
            return Ok(String::from_utf8_lossy(&name).into_owned());
        }
        if n & 0xc0 != 0 {
            if n & 0xc0 != 0xc0 {
                return Err("invalid label type in DNS response");
            }
            let Some(&lo) = buf.get(p) else {
                return Err(OUT);
            };
            p = (usize::from(n & 0x3f) << 8) + usize::from(lo);
        } else {
            let label = buf.get(p..p + usize::from(n)).ok_or(OUT)?;
            name.extend(label.iter().map(u8::to_ascii_lowercase));
            name.push(b'.');
            p += usize::from(n);
        }
        if p >= buf.len() {
            return Err(OUT);
        }
    }
    Err("compression pointers loop in DNS response")
}

/// One answer record: its type, TTL (negative ones read as 0), and where its data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) rtype: u16,
    pub(super) ttl: u32,
    pub(super) data: usize,
    pub(super) len: usize,
}

/// The `count` answer records from `start`, as nginx walks them: owner names are
/// skipped unread (a root owner name is refused), the class must be IN. The error is
/// nginx's error-log line; the response is then dropped.
pub(super) fn answers(buf: &[u8], start: usize, count: u16) -> Result<Vec<Record>, String> {
    let short = || "short DNS response".to_owned();
    let mut out = Vec::with_capacity(usize::from(count));
    let mut i = start;
    for _ in 0..count {
        let owner = i;
        loop {
            let Some(&b) = buf.get(i) else {
                return Err(short());
            };
            if b & 0xc0 != 0 {
                i += 2;
                break;
            }
            if b == 0 {
                i += 1;
                if i - owner < 2 {
                    return Err("invalid name in DNS response".to_owned());
                }
                break;
            }
            i += 1 + usize::from(b);
        }
        if i + 10 >= buf.len() {
            return Err(short());
        }
        let word = |k: usize| u16::from_be_bytes([buf[k], buf[k + 1]]);
        let rtype = word(i);
        let class = word(i + 2);
        let ttl = i32::from_be_bytes([buf[i + 4], buf[i + 5], buf[i + 6], buf[i + 7]]);
        let len = usize::from(word(i + 8));
        if class != 1 {
            return Err(format!("unexpected RR class {class} in DNS response"));
        }
        i += 10;
        out.push(Record {
            rtype,
            ttl: u32::try_from(ttl).unwrap_or(0),
            data: i,
            len,
        });
        i += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_nginx_s() {
        let q = query(0x1234, "a.example.net", TYPE_AAAA).expect("query");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x01a\x07example\x03net\x00\x00\x1c\x00\x01");
        assert!(query(1, "a..b", TYPE_A).is_none());
        assert!(query(1, "", TYPE_A).is_none());
        assert!(query(1, &"a".repeat(256), TYPE_A).is_none());
        // 4 labels of 63: 257 bytes on the wire, over RFC 1035's limit, still asked.
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(query(1, &long, TYPE_A).is_some());
    }

    #[test]
    fn names_decompress_and_fold_case() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x03Foo\x07example\x03net\x00");
        buf.extend_from_slice(b"\x05alias\xc0\x10");
        assert_eq!(name_at(&buf, 12).as_deref(), Ok("foo.example.net"));
        assert_eq!(name_at(&buf, 29).as_deref(), Ok("alias.example.net"));
        let looped = [0u8; 12]
            .iter()
            .copied()
            .chain([0xc0, 12, 0])
            .collect::<Vec<_>>();
        assert_eq!(
            name_at(&looped, 12),
            Err("compression pointers loop in DNS response")
        );
    }

    #[test]
    fn answers_check_bounds_and_class() {
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        let start = buf.len();
        // a.: A IN ttl -1 127.0.0.1
        buf.extend_from_slice(&[
            0xc0, 12, 0, 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 4, 127, 0, 0, 1,
        ]);
        let r = answers(&buf, start, 1).expect("answers");
        assert_eq!((r[0].rtype, r[0].ttl, r[0].len), (TYPE_A, 0, 4));
        // A record cut before its length.
        let cut = &buf[..start + 10];
        assert_eq!(answers(cut, start, 1), Err("short DNS response".to_owned()));
    }

    // A server's answer is hostile input: whatever its bytes, reading it never panics,
    // names stay bounded, and records point inside the answer or are refused by their
    // reader (the engine takes record data with `get`).
    proptest::proptest! {
        #[test]
        fn any_answer_reads_without_panicking(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            questions in 0u16..3,
            count in 0u16..8,
        ) {
            let mut buf = vec![0x12, 0x34, 0x81, 0x80];
            buf.extend_from_slice(&questions.to_be_bytes());
            buf.extend_from_slice(&count.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, 0]);
            buf.extend_from_slice(&body);
            let Some(h) = Header::read(&buf) else {
                return Ok(());
            };
            let _ = (h.truncated(), h.rcode(), h.is_standard_response());
            if let Ok(name) = name_at(&buf, HEADER_LEN) {
                // 128 labels of at most 63 bytes and their dots.
                proptest::prop_assert!(name.len() <= 128 * 64);
            }
            if let Ok((_, _, start)) = question(&buf, &h) {
                proptest::prop_assert!(start <= buf.len());
                if let Ok(records) = answers(&buf, start, h.answers) {
                    for r in records {
                        proptest::prop_assert!(r.data <= buf.len());
                        let _ = name_at(&buf, r.data);
                    }
                }
            }
            for at in 0..buf.len().min(40) {
                let _ = name_at(&buf, at);
            }
        }
    }
}
