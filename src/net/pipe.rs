//! An in-memory, bounded, two-way byte stream: how an HTTP/2 stream reaches the HTTP/1
//! request pipeline for a local answer (a proxied one talks to the stream directly).
//! The HTTP/2 front end writes the request's DATA into one end once the pipeline reads
//! there, the pipeline reads it from the other as from a socket and writes its HTTP/1
//! response back, which the front end turns into HEADERS and DATA frames.
//!
//! Each direction holds at most `capacity` bytes: a writer finding it full waits as on
//! a full socket (its `send_timeout` applies), so the memory a stream holds here is
//! bounded whatever the peer does. Both ends live on one worker thread; the lock is
//! never contended.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf as _, BufMut, BytesMut};

/// One direction of a pipe.
#[derive(Debug)]
struct Lane {
    state: Mutex<LaneState>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct LaneState {
    bytes: BytesMut,
    /// The writer closed: the reader sees EOF once `bytes` is drained.
    write_closed: bool,
    /// The reader went away: writes fail with `BrokenPipe`.
    read_closed: bool,
    /// The task waiting for bytes (one reader per end).
    reader: Option<Waker>,
    /// The task waiting for room (one writer per end).
    writer: Option<Waker>,
    /// The reader has asked for bytes at least once.
    read_asked: bool,
    /// The task waiting for the reader's first ask ([`PipeEnd::read_asked`]).
    asked_waiter: Option<Waker>,
}

impl Lane {
    fn new(capacity: usize) -> Arc<Lane> {
        Arc::new(Lane {
            state: Mutex::new(LaneState::default()),
            capacity,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        // A panic while holding it leaves plain bytes behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LaneState {
    /// Notes that the reader asked for bytes.
    fn ask(&mut self) {
        if !self.read_asked {
            self.read_asked = true;
            wake(&mut self.asked_waiter);
        }
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// One end of a pipe: reads what the other end writes and the other way round.
#[derive(Debug)]
pub struct PipeEnd {
    rx: Arc<Lane>,
    tx: Arc<Lane>,
}

/// A connected pair of ends, each direction holding at most `capacity` bytes.
pub fn pipe(capacity: usize) -> (PipeEnd, PipeEnd) {
    let (a, b) = (Lane::new(capacity), Lane::new(capacity));
    (
        PipeEnd {
            rx: a.clone(),
            tx: b.clone(),
        },
        PipeEnd { rx: b, tx: a },
    )
}

impl PipeEnd {
    /// Reads what is there into `buf`, without waiting: `Ok(0)` at the end (the other
    /// end closed its writing side), `WouldBlock` when nothing is there yet.
    pub fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let mut st = self.rx.lock();
        st.ask();
        if st.bytes.is_empty() {
            return if st.write_closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = st.bytes.len().min(buf.remaining_mut());
        buf.put_slice(&st.bytes[..n]);
        st.bytes.advance(n);
        if n > 0 {
            wake(&mut st.writer);
        }
        Ok(n)
    }

    /// Reads what is there into `buf`, without waiting (see [`PipeEnd::try_read_buf`]).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut b = buf;
        self.try_read_buf(&mut b)
    }

    /// Writes what fits now: `WouldBlock` when the lane is full, `BrokenPipe` when the
    /// other end is gone.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut st = self.tx.lock();
        if st.read_closed || st.write_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let room = self.tx.capacity.saturating_sub(st.bytes.len());
        let wanted: usize = bufs.iter().map(|b| b.len()).sum();
        if room == 0 && wanted > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            st.bytes.extend_from_slice(&b[..take]);
            n += take;
            if n == room {
                break;
            }
        }
        if n > 0 {
            wake(&mut st.reader);
        }
        Ok(n)
    }

    /// Writes all of `data`, waiting for room as long as it takes; `BrokenPipe` when
    /// the other end is gone.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write_vectored(&[IoSlice::new(data)]) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the other end first asks for bytes (reads, or waits to read), or is
    /// gone: a writer that must not start before it is wanted (the HTTP/2 front end
    /// takes a request body only if the pipeline reads it here).
    pub async fn read_asked(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.tx.lock();
            if st.read_asked || st.read_closed {
                return Poll::Ready(());
            }
            st.asked_waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// Bytes waiting to be read at this end.
    pub fn pending(&self) -> usize {
        self.rx.lock().bytes.len()
    }

    /// Closes the writing side: the other end reads to the end of what was written,
    /// then sees EOF.
    pub fn close_write(&self) {
        let mut st = self.tx.lock();
        st.write_closed = true;
        wake(&mut st.reader);
    }

    /// Waits until a read would not block (bytes, or the end).
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Waits until a write would not block (room, or the other end gone).
    pub async fn writable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    /// Ready when a read would not block; else the task is woken when it would.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.rx.lock();
        st.ask();
        if !st.bytes.is_empty() || st.write_closed {
            return Poll::Ready(Ok(()));
        }
        st.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready when a write would not block; else the task is woken when it would.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.tx.lock();
        if st.read_closed || st.write_closed || st.bytes.len() < self.tx.capacity {
            return Poll::Ready(Ok(()));
        }
        st.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        self.close_write();
        let mut st = self.rx.lock();
        st.read_closed = true;
        st.bytes = BytesMut::new();
        wake(&mut st.writer);
        wake(&mut st.asked_waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_cross_and_capacity_bounds_a_lane() {
        let (a, b) = pipe(4);
        assert_eq!(a.try_write_vectored(&[IoSlice::new(b"hello")]).unwrap(), 4);
        let e = a.try_write_vectored(&[IoSlice::new(b"o")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let mut out = Vec::new();
        b.readable().await.unwrap();
        assert_eq!(b.try_read_buf(&mut out).unwrap(), 4);
        assert_eq!(out, b"hell");
        a.close_write();
        assert_eq!(b.try_read_buf(&mut out).unwrap(), 0);
        drop(b);
        let e = a.try_write_vectored(&[IoSlice::new(b"x")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn a_waiting_writer_goes_on_when_the_reader_reads() {
        let (a, b) = pipe(2);
        let writer = tokio::spawn(async move { a.write_all(b"abcdef").await });
        let mut got = Vec::new();
        while got.len() < 6 {
            b.readable().await.unwrap();
            let _ = b.try_read_buf(&mut got);
        }
        writer.await.unwrap().unwrap();
        assert_eq!(got, b"abcdef");
    }
}
