//! Futures boxed where they are built.
//!
//! The connection task boxes the large, short-lived states (a request, an HTTP/2
//! stream, a TLS handshake, a static answer) so that an idle connection stays small.
//! `Box::pin(f)` builds `f` on the stack and then copies all of it into the box, its
//! whole size whatever the state (8 KiB for a request); allocating first and building
//! the future into the allocation skips that copy.

use std::future::Future;
use std::pin::Pin;

/// The future `make` builds, built in a fresh box.
#[inline(always)]
pub(super) fn in_box<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
