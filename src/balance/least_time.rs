//! `least_time`: peak-EWMA latency with power of two choices (Finagle/Linkerd).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{probe_then_round_robin, PickContext, RandomSource, RoundRobin, Select, Weights};
use crate::upstream::{Millis, Peer, PeerState};

/// Cost of a peer that has requests in flight but no latency measured yet: far above
/// any real latency (1000 s in µs), so it gets no more until its first answer.
const UNMEASURED_BUSY_US: f64 = 1e9;

/// `least_time header | last_byte [inflight]` as peak-EWMA power of two choices.
///
/// Two distinct eligible peers are drawn at random by weight and the cheaper wins,
/// where cost = latency EWMA × (in-flight + 1) / weight. The EWMA ([`record`]) jumps
/// up to any slower observation at once (the "peak") and decays towards faster ones
/// with time constant `decay`; while a peer is idle its EWMA also decays towards zero,
/// so a peer that was slow gets probed again after a while. A peer never measured
/// costs 0 when idle (so new peers are tried) and 1000 s when busy.
/// Misses and the fallback to round robin are as for `random`.
///
/// nginx Plus's `least_time` picks the lowest `latency × (conns + 1)` over all peers,
/// with its own averaging; this follows the choice of the Finagle design.
#[derive(Debug)]
pub struct LeastTime {
    weights: Weights,
    decay: Duration,
    rng: RandomSource,
    fallback: RoundRobin,
}

impl LeastTime {
    /// A selector over `peers`, weighted by their `weight=`, with the EWMA time
    /// constant `decay`, drawing from `rng`.
    pub fn new(peers: &[Peer], decay: Duration, rng: RandomSource) -> Self {
        LeastTime {
            weights: Weights::of(peers),
            decay,
            rng,
            fallback: RoundRobin::new(peers),
        }
    }

    fn cost(&self, p: &Peer, now: Millis) -> f64 {
        let pending = f64::from(p.state.in_flight.load(Relaxed));
        let ewma = decayed(&p.state, now, self.decay);
        let latency = if ewma == 0.0 && pending > 0.0 {
            UNMEASURED_BUSY_US
        } else {
            ewma
        };
        latency * (pending + 1.0) / f64::from(p.conf.weight.max(1))
    }
}

/// The EWMA of `state` as of `now`, decayed over the time since its last update.
fn decayed(state: &PeerState, now: Millis, decay: Duration) -> f64 {
    let ewma = f64::from_bits(state.ewma_us.load(Relaxed));
    let idle_ms = now.since(Millis(state.ewma_at.load(Relaxed))) as f64;
    ewma * (-idle_ms / tau_ms(decay)).exp()
}

fn tau_ms(decay: Duration) -> f64 {
    (decay.as_secs_f64() * 1e3).max(1.0)
}

/// Records one observed `latency` of the peer owning `state` at `now`: the peak-EWMA
/// update `ewma = max(latency, ewma·w + latency·(1−w))` with `w = e^(−Δt/decay)`.
///
/// Two threads recording at once may lose one update (load, compute, store without a
/// lock): the value steers a heuristic, and a lost sample among thousands is noise.
pub fn record(state: &PeerState, latency: Duration, now: Millis, decay: Duration) {
    let rtt = latency.as_secs_f64() * 1e6;
    let old = f64::from_bits(state.ewma_us.load(Relaxed));
    let at = Millis(state.ewma_at.load(Relaxed));
    let new = if rtt >= old || old == 0.0 {
        rtt
    } else {
        let w = (-(now.since(at) as f64) / tau_ms(decay)).exp();
        old * w + rtt * (1.0 - w)
    };
    // Zero means "never measured"; a 0 µs answer is stored as the smallest positive.
    let new = if new > 0.0 { new } else { f64::MIN_POSITIVE };
    state.ewma_us.store(new.to_bits(), Relaxed);
    state.ewma_at.store(now.0, Relaxed);
}

impl Select for LeastTime {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut first: Option<usize> = None;
        probe_then_round_robin(&self.fallback, peers, ctx, eligible, || {
            let i = self
                .weights
                .index(self.rng.below(self.weights.total().max(1)));
            if first == Some(i) || !eligible(i) {
                return None;
            }
            match first {
                Some(f) => Some(
                    if self.cost(&peers[f], ctx.now) < self.cost(&peers[i], ctx.now) {
                        f
                    } else {
                        i
                    },
                ),
                None => {
                    first = Some(i);
                    None
                }
            }
        })
    }

    fn failed(&self, i: usize) {
        self.fallback.failed(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all, peers, simulate};
    use super::super::{LeastConn, RoundRobin};
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[test]
    fn peak_then_decay() {
        let s = PeerState::default();
        record(&s, Duration::from_millis(10), Millis(1000), DECAY);
        assert_eq!(f64::from_bits(s.ewma_us.load(Relaxed)), 10_000.0);
        // A slower answer is taken at once.
        record(&s, Duration::from_millis(50), Millis(1001), DECAY);
        assert_eq!(f64::from_bits(s.ewma_us.load(Relaxed)), 50_000.0);
        // A faster one 10 s later moves it about 63 % of the way.
        record(&s, Duration::from_millis(10), Millis(11_001), DECAY);
        let v = f64::from_bits(s.ewma_us.load(Relaxed));
        assert!(
            (v - (10_000.0 + 40_000.0 / std::f64::consts::E)).abs() < 1.0,
            "{v}"
        );
        // Idle, it decays towards zero.
        assert!(decayed(&s, Millis(61_001), DECAY) < v / 100.0);
    }

    #[test]
    fn prefers_the_faster_of_two() {
        let ps = peers(&[1, 1]);
        record(&ps[0].state, Duration::from_millis(100), Millis(1), DECAY);
        record(&ps[1].state, Duration::from_millis(10), Millis(1), DECAY);
        let sel = LeastTime::new(&ps, DECAY, RandomSource::with_seed(3));
        let ctx = PickContext {
            now: Millis(2),
            ..PickContext::default()
        };
        for _ in 0..100 {
            assert_eq!(sel.pick(&ps, &ctx, &all), Some(1));
        }
    }

    /// The comparison: 4 peers, peer 0 ten times slower (100 ms vs 10 ms).
    #[test]
    fn slow_peer_share_vs_round_robin_and_least_conn() {
        let service = [100, 10, 10, 10];
        let ps = peers(&[1; 4]);
        let lt = simulate(
            &ps,
            &LeastTime::new(&ps, DECAY, RandomSource::with_seed(11)),
            &service,
            Some(DECAY),
        );
        let ps = peers(&[1; 4]);
        let lc = simulate(&ps, &LeastConn::new(&ps), &service, None);
        let ps = peers(&[1; 4]);
        let rr = simulate(&ps, &RoundRobin::new(&ps), &service, None);
        eprintln!(
            "slow peer share: least_time {:.4}, least_conn {:.4}, round robin {:.4}",
            lt[0], lc[0], rr[0]
        );
        assert!((rr[0] - 0.25).abs() < 0.001);
        assert!(lt[0] < 0.05, "least_time gave the slow peer {:.4}", lt[0]);
        assert!(lt[0] < rr[0] / 5.0);
    }

    #[test]
    fn weights_scale_cost_under_load() {
        // Equal latency: in-flight counts settle where cost is equal, (n + 1) / w, so
        // the weight-3 peer carries about three quarters.
        let ps = peers(&[3, 1]);
        let sel = LeastTime::new(&ps, DECAY, RandomSource::with_seed(5));
        let got = simulate(&ps, &sel, &[10, 10], Some(DECAY));
        assert!((got[0] - 0.75).abs() < 0.05, "{got:?}");
    }
}
