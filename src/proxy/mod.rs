//! Forwarding one request to an upstream group, in three steps read top to bottom in
//! [`forward`]:
//!
//! 1. the plan ([`plan`]): the request body at hand (buffered when small, so it can be
//!    replayed), the retry budget of `proxy_next_upstream*`;
//! 2. attempts ([`attempt`]): pick a peer (held by a guard that reports its outcome
//!    once), connect or take a pooled connection, send the request ([`request`]), read
//!    the response head; a failure says whether the next peer may get the request;
//! 3. the relay ([`response`]): the response head and body to the client, the
//!    upstream connection back to the pool.
//!
//! The client side is a [`Downstream`]: the front end (HTTP/1, or an HTTP/2 stream) reads the body and
//! frames the response for its client, so neither protocol nor transport details of
//! the client reach this module. The upstream side runs over [`crate::net::Stream`]s
//! (TCP or Unix socket).

mod accel;
mod attempt;
mod body_file;
mod downstream;
pub mod expires;
mod field_edits;
mod plan;
mod request;
mod response;
mod uwsgi;

#[cfg(test)]
mod tests;

pub use accel::{split_unsafe_uri, AccelRedirect};
pub use downstream::{Downstream, ResponseOut, ResponseStarted};

use self::plan::Plan;
use crate::balance::Upstream;
use crate::config::{Endpoint, Level, LocSettings, ProxyPass};
use crate::http1::RequestHead;
use crate::net::buffers::Buf;
pub use crate::net::ClientInfo;
use crate::vars;
pub use attempt::RETRY_AFTER_STARTING_SECS;
pub use request::upstream_head;

/// Everything [`forward`] needs about one request.
pub struct Forward<'a> {
    /// The parsed head.
    pub head: &'a RequestHead,
    /// The merged settings of the matched location.
    pub settings: &'a LocSettings,
    /// The `proxy_pass` target.
    pub pass: &'a ProxyPass,
    /// The upstream group it names.
    pub upstream: &'a Upstream,
    /// The client connection.
    pub info: &'a ClientInfo,
    /// `$server_name` of the matched server.
    pub server_name: &'a str,
    /// The normalised request path (`$uri`).
    pub uri: &'a str,
    /// Whether the client connection may stay open after this request, as far as the
    /// request and the server settings go.
    pub keep_client: bool,
    /// The rewrite phase's variables (`set`, captures, maps, rewritten arguments).
    pub locals: Option<&'a vars::Locals<'a>>,
    /// How a `rewrite` changed the URI, if it did: the upstream then gets the new `$uri`
    /// and arguments rather than the client's target.
    pub rewritten: Option<RewrittenUri>,
    /// Record every attempt in [`Forwarded::attempts`]: the location's log format or
    /// its `add_header` uses `$upstream_*` variables. False otherwise (`access_log
    /// off`, `combined`), and nothing is allocated for it.
    pub log_upstream: bool,
    /// Error statuses the caller answers itself (the location's `error_page`s): the
    /// proxy then writes nothing for them and reports [`Forwarded::handed_off`]. With
    /// `proxy_intercept_errors on` an upstream response of such a status is handed off
    /// too, its body unread.
    pub hands_off: &'a (dyn Fn(u16) -> bool + Sync),
    /// What goes before a `Location` path that `proxy_redirect` made
    /// (`http://host:port` with `absolute_redirect on`, else nothing); asked only when
    /// a rule rewrote one, with the client buffer the head was parsed from.
    pub absolute_base: &'a (dyn Fn(&[u8]) -> String + Sync),
}

/// An error the proxy left to its caller ([`Forward::hands_off`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOff {
    /// The status: ferrolb's own (502, 504, 413, ...) or the upstream's.
    pub status: u16,
    /// `WWW-Authenticate` values of an intercepted upstream 401, which nginx keeps on
    /// the error page.
    pub www_authenticate: Vec<Vec<u8>>,
}

/// A URI a `rewrite` changed, as `proxy_pass` sends it (nginx's `valid_unparsed_uri`
/// off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrittenUri {
    /// False after `rewrite ... break` in the location: the `proxy_pass` URI part no
    /// longer replaces the location prefix and the whole new URI is sent (nginx's
    /// `valid_location` off).
    pub prefix_applies: bool,
}

/// What happened to a forwarded request (for the access log and the connection loop).
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Status sent to the client (0 if nothing could be sent).
    pub status: u16,
    /// Body bytes sent to the client.
    pub body_bytes: u64,
    /// Whether the client connection can carry another request.
    pub keep_client: bool,
    /// The last peer tried, for `$upstream_addr`.
    pub upstream_addr: Option<Endpoint>,
    /// Bytes of the response head sent to the client (`$bytes_sent` minus the body);
    /// for an error page ferrolb wrote, the whole page.
    pub head_bytes: u64,
    /// Every attempt at a peer, in order, when [`Forward::log_upstream`] asked for them.
    pub attempts: Vec<crate::access_log::UpstreamAttempt>,
    /// Bytes at the start of the client buffer that belong to this request and are still
    /// there; `None` when the request's body could not be accounted for (the client
    /// connection must then close).
    consumed: Option<usize>,
    /// Set when the response is the caller's to give ([`Forward::hands_off`]): nothing
    /// was written to the client.
    pub handed_off: Option<HandedOff>,
    /// `Retry-After` seconds for the error page ferrolb answers with (a 503 while
    /// every usable peer is still starting); `None`: no such header.
    retry_after_secs: Option<u32>,
    /// The upstream answered with `X-Accel-Redirect`: nothing was written to the
    /// client, and the caller redirects the request. The client buffer then still
    /// starts with the request's head (its body is gone from it).
    pub accel_redirect: Option<AccelRedirect>,
}

/// Forwards one request: a [`Plan`] (the body at hand, the retry budget), then
/// attempts at peers until one answers or the plan allows no more
/// ([`attempt::run`]), then the relay of that answer to the client. Never sends a
/// non-idempotent request twice unless `non_idempotent` is configured.
///
/// `cbuf` is the client read buffer: the head at `..head.head_len`, then whatever body
/// bytes (and pipelined requests) arrived with it. On return it holds only the bytes
/// that belong to the next request.
pub async fn forward<D: Downstream>(f: &Forward<'_>, client: &mut D, cbuf: &mut Buf) -> Forwarded {
    let mut done = Forwarded {
        keep_client: f.keep_client,
        ..Forwarded::default()
    };
    let mut body = match plan::take_body(f, client, cbuf).await {
        Ok(body) => body,
        Err(status) => {
            // The body is not accounted for: the connection closes after the answer.
            done.consumed = None;
            if status != 0 {
                request::answer_error(f, client, cbuf, status, &mut done).await;
            }
            return finish(done);
        }
    };
    // A body still to come is accounted for once sent ([`RequestBody::settle`]):
    // streamed whole, the connection carries the next request.
    done.consumed = Some(f.head.head_len + body.len);
    if let Some(locals) = f.locals {
        locals.set_body(body.kept());
    }
    // Allocates only for `hash` (the evaluated key); round robin reads nothing here.
    let mut hash_key = Vec::new();
    let plan = Plan::new(f, cbuf, &mut hash_key);

    match attempt::run(f, &plan, client, cbuf, &mut body, &mut done).await {
        Ok(answered) => {
            let set_cookie = f
                .upstream
                .sticky_set_cookie(answered.guard.index(), &plan.pick);
            response::relay(f, client, cbuf, answered, set_cookie, &mut done).await;
        }
        Err(status) => {
            if !body.replayable() {
                done.consumed = None;
            }
            request::answer_error(f, client, cbuf, status, &mut done).await;
        }
    }
    done.consumed = match done.consumed {
        Some(_) => body.settle(f.head.head_len, cbuf),
        None => None,
    };
    if let Some(n) = done.consumed {
        let end = n.min(cbuf.len());
        // An `X-Accel-Redirect` needs the head again; the body is done with.
        let start = if done.accel_redirect.is_some() {
            f.head.head_len.min(end)
        } else {
            0
        };
        cbuf.drain(start..end);
    }
    finish(done)
}

/// The connection-level consequences of a forwarded request.
fn finish(mut done: Forwarded) -> Forwarded {
    if done.consumed.is_none() || done.status == 0 {
        done.keep_client = false;
    }
    done
}

/// The variables view of a request that is not being proxied (`return` texts).
pub fn request_vars<'a>(
    head: &'a RequestHead,
    buf: &'a [u8],
    info: &'a ClientInfo,
    server_name: &'a str,
    uri: &'a str,
) -> vars::RequestVars<'a> {
    vars::RequestVars {
        buf,
        head,
        remote: info.remote,
        peer: info.peer,
        proxy_protocol: info.proxy_protocol.as_deref(),
        local: &info.local,
        server_name,
        tls: info.tls(),
        uri,
        proxy_host: "",
        upstream_addr: None,
        locals: None,
        files: None,
        connection: info.id,
        http2: info.http2_name(),
    }
}

/// Writes an error-log line about this request in nginx's layout.
fn log_request(f: &Forward<'_>, cbuf: &[u8], level: Level, what: &str, peer: Option<&Endpoint>) {
    let vars = request::vars(f, cbuf, peer);
    let mut line = Vec::with_capacity(256);
    vars.request_line(&mut line);
    let request = String::from_utf8_lossy(&line).into_owned();
    line.clear();
    vars.host(&mut line);
    let host = String::from_utf8_lossy(&line).into_owned();
    let upstream = match peer {
        Some(a) => {
            line.clear();
            // nginx names a uwsgi peer without a URI: the request has none of its own.
            if f.pass.protocol == crate::config::UpstreamProtocol::Http {
                vars.request_uri(&mut line);
            }
            // nginx separates a socket path from the URI with a colon.
            let sep = if matches!(a, Endpoint::Unix(_)) {
                ":"
            } else {
                ""
            };
            format!(
                ", upstream: \"{}://{a}{sep}{}\"",
                f.pass.scheme,
                String::from_utf8_lossy(&line)
            )
        }
        None => String::new(),
    };
    crate::log::emit(
        level,
        Some(f.info.id),
        format_args!(
            "{what}, client: {}, server: {}, request: \"{request}\"{upstream}, host: \"{host}\"",
            f.info.remote, f.server_name,
        ),
    );
}
