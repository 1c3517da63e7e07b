//! Capped exponential backoff between restarts of a worker that keeps exiting.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
