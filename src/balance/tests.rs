//! Properties every method must have: a down peer is never picked; weights give
//! shares proportional to weight (for the load-aware methods: under load).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::testing::{peers, shares, simulate};
use super::*;

/// Every method (plain and behind `sticky`), by name.
fn methods(ps: &[Peer], seed: u64) -> Vec<(&'static str, Box<dyn Select>)> {
    let decay = Duration::from_secs(10);
    let sticky_rr = Box::new(Sticky::new(Box::new(RoundRobin::new(ps)), ps));
    vec![
        ("round_robin", Box::new(RoundRobin::new(ps))),
        ("least_conn", Box::new(LeastConn::new(ps))),
        ("ip_hash", Box::new(IpHash::new(ps))),
        ("hash", Box::new(Hash::new(ps))),
        ("hash consistent", Box::new(ConsistentHash::new(ps))),
        (
            "random",
            Box::new(Random::new(ps, false, RandomSource::with_seed(seed))),
        ),
        (
            "random two",
            Box::new(Random::new(ps, true, RandomSource::with_seed(seed))),
        ),
        (
            "least_time",
            Box::new(LeastTime::new(ps, decay, RandomSource::with_seed(seed))),
        ),
        ("sticky", sticky_rr),
    ]
}

/// The context of request number `k`: varied client, key and (for some) a cookie.
fn ctx_for(k: u32, key: &mut Vec<u8>, ps: &[Peer]) -> PickContext<'static> {
    key.clear();
    key.extend_from_slice(format!("/item/{k}").as_bytes());
    PickContext {
        client: Some(IpAddr::V4(Ipv4Addr::from(k.wrapping_mul(2_654_435_761)))),
        key: None,
        sticky: k
            .is_multiple_of(3)
            .then(|| sticky::peer_id(&ps[k as usize % ps.len()].conf.addr)),
        now: crate::upstream::Millis(1_000_000),
    }
}

proptest! {
    // A fixed seed: the same cases on every run, so a failure reproduces.
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_f3a0),
        ..ProptestConfig::with_cases(24)
    })]

    #[test]
    fn a_down_peer_is_never_picked(
        conf in proptest::collection::vec((1u32..8, any::<bool>()), 1..12),
        seed in any::<u64>(),
    ) {
        let weights: Vec<u32> = conf.iter().map(|c| c.0).collect();
        let down: Vec<bool> = conf.iter().map(|c| c.1).collect();
        let ps = peers(&weights);
        let up = |i: usize| !down[i];
        let mut key = Vec::new();
        for (name, sel) in methods(&ps, seed) {
            for k in 0..300u32 {
                let ctx = ctx_for(k, &mut key, &ps);
                let ctx = PickContext { key: Some(&key), ..ctx };
                let got = sel.pick(&ps, &ctx, &up);
                if down.iter().all(|&d| d) {
                    prop_assert_eq!(got, None, "{}", name);
                } else {
                    // Consistent hash may give up only when nothing is eligible.
                    let i = got.unwrap_or(usize::MAX);
                    prop_assert!(i < down.len() && !down[i], "{} picked {:?}", name, got);
                }
            }
        }
    }

    #[test]
    fn weights_give_proportional_shares(
        weights in proptest::collection::vec(1u32..6, 2..6),
        seed in any::<u64>(),
    ) {
        let total: u32 = weights.iter().sum();
        let want: Vec<f64> = weights.iter().map(|&w| f64::from(w) / f64::from(total)).collect();
        let n = weights.len();
        let all = |_: usize| true;
        // Key- and draw-based methods: many different requests, each answered at once.
        for (name, tolerance) in [
            ("round_robin", 0.001),
            ("least_conn", 0.001),
            ("random", 0.03),
            ("hash", 0.03),
            ("ip_hash", 0.04),
            ("hash consistent", 0.1),
        ] {
            let ps = peers(&weights);
            let sel = methods(&ps, seed).into_iter().find(|m| m.0 == name).map(|m| m.1);
            let Some(sel) = sel else { continue };
            let mut key = Vec::new();
            let picks = (0..20_000u32).map(|k| {
                let ctx = ctx_for(k, &mut key, &ps);
                let ctx = PickContext { key: Some(&key), sticky: None, ..ctx };
                sel.pick(&ps, &ctx, &all).unwrap_or(0)
            });
            // A whole number of round robin periods keeps its shares exact.
            let picks: Vec<usize> = picks.take(20_000 - 20_000 % total as usize).collect();
            let got = shares(picks, n);
            for i in 0..n {
                prop_assert!((got[i] - want[i]).abs() <= tolerance,
                    "{} weights {:?}: {:?}", name, weights, got);
            }
        }
        // Load-aware methods: under load (equal latencies) in-flight counts settle in
        // proportion to weight.
        for name in ["random two", "least_time"] {
            let ps = peers(&weights);
            let sel = methods(&ps, seed).into_iter().find(|m| m.0 == name).map(|m| m.1);
            let Some(sel) = sel else { continue };
            let got = simulate(&ps, sel.as_ref(), &vec![10; n], Some(Duration::from_secs(10)));
            // About 20 requests are in flight: a weight's ideal share is rarely a whole
            // number of them, and ties are broken at random, so a share may be off by one
            // request and a half of the 20 (weights 1,5,1,1 settle at 0.675 against 0.625).
            for i in 0..n {
                prop_assert!((got[i] - want[i]).abs() <= 0.075,
                    "{} weights {:?}: {:?}", name, weights, got);
            }
        }
    }
}
