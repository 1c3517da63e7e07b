//! HTTP/2 to clients: `listen ... ssl http2` (ALPN `h2`) and h2c with prior knowledge
//! on a plain `http2` address. The `h2` crate speaks the protocol; each stream is
//! served by the same request pipeline as an HTTP/1 request ([`stream`]).
//!
//! The connection's limits are the address's default server's, as nginx takes them:
//! `http2_max_concurrent_streams`, `http2_body_preread_size` (the stream window),
//! `http2_chunk_size`, `large_client_header_buffers` (the header list), the idle
//! `keepalive_timeout`, `keepalive_requests` (streams per connection),
//! `client_header_timeout` (for the preface and SETTINGS). A stop, a reload, the last
//! allowed stream and an idle timeout send GOAWAY; streams in progress finish. Known
//! attacks are bounded by the codec (CONTINUATION floods, HPACK bombs, resets of
//! streams not yet accepted, unanswered resets) and by [`frame_watch`] (SETTINGS,
//! PING, RST_STREAM and empty DATA floods).

mod frame_watch;
mod request_head;
mod stream;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use h2::Reason;

use self::frame_watch::{FloodGuard, Watched, GOAWAY_FLUSH};
use self::stream::StreamCtx;
use super::state::{StopMode, Worker};
use super::vhost;
use crate::config::Level;
use crate::net::{ClientInfo, Stream};

/// The connection-level settings, from the address's default server.
struct Limits {
    streams: u32,
    window: u32,
    chunk_size: usize,
    header_list: u32,
    idle: Duration,
    handshake: Duration,
    max_streams: u32,
    send_timeout: Duration,
}

impl Limits {
    fn of(servers: &[crate::config::ServerConf], info: &ClientInfo) -> Limits {
        let s = vhost::find_server(servers, &info.local, None).map(|i| &servers[i].settings);
        let Some(s) = s else {
            return Limits {
                streams: 128,
                window: 65536,
                chunk_size: 8192,
                header_list: 32768,
                idle: Duration::from_secs(75),
                handshake: Duration::from_secs(60),
                max_streams: 1000,
                send_timeout: Duration::from_secs(60),
            };
        };
        let (n, size) = s.large_client_header_buffers;
        Limits {
            streams: s.http2.max_concurrent_streams,
            window: s.http2.body_preread_size,
            chunk_size: s.http2.chunk_size,
            header_list: u32::try_from(n.saturating_mul(size)).unwrap_or(u32::MAX),
            idle: s.keepalive_timeout,
            handshake: s.client_header_timeout,
            max_streams: s.keepalive_requests,
            send_timeout: s.send_timeout,
        }
    }
}

/// Serves an HTTP/2 client connection until it closes; `first`: bytes already read
/// from it (h2c's preface).
pub(super) async fn serve(worker: &Worker, stream: &mut Stream, info: &ClientInfo, first: Vec<u8>) {
    let rt = worker.shared.runtime.load_full();
    let limits = Limits::of(&rt.config.http.servers, info);
    drop(rt);
    let mut info = info.clone();
    info.http2 = true;
    let info = Arc::new(info);
    let guard = Arc::new(FloodGuard::new(limits.streams));
    let io = Watched::new(stream, first, guard.clone());
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.streams)
        .initial_window_size(limits.window)
        // The connection window: every stream's may be full at once, bounded.
        .initial_connection_window_size(
            limits
                .window
                .saturating_mul(limits.streams.min(16))
                .clamp(65535, 16 << 20),
        )
        .max_header_list_size(limits.header_list)
        .max_frame_size(16384)
        .max_send_buffer_size(limits.chunk_size.max(16384))
        // Rapid reset: streams reset before they were accepted, and streams the codec
        // had to reset itself for protocol errors, each end the connection past this.
        .max_pending_accept_reset_streams(limits.streams as usize)
        .max_local_error_reset_streams(Some(limits.streams as usize))
        .max_concurrent_reset_streams(limits.streams as usize);
    let mut reload = worker.shared.reload_signal();
    reload.borrow_and_update();
    let handshake =
        tokio::time::timeout(limits.handshake, builder.handshake::<_, bytes::Bytes>(io));
    let mut conn = tokio::select! {
        r = handshake => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                log_end(&info, &e, &guard);
                return;
            }
            Err(_) => {
                crate::log::emit(
                    Level::Info,
                    Some(info.id),
                    format_args!("client timed out (110: Connection timed out) while waiting for the HTTP/2 preface, client: {}", info.remote),
                );
                return;
            }
        },
        // `stopping` also sees a stop that came before this connection was accepted.
        () = worker.shared.stopping() => return,
    };
    let opened = tokio::time::Instant::now();
    let mut served = 0u32;
    let mut going_away = false;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let active = guard.active.load(Ordering::Relaxed);
        let idle_deadline = idle_since + limits.idle;
        // The signals are made anew each turn: pinned across turns they would also be
        // held during the GOAWAY flush, in every connection's task, for a gain within
        // bench/h2.sh's noise.
        tokio::select! {
            biased;
            () = guard.alarm.notified() => {
                let (what, seen) = guard.flood().map_or(("", 0), |(o, n)| (o.describe(), n));
                crate::log::emit(
                    Level::Info,
                    Some(info.id),
                    format_args!(
                        "http2 flood detected ({what} frames, {seen} received), client: {}",
                        info.remote
                    ),
                );
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                return flush_goaway(&mut conn).await;
            }
            () = worker.shared.stopping(), if !going_away => {
                if worker.shared.stop_mode() == StopMode::Fast {
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    return flush_goaway(&mut conn).await;
                }
                conn.graceful_shutdown();
                going_away = true;
            }
            _ = reload.changed(), if !going_away => {
                conn.graceful_shutdown();
                going_away = true;
            }
            // The idle time counts from the end of the last stream (told only when
            // no other is left), before the idle timer looks at it.
            () = guard.stream_done.notified() => idle_since = tokio::time::Instant::now(),
            () = tokio::time::sleep_until(idle_deadline), if active == 0 => {
                // keepalive_timeout: nginx closes an idle HTTP/2 connection with GOAWAY.
                conn.abrupt_shutdown(Reason::NO_ERROR);
                return flush_goaway(&mut conn).await;
            }
            r = conn.accept() => match r {
                None => return,
                Some(Err(e)) => {
                    log_end(&info, &e, &guard);
                    return flush_goaway(&mut conn).await;
                }
                Some(Ok((req, respond))) => {
                    served += 1;
                    let ctx = StreamCtx {
                        rt: worker.shared.runtime.load_full(),
                        info: info.clone(),
                        served,
                        opened,
                        chunk_size: limits.chunk_size,
                        send_timeout: limits.send_timeout,
                    };
                    guard.active.fetch_add(1, Ordering::Relaxed);
                    let g = guard.clone();
                    tokio::spawn(async move {
                        stream::serve(ctx, req, respond).await;
                        // Only the last stream's end matters to the idle timer: the
                        // connection task is not woken for the others.
                        if g.active.fetch_sub(1, Ordering::Relaxed) == 1 {
                            g.stream_done.notify_one();
                        }
                    });
                    if served >= limits.max_streams && !going_away {
                        // keepalive_requests: the last stream of this connection.
                        conn.graceful_shutdown();
                        going_away = true;
                    }
                }
            },
        }
    }
}

/// Lets the codec write a GOAWAY it queued and close, for a bounded time.
async fn flush_goaway<T, B>(conn: &mut h2::server::Connection<T, B>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: bytes::Buf,
{
    let _ = tokio::time::timeout(GOAWAY_FLUSH, async {
        while let Some(r) = conn.accept().await {
            if r.is_err() {
                break;
            }
        }
    })
    .await;
}

/// Logs why a connection ended, when the client did something wrong (as nginx logs
/// client errors, at `info`).
fn log_end(info: &ClientInfo, e: &h2::Error, guard: &FloodGuard) {
    if e.is_io() {
        return;
    }
    match e.reason() {
        Some(Reason::NO_ERROR) => return,
        Some(Reason::ENHANCE_YOUR_CALM) => {
            // The codec's own limits found it; the frames it ends connections for are
            // counted here too.
            let empty = guard.seen(frame_watch::Offence::EmptyData);
            let continuations = guard.continuations.load(Ordering::Relaxed);
            let counted = if empty > 0 {
                format!("; empty DATA frames, {empty} received")
            } else if continuations > 0 {
                format!("; CONTINUATION frames, {continuations} received")
            } else {
                String::new()
            };
            crate::log::emit(
                Level::Info,
                Some(info.id),
                format_args!(
                    "http2 flood detected ({e}{counted}), client: {}",
                    info.remote
                ),
            );
            return;
        }
        _ => {}
    }
    crate::log::emit(
        Level::Info,
        Some(info.id),
        format_args!("client sent invalid HTTP/2 ({e}), client: {}", info.remote),
    );
}
