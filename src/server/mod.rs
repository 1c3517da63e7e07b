//! Listeners, worker threads and connections; `location` and `vhost` are the pure
//! request-routing functions (which location, which virtual server) they rely on.
pub mod location;
pub mod vhost;
