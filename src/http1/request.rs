//! Request head parsing (RFC 9112 §3, §6.3), strict: anything that could make the proxy and
//! the upstream disagree about where a request ends is rejected.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::body::BodyFraming;
use super::headers::analyze;
use super::{find_header, range_in, HeaderRange, ParseError, Parsed, MAX_HEADERS, MAX_HEAD_BYTES};

/// A request method. Methods are case-sensitive tokens (RFC 9110 §9.1); any token not
/// listed here is `Other` and allowed through. Default: `Get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    #[default]
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE
    Trace,
    /// CONNECT
    Connect,
    /// LOCK (WebDAV)
    Lock,
    /// Any other token; the bytes are at `RequestHead::method_range`.
    Other,
}

impl Method {
    /// Maps a method token (case-sensitive) to a `Method`; unknown tokens → `Other`.
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            b"LOCK" => Method::Lock,
            _ => Method::Other,
        }
    }

    /// The method name, or `None` for `Other` (read it from the buffer instead).
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Lock => "LOCK",
            Method::Other => return None,
        })
    }

    /// Whether a failed request may be retried on another upstream
    /// (`proxy_next_upstream`). Follows nginx: only POST, LOCK and PATCH are treated as
    /// non-idempotent; everything else, including `Other` and CONNECT, returns true.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Lock | Method::Patch)
    }
}

/// The form of the request target (RFC 9112 §3.2). Default: `Origin`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`; `target` is the whole of it.
    #[default]
    Origin,
    /// `http://authority/path?query`; `target` is `/path?query` (possibly empty, in which
    /// case the path is "/"), `absolute_host` is `authority`.
    Absolute,
    /// `host:port`, CONNECT only; `target` is the authority.
    Authority,
    /// `*`, OPTIONS only; `target` is `*`.
    Asterisk,
}

/// A parsed request head: ranges into the buffer it was parsed from.
///
/// Reuse one per connection: [`parse`](Self::parse) clears and refills `headers` without
/// reallocating once it has grown. After `Partial` or an error the fields are unspecified.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    /// The method. Default `Get`.
    pub method: Method,
    /// The method token's bytes (useful for `Method::Other`).
    pub method_range: Range<usize>,
    /// The request target as sent. Origin-form: path + query. Absolute-form: the part after
    /// the authority, which is *empty* for `http://host` or starts with `?` for
    /// `http://host?q`; the caller then sends "/" (see [`RequestHead::path`]). Authority-form
    /// (CONNECT): the authority. Asterisk-form: `*`.
    pub target: Range<usize>,
    /// Which form the target had. Default `Origin`.
    pub form: TargetForm,
    /// The authority of an absolute-form target (`host[:port]`); `None` otherwise. When
    /// set it overrides Host for routing (RFC 9112 §3.2.2).
    pub absolute_host: Option<Range<usize>>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The header fields in order.
    pub headers: Vec<HeaderRange>,
    /// Length of the head including the blank line; the body starts at `buf[head_len..]`.
    pub head_len: usize,
    /// How the body is delimited: `Length`, `Chunked` or `None` (never `UntilClose`).
    pub framing: BodyFraming,
    /// Whether the client connection may carry another request after this one.
    /// HTTP/1.1: true unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// HTTP/1.1 request with `Expect: 100-continue`.
    pub expect_continue: bool,
    /// HTTP/1.1 request with an `upgrade` Connection option and an Upgrade field.
    pub upgrade: bool,
    /// Index into `headers` of the Host field (there is at most one).
    pub host: Option<usize>,
    /// Index into `headers` of the first X-Forwarded-For field.
    pub xff: Option<usize>,
}

impl RequestHead {
    /// An empty head with room for 16 header fields.
    pub fn new() -> Self {
        RequestHead {
            headers: Vec::with_capacity(16),
            ..Default::default()
        }
    }

    /// After [`parse`](Self::parse) refused the head with `e`: what an error page may
    /// still read of it. A Host error leaves the request line and the fields (parsed
    /// and valid) without a host to route by, as nginx's; any other error leaves an
    /// empty head (method GET, no target, no fields). Either way no body is expected
    /// and the connection does not carry another request.
    pub fn keep_refused(&mut self, e: ParseError) {
        if matches!(
            e,
            ParseError::InvalidHost | ParseError::DuplicateHost | ParseError::MissingHost
        ) {
            self.host = None;
            self.absolute_host = None;
            self.xff = None;
            self.framing = BodyFraming::None;
            self.keep_alive = false;
            self.expect_continue = false;
            self.upgrade = false;
        } else {
            let mut headers = std::mem::take(&mut self.headers);
            headers.clear();
            *self = RequestHead {
                headers,
                ..RequestHead::default()
            };
        }
    }

    /// Drops the header fields whose name `drop` refuses (nginx's
    /// `ignore_invalid_headers`), keeping `host` and `xff` pointing at the right fields.
    /// Returns the dropped fields' ranges (name start .. value end) for the log.
    pub fn drop_fields(&mut self, buf: &[u8], drop: impl Fn(&[u8]) -> bool) -> Vec<Range<usize>> {
        let mut dropped = Vec::new();
        let host = self.host.map(|i| self.headers[i].name.start);
        let xff_name = self.xff.map(|i| self.headers[i].name.start);
        self.headers.retain(|h| {
            let name = h.name(buf);
            if drop(name) {
                dropped.push(h.name.start..h.value.end.max(h.name.end));
                false
            } else {
                true
            }
        });
        self.host = host.and_then(|s| self.headers.iter().position(|h| h.name.start == s));
        self.xff = xff_name
            .and_then(|s| self.headers.iter().position(|h| h.name.start == s))
            .or_else(|| {
                self.headers
                    .iter()
                    .position(|h| h.name(buf).eq_ignore_ascii_case(b"x-forwarded-for"))
            });
        dropped
    }

    /// Every value of the header `name`, in order (for fields that may repeat, like
    /// `X-Forwarded-For`).
    pub fn header_values<'b, 'h>(
        &'h self,
        buf: &'b [u8],
        name: &'h str,
    ) -> impl Iterator<Item = &'b [u8]> + 'h
    where
        'b: 'h,
    {
        self.headers
            .iter()
            .filter(move |h| h.name(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |h| h.value(buf))
    }

    /// Parses a request head from the start of `buf`.
    ///
    /// `Complete`: all fields are set and the body starts at `buf[head_len..]`.
    /// `Partial`: read more and call again with the whole (grown) buffer.
    /// Errors when the head is malformed, is ambiguous about its framing, or has not ended
    /// within `MAX_HEAD_BYTES` (`HeadTooLarge`).
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ParseError> {
        self.parse_limited(buf, MAX_HEADERS)
    }

    /// [`RequestHead::parse`], taking up to `max_headers` fields (nginx's
    /// `max_headers`; more is [`ParseError::TooManyHeaders`]) where that is more than
    /// [`MAX_HEADERS`]: a head with more fields than that is parsed again with room
    /// for them (rare; fewer are always parsed on the stack).
    pub fn parse_limited(&mut self, buf: &[u8], max_headers: usize) -> Result<Parsed, ParseError> {
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        match self.parse_into(buf, &mut raw) {
            Err(ParseError::TooManyHeaders) if max_headers > MAX_HEADERS => {
                let mut raw = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); max_headers];
                self.parse_into(buf, &mut raw)
            }
            r => r,
        }
    }

    /// Parses with room for `raw.len()` fields.
    fn parse_into<'b>(
        &mut self,
        buf: &'b [u8],
        raw: &mut [MaybeUninit<httparse::Header<'b>>],
    ) -> Result<Parsed, ParseError> {
        // Never look past the limit: bounds the work a slow-drip client can cause.
        let limited = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        let mut req = httparse::Request::new(&mut []);
        // Default config: obs-fold, space before colon and invalid header lines are all
        // errors for requests.
        let status = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, limited, raw)?;
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ParseError::HeadTooLarge)
            }
            httparse::Status::Partial => return Ok(Parsed::Partial),
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            // httparse sets all three on Complete; treat anything else as malformed.
            return Err(ParseError::InvalidRequestLine);
        };

        self.headers.clear();
        for h in req.headers.iter() {
            self.headers.push(HeaderRange {
                name: range_in(buf, h.name.as_bytes()).unwrap_or_default(),
                value: range_in(buf, h.value).unwrap_or_default(),
                hop_by_hop: false,
            });
        }

        // nginx's method grammar: upper-case letters, `_` and `-` (so `get` is a 400).
        if !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
        {
            return Err(ParseError::InvalidMethod);
        }
        self.method = Method::from_token(method.as_bytes());
        self.method_range = range_in(buf, method.as_bytes()).unwrap_or_default();
        self.minor_version = version;
        self.head_len = head_len;
        let target = range_in(buf, path.as_bytes()).ok_or(ParseError::InvalidRequestLine)?;
        self.parse_target(buf, target)?;

        let a = analyze(buf, &mut self.headers);

        if a.host_count > 1 {
            return Err(ParseError::DuplicateHost);
        }
        if has_duplicate_unique_field(buf, &self.headers) {
            return Err(ParseError::DuplicateField);
        }
        if a.host_count == 0 && version == 1 {
            return Err(ParseError::MissingHost);
        }
        self.host = a.host;
        if let Some(i) = a.host {
            if !is_valid_host(self.headers[i].value(buf)) {
                return Err(ParseError::InvalidHost);
            }
        }
        if let Some(r) = &self.absolute_host {
            if !is_valid_host(&buf[r.clone()]) {
                return Err(ParseError::InvalidHost);
            }
        }
        self.xff = a.xff;

        self.framing = if a.te_present {
            if version == 0 {
                return Err(ParseError::TransferEncodingInHttp10);
            }
            // nginx's order: the field is unique (400), a coding other than `chunked`
            // is not implemented (501, even beside a Content-Length), then chunked
            // with a Content-Length is refused (400). Stricter than "final coding is
            // chunked": the proxy re-frames the body as plain chunked, so any other
            // coding would be lost.
            if a.te_fields > 1 {
                return Err(ParseError::DuplicateTransferEncoding);
            }
            if !a.te_only_chunked {
                return Err(ParseError::UnknownTransferEncoding);
            }
            if a.content_length_present {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            BodyFraming::Chunked
        } else if let Some(e) = a.content_length_error {
            return Err(e);
        } else if let Some(n) = a.content_length {
            BodyFraming::Length(n)
        } else {
            BodyFraming::None
        };

        self.keep_alive = if version == 1 {
            !a.conn_close
        } else {
            a.conn_keep_alive && !a.conn_close
        };
        self.upgrade = version == 1 && a.conn_upgrade && a.upgrade_present;
        self.expect_continue = version == 1 && a.expect_continue;
        Ok(Parsed::Complete)
    }

    /// Classifies the request target and sets `target`, `form` and `absolute_host`.
    fn parse_target(&mut self, buf: &[u8], target: Range<usize>) -> Result<(), ParseError> {
        let t = buf.get(target.clone()).unwrap_or_default();
        self.absolute_host = None;
        self.target = target.clone();
        if self.method == Method::Connect {
            // CONNECT takes only authority-form (RFC 9112 §3.2.3).
            if !is_authority(t) {
                return Err(ParseError::InvalidTarget);
            }
            self.form = TargetForm::Authority;
            return Ok(());
        }
        match t {
            [b'/', ..] => self.form = TargetForm::Origin,
            b"*" if self.method == Method::Options => self.form = TargetForm::Asterisk,
            _ => {
                let scheme_len = if starts_with_ignore_case(t, b"http://") {
                    7
                } else if starts_with_ignore_case(t, b"https://") {
                    8
                } else {
                    return Err(ParseError::InvalidTarget);
                };
                let rest = &t[scheme_len..];
                let auth_len = rest
                    .iter()
                    .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                    .unwrap_or(rest.len());
                if !is_absolute_authority(&rest[..auth_len]) {
                    return Err(ParseError::InvalidTarget);
                }
                let auth_start = target.start + scheme_len;
                self.absolute_host = Some(auth_start..auth_start + auth_len);
                self.target = auth_start + auth_len..target.end;
                self.form = TargetForm::Absolute;
            }
        }
        Ok(())
    }

    /// The first value of the header `name` (ASCII case-insensitive), from `buf`, the
    /// buffer this head was parsed from.
    pub fn header_value<'b>(&self, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
        find_header(&self.headers, buf, name)
    }

    /// The target without its `?query`. Returns "/" when that is empty (absolute-form
    /// `http://host` or `http://host?q`), so callers can forward it as is.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let t = self.target_without_fragment(buf);
        let p = match memchr::memchr(b'?', t) {
            Some(q) => &t[..q],
            None => t,
        };
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    }

    /// The query after the first `?` of the target (may be empty), or `None` if there is
    /// no `?`.
    pub fn query<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        let t = self.target_without_fragment(buf);
        memchr::memchr(b'?', t).map(|q| &t[q + 1..])
    }

    /// The target up to a `#`: nginx ends `$uri` and `$args` there (the fragment stays
    /// in `$request_uri`).
    fn target_without_fragment<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let t = buf.get(self.target.clone()).unwrap_or_default();
        match memchr::memchr(b'#', t) {
            Some(f) => &t[..f],
            None => t,
        }
    }

    /// The method token bytes as sent.
    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.method_range.clone()).unwrap_or_default()
    }
}

#[inline]
/// Whether a field nginx allows once (its `ngx_http_process_unique_header_line`
/// fields and `Authorization`) appears twice. Host and Transfer-Encoding have their
/// own errors.
fn has_duplicate_unique_field(buf: &[u8], headers: &[HeaderRange]) -> bool {
    const UNIQUE: [&[u8]; 9] = [
        b"content-length",
        b"content-range",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-match",
        b"if-none-match",
        b"if-range",
        b"expect",
        b"authorization",
    ];
    let mut seen = 0u16;
    for h in headers {
        let name = h.name(buf);
        // Most fields are none of these: their length says so without comparing.
        if !matches!(name.len(), 6 | 8 | 13 | 14 | 17 | 19) {
            continue;
        }
        if let Some(i) = UNIQUE.iter().position(|u| name.eq_ignore_ascii_case(u)) {
            if seen & (1 << i) != 0 {
                return true;
            }
            seen |= 1 << i;
        }
    }
    false
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// nginx's host check (`ngx_http_validate_host`): not empty (a lone trailing dot
/// counts as empty), no `..`, no `/`, no NUL, control byte, space or DEL.
fn is_valid_host(h: &[u8]) -> bool {
    host_name(h).is_some()
}

/// The name of a `Host` value or absolute-form authority as nginx validates it
/// (`ngx_http_validate_host`): the part before the first `:` (or an IP literal's `]`),
/// one trailing dot dropped; `None` when empty or holding `..`, `/`, NUL or controls,
/// which nginx answers with 400. Case is left as sent.
pub fn host_name(h: &[u8]) -> Option<&[u8]> {
    // One pass: this runs on every request.
    let mut host_len = h.len();
    let mut literal = false;
    let mut rest = false;
    let mut dot_pos: Option<usize> = None;
    for (i, &b) in h.iter().enumerate() {
        match b {
            b'.' => {
                if i > 0 && dot_pos == Some(i - 1) {
                    return None;
                }
                dot_pos = Some(i);
            }
            b':' if !literal && !rest => {
                host_len = i;
                rest = true;
            }
            b'[' if i == 0 => literal = true,
            b']' if literal => {
                host_len = i + 1;
                literal = false;
                rest = true;
            }
            b'/' | 0..=0x20 | 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == Some(host_len - 1) {
        host_len -= 1;
    }
    (host_len > 0).then(|| &h[..host_len])
}

/// An absolute-form target's authority as nginx's request-line parser takes it: a name
/// of letters, digits, `.` and `-`, or a bracketed IP literal, then optionally `:` and
/// digits. Anything else (userinfo, `_`, a second port, a dot after the literal) is 400.
fn is_absolute_authority(a: &[u8]) -> bool {
    let (host, port) = if a.first() == Some(&b'[') {
        let Some(end) = memchr::memchr(b']', a) else {
            return false;
        };
        let literal_ok = a[1..end]
            .iter()
            .all(|&b| b == b':' || is_unreserved_or_sub_delim(b));
        if !literal_ok {
            return false;
        }
        (&a[..=end], &a[end + 1..])
    } else {
        let end = a
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
            .unwrap_or(a.len());
        (&a[..end], &a[end..])
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    !host.is_empty() && port_ok
}

/// `authority` without userinfo (RFC 3986 §3.2 minus `@`, which RFC 9110 §4.2.4 forbids
/// and which is a classic way to confuse host checks): non-empty, host chars, `:`, IP
/// literal brackets, percent-encoding.
fn is_authority(a: &[u8]) -> bool {
    !a.is_empty()
        && a.iter()
            .all(|&b| matches!(b, b':' | b'[' | b']' | b'%') || is_unreserved_or_sub_delim(b))
}

/// RFC 3986's unreserved characters and sub-delims: what a host name or an IP literal
/// may hold besides `:`, brackets and percent-encoding.
fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<RequestHead, ParseError> {
        let mut h = RequestHead::new();
        match h.parse(buf)? {
            Parsed::Complete => Ok(h),
            Parsed::Partial => panic!("unexpected Partial for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> ParseError {
        match parse(buf) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(buf)),
            Err(e) => e,
        }
    }

    fn hop(h: &RequestHead, buf: &[u8], name: &str) -> bool {
        h.headers
            .iter()
            .find(|r| r.name(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|r| r.hop_by_hop)
            .expect("header present")
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.method_bytes(buf), b"GET");
        assert_eq!(&buf[h.target.clone()], b"/a/b?x=1&y");
        assert_eq!(h.form, TargetForm::Origin);
        assert_eq!(h.path(buf), b"/a/b");
        assert_eq!(h.query(buf), Some(&b"x=1&y"[..]));
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.head_len, buf.len());
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue && !h.upgrade);
        assert_eq!(h.headers.len(), 3);
        assert_eq!(h.headers[h.host.unwrap()].value(buf), b"example.com");
        assert_eq!(h.headers[h.xff.unwrap()].value(buf), b"1.2.3.4");
        assert_eq!(h.header_value(buf, "accept"), Some(&b"*/*"[..]));
        assert_eq!(h.header_value(buf, "HOST"), Some(&b"example.com"[..]));
        assert_eq!(h.header_value(buf, "missing"), None);
        assert!(h.headers.iter().all(|r| !r.hop_by_hop));
    }

    #[test]
    fn header_value_returns_first() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        assert_eq!(
            parse(buf).unwrap().header_value(buf, "X-A"),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn values_are_trimmed_and_may_be_empty() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-A:   v  w \t\r\nX-B:\r\nX-C:   \r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.header_value(buf, "x-a"), Some(&b"v  w"[..]));
        assert_eq!(h.header_value(buf, "x-b"), Some(&b""[..]));
        assert_eq!(h.header_value(buf, "x-c"), Some(&b""[..]));
    }

    #[test]
    fn partial_at_every_split_point() {
        let buf = b"POST /up?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: keep-alive, X-Y\r\nX-Y: z\r\n\r\nabc";
        let head_end = buf.len() - 3;
        let mut h = RequestHead::new();
        for k in 0..head_end {
            assert_eq!(h.parse(&buf[..k]), Ok(Parsed::Partial), "split at {k}");
        }
        for k in head_end..=buf.len() {
            assert_eq!(h.parse(&buf[..k]), Ok(Parsed::Complete), "split at {k}");
            assert_eq!(h.head_len, head_end);
            assert_eq!(h.framing, BodyFraming::Length(3));
            assert!(hop(&h, buf, "x-y"));
        }
    }

    #[test]
    fn pipelined_requests() {
        let buf = b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nHost: b\r\n\r\nPUT /three HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut h = RequestHead::new();
        assert_eq!(h.parse(buf), Ok(Parsed::Complete));
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.framing, BodyFraming::Length(5));
        let next = &buf[h.head_len + 5..];
        assert_eq!(h.parse(next), Ok(Parsed::Complete));
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(next), b"/two");
        assert_eq!(h.header_value(next, "host"), Some(&b"b"[..]));
        let next = &next[h.head_len..];
        assert_eq!(h.parse(next), Ok(Parsed::Complete));
        assert_eq!(h.method, Method::Put);
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert_eq!(&next[h.head_len..], b"0\r\n\r\n");
    }

    #[test]
    fn head_is_reused_without_reallocating() {
        let mut h = RequestHead::new();
        let cap = h.headers.capacity();
        for _ in 0..3 {
            let buf = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
            assert_eq!(h.parse(buf), Ok(Parsed::Complete));
            assert_eq!(h.headers.len(), 3);
            assert_eq!(h.headers.capacity(), cap);
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request.
        let buf = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.head_len, buf.len());
        assert_eq!(h.path(buf), b"/");
    }

    // ---- Content-Length / Transfer-Encoding ----

    #[test]
    fn content_length_accepted() {
        let h = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Length(42));
        let h = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Length(0));
        let h =
            parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n")
                .unwrap();
        assert_eq!(h.framing, BodyFraming::Length(u64::MAX));
    }

    #[test]
    fn content_length_is_not_hop_by_hop() {
        let buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n";
        assert!(!hop(&parse(buf).unwrap(), buf, "content-length"));
    }

    #[test]
    fn duplicate_unique_fields_rejected_as_nginx() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n"),
            ParseError::DuplicateField
        );
        for name in [
            "If-Match",
            "if-none-match",
            "Authorization",
            "Expect",
            "If-Range",
        ] {
            let head =
                format!("GET / HTTP/1.1\r\nHost: h\r\n{name}: a\r\nX: 1\r\n{name}: a\r\n\r\n");
            assert_eq!(err(head.as_bytes()), ParseError::DuplicateField, "{name}");
        }
        // Fields nginx takes many of.
        parse(
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nVia: x\r\nVia: y\r\n\r\n",
        )
        .unwrap();
    }

    #[test]
    fn identical_content_length_list_accepted() {
        let h = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7 ,7\r\n\r\n").unwrap();
        assert_eq!(h.framing, BodyFraming::Length(7));
    }

    #[test]
    fn differing_duplicate_content_length_rejected() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
            ParseError::DuplicateField
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 8\r\n\r\n"),
            ParseError::ConflictingContentLength
        );
    }

    #[test]
    fn invalid_content_length_rejected() {
        for v in [
            "",
            "abc",
            "+5",
            "-1",
            "5 5",
            "0x10",
            "1.0",
            "18446744073709551616",
            "7,",
            ",7",
            "7,,7",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(
                err(buf.as_bytes()),
                ParseError::InvalidContentLength,
                "CL {v:?}"
            );
        }
    }

    #[test]
    fn chunked_accepted_case_insensitive() {
        for v in ["chunked", "Chunked", "CHUNKED", " chunked ", "chunked,"] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n");
            let h = parse(buf.as_bytes()).unwrap();
            assert_eq!(h.framing, BodyFraming::Chunked, "TE {v:?}");
            assert!(hop(&h, buf.as_bytes(), "transfer-encoding"));
        }
    }

    #[test]
    fn content_length_with_transfer_encoding_rejected() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::ContentLengthWithTransferEncoding
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            ParseError::ContentLengthWithTransferEncoding
        );
    }

    #[test]
    fn non_chunked_transfer_encoding_rejected() {
        for v in [
            "gzip",
            "chunked, gzip",
            "gzip, chunked",
            "chunked, chunked",
            "",
            "chunkedx",
            "identity",
        ] {
            let buf = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n");
            assert_eq!(
                err(buf.as_bytes()),
                ParseError::UnknownTransferEncoding,
                "TE {v:?}"
            );
            assert_eq!(ParseError::UnknownTransferEncoding.status_code(), 501);
        }
        // An unknown coding beside a Content-Length is still nginx's 501.
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n\r\n"),
            ParseError::UnknownTransferEncoding
        );
        // Two fields: the field is unique for nginx (400).
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::DuplicateTransferEncoding
        );
        assert_eq!(ParseError::DuplicateTransferEncoding.status_code(), 400);
    }

    #[test]
    fn transfer_encoding_in_http10_rejected() {
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::TransferEncodingInHttp10
        );
    }

    // ---- syntax ----

    #[test]
    fn obs_fold_rejected() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"),
            ParseError::InvalidHeaderName
        );
        // Whitespace before the first field is a variant of the same trick.
        assert!(parse(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n").is_err());
    }

    #[test]
    fn bare_cr_rejected() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\rHost: h\r\n\r\n").is_err());
    }

    #[test]
    fn nul_and_control_bytes_rejected() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"),
            ParseError::InvalidHeaderValue
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n"),
            ParseError::InvalidHeaderValue
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n"),
            ParseError::InvalidHeaderValue
        );
        assert!(parse(b"GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
    }

    #[test]
    fn invalid_header_names_rejected() {
        for line in [
            "X A: 1",
            "X-A : 1",
            "X(A): 1",
            "X\"A: 1",
            ": 1",
            "X/A: 1",
            "X-A\t: 1",
            "X@A: 1",
            "X\x00A: 1",
            "NoColon",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: h\r\n{line}\r\n\r\n");
            assert_eq!(
                err(buf.as_bytes()),
                ParseError::InvalidHeaderName,
                "line {line:?}"
            );
        }
    }

    #[test]
    fn obs_text_in_value_accepted() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n";
        assert_eq!(
            parse(buf).unwrap().header_value(buf, "x-a"),
            Some(&b"caf\xc3\xa9"[..])
        );
    }

    #[test]
    fn bad_request_lines_rejected() {
        assert_eq!(
            err(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert!(parse(b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
        assert!(parse(b"GE(T / HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
        assert!(parse(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
        assert!(parse(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
        assert_eq!(
            err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            err(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert_eq!(
            err(b"GET / http/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidVersion
        );
        assert!(parse(b"GET /\r\n\r\n").is_err());
    }

    #[test]
    fn methods() {
        for (tok, m) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("TRACE", Method::Trace),
            ("LOCK", Method::Lock),
            ("PROPFIND", Method::Other),
            ("X-CUSTOM", Method::Other),
        ] {
            let buf = format!("{tok} / HTTP/1.1\r\nHost: h\r\n\r\n");
            let h = parse(buf.as_bytes()).unwrap();
            assert_eq!(h.method, m, "{tok}");
            assert_eq!(h.method_bytes(buf.as_bytes()), tok.as_bytes());
            if m != Method::Other {
                assert_eq!(m.as_str(), Some(tok));
            }
        }
        assert_eq!(Method::Other.as_str(), None);
    }

    #[test]
    fn idempotency_follows_nginx() {
        for m in [Method::Post, Method::Patch, Method::Lock] {
            assert!(!m.is_idempotent());
        }
        for m in [
            Method::Get,
            Method::Head,
            Method::Put,
            Method::Delete,
            Method::Options,
            Method::Trace,
            Method::Connect,
            Method::Other,
        ] {
            assert!(m.is_idempotent());
        }
    }

    // ---- Host ----

    #[test]
    fn http11_without_host_rejected() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
            ParseError::MissingHost
        );
    }

    #[test]
    fn http10_without_host_accepted() {
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(h.host, None);
        assert_eq!(h.minor_version, 0);
    }

    #[test]
    fn duplicate_host_rejected() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            ParseError::DuplicateHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            ParseError::DuplicateHost
        );
    }

    #[test]
    fn empty_host_refused_as_nginx_does() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            ParseError::InvalidHost
        );
    }

    // ---- target forms ----

    #[test]
    fn host_names_as_nginx() {
        assert_eq!(host_name(b"example.com:8080"), Some(&b"example.com"[..]));
        assert_eq!(host_name(b"Example.com.:88"), Some(&b"Example.com"[..]));
        assert_eq!(host_name(b"[::1]:8080"), Some(&b"[::1]"[..]));
        assert_eq!(host_name(b"1.2.3.4:9000:80"), Some(&b"1.2.3.4"[..]));
        assert_eq!(host_name(b"."), None);
        assert_eq!(host_name(b"a..b"), None);
        assert_eq!(host_name(b"a/b"), None);
        for ok in ["a.b", "a.b.:2", "[::1]", "[::1]:5", "1.2.3.4:123"] {
            assert!(is_absolute_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a.:1.2",
            "1.2.3.4:9000:80",
            "[::1].",
            "[::1].:98",
            "x[::1]",
            "[::1",
            "a_b",
            "u@h",
            "",
        ] {
            assert!(!is_absolute_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn absolute_form() {
        let buf = b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.form, TargetForm::Absolute);
        assert_eq!(&buf[h.absolute_host.clone().unwrap()], b"example.com:8080");
        assert_eq!(&buf[h.target.clone()], b"/p/q?x=1");
        assert_eq!(h.path(buf), b"/p/q");
        assert_eq!(h.query(buf), Some(&b"x=1"[..]));

        let buf = b"GET HTTPS://[::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(&buf[h.absolute_host.clone().unwrap()], b"[::1]:443");
        assert!(h.target.is_empty());
        assert_eq!(h.path(buf), b"/");
        assert_eq!(h.query(buf), None);

        let buf = b"GET http://h?a=b HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(&buf[h.target.clone()], b"?a=b");
        assert_eq!(h.path(buf), b"/");
        assert_eq!(h.query(buf), Some(&b"a=b"[..]));
    }

    #[test]
    fn bad_absolute_form_rejected() {
        for t in [
            "http://",
            "http:///p",
            "http://user@h/p",
            "ftp://h/p",
            "http:/h/p",
            "h/p",
            "http://h\\x/p",
            "http://h{}/",
        ] {
            let buf = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(err(buf.as_bytes()), ParseError::InvalidTarget, "{t}");
        }
    }

    #[test]
    fn asterisk_only_for_options() {
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.form, TargetForm::Asterisk);
        assert_eq!(&buf[h.target.clone()], b"*");
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidTarget
        );
    }

    #[test]
    fn authority_form_only_for_connect() {
        let buf = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.method, Method::Connect);
        assert_eq!(h.form, TargetForm::Authority);
        assert_eq!(&buf[h.target.clone()], b"example.com:443");
        assert_eq!(
            err(b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidTarget
        );
        assert_eq!(
            err(b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidTarget
        );
        assert_eq!(
            err(b"CONNECT http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::InvalidTarget
        );
    }

    // ---- Connection / keep-alive / hop-by-hop ----

    #[test]
    fn keep_alive_http11() {
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: h\r\nconnection: X-A, CLOSE\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
            )
            .unwrap()
            .keep_alive
        );
    }

    #[test]
    fn keep_alive_http10() {
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            parse(b"GET / HTTP/1.0\r\nConnection: foo ,keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn standard_hop_by_hop_fields_marked() {
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: foo\r\nAccept: y\r\n\r\n";
        let h = parse(buf).unwrap();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(hop(&h, buf, name), "{name}");
        }
        assert!(!hop(&h, buf, "host"));
        assert!(!hop(&h, buf, "accept"));
    }

    #[test]
    fn connection_options_mark_fields_hop_by_hop() {
        // The Connection field comes after one named field and before another.
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Before: 1\r\nConnection: x-before, X-AFTER\r\nConnection: x-third\r\nX-After: 2\r\nx-third: 3\r\nX-Other: 4\r\n\r\n";
        let h = parse(buf).unwrap();
        assert!(hop(&h, buf, "x-before"));
        assert!(hop(&h, buf, "x-after"));
        assert!(hop(&h, buf, "x-third"));
        assert!(!hop(&h, buf, "x-other"));
        assert!(h.keep_alive);
    }

    #[test]
    fn connection_cannot_strip_host_or_content_length() {
        let buf = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: Host, Content-Length\r\n\r\n";
        let h = parse(buf).unwrap();
        assert!(!hop(&h, buf, "host"));
        assert!(!hop(&h, buf, "content-length"));
        assert_eq!(h.framing, BodyFraming::Length(1));
    }

    // ---- Upgrade / Expect ----

    #[test]
    fn upgrade() {
        let h = parse(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert!(h.upgrade);
        let h = parse(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
        assert!(h.upgrade);
        // Upgrade field without the Connection option, and vice versa.
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .upgrade
        );
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n")
                .unwrap()
                .upgrade
        );
        // HTTP/1.0 cannot upgrade.
        assert!(
            !parse(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .upgrade
        );
    }

    #[test]
    fn expect_continue() {
        assert!(
            parse(
                b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
            )
            .unwrap()
            .expect_continue
        );
        assert!(
            parse(b"PUT / HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\n\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !parse(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !parse(b"PUT / HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .expect_continue
        );
    }

    // ---- limits ----

    #[test]
    fn head_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEAD_BYTES + 10, b'a');
        let mut h = RequestHead::new();
        assert_eq!(h.parse(&buf), Err(ParseError::HeadTooLarge));
        assert_eq!(ParseError::HeadTooLarge.status_code(), 494);
        // Just under the limit is still only Partial.
        assert_eq!(h.parse(&buf[..MAX_HEAD_BYTES - 1]), Ok(Parsed::Partial));
        // A complete head that fits exactly is fine.
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        buf.resize(MAX_HEAD_BYTES - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(h.parse(&buf), Ok(Parsed::Complete));
        assert_eq!(h.head_len, MAX_HEAD_BYTES);
    }

    #[test]
    fn too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok).unwrap().headers.len(), MAX_HEADERS);
        buf.extend_from_slice(b"X-Last: v\r\n\r\n");
        assert_eq!(err(&buf), ParseError::TooManyHeaders);
        // nginx's "client sent too many header lines" is a plain 400.
        assert_eq!(ParseError::TooManyHeaders.status_code(), 400);
        assert_eq!(ParseError::MissingHost.status_code(), 400);
        // Up to `max_headers` (nginx's default 1000) with room made for them.
        let mut h = RequestHead::default();
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..999 {
            big.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = big.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(h.parse_limited(&ok, 1000), Ok(Parsed::Complete));
        assert_eq!(h.headers.len(), 1000);
        big.extend_from_slice(b"X-Last: v\r\n\r\n");
        assert_eq!(h.parse_limited(&big, 1000), Err(ParseError::TooManyHeaders));
    }

    // ---- property tests ----

    fn arb_method() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("GET".to_string()),
            Just("POST".to_string()),
            Just("DELETE".to_string()),
            "[A-Z][A-Z_-]{0,10}",
        ]
    }

    proptest! {
        #[test]
        fn prop_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut h = RequestHead::new();
            let _ = h.parse(&data);
        }

        #[test]
        fn prop_mutated_heads_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..256),
            prefix in prop_oneof![
                Just(&b"GET / HTTP/1.1\r\n"[..]),
                Just(&b"GET http://"[..]),
                Just(&b"CONNECT "[..]),
                Just(&b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "[..]),
                Just(&b"POST / HTTP/1.1\r\nHost: h\r\nConnection: "[..]),
                Just(&b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "[..]),
            ],
        ) {
            let mut buf = prefix.to_vec();
            buf.extend_from_slice(&tail);
            let mut h = RequestHead::new();
            if let Ok(Parsed::Complete) = h.parse(&buf) {
                // Every range the parser hands out must be inside the buffer.
                prop_assert!(h.head_len <= buf.len());
                prop_assert!(buf.get(h.target.clone()).is_some());
                for r in &h.headers {
                    prop_assert!(buf.get(r.name.clone()).is_some());
                    prop_assert!(buf.get(r.value.clone()).is_some());
                }
            }
        }

        #[test]
        fn prop_valid_head_round_trips(
            method in arb_method(),
            path in "/[a-zA-Z0-9/._~%!$&'()*+,;=:@-]{0,40}",
            query in proptest::option::of("[a-zA-Z0-9=&/?._-]{0,20}"),
            minor in 0u8..=1,
            fields in proptest::collection::vec(
                ("x-[a-z0-9!#$%&'*+.^_`|~-]{1,20}", "([!-~]([ -~]{0,30}[!-~])?)?"),
                0..20,
            ),
            split in any::<prop::sample::Index>(),
        ) {
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let mut text = format!("{method} {target} HTTP/1.{minor}\r\nHost: example.org\r\n");
            for (n, v) in &fields {
                text.push_str(&format!("{n}: {v}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str("BODY");
            let buf = text.as_bytes();
            let head_len = buf.len() - 4;

            let mut h = RequestHead::new();
            // Any prefix shorter than the head is Partial.
            let cut = split.index(head_len);
            prop_assert_eq!(h.parse(&buf[..cut]), Ok(Parsed::Partial));

            prop_assert_eq!(h.parse(buf), Ok(Parsed::Complete));
            prop_assert_eq!(h.head_len, head_len);
            prop_assert_eq!(h.method, Method::from_token(method.as_bytes()));
            prop_assert_eq!(h.method_bytes(buf), method.as_bytes());
            prop_assert_eq!(&buf[h.target.clone()], target.as_bytes());
            prop_assert_eq!(h.path(buf), path.as_bytes());
            prop_assert_eq!(h.query(buf), query.as_ref().map(|q| q.as_bytes()));
            prop_assert_eq!(h.minor_version, minor);
            prop_assert_eq!(h.headers.len(), fields.len() + 1);
            for (r, (n, v)) in h.headers[1..].iter().zip(&fields) {
                prop_assert_eq!(r.name(buf), n.as_bytes());
                prop_assert_eq!(r.value(buf), v.as_bytes());
                prop_assert!(!r.hop_by_hop);
            }
            prop_assert_eq!(h.framing, BodyFraming::None);
            prop_assert_eq!(h.keep_alive, minor == 1);
        }
    }

    #[test]
    fn hosts_and_methods_as_nginx_validates_them() {
        for host in ["", ".", "a..b", "a/b", "a\\/b", "..", "a b", "a\x7f"] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(
                matches!(
                    parse(raw.as_bytes()),
                    Err(ParseError::InvalidHost | ParseError::InvalidHeaderValue)
                ),
                "Host {host:?} must be refused"
            );
        }
        for host in [
            "example.com",
            "example.com.",
            "a.b:8080",
            "[::1]:80",
            "xn--d1acufc.xn--p1ai",
            "a\\b",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse(raw.as_bytes()).is_ok(), "Host {host:?} must pass");
        }
        assert_eq!(
            err(b"GET http://a..b/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            ParseError::InvalidHost
        );
        for m in ["get", "Get", "GE1", "G.T"] {
            let raw = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(err(raw.as_bytes()), ParseError::InvalidMethod, "{m}");
        }
        for m in ["GET", "PROPFIND", "VERSION-CONTROL", "M_SEARCH"] {
            let raw = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(parse(raw.as_bytes()).is_ok(), "{m}");
        }
    }
}
