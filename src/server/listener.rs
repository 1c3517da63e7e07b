//! Listening sockets. A TCP address gets one socket per worker thread, joined by
//! `SO_REUSEPORT` so the kernel spreads new connections over the threads without a
//! shared accept lock. A Unix socket path can be bound once only: every worker gets a
//! duplicate of that one socket and they accept from it in turn.
//!
//! `SO_REUSEPORT` would also let a second ferrolb (of the same user) bind an address
//! this one serves, without an error, and the kernel would split the connections
//! between the two. So before the worker sockets are bound, a probe socket without
//! `SO_REUSEPORT` is bound to the address: it fails with `EADDRINUSE` when anyone
//! listens there, and the start fails with nginx's `Address already in use` unless
//! `/proc` shows that every listener there is this very process (a reload adding an
//! address that overlaps one it serves, e.g. `127.0.0.1:80` next to `*:80`).
//!
//! The socket options of `listen` (backlog, buffers, keepalive, deferred accept,
//! fast open, `ipv6only`) are set on every worker's socket, as nginx sets them on
//! its listening socket; accepted connections inherit them from it.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::Path;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::config::{Endpoint, SoKeepalive, SocketOptions};

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
pub fn bind_for_workers(
    addr: &Endpoint,
    opts: &SocketOptions,
    workers: usize,
) -> io::Result<Vec<Listener>> {
    match addr {
        Endpoint::Inet(a) => {
            refuse_if_held_elsewhere(*a, opts)?;
            (0..workers)
                .map(|_| bind_tcp_with(*a, opts).map(Listener::Tcp))
                .collect()
        }
        Endpoint::Unix(path) => {
            let first = bind_unix(path, opts)?;
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

/// Fails with `EADDRINUSE` when another process listens on `addr` (see the module
/// doc). The probe sets `SO_REUSEADDR` as the real sockets do, so connections of an
/// earlier run still in `TIME_WAIT` do not count. Between the probe and the real bind
/// another process could still take the address: a window of microseconds, against
/// the silent sharing it closes.
fn refuse_if_held_elsewhere(addr: SocketAddr, opts: &SocketOptions) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(opts.ipv6only)?;
    }
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EADDRINUSE as i32) => {
            if super::holders::of(&Endpoint::Inet(addr)).only_this_process() {
                Ok(())
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// Binds a non-blocking TCP listener with `SO_REUSEADDR`, `SO_REUSEPORT` and
/// nginx's default options. It does not check for other processes on `addr`:
/// [`bind_for_workers`] does.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    bind_tcp_with(addr, &SocketOptions::default())
}

fn bind_tcp_with(addr: SocketAddr, opts: &SocketOptions) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // As nginx: `listen [::]:80` is IPv6 only unless `ipv6only=off`.
        socket.set_only_v6(opts.ipv6only)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    set_buffers(&socket, opts)?;
    match opts.keepalive {
        None => {}
        Some(SoKeepalive::Off) => socket.set_keepalive(false)?,
        Some(SoKeepalive::On {
            idle,
            interval,
            count,
        }) => {
            socket.set_keepalive(true)?;
            let mut k = TcpKeepalive::new();
            if let Some(s) = idle {
                k = k.with_time(std::time::Duration::from_secs(s.into()));
            }
            if let Some(s) = interval {
                k = k.with_interval(std::time::Duration::from_secs(s.into()));
            }
            if let Some(n) = count {
                k = k.with_retries(n);
            }
            if idle.is_some() || interval.is_some() || count.is_some() {
                socket.set_tcp_keepalive(&k)?;
            }
        }
    }
    if let Some(qlen) = opts.fastopen {
        tcp_int_option(&socket, nix::libc::TCP_FASTOPEN, qlen)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    if opts.deferred {
        // As nginx: 1 second, the shortest; the kernel counts it in SYN-ACK retries.
        tcp_int_option(&socket, nix::libc::TCP_DEFER_ACCEPT, 1)?;
    }
    Ok(socket.into())
}

fn set_buffers(socket: &Socket, opts: &SocketOptions) -> io::Result<()> {
    if let Some(n) = opts.rcvbuf {
        socket.set_recv_buffer_size(n as usize)?;
    }
    if let Some(n) = opts.sndbuf {
        socket.set_send_buffer_size(n as usize)?;
    }
    Ok(())
}

/// Sets an `IPPROTO_TCP` option that takes an `int` and that neither socket2 nor nix
/// wraps (`TCP_FASTOPEN` on a listener, `TCP_DEFER_ACCEPT`).
#[allow(unsafe_code)]
fn tcp_int_option(socket: &Socket, name: nix::libc::c_int, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value: nix::libc::c_int = value;
    // SAFETY: the descriptor is open (borrowed from `socket` for the call), and the
    // pointer and length describe `value`, an `int` that outlives the call, which is
    // what the kernel reads for these options.
    let rc = unsafe {
        nix::libc::setsockopt(
            socket.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind_unix(path: &Path, opts: &SocketOptions) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    set_buffers(&socket, opts)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

/// How to get past a failed bind of `addr`, when we can tell: who holds the address
/// (from `/proc`), how to bind ports below 1024 without running as root.
pub fn bind_hint(addr: &Endpoint, err: &io::Error) -> Option<String> {
    use nix::errno::Errno;
    let errno = Errno::from_raw(err.raw_os_error()?);
    match (errno, addr) {
        (Errno::EACCES, Endpoint::Inet(a)) if a.port() < 1024 => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "/path/to/ferrolb".into());
            Some(format!(
                "ports below 1024 need privileges: start ferrolb as root (sudo), \
                 or let this binary bind them: sudo setcap cap_net_bind_service=+ep {exe}; \
                 or listen on a port from 1024 up"
            ))
        }
        (Errno::EACCES, Endpoint::Unix(path)) => Some(format!(
            "this user may not create files in {}",
            path.parent().unwrap_or(Path::new("/")).display()
        )),
        (Errno::EADDRINUSE, _) => {
            let holders = super::holders::of(addr);
            match holders.describe() {
                Some(who)
                    if holders
                        .processes
                        .iter()
                        .any(|h| h.command.contains("ferrolb")) =>
                {
                    Some(format!(
                        "{who}; ferrolb already running? \"ferrolb -c FILE -s reload\" \
                         applies a changed configuration, \"-s quit\" stops it"
                    ))
                }
                Some(who) => Some(who),
                None => match addr {
                    Endpoint::Unix(_) => Some(
                        "nothing listens on that socket file: if an earlier run left it, \
                         remove it"
                            .into(),
                    ),
                    Endpoint::Inet(_) => None,
                },
            }
        }
        (Errno::EADDRNOTAVAIL, Endpoint::Inet(a)) => Some(format!(
            "no network interface of this machine has the address {}",
            a.ip()
        )),
        _ => None,
    }
}
