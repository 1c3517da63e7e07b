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

    fn next_slot(&self) -> usize {
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
