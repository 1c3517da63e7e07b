//! A connected byte stream over any transport ferrolb speaks: TCP or a Unix socket
//! (`server unix:/run/app.sock;`, `listen unix:/run/ferrolb.sock;`), or TLS over
//! either (`listen 443 ssl`, `proxy_pass https://`).
//!
//! The proxy's I/O ([`super::io`]) tries a non-blocking call first and waits for
//! readiness only when it has to, so a transport here offers exactly that:
//! `try_read_buf` / `try_write_vectored` plus `readable` / `writable`. An enum rather
//! than a trait object: two variants cost one predictable branch per call, no
//! allocation, and the connection task stays small.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::pipe::PipeEnd;
use super::tls::{TlsFacts, TlsStream};
use crate::config::Endpoint;

/// A connected stream: TCP or a Unix socket, or TLS over one of them.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (`TCP_NODELAY` set by ferrolb where it connects or accepts).
    Tcp(TcpStream),
    /// A Unix stream socket.
    Unix(UnixStream),
    /// TLS over a TCP or Unix stream (boxed: the connection state is large and the
    /// plain variants are the common case).
    Tls(Box<TlsStream>),
    /// An in-memory stream: an HTTP/2 stream as the HTTP/1 pipeline sees it.
    Pipe(Box<PipeEnd>),
}

/// Calls the same method on whichever transport `$s` is; `$tls` for TLS.
macro_rules! each {
    ($s:expr, $inner:ident => $e:expr, $t:ident => $tls:expr) => {
        match $s {
            Stream::Tcp($inner) => $e,
            Stream::Unix($inner) => $e,
            Stream::Tls($t) => $tls,
            Stream::Pipe($inner) => $e,
        }
    };
}

impl Stream {
    /// Connects to a peer (no timeout here: the caller bounds it).
    pub async fn connect(addr: &Endpoint) -> io::Result<Stream> {
        Stream::connect_from(addr, None).await
    }

    /// [`Stream::connect`] from the local address `local` (`proxy_bind`; ignored for
    /// a Unix socket). A port of 0 leaves the port to the system at connect time
    /// (`IP_BIND_ADDRESS_NO_PORT`, as nginx), so many connections can share the
    /// address.
    pub async fn connect_from(
        addr: &Endpoint,
        local: Option<std::net::SocketAddr>,
    ) -> io::Result<Stream> {
        match addr {
            Endpoint::Inet(a) => {
                let s = match local {
                    None => TcpStream::connect(a).await?,
                    Some(local) => {
                        let socket = if a.is_ipv4() {
                            tokio::net::TcpSocket::new_v4()?
                        } else {
                            tokio::net::TcpSocket::new_v6()?
                        };
                        if local.port() == 0 {
                            use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
                            // Best effort: without it the port is merely taken earlier.
                            let _ = setsockopt(&socket, IpBindAddressNoPort, &true);
                        } else {
                            socket.set_reuseaddr(true)?;
                        }
                        socket.bind(local)?;
                        socket.connect(*a).await?
                    }
                };
                // Requests and responses are written whole; Nagle would only delay them.
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        }
    }

    /// Reads what is available now into `buf`'s spare capacity, without waiting;
    /// `WouldBlock` when nothing is.
    #[inline]
    pub fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        each!(self, s => s.try_read_buf(buf), t => t.try_read_buf(buf))
    }

    /// Reads what is available now into `buf`, without waiting.
    #[inline]
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, s => s.try_read(buf), t => t.try_read(buf))
    }

    /// Writes what the socket takes now, without waiting.
    #[inline]
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(self, s => s.try_write_vectored(bufs), t => t.try_write_vectored(bufs))
    }

    /// Whether bytes accepted by a write still wait to go out (TLS records the socket
    /// did not take yet); [`super::io`] flushes them before a write counts as done.
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        match self {
            Stream::Tls(t) => t.has_pending_output(),
            _ => false,
        }
    }

    /// What the TLS handshake agreed on; `None` for a plain stream.
    pub fn tls_facts(&self) -> Option<&std::sync::Arc<TlsFacts>> {
        match self {
            Stream::Tls(t) => Some(t.facts()),
            _ => None,
        }
    }

    /// Ends a TLS session with close_notify (best effort, without waiting); nothing
    /// for a plain stream.
    pub fn close_notify(&self) {
        if let Stream::Tls(t) = self {
            t.close_notify();
        }
    }

    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read_ready(cx), t => t.raw().poll_read_ready(cx))
    }

    /// [`Stream::readable`] as a poll: no future to keep, so a task that waits with it
    /// (an idle keep-alive connection) stays small. Only the last task to poll is woken.
    #[inline]
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read_ready(cx), t => t.poll_readable(cx))
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_write_ready(cx), t => t.raw().poll_write_ready(cx))
    }

    /// Waits until the stream is readable (possibly spuriously).
    #[inline]
    pub async fn readable(&self) -> io::Result<()> {
        each!(self, s => s.readable().await, t => t.readable().await)
    }

    /// Resolves when the peer has closed its side of the connection (or reset it);
    /// stays pending if it sent bytes instead (they belong to its next request) and on
    /// an in-memory stream. nginx's check for a client gone while the upstream works.
    pub async fn peer_closed(&self) {
        let socket = match self {
            Stream::Tls(t) => t.raw(),
            other => other,
        };
        let ready = match socket {
            Stream::Tcp(s) => s.ready(Interest::READABLE).await,
            Stream::Unix(s) => s.ready(Interest::READABLE).await,
            Stream::Tls(_) | Stream::Pipe(_) => return std::future::pending().await,
        };
        // Read-closed is the socket's end of input (the kernel's RDHUP), even behind
        // unread bytes; plain readability is a next request arriving.
        if !ready.is_ok_and(|r| !r.is_read_closed()) {
            return;
        }
        std::future::pending().await
    }

    /// Waits until the stream is writable (possibly spuriously).
    #[inline]
    pub async fn writable(&self) -> io::Result<()> {
        each!(self, s => s.writable().await, t => t.writable().await)
    }

    /// Clears the read readiness tokio remembers for this socket (see
    /// [`super::io::drained`]).
    #[inline]
    pub fn forget_readable(&self) {
        let would_block = || Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock));
        // Not for TLS: a read that returned less than asked may have left ciphertext
        // in the socket (one record at a time), and forgetting it would stall.
        let _ = match self {
            Stream::Tcp(s) => s.try_io(Interest::READABLE, would_block),
            Stream::Unix(s) => s.try_io(Interest::READABLE, would_block),
            Stream::Tls(_) | Stream::Pipe(_) => Ok(()),
        };
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

/// For byte-for-byte tunnels (`Upgrade`), which use tokio's copy helpers.
impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Pipe(p) => loop {
                match p.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(p.poll_read_ready(cx))?;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            // Into the caller's buffer directly (HTTP/2 connections read through here):
            // no buffer of its own per read.
            Stream::Tls(t) => loop {
                let want = buf.remaining().min(16 * 1024);
                match t.try_read(buf.initialize_unfilled_to(want)) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(t.raw().poll_read_ready(cx))?;
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(this.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.has_pending_output() {
            match this.try_write_vectored(&[]) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(this.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Stream::Tls(t) = &*self {
            t.close_notify();
        }
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Pipe(p) => {
                p.close_write();
                Poll::Ready(Ok(()))
            }
            Stream::Tls(t) => match &mut t.raw {
                Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
                Stream::Pipe(p) => {
                    p.close_write();
                    Poll::Ready(Ok(()))
                }
                Stream::Tls(_) => Poll::Ready(Ok(())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unix_and_tcp_carry_bytes_both_ways() {
        let dir = std::env::temp_dir().join(format!("ferrolb-stream-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let ul = tokio::net::UnixListener::bind(&path).expect("bind unix");
        let tl = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp");
        let taddr = tl.local_addr().expect("addr");
        for addr in [Endpoint::Unix(path.clone()), Endpoint::Inet(taddr)] {
            let mut client = Stream::connect(&addr).await.expect("connect");
            let mut server: Stream = match addr {
                Endpoint::Unix(_) => ul.accept().await.expect("accept").0.into(),
                Endpoint::Inet(_) => tl.accept().await.expect("accept").0.into(),
            };
            client.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"ping");
            server.writable().await.expect("writable");
            assert_eq!(
                server
                    .try_write_vectored(&[IoSlice::new(b"po"), IoSlice::new(b"ng")])
                    .expect("try_write"),
                4
            );
            client.readable().await.expect("readable");
            let mut buf = Vec::with_capacity(16);
            let mut n = 0;
            while n < 4 {
                match client.try_read_buf(&mut buf) {
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        client.readable().await.expect("readable")
                    }
                    Err(e) => panic!("read: {e}"),
                }
            }
            assert_eq!(&buf, b"pong");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
