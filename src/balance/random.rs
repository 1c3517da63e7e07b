//! `random [two [least_conn]]`.

use super::{
    less_loaded, probe_then_round_robin, PickContext, RandomSource, RoundRobin, Select, Weights,
};
use crate::upstream::Peer;

/// nginx's `random`: a weighted random draw (`random() % total weight`, binary search
/// over the weight ranges); with `two`, two distinct eligible draws and the one with
/// fewer in-flight requests relative to weight wins (ties: the second draw), which is
/// nginx's `random two least_conn` (its only open-source variant, and the default of
/// `two`). A draw that hits an unavailable peer (or, with `two`, the first candidate
/// again) counts as a miss; after 20 misses, or with fewer than two peers, round robin
/// picks, as in nginx.
#[derive(Debug)]
pub struct Random {
    weights: Weights,
    two: bool,
    rng: RandomSource,
    fallback: RoundRobin,
}

impl Random {
    /// A selector over `peers`, weighted by their `weight=`, drawing from `rng`.
    pub fn new(peers: &[Peer], two: bool, rng: RandomSource) -> Self {
        Random {
            weights: Weights::of(peers),
            two,
            rng,
            fallback: RoundRobin::new(peers),
        }
    }

    fn draw(&self) -> usize {
        self.weights
            .index(self.rng.below(self.weights.total().max(1)))
    }
}

impl Select for Random {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if !self.two {
            return probe_then_round_robin(&self.fallback, peers, ctx, eligible, || {
                let i = self.draw();
                eligible(i).then_some(i)
            });
        }
        let mut first: Option<usize> = None;
        probe_then_round_robin(&self.fallback, peers, ctx, eligible, || {
            let i = self.draw();
            if first == Some(i) || !eligible(i) {
                return None;
            }
            match first {
                Some(f) => Some(if less_loaded(peers, f, i) { f } else { i }),
                None => {
                    first = Some(i);
                    None
                }
            }
        })
    }

    fn failed(&self, i: usize) {
        self.fallback.failed(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all, peers, shares, simulate};
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn assert_shares(two: bool, weights: &[u32], seed: u64) {
        let ps = peers(weights);
        let sel = Random::new(&ps, two, RandomSource::with_seed(seed));
        let ctx = PickContext::default();
        let got = shares(
            (0..100_000).map(|_| sel.pick(&ps, &ctx, &all).unwrap_or(usize::MAX)),
            weights.len(),
        );
        let total: u32 = weights.iter().sum();
        for (i, (&s, &w)) in got.iter().zip(weights).enumerate() {
            let want = f64::from(w) / f64::from(total);
            assert!((s - want).abs() <= 0.03, "peer {i}: {s:.4} vs {want:.4}");
        }
    }

    #[test]
    fn weighted_shares_within_three_points() {
        for seed in [1, 42, 0xdead_beef] {
            assert_shares(false, &[5, 3, 2], seed);
            assert_shares(false, &[1, 1, 1, 1, 4], seed);
        }
    }

    /// `two` under load: in-flight counts settle at equal conns/weight, so shares
    /// follow weight.
    #[test]
    fn two_under_load_shares_by_weight() {
        for (seed, weights) in [(1, vec![5, 3, 2]), (9, vec![1, 2, 3, 4])] {
            let ps = peers(&weights);
            let sel = Random::new(&ps, true, RandomSource::with_seed(seed));
            let got = simulate(&ps, &sel, &vec![10; weights.len()], None);
            let total: u32 = weights.iter().sum();
            for (i, (&s, &w)) in got.iter().zip(&weights).enumerate() {
                let want = f64::from(w) / f64::from(total);
                assert!((s - want).abs() <= 0.03, "peer {i}: {s:.4} vs {want:.4}");
            }
        }
    }

    /// `two` with idle peers, as nginx: equal load keeps the second draw, so the share
    /// of `i` is P(second distinct draw = i), not w_i / W (5,3,2 gives 34/38/28 %).
    #[test]
    fn two_when_idle_keeps_the_second_draw_as_nginx() {
        let weights = [5u32, 3, 2];
        let ps = peers(&weights);
        let sel = Random::new(&ps, true, RandomSource::with_seed(3));
        let got = shares(
            (0..100_000).map(|_| sel.pick(&ps, &PickContext::default(), &all).unwrap_or(0)),
            3,
        );
        let w: Vec<f64> = weights.iter().map(|&x| f64::from(x) / 10.0).collect();
        for i in 0..3 {
            let want: f64 = (0..3)
                .filter(|&f| f != i)
                .map(|f| w[f] * w[i] / (1.0 - w[f]))
                .sum();
            assert!(
                (got[i] - want).abs() <= 0.01,
                "peer {i}: {} vs {want}",
                got[i]
            );
        }
    }

    #[test]
    fn two_prefers_the_less_loaded() {
        let ps = peers(&[1, 1]);
        ps[0].state.in_flight.store(10, Relaxed);
        let sel = Random::new(&ps, true, RandomSource::with_seed(7));
        for _ in 0..1000 {
            assert_eq!(sel.pick(&ps, &PickContext::default(), &all), Some(1));
        }
        // Only one eligible peer: the draws miss, round robin finds it.
        let only0 = |i: usize| i == 0;
        assert_eq!(sel.pick(&ps, &PickContext::default(), &only0), Some(0));
    }
}
