//! STUB (h-cli): placeholder for the proxy runtime API so the CLI and demo build before
//! the runtime lands. The lead replaces this whole file.

use std::path::PathBuf;

use crate::config::{self, LogTarget};

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file (already resolved against the prefix).
    pub conf_path: PathBuf,
    /// How to load it.
    pub load: config::LoadOptions,
    /// `-e`: overrides the configuration's `error_log` target.
    pub error_log_override: Option<LogTarget>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerError(String);

/// Runs the load balancer until stopped by a signal. STUB: always fails.
pub fn run(opts: RunOptions) -> Result<(), ServerError> {
    let _ = opts;
    Err(ServerError("proxy runtime not merged yet".to_owned()))
}

/// As [`run`], also stopping when `shutdown` turns true. STUB: always fails.
pub fn run_with_shutdown(
    opts: RunOptions,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let _ = (opts, shutdown);
    Err(ServerError("proxy runtime not merged yet".to_owned()))
}
