//! Backends that misbehave: garbage instead of a status line, a head that never ends,
//! a huge or broken chunk size, a body longer than its Content-Length, data after the
//! last chunk, an answer before the request body was read, a close in the middle of
//! the body. Each gives the client nginx's answer (a 502 before the head went out, a
//! cut connection after, or nothing when the body broke before the head went out), the
//! error log names the peer with nginx's words, and the
//! worker goes on serving. Where nginx 1.22 does something else on purpose it is said
//! below; the rest is compared with Debian's nginx when it is installed.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// A backend that behaves as the request path says.
fn hostile_backend() -> u16 {
    scripted_backend(|req, reader, conn| answer(&req, reader, conn))
}

fn answer(req: &BackendRequest, reader: &mut BufReader<TcpStream>, conn: &mut TcpStream) {
    let length = req.content_length;
    let path = req.path().to_owned();
    let reply: Vec<u8> = match path.as_str() {
        "/garbage" => b"hello, this is not http\r\n\r\n".to_vec(),
        "/endless-head" => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n");
            for i in 0..100_000 {
                if conn.write_all(format!("X-Line-{i}: y\r\n").as_bytes()).is_err() {
                    return;
                }
            }
            return;
        }
        "/huge-chunk" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"
                .to_vec()
        }
        "/bad-chunk" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXYZ\r\n0\r\n\r\n".to_vec()
        }
        "/long-body" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0123456789".to_vec()
        }
        "/after-last-chunk" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nxyz\r\n0\r\n\r\nextra"
                .to_vec()
        }
        "/early" => {
            // Answers before reading the body, then reads it so the proxy is not reset.
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nearly\n";
            let _ = conn.write_all(reply);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            return;
        }
        "/early-hints" => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_vec(),
        "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_vec(),
        "/unrequested-101" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw bytes".to_vec(),
        "/mid-close" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly ten b".to_vec()
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".to_vec(),
    };
    let _ = conn.write_all(&reply);
}

fn conf(port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    proxy_read_timeout 5s;
    location / {{ proxy_pass http://127.0.0.1:{backend}; }}
  }}
}}
"#
    )
}

/// The status line and body a client got, or `cut` when the connection ended before
/// the body did.
fn outcome(port: u16, method: &str, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let _ = s.write_all(&req);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return if text.is_empty() {
            "closed".to_owned()
        } else {
            format!("{status} | no head end")
        };
    };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("Transfer-Encoding: chunked");
    let complete = match (length, chunked) {
        (Some(n), _) => body.len() == n,
        (None, true) => body.ends_with("0\r\n\r\n"),
        (None, false) => true,
    };
    if status.contains(" 502 ") {
        return status;
    }
    if !complete {
        return format!("{status} | cut");
    }
    let shown = if chunked {
        body.lines()
            .filter(|l| !l.is_empty() && !l.chars().all(|c| c.is_ascii_hexdigit()))
            .collect::<Vec<_>>()
            .join("")
    } else {
        body.to_owned()
    };
    format!("{status} | {shown}")
}

#[test]
fn hostile_backends_get_nginx_answers() {
    let backend = hostile_backend();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(p, backend));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(p, backend)));
    let big = vec![b'b'; 256 * 1024];
    // (method, path, body, ferrolb's answer, compared with nginx)
    let cases: [(&str, &str, &[u8], &str, bool); 11] = [
        // nginx 1.22 relays garbage as an HTTP/0.9 response (status 200, no head):
        // ferrolb does not pass bytes that are not HTTP on to clients.
        ("GET", "/garbage", b"", "HTTP/1.1 502 Bad Gateway", false),
        (
            "GET",
            "/endless-head",
            b"",
            "HTTP/1.1 502 Bad Gateway",
            true,
        ),
        // A chunk size that breaks in the first bytes: nothing has gone out, and the
        // connection closes (nginx sends nothing either).
        ("GET", "/huge-chunk", b"", "closed", true),
        ("GET", "/bad-chunk", b"", "closed", true),
        ("GET", "/long-body", b"", "HTTP/1.1 200 OK | 01234", true),
        (
            "GET",
            "/after-last-chunk",
            b"",
            "HTTP/1.1 200 OK | xyz",
            true,
        ),
        ("POST", "/early", &big, "HTTP/1.1 200 OK | early\n", true),
        ("GET", "/mid-close", b"", "HTTP/1.1 200 OK | cut", true),
        // Interim responses are skipped (RFC 9110 §15.2); nginx 1.22 sends the 1xx as
        // the response and the final one as its body.
        ("GET", "/early-hints", b"", "HTTP/1.1 200 OK | ok\n", false),
        ("GET", "/continue", b"", "HTTP/1.1 200 OK | ok\n", false),
        // A 101 nobody asked for is no answer (nginx 1.22 relays it and tunnels).
        (
            "GET",
            "/unrequested-101",
            b"",
            "HTTP/1.1 502 Bad Gateway",
            false,
        ),
    ];
    let mut diffs = Vec::new();
    for (method, path, body, want, compare) in cases {
        let ours = outcome(port, method, path, body);
        assert_eq!(ours, want, "{method} {path}\n{}", ferrolb.error_log());
        if let (true, Some((_, [np]))) = (compare, &nginx) {
            let theirs = outcome(*np, method, path, body);
            if theirs != ours {
                diffs.push(format!("{path}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
    // The worker still serves, and the log names each peer in nginx's words.
    assert_eq!(outcome(port, "GET", "/fine", b""), "HTTP/1.1 200 OK | ok\n");
    let log = ferrolb.error_log();
    let peer = format!("upstream: \"http://127.0.0.1:{backend}");
    for line in [
        "upstream sent no valid HTTP/1.0 header while reading response header from upstream",
        "upstream sent too big header while reading response header from upstream",
        "upstream sent invalid chunked response while reading upstream",
        "upstream sent more data than specified in \"Content-Length\" header while reading upstream",
        "upstream sent data after final chunk while reading upstream",
        "upstream prematurely closed connection while reading upstream",
        "upstream sent \"101 Switching Protocols\" to a request without Upgrade",
    ] {
        assert!(
            log.lines().any(|l| l.contains(line) && l.contains(&peer)),
            "no line with {line:?} naming the peer in:\n{log}"
        );
    }
}
