//! `access_log syslog:...`: each line as one RFC 3164 datagram, with nginx's header
//! `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: ` and no newline.

use std::io;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;

use crate::config::{Endpoint, SyslogTarget};

/// A socket to send one target's lines from. Datagrams are sent with `sendto`, so a
/// syslog daemon that starts (or restarts) later still gets the following lines.
#[derive(Debug)]
pub struct SyslogSender {
    target: SyslogTarget,
    socket: Socket,
}

#[derive(Debug)]
enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl SyslogSender {
    /// A non-blocking datagram socket for `target`.
    pub fn open(target: &SyslogTarget) -> io::Result<Self> {
        let socket = match &target.server {
            Endpoint::Inet(a) => {
                let any: std::net::SocketAddr = if a.is_ipv6() {
                    "[::]:0".parse().map_err(io::Error::other)?
                } else {
                    "0.0.0.0:0".parse().map_err(io::Error::other)?
                };
                let s = UdpSocket::bind(any)?;
                s.set_nonblocking(true)?;
                Socket::Udp(s)
            }
            Endpoint::Unix(_) => {
                let s = UnixDatagram::unbound()?;
                s.set_nonblocking(true)?;
                Socket::Unix(s)
            }
        };
        Ok(SyslogSender {
            target: target.clone(),
            socket,
        })
    }

    /// Sends one log line (the trailing newline, if any, is left out). A failure is
    /// warned about in the error log, as nginx's `send() to syslog failed`; the line
    /// is lost, never waited for.
    pub fn send(&self, line: &[u8]) {
        let t = &self.target;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let pri = u32::from(t.facility) * 8 + u32::from(t.severity);
        let time = chrono::Local::now().format("%b %e %H:%M:%S");
        let mut msg = if t.nohostname {
            format!("<{pri}>{time} {}: ", t.tag)
        } else {
            format!("<{pri}>{time} {} {}: ", crate::config::hostname(), t.tag)
        }
        .into_bytes();
        msg.extend_from_slice(line);
        let sent = match (&self.socket, &t.server) {
            (Socket::Udp(s), Endpoint::Inet(a)) => s.send_to(&msg, a),
            (Socket::Unix(s), Endpoint::Unix(p)) => s.send_to(&msg, p),
            _ => Err(io::Error::other("socket and address differ")),
        };
        match sent {
            Ok(n) if n == msg.len() => {}
            Ok(n) => crate::log::emit(
                crate::config::Level::Warn,
                None,
                format_args!("send() to syslog has written only {n} of {}", msg.len()),
            ),
            Err(_) => crate::log::emit(
                crate::config::Level::Warn,
                None,
                format_args!("send() to syslog failed"),
            ),
        }
    }
}
