//! Upstream peers as state: each peer's configuration and live [`PeerState`] (atomics
//! shared by every worker thread), the registry that keeps that state across reloads,
//! the per-thread idle connection pool, the clock, the set of peers a request tried,
//! and the accounting rules that read and update peer state: nginx's passive
//! `max_fails`/`fail_timeout` ([`passive`]) and the `slow_start=` ramp ([`slow_start`]).
//!
//! Nothing here picks a peer (that is [`crate::balance`]) or talks to one.

mod clock;
pub mod passive;
mod peer;
pub mod pool;
mod registry;
pub mod slow_start;
mod tried;

pub(crate) use clock::duration_ms;
pub use clock::{now, Millis};
pub use peer::{quantile_ms, AdminState, Health, Peer, PeerId, PeerState, LATENCY_BUCKETS_MS};
pub use registry::PeerRegistry;
pub use tried::Tried;

/// How an attempt on a peer ended, as far as peer health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered acceptably. Also what to report for an attempt abandoned
    /// without a verdict (client gone): nginx frees the peer with state 0 then, which
    /// takes this path.
    Success,
    /// The attempt failed in a way `proxy_next_upstream` counts (nginx's
    /// `NGX_PEER_FAILED`: error, timeout, invalid header, or a listed status).
    Failure,
}
