//! nginx's smooth weighted round robin, with its state.

use std::sync::{Mutex, PoisonError};

use super::{PickContext, Select};
use crate::upstream::Peer;

/// Smooth weighted round robin (nginx's default method), nginx's `get_peer` and the
/// weight half of its `free_peer`, literally.
///
/// Each peer has a current and an effective weight. A pick adds every eligible peer's
/// effective weight to its current weight (and raises a lowered effective weight by
/// one towards its `weight=`); the peer with the largest current weight (the first on
/// ties) wins and gives back the sum. A failed attempt lowers the peer's effective
/// weight by `weight / max_fails`. So with all peers healthy the order is nginx's
/// (weights 5,1,1 give `a a b a c a a`), and after failures and retries the next
/// peers are those nginx picks: a peer the request already tried, or one that is
/// down, disabled or at `max_conns`, takes no part in the round, as in nginx.
///
/// The state is shared by all worker threads behind one lock held for the loop over
/// the peers (nginx keeps one state per worker process; with one worker the sequences
/// are the same).
#[derive(Debug)]
pub struct RoundRobin {
    /// `weight=` per peer (0, which the config rejects, is taken as 1).
    weights: Box<[i64]>,
    /// `max_fails=` per peer: how much a failure lowers the effective weight.
    max_fails: Box<[u32]>,
    /// nginx's `current_weight` and `effective_weight` per peer.
    state: Mutex<Vec<(i64, i64)>>,
}

impl RoundRobin {
    /// A selector over `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        let weights: Vec<u32> = peers.iter().map(|p| p.conf.weight).collect();
        let mut rr = Self::from_weights(&weights);
        rr.max_fails = peers.iter().map(|p| p.conf.max_fails).collect();
        rr
    }

    /// A selector over peers with these weights (index i has weight `weights[i]`) and
    /// nginx's default `max_fails=1`.
    pub fn from_weights(weights: &[u32]) -> Self {
        let weights: Box<[i64]> = weights.iter().map(|&w| i64::from(w.max(1))).collect();
        RoundRobin {
            state: Mutex::new(weights.iter().map(|&w| (0, w)).collect()),
            max_fails: vec![1; weights.len()].into_boxed_slice(),
            weights,
        }
    }
}

impl Select for RoundRobin {
    fn pick(
        &self,
        _peers: &[Peer],
        _ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        // A panic while holding the lock leaves only numbers behind: still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for i in 0..state.len() {
            if !eligible(i) {
                continue;
            }
            let (current, effective) = &mut state[i];
            *current += *effective;
            total += *effective;
            if *effective < self.weights[i] {
                *effective += 1;
            }
            if best.is_none_or(|b| state[i].0 > state[b].0) {
                best = Some(i);
            }
        }
        let b = best?;
        state[b].0 -= total;
        Some(b)
    }

    fn failed(&self, i: usize) {
        let (Some(&w), Some(&max_fails)) = (self.weights.get(i), self.max_fails.get(i)) else {
            return;
        };
        if max_fails == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, effective)) = state.get_mut(i) {
            *effective = (*effective - w / i64::from(max_fails)).max(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// nginx's smooth WRR written out literally (peer fields as in
    /// `ngx_http_upstream_rr_peer_t`), all peers healthy, to compare sequences with.
    struct NginxRr {
        weight: Vec<i64>,
        effective_weight: Vec<i64>,
        current_weight: Vec<i64>,
    }

    impl NginxRr {
        fn new(weights: &[u32]) -> Self {
            let weight: Vec<i64> = weights.iter().map(|&w| i64::from(w)).collect();
            NginxRr {
                effective_weight: weight.clone(),
                current_weight: vec![0; weight.len()],
                weight,
            }
        }

        fn get_peer(&mut self) -> Option<usize> {
            let mut best: Option<usize> = None;
            let mut total = 0;
            for i in 0..self.weight.len() {
                self.current_weight[i] += self.effective_weight[i];
                total += self.effective_weight[i];
                if self.effective_weight[i] < self.weight[i] {
                    self.effective_weight[i] += 1;
                }
                if best.is_none_or(|b| self.current_weight[i] > self.current_weight[b]) {
                    best = Some(i);
                }
            }
            let b = best?;
            self.current_weight[b] -= total;
            Some(b)
        }
    }

    fn all(_: usize) -> bool {
        true
    }

    fn picks(rr: &RoundRobin, n: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n)
            .map(|_| {
                rr.pick(&[], &PickContext::default(), eligible)
                    .unwrap_or(usize::MAX)
            })
            .collect()
    }

    fn assert_matches_nginx(weights: &[u32]) {
        let rr = RoundRobin::from_weights(weights);
        let mut ngx = NginxRr::new(weights);
        let total: u32 = weights.iter().sum();
        let n = 2 * total as usize + 3;
        let expected: Vec<usize> = (0..n)
            .map(|_| ngx.get_peer().unwrap_or(usize::MAX))
            .collect();
        assert_eq!(picks(&rr, n, &all), expected, "weights {weights:?}");
    }

    #[test]
    fn five_one_one_is_nginx_order() {
        let rr = RoundRobin::from_weights(&[5, 1, 1]);
        assert_eq!(
            picks(&rr, 14, &all),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
        assert_matches_nginx(&[5, 1, 1]);
    }

    #[test]
    fn equal_weights_rotate_strictly() {
        for n in 1..10 {
            let rr = RoundRobin::from_weights(&vec![3; n]);
            let expected: Vec<usize> = (0..5 * n).map(|i| i % n).collect();
            assert_eq!(picks(&rr, 5 * n, &all), expected);
        }
    }

    #[test]
    fn matches_nginx_for_many_weight_vectors() {
        // Every vector of length 1..=4 over weights 1..=5 ...
        for len in 1..=4u32 {
            for code in 0..5u32.pow(len) {
                let w: Vec<u32> = (0..len).map(|k| code / 5u32.pow(k) % 5 + 1).collect();
                assert_matches_nginx(&w);
            }
        }
        // ... and longer pseudo-random ones with larger weights.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12 + 1) as usize;
            let w: Vec<u32> = (0..len).map(|k| ((x >> (k * 5)) % 30 + 1) as u32).collect();
            assert_matches_nginx(&w);
        }
        assert_matches_nginx(&[100, 1]);
        assert_matches_nginx(&[6, 4, 2]);
    }

    #[test]
    fn skipped_peers_leave_the_others_their_shares() {
        let rr = RoundRobin::from_weights(&[5, 1, 1]);
        let not_a = |i: usize| i != 0;
        let seq = picks(&rr, 10, &not_a);
        assert!(seq.iter().all(|&i| i == 1 || i == 2));
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 5);
        let none = |_: usize| false;
        assert_eq!(rr.pick(&[], &PickContext::default(), &none), None);
        assert_eq!(
            RoundRobin::from_weights(&[]).pick(&[], &PickContext::default(), &all),
            None
        );
    }

    /// nginx's `get_peer` over the peers `eligible` allows (tried or down ones take no
    /// part), and its `free_peer` on a failure: the model for retries.
    fn model_pick(ngx: &mut NginxRr, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0;
        for i in 0..ngx.weight.len() {
            if !eligible(i) {
                continue;
            }
            ngx.current_weight[i] += ngx.effective_weight[i];
            total += ngx.effective_weight[i];
            if ngx.effective_weight[i] < ngx.weight[i] {
                ngx.effective_weight[i] += 1;
            }
            if best.is_none_or(|b| ngx.current_weight[i] > ngx.current_weight[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        ngx.current_weight[b] -= total;
        Some(b)
    }

    #[test]
    fn retries_after_failures_follow_nginx() {
        // Peer 1 fails every attempt (max_fails=1 lowers its effective weight to 0 and
        // it climbs back by one per pick); each request retries on the peers it has
        // not tried. The sequence of attempts must be nginx's.
        let weights = [3u32, 2, 1];
        let rr = RoundRobin::from_weights(&weights);
        let mut ngx = NginxRr::new(&weights);
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..40 {
            let mut tried_a = Vec::new();
            let mut tried_b = Vec::new();
            loop {
                let a = rr.pick(&[], &PickContext::default(), &|i| !tried_a.contains(&i));
                let b = model_pick(&mut ngx, &|i| !tried_b.contains(&i));
                ours.push(a);
                theirs.push(b);
                match (a, b) {
                    (Some(1), Some(1)) => {
                        rr.failed(1);
                        ngx.effective_weight[1] = (ngx.effective_weight[1] - 2).max(0);
                        tried_a.push(1);
                        tried_b.push(1);
                    }
                    _ => break,
                }
            }
        }
        assert_eq!(ours, theirs);
        assert!(
            ours.contains(&Some(1)),
            "the failing peer keeps getting its trials"
        );
    }

    #[test]
    fn two_threads_share_by_weight() {
        let weights = [5u32, 3, 2];
        let rr = Arc::new(RoundRobin::from_weights(&weights));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let rr = Arc::clone(&rr);
                std::thread::spawn(move || {
                    let mut counts = [0u64; 3];
                    for _ in 0..100_000 {
                        if let Some(i) = rr.pick(&[], &PickContext::default(), &all) {
                            counts[i] += 1;
                        }
                    }
                    counts
                })
            })
            .collect();
        let mut counts = [0u64; 3];
        for t in threads {
            let c = t.join().expect("picker thread panicked");
            for i in 0..3 {
                counts[i] += c[i];
            }
        }
        let total: u64 = counts.iter().sum();
        assert_eq!(total, 200_000);
        for i in 0..3 {
            let share = counts[i] as f64 / total as f64;
            let want = f64::from(weights[i]) / 10.0;
            assert!((share - want).abs() <= 0.01, "peer {i}: {share} vs {want}");
        }
    }

    proptest! {
        #[test]
        fn a_down_peer_is_never_picked(
            peers in proptest::collection::vec((1u32..20, any::<bool>()), 1..10),
            n in 1usize..200,
        ) {
            let weights: Vec<u32> = peers.iter().map(|p| p.0).collect();
            let down: Vec<bool> = peers.iter().map(|p| p.1).collect();
            let rr = RoundRobin::from_weights(&weights);
            let up = |i: usize| !down[i];
            for pick in picks(&rr, n, &up) {
                if down.iter().all(|&d| d) {
                    prop_assert_eq!(pick, usize::MAX);
                } else {
                    prop_assert!(pick < down.len() && !down[pick]);
                }
            }
        }

        #[test]
        fn one_period_gives_shares_proportional_to_weights(
            weights in proptest::collection::vec(1u32..50, 1..10),
        ) {
            let rr = RoundRobin::from_weights(&weights);
            let period: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let mut counts = vec![0u64; weights.len()];
            for pick in picks(&rr, period as usize, &all) {
                counts[pick] += 1;
            }
            for (c, &w) in counts.iter().zip(&weights) {
                prop_assert_eq!(*c, u64::from(w));
            }
        }
    }
}
