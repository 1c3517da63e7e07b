//! Name resolution at request time, for `proxy_pass` hosts given by variables, with the
//! DNS servers of nginx's `resolver` directive (never `/etc/hosts` nor the system's
//! resolver, as nginx). One resolver per worker thread and configuration: hickory's
//! lookups run their I/O on the runtime that asks, and each worker thread has its own.
//! Answers are cached for their TTL, or for `valid=` when given.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::ResolverConf;

/// Why a name has no address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The servers say the name does not exist, or has no address of the asked kinds.
    #[error("Host not found")]
    NotFound,
    /// No answer within `resolver_timeout`.
    #[error("Operation timed out")]
    TimedOut,
    /// Anything else (unreachable server, bad answer).
    #[error("{0}")]
    Failed(String),
}

impl ResolveError {
    /// nginx's code for the error log (`could not be resolved (3: Host not found)`).
    pub fn code(&self) -> u8 {
        match self {
            ResolveError::NotFound => 3,
            ResolveError::TimedOut => 110,
            ResolveError::Failed(_) => 2,
        }
    }
}

thread_local! {
    static RESOLVERS: RefCell<HashMap<(ResolverConf, Duration), TokioResolver>> =
        RefCell::new(HashMap::new());
}

/// The addresses of `host` as `conf`'s servers answer within `timeout`.
pub async fn lookup(
    conf: &ResolverConf,
    timeout: Duration,
    host: &str,
) -> Result<Vec<IpAddr>, ResolveError> {
    let resolver = RESOLVERS.with(|r| {
        let mut r = r.borrow_mut();
        let key = (conf.clone(), timeout);
        if let Some(found) = r.get(&key) {
            return Ok(found.clone());
        }
        // A reload with other servers leaves an unused entry behind; a handful at most.
        if r.len() > 16 {
            r.clear();
        }
        let made = build(conf, timeout).map_err(|e| ResolveError::Failed(e.to_string()))?;
        r.insert(key, made.clone());
        Ok(made)
    })?;
    // nginx asks for a fully qualified name: no search domains.
    let name = if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    };
    match tokio::time::timeout(timeout, resolver.lookup_ip(name.as_str())).await {
        Err(_) => Err(ResolveError::TimedOut),
        Ok(Ok(found)) => {
            let addrs: Vec<IpAddr> = found.iter().collect();
            if addrs.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => Err(ResolveError::NotFound),
        Ok(Err(e)) => Err(ResolveError::Failed(e.to_string())),
    }
}

fn build(
    conf: &ResolverConf,
    timeout: Duration,
) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let servers = conf
        .servers
        .iter()
        .map(|s| {
            let mut ns = NameServerConfig::udp_and_tcp(s.ip());
            for c in &mut ns.connections {
                c.port = s.port();
            }
            ns
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.ip_strategy = match (conf.ipv4, conf.ipv6) {
        (true, false) => LookupIpStrategy::Ipv4Only,
        (false, true) => LookupIpStrategy::Ipv6Only,
        _ => LookupIpStrategy::Ipv4AndIpv6,
    };
    if let Some(valid) = conf.valid {
        opts.positive_min_ttl = Some(valid);
        opts.positive_max_ttl = Some(valid);
    }
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
}
