//! Groups made at request time, for `proxy_pass` with variables whose host is an
//! address or a name resolved by `resolver`: nginx then balances over the addresses
//! like an implicit group of its own. A group is kept per name and address set, so
//! passive health state (`max_fails`) holds across requests to the same peers; a new
//! DNS answer with other addresses makes a new group. The peer state lives in a
//! registry of its own, dropped with the configuration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Upstream;
use crate::config::{BalanceMethod, Endpoint, PeerConf, Span, UpstreamConf};
use crate::upstream::PeerRegistry;

/// Groups kept at most; beyond, the cache starts over (names come from requests, so
/// their number must not grow without bound).
const MAX_GROUPS: usize = 1024;

/// A group's identity: the name the request gave and the addresses it resolved to.
type GroupKey = (String, Vec<Endpoint>);

/// The request-time groups of one configuration. Empty by default.
#[derive(Debug, Default)]
pub struct DynamicGroups {
    registry: PeerRegistry,
    groups: Mutex<HashMap<GroupKey, Arc<Upstream>>>,
}

impl DynamicGroups {
    /// The group named `name` (`host:port` as the request gave it) over `addrs`,
    /// round robin with nginx's defaults for implicit groups.
    pub fn get(&self, name: &str, addrs: &[Endpoint]) -> Arc<Upstream> {
        let key = (name.to_owned(), addrs.to_vec());
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = groups.get(&key) {
            return Arc::clone(g);
        }
        if groups.len() >= MAX_GROUPS {
            groups.clear();
        }
        let span = Span::synthetic("proxy_pass with variables");
        let conf = UpstreamConf {
            name: name.to_owned(),
            span: span.clone(),
            implicit: true,
            method: BalanceMethod::RoundRobin,
            sticky: None,
            peers: addrs
                .iter()
                .map(|a| PeerConf::new(name.to_owned(), a.clone(), span.clone()))
                .collect(),
            keepalive: None,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_time: Duration::from_secs(3600),
            keepalive_requests: 1000,
        };
        let group = Arc::new(Upstream::build(&conf, &self.registry));
        groups.insert(key, Arc::clone(&group));
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_and_addresses_share_a_group() {
        let d = DynamicGroups::default();
        let a: Endpoint = "127.0.0.1:1".parse().expect("addr");
        let b: Endpoint = "127.0.0.1:2".parse().expect("addr");
        let g1 = d.get("app:80", std::slice::from_ref(&a));
        let g2 = d.get("app:80", std::slice::from_ref(&a));
        assert!(Arc::ptr_eq(&g1, &g2));
        let g3 = d.get("app:80", &[a, b]);
        assert!(!Arc::ptr_eq(&g1, &g3));
    }
}
