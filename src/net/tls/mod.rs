//! TLS as a transport: a [`TlsStream`] carries the same try-first reads and writes as
//! TCP and Unix sockets do (see [`super::Stream`]), so the HTTP front end and the proxy
//! never know whether bytes are encrypted.
//!
//! rustls is driven directly rather than through tokio-rustls: the proxy's I/O asks a
//! stream to read or write *now* and waits for readiness only on `WouldBlock`, which
//! maps one to one on rustls's buffered `read_tls`/`write_tls` over the socket's own
//! `try_read`/`try_write`, with no waker juggling. Ciphertext rustls could not hand to
//! the socket yet stays queued in the connection; [`super::io`] flushes it after each
//! complete write.
//!
//! * [`server`]: the server side: rustls configurations built from `ssl_*`
//!   ([`crate::config::tls::ServerTls`]), the SNI handshake, client certificates.
//! * [`client`]: the client side for `proxy_pass https://`.

pub mod client;
pub mod client_cert;
pub mod server;
#[cfg(test)]
mod tests;

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BufMut;
use rustls::Connection;

use super::Stream;

/// What a TLS connection agreed on, for `$ssl_*` variables and logs.
#[derive(Debug, Clone, Default)]
pub struct TlsFacts {
    /// `$ssl_protocol`: `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// `$ssl_cipher`: the suite's OpenSSL name (`TLS_AES_256_GCM_SHA384`,
    /// `ECDHE-RSA-AES128-GCM-SHA256`).
    pub cipher: &'static str,
    /// `$ssl_server_name`: the SNI name the client sent.
    pub server_name: Option<String>,
    /// `$ssl_client_verify`: `NONE`, `SUCCESS` or `FAILED:reason`.
    pub client_verify: String,
    /// `$ssl_session_reused`: the handshake resumed a session.
    pub reused: bool,
    /// `$ssl_session_id`: the session's identity (server side): 32 random bytes made
    /// at the full handshake and kept in the session's resumption data (session cache
    /// and tickets alike), so a resumed connection shows the same id. rustls does not
    /// expose the wire session ID (TLS 1.3 has none of its own). Empty on the client side.
    pub session_id: Vec<u8>,
    /// `$ssl_ciphers`: the suites the client offered (server side).
    pub ciphers: String,
    /// The ALPN protocol agreed (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
    /// `$ssl_curve`: the key exchange group agreed (`X25519`, `prime256v1`).
    pub curve: String,
    /// `$ssl_curves`: the groups the client offered, `:`-separated (server side).
    pub curves: String,
    /// The certificate the client presented, if any (`$ssl_client_s_dn`, ...).
    pub client_cert: Option<Box<client_cert::ClientCert>>,
}

impl TlsFacts {
    fn of(conn: &Connection) -> TlsFacts {
        let protocol = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        TlsFacts {
            protocol,
            cipher: conn
                .negotiated_cipher_suite()
                .map_or("", |s| crate::config::tls::openssl_name(s.suite())),
            server_name: match conn {
                Connection::Server(s) => s.server_name().map(str::to_owned),
                Connection::Client(_) => None,
            },
            client_verify: "NONE".to_owned(),
            reused: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            session_id: Vec::new(),
            ciphers: String::new(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            curve: conn
                .negotiated_key_exchange_group()
                .map(|g| crate::config::tls::openssl_group_name(g.name()))
                .unwrap_or_default(),
            curves: String::new(),
            client_cert: match conn {
                Connection::Server(s) => s
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| client_cert::ClientCert::of(c))
                    .map(Box::new),
                Connection::Client(_) => None,
            },
        }
    }
}

/// A TLS connection over a TCP or Unix stream.
#[derive(Debug)]
pub struct TlsStream {
    pub(in crate::net) raw: Stream,
    /// Locked only inside one non-blocking call, never across an await (the stream's
    /// methods take `&self`, as the socket's do).
    conn: Mutex<Connection>,
    facts: Arc<TlsFacts>,
}

/// The raw socket as `io::Read`/`io::Write` for rustls, never blocking.
struct Raw<'a>(&'a Stream);

impl Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Raw<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    fn new(raw: Stream, conn: Connection, facts: TlsFacts) -> TlsStream {
        TlsStream {
            raw,
            conn: Mutex::new(conn),
            facts: Arc::new(facts),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while locked cannot leave the connection half-updated in a way that
        // matters more than the panic itself: take the state as it is.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the handshake agreed on.
    pub fn facts(&self) -> &Arc<TlsFacts> {
        &self.facts
    }

    /// Writes queued ciphertext until the socket would block; `Ok(true)` when none is
    /// left.
    fn push_out(&self, conn: &mut Connection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut Raw(&self.raw)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads decrypted bytes available now into `buf`; `WouldBlock` when there are none
    /// yet, `Ok(0)` at the end of the stream.
    pub fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        let mut conn = self.lock();
        loop {
            let mut reader = conn.reader();
            match reader.fill_buf() {
                Ok([]) => return Ok(0),
                Ok(data) => {
                    let n = data.len().min(buf.remaining_mut());
                    buf.put_slice(&data[..n]);
                    reader.consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A peer that closes without close_notify: an end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match conn.read_tls(&mut Raw(&self.raw)) {
                Ok(0) => {
                    // EOF: let rustls see it, then the reader says clean or not.
                    conn.process_new_packets().map_err(tls_error)?;
                    continue;
                }
                Ok(_) => {
                    let processed = conn.process_new_packets();
                    // Alerts, tickets, key updates: out now if the socket takes them.
                    let _ = self.push_out(&mut conn);
                    processed.map_err(tls_error)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`TlsStream::try_read_buf`] into a slice.
    pub fn try_read(&self, mut buf: &mut [u8]) -> io::Result<usize> {
        self.try_read_buf(&mut buf)
    }

    /// Encrypts what fits into rustls's buffer and writes what the socket takes now.
    /// Accepts nothing (`WouldBlock`) while older ciphertext is still queued, so memory
    /// stays bounded by one buffer.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut conn = self.lock();
        if !self.push_out(&mut conn)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = conn.writer().write_vectored(bufs)?;
        self.push_out(&mut conn)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Whether ciphertext is queued for the socket.
    pub fn has_pending_output(&self) -> bool {
        self.lock().wants_write()
    }

    /// Whether decrypted bytes wait to be read (so a wait for the socket would be wrong).
    fn has_plaintext(&self) -> bool {
        let mut conn = self.lock();
        let mut reader = conn.reader();
        match reader.fill_buf() {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Waits until a read can make progress.
    pub async fn readable(&self) -> io::Result<()> {
        if self.has_plaintext() {
            return Ok(());
        }
        raw_readable(&self.raw).await
    }

    /// [`TlsStream::readable`] as a poll (see [`Stream::poll_readable`]).
    pub fn poll_readable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if self.has_plaintext() {
            return std::task::Poll::Ready(Ok(()));
        }
        self.raw.poll_read_ready(cx)
    }

    /// Waits until a write can make progress: queued ciphertext is pushed out first.
    pub async fn writable(&self) -> io::Result<()> {
        loop {
            {
                let mut conn = self.lock();
                if self.push_out(&mut conn)? {
                    return Ok(());
                }
            }
            raw_writable(&self.raw).await?;
        }
    }

    /// The underlying socket.
    pub fn raw(&self) -> &Stream {
        &self.raw
    }

    /// Queues a close_notify and writes it if the socket takes it now.
    pub fn close_notify(&self) {
        let mut conn = self.lock();
        conn.send_close_notify();
        let _ = self.push_out(&mut conn);
    }
}

/// Drives a handshake over `raw` to its end: reads, processes, writes, waiting for
/// readiness as needed (the caller bounds the time).
async fn complete_handshake(raw: &Stream, conn: &mut Connection) -> io::Result<()> {
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut Raw(raw)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => raw_writable(raw).await?,
                Err(e) => return Err(e),
            }
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        match conn.read_tls(&mut Raw(raw)) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // The alert rustls queued tells the peer why.
                    let _ = conn.write_tls(&mut Raw(raw));
                    return Err(tls_error(e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => raw_readable(raw).await?,
            Err(e) => return Err(e),
        }
    }
}

/// Readiness of the socket under TLS (never TLS itself: no TLS in TLS here).
async fn raw_readable(raw: &Stream) -> io::Result<()> {
    match raw {
        Stream::Tcp(s) => s.readable().await,
        Stream::Unix(s) => s.readable().await,
        Stream::Tls(_) | Stream::Pipe(_) => Err(io::ErrorKind::Unsupported.into()),
    }
}

async fn raw_writable(raw: &Stream) -> io::Result<()> {
    match raw {
        Stream::Tcp(s) => s.writable().await,
        Stream::Unix(s) => s.writable().await,
        Stream::Tls(_) | Stream::Pipe(_) => Err(io::ErrorKind::Unsupported.into()),
    }
}
