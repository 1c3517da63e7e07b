//! HTTP/1.1 codec (RFC 9112) over byte buffers, used by both the client-facing server and
//! the upstream client.
//!
//! No I/O happens here: callers read into a buffer and call [`RequestHead::parse`],
//! [`ResponseHead::parse`] or [`ChunkedScanner::scan`] again as more bytes arrive. Parsed
//! heads hold byte ranges into the caller's buffer instead of copies, so a head is reused
//! across requests on a connection without reallocating. Parsing is strict on the request
//! side (anything ambiguous about framing is rejected, never forwarded, to rule out request
//! smuggling) and tolerant-but-safe on the response side (ambiguous framing still parses
//! but marks the upstream connection as not reusable).

pub mod body;
pub mod dates;
pub mod error;
pub mod escape;
mod headers;
pub mod request;
pub mod respond;
pub mod response;

pub use body::{
    decode_chunked, write_chunk_header, BodyFraming, BodyRest, ChunkedScanner, ScanStep,
};
pub use error::ParseError;
pub use request::{Method, RequestHead, TargetForm};
pub use response::ResponseHead;

use std::ops::Range;

/// Header fields a head is parsed with room for on the stack: more is
/// [`ParseError::TooManyHeaders`], unless [`RequestHead::parse_limited`] allows more
/// (nginx's `max_headers`, 1000 by default), for which room is then made.
/// (Trailer fields of a chunked body are limited by size only, see [`MAX_HEAD_BYTES`].)
pub const MAX_HEADERS: usize = 128;

/// Maximum size in bytes of a message head (start line + header fields + blank line).
/// A head that has not ended within this many bytes → [`ParseError::HeadTooLarge`]
/// (answered as nginx: 400 "Request Header Or Cookie Too Large"). Also caps the
/// trailer section of a chunked body.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A header field as byte ranges into the buffer the head was parsed from.
///
/// Ranges instead of slices: no copies and no lifetimes, so a parsed head can live in a
/// connection struct next to its buffer and be reused across requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRange {
    /// The field name (case as sent).
    pub name: Range<usize>,
    /// The field value, without leading and trailing whitespace.
    pub value: Range<usize>,
    /// True for fields the proxy must not forward: the hop-by-hop ones (Connection,
    /// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, and every
    /// field named by a Connection option except Host and Content-Length, see
    /// `headers.rs`), and response fields the proxy hides (`proxy_hide_header`).
    pub hop_by_hop: bool,
}

impl HeaderRange {
    /// The name bytes in `buf` (the buffer the head was parsed from).
    #[inline]
    pub fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.name.clone()).unwrap_or_default()
    }

    /// The value bytes in `buf` (the buffer the head was parsed from).
    #[inline]
    pub fn value<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.value.clone()).unwrap_or_default()
    }
}

/// Outcome of a successful head parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete; `head_len` and all other fields are set. The body (if any)
    /// starts at `buf[head_len..]`.
    Complete,
    /// The buffer ends before the head does; read more and parse the whole buffer again.
    /// The head's fields are unspecified.
    Partial,
}

/// The range of `part` within `buf`, or `None` when `part` does not point into `buf`
/// (httparse returns a static `""` for an absent reason phrase).
#[inline]
pub(crate) fn range_in(buf: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= buf.len()).then_some(start..end)
}

/// Finds the first header named `name` (ASCII case-insensitive) and returns its value.
#[inline]
pub(crate) fn find_header<'b>(
    headers: &[HeaderRange],
    buf: &'b [u8],
    name: &str,
) -> Option<&'b [u8]> {
    let name = name.as_bytes();
    headers
        .iter()
        .find(|h| h.name(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_in_only_accepts_subslices() {
        let buf = b"hello world";
        assert_eq!(range_in(buf, &buf[6..]), Some(6..11));
        assert_eq!(range_in(buf, &buf[3..3]), Some(3..3));
        let other = b"elsewhere".to_vec();
        assert_eq!(range_in(buf, &other), None);
    }

    #[test]
    fn header_range_accessors_are_bounds_safe() {
        let buf = b"Name: value";
        let h = HeaderRange {
            name: 0..4,
            value: 6..11,
            hop_by_hop: false,
        };
        assert_eq!(h.name(buf), b"Name");
        assert_eq!(h.value(buf), b"value");
        // Used against the wrong (shorter) buffer: empty, not a panic.
        assert_eq!(h.value(b"short"), b"");
        assert_eq!(find_header(&[h], buf, "NAME"), Some(&b"value"[..]));
    }
}
