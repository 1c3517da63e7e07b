//! `GET /status`: every upstream and peer as JSON, read from the live peer state.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::balance::Upstream;
use crate::server::{Runtime, WorkersReport};
use crate::upstream::{now, AdminState, Health, Millis, LATENCY_BUCKETS_MS};
use crate::upstream::{passive, slow_start};

/// The whole document: `{"upstreams": {NAME: {"peers": [...]}},
/// "latency_bucket_bounds_ms": [...], "workers": {...}}`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Upstreams by name (sorted).
    pub upstreams: BTreeMap<String, UpstreamStatus>,
    /// Upper bounds (ms) of the latency buckets counted in each peer's
    /// `latency_buckets`; the last bucket (beyond them) is unbounded.
    pub latency_bucket_bounds_ms: &'static [u64],
    /// Under `ferrolb up`: its worker processes (as `GET /workers`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersReport>,
    /// The certificates of `acme_certificate` lines; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateEntry>,
}

/// One ACME certificate: what it is for, who issues it, until when it is valid.
#[derive(Debug, Serialize)]
pub struct CertificateEntry {
    /// A stable id: the first name and a hash (its file names under `state_path`).
    pub id: String,
    /// Names, issuer, state, validity, next attempt and last error.
    #[serde(flatten)]
    pub status: crate::acme::status::CertificateStatus,
    /// Seconds until `not_after` (negative once expired); absent before the first.
    pub expires_in: Option<i64>,
}

/// The ACME certificates now.
pub fn certificates() -> Vec<CertificateEntry> {
    let now = crate::config::acme::unix_now();
    crate::acme::status::snapshot()
        .into_iter()
        .map(|(id, status)| CertificateEntry {
            id,
            expires_in: status.not_after.map(|t| t - now),
            status,
        })
        .collect()
}

/// One upstream.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    /// Primaries, then backups, as `pick` sees them.
    pub peers: Vec<PeerStatus>,
    /// Every peer failed its health checks and all are used anyway.
    pub all_unhealthy: bool,
}

/// One peer.
#[derive(Debug, Serialize)]
pub struct PeerStatus {
    /// `IP:PORT`.
    pub addr: String,
    /// The `server` argument as written.
    pub name: String,
    /// One of `up`, `down`, `draining`, `unhealthy`, `backup`, `slow-start`, `failed`
    /// (see [`state_word`]).
    pub state: &'static str,
    /// Whether this is a `backup` peer.
    pub backup: bool,
    /// Configured (or admin-set) weight.
    pub weight: u32,
    /// Attempts in progress.
    pub in_flight: u32,
    /// Attempts ever.
    pub requests: u64,
    /// Failed attempts ever.
    pub failures: u64,
    /// Relayed responses by status class.
    pub responses: Responses,
    /// Active health-check results.
    pub health: HealthStatus,
    /// Latency quantiles (upper bounds of log-spaced buckets), `null` before any
    /// response.
    pub latency_ms: Latency,
    /// Responses ever, by latency bucket (see `latency_bucket_bounds_ms`): the
    /// dashboard computes a recent p99 from the difference of two polls.
    pub latency_buckets: Vec<u64>,
    /// Bytes sent to the peer.
    pub bytes_sent: u64,
    /// Bytes received from it.
    pub bytes_received: u64,
}

/// Responses by status class.
#[derive(Debug, Serialize)]
pub struct Responses {
    /// 1xx
    #[serde(rename = "1xx")]
    pub c1: u64,
    /// 2xx
    #[serde(rename = "2xx")]
    pub c2: u64,
    /// 3xx
    #[serde(rename = "3xx")]
    pub c3: u64,
    /// 4xx
    #[serde(rename = "4xx")]
    pub c4: u64,
    /// 5xx
    #[serde(rename = "5xx")]
    pub c5: u64,
}

/// Health-check section of a peer.
#[derive(Debug, Serialize)]
pub struct HealthStatus {
    /// `unknown` (no check yet / none configured), `healthy`, `unhealthy`, `checking`.
    pub status: &'static str,
    /// Milliseconds since the last check ended; `null` when none ran.
    pub last_check_ms_ago: Option<u64>,
    /// Status of the last check response (0: none).
    pub last_status: u32,
    /// Checks failed in a row.
    pub consecutive_fails: u32,
    /// Checks passed in a row.
    pub consecutive_passes: u32,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
}

/// The state word of peer `i` of `up`, by precedence: `down` (configured or admin),
/// `starting` (its `ferrolb up` worker is not ready yet), `draining`, `unhealthy` (active check, or `mandatory` before its first pass),
/// `failed` (passive: `max_fails` reached within `fail_timeout`), `slow-start`,
/// `backup`, else `up`.
pub fn state_word(up: &Upstream, i: usize, at: Millis) -> &'static str {
    let Some(p) = up.peers.get(i) else {
        return "down";
    };
    let s = &p.state;
    match s.admin_state() {
        _ if p.conf.down => "down",
        AdminState::Down => "down",
        AdminState::Starting => "starting",
        AdminState::Draining => "draining",
        AdminState::Up => match s.health() {
            Health::Unhealthy | Health::Checking => "unhealthy",
            _ if passive::is_disabled(&p.conf, s, at, up.is_single()) => "failed",
            _ if slow_start::ramping(&p.conf, s, at) => "slow-start",
            _ if p.conf.backup => "backup",
            _ => "up",
        },
    }
}

/// A snapshot of the runtime's upstreams.
pub fn snapshot(rt: &Runtime) -> Status {
    let at = now();
    let upstreams = rt
        .upstreams
        .iter()
        .map(|up| {
            let peers = up
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let s = &p.state;
                    let r = |k: usize| s.responses[k].load(Relaxed);
                    let last = s.hc_last_check.load(Relaxed);
                    PeerStatus {
                        addr: p.conf.addr.to_string(),
                        name: p.conf.name.clone(),
                        state: state_word(up, i, at),
                        backup: p.conf.backup,
                        weight: p.conf.weight,
                        in_flight: s.in_flight.load(Relaxed),
                        requests: s.requests.load(Relaxed),
                        failures: s.failures_total.load(Relaxed),
                        responses: Responses {
                            c1: r(0),
                            c2: r(1),
                            c3: r(2),
                            c4: r(3),
                            c5: r(4),
                        },
                        health: HealthStatus {
                            status: s.health().as_str(),
                            last_check_ms_ago: (last != 0).then(|| at.since(Millis(last))),
                            last_status: s.hc_last_status.load(Relaxed),
                            consecutive_fails: s.hc_fails.load(Relaxed),
                            consecutive_passes: s.hc_passes.load(Relaxed),
                        },
                        latency_ms: Latency {
                            p50: s.latency_quantile_ms(0.5),
                            p99: s.latency_quantile_ms(0.99),
                        },
                        latency_buckets: s.latency_counts().to_vec(),
                        bytes_sent: s.bytes_sent.load(Relaxed),
                        bytes_received: s.bytes_received.load(Relaxed),
                    }
                })
                .collect();
            (
                up.name.clone(),
                UpstreamStatus {
                    peers,
                    all_unhealthy: up.all_unhealthy.load(Relaxed),
                },
            )
        })
        .collect();
    Status {
        upstreams,
        latency_bucket_bounds_ms: &LATENCY_BUCKETS_MS,
        workers: None,
        certificates: certificates(),
    }
}

/// `snapshot` with `workers` (under `ferrolb up`) as JSON text.
pub fn json(rt: &Runtime, workers: Option<WorkersReport>) -> String {
    let mut status = snapshot(rt);
    status.workers = workers;
    // Serialising plain structs of numbers and strings cannot fail.
    serde_json::to_string(&status).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
