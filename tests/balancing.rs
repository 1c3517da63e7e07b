//! Every balancing method end to end: the real binary in front of demo backends
//! (`ferrolb::demo::serve_backend`, plus a delaying variant for the latency tests)
//! running on a tokio runtime in this process.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{http_get, http_request, wait_refused, Proxy, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Demo backends on a private runtime; each can be stopped.
struct Backends {
    rt: tokio::runtime::Runtime,
    ports: Vec<u16>,
    tasks: Vec<JoinHandle<()>>,
}

impl Backends {
    /// One backend per entry; `Some(d)` answers after `d` (and closes), `None` is the
    /// plain demo backend.
    fn start(delays: &[Option<Duration>]) -> Backends {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut ports = Vec::new();
        let mut tasks = Vec::new();
        for &delay in delays {
            let listener = rt
                .block_on(TcpListener::bind(("127.0.0.1", 0)))
                .expect("bind backend");
            let port = listener.local_addr().expect("backend address").port();
            tasks.push(match delay {
                None => rt.spawn(ferrolb::demo::serve_backend(listener, port)),
                Some(d) => rt.spawn(serve_slow(listener, port, d)),
            });
            ports.push(port);
        }
        Backends { rt, ports, tasks }
    }

    /// Stops backend `i`: its task is cancelled (which drops its listener) and
    /// its port refuses new connections.
    fn stop(&mut self, i: usize) {
        self.tasks[i].abort();
        let cancelled = self.rt.block_on(&mut self.tasks[i]);
        assert!(
            cancelled.as_ref().is_err_and(|e| e.is_cancelled()),
            "backend {i} task: {cancelled:?}"
        );
        wait_refused(
            self.ports[i],
            Duration::from_secs(5),
            &format!("backend {i} stopped"),
        );
    }

    fn servers(&self, params: &[&str]) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "    server 127.0.0.1:{p} {};\n",
                    params.get(i).unwrap_or(&"")
                )
            })
            .collect()
    }
}

/// A backend that answers every request like the demo backend, `delay` late.
async fn serve_slow(listener: TcpListener, port: u16, delay: Duration) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            tokio::time::sleep(delay).await;
            let body = format!("<h1>Using port {port}</h1>\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

fn conf(upstream: &str, port: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  upstream app {{\n{upstream}\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://app; }}\n  }}\n}}\n"
    )
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let r = http_request(port, "GET", path, "localhost", headers, b"").expect("request");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r
}

fn backend(port: u16, path: &str) -> u16 {
    get(port, path, &[])
        .backend_port()
        .expect("backend port in body")
}

fn counts(ports: impl IntoIterator<Item = u16>) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for p in ports {
        *m.entry(p).or_default() += 1;
    }
    m
}

#[test]
fn least_conn_idle_requests_follow_weights() {
    let b = Backends::start(&[None, None]);
    let up = format!("    least_conn;\n{}", b.servers(&["weight=2"]));
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&up, port));
    let c = counts((0..30).map(|_| backend(port, "/")));
    assert_eq!(c.get(&b.ports[0]), Some(&20), "{c:?}");
    assert_eq!(c.get(&b.ports[1]), Some(&10), "{c:?}");
}

#[test]
fn ip_hash_sends_a_client_to_nginxs_peer() {
    let b = Backends::start(&[None, None, None]);
    let (_p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("    ip_hash;\n{}", b.servers(&[])), port));
    // nginx: 127.0.0.x hashes its first three octets.
    let mut h: u32 = 89;
    for o in [127u32, 0, 0] {
        h = (h * 113 + o) % 6271;
    }
    let want = b.ports[(h % 3) as usize];
    for _ in 0..10 {
        assert_eq!(backend(port, "/"), want);
    }
}

#[test]
fn hash_keys_stick_and_spread() {
    for consistent in ["", " consistent"] {
        let b = Backends::start(&[None, None, None]);
        let up = format!("    hash $arg_user{consistent};\n{}", b.servers(&[]));
        let (_p, [port]) = Proxy::start_on(|[port]| conf(&up, port));
        let mut seen = HashMap::new();
        for round in 0..3 {
            for user in 0..20 {
                let got = backend(port, &format!("/?user=u{user}&round={round}"));
                assert_eq!(*seen.entry(user).or_insert(got), got, "user {user}");
            }
        }
        let used = counts(seen.values().copied());
        assert!(
            used.len() >= 2,
            "{consistent}: all users on one backend: {used:?}"
        );
    }
}

#[test]
fn random_and_random_two_use_every_backend_by_weight() {
    for method in ["random", "random two least_conn"] {
        let b = Backends::start(&[None, None, None]);
        let up = format!("    {method};\n{}", b.servers(&["", "", "weight=2"]));
        let (_p, [port]) = Proxy::start_on(|[port]| conf(&up, port));
        let c = counts((0..400).map(|_| backend(port, "/")));
        for (i, &p) in b.ports.iter().enumerate() {
            let n = c.get(&p).copied().unwrap_or(0);
            assert!(n >= 40, "{method}: backend {i} got {n}: {c:?}");
        }
        // `random` draws by weight; `random two` of idle peers keeps the second draw.
        if method == "random" {
            assert!(c[&b.ports[2]] > c[&b.ports[0]], "{c:?}");
        }
    }
}

/// Share of the slow backend (index 0) over `n` requests from 8 concurrent clients.
fn slow_share(method: &str, n: usize) -> f64 {
    let slow = Duration::from_millis(40);
    let fast = Duration::from_millis(4);
    let b = Backends::start(&[Some(slow), Some(fast), Some(fast), Some(fast)]);
    let (_p, [port]) =
        Proxy::start_on(|[port]| conf(&format!("    {method}\n{}", b.servers(&[])), port));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || (0..n / 8).map(|_| backend(port, "/")).collect::<Vec<u16>>())
        })
        .collect();
    let all: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let slow_hits = all.iter().filter(|&&p| p == b.ports[0]).count();
    slow_hits as f64 / all.len() as f64
}

#[test]
fn least_time_avoids_a_slow_backend() {
    let lt = slow_share("least_time header;", 400);
    let lc = slow_share("least_conn;", 400);
    let rr = slow_share("", 400);
    eprintln!("end to end, slow backend share: least_time {lt:.3}, least_conn {lc:.3}, round robin {rr:.3}");
    assert!((rr - 0.25).abs() < 0.02, "round robin {rr}");
    assert!(lt < rr / 2.0, "least_time {lt} vs round robin {rr}");
    let lb = slow_share("least_time last_byte inflight;", 200);
    assert!(
        lb < rr / 2.0,
        "least_time last_byte {lb} vs round robin {rr}"
    );
}

#[test]
fn sticky_cookie_pins_a_client_until_its_backend_dies() {
    let mut b = Backends::start(&[None, None, None]);
    let up = format!(
        "    sticky cookie srv_id path=/ httponly;\n{}",
        b.servers(&[])
    );
    let (_p, [port]) = Proxy::start_on(|[port]| conf(&up, port));
    let first = get(port, "/", &[]);
    let set = first
        .header("set-cookie")
        .expect("first response sets the cookie");
    assert!(
        set.starts_with("srv_id=") && set.ends_with("; Path=/; HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    assert!(!cookie.contains("127.0.0.1"), "{cookie}");
    let pinned = first.backend_port().expect("port");
    for _ in 0..10 {
        let r = get(port, "/", &[("Cookie", &cookie)]);
        assert_eq!(r.backend_port(), Some(pinned));
        assert_eq!(r.header("set-cookie"), None, "cookie already right");
    }
    // Its backend stops: the client moves and gets a new cookie.
    let i = b
        .ports
        .iter()
        .position(|&p| p == pinned)
        .expect("known backend");
    b.stop(i);
    let moved = get(port, "/", &[("Cookie", &cookie)]);
    let new_port = moved.backend_port().expect("port");
    assert_ne!(new_port, pinned);
    let new_set = moved.header("set-cookie").expect("a new cookie");
    let new_cookie = new_set.split(';').next().unwrap_or_default().to_owned();
    assert_ne!(new_cookie, cookie);
    for _ in 0..5 {
        let r = get(port, "/", &[("Cookie", &new_cookie)]);
        assert_eq!(r.backend_port(), Some(new_port));
    }
    // A cookie that names no peer is balanced normally and replaced.
    let r = get(port, "/", &[("Cookie", "srv_id=zzz")]);
    assert!(r.header("set-cookie").is_some());
    let _ = http_get(port, "/", "localhost");
}

/// Round robin through a failing peer picks the peers nginx picks: the same backend
/// for every request, in order, as Debian's nginx on the same config (one worker).
/// The dead peer fails three times (max_fails=3), lowering its effective weight on
/// each failure, and each failed request goes on to the peer nginx retries with.
#[test]
fn round_robin_retries_follow_nginx_sequence() {
    let b = Backends::start(&[None, None, None]);
    let dead = common::DeadPort::new();
    let up = format!(
        "    server 127.0.0.1:{} weight=3;\n    server 127.0.0.1:{} weight=2 max_fails=3;\n    server 127.0.0.1:{} weight=2;\n    server 127.0.0.1:{} weight=1;",
        b.ports[0], dead.port, b.ports[1], b.ports[2]
    );
    let run = |port: u16| -> Vec<u16> { (0..40).map(|_| backend(port, "/")).collect() };
    let (_p, [port]) = Proxy::start_on(|[p]| conf(&up, p));
    let ours = run(port);
    let nginx_bin = std::path::PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !common::bin_is_nginx(&common::proxy_bin()) {
        let (_n, [nport]) = Proxy::start_bin_on(nginx_bin, |[p]| conf(&up, p));
        assert_eq!(ours, run(nport), "backends in order, ferrolb then nginx");
    }
    let c = counts(ours.iter().copied());
    assert!(c.len() == 3, "{c:?}");
}
