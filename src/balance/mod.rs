//! Balancing methods: which eligible peer of a group serves the next attempt.
//!
//! Every method implements [`Select`]; [`selector_for`] is the one place a
//! [`BalanceMethod`] becomes a selector, so a new method is a new file here plus one
//! match arm. Selectors are immutable after build (rebuilt on config change) and keep
//! no per-peer state: live state (failures, in-flight counts) lives in
//! [`crate::upstream::PeerState`], and availability reaches the selector as the
//! `eligible` predicate.

pub mod round_robin;

pub use round_robin::RoundRobin;

use crate::config::BalanceMethod;
use crate::upstream::Peer;

/// Per-request input a method may use besides peer state. Empty (no key) by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickContext<'a> {
    /// The request's balancing key, for key-based methods (`ip_hash`: the client
    /// address bytes; `hash`: the evaluated key; sticky: the cookie). `None` by default;
    /// round robin ignores it.
    pub key: Option<&'a [u8]>,
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
}

/// The selector for `method` over `peers` (weights are read from their config).
pub fn selector_for(method: &BalanceMethod, peers: &[Peer]) -> Box<dyn Select> {
    match method {
        BalanceMethod::RoundRobin => Box::new(RoundRobin::new(peers)),
    }
}
