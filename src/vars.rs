//! Evaluation of nginx variables (`$host`, `$remote_addr`, …) in `proxy_set_header`,
//! `add_header` and `return` templates.

use crate::net::ClientAddr;
use std::io::Write as _;

use crate::config::{Endpoint, Template, TemplatePart, Var};
use crate::http1::RequestHead;

/// What a variable can be evaluated against: one request on one connection.
#[derive(Debug)]
pub struct RequestVars<'a> {
    /// The buffer the request head was parsed from.
    pub buf: &'a [u8],
    /// The parsed head.
    pub head: &'a RequestHead,
    /// The client.
    pub remote: ClientAddr,
    /// The listening address the client connected to.
    pub local: &'a Endpoint,
    /// The matched server's primary name.
    pub server_name: &'a str,
    /// `http` (https arrives with TLS).
    pub scheme: &'a str,
    /// The normalised path (`$uri`).
    pub uri: &'a str,
    /// The `proxy_pass` host as written, when proxying.
    pub proxy_host: &'a str,
    /// The peer address being tried, when proxying.
    pub upstream_addr: Option<&'a Endpoint>,
}

impl RequestVars<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header_value(self.buf, name)
    }

    /// `$host`: the host from an absolute-form target, else the Host header without its
    /// port, else the server name. Lower-cased as nginx does.
    pub fn host(&self, out: &mut Vec<u8>) {
        let raw = match &self.head.absolute_host {
            Some(r) => Some(&self.buf[r.clone()]),
            None => self.header("host"),
        };
        match raw {
            Some(h) if !h.is_empty() => {
                let h = strip_port(h);
                out.extend(h.iter().map(u8::to_ascii_lowercase));
            }
            _ => out.extend_from_slice(self.server_name.as_bytes()),
        }
    }

    /// The value of cookie `name` (`$cookie_NAME`), if the request has it.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.header("cookie").and_then(|c| cookie_value(c, name))
    }

    /// Appends the value of one variable.
    pub fn eval_var(&self, var: &Var, out: &mut Vec<u8>) {
        // io::Write on Vec never fails.
        match var {
            Var::Host => self.host(out),
            Var::Http(name) => {
                if let Some(v) = self.header(name) {
                    out.extend_from_slice(v);
                }
            }
            Var::Cookie(name) => {
                if let Some(v) = self.cookie(name) {
                    out.extend_from_slice(v);
                }
            }
            Var::Arg(name) => {
                if let Some(v) = self.head.query(self.buf).and_then(|q| arg_value(q, name)) {
                    out.extend_from_slice(v);
                }
            }
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.remote);
            }
            Var::RemotePort => {
                // Empty for a Unix-socket client, as in nginx.
                if let Some(port) = self.remote.port() {
                    let _ = write!(out, "{port}");
                }
            }
            Var::ProxyAddXForwardedFor => {
                // Every X-Forwarded-For line, joined as nginx joins them.
                for v in self.head.header_values(self.buf, "x-forwarded-for") {
                    out.extend_from_slice(v);
                    out.extend_from_slice(b", ");
                }
                let _ = write!(out, "{}", self.remote);
            }
            Var::Scheme => out.extend_from_slice(self.scheme.as_bytes()),
            // nginx's `$server_addr` of a Unix listener is its `unix:/path`, and its
            // `$server_port` is empty.
            Var::ServerAddr => match self.local {
                Endpoint::Inet(a) => {
                    let _ = write!(out, "{}", a.ip());
                }
                unix => {
                    let _ = write!(out, "{unix}");
                }
            },
            Var::ServerPort => {
                if let Some(port) = self.local.port() {
                    let _ = write!(out, "{port}");
                }
            }
            Var::ServerName => out.extend_from_slice(self.server_name.as_bytes()),
            Var::ServerProtocol => {
                let _ = write!(out, "HTTP/1.{}", self.head.minor_version);
            }
            Var::RequestUri => self.request_uri(out),
            Var::Uri => out.extend_from_slice(self.uri.as_bytes()),
            Var::Args => {
                if let Some(q) = self.head.query(self.buf) {
                    out.extend_from_slice(q);
                }
            }
            Var::IsArgs => {
                if self.head.query(self.buf).is_some() {
                    out.push(b'?');
                }
            }
            Var::RequestMethod => out.extend_from_slice(&self.buf[self.head.method_range.clone()]),
            Var::Request => self.request_line(out),
            Var::ProxyHost => out.extend_from_slice(self.proxy_host.as_bytes()),
            Var::ProxyPort => {
                let port = self.proxy_host.rsplit_once(':').map_or("80", |(_, p)| p);
                out.extend_from_slice(port.as_bytes());
            }
            Var::UpstreamAddr => {
                if let Some(a) = self.upstream_addr {
                    let _ = write!(out, "{a}");
                }
            }
            Var::Hostname => out.extend_from_slice(crate::config::hostname().as_bytes()),
            Var::RequestLength => {
                // The head plus the declared body: a chunked body's size is only known
                // once it has been relayed.
                let body = match self.head.framing {
                    crate::http1::BodyFraming::Length(n) => n,
                    _ => 0,
                };
                let _ = write!(out, "{}", self.head.head_len as u64 + body);
            }
            // Log-only variables (filled by `crate::access_log::PendingLine`) have no value
            // while the request is being forwarded.
            Var::Status
            | Var::TimeLocal
            | Var::TimeIso8601
            | Var::Msec
            | Var::RequestTime
            | Var::BodyBytesSent
            | Var::BytesSent
            | Var::UpstreamStatus
            | Var::UpstreamResponseTime
            | Var::UpstreamConnectTime
            | Var::UpstreamHeaderTime
            | Var::RemoteUser
            | Var::Connection
            | Var::ConnectionRequests
            | Var::Pipe
            | Var::Unknown(_) => {}
        }
    }

    /// Appends a whole template.
    pub fn eval(&self, t: &Template, out: &mut Vec<u8>) {
        for part in &t.parts {
            match part {
                TemplatePart::Literal(s) => out.extend_from_slice(s.as_bytes()),
                TemplatePart::Var(v) => self.eval_var(v, out),
            }
        }
    }

    /// Appends `$request_uri`: the target as the client sent it (origin-form; an
    /// absolute-form target without a path gets the `/` it implies).
    pub fn request_uri(&self, out: &mut Vec<u8>) {
        let t = &self.buf[self.head.target.clone()];
        if t.first() != Some(&b'/') && t.first() != Some(&b'*') {
            out.push(b'/');
        }
        out.extend_from_slice(t);
    }

    /// `$request`: the request line.
    pub fn request_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.head.method_range.clone()]);
        out.push(b' ');
        self.request_uri(out);
        let _ = write!(out, " HTTP/1.{}", self.head.minor_version);
    }
}

fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        // [v6]:port
        return match memchr::memchr(b']', h) {
            Some(i) => &h[..=i],
            None => h,
        };
    }
    match memchr::memrchr(b':', h) {
        Some(i) => &h[..i],
        None => h,
    }
}

fn cookie_value<'a>(cookies: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookies.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let eq = memchr::memchr(b'=', pair)?;
        (pair[..eq].eq_ignore_ascii_case(name.as_bytes())).then(|| &pair[eq + 1..])
    })
}

fn arg_value<'a>(query: &'a [u8], name: &str) -> Option<&'a [u8]> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| match memchr::memchr(b'=', pair) {
            Some(eq) => pair[..eq]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &pair[eq + 1..]),
            None => pair
                .eq_ignore_ascii_case(name.as_bytes())
                .then_some(&b""[..]),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(strip_port(b"example.com:8080"), b"example.com");
        assert_eq!(strip_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(strip_port(b"example.com"), b"example.com");
        assert_eq!(cookie_value(b"a=1; sid=xyz; b=2", "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(b"a=1", "sid"), None);
        assert_eq!(arg_value(b"x=1&page=3", "page"), Some(&b"3"[..]));
        assert_eq!(arg_value(b"flag&x=1", "flag"), Some(&b""[..]));
    }
}
