//! `GET /metrics`: Prometheus text format (0.0.4) through `prometheus-client`, read
//! from the peer state atomics at scrape time by a [`Collector`] (no second set of
//! counters to keep in sync).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::server::{Runtime, WorkerReport, WorkersReport};
use crate::upstream::{Health, PeerState, LATENCY_BUCKETS_MS};

/// The collector over one runtime snapshot.
#[derive(Debug)]
struct Peers(Arc<Runtime>);

type Labels = Vec<(&'static str, String)>;

impl Peers {
    fn each(&self) -> impl Iterator<Item = (Labels, &PeerState)> {
        self.0.upstreams.iter().flat_map(|u| {
            u.peers.iter().map(move |p| {
                (
                    vec![
                        ("upstream", u.name.clone()),
                        ("peer", p.conf.addr.to_string()),
                    ],
                    p.state.as_ref(),
                )
            })
        })
    }

    fn counter(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        v: impl Fn(&PeerState) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, s) in self.each() {
            ConstCounter::new(v(s)).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauge(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        v: impl Fn(&PeerState) -> i64,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, s) in self.each() {
            ConstGauge::new(v(s)).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for Peers {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "ferrolb_upstream_responses",
            "Responses relayed from a peer, by status class",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in self.each() {
            for (k, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let mut l = labels.clone();
                l.push(("status", (*class).to_owned()));
                ConstCounter::new(s.responses[k].load(Relaxed)).encode(m.encode_family(&l)?)?;
            }
        }
        self.counter(
            &mut enc,
            "ferrolb_upstream_requests",
            "Attempts sent to a peer",
            |s| s.requests.load(Relaxed),
        )?;
        self.counter(
            &mut enc,
            "ferrolb_upstream_failures",
            "Failed attempts on a peer (error, timeout, listed status)",
            |s| s.failures_total.load(Relaxed),
        )?;
        self.counter(
            &mut enc,
            "ferrolb_upstream_sent_bytes",
            "Bytes sent to a peer",
            |s| s.bytes_sent.load(Relaxed),
        )?;
        self.counter(
            &mut enc,
            "ferrolb_upstream_received_bytes",
            "Bytes received from a peer",
            |s| s.bytes_received.load(Relaxed),
        )?;
        self.gauge(
            &mut enc,
            "ferrolb_upstream_in_flight",
            "Attempts in progress on a peer",
            |s| i64::from(s.in_flight.load(Relaxed)),
        )?;
        self.gauge(
            &mut enc,
            "ferrolb_upstream_healthy",
            "1 unless active health checks took the peer out of rotation",
            |s| i64::from(!matches!(s.health(), Health::Unhealthy | Health::Checking)),
        )?;
        let mut m = enc.encode_descriptor(
            "ferrolb_upstream_response_seconds",
            "Time from picking a peer to the end of its relayed response",
            None,
            MetricType::Histogram,
        )?;
        for (labels, s) in self.each() {
            let counts = s.latency_counts();
            let buckets: Vec<(f64, u64)> = counts
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let le = LATENCY_BUCKETS_MS
                        .get(i)
                        .map_or(f64::INFINITY, |&ms| ms as f64 / 1000.0);
                    (le, c)
                })
                .collect();
            let sum = s.latency_sum_us.load(Relaxed) as f64 / 1e6;
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                sum,
                counts.iter().sum(),
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

/// The collector over `ferrolb up`'s workers, labelled like the peers they are
/// (`upstream`, `peer`) so a query can join them with the upstream metrics.
#[derive(Debug)]
struct Workers(WorkersReport);

impl Workers {
    /// One gauge family with a sample per worker that has a value.
    fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug>(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        v: impl Fn(&WorkerReport) -> Option<N>,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for w in &self.0.workers {
            if let Some(x) = v(w) {
                ConstGauge::new(x).encode(m.encode_family(&self.labels(w))?)?;
            }
        }
        Ok(())
    }

    fn labels(&self, w: &WorkerReport) -> Labels {
        vec![
            ("upstream", self.0.upstream.clone()),
            ("peer", format!("127.0.0.1:{}", w.port)),
        ]
    }
}

impl Collector for Workers {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "ferrolb_worker_restarts",
            "Times a ferrolb up worker was started again (exit, failed start, restart)",
            None,
            MetricType::Counter,
        )?;
        for w in &self.0.workers {
            ConstCounter::new(u64::from(w.restarts)).encode(m.encode_family(&self.labels(w))?)?;
        }
        self.gauge(
            &mut enc,
            "ferrolb_worker_healthy",
            "1 while a ferrolb up worker is ready and in rotation",
            |w| Some(i64::from(w.state == "healthy")),
        )?;
        self.gauge(
            &mut enc,
            "ferrolb_worker_gave_up",
            "1 once a ferrolb up worker reached its start limit and is no longer restarted",
            |w| Some(i64::from(w.state == "gave-up")),
        )?;
        self.gauge(
            &mut enc,
            "ferrolb_worker_pid",
            "Process id of a ferrolb up worker (absent while none runs)",
            |w| w.pid.map(i64::from),
        )?;
        self.gauge(
            &mut enc,
            "ferrolb_worker_uptime_seconds",
            "Seconds since a ferrolb up worker's process started (absent while none runs)",
            |w| w.uptime_secs,
        )?;
        let mut m = enc.encode_descriptor(
            "ferrolb_workers_rolling_restart",
            "1 while a rolling restart of the ferrolb up workers runs",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.0.restarting))
            .encode(m.encode_family(&vec![("upstream", self.0.upstream.clone())])?)?;
        Ok(())
    }
}

/// The ACME certificates' expiry.
#[derive(Debug)]
struct Certificates;

impl Collector for Certificates {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let certs = super::status::certificates();
        if certs.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(
            "ferrolb_acme_certificate_expiry_seconds",
            "Seconds until the served ACME certificate expires (absent before the first is issued)",
            None,
            MetricType::Gauge,
        )?;
        for c in &certs {
            if let Some(secs) = c.expires_in {
                let labels: Labels = vec![
                    ("issuer", c.status.issuer.clone()),
                    ("names", c.status.names.join(" ")),
                ];
                ConstGauge::new(secs).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "ferrolb_acme_certificate_failing",
            "1 while the last order of an ACME certificate failed (it is retried)",
            None,
            MetricType::Gauge,
        )?;
        for c in &certs {
            let labels: Labels = vec![
                ("issuer", c.status.issuer.clone()),
                ("names", c.status.names.join(" ")),
            ];
            ConstGauge::new(i64::from(c.status.last_error.is_some()))
                .encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The metrics text for the runtime and, under `ferrolb up`, its workers.
pub fn render(rt: Arc<Runtime>, workers: Option<WorkersReport>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Peers(rt)));
    registry.register_collector(Box::new(Certificates));
    if let Some(w) = workers {
        registry.register_collector(Box::new(Workers(w)));
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}
