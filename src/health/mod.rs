//! Peer health: how attempts' outcomes and active checks make peers unavailable and
//! available again.
//!
//! * [`passive`]: nginx's `max_fails`/`fail_timeout`, driven by
//!   [`crate::upstream::Upstream::pick`] and [`crate::upstream::Upstream::report`].
//! * [`active`]: nginx Plus' `health_check` / `match`, on a thread of its own.
//! * [`slow_start`]: the `slow_start=` ramp after a recovery.

pub mod active;
pub mod passive;
pub mod slow_start;
