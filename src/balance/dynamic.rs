//! Groups made at request time, for `proxy_pass` with variables whose host is an
//! address or a name resolved by `resolver`: nginx then balances over the addresses
//! like an implicit group of its own, made for the request
//! (`ngx_http_upstream_create_round_robin_peer`): its round robin starts afresh and a
//! failed peer is not remembered by the next request (a name whose addresses all
//! failed is tried again, as nginx does, rather than answered "no live upstreams").

use std::sync::Arc;
use std::time::Duration;

use super::Upstream;
use crate::config::{BalanceMethod, Endpoint, PeerConf, Span, UpstreamConf};
use crate::upstream::PeerRegistry;

/// Makes the request-time groups of one configuration. Holds no state: each group
/// is the request's own.
#[derive(Debug, Default)]
pub struct DynamicGroups;

impl DynamicGroups {
    /// A group named `name` (`host:port` as the request gave it) over `addrs`,
    /// round robin with nginx's defaults for implicit groups, with fresh peer state.
    pub fn get(&self, name: &str, addrs: &[Endpoint]) -> Arc<Upstream> {
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
        Arc::new(Upstream::build(&conf, &PeerRegistry::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_gets_fresh_state() {
        let d = DynamicGroups;
        let a: Endpoint = "127.0.0.1:1".parse().expect("addr");
        let g1 = d.get("app:80", std::slice::from_ref(&a));
        g1.peers[0]
            .state
            .fails
            .store(5, std::sync::atomic::Ordering::Relaxed);
        let g2 = d.get("app:80", std::slice::from_ref(&a));
        assert_eq!(
            g2.peers[0]
                .state
                .fails
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(g2.name, "app:80");
    }
}
