//! One worker slot (a port): start, wait until ready, put in rotation, restart with
//! backoff when it exits, and restart on request (the rolling restart's step).
//!
//! Readiness gate: the slot owns its peer's admin state. The peer is `starting` from
//! before the process starts until the slot's own probe passes (out of rotation; the
//! proxy answers 503 with `Retry-After` when no other worker can take a request),
//! `draining` while a restart waits for requests in flight, and `down` as soon as the
//! process exits and while it waits to start again (or gave up). A supervisor-driven gate is used rather than a generated `health_check
//! mandatory`, because only the supervisor knows the exact moment a process (re)starts:
//! a periodic check would keep a restarted worker's old "healthy" verdict for up to an
//! interval and send it requests it cannot answer yet.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::backoff::{Backoff, StartLimit};
use super::output::{pump, Console};
use super::readiness::Check;
use super::spawn::{self, SpawnConf};
use crate::config::Level;
use crate::upstream::{now, AdminState, Health, PeerState};

/// What a worker is doing, as shown on the terminal and by `GET /workers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not ready yet: no traffic.
    Starting,
    /// Ready and in rotation.
    Healthy,
    /// Taking no new requests; waiting for those in flight (rolling restart).
    Draining,
    /// Being stopped.
    Stopping,
    /// Exited; waiting before the next start (the reason).
    Backoff(String),
    /// Failed too often within the start limit: not started again until a restart is
    /// requested (the last reason).
    GaveUp(String),
    /// Stopped for good (ferrolb is stopping).
    Stopped,
}

impl WorkerState {
    /// The word used by `GET /workers` and the summary.
    pub fn word(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Healthy => "healthy",
            WorkerState::Draining => "draining",
            WorkerState::Stopping => "stopping",
            WorkerState::Backoff(_) => "failed",
            WorkerState::GaveUp(_) => "gave-up",
            WorkerState::Stopped => "stopped",
        }
    }

    /// Why it is `failed` or `gave-up`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            WorkerState::Backoff(why) | WorkerState::GaveUp(why) => Some(why),
            _ => None,
        }
    }
}

/// A slot's live view, shared with the control endpoints.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    /// The worker's port.
    pub port: u16,
    /// The worker's pid (the leader of its process group), once the shim reported it.
    pub pid: Option<u32>,
    /// The shim's pid.
    pub shim_pid: Option<u32>,
    /// What it is doing.
    pub state: WorkerState,
    /// Times it was started again (crash or requested restart).
    pub restarts: u32,
    /// When its current process started; `None` while none runs.
    pub started: Option<Instant>,
    /// How and when its last process ended; `None` before the first exit.
    pub last_exit: Option<(String, Instant)>,
}

impl SlotInfo {
    /// A slot on `port` before its first start.
    pub fn new(port: u16) -> SlotInfo {
        SlotInfo {
            port,
            pid: None,
            shim_pid: None,
            state: WorkerState::Starting,
            restarts: 0,
            started: None,
            last_exit: None,
        }
    }

    /// Its process is gone (`how`): no pid (it may be reused), no uptime.
    fn ended(&mut self, how: &str) {
        self.pid = None;
        self.started = None;
        self.last_exit = Some((how.to_owned(), Instant::now()));
    }
}

/// A request to a slot.
#[derive(Debug)]
pub enum SlotCommand {
    /// Drain, stop, start, wait until ready; the reply says whether it came back.
    Restart(oneshot::Sender<Result<(), String>>),
    /// Stop for good; replied to when the process is gone.
    Stop(oneshot::Sender<()>),
}

/// What every slot shares.
#[derive(Debug)]
pub struct SlotEnv {
    /// How to start workers.
    pub spawn: SpawnConf,
    /// The readiness test.
    pub check: Check,
    /// Time a worker has to become ready before it is restarted: 60 s.
    pub ready_timeout: Duration,
    /// Each slot's start limit (a copy per slot): 5 failures within 60 s.
    pub start_limit: StartLimit,
    /// Terminal output.
    pub console: Arc<Console>,
    /// Told the slot index once, when a slot first became healthy or failed (for the
    /// start-up summary).
    pub settled: mpsc::UnboundedSender<usize>,
    /// Told the slot index when a slot gives up (start limit reached).
    pub gave_up: mpsc::UnboundedSender<usize>,
}

/// One slot: index, port, peer state and shared view.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Position (for the colour).
    pub index: usize,
    /// The worker's address (127.0.0.1:port).
    pub addr: SocketAddr,
    /// The peer's live state in the balancer.
    pub peer: Arc<PeerState>,
    /// The shared view.
    pub info: Arc<Mutex<SlotInfo>>,
}

impl Slot {
    fn set(&self, f: impl FnOnce(&mut SlotInfo)) {
        f(&mut self
            .info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn admin(&self, s: AdminState) {
        self.peer.admin.store(s as u8, Relaxed);
    }

    /// Back in rotation after a passed probe: a fresh process, so the failures the old
    /// one caused (passive `max_fails`, an active check's "unhealthy") no longer apply.
    fn put_in_rotation(&self) {
        let p = &self.peer;
        p.fails.store(0, Relaxed);
        p.hc_fails.store(0, Relaxed);
        if matches!(p.health(), Health::Unhealthy | Health::Checking) {
            p.health.store(Health::Healthy as u8, Relaxed);
        }
        p.recovered_at.store(now().0, Relaxed);
        self.admin(AdminState::Up);
    }
}

enum Started {
    Ready(Result<Duration, String>),
    Exited(String),
    Command(Option<SlotCommand>),
}

/// A slot's failure accounting: the delay before the next start, and the start limit.
struct Failures {
    backoff: Backoff,
    limit: StartLimit,
}

impl Failures {
    /// Records a failure after the process ran for `ran`: `Some(delay)` before the next
    /// start, or `None` when the start limit is reached.
    fn record(&mut self, ran: Duration) -> Option<Duration> {
        let delay = self.backoff.next_delay(ran);
        (!self.limit.record(Instant::now())).then_some(delay)
    }

    /// The operator asked for a restart: a fresh start, with a fresh limit.
    fn reset(&mut self) {
        self.backoff.reset();
        self.limit.reset();
    }
}

/// Runs a slot until told to stop. Must run on the supervisor thread (see
/// [`spawn::start`]).
pub async fn run(slot: Slot, env: Arc<SlotEnv>, mut rx: mpsc::UnboundedReceiver<SlotCommand>) {
    let port = slot.port();
    let c = env.console.clone();
    let mut failures = Failures {
        backoff: Backoff::default(),
        limit: env.start_limit.clone(),
    };
    let mut pending: Option<oneshot::Sender<Result<(), String>>> = None;
    let mut settled = false;
    let mut settle = |env: &SlotEnv| {
        if !std::mem::replace(&mut settled, true) {
            let _ = env.settled.send(slot.index);
        }
    };
    loop {
        // Out of rotation, but "starting": a request that finds no other worker gets
        // 503 with Retry-After rather than 502 (see `AdminState::Starting`).
        slot.admin(AdminState::Starting);
        slot.set(|i| {
            i.state = WorkerState::Starting;
            i.pid = None;
        });
        let started_at = Instant::now();
        let mut sp = match spawn::start(&env.spawn, port) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot start ferrolb's worker shim: {e}");
                slot.admin(AdminState::Down);
                fail(&mut pending, &why);
                slot.set(|i| {
                    i.state = WorkerState::Backoff(why.clone());
                    i.ended(&why);
                });
                settle(&env);
                let next = match failures.record(Duration::ZERO) {
                    Some(delay) => {
                        c.say(&format!(
                            "worker {port}: {why}; next try in {}",
                            secs(delay)
                        ));
                        idle(delay, &mut rx).await
                    }
                    None => give_up(&slot, &env, &failures.limit, &why, &mut rx).await,
                };
                match next {
                    Idle::Go(p) => again(&mut pending, p, &mut failures),
                    Idle::Stop(done) => return stopped(&slot, done),
                }
                continue;
            }
        };
        slot.set(|i| {
            i.shim_pid = Some(sp.shim_pid);
            i.started = Some(Instant::now());
        });
        for out in [
            sp.stdout.take().map(either_a),
            sp.stderr.take().map(either_b),
        ]
        .into_iter()
        .flatten()
        {
            let (console, info, index) = (c.clone(), slot.info.clone(), slot.index);
            tokio::spawn(async move {
                let set_pid = move |pid| {
                    info.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pid = Some(pid)
                };
                match out {
                    Out::A(r) => pump(r, console, index, port, set_pid).await,
                    Out::B(r) => pump(r, console, index, port, set_pid).await,
                }
            });
        }
        c.say(&format!(
            "worker {port}: starting, waiting for {}",
            env.check.describe()
        ));

        let outcome = tokio::select! {
            r = env.check.wait(slot.addr, env.ready_timeout) => Started::Ready(r),
            s = sp.child.wait() => Started::Exited(describe_exit(s)),
            cmd = rx.recv() => Started::Command(cmd),
        };
        let worker_pid = || slot.info.lock().map(|i| i.pid).unwrap_or(None);
        match outcome {
            Started::Ready(Ok(took)) => {
                slot.put_in_rotation();
                slot.set(|i| i.state = WorkerState::Healthy);
                let pid = worker_pid().map_or_else(|| "?".to_owned(), |p| p.to_string());
                c.say(&format!(
                    "worker {port}: healthy after {:.1}s (pid {pid}), in rotation",
                    took.as_secs_f64()
                ));
                settle(&env);
                if let Some(p) = pending.take() {
                    let _ = p.send(Ok(()));
                }
            }
            Started::Ready(Err(why)) | Started::Exited(why) => {
                slot.admin(AdminState::Down);
                let verdict = failures.record(started_at.elapsed());
                spawn::terminate(&mut sp.child, sp.shim_pid, worker_pid(), env.spawn.grace).await;
                fail(
                    &mut pending,
                    &format!("worker {port} failed to start: {why}"),
                );
                slot.set(|i| {
                    i.state = WorkerState::Backoff(why.clone());
                    i.restarts += 1;
                    // Gone: the summary must not show a pid that may be reused.
                    i.ended(&why);
                });
                settle(&env);
                let next = match verdict {
                    Some(delay) => {
                        let n = failures.backoff.failures();
                        c.say(&format!(
                            "worker {port}: FAILED to start: {why}{}; next try in {}",
                            if n > 1 {
                                format!(" ({n} times in a row)")
                            } else {
                                String::new()
                            },
                            secs(delay)
                        ));
                        idle(delay, &mut rx).await
                    }
                    None => give_up(&slot, &env, &failures.limit, &why, &mut rx).await,
                };
                match next {
                    Idle::Go(p) => again(&mut pending, p, &mut failures),
                    Idle::Stop(done) => return stopped(&slot, done),
                }
                continue;
            }
            Started::Command(cmd) => {
                spawn::terminate(&mut sp.child, sp.shim_pid, worker_pid(), env.spawn.grace).await;
                slot.set(|i| i.ended(STOPPED_FOR_RESTART));
                match cmd {
                    Some(SlotCommand::Restart(p)) => {
                        replace(&mut pending, Some(p));
                        failures.reset();
                        slot.set(|i| i.restarts += 1);
                        continue;
                    }
                    Some(SlotCommand::Stop(done)) => return stopped(&slot, Some(done)),
                    None => return stopped(&slot, None),
                }
            }
        }

        // Serving.
        tokio::select! {
            s = sp.child.wait() => {
                // Out of rotation first: requests must not wait for the log line.
                slot.admin(AdminState::Down);
                let why = describe_exit(s);
                slot.set(|i| {
                    i.state = WorkerState::Backoff(why.clone());
                    i.restarts += 1;
                    i.ended(&why);
                });
                let next = match failures.record(started_at.elapsed()) {
                    Some(delay) => {
                        c.say(&format!("worker {port}: exited ({why}); out of rotation, restarting in {}", secs(delay)));
                        idle(delay, &mut rx).await
                    }
                    None => give_up(&slot, &env, &failures.limit, &why, &mut rx).await,
                };
                match next {
                    Idle::Go(p) => again(&mut pending, p, &mut failures),
                    Idle::Stop(done) => return stopped(&slot, done),
                }
            }
            cmd = rx.recv() => match cmd {
                Some(SlotCommand::Restart(p)) => {
                    drain(&slot, &c, env.spawn.grace).await;
                    slot.set(|i| i.state = WorkerState::Stopping);
                    spawn::terminate(&mut sp.child, sp.shim_pid, worker_pid(), env.spawn.grace).await;
                    c.say(&format!("worker {port}: stopped, starting it again"));
                    failures.reset();
                    replace(&mut pending, Some(p));
                    slot.set(|i| {
                        i.restarts += 1;
                        i.ended(STOPPED_FOR_RESTART);
                    });
                }
                Some(SlotCommand::Stop(done)) => {
                    slot.admin(AdminState::Down);
                    slot.set(|i| i.state = WorkerState::Stopping);
                    spawn::terminate(&mut sp.child, sp.shim_pid, worker_pid(), env.spawn.grace).await;
                    return stopped(&slot, Some(done));
                }
                None => {
                    spawn::terminate(&mut sp.child, sp.shim_pid, worker_pid(), env.spawn.grace).await;
                    return stopped(&slot, None);
                }
            }
        }
    }
}

/// `last_exit` of a worker stopped by a requested restart.
const STOPPED_FOR_RESTART: &str = "stopped for a restart";

/// The start limit is reached: out of rotation for good, said on the terminal, on
/// stderr and in the error log; the supervisor is told (it exits when every worker
/// gave up). Then only a restart request (which tries again) or stop ends the wait.
async fn give_up(
    slot: &Slot,
    env: &SlotEnv,
    limit: &StartLimit,
    why: &str,
    rx: &mut mpsc::UnboundedReceiver<SlotCommand>,
) -> Idle {
    let port = slot.port();
    slot.admin(AdminState::Down);
    slot.set(|i| i.state = WorkerState::GaveUp(why.to_owned()));
    let msg = format!(
        "worker {port}: GAVE UP after {} (last: {why}); not restarted until \"ferrolb -s restart\" or POST /workers/restart",
        limit.describe()
    );
    env.console.say(&msg);
    if !crate::log::reaches_stderr(Level::Error) {
        eprintln!("ferrolb: [error] {msg}");
    }
    crate::log::emit(Level::Error, None, format_args!("{msg}"));
    let _ = env.gave_up.send(slot.index);
    match rx.recv().await {
        Some(SlotCommand::Restart(p)) => {
            env.console
                .say(&format!("worker {port}: restart requested, trying again"));
            Idle::Go(Some(p))
        }
        Some(SlotCommand::Stop(done)) => Idle::Stop(Some(done)),
        None => Idle::Stop(None),
    }
}

/// Starting again after a failure: a restart request that came meanwhile resets the
/// failure accounting (the operator may have fixed the cause) and is answered when
/// the worker is ready.
fn again(
    pending: &mut Option<oneshot::Sender<Result<(), String>>>,
    new: Option<oneshot::Sender<Result<(), String>>>,
    failures: &mut Failures,
) {
    if new.is_some() {
        failures.reset();
    }
    replace(pending, new);
}

/// Drains the peer: no new requests, then waits (bounded by `limit`) for those in
/// flight to finish, then `down`.
async fn drain(slot: &Slot, c: &Console, limit: Duration) {
    slot.admin(AdminState::Draining);
    slot.set(|i| i.state = WorkerState::Draining);
    // A request may have passed the availability test just before the state changed
    // and not yet counted itself in flight; this pause lets it do so.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = Instant::now() + limit;
    while slot.peer.in_flight.load(Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = slot.peer.in_flight.load(Relaxed);
    if left > 0 {
        c.say(&format!(
            "worker {}: {left} request(s) still in flight after {}; stopping anyway",
            slot.port(),
            secs(limit)
        ));
    }
    slot.admin(AdminState::Down);
}

enum Out {
    A(tokio::process::ChildStdout),
    B(tokio::process::ChildStderr),
}
fn either_a(r: tokio::process::ChildStdout) -> Out {
    Out::A(r)
}
fn either_b(r: tokio::process::ChildStderr) -> Out {
    Out::B(r)
}

enum Idle {
    /// Time to start again; with a restart request that came meanwhile, if any.
    Go(Option<oneshot::Sender<Result<(), String>>>),
    /// Stop for good.
    Stop(Option<oneshot::Sender<()>>),
}

/// Waits out a backoff delay; a restart request ends it early (the operator wants the
/// worker now), a stop request ends the slot.
async fn idle(delay: Duration, rx: &mut mpsc::UnboundedReceiver<SlotCommand>) -> Idle {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Idle::Go(None),
        cmd = rx.recv() => match cmd {
            Some(SlotCommand::Restart(p)) => Idle::Go(Some(p)),
            Some(SlotCommand::Stop(done)) => Idle::Stop(Some(done)),
            None => Idle::Stop(None),
        }
    }
}

fn replace(
    pending: &mut Option<oneshot::Sender<Result<(), String>>>,
    new: Option<oneshot::Sender<Result<(), String>>>,
) {
    if let Some(n) = new {
        if let Some(old) = pending.replace(n) {
            let _ = old.send(Err("superseded by another restart".into()));
        }
    }
}

fn fail(pending: &mut Option<oneshot::Sender<Result<(), String>>>, why: &str) {
    if let Some(p) = pending.take() {
        let _ = p.send(Err(why.to_owned()));
    }
}

fn stopped(slot: &Slot, done: Option<oneshot::Sender<()>>) {
    slot.admin(AdminState::Down);
    slot.set(|i| i.state = WorkerState::Stopped);
    if let Some(d) = done {
        let _ = d.send(());
    }
}

/// `exit status 1`, `killed by signal 9`.
fn describe_exit(s: std::io::Result<std::process::ExitStatus>) -> String {
    match s {
        // The shim reports a worker killed by signal N as 128 + N.
        Ok(s) => match s.code() {
            Some(0) => "exit status 0".to_owned(),
            Some(code) if code > 128 && code < 128 + 65 => {
                format!("killed by signal {}", code - 128)
            }
            Some(127) => "exit status 127: command not found or not executable".to_owned(),
            Some(code) => format!("exit status {code}"),
            None => "its shim was killed".to_owned(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
