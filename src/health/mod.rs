//! Active health checks (nginx Plus' `health_check` / `match`), on a thread of their
//! own. They update peer state ([`crate::upstream::PeerState`]); the passive accounting
//! (`max_fails`/`fail_timeout`) and the `slow_start=` ramp are peer-state rules and live
//! in [`crate::upstream`].

pub mod active;
