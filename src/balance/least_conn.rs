//! `least_conn`.

use super::{less_loaded, PickContext, RoundRobin, Select};
use crate::upstream::Peer;

/// nginx's `least_conn`: the eligible peer with the fewest in-flight requests relative
/// to its weight (`conns_a · weight_b < conns_b · weight_a`). Inherently O(n): every
/// peer is looked at, as in nginx.
///
/// **Ties.** nginx breaks them with smooth weighted round robin among the tied peers.
/// Here the scan starts at the next slot of a [`RoundRobin`] schedule and the first
/// least-loaded peer from there wins: with all peers equally loaded (idle, or every
/// request answered before the next) that is exactly nginx's weighted order; with
/// partial ties it is round robin in schedule order.
#[derive(Debug)]
pub struct LeastConn {
    rr: RoundRobin,
}

impl LeastConn {
    /// A selector over `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        LeastConn {
            rr: RoundRobin::new(peers),
        }
    }
}

impl Select for LeastConn {
    fn pick(
        &self,
        peers: &[Peer],
        _ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = peers.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.next_slot();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if eligible(i) && best.is_none_or(|b| less_loaded(peers, i, b)) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all, peers, shares, simulate};
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn fewest_connections_relative_to_weight() {
        let ps = peers(&[1, 2, 1]);
        ps[0].state.in_flight.store(3, Relaxed);
        ps[1].state.in_flight.store(4, Relaxed); // 4/2 = 2 per unit
        ps[2].state.in_flight.store(3, Relaxed);
        let sel = LeastConn::new(&ps);
        for _ in 0..10 {
            assert_eq!(sel.pick(&ps, &PickContext::default(), &all), Some(1));
        }
        let not1 = |i: usize| i != 1;
        let got: Vec<_> = (0..4)
            .map(|_| sel.pick(&ps, &PickContext::default(), &not1))
            .collect();
        assert!(got.iter().all(|g| matches!(g, Some(0) | Some(2))));
        assert!(
            got.contains(&Some(0)) && got.contains(&Some(2)),
            "ties rotate"
        );
    }

    #[test]
    fn idle_peers_share_by_weight() {
        let ps = peers(&[5, 3, 2]);
        let sel = LeastConn::new(&ps);
        let got = shares(
            (0..10_000).map(|_| sel.pick(&ps, &PickContext::default(), &all).unwrap_or(0)),
            3,
        );
        assert_eq!(got, [0.5, 0.3, 0.2]);
    }

    /// Peer 0 is 10x slower: least_conn must starve it.
    #[test]
    fn slow_peer_gets_fewer_requests() {
        let ps = peers(&[1, 1, 1, 1]);
        let sel = LeastConn::new(&ps);
        let share = simulate(&ps, &sel, &[100, 10, 10, 10], None);
        assert!(share[0] < 0.1, "slow share {share:?}");
    }
}
