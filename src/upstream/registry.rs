//! Live peer state that outlives one configuration.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::peer::PeerState;
use crate::config::{Endpoint, UpstreamConf};

/// Live [`PeerState`] keyed by (upstream name, peer address), so failure counts and
/// in-flight counts survive a configuration reload for peers the new configuration
/// still has.
///
/// The lock is taken only while a configuration is being built (never per request):
/// requests reach the state through the `Arc` each [`super::Peer`] holds. Two `server`
/// lines of one upstream with the same address share one state, as they are one
/// backend. Empty by default.
#[derive(Debug, Default)]
pub struct PeerRegistry {
    peers: Mutex<HashMap<(String, Endpoint), Arc<PeerState>>>,
}

impl PeerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state for `addr` in `upstream`, created (all zero) on first use.
    pub fn get_or_create(&self, upstream: &str, addr: &Endpoint) -> Arc<PeerState> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // operation is a single insert/lookup/retain), so a poisoned lock is still usable.
        let mut map = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry((upstream.to_owned(), addr.clone())).or_default())
    }

    /// Drops the entries no peer of `upstreams` refers to (call after a new config is
    /// built). Requests still running on the old config keep their state alive through
    /// their `Arc` until they finish. A dropped state is marked `removed` and the idle
    /// connection pools are told, so its pooled connections get closed (a peer that
    /// comes back later gets a fresh state, with a new id).
    pub fn retain(&self, upstreams: &[UpstreamConf]) {
        let mut map = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut removed_any = false;
        map.retain(|(name, addr), state| {
            let kept = upstreams
                .iter()
                .any(|u| &u.name == name && u.peers.iter().any(|p| &p.addr == addr));
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
