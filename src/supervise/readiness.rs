//! Whether a started worker is ready for traffic: the upstream's `health_check` (an
//! HTTP request judged by `uri=`/`match=`, run by [`crate::health::active::probe`])
//! when one is configured, else a TCP connect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::HealthCheckConf;

/// Time between two probes of a starting worker: 100 ms.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Time limit of one TCP connect probe: 1 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The readiness test of every worker.
#[derive(Debug, Clone)]
pub enum Check {
    /// Something accepts TCP connections on the worker's port (default).
    Connect,
    /// The upstream's `health_check` passes.
    Http(Arc<HealthCheckConf>),
}

impl Check {
    /// Probes once: `Err` says why the worker is not ready.
    pub async fn probe(&self, addr: SocketAddr) -> Result<(), String> {
        match self {
            Check::Connect => {
                match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("connect() to {addr} failed ({e})")),
                    Err(_) => Err(format!("connect() to {addr} timed out")),
                }
            }
            Check::Http(hc) => {
                let r = crate::health::active::probe(&addr.into(), hc).await;
                if r.ok {
                    Ok(())
                } else {
                    Err(format!("health check GET {} failed: {}", hc.uri, r.why))
                }
            }
        }
    }

    /// Probes every [`PROBE_INTERVAL`] until one passes (returns the time it took) or
    /// `limit` passes (returns the last reason).
    pub async fn wait(&self, addr: SocketAddr, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let last = match self.probe(addr).await {
                Ok(()) => return Ok(start.elapsed()),
                Err(why) => why,
            };
            if start.elapsed() >= limit {
                return Err(format!("not ready after {}s: {last}", limit.as_secs()));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Describes the check for the terminal.
    pub fn describe(&self) -> String {
        match self {
            Check::Connect => "TCP connect".to_owned(),
            Check::Http(hc) => format!("HTTP GET {}", hc.uri),
        }
    }
}
