//! Admin API unit tests over a runtime built from a config text (no sockets).

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::*;
use crate::config::{self, LoadOptions};
use crate::server::{Runtime, Shared};
use crate::upstream::{now, PeerRegistry, Tried};

fn shared() -> Shared {
    shared_with(
        "server 127.0.0.1:8001; server 127.0.0.1:8002 weight=2; server 127.0.0.1:8003 backup;",
    )
}

fn shared_with(servers: &str) -> Shared {
    let text = format!(
        "events {{}}\nhttp {{\n access_log off;\n\
        upstream app {{ {servers} }}\n\
        server {{ listen 127.0.0.1:18080; location / {{ proxy_pass http://app; }} }}\n}}\n"
    );
    let opts = LoadOptions {
        prefix: std::env::temp_dir(),
        globals: None,
        text: Some(text),
        is_root: false,
        ..Default::default()
    };
    let config = config::load(Path::new("t.conf"), &opts).expect("config");
    let registry = PeerRegistry::new();
    let rt = Runtime::build(config, &registry).expect("runtime");
    Shared::new(rt, registry)
}

fn get(s: &Shared, target: &str) -> Reply {
    handle(s, None, "GET", target, None, b"")
}

fn json(r: &Reply) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("json body")
}

#[test]
fn status_json_shape() {
    let s = shared();
    let p = s.runtime.load().upstreams[0].peers[0].state.clone();
    p.record_response(200, Duration::from_millis(3), 100, 50);
    p.record_response(503, Duration::from_millis(700), 10, 50);
    let r = get(&s, "/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let v = json(&r);
    let peers = v["upstreams"]["app"]["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    let p0 = &peers[0];
    assert_eq!(p0["addr"], "127.0.0.1:8001");
    assert_eq!(p0["state"], "up");
    assert_eq!(peers[1]["weight"], 2);
    assert_eq!(peers[2]["state"], "backup");
    for k in [
        "name",
        "in_flight",
        "requests",
        "failures",
        "bytes_sent",
        "bytes_received",
    ] {
        assert!(p0.get(k).is_some(), "missing {k}");
    }
    assert_eq!(p0["responses"]["2xx"], 1);
    assert_eq!(p0["responses"]["5xx"], 1);
    assert_eq!(p0["responses"]["1xx"], 0);
    assert_eq!(p0["latency_ms"]["p50"], 4);
    assert_eq!(p0["latency_ms"]["p99"], 1024);
    assert_eq!(p0["bytes_received"], 110);
    assert_eq!(p0["bytes_sent"], 100);
    assert_eq!(p0["health"]["status"], "unknown");
    assert!(p0["health"]["last_check_ms_ago"].is_null());
    assert_eq!(p0["health"]["consecutive_fails"], 0);
    assert!(peers[1]["latency_ms"]["p50"].is_null());
}

/// A small Prometheus text-format (0.0.4) checker: every sample line is
/// `name{labels} value`, belongs to a family declared by `# TYPE` before it, and
/// histogram buckets are cumulative and end with `+Inf` = `_count`.
fn check_prometheus_text(text: &str) -> Vec<(String, String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            let (kind, name) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            assert!(kind == "HELP" || kind == "TYPE", "bad comment {line:?}");
            assert!(name_ok(name), "bad name in {line:?}");
            if kind == "TYPE" {
                let t = it.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line:?}"
                );
                types.push((name.to_owned(), t.to_owned()));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("labels end with }");
                for pair in l.split(',') {
                    let (k, v) = pair.split_once('=').expect("label k=v");
                    assert!(name_ok(k), "bad label name {k:?}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "unquoted {v:?}");
                }
                (n, l)
            }
            None => (series, ""),
        };
        assert!(name_ok(name), "bad metric name {name:?}");
        let family = types
            .iter()
            .rev()
            .find(|(f, t)| {
                name == f
                    || (t == "counter" && name.strip_suffix("_total") == Some(f))
                    || (t == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(f)))
            })
            .unwrap_or_else(|| panic!("sample {name} before its # TYPE"));
        let _ = family;
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    // Histogram buckets: non-decreasing per series, +Inf == _count.
    let mut last: Option<(String, f64)> = None;
    for (name, labels, v) in &samples {
        if name.ends_with("_bucket") {
            let series: String = labels
                .split(',')
                .filter(|p| !p.starts_with("le="))
                .collect::<Vec<_>>()
                .join(",");
            if let Some((s, prev)) = &last {
                if *s == series {
                    assert!(v >= prev, "buckets not cumulative: {labels}");
                }
            }
            last = Some((series.clone(), *v));
            if labels.contains("le=\"+Inf\"") {
                let count_name = name.replace("_bucket", "_count");
                let count = samples
                    .iter()
                    .find(|(n, l, _)| *n == count_name && *l == series)
                    .map(|(_, _, v)| *v);
                assert_eq!(count, Some(*v), "+Inf bucket != _count for {series}");
            }
        }
    }
    samples
}

#[test]
fn metrics_text_parses() {
    let s = shared();
    let p = s.runtime.load().upstreams[0].peers[1].state.clone();
    for ms in [1, 5, 5, 40, 3000] {
        p.record_response(200, Duration::from_millis(ms), 1, 1);
    }
    p.record_response(404, Duration::from_millis(2), 1, 1);
    let r = get(&s, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).expect("utf-8");
    let samples = check_prometheus_text(&text);
    let find = |name: &str, want: &[&str]| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && want.iter().all(|w| l.contains(w)))
            .map(|(_, _, v)| *v)
    };
    let peer = "peer=\"127.0.0.1:8002\"";
    assert_eq!(
        find(
            "ferrolb_upstream_responses_total",
            &[peer, "status=\"2xx\""]
        ),
        Some(5.0)
    );
    assert_eq!(
        find(
            "ferrolb_upstream_responses_total",
            &[peer, "status=\"4xx\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        find("ferrolb_upstream_response_seconds_count", &[peer]),
        Some(6.0)
    );
    assert_eq!(
        find(
            "ferrolb_upstream_response_seconds_bucket",
            &[peer, "le=\"0.008\""]
        ),
        Some(4.0)
    );
    assert_eq!(find("ferrolb_upstream_healthy", &[peer]), Some(1.0));
    assert_eq!(find("ferrolb_upstream_in_flight", &[peer]), Some(0.0));
}

#[test]
fn token_required_when_configured() {
    let s = shared();
    let no = handle(&s, Some("k"), "GET", "/status", None, b"");
    assert_eq!(no.status, 401);
    let wrong = handle(&s, Some("k"), "GET", "/status", Some(b"Bearer x"), b"");
    assert_eq!(wrong.status, 401);
    let ok = handle(&s, Some("k"), "GET", "/status", Some(b"Bearer k"), b"");
    assert_eq!(ok.status, 200);
    let query = handle(&s, Some("k"), "GET", "/?access_token=k", None, b"");
    assert_eq!(query.status, 200);
    assert!(String::from_utf8_lossy(&query.body).contains("data-peer"));
}

#[test]
fn runtime_peer_changes() {
    let s = shared();
    let patch = |addr: &str, body: &str| {
        handle(
            &s,
            None,
            "PATCH",
            &format!("/upstreams/app/peers/{addr}"),
            None,
            body.as_bytes(),
        )
    };
    // Drain: pick never returns it.
    let r = patch("127.0.0.1:8001", r#"{"state":"drain"}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["state"], "draining");
    let rt = s.runtime.load_full();
    for _ in 0..20 {
        let i = rt.upstreams[0].pick(&Tried::new(3), now()).expect("a peer");
        assert_eq!(i, 1);
        rt.upstreams[0].report(i, crate::upstream::Outcome::Success, now());
    }
    // Weight change rebuilds the runtime; the drain (peer state) survives it.
    let r = patch("127.0.0.1:8001", r#"{"state":"up","weight":5}"#);
    assert_eq!(json(&r)["weight"], 5);
    assert_eq!(json(&r)["state"], "up");
    assert!(!std::sync::Arc::ptr_eq(&rt, &s.runtime.load_full()));
    assert_eq!(
        patch("127.0.0.1:8001", r#"{"state":"sideways"}"#).status,
        400
    );
    assert_eq!(patch("127.0.0.1:9999", r#"{"state":"up"}"#).status, 404);
    assert_eq!(patch("nonsense", r#"{"state":"up"}"#).status, 400);

    // Add, then remove.
    let add = handle(
        &s,
        None,
        "POST",
        "/upstreams/app/peers",
        None,
        br#"{"addr":"127.0.0.1:8004","weight":3,"slow_start":10}"#,
    );
    assert_eq!(add.status, 201, "{}", String::from_utf8_lossy(&add.body));
    assert_eq!(json(&add)["state"], "slow-start");
    let again = handle(
        &s,
        None,
        "POST",
        "/upstreams/app/peers",
        None,
        br#"{"addr":"127.0.0.1:8004"}"#,
    );
    assert_eq!(again.status, 409);
    let rt = s.runtime.load_full();
    assert!(rt.upstreams[0]
        .peers
        .iter()
        .any(|p| p.conf.addr.port() == Some(8004) && p.conf.weight == 3));
    let old_state = rt.upstreams[0].peers[0].state.clone();
    let del = handle(
        &s,
        None,
        "DELETE",
        "/upstreams/app/peers/127.0.0.1:8001",
        None,
        b"",
    );
    assert_eq!(del.status, 200);
    assert_eq!(
        old_state.admin.load(Relaxed),
        crate::upstream::AdminState::Draining as u8
    );
    let v = json(&get(&s, "/status"));
    let addrs: Vec<&str> = v["upstreams"]["app"]["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["addr"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.1:8002", "127.0.0.1:8004", "127.0.0.1:8003"]
    );
    assert_eq!(get(&s, "/nope").status, 404);
    assert_eq!(handle(&s, None, "PUT", "/status", None, b"").status, 405);
}

/// Eligibility: unhealthy peers are skipped unless every peer is unhealthy; a
/// `mandatory` peer waiting for its first check is skipped.
#[test]
fn pick_respects_health() {
    use crate::upstream::{Health, Outcome};
    let s = shared_with("server 127.0.0.1:8001; server 127.0.0.1:8002;");
    let rt = s.runtime.load_full();
    let up = &rt.upstreams[0];
    let pick = || {
        let i = up.pick(&Tried::new(2), now());
        if let Some(i) = i {
            up.report(i, Outcome::Success, now());
        }
        i
    };
    up.peers[0]
        .state
        .health
        .store(Health::Unhealthy as u8, Relaxed);
    for _ in 0..10 {
        assert_eq!(pick(), Some(1));
    }
    assert_eq!(
        json(&get(&s, "/status"))["upstreams"]["app"]["peers"][0]["state"],
        "unhealthy"
    );
    up.peers[1]
        .state
        .health
        .store(Health::Unhealthy as u8, Relaxed);
    assert_eq!(pick(), None);
    up.all_unhealthy.store(true, Relaxed);
    let picked: Vec<_> = (0..4).map(|_| pick()).collect();
    assert!(
        picked.contains(&Some(0)) && picked.contains(&Some(1)),
        "{picked:?}"
    );
    // `mandatory` before the first pass: not even the all-unhealthy rule admits it.
    up.all_unhealthy.store(false, Relaxed);
    up.peers[0]
        .state
        .health
        .store(Health::Checking as u8, Relaxed);
    up.peers[1]
        .state
        .health
        .store(Health::Healthy as u8, Relaxed);
    for _ in 0..10 {
        assert_eq!(pick(), Some(1));
    }
}

/// slow_start through `pick`: a freshly recovered peer gets a small share at first,
/// and is still used when it is the only one left (no 502 because of the ramp).
#[test]
fn pick_ramps_slow_start() {
    use crate::upstream::Outcome;
    let s = shared_with("server 127.0.0.1:8001 slow_start=100s; server 127.0.0.1:8002;");
    let rt = s.runtime.load_full();
    let up = &rt.upstreams[0];
    let t0 = now();
    up.peers[0].state.recovered_at.store(t0.0, Relaxed);
    assert_eq!(
        json(&get(&s, "/status"))["upstreams"]["app"]["peers"][0]["state"],
        "slow-start"
    );
    let share = |at: crate::upstream::Millis| {
        let n = 4000;
        let mut hits = 0;
        for _ in 0..n {
            let i = up.pick(&Tried::new(2), at).expect("a peer");
            up.report(i, Outcome::Success, at);
            hits += usize::from(i == 0);
        }
        hits as f64 / n as f64
    };
    // Full share is 0.5 (equal weights).
    let early = share(t0.saturating_add(Duration::from_secs(5)));
    assert!(early < 0.1, "{early}");
    let half = share(t0.saturating_add(Duration::from_secs(50)));
    assert!((0.15..0.35).contains(&half), "{half}");
    let full = share(t0.saturating_add(Duration::from_secs(100)));
    assert!((0.45..0.55).contains(&full), "{full}");
    // The other peer drained: the ramping one is used every time.
    up.peers[1]
        .state
        .admin
        .store(crate::upstream::AdminState::Draining as u8, Relaxed);
    for _ in 0..20 {
        let at = t0.saturating_add(Duration::from_secs(1));
        let i = up.pick(&Tried::new(2), at);
        assert_eq!(i, Some(0));
        up.report(0, Outcome::Success, at);
    }
}
