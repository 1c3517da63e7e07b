//! A 1 GiB download and a 1 GiB upload go through ferrolb streamed: the proxy's peak
//! memory grows by a few buffers, not by the body (bounded: one of each, 64 MiB of
//! growth allowed, the bound).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const GIB: u64 = 1 << 30;

/// `/down` answers 1 GiB of zeros; anything else reads the request body to its end and
/// answers with its length.
fn backend() -> u16 {
    scripted_backend(|req, reader, conn| {
        if req.line.contains("/down") {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n"
            );
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..1024 {
                if conn.write_all(&zeros).is_err() {
                    return;
                }
            }
        } else {
            let got = std::io::copy(
                &mut reader.take(req.content_length as u64),
                &mut std::io::sink(),
            )
            .unwrap_or(0);
            let body = format!("{got}\n");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

#[test]
fn a_gibibyte_each_way_in_flat_memory() {
    let up = backend();
    let (proxy, [port]) = Proxy::start_on(|[p]| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  client_max_body_size 0;\n  proxy_request_buffering off;\n  server {{\n    listen 127.0.0.1:{p};\n    location / {{ proxy_pass http://127.0.0.1:{up}; }}\n  }}\n}}\n"
        )
    });
    // Buffers of a response exist before the baseline.
    let r = http_post(port, "/warm", "localhost", &[], b"abc").expect("warm up");
    assert_eq!(r.text(), "3\n");
    let before = peak_rss_kib(proxy.pid());

    // Download.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    s.write_all(b"GET /down HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("download cut after {total} bytes: {e}"),
        }
    }
    assert!(total > GIB, "the whole body and its head: {total} bytes");

    // Upload.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(s, "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n")
        .expect("head");
    let chunk = vec![b'u'; 1 << 20];
    for _ in 0..1024 {
        s.write_all(&chunk).expect("upload");
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(answer.ends_with(&format!("\r\n\r\n{GIB}\n")), "{answer}");

    let grown = peak_rss_kib(proxy.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "peak RSS grew by {grown} KiB for 2 GiB through the proxy"
    );
    eprintln!("peak RSS growth for 1 GiB down and 1 GiB up: {grown} KiB (before: {before} KiB)");
}
