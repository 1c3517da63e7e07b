//! End to end: the admin listener (`/status`, `/metrics`, token, runtime peer
//! changes under load) and active health checks, against the real binary.

mod admin_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_support::{wait_for, Backend};
use common::{free_port, http_get, http_request, KeepAlive, Proxy};
use serde_json::Value;

fn conf(listen: u16, admin: u16, backends: &[u16], extra_http: &str, location: &str) -> String {
    let servers: String = backends
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  ferrolb_admin 127.0.0.1:{admin}{extra_http};\n  upstream app {{\n{servers}  }}\n  server {{\n    listen 127.0.0.1:{listen};\n    location / {{\n      proxy_pass http://app;\n{location}    }}\n  }}\n}}\n"
    )
}

fn status(admin: u16) -> Value {
    let r = http_get(admin, "/status", "127.0.0.1").expect("GET /status");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("status is JSON")
}

fn peer(v: &Value, port: u16) -> Option<Value> {
    v["upstreams"]["app"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["addr"] == format!("127.0.0.1:{port}"))
        .cloned()
}

fn json_request(admin: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = http_request(
        admin,
        method,
        path,
        "127.0.0.1",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn status_schema_and_metrics() {
    let backends: Vec<Backend> = (0..2).map(|_| Backend::start()).collect();
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let (proxy, [listen, admin]) =
        Proxy::start_on(|[listen, admin]| conf(listen, admin, &ports, "", ""));
    for _ in 0..10 {
        let r = http_get(listen, "/", "localhost").expect("proxied GET");
        assert_eq!(r.status, 200);
    }
    // Statistics are recorded just after the response is relayed: wait for the last.
    let v = wait_for(Duration::from_secs(2), || {
        let v = status(admin);
        let peers = v["upstreams"]["app"]["peers"].as_array()?.clone();
        peers
            .iter()
            .all(|p| p["requests"] == p["responses"]["2xx"])
            .then_some(v)
    })
    .expect("statistics settle");
    let peers = v["upstreams"]["app"]["peers"]
        .as_array()
        .expect("peers array");
    assert_eq!(peers.len(), 2, "{v}");
    let mut total = 0;
    for p in peers {
        for (k, kind) in [
            ("addr", "string"),
            ("name", "string"),
            ("state", "string"),
            ("weight", "number"),
            ("in_flight", "number"),
            ("requests", "number"),
            ("failures", "number"),
            ("responses", "object"),
            ("health", "object"),
            ("latency_ms", "object"),
            ("bytes_sent", "number"),
            ("bytes_received", "number"),
        ] {
            let field = &p[k];
            let ok = match kind {
                "string" => field.is_string(),
                "number" => field.is_u64(),
                _ => field.is_object(),
            };
            assert!(ok, "{k} should be a {kind}: {p}");
        }
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            assert!(p["responses"][class].is_u64(), "{p}");
        }
        for k in ["status", "last_check_ms_ago", "consecutive_fails"] {
            assert!(p["health"].get(k).is_some(), "{p}");
        }
        assert!(
            p["latency_ms"]["p50"].is_u64() && p["latency_ms"]["p99"].is_u64(),
            "{p}"
        );
        assert_eq!(p["state"], "up");
        assert_eq!(p["requests"], p["responses"]["2xx"]);
        assert!(p["bytes_received"].as_u64() > Some(0));
        total += p["requests"].as_u64().unwrap_or(0);
    }
    assert_eq!(total, 10, "{v}");

    let m = http_get(admin, "/metrics", "127.0.0.1").expect("GET /metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = m.text();
    let sum: f64 = text
        .lines()
        .filter(|l| l.starts_with("ferrolb_upstream_responses_total{") && l.contains("2xx"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(sum, 10.0, "{text}");
    assert!(text.contains("# TYPE ferrolb_upstream_response_seconds histogram"));

    let page = http_get(admin, "/", "127.0.0.1").expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("data-peer"));
    drop(proxy);
}

#[test]
fn token_auth() {
    let b = Backend::start();
    let (_proxy, [_listen, admin]) =
        Proxy::start_on(|[listen, admin]| conf(listen, admin, &[b.port], " token=s3cret", ""));
    let r = http_get(admin, "/status", "127.0.0.1").expect("GET");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = http_request(
        admin,
        "GET",
        "/status",
        "127.0.0.1",
        &[("Authorization", "Bearer wrong")],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 401);
    let r = http_request(
        admin,
        "GET",
        "/status",
        "127.0.0.1",
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 200);
    let r = http_get(admin, "/metrics?access_token=s3cret", "127.0.0.1").expect("GET");
    assert_eq!(r.status, 200);
}

/// A client loop (keep-alive and new connections) runs while one of three peers
/// is drained and then deleted through the API, and a new one is added: no
/// request fails, a draining peer gets no new requests, a deleted one none at
/// all, and the added one gets its share.
#[test]
fn drain_then_delete_under_load() {
    let backends: Vec<Backend> = (0..3).map(|_| Backend::start()).collect();
    let ports: Vec<u16> = backends.iter().map(|b| b.port).collect();
    let (proxy, [listen, admin]) =
        Proxy::start_on(|[listen, admin]| conf(listen, admin, &ports, "", ""));

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The clients run until told to stop (or, should the test hang, for 120 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut ka = KeepAlive::new(listen, "localhost");
                let mut errors = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = if (i + c) % 2 == 0 {
                        ka.get("/")
                    } else {
                        http_get(listen, "/", "localhost")
                    };
                    match r {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("status {}", r.status));
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(e.to_string());
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                errors
            })
        })
        .collect();
    // Waits until the client loop has made `n` more requests.
    let progress = |n: u64, when: &str| {
        let target = done.load(Ordering::Relaxed) + n;
        wait_for(Duration::from_secs(20), || {
            (done.load(Ordering::Relaxed) >= target).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the client loop did not make {n} more requests {when}\n{}",
                proxy.diagnostics()
            )
        });
    };

    let victim = ports[0];
    progress(100, "before the drain");
    let (code, body) = json_request(
        admin,
        "PATCH",
        &format!("/upstreams/app/peers/127.0.0.1:{victim}"),
        r#"{"state":"drain"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "draining");
    // A request of each client may have picked the peer just before the change.
    let hits_at_drain = backends[0].hits();
    progress(100, "while the peer drains");
    assert_eq!(
        peer(&status(admin), victim).expect("still listed")["state"],
        "draining"
    );
    assert!(
        backends[0].hits() <= hits_at_drain + 2,
        "the draining peer got new requests: {} after {hits_at_drain}",
        backends[0].hits()
    );
    let (code, body) = json_request(
        admin,
        "DELETE",
        &format!("/upstreams/app/peers/127.0.0.1:{victim}"),
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(peer(&status(admin), victim).is_none());

    // Add a new peer while the loop still runs: it gets requests.
    let extra = Backend::start();
    let (code, body) = json_request(
        admin,
        "POST",
        "/upstreams/app/peers",
        &format!(r#"{{"addr":"127.0.0.1:{}","weight":1}}"#, extra.port),
    );
    assert_eq!(code, 201, "{body}");
    wait_for(Duration::from_secs(20), || (extra.hits() > 0).then_some(()))
        .unwrap_or_else(|| panic!("the added peer got no requests\n{}", proxy.diagnostics()));
    progress(100, "after the changes");

    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for c in clients {
        errors.extend(c.join().expect("client thread"));
    }
    let total = done.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{errors:?} of {total} requests\n{}",
        proxy.diagnostics()
    );
    assert!(
        backends[0].hits() <= hits_at_drain + 2,
        "the drained and deleted peer kept getting requests"
    );
}

/// A backend whose `/health/` starts answering 500 leaves rotation after `fails`
/// checks and comes back after `passes`.
#[test]
fn health_check_takes_peer_out_and_back() {
    let a = Backend::start();
    let b = Backend::start();
    let (proxy, [listen, admin]) = Proxy::start_on(|[listen, admin]| {
        conf(
            listen,
            admin,
            &[a.port, b.port],
            "",
            "      health_check interval=200ms fails=2 passes=2 uri=/health/;\n",
        )
    });
    wait_for(Duration::from_secs(5), || {
        (peer(&status(admin), a.port)?["health"]["status"] == "healthy").then_some(())
    })
    .expect("first checks pass");

    a.sick.store(true, Ordering::Relaxed);
    let p = wait_for(Duration::from_secs(5), || {
        let p = peer(&status(admin), a.port)?;
        (p["state"] == "unhealthy").then_some(p)
    })
    .unwrap_or_else(|| panic!("peer never became unhealthy\n{}", proxy.diagnostics()));
    assert!(p["health"]["consecutive_fails"].as_u64() >= Some(2), "{p}");
    assert_eq!(p["health"]["last_status"], 500);
    proxy.wait_log(
        0,
        "is unhealthy after 2 failed health check(s)",
        Duration::from_secs(5),
    );

    // Out of rotation: every request goes to b.
    let before = a.hits();
    for _ in 0..20 {
        let r = http_get(listen, "/", "localhost").expect("GET");
        assert_eq!(r.backend_port(), Some(b.port));
    }
    assert_eq!(a.hits(), before);

    a.sick.store(false, Ordering::Relaxed);
    let p = wait_for(Duration::from_secs(5), || {
        let p = peer(&status(admin), a.port)?;
        (p["state"] == "up").then_some(p)
    })
    .expect("peer comes back");
    assert!(p["health"]["consecutive_passes"].as_u64() >= Some(2), "{p}");
    let ports: Vec<Option<u16>> = (0..10)
        .map(|_| {
            http_get(listen, "/", "localhost")
                .expect("GET")
                .backend_port()
        })
        .collect();
    assert!(ports.contains(&Some(a.port)), "{ports:?}");
}

/// When every peer fails its checks, requests still go to them (logged once).
#[test]
fn all_unhealthy_keeps_routing() {
    let a = Backend::start();
    let (proxy, [listen, admin]) = Proxy::start_on(|[listen, admin]| {
        conf(
            listen,
            admin,
            &[a.port],
            "",
            "      health_check interval=100ms uri=/health/;\n",
        )
    });
    a.sick.store(true, Ordering::Relaxed);
    wait_for(Duration::from_secs(5), || {
        (status(admin)["upstreams"]["app"]["all_unhealthy"] == true).then_some(())
    })
    .expect("all unhealthy");
    let r = http_get(listen, "/", "localhost").expect("GET");
    assert_eq!(r.status, 200);
    assert_eq!(
        proxy
            .error_log()
            .matches("failed its health checks: routing to all of them")
            .count(),
        1
    );
}

/// `--admin ADDR` on the command line enables the listener without the directive
/// and wins over it.
#[test]
fn admin_flag_wins() {
    let b = Backend::start();
    let dir = common::fresh_temp_dir("admin-flag");
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    let path = dir.join("nginx.conf");
    // The ports are ferrolb's to bind: a start that finds one taken is retried on
    // fresh ones (see "Ports" in tests/common/mod.rs).
    for attempt in 1..=common::START_ATTEMPTS {
        let (listen, configured, flag) = (free_port(), free_port(), free_port());
        let conf = conf(listen, configured, &[b.port], "", "");
        std::fs::write(
            &path,
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n{conf}",
                d = dir.display()
            ),
        )
        .expect("write conf");
        let _ = std::fs::remove_file(dir.join("error.log"));
        let mut child = std::process::Command::new(common::proxy_bin())
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(&path)
            .arg("--admin")
            .arg(format!("127.0.0.1:{flag}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ferrolb");
        let pid = child.id();
        let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        // Up: the start line (written once every listener is bound), or gone.
        let up = wait_for(Duration::from_secs(10), || {
            if log().contains(" started, ") {
                return Some(true);
            }
            child.try_wait().ok().flatten().map(|_| false)
        });
        let owned = |port| common::listener_of(port, pid) == common::Listener::Ours;
        if up != Some(true) || !owned(flag) || !owned(listen) {
            let _ = child.kill();
            let _ = child.wait();
            let log = log();
            if attempt < common::START_ATTEMPTS
                && (log.contains("already in use") || up == Some(true))
            {
                eprintln!("a port was taken, starting again on others:\n{log}");
                continue;
            }
            panic!("ferrolb --admin did not start (up: {up:?})\n{log}");
        }
        let r = http_get(flag, "/status", "127.0.0.1");
        let configured_used = owned(configured);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.expect("GET /status").status, 200);
        assert!(
            !configured_used,
            "the configured address should not be used"
        );
        return;
    }
}
