//! Edges where nginx-tests found ferrolb answering differently from nginx, run on the
//! same config by ferrolb and Debian's nginx and compared: the request line's host
//! and fragment (`$host`, `$uri`, `$args`, 400s), `$server_name` of `.name`, TRACE, and the
//! `$upstream_*` lists after failed attempts (error pages, `add_header ... always`,
//! "no live upstreams", two `server` lines with one address, empty `hash` keys), and
//! `100 Continue` for an empty body.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// Sends `raw` as is and returns the status line and the body, fields dropped (their
/// `Server`, `Date` differ by design).
fn exchange(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw.as_bytes()).expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Only the status of nginx's and ferrolb's own error pages: their HTML differs.
    if body.starts_with("<html>") {
        status
    } else {
        format!("{status} {body}")
    }
}

fn host_conf(port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    server_name .dot.example.com;
    location / {{ return 200 "$host|$uri|$args|$server_name|$request_uri"; }}
  }}
}}
"#
    )
}

#[test]
fn host_and_fragment_as_nginx() {
    let requests = [
        "GET / HTTP/1.0\r\nHost: www.Dot.Example.com.\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: abc.example.\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: abcd-ef.g02.xyz.:88\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: 123.40.56.78:9000:80\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: .\r\n\r\n",
        "GET http://www.abcd-ef.g02.xyz./ HTTP/1.0\r\n\r\n",
        "GET http://abcd-ef.g02.xyz.:2/ HTTP/1.0\r\n\r\n",
        "GET http://example.com.:1.2/ HTTP/1.0\r\n\r\n",
        "GET http://123.40.56.78:9000:80/ HTTP/1.0\r\n\r\n",
        "GET http://[abcd::ef98:0:7654:321].:98/ HTTP/1.0\r\n\r\n",
        "GET http://extra[abcd::ef98:0:7654:321]/ HTTP/1.0\r\n\r\n",
        "GET http://[abcd::ef98:0:7654:321/ HTTP/1.0\r\n\r\n",
        "GET http://[abcd::ef98:0:7654:321]:5/ HTTP/1.0\r\n\r\n",
        "GET http://localhost/?args#frag HTTP/1.0\r\n\r\n",
        "GET /foo/bar/.#frag HTTP/1.0\r\nHost: dot.example.com\r\n\r\n",
        "GET /foo/bar/..#frag HTTP/1.0\r\nHost: dot.example.com\r\n\r\n",
        "GET /a?b=1#c HTTP/1.0\r\nHost: dot.example.com\r\n\r\n",
        // Refused before any phase, the connection closed.
        "TRACE / HTTP/1.1\r\nHost: dot.example.com\r\n\r\n",
    ];
    let answers =
        |port: u16| -> Vec<String> { requests.iter().map(|r| exchange(port, r)).collect() };
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| host_conf(p));
    let ours = answers(port);
    assert_eq!(
        ours[0],
        "HTTP/1.1 200 OK www.dot.example.com|/||dot.example.com|/"
    );
    assert_eq!(ours[7], "HTTP/1.1 400 Bad Request");
    assert_eq!(
        ours[15],
        "HTTP/1.1 200 OK dot.example.com|/foo/||dot.example.com|/foo/bar/..#frag"
    );
    if let Some(bin) = reference_nginx() {
        let (_nginx, [np]) = Proxy::start_bin_on(bin, |[p]| host_conf(p));
        assert_eq!(ours, answers(np));
    }
}

fn upstream_conf(port: u16, a: u16, b: u16, dead: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  upstream twice {{ server 127.0.0.1:{dead}; server 127.0.0.1:{dead}; }}
  upstream gone {{ server 127.0.0.1:{dead} down; server 127.0.0.1:{dead} backup down; }}
  upstream mixed {{ server 127.0.0.1:{a}; server 127.0.0.1:{dead}; }}
  upstream keyed {{ hash $arg_k; server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
  upstream ring {{ hash $arg_k consistent; server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
  server {{
    listen 127.0.0.1:{port};
    add_header X-Tried "$upstream_addr|$upstream_status" always;
    location /twice {{ proxy_pass http://twice; }}
    location /gone {{ proxy_pass http://gone; }}
    location /paged {{ proxy_pass http://127.0.0.1:{dead}; error_page 502 /show; }}
    location /mixed {{ proxy_pass http://mixed/; error_page 502 /show; }}
    location /keyed {{ proxy_pass http://keyed/; }}
    location /ring {{ proxy_pass http://ring/; }}
    location /posted {{ proxy_pass http://127.0.0.1:{a}/; }}
    location /show {{ return 200 "shown $upstream_addr|$upstream_status"; }}
  }}
  server {{
    listen 127.0.0.1:{a};
    listen 127.0.0.1:{b};
    location / {{ return 200 "$server_port"; }}
  }}
}}
"#
    )
}

/// `X-Tried` and the body of each answer, ports named (they differ per run).
fn tried(port: u16, paths: &[&str], names: &[(u16, &str)]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            let r = http_get(port, p, "localhost").expect("answer");
            let body = if r.text().starts_with("<html>") {
                String::new()
            } else {
                r.text()
            };
            let mut line = format!(
                "{} {p} {} {body}",
                r.status,
                r.header("X-Tried").unwrap_or("-")
            );
            for (port, name) in names {
                line = line.replace(&port.to_string(), name);
            }
            line
        })
        .collect()
}

#[test]
fn upstream_states_as_nginx() {
    let dead = DeadPort::new();
    let paths = [
        "/twice",
        "/twice",
        "/gone",
        "/paged",
        "/keyed?k=",
        "/keyed?k=",
        "/keyed?k=",
        "/keyed?k=",
        "/ring?k=",
        "/ring?k=",
        "/mixed",
        "/mixed",
    ];
    let run = |bin: PathBuf| -> Vec<String> {
        let (_p, [port, a, b]) =
            Proxy::start_bin_on(bin, |[p, a, b]| upstream_conf(p, a, b, dead.port));
        let mut lines = tried(port, &paths, &[(a, "A"), (b, "B"), (dead.port, "DEAD")]);
        // nginx says `100 Continue` whenever it reads a body, an empty one too.
        let continued = exchange(
            port,
            "POST /posted HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        lines.push(continued.lines().next().unwrap_or_default().to_owned());
        lines
    };
    let ours = run(proxy_bin());
    // Two lines with one address are two peers: the second is tried after the first.
    assert_eq!(
        ours[0],
        "502 /twice 127.0.0.1:DEAD, 127.0.0.1:DEAD|502, 502 "
    );
    // No live peer: the group's name stands for the attempt.
    assert_eq!(ours[2], "502 /gone gone|502 ");
    assert_eq!(ours[12], "HTTP/1.1 100 Continue HTTP/1.1 200 OK");
    // The error page sees the failed attempt (and keeps the status, 502).
    assert_eq!(
        ours[3],
        "502 /paged 127.0.0.1:DEAD|502 shown 127.0.0.1:DEAD|502"
    );
    if let Some(bin) = reference_nginx() {
        assert_eq!(ours, run(bin));
    }
}

fn delayed_conf(port: u16, root: &str) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ limit_req zone=one burst=5; }}
  }}
}}
"#
    )
}

/// The second of two pipelined requests, delayed by `limit_req` past the start of a
/// graceful stop: its answer says `Connection: close`.
fn answer_after_stop(proxy: &Proxy, port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let one = "HEAD /t.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
    s.write_all(format!("{one}{one}").as_bytes()).expect("send");
    // The first answer is in: the second waits in limit_req's delay.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut chunk).expect("first answer");
        assert!(n > 0, "closed before the first answer");
        got.extend_from_slice(&chunk[..n]);
    }
    proxy.signal(nix::sys::signal::Signal::SIGQUIT);
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let second = text.splitn(3, "HTTP/1.1 ").nth(2).unwrap_or_default();
    second
        .lines()
        .filter(|l| l.starts_with("200") || l.starts_with("Connection:"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn delayed_answer_closes_on_stop_as_nginx() {
    let dir = fresh_temp_dir("nginx-edges-stop");
    std::fs::write(dir.join("t.html"), "XtestX").expect("file");
    let root = dir.display().to_string();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| delayed_conf(p, &root));
    let ours = answer_after_stop(&ferrolb, port);
    assert_eq!(ours, "200 OK Connection: close");
    if let Some(bin) = reference_nginx() {
        let (nginx, [np]) = Proxy::start_bin_on(bin, |[p]| delayed_conf(p, &root));
        assert_eq!(ours, answer_after_stop(&nginx, np));
    }
}
