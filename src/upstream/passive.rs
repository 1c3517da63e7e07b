//! Passive health accounting: nginx's `max_fails` / `fail_timeout`, in one place.
//!
//! The rules (nginx `ngx_http_upstream_round_robin.c`, `get_peer` and `free_peer`), with
//! times in [`Millis`] instead of nginx's whole seconds:
//!
//! * **Failure** of an attempt: `fails += 1`, `accessed = checked = now`. When
//!   `max_fails > 0` and `fails >= max_fails` the peer is now *temporarily disabled*;
//!   nginx logs `upstream server temporarily disabled` (warn) on every such failure.
//! * **Disabled** while `max_fails > 0 && fails >= max_fails && now - checked <=
//!   fail_timeout`: the selector skips it.
//! * **Trial**: whenever a peer is picked and `now - checked > fail_timeout`, `checked =
//!   now`. For a disabled peer this is the one trial request of the new window: from
//!   then on `now - checked <= fail_timeout` again, so the next requests skip it until
//!   the trial reports or another `fail_timeout` passes. ferrolb claims the trial with a
//!   compare-and-swap so exactly one thread wins it (nginx without a shared zone gives
//!   one trial *per worker process*).
//! * **Success**: if `accessed < checked` (a pick happened after the last failure,
//!   i.e. the window was renewed), `fails = 0`: the peer is fully live again. A failed
//!   trial goes through the failure rule and re-disables the peer for `fail_timeout`.
//!   The same rule also forgets failures older than `fail_timeout` on a healthy peer
//!   (the first pick after the window renews `checked`, the next success clears).
//! * **Single peer**: an upstream with exactly one primary and no backup (`single`
//!   below) ignores all of this: nginx's `free_peer` returns before counting, and
//!   `get_peer` checks only `down` and `max_conns`, so the lone peer is always tried.

use std::sync::atomic::Ordering::Relaxed;

use crate::config::PeerConf;
use crate::upstream::{Millis, Outcome, PeerState};

/// Whether the failure rule currently keeps the peer out (see the module rules).
/// `single` is true for the lone peer of a one-peer, no-backup upstream; it is never
/// disabled.
pub fn is_disabled(conf: &PeerConf, state: &PeerState, now: Millis, single: bool) -> bool {
    counts_failures(conf, single)
        && state.fails.load(Relaxed) >= conf.max_fails
        && now.since(state.checked()) <= window_ms(conf)
}

/// Called once a selector has chosen the peer: renews `checked` when the window has
/// passed (the trial rule). Returns false when the peer must not be used after all:
/// it is disabled and another thread claimed its trial (or disabled it) since the
/// selector looked.
pub fn claim_trial(conf: &PeerConf, state: &PeerState, now: Millis, single: bool) -> bool {
    let checked = state.checked.load(Relaxed);
    let failed = counts_failures(conf, single) && state.fails.load(Relaxed) >= conf.max_fails;
    if now.since(Millis(checked)) <= window_ms(conf) {
        return !failed;
    }
    // Losing this race matters only for a disabled peer: its window then belongs to
    // the winner's trial. A healthy peer's `checked` just moved forward; use it anyway.
    let won = state
        .checked
        .compare_exchange(checked, now.0, Relaxed, Relaxed)
        .is_ok();
    won || !failed
}

/// Records an attempt's outcome. Returns true when nginx would log `upstream server
/// temporarily disabled` (this failure reached `max_fails`).
pub fn record(
    conf: &PeerConf,
    state: &PeerState,
    outcome: Outcome,
    now: Millis,
    single: bool,
) -> bool {
    match outcome {
        Outcome::Failure => {
            state.failures_total.fetch_add(1, Relaxed);
            if single {
                return false;
            }
            let fails = state.fails.fetch_add(1, Relaxed).saturating_add(1);
            state.accessed.store(now.0, Relaxed);
            state.checked.store(now.0, Relaxed);
            conf.max_fails > 0 && fails >= conf.max_fails
        }
        Outcome::Success => {
            // Load first: a plain load keeps the common (no failures) case free of a
            // read-modify-write on a shared cache line.
            if !single && state.fails.load(Relaxed) != 0 && state.accessed() < state.checked() {
                let before = state.fails.swap(0, Relaxed);
                // A disabled peer's trial succeeded: it is back, and `slow_start` ramps
                // from here.
                if conf.max_fails > 0 && before >= conf.max_fails {
                    state.recovered_at.store(now.0, Relaxed);
                }
            }
            false
        }
    }
}

/// Whether failures can disable this peer at all (`max_fails=0` turns it off).
fn counts_failures(conf: &PeerConf, single: bool) -> bool {
    conf.max_fails > 0 && !single
}

fn window_ms(conf: &PeerConf) -> u64 {
    crate::upstream::duration_ms(conf.fail_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;

    fn conf(max_fails: u32) -> PeerConf {
        PeerConf {
            max_fails,
            ..PeerConf::new(
                "b:80".into(),
                ([127, 0, 0, 1], 80).into(),
                Span::synthetic("t.conf"),
            )
        }
    }

    #[test]
    fn failures_disable_for_the_window() {
        let (c, s) = (conf(2), PeerState::default());
        assert!(!record(&c, &s, Outcome::Failure, Millis(100), false));
        assert!(!is_disabled(&c, &s, Millis(100), false));
        assert!(record(&c, &s, Outcome::Failure, Millis(200), false));
        assert!(is_disabled(&c, &s, Millis(10_200), false));
        assert!(!is_disabled(&c, &s, Millis(10_201), false));
        // Not claimable inside the window, exactly once after it.
        assert!(!claim_trial(&c, &s, Millis(10_200), false));
        assert!(claim_trial(&c, &s, Millis(10_201), false));
        assert!(!claim_trial(&c, &s, Millis(10_202), false));
        // Trial success resets.
        assert!(!record(&c, &s, Outcome::Success, Millis(10_300), false));
        assert_eq!(s.fails.load(Relaxed), 0);
        // The recovery starts the slow-start ramp.
        assert_eq!(s.recovered_at.load(Relaxed), 10_300);
    }

    #[test]
    fn max_fails_zero_and_single_never_disable() {
        let s = PeerState::default();
        for _ in 0..3 {
            assert!(!record(&conf(0), &s, Outcome::Failure, Millis(5), false));
        }
        assert!(!is_disabled(&conf(0), &s, Millis(5), false));
        let s = PeerState::default();
        for _ in 0..3 {
            assert!(!record(&conf(1), &s, Outcome::Failure, Millis(5), true));
        }
        assert!(!is_disabled(&conf(1), &s, Millis(5), true));
        assert!(claim_trial(&conf(1), &s, Millis(5), true));
        assert_eq!(s.failures_total.load(Relaxed), 3);
    }
}
