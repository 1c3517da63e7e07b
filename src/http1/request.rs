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

    /// Parses a request head from the start of `buf`.
    ///
    /// `Complete`: all fields are set and the body starts at `buf[head_len..]`.
    /// `Partial`: read more and call again with the whole (grown) buffer.
    /// Errors when the head is malformed, is ambiguous about its framing, or has not ended
    /// within `MAX_HEAD_BYTES` (`HeadTooLarge`).
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ParseError> {
        // Never look past the limit: bounds the work a slow-drip client can cause.
        let limited = &buf[..buf.len().min(MAX_HEAD_BYTES)];
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        // Default config: obs-fold, space before colon and invalid header lines are all
        // errors for requests.
        let status = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, limited, &mut raw)?;
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
        if a.host_count == 0 && version == 1 {
            return Err(ParseError::MissingHost);
        }
        self.host = a.host;
        self.xff = a.xff;

        self.framing = if a.te_present {
            if version == 0 {
                return Err(ParseError::TransferEncodingInHttp10);
            }
            if a.content_length_present {
                return Err(ParseError::ContentLengthWithTransferEncoding);
            }
            // Stricter than "final coding is chunked": the proxy drops Transfer-Encoding
            // and re-frames the body as plain chunked, so any other coding would be lost.
            // nginx refuses the same requests.
            if !a.te_only_chunked {
                return Err(ParseError::UnsupportedTransferEncoding);
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
                if !is_authority(&rest[..auth_len]) {
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
        let t = buf.get(self.target.clone()).unwrap_or_default();
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
        let t = buf.get(self.target.clone()).unwrap_or_default();
        memchr::memchr(b'?', t).map(|q| &t[q + 1..])
    }

    /// The method token bytes as sent.
    pub fn method_bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.method_range.clone()).unwrap_or_default()
    }
}

#[inline]
fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `authority` without userinfo (RFC 3986 §3.2 minus `@`, which RFC 9110 §4.2.4 forbids
/// and which is a classic way to confuse host checks): non-empty, host chars, `:`, IP
/// literal brackets, percent-encoding.
fn is_authority(a: &[u8]) -> bool {
    !a.is_empty()
        && a.iter().all(|&b| {
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
                        | b':'
                        | b'['
                        | b']'
                        | b'%'
                )
        })
}
