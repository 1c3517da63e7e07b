//! A peer and its live state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::clock::Millis;
use crate::config::PeerConf;

/// Live state of one peer, shared by all worker threads and surviving config reloads
/// (kept in a [`super::PeerRegistry`] keyed by upstream name and address).
///
/// All fields are atomics read and written with `Relaxed` ordering: they are counters
/// and timestamps that steer heuristics, they publish no other memory, and nginx itself
/// reads them without a lock when no shared zone is configured. Every field starts at
/// zero (`Default`).
#[derive(Debug, Default)]
pub struct PeerState {
    /// Failures counted toward `max_fails` (nginx's `peer->fails`); reset by a
    /// successful attempt that follows a trial (see [`crate::health::passive`]).
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
}

impl PeerState {
    /// [`PeerState::accessed`] as [`Millis`].
    pub fn accessed(&self) -> Millis {
        Millis(self.accessed.load(Ordering::Relaxed))
    }

    /// [`PeerState::checked`] as [`Millis`].
    pub fn checked(&self) -> Millis {
        Millis(self.checked.load(Ordering::Relaxed))
    }
}

/// One peer of an upstream at runtime: its configuration and its shared live state.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The `server` line's settings for this address.
    pub conf: PeerConf,
    /// Live state, shared with every other holder of the same (upstream, address).
    pub state: Arc<PeerState>,
}
