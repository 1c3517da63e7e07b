//! Slowloris: 900 connections that send a request head one byte at a time take no
//! service away from normal requests, and each is closed once `client_header_timeout`
//! has passed for its whole head (not per byte). Bounded: 900 connections, a 2 s
//! timeout, at most 30 s in all.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const SLOW: usize = 900;

#[test]
fn slow_heads_are_closed_and_others_served() {
    // The test holds ~SLOW sockets: raise the soft limit where the hard one allows.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(65_536),
            hard,
        );
    }
    let (proxy, [port]) = Proxy::start_on(|[p]| {
        format!(
            "events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_header_timeout 2s;\n  server {{\n    listen 127.0.0.1:{p};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
        )
    });
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let started = Instant::now();
    let mut sent = 0usize;
    let mut closed = vec![false; SLOW];
    let mut normal_ok = 0;
    // Trickle: one more byte on every slow connection per round, a normal request
    // between rounds, until every slow connection is closed (30 s at most).
    while closed.iter().any(|c| !c) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} slow connections still open after 30 s",
            closed.iter().filter(|c| !**c).count()
        );
        let byte = if sent < head.len() { head[sent] } else { b'x' };
        sent += 1;
        for (i, s) in slow.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                // Closed (a 408, or nothing) once its head took too long.
                Ok(_) => closed[i] = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if s.write_all(&[byte]).is_err() {
                        closed[i] = true;
                    }
                }
                Err(_) => closed[i] = true,
            }
        }
        let r = http_get(port, "/", "localhost").expect("a normal request during the trickle");
        assert_eq!((r.status, r.text()), (200, "ok\n".to_owned()));
        normal_ok += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // Closed for the whole head's time: 2 s, not 2 s per byte.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "slow heads lasted {:?}",
        started.elapsed()
    );
    assert!(normal_ok >= 5, "{normal_ok} normal requests");
    let log = proxy.error_log();
    assert!(
        log.contains(
            "client timed out (110: Connection timed out) while reading client request headers"
        ),
        "{log}"
    );
}
