//! The transport layer: what carries HTTP bytes between ferrolb and its peers, below
//! any knowledge of upstream groups or locations.
//!
//! * [`buffers`]: per-thread free lists of I/O buffers and recycled parsed heads.
//! * [`io`]: socket reads and writes that try first and arm a timeout only when they
//!   have to wait, with nginx's error wording.
//! * [`ClientInfo`]: who a client connection is.

pub mod buffers;
pub mod io;
mod stream;

pub use stream::Stream;

use std::net::SocketAddr;

/// The client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// Connection number, nginx's `*N` in the error log.
    pub id: u64,
    /// The client's address.
    pub remote: SocketAddr,
    /// The local address it connected to.
    pub local: SocketAddr,
}
