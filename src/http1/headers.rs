//! Header analysis shared by request and response parsing: framing fields, Connection
//! options, hop-by-hop marking. One pass over the fields, plus a second pass only when a
//! Connection header names extra fields.

use super::{HeaderRange, ParseError};

/// What the header fields of one head say, before request/response-specific rules apply.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    /// Agreed Content-Length value, if any field was present and valid.
    pub(crate) content_length: Option<u64>,
    /// Set when a Content-Length field was invalid or values conflicted. Kept apart from
    /// `content_length` because a response with Transfer-Encoding ignores Content-Length.
    pub(crate) content_length_error: Option<ParseError>,
    /// Any Content-Length field present (valid or not).
    pub(crate) content_length_present: bool,
    /// Any Transfer-Encoding field present.
    pub(crate) te_present: bool,
    /// The last transfer coding over all Transfer-Encoding fields is `chunked`.
    pub(crate) te_final_chunked: bool,
    /// The Transfer-Encoding fields list exactly one coding, `chunked`.
    pub(crate) te_only_chunked: bool,
    /// Number of Transfer-Encoding fields.
    pub(crate) te_fields: u32,
    /// Connection option `close`.
    pub(crate) conn_close: bool,
    /// Connection option `keep-alive`.
    pub(crate) conn_keep_alive: bool,
    /// Connection option `upgrade`.
    pub(crate) conn_upgrade: bool,
    /// An Upgrade field is present.
    pub(crate) upgrade_present: bool,
    /// Number of Host fields.
    pub(crate) host_count: u32,
    /// Index of the first Host field.
    pub(crate) host: Option<usize>,
    /// Index of the first X-Forwarded-For field.
    pub(crate) xff: Option<usize>,
    /// `Expect: 100-continue` present.
    pub(crate) expect_continue: bool,
}

/// Which well-known field a name is; `None` for everything else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Host,
    Expect,
    Te,
    Trailer,
    Upgrade,
    Connection,
    KeepAlive,
    ContentLength,
    XForwardedFor,
    ProxyConnection,
    TransferEncoding,
}

/// Classifies a field name. Dispatch on length first so the common case (an unknown
/// field) costs one comparison at most.
#[inline]
fn classify(name: &[u8]) -> Option<Known> {
    let (k, lit): (Known, &[u8]) = match name.len() {
        2 => (Known::Te, b"te"),
        4 => (Known::Host, b"host"),
        6 => (Known::Expect, b"expect"),
        7 => {
            if name.eq_ignore_ascii_case(b"upgrade") {
                return Some(Known::Upgrade);
            }
            (Known::Trailer, b"trailer")
        }
        10 => {
            if name.eq_ignore_ascii_case(b"connection") {
                return Some(Known::Connection);
            }
            (Known::KeepAlive, b"keep-alive")
        }
        14 => (Known::ContentLength, b"content-length"),
        15 => (Known::XForwardedFor, b"x-forwarded-for"),
        16 => (Known::ProxyConnection, b"proxy-connection"),
        17 => (Known::TransferEncoding, b"transfer-encoding"),
        _ => return None,
    };
    name.eq_ignore_ascii_case(lit).then_some(k)
}

/// Optional whitespace (RFC 9110 §5.6.3).
#[inline]
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims OWS on both sides.
#[inline]
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Elements of a comma-separated list field value, OWS-trimmed. Empty elements are
/// yielded too (callers skip them, RFC 9110 §5.6.1).
#[inline]
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// Parses one Content-Length element: 1*DIGIT, no sign, no overflow.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Analyzes `headers` (ranges into `buf`), setting each field's `hop_by_hop` flag.
pub(crate) fn analyze(buf: &[u8], headers: &mut [HeaderRange]) -> Analysis {
    let mut a = Analysis::default();
    let mut te_codings = 0u32;
    // Connection options other than close/keep-alive/upgrade name extra hop-by-hop fields.
    let mut conn_names_fields = false;

    for (i, h) in headers.iter_mut().enumerate() {
        let Some(kind) = classify(h.name(buf)) else {
            continue;
        };
        let value = h.value(buf);
        match kind {
            Known::Host => {
                a.host_count += 1;
                a.host.get_or_insert(i);
            }
            Known::XForwardedFor => {
                a.xff.get_or_insert(i);
            }
            Known::Expect => {
                if trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                    a.expect_continue = true;
                }
            }
            Known::ContentLength => {
                a.content_length_present = true;
                // A list of identical values is accepted (RFC 9110 §8.6); anything else
                // makes the framing ambiguous.
                for item in list_items(value) {
                    match parse_decimal(item) {
                        None => {
                            a.content_length_error
                                .get_or_insert(ParseError::InvalidContentLength);
                        }
                        Some(n) => match a.content_length {
                            Some(prev) if prev != n => {
                                a.content_length_error
                                    .get_or_insert(ParseError::ConflictingContentLength);
                            }
                            _ => a.content_length = Some(n),
                        },
                    }
                }
            }
            Known::TransferEncoding => {
                h.hop_by_hop = true;
                a.te_present = true;
                a.te_fields += 1;
                for item in list_items(value).filter(|i| !i.is_empty()) {
                    // A coding may carry parameters (`gzip;q=1`); only its name matters.
                    let name = item
                        .split(|&b| b == b';')
                        .next()
                        .map(trim_ows)
                        .unwrap_or_default();
                    te_codings += 1;
                    a.te_final_chunked = name.eq_ignore_ascii_case(b"chunked");
                }
            }
            Known::Connection => {
                h.hop_by_hop = true;
                for item in list_items(value).filter(|i| !i.is_empty()) {
                    if item.eq_ignore_ascii_case(b"close") {
                        a.conn_close = true;
                    } else if item.eq_ignore_ascii_case(b"keep-alive") {
                        a.conn_keep_alive = true;
                    } else if item.eq_ignore_ascii_case(b"upgrade") {
                        a.conn_upgrade = true;
                    } else {
                        conn_names_fields = true;
                    }
                }
            }
            Known::Upgrade => {
                h.hop_by_hop = true;
                a.upgrade_present = true;
            }
            Known::Te | Known::Trailer | Known::KeepAlive | Known::ProxyConnection => {
                h.hop_by_hop = true;
            }
        }
    }
    a.te_only_chunked = te_codings == 1 && a.te_final_chunked;

    if conn_names_fields {
        mark_connection_options(buf, headers);
    }
    a
}

/// Marks every field named by a Connection option as hop-by-hop (RFC 9110 §7.6.1).
///
/// Host and Content-Length are never marked: a client could otherwise make the proxy
/// drop the fields that route and frame the forwarded message ("hop-by-hop abuse").
fn mark_connection_options(buf: &[u8], headers: &mut [HeaderRange]) {
    for c in 0..headers.len() {
        if !headers[c].name(buf).eq_ignore_ascii_case(b"connection") {
            continue;
        }
        let conn_value = headers[c].value.clone();
        let conn_value = buf.get(conn_value).unwrap_or_default();
        for option in list_items(conn_value).filter(|i| !i.is_empty()) {
            if option.eq_ignore_ascii_case(b"host")
                || option.eq_ignore_ascii_case(b"content-length")
            {
                continue;
            }
            for h in headers.iter_mut() {
                if !h.hop_by_hop && h.name(buf).eq_ignore_ascii_case(option) {
                    h.hop_by_hop = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_is_case_insensitive_and_exact() {
        assert!(classify(b"Content-Length") == Some(Known::ContentLength));
        assert!(classify(b"TRANSFER-ENCODING") == Some(Known::TransferEncoding));
        assert!(classify(b"Upgrade") == Some(Known::Upgrade));
        assert!(classify(b"Trailer") == Some(Known::Trailer));
        assert!(classify(b"Keep-Alive") == Some(Known::KeepAlive));
        assert!(classify(b"Connection") == Some(Known::Connection));
        assert!(classify(b"Content-Lengtx").is_none());
        assert!(classify(b"X").is_none());
    }

    #[test]
    fn trim_and_list() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let items: Vec<&[u8]> = list_items(b"a, b ,,c").collect();
        assert_eq!(items, vec![&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1 2"), None);
    }
}
