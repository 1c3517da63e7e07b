//! Active health checks (nginx Plus `health_check` / `match`).
//!
//! One task per (health_check line, peer) sends `GET uri` every `interval` (plus up to
//! `jitter`), and judges the response with the `match` block (default: status 2xx or
//! 3xx). `fails` failed checks in a row make the peer [`Health::Unhealthy`]: it leaves
//! rotation ([`PeerState::kept_out_by_health`] in the eligibility test of `Upstream::pick`); `passes` passed
//! checks in a row bring it back (as Pingora's rise/fall thresholds). The verdict lives
//! in the peer's [`PeerState`] atomics, so it survives reloads and every worker thread
//! sees it without a lock.
//!
//! The tasks run on one dedicated thread with its own current-thread tokio runtime
//! ([`spawn`]): checks never compete with requests for a worker's event loop. That
//! thread looks at the current runtime every 100 ms; when a reload or an admin change
//! has replaced it, every task is restarted on the new peer set (their counters stay
//! in `PeerState`).
//!
//! When every peer of an upstream is unhealthy, requests go to all of them anyway
//! (better some answers than none, as nginx does when all peers failed); the transition
//! is logged at `[error]` once each way.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::balance::Upstream;
use crate::config::{Endpoint, HeaderTest, HealthCheckConf, Level, MatchCond, MatchConf};
use crate::net::Stream;
use crate::upstream::{now, Health, Millis, PeerState};

/// Most body bytes a check reads (and a `body ~` condition sees): 256 KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The response status; 0 when there was no response.
    pub status: u16,
    /// Whether the check passed.
    pub ok: bool,
    /// Why it failed (for the log), empty when it passed.
    pub why: String,
}

/// A change of verdict caused by one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The peer left rotation.
    Down,
    /// The peer (re)entered rotation.
    Up,
}

/// Applies one check result to the peer's counters and verdict (the fall/rise
/// thresholds). Returns the transition, if any.
pub fn apply(
    state: &PeerState,
    fails: u32,
    passes: u32,
    r: &CheckResult,
    at: Millis,
) -> Option<Transition> {
    state.hc_last_status.store(u32::from(r.status), Relaxed);
    state.hc_last_check.store(at.0, Relaxed);
    let health = state.health();
    if r.ok {
        state.hc_fails.store(0, Relaxed);
        let n = state.hc_passes.fetch_add(1, Relaxed).saturating_add(1);
        match health {
            Health::Unknown => {
                state.health.store(Health::Healthy as u8, Relaxed);
                None
            }
            // `mandatory`: the first pass admits the peer (nginx Plus' "checking").
            Health::Checking => {
                state.health.store(Health::Healthy as u8, Relaxed);
                Some(Transition::Up)
            }
            Health::Unhealthy if n >= passes => {
                state.health.store(Health::Healthy as u8, Relaxed);
                state.recovered_at.store(at.0, Relaxed);
                Some(Transition::Up)
            }
            _ => None,
        }
    } else {
        state.hc_passes.store(0, Relaxed);
        let n = state.hc_fails.fetch_add(1, Relaxed).saturating_add(1);
        if health != Health::Unhealthy && n >= fails {
            state.health.store(Health::Unhealthy as u8, Relaxed);
            (health != Health::Checking).then_some(Transition::Down)
        } else {
            None
        }
    }
}

/// Whether a response meets the check's conditions: the `match` block, or by
/// default a 2xx/3xx status.
pub fn judge(
    matcher: Option<&MatchConf>,
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(), String> {
    let Some(m) = matcher else {
        return if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        };
    };
    for c in &m.conditions {
        let (holds, what) = match c {
            MatchCond::Status { negate, ranges } => (
                ranges.iter().any(|&(a, b)| (a..=b).contains(&status)) != *negate,
                format!("status {status}"),
            ),
            MatchCond::Header { name, test, negate } => {
                let value = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| String::from_utf8_lossy(v));
                let hit = match (test, &value) {
                    (_, None) => false,
                    (HeaderTest::Present, Some(_)) => true,
                    (HeaderTest::Equals(want), Some(v)) => v == want,
                    (HeaderTest::Matches(re), Some(v)) => re.is_match(v),
                };
                (hit != *negate, format!("header {name}"))
            }
            MatchCond::Body { negate, regex } => (
                regex.is_match(&String::from_utf8_lossy(body)) != *negate,
                "body".to_owned(),
            ),
        };
        if !holds {
            return Err(format!("match \"{}\" failed on {what}", m.name));
        }
    }
    Ok(())
}

/// Runs one HTTP check against `addr` (bounded by `hc.timeout` in total).
/// `port=` replaces the port of an IP peer; a Unix socket peer is checked on its socket.
pub async fn probe(addr: &Endpoint, hc: &HealthCheckConf) -> CheckResult {
    let addr = match (addr, hc.port) {
        (Endpoint::Inet(a), Some(port)) => Endpoint::Inet(std::net::SocketAddr::new(a.ip(), port)),
        _ => addr.clone(),
    };
    match tokio::time::timeout(hc.timeout, exchange(&addr, hc)).await {
        Err(_) => CheckResult {
            status: 0,
            ok: false,
            why: format!("timed out after {:?}", hc.timeout),
        },
        Ok(Err(e)) => CheckResult {
            status: 0,
            ok: false,
            why: e.to_string(),
        },
        Ok(Ok((status, headers, body))) => {
            match judge(hc.matcher.as_deref(), status, &headers, &body) {
                Ok(()) => CheckResult {
                    status,
                    ok: true,
                    why: String::new(),
                },
                Err(why) => CheckResult {
                    status,
                    ok: false,
                    why,
                },
            }
        }
    }
}

type Exchange = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

/// Sends the check request with `Connection: close` and reads the response to EOF
/// (at most [`MAX_BODY`] body bytes).
async fn exchange(addr: &Endpoint, hc: &HealthCheckConf) -> std::io::Result<Exchange> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut s = Stream::connect(addr).await?;
    if let Some(tls) = &hc.tls {
        s = crate::net::tls::client::connect(s, tls).await?;
    }
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferrolb-health-check\r\nConnection: close\r\n\r\n",
        hc.uri, hc.host
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > crate::http1::MAX_HEAD_BYTES + MAX_BODY {
            break;
        }
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let head_len = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("incomplete response head")),
        Err(_) => return Err(bad("invalid response head")),
    };
    let status = resp.code.ok_or_else(|| bad("no status"))?;
    let headers = resp
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let end = buf.len().min(head_len + MAX_BODY);
    Ok((status, headers, buf[head_len..end].to_vec()))
}

/// One peer to check, with what its task needs to judge the whole group.
#[derive(Debug, Clone)]
pub struct Target {
    /// The upstream's name (for logs).
    pub upstream: String,
    /// The peer's address.
    pub addr: Endpoint,
    /// The peer's live state.
    pub state: Arc<PeerState>,
    /// The check.
    pub conf: Arc<HealthCheckConf>,
    /// Every peer state of the upstream, to notice "all unhealthy".
    pub group: Arc<[Arc<PeerState>]>,
    /// The upstream's "all unhealthy" flag, read by `pick`.
    pub all_unhealthy: Arc<AtomicBool>,
}

/// Checks one target forever: a check, then `interval` plus a random part of
/// `jitter`. `probe` does the check (a real HTTP exchange, or a script in tests).
pub async fn run_target<F, Fut>(t: Target, mut probe: F)
where
    F: FnMut(Endpoint, Arc<HealthCheckConf>) -> Fut,
    Fut: std::future::Future<Output = CheckResult>,
{
    if t.conf.mandatory && t.state.health() == Health::Unknown {
        t.state.health.store(Health::Checking as u8, Relaxed);
    }
    loop {
        let r = probe(t.addr.clone(), t.conf.clone()).await;
        match apply(&t.state, t.conf.fails, t.conf.passes, &r, now()) {
            Some(Transition::Down) => crate::log::emit(
                Level::Warn,
                None,
                format_args!(
                    "peer {} of upstream \"{}\" is unhealthy after {} failed health check(s): {}",
                    t.addr,
                    t.upstream,
                    t.state.hc_fails.load(Relaxed),
                    r.why
                ),
            ),
            Some(Transition::Up) => crate::log::emit(
                Level::Notice,
                None,
                format_args!(
                    "peer {} of upstream \"{}\" is healthy again",
                    t.addr, t.upstream
                ),
            ),
            None => {}
        }
        update_all_unhealthy(&t);
        let jitter = if t.conf.jitter.is_zero() {
            Duration::ZERO
        } else {
            t.conf
                .jitter
                .mul_f64(crate::upstream::slow_start::random_unit())
        };
        tokio::time::sleep(t.conf.interval + jitter).await;
    }
}

/// Recomputes the group's "all unhealthy" flag and logs a change (once per
/// transition: only the task whose swap changed the flag logs).
fn update_all_unhealthy(t: &Target) {
    let all = !t.group.is_empty() && t.group.iter().all(|s| s.health() == Health::Unhealthy);
    if t.all_unhealthy.swap(all, Relaxed) != all {
        if all {
            crate::log::emit(
                Level::Error,
                None,
                format_args!(
                    "every peer of upstream \"{}\" failed its health checks: routing to all of them",
                    t.upstream
                ),
            );
        } else {
            crate::log::emit(
                Level::Error,
                None,
                format_args!(
                    "upstream \"{}\" has a healthy peer again: unhealthy peers leave rotation",
                    t.upstream
                ),
            );
        }
    }
}

/// Where the checker finds the peers to check: the live configuration, which a reload
/// or an admin change replaces.
pub trait CheckedPeers: Send + Sync + 'static {
    /// An identity of the current peer set: it changes when the set is replaced.
    fn version(&self) -> usize;
    /// The targets of the current peer set (see [`targets`]).
    fn targets(&self) -> Vec<Target>;
}

/// The targets of every `health_check` (one per check line and peer); `upstreams` are
/// the groups the checks' `upstream` indices refer to.
pub fn targets(checks: &[HealthCheckConf], upstreams: &[Upstream]) -> Vec<Target> {
    let mut out = Vec::new();
    for hc in checks {
        let Some(up) = upstreams.get(hc.upstream) else {
            continue;
        };
        let conf = Arc::new(hc.clone());
        let group: Arc<[Arc<PeerState>]> = up.peers.iter().map(|p| p.state.clone()).collect();
        for p in &up.peers {
            out.push(Target {
                upstream: up.name.clone(),
                addr: p.conf.addr.clone(),
                state: p.state.clone(),
                conf: conf.clone(),
                group: group.clone(),
                all_unhealthy: up.all_unhealthy.clone(),
            });
        }
    }
    out
}

/// Starts the health-check thread (always: a reload may add checks, and the thread is
/// cheap and idles otherwise). It ends when `stop` completes.
pub fn spawn(
    peers: Arc<dyn CheckedPeers>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ferrolb-health".into())
        .spawn(move || {
            rt.block_on(drive(peers, stop));
        })
}

/// Looks at the peer set every 100 ms and restarts every check task when it changed.
async fn drive(peers: Arc<dyn CheckedPeers>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut current: Option<usize> = None;
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let version = peers.version();
        if current != Some(version) {
            for t in tasks.drain(..) {
                t.abort();
            }
            for target in peers.targets() {
                tasks.push(tokio::spawn(run_target(target, |addr, conf| async move {
                    probe(&addr, &conf).await
                })));
            }
            current = Some(version);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = &mut stop => break,
        }
    }
    for t in tasks {
        t.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;
    use std::sync::Mutex;

    fn conf(fails: u32, passes: u32) -> HealthCheckConf {
        HealthCheckConf {
            upstream: 0,
            interval: Duration::from_secs(5),
            jitter: Duration::ZERO,
            fails,
            passes,
            uri: "/health/".into(),
            port: None,
            matcher: None,
            timeout: Duration::from_secs(1),
            mandatory: false,
            tls: None,
            host: "b".into(),
            span: Span {
                file: Arc::new("t.conf".into()),
                line: 1,
                column: 1,
            },
        }
    }

    fn result(ok: bool) -> CheckResult {
        CheckResult {
            status: if ok { 200 } else { 500 },
            ok,
            why: String::new(),
        }
    }

    #[test]
    fn thresholds_fall_and_rise() {
        let s = PeerState::default();
        assert_eq!(apply(&s, 3, 2, &result(true), Millis(1)), None);
        assert_eq!(s.health(), Health::Healthy);
        assert_eq!(apply(&s, 3, 2, &result(false), Millis(2)), None);
        assert_eq!(apply(&s, 3, 2, &result(false), Millis(3)), None);
        assert_eq!(
            apply(&s, 3, 2, &result(false), Millis(4)),
            Some(Transition::Down)
        );
        assert!(s.kept_out_by_health(false));
        assert!(!s.kept_out_by_health(true));
        assert_eq!(apply(&s, 3, 2, &result(true), Millis(5)), None);
        assert_eq!(
            apply(&s, 3, 2, &result(true), Millis(6)),
            Some(Transition::Up)
        );
        assert_eq!(s.recovered_at.load(Relaxed), 6);
        assert!(!s.kept_out_by_health(false));
    }

    #[test]
    fn mandatory_waits_for_first_pass() {
        let s = PeerState::default();
        s.health.store(Health::Checking as u8, Relaxed);
        assert!(s.kept_out_by_health(true));
        // A failure while checking makes it unhealthy without a "down" transition.
        assert_eq!(apply(&s, 1, 3, &result(false), Millis(1)), None);
        assert_eq!(s.health(), Health::Unhealthy);
        let s = PeerState::default();
        s.health.store(Health::Checking as u8, Relaxed);
        assert_eq!(
            apply(&s, 1, 3, &result(true), Millis(1)),
            Some(Transition::Up)
        );
        assert!(!s.kept_out_by_health(false));
    }

    /// The task loop on tokio's paused clock: a peer failing from the 3rd check on
    /// leaves after `fails` = 2 failures (t = 15 s with a 5 s interval) and, once it
    /// passes again (from the 6th check), returns after `passes` = 2 (t = 30 s).
    #[tokio::test(start_paused = true)]
    async fn task_thresholds_on_paused_time() {
        let state = Arc::new(PeerState::default());
        let group: Arc<[Arc<PeerState>]> =
            vec![state.clone(), Arc::new(PeerState::default())].into();
        let flag = Arc::new(AtomicBool::new(false));
        let t = Target {
            upstream: "u".into(),
            addr: Endpoint::Inet(([127, 0, 0, 1], 1).into()),
            state: state.clone(),
            conf: Arc::new(conf(2, 2)),
            group,
            all_unhealthy: flag.clone(),
        };
        // Check n (0-based) fails for n in 2..5.
        let n = Arc::new(Mutex::new(0u32));
        let task = tokio::spawn(run_target(t, move |_, _| {
            let n = n.clone();
            async move {
                let mut g = n.lock().unwrap_or_else(|e| e.into_inner());
                let ok = !(2..5).contains(&*g);
                *g += 1;
                result(ok)
            }
        }));
        let step = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
        // t=0: check 0 ok; t=5: 1 ok; t=10: 2 fails; t=15: 3 fails -> unhealthy.
        step(12).await;
        assert_eq!(state.health(), Health::Healthy);
        step(5).await; // t=17
        assert_eq!(state.health(), Health::Unhealthy);
        assert!(!flag.load(Relaxed), "the other peer is still fine");
        // t=20: 4 fails; t=25: 5 ok; t=30: 6 ok -> healthy.
        step(10).await; // t=27
        assert_eq!(state.health(), Health::Unhealthy);
        assert_eq!(state.hc_passes.load(Relaxed), 1);
        step(5).await; // t=32
        assert_eq!(state.health(), Health::Healthy);
        task.abort();
    }

    #[test]
    fn match_conditions() {
        use regex::Regex;
        let m = MatchConf {
            name: "ok".into(),
            conditions: vec![
                MatchCond::Status {
                    negate: false,
                    ranges: vec![(200, 399)],
                },
                MatchCond::Status {
                    negate: true,
                    ranges: vec![(302, 302)],
                },
                MatchCond::Header {
                    name: "content-type".into(),
                    test: HeaderTest::Matches(Regex::new("text/html").unwrap()),
                    negate: false,
                },
                MatchCond::Body {
                    negate: false,
                    regex: Regex::new("ok").unwrap(),
                },
            ],
        };
        let h = vec![(
            "Content-Type".to_owned(),
            b"text/html; charset=utf-8".to_vec(),
        )];
        assert!(judge(Some(&m), 200, &h, b"all ok").is_ok());
        assert!(judge(Some(&m), 302, &h, b"all ok").is_err());
        assert!(judge(Some(&m), 200, &[], b"all ok").is_err());
        assert!(judge(Some(&m), 200, &h, b"nope").is_err());
        assert!(judge(None, 204, &[], b"").is_ok());
        assert!(judge(None, 500, &[], b"").is_err());
    }
}
