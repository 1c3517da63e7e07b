//! Attempts: pick a peer, get a connection to it (pooled or new), send the request,
//! read the response head; on failure, decide with the [`Plan`] whether the next peer
//! gets the request.
//!
//! Every picked peer is held by a [`PeerGuard`] until the response has been relayed (or
//! the attempt failed), so `max_conns` and `least_conn` count long downloads and
//! tunnels, and the guard is the one place that reports an attempt's outcome to the
//! peer's passive health.

use std::time::Duration;

use tokio::time::Instant;

use super::downstream::Downstream;
use super::plan::{LastAttempt, Plan, RequestBody};
use super::request::{self, UpstreamHead};
use super::{Forward, Forwarded};
use crate::access_log::UpstreamAttempt;
use crate::balance::{Report, Upstream};
use crate::config::UpstreamProtocol;
use crate::config::{Endpoint, Level, LocSettings, NextUpstream, ProxyBind};
use crate::http1::{ParseError, Parsed, RequestHead, ResponseHead};
use crate::net::buffers::{Buf, Recycled, BODY_BUF, RESPONSE_HEADS};
use crate::net::io::{self, IoFailure};
use crate::net::Stream;
use crate::upstream::pool::{self, IdleConn};
use crate::upstream::{Outcome, Peer, Tried};
use crate::vars::{AttemptPeer, Traffic};

/// Why one attempt at one peer failed.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// Connecting failed or timed out: the request never reached the peer.
    Connect(IoFailure),
    /// Sending the request failed or timed out.
    Send(IoFailure),
    /// Reading the response head failed or timed out (`got_bytes`: whether any byte
    /// of a response arrived).
    Read { err: IoFailure, got_bytes: bool },
    /// The response head did not parse.
    InvalidHeader(ParseError),
    /// The client misbehaved while its body was being forwarded: not the peer's fault,
    /// never retried.
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

    /// The `proxy_next_upstream` condition this failure is. As nginx: a connection
    /// closed or reset while the head was arriving (even after some of it) is `error`;
    /// only an unparsable head is `invalid_header`.
    fn condition(&self) -> u16 {
        match self {
            _ if self.is_timeout() => NextUpstream::TIMEOUT,
            AttemptError::InvalidHeader(_) => NextUpstream::INVALID_HEADER,
            _ => NextUpstream::ERROR,
        }
    }

    /// Whether the request may have reached the peer (so a non-idempotent one must
    /// not be sent again).
    fn request_sent(&self) -> bool {
        !matches!(self, AttemptError::Connect(_))
    }

    /// The status the client gets when this is the last attempt.
    fn status(&self) -> u16 {
        match self {
            AttemptError::Client { status, .. } => *status,
            _ if self.is_timeout() => 504,
            _ => 502,
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
            // nginx's own words for the framing it refuses.
            AttemptError::InvalidHeader(ParseError::ContentLengthWithTransferEncoding) => {
                "upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time while reading response header from upstream".into()
            }
            AttemptError::InvalidHeader(ParseError::UnsupportedTransferEncoding) => {
                "upstream sent unknown \"Transfer-Encoding\" while reading response header from upstream".into()
            }
            AttemptError::InvalidHeader(ParseError::InvalidStatus | ParseError::InvalidVersion) => {
                // nginx then relays the bytes as an HTTP/0.9 response; ferrolb answers 502.
                "upstream sent no valid HTTP/1.0 header while reading response header from upstream"
                    .into()
            }
            AttemptError::InvalidHeader(ParseError::UnrequestedUpgrade) => {
                // nginx 1.22 relays it and tunnels; the client asked for no protocol switch.
                "upstream sent \"101 Switching Protocols\" to a request without Upgrade while reading response header from upstream".into()
            }
            AttemptError::InvalidHeader(ParseError::HeadTooLarge) => {
                "upstream sent too big header while reading response header from upstream".into()
            }
            AttemptError::InvalidHeader(ParseError::ConflictingContentLength) => {
                "upstream sent duplicate header line: \"Content-Length\" while reading response header from upstream".into()
            }
            AttemptError::InvalidHeader(e) => {
                format!("upstream sent invalid header ({e}) while reading response header from upstream")
            }
            AttemptError::Client { why, .. } => why.clone(),
        }
    }
}

/// A peer picked for an attempt: counted in flight from the pick until the guard is
/// finished or dropped. Reports the outcome exactly once; a guard dropped without a
/// verdict (the client went away) reports success, as nginx frees such a peer with
/// state 0.
pub(super) struct PeerGuard<'u> {
    upstream: &'u Upstream,
    idx: usize,
    finished: bool,
}

impl<'u> PeerGuard<'u> {
    /// Picks a peer not in `tried` (see [`Upstream::pick_with`]).
    fn pick(upstream: &'u Upstream, plan: &Plan<'_>, tried: &Tried) -> Option<PeerGuard<'u>> {
        let idx = upstream.pick_with(&plan.pick, tried, crate::upstream::now())?;
        Some(PeerGuard {
            upstream,
            idx,
            finished: false,
        })
    }

    /// The peer.
    pub(super) fn peer(&self) -> &'u Peer {
        &self.upstream.peers[self.idx]
    }

    /// The peer's index in its group.
    pub(super) fn index(&self) -> usize {
        self.idx
    }

    /// Ends the attempt with a verdict for passive health.
    pub(super) fn finish(mut self, outcome: Outcome) -> Report {
        self.finished = true;
        self.upstream
            .report(self.idx, outcome, crate::upstream::now())
    }
}

impl Drop for PeerGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.upstream
                .report(self.idx, Outcome::Success, crate::upstream::now());
        }
    }
}

/// An upstream connection in use.
pub(super) struct UpstreamConn {
    pub(super) stream: Stream,
    /// Taken from the idle pool (may turn out closed).
    pub(super) reused: bool,
    /// Requests sent on it before this one.
    pub(super) requests: u32,
    /// When it was made (`keepalive_time`).
    pub(super) opened: tokio::time::Instant,
}

/// The attempt that got a response head: what the relay needs.
pub(super) struct Answered<'u> {
    pub(super) guard: PeerGuard<'u>,
    pub(super) conn: UpstreamConn,
    pub(super) resp: Recycled<ResponseHead>,
    /// The head at `..resp.head_len`, then the first body bytes.
    pub(super) ubuf: Buf,
    /// The request head sent (its buffer carries the client response head next).
    pub(super) uhead: UpstreamHead,
    /// When this attempt began (latency and `$upstream_response_time`).
    pub(super) started: Instant,
    pub(super) connect_time: Option<Duration>,
    pub(super) header_time: Option<Duration>,
}

/// The clock of one attempt: when it began, and the times `$upstream_connect_time` and
/// `$upstream_header_time` report once known.
struct Timing {
    started: Instant,
    connect: Option<Duration>,
    header: Option<Duration>,
}

/// `Retry-After` of the 503 answered while every usable peer is still starting: 1 s
/// (a worker's start usually takes a second or a few).
pub const RETRY_AFTER_STARTING_SECS: u32 = 1;

/// Makes attempts until a peer answers with a response to relay, or the plan allows
/// no more; `Err` is the status to answer the client with.
pub(super) async fn run<'u, D: Downstream>(
    f: &Forward<'u>,
    plan: &Plan<'_>,
    client: &mut D,
    cbuf: &[u8],
    body: &mut RequestBody,
    done: &mut Forwarded,
) -> Result<Answered<'u>, u16> {
    let mut tried = Tried::new(f.upstream.peers.len());
    let mut last_status = 502;
    for made in 1.. {
        let Some(guard) = PeerGuard::pick(f.upstream, plan, &tried) else {
            if made == 1 && f.upstream.any_starting() {
                // `ferrolb up` before a worker is ready: the service is coming, so
                // 503 with a hint when to retry rather than a 502 "broken" answer.
                super::log_request(
                    f,
                    cbuf,
                    Level::Warn,
                    "no live upstreams while connecting to upstream: servers still starting, answering 503",
                    None,
                );
                done.retry_after_secs = Some(RETRY_AFTER_STARTING_SECS);
                return Err(503);
            }
            // nginx logs each time it finds no peer, and counts it as an attempt
            // at the group ($upstream_addr shows its name).
            super::log_request(
                f,
                cbuf,
                Level::Error,
                "no live upstreams while connecting to upstream",
                None,
            );
            if f.log_upstream {
                done.attempts.push(UpstreamAttempt {
                    addr: AttemptPeer::NoLive(f.upstream.name.clone()),
                    status: 502,
                    connect: None,
                    header: None,
                    response: Some(Duration::ZERO),
                    head: Vec::new(),
                    traffic: Traffic::default(),
                });
            }
            // Whatever failed before, nginx answers "no live upstreams" with 502.
            return Err(502);
        };
        tried.insert(guard.index());
        let peer = guard.peer();
        let addr = &peer.conf.addr;
        done.upstream_addr = Some(addr.clone());
        // The plan was made just now for the first attempt: its clock reading serves.
        let started = if made == 1 {
            plan.started
        } else {
            Instant::now()
        };
        let mut timing = Timing {
            started,
            connect: None,
            header: None,
        };
        let result = attempt(f, plan, peer, client, cbuf, body, &mut timing).await;
        let Timing {
            connect: connect_time,
            header: header_time,
            ..
        } = timing;

        match result {
            Ok((conn, resp, ubuf, uhead)) => {
                let answered = Answered {
                    guard,
                    conn,
                    resp,
                    ubuf,
                    uhead,
                    started,
                    connect_time,
                    header_time,
                };
                let status = answered.resp.status;
                let Some(flag) = NextUpstream::flag_for_status(status) else {
                    return Ok(answered);
                };
                if plan
                    .after_failure(flag, true, body, made, f.settings)
                    .is_err()
                {
                    // Not retried: this answer is the client's.
                    return Ok(answered);
                }
                // 403 and 404 say nothing about the peer's health; 5xx do.
                let outcome = if matches!(status, 403 | 404) {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                let Answered { guard, .. } = answered;
                guard.finish(outcome);
                super::log_request(
                    f,
                    cbuf,
                    Level::Warn,
                    &format!(
                        "upstream answered {status} while reading response header from upstream, trying next"
                    ),
                    done.upstream_addr.as_ref(),
                );
                last_status = status;
                note_attempt(
                    f,
                    done,
                    addr,
                    status,
                    connect_time,
                    header_time,
                    started,
                    Vec::new(),
                    Traffic::default(),
                );
            }
            Err(AttemptError::Client { status, why }) => {
                note_attempt(
                    f,
                    done,
                    addr,
                    0,
                    connect_time,
                    None,
                    started,
                    Vec::new(),
                    Traffic::default(),
                );
                // The client's fault says nothing about the peer.
                guard.finish(Outcome::Success);
                super::log_request(f, cbuf, Level::Info, &why, done.upstream_addr.as_ref());
                done.keep_client = false;
                return Err(status);
            }
            Err(err) => {
                let report = guard.finish(Outcome::Failure);
                super::log_request(
                    f,
                    cbuf,
                    Level::Error,
                    &err.describe(),
                    done.upstream_addr.as_ref(),
                );
                if report.temporarily_disabled {
                    super::log_request(
                        f,
                        cbuf,
                        Level::Warn,
                        "upstream server temporarily disabled while connecting to upstream",
                        done.upstream_addr.as_ref(),
                    );
                }
                last_status = err.status();
                note_attempt(
                    f,
                    done,
                    addr,
                    last_status,
                    connect_time,
                    None,
                    started,
                    Vec::new(),
                    Traffic::default(),
                );
                let next =
                    plan.after_failure(err.condition(), err.request_sent(), body, made, f.settings);
                if let Err(why) = next {
                    if why != LastAttempt::NotListed {
                        crate::log::emit(
                            Level::Debug,
                            Some(f.info.id),
                            format_args!("no next upstream: {why:?}"),
                        );
                    }
                    return Err(last_status);
                }
            }
        }
    }
    Err(last_status)
}

type Exchanged = (UpstreamConn, Recycled<ResponseHead>, Buf, UpstreamHead);

/// One attempt at one peer: connect (or reuse), send, read the head. A reused
/// keep-alive connection that proves closed before any response byte came is
/// replaced by a fresh one once, silently, when the request can be replayed.
async fn attempt<D: Downstream>(
    f: &Forward<'_>,
    plan: &Plan<'_>,
    peer: &Peer,
    client: &mut D,
    cbuf: &[u8],
    body: &mut RequestBody,
    timing: &mut Timing,
) -> Result<Exchanged, AttemptError> {
    let started = timing.started;
    let mut fresh_only = false;
    let mut connect_started = started;
    loop {
        let local = local_address(f, cbuf, peer);
        let tls_config = upstream_tls_config(f, cbuf, peer)?;
        let mut conn = acquire(f, peer, plan.idempotent, fresh_only, local, tls_config)
            .await
            .map_err(AttemptError::Connect)?;
        // A pooled connection takes no time to connect (nginx's cached time gives
        // 0.000 too); only a new one is timed, sparing two clock readings a request.
        timing.connect = Some(if conn.reused {
            Duration::ZERO
        } else {
            connect_started.elapsed()
        });
        let uhead = match f.pass.protocol {
            UpstreamProtocol::Http => {
                request::build_head(f, cbuf, &peer.conf.addr, conn.requests, body)
            }
            UpstreamProtocol::Uwsgi => super::uwsgi::build_packet(f, cbuf, &peer.conf.addr, body)?,
        };
        let outcome = match request::send(f, client, cbuf, &mut conn, &uhead.bytes, body).await {
            Ok(()) => response_head(f, client, &conn.stream).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok((resp, ubuf)) => {
                timing.header = Some(started.elapsed());
                return Ok((conn, resp, ubuf, uhead));
            }
            Err(
                AttemptError::Send(_)
                | AttemptError::Read {
                    got_bytes: false, ..
                },
            ) if conn.reused && body.replayable() && plan.idempotent && !fresh_only => {
                fresh_only = true;
                connect_started = Instant::now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// `proxy_bind` for this request: the address, or the variables' value read as one
/// (empty: none; not an address: none, logged as nginx logs it).
fn local_address(f: &Forward<'_>, cbuf: &[u8], peer: &Peer) -> Option<std::net::SocketAddr> {
    match f.settings.proxy_bind.as_ref()? {
        ProxyBind::Addr(a) => Some(*a),
        ProxyBind::Template(t) => {
            let value = super::request::vars(f, cbuf, Some(&peer.conf.addr)).evaluated(t);
            if value.is_empty() {
                return None;
            }
            let text = String::from_utf8_lossy(&value);
            let addr = ProxyBind::parse_addr(&text);
            if addr.is_none() {
                crate::log::emit(
                    Level::Error,
                    Some(f.info.id),
                    format_args!("invalid local address \"{text}\""),
                );
            }
            addr
        }
    }
}

/// The TLS configuration for this request when `proxy_ssl_certificate` holds
/// variables: evaluated, and read the first time. A file that does not load ends
/// the request with 500, as nginx's does (no other peer is tried).
fn upstream_tls_config(
    f: &Forward<'_>,
    cbuf: &[u8],
    peer: &Peer,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, AttemptError> {
    let Some(tls) = &f.pass.tls else {
        return Ok(None);
    };
    let Some(vars) = &tls.certificate_vars else {
        return Ok(None);
    };
    let v = super::request::vars(f, cbuf, Some(&peer.conf.addr));
    let (cert, key) = (v.evaluated(&vars.cert), v.evaluated(&vars.key));
    vars.config_for(&tls.config, &cert, &key)
        .map(Some)
        .map_err(|e| AttemptError::Client {
            status: 500,
            why: format!("{e} while connecting to upstream"),
        })
}

/// A connection to the peer: a pooled one when the upstream keeps any (checked for
/// liveness before a non-idempotent request is written to it), else a new one.
async fn acquire(
    f: &Forward<'_>,
    peer: &Peer,
    idempotent: bool,
    fresh_only: bool,
    local: Option<std::net::SocketAddr>,
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<UpstreamConn, IoFailure> {
    // uWSGI closes after each answer; a pooled connection is an HTTP one.
    let pooled_kind = f.pass.protocol == UpstreamProtocol::Http;
    if f.upstream.keepalive.is_some() && !fresh_only && pooled_kind {
        while let Some(IdleConn {
            stream,
            requests,
            opened,
            ..
        }) = pool::take(
            &f.upstream.name,
            peer.state.id,
            f.upstream.keepalive_timeout,
        ) {
            // An idempotent request can be replayed if the connection proves stale, so
            // it skips the extra syscall; a POST must not risk it. A connection of the
            // other kind (plain for https, TLS for http) is not reused.
            let same_kind = stream.tls_facts().is_some() == f.pass.tls.is_some();
            if same_kind && (idempotent || pool::still_open(&stream)) {
                return Ok(UpstreamConn {
                    stream,
                    reused: true,
                    requests,
                    opened,
                });
            }
        }
    }
    // The connect timeout covers the TLS handshake too, as in nginx.
    let connect = async {
        let raw = Stream::connect_from(&peer.conf.addr, local).await?;
        match &f.pass.tls {
            Some(tls) => {
                let config = tls_config.unwrap_or_else(|| tls.config.clone());
                crate::net::tls::client::connect_with(raw, tls, config).await
            }
            None => Ok(raw),
        }
    };
    let stream = match tokio::time::timeout(f.settings.proxy_connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(IoFailure::Io(e)),
        Err(_) => return Err(IoFailure::Timeout),
    };
    Ok(UpstreamConn {
        stream,
        reused: false,
        requests: 0,
        opened: tokio::time::Instant::now(),
    })
}

/// Reads the response head, skipping interim 1xx responses other than 101.
/// The upstream's response head, unless the client goes away first: with
/// `proxy_ignore_client_abort off` (the default) nginx then ends the request with 499
/// and closes the upstream connection, so a backend's work for nobody stops early.
async fn response_head<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    stream: &Stream,
) -> Result<(Recycled<ResponseHead>, Buf), AttemptError> {
    if f.settings.proxy_ignore_client_abort {
        return read_head(stream, f.head, f.settings).await;
    }
    tokio::select! {
        biased;
        read = read_head(stream, f.head, f.settings) => read,
        () = client.gone() => Err(AttemptError::Client {
            status: 499,
            why: "client prematurely closed connection, so upstream connection is closed too while reading response header from upstream".to_owned(),
        }),
    }
}

async fn read_head(
    stream: &Stream,
    req: &RequestHead,
    s: &LocSettings,
) -> Result<(Recycled<ResponseHead>, Buf), AttemptError> {
    // A body-sized buffer: a small response arrives whole with its head in one read,
    // and the same buffer then carries the rest of a larger body.
    let mut ubuf = Buf::body();
    let mut resp = Recycled::take(&RESPONSE_HEADS);
    // nginx reads the head into `proxy_buffer_size`; one that does not fit is refused.
    let limit = s.proxy_buffer_size.min(crate::http1::MAX_HEAD_BYTES);
    let parse = |buf: &mut Buf| loop {
        match resp.parse(buf, req.method) {
            Ok(Parsed::Complete) if (100..200).contains(&resp.status) && resp.status != 101 => {
                buf.drain(..resp.head_len);
            }
            Ok(Parsed::Complete) if resp.head_len > limit => return Err(ParseError::HeadTooLarge),
            Ok(Parsed::Complete) if resp.status == 101 && !req.upgrade => {
                return Err(ParseError::UnrequestedUpgrade)
            }
            Ok(Parsed::Partial) if buf.len() > limit => return Err(ParseError::HeadTooLarge),
            // More fields than fit any head nginx would take: too big, in its words.
            Err(ParseError::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
            done => return done,
        }
    };
    io::read_head(
        stream,
        &mut ubuf,
        io::HeadRead::FillTo(BODY_BUF),
        io::HeadTimeout::PerRead(s.proxy_read_timeout),
        limit + 1,
        parse,
    )
    .await
    .map_err(|e| match e {
        io::HeadError::Io { err, got_bytes } => AttemptError::Read { err, got_bytes },
        io::HeadError::Invalid(e) => AttemptError::InvalidHeader(e),
    })?;
    Ok((resp, ubuf))
}

/// Records one attempt for the `$upstream_*` variables, when the log or `add_header`
/// uses them; `head` is the response head it gave, if any.
#[allow(clippy::too_many_arguments)]
pub(super) fn note_attempt(
    f: &Forward<'_>,
    done: &mut Forwarded,
    addr: &Endpoint,
    status: u16,
    connect: Option<Duration>,
    header: Option<Duration>,
    started: Instant,
    head: Vec<u8>,
    traffic: Traffic,
) {
    if f.log_upstream {
        done.attempts.push(UpstreamAttempt {
            addr: AttemptPeer::Addr(addr.clone()),
            status,
            connect,
            header,
            response: Some(started.elapsed()),
            head,
            traffic,
        });
    }
}
