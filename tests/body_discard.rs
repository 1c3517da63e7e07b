//! Request bodies that a local answer does not use (a `return`, a static file, a page
//! ferrolb makes itself) are discarded as nginx discards them: read and dropped behind
//! the answer, chunks decoded, and the connection carries the next request; a chunked
//! body broken in the part at hand is answered with 400, a transfer coding other than
//! `chunked` with 501. With `proxy_request_buffering off` the upstream gets the head
//! and the preread part of the body at once, the rest as it comes (a chunked body
//! re-framed, one chunk per read, and over HTTP/2 the DATA frames at hand as one
//! chunk), and an error page after an intercepted upstream error still has
//! `$request_body`. Each case runs on ferrolb and on Debian's nginx
//! with the same config, and the answers are compared.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Runs `case` on ferrolb, then on nginx when it is installed, and checks both gave
/// the same answers; returns ferrolb's.
fn same_as_nginx<T: PartialEq + std::fmt::Debug>(
    conf: impl Fn(u16) -> String,
    case: impl Fn(u16) -> T,
) -> T {
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(p));
    let ours = case(port);
    if let Some(bin) = reference_nginx() {
        let (_nginx, [np]) = Proxy::start_bin_on(bin, |[p]| conf(p));
        assert_eq!(ours, case(np), "ferrolb and nginx answered differently");
    }
    ours
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads one response: its status line, `Connection` field and body (only the
/// status of an HTML error page: nginx's and ferrolb's pages differ by design).
/// `None` at the end of the stream.
fn read_answer(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut status = String::new();
    if r.read_line(&mut status).unwrap_or(0) == 0 {
        return None;
    }
    let (mut length, mut connection) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                connection = value.trim().to_owned();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body);
    let body = if body.starts_with("<html>") {
        ""
    } else {
        body.trim_end()
    };
    Some(format!("{} [{connection}] {body}", status.trim_end()))
}

/// Sends `raw` in one write and reads every answer until the server closes.
fn answers(port: u16, raw: &[u8]) -> Vec<String> {
    let mut s = connect(port);
    s.write_all(raw).expect("send");
    let mut r = BufReader::new(s);
    std::iter::from_fn(|| read_answer(&mut r)).collect()
}

/// A request with a Content-Length body of `len` bytes.
fn with_length(path: &str, len: usize, close: bool) -> Vec<u8> {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}Content-Length: {len}\r\n\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', len));
    r
}

/// A request with a chunked body of `len` bytes in chunks of at most 1000.
fn chunked(path: &str, len: usize, close: bool) -> Vec<u8> {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}Transfer-Encoding: chunked\r\n\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    let mut left = len;
    while left > 0 {
        let n = left.min(1000);
        r.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        r.extend(std::iter::repeat_n(b'y', n));
        r.extend_from_slice(b"\r\n");
        left -= n;
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn local_conf(port: u16, root: &str) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {root};
    lingering_timeout 1s;
    location /discard {{ return 200 "TEST\n"; }}
    location /deny {{ return 403; }}
    location /paged {{ error_page 404 /discard; }}
    location /file {{ }}
  }}
}}
"#
    )
}

fn temp_root() -> String {
    let dir = fresh_temp_dir("body-discard");
    std::fs::write(dir.join("file"), "FILE\n").expect("file");
    dir.display().to_string()
}

#[test]
fn discarded_bodies_keep_the_connection_as_nginx() {
    let root = temp_root();
    // Bodies in the buffer, past it, past 64 KiB; Content-Length and chunked; behind
    // a `return` text, a `return` status, an error page and a file.
    let mut raw = Vec::new();
    for (path, len) in [
        ("/discard", 10),
        ("/discard", 1280),
        ("/deny", 5120),
        ("/paged", 70_000),
        ("/file", 3000),
    ] {
        raw.extend(with_length(path, len, false));
        raw.extend(chunked(path, len, false));
    }
    raw.extend(with_length("/discard", 6, true));
    let got = same_as_nginx(|p| local_conf(p, &root), |port| answers(port, &raw));
    assert_eq!(got.len(), 11, "every request answered: {got:#?}");
    assert_eq!(got[1], "HTTP/1.1 200 OK [keep-alive] TEST");
    assert_eq!(got[4], "HTTP/1.1 403 Forbidden [keep-alive] ");
    assert_eq!(got[7], "HTTP/1.1 404 Not Found [keep-alive] TEST");
    assert_eq!(got[9], "HTTP/1.1 200 OK [keep-alive] FILE");
    assert_eq!(got[10], "HTTP/1.1 200 OK [close] TEST");
}

/// The answer comes before the body is sent; the body then comes in pieces and the
/// next request is answered on the same connection.
fn body_after_answer(port: u16) -> Vec<String> {
    let mut s = connect(port);
    s.write_all(b"POST /discard HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n")
        .expect("head");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut got = vec![read_answer(&mut r).unwrap_or_default()];
    s.write_all(b"0123456789").expect("body");
    s.write_all(b"0123456789").expect("body");
    s.write_all(b"GET /discard HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("next");
    got.extend(std::iter::from_fn(|| read_answer(&mut r)));
    got
}

#[test]
fn body_sent_after_the_answer_is_discarded_as_nginx() {
    let root = temp_root();
    let got = same_as_nginx(|p| local_conf(p, &root), body_after_answer);
    assert_eq!(
        got,
        [
            "HTTP/1.1 200 OK [keep-alive] TEST",
            "HTTP/1.1 200 OK [close] TEST"
        ]
    );
}

/// A client that stops sending its body: the connection closes once
/// `lingering_timeout` (1 s here) passed without a byte.
fn stalled_body(port: u16) -> (String, bool) {
    let mut s = connect(port);
    s.write_all(b"POST /discard HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123")
        .expect("send");
    let mut r = BufReader::new(s);
    let answer = read_answer(&mut r).unwrap_or_default();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = r.read_to_end(&mut rest).is_ok() && rest.is_empty();
    (answer, closed && started.elapsed() < Duration::from_secs(8))
}

#[test]
fn stalled_body_closes_after_lingering_timeout_as_nginx() {
    let root = temp_root();
    let got = same_as_nginx(|p| local_conf(p, &root), stalled_body);
    assert_eq!(got, ("HTTP/1.1 200 OK [keep-alive] TEST".to_owned(), true));
}

#[test]
fn broken_framing_and_codings_as_nginx() {
    let root = temp_root();
    let requests: [&[u8]; 5] = [
        // The chunk is longer than its size says: nginx answers 400, not the text.
        b"GET /discard HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nSEE-THIS\r\n0\r\n\r\n",
        b"GET /discard HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        b"GET /discard HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"GET /discard HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n12345",
        b"GET /discard HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    let got = same_as_nginx(
        |p| local_conf(p, &root),
        |port| {
            requests
                .iter()
                .map(|r| answers(port, r).join(" | "))
                .collect::<Vec<_>>()
        },
    );
    assert_eq!(
        got,
        [
            "HTTP/1.1 400 Bad Request [close] ",
            "HTTP/1.1 501 Not Implemented [close] ",
            "HTTP/1.1 501 Not Implemented [close] ",
            "HTTP/1.1 501 Not Implemented [close] ",
            "HTTP/1.1 400 Bad Request [close] ",
        ]
    );
}

fn unbuffered_conf(port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    location / {{ proxy_pass http://127.0.0.1:{backend}; }}
  }}
}}
"#
    )
}

/// Reads from the backend's connection until `want` bytes of body arrived after the
/// head (or 5 s passed); returns them.
fn read_upstream(conn: &mut TcpStream, seen: &mut Vec<u8>, want: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    loop {
        let body_start = seen
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        if let Some(b) = body_start {
            if seen.len() - b >= want {
                return String::from_utf8_lossy(&seen[b..]).into_owned();
            }
        }
        if Instant::now() > deadline {
            return format!("timed out with {:?}", String::from_utf8_lossy(seen));
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return format!("closed with {:?}", String::from_utf8_lossy(seen)),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The client sends a head (with `preread` behind it); the backend reads it while
/// the rest is still unsent, then the rest, then answers. Returns what the backend
/// saw of the body after each step, and the client's answer.
fn unbuffered(
    backend: &TcpListener,
    port: u16,
    head: &str,
    (preread, at_once): (&[u8], usize),
    (rest, in_all): (&[u8], usize),
) -> Vec<String> {
    let mut client = connect(port);
    // In one write: the preread is what came with the head.
    let mut first = head.as_bytes().to_vec();
    first.extend_from_slice(preread);
    client.write_all(&first).expect("head");
    let Some(mut conn) = poll(Duration::from_secs(5), || {
        backend.accept().ok().map(|(c, _)| c)
    }) else {
        return vec!["the upstream was not contacted within 5 s".to_owned()];
    };
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut seen = Vec::new();
    let first = read_upstream(&mut conn, &mut seen, at_once);
    client.write_all(rest).expect("rest");
    let all = read_upstream(&mut conn, &mut seen, in_all);
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nOK\n")
        .expect("answer");
    drop(conn);
    let mut r = BufReader::new(client);
    vec![first, all, read_answer(&mut r).unwrap_or_default()]
}

#[test]
fn unbuffered_body_goes_upstream_as_it_comes_as_nginx() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    // Accepted with a deadline (see `unbuffered`).
    backend.set_nonblocking(true).expect("nonblocking");
    let bport = backend.local_addr().expect("addr").port();
    let length =
        "POST /up HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 10\r\n\r\n";
    let chunks =
        "POST /up HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let got = same_as_nginx(
        |p| unbuffered_conf(p, bport),
        |port| {
            let mut all = unbuffered(&backend, port, length, (b"01234", 5), (b"56789", 10));
            // Two chunks at hand go upstream as one, as nginx sends them.
            all.extend(unbuffered(
                &backend,
                port,
                chunks,
                (b"5\r\n01234\r\n4\r\nmany\r\n", 14),
                (b"5\r\n56789\r\n0\r\n\r\n", 29),
            ));
            all
        },
    );
    assert_eq!(
        got,
        [
            "01234",
            "0123456789",
            "HTTP/1.1 200 OK [close] OK",
            "9\r\n01234many\r\n",
            "9\r\n01234many\r\n5\r\n56789\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK [close] OK",
        ]
    );
}

fn error_page_conf(port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    location /up {{
      proxy_pass http://127.0.0.1:{backend};
      proxy_intercept_errors on;
      error_page 404 /page;
    }}
    location /page {{ return 200 "body=$request_body\n"; }}
  }}
}}
"#
    )
}

#[test]
fn request_body_in_an_error_page_as_nginx() {
    let backend = scripted_backend(|req, reader, conn| {
        let mut body = vec![0; req.content_length];
        let _ = reader.read_exact(&mut body);
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let got = same_as_nginx(
        |p| error_page_conf(p, backend),
        |port| answers(port, &with_length("/up", 10, true)),
    );
    assert_eq!(got, ["HTTP/1.1 404 Not Found [close] body=xxxxxxxxxx"]);
}

fn h2c_conf(port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} http2;
    server_name localhost;
    proxy_request_buffering off;
    proxy_http_version 1.1;
    location / {{ proxy_pass http://127.0.0.1:{backend}; }}
  }}
}}
"#
    )
}

/// An HTTP/2 frame: type, flags, stream 1 (0 for SETTINGS), payload.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let stream: u32 = if kind == 4 { 0 } else { 1 };
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A POST over h2c without `content-length` whose DATA come two frames at a time:
/// what the upstream saw after each pair.
fn h2_pairs(backend: &TcpListener, port: u16) -> Vec<String> {
    const DATA: u8 = 0;
    let mut client = connect(port);
    let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    first.extend(frame(4, 0, b""));
    // :method POST, :scheme http, :path /, :authority localhost (HPACK).
    let mut block = vec![0x83, 0x86, 0x84, 0x41, 9];
    block.extend_from_slice(b"localhost");
    first.extend(frame(1, 0x4, &block));
    first.extend(frame(DATA, 0, b"01234"));
    first.extend(frame(DATA, 0, b"many"));
    client.write_all(&first).expect("send");
    let Some(mut conn) = poll(Duration::from_secs(5), || {
        backend.accept().ok().map(|(c, _)| c)
    }) else {
        return vec!["the upstream was not contacted within 5 s".to_owned()];
    };
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut seen = Vec::new();
    let one = read_upstream(&mut conn, &mut seen, 14);
    let mut last = frame(DATA, 0, b"56789");
    last.extend(frame(DATA, 0x1, b"many"));
    client.write_all(&last).expect("send");
    let both = read_upstream(&mut conn, &mut seen, 33);
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    vec![one, both]
}

#[test]
fn h2_data_at_hand_go_upstream_as_one_chunk_as_nginx() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    backend.set_nonblocking(true).expect("nonblocking");
    let bport = backend.local_addr().expect("addr").port();
    let got = same_as_nginx(|p| h2c_conf(p, bport), |port| h2_pairs(&backend, port));
    assert_eq!(
        got,
        [
            "9\r\n01234many\r\n",
            "9\r\n01234many\r\n9\r\n56789many\r\n0\r\n\r\n"
        ]
    );
}
