//! The start of a connection on a `listen ... ssl` address: the TLS handshake, whose
//! SNI name picks the `server` (and so the certificate) with nginx's precedence, an
//! unknown or missing name going to the address's default server.

use std::time::Duration;

use super::state::{TlsRole, Worker};
use super::vhost;
use crate::config::{Endpoint, Level};
use crate::net::tls::server::{accept, Accepted, HandshakeError, TlsOffer};
use crate::net::{ClientInfo, Stream, Transport};

/// A connection ready for HTTP.
pub(super) struct Started {
    /// The stream: plain, or TLS after its handshake.
    pub stream: Stream,
    /// Who the client is, and how it is carried.
    pub info: ClientInfo,
    /// Bytes already read from a plain HTTP client on a TLS address.
    pub first: Option<Vec<u8>>,
}

/// Whether a connection to `listen` starts with its first request: no TLS handshake
/// and no PROXY protocol header to read first ([`begin`]).
pub(super) fn is_plain(worker: &Worker, listen: &Endpoint, info: &ClientInfo) -> bool {
    let rt = worker.shared.runtime.load();
    !rt.tls_addrs.contains(listen)
        && !vhost::proxy_protocol_on(&rt.config.http.servers, &info.local)
}

/// Runs the handshake when `listen` is a TLS address; `None` when the connection ends
/// in it (logged at `info`, as nginx logs failed handshakes).
pub(super) async fn begin(
    worker: &Worker,
    listen: &Endpoint,
    stream: Stream,
    mut info: ClientInfo,
) -> Option<Started> {
    let rt = worker.shared.runtime.load_full();
    let servers = &rt.config.http.servers;
    // nginx bounds the handshake (and a PROXY protocol header) by the default server's
    // client_header_timeout.
    let limit = vhost::find_server(servers, &info.local, None)
        .map_or(Duration::from_secs(60), |i| {
            servers[i].settings.client_header_timeout
        });
    // A PROXY protocol header comes first; bytes behind it are the first request's,
    // or on a TLS address the start of the handshake.
    let first = if vhost::proxy_protocol_on(servers, &info.local) {
        let rest = super::admission::read_proxy_header(&stream, &mut info, limit).await?;
        Some(rest.to_vec())
    } else {
        None
    };
    if !rt.tls_addrs.contains(listen) {
        return Some(Started {
            stream,
            info,
            first,
        });
    }
    let role = |i: Option<usize>| i.and_then(|i| rt.tls_offers.get(i));
    let pick = |sni: Option<&str>| {
        let chosen = role(vhost::find_server(servers, &info.local, sni));
        // A server without TLS settings of its own runs the handshake with the
        // default server's, as nginx keeps the default server's SSL context then.
        let chosen = match chosen {
            Some(TlsRole::None) | None => role(vhost::find_server(servers, &info.local, None)),
            other => other,
        };
        match chosen {
            Some(TlsRole::Serve(offer)) => Some(offer.clone()),
            Some(TlsRole::Reject) => None,
            Some(TlsRole::None) | None => Some(TlsOffer::refuse()),
        }
    };
    // A stop ends handshakes in progress: a client that connects and sends nothing
    // must not hold a graceful stop for the whole timeout.
    // Boxed: the handshake's state is large, and a plain connection's task must not
    // carry room for it while it idles.
    let handshake = tokio::time::timeout(
        limit,
        Box::pin(accept(stream, first.unwrap_or_default(), pick)),
    );
    let outcome = tokio::select! {
        r = handshake => r,
        // `stopping` also sees a stop sent before this connection was accepted (a fresh
        // `watch` receiver would wait for a further change: a 60 s handshake wait).
        () = worker.shared.stopping() => return None,
    };
    let why = match outcome {
        Ok(Ok(Accepted::Tls(stream))) => {
            let facts = stream.tls_facts().cloned()?;
            info.transport = Transport::Tls(facts);
            return Some(Started {
                stream,
                info,
                first: None,
            });
        }
        Ok(Ok(Accepted::Plain { stream, first })) => {
            info.transport = Transport::PlainOnTlsPort;
            return Some(Started {
                stream,
                info,
                first: Some(first),
            });
        }
        Ok(Err(HandshakeError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "peer closed connection in SSL handshake".to_owned()
        }
        Ok(Err(HandshakeError::Rejected)) => return None,
        Ok(Err(e)) => format!("SSL_do_handshake() failed ({e})"),
        Err(_) => "client timed out (110: Connection timed out)".to_owned(),
    };
    crate::log::emit(
        Level::Info,
        Some(info.id),
        format_args!(
            "{why} while SSL handshaking, client: {}, server: {}",
            info.remote, info.local
        ),
    );
    None
}
