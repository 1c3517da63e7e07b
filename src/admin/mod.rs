//! The admin listener: `/status` JSON, `/metrics` (Prometheus text), runtime peer
//! changes (`PATCH`/`POST`/`DELETE /upstreams/...`), the live dashboard (`GET /`) and,
//! under `ferrolb up`, the worker processes (`GET /workers`, `POST /workers/restart`).
//!
//! Off by default. Enabled by `ferrolb_admin ADDR [token=SECRET];` at http level or by
//! `--admin ADDR` on the command line (which wins). It runs on a thread of its own with
//! a current-thread tokio runtime and a small HTTP/1.1 server on the crate's `http1`
//! codec, so nothing it does (JSON, metrics encoding) runs on a worker's event loop.
//!
//! Every number comes from the same [`crate::upstream::PeerState`] atomics the request
//! path updates; reading them takes no lock.
//!
//! Runtime changes never mutate a selector: they edit an [`Overlay`] kept in
//! [`crate::server::runtime::Shared`], which is applied on top of the configuration,
//! and the runtime is rebuilt and swapped in as on a reload. Drain/down are atomics in
//! the peer state checked by `Upstream::pick`.

mod api;
mod dashboard;
pub mod metrics;
mod overlay;
pub mod server;
pub mod status;

pub use api::{handle, Reply};
pub use overlay::{AddPeer, Overlay};
pub use server::spawn;

use std::net::SocketAddr;

/// Where the admin listener runs and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Listen address (loopback unless configured otherwise).
    pub addr: SocketAddr,
    /// `token=`: with one, every request needs `Authorization: Bearer TOKEN` (or, for
    /// browsers, the RFC 6750 `access_token` query parameter). Default none.
    pub token: Option<String>,
}

/// Why an admin request failed (becomes the status and a JSON error body).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 405.
    #[error("method not allowed")]
    Method,
    /// 500: the rebuilt runtime failed (an access log could not be opened).
    #[error("{0}")]
    Rebuild(String),
}

impl AdminError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            AdminError::BadRequest(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
            AdminError::Method => 405,
            AdminError::Rebuild(_) => 500,
        }
    }
}

/// The worker processes of `ferrolb up` as the admin API sees them (implemented by
/// [`crate::supervise`]; kept as a trait so `admin` does not depend on it).
pub trait WorkerControl: Send + Sync + std::fmt::Debug {
    /// Starts a rolling restart of every worker, one at a time, and returns at once.
    /// `Err` (a reason) when one is already running or the workers are stopping.
    fn restart(&self) -> Result<(), String>;
    /// The workers as JSON: `{"restarting": bool, "workers": [{"port", "pid",
    /// "state", "restarts"}...]}`.
    fn json(&self) -> serde_json::Value;
}

#[cfg(test)]
mod tests;
