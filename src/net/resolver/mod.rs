//! Name resolution at request time, for `proxy_pass` hosts given by variables, with the
//! DNS servers of nginx's `resolver` directive (never `/etc/hosts` nor the system's
//! resolver, as nginx), by nginx's own algorithm ([`engine`]) over DNS messages as
//! nginx writes and reads them ([`wire`]).
//!
//! Each `resolver` directive is its own resolver, with its own cache and its own turn
//! among its servers, as in nginx (locations that inherit one share it). Each worker
//! thread runs its own, as each nginx worker process does.

mod engine;
mod wire;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::ResolverConf;

/// Why a name has no address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The servers answered with this error code (3 when the name does not exist or
    /// has no address of the asked kinds, or a chain of CNAMEs is too long).
    #[error("{}", wire::strerror(u16::from(*.0)))]
    Dns(u8),
    /// No answer within `resolver_timeout`.
    #[error("Operation timed out")]
    TimedOut,
    /// The worker's resolver is gone (the worker is stopping).
    #[error("{0}")]
    Failed(String),
}

impl ResolveError {
    /// nginx's code for the error log (`could not be resolved (3: Host not found)`).
    pub fn code(&self) -> u16 {
        match self {
            ResolveError::Dns(c) => u16::from(*c),
            ResolveError::TimedOut => 110,
            ResolveError::Failed(_) => 2,
        }
    }
}

thread_local! {
    /// This thread's resolvers, by the configuration's `resolver` (its `Arc`: one per
    /// directive). A configuration replaced by a reload lets its resolvers stop.
    static RESOLVERS: RefCell<Vec<(Arc<ResolverConf>, mpsc::UnboundedSender<engine::Request>)>> =
        const { RefCell::new(Vec::new()) };
}

/// The addresses of `host` as `conf`'s servers answer within `timeout` (none: no
/// limit, as nginx's `resolver_timeout 0`), in the order to try them.
pub async fn lookup(
    conf: &Arc<ResolverConf>,
    timeout: Duration,
    host: &str,
) -> Result<Vec<IpAddr>, ResolveError> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let (reply, answer) = oneshot::channel();
    let gone = || ResolveError::Failed("resolver stopped".to_owned());
    resolver_for(conf)
        .send(engine::Request { name, reply })
        .map_err(|_| gone())?;
    if timeout.is_zero() {
        return answer.await.unwrap_or_else(|_| Err(gone()));
    }
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Err(ResolveError::TimedOut),
        Ok(r) => r.unwrap_or_else(|_| Err(gone())),
    }
}

/// This thread's resolver for `conf`, started when first needed.
fn resolver_for(conf: &Arc<ResolverConf>) -> mpsc::UnboundedSender<engine::Request> {
    RESOLVERS.with(|r| {
        let mut r = r.borrow_mut();
        // Only this list holds a configuration a reload replaced; a stopped runtime
        // leaves closed channels.
        r.retain(|(c, tx)| Arc::strong_count(c) > 1 && !tx.is_closed());
        if let Some((_, tx)) = r.iter().find(|(c, _)| Arc::ptr_eq(c, conf)) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(engine::run((**conf).clone(), rx));
        r.push((conf.clone(), tx.clone()));
        tx
    })
}
