//! Listening sockets. A TCP address gets one socket per worker thread, joined by
//! `SO_REUSEPORT` so the kernel spreads new connections over the threads without a
//! shared accept lock. A Unix socket path can be bound once only: every worker gets a
//! duplicate of that one socket and they accept from it in turn.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::Path;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Endpoint;

/// nginx's default `listen ... backlog=` on Linux.
const BACKLOG: i32 = 511;

/// A bound, non-blocking listening socket, not yet registered with a runtime.
#[derive(Debug)]
pub enum Listener {
    /// `listen ADDR:PORT`.
    Tcp(std::net::TcpListener),
    /// `listen unix:/path`.
    Unix(UnixListener),
}

/// Binds `addr` for `workers` worker threads: one socket each for TCP, one shared
/// socket (duplicated) for a Unix path. A Unix path that exists already is an error
/// (`Address already in use`), as in nginx: ferrolb never deletes a file it did not
/// create.
pub fn bind_for_workers(addr: &Endpoint, workers: usize) -> io::Result<Vec<Listener>> {
    match addr {
        Endpoint::Inet(a) => (0..workers)
            .map(|_| bind_tcp(*a).map(Listener::Tcp))
            .collect(),
        Endpoint::Unix(path) => {
            let first = bind_unix(path)?;
            let mut all = Vec::with_capacity(workers);
            for _ in 1..workers {
                all.push(Listener::Unix(first.try_clone()?));
            }
            all.push(Listener::Unix(first));
            Ok(all)
        }
    }
}

/// Removes the socket file of a Unix listener ferrolb bound (at exit, or when a reload
/// drops it), so the next start can bind the path again.
pub fn release(addr: &Endpoint) {
    if let Endpoint::Unix(path) = addr {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds a non-blocking TCP listener with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
