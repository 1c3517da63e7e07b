//! Runtime peer changes made through the admin API, kept apart from the configuration
//! and applied on top of it whenever a runtime is built (admin change or reload).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Config, Endpoint, PeerConf, Span};

/// Changes per upstream name. Applying is idempotent (applying twice gives the same
/// configuration), so it may be applied to a configuration that already has it.
/// They persist across reloads for upstreams that still exist. Empty by default.
#[derive(Debug, Default, Clone)]
pub struct Overlay {
    upstreams: HashMap<String, UpstreamOverlay>,
}

#[derive(Debug, Default, Clone)]
struct UpstreamOverlay {
    added: Vec<PeerConf>,
    removed: BTreeSet<Endpoint>,
    weights: HashMap<Endpoint, u32>,
}

/// The JSON body of `POST /upstreams/{name}/peers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    /// `IP:PORT` of the new peer.
    pub addr: SocketAddr,
    /// Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Default 1.
    #[serde(default = "one")]
    pub max_fails: u32,
    /// Seconds; default 10.
    #[serde(default = "ten")]
    pub fail_timeout: u64,
    /// Seconds of slow start; default 0 (off).
    #[serde(default)]
    pub slow_start: u64,
    /// Default false.
    #[serde(default)]
    pub backup: bool,
    /// Default 0 (unlimited).
    #[serde(default)]
    pub max_conns: u32,
}

fn one() -> u32 {
    1
}
fn ten() -> u64 {
    10
}

impl Overlay {
    /// Applies the changes to `config`'s upstreams.
    pub fn apply(&self, config: &mut Config) {
        for u in &mut config.http.upstreams {
            let Some(o) = self.upstreams.get(&u.name) else {
                continue;
            };
            u.peers.retain(|p| !o.removed.contains(&p.addr));
            for a in &o.added {
                if !u.peers.iter().any(|p| p.addr == a.addr) {
                    u.peers.push(a.clone());
                }
            }
            for p in &mut u.peers {
                if let Some(&w) = o.weights.get(&p.addr) {
                    p.weight = w;
                }
            }
        }
    }

    /// Records a weight change.
    pub fn set_weight(&mut self, upstream: &str, addr: SocketAddr, weight: u32) {
        self.entry(upstream).weights.insert(addr.into(), weight);
    }

    /// Records an added peer (undoing an earlier removal of the same address).
    pub fn add(&mut self, upstream: &str, p: &AddPeer) {
        let o = self.entry(upstream);
        o.removed.remove(&Endpoint::Inet(p.addr));
        o.added.retain(|a| a.addr != Endpoint::Inet(p.addr));
        o.weights.remove(&Endpoint::Inet(p.addr));
        o.added.push(PeerConf {
            weight: p.weight,
            max_fails: p.max_fails,
            fail_timeout: Duration::from_secs(p.fail_timeout),
            backup: p.backup,
            max_conns: p.max_conns,
            slow_start: Duration::from_secs(p.slow_start),
            ..PeerConf::new(
                p.addr.to_string(),
                p.addr.into(),
                Span::synthetic("admin API"),
            )
        });
    }

    /// Records a removal.
    pub fn remove(&mut self, upstream: &str, addr: Endpoint) {
        let o = self.entry(upstream);
        o.added.retain(|a| a.addr != addr);
        o.weights.remove(&addr);
        o.removed.insert(addr);
    }

    fn entry(&mut self, upstream: &str) -> &mut UpstreamOverlay {
        self.upstreams.entry(upstream.to_owned()).or_default()
    }
}
