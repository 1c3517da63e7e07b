//! Parse errors of the HTTP/1.1 codec.
//!
//! Every variant names the rule that was broken, so a log line says why a message was
//! refused. A request that fails to parse is answered (see [`ParseError::status_code`])
//! and never forwarded; a response that fails to parse is treated as an upstream error.

/// Why a request head, response head or chunked body was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The head (start line + header fields) did not end within `MAX_HEAD_BYTES`.
    #[error("message head exceeds the size limit")]
    HeadTooLarge,
    /// More header fields than `max_headers` allows (nginx's 400).
    #[error("too many header lines")]
    TooManyHeaders,
    /// The request line is longer than a large header buffer
    /// (`large_client_header_buffers`): nginx's 414.
    #[error("too long URI")]
    RequestLineTooLong,
    /// A header line is longer than a large header buffer, or the head longer than
    /// all of them: nginx's 494 (a 400 page "Request Header Or Cookie Too Large").
    #[error("too large request")]
    HeaderTooLarge,
    /// Request line: the method is not a token, or the target contains whitespace or
    /// control bytes, or the line is otherwise malformed.
    #[error("malformed request line (method must be a token, target must not contain whitespace)")]
    InvalidRequestLine,
    /// The request target does not have a form allowed for its method (origin-form for
    /// everything, absolute-form `http(s)://authority/...`, `*` only for OPTIONS,
    /// authority-form only for CONNECT).
    #[error("request target form not allowed for this method")]
    InvalidTarget,
    /// The protocol version is not `HTTP/1.0` or `HTTP/1.1`.
    #[error("unsupported or malformed HTTP version")]
    InvalidVersion,
    /// A `101 Switching Protocols` to a request that asked for no upgrade (RFC 9110
    /// §15.2.2: a server must not send it then).
    #[error("101 Switching Protocols to a request without Upgrade")]
    UnrequestedUpgrade,
    /// Status line malformed or status code outside 100..=999.
    #[error("malformed status line or status code outside 100..=999")]
    InvalidStatus,
    /// A header name contains a non-token byte, whitespace before the colon, or a line
    /// starts with whitespace (obs-fold, RFC 9112 §5.2).
    #[error("invalid header field name (non-token byte, space before colon or obs-fold)")]
    InvalidHeaderName,
    /// A header value contains a control byte (NUL, bare CR, ...).
    #[error("invalid byte in header field value")]
    InvalidHeaderValue,
    /// A line ending is a CR not followed by LF.
    #[error("bare CR in line ending")]
    InvalidLineEnding,
    /// A method with bytes nginx refuses (lower case, digits, punctuation).
    #[error("invalid method (nginx accepts A-Z, \"_\" and \"-\" only)")]
    InvalidMethod,
    /// A Host nginx refuses: empty, `..`, `/`, control bytes, NUL.
    #[error("invalid host")]
    InvalidHost,
    /// HTTP/1.1 request without a Host header field (RFC 9112 §3.2).
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one Host header field (RFC 9112 §3.2).
    #[error("more than one Host header field")]
    DuplicateHost,
    /// A field nginx takes once appears twice (`Content-Length`, `If-Match`,
    /// `Authorization`, ...): nginx's "client sent duplicate header line".
    #[error("duplicate header line of a field allowed once")]
    DuplicateField,
    /// A Content-Length value that is not a non-empty run of digits fitting in `u64`.
    #[error("Content-Length is not a valid decimal number")]
    InvalidContentLength,
    /// Several Content-Length values that differ (RFC 9110 §8.6).
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// A request with both Content-Length and Transfer-Encoding (RFC 9112 §6.3 rule 3).
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// A request Transfer-Encoding other than exactly `chunked`.
    #[error("Transfer-Encoding is not exactly \"chunked\"")]
    UnsupportedTransferEncoding,
    /// A request Transfer-Encoding other than `chunked`, in one field: nginx answers
    /// 501 Not Implemented (its "client sent unknown \"Transfer-Encoding\"").
    #[error("unknown Transfer-Encoding")]
    UnknownTransferEncoding,
    /// More than one Transfer-Encoding field in a request (nginx takes the field as
    /// unique: 400).
    #[error("more than one Transfer-Encoding header field")]
    DuplicateTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// Chunk size empty, not hex, longer than 16 hex digits, or followed by junk.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A chunk extension contains a control byte or is longer than the limit.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// Chunk data not followed by CRLF, or a bare CR/LF in the chunk framing.
    #[error("chunk framing: missing CRLF or bare CR/LF")]
    InvalidChunkFraming,
    /// A trailer field line is malformed (non-token name, control byte, obs-fold).
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// Trailer section larger than `MAX_HEAD_BYTES`.
    #[error("trailer section exceeds the size limit")]
    TrailerTooLarge,
}

impl ParseError {
    /// The status code a server answers a request that failed with this error:
    /// nginx's status: 494 (sent as a 400 page "Request Header Or Cookie Too Large") for
    /// an oversized head, 414 for a too long request line, 501 for a transfer coding
    /// other than `chunked`, 400 for everything else (too many header lines included,
    /// as nginx's `max_headers`).
    pub fn status_code(self) -> u16 {
        match self {
            ParseError::HeadTooLarge | ParseError::HeaderTooLarge => 494,
            ParseError::RequestLineTooLong => 414,
            ParseError::UnknownTransferEncoding => 501,
            _ => 400,
        }
    }
}

impl From<httparse::Error> for ParseError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::HeaderName => ParseError::InvalidHeaderName,
            httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
            httparse::Error::NewLine => ParseError::InvalidLineEnding,
            httparse::Error::Status => ParseError::InvalidStatus,
            httparse::Error::Token => ParseError::InvalidRequestLine,
            httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
            httparse::Error::Version => ParseError::InvalidVersion,
        }
    }
}
