//! Acceptance tests: the article's scenario ("How to configure load balancing for
//! Django service") with real `manage.py runserver` backends.
//!
//! Run through `scripts/test.sh` (it provides Django). The harness and these
//! expectations were validated against nginx 1.22.1:
//! `FERROLB_TEST_BIN=/usr/sbin/nginx cargo test --test django`.
//! What nginx did is noted at each step; the assertions encode what ferrolb must
//! do (no failed GET while a backend is down, every POST delivered exactly once).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{http_get, http_post, Django, Proxy};

/// The examples/nginx.conf shape, with `fail_timeout=3s` so the
/// recovery step is quick. `proxy_next_upstream error timeout;` is nginx's
/// default, spelled out.
fn article_conf(listen: u16, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} fail_timeout=3s;\n"))
        .collect();
    format!(
        "events {{}}\n\
         http {{\n\
         \x20 upstream myproject {{\n\
         {servers}\
         \x20 }}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{listen};\n\
         \x20   server_name localhost;\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://myproject;\n\
         \x20     proxy_set_header Host $host;\n\
         \x20     proxy_next_upstream error timeout;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Starts 4 runservers and the proxy in front of them.
fn setup() -> (Vec<Django>, Proxy, u16) {
    let djangos = Django::start_n(4);
    let ports: Vec<u16> = djangos.iter().map(|d| d.port).collect();
    let (proxy, [listen]) = Proxy::start_on(|[listen]| article_conf(listen, &ports));
    (djangos, proxy, listen)
}

/// One GET of the article's page through the proxy; returns the backend port
/// or a description of what went wrong.
fn get_port(listen: u16) -> Result<u16, String> {
    let resp = http_get(listen, "/test_load_banlance/", "localhost").map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("status {}: {}", resp.status, resp.text()));
    }
    let port = resp
        .backend_port()
        .ok_or_else(|| format!("no port in body {:?}", resp.text()))?;
    let expected = format!("<h1>Using port {port}<h1>");
    if resp.text() != expected {
        return Err(format!("body {:?}, expected {expected:?}", resp.text()));
    }
    Ok(port)
}

/// a. round robin over all four, b. one stopped: no failed GET and never its
/// port, c. restarted: back in rotation within fail_timeout + 2 s.
#[test]
fn article_scenario_round_robin_failover_and_recovery() {
    let (mut djangos, proxy, listen) = setup();
    let all: BTreeSet<u16> = djangos.iter().map(|d| d.port).collect();

    // a. 40 GETs reach all 4 ports, each 200 with the article's body.
    // nginx: plain round robin, 10 hits each.
    let mut hits: BTreeMap<u16, u32> = BTreeMap::new();
    for i in 0..40 {
        let port =
            get_port(listen).unwrap_or_else(|e| panic!("GET #{i}: {e}\n{}", proxy.diagnostics()));
        assert!(
            all.contains(&port),
            "GET #{i} answered by unknown port {port}"
        );
        *hits.entry(port).or_default() += 1;
    }
    assert_eq!(
        hits.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "40 GETs did not reach every backend: {hits:?}"
    );

    // b. Stop one like Ctrl-C in its terminal; the next 100 GETs all succeed
    // and none is answered by it. nginx: the first request that picks the dead
    // peer gets "connect() failed (111: Connection refused)", is passed to the
    // next peer (proxy_next_upstream error) and the dead peer is skipped for
    // fail_timeout; the client never sees an error.
    let stopped = djangos[1].port;
    djangos[1].stop();
    let mut failures = Vec::new();
    for i in 0..100 {
        match get_port(listen) {
            Ok(port) if port == stopped => {
                failures.push(format!("GET #{i} answered by stopped {port}"))
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("GET #{i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 100 GETs failed with backend {stopped} down: {failures:?}\n{}",
        failures.len(),
        proxy.diagnostics()
    );

    // c. Start it again: it must be back in rotation within fail_timeout (3 s)
    // + 2 s. nginx: seen again after at most fail_timeout (~3 s).
    djangos[1].start_again();
    let restarted_at = Instant::now();
    let deadline = restarted_at + Duration::from_secs(3 + 2);
    let mut seen = false;
    let mut requests = 0;
    while Instant::now() < deadline && requests < 1000 {
        requests += 1;
        match get_port(listen) {
            Ok(port) if port == stopped => {
                seen = true;
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("GET failed while {stopped} was restarting: {e}"),
        }
        sleep(Duration::from_millis(20));
    }
    assert!(
        seen,
        "restarted backend {stopped} not seen within 5 s ({requests} GETs)\n{}",
        proxy.diagnostics()
    );
    eprintln!(
        "backend {stopped} back in rotation after {:?} ({requests} GETs)",
        restarted_at.elapsed()
    );
}

/// d. 20 POSTs with unique X-Request-Ids while one backend is down: all 200,
/// each id logged exactly once across all backends. nginx: a refused connect
/// means the request was never sent, so it is passed to the next peer even for
/// a POST (non-idempotent requests are only not retried once sent); every
/// POST was delivered exactly once.
#[test]
fn posts_are_delivered_exactly_once_while_a_backend_is_down() {
    let (mut djangos, proxy, listen) = setup();
    djangos[2].stop();

    let ids: Vec<String> = (0..20)
        .map(|i| format!("ferrolb-post-{}-{i}", std::process::id()))
        .collect();
    for id in &ids {
        let resp = http_post(
            listen,
            "/post/",
            "localhost",
            &[("X-Request-Id", id.as_str())],
            b"article=load-balancing",
        )
        .unwrap_or_else(|e| panic!("POST {id}: {e}\n{}", proxy.diagnostics()));
        assert_eq!(
            resp.status,
            200,
            "POST {id}: {}\n{}",
            resp.text(),
            proxy.diagnostics()
        );
        let port = resp.backend_port().expect("port in POST body");
        assert_ne!(
            port, djangos[2].port,
            "POST {id} answered by the stopped backend"
        );
        assert_eq!(resp.text(), format!("<h1>Posted to port {port}</h1>"));
    }

    let mut count: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for d in &djangos {
        for id in d.posted_ids() {
            count.entry(id).or_default().push(d.port);
        }
    }
    for id in &ids {
        let got = count.get(id).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            1,
            "POST {id} reached backends {got:?} (want exactly one)"
        );
    }
    assert_eq!(
        count.len(),
        ids.len(),
        "unexpected POSTs logged: {:?}",
        count
            .keys()
            .filter(|k| !ids.contains(k))
            .collect::<Vec<_>>()
    );
    let used: BTreeSet<u16> = count.values().flatten().copied().collect();
    assert_eq!(
        used.len(),
        3,
        "POSTs should spread over the 3 live backends: {count:?}"
    );
}

/// e. `-s reload` with a smaller upstream takes effect without failed requests,
/// and f. a keep-alive client connection serves many requests. nginx: after the
/// reload the new workers answer from the 2 remaining backends (once every old
/// worker has logged "gracefully shutting down", see `Proxy::reload`); all 20
/// keep-alive GETs used one client connection, spread over all backends.
#[test]
fn reload_switches_upstreams_and_client_keepalive_works() {
    let (djangos, mut proxy, listen) = setup();

    let mut client = common::KeepAlive::new(listen, "localhost");
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let resp = client
            .get("/test_load_banlance/")
            .unwrap_or_else(|e| panic!("keep-alive GET #{i}: {e}\n{}", proxy.diagnostics()));
        assert_eq!(resp.status, 200, "keep-alive GET #{i}: {}", resp.text());
        seen.insert(resp.backend_port().expect("port in body"));
    }
    assert_eq!(
        client.connections, 1,
        "the proxy closed a keep-alive client connection"
    );
    assert_eq!(
        seen.len(),
        4,
        "keep-alive GETs did not reach every backend: {seen:?}"
    );
    drop(client);

    let kept: BTreeSet<u16> = djangos[..2].iter().map(|d| d.port).collect();
    let kept_ports: Vec<u16> = kept.iter().copied().collect();

    // GETs keep coming while the reload happens; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let during = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) && outcomes.len() < 5_000 {
                outcomes.push(get_port(listen));
            }
            outcomes
        })
    };
    proxy.reload_with(&article_conf(listen, &kept_ports));
    stop.store(true, Ordering::Relaxed);
    let during = during.join().expect("GET loop");
    let failed: Vec<&String> = during.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed during the reload: {failed:?}\n{}",
        failed.len(),
        during.len(),
        proxy.diagnostics()
    );

    // `reload_with` returns once the new configuration serves every new
    // connection: from now on only the kept backends answer.
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let port = get_port(listen)
            .unwrap_or_else(|e| panic!("GET #{i} after the reload: {e}\n{}", proxy.diagnostics()));
        assert!(
            kept.contains(&port),
            "GET #{i} after the reload answered by {port}, not one of {kept:?}\n{}",
            proxy.diagnostics()
        );
        seen.insert(port);
    }
    assert_eq!(
        seen, kept,
        "20 GETs after the reload did not reach both kept backends"
    );
}

/// g. A backend slower than `proxy_read_timeout` gets the client a 504 soon
/// after the timeout (not after the backend's 6 s), and the proxy keeps
/// serving. `timeout` is left out of `proxy_next_upstream` so exactly one
/// backend is tried. nginx: "upstream timed out (110: Connection timed out)
/// while reading response header from upstream", 504 after ~1 s.
#[test]
fn slow_backend_gets_504_after_proxy_read_timeout() {
    let djangos = Django::start_n(2);
    let ports: Vec<u16> = djangos.iter().map(|d| d.port).collect();
    let (proxy, [listen]) = Proxy::start_on(|[listen]| {
        article_conf(listen, &ports).replace(
            "proxy_next_upstream error timeout;",
            "proxy_next_upstream error;\n      proxy_read_timeout 1s;",
        )
    });

    let started = Instant::now();
    let resp = http_get(listen, "/slow/?s=6", "localhost")
        .unwrap_or_else(|e| panic!("GET /slow/: {e}\n{}", proxy.diagnostics()));
    let took = started.elapsed();
    assert_eq!(
        resp.status,
        504,
        "slow GET: {}\n{}",
        resp.text(),
        proxy.diagnostics()
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}, want about proxy_read_timeout (1 s)"
    );

    // A fast request still works (and proxy_read_timeout does not cut it).
    let resp = http_get(listen, "/slow/?s=0.2", "localhost").expect("GET /slow/?s=0.2");
    assert_eq!(resp.status, 200, "{}", resp.text());
    get_port(listen).unwrap_or_else(|e| panic!("GET after the timeout: {e}"));
}

/// h. Upstream keep-alive (`keepalive` + `proxy_http_version 1.1` + an empty
/// `Connection`) with runserver, which keeps HTTP/1.1 connections open: when a
/// backend exits, its idle pooled connections die with it, and no client
/// request may fail because of a stale pooled connection. nginx: notices the
/// close of idle cached connections and drops them; 0 failures.
#[test]
fn upstream_keepalive_survives_backend_restart() {
    let mut djangos = Django::start_n(3);
    let ports: Vec<u16> = djangos.iter().map(|d| d.port).collect();
    let (proxy, [listen]) = Proxy::start_on(|[listen]| {
        let conf = article_conf(listen, &ports)
            .replace("  }\n  server {", "    keepalive 8;\n  }\n  server {")
            .replace(
                "proxy_next_upstream error timeout;",
                "proxy_next_upstream error timeout;\n      proxy_http_version 1.1;\n      \
                 proxy_set_header Connection \"\";",
            );
        assert!(conf.contains("keepalive 8;"), "{conf}");
        conf
    });

    let run = |what: &str, n: usize, failures: &mut Vec<String>| {
        for i in 0..n {
            if let Err(e) = get_port(listen) {
                failures.push(format!("{what} GET #{i}: {e}"));
            }
        }
    };
    let mut failures = Vec::new();
    run("warm-up", 30, &mut failures);
    djangos[0].stop();
    run("one backend down", 60, &mut failures);
    djangos[0].start_again();
    djangos[1].stop();
    run("another backend down", 60, &mut failures);
    assert!(
        failures.is_empty(),
        "{} GETs failed with upstream keepalive: {failures:?}\n{}",
        failures.len(),
        proxy.diagnostics()
    );
}
