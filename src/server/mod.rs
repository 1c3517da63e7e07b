//! Listeners, worker threads, client connections, virtual hosts and location matching:
//! everything between an accepted client connection and [`crate::proxy::forward`].

mod admission;
mod autoindex;
mod boxed;
mod charset;
mod charset_downstream;
mod conn;
mod discard;
mod error_pages;
mod gzip;
pub mod gzip_downstream;
mod gzip_ok;
mod h2;
mod h2_downstream;
pub mod holders;
pub mod http1_downstream;
mod keepalive_disable;
pub mod listener;
pub mod location;
mod proxy_target;
mod rewrite;
mod route;
mod state;
pub mod static_files;
mod tls_handshake;
pub mod uri;
pub mod vhost;
pub mod worker;

pub use state::{
    ListenerCmd, RollingReport, Runtime, ServerError, Shared, StopMode, Worker, WorkerControl,
    WorkerReport, WorkersReport,
};
