//! The client side of TLS, for `proxy_pass https://`: the handshake over a freshly
//! connected upstream socket, with the location's rustls configuration (whose session
//! cache lets later connections to the same upstream resume).

use std::io;

use rustls::{ClientConnection, Connection};

use super::{complete_handshake, TlsFacts, TlsStream};
use crate::config::tls::UpstreamTls;
use crate::net::Stream;

/// Runs the handshake on `raw` as `tls` says; the caller bounds the time (nginx's
/// `proxy_connect_timeout` covers connect and handshake).
pub async fn connect(raw: Stream, tls: &UpstreamTls) -> io::Result<Stream> {
    connect_with(raw, tls, tls.config.clone()).await
}

/// [`connect`] with `config` in place of `tls.config` (the request's client
/// certificate, when its paths hold variables).
pub async fn connect_with(
    raw: Stream,
    tls: &UpstreamTls,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> io::Result<Stream> {
    let conn = ClientConnection::new(config, tls.name.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut conn = Connection::Client(conn);
    complete_handshake(&raw, &mut conn).await?;
    let facts = TlsFacts::of(&conn);
    Ok(Stream::Tls(Box::new(TlsStream::new(raw, conn, facts))))
}
