//! `slow_start=T`: a peer that recovers (from a failure window or an unhealthy health
//! check) or is added at runtime gets a share of requests that ramps from ~0 to its
//! full weight over `T`.
//!
//! nginx Plus lowers the peer's effective weight and rebuilds its weighted round robin
//! state under a lock. ferrolb's round robin is a precomputed, lock-free schedule, so
//! instead the eligibility test skips a ramping peer with probability
//! `1 - elapsed / T` ([`skip`]): its expected share is `elapsed / T` of its full share,
//! and nothing is rebuilt. The random number comes from the thread's own `rand`
//! generator (no lock, no syscall). When the skip would leave a request with no peer
//! at all, `Upstream::pick` retries without it, so slow start never causes a 502.

use std::sync::atomic::Ordering::Relaxed;

use crate::config::PeerConf;
use crate::upstream::{duration_ms, Millis, PeerState};

/// Whether to pass this peer over for one pick because it is still ramping up.
#[inline]
pub fn skip(conf: &PeerConf, state: &PeerState, now: Millis) -> bool {
    if conf.slow_start.is_zero() {
        return false;
    }
    let from = state.recovered_at.load(Relaxed);
    if from == 0 {
        return false;
    }
    let elapsed = now.since(Millis(from));
    let total = duration_ms(conf.slow_start);
    elapsed < total && random_unit() >= elapsed as f64 / total as f64
}

/// Whether the peer is inside its slow-start ramp (for `/status`).
pub fn ramping(conf: &PeerConf, state: &PeerState, now: Millis) -> bool {
    let from = state.recovered_at.load(Relaxed);
    !conf.slow_start.is_zero()
        && from != 0
        && now.since(Millis(from)) < duration_ms(conf.slow_start)
}

/// A uniform number in `[0, 1)` from the calling thread's [`rand::rng`] (no lock, no
/// syscall per draw).
pub fn random_unit() -> f64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;
    use std::time::Duration;

    fn conf(slow: u64) -> PeerConf {
        PeerConf {
            slow_start: Duration::from_secs(slow),
            ..PeerConf::new(
                "b:80".into(),
                ([127, 0, 0, 1], 80).into(),
                Span::synthetic("t.conf"),
            )
        }
    }

    fn admitted(c: &PeerConf, s: &PeerState, now: Millis) -> f64 {
        let n = 20_000;
        (0..n).filter(|_| !skip(c, s, now)).count() as f64 / n as f64
    }

    #[test]
    fn share_ramps_linearly() {
        let c = conf(10);
        let s = PeerState::default();
        // Never recovered: full share.
        assert_eq!(admitted(&c, &s, Millis(1_000_000)), 1.0);
        s.recovered_at.store(100_000, Relaxed);
        let at = |ms: u64| admitted(&c, &s, Millis(100_000 + ms));
        assert!(at(0) < 0.01, "{}", at(0));
        let quarter = at(2_500);
        assert!((0.2..0.3).contains(&quarter), "{quarter}");
        let most = at(9_000);
        assert!((0.85..0.95).contains(&most), "{most}");
        assert_eq!(at(10_000), 1.0);
        assert!(ramping(&c, &s, Millis(105_000)));
        assert!(!ramping(&c, &s, Millis(110_000)));
        // Off when not configured.
        assert_eq!(admitted(&conf(0), &s, Millis(100_001)), 1.0);
    }

    #[test]
    fn random_unit_in_range() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
