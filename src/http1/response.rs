//! Response head parsing (RFC 9112 §4, §6.3). Tolerant where the framing is still
//! unambiguous, but a response whose framing was questionable never leaves its upstream
//! connection reusable.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::BodyFraming;
use super::headers::analyze;
use super::request::Method;
use super::{find_header, range_in, HeaderRange, ParseError, Parsed, MAX_HEADERS, MAX_HEAD_BYTES};

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
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
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
            // RFC 9112 §6.3 rule 3 and §6.1: TE wins over CL, and TE in HTTP/1.0 means the
            // framing is suspect; either way parse the body but never reuse the connection.
            if a.content_length_present || version == 0 {
                keep_alive = false;
            }
            if a.te_final_chunked {
                BodyFraming::Chunked
            } else {
                keep_alive = false;
                BodyFraming::UntilClose
            }
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
