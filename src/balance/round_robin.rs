//! nginx's smooth weighted round robin, lock-free.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{PickContext, Select};
use crate::upstream::{Peer, Tried};

/// Largest schedule (sum of weights after reduction) [`RoundRobin`] builds: 2^20 slots,
/// 4 MiB per peer set.
pub const MAX_PERIOD: u64 = 1 << 20;

/// Smooth weighted round robin (nginx's default method), shared by all worker threads
/// without a lock.
///
/// At build time the sequence nginx's algorithm yields with every peer healthy is
/// precomputed for one period (the sum of the weights); a shared atomic cursor walks
/// it, one `fetch_add` per pick. So with all peers healthy every thread together sees
/// exactly nginx's order (weights 5,1,1 give `a a b a c a a`), and there is no lock on
/// the request path. Weight 0 (which the config rejects) is taken as 1.
///
/// **Period cap.** Weights are first divided by their greatest common divisor, which
/// changes nothing (the algorithm is linear: weights k·w give the sequence of w). If
/// the sum is still above [`MAX_PERIOD`], every weight is scaled to
/// `max(1, w · MAX_PERIOD / sum)`: shares then differ from the configured ones by less
/// than one slot in 2^20 per peer, and every peer keeps at least one slot.
///
/// **Deviation from nginx under failures.** nginx lowers a failing peer's
/// `effective_weight` (by `weight / max_fails` per failure, recovering by one per pick)
/// and rebalances the running weights among the peers it can use. Here a peer that is
/// not eligible (down, tried, disabled, at `max_conns`) is skipped: the cursor advances
/// (another `fetch_add`) until an eligible peer's slot, for at most one period, so the
/// remaining peers keep shares proportional to their weights, and a peer is used at
/// full weight as soon as it is eligible again (no gradual ramp-up). The cursor is a
/// `usize`; its wrap after 2^64 picks shifts the phase once, harmlessly.
#[derive(Debug)]
pub struct RoundRobin {
    /// Peer indices in nginx's order for one period.
    schedule: Box<[u32]>,
    /// Number of peers the schedule is over.
    peers: usize,
    /// Picks so far (across all threads); the next slot is `cursor % schedule.len()`.
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// A selector over `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        let weights: Vec<u32> = peers.iter().map(|p| p.conf.weight).collect();
        Self::from_weights(&weights)
    }

    /// A selector over peers with these weights (index i has weight `weights[i]`).
    pub fn from_weights(weights: &[u32]) -> Self {
        RoundRobin {
            schedule: build_schedule(weights).into_boxed_slice(),
            peers: weights.len(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// One period of the precomputed order (peer indices).
    pub fn schedule(&self) -> &[u32] {
        &self.schedule
    }

    /// The next slot of the schedule (a peer index), advancing the shared cursor.
    pub(crate) fn next_slot(&self) -> usize {
        // Relaxed: the cursor only spreads picks; nothing is published through it.
        let c = self.cursor.fetch_add(1, Relaxed);
        self.schedule[c % self.schedule.len()] as usize
    }
}

impl Select for RoundRobin {
    fn pick(
        &self,
        _peers: &[Peer],
        _ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let first = self.next_slot();
        if eligible(first) {
            return Some(first);
        }
        // Slow path. Ask each peer once instead of once per slot (a period can be long),
        // and give up at once when nobody is eligible instead of burning a period.
        let mut ok = Tried::new(self.peers);
        for i in (0..self.peers).filter(|&i| eligible(i)) {
            ok.insert(i);
        }
        if ok.is_empty() {
            return None;
        }
        // Every peer has a slot in every window of one period, so this finds one.
        (1..self.schedule.len())
            .map(|_| self.next_slot())
            .find(|&i| ok.contains(i))
    }
}

/// One period of nginx's smooth weighted round robin with every peer healthy, after
/// the reduction documented on [`RoundRobin`].
fn build_schedule(weights: &[u32]) -> Vec<u32> {
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x.max(1))).collect();
    let g = w.iter().copied().fold(0, gcd);
    if g > 1 {
        w.iter_mut().for_each(|x| *x /= g);
    }
    let sum: u64 = w.iter().sum();
    if sum > MAX_PERIOD {
        // x ≤ 2^32 and MAX_PERIOD = 2^20, so the product fits in u64.
        w.iter_mut()
            .for_each(|x| *x = (*x * MAX_PERIOD / sum).max(1));
    }
    let total: u64 = w.iter().sum();
    // nginx's get_peer, literally: every peer's current weight grows by its weight; the
    // largest (first on ties) wins and pays back the total. Signed: currents go negative.
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    let w: Vec<i64> = w
        .iter()
        .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
        .collect();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let mut best = 0;
        for (i, &c) in current.iter().enumerate() {
            if c > current[best] {
                best = i;
            }
        }
        current[best] -= total_i;
        out.push(u32::try_from(best).unwrap_or(u32::MAX));
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
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

    #[test]
    fn period_is_capped() {
        let rr = RoundRobin::from_weights(&[u32::MAX, 1 << 30, 7]);
        let s = rr.schedule();
        assert!(s.len() as u64 <= MAX_PERIOD + 3);
        for i in 0..3 {
            assert!(s.contains(&i), "peer {i} lost its slot");
        }
        // Reduction by the gcd is exact: shares and order are unchanged.
        assert_eq!(
            RoundRobin::from_weights(&[10, 2, 2]).schedule(),
            [0, 0, 1, 0, 2, 0, 0]
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
            let period = rr.schedule().len();
            let mut counts = vec![0u64; weights.len()];
            for pick in picks(&rr, period, &all) {
                counts[pick] += 1;
            }
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            for (c, &w) in counts.iter().zip(&weights) {
                prop_assert_eq!(c * total, u64::from(w) * period as u64);
            }
        }
    }
}
