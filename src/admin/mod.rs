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
//! [`crate::server::Shared`], which is applied on top of the configuration,
//! and the runtime is rebuilt and swapped in as on a reload. Drain/down are atomics in
//! the peer state checked by `Upstream::pick`.

mod api;
mod dashboard;
pub mod metrics;
pub mod server;
pub mod status;

pub use crate::config::{AddPeer, Overlay};
pub use crate::server::WorkerControl;
pub use api::{handle, Reply};
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

#[cfg(test)]
mod tests;
