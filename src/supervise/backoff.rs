//! Capped exponential backoff between restarts of a worker that keeps exiting, and
//! the start limit that gives such a worker up (systemd's `StartLimitBurst` /
//! `StartLimitIntervalSec`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Failures within [`START_LIMIT_INTERVAL`] after which a worker is given up: 5.
pub const START_LIMIT_BURST: usize = 5;
/// The start limit's window: 60 s. Longer than systemd's 10 s because the backoff
/// between our restarts already spends 0.5 + 1 + 2 + 4 = 7.5 s before the fifth start:
/// with 10 s only a command failing within half a second would ever be given up, while
/// 60 s catches any command that fails within about 13 s of starting.
pub const START_LIMIT_INTERVAL: Duration = Duration::from_secs(60);

/// First delay after an exit: 500 ms (a crash loop costs little, a one-off crash
/// comes back at once).
pub const BASE: Duration = Duration::from_millis(500);
/// Longest delay: 30 s (a broken worker is retried twice a minute, not forgotten).
pub const CAP: Duration = Duration::from_secs(30);
/// A worker that served this long before exiting starts over at [`BASE`]: 10 s.
pub const STABLE: Duration = Duration::from_secs(10);

/// The delay sequence `BASE, 2·BASE, 4·BASE, …` up to `CAP`. Starts at zero failures.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records an exit after the worker ran for `ran` and returns the delay before
    /// the next start.
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE {
            self.failures = 0;
        }
        let delay = BASE
            .checked_mul(1u32 << self.failures.min(16))
            .map_or(CAP, |d| d.min(CAP));
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Exits in a row so far (0 after [`Backoff::reset`]).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The worker became healthy: a later crash is not part of a crash loop yet, but
    /// [`Backoff::next_delay`] still grows until it has run [`STABLE`].
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Counts a worker's failures (failed starts and exits) over a sliding window.
#[derive(Debug, Clone)]
pub struct StartLimit {
    burst: usize,
    interval: Duration,
    failures: VecDeque<Instant>,
}

impl Default for StartLimit {
    /// [`START_LIMIT_BURST`] failures within [`START_LIMIT_INTERVAL`].
    fn default() -> Self {
        StartLimit::new(START_LIMIT_BURST, START_LIMIT_INTERVAL)
    }
}

impl StartLimit {
    /// Gives up at `burst` failures within `interval`.
    pub fn new(burst: usize, interval: Duration) -> StartLimit {
        StartLimit {
            burst: burst.max(1),
            interval,
            failures: VecDeque::new(),
        }
    }

    /// Records a failure at `at`; true when it makes `burst` within `interval`.
    pub fn record(&mut self, at: Instant) -> bool {
        self.failures.push_back(at);
        while self
            .failures
            .front()
            .is_some_and(|&first| at.saturating_duration_since(first) > self.interval)
        {
            self.failures.pop_front();
        }
        self.failures.len() >= self.burst
    }

    /// `burst failed starts within Ns`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} failed starts within {}s",
            self.burst,
            self.interval.as_secs()
        )
    }

    /// Forgets the failures (the operator asked for a restart).
    pub fn reset(&mut self) {
        self.failures.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_limit_counts_failures_within_the_window() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut l = StartLimit::new(3, Duration::from_secs(10));
        assert!(!l.record(s(0)));
        assert!(!l.record(s(5)));
        // The first failure left the window: still two.
        assert!(!l.record(s(11)));
        assert!(l.record(s(12)));
        l.reset();
        assert!(!l.record(s(13)));
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets_when_stable() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let got: Vec<u64> = (0..9)
            .map(|_| b.next_delay(quick).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.failures(), 9);
        assert_eq!(b.next_delay(STABLE), BASE);
        for _ in 0..100 {
            assert!(b.next_delay(quick) <= CAP);
        }
        b.reset();
        assert_eq!(b.next_delay(quick), BASE);
    }
}
