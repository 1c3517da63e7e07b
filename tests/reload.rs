//! Hot reload under load: configuration changes (new upstream sets, a new listener,
//! an invalid file) while clients keep sending requests on keep-alive and new
//! connections. No request may fail.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, http_get, wait_refused, wait_until, KeepAlive, Proxy};

/// Backends answering `<h1>Using port N</h1>`, on a runtime in a background thread.
fn backends(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n).map(|_| common::local_listener()).collect();
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

/// Reloads `proxy` with `make(extra)`, a config that may add the listener
/// `extra`. That port comes from `free_port` and can be taken before the proxy
/// binds it (see the harness doc): then another is picked and the reload retried.
fn reload_adding(proxy: &mut Proxy, extra: &mut u16, make: impl Fn(u16) -> String) {
    for _ in 0..common::START_ATTEMPTS {
        match proxy.try_reload_with(&make(*extra)) {
            Ok(()) => return,
            Err(why) if why.contains("already in use") || why.contains("shared") => {
                eprintln!("port {extra} was taken, reloading with another: {why}");
                *extra = free_port();
            }
            Err(why) => panic!("reload rejected: {why}\n{}", proxy.diagnostics()),
        }
    }
    panic!(
        "the added listen port was taken {} times",
        common::START_ATTEMPTS
    );
}

#[test]
fn reloads_under_load_drop_nothing() {
    let b = backends(3);
    let (mut proxy, [port]) = Proxy::start_on(|[port]| conf(&[port], &[b[0], b[1]]));
    let mut extra = free_port();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // The clients run until told to stop (or, should the test hang, for 120 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut clients = Vec::new();
    // Two keep-alive clients and two that open a connection per request.
    for kind in 0..4 {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        clients.push(thread::spawn(move || {
            let mut ka = KeepAlive::new(port, "localhost");
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = if kind < 2 {
                    ka.get("/")
                } else {
                    http_get(port, "/", "localhost")
                };
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status)),
                    Err(e) => failures.lock().unwrap().push(format!("error {e}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Waits until the load has done `n` more requests.
    let progress = |n: usize| {
        let target = done.load(Ordering::Relaxed) + n;
        wait_until(
            Duration::from_secs(30),
            &format!("{n} more requests through the proxy"),
            || (done.load(Ordering::Relaxed) >= target).then_some(()),
        );
    };

    let valid = |i: usize, extra: u16| match i % 3 {
        0 => conf(&[port], &[b[1], b[2]]),
        1 => conf(&[port, extra], &[b[0], b[2]]),
        _ => conf(&[port], &[b[0], b[1], b[2]]),
    };
    let mut reloads = 0;
    for i in 0..10 {
        // Each reload lands in the middle of traffic.
        progress(150);
        if i == 4 {
            // An invalid file: the running configuration must stay. (`-s reload`
            // itself refuses a broken file, as nginx's does, so signal directly.)
            proxy.write_conf(
                &conf(&[port], &[b[2]]).replace("access_log off;", "bogus_directive on;"),
            );
            let outcome = proxy.sighup();
            assert!(
                outcome
                    .as_ref()
                    .is_err_and(|line| line.contains("bogus_directive")),
                "{outcome:?}\n{}",
                proxy.diagnostics()
            );
        } else {
            reload_adding(&mut proxy, &mut extra, |extra| valid(i, extra));
        }
        reloads += 1;
    }
    // Keep the load running on the last configuration, to 2,000 requests at least.
    progress(300);
    wait_until(Duration::from_secs(30), "2,000 requests in all", || {
        (done.load(Ordering::Relaxed) >= 2_000).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let total = done.load(Ordering::Relaxed);
    eprintln!(
        "reload under load: {reloads} reloads, {total} requests, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );

    // The last configuration (reload 10: valid(9), backends 1 and 2) is in force.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(http_get(port, "/", "a").unwrap().backend_port().unwrap());
    }
    assert_eq!(seen, [b[1], b[2]].into_iter().collect());

    // A listener added by a reload accepts; one removed by a later reload is closed.
    reload_adding(&mut proxy, &mut extra, |extra| valid(1, extra));
    assert_eq!(http_get(extra, "/", "a").unwrap().status, 200);
    proxy.reload_with(&valid(0, extra));
    wait_refused(
        extra,
        Duration::from_secs(5),
        "the listener removed by the reload closes",
    );
    // Only b1 and b2 now.
    for _ in 0..20 {
        let p = http_get(port, "/", "a").unwrap().backend_port().unwrap();
        assert!(p == b[1] || p == b[2], "{p}");
    }
}

#[test]
fn graceful_stop_finishes_requests_in_progress() {
    // A backend that says when a request has arrived and answers it only when
    // told to: the request is in progress for as long as the test wants.
    let listener = common::local_listener();
    let bport = listener.local_addr().unwrap().port();
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let Some(Ok(mut s)) = listener.incoming().next() else {
            return;
        };
        use std::io::{Read, Write};
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = arrived_tx.send(());
        if release_rx.recv_timeout(Duration::from_secs(30)).is_ok() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
        }
    });
    let (mut proxy, [port]) = Proxy::start_on(|[port]| conf(&[port], &[bport]));
    let pending = thread::spawn(move || http_get(port, "/", "a"));
    arrived
        .recv_timeout(Duration::from_secs(10))
        .expect("the request reaches the backend");

    let mark = proxy.error_log().len();
    proxy.signal(nix::sys::signal::Signal::SIGQUIT);
    proxy.wait_log(mark, "gracefully shutting down", Duration::from_secs(5));
    // No new connection is accepted while the request is still in progress.
    wait_refused(
        port,
        Duration::from_secs(5),
        "a graceful stop closes the listeners",
    );
    release.send(()).expect("backend waiting");
    let r = pending
        .join()
        .unwrap()
        .expect("the request in progress completes");
    assert_eq!(r.text(), "slow");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after the last request: {status:?}\n{}",
        proxy.diagnostics()
    );
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
fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
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
    let all_closed = poll_until(Duration::from_secs(10), || {
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
