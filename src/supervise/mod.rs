//! `ferrolb up`: starts the app's worker processes, balances them, restarts them
//! when they exit, and redeploys them one at a time without dropping a request.
//!
//! * [`spawn`]: starting a worker through the shim, in its own process group; stopping.
//! * [`shim`]: `ferrolb __worker-shim`, the parent-death shim (no orphans, ever).
//! * [`backoff`]: capped exponential backoff between restarts.
//! * [`worker`]: one worker's lifecycle and the readiness gate (admin state).
//! * [`readiness`]: the probe (TCP connect, or the upstream's `health_check`).
//! * [`rolling`]: the rolling restart.
//! * [`control`]: `POST /workers/restart` and `ferrolb -s restart`.
//! * [`output`]: the multiplexed terminal output.
//! * [`watch`]: the `--watch` option.
//! * [`conf`]: the balancer's configuration.
//!
//! Threads: the balancer runs as under `ferrolb -c` (the main thread handles its
//! signals); the supervisor runs on a thread of its own with a current-thread tokio
//! runtime, started once the balancer's listeners are bound. That thread forks every
//! shim and lives until ferrolb exits, which is what the shims' parent-death signal
//! needs. It handles SIGINT and SIGTERM: the first stops gracefully (the balancer stops
//! accepting and finishes requests in flight, bounded by `--grace`; then the workers
//! get SIGTERM and, after `--grace`, SIGKILL), a second one kills everything at once.

pub mod backoff;
pub mod conf;
pub mod control;
pub mod output;
pub mod readiness;
pub mod rolling;
pub mod shim;
pub mod spawn;
pub mod watch;
pub mod worker;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch as tokio_watch};

use crate::config::{self, LoadOptions};
use crate::process::{self, RunHooks, RunOptions};
use crate::server::{ServerError, Shared, StopMode};
use control::{Control, RestartRequest};
use output::Console;
use readiness::Check;
use worker::{Slot, SlotCommand, SlotEnv, SlotInfo, WorkerState};

/// Options of `ferrolb up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpOptions {
    /// `-w N`: how many workers. Default 4.
    pub workers: u16,
    /// `--port N`: the first worker port; the workers get the first N free ports from
    /// here. Default 8000.
    pub first_port: u16,
    /// `--listen ADDR`: the balancer's address (generated configuration only).
    /// Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// `-c FILE`: use this nginx configuration; the workers replace the servers of its
    /// upstream. Default none (a generated configuration).
    pub conf: Option<PathBuf>,
    /// `--upstream NAME`: with `-c`, the upstream the workers fill. Default: the only
    /// declared one.
    pub upstream: Option<String>,
    /// `--admin ADDR`: the admin listener and dashboard. Default none.
    pub admin: Option<SocketAddr>,
    /// `--watch PATH...`: rolling restart when files under these change. Default none.
    pub watch: Vec<PathBuf>,
    /// `--health URI`: workers are ready when `GET URI` answers 2xx/3xx (also checked
    /// every 2 s while running). Default: ready when the port accepts connections.
    pub health_uri: Option<String>,
    /// `--grace SECS`: how long requests in flight may take to finish and workers to
    /// exit after SIGTERM, before SIGKILL. Default 10 s.
    pub grace: Duration,
    /// The worker command after `--`; `{port}` is substituted. Required.
    pub command: Vec<OsString>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            workers: 4,
            first_port: 8000,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            conf: None,
            upstream: None,
            admin: None,
            watch: Vec::new(),
            health_uri: None,
            grace: Duration::from_secs(10),
            command: Vec::new(),
        }
    }
}

/// Time a worker has to become ready before it is restarted: 60 s (Django's first
/// start can compile a lot of bytecode).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why `ferrolb up` could not run.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Bad options.
    #[error("up: {0} (see \"ferrolb up --help\")")]
    Options(String),
    /// No free ports for the workers.
    #[error("up: {0}")]
    Ports(String),
    /// The configuration did not load.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The balancer failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The supervisor thread could not start.
    #[error("up: cannot start the supervisor: {0}")]
    Start(#[source] std::io::Error),
    /// The worker command does not say where to listen.
    #[error("up: the worker command has no {{port}}: each worker must listen on the port ferrolb gives it. Put {{port}} where the port goes, e.g.\n    ferrolb up -- python manage.py runserver {{port}}\n    ferrolb up -- gunicorn -b 127.0.0.1:{{port}} mysite.wsgi\nor use $PORT in a shell command: ferrolb up -- sh -c 'exec myapp --port $PORT'\n(a program that reads $PORT by itself: ferrolb up -- env PORT={{port}} myapp)")]
    NoPort,
    /// Every worker reached its start limit.
    #[error("up: every worker gave up ({0}); run the command by hand to see why: {1}")]
    AllGaveUp(String, String),
}

/// Whether an argument uses the `PORT` environment variable (`$PORT`, `${PORT}`): the
/// command is then run by a shell that substitutes it.
fn mentions_port_env(arg: &str) -> bool {
    arg.contains("${PORT}")
        || arg.match_indices("$PORT").any(|(i, m)| {
            !arg[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The first `n` ports from `first` on that can be bound on 127.0.0.1, skipping
/// `avoid` (the balancer's own port).
pub fn pick_ports(first: u16, n: u16, avoid: &[u16]) -> Result<Vec<u16>, UpError> {
    let mut out = Vec::with_capacity(usize::from(n));
    let mut p = u32::from(first);
    while out.len() < usize::from(n) {
        let Ok(port) = u16::try_from(p) else {
            return Err(UpError::Ports(format!(
                "no {n} free ports from {first} up to 65535 for the workers"
            )));
        };
        p += 1;
        if port == 0 || avoid.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    Ok(out)
}

/// Everything the supervisor thread needs.
struct Ctx {
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    env: SlotEnv,
    settled_rx: mpsc::UnboundedReceiver<usize>,
    gave_up_rx: mpsc::UnboundedReceiver<usize>,
    restart_tx: mpsc::UnboundedSender<RestartRequest>,
    restart_rx: mpsc::UnboundedReceiver<RestartRequest>,
    restarting: Arc<AtomicBool>,
    progress: rolling::Progress,
    /// Set when every worker gave up: ferrolb stops and `run` fails with it.
    all_gave_up: Arc<Mutex<Option<UpError>>>,
    shutdown: tokio_watch::Sender<bool>,
    balancer_done: tokio_watch::Receiver<bool>,
    socket: PathBuf,
    watch: Vec<PathBuf>,
    admin: Option<SocketAddr>,
    grace: Duration,
}

/// Runs `ferrolb up` until stopped.
pub fn run(opts: UpOptions) -> Result<(), UpError> {
    if opts.command.is_empty() {
        return Err(UpError::Options(
            "no worker command: put it after \"--\", e.g. ferrolb up -w 4 -- python manage.py runserver {port}".into(),
        ));
    }
    if opts.workers == 0 {
        return Err(UpError::Options("-w must be at least 1".into()));
    }
    if !opts.command.iter().any(|a| {
        let a = a.to_string_lossy();
        a.contains("{port}") || mentions_port_env(&a)
    }) {
        // A worker that listens elsewhere never becomes ready: say so now, not after
        // a minute of "starting".
        return Err(UpError::NoPort);
    }
    let prefix = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let exe = std::env::current_exe()
        .map_err(|e| UpError::Options(format!("cannot find the ferrolb executable: {e}")))?;
    let mut load = LoadOptions {
        prefix: prefix.clone(),
        globals: None,
        text: None,
        is_root: false,
        ..Default::default()
    };
    let avoid = [opts.listen.port()];
    let ports = pick_ports(opts.first_port, opts.workers, &avoid)?;

    // Where the pid file and the control socket go: where `ferrolb -s` looks.
    let (conf_path, overlay, upstream, config) = match &opts.conf {
        None => {
            let pid = prefix.join("logs/nginx.pid");
            let text = conf::generate(&ports, opts.listen, opts.health_uri.as_deref(), &pid);
            load.text = Some(text);
            let path = prefix.join("<ferrolb up>");
            let config = config::load(&path, &load)?;
            (path, None, conf::UPSTREAM.to_owned(), config)
        }
        Some(c) => {
            let path = prefix.join(c);
            let config = config::load(&path, &load)?;
            let i =
                conf::pick_upstream(&config, opts.upstream.as_deref()).map_err(UpError::Options)?;
            let name = config.http.upstreams[i].name.clone();
            let overlay = conf::fill(&config, &name, &ports);
            (path, Some(overlay), name, config)
        }
    };
    let up_index = config
        .http
        .upstreams
        .iter()
        .position(|u| u.name == upstream)
        .unwrap_or(0);
    let check = config
        .http
        .health_checks
        .iter()
        .find(|h| h.upstream == up_index)
        .map_or(Check::Connect, |h| Check::Http(Arc::new(h.clone())));
    let socket = control::socket_path(&config.pid);

    let console = Arc::new(Console::new(&ports));
    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
    let (done_tx, done_rx) = tokio_watch::channel(false);
    let handle: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let start_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let all_gave_up: Arc<Mutex<Option<UpError>>> = Arc::default();

    let hook = {
        let (handle, start_error, console) = (handle.clone(), start_error.clone(), console.clone());
        let all_gave_up = all_gave_up.clone();
        let spawn_conf = spawn::SpawnConf {
            exe,
            command: opts.command.clone(),
            grace: opts.grace,
        };
        let (watch_paths, admin, grace) = (opts.watch.clone(), opts.admin, opts.grace);
        move |shared: &Arc<Shared>| {
            let slots: Vec<Slot> = ports
                .iter()
                .enumerate()
                .map(|(index, &port)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let peer = shared.registry.get_or_create(&upstream, &addr.into());
                    // Out of rotation before the first request can be accepted;
                    // "starting": such a request gets 503 with Retry-After.
                    peer.admin.store(
                        crate::upstream::AdminState::Starting as u8,
                        Ordering::Relaxed,
                    );
                    Slot {
                        index,
                        addr,
                        peer,
                        info: Arc::new(Mutex::new(SlotInfo::new(port))),
                    }
                })
                .collect();
            let (restart_tx, restart_rx) = mpsc::unbounded_channel();
            let (settled_tx, settled_rx) = mpsc::unbounded_channel();
            let (gave_up_tx, gave_up_rx) = mpsc::unbounded_channel();
            let restarting = Arc::new(AtomicBool::new(false));
            let progress = rolling::Progress::default();
            let control: Arc<dyn crate::admin::WorkerControl> = Arc::new(Control {
                tx: restart_tx.clone(),
                upstream: upstream.clone(),
                slots: slots.iter().map(|s| s.info.clone()).collect(),
                restarting: restarting.clone(),
                progress: progress.clone(),
            });
            let _ = shared.workers.set(control);
            let ctx = Ctx {
                shared: shared.clone(),
                slots,
                env: SlotEnv {
                    spawn: spawn_conf,
                    check,
                    ready_timeout: READY_TIMEOUT,
                    start_limit: backoff::StartLimit::default(),
                    console,
                    settled: settled_tx,
                    gave_up: gave_up_tx,
                },
                settled_rx,
                gave_up_rx,
                restart_tx,
                restart_rx,
                restarting,
                progress,
                all_gave_up: all_gave_up.clone(),
                shutdown: shutdown_tx,
                balancer_done: done_rx,
                socket,
                watch: watch_paths,
                admin,
                grace,
            };
            let t = std::thread::Builder::new()
                .name("ferrolb-supervisor".into())
                .spawn(move || supervisor_thread(ctx));
            match t {
                Ok(t) => {
                    *handle
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(t)
                }
                Err(e) => {
                    *start_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e)
                }
            }
        }
    };

    let result = process::run_with_hooks(
        RunOptions {
            conf_path,
            load,
            error_log_override: None,
            admin: opts.admin,
        },
        shutdown_rx,
        RunHooks {
            overlay,
            on_shared: Some(Box::new(hook)),
            embedder_handles_int_term: true,
        },
    );
    // The balancer is gone (stopped, or failed after the workers started): the
    // supervisor stops the workers now.
    let _ = done_tx.send(true);
    let t = handle
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(t) = t {
        let _ = t.join();
    }
    if let Some(e) = start_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(UpError::Start(e));
    }
    result?;
    let gave_up = all_gave_up
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    gave_up.map_or(Ok(()), Err)
}

fn supervisor_thread(ctx: Ctx) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ctx.env
                .console
                .say(&format!("cannot start the supervisor: {e}"));
            let _ = ctx.shutdown.send(true);
            return;
        }
    };
    rt.block_on(supervise(ctx));
}

async fn supervise(mut ctx: Ctx) {
    use tokio::signal::unix::{signal, SignalKind};
    let c = ctx.env.console.clone();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        c.say("cannot handle SIGINT/SIGTERM: stopping");
        let _ = ctx.shutdown.send(true);
        return;
    };
    let env = Arc::new(std::mem::replace(
        &mut ctx.env,
        SlotEnv {
            spawn: spawn::SpawnConf {
                exe: PathBuf::new(),
                command: Vec::new(),
                grace: Duration::ZERO,
            },
            check: Check::Connect,
            ready_timeout: Duration::ZERO,
            start_limit: backoff::StartLimit::default(),
            console: c.clone(),
            settled: mpsc::unbounded_channel().0,
            gave_up: mpsc::unbounded_channel().0,
        },
    ));
    c.say(&format!(
        "starting {} workers: {}",
        ctx.slots.len(),
        env.spawn
            .command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let mut txs: Vec<(u16, mpsc::UnboundedSender<SlotCommand>)> = Vec::new();
    for slot in &ctx.slots {
        let (tx, rx) = mpsc::unbounded_channel();
        txs.push((slot.addr.port(), tx));
        tokio::spawn(worker::run(slot.clone(), env.clone(), rx));
    }
    let socket_ok = match control::bind(&ctx.socket) {
        Ok(l) => {
            tokio::spawn(control::serve(l, ctx.restart_tx.clone()));
            true
        }
        Err(e) => {
            c.say(&format!(
                "control socket \"{}\" unavailable ({e}): \"ferrolb -s restart\" will not reach this instance",
                ctx.socket.display()
            ));
            false
        }
    };
    if !ctx.watch.is_empty() {
        let tx = ctx.restart_tx.clone();
        c.say(&format!(
            "watching {} for changes",
            ctx.watch
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        tokio::spawn(watch::run(ctx.watch.clone(), move |p| {
            let _ = tx.send(RestartRequest {
                why: format!("{} changed", p.display()),
                reply: None,
            });
        }));
    }

    let mut stop = ctx.shared.stop_signal();
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<()>();
    let mut settled = 0;
    let mut queued_watch = false;
    loop {
        tokio::select! {
            Some(_) = ctx.settled_rx.recv() => {
                settled += 1;
                if settled == ctx.slots.len() {
                    summary(&ctx, &c, socket_ok);
                }
            }
            Some(index) = ctx.gave_up_rx.recv() => {
                if let Some(e) = every_worker_gave_up(&ctx, &env, index) {
                    c.say(&format!("{e}; stopping"));
                    *ctx.all_gave_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    break;
                }
                let serving = count_state(&ctx, |s| *s == WorkerState::Healthy);
                c.say(&format!("{serving} of {} workers in rotation", ctx.slots.len()));
            }
            Some(req) = ctx.restart_rx.recv() => {
                if ctx.restarting.load(Ordering::Relaxed) {
                    match req.reply {
                        Some(r) => { let _ = r.send(Err("a rolling restart is already running".into())); }
                        // A file changed during a restart: the workers restarted first
                        // may have the old code, so restart once more afterwards.
                        None => queued_watch = true,
                    }
                    continue;
                }
                start_rolling(&ctx, &txs, &c, req, finished_tx.clone());
            }
            Some(()) = finished_rx.recv() => {
                ctx.restarting.store(false, Ordering::Relaxed);
                if std::mem::take(&mut queued_watch) {
                    let req = RestartRequest { why: "files changed during the last restart".into(), reply: None };
                    start_rolling(&ctx, &txs, &c, req, finished_tx.clone());
                }
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() != StopMode::Running {
                    break;
                }
            }
            r = ctx.balancer_done.changed() => {
                if r.is_err() || *ctx.balancer_done.borrow() {
                    break;
                }
            }
        }
    }

    // Stopping: balancer first (no new connections, requests in flight finish), then
    // the workers. A second Ctrl-C/SIGTERM kills everything at once.
    c.say("stopping: no new connections; requests in flight may finish (Ctrl-C again to stop at once)");
    let _ = ctx.shutdown.send(true);
    let mut done = ctx.balancer_done.clone();
    tokio::select! {
        _ = done.wait_for(|d| *d) => {}
        _ = tokio::time::sleep(ctx.grace) => {
            c.say(&format!("requests still in flight after {}s: stopping the workers anyway", ctx.grace.as_secs()));
        }
        _ = int.recv() => kill_all_now(&ctx, &c),
        _ = term.recv() => kill_all_now(&ctx, &c),
    }
    c.say("stopping the workers (SIGTERM to each process group)");
    let mut waits = Vec::new();
    for (_, tx) in &txs {
        let (d, w) = oneshot::channel();
        if tx.send(SlotCommand::Stop(d)).is_ok() {
            waits.push(w);
        }
    }
    let all = async {
        for w in waits {
            let _ = w.await;
        }
    };
    tokio::select! {
        _ = all => {}
        _ = int.recv() => kill_all_now(&ctx, &c),
        _ = term.recv() => kill_all_now(&ctx, &c),
    }
    if socket_ok {
        let _ = std::fs::remove_file(&ctx.socket);
    }
    c.say("all workers stopped");
    // Bounded: a client that keeps a request open cannot keep ferrolb running.
    if tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d))
        .await
        .is_err()
    {
        c.say("exiting with client connections still open");
        crate::log::flush();
        std::process::exit(0);
    }
}

fn start_rolling(
    ctx: &Ctx,
    txs: &[(u16, mpsc::UnboundedSender<SlotCommand>)],
    c: &Arc<Console>,
    req: RestartRequest,
    finished: mpsc::UnboundedSender<()>,
) {
    ctx.restarting.store(true, Ordering::Relaxed);
    let (txs, c, progress) = (txs.to_vec(), c.clone(), ctx.progress.clone());
    tokio::spawn(async move {
        let r = rolling::restart_all(&txs, c, &req.why, &progress).await;
        if let Some(reply) = req.reply {
            let _ = reply.send(r.map(|n| format!("{n} workers restarted")));
        }
        let _ = finished.send(());
    });
}

/// Second Ctrl-C: SIGKILL to every shim and worker group, and exit.
fn kill_all_now(ctx: &Ctx, c: &Console) -> ! {
    c.say("stopping at once (SIGKILL)");
    for s in &ctx.slots {
        let i = s
            .info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spawn::kill_now(i.shim_pid.unwrap_or(0), i.pid);
    }
    let _ = std::fs::remove_file(&ctx.socket);
    crate::log::flush();
    std::process::exit(130);
}

/// How many slots are in a state `f` accepts.
fn count_state(ctx: &Ctx, f: impl Fn(&WorkerState) -> bool) -> usize {
    ctx.slots
        .iter()
        .filter(|s| {
            f(&s.info
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .state)
        })
        .count()
}

/// After slot `index` gave up: the error `ferrolb up` exits with when no worker is
/// left (every one gave up), else `None`.
fn every_worker_gave_up(ctx: &Ctx, env: &SlotEnv, index: usize) -> Option<UpError> {
    let gave_up = count_state(ctx, |s| matches!(s, WorkerState::GaveUp(_)));
    if gave_up < ctx.slots.len() {
        return None;
    }
    let slot = ctx.slots.get(index)?;
    let (port, why) = {
        let i = slot
            .info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (i.port, i.state.reason().unwrap_or("unknown").to_owned())
    };
    let command = spawn::substitute(&env.spawn.command, port)
        .iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    Some(UpError::AllGaveUp(
        format!(
            "{} each; last: worker {port}: {why}",
            env.start_limit.describe()
        ),
        format!("PORT={port} {command}"),
    ))
}

/// `arg` as a POSIX shell word: as is when it is safe, else in single quotes (so the
/// command in a message can be pasted into a terminal).
fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,{}".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The one-screen summary printed once every worker is healthy or has failed. Its
/// first line says how many workers serve, never more than do.
fn summary(ctx: &Ctx, c: &Console, socket_ok: bool) {
    let rt = ctx.shared.runtime.load();
    let listen: Vec<String> = rt
        .listen_addrs()
        .iter()
        .map(|a| format!("http://{a}/"))
        .collect();
    let listen = listen.join(", ");
    let rule = "-".repeat(64);
    let total = ctx.slots.len();
    let healthy = count_state(ctx, |s| *s == WorkerState::Healthy);
    let headline = if healthy == total {
        format!("ferrolb up: balancing {listen} over {total} workers")
    } else if healthy > 0 {
        format!(
            "ferrolb up: balancing {listen} over {healthy} of {total} workers ({} failed to start; retrying)",
            total - healthy
        )
    } else {
        format!(
            "ferrolb up: NO worker is serving: all {total} failed to start (retrying); {listen} answers 502, or 503 while one is starting"
        )
    };
    let mut s = format!("{rule}\n{headline}\n");
    if let Some(a) = ctx.admin {
        s.push_str(&format!("dashboard:  http://{a}/\n"));
    }
    s.push_str(&format!("  {:<7} {:<9} {}\n", "PORT", "PID", "STATE"));
    for slot in &ctx.slots {
        let i = slot
            .info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pid = i.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let state = match &i.state {
            WorkerState::Backoff(why) => format!("failed: {why}"),
            WorkerState::GaveUp(why) => format!("gave up: {why}"),
            other => other.word().to_owned(),
        };
        s.push_str(&format!("  {:<7} {:<9} {}\n", i.port, pid, state));
    }
    if socket_ok {
        s.push_str("rolling restart: ferrolb -s restart");
        if ctx.admin.is_some() {
            s.push_str(" (or POST /workers/restart)");
        }
        s.push('\n');
    }
    s.push_str(&format!("stop: Ctrl-C\n{rule}"));
    c.say(&s);
}

/// `ferrolb -s restart` for the pid file at `pid_path` (see [`control`]).
pub fn request_restart(pid_path: &Path) -> Result<String, control::ControlError> {
    control::request_restart(pid_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_env_and_shell_quoting() {
        assert!(mentions_port_env("exec app --port $PORT"));
        assert!(mentions_port_env("-b :${PORT}"));
        assert!(!mentions_port_env("$PORTS"));
        assert!(!mentions_port_env("PORT"));
        assert_eq!(shell_quote("127.0.0.1:{port}"), "127.0.0.1:{port}");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
