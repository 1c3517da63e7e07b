//! Cost of one pick per balancing method, for 4, 64 and 1024 peers.
//!
//! `select/METHOD/N` is the method alone (`Select::pick`, every peer eligible);
//! `upstream/METHOD/N` is the request path's whole cycle: `Upstream::pick_with`
//! (eligibility, claiming a connection slot) plus `Upstream::report`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrolb::balance::Upstream;
use ferrolb::balance::{selector_for, sticky, PickContext};
use ferrolb::config::{
    BalanceMethod, LatencyPoint, PeerConf, Span, StickyConf, Template, TemplatePart, UpstreamConf,
    Var,
};
use ferrolb::upstream::{now, Outcome, PeerRegistry, Tried};

fn conf(method: BalanceMethod, sticky: bool, n: usize) -> UpstreamConf {
    let span = Span {
        file: Arc::new(PathBuf::from("bench.conf")),
        line: 1,
        column: 1,
    };
    let peers = (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8000));
            PeerConf {
                weight: 1 + (i % 3) as u32,
                ..PeerConf::new(addr.to_string(), addr.into(), span.clone())
            }
        })
        .collect();
    UpstreamConf {
        name: "bench".into(),
        span,
        implicit: false,
        method,
        sticky: sticky.then(|| StickyConf {
            cookie: "srv".into(),
            expires: None,
            domain: None,
            path: None,
            httponly: false,
            secure: false,
            samesite: None,
        }),
        peers,
        keepalive: None,
        keepalive_timeout: Duration::from_secs(60),
        keepalive_time: Duration::from_secs(3600),
        keepalive_requests: 1000,
    }
}

fn methods() -> Vec<(&'static str, BalanceMethod, bool)> {
    let key = Template {
        parts: vec![TemplatePart::Var(Var::RequestUri)],
    };
    vec![
        ("round_robin", BalanceMethod::RoundRobin, false),
        ("least_conn", BalanceMethod::LeastConn, false),
        ("ip_hash", BalanceMethod::IpHash, false),
        (
            "hash",
            BalanceMethod::Hash {
                key: key.clone(),
                consistent: false,
            },
            false,
        ),
        (
            "hash_consistent",
            BalanceMethod::Hash {
                key,
                consistent: true,
            },
            false,
        ),
        ("random", BalanceMethod::Random { two: false }, false),
        ("random_two", BalanceMethod::Random { two: true }, false),
        (
            "least_time",
            BalanceMethod::LeastTime {
                point: LatencyPoint::Header,
                inflight: false,
                decay: Duration::from_secs(10),
            },
            false,
        ),
        ("sticky_round_robin", BalanceMethod::RoundRobin, true),
    ]
}

fn bench(c: &mut Criterion) {
    let key = b"/articles/2024/balancing?page=3".as_slice();
    for n in [4usize, 64, 1024] {
        let mut select = c.benchmark_group(format!("select/{n}"));
        for (name, method, with_sticky) in methods() {
            let cf = conf(method, with_sticky, n);
            let up = Upstream::build(&cf, &PeerRegistry::new());
            let sel = selector_for(&cf, &up.peers);
            let ctx = PickContext {
                client: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))),
                key: Some(key),
                sticky: with_sticky.then(|| sticky::peer_id(&up.peers[n / 2].conf.addr)),
                now: now(),
            };
            let peers = &up.peers;
            let eligible = |i: usize| !peers[i].conf.down;
            select.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| black_box(sel.pick(peers, black_box(&ctx), &eligible)))
            });
        }
        select.finish();
        let mut cycle = c.benchmark_group(format!("upstream/{n}"));
        for (name, method, with_sticky) in methods() {
            let cf = conf(method, with_sticky, n);
            let up = Upstream::build(&cf, &PeerRegistry::new());
            let ctx = PickContext {
                client: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))),
                key: Some(key),
                sticky: None,
                now: now(),
            };
            let t = now();
            cycle.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let tried = Tried::new(n);
                    if let Some(i) = up.pick_with(black_box(&ctx), &tried, t) {
                        up.report(i, Outcome::Success, t);
                    }
                })
            });
        }
        cycle.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
