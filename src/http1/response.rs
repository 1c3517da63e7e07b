//! Response head parsing (RFC 9112 §4, §6.3). Tolerant where the framing is still
//! unambiguous, but a response whose framing was questionable never leaves its upstream
//! connection reusable.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::BodyFraming;
use super::headers::analyze;
use super::request::Method;
use super::{find_header, range_in, HeaderRange, ParseError, Parsed, MAX_HEAD_BYTES};

/// Most header fields in a response head. nginx counts none (its `proxy_buffer_size`,
/// 4 KiB by default, bounds the head), and 4 KiB of the shortest lines is about this many.
pub const MAX_RESPONSE_HEADERS: usize = 1024;

/// A parsed response head: ranges into the buffer it was parsed from.
///
/// Reuse one per upstream connection; [`parse`](Self::parse) clears and refills `headers`.
/// After `Partial` or an error the fields are unspecified.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    /// Status code, 100..=999.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The reason phrase (may be empty).
    pub reason: Range<usize>,
    /// The header fields in order.
    pub headers: Vec<HeaderRange>,
    /// Length of the head including the blank line; the body starts at `buf[head_len..]`.
    pub head_len: usize,
    /// How the body is delimited (RFC 9112 §6.3): `None` for 1xx (incl. 101: the caller
    /// handles the upgrade), 204, 304, responses to HEAD and 2xx to CONNECT; then
    /// `Chunked` if the final transfer coding is chunked, `UntilClose` for any other
    /// transfer coding, `Length` from Content-Length, else `UntilClose`.
    pub framing: BodyFraming,
    /// Whether the upstream connection may be reused after this response. HTTP/1.1: true
    /// unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`. Always
    /// false for close-delimited bodies, Transfer-Encoding together with Content-Length,
    /// and Transfer-Encoding in an HTTP/1.0 response.
    ///
    /// Refused (an error): Content-Length together with Transfer-Encoding, a
    /// Transfer-Encoding whose final coding is not chunked, conflicting Content-Lengths.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// An empty head with room for 16 header fields.
    pub fn new() -> Self {
        ResponseHead {
            headers: Vec::with_capacity(16),
            ..Default::default()
        }
    }

    /// Parses a response head from the start of `buf`; `request_method` is the method of
    /// the request this answers (HEAD and CONNECT change the framing).
    ///
    /// `Complete`: all fields are set and the body starts at `buf[head_len..]`.
    /// `Partial`: read more and call again with the whole buffer. Errors on a malformed
    /// head, an invalid or conflicting Content-Length (when it decides the framing), or a
    /// head not ended within `MAX_HEAD_BYTES` (`HeadTooLarge`).
    pub fn parse(&mut self, buf: &[u8], request_method: Method) -> Result<Parsed, ParseError> {
        let limited = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        let mut raw =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        // Default config: obs-fold, space before colon and invalid header lines are errors.
        let status = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, limited, &mut raw)?;
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ParseError::HeadTooLarge)
            }
            httparse::Status::Partial => return Ok(Parsed::Partial),
        };
        let (Some(code), Some(version)) = (resp.code, resp.version) else {
            return Err(ParseError::InvalidStatus);
        };
        // httparse accepts any three digits; 0xx is not a status code (RFC 9110 §15).
        if code < 100 {
            return Err(ParseError::InvalidStatus);
        }

        self.headers.clear();
        for h in resp.headers.iter() {
            self.headers.push(HeaderRange {
                name: range_in(buf, h.name.as_bytes()).unwrap_or_default(),
                value: range_in(buf, h.value).unwrap_or_default(),
                hop_by_hop: false,
            });
        }
        self.status = code;
        self.minor_version = version;
        // An absent reason comes back as a static "" that is not inside `buf`.
        self.reason = resp
            .reason
            .and_then(|r| range_in(buf, r.as_bytes()))
            .unwrap_or_default();
        self.head_len = head_len;

        let a = analyze(buf, &mut self.headers);
        let mut keep_alive = if version == 1 {
            !a.conn_close
        } else {
            a.conn_keep_alive && !a.conn_close
        };

        let no_body = (100..200).contains(&code)
            || code == 204
            || code == 304
            || request_method == Method::Head
            || (request_method == Method::Connect && (200..300).contains(&code));
        self.framing = if no_body {
            BodyFraming::None
        } else if a.te_present {
            // Both framings at once, or a coding ferrolb cannot decode, is ambiguous: a
            // cache or client behind ferrolb could split the stream differently. nginx
            // answers 502 to both; so does ferrolb (RFC 9112 §6.1 allows rejecting).
            if a.content_length_present {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            if !a.te_final_chunked {
                return Err(ParseError::UnsupportedTransferEncoding);
            }
            // Chunked in an HTTP/1.0 response is suspect: read it, never reuse.
            if version == 0 {
                keep_alive = false;
            }
            BodyFraming::Chunked
        } else if let Some(e) = a.content_length_error {
            return Err(e);
        } else if let Some(n) = a.content_length {
            BodyFraming::Length(n)
        } else {
            keep_alive = false;
            BodyFraming::UntilClose
        };
        self.keep_alive = keep_alive;
        Ok(Parsed::Complete)
    }

    /// The first value of the header `name` (ASCII case-insensitive), from `buf`, the
    /// buffer this head was parsed from.
    pub fn header_value<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        find_header(&self.headers, buf, name)
    }

    /// The reason phrase bytes.
    pub fn reason<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.reason.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_for(buf: &[u8], m: Method) -> Result<ResponseHead, ParseError> {
        let mut h = ResponseHead::new();
        match h.parse(buf, m)? {
            Parsed::Complete => Ok(h),
            Parsed::Partial => panic!("unexpected Partial for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn parse(buf: &[u8]) -> ResponseHead {
        parse_for(buf, Method::Get).expect("valid response")
    }

    #[test]
    fn simple_content_length() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        let h = parse(buf);
        assert_eq!(h.status, 200);
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.reason(buf), b"OK");
        assert_eq!(h.head_len, buf.len() - 5);
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.header_value(buf, "server"), Some(&b"x"[..]));
        assert!(h.headers.iter().all(|r| !r.hop_by_hop));
    }

    #[test]
    fn reason_may_be_empty_or_absent() {
        let buf = b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(buf).reason(buf), b"");
        let buf = b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
        let h = parse(buf);
        assert_eq!(h.reason(buf), b"");
        assert_eq!(h.status, 200);
        let buf = b"HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(buf).reason(buf), b"Not Found Here");
    }

    #[test]
    fn partial_at_every_split_point() {
        let buf =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-a\r\nX-A: 1\r\n\r\n";
        let mut h = ResponseHead::new();
        for k in 0..buf.len() {
            assert_eq!(
                h.parse(&buf[..k], Method::Get),
                Ok(Parsed::Partial),
                "split at {k}"
            );
        }
        assert_eq!(h.parse(buf, Method::Get), Ok(Parsed::Complete));
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(h.headers[2].hop_by_hop);
        assert!(h.headers[0].hop_by_hop);
    }

    #[test]
    fn chunked() {
        let h = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(h.keep_alive);
    }

    #[test]
    fn non_chunked_final_coding_is_refused() {
        let mut h = ResponseHead::new();
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert_eq!(
                h.parse(raw, Method::Get),
                Err(ParseError::UnsupportedTransferEncoding)
            );
        }
        // Without a body to frame, the header does not matter.
        let h = parse(b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::None);
    }

    #[test]
    fn te_with_cl_is_refused() {
        let mut h = ResponseHead::new();
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                h.parse(raw, Method::Get),
                Err(ParseError::ContentLengthWithTransferEncoding)
            );
        }
    }

    #[test]
    fn te_in_http10_response_is_not_reusable() {
        let h = parse(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert!(!h.keep_alive);
    }

    #[test]
    fn no_framing_is_close_delimited() {
        let h = parse(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
    }

    #[test]
    fn content_length_duplicates() {
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(3));
        let h = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(3));
        assert_eq!(
            parse_for(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                Method::Get
            )
            .unwrap_err(),
            ParseError::ConflictingContentLength
        );
        assert_eq!(
            parse_for(
                b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
                Method::Get
            )
            .unwrap_err(),
            ParseError::InvalidContentLength
        );
    }

    #[test]
    fn head_response_has_no_body() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        let h = parse_for(buf, Method::Head).unwrap();
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        let h = parse_for(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Head,
        )
        .unwrap();
        assert_eq!(h.framing, BodyFraming::None);
    }

    #[test]
    fn status_204_304_1xx_have_no_body() {
        for status in [100, 102, 103, 199, 204, 304] {
            let buf = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n");
            let h = parse(buf.as_bytes());
            assert_eq!(h.status, status);
            assert_eq!(h.framing, BodyFraming::None, "{status}");
            assert!(h.keep_alive);
        }
        let h = parse(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn switching_protocols_has_no_body() {
        let buf = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        let h = parse(buf);
        assert_eq!(h.status, 101);
        assert_eq!(h.framing, BodyFraming::None);
        assert_eq!(&buf[h.head_len..], b"\x81\x05hello");
        assert!(h.headers.iter().all(|r| r.hop_by_hop));
    }

    #[test]
    fn connect_2xx_has_no_body() {
        let h = parse_for(
            b"HTTP/1.1 200 Connection Established\r\n\r\n",
            Method::Connect,
        )
        .unwrap();
        assert_eq!(h.framing, BodyFraming::None);
        let h = parse_for(
            b"HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n",
            Method::Connect,
        )
        .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(2));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(
            !parse(b"HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(!parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            parse(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        // Close-delimited HTTP/1.0 body can never be followed by another response.
        assert!(!parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn bad_status_rejected() {
        for line in [
            "HTTP/1.1 099 X",
            "HTTP/1.1 000 X",
            "HTTP/1.1 20 X",
            "HTTP/1.1 2000 X",
            "HTTP/1.1 abc X",
            "HTTP/1.1  200 X",
        ] {
            let buf = format!("{line}\r\nContent-Length: 0\r\n\r\n");
            assert!(parse_for(buf.as_bytes(), Method::Get).is_err(), "{line}");
        }
        let h = parse(b"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.status, 999);
        assert!(parse_for(b"HTTP/2 200 OK\r\n\r\n", Method::Get).is_err());
    }

    #[test]
    fn obs_fold_and_bad_names_rejected() {
        assert!(parse_for(
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .is_err());
        assert!(parse_for(
            b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .is_err());
        assert!(parse_for(
            b"HTTP/1.1 200 OK\r\nX-A: a\0\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .is_err());
        assert!(parse_for(
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
            Method::Get
        )
        .is_err());
    }

    #[test]
    fn head_too_large() {
        let mut buf = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEAD_BYTES, b'a');
        let mut h = ResponseHead::new();
        assert_eq!(h.parse(&buf, Method::Get), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn pipelined_responses() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n";
        let mut h = ResponseHead::new();
        assert_eq!(h.parse(buf, Method::Get), Ok(Parsed::Complete));
        let next = &buf[h.head_len + 2..];
        assert_eq!(h.parse(next, Method::Get), Ok(Parsed::Complete));
        assert_eq!(h.status, 304);
        assert_eq!(h.head_len, next.len());
        assert_eq!(h.header_value(next, "etag"), Some(&b"x"[..]));
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            prefixed in any::<bool>(),
            head in any::<bool>(),
        ) {
            let mut buf = if prefixed { b"HTTP/1.1 200 OK\r\n".to_vec() } else { Vec::new() };
            buf.extend_from_slice(&data);
            let mut h = ResponseHead::new();
            let m = if head { Method::Head } else { Method::Get };
            if let Ok(Parsed::Complete) = h.parse(&buf, m) {
                prop_assert!(h.head_len <= buf.len());
                prop_assert!((100..=999).contains(&h.status));
                prop_assert!(buf.get(h.reason.clone()).is_some());
                for r in &h.headers {
                    prop_assert!(buf.get(r.name.clone()).is_some());
                    prop_assert!(buf.get(r.value.clone()).is_some());
                }
            }
        }
    }
}
