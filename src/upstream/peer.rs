//! A peer and its live state.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::Millis;
use crate::config::PeerConf;

/// A peer's identity for as long as its state lives: unique in the process and never
/// reused, so a new peer that takes a removed peer's address is a new id (the idle
/// connection pool keys by it, and must not hand the old peer's sockets to the new).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// A fresh id.
    fn next() -> PeerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PeerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Live state of one peer, shared by all worker threads and surviving config reloads
/// (kept in a [`super::PeerRegistry`] keyed by upstream name and address).
///
/// All fields are atomics read and written with `Relaxed` ordering: they are counters
/// and timestamps that steer heuristics, they publish no other memory, and nginx itself
/// reads them without a lock when no shared zone is configured. Every field but `id`
/// (fresh per state) starts at zero (`Default`).
#[derive(Debug)]
pub struct PeerState {
    /// This state's identity; never reused.
    pub id: PeerId,
    /// Set when the peer left the configuration (reload or admin API): pooled idle
    /// connections to it are closed at the next purge. False by default.
    pub removed: AtomicBool,
    /// Failures counted toward `max_fails` (nginx's `peer->fails`); reset by a
    /// successful attempt that follows a trial (see [`super::passive`]).
    pub fails: AtomicU32,
    /// [`Millis`] of the last failure (nginx's `peer->accessed`).
    pub accessed: AtomicU64,
    /// [`Millis`] of the start of the current failure window / last trial (nginx's
    /// `peer->checked`).
    pub checked: AtomicU64,
    /// Attempts picked and not yet reported: active requests/connections, for
    /// `max_conns` and (later) least_conn.
    pub in_flight: AtomicU32,
    /// Attempts ever sent to this peer (statistics).
    pub requests: AtomicU64,
    /// Failed attempts ever (statistics; unlike `fails` never reset).
    pub failures_total: AtomicU64,
    /// `least_time`: peak-EWMA of response latency in microseconds, as `f64` bits;
    /// 0 (the default) means no measurement yet. See [`crate::balance::least_time`].
    pub ewma_us: AtomicU64,
    /// `least_time`: [`Millis`] of the last update of `ewma_us`.
    pub ewma_at: AtomicU64,
    /// Active health: a [`Health`] as `u8` (see [`PeerState::health`]).
    pub health: AtomicU8,
    /// Active health: checks failed in a row (reset by a pass).
    pub hc_fails: AtomicU32,
    /// Active health: checks passed in a row (reset by a failure).
    pub hc_passes: AtomicU32,
    /// Active health: status of the last check response; 0 when it got none
    /// (connect error, timeout) or none ran yet.
    pub hc_last_status: AtomicU32,
    /// Active health: [`Millis`] of the last check's end; 0 when none ran yet.
    pub hc_last_check: AtomicU64,
    /// [`Millis`] when the peer last became usable again (recovered from failures or
    /// an unhealthy check, or added at runtime); 0 = never. `slow_start` ramps from it.
    pub recovered_at: AtomicU64,
    /// Operator state from the admin API: an [`AdminState`] as `u8`.
    pub admin: AtomicU8,
    /// Responses relayed, by status class 1xx..5xx (index 0..4).
    pub responses: [AtomicU64; 5],
    /// Response latency histogram: [`LATENCY_BUCKETS_MS`] upper bounds, then +Inf.
    pub latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of recorded latencies in microseconds (for the Prometheus `_sum`).
    pub latency_sum_us: AtomicU64,
    /// Bytes sent to the peer (request heads and bodies).
    pub bytes_sent: AtomicU64,
    /// Bytes received from the peer and relayed (response bodies).
    pub bytes_received: AtomicU64,
}

/// Upper bounds (milliseconds, inclusive) of the latency histogram buckets: powers of
/// two from 1 ms to ~32 s, then an implicit +Inf bucket. Log-spaced so p50/p99 are
/// within a factor of two with 17 atomics per peer.
pub const LATENCY_BUCKETS_MS: [u64; 16] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
];

/// Active health-check verdict of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No check configured or none finished yet: usable (nginx Plus default).
    Unknown = 0,
    /// The last `passes` checks passed.
    Healthy = 1,
    /// The last `fails` checks failed: out of rotation.
    Unhealthy = 2,
    /// `mandatory`: not usable until the first check passes.
    Checking = 3,
}

impl Health {
    /// From the stored `u8`; unknown values read as [`Health::Unknown`].
    pub fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            3 => Health::Checking,
            _ => Health::Unknown,
        }
    }

    /// The word used by `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Checking => "checking",
        }
    }
}

/// Operator state set through the admin API (kept across reloads with the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Normal (default).
    Up = 0,
    /// No new requests; requests in flight finish.
    Draining = 1,
    /// No requests at all (like the `down` parameter).
    Down = 2,
    /// No requests yet: the process behind the peer is starting (set by `ferrolb up`
    /// until its readiness probe passes). Unavailable like [`AdminState::Down`], but
    /// when a request finds no peer and one of them is starting, the proxy answers
    /// 503 with `Retry-After` (the service is coming) instead of 502.
    Starting = 3,
}

impl AdminState {
    /// From the stored `u8`; unknown values read as [`AdminState::Up`].
    pub fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Down,
            3 => AdminState::Starting,
            _ => AdminState::Up,
        }
    }
}

impl Default for PeerState {
    fn default() -> PeerState {
        PeerState {
            id: PeerId::next(),
            removed: AtomicBool::new(false),
            fails: AtomicU32::new(0),
            accessed: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            health: AtomicU8::new(0),
            hc_fails: AtomicU32::new(0),
            hc_passes: AtomicU32::new(0),
            hc_last_status: AtomicU32::new(0),
            hc_last_check: AtomicU64::new(0),
            recovered_at: AtomicU64::new(0),
            admin: AtomicU8::new(0),
            responses: Default::default(),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        }
    }
}

impl PeerState {
    /// Whether the active health verdict keeps the peer out of rotation: unhealthy, or
    /// `mandatory` and not yet checked. `all_unhealthy` (every peer of the group is
    /// unhealthy, see [`crate::health::active`]) lifts the first case.
    #[inline]
    pub fn kept_out_by_health(&self, all_unhealthy: bool) -> bool {
        match self.health() {
            Health::Unknown | Health::Healthy => false,
            Health::Unhealthy => !all_unhealthy,
            Health::Checking => true,
        }
    }

    /// [`PeerState::accessed`] as [`Millis`].
    pub fn accessed(&self) -> Millis {
        Millis(self.accessed.load(Ordering::Relaxed))
    }

    /// [`PeerState::checked`] as [`Millis`].
    pub fn checked(&self) -> Millis {
        Millis(self.checked.load(Ordering::Relaxed))
    }

    /// The active health verdict.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// The operator state.
    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Records one relayed response: a handful of relaxed atomic adds, no lock (this
    /// runs on the request path). `bytes_in` came from the peer, `bytes_out` went to it.
    pub fn record_response(&self, status: u16, latency: Duration, bytes_in: u64, bytes_out: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let ms = us.div_ceil(1000);
        let bucket = LATENCY_BUCKETS_MS.partition_point(|&b| b < ms);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.bytes_received.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// A snapshot of the latency histogram counts (per bucket, not cumulative).
    pub fn latency_counts(&self) -> [u64; LATENCY_BUCKETS_MS.len() + 1] {
        std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed))
    }

    /// The latency quantile `q` (0..=1) in milliseconds, estimated as the upper bound
    /// of the bucket it falls in (the +Inf bucket reports twice the last bound); `None`
    /// before any response.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<u64> {
        quantile_ms(&self.latency_counts(), q)
    }
}

/// See [`PeerState::latency_quantile_ms`]; over bucket counts.
pub fn quantile_ms(counts: &[u64; LATENCY_BUCKETS_MS.len() + 1], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, at least 1 so q = 0 finds the first non-empty bucket.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(2 * 32768));
        }
    }
    None
}

/// One peer of an upstream at runtime: its configuration and its shared live state.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The `server` line's settings for this address.
    pub conf: PeerConf,
    /// Live state, shared with every other holder of the same (upstream, address).
    pub state: Arc<PeerState>,
}
