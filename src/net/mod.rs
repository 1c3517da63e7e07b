//! The transport layer: what carries HTTP bytes between ferrolb and its peers, below
//! any knowledge of upstream groups or locations.
//!
//! * [`buffers`]: per-thread free lists of I/O buffers and recycled parsed heads.
//! * [`io`]: socket reads and writes that try first and arm a timeout only when they
//!   have to wait, with nginx's error wording.
//! * [`resolver`]: DNS lookups at request time (nginx's `resolver`).
//! * [`ClientInfo`]: who a client connection is.

pub mod buffers;
pub mod io;
pub mod pace;
pub mod pipe;
pub mod proxy_protocol;
pub mod resolver;
mod stream;
pub mod tls;

pub use stream::Stream;

use std::net::{IpAddr, SocketAddr};

use crate::config::Endpoint;

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Connection number, nginx's `*N` in the error log.
    pub id: u64,
    /// The client's address (`$remote_addr`): the connection's peer, or the address a
    /// trusted proxy reported for this request (`set_real_ip_from`).
    pub remote: ClientAddr,
    /// The connection's peer (`$realip_remote_addr`), whatever `remote` says.
    pub peer: ClientAddr,
    /// The addresses of the connection's PROXY protocol header, when it had one.
    pub proxy_protocol: Option<std::sync::Arc<proxy_protocol::ProxyAddrs>>,
    /// The listening address it connected to: the local IP address and port, or the
    /// Unix socket path of a `listen unix:`.
    pub local: Endpoint,
    /// How the connection is carried: plain, TLS (with what the handshake agreed), or
    /// plain HTTP sent to a TLS port.
    pub transport: Transport,
    /// The requests come over HTTP/2 (`$http2`, see [`ClientInfo::http2_name`]). A
    /// flag, not the name: every idle connection holds this struct.
    pub http2: bool,
}

/// How a client connection is carried.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain TCP or Unix socket.
    #[default]
    Plain,
    /// TLS (`$https` is `on`, `$scheme` `https`).
    Tls(std::sync::Arc<tls::TlsFacts>),
    /// A plain HTTP request arrived on a `listen ... ssl` address: answered with
    /// nginx's 400 "The plain HTTP request was sent to HTTPS port".
    PlainOnTlsPort,
}

impl ClientInfo {
    /// `$http2`: `"h2"` over TLS, `"h2c"` in the clear; `None` for HTTP/1.
    pub fn http2_name(&self) -> Option<&'static str> {
        match (self.http2, &self.transport) {
            (false, _) => None,
            (true, Transport::Tls(_)) => Some("h2"),
            (true, _) => Some("h2c"),
        }
    }

    /// The TLS facts of the connection, if it is TLS.
    pub fn tls(&self) -> Option<&tls::TlsFacts> {
        match &self.transport {
            Transport::Tls(f) => Some(f),
            _ => None,
        }
    }
}

impl ClientInfo {
    /// A connection from `remote` on `local`, before any PROXY header or trusted
    /// proxy says otherwise.
    pub fn new(id: u64, remote: ClientAddr, local: Endpoint) -> ClientInfo {
        ClientInfo {
            id,
            remote,
            peer: remote,
            proxy_protocol: None,
            local,
            transport: Transport::Plain,
            http2: false,
        }
    }
}

/// Where a client connects from: an IP address and port, or a Unix socket, which has
/// no address of its own (nginx's `$remote_addr` is then `unix:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    /// A TCP client.
    Inet(SocketAddr),
    /// A client on a Unix socket.
    Unix,
}

impl ClientAddr {
    /// The client's IP address; `None` on a Unix socket.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Inet(a) => Some(a.ip()),
            ClientAddr::Unix => None,
        }
    }

    /// The client's port; `None` on a Unix socket, and for an address a proxy
    /// reported without a port (nginx's port 0, an empty `$remote_port`).
    pub fn port(&self) -> Option<u16> {
        match self {
            ClientAddr::Inet(a) if a.port() != 0 => Some(a.port()),
            _ => None,
        }
    }
}

impl ClientAddr {
    /// Appends `$remote_addr` (see the `Display` form) without the formatting
    /// machinery: it is on every access log line and in `X-Forwarded-For`.
    pub fn push_to(&self, out: &mut Vec<u8>) {
        match self {
            ClientAddr::Inet(std::net::SocketAddr::V4(a)) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in a.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(digits.format(octet).as_bytes());
                }
            }
            other => {
                use std::io::Write as _;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{other}");
            }
        }
    }
}

/// `$remote_addr` as nginx prints it: the IP address, or `unix:`.
impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Inet(a) => write!(f, "{}", a.ip()),
            ClientAddr::Unix => f.write_str("unix:"),
        }
    }
}
