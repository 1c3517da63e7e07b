//! The client's side of an HTTP/2 connection as the codec reads it, with an eye on the
//! frames that cost the server work but move no request forward: the floods the codec
//! has no limit of its own for. SETTINGS and PING frames each make the server answer
//! (CVE-2019-9515, CVE-2019-9512), RST_STREAM frames cancel streams it started
//! (rapid reset, CVE-2023-44487), empty DATA frames make it work for nothing
//! (CVE-2019-9518). Each kind has a budget that refills with time; a client that
//! spends one is told GOAWAY (ENHANCE_YOUR_CALM) and the connection closes, after a
//! bounded number of such frames whatever their rate.
//!
//! The frames are only looked at (their 9-byte headers, as the bytes pass), never
//! changed; the codec still does all the parsing.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::net::Stream;

/// Length of the client connection preface, which comes before the first frame.
const PREFACE_LEN: usize = 24;

/// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;

/// The kinds of frames that are budgeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offence {
    /// SETTINGS frames that want an acknowledgement.
    Settings,
    /// PING frames that want an answer.
    Ping,
    /// RST_STREAM from the client (streams it opened and cancelled).
    Reset,
    /// DATA frames with no payload that do not end the stream.
    EmptyData,
}

impl Offence {
    /// nginx's word for it in the error log.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Offence::Settings => "SETTINGS",
            Offence::Ping => "PING",
            Offence::Reset => "RST_STREAM",
            Offence::EmptyData => "empty DATA",
        }
    }
}

/// A budget: `burst` frames at once, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
    /// Frames of this kind seen on the connection (the log says how many).
    seen: u32,
}

impl Bucket {
    fn new(burst: u32, per_second: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            at: Instant::now(),
            seen: 0,
        }
    }

    /// Spends one token; false when none is left.
    fn spend(&mut self, now: Instant) -> bool {
        self.seen = self.seen.saturating_add(1);
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// What the connection task and its watched reader share.
#[derive(Debug)]
pub(super) struct FloodGuard {
    buckets: Mutex<[Bucket; 4]>,
    /// The flood found, once one is.
    found: Mutex<Option<Offence>>,
    flooded: AtomicBool,
    /// Woken when a flood is found.
    pub(super) alarm: Notify,
    /// Streams being served.
    pub(super) active: AtomicUsize,
    /// Woken when a stream ends (the idle timer may start).
    pub(super) stream_done: Notify,
    /// CONTINUATION frames seen: the codec bounds them (by the header list size); the
    /// count is for the log line when it ends a connection for them.
    pub(super) continuations: AtomicU32,
}

impl FloodGuard {
    /// Budgets for a connection allowing `streams` concurrent streams: as many resets
    /// at once as twice that (a browser cancels what it no longer needs), SETTINGS and
    /// PING at the pace of a busy but honest client.
    pub(super) fn new(streams: u32) -> FloodGuard {
        let resets = streams.saturating_mul(2).max(32);
        FloodGuard {
            buckets: Mutex::new([
                Bucket::new(64, 8),
                Bucket::new(64, 8),
                Bucket::new(resets, resets / 2),
                Bucket::new(256, 64),
            ]),
            found: Mutex::new(None),
            flooded: AtomicBool::new(false),
            alarm: Notify::new(),
            active: AtomicUsize::new(0),
            stream_done: Notify::new(),
            continuations: AtomicU32::new(0),
        }
    }

    /// The flood found, if any, and how many frames of its kind the connection sent
    /// up to the one that spent the budget.
    pub(super) fn flood(&self) -> Option<(Offence, u32)> {
        let found = (*self.found.lock().unwrap_or_else(|p| p.into_inner()))?;
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        Some((found, b[Self::bucket_of(found)].seen))
    }

    /// Frames of kind `what` the connection has sent so far.
    pub(super) fn seen(&self, what: Offence) -> u32 {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())[Self::bucket_of(what)].seen
    }

    fn bucket_of(what: Offence) -> usize {
        match what {
            Offence::Settings => 0,
            Offence::Ping => 1,
            Offence::Reset => 2,
            Offence::EmptyData => 3,
        }
    }

    /// Counts an offending frame; true when it spent the budget.
    fn offend(&self, what: Offence) -> bool {
        let i = Self::bucket_of(what);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b[i].spend(Instant::now()) {
            return false;
        }
        if !self.flooded.swap(true, Ordering::Relaxed) {
            *self.found.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
            self.alarm.notify_one();
        }
        true
    }
}

/// Where the reader stands in the frame sequence.
#[derive(Debug)]
enum Position {
    /// Inside the preface: this many bytes of it still to come.
    Preface(usize),
    /// Collecting a frame header: these bytes of it so far.
    Header { have: usize, bytes: [u8; 9] },
    /// Inside a frame's payload: this many bytes still to skip.
    Payload(usize),
}

/// The client connection with bytes already read put back in front, its reads watched.
#[derive(Debug)]
pub(super) struct Watched<'s> {
    stream: &'s mut Stream,
    /// Bytes read before HTTP/2 was recognised (h2c's preface).
    first: Vec<u8>,
    at: usize,
    pos: Position,
    guard: std::sync::Arc<FloodGuard>,
}

impl<'s> Watched<'s> {
    /// Watches `stream`, whose first bytes `first` were read already.
    pub(super) fn new(
        stream: &'s mut Stream,
        first: Vec<u8>,
        guard: std::sync::Arc<FloodGuard>,
    ) -> Watched<'s> {
        Watched {
            stream,
            first,
            at: 0,
            pos: Position::Preface(PREFACE_LEN),
            guard,
        }
    }

    /// Follows the frame headers in `data`, the next bytes the codec reads; the length
    /// of `data` up to the header of a frame that spent its budget, if one did (the
    /// codec gets nothing after it).
    fn observe(&mut self, all: &[u8]) -> Option<usize> {
        let mut data = all;
        while !data.is_empty() {
            match &mut self.pos {
                Position::Preface(left) | Position::Payload(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        self.pos = Position::Header {
                            have: 0,
                            bytes: [0; 9],
                        };
                    }
                }
                Position::Header { have, bytes } => {
                    let n = (9 - *have).min(data.len());
                    bytes[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == 9 {
                        let len = usize::from(bytes[0]) << 16
                            | usize::from(bytes[1]) << 8
                            | usize::from(bytes[2]);
                        let (kind, flags) = (bytes[3], bytes[4]);
                        let offence = match kind {
                            SETTINGS if flags & FLAG_ACK == 0 => Some(Offence::Settings),
                            PING if flags & FLAG_ACK == 0 => Some(Offence::Ping),
                            RST_STREAM => Some(Offence::Reset),
                            DATA if len == 0 && flags & FLAG_END_STREAM == 0 => {
                                Some(Offence::EmptyData)
                            }
                            _ => None,
                        };
                        if kind == CONTINUATION {
                            self.guard.continuations.fetch_add(1, Ordering::Relaxed);
                        }
                        if offence.is_some_and(|o| self.guard.offend(o)) {
                            return Some(all.len() - data.len());
                        }
                        self.pos = if len == 0 {
                            Position::Header {
                                have: 0,
                                bytes: [0; 9],
                            }
                        } else {
                            Position::Payload(len)
                        };
                    }
                }
            }
        }
        None
    }
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.guard.flooded.load(Ordering::Relaxed) {
            // Nothing more is read from a flooding client: the GOAWAY goes out and the
            // connection closes.
            return Poll::Pending;
        }
        let start = buf.filled().len();
        if this.at < this.first.len() {
            let n = (this.first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
        } else {
            std::task::ready!(Pin::new(&mut *this.stream).poll_read(cx, buf))?;
        }
        if let Some(keep) = this.observe(&buf.filled()[start..]) {
            buf.set_filled(start + keep);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How long a closing connection may take to get its GOAWAY out.
pub(super) const GOAWAY_FLUSH: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_and_a_flood_is_found() {
        let g = std::sync::Arc::new(FloodGuard::new(128));
        for _ in 0..64 {
            assert!(!g.offend(Offence::Settings));
        }
        assert_eq!(g.flood(), None);
        assert!(g.offend(Offence::Settings));
        assert_eq!(g.flood(), Some((Offence::Settings, 65)));
    }
}
