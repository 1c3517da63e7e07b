//! `limit_req` (nginx's `ngx_http_limit_req_module`): a leaky bucket per key. A state
//! keeps `excess` (requests beyond the rate, in thousandths) and when it was last
//! updated; each request drains `rate × elapsed` and adds 1000. Above `burst` the
//! request is rejected; above `delay` (0 by default, unlimited with `nodelay`) it
//! waits until the bucket would have drained to `delay`. Several limits of a location
//! are checked in order, and only the last one is accounted before all have said yes,
//! as nginx does, so a rejected request costs only the zones up to the one that
//! rejected it.
//!
//! States live in a zone shared by every worker thread, bounded by the zone's size:
//! the least recently used states make room for new ones (and, as in nginx, up to two
//! states idle for a minute with an empty bucket go whenever one is added).

use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// Bytes a state is counted for, beyond its key: its share of the map and list
/// (measured: about this much heap per state).
pub const STATE_COST: u64 = 128;

/// States idle this long with an empty bucket go first (nginx's 60 s).
const IDLE_MS: u64 = 60_000;

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests beyond the rate, in thousandths.
    excess: u64,
    /// When it was last drained (ms of [`super::limits::now_ms`]); `None` for a state
    /// made by a limit that was not the last (nginx's `last = 0`: fully drained).
    last: Option<u64>,
}

/// The states of one zone, in least-recently-used order.
#[derive(Debug)]
pub struct States {
    lru: LruCache<Vec<u8>, State>,
    bytes: u64,
    size: u64,
}

impl States {
    /// Room for `size` bytes of states.
    pub fn new(size: u64) -> Self {
        States {
            lru: LruCache::unbounded(),
            bytes: 0,
            size,
        }
    }

    /// The number of states kept.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// True when no state is kept.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// The bytes the states are counted for (never above the zone's size).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn cost(key: &[u8]) -> u64 {
        STATE_COST + key.len() as u64
    }

    /// Adds a state, making room as nginx does; false when the key alone is larger
    /// than the zone.
    fn insert(&mut self, key: &[u8], state: State, now: u64, rate: u64) -> bool {
        for _ in 0..2 {
            let expired = self.lru.peek_lru().is_some_and(|(_, s)| {
                let ms = elapsed(s.last, now);
                ms >= IDLE_MS && drained(s.excess, rate, ms) == 0
            });
            if !expired {
                break;
            }
            self.pop_lru();
        }
        let cost = Self::cost(key);
        while self.bytes + cost > self.size && self.pop_lru() {}
        if self.bytes + cost > self.size {
            return false;
        }
        self.lru.push(key.to_vec(), state);
        self.bytes += cost;
        true
    }

    fn pop_lru(&mut self) -> bool {
        match self.lru.pop_lru() {
            Some((k, _)) => {
                self.bytes -= Self::cost(&k);
                true
            }
            None => false,
        }
    }
}

/// Milliseconds since `last` (a never-drained state has waited forever).
fn elapsed(last: Option<u64>, now: u64) -> u64 {
    last.map_or(u64::MAX, |l| now.saturating_sub(l))
}

/// nginx's `excess - rate × ms / 1000 + 1000`, not below 0: the bucket after `ms`
/// with this request in it.
fn next_excess(excess: u64, rate: u64, ms: u64) -> u64 {
    let v = i128::from(excess) - i128::from(rate) * i128::from(ms) / 1000 + 1000;
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// `excess` after `ms` at `rate` (thousandths per second), not below 0.
fn drained(excess: u64, rate: u64, ms: u64) -> u64 {
    let drain = u128::from(rate) * u128::from(ms) / 1000;
    u64::try_from(u128::from(excess).saturating_sub(drain)).unwrap_or(0)
}

/// One `limit_req_zone`: its name and rate, over states that survive reloads.
#[derive(Debug)]
pub struct ReqZone {
    /// The zone's name (for log lines).
    pub name: String,
    /// Requests per second times 1000.
    pub rate: u64,
    states: Arc<Mutex<States>>,
}

/// What one zone said about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Over `burst`: rejected, with the excess it would have had.
    Busy(u64),
    /// Accounted (the last limit), with its excess.
    Accounted(u64),
    /// Looked at, to be accounted once every limit said yes.
    Pending,
    /// No room for the key (larger than the zone).
    NoRoom,
}

impl ReqZone {
    /// A zone over `states` (shared with the previous configuration's zone of the
    /// same name and size).
    pub fn new(name: String, rate: u64, states: Arc<Mutex<States>>) -> Self {
        ReqZone { name, rate, states }
    }

    /// The zone's states (tests and the memory bound).
    pub fn states(&self) -> MutexGuard<'_, States> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// nginx's `ngx_http_limit_req_lookup`.
    fn lookup(&self, key: &[u8], burst: u64, account: bool, now: u64) -> Step {
        let mut st = self.states();
        if let Some(s) = st.lru.get_mut(key) {
            let ms = elapsed(s.last, now);
            let excess = next_excess(s.excess, self.rate, ms);
            if excess > burst {
                return Step::Busy(excess);
            }
            if !account {
                return Step::Pending;
            }
            s.excess = excess;
            if ms > 0 {
                s.last = Some(now);
            }
            return Step::Accounted(excess);
        }
        let state = State {
            excess: 0,
            last: account.then_some(now),
        };
        if !st.insert(key, state, now, self.rate) {
            return Step::NoRoom;
        }
        if account {
            Step::Accounted(0)
        } else {
            Step::Pending
        }
    }

    /// nginx's second pass (`ngx_http_limit_req_account`) for a pending key: its
    /// excess once this request is counted.
    fn account(&self, key: &[u8], now: u64) -> u64 {
        let rate = self.rate;
        let mut st = self.states();
        if st.lru.get(key).is_none() {
            let fresh = State {
                excess: 0,
                last: None,
            };
            if !st.insert(key, fresh, now, rate) {
                return 0;
            }
        }
        let Some(s) = st.lru.get_mut(key) else {
            return 0;
        };
        let ms = elapsed(s.last, now);
        let excess = next_excess(s.excess, rate, ms);
        if ms > 0 {
            s.last = Some(now);
        }
        s.excess = excess;
        excess
    }
}

/// One `limit_req` line with its key's value for the request.
#[derive(Debug)]
pub struct Limit<'a> {
    /// The zone.
    pub zone: &'a ReqZone,
    /// The key's value; `None` when empty (the limit does not apply).
    pub key: Option<Vec<u8>>,
    /// `burst` × 1000.
    pub burst: u64,
    /// `delay` × 1000 (`u64::MAX` for `nodelay`).
    pub delay: u64,
}

/// What a request's `limit_req` lines decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let through now.
    Passed,
    /// Let through after `ms` milliseconds; `excess` and the zone for the log line.
    Delayed {
        /// The wait.
        ms: u64,
        /// The excess (thousandths) of the zone that asks for the longest wait.
        excess: u64,
        /// That zone's name.
        zone: String,
    },
    /// Rejected; `excess` is `None` when the zone had no room for the key.
    Rejected {
        /// The excess (thousandths) the request would have made.
        excess: Option<u64>,
        /// The zone's name.
        zone: String,
    },
}

/// nginx's `ngx_http_limit_req_handler` over the request's limits at time `now` (ms);
/// `None` when no limit applies (every key empty).
pub fn decide(limits: &[Limit<'_>], now: u64) -> Option<Decision> {
    let mut pending: Vec<usize> = Vec::new();
    let mut last: Option<(usize, Step)> = None;
    for (i, l) in limits.iter().enumerate() {
        let Some(key) = &l.key else { continue };
        let step = l.zone.lookup(key, l.burst, i + 1 == limits.len(), now);
        last = Some((i, step));
        if step == Step::Pending {
            pending.push(i);
        } else {
            break;
        }
    }
    let (at, step) = last?;
    let (mut excess, mut zone_at) = match step {
        Step::Busy(excess) => {
            return Some(Decision::Rejected {
                excess: Some(excess),
                zone: limits[at].zone.name.clone(),
            })
        }
        Step::NoRoom => {
            return Some(Decision::Rejected {
                excess: None,
                zone: limits[at].zone.name.clone(),
            })
        }
        Step::Accounted(excess) => (excess, at),
        Step::Pending => (0, at),
    };
    let wait = |excess: u64, l: &Limit<'_>| {
        if excess <= l.delay {
            0
        } else {
            (excess - l.delay).saturating_mul(1000) / l.zone.rate.max(1)
        }
    };
    let mut max_delay = wait(excess, &limits[zone_at]);
    for i in pending {
        let l = &limits[i];
        let Some(key) = &l.key else { continue };
        let e = l.zone.account(key, now);
        let d = wait(e, l);
        if d > max_delay {
            max_delay = d;
            excess = e;
            zone_at = i;
        }
    }
    Some(if max_delay == 0 {
        Decision::Passed
    } else {
        Decision::Delayed {
            ms: max_delay,
            excess,
            zone: limits[zone_at].zone.name.clone(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(rate: u64, size: u64) -> ReqZone {
        ReqZone::new("one".into(), rate, Arc::new(Mutex::new(States::new(size))))
    }

    fn limit<'a>(z: &'a ReqZone, key: &str, burst: u64, delay: u64) -> Limit<'a> {
        Limit {
            zone: z,
            key: (!key.is_empty()).then(|| key.as_bytes().to_vec()),
            burst: burst * 1000,
            delay: delay.saturating_mul(1000),
        }
    }

    fn kind(d: &Option<Decision>) -> &'static str {
        match d {
            None => "none",
            Some(Decision::Passed) => "passed",
            Some(Decision::Delayed { .. }) => "delayed",
            Some(Decision::Rejected { .. }) => "rejected",
        }
    }

    #[test]
    fn rate_without_burst() {
        // 2r/s: one request per 500 ms.
        let z = zone(2000, 1 << 20);
        let at = |ms| kind(&decide(&[limit(&z, "k", 0, 0)], ms));
        assert_eq!(at(0), "passed");
        assert_eq!(at(100), "rejected");
        assert_eq!(at(499), "rejected");
        assert_eq!(at(500), "passed");
        assert_eq!(at(1000), "passed");
        // Another key has its own bucket; an empty key is not counted.
        assert_eq!(kind(&decide(&[limit(&z, "other", 0, 0)], 1000)), "passed");
        assert_eq!(kind(&decide(&[limit(&z, "", 0, 0)], 1000)), "none");
    }

    #[test]
    fn burst_delays_then_rejects() {
        // 1r/s, burst 3: requests at once wait 1 s, 2 s, 3 s; the fifth is rejected.
        let z = zone(1000, 1 << 20);
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(decide(&[limit(&z, "k", 3, 0)], 10_000));
        }
        assert_eq!(kind(&out[0]), "passed");
        for (i, d) in out[1..4].iter().enumerate() {
            match d {
                Some(Decision::Delayed { ms, excess, zone }) => {
                    assert_eq!(
                        (*ms, *excess),
                        ((i as u64 + 1) * 1000, (i as u64 + 1) * 1000)
                    );
                    assert_eq!(zone, "one");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            out[4],
            Some(Decision::Rejected {
                excess: Some(4000),
                zone: "one".into()
            })
        );
    }

    #[test]
    fn nodelay_and_delay_threshold() {
        let z = zone(1000, 1 << 20);
        let kinds: Vec<_> = (0..5)
            .map(|_| kind(&decide(&[limit(&z, "k", 3, u64::MAX)], 0)))
            .collect();
        assert_eq!(kinds, ["passed", "passed", "passed", "passed", "rejected"]);
        // delay=2: the first three go at once (excess 0, 1, 2), the fourth waits.
        let z = zone(1000, 1 << 20);
        let out: Vec<_> = (0..5).map(|_| decide(&[limit(&z, "k", 3, 2)], 0)).collect();
        let kinds: Vec<_> = out.iter().map(kind).collect();
        assert_eq!(kinds, ["passed", "passed", "passed", "delayed", "rejected"]);
        assert!(matches!(out[3], Some(Decision::Delayed { ms: 1000, .. })));
    }

    #[test]
    fn per_minute_rates_drain_in_integer_steps() {
        // 1r/m is 16 thousandths per second, as nginx rounds it: the bucket drains
        // in ms steps of rate × ms / 1000.
        let z = zone(16, 1 << 20);
        assert_eq!(kind(&decide(&[limit(&z, "k", 0, 0)], 0)), "passed");
        assert_eq!(kind(&decide(&[limit(&z, "k", 0, 0)], 59_000)), "rejected");
        assert_eq!(kind(&decide(&[limit(&z, "k", 0, 0)], 62_500)), "passed");
    }

    #[test]
    fn several_zones_account_the_last_and_then_the_rest() {
        let a = zone(1000, 1 << 20);
        let b = zone(1000, 1 << 20);
        let both = |ms| decide(&[limit(&a, "k", 5, 0), limit(&b, "k", 0, 0)], ms);
        assert_eq!(kind(&both(0)), "passed");
        // Rejected by the second: the first zone is not charged.
        assert_eq!(kind(&both(0)), "rejected");
        assert_eq!(a.states().lru.peek(&b"k"[..]).map(|s| s.excess), Some(0));
        // A second later both allow, and the first zone's excess counts the request.
        assert_eq!(kind(&both(1000)), "passed");
        assert_eq!(a.states().lru.peek(&b"k"[..]).map(|s| s.excess), Some(0));
        assert_eq!(kind(&both(1500)), "rejected");
        assert_eq!(kind(&both(2000)), "passed");
        // The first zone delays when its bucket is fuller than the second's.
        let a = zone(1000, 1 << 20);
        let b = zone(100_000, 1 << 20);
        for _ in 0..2 {
            decide(&[limit(&a, "k", 5, 0), limit(&b, "k", 5, 0)], 0);
        }
        let d = decide(&[limit(&a, "k", 5, 0), limit(&b, "k", 5, 0)], 0);
        assert!(
            matches!(&d, Some(Decision::Delayed { ms: 2000, excess: 2000, zone }) if zone == "one"),
            "{d:?}"
        );
    }

    #[test]
    fn memory_stays_within_the_zone_with_a_million_keys() {
        let size = 1 << 20;
        let z = zone(1000, size);
        let max_states = (size / (STATE_COST + 7)) as usize;
        for i in 0..1_000_000u32 {
            let key = format!("k{i:06}");
            let d = decide(&[limit(&z, &key, 0, 0)], u64::from(i / 1000));
            assert_eq!(kind(&d), "passed", "{key}");
        }
        let st = z.states();
        assert!(st.bytes() <= size, "{} > {size}", st.bytes());
        assert!(
            st.len() <= max_states && st.len() > max_states - 10,
            "{}",
            st.len()
        );
        // The most recent keys are the ones kept.
        drop(st);
        assert_eq!(
            kind(&decide(&[limit(&z, "k999999", 0, 0)], 1000)),
            "rejected"
        );
        assert_eq!(kind(&decide(&[limit(&z, "k000000", 0, 0)], 1000)), "passed");
    }

    #[test]
    fn idle_drained_states_leave_first() {
        let z = zone(1000, 1 << 20);
        decide(&[limit(&z, "old", 0, 0)], 0);
        decide(&[limit(&z, "new", 0, 0)], 61_000);
        let st = z.states();
        assert_eq!(st.len(), 1);
        assert!(st.lru.peek(&b"new"[..]).is_some());
    }
}
