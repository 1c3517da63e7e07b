//! Balancing methods: which eligible peer of a group serves the next attempt.
//!
//! Every method implements [`Select`]; [`selector_for`] is the one place an upstream's
//! [`BalanceMethod`] (and `sticky`) becomes a selector, so a new method is a new file
//! here plus one match arm. Selectors are immutable after build (rebuilt on config
//! change) apart from lock-free cursors; they keep no per-peer state: live state
//! (failures, in-flight counts, latency EWMA) lives in [`crate::upstream::PeerState`],
//! and availability reaches the selector as the `eligible` predicate.
//!
//! What nginx's methods share lives here once: the weight table (`hash % total weight`
//! → peer, weighted random draws), the "draw up to 20 times, then round robin" loop of
//! `ip_hash`, `hash` and `random` ([`probe_then_round_robin`]), the load comparison of
//! `least_conn` and `random two` ([`less_loaded`]) and the random source.

pub mod chash;
pub mod dynamic;
mod group;
pub mod hash;
pub mod ip_hash;
pub mod least_conn;
pub mod least_time;
pub mod random;
pub mod round_robin;
pub mod sticky;

pub use chash::ConsistentHash;
pub use group::{Report, Upstream};
pub use hash::Hash;
pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use least_time::LeastTime;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, PoisonError};

use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};

use crate::config::{BalanceMethod, UpstreamConf};
use crate::upstream::{Millis, Peer};

/// Per-request input a method may use besides peer state. All empty by default; round
/// robin reads none of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickContext<'a> {
    /// The client address (`ip_hash`). `None` (default) hashes like nginx's non-IP
    /// clients: three zero bytes.
    pub client: Option<IpAddr>,
    /// The evaluated `hash` key. `None` (default) hashes as the empty key.
    pub key: Option<&'a [u8]>,
    /// The peer id from a valid `sticky` cookie ([`sticky::parse_cookie`]). Default
    /// none.
    pub sticky: Option<u64>,
    /// The time of the pick (`least_time` decays latencies with it). Set by
    /// [`Upstream::pick_with`]; default `Millis(0)`.
    pub now: Millis,
}

/// A selection policy over one set of peers (an upstream's primaries, or its backups).
pub trait Select: Send + Sync {
    /// Picks one index into `peers` for which `eligible(index)` is true, or `None` when
    /// the method finds none. `eligible` folds in everything but the method itself
    /// (down, tried by this request, failure window, `max_conns`); it is cheap and may
    /// be called several times per index. Called concurrently from every worker thread.
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;

    /// An attempt at peer `i` failed (nginx's `NGX_PEER_FAILED`): methods that keep
    /// weights lower it. Nothing by default.
    fn failed(&self, _i: usize) {}
}

/// The selector for `conf`'s method (wrapped in [`Sticky`] when `sticky` is set) over
/// `peers` (one set: primaries or backups; weights come from their config).
pub fn selector_for(conf: &UpstreamConf, peers: &[Peer]) -> Box<dyn Select> {
    let method: Box<dyn Select> = match &conf.method {
        BalanceMethod::RoundRobin => Box::new(RoundRobin::new(peers)),
        BalanceMethod::LeastConn => Box::new(LeastConn::new(peers)),
        BalanceMethod::IpHash => Box::new(IpHash::new(peers)),
        BalanceMethod::Hash {
            consistent: false, ..
        } => Box::new(Hash::new(peers)),
        BalanceMethod::Hash {
            consistent: true, ..
        } => Box::new(ConsistentHash::new(peers)),
        BalanceMethod::Random { two } => {
            Box::new(Random::new(peers, *two, RandomSource::PerThread))
        }
        BalanceMethod::LeastTime { decay, .. } => {
            Box::new(LeastTime::new(peers, *decay, RandomSource::PerThread))
        }
    };
    match &conf.sticky {
        Some(_) => Box::new(Sticky::new(method, peers)),
        None => method,
    }
}

/// How many failed draws nginx's `ip_hash`, `hash` and `random` allow before they fall
/// back to round robin (`tries > 20`: the 21st failed draw switches).
pub const NGINX_DRAWS: usize = 21;

/// nginx's skeleton of `ip_hash`, `hash` and `random`: up to [`NGINX_DRAWS`] draws,
/// each `Some(index)` when it settled on an eligible peer, then round robin over the
/// same set. `draw` keeps its own state (hash chain, first candidate of two).
///
/// **Deviation:** nginx keeps the draw count and the hash chain per request across
/// retries; here every pick starts afresh, so a retry re-walks the chain, skipping the
/// peers already tried (which is where nginx's chain went on from) and counting them
/// toward the 20.
pub fn probe_then_round_robin(
    fallback: &RoundRobin,
    peers: &[Peer],
    ctx: &PickContext<'_>,
    eligible: &dyn Fn(usize) -> bool,
    mut draw: impl FnMut() -> Option<usize>,
) -> Option<usize> {
    if peers.len() >= 2 {
        for _ in 0..NGINX_DRAWS {
            if let Some(i) = draw() {
                return Some(i);
            }
        }
    }
    // nginx goes straight to round robin for a single peer, too.
    fallback.pick(peers, ctx, eligible)
}

/// Whether peer `a` is less loaded than `b` as nginx compares them: in-flight count
/// relative to weight, `conns_a · weight_b < conns_b · weight_a` (no division).
pub fn less_loaded(peers: &[Peer], a: usize, b: usize) -> bool {
    let load = |i: usize| {
        (
            u64::from(peers[i].state.in_flight.load(Relaxed)),
            u64::from(peers[i].conf.weight.max(1)),
        )
    };
    let ((ca, wa), (cb, wb)) = (load(a), load(b));
    ca * wb < cb * wa
}

/// Cumulative weights of one peer set: maps a number below the total weight to a peer
/// the way nginx walks `w -= peer->weight` (the same index, by binary search).
#[derive(Debug, Clone)]
pub struct Weights {
    /// `cum[i]`: the sum of the weights of peers `0..=i` (weight 0 counts as 1).
    cum: Box<[u64]>,
}

impl Weights {
    /// The table for `weights` in peer order.
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let mut sum = 0u64;
        let cum = weights
            .into_iter()
            .map(|w| {
                sum += u64::from(w.max(1));
                sum
            })
            .collect();
        Weights { cum }
    }

    /// The table for the weights of `peers`.
    pub fn of(peers: &[Peer]) -> Self {
        Self::new(peers.iter().map(|p| p.conf.weight))
    }

    /// The total weight (0 for no peers).
    pub fn total(&self) -> u64 {
        self.cum.last().copied().unwrap_or(0)
    }

    /// The peer whose weight range holds `x` (`x` is taken modulo the total).
    pub fn index(&self, x: u64) -> usize {
        let total = self.total().max(1);
        let x = x % total;
        self.cum.partition_point(|&c| c <= x)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.cum.len()
    }

    /// True for no peers.
    pub fn is_empty(&self) -> bool {
        self.cum.is_empty()
    }
}

/// Where the random methods (`random`, `least_time`'s weighted draw) get their
/// numbers: the `rand` crate's generator of the calling thread, which no other thread
/// touches (no lock, no shared cache line), or, for tests and benches that must
/// repeat, one [`SmallRng`] from a fixed seed. Not for secrets.
#[derive(Debug)]
pub enum RandomSource {
    /// The calling thread's [`rand::rng`]: seeded from the OS, reseeded now and then.
    PerThread,
    /// One generator from a fixed seed, behind a lock: the same draws on every run.
    /// The lock is only ever taken by tests and benches.
    Seeded(Mutex<SmallRng>),
}

impl RandomSource {
    /// A deterministic source starting from `seed` (tests and benches).
    pub fn with_seed(seed: u64) -> Self {
        RandomSource::Seeded(Mutex::new(SmallRng::seed_from_u64(seed)))
    }

    /// A number in `0..n`, uniform; 0 when `n` is 0.
    pub fn below(&self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        match self {
            RandomSource::PerThread => rand::rng().random_range(0..n),
            RandomSource::Seeded(rng) => rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .random_range(0..n),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
