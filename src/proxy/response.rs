//! Relaying the upstream response to the client: its head (hop-by-hop removed, framing
//! and `add_header` applied) written together with the first body bytes, then the body
//! streamed in 64 KiB chunks, then the upstream connection pooled when it can be.

use std::io::{IoSlice, Write as _};

use super::attempt::{note_attempt, Answered, UpstreamConn};
use super::request::{vars, CLIENT_SEND_TIMEOUT};
use super::{Forward, Forwarded};
use crate::config::{LatencyPoint, Level};
use crate::http1::respond;
use crate::http1::{write_chunk_header, BodyFraming, ChunkedScanner, ResponseHead, ScanStep};
use crate::net::buffers::{Buf, Recycled, BODY_BUF};
use crate::net::io::{self, IoFailure};
use crate::net::Stream;
use crate::upstream::pool::IdleConn;
use crate::upstream::{Outcome, PeerState};
use std::sync::Arc;

/// How the body goes to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    /// No body.
    None,
    /// Bytes as they come (content-length, chunked passed through, or close-delimited
    /// to an HTTP/1.0 client).
    Raw,
    /// A close-delimited upstream body re-framed as chunked for an HTTP/1.1 client, so
    /// the client connection can stay open.
    Rechunk,
}

/// Relays the answer of the attempt that got one; updates `done` with the status, the
/// body size and whether the client connection may continue. `set_cookie` (from
/// `sticky cookie`) is added to the head as a `Set-Cookie` line. The peer stays in
/// flight until the last byte, then its outcome and statistics are recorded.
pub(super) async fn relay(
    f: &Forward<'_>,
    client: &mut Stream,
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
    record_latency(f, idx, LatencyPoint::LastByte, started);
    note_attempt(
        f,
        done,
        &peer.conf.addr,
        done.status,
        connect_time,
        header_time,
        started,
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

/// Feeds `least_time` (a no-op for other methods, which skip the clock).
fn record_latency(f: &Forward<'_>, idx: usize, point: LatencyPoint, started: tokio::time::Instant) {
    if f.upstream.latency_point().is_some() {
        f.upstream
            .record_latency(idx, point, started.elapsed(), crate::upstream::now());
    }
}

#[allow(clippy::too_many_arguments)]
async fn relay_response(
    f: &Forward<'_>,
    client: &mut Stream,
    cbuf: &[u8],
    mut conn: UpstreamConn,
    peer: &Arc<PeerState>,
    resp: Recycled<ResponseHead>,
    ubuf: Buf,
    uhead: super::request::UpstreamHead,
    set_cookie: Option<&[u8]>,
    done: &mut Forwarded,
) {
    let req = f.head;
    let http10_client = req.minor_version == 0;
    let upgrade = resp.status == 101 && req.upgrade;
    let out_mode = match resp.framing {
        BodyFraming::None => Out::None,
        BodyFraming::UntilClose if !http10_client => Out::Rechunk,
        _ => Out::Raw,
    };
    if upgrade || (resp.framing == BodyFraming::UntilClose && http10_client) {
        done.keep_client = false;
    }
    done.status = resp.status;

    // The upstream request head has been sent: its buffer carries the client head now.
    let sent_close = uhead.close;
    let mut chead = uhead.bytes;
    chead.clear();
    let _ = write!(chead, "HTTP/1.1 {} ", resp.status);
    chead.extend_from_slice(&ubuf[resp.reason.clone()]);
    chead.extend_from_slice(b"\r\n");
    for h in &resp.headers {
        if h.hop_by_hop {
            continue;
        }
        chead.extend_from_slice(&ubuf[h.name.clone()]);
        chead.extend_from_slice(b": ");
        chead.extend_from_slice(&ubuf[h.value.clone()]);
        chead.extend_from_slice(b"\r\n");
    }
    if upgrade {
        chead.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        if let Some(u) = resp.header_value(&ubuf, "upgrade") {
            chead.extend_from_slice(u);
        }
        chead.extend_from_slice(b"\r\n");
    } else {
        if resp.framing == BodyFraming::Chunked || out_mode == Out::Rechunk {
            chead.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !done.keep_client {
            chead.extend_from_slice(b"Connection: close\r\n");
        } else if http10_client {
            chead.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    if let Some(c) = set_cookie {
        // `sticky cookie`: the response's peer differs from the request's cookie.
        chead.extend_from_slice(b"Set-Cookie: ");
        chead.extend_from_slice(c);
        chead.extend_from_slice(b"\r\n");
    }
    if !f.settings.add_header.is_empty() {
        let v = vars(f, cbuf, None);
        let applies = respond::add_header_applies(resp.status);
        for h in &f.settings.add_header {
            if h.always || applies {
                chead.extend_from_slice(h.name.as_bytes());
                chead.extend_from_slice(b": ");
                v.eval(&h.value, &mut chead);
                chead.extend_from_slice(b"\r\n");
            }
        }
    }
    chead.extend_from_slice(b"\r\n");
    done.head_bytes = chead.len() as u64;

    if upgrade {
        tunnel(client, cbuf, conn, &chead, &ubuf[resp.head_len..], f, done).await;
        return;
    }

    let mut relay = BodyRelay {
        read_timeout: f.settings.proxy_read_timeout,
        sent: 0,
        head_pending: chead.len() as u64,
        mode: out_mode,
        upstream_clean: !sent_close && resp.keep_alive,
    };
    let result = relay
        .run(
            client,
            &mut conn.stream,
            resp.framing,
            &chead,
            ubuf,
            resp.head_len,
        )
        .await;
    done.body_bytes = relay.sent;
    match result {
        Ok(()) => {}
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

    if relay.upstream_clean {
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
                },
            );
        }
    }
}

enum BodyError {
    Upstream(IoFailure),
    Client,
}

struct BodyRelay {
    read_timeout: std::time::Duration,
    sent: u64,
    /// Head bytes not yet written (they are not body bytes).
    head_pending: u64,
    mode: Out,
    /// Whether the upstream connection ends exactly at the end of this response and
    /// may be reused.
    upstream_clean: bool,
}

impl BodyRelay {
    /// `ubuf` holds the response head at `..head_len` and the first body bytes after
    /// it; once those are written it is reused for the rest of the body.
    async fn run(
        &mut self,
        client: &mut Stream,
        upstream: &mut Stream,
        framing: BodyFraming,
        chead: &[u8],
        ubuf: Buf,
        head_len: usize,
    ) -> Result<(), BodyError> {
        let initial = &ubuf[head_len..];
        match framing {
            BodyFraming::None => {
                if !initial.is_empty() {
                    self.upstream_clean = false;
                }
                self.write(client, &[chead]).await
            }
            BodyFraming::Length(n) => {
                let first = (initial.len() as u64).min(n) as usize;
                if initial.len() > first {
                    self.upstream_clean = false;
                }
                self.write(client, &[chead, &initial[..first]]).await?;
                let mut remaining = n - first as u64;
                let mut bbuf = ubuf;
                while remaining > 0 {
                    bbuf.clear();
                    let want = remaining.min(BODY_BUF as u64) as usize;
                    let got = io::read_some(upstream, &mut bbuf, want, self.read_timeout)
                        .await
                        .map_err(BodyError::Upstream)?;
                    let take = got.min(remaining as usize);
                    if got > take {
                        self.upstream_clean = false;
                    }
                    remaining -= take as u64;
                    self.write(client, &[&bbuf[..take]]).await?;
                }
                Ok(())
            }
            BodyFraming::Chunked => {
                let mut sc = ChunkedScanner::new();
                let mut step = sc
                    .scan(initial)
                    .map_err(|_| BodyError::Upstream(IoFailure::Closed))?;
                let first = match step {
                    ScanStep::Done { body_end } => body_end,
                    ScanStep::NeedMore => initial.len(),
                };
                if first < initial.len() {
                    self.upstream_clean = false;
                }
                self.write(client, &[chead, &initial[..first]]).await?;
                let mut bbuf = ubuf;
                while matches!(step, ScanStep::NeedMore) {
                    bbuf.clear();
                    io::read_some(upstream, &mut bbuf, BODY_BUF, self.read_timeout)
                        .await
                        .map_err(BodyError::Upstream)?;
                    step = sc
                        .scan(&bbuf)
                        .map_err(|_| BodyError::Upstream(IoFailure::Closed))?;
                    let end = match step {
                        ScanStep::Done { body_end } => body_end,
                        ScanStep::NeedMore => bbuf.len(),
                    };
                    if end < bbuf.len() {
                        self.upstream_clean = false;
                    }
                    self.write(client, &[&bbuf[..end]]).await?;
                }
                Ok(())
            }
            BodyFraming::UntilClose => {
                self.upstream_clean = false;
                self.write_piece(client, Some(chead), initial).await?;
                let mut bbuf = ubuf;
                loop {
                    bbuf.clear();
                    let n = io::read_or_eof(upstream, &mut bbuf, BODY_BUF, self.read_timeout)
                        .await
                        .map_err(BodyError::Upstream)?;
                    if n == 0 {
                        break;
                    }
                    self.write_piece(client, None, &bbuf).await?;
                }
                if self.mode == Out::Rechunk {
                    self.write(client, &[b"0\r\n\r\n"]).await?;
                }
                Ok(())
            }
        }
    }

    /// Writes one piece of a close-delimited body, framed as a chunk when re-chunking.
    async fn write_piece(
        &mut self,
        client: &mut Stream,
        head: Option<&[u8]>,
        data: &[u8],
    ) -> Result<(), BodyError> {
        let head = head.unwrap_or(b"");
        if self.mode != Out::Rechunk || data.is_empty() {
            return self.write(client, &[head, data]).await;
        }
        let mut size = Vec::with_capacity(12);
        write_chunk_header(&mut size, data.len());
        self.write(client, &[head, &size, data, b"\r\n"]).await
    }

    async fn write(&mut self, client: &mut Stream, parts: &[&[u8]]) -> Result<(), BodyError> {
        // At most four parts (head, chunk size, data, CRLF): no allocation per write.
        let mut slices = [IoSlice::new(&[]); 4];
        for (slot, p) in slices.iter_mut().zip(parts) {
            *slot = IoSlice::new(p);
        }
        io::write_all_vectored(
            client,
            &mut slices[..parts.len().min(4)],
            CLIENT_SEND_TIMEOUT,
        )
        .await
        .map_err(|_| BodyError::Client)?;
        // Counts chunk framing too: close enough to nginx's $body_bytes_sent for logs.
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.sent += total - self.head_pending.min(total);
        self.head_pending = 0;
        Ok(())
    }
}

/// After a `101 Switching Protocols`, both sides become one raw byte stream.
async fn tunnel(
    client: &mut Stream,
    cbuf: &[u8],
    mut conn: UpstreamConn,
    chead: &[u8],
    initial: &[u8],
    f: &Forward<'_>,
    done: &mut Forwarded,
) {
    let mut slices = [IoSlice::new(chead), IoSlice::new(initial)];
    if io::write_all_vectored(client, &mut slices, CLIENT_SEND_TIMEOUT)
        .await
        .is_err()
    {
        return;
    }
    // Bytes the client sent after its upgrade request belong to the new protocol.
    let early = &cbuf[f.head.head_len.min(cbuf.len())..];
    if !early.is_empty()
        && io::write_all(&conn.stream, early, f.settings.proxy_send_timeout)
            .await
            .is_err()
    {
        return;
    }
    done.keep_client = false;
    if let Ok((_, down)) = tokio::io::copy_bidirectional(client, &mut conn.stream).await {
        done.body_bytes = down;
    }
}
