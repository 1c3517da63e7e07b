//! How connections end, as nginx ends them: a client still sending a body that is
//! refused (413) reads the answer instead of being reset (lingering close), and
//! `keepalive_time` ends a keep-alive connection after its time with
//! `Connection: close`. Compared with Debian's nginx when it is installed.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn conf(port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 1k;
    keepalive_time 50ms;
    location / {{ return 200 "ok\n"; }}
    location /up {{ proxy_pass http://127.0.0.1:1; }}
  }}
}}
"#
    )
}

/// Sends a 4 MiB body the server refuses, all of it, and only then reads the answer:
/// its status line, and whether the whole body could be sent (a server that closes
/// without lingering resets the connection while the body still arrives).
fn refused_upload(port: u16) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let body = vec![b'x'; 64 * 1024];
    let mut sent_all = s
        .write_all(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4194304\r\n\r\n")
        .is_ok();
    for _ in 0..64 {
        if s.write_all(&body).is_err() {
            sent_all = false;
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    if let Err(e) = s.read_to_end(&mut got) {
        if got.is_empty() {
            return (format!("error: {e}"), sent_all);
        }
    }
    let status = String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    (status, sent_all)
}

/// Two requests on one connection, the second after `keepalive_time` passed: the
/// `Connection` field of each answer.
fn keepalive_time(port: u16) -> (String, String) {
    let mut ka = KeepAlive::new(port, "localhost");
    let first = ka.get("/").expect("first");
    // The condition under test is elapsed time itself: the server accepted the
    // connection before it answered, so it is older than 50 ms after this.
    std::thread::sleep(Duration::from_millis(100));
    let second = ka.get("/").expect("second");
    (
        first.header("connection").unwrap_or("-").to_owned(),
        second.header("connection").unwrap_or("-").to_owned(),
    )
}

#[test]
fn refused_uploads_are_answered_and_old_connections_end() {
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(p)));

    let refused = ("HTTP/1.1 413 Request Entity Too Large".to_owned(), true);
    for _ in 0..3 {
        assert_eq!(refused_upload(port), refused);
    }
    let ours = keepalive_time(port);
    assert_eq!(ours, ("keep-alive".to_owned(), "close".to_owned()));
    if let Some((_, [np])) = &nginx {
        assert_eq!(refused_upload(*np), refused);
        assert_eq!(keepalive_time(*np), ours);
    }
}

/// `worker_shutdown_timeout`: a graceful stop (SIGQUIT) waits that long for a request
/// whose backend never answers, then closes it and exits, saying so.
#[test]
fn a_graceful_stop_ends_after_worker_shutdown_timeout() {
    let backend = local_listener();
    let bport = backend.local_addr().expect("addr").port();
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Accept and hold: the request never gets an answer.
        let mut held = Vec::new();
        for conn in backend.incoming() {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });
    let (mut proxy, [port]) = Proxy::start_on(|[p]| {
        format!(
            "worker_shutdown_timeout 300ms;\nevents {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{p};\n    location / {{ proxy_pass http://127.0.0.1:{bport}; }}\n  }}\n}}\n"
        )
    });
    let client = std::thread::spawn(move || http_get(port, "/", "localhost"));
    accepted_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reached the backend");
    let stopping = Instant::now();
    proxy.signal(nix::sys::signal::Signal::SIGQUIT);
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "still running 10 s after SIGQUIT");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "exited after {:?}, not after worker_shutdown_timeout",
        stopping.elapsed()
    );
    assert!(
        proxy.error_log().contains("shutdown timeout"),
        "{}",
        proxy.error_log()
    );
    // The client's connection is gone, not answered.
    assert!(client.join().expect("client").is_err());
}

/// `keepalive_timeout` after `client_header_timeout`: an idle keep-alive connection is
/// closed once `keepalive_timeout` passed since its last answer, neither at the shorter
/// header timeout that governed its first wait nor much later; and a longer header
/// timeout does not keep it open past a shorter keepalive_timeout. Time until the
/// server closes, as nginx does on the same config.
#[test]
fn idle_keepalive_connections_close_at_keepalive_timeout() {
    fn conf(header: &'static str, keepalive: &'static str) -> impl Fn([u16; 1]) -> String {
        move |[p]: [u16; 1]| {
            format!(
                "events {{}}\nhttp {{\n  access_log off;\n  client_header_timeout {header};\n  keepalive_timeout {keepalive};\n  server {{\n    listen 127.0.0.1:{p};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
            )
        }
    }
    // How long after its answer the server closes an idle keep-alive connection.
    let closes_after = |port: u16| -> Duration {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while !got.ends_with(b"ok\n") {
            let n = s.read(&mut chunk).expect("answer");
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&chunk[..n]);
        }
        let answered = Instant::now();
        assert_eq!(s.read(&mut chunk).expect("read until close"), 0);
        answered.elapsed()
    };
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let with_nginx = nginx_bin.exists() && !bin_is_nginx(&proxy_bin());
    for (header, keepalive, at_least, below) in [
        // Armed for 1 s before the first request, idle for 2 s after it.
        ("1s", "2s", 1_600, 6_000),
        // Armed for 60 s before the first request, idle for 500 ms after it.
        ("60s", "500ms", 400, 4_000),
    ] {
        let mut ports = Vec::new();
        let (_ferrolb, [port]) = Proxy::start_on(conf(header, keepalive));
        ports.push(("ferrolb", port, _ferrolb));
        if with_nginx {
            let (n, [np]) = Proxy::start_bin_on(nginx_bin.clone(), conf(header, keepalive));
            ports.push(("nginx", np, n));
        }
        for (name, port, _proxy) in &ports {
            let after = closes_after(*port);
            assert!(
                after >= Duration::from_millis(at_least) && after < Duration::from_millis(below),
                "{name} with client_header_timeout {header}, keepalive_timeout {keepalive}: closed after {after:?}"
            );
        }
    }
}

/// A client that closes its connection while the upstream has not answered yet: the
/// proxy gives up at once (499, the upstream connection closed, no header time), as
/// nginx does with `proxy_ignore_client_abort off`; with it `on` the request runs to
/// the upstream's answer.
#[test]
fn a_client_gone_before_the_answer_ends_the_upstream_request() {
    // The backend reads a request, then waits for the proxy to close the connection;
    // says whether it did within 2 s, and answers when it did not.
    let backend = local_listener();
    let bport = backend.local_addr().expect("addr").port();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let (verdict_tx, verdict_rx) = std::sync::mpsc::channel::<bool>();
    std::thread::spawn(move || {
        for conn in backend.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (seen, verdict) = (seen_tx.clone(), verdict_tx.clone());
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut got = Vec::new();
                let mut chunk = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let _ = seen.send(());
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let closed = matches!(conn.read(&mut chunk), Ok(0));
                let _ = verdict.send(closed);
                if !closed {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
                }
            });
        }
    });
    let conf = move |[p]: [u16; 1]| {
        format!(
            "events {{}}\nhttp {{\n  log_format t '$request_uri $status $upstream_header_time';\n  access_log logs/t.log t;\n  server {{\n    listen 127.0.0.1:{p};\n    location / {{ proxy_pass http://127.0.0.1:{bport}; }}\n    location /patient {{ proxy_ignore_client_abort on; proxy_pass http://127.0.0.1:{bport}; }}\n  }}\n}}\n"
        )
    };
    let mut servers = vec![Proxy::start_on(conf)];
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        servers.push(Proxy::start_bin_on(nginx_bin, conf));
    }
    let mut patient_lines = Vec::new();
    for (proxy, [port]) in &servers {
        let name = proxy.bin.display().to_string();
        for (path, closes) in [("/impatient", true), ("/patient", false)] {
            let mut s = TcpStream::connect(("127.0.0.1", *port)).expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
                .expect("send");
            seen_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the request reached the backend");
            drop(s);
            let closed = verdict_rx
                .recv_timeout(Duration::from_secs(15))
                .expect("the backend's verdict");
            assert_eq!(closed, closes, "{name} {path}: upstream connection closed");
        }
        let log = proxy.dir.join("logs/t.log");
        let lines = wait_until(Duration::from_secs(10), "two access log lines", || {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.lines().count() >= 2).then_some(text)
        });
        let mut lines = lines.lines();
        assert_eq!(lines.next(), Some("/impatient 499 -"), "{name}");
        let patient = lines.next().unwrap_or_default();
        assert!(patient.starts_with("/patient "), "{name}: {patient}");
        // The status after a write to a gone client; the header time is there.
        let fields: Vec<&str> = patient.split(' ').collect();
        assert!(
            fields.get(2).is_some_and(|t| t.starts_with('2')),
            "{name}: {patient}"
        );
        patient_lines.push(fields[1].to_owned());
    }
    patient_lines.dedup();
    assert_eq!(patient_lines.len(), 1, "statuses differ: {patient_lines:?}");
}
