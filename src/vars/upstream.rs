//! The `$upstream_*` variables: one value per attempt at a peer, joined by `, ` as
//! nginx joins them, and `$upstream_http_NAME` from the response that was relayed.
//! The access log uses them once the response is sent; `add_header` while the
//! upstream's head is being relayed.

use std::io::Write as _;
use std::time::Duration;

use crate::config::{Endpoint, Var};

/// One attempt at one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAttempt {
    /// The peer.
    pub addr: Endpoint,
    /// Its response status; nginx's 502 (error) or 504 (timeout) when it failed, 0
    /// (logged as `-`) when the client's misbehaviour ended the attempt.
    pub status: u16,
    /// Time to connect, `None` when it did not connect (a reused connection counts 0).
    pub connect: Option<Duration>,
    /// Time to the end of the response head, `None` without a response head.
    pub header: Option<Duration>,
    /// Time from the start of the attempt to its end (to now, while its head is
    /// being relayed).
    pub response: Duration,
    /// The fields of its response head (name, value), when it answered and a variable
    /// asks for them (`$upstream_http_NAME`); empty otherwise.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
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
            seconds(out, a.response);
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
        Var::UpstreamHttp(name) => {
            // The first field of that name in the last response, as nginx 1.22.
            let field = attempts.last().and_then(|a| {
                a.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            });
            match field {
                Some((_, value)) => {
                    out.extend_from_slice(value);
                    true
                }
                None => false,
            }
        }
        _ => return None,
    })
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
