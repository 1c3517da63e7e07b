//! Peer health: how attempts' outcomes make peers unavailable and available again.
//!
//! Only passive checks exist so far ([`passive`]: nginx's `max_fails`/`fail_timeout`),
//! driven by [`crate::upstream::Upstream::pick`] and [`crate::upstream::Upstream::report`].

pub mod passive;
