//! Stream I/O with nginx-style per-operation timeouts: every call tries the socket
//! first and arms a timer only when it has to wait.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::BufMut;

use super::buffers::Buf;
use super::Stream;
use crate::http1::Parsed;

/// Why an I/O operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum IoFailure {
    /// The operation did not finish within its timeout.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection.
    #[error("connection closed prematurely")]
    Closed,
    /// A socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl IoFailure {
    /// The text nginx would print after `failed`, e.g. `(111: Connection refused)`.
    pub fn describe(&self) -> String {
        match self {
            IoFailure::Io(e) => format!("({})", crate::log::os_error_text(e)),
            other => format!("({other})"),
        }
    }
}

/// Runs an I/O future with a timeout; a zero timeout means none.
async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, IoFailure> {
    if limit.is_zero() {
        return Ok(fut.await?);
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(IoFailure::Timeout),
    }
}

/// Reads at most `want` bytes into the spare capacity of `buf` (no zero-filling);
/// returns the number read, failing with [`IoFailure::Closed`] on EOF.
pub async fn read_some(
    s: &Stream,
    buf: &mut Vec<u8>,
    want: usize,
    limit: Duration,
) -> Result<usize, IoFailure> {
    match read_or_eof(s, buf, want, limit).await? {
        0 => Err(IoFailure::Closed),
        n => Ok(n),
    }
}

/// Like [`read_some`] but EOF is `Ok(0)`.
pub async fn read_or_eof(
    s: &Stream,
    buf: &mut Vec<u8>,
    want: usize,
    limit: Duration,
) -> Result<usize, IoFailure> {
    buf.reserve(want);
    // Readiness already known (the common case for a client that just sent a request):
    // read without arming a timer.
    match s.try_read_buf(&mut (&mut *buf).limit(want)) {
        Ok(n) => {
            if n > 0 && n < want {
                drained(s);
            }
            return Ok(n);
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e.into()),
    }
    within(limit, async {
        loop {
            s.readable().await?;
            match s.try_read_buf(&mut (&mut *buf).limit(want)) {
                Ok(n) => {
                    if n > 0 && n < want {
                        drained(s);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    })
    .await
}

/// A read that returned less than asked for emptied the socket's receive buffer, so
/// the next read would only fail with EAGAIN: forget the readiness now (nginx does the
/// same) and save that syscall. Safe with edge-triggered epoll: data arriving later
/// raises a new event at the next poll, which tokio does not clear here.
pub fn drained(s: &Stream) {
    s.forget_readable();
}

/// Writes every slice, in as few `writev` calls as the socket allows. The first attempt
/// is made without a timer: a socket with room in its send buffer (nearly always)
/// takes the whole write at once, and no timeout is armed for it.
pub async fn write_all_vectored(
    s: &Stream,
    slices: &mut [IoSlice<'_>],
    limit: Duration,
) -> Result<(), IoFailure> {
    let mut slices = slices;
    // Skip empty slices so a zero-length write is never mistaken for a closed socket.
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match s.try_write_vectored(slices) {
            Ok(0) => return Err(IoFailure::Closed),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                within(limit, s.writable()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // TLS: records the socket did not take yet go out before the write is done.
    if s.has_pending_output() {
        within(limit, s.writable()).await?;
    }
    Ok(())
}

/// Writes one buffer completely (see [`write_all_vectored`]).
pub async fn write_all(s: &Stream, data: &[u8], limit: Duration) -> Result<(), IoFailure> {
    write_all_vectored(s, &mut [IoSlice::new(data)], limit).await
}

/// How much [`read_head`] asks for per read.
#[derive(Debug, Clone, Copy)]
pub enum HeadRead {
    /// Up to this many more bytes each read (a request head: small, often with a
    /// small body behind it).
    Chunk(usize),
    /// Fill the buffer up to this many bytes in all, at least 1 KiB per read (a
    /// response head read into a body-sized buffer, so a small response arrives whole).
    FillTo(usize),
}

/// Why [`read_head`] ended without a head.
#[derive(Debug)]
pub enum HeadError<E> {
    /// The stream failed, timed out or closed; `got_bytes` says whether any byte of a
    /// head was in the buffer.
    Io {
        /// What happened.
        err: IoFailure,
        /// Whether a partial head had arrived.
        got_bytes: bool,
    },
    /// The head did not parse.
    Invalid(E),
}

/// How long [`read_head`] may wait.
#[derive(Debug, Clone, Copy)]
pub enum HeadTimeout {
    /// Each read may wait this long (nginx's `proxy_read_timeout`: between two reads).
    PerRead(Duration),
    /// The whole head must arrive within this time (nginx's `client_header_timeout`),
    /// so a client cannot keep a connection by sending a byte now and then.
    Whole(Duration),
}

/// The one loop that reads an HTTP head: parses what `buf` holds, and while that is
/// not a complete head, reads more. `parse` may consume bytes (interim 1xx responses);
/// it is not called on an empty buffer, and after a partial head only once the new
/// bytes hold a blank line (or the buffer reached `max`, to let it say the head is too
/// large): a head sent a byte at a time is parsed once, not once per byte.
pub async fn read_head<E>(
    s: &Stream,
    buf: &mut Buf,
    size: HeadRead,
    timeout: HeadTimeout,
    max: usize,
    mut parse: impl FnMut(&mut Buf) -> Result<Parsed, E>,
) -> Result<(), HeadError<E>> {
    let deadline = match timeout {
        HeadTimeout::Whole(d) if !d.is_zero() => Some(tokio::time::Instant::now() + d),
        _ => None,
    };
    // Bytes already known not to end a head (after a `Partial`).
    let mut scanned: Option<usize> = None;
    loop {
        let worth_parsing = match scanned {
            None => !buf.is_empty(),
            Some(from) => buf.len() >= max || ends_a_head(&buf[from.saturating_sub(3)..]),
        };
        if worth_parsing {
            match parse(buf) {
                Ok(Parsed::Complete) => return Ok(()),
                Ok(Parsed::Partial) => scanned = Some(buf.len()),
                Err(e) => return Err(HeadError::Invalid(e)),
            }
        }
        let want = match size {
            HeadRead::Chunk(n) => n,
            HeadRead::FillTo(total) => total.saturating_sub(buf.len()).max(1024),
        };
        let got_bytes = !buf.is_empty();
        let limit = match (timeout, deadline) {
            (_, Some(at)) => {
                let left = at.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(HeadError::Io {
                        err: IoFailure::Timeout,
                        got_bytes,
                    });
                }
                left
            }
            (HeadTimeout::PerRead(d) | HeadTimeout::Whole(d), None) => d,
        };
        if let Err(err) = read_some(s, buf, want, limit).await {
            return Err(HeadError::Io { err, got_bytes });
        }
    }
}

/// Whether `bytes` hold the blank line that ends a head (`\n\r\n` or `\n\n`).
fn ends_a_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n" || w == b"\n\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::io::AsyncWriteExt;

    const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";

    fn parse_counting<'c>(calls: &'c Cell<u32>) -> impl FnMut(&mut Buf) -> Result<Parsed, ()> + 'c {
        move |b: &mut Buf| {
            calls.set(calls.get() + 1);
            let mut h = crate::http1::RequestHead::new();
            h.parse(b).map_err(|_| ())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_byte_by_byte_is_parsed_once_and_timed_as_a_whole() {
        // In time: 28 bytes, one per 10 ms (virtual), under a 1 s whole-head limit.
        let (a, mut b) = tokio::net::UnixStream::pair().expect("pair");
        let writer = tokio::spawn(async move {
            for &byte in HEAD {
                b.write_all(&[byte]).await.expect("write");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            b
        });
        let s = Stream::from(a);
        let mut buf = Buf::head();
        let calls = Cell::new(0);
        let r = read_head(
            &s,
            &mut buf,
            HeadRead::Chunk(4096),
            HeadTimeout::Whole(Duration::from_secs(1)),
            crate::http1::MAX_HEAD_BYTES,
            parse_counting(&calls),
        )
        .await;
        assert!(r.is_ok());
        assert!(
            calls.get() <= 3,
            "parsed {} times for one head",
            calls.get()
        );
        let _b = writer.await.expect("join");

        // Too slow: one byte per 300 ms never finishes within 1 s, though each read
        // is far inside it.
        let (a, mut b) = tokio::net::UnixStream::pair().expect("pair");
        let writer = tokio::spawn(async move {
            for &byte in HEAD {
                if b.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let s = Stream::from(a);
        let mut buf = Buf::head();
        let started = tokio::time::Instant::now();
        let r = read_head(
            &s,
            &mut buf,
            HeadRead::Chunk(4096),
            HeadTimeout::Whole(Duration::from_secs(1)),
            crate::http1::MAX_HEAD_BYTES,
            parse_counting(&calls),
        )
        .await;
        assert!(matches!(
            r,
            Err(HeadError::Io {
                err: IoFailure::Timeout,
                got_bytes: true
            })
        ));
        assert!(started.elapsed() <= Duration::from_millis(1100));
        drop(s);
        writer.abort();
    }
}
