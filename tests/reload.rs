//! Hot reload under load: configuration changes (new upstream sets, a new listener,
//! an invalid file) while clients keep sending requests on keep-alive and new
//! connections. No request may fail.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, http_get, KeepAlive, Proxy};

/// Backends answering `<h1>Using port N</h1>`, on a runtime in a background thread.
fn backends(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            for l in listeners {
                l.set_nonblocking(true).unwrap();
                let port = l.local_addr().unwrap().port();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                tokio::spawn(ferrolb::demo::serve_backend(l, port));
            }
            std::future::pending::<()>().await;
        });
    });
    ports
}

fn conf(listen: &[u16], peers: &[u16]) -> String {
    let servers: String = peers
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    let listens: String = listen
        .iter()
        .map(|p| format!("    listen 127.0.0.1:{p};\n"))
        .collect();
    format!(
        "worker_processes 2;\nevents {{}}\nhttp {{\n  access_log off;\n  upstream app {{\n{servers}    keepalive 16;\n  }}\n  server {{\n{listens}    location / {{\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
    )
}

#[test]
fn reloads_under_load_drop_nothing() {
    let b = backends(3);
    let port = free_port();
    let extra = free_port();
    let mut proxy = Proxy::start(&conf(&[port], &[b[0], b[1]]));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut clients = Vec::new();
    // Two keep-alive clients and two that open a connection per request.
    for kind in 0..4 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        clients.push(thread::spawn(move || {
            let mut ka = KeepAlive::new(port, "localhost");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5_000 && Instant::now() < deadline {
                let r = if kind < 2 {
                    ka.get("/")
                } else {
                    http_get(port, "/", "localhost")
                };
                match r {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status)),
                    Err(e) => failures.lock().unwrap().push(format!("error {e}")),
                }
                n += 1;
            }
        }));
    }

    let valid = [
        conf(&[port], &[b[1], b[2]]),
        conf(&[port, extra], &[b[0], b[2]]),
        conf(&[port], &[b[0], b[1], b[2]]),
    ];
    let mut reloads = 0;
    for i in 0..10 {
        thread::sleep(Duration::from_millis(150));
        if i == 4 {
            // An invalid file: the running configuration must stay. (`-s reload`
            // itself refuses a broken file, as nginx's does, so signal directly.)
            proxy.write_conf(
                &conf(&[port], &[b[2]]).replace("access_log off;", "bogus_directive on;"),
            );
            proxy.sighup();
            thread::sleep(Duration::from_millis(300));
            assert!(
                proxy.error_log().contains("bogus_directive"),
                "{}",
                proxy.error_log()
            );
        } else {
            proxy.reload_with(&valid[i % valid.len()]);
        }
        reloads += 1;
    }
    // Leave the load running a little on the last configuration, then stop it.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let total = ok.load(Ordering::Relaxed) + failures.len();
    eprintln!(
        "reload under load: {reloads} reloads, {total} requests, {} failed",
        failures.len()
    );
    assert!(total >= 2_000, "only {total} requests were made");
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );

    // The last configuration (reload 10: valid[0], backends 1 and 2) is in force.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(http_get(port, "/", "a").unwrap().backend_port().unwrap());
    }
    assert_eq!(seen, [b[1], b[2]].into_iter().collect());

    // A listener added by a reload accepts; one removed by a later reload is closed.
    proxy.reload_with(&valid[1]);
    assert_eq!(http_get(extra, "/", "a").unwrap().status, 200);
    proxy.reload_with(&valid[0]);
    thread::sleep(Duration::from_millis(200));
    assert!(http_get(extra, "/", "a").is_err(), "{extra} still accepts");
    // Only b1 and b2 now.
    for _ in 0..20 {
        let p = http_get(port, "/", "a").unwrap().backend_port().unwrap();
        assert!(p == b[1] || p == b[2], "{p}");
    }
}

#[test]
fn graceful_stop_finishes_requests_in_progress() {
    // A backend that answers after 700 ms.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                thread::sleep(Duration::from_millis(700));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
            });
        }
    });
    let port = free_port();
    let proxy = Proxy::start(&conf(&[port], &[bport]));
    let pending = thread::spawn(move || http_get(port, "/", "a"));
    thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.pid() as i32),
        nix::sys::signal::Signal::SIGQUIT,
    )
    .unwrap();
    let r = pending
        .join()
        .unwrap()
        .expect("the request in progress completes");
    assert_eq!(r.text(), "slow");
    // And no new connection is accepted afterwards.
    thread::sleep(Duration::from_millis(300));
    assert!(http_get(port, "/", "a").is_err());
}

/// A backend that answers every request with a small keep-alive response and counts
/// the connections it accepted and those the other side closed (a read found EOF).
struct CountingBackend {
    port: u16,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl CountingBackend {
    fn start() -> CountingBackend {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (acc, clo) = (accepted.clone(), closed.clone());
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                acc.fetch_add(1, Ordering::SeqCst);
                let clo = clo.clone();
                thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                clo.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                            Err(_) => return,
                        }
                        // Requests here are GETs without a body: one per blank line.
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{port}",
                                port.to_string().len()
                            );
                            if s.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        CountingBackend {
            port,
            accepted,
            closed,
        }
    }
}

/// Polls `done` until it holds or `limit` passes; true when it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn reload_closes_pooled_connections_of_a_removed_peer() {
    let removed = CountingBackend::start();
    let kept = backends(1)[0];
    let port = free_port();
    let mut proxy = Proxy::start(&conf(&[port], &[removed.port]));
    for _ in 0..4 {
        let r = http_get(port, "/", "a").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), removed.port.to_string());
    }
    // `keepalive 16`: the upstream connections stay open, idle in the workers' pools.
    let accepted = removed.accepted.load(Ordering::SeqCst);
    assert!(accepted >= 1);
    assert_eq!(removed.closed.load(Ordering::SeqCst), 0);

    proxy.reload_with(&conf(&[port], &[kept]));
    // Well inside the 60 s upstream keepalive_timeout, so only the purge closes them,
    // on the worker that served the requests as on one that serves nothing now.
    let all_closed = wait_until(Duration::from_secs(10), || {
        removed.closed.load(Ordering::SeqCst) == removed.accepted.load(Ordering::SeqCst)
    });
    assert!(
        all_closed,
        "{} of {} pooled connections to the removed peer closed\n{}",
        removed.closed.load(Ordering::SeqCst),
        removed.accepted.load(Ordering::SeqCst),
        proxy.diagnostics()
    );
    assert_eq!(
        http_get(port, "/", "a").unwrap().backend_port(),
        Some(kept),
        "the new configuration is in force"
    );
}
