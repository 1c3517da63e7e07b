//! `log_format` lines in two phases: before a request is forwarded, every part that
//! depends only on the request is rendered into a [`PendingLine`] (forwarding drains
//! the buffer the head points into); after the response, the response-phase parts
//! (`$status`, byte counts, times, `$upstream_*`) are filled into the holes left for them.

use std::io::Write as _;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{LogEscape, LogFormat, MapConf, TemplatePart, Var};
use crate::vars::{
    map_value_after_response, seconds, sent_field, upstream_value, RequestVars, UpstreamAttempt,
};

/// Connection-level facts some request-phase variables need.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts {
    /// `$connection`: the connection serial number.
    pub id: u64,
    /// `$connection_requests`: requests on this connection so far, this one included.
    pub requests: u32,
    /// `$pipe`: whether the request's head was already buffered when the previous
    /// request on the connection ended (pipelined).
    pub pipelined: bool,
}

/// What the response phase of a request left for its log line.
#[derive(Debug, Clone, Copy)]
pub struct ResponseFacts<'a> {
    /// `$status`.
    pub status: u16,
    /// `$body_bytes_sent`.
    pub body_bytes: u64,
    /// `$bytes_sent`: head and body.
    pub bytes_sent: u64,
    /// When the first byte of the request head arrived (`$request_time`).
    pub started: Instant,
    /// Every attempt at a peer, in order; empty when no peer was contacted or the
    /// format lists none.
    pub upstream: &'a [UpstreamAttempt],
    /// The response head sent to the client (status line and fields), when the format
    /// has `$sent_http_NAME`; empty otherwise.
    pub sent_head: &'a [u8],
    /// `$gzip_ratio`: of a body compressed on the fly.
    pub gzip_ratio: Option<&'a str>,
    /// The configuration's `map` blocks, for maps of response variables (`map $status
    /// $loggable`), looked up once the response is known.
    pub maps: &'a [MapConf],
}

/// A log line with its request-phase parts rendered.
#[derive(Debug, Default)]
pub struct PendingLine {
    /// Literals and request-phase values, escaped.
    pre: Vec<u8>,
    /// `(offset in pre, index in the format's parts)` for each response-phase variable.
    holes: Vec<(u32, u32)>,
}

/// A `map` whose source is made of response variables only (`map $status ...`): as
/// in nginx, its value is looked up once the response is known.
fn is_late_map(v: &Var, vars: &RequestVars<'_>) -> bool {
    let Var::Map(i) = v else { return false };
    vars.map_conf(*i).is_some_and(|m| {
        let mut names = m.source.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v),
            TemplatePart::Literal(_) => None,
        });
        names.clone().next().is_some() && names.all(is_response_phase)
    })
}

/// Whether a variable's value is only known once the response has been sent.
fn is_response_phase(v: &Var) -> bool {
    matches!(
        v,
        Var::Status
            | Var::BodyBytesSent
            | Var::BytesSent
            | Var::RequestTime
            | Var::Msec
            | Var::TimeLocal
            | Var::TimeIso8601
            | Var::UpstreamAddr
            | Var::UpstreamStatus
            | Var::UpstreamResponseTime
            | Var::UpstreamConnectTime
            | Var::UpstreamHeaderTime
            | Var::UpstreamResponseLength
            | Var::UpstreamBytesReceived
            | Var::UpstreamBytesSent
            | Var::UpstreamHttp(_)
            | Var::UpstreamCookie(_)
            | Var::SentHttp(_)
            | Var::GzipRatio
    )
}

impl PendingLine {
    /// Renders the request-phase parts of `format` for one request.
    pub fn prepare(format: &LogFormat, vars: &RequestVars<'_>, conn: &ConnFacts) -> Self {
        let mut pre = Vec::with_capacity(256);
        let mut holes = Vec::new();
        let mut scratch = Vec::new();
        for (i, part) in format.parts.iter().enumerate() {
            match part {
                TemplatePart::Literal(s) => pre.extend_from_slice(s.as_bytes()),
                TemplatePart::Var(v) if is_response_phase(v) || is_late_map(v, vars) => {
                    // Lines are far below 4 GiB; the casts cannot truncate.
                    holes.push((pre.len() as u32, i as u32));
                }
                TemplatePart::Var(v) => {
                    scratch.clear();
                    let found = match v {
                        Var::Connection => write!(scratch, "{}", conn.id).is_ok(),
                        Var::ConnectionRequests => write!(scratch, "{}", conn.requests).is_ok(),
                        Var::Pipe => {
                            scratch.push(if conn.pipelined { b'p' } else { b'.' });
                            true
                        }
                        // nginx's `$is_args` is an empty value, not a missing one, and
                        // so are the ports of a Unix-socket connection and `$http2` of
                        // a request that is not HTTP/2, and `$uri` of a request whose
                        // path was refused.
                        Var::IsArgs | Var::RemotePort | Var::ServerPort | Var::Http2 | Var::Uri => {
                            vars.eval_var(v, &mut scratch);
                            true
                        }
                        _ => {
                            vars.eval_var(v, &mut scratch);
                            !scratch.is_empty()
                        }
                    };
                    put(&mut pre, format.escape, &scratch, found);
                }
            }
        }
        PendingLine { pre, holes }
    }

    /// Appends the complete line, newline included, to `out`.
    pub fn finish(&self, format: &LogFormat, r: &ResponseFacts<'_>, out: &mut Vec<u8>) {
        let mut scratch = Vec::new();
        let mut at = 0usize;
        for &(offset, idx) in &self.holes {
            let offset = offset as usize;
            out.extend_from_slice(&self.pre[at..offset]);
            at = offset;
            if let Some(TemplatePart::Var(v)) = format.parts.get(idx as usize) {
                scratch.clear();
                let found = response_value(v, r, &mut scratch);
                put(out, format.escape, &scratch, found);
            }
        }
        out.extend_from_slice(&self.pre[at..]);
        out.push(b'\n');
    }
}

/// Appends a response-phase value; false when it is missing.
fn response_value(v: &Var, r: &ResponseFacts<'_>, out: &mut Vec<u8>) -> bool {
    // io::Write on Vec never fails.
    match v {
        Var::Status => crate::http1::respond::push_status_code(out, r.status),
        Var::BodyBytesSent => {
            out.extend_from_slice(itoa::Buffer::new().format(r.body_bytes).as_bytes());
        }
        Var::BytesSent => {
            out.extend_from_slice(itoa::Buffer::new().format(r.bytes_sent).as_bytes());
        }
        Var::RequestTime => seconds(out, r.started.elapsed()),
        Var::Msec => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            seconds(out, now);
        }
        Var::TimeLocal => crate::log::with_time(|_, local| out.extend_from_slice(local)),
        Var::TimeIso8601 => crate::log::with_iso_time(|iso| out.extend_from_slice(iso)),
        Var::SentHttp(name) => return sent_field(r.sent_head, name, out),
        Var::GzipRatio => match r.gzip_ratio {
            Some(v) => out.extend_from_slice(v.as_bytes()),
            None => return false,
        },
        Var::Map(i) => {
            let Some(map) = r.maps.get(*i) else {
                return false;
            };
            let mut key = Vec::new();
            for p in &map.source.parts {
                match p {
                    TemplatePart::Literal(s) => key.extend_from_slice(s.as_bytes()),
                    TemplatePart::Var(v) => {
                        response_value(v, r, &mut key);
                    }
                }
            }
            map_value_after_response(map, &String::from_utf8_lossy(&key), out);
            return !out.is_empty();
        }
        other => return upstream_value(other, r.upstream, out).unwrap_or(false),
    }
    true
}

/// Appends a variable's value escaped as the format asks. A missing value is `-` with
/// the default escaping and empty otherwise, as in nginx.
fn put(out: &mut Vec<u8>, escape: LogEscape, value: &[u8], found: bool) {
    match escape {
        LogEscape::Default if !found => out.push(b'-'),
        LogEscape::Default => escape_default(out, value),
        LogEscape::Json => escape_json(out, value),
        LogEscape::None => out.extend_from_slice(value),
    }
}

/// nginx's default access log escaping: `"`, `\`, control bytes and bytes ≥ 0x7f become
/// `\xHH` (uppercase hex), so a line can always be split on quotes and spaces.
pub(super) fn escape_default(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\' {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `escape=json`: what a JSON string needs (`"`, `\` and control bytes); other bytes,
/// UTF-8 included, pass as they are, as in nginx.
fn escape_json(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(e: LogEscape, v: &[u8], found: bool) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, e, v, found);
        out
    }

    #[test]
    fn escaping_default() {
        assert_eq!(
            esc(LogEscape::Default, b"a\"b\\c\x01\x7f\xc3\xa9 d", true),
            b"a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 d"
        );
        assert_eq!(esc(LogEscape::Default, b"", false), b"-");
    }

    #[test]
    fn escaping_json() {
        let out = esc(LogEscape::Json, "a\"b\\c\n\r\t\x01é".as_bytes(), true);
        assert_eq!(out, "a\\\"b\\\\c\\n\\r\\t\\u0001é".as_bytes());
        let s = format!("\"{}\"", String::from_utf8(out).expect("utf-8"));
        let back: String = serde_json::from_str(&s).expect("valid JSON string");
        assert_eq!(back, "a\"b\\c\n\r\t\x01é");
        assert_eq!(esc(LogEscape::Json, b"", false), b"");
    }

    #[test]
    fn escaping_none() {
        assert_eq!(esc(LogEscape::None, b"a\"\x01", true), b"a\"\x01");
        assert_eq!(esc(LogEscape::None, b"", false), b"");
    }

    #[test]
    fn request_parts_rendered_before_response_parts_filled() {
        use crate::http1::{Parsed, RequestHead};
        let buf = b"GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: x\"y\r\n\r\n";
        let mut head = RequestHead::new();
        assert_eq!(head.parse(buf), Ok(Parsed::Complete));
        let vars = RequestVars {
            buf,
            head: &head,
            remote: crate::net::ClientAddr::Inet("10.0.0.1:5000".parse().expect("addr")),
            peer: crate::net::ClientAddr::Inet("10.0.0.1:5000".parse().expect("addr")),
            proxy_protocol: None,
            local: &"10.0.0.2:80".parse().expect("addr"),
            server_name: "s",
            tls: None,
            uri: "/p",
            proxy_host: "",
            upstream_addr: None,
            locals: None,
            files: None,
            connection: 0,
            http2: None,
        };
        let parts = crate::config::template::parse(
            "$remote_addr \"$request\" $status $http_user_agent $remote_user $connection/$connection_requests$pipe $upstream_addr $http_referer",
        )
        .expect("parses")
        .parts;
        let conn = ConnFacts {
            id: 7,
            requests: 3,
            pipelined: true,
        };
        let r = ResponseFacts {
            status: 404,
            body_bytes: 0,
            bytes_sent: 0,
            started: Instant::now(),
            upstream: &[],
            sent_head: b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nX-Id: a\r\nX-Id: b\r\nCache-Control: no-cache\r\nCache-Control: private\r\n\r\n",
            gzip_ratio: Some("3.25"),
            maps: &[],
        };
        let line = |escape| {
            let format = LogFormat {
                name: "t".into(),
                escape,
                parts: parts.clone(),
                uses_upstream: true,
            };
            let pending = PendingLine::prepare(&format, &vars, &conn);
            let mut out = Vec::new();
            pending.finish(&format, &r, &mut out);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(
            line(LogEscape::Default),
            "10.0.0.1 \"GET /p?q=1 HTTP/1.1\" 404 x\\x22y - 7/3p - -\n"
        );
        assert_eq!(
            line(LogEscape::Json),
            "10.0.0.1 \"GET /p?q=1 HTTP/1.1\" 404 x\\\"y  7/3p  \n"
        );
        assert_eq!(
            line(LogEscape::None),
            "10.0.0.1 \"GET /p?q=1 HTTP/1.1\" 404 x\"y  7/3p  \n"
        );
    }

    #[test]
    fn sent_fields_as_nginx_finds_them() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Id:  a \r\nx-id: b\r\nCache-Control: no-cache\r\nCache-Control: private\r\n\r\n";
        let field = |name: &str| {
            let mut out = Vec::new();
            let found = sent_field(head, name, &mut out);
            (found, String::from_utf8(out).expect("ascii"))
        };
        assert_eq!(field("content-type"), (true, "text/html".to_owned()));
        assert_eq!(field("x-id"), (true, "a".to_owned()));
        assert_eq!(
            field("cache-control"),
            (true, "no-cache, private".to_owned())
        );
        assert_eq!(field("x-none"), (false, String::new()));
        assert!(!sent_field(b"", "x-id", &mut Vec::new()));
    }

    #[test]
    fn upstream_lists_and_times() {
        use crate::config::Endpoint;
        use crate::vars::AttemptPeer;
        use std::time::Duration;
        let attempts = [
            UpstreamAttempt {
                addr: AttemptPeer::Addr(Endpoint::Inet("127.0.0.1:1".parse().expect("addr"))),
                status: 502,
                connect: None,
                header: None,
                response: Some(Duration::from_micros(1500)),
                head: Vec::new(),
                traffic: Default::default(),
            },
            UpstreamAttempt {
                addr: AttemptPeer::Addr(Endpoint::Inet("127.0.0.1:2".parse().expect("addr"))),
                status: 200,
                connect: Some(Duration::from_millis(0)),
                header: Some(Duration::from_millis(4)),
                response: Some(Duration::from_millis(1234)),
                head: b"HTTP/1.1 200 OK\r\nX-App: web-2\r\n\r\n".to_vec(),
                traffic: Default::default(),
            },
        ];
        let r = ResponseFacts {
            status: 200,
            body_bytes: 5,
            bytes_sent: 100,
            started: Instant::now(),
            upstream: &attempts,
            sent_head: b"",
            gzip_ratio: None,
            maps: &[],
        };
        let val = |v: Var| {
            let mut out = Vec::new();
            let found = response_value(&v, &r, &mut out);
            (String::from_utf8(out).expect("ascii"), found)
        };
        assert_eq!(
            val(Var::UpstreamAddr),
            ("127.0.0.1:1, 127.0.0.1:2".into(), true)
        );
        assert_eq!(val(Var::UpstreamStatus), ("502, 200".into(), true));
        assert_eq!(val(Var::UpstreamConnectTime), ("-, 0.000".into(), true));
        assert_eq!(val(Var::UpstreamHeaderTime), ("-, 0.004".into(), true));
        assert_eq!(
            val(Var::UpstreamResponseTime),
            ("0.001, 1.234".into(), true)
        );
        assert_eq!(val(Var::Status), ("200".into(), true));
        let none = ResponseFacts { upstream: &[], ..r };
        let mut out = Vec::new();
        assert!(!response_value(&Var::UpstreamAddr, &none, &mut out));
        assert!(out.is_empty());
    }
}
