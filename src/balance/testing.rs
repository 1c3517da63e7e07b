//! Peers for selector tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{PeerConf, Span};
use crate::upstream::{Peer, PeerState};

/// Peers `10.0.0.1:80`, `10.0.0.2:80`, … with these weights and fresh state.
pub(crate) fn peers(weights: &[u32]) -> Vec<Peer> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 80));
            Peer {
                conf: PeerConf {
                    weight: w,
                    ..PeerConf::new(addr.to_string(), addr.into(), Span::synthetic("test.conf"))
                },
                state: Arc::new(PeerState::default()),
            }
        })
        .collect()
}

/// nginx's hash-method loop written out literally: draw a hash, walk the weighted
/// peer list to it, accept it unless down; after 20 misses `None` (nginx falls back to
/// round robin). `next_hash` yields the successive hashes.
pub(crate) fn nginx_draws(
    weights: &[u32],
    down: &[bool],
    mut next_hash: impl FnMut() -> u32,
) -> Option<usize> {
    let total: u32 = weights.iter().sum();
    for _ in 0..=20 {
        let mut w = next_hash() % total;
        let mut p = 0;
        while w >= weights[p] {
            w -= weights[p];
            p += 1;
        }
        if !down[p] {
            return Some(p);
        }
    }
    None
}

/// Every peer eligible.
pub(crate) fn all(_: usize) -> bool {
    true
}

/// Share of each index among `picks`.
pub(crate) fn shares(picks: impl IntoIterator<Item = usize>, n: usize) -> Vec<f64> {
    let mut counts = vec![0u64; n];
    let mut total = 0u64;
    for p in picks {
        counts[p] += 1;
        total += 1;
    }
    counts
        .iter()
        .map(|&c| c as f64 / total.max(1) as f64)
        .collect()
}

/// A load simulation on a millisecond clock: 2 requests arrive per ms for 20 s; peer
/// `i` answers each after `service_ms[i]`; when `decay` is set every answer is
/// recorded as a `least_time` latency. Returns each peer's share of the requests.
pub(crate) fn simulate(
    ps: &[Peer],
    sel: &dyn super::Select,
    service_ms: &[u64],
    decay: Option<Duration>,
) -> Vec<f64> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut picks = Vec::new();
    for t in 0..20_000u64 {
        let now = crate::upstream::Millis(1_000_000 + t);
        running.retain(|&(end, i)| {
            if end > t {
                return true;
            }
            ps[i].state.in_flight.fetch_sub(1, Relaxed);
            if let Some(d) = decay {
                super::least_time::record(
                    &ps[i].state,
                    Duration::from_millis(service_ms[i]),
                    now,
                    d,
                );
            }
            false
        });
        for _ in 0..2 {
            let ctx = super::PickContext {
                now,
                ..super::PickContext::default()
            };
            if let Some(i) = sel.pick(ps, &ctx, &all) {
                ps[i].state.in_flight.fetch_add(1, Relaxed);
                running.push((t + service_ms[i], i));
                picks.push(i);
            }
        }
    }
    shares(picks, ps.len())
}
