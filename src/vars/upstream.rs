//! The `$upstream_*` variables: one value per attempt at a peer, joined by `, ` as
//! nginx joins them, and `$upstream_http_NAME` from the response that was relayed.
//! The access log uses them once the response is sent; `add_header` while the
//! upstream's head is being relayed.

use std::io::Write as _;
use std::time::Duration;

use crate::config::{Endpoint, Var};

/// Where an attempt went: a peer, or nowhere when the group had no live peer left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptPeer {
    /// The peer's address.
    Addr(Endpoint),
    /// nginx's "no live upstreams": `$upstream_addr` shows the group's name.
    NoLive(String),
}

impl AttemptPeer {
    /// The port of an IP peer.
    pub fn port(&self) -> Option<u16> {
        match self {
            AttemptPeer::Addr(a) => a.port(),
            AttemptPeer::NoLive(_) => None,
        }
    }
}

impl std::fmt::Display for AttemptPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptPeer::Addr(a) => write!(f, "{a}"),
            AttemptPeer::NoLive(group) => f.write_str(group),
        }
    }
}

/// One attempt at one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAttempt {
    /// The peer.
    pub addr: AttemptPeer,
    /// Its response status; nginx's 502 (error) or 504 (timeout) when it failed, 0
    /// (logged as `-`) when the client's misbehaviour ended the attempt.
    pub status: u16,
    /// Time to connect, `None` when it did not connect (a reused connection counts 0).
    pub connect: Option<Duration>,
    /// Time to the end of the response head, `None` without a response head.
    pub header: Option<Duration>,
    /// Time from the start of the attempt to its end; `None` (`-`) while its head
    /// is being relayed, as nginx's.
    pub response: Option<Duration>,
    /// Its response head (status line and fields) when it answered and a variable
    /// may ask for a field (`$upstream_http_NAME`); empty otherwise.
    pub head: Vec<u8>,
    /// Bytes exchanged with the peer (`$upstream_bytes_*`, `$upstream_response_length`).
    pub traffic: Traffic,
}

/// Bytes one attempt exchanged with its peer; zero where an attempt failed before
/// they could be counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// The request head and body sent (`$upstream_bytes_sent`).
    pub sent: u64,
    /// The response head and body received (`$upstream_bytes_received`).
    pub received: u64,
    /// The response body received (`$upstream_response_length`).
    pub body: u64,
}

/// Appends the value of an `$upstream_*` variable over `attempts`: `None` when `v` is
/// not one, else whether it has a value (nginx's "not found" is `-` in logs).
pub fn upstream_value(v: &Var, attempts: &[UpstreamAttempt], out: &mut Vec<u8>) -> Option<bool> {
    // io::Write on Vec never fails.
    Some(match v {
        Var::UpstreamAddr => list(out, attempts, |out, a| write!(out, "{}", a.addr)),
        Var::UpstreamStatus => list(out, attempts, |out, a| match a.status {
            0 => write!(out, "-"),
            s => write!(out, "{s}"),
        }),
        Var::UpstreamResponseTime => list(out, attempts, |out, a| {
            opt_seconds(out, a.response);
            Ok(())
        }),
        Var::UpstreamConnectTime => list(out, attempts, |out, a| {
            opt_seconds(out, a.connect);
            Ok(())
        }),
        Var::UpstreamHeaderTime => list(out, attempts, |out, a| {
            opt_seconds(out, a.header);
            Ok(())
        }),
        Var::UpstreamResponseLength => {
            list(out, attempts, |out, a| write!(out, "{}", a.traffic.body))
        }
        Var::UpstreamBytesReceived => list(out, attempts, |out, a| {
            write!(out, "{}", a.traffic.received)
        }),
        Var::UpstreamBytesSent => list(out, attempts, |out, a| write!(out, "{}", a.traffic.sent)),
        // The first field of that name in the last response, as nginx 1.22.
        Var::UpstreamHttp(name) => attempts
            .last()
            .is_some_and(|a| head_field(&a.head, name, false, out)),
        Var::UpstreamCookie(name) => attempts
            .last()
            .is_some_and(|a| set_cookie_value(&a.head, name, out)),
        _ => return None,
    })
}

/// nginx's `$upstream_cookie_NAME`: the value of the first `Set-Cookie` of a response
/// head whose cookie is NAME (compared without regard to case, as nginx).
fn set_cookie_value(head: &[u8], name: &str, out: &mut Vec<u8>) -> bool {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"set-cookie") {
            continue;
        }
        let cookie = trim_spaces(&line[colon + 1..]);
        let first = cookie.split(|&b| b == b';').next().unwrap_or_default();
        let Some(eq) = memchr::memchr(b'=', first) else {
            continue;
        };
        if trim_spaces(&first[..eq]).eq_ignore_ascii_case(name.as_bytes()) {
            out.extend_from_slice(trim_spaces(&first[eq + 1..]));
            return true;
        }
    }
    false
}

/// Spaces, not tabs, trimmed from both ends, as nginx's cookie parser skips them.
fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' '] = s {
        s = rest;
    }
    s
}

/// Appends the value of field `name` (lower case) of a response head (status line,
/// then fields): the first one, or with `joined` every one joined by `, `. False when
/// the head has none.
pub fn head_field(head: &[u8], name: &str, joined: bool, out: &mut Vec<u8>) -> bool {
    let mut found = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        if found {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(line[colon + 1..].trim_ascii());
        found = true;
        if !joined {
            break;
        }
    }
    found
}

/// nginx's per-attempt lists: values joined by `, `; missing without attempts.
fn list(
    out: &mut Vec<u8>,
    attempts: &[UpstreamAttempt],
    mut each: impl FnMut(&mut Vec<u8>, &UpstreamAttempt) -> std::io::Result<()>,
) -> bool {
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        let _ = each(out, a);
    }
    !attempts.is_empty()
}

/// Seconds with millisecond precision, as nginx writes times: `0.004`.
pub fn seconds(out: &mut Vec<u8>, d: Duration) {
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

fn opt_seconds(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => seconds(out, d),
        None => out.push(b'-'),
    }
}
