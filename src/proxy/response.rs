//! Relaying the upstream response to the client side ([`Downstream`]): the head with
//! ferrolb's fields (`sticky` cookie, `add_header`), the body read in 64 KiB pieces as
//! the upstream framed it, then the upstream connection pooled when it ended cleanly.

use std::sync::Arc;

use super::attempt::{note_attempt, Answered, UpstreamConn};
use super::downstream::{Downstream, ResponseOut};
use super::request::vars;
use super::{Forward, Forwarded};
use crate::access_log::UpstreamAttempt;
use crate::config::{LatencyPoint, Level, LocSettings, TemplatePart, Var};
use crate::http1::respond;
use crate::http1::{BodyFraming, ChunkedScanner, ResponseHead, ScanStep};
use crate::net::buffers::{Buf, Recycled, BODY_BUF};
use crate::net::io::{self, IoFailure};
use crate::net::Stream;
use crate::upstream::pool::IdleConn;
use crate::upstream::{Outcome, PeerState};
use crate::vars::{AttemptPeer, Traffic};

/// Relays the answer of the attempt that got one; updates `done` with the status, the
/// body size and whether the client connection may continue. `set_cookie` (from
/// `sticky cookie`) is added to the head as a `Set-Cookie` line. The peer stays in
/// flight until the last byte, then its outcome and statistics are recorded.
pub(super) async fn relay<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    answered: Answered<'_>,
    set_cookie: Option<&[u8]>,
    done: &mut Forwarded,
) {
    let Answered {
        guard,
        conn,
        resp,
        ubuf,
        uhead,
        started,
        connect_time,
        header_time,
    } = answered;
    let peer = guard.peer();
    let idx = guard.index();
    record_latency(f, idx, LatencyPoint::Header, started);
    let sent_head_bytes = uhead.bytes.len() as u64;
    // The request body went whole with the head (the spooled or buffered cases) or
    // was streamed; either way the peer got the client's body bytes.
    let sent_bytes = sent_head_bytes
        + match f.head.framing {
            BodyFraming::Length(n) if super::request::sends_client_body(f) => n,
            _ => 0,
        };
    let head_len = resp.head_len as u64;
    // The response head for `$upstream_http_NAME`, kept only when asked for.
    let kept_head = if f.log_upstream && asks_for_fields(f.settings) {
        ubuf[..resp.head_len].to_vec()
    } else {
        Vec::new()
    };
    // Every attempt so far, this one with `head` (and, once it ended, its time), for
    // the variables of `add_header` and of an `X-Accel-Redirect`'s new location.
    let attempts_now = |head: Vec<u8>, ended: bool| {
        let mut attempts = done.attempts.clone();
        attempts.push(UpstreamAttempt {
            addr: AttemptPeer::Addr(peer.conf.addr.clone()),
            status: resp.status,
            connect: connect_time,
            header: header_time,
            response: ended.then(|| started.elapsed()),
            head,
            traffic: Traffic {
                sent: sent_bytes,
                received: resp.head_len as u64,
                body: 0,
            },
        });
        attempts
    };
    if let Some(locals) = f.locals.filter(|_| f.log_upstream) {
        locals.set_upstream(attempts_now(kept_head.clone(), false));
    }
    let intercepted =
        f.settings.proxy_intercept_errors && resp.status >= 300 && (f.hands_off)(resp.status);
    let accel = (!intercepted)
        .then(|| super::accel::redirect(&resp, &ubuf, f.settings))
        .flatten();
    if let Some(accel) = accel {
        // nginx's `X-Accel-Redirect`: the response is dropped (its body unread, so the
        // connection is not pooled) and the caller redirects; `$upstream_http_*`
        // keep this response's fields there.
        if let Some(locals) = f.locals {
            locals.set_upstream(attempts_now(ubuf[..resp.head_len].to_vec(), true));
            // `X-Accel-Limit-Rate` holds for the redirected response, as nginx sets
            // the request's rate (over the new location's `limit_rate`).
            if let Some(rate) = super::accel::limit_rate(&resp, &ubuf, f.settings) {
                locals.set_limit_rate(rate);
            }
        }
        done.status = resp.status;
        done.accel_redirect = Some(accel);
        drop(conn);
    } else {
        relay_response(
            f,
            client,
            cbuf,
            conn,
            &peer.state,
            resp,
            ubuf,
            uhead,
            set_cookie,
            done,
        )
        .await;
    }
    record_latency(f, idx, LatencyPoint::LastByte, started);
    note_attempt(
        f,
        done,
        &peer.conf.addr,
        done.status,
        connect_time,
        header_time,
        started,
        kept_head,
        Traffic {
            sent: sent_bytes,
            received: head_len + done.body_bytes,
            body: done.body_bytes,
        },
    );
    // Statistics for /status and /metrics: a few relaxed atomic adds.
    let body_out = match f.head.framing {
        BodyFraming::Length(n) => n,
        _ => 0,
    };
    peer.state.record_response(
        done.status,
        started.elapsed(),
        done.body_bytes,
        sent_head_bytes + body_out,
    );
    guard.finish(Outcome::Success);
}

/// The location's `expires` for this response, when its status takes one.
fn expires_for(
    f: &Forward<'_>,
    cbuf: &[u8],
    resp: &ResponseHead,
) -> Option<crate::config::Expires> {
    let conf = f.settings.files.expires.as_ref()?;
    if !crate::config::Expires::applies_to(resp.status) {
        return None;
    }
    conf.resolve(|t| vars(f, cbuf, None).evaluated(t))
}

/// Whether `add_header` or the access log has `$upstream_http_NAME`.
fn asks_for_fields(s: &LocSettings) -> bool {
    let has = |parts: &[TemplatePart]| {
        parts.iter().any(|p| {
            matches!(
                p,
                TemplatePart::Var(Var::UpstreamHttp(_) | Var::UpstreamCookie(_))
            )
        })
    };
    s.add_header
        .iter()
        .chain(&s.add_trailer)
        .any(|h| has(&h.value.parts))
        || s.access_log.targets().iter().any(|t| {
            [&t.format, &t.condition, &t.path_template]
                .into_iter()
                .flatten()
                .any(|f| has(&f.parts))
        })
}

/// Feeds `least_time` (a no-op for other methods, which skip the clock).
fn record_latency(f: &Forward<'_>, idx: usize, point: LatencyPoint, started: tokio::time::Instant) {
    if f.upstream.latency_point().is_some() {
        f.upstream
            .record_latency(idx, point, started.elapsed(), crate::upstream::now());
    }
}

/// The head to the client, the body in 64 KiB pieces, the connection back to the pool.
#[allow(clippy::too_many_arguments)]
async fn relay_response<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    mut conn: UpstreamConn,
    peer: &Arc<PeerState>,
    mut resp: Recycled<ResponseHead>,
    ubuf: Buf,
    uhead: super::request::UpstreamHead,
    set_cookie: Option<&[u8]>,
    done: &mut Forwarded,
) {
    let upgrade = resp.status == 101 && f.head.upgrade;
    done.status = resp.status;
    hide_fields(&mut resp, &ubuf, f.settings);
    if f.settings.proxy_intercept_errors && resp.status >= 300 && (f.hands_off)(resp.status) {
        // nginx's `proxy_intercept_errors`: the location's page replaces the upstream's
        // answer. Its body is never read, so the connection is not pooled.
        let www_authenticate = if resp.status == 401 {
            resp.headers
                .iter()
                .filter(|h| ubuf[h.name.clone()].eq_ignore_ascii_case(b"www-authenticate"))
                .map(|h| ubuf[h.value.clone()].to_vec())
                .collect()
        } else {
            Vec::new()
        };
        done.handed_off = Some(super::HandedOff {
            status: resp.status,
            www_authenticate,
        });
        drop(conn);
        return;
    }

    // `expires` and `add_header` values evaluated once into one scratch buffer.
    let mut values = Vec::new();
    let mut ranges: Vec<(&[u8], std::ops::Range<usize>)> = Vec::new();
    if let Some(e) = expires_for(f, cbuf, &resp) {
        // nginx's headers filter replaces the upstream's fields.
        let mut mtime = None;
        for h in &mut resp.headers {
            let name = &ubuf[h.name.clone()];
            if h.hop_by_hop {
                continue;
            }
            if name.eq_ignore_ascii_case(b"last-modified") {
                mtime = crate::http1::dates::parse_http_date(&ubuf[h.value.clone()]);
            }
            if name.eq_ignore_ascii_case(b"expires") || name.eq_ignore_ascii_case(b"cache-control")
            {
                h.hop_by_hop = true;
            }
        }
        let now = crate::http1::dates::now_secs();
        let (expires, cache_control) = super::expires::fields(e, now, mtime);
        for (name, value) in [
            (&b"Expires"[..], expires),
            (b"Cache-Control", cache_control),
        ] {
            let start = values.len();
            values.extend_from_slice(value.as_bytes());
            ranges.push((name, start..values.len()));
        }
    }
    if !f.settings.add_header.is_empty() {
        let applies = respond::add_header_applies(resp.status);
        let fields = vars(f, cbuf, None).added_fields(&f.settings.add_header);
        // The head as the client gets it so far (its first line is not read), for
        // `$sent_http_NAME`.
        let mut so_far = b"HTTP/1.1\r\n".to_vec();
        let field_line = |so_far: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            so_far.extend_from_slice(name);
            so_far.extend_from_slice(b": ");
            so_far.extend_from_slice(value);
            so_far.extend_from_slice(b"\r\n");
        };
        for h in resp.headers.iter().filter(|h| !h.hop_by_hop) {
            field_line(&mut so_far, &ubuf[h.name.clone()], &ubuf[h.value.clone()]);
        }
        for (name, r) in &ranges {
            field_line(&mut so_far, name, &values[r.clone()]);
        }
        for field in fields.iter().filter(|h| h.always || applies) {
            let value = field.value(&so_far, b"");
            if field.replaces() {
                // `ETag` and `Last-Modified` replace the upstream's (none when empty).
                let name = field.name.as_bytes();
                for h in &mut resp.headers {
                    if ubuf[h.name.clone()].eq_ignore_ascii_case(name) {
                        h.hop_by_hop = true;
                    }
                }
                ranges.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
            // nginx adds no field whose value came out empty.
            if !value.is_empty() {
                field_line(&mut so_far, field.name.as_bytes(), &value);
                let start = values.len();
                values.extend_from_slice(&value);
                ranges.push((field.name.as_bytes(), start..values.len()));
            }
        }
    }
    // Allocated only when there is something to add (most responses have nothing).
    let mut extra: Vec<(&[u8], &[u8])> = Vec::new();
    if let Some(c) = set_cookie {
        // `sticky cookie`: the response's peer differs from the request's cookie.
        extra.push((b"Set-Cookie", c));
    }
    extra.extend(ranges.iter().map(|(n, r)| (*n, &values[r.clone()])));

    let replaced = super::field_edits::edited_fields(
        &f.settings.proxy_edits,
        &vars(f, cbuf, None),
        &resp,
        &ubuf,
        &|| (f.absolute_base)(cbuf),
    );

    // The upstream request head has been sent: its buffer carries the client head now.
    let sent_close = uhead.close;
    let trailer_applies = respond::add_header_applies(resp.status);
    let out = ResponseOut {
        head: &resp,
        buf: &ubuf,
        upgrade,
        extra: &extra,
        replaced: &replaced,
        trailer: f
            .settings
            .add_trailer
            .iter()
            .any(|h| h.always || trailer_applies),
    };
    if let Some(rate) = super::accel::limit_rate(&resp, &ubuf, f.settings) {
        client.limit_rate(rate);
    }
    let started = client.start_response(f.head, &out, done.keep_client, uhead.bytes);
    done.keep_client = started.keep_alive;
    done.head_bytes = started.head_bytes;

    if upgrade {
        tunnel(client, cbuf, conn, &ubuf[resp.head_len..], f, done).await;
        return;
    }

    let mut relay = BodyRelay {
        read_timeout: f.settings.proxy_read_timeout,
        upstream_clean: !sent_close && resp.keep_alive,
        surplus: None,
        pace: crate::net::pace::Pace::new(f.settings.proxy_limit_rate, 0),
    };
    let framing = resp.framing;
    let head_len = resp.head_len;
    drop(extra);
    let mut result = relay
        .run(client, &mut conn.stream, framing, ubuf, head_len)
        .await;
    if result.is_ok() {
        if let Some(head) = client.trailer_head() {
            // nginx evaluates the trailer at the end of the body (`$msec`,
            // `$upstream_response_length`).
            let fields = vars(f, cbuf, None).added_fields(&f.settings.add_trailer);
            let last = crate::vars::last_chunk(&fields, trailer_applies, head);
            result = client
                .send_trailer(&last)
                .await
                .map_err(|_| BodyError::Client);
        }
    }
    done.body_bytes = client.body_bytes();
    if let Some(what) = relay.surplus {
        super::log_request(f, cbuf, Level::Warn, what, done.upstream_addr.as_ref());
    }
    match result {
        Ok(()) => {}
        Err(BodyError::InvalidChunked) => {
            done.keep_client = false;
            super::log_request(
                f,
                cbuf,
                Level::Error,
                "upstream sent invalid chunked response while reading upstream",
                done.upstream_addr.as_ref(),
            );
            return;
        }
        Err(BodyError::Upstream(e)) => {
            done.keep_client = false;
            let what = match e {
                IoFailure::Timeout => {
                    "upstream timed out (110: Connection timed out) while reading upstream"
                        .to_owned()
                }
                IoFailure::Closed => {
                    "upstream prematurely closed connection while reading upstream".to_owned()
                }
                other => format!("recv() failed {} while reading upstream", other.describe()),
            };
            super::log_request(f, cbuf, Level::Error, &what, done.upstream_addr.as_ref());
            return;
        }
        Err(BodyError::Client) => {
            // The client went away: nothing to tell it, and the upstream connection
            // still has unread response bytes, so it is dropped.
            done.keep_client = false;
            return;
        }
    }

    // nginx's `keepalive_time` and `keepalive_requests`: an old or much-used
    // connection is closed rather than kept (whatever `Connection` said).
    if relay.upstream_clean
        && conn.opened.elapsed() < f.upstream.keepalive_time
        && conn.requests + 1 < f.upstream.keepalive_requests
    {
        if let Some(capacity) = f.upstream.keepalive {
            crate::upstream::pool::put(
                &f.upstream.name,
                peer,
                capacity,
                f.upstream.keepalive_timeout,
                IdleConn {
                    stream: conn.stream,
                    since: tokio::time::Instant::now(),
                    requests: conn.requests + 1,
                    opened: conn.opened,
                },
            );
        }
    }
}

/// Upstream fields nginx never passes on unless `proxy_pass_header` names them:
/// ferrolb's own `Date` and `Server` go out instead, and the `X-Accel-*` controls
/// are meant for the proxy.
const HIDDEN_BY_DEFAULT: [&str; 8] = [
    "date",
    "server",
    "x-pad",
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

/// Marks the fields `proxy_hide_header` (and nginx's default list, less
/// `proxy_pass_header`) keep from the client: marked as not forwarded, like
/// hop-by-hop fields.
fn hide_fields(resp: &mut ResponseHead, buf: &[u8], s: &crate::config::LocSettings) {
    for h in &mut resp.headers {
        if h.hop_by_hop {
            continue;
        }
        let name = &buf[h.name.clone()];
        let named = |list: &[String]| list.iter().any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        let by_default = HIDDEN_BY_DEFAULT
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()));
        if (by_default && !named(&s.proxy_pass_header)) || named(&s.proxy_hide_header) {
            h.hop_by_hop = true;
        }
    }
}

enum BodyError {
    Upstream(IoFailure),
    /// The chunked framing broke: nginx's `upstream sent invalid chunked response`.
    InvalidChunked,
    Client,
}

/// nginx's warning when an upstream sent bytes past the end of its response.
const MORE_THAN_LENGTH: &str =
    "upstream sent more data than specified in \"Content-Length\" header while reading upstream";
/// nginx's warning for bytes after a chunked body's last chunk.
const AFTER_FINAL_CHUNK: &str = "upstream sent data after final chunk while reading upstream";

/// Reads the upstream body as it is framed and hands it to the client side.
struct BodyRelay {
    read_timeout: std::time::Duration,
    /// Whether the upstream connection ends exactly at the end of this response and
    /// may be reused.
    upstream_clean: bool,
    /// What to warn about when bytes came after the response's end.
    surplus: Option<&'static str>,
    /// `proxy_limit_rate`: reads from the upstream paced.
    pace: Option<crate::net::pace::Pace>,
}

impl BodyRelay {
    /// Sends body bytes that came with the response head; under `proxy_limit_rate`
    /// they count as read now, in pieces of what the rate allows, as if nginx had
    /// read them after its head buffer.
    async fn send_initial<D: Downstream>(
        &mut self,
        client: &mut D,
        data: &[u8],
    ) -> Result<(), BodyError> {
        let Some(pace) = &mut self.pace else {
            return client.send_body(data).await.map_err(|_| BodyError::Client);
        };
        let mut rest = data;
        while !rest.is_empty() {
            let n = usize::try_from(pace.allowance().await)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            client
                .send_body(&rest[..n])
                .await
                .map_err(|_| BodyError::Client)?;
            pace.sent(n as u64);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// At most `want` bytes more from the upstream (fewer while `proxy_limit_rate`
    /// holds them back); 0 at its end when `eof_ok`, else the end is an error.
    async fn read(
        &mut self,
        upstream: &mut Stream,
        buf: &mut Buf,
        want: usize,
        eof_ok: bool,
    ) -> Result<usize, IoFailure> {
        let want = match &mut self.pace {
            Some(p) => want.min(usize::try_from(p.allowance().await).unwrap_or(usize::MAX)),
            None => want,
        };
        let n = if eof_ok {
            io::read_or_eof(upstream, buf, want, self.read_timeout).await?
        } else {
            io::read_some(upstream, buf, want, self.read_timeout).await?
        };
        if let Some(p) = &mut self.pace {
            p.sent(n as u64);
        }
        Ok(n)
    }

    /// `ubuf` holds the response head at `..head_len` and the first body bytes after
    /// it; once those are sent it is reused for the rest of the body.
    async fn run<D: Downstream>(
        &mut self,
        client: &mut D,
        upstream: &mut Stream,
        framing: BodyFraming,
        ubuf: Buf,
        head_len: usize,
    ) -> Result<(), BodyError> {
        let initial = &ubuf[head_len..];
        match framing {
            BodyFraming::None => {
                if !initial.is_empty() {
                    self.upstream_clean = false;
                    self.surplus = Some(MORE_THAN_LENGTH);
                }
                client.end_body().await.map_err(|_| BodyError::Client)
            }
            BodyFraming::Length(n) => {
                let first = (initial.len() as u64).min(n) as usize;
                if initial.len() > first {
                    self.upstream_clean = false;
                    self.surplus = Some(MORE_THAN_LENGTH);
                }
                self.send_initial(client, &initial[..first]).await?;
                let mut remaining = n - first as u64;
                let mut bbuf = ubuf;
                while remaining > 0 {
                    bbuf.clear();
                    let want = remaining.min(BODY_BUF as u64) as usize;
                    let got = self
                        .read(upstream, &mut bbuf, want, false)
                        .await
                        .map_err(BodyError::Upstream)?;
                    let take = got.min(remaining as usize);
                    if got > take {
                        self.upstream_clean = false;
                        self.surplus = Some(MORE_THAN_LENGTH);
                    }
                    remaining -= take as u64;
                    client
                        .send_body(&bbuf[..take])
                        .await
                        .map_err(|_| BodyError::Client)?;
                }
                Ok(())
            }
            BodyFraming::Chunked => {
                let mut sc = ChunkedScanner::new();
                // A break in the first bytes: the head has not gone out, and does not,
                // as with nginx (the client sees the connection close).
                let mut step = sc.scan(initial).map_err(|_| BodyError::InvalidChunked)?;
                let first = match step {
                    ScanStep::Done { body_end } => body_end,
                    ScanStep::NeedMore => initial.len(),
                };
                if first < initial.len() {
                    self.upstream_clean = false;
                    self.surplus = Some(AFTER_FINAL_CHUNK);
                }
                self.send_initial(client, &initial[..first]).await?;
                let mut bbuf = ubuf;
                while matches!(step, ScanStep::NeedMore) {
                    bbuf.clear();
                    self.read(upstream, &mut bbuf, BODY_BUF, false)
                        .await
                        .map_err(BodyError::Upstream)?;
                    step = sc.scan(&bbuf).map_err(|_| BodyError::InvalidChunked)?;
                    let end = match step {
                        ScanStep::Done { body_end } => body_end,
                        ScanStep::NeedMore => bbuf.len(),
                    };
                    if end < bbuf.len() {
                        self.upstream_clean = false;
                        self.surplus = Some(AFTER_FINAL_CHUNK);
                    }
                    client
                        .send_body(&bbuf[..end])
                        .await
                        .map_err(|_| BodyError::Client)?;
                }
                Ok(())
            }
            BodyFraming::UntilClose => {
                self.upstream_clean = false;
                self.send_initial(client, initial).await?;
                let mut bbuf = ubuf;
                loop {
                    bbuf.clear();
                    let n = self
                        .read(upstream, &mut bbuf, BODY_BUF, true)
                        .await
                        .map_err(BodyError::Upstream)?;
                    if n == 0 {
                        break;
                    }
                    client
                        .send_body(&bbuf)
                        .await
                        .map_err(|_| BodyError::Client)?;
                }
                client.end_body().await.map_err(|_| BodyError::Client)
            }
        }
    }
}

/// After a `101 Switching Protocols`, both sides become one raw byte stream.
async fn tunnel<D: Downstream>(
    client: &mut D,
    cbuf: &[u8],
    mut conn: UpstreamConn,
    initial: &[u8],
    f: &Forward<'_>,
    done: &mut Forwarded,
) {
    done.keep_client = false;
    // Bytes the client sent after its upgrade request belong to the new protocol.
    let early = &cbuf[f.head.head_len.min(cbuf.len())..];
    if !early.is_empty()
        && io::write_all(&conn.stream, early, f.settings.proxy_send_timeout)
            .await
            .is_err()
    {
        return;
    }
    let idle = f.settings.proxy_read_timeout;
    let result = client
        .tunnel(
            &mut conn.stream,
            initial,
            idle,
            f.settings.proxy_send_timeout,
        )
        .await;
    if let Err(IoFailure::Timeout) = result {
        super::log_request(
            f,
            cbuf,
            Level::Info,
            "upstream timed out (110: Connection timed out) while proxying upgraded connection",
            done.upstream_addr.as_ref(),
        );
    }
    done.body_bytes = client.body_bytes();
}
