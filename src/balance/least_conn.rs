//! `least_conn`.

use super::{less_loaded, PickContext, RoundRobin, Select};
use crate::upstream::Peer;

/// nginx's `least_conn`: the eligible peer with the fewest in-flight requests relative
/// to its weight (`conns_a · weight_b < conns_b · weight_a`). Inherently O(n): every
/// peer is looked at, as in nginx.
///
/// **Ties** are broken as nginx breaks them: smooth weighted round robin among the
/// tied peers, with the round robin's state (so idle peers get nginx's weighted order).
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
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut tied = false;
        for i in 0..peers.len() {
            if !eligible(i) {
                continue;
            }
            match best {
                Some(b) if less_loaded(peers, i, b) => {
                    best = Some(i);
                    tied = false;
                }
                Some(b) if !less_loaded(peers, b, i) => tied = true,
                Some(_) => {}
                None => best = Some(i),
            }
        }
        let b = best?;
        if !tied {
            return Some(b);
        }
        let least = |i: usize| eligible(i) && !less_loaded(peers, b, i);
        self.rr.pick(peers, ctx, &least).or(Some(b))
    }

    fn failed(&self, i: usize) {
        self.rr.failed(i);
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
