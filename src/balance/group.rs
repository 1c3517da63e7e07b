//! An upstream group at runtime, Pingora's `LoadBalancer` role: its peers with their
//! live state, the selectors, and nginx's peer choice (`get_peer`) and accounting
//! (`free_peer`) around the balancing method.
//!
//! A request calls [`Upstream::pick`] with the peers it already tried, makes its attempt,
//! then calls [`Upstream::report`] with the outcome, and repeats while
//! `proxy_next_upstream` allows. Every successful `pick` must be followed by exactly one
//! `report` for that peer: `pick` counts the attempt in flight (for `max_conns`) and
//! `report` ends it.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
mod tests;

use super::{least_time, selector_for, sticky, PickContext, Select};
use crate::config::{BalanceMethod, LatencyPoint, Template, UpstreamConf};
use crate::upstream::{
    passive, slow_start, AdminState, Millis, Outcome, Peer, PeerRegistry, Tried,
};

/// What [`Upstream::report`] found. All false by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// This failure reached `max_fails`: the caller logs nginx's warning `upstream
    /// server temporarily disabled` (nginx logs it on every failure at or above the
    /// limit, not only the first).
    pub temporarily_disabled: bool,
}

/// An upstream group at runtime.
///
/// Primaries and backups each have their own selector, as nginx keeps a separate round
/// robin over backups; backups are used only when no primary is available.
pub struct Upstream {
    /// The group's name (`myproject`, or `127.0.0.1:8000` for an implicit group).
    pub name: String,
    /// Primaries (in file order), then backups (in file order). Indices into this are
    /// what [`Upstream::pick`], [`Upstream::report`] and [`Tried`] use.
    pub peers: Vec<Peer>,
    /// How many of `peers` are primaries.
    pub primary_count: usize,
    /// `keepalive N`: idle connections kept per worker thread; `None` (default) keeps
    /// none.
    pub keepalive: Option<usize>,
    /// `keepalive_timeout` for idle upstream connections. Default 60 s.
    pub keepalive_timeout: Duration,
    /// `keepalive_requests` per upstream connection. Default 1000.
    pub keepalive_requests: u32,
    /// `keepalive_time`: the age past which a connection is not kept. Default 1 h.
    pub keepalive_time: Duration,
    primary: Box<dyn Select>,
    backup: Option<Box<dyn Select>>,
    /// nginx's `peers->single`: one primary and no backup. Such a peer ignores the
    /// failure accounting (see [`passive`]).
    single: bool,
    /// Set by the health checker when every peer is unhealthy: then unhealthy peers
    /// stay in rotation (see [`crate::health::active`]). False by default.
    pub all_unhealthy: Arc<AtomicBool>,
    /// Some peer has `slow_start=`: `pick` may need its second, ramp-ignoring pass.
    slow_start_any: bool,
    /// The `hash` key template, when the method is `hash`.
    hash_key: Option<Template>,
    /// `least_time`: what to measure and the EWMA time constant.
    latency: Option<(LatencyPoint, Duration)>,
    /// `sticky cookie`: its name and each peer's precomputed `Set-Cookie` value.
    sticky: Option<StickyCookies>,
}

/// The per-peer sticky cookies of an upstream, built once per configuration.
struct StickyCookies {
    name: String,
    /// Peer id per index of [`Upstream::peers`].
    ids: Box<[u64]>,
    /// `Set-Cookie` value per index of [`Upstream::peers`].
    set_cookie: Box<[Box<[u8]>]>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("peers", &self.peers)
            .field("primary_count", &self.primary_count)
            .field("keepalive", &self.keepalive)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("keepalive_requests", &self.keepalive_requests)
            .field("single", &self.single)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The runtime group for `conf`, with live state taken from (or added to) `registry`.
    pub fn build(conf: &UpstreamConf, registry: &PeerRegistry) -> Upstream {
        let (primaries, backups): (Vec<_>, Vec<_>) = conf.peers.iter().partition(|p| !p.backup);
        let primary_count = primaries.len();
        let ordered: Vec<_> = primaries.into_iter().chain(backups).collect();
        let peers: Vec<Peer> = ordered
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // Which line with this address it is: each has its own state.
                let nth = ordered[..i].iter().filter(|q| q.addr == p.addr).count();
                Peer {
                    conf: (*p).clone(),
                    state: registry.get_or_create_nth(&conf.name, &p.addr, nth),
                }
            })
            .collect();
        let primary = selector_for(conf, &peers[..primary_count]);
        let backup =
            (peers.len() > primary_count).then(|| selector_for(conf, &peers[primary_count..]));
        let hash_key = match &conf.method {
            BalanceMethod::Hash { key, .. } => Some(key.clone()),
            _ => None,
        };
        let latency = match &conf.method {
            BalanceMethod::LeastTime { point, decay, .. } => Some((*point, *decay)),
            _ => None,
        };
        let sticky = conf.sticky.as_ref().map(|s| StickyCookies {
            name: s.cookie.clone(),
            ids: peers
                .iter()
                .map(|p| sticky::peer_id(&p.conf.addr))
                .collect(),
            set_cookie: peers
                .iter()
                .map(|p| sticky::set_cookie(s, &p.conf.addr))
                .collect(),
        });
        Upstream {
            name: conf.name.clone(),
            single: primary_count == 1 && peers.len() == 1,
            all_unhealthy: Arc::new(AtomicBool::new(false)),
            slow_start_any: peers.iter().any(|p| !p.conf.slow_start.is_zero()),
            peers,
            primary_count,
            keepalive: conf.keepalive,
            keepalive_timeout: conf.keepalive_timeout,
            keepalive_requests: conf.keepalive_requests,
            keepalive_time: conf.keepalive_time,
            primary,
            backup,
            hash_key,
            latency,
            sticky,
        }
    }

    /// The `hash` key to evaluate per request; `None` unless the method is `hash`.
    pub fn hash_key(&self) -> Option<&Template> {
        self.hash_key.as_ref()
    }

    /// The `sticky cookie` name; `None` without `sticky`.
    pub fn sticky_cookie(&self) -> Option<&str> {
        self.sticky.as_ref().map(|s| s.name.as_str())
    }

    /// The `Set-Cookie` header value to send with the response of `peer`: `Some` when
    /// `sticky` is on and the request's cookie (`ctx.sticky`) does not already name
    /// this peer. Precomputed: the caller only copies bytes.
    pub fn sticky_set_cookie(&self, peer: usize, ctx: &PickContext<'_>) -> Option<&[u8]> {
        let s = self.sticky.as_ref()?;
        let id = *s.ids.get(peer)?;
        (ctx.sticky != Some(id)).then(|| &*s.set_cookie[peer])
    }

    /// Which latency `least_time` measures; `None` for every other method, so callers
    /// can skip reading the clock.
    pub fn latency_point(&self) -> Option<LatencyPoint> {
        self.latency.map(|l| l.0)
    }

    /// Feeds one observed latency of `peer` to `least_time` (ignored for other
    /// methods, another measurement point, or an index out of range).
    pub fn record_latency(&self, peer: usize, point: LatencyPoint, latency: Duration, now: Millis) {
        if let (Some((want, decay)), Some(p)) = (self.latency, self.peers.get(peer)) {
            if want == point {
                least_time::record(&p.state, latency, now, decay);
            }
        }
    }

    /// nginx's `get_peer` with no balancing key: see [`Upstream::pick_with`].
    pub fn pick(&self, tried: &Tried, now: Millis) -> Option<usize> {
        self.pick_with(&PickContext::default(), tried, now)
    }

    /// Picks an available peer not in `tried` and returns its index into `peers`, or
    /// `None` when there is none (the proxy answers 502, "no live upstreams").
    ///
    /// Primaries first; backups only when no primary is available. As in nginx, once a
    /// request has tried a backup it stays on the backups. A peer is unavailable when
    /// `down`, tried, disabled by failures ([`passive::is_disabled`]), or at
    /// `max_conns`. The chosen peer's trial time is renewed ([`passive::claim_trial`])
    /// and its in-flight count raised, until [`Upstream::report`].
    ///
    /// Peers out of rotation by active health checks or the admin API (down,
    /// draining) are unavailable too; a peer in its `slow_start` ramp is skipped at
    /// random ([`crate::upstream::slow_start`]), but never when that would leave no peer.
    pub fn pick_with(&self, ctx: &PickContext<'_>, tried: &Tried, now: Millis) -> Option<usize> {
        let ctx = &PickContext { now, ..*ctx };
        self.pick_pass(ctx, tried, now, false).or_else(|| {
            self.slow_start_any
                .then(|| self.pick_pass(ctx, tried, now, true))
                .flatten()
        })
    }

    /// One pass of [`Upstream::pick_with`]; `no_ramp` turns slow-start skipping off.
    fn pick_pass(
        &self,
        ctx: &PickContext<'_>,
        tried: &Tried,
        now: Millis,
        no_ramp: bool,
    ) -> Option<usize> {
        let on_backups = (self.primary_count..self.peers.len()).any(|i| tried.contains(i));
        if !on_backups {
            if let Some(i) = self.pick_in(0, self.primary.as_ref(), ctx, tried, now, no_ramp) {
                return Some(i);
            }
        }
        let backup = self.backup.as_deref()?;
        self.pick_in(self.primary_count, backup, ctx, tried, now, no_ramp)
    }

    /// nginx's `free_peer` accounting after an attempt on `peer` (an index `pick`
    /// returned): ends the in-flight count and applies the failure rules
    /// ([`passive::record`]). An index out of range is ignored.
    pub fn report(&self, peer: usize, outcome: Outcome, now: Millis) -> Report {
        let Some(p) = self.peers.get(peer) else {
            return Report::default();
        };
        // Saturating: a double report must not wrap the count and block the peer.
        let _ = p
            .state
            .in_flight
            .fetch_update(Relaxed, Relaxed, |c| c.checked_sub(1));
        if outcome == Outcome::Failure && !self.single {
            // nginx lowers the failed peer's effective weight in its round robin state.
            match (peer.checked_sub(self.primary_count), &self.backup) {
                (Some(b), Some(backup)) => backup.failed(b),
                _ => self.primary.failed(peer),
            }
        }
        Report {
            temporarily_disabled: passive::record(&p.conf, &p.state, outcome, now, self.single),
        }
    }

    /// nginx's number of tries for a request: the peers not `down`, primaries and
    /// backups together (the proxy caps it with `proxy_next_upstream_tries`).
    pub fn tries(&self) -> usize {
        self.peers.iter().filter(|p| !p.conf.down).count()
    }

    /// True for nginx's "single" group (one primary, no backup), whose peer is always
    /// tried regardless of `max_fails`.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// Whether some peer is [`AdminState::Starting`]: when no peer is available, the
    /// outage is a start-up that will end soon (the proxy answers 503, not 502).
    pub fn any_starting(&self) -> bool {
        self.peers
            .iter()
            .any(|p| p.state.admin.load(Relaxed) == AdminState::Starting as u8)
    }

    /// Whether peer `i` could be picked now, ignoring what a request tried.
    pub fn is_available(&self, i: usize, now: Millis) -> bool {
        let Some(p) = self.peers.get(i) else {
            return false;
        };
        let c = &p.conf;
        let busy = c.max_conns > 0 && p.state.in_flight.load(Relaxed) >= c.max_conns;
        !(c.down
            || busy
            || p.state.admin.load(Relaxed) != AdminState::Up as u8
            || p.state.kept_out_by_health(self.all_unhealthy.load(Relaxed))
            || passive::is_disabled(c, &p.state, now, self.single))
    }

    /// Picks within one set (primaries at `offset` 0, or backups), retrying when the
    /// chosen peer is lost to another thread between selection and claim.
    fn pick_in(
        &self,
        offset: usize,
        select: &dyn Select,
        ctx: &PickContext<'_>,
        tried: &Tried,
        now: Millis,
        no_ramp: bool,
    ) -> Option<usize> {
        let end = if offset == 0 {
            self.primary_count
        } else {
            self.peers.len()
        };
        let set = self.peers.get(offset..end)?;
        // Peers lost to a race during this call; allocated only when that happens.
        let mut lost: Option<Tried> = None;
        // Each round either returns or adds one peer to `lost`.
        for _ in 0..=set.len() {
            let usable = |i: usize| {
                i < set.len()
                    && !tried.contains(offset + i)
                    && !lost.as_ref().is_some_and(|l| l.contains(i))
                    && self.is_available(offset + i, now)
            };
            // The slow-start skip is random: applied once, in the selector's view only,
            // so the re-check below does not roll the dice a second time.
            let eligible = |i: usize| {
                usable(i) && (no_ramp || !slow_start::skip(&set[i].conf, &set[i].state, now))
            };
            let i = select.pick(set, ctx, &eligible)?;
            if usable(i) && self.acquire(offset + i, now) {
                return Some(offset + i);
            }
            lost.get_or_insert_with(|| Tried::new(set.len())).insert(i);
        }
        None
    }

    /// Takes a connection slot and the trial (if due) on a chosen peer; false when
    /// another thread got there first.
    fn acquire(&self, i: usize, now: Millis) -> bool {
        let Some(p) = self.peers.get(i) else {
            return false;
        };
        let max = p.conf.max_conns;
        let slot = p
            .state
            .in_flight
            .fetch_update(Relaxed, Relaxed, |c| {
                (max == 0 || c < max).then(|| c.saturating_add(1))
            })
            .is_ok();
        if !slot {
            return false;
        }
        if !passive::claim_trial(&p.conf, &p.state, now, self.single) {
            let _ = p
                .state
                .in_flight
                .fetch_update(Relaxed, Relaxed, |c| c.checked_sub(1));
            return false;
        }
        p.state.requests.fetch_add(1, Relaxed);
        true
    }
}
