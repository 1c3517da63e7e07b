//! Upstream pick/report tests: nginx's availability and failure rules.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{BalanceMethod, PeerConf, Span, UpstreamConf};
use crate::upstream::now;

const T0: Millis = Millis(1_000_000);
const FT: u64 = 10_000;

fn peer(port: u16) -> PeerConf {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    PeerConf {
        fail_timeout: Duration::from_millis(FT),
        ..PeerConf::new(addr.to_string(), addr.into(), Span::synthetic("test.conf"))
    }
}

fn group(peers: Vec<PeerConf>) -> UpstreamConf {
    UpstreamConf {
        name: "up".into(),
        span: peers[0].span.clone(),
        implicit: false,
        method: BalanceMethod::RoundRobin,
        sticky: None,
        peers,
        keepalive: None,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_time: Duration::from_secs(3600),
        keepalive_requests: 1000,
    }
}

fn build(peers: Vec<PeerConf>) -> Upstream {
    Upstream::build(&group(peers), &PeerRegistry::new())
}

/// `n` fresh requests at `now`, each reporting success right away.
fn picks(u: &Upstream, n: usize, now: Millis) -> Vec<Option<usize>> {
    (0..n)
        .map(|_| {
            let p = u.pick(&Tried::new(u.peers.len()), now);
            if let Some(i) = p {
                u.report(i, Outcome::Success, now);
            }
            p
        })
        .collect()
}

#[test]
fn weighted_order_is_nginx_order() {
    let mut ps: Vec<PeerConf> = (1..=3).map(peer).collect();
    ps[0].weight = 5;
    let u = build(ps);
    let got: Vec<usize> = picks(&u, 7, T0).into_iter().flatten().collect();
    assert_eq!(got, [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(u.peers[0].state.requests.load(Relaxed), 5);
    assert_eq!(u.peers[0].state.in_flight.load(Relaxed), 0);
}

#[test]
fn down_peers_are_never_picked() {
    let mut ps: Vec<PeerConf> = (1..=3).map(peer).collect();
    ps[1].down = true;
    let u = build(ps);
    let got = picks(&u, 30, T0);
    assert!(got.iter().all(|p| matches!(p, Some(0) | Some(2))));
    assert_eq!(u.tries(), 2);
    let mut all_down = peer(1);
    all_down.down = true;
    assert_eq!(build(vec![all_down]).pick(&Tried::new(1), T0), None);
}

#[test]
fn backups_only_when_no_primary_is_available() {
    let mut b = peer(3);
    b.backup = true;
    let u = build(vec![b, peer(1), peer(2)]);
    // Primaries come first whatever the file order.
    assert_eq!(u.primary_count, 2);
    assert!(u.peers[2].conf.backup);
    assert!(picks(&u, 20, T0)
        .iter()
        .all(|p| matches!(p, Some(0) | Some(1))));

    // A request that tried both primaries goes to the backup...
    let mut tried = Tried::new(3);
    tried.insert(0);
    tried.insert(1);
    assert_eq!(u.pick(&tried, T0), Some(2));
    u.report(2, Outcome::Success, T0);
    // ... and, once there, stays on backups as nginx does.
    let mut tried = Tried::new(3);
    tried.insert(2);
    assert_eq!(u.pick(&tried, T0), None);

    // Both primaries disabled by failures: every request goes to the backup.
    for i in 0..2 {
        assert_eq!(
            u.report(i, Outcome::Failure, T0),
            Report {
                temporarily_disabled: true
            }
        );
    }
    assert!(picks(&u, 5, Millis(T0.0 + 1)).iter().all(|p| *p == Some(2)));
    // Everything unavailable: no live upstreams.
    u.report(2, Outcome::Failure, T0);
    assert_eq!(u.pick(&Tried::new(3), Millis(T0.0 + 1)), None);
}

#[test]
fn max_fails_disables_until_fail_timeout_then_one_trial() {
    let mut a = peer(1);
    a.max_fails = 2;
    let u = build(vec![a, peer(2)]);
    let state = &u.peers[0].state;

    assert_eq!(u.report(0, Outcome::Failure, T0), Report::default());
    assert!(u.is_available(0, T0), "one failure of two allowed");
    assert_eq!(
        u.report(0, Outcome::Failure, T0),
        Report {
            temporarily_disabled: true
        }
    );
    assert_eq!(state.fails.load(Relaxed), 2);

    // Skipped for the whole window (inclusive bound, as nginx's `<=`).
    for t in [T0.0, T0.0 + 1, T0.0 + FT] {
        assert!(
            picks(&u, 6, Millis(t)).iter().all(|p| *p == Some(1)),
            "at {t}"
        );
    }

    // Window over: exactly one trial goes to it while the trial is outstanding.
    let t1 = Millis(T0.0 + FT + 1);
    let mut trial = None;
    let mut others = 0;
    for _ in 0..6 {
        match u.pick(&Tried::new(2), t1) {
            Some(0) => {
                assert!(trial.is_none(), "second trial in one window");
                trial = Some(0);
            }
            Some(1) => others += 1,
            p => panic!("unexpected {p:?}"),
        }
    }
    assert_eq!((trial, others), (Some(0), 5));
    assert_eq!(state.checked(), t1);

    // The trial succeeds: fails reset, back in the rotation.
    assert_eq!(u.report(0, Outcome::Success, t1), Report::default());
    assert_eq!(state.fails.load(Relaxed), 0);
    let got = picks(&u, 4, t1);
    assert_eq!(got.iter().filter(|p| **p == Some(0)).count(), 2);
}

#[test]
fn failed_trial_disables_again() {
    let u = build(vec![peer(1), peer(2)]);
    u.report(0, Outcome::Failure, T0);
    let t1 = Millis(T0.0 + FT + 1);
    let mut tried = Tried::new(2);
    tried.insert(1);
    assert_eq!(u.pick(&tried, t1), Some(0), "the trial");
    assert_eq!(
        u.report(0, Outcome::Failure, t1),
        Report {
            temporarily_disabled: true
        }
    );
    // A new window from the failed trial.
    assert!(!u.is_available(0, Millis(t1.0 + FT)));
    assert!(picks(&u, 4, Millis(t1.0 + FT))
        .iter()
        .all(|p| *p == Some(1)));
    assert!(u.is_available(0, Millis(t1.0 + FT + 1)));
}

#[test]
fn success_without_trial_keeps_fails() {
    // A success that does not follow a renewed window (an attempt that started before
    // the failure) must not clear the count: nginx's `accessed < checked`.
    let mut a = peer(1);
    a.max_fails = 3;
    let u = build(vec![a, peer(2)]);
    assert_eq!(u.pick(&Tried::new(2), T0), Some(0));
    u.report(0, Outcome::Failure, Millis(T0.0 + 5));
    u.report(0, Outcome::Success, Millis(T0.0 + 6));
    assert_eq!(u.peers[0].state.fails.load(Relaxed), 1);
    // Failures older than fail_timeout are forgotten after the next pick + success.
    let t1 = Millis(T0.0 + 5 + FT + 1);
    let mut tried = Tried::new(2);
    tried.insert(1);
    assert_eq!(u.pick(&tried, t1), Some(0));
    u.report(0, Outcome::Success, t1);
    assert_eq!(u.peers[0].state.fails.load(Relaxed), 0);
}

#[test]
fn single_peer_ignores_max_fails() {
    let u = build(vec![peer(1)]);
    assert!(u.is_single());
    for _ in 0..5 {
        assert_eq!(u.pick(&Tried::new(1), T0), Some(0));
        assert_eq!(u.report(0, Outcome::Failure, T0), Report::default());
    }
    assert_eq!(u.peers[0].state.fails.load(Relaxed), 0);
    assert_eq!(u.peers[0].state.failures_total.load(Relaxed), 5);
    // Still only one try per request.
    let mut tried = Tried::new(1);
    tried.insert(0);
    assert_eq!(u.pick(&tried, T0), None);

    // With a backup the group is not "single": the lone primary is accounted.
    let mut b = peer(2);
    b.backup = true;
    let u = build(vec![peer(1), b]);
    assert!(!u.is_single());
    assert_eq!(
        u.report(0, Outcome::Failure, T0),
        Report {
            temporarily_disabled: true
        }
    );
    assert_eq!(u.pick(&Tried::new(2), T0), Some(1));
}

#[test]
fn max_conns_skips_busy_peers() {
    let mut a = peer(1);
    a.max_conns = 1;
    let u = build(vec![a, peer(2)]);
    assert_eq!(u.pick(&Tried::new(2), T0), Some(0));
    // a is at its limit until reported.
    for _ in 0..4 {
        assert_eq!(u.pick(&Tried::new(2), T0), Some(1));
    }
    u.report(0, Outcome::Success, T0);
    assert_eq!(u.peers[0].state.in_flight.load(Relaxed), 0);
    let got = picks(&u, 2, T0);
    assert!(got.contains(&Some(0)));

    // A single peer at max_conns is unavailable too (nginx checks it for single).
    let mut s = peer(3);
    s.max_conns = 1;
    let u = build(vec![s]);
    assert_eq!(u.pick(&Tried::new(1), T0), Some(0));
    assert_eq!(u.pick(&Tried::new(1), T0), None);
}

#[test]
fn more_than_64_peers() {
    let u = build((1..=100).map(peer).collect());
    let mut tried = Tried::new(100);
    for _ in 0..100 {
        let p = u.pick(&tried, T0).expect("a peer left");
        assert!(!tried.contains(p));
        tried.insert(p);
        u.report(p, Outcome::Success, T0);
    }
    assert_eq!(tried.len(), 100);
    assert_eq!(u.pick(&tried, T0), None);
}

#[test]
fn one_trial_across_threads() {
    let u = Arc::new(build(vec![peer(1), peer(2)]));
    u.report(0, Outcome::Failure, T0);
    let t1 = Millis(T0.0 + FT + 1);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let u = Arc::clone(&u);
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|_| u.pick(&Tried::new(2), t1) == Some(0))
                    .count()
            })
        })
        .collect();
    let trials: usize = handles
        .into_iter()
        .map(|h| h.join().expect("picker thread panicked"))
        .sum();
    assert_eq!(trials, 1);
}

#[test]
fn registry_keeps_state_across_reloads() {
    let reg = PeerRegistry::new();
    let conf = group(vec![peer(1), peer(2)]);
    let a = Upstream::build(&conf, &reg);
    a.report(0, Outcome::Failure, T0);
    let b = Upstream::build(&conf, &reg);
    assert!(Arc::ptr_eq(&a.peers[0].state, &b.peers[0].state));
    assert!(!b.is_available(0, T0));

    let smaller = group(vec![peer(2)]);
    reg.retain(std::slice::from_ref(&smaller));
    assert_eq!(reg.len(), 1);
    let c = Upstream::build(&smaller, &reg);
    assert!(Arc::ptr_eq(&a.peers[1].state, &c.peers[0].state));
}

#[tokio::test(start_paused = true)]
async fn fail_timeout_on_the_paused_clock() {
    let u = build(vec![peer(1), peer(2)]);
    let mut tried = Tried::new(2);
    tried.insert(1);
    assert_eq!(u.pick(&tried, now()), Some(0));
    assert!(u.report(0, Outcome::Failure, now()).temporarily_disabled);
    tokio::time::advance(Duration::from_millis(FT)).await;
    assert_eq!(u.pick(&tried, now()), None, "still inside fail_timeout");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(u.pick(&tried, now()), Some(0), "the trial");
    assert_eq!(u.pick(&tried, now()), None, "one trial only");
    u.report(0, Outcome::Success, now());
    assert_eq!(u.pick(&tried, now()), Some(0));
}

#[test]
fn least_conn_falls_back_to_backups() {
    let mut ps: Vec<PeerConf> = (1..=3).map(peer).collect();
    ps[2].backup = true;
    ps[0].down = true;
    let mut g = group(ps);
    g.method = BalanceMethod::LeastConn;
    let u = Upstream::build(&g, &PeerRegistry::new());
    let t = Tried::new(3);
    let a = u.pick(&t, T0);
    assert_eq!(a, Some(1));
    // Peer 1 failed (max_fails=1): only the backup is left.
    u.report(1, Outcome::Failure, T0);
    assert_eq!(u.pick(&t, T0), Some(2));
}

#[test]
fn sticky_cookie_is_set_only_when_it_changes() {
    use crate::balance::{sticky, PickContext};
    use crate::config::StickyConf;
    let mut g = group((1..=2).map(peer).collect());
    g.sticky = Some(StickyConf {
        cookie: "srv".into(),
        expires: None,
        domain: None,
        path: Some("/".into()),
        httponly: true,
        secure: false,
        samesite: None,
    });
    let u = Upstream::build(&g, &PeerRegistry::new());
    assert_eq!(u.sticky_cookie(), Some("srv"));
    let id1 = sticky::peer_id(&u.peers[1].conf.addr);
    let ctx = PickContext {
        sticky: Some(id1),
        ..PickContext::default()
    };
    for _ in 0..5 {
        let i = u.pick_with(&ctx, &Tried::new(2), T0);
        assert_eq!(i, Some(1));
        u.report(1, Outcome::Success, T0);
    }
    assert_eq!(u.sticky_set_cookie(1, &ctx), None);
    let set = u
        .sticky_set_cookie(0, &ctx)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let id0 = sticky::peer_id(&u.peers[0].conf.addr);
    assert_eq!(set, Some(format!("srv={id0:016x}; Path=/; HttpOnly")));
    // Peer 1 fails: the request moves, and gets a new cookie.
    u.report(1, Outcome::Failure, T0);
    let i = u.pick_with(&ctx, &Tried::new(2), T0);
    assert_eq!(i, Some(0));
    assert!(u.sticky_set_cookie(0, &ctx).is_some());
    // Without sticky nothing is ever set.
    let plain = build((1..=2).map(peer).collect());
    assert_eq!(plain.sticky_set_cookie(0, &PickContext::default()), None);
}

#[test]
fn latency_goes_to_least_time_only() {
    use crate::config::LatencyPoint;
    let mut g = group((1..=2).map(peer).collect());
    g.method = BalanceMethod::LeastTime {
        point: LatencyPoint::Header,
        inflight: false,
        decay: Duration::from_secs(10),
    };
    let u = Upstream::build(&g, &PeerRegistry::new());
    assert_eq!(u.latency_point(), Some(LatencyPoint::Header));
    u.record_latency(0, LatencyPoint::LastByte, Duration::from_millis(5), T0);
    assert_eq!(u.peers[0].state.ewma_us.load(Relaxed), 0);
    u.record_latency(0, LatencyPoint::Header, Duration::from_millis(5), T0);
    assert_eq!(
        f64::from_bits(u.peers[0].state.ewma_us.load(Relaxed)),
        5000.0
    );
    u.record_latency(9, LatencyPoint::Header, Duration::from_millis(5), T0);
    let rr = build((1..=2).map(peer).collect());
    assert_eq!(rr.latency_point(), None);
    assert!(rr.hash_key().is_none());
}
