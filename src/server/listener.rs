//! Listening sockets: one per worker thread and address, joined by `SO_REUSEPORT` so the
//! kernel spreads new connections over the threads without a shared accept lock.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// nginx's default `listen ... backlog=` on Linux.
const BACKLOG: i32 = 511;

/// Binds a non-blocking listener with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // As nginx: `listen [::]:80` is IPv6 only unless `ipv6only=off`.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
