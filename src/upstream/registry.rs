//! Live peer state that outlives one configuration.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::peer::PeerState;
use crate::config::{Endpoint, UpstreamConf};

/// Live [`PeerState`] keyed by (upstream name, peer address, occurrence), so failure
/// counts and in-flight counts survive a configuration reload for peers the new
/// configuration still has.
///
/// The lock is taken only while a configuration is being built (never per request):
/// requests reach the state through the `Arc` each [`super::Peer`] holds. Two `server`
/// lines of one upstream with the same address are two peers with a state each, as in
/// nginx (each has its own failures and `max_conns`; the occurrence, 0 for the first
/// line with that address, tells them apart). Empty by default.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    peers: Mutex<HashMap<(String, Endpoint, usize), Arc<PeerState>>>,
}

impl PeerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state for the first peer at `addr` in `upstream`, created (all zero) on
    /// first use.
    pub fn get_or_create(&self, upstream: &str, addr: &Endpoint) -> Arc<PeerState> {
        self.get_or_create_nth(upstream, addr, 0)
    }

    /// The state for the `nth` (from 0) peer at `addr` in `upstream`, created (all
    /// zero) on first use.
    pub fn get_or_create_nth(&self, upstream: &str, addr: &Endpoint, nth: usize) -> Arc<PeerState> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // operation is a single insert/lookup/retain), so a poisoned lock is still usable.
        let mut map = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            map.entry((upstream.to_owned(), addr.clone(), nth))
                .or_default(),
        )
    }

    /// Drops the entries no peer of `upstreams` refers to (call after a new config is
    /// built). Requests still running on the old config keep their state alive through
    /// their `Arc` until they finish. A dropped state is marked `removed` and the idle
    /// connection pools are told, so its pooled connections get closed (a peer that
    /// comes back later gets a fresh state, with a new id).
    pub fn retain(&self, upstreams: &[UpstreamConf]) {
        let mut map = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut removed_any = false;
        map.retain(|(name, addr, nth), state| {
            let kept = upstreams.iter().any(|u| {
                &u.name == name && u.peers.iter().filter(|p| &p.addr == addr).count() > *nth
            });
            if !kept {
                state.removed.store(true, Ordering::Relaxed);
                removed_any = true;
            }
            kept
        });
        if removed_any {
            super::pool::note_removals();
        }
    }

    /// Number of entries (for tests and the admin view).
    pub fn len(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no state is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
