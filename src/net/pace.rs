//! `limit_rate` and `limit_rate_after`: writes to a client paced as nginx's write
//! filter paces them. Up to `rate × (whole seconds since the start + 1)` bytes beyond
//! the first `after` may have gone at any time, so a response gets a second's worth at
//! once; after each write the response waits as long as its bytes beyond `after` take
//! at the rate (before its next write: the last one does not hold the connection).

use std::io::IoSlice;
use std::time::Duration;

use super::io::{self, IoFailure};
use super::Stream;

/// The pacing of one response.
#[derive(Debug)]
pub struct Pace {
    /// Bytes per second.
    rate: u64,
    /// Bytes sent before pacing starts.
    after: u64,
    start: tokio::time::Instant,
    /// Bytes sent so far, head included (nginx counts what the connection sent).
    sent: u64,
    /// No write before this: the time the last one takes at the rate.
    resume_at: Option<tokio::time::Instant>,
}

impl Pace {
    /// Pacing at `rate` bytes a second after the first `after` bytes; `None` for
    /// `rate` 0 (no limit).
    pub fn new(rate: u64, after: u64) -> Option<Pace> {
        (rate > 0).then(|| Pace {
            rate,
            after,
            start: tokio::time::Instant::now(),
            sent: 0,
            resume_at: None,
        })
    }

    /// The same pacing at another rate (`X-Accel-Limit-Rate`); `None` for 0.
    pub fn at_rate(&self, rate: u64) -> Option<Pace> {
        Pace::new(rate, self.after).map(|mut p| {
            p.start = self.start;
            p.sent = self.sent;
            p
        })
    }

    /// The bytes that may go now, waiting until some may.
    pub async fn allowance(&mut self) -> u64 {
        if let Some(at) = self.resume_at.take() {
            tokio::time::sleep_until(at).await;
        }
        loop {
            let secs = self.start.elapsed().as_secs();
            let allowed = i128::from(self.rate) * i128::from(secs + 1)
                - (i128::from(self.sent) - i128::from(self.after));
            if allowed > 0 {
                return u64::try_from(allowed).unwrap_or(u64::MAX);
            }
            let wait_ms = u64::try_from(-allowed * 1000 / i128::from(self.rate) + 1).unwrap_or(1);
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
    }

    /// Counts `n` bytes sent; the next write waits as long as those beyond `after`
    /// take.
    pub fn sent(&mut self, n: u64) {
        let before = self.sent.saturating_sub(self.after);
        self.sent += n;
        let paced = self.sent.saturating_sub(self.after) - before;
        let ms = paced.saturating_mul(1000) / self.rate;
        if ms > 0 {
            self.resume_at = Some(tokio::time::Instant::now() + Duration::from_millis(ms));
        }
    }
}

/// Writes `parts` in order within `limit` per stalled write: in one `writev` without
/// `pace`, else in pieces of at most the allowance each.
pub async fn write_parts(
    stream: &Stream,
    parts: &[&[u8]],
    pace: Option<&mut Pace>,
    limit: Duration,
) -> Result<(), IoFailure> {
    let Some(pace) = pace else {
        let mut slices = [IoSlice::new(&[]); 6];
        let mut n = 0;
        for p in parts.iter().filter(|p| !p.is_empty()).take(6) {
            slices[n] = IoSlice::new(p);
            n += 1;
        }
        return io::write_all_vectored(stream, &mut slices[..n], limit).await;
    };
    let mut rest: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while !rest.is_empty() {
        let allowed = pace.allowance().await;
        let mut piece: Vec<IoSlice<'_>> = Vec::with_capacity(rest.len());
        let mut take = 0u64;
        while take < allowed && !rest.is_empty() {
            let p = rest[0];
            let room = usize::try_from(allowed - take).unwrap_or(usize::MAX);
            if p.len() <= room {
                piece.push(IoSlice::new(p));
                take += p.len() as u64;
                rest.remove(0);
            } else {
                piece.push(IoSlice::new(&p[..room]));
                take += room as u64;
                rest[0] = &p[room..];
            }
        }
        io::write_all_vectored(stream, &mut piece, limit).await?;
        pace.sent(take);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_seconds_worth_at_once_then_the_rate() {
        let mut p = Pace::new(1000, 500).expect("paced");
        let t = tokio::time::Instant::now();
        assert_eq!(p.allowance().await, 1500);
        p.sent(1500);
        // 1000 bytes beyond `after`: the next write waits a second.
        assert_eq!(p.allowance().await, 1000);
        assert_eq!(t.elapsed(), Duration::from_secs(1));
        p.sent(1000);
        assert_eq!(p.allowance().await, 1000);
        assert_eq!(t.elapsed(), Duration::from_secs(2));
        // More than the allowance went (2500 bytes: 2.5 s at the rate); then a whole
        // second's worth less what went beyond it.
        p.sent(2500);
        assert_eq!(p.allowance().await, 500);
        assert_eq!(t.elapsed(), Duration::from_millis(4500));
        assert!(Pace::new(0, 0).is_none());
    }
}
