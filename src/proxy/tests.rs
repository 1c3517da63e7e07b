//! The forward path against scripted upstreams on real loopback sockets, with tokio's
//! clock paused: a timeout of a minute passes at once, and nothing waits on wall time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use super::*;
use crate::config::{Action, Config, LoadOptions};
use crate::http1::Parsed;
use crate::net::Stream;
use crate::server::http1_downstream::Http1Downstream;
use crate::upstream::PeerRegistry;

/// How a scripted peer treats each connection.
#[derive(Clone, Copy)]
enum Script {
    /// Reads one request, answers 200 `ok` and closes.
    Answer,
    /// Answers every request on the connection with 200 `ok`, keeping it open.
    KeepAlive,
    /// Reads one request, then closes without answering.
    CloseAfterRequest,
    /// Reads one request and never answers.
    Silent,
    /// Answers a head and the first half of the body, waits for `release`, then
    /// sends the rest.
    SlowBody,
}

/// A peer on 127.0.0.1 running `script`; counts the requests it read.
struct ScriptedPeer {
    port: u16,
    requests: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

async fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
    }
}

impl ScriptedPeer {
    async fn start(script: Script) -> ScriptedPeer {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (count, rel) = (requests.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (count, rel) = (count.clone(), rel.clone());
                tokio::spawn(async move {
                    loop {
                        if !read_request(&mut s).await {
                            return;
                        }
                        count.fetch_add(1, Relaxed);
                        match script {
                            Script::Answer => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                                    .await;
                                return;
                            }
                            Script::KeepAlive => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                    .await;
                            }
                            Script::CloseAfterRequest => return,
                            Script::Silent => std::future::pending::<()>().await,
                            Script::SlowBody => {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nab")
                                    .await;
                                rel.notified().await;
                                let _ = s.write_all(b"cd").await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        ScriptedPeer {
            port,
            requests,
            release,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Relaxed)
    }
}

/// A port nothing listens on (bound, then closed).
async fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// The first server's first location and the upstream group of `conf`'s text.
struct Setup {
    config: Config,
    upstream: Upstream,
}

fn setup(upstream_block: &str, location_extra: &str) -> Setup {
    let opts = LoadOptions {
        text: Some(format!(
            "events {{}} http {{ upstream up {{ {upstream_block} }} server {{ listen 127.0.0.1:1; \
             location / {{ proxy_pass http://up; {location_extra} }} }} }}"
        )),
        ..Default::default()
    };
    let config = crate::config::load(Path::new("t.conf"), &opts).expect("config loads");
    let upstream = Upstream::build(&config.http.upstreams[0], &PeerRegistry::new());
    Setup { config, upstream }
}

/// Forwards `request` and returns what the client received and the result.
async fn run(s: &Setup, request: &[u8]) -> (String, Forwarded) {
    let loc = &s.config.http.servers[0].locations[0];
    let Action::Proxy(pass) = &loc.settings.action else {
        panic!("a proxy location");
    };
    let (ours, mut theirs) = UnixStream::pair().expect("pair");
    let mut client = Stream::from(ours);
    let mut cbuf = Buf::head();
    cbuf.extend_from_slice(request);
    let mut head = RequestHead::default();
    assert_eq!(head.parse(&cbuf).expect("request parses"), Parsed::Complete);
    let f = Forward {
        locals: None,
        rewritten: None,
        head: &head,
        settings: &loc.settings,
        pass,
        upstream: &s.upstream,
        info: &ClientInfo::new(
            1,
            crate::net::ClientAddr::Inet("127.0.0.1:5000".parse().expect("addr")),
            "127.0.0.1:1".parse().expect("addr"),
        ),
        server_name: "",
        uri: "/",
        keep_client: false,
        log_upstream: true,
        hands_off: &|_| false,
        absolute_base: &|_| String::new(),
    };
    let done = forward(
        &f,
        &mut Http1Downstream::new(&mut client, Duration::from_secs(60)),
        &mut cbuf,
    )
    .await;
    drop(client);
    let mut got = Vec::new();
    let _ = theirs.read_to_end(&mut got).await;
    (String::from_utf8_lossy(&got).into_owned(), done)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
const POST: &[u8] = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nx=1";

fn status_line(got: &str) -> &str {
    got.lines().next().unwrap_or("")
}

#[tokio::test(start_paused = true)]
async fn connect_error_goes_to_the_next_peer_in_order() {
    let dead = refused_port().await;
    let live = ScriptedPeer::start(Script::Answer).await;
    let s = setup(
        &format!("server 127.0.0.1:{dead}; server 127.0.0.1:{};", live.port),
        "",
    );
    let (got, done) = run(&s, GET).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    let tried: Vec<_> = done
        .attempts
        .iter()
        .map(|a| (a.addr.port(), a.status))
        .collect();
    assert_eq!(tried, [(Some(dead), 502), (Some(live.port), 200)]);
    assert_eq!(s.upstream.peers[0].state.fails.load(Relaxed), 1);
    assert_eq!(live.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_that_reached_a_peer_is_never_sent_again() {
    let closing = ScriptedPeer::start(Script::CloseAfterRequest).await;
    let other = ScriptedPeer::start(Script::Answer).await;
    let s = setup(
        &format!(
            "server 127.0.0.1:{}; server 127.0.0.1:{};",
            closing.port, other.port
        ),
        "",
    );
    let (got, _) = run(&s, POST).await;
    assert_eq!(status_line(&got), "HTTP/1.1 502 Bad Gateway");
    assert_eq!((closing.requests(), other.requests()), (1, 0));

    // With `non_idempotent` it may go on.
    let s = setup(
        &format!(
            "server 127.0.0.1:{}; server 127.0.0.1:{};",
            closing.port, other.port
        ),
        "proxy_next_upstream error timeout non_idempotent;",
    );
    let (got, _) = run(&s, POST).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    assert_eq!((closing.requests(), other.requests()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn read_timeout_on_paused_time_moves_a_get_on() {
    let silent = ScriptedPeer::start(Script::Silent).await;
    let live = ScriptedPeer::start(Script::Answer).await;
    let s = setup(
        &format!(
            "server 127.0.0.1:{}; server 127.0.0.1:{};",
            silent.port, live.port
        ),
        "proxy_read_timeout 30s;",
    );
    let started = tokio::time::Instant::now();
    let (got, done) = run(&s, GET).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    assert_eq!(done.attempts[0].status, 504);
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "the timeout ran"
    );

    // Alone, the peer's timeout is the client's 504.
    let s = setup(
        &format!("server 127.0.0.1:{};", silent.port),
        "proxy_read_timeout 5s;",
    );
    let (got, _) = run(&s, GET).await;
    assert_eq!(status_line(&got), "HTTP/1.1 504 Gateway Time-out");
}

#[tokio::test(start_paused = true)]
async fn a_stale_pooled_connection_is_replaced_silently() {
    let peer = ScriptedPeer::start(Script::KeepAlive).await;
    let s = setup(
        &format!("server 127.0.0.1:{}; keepalive 4;", peer.port),
        "proxy_http_version 1.1; proxy_set_header Connection \"\";",
    );
    let (got, _) = run(&s, GET).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    // The pooled socket goes stale (as when a peer closes an idle connection): shut
    // down here, so the next write on it fails before any response byte.
    let stale = crate::upstream::pool::take(
        &s.upstream.name,
        s.upstream.peers[0].state.id,
        Duration::from_secs(60),
    )
    .expect("the first connection was pooled");
    let closed = match stale.stream {
        Stream::Tcp(t) => {
            let std = t.into_std().expect("std");
            let _ = std.shutdown(std::net::Shutdown::Both);
            Stream::Tcp(TcpStream::from_std(std).expect("back to tokio"))
        }
        other => other,
    };
    crate::upstream::pool::put(
        &s.upstream.name,
        &s.upstream.peers[0].state,
        4,
        Duration::from_secs(60),
        crate::upstream::pool::IdleConn {
            stream: closed,
            since: tokio::time::Instant::now(),
            requests: 1,
            opened: tokio::time::Instant::now(),
        },
    );
    let (got, done) = run(&s, GET).await;
    assert_eq!(status_line(&got), "HTTP/1.1 200 OK");
    assert_eq!(done.attempts.len(), 1, "one attempt, retried inside");
    assert_eq!(s.upstream.peers[0].state.fails.load(Relaxed), 0);
    assert_eq!(peer.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_peer_stays_in_flight_until_the_last_byte() {
    let peer = ScriptedPeer::start(Script::SlowBody).await;
    let s = Arc::new(setup(&format!("server 127.0.0.1:{};", peer.port), ""));
    let in_flight = || s.upstream.peers[0].state.in_flight.load(Relaxed);
    let s2 = s.clone();
    let request = tokio::spawn(async move { run(&s2, GET).await });
    // Wait (on virtual time, bounded) until the peer has the request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while peer.requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::task::yield_now().await;
    }
    // Head relayed, body still coming: the peer is still counted.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(in_flight(), 1);
    peer.release.notify_one();
    let (got, done) = request.await.expect("join");
    assert!(got.ends_with("abcd"), "{got}");
    assert_eq!(done.body_bytes, 4);
    assert_eq!(in_flight(), 0);
}
