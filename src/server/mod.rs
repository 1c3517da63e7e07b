//! Listeners, worker threads, client connections, virtual hosts and location matching.

pub mod buffers;
mod conn;
pub mod listener;
pub mod location;
pub mod respond;
pub mod runtime;
pub mod uri;
pub mod vhost;
mod worker;
