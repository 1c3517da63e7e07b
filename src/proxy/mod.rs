//! Forwarding one request to an upstream group: peer selection, retries
//! (`proxy_next_upstream`), the upstream request head, streaming bodies both ways,
//! upgrades, and putting upstream connections back into the keep-alive pool.

mod request;
mod response;

pub(crate) use request::CLIENT_SEND_TIMEOUT;

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::balance::Upstream;
use crate::balance::{sticky, PickContext};
use crate::config::{LatencyPoint, Level, LocSettings, NextUpstream, ProxyPass};
use crate::http1::{BodyFraming, ChunkedScanner, RequestHead, ResponseHead, ScanStep};
use crate::net::buffers::{Buf, Recycled, BODY_BUF, RESPONSE_HEADS};
use crate::net::io::{self, IoFailure};
pub use crate::net::ClientInfo;
use crate::upstream::pool::{self, IdleConn};
use crate::upstream::{Outcome, Tried};
use crate::vars;

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
    pub info: ClientInfo,
    /// `$server_name` of the matched server.
    pub server_name: &'a str,
    /// The normalised request path (`$uri`).
    pub uri: &'a str,
    /// Whether the client connection may stay open after this request, as far as the
    /// request and the server settings go.
    pub keep_client: bool,
    /// Record every attempt in [`Forwarded::attempts`]: the location's log format uses
    /// `$upstream_*` variables. False for `access_log off` and `combined`, which then
    /// allocate nothing for it.
    pub log_upstream: bool,
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
    pub upstream_addr: Option<SocketAddr>,
    /// Bytes of the response head sent to the client (`$bytes_sent` minus the body);
    /// for an error page ferrolb wrote, the whole page.
    pub head_bytes: u64,
    /// Every attempt at a peer, in order, when [`Forward::log_upstream`] asked for them.
    pub attempts: Vec<crate::access_log::UpstreamAttempt>,
    /// Bytes at the start of the client buffer that belong to this request and are still
    /// there; `None` when the request's body could not be accounted for (the client
    /// connection must then close).
    consumed: Option<usize>,
}

/// Why one attempt at one peer failed.
#[derive(Debug)]
enum AttemptError {
    /// Connecting failed or timed out.
    Connect(IoFailure),
    /// Sending the request failed or timed out.
    Send(IoFailure),
    /// Reading the response head failed or timed out (`got_bytes`: whether any byte
    /// of a response arrived).
    Read { err: IoFailure, got_bytes: bool },
    /// The response head did not parse.
    InvalidHeader(crate::http1::ParseError),
    /// The client misbehaved while its body was being forwarded: not the peer's fault.
    Client { status: u16, why: String },
}

impl AttemptError {
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            AttemptError::Connect(IoFailure::Timeout)
                | AttemptError::Send(IoFailure::Timeout)
                | AttemptError::Read {
                    err: IoFailure::Timeout,
                    ..
                }
        )
    }

    /// The `proxy_next_upstream` condition this failure is.
    /// As nginx: a connection closed or reset while the head was arriving (even after
    /// some of it) is `error`; only an unparsable head is `invalid_header`.
    fn condition(&self) -> u16 {
        match self {
            _ if self.is_timeout() => NextUpstream::TIMEOUT,
            AttemptError::InvalidHeader(_) => NextUpstream::INVALID_HEADER,
            _ => NextUpstream::ERROR,
        }
    }

    /// nginx's wording for the error log.
    fn describe(&self) -> String {
        match self {
            AttemptError::Connect(IoFailure::Timeout) => {
                "upstream timed out (110: Connection timed out) while connecting to upstream".into()
            }
            AttemptError::Connect(e) => {
                format!("connect() failed {} while connecting to upstream", e.describe())
            }
            AttemptError::Send(IoFailure::Timeout) => {
                "upstream timed out (110: Connection timed out) while sending request to upstream"
                    .into()
            }
            AttemptError::Send(e) => {
                format!("writev() failed {} while sending request to upstream", e.describe())
            }
            AttemptError::Read { err: IoFailure::Timeout, .. } => {
                "upstream timed out (110: Connection timed out) while reading response header from upstream".into()
            }
            AttemptError::Read { err: IoFailure::Closed, .. } => {
                "upstream prematurely closed connection while reading response header from upstream".into()
            }
            AttemptError::Read { err, .. } => format!(
                "recv() failed {} while reading response header from upstream",
                err.describe()
            ),
            AttemptError::InvalidHeader(e) => {
                format!("upstream sent invalid header ({e}) while reading response header from upstream")
            }
            AttemptError::Client { why, .. } => why.clone(),
        }
    }
}

/// An upstream connection in use.
struct UpstreamConn {
    stream: TcpStream,
    reused: bool,
    requests: u32,
}

/// How much of the request body is already in the client buffer.
struct BodyInBuf {
    /// Body bytes in `cbuf` right after the head.
    len: usize,
    /// Whether they are the whole body.
    complete: bool,
    /// For a chunked body that continues past the buffer: the scanner's state.
    scanner: Option<ChunkedScanner>,
    /// For a content-length body: bytes still to read from the client.
    remaining: u64,
    /// A small chunked body, complete in `cbuf`, decoded: it goes upstream with a
    /// Content-Length (as nginx sends it), which every backend can read.
    dechunked: Option<Buf>,
}

/// Forwards one request, retrying other peers as `proxy_next_upstream` allows, and
/// relays the response. Never sends a non-idempotent request twice unless
/// `non_idempotent` is configured.
///
/// `cbuf` is the client read buffer: the head at `..head.head_len`, then whatever body
/// bytes (and pipelined requests) arrived with it. On return it holds only the bytes
/// that belong to the next request.
pub async fn forward(f: &Forward<'_>, client: &mut TcpStream, cbuf: &mut Buf) -> Forwarded {
    let mut done = forward_inner(f, client, cbuf).await;
    match done.consumed {
        Some(n) => {
            let end = n.min(cbuf.len());
            cbuf.drain(..end);
        }
        None => done.keep_client = false,
    }
    if done.status == 0 {
        done.keep_client = false;
    }
    done
}

async fn forward_inner(f: &Forward<'_>, client: &mut TcpStream, cbuf: &mut Buf) -> Forwarded {
    let mut done = Forwarded {
        keep_client: f.keep_client,
        ..Forwarded::default()
    };
    let head_len = f.head.head_len;

    if let Err(status) = buffer_small_body(f, client, cbuf).await {
        done.consumed = None;
        if status != 0 {
            request::answer_error(client, f.head, status, &mut done).await;
        }
        return done;
    }
    let body = match measure_body(cbuf, f.head, f.settings) {
        Ok(b) => b,
        Err(status) => {
            request::answer_error(client, f.head, status, &mut done).await;
            return done;
        }
    };
    done.consumed = body.complete.then_some(head_len + body.len);

    let idempotent = f.head.method.is_idempotent();
    let next = f.settings.proxy_next_upstream;
    let max_tries = match f.settings.proxy_next_upstream_tries {
        0 => f.upstream.tries(),
        n => (n as usize).min(f.upstream.tries()),
    };
    let started = Instant::now();
    let mut tried = Tried::new(f.upstream.peers.len());
    let mut streamed_from_client = false;
    let mut last_error_status = 502u16;
    let mut attempts = 0usize;
    let mut leftover: Option<Vec<u8>> = None;
    // Allocates only for `hash` (the evaluated key); round robin reads nothing here.
    let mut hash_key = Vec::new();
    let ctx = pick_context(f, cbuf, &mut hash_key);

    loop {
        if streamed_from_client {
            done.consumed = None;
        }
        let now = crate::upstream::now();
        let Some(idx) = f.upstream.pick_with(&ctx, &tried, now) else {
            if attempts == 0 {
                log_request(
                    f,
                    cbuf,
                    Level::Error,
                    "no live upstreams while connecting to upstream",
                    None,
                );
            }
            request::answer_error(client, f.head, last_error_status, &mut done).await;
            return done;
        };
        tried.insert(idx);
        attempts += 1;
        // `pick` counted the request in flight (and in `requests`); every path below
        // ends with one `report`.
        let peer = &f.upstream.peers[idx];
        let attempt_started = Instant::now();
        let mut sent_head_bytes = 0u64;
        done.upstream_addr = Some(peer.conf.addr);
        let peer_key = peer.state.id;
        let mut connect_time = None;
        let mut header_time = None;

        // One attempt, plus at most one silent retry on a fresh connection when a reused
        // keep-alive connection turned out to be closed before any response byte came.
        let mut fresh_only = false;
        let result = loop {
            let connect_started = Instant::now();
            let mut conn = match acquire(f, peer_key, peer.conf.addr, idempotent, fresh_only).await
            {
                Ok(c) => c,
                Err(e) => break Err(AttemptError::Connect(e)),
            };
            connect_time = Some(connect_started.elapsed());
            let uhead = request::build_head(f, cbuf, peer.conf.addr, &conn, &body);
            sent_head_bytes = uhead.bytes.len() as u64;
            let sent = request::send(
                f,
                client,
                cbuf,
                &mut conn,
                &uhead.bytes,
                &body,
                &mut streamed_from_client,
            )
            .await;
            let outcome = match sent {
                Ok(extra) => {
                    leftover = extra;
                    read_head(&mut conn, f.head, f.settings).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Err(
                    AttemptError::Send(_)
                    | AttemptError::Read {
                        got_bytes: false, ..
                    },
                ) if conn.reused && !streamed_from_client && idempotent && !fresh_only => {
                    fresh_only = true;
                    continue;
                }
                Err(e) => break Err(e),
                Ok((resp, ubuf)) => {
                    header_time = Some(attempt_started.elapsed());
                    break Ok((conn, resp, ubuf, uhead));
                }
            }
        };

        match result {
            Err(AttemptError::Client { status, why }) => {
                note_attempt(
                    f,
                    &mut done,
                    peer.conf.addr,
                    0,
                    connect_time,
                    None,
                    attempt_started,
                );
                // The client's fault says nothing about the peer.
                f.upstream
                    .report(idx, Outcome::Success, crate::upstream::now());
                done.consumed = None;
                log_request(f, cbuf, Level::Info, &why, Some(peer.conf.addr));
                done.keep_client = false;
                request::answer_error(client, f.head, status, &mut done).await;
                return done;
            }
            Err(err) => {
                let report = f
                    .upstream
                    .report(idx, Outcome::Failure, crate::upstream::now());
                log_request(f, cbuf, Level::Error, &err.describe(), Some(peer.conf.addr));
                if report.temporarily_disabled {
                    log_request(
                        f,
                        cbuf,
                        Level::Warn,
                        "upstream server temporarily disabled while connecting to upstream",
                        Some(peer.conf.addr),
                    );
                }
                last_error_status = if err.is_timeout() { 504 } else { 502 };
                note_attempt(
                    f,
                    &mut done,
                    peer.conf.addr,
                    last_error_status,
                    connect_time,
                    None,
                    attempt_started,
                );
                if streamed_from_client {
                    done.consumed = None;
                }
                let sent = !matches!(err, AttemptError::Connect(_));
                let may_retry = next.has(err.condition())
                    && !streamed_from_client
                    && (!sent || idempotent || next.has(NextUpstream::NON_IDEMPOTENT))
                    && attempts < max_tries
                    && within_next_timeout(f.settings, started);
                if !may_retry {
                    request::answer_error(client, f.head, last_error_status, &mut done).await;
                    return done;
                }
            }
            Ok((conn, resp, ubuf, uhead)) => {
                if let Some(flag) = NextUpstream::flag_for_status(resp.status) {
                    let may_retry = next.has(flag)
                        && !streamed_from_client
                        && (idempotent || next.has(NextUpstream::NON_IDEMPOTENT))
                        && attempts < max_tries
                        && within_next_timeout(f.settings, started);
                    if may_retry {
                        // 403 and 404 say nothing about the peer's health; 5xx do.
                        let outcome = if matches!(resp.status, 403 | 404) {
                            Outcome::Success
                        } else {
                            Outcome::Failure
                        };
                        f.upstream.report(idx, outcome, crate::upstream::now());
                        log_request(
                            f,
                            cbuf,
                            Level::Warn,
                            &format!(
                                "upstream answered {} while reading response header from upstream, trying next",
                                resp.status
                            ),
                            Some(peer.conf.addr),
                        );
                        last_error_status = resp.status;
                        note_attempt(
                            f,
                            &mut done,
                            peer.conf.addr,
                            resp.status,
                            connect_time,
                            header_time,
                            attempt_started,
                        );
                        continue;
                    }
                }
                f.upstream
                    .report(idx, Outcome::Success, crate::upstream::now());
                record_latency(f, idx, LatencyPoint::Header, attempt_started);
                let set_cookie = f.upstream.sticky_set_cookie(idx, &ctx);
                response::relay(
                    f, client, cbuf, conn, resp, ubuf, uhead, peer, set_cookie, &mut done,
                )
                .await;
                record_latency(f, idx, LatencyPoint::LastByte, attempt_started);
                let status = done.status;
                note_attempt(
                    f,
                    &mut done,
                    peer.conf.addr,
                    status,
                    connect_time,
                    header_time,
                    attempt_started,
                );
                // Statistics for /status and /metrics: a few relaxed atomic adds.
                let body_out = match f.head.framing {
                    crate::http1::BodyFraming::Length(n) => n,
                    _ => 0,
                };
                peer.state.record_response(
                    done.status,
                    attempt_started.elapsed(),
                    done.body_bytes,
                    sent_head_bytes + body_out,
                );
                // Keep only what belongs to the next (pipelined) request.
                if streamed_from_client {
                    cbuf.clear();
                    if let Some(extra) = leftover {
                        cbuf.extend_from_slice(&extra);
                    }
                    done.consumed = Some(0);
                }
                return done;
            }
        }
    }
}

/// Records one attempt for the `$upstream_*` log variables, when the log uses them.
fn note_attempt(
    f: &Forward<'_>,
    done: &mut Forwarded,
    addr: SocketAddr,
    status: u16,
    connect: Option<std::time::Duration>,
    header: Option<std::time::Duration>,
    started: Instant,
) {
    if f.log_upstream {
        done.attempts.push(crate::access_log::UpstreamAttempt {
            addr,
            status,
            connect,
            header,
            response: started.elapsed(),
        });
    }
}

/// What the balancing method needs from the request: the client address, the `hash`
/// key (evaluated into `key_buf`, only for `hash`) and the sticky cookie's peer id.
fn pick_context<'k>(f: &Forward<'_>, cbuf: &[u8], key_buf: &'k mut Vec<u8>) -> PickContext<'k> {
    let up = f.upstream;
    let mut ctx = PickContext {
        client: Some(f.info.remote.ip()),
        ..PickContext::default()
    };
    if up.hash_key().is_none() && up.sticky_cookie().is_none() {
        return ctx;
    }
    let vars = request::vars(f, cbuf, None);
    ctx.sticky = up
        .sticky_cookie()
        .and_then(|name| vars.cookie(name))
        .and_then(sticky::parse_cookie);
    if let Some(key) = up.hash_key() {
        vars.eval(key, key_buf);
        let key_buf: &'k Vec<u8> = key_buf;
        ctx.key = Some(key_buf);
    }
    ctx
}

/// Reports the attempt's latency so far to `least_time` (a no-op for other methods,
/// which pass no start time).
/// Feeds `least_time` (a no-op for other methods).
fn record_latency(f: &Forward<'_>, idx: usize, point: LatencyPoint, started: Instant) {
    if f.upstream.latency_point().is_some() {
        f.upstream
            .record_latency(idx, point, started.elapsed(), crate::upstream::now());
    }
}

fn within_next_timeout(s: &LocSettings, started: Instant) -> bool {
    s.proxy_next_upstream_timeout.is_zero() || started.elapsed() < s.proxy_next_upstream_timeout
}

/// Request bodies up to this size are read completely before an upstream is contacted
/// (nginx reads them into `client_body_buffer_size`): the upstream gets head and body
/// in one write, and the request stays replayable on another peer. Larger bodies are
/// streamed in 64 KiB chunks.
const BUFFER_BODY_UP_TO: u64 = 64 * 1024;

/// Reads the rest of a small content-length body into `cbuf`. `Err(0)`: the client went
/// away; `Err(status)`: answer with it.
async fn buffer_small_body(
    f: &Forward<'_>,
    client: &mut TcpStream,
    cbuf: &mut Buf,
) -> Result<(), u16> {
    let start = f.head.head_len;
    let max = f.settings.client_max_body_size;
    // A chunked body's length is unknown: read until it ends or passes the limit.
    let mut scanner = match f.head.framing {
        BodyFraming::Length(n) => {
            let end = start as u64 + n;
            if cbuf.len() as u64 >= end || n > BUFFER_BODY_UP_TO || (max != 0 && n > max) {
                return Ok(());
            }
            None
        }
        BodyFraming::Chunked => {
            let mut sc = ChunkedScanner::new();
            match sc.scan(&cbuf[start..]) {
                Ok(ScanStep::NeedMore) => Some(sc),
                // Complete already, or invalid (measure_body answers 400).
                _ => return Ok(()),
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => return Ok(()),
    };
    if f.head.expect_continue {
        request::send_continue(client).await.map_err(|_| 0u16)?;
    }
    loop {
        let have = (cbuf.len() - start) as u64;
        let want = match (&scanner, f.head.framing) {
            (None, BodyFraming::Length(n)) if have < n => (n - have) as usize,
            (Some(_), _) if have < BUFFER_BODY_UP_TO => (BUFFER_BODY_UP_TO - have) as usize,
            _ => return Ok(()),
        };
        let before = cbuf.len();
        match io::read_some(client, cbuf, want, f.settings.client_body_timeout).await {
            Ok(_) => {}
            Err(IoFailure::Timeout) => return Err(408),
            Err(_) => return Err(0),
        }
        if let Some(sc) = &mut scanner {
            match sc.scan(&cbuf[before..]) {
                Ok(ScanStep::NeedMore) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// Checks the declared body size and finds how much of the body is already buffered.
/// `Err(status)` is the error to answer with.
fn measure_body(cbuf: &[u8], head: &RequestHead, s: &LocSettings) -> Result<BodyInBuf, u16> {
    let avail = cbuf.len() - head.head_len;
    let max = s.client_max_body_size;
    Ok(match head.framing {
        BodyFraming::None | BodyFraming::UntilClose => BodyInBuf {
            len: 0,
            complete: true,
            scanner: None,
            remaining: 0,
            dechunked: None,
        },
        BodyFraming::Length(n) => {
            if max != 0 && n > max {
                return Err(413);
            }
            let len = (n.min(avail as u64)) as usize;
            BodyInBuf {
                len,
                complete: len as u64 == n,
                scanner: None,
                remaining: n - len as u64,
                dechunked: None,
            }
        }
        BodyFraming::Chunked => {
            let mut sc = ChunkedScanner::new();
            let step = sc.scan(&cbuf[head.head_len..]).map_err(|_| 400u16)?;
            if max != 0 && sc.payload_len() > max {
                return Err(413);
            }
            match step {
                ScanStep::Done { body_end } => {
                    let raw = &cbuf[head.head_len..head.head_len + body_end];
                    let mut payload = Buf::head();
                    crate::http1::decode_chunked(raw, &mut payload).map_err(|_| 400u16)?;
                    BodyInBuf {
                        len: body_end,
                        complete: true,
                        scanner: None,
                        remaining: 0,
                        dechunked: Some(payload),
                    }
                }
                ScanStep::NeedMore => BodyInBuf {
                    len: avail,
                    complete: false,
                    scanner: Some(sc),
                    remaining: 0,
                    dechunked: None,
                },
            }
        }
    })
}

/// A connection to the peer: a pooled one when the upstream keeps any (checked for
/// liveness before a non-idempotent request is written to it), else a new one.
async fn acquire(
    f: &Forward<'_>,
    peer_key: crate::upstream::PeerId,
    addr: SocketAddr,
    idempotent: bool,
    fresh_only: bool,
) -> Result<UpstreamConn, IoFailure> {
    if f.upstream.keepalive.is_some() && !fresh_only {
        while let Some(IdleConn {
            stream, requests, ..
        }) = pool::take(&f.upstream.name, peer_key, f.upstream.keepalive_timeout)
        {
            // An idempotent request can be replayed if the connection proves stale, so
            // it skips the extra syscall; a POST must not risk it.
            if idempotent || pool::still_open(&stream) {
                return Ok(UpstreamConn {
                    stream,
                    reused: true,
                    requests,
                });
            }
        }
    }
    let connect = TcpStream::connect(addr);
    let stream = match tokio::time::timeout(f.settings.proxy_connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(IoFailure::Io(e)),
        Err(_) => return Err(IoFailure::Timeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(UpstreamConn {
        stream,
        reused: false,
        requests: 0,
    })
}

/// Reads the response head, skipping interim 1xx responses other than 101.
async fn read_head(
    conn: &mut UpstreamConn,
    req: &RequestHead,
    s: &LocSettings,
) -> Result<(Recycled<ResponseHead>, Buf), AttemptError> {
    // A body-sized buffer: a small response arrives whole with its head in one read,
    // and the same buffer then carries the rest of a larger body.
    let mut ubuf = Buf::body();
    let mut resp = Recycled::take(&RESPONSE_HEADS);
    loop {
        let got_bytes = !ubuf.is_empty();
        // Fill the buffer's free space without growing it past its class.
        let want = BODY_BUF.saturating_sub(ubuf.len()).max(1024);
        if let Err(err) = io::read_some(&conn.stream, &mut ubuf, want, s.proxy_read_timeout).await {
            return Err(AttemptError::Read { err, got_bytes });
        }
        loop {
            match resp.parse(&ubuf, req.method) {
                Ok(crate::http1::Parsed::Partial) => break,
                Ok(crate::http1::Parsed::Complete) => {
                    if (100..200).contains(&resp.status) && resp.status != 101 {
                        ubuf.drain(..resp.head_len);
                        if ubuf.is_empty() {
                            break;
                        }
                        continue;
                    }
                    return Ok((resp, ubuf));
                }
                Err(e) => return Err(AttemptError::InvalidHeader(e)),
            }
        }
    }
}

/// The variables view of a request that is not being proxied (`return` texts).
pub fn request_vars<'a>(
    head: &'a RequestHead,
    buf: &'a [u8],
    info: ClientInfo,
    server_name: &'a str,
    uri: &'a str,
) -> vars::RequestVars<'a> {
    vars::RequestVars {
        buf,
        head,
        remote: info.remote,
        local: info.local,
        server_name,
        scheme: "http",
        uri,
        proxy_host: "",
        upstream_addr: None,
    }
}

/// Writes an error-log line about this request in nginx's layout.
fn log_request(f: &Forward<'_>, cbuf: &[u8], level: Level, what: &str, peer: Option<SocketAddr>) {
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
            vars.request_uri(&mut line);
            format!(
                ", upstream: \"{}://{}{}\"",
                f.pass.scheme,
                a,
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
            f.info.remote.ip(),
            f.server_name,
        ),
    );
}
