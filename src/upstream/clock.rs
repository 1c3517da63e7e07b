//! The process clock the passive health accounting runs on.

use std::sync::OnceLock;
use std::time::Duration;

/// Milliseconds on a process-wide monotonic clock (see [`now`]).
///
/// The origin is arbitrary: only differences and order mean anything. The default,
/// `Millis(0)`, lies before every reading [`now`] can return, which is what the
/// zero-initialised peer timestamps rely on (as nginx's `checked = 0` lies long before
/// any `ngx_time()`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Milliseconds from `earlier` to `self`; zero when `earlier` is later, because two
    /// threads may read the clock and publish their readings in either order.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` plus a duration, saturating (a `fail_timeout` of years must not wrap).
    pub fn saturating_add(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_ms(d)))
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where [`now`] puts the first reading. Readings of a paused tokio test clock may lie
/// *before* the first reading of the process (its base is taken when the runtime is
/// built, possibly before another thread first called [`now`]); the offset keeps them
/// positive and ordered. 2^32 ms is about 49 days, more than any such skew, and it also
/// makes fresh peers look "checked long ago", as in nginx.
const ORIGIN_OFFSET_MS: u64 = 1 << 32;

static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();

/// The current time on the process clock.
///
/// Read through `tokio::time::Instant`, so a test running with a paused tokio clock
/// (`#[tokio::test(start_paused = true)]` + `tokio::time::advance`) controls it; outside
/// a runtime it is the real monotonic clock.
pub fn now() -> Millis {
    let reading = tokio::time::Instant::now();
    let epoch = tokio::time::Instant::from_std(*EPOCH.get_or_init(|| reading.into_std()));
    let ms = if reading >= epoch {
        ORIGIN_OFFSET_MS.saturating_add(duration_ms(reading - epoch))
    } else {
        ORIGIN_OFFSET_MS.saturating_sub(duration_ms(epoch - reading))
    };
    Millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_saturates() {
        assert_eq!(Millis(5).since(Millis(7)), 0);
        assert_eq!(Millis(7).since(Millis(5)), 2);
    }

    #[test]
    fn now_is_monotonic_and_after_default() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert!(a > Millis::default());
    }

    #[tokio::test(start_paused = true)]
    async fn paused_tokio_time_drives_now() {
        let a = now();
        tokio::time::advance(Duration::from_millis(10_001)).await;
        let b = now();
        assert_eq!(b.since(a), 10_001);
    }
}
