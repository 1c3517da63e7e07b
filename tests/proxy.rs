//! End-to-end tests of the proxy's HTTP handling at the edges a user meets: malformed
//! requests, body framing both ways, pipelining, 100-continue, upgrades, retries and
//! their limits, error statuses with their log lines. Real sockets on 127.0.0.1, real
//! ferrolb binary; backends are small scripted HTTP servers in this process.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{http_get, http_request, wait_until, DeadPort, Proxy};

/// One request as a scripted backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

type Responder = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// What a scripted backend does with a request.
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

fn ok(body: &str) -> Reply {
    Reply {
        bytes: format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        close: false,
    }
}

/// A scripted HTTP/1.1 backend: reads heads and Content-Length or chunked bodies,
/// records them, answers with the responder, keeps connections alive unless told.
struct Backend {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// Connections accepted and not closed yet.
    open: Arc<AtomicUsize>,
}

impl Backend {
    fn start(respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Backend {
        Self::start_with_idle(Duration::from_secs(10), respond)
    }

    /// A backend that closes connections idle for longer than `idle` (as gunicorn's
    /// `--keep-alive` does).
    fn start_with_idle(
        idle: Duration,
        respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        let listener = common::local_listener();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let respond: Arc<Responder> = Arc::new(respond);
        let (s, c, o) = (seen.clone(), connections.clone(), open.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (s, r, o) = (s.clone(), respond.clone(), o.clone());
                thread::spawn(move || {
                    // `serve` owns the stream: it is closed when `serve` returns.
                    serve(stream, s, r, idle);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            port,
            seen,
            connections,
            open,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the backend has closed every connection it accepted.
    fn wait_all_closed(&self, what: &str) {
        wait_until(
            Duration::from_secs(10),
            &format!(
                "the backend on {} to close every connection ({what})",
                self.port
            ),
            || (self.open.load(Ordering::SeqCst) == 0).then_some(()),
        );
    }
}

fn serve(stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, respond: Arc<Responder>, idle: Duration) {
    stream.set_read_timeout(Some(idle)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut req = Seen {
            head,
            body: Vec::new(),
        };
        if let Some(len) = req.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            req.body = body;
        } else if req
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                req.body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        }
        if req.header("expect").is_some() {
            // ferrolb answers 100-continue itself and must not pass Expect on.
            panic!("Expect reached the backend");
        }
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.len()
        };
        let reply = respond(&req, n);
        if writer.write_all(&reply.bytes).is_err() {
            return;
        }
        if reply.close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn conf(upstream: &str, extra: &str, port: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  upstream up {{\n{upstream}\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n{extra}\n    }}\n  }}\n}}\n"
    )
}

fn one(b: &Backend) -> String {
    format!("    server 127.0.0.1:{};", b.port)
}

/// Sends raw bytes, returns everything the proxy answers until it closes or 3 s pass.
fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn ambiguous_or_malformed_requests_get_400_and_are_never_forwarded() {
    let b = Backend::start(|_, _| ok("x"));
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
    let bad: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for req in bad {
        let out = raw(port, req);
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{:?} → {out:?}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(b.seen().is_empty(), "forwarded: {:?}", b.seen());
}

#[test]
fn bodies_stream_both_ways_in_every_framing() {
    let big = "y".repeat(300_000);
    let big2 = big.clone();
    let b = Backend::start(move |req, _| {
        let path = req.head.split(' ').nth(1).unwrap_or("/").to_owned();
        match path.as_str() {
            "/echo-len" => ok(&req.body.len().to_string()),
            "/chunked" => {
                let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for piece in big2.as_bytes().chunks(70_000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                Reply {
                    bytes: out,
                    close: false,
                }
            }
            "/close" => Reply {
                bytes: format!("HTTP/1.0 200 OK\r\n\r\n{big2}").into_bytes(),
                close: true,
            },
            _ => ok(&big2),
        }
    });
    let (_p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("{}\n    keepalive 4;", one(&b)),
            "proxy_http_version 1.1; proxy_set_header Connection \"\"; client_max_body_size 10m;",
            port,
        )
    });
    for path in ["/len", "/chunked", "/close"] {
        let r = http_get(port, path, "localhost").unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body.len(), big.len(), "{path}");
    }
    // Request bodies: content-length and chunked, larger than one buffer.
    let body = vec![b'z'; 1_000_000];
    let r = http_request(port, "POST", "/echo-len", "localhost", &[], &body).unwrap();
    assert_eq!(r.text(), "1000000");
    let mut chunked = Vec::new();
    for piece in body.chunks(100_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = http_request(
        port,
        "POST",
        "/echo-len",
        "localhost",
        &[("Transfer-Encoding", "chunked")],
        &chunked,
    )
    .unwrap();
    assert_eq!(r.text(), "1000000");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let b = Backend::start(|req, _| ok(req.head.split(' ').nth(1).unwrap()));
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
    let out = raw(
        port,
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let one = out.find("/one").expect(&out);
    let two = out.find("/two").expect(&out);
    let three = out.find("/three").expect(&out);
    assert!(one < two && two < three, "{out}");
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let b = Backend::start(|req, _| ok(&req.body.len().to_string()));
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("\r\n\r\n5"), "{rest}");
}

#[test]
fn upgrade_becomes_a_raw_tunnel() {
    // A backend that switches protocols and then echoes bytes upper-cased.
    let listener = common::local_listener();
    let bport = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_lowercase();
        assert!(head.contains("upgrade: echo"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf.to_ascii_uppercase()).unwrap();
    });
    let (_p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("    server 127.0.0.1:{bport};"), "", port));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HELLO");
}

#[test]
fn a_post_is_never_sent_twice_even_on_a_stale_pooled_connection() {
    // A backend that closes idle keep-alive connections after 150 ms; the next
    // request comes once it has closed them all: every pooled connection is stale.
    let b = Backend::start_with_idle(Duration::from_millis(150), |req, _| {
        ok(&req.body.len().to_string())
    });
    let keepalive = "proxy_http_version 1.1; proxy_set_header Connection \"\";";
    let (_p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("{}\n    keepalive 8;", one(&b)), keepalive, port));
    for i in 0..8 {
        let body = format!("post number {i}");
        let r = http_request(port, "POST", "/", "a", &[], body.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "POST {i}");
        b.wait_all_closed(&format!("idle after POST {i}"));
        let r = http_get(port, "/", "a").unwrap();
        assert_eq!(r.status, 200, "GET {i}");
        b.wait_all_closed(&format!("idle after GET {i}"));
    }
    let posts: Vec<Vec<u8>> = b
        .seen()
        .into_iter()
        .filter(|s| s.head.starts_with("POST"))
        .map(|s| s.body)
        .collect();
    assert_eq!(posts.len(), 8, "each POST exactly once");

    // A backend that closes right after every response without saying so: the close
    // races the next request. GETs must still never fail; a POST caught by the race
    // may fail (502) but is never delivered twice.
    let rude = Backend::start(|req, _| Reply {
        close: true,
        ..ok(&req.body.len().to_string())
    });
    let (_p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("{}\n    keepalive 8;", one(&rude)),
            keepalive,
            port,
        )
    });
    for i in 0..20 {
        let body = format!("rude post {i}");
        let r = http_request(port, "POST", "/", "a", &[], body.as_bytes()).unwrap();
        assert!(r.status == 200 || r.status == 502, "POST {i}: {}", r.status);
        assert_eq!(http_get(port, "/", "a").unwrap().status, 200, "GET {i}");
    }
    let mut bodies: Vec<Vec<u8>> = rude
        .seen()
        .into_iter()
        .filter(|s| s.head.starts_with("POST"))
        .map(|s| s.body)
        .collect();
    let n = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), n, "a POST was delivered twice");
}

#[test]
fn connect_errors_move_to_the_next_peer_and_all_down_gives_502_with_a_log_line() {
    let b = Backend::start(|_, _| ok("alive"));
    let dead_port = DeadPort::new();
    let dead = dead_port.port;
    let (mut p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("    server 127.0.0.1:{dead};\n{}", one(&b)),
            "",
            port,
        )
    });
    for _ in 0..10 {
        let r = http_get(port, "/", "a").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "alive");
    }
    let log = p.error_log();
    assert!(
        log.contains("connect() failed (111: Connection refused) while connecting to upstream")
            && log.contains(&format!("upstream: \"http://127.0.0.1:{dead}/\"")),
        "{log}"
    );
    p.stop();

    let (p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("    server 127.0.0.1:{dead};"), "", port));
    let r = http_get(port, "/", "a").unwrap();
    assert_eq!(r.status, 502);
    assert!(p.error_log().contains(&format!("127.0.0.1:{dead}")));
}

#[test]
fn timeouts_give_504_and_name_the_peer() {
    // The backend answers only once the test is over (its sender dropped): the
    // 504 can only come from proxy_read_timeout, however slow the machine.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Mutex::new(held);
    let b = Backend::start(move |_, _| {
        let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(60));
        ok("late")
    });
    let (p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "proxy_read_timeout 1s;", port));
    let r = http_get(port, "/", "a").unwrap();
    assert_eq!(r.status, 504);
    let log = p.error_log();
    assert!(log.contains("upstream timed out"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{}", b.port)), "{log}");
    drop(release);
}

#[test]
fn http_500_is_retried_for_get_but_a_post_is_never_resent() {
    let failing = Backend::start(|_, _| Reply {
        bytes: b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail".to_vec(),
        close: false,
    });
    let good = Backend::start(|_, _| ok("good"));
    let (_p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("{}\n{}", one(&failing), one(&good)),
            "proxy_next_upstream error timeout http_500;",
            port,
        )
    });
    for _ in 0..6 {
        assert_eq!(http_get(port, "/", "a").unwrap().text(), "good");
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            http_request(port, "POST", "/", "a", &[], b"x")
                .unwrap()
                .status,
        );
    }
    let total_posts: usize = [&failing, &good]
        .iter()
        .map(|b| {
            b.seen()
                .iter()
                .filter(|s| s.head.starts_with("POST"))
                .count()
        })
        .sum();
    assert_eq!(total_posts, 6, "a POST was sent twice: {statuses:?}");
}

#[test]
fn headers_host_hop_by_hop_and_forwarded_for() {
    let b = Backend::start(|_, _| ok("x"));
    let (_p, [port]) = Proxy::start_on(|[port]| {
        conf(
        &one(&b),
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_set_header X-Real-IP $remote_addr;",
        port,
    )
    });
    let r = http_request(
        port,
        "GET",
        "/x?y=1",
        "example.test:8080",
        &[
            ("Connection", "close, X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Other", "kept"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = b.seen().pop().unwrap();
    assert!(
        seen.head.starts_with("GET /x?y=1 HTTP/1.0\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(seen.header("host").as_deref(), Some("example.test:8080"));
    assert_eq!(seen.header("x-secret"), None);
    assert_eq!(seen.header("keep-alive"), None);
    assert_eq!(seen.header("x-other").as_deref(), Some("kept"));
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("connection").as_deref(), Some("close"));

    // nginx's own Host behaviour on request.
    let (_p2, [port]) =
        Proxy::start_on(|[port]| conf(&one(&b), "proxy_set_header Host $proxy_host;", port));
    http_get(port, "/", "example.test").unwrap();
    assert_eq!(
        b.seen().pop().unwrap().header("host").as_deref(),
        Some("up")
    );
}

#[test]
fn body_size_limit_locations_return_and_uri_rewrite() {
    let b = Backend::start(|req, _| ok(req.head.split(' ').nth(1).unwrap()));
    let text = |port: u16| {
        format!(
        "events {{}}\nhttp {{\n  access_log off;\n  upstream up {{ server 127.0.0.1:{}; }}\n  server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 10;\n    location / {{ proxy_pass http://up; }}\n    location /api/ {{ proxy_pass http://up/v2/; }}\n    location = /health {{ return 200 \"ok\\n\"; }}\n    location ~ \\.php$ {{ return 403; }}\n    location /old {{ return 301 http://example.test/new; }}\n  }}\n}}\n",
        b.port
    )
    };
    let (_p, [port]) = Proxy::start_on(|[port]| text(port));
    assert_eq!(
        http_get(port, "/api/users?x=1", "a").unwrap().text(),
        "/v2/users?x=1"
    );
    assert_eq!(http_get(port, "/plain", "a").unwrap().text(), "/plain");
    let r = http_get(port, "/health", "a").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(http_get(port, "/index.php", "a").unwrap().status, 403);
    let r = http_get(port, "/old", "a").unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://example.test/new"));
    let r = http_request(port, "POST", "/", "a", &[], &[b'x'; 11]).unwrap();
    assert_eq!(r.status, 413);
    let r = http_request(port, "POST", "/", "a", &[], &[b'x'; 10]).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn upstream_keepalive_reuses_connections() {
    let b = Backend::start(|_, _| ok("x"));
    let (_p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("{}\n    keepalive 4;", one(&b)),
            "proxy_http_version 1.1; proxy_set_header Connection \"\";",
            port,
        )
    });
    for _ in 0..50 {
        assert_eq!(http_get(port, "/", "a").unwrap().status, 200);
    }
    let conns = b.connections.load(Ordering::SeqCst);
    // One per worker thread at most, not one per request.
    assert!(conns <= 4, "{conns} upstream connections for 50 requests");
}

#[test]
fn small_chunked_bodies_reach_the_backend_with_a_content_length() {
    let b = Backend::start(|req, _| ok(&req.body.len().to_string()));
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
    let r = http_request(
        port,
        "POST",
        "/",
        "a",
        &[("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.text(), "11");
    let seen = b.seen().pop().unwrap();
    assert_eq!(seen.header("content-length").as_deref(), Some("11"));
    assert_eq!(seen.header("transfer-encoding"), None);
    assert_eq!(seen.body, b"hello world");
}

#[test]
fn a_backend_dying_in_the_middle_of_its_head_is_an_error_that_retries_a_get() {
    // As nginx counts it: a head cut short is `error` (retried by default), not
    // `invalid_header`.
    let dying = Backend::start(|_, _| Reply {
        bytes: b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec(),
        close: true,
    });
    let good = Backend::start(|_, _| ok("good"));
    let (p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("{}\n{}", one(&dying), one(&good)), "", port));
    for _ in 0..4 {
        assert_eq!(http_get(port, "/", "a").unwrap().text(), "good");
    }
    assert!(
        p.error_log()
            .contains("upstream prematurely closed connection while reading response header"),
        "{}",
        p.error_log()
    );
}

#[test]
fn responses_with_ambiguous_framing_get_502_and_never_reach_the_client() {
    // A cache or client behind the proxy could split such a stream differently from
    // the proxy (response splitting): nginx answers 502, and so does ferrolb.
    let cases: [(&[u8], &str); 3] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "upstream sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time while reading response header from upstream",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "upstream sent duplicate header line: \"Content-Length\" while reading response header from upstream",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
            "upstream sent unknown \"Transfer-Encoding\" while reading response header from upstream",
        ),
    ];
    for (answer, line) in cases {
        let b = Backend::start(move |_, _| Reply {
            bytes: answer.to_vec(),
            close: true,
        });
        let (p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
        let r = http_get(port, "/", "a").expect("GET");
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(!r.text().contains("hello"), "{}", r.text());
        let want = format!("{line}, client: 127.0.0.1");
        wait_until(Duration::from_secs(10), "the error log line", || {
            p.error_log().contains(&want).then_some(())
        });
        assert!(
            p.error_log()
                .contains(&format!("upstream: \"http://127.0.0.1:{}/\"", b.port)),
            "the log names the peer:\n{}",
            p.error_log()
        );
    }
}

#[test]
fn invalid_header_names_hosts_and_methods_as_nginx_treats_them() {
    let b = Backend::start(|_, _| ok("x"));
    let conf_with = |port: u16, underscores: &str| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  {underscores}\n  upstream up {{ {} }}\n  server {{\n    \
             listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n      \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n",
            one(&b)
        )
    };
    let (p, [port]) = Proxy::start_on(|[port]| conf_with(port, ""));
    let r = http_request(
        port,
        "GET",
        "/",
        "a",
        &[
            ("X_Forwarded_For", "6.6.6.6"),
            ("X.Dotted", "1"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-For", "10.0.0.2"),
            ("X-Fine", "kept"),
        ],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 200);
    let seen = b.seen().pop().expect("the backend saw it");
    // nginx's defaults: fields with `_` or other odd bytes in their names are dropped.
    assert_eq!(seen.header("X_Forwarded_For"), None, "{}", seen.head);
    assert_eq!(seen.header("X.Dotted"), None, "{}", seen.head);
    assert_eq!(seen.header("X-Fine").as_deref(), Some("kept"));
    // Every X-Forwarded-For line, joined, then the client.
    assert_eq!(
        seen.header("X-Forwarded-For").as_deref(),
        Some("10.0.0.1, 10.0.0.2, 127.0.0.1")
    );
    wait_until(Duration::from_secs(10), "the info line", || {
        p.error_log()
            .contains("client sent invalid header line: \"X_Forwarded_For: 6.6.6.6\"")
            .then_some(())
    });

    // Hosts and methods nginx refuses never reach the backend.
    let before = b.seen().len();
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let out = raw(port, req);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
    assert_eq!(b.seen().len(), before);
    drop(p);

    // `underscores_in_headers on` lets them through.
    let (_p, [port]) = Proxy::start_on(|[port]| conf_with(port, "underscores_in_headers on;"));
    http_request(port, "GET", "/", "a", &[("X_Under", "1")], b"").expect("GET");
    let seen = b.seen().pop().expect("seen");
    assert_eq!(
        seen.header("X_Under").as_deref(),
        Some("1"),
        "{}",
        seen.head
    );
}

#[test]
fn a_chunked_answer_reaches_an_http10_client_decoded_and_close_delimited() {
    // Non-compliant but real: the backend chunks even for ferrolb's HTTP/1.0 request.
    let b = Backend::start(|_, _| {
        Reply {
        bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            .to_vec(),
        close: true,
    }
    });
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&one(&b), "", port));
    let out = raw(
        port,
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    );
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(body, "hello world");
    // An HTTP/1.1 client gets the chunks as they came.
    let out = raw(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("Transfer-Encoding: chunked"), "{out}");
    assert!(
        out.ends_with("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn an_idle_upgraded_tunnel_is_closed_after_proxy_read_timeout() {
    // The backend switches protocols and then keeps the connection open, silent, until
    // the test ends.
    let listener = common::local_listener();
    let bport = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
        let _ = done_rx.recv();
    });
    let (p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("    server 127.0.0.1:{bport};"),
            "proxy_read_timeout 1s;",
            port,
        )
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    // The proxy closes the tunnel: EOF, well before the 10 s read timeout.
    s.read_to_end(&mut all)
        .expect("EOF from the proxy, not a read timeout");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 101"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    wait_until(Duration::from_secs(10), "the timeout line", || {
        p.error_log()
            .contains(
                "upstream timed out (110: Connection timed out) while proxying upgraded connection",
            )
            .then_some(())
    });
    let _ = done_tx.send(());
}

#[test]
fn a_large_body_is_buffered_to_a_file_sent_with_a_length_and_retried() {
    // Bigger than the 64 KiB memory buffer: nginx buffers it (proxy_request_buffering
    // on), sends it with a Content-Length in the configured HTTP version, and may send
    // it again to the next peer, since it has it whole.
    let dead = DeadPort::new();
    let b = Backend::start(|_, _| ok("got it"));
    let (p, [port]) = Proxy::start_on(|[port]| {
        conf(
            &format!("    server 127.0.0.1:{};\n{}", dead.port, one(&b)),
            "proxy_next_upstream error non_idempotent;",
            port,
        )
    });
    let body: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    // Chunked, in uneven pieces.
    let mut chunked = Vec::new();
    for piece in body.chunks(7_777) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for _ in 0..2 {
        let mut req =
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        req.extend_from_slice(&chunked);
        let out = raw(port, &req);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}\n{}", p.error_log());
        assert!(out.ends_with("got it"), "{out}");
    }
    let seen = b.seen();
    assert_eq!(seen.len(), 2, "each POST reached the live peer once");
    for s in &seen {
        assert!(s.head.starts_with("POST /up HTTP/1.0\r\n"), "{}", s.head);
        assert_eq!(s.header("Content-Length"), Some(body.len().to_string()));
        assert_eq!(s.header("Transfer-Encoding"), None);
        assert!(s.body == body, "the body arrived intact");
    }
    // A Content-Length body of the same size is buffered too: with the dead peer
    // first, it still arrives once.
    let r = common::http_post(port, "/up", "a", &[], &body).expect("POST");
    assert_eq!(r.status, 200);
    assert_eq!(b.seen().len(), 3);
}

#[test]
fn request_id_and_other_nginx_variables() {
    let b = Backend::start(|_, _| ok("x"));
    let (_p, [port]) = Proxy::start_on(|[port]| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  upstream up {{ {} }}\n  server {{\n    \
             listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n      \
             proxy_set_header X-Request-Id $request_id;\n      add_header X-Request-Id $request_id;\n    }}\n    \
             location = /vars {{ return 200 \"$nginx_version|$https|$content_type|$content_length|$pid\\n\"; }}\n  }}\n}}\n",
            one(&b)
        )
    });
    let r = http_get(port, "/", "a").expect("GET");
    let sent = r
        .header("X-Request-Id")
        .expect("the response carries it")
        .to_owned();
    assert_eq!(sent.len(), 32, "{sent}");
    assert!(sent.bytes().all(|c| c.is_ascii_hexdigit()), "{sent}");
    let seen = b.seen().pop().expect("seen");
    assert_eq!(
        seen.header("X-Request-Id").as_deref(),
        Some(sent.as_str()),
        "one id per request"
    );
    let other = http_get(port, "/", "a").expect("GET");
    assert_ne!(other.header("X-Request-Id"), Some(sent.as_str()));
    let r = http_request(
        port,
        "POST",
        "/vars",
        "a",
        &[("Content-Type", "text/plain")],
        b"abc",
    )
    .expect("POST");
    let text = r.text();
    let parts: Vec<&str> = text.trim_end().split('|').collect();
    assert_eq!(&parts[..4], ["1.22.1", "", "text/plain", "3"], "{text}");
    assert!(parts[4].parse::<u32>().is_ok(), "{text}");
}

#[test]
fn beyond_worker_connections_new_connections_are_closed_and_the_others_go_on() {
    let b = Backend::start(|_, _| ok("fine"));
    let (p, [port]) = Proxy::start_on(|[port]| {
        format!(
            "worker_processes 1;\nevents {{ worker_connections 2; }}\nhttp {{\n  access_log off;\n  \
             upstream up {{ {} }}\n  server {{\n    listen 127.0.0.1:{port};\n    \
             location / {{ proxy_pass http://up; }}\n  }}\n}}\n",
            one(&b)
        )
    });
    let mut first = common::KeepAlive::new(port, "a");
    let mut second = common::KeepAlive::new(port, "a");
    assert_eq!(first.get("/").expect("first").text(), "fine");
    assert_eq!(second.get("/").expect("second").text(), "fine");
    // The third is accepted and closed at once: EOF (not a read timeout), no answer.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut got = Vec::new();
    match third.read_to_end(&mut got) {
        Ok(_) => assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got)),
        // A reset is a close too.
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    wait_until(Duration::from_secs(10), "the alert", || {
        p.error_log()
            .contains("2 worker_connections are not enough")
            .then_some(())
    });
    // The two being served go on.
    assert_eq!(first.get("/").expect("first again").text(), "fine");
    assert_eq!(second.get("/").expect("second again").text(), "fine");
}
