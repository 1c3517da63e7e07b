//! The zones of `limit_req_zone` and `limit_conn_zone`, kept across reloads (a zone of
//! the same name, size and key keeps its states, as nginx keeps its shared memory), and
//! the preaccess phase that applies a location's `limit_req` and `limit_conn` lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::config::{Http, Level, LimitConn, LimitReq, LimitSettings, Template};
use crate::vars::{Locals, RequestVars};

use super::limit_conn::{ConnSlot, ConnZone, Counts, Refused};
use super::limit_req::{self, Decision, ReqZone, States};

/// nginx's longest `limit_req` key.
const MAX_REQ_KEY: usize = 65535;
/// nginx's longest `limit_conn` key.
const MAX_CONN_KEY: usize = 255;

/// Milliseconds on a monotonic clock (tokio's, so paused time in tests moves it).
pub fn now_ms() -> u64 {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(origin)
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// A zone's states as kept between configurations: its size and key, and the states.
type Kept<T> = HashMap<String, (u64, Template, Weak<Mutex<T>>)>;

/// The states of every zone a configuration has in force.
fn kept<T>(
    registry: &'static OnceLock<Mutex<Kept<T>>>,
    name: &str,
    size: u64,
    key: &Template,
    new: impl FnOnce() -> T,
) -> Arc<Mutex<T>> {
    let map = registry.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.retain(|_, (_, _, w)| w.strong_count() > 0);
    if let Some((s, k, w)) = map.get(name) {
        if *s == size && k == key {
            if let Some(states) = w.upgrade() {
                return states;
            }
        }
    }
    let states = Arc::new(Mutex::new(new()));
    map.insert(
        name.to_owned(),
        (size, key.clone(), Arc::downgrade(&states)),
    );
    states
}

static REQ_STATES: OnceLock<Mutex<Kept<States>>> = OnceLock::new();
static CONN_COUNTS: OnceLock<Mutex<Kept<Counts>>> = OnceLock::new();

/// The zones of a configuration, indexed as [`Http::limit_req_zones`] and
/// [`Http::limit_conn_zones`].
#[derive(Debug, Default)]
pub struct LimitZones {
    req: Vec<(ReqZone, Template, String)>,
    conn: Vec<(ConnZone, Template, String)>,
}

impl LimitZones {
    /// The zones `http` declares, with the states of the previous configuration's zones
    /// of the same name, size and key.
    pub fn build(http: &Http) -> Self {
        LimitZones {
            req: http
                .limit_req_zones
                .iter()
                .map(|z| {
                    let states = kept(&REQ_STATES, &z.name, z.size, &z.key, || States::new(z.size));
                    (
                        ReqZone::new(z.name.clone(), z.rate, states),
                        z.key.clone(),
                        z.key_text.clone(),
                    )
                })
                .collect(),
            conn: http
                .limit_conn_zones
                .iter()
                .map(|z| {
                    let counts = kept(&CONN_COUNTS, &z.name, z.size, &z.key, || {
                        Counts::new(z.size)
                    });
                    (
                        ConnZone::new(z.name.clone(), counts),
                        z.key.clone(),
                        z.key_text.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// A key's value for the request; `None` when empty or too long (logged).
fn key_value(
    key: &Template,
    key_text: &str,
    vars: &RequestVars<'_>,
    max: usize,
    log: &mut (dyn FnMut(Level, String) + Send),
) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    vars.eval(key, &mut v);
    if v.len() > max {
        log(
            Level::Error,
            format!(
                "the value of the \"{key_text}\" key is more than {max} bytes: \"{}\"",
                String::from_utf8_lossy(&v)
            ),
        );
        return None;
    }
    (!v.is_empty()).then_some(v)
}

/// The level nginx logs a delay at: one below the rejection's, `info` at least.
fn delay_level(level: Level) -> Level {
    match level {
        Level::Error => Level::Warn,
        Level::Warn => Level::Notice,
        _ => Level::Info,
    }
}

/// nginx's `limit_req` preaccess handler: once per request, the location's lines
/// decide; a delay is waited here. `Err(status)` rejects the request.
pub async fn limit_requests(
    zones: &LimitZones,
    conf: &LimitSettings<LimitReq>,
    vars: &RequestVars<'_>,
    locals: &Locals<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
) -> Result<(), u16> {
    if conf.limits.is_empty() || locals.limit_req_status().is_some() {
        return Ok(());
    }
    let mut limits = Vec::with_capacity(conf.limits.len());
    for l in &conf.limits {
        let Some((zone, key, text)) = zones.req.get(l.zone) else {
            continue;
        };
        limits.push(limit_req::Limit {
            zone,
            key: key_value(key, text, vars, MAX_REQ_KEY, log),
            burst: l.burst,
            delay: l.delay,
        });
    }
    let dry = if conf.dry_run { ", dry run" } else { "" };
    match limit_req::decide(&limits, now_ms()) {
        None => Ok(()),
        Some(Decision::Passed) => {
            locals.set_limit_req_status("PASSED");
            Ok(())
        }
        Some(Decision::Rejected { excess, zone }) => {
            match excess {
                Some(e) => log(
                    conf.log_level,
                    format!(
                        "limiting requests{dry}, excess: {}.{:03} by zone \"{zone}\"",
                        e / 1000,
                        e % 1000
                    ),
                ),
                None => log(
                    Level::Alert,
                    format!("could not allocate node in limit_req zone \"{zone}\""),
                ),
            }
            if conf.dry_run {
                locals.set_limit_req_status("REJECTED_DRY_RUN");
                return Ok(());
            }
            locals.set_limit_req_status("REJECTED");
            Err(conf.status)
        }
        Some(Decision::Delayed { ms, excess, zone }) => {
            log(
                delay_level(conf.log_level),
                format!(
                    "delaying request{dry}, excess: {}.{:03}, by zone \"{zone}\"",
                    excess / 1000,
                    excess % 1000
                ),
            );
            if conf.dry_run {
                locals.set_limit_req_status("DELAYED_DRY_RUN");
                return Ok(());
            }
            locals.set_limit_req_status("DELAYED");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
    }
}

/// nginx's `limit_conn` preaccess handler: once per request, a slot of each zone of
/// the location's lines (kept in `slots` until the request is done). `Err(status)`
/// rejects the request.
pub fn limit_connections(
    zones: &LimitZones,
    conf: &LimitSettings<LimitConn>,
    vars: &RequestVars<'_>,
    locals: &Locals<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
    slots: &mut Vec<ConnSlot>,
) -> Result<(), u16> {
    if conf.limits.is_empty() || locals.limit_conn_status().is_some() {
        return Ok(());
    }
    let held = slots.len();
    for l in &conf.limits {
        let Some((zone, key, text)) = zones.conn.get(l.zone) else {
            continue;
        };
        let Some(key) = key_value(key, text, vars, MAX_CONN_KEY, log) else {
            continue;
        };
        locals.set_limit_conn_status("PASSED");
        match zone.acquire(&key, l.conn) {
            Ok(slot) => slots.push(slot),
            Err(why) => {
                slots.truncate(held);
                let dry = if conf.dry_run { ", dry run" } else { "" };
                match why {
                    Refused::Limit => log(
                        conf.log_level,
                        format!("limiting connections{dry} by zone \"{}\"", zone.name),
                    ),
                    Refused::NoRoom => log(
                        Level::Alert,
                        format!(
                            "could not allocate node in limit_conn zone \"{}\"",
                            zone.name
                        ),
                    ),
                }
                if conf.dry_run {
                    locals.set_limit_conn_status("REJECTED_DRY_RUN");
                    return Ok(());
                }
                locals.set_limit_conn_status("REJECTED");
                return Err(conf.status);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitReqZoneConf, Template};

    fn zone_conf(name: &str, size: u64) -> Http {
        let mut http = Http::default();
        http.limit_req_zones.push(LimitReqZoneConf {
            name: name.into(),
            key: Template::literal("k"),
            key_text: "k".into(),
            size,
            rate: 1000,
        });
        http
    }

    #[test]
    fn a_reload_keeps_the_states_of_an_unchanged_zone() {
        let first = LimitZones::build(&zone_conf("reload-test-zone", 1 << 20));
        let limit = |z: &LimitZones| {
            limit_req::decide(
                &[limit_req::Limit {
                    zone: &z.req[0].0,
                    key: Some(b"k".to_vec()),
                    burst: 0,
                    delay: 0,
                }],
                0,
            )
        };
        assert_eq!(limit(&first), Some(Decision::Passed));
        let same = LimitZones::build(&zone_conf("reload-test-zone", 1 << 20));
        assert!(matches!(limit(&same), Some(Decision::Rejected { .. })));
        // Another size is another zone, as nginx's shared memory.
        let resized = LimitZones::build(&zone_conf("reload-test-zone", 2 << 20));
        assert_eq!(limit(&resized), Some(Decision::Passed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_waits_on_the_clock() {
        let mut http = Http::default();
        http.limit_req_zones.push(LimitReqZoneConf {
            name: "paused-test-zone".into(),
            key: Template::literal("k"),
            key_text: "k".into(),
            size: 1 << 20,
            rate: 1000,
        });
        let zones = LimitZones::build(&http);
        let conf = LimitSettings {
            limits: vec![LimitReq {
                zone: 0,
                burst: 5000,
                delay: 0,
            }],
            ..LimitSettings::default()
        };
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut head = crate::http1::RequestHead::new();
        head.parse(buf).expect("parses");
        let local = "127.0.0.1:80".parse().expect("addr");
        let remote = crate::net::ClientAddr::Inet("127.0.0.1:1".parse().expect("addr"));
        let vars = RequestVars {
            buf,
            head: &head,
            remote,
            peer: remote,
            proxy_protocol: None,
            local: &local,
            server_name: "",
            tls: None,
            uri: "/",
            proxy_host: "",
            upstream_addr: None,
            locals: None,
            files: None,
            connection: 0,
            http2: None,
        };
        let mut lines = Vec::new();
        let mut log = |_: Level, l: String| lines.push(l);
        let mut waited = Vec::new();
        let http = crate::config::Http::default();
        for _ in 0..3 {
            let locals = Locals::new(&http);
            let start = tokio::time::Instant::now();
            limit_requests(&zones, &conf, &vars, &locals, &mut log)
                .await
                .expect("let through");
            waited.push(start.elapsed().as_millis());
        }
        // The third comes a second after the second: the bucket drained one request.
        assert_eq!(waited, [0, 1000, 1000]);
        assert_eq!(
            lines,
            [
                "delaying request, excess: 1.000, by zone \"paused-test-zone\"",
                "delaying request, excess: 1.000, by zone \"paused-test-zone\"",
            ]
        );
    }
}
