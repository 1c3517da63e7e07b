//! The running server: configuration swapped atomically, one current-thread tokio
//! runtime per worker thread with its own `SO_REUSEPORT` listeners and its own upstream
//! connection pools, and the main thread handling signals (reload, stop).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{self, Config, Level, LoadOptions, LocSettings, LogTarget};
use crate::log::{AccessLog, AccessLogs};
use crate::upstream::{PeerRegistry, Upstream};

/// How long a graceful stop (SIGQUIT) waits for requests in progress.
pub const GRACEFUL_STOP_LIMIT: Duration = Duration::from_secs(30);

/// What `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file (already resolved against the prefix).
    pub conf_path: PathBuf,
    /// How to load it (prefix, `-g` directives, embedded text).
    pub load: LoadOptions,
    /// `-e`: overrides the configured error log.
    pub error_log_override: Option<LogTarget>,
    /// `--admin ADDR`: runs the admin listener there, overriding the address of
    /// `ferrolb_admin` (its token still applies). `None` (default): as configured.
    pub admin: Option<SocketAddr>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration did not load.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// A listener could not be bound.
    #[error("bind() to {addr} failed ({err})")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        err: std::io::Error,
    },
    /// The pid file could not be written.
    #[error("open() \"{path}\" failed ({err})")]
    Pid {
        /// The path.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// A log could not be opened.
    #[error("{0}")]
    Log(String),
    /// A thread or runtime could not be created.
    #[error("could not start: {0}")]
    Start(std::io::Error),
}

/// How the server is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Serving.
    Running,
    /// SIGQUIT: stop accepting, close idle connections, finish requests in progress.
    Graceful,
    /// SIGTERM / SIGINT: stop now.
    Fast,
}

/// Configuration-derived state that requests read; replaced as a whole on reload.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Config,
    /// Upstream groups, parallel to `config.http.upstreams`.
    pub upstreams: Vec<Upstream>,
    /// Open access logs by path.
    pub access_logs: HashMap<PathBuf, Arc<AccessLog>>,
}

impl Runtime {
    /// Builds the runtime state for a configuration; peer state comes from (and stays
    /// in) the registry so it survives reloads.
    pub fn build(config: Config, registry: &PeerRegistry) -> Result<Runtime, ServerError> {
        registry.retain(&config.http.upstreams);
        let upstreams = config
            .http
            .upstreams
            .iter()
            .map(|u| Upstream::build(u, registry))
            .collect();
        let mut access_logs = HashMap::new();
        let mut open = |s: &LocSettings| -> Result<(), ServerError> {
            if let Some(path) = s.access_log.path() {
                if !access_logs.contains_key(path) {
                    let log = AccessLogs::open(path).map_err(|e| {
                        ServerError::Log(format!("open() \"{}\" failed ({e})", path.display()))
                    })?;
                    access_logs.insert(path.to_path_buf(), log);
                }
            }
            Ok(())
        };
        for server in &config.http.servers {
            open(&server.settings)?;
            visit_locations(&server.locations, &mut open)?;
        }
        Ok(Runtime {
            config,
            upstreams,
            access_logs,
        })
    }

    /// Every address some server listens on.
    pub fn listen_addrs(&self) -> BTreeSet<SocketAddr> {
        self.config
            .http
            .servers
            .iter()
            .flat_map(|s| s.listen.iter().map(|l| l.addr))
            .collect()
    }
}

fn visit_locations(
    locs: &[config::Location],
    f: &mut impl FnMut(&LocSettings) -> Result<(), ServerError>,
) -> Result<(), ServerError> {
    for l in locs {
        f(&l.settings)?;
        visit_locations(&l.locations, f)?;
    }
    Ok(())
}

/// State shared by every thread.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime; connections pick up a new one at their next request.
    pub runtime: ArcSwap<Runtime>,
    /// Live peer state by (upstream, address), outliving reloads.
    pub registry: PeerRegistry,
    /// Connection numbers for the error log.
    pub next_conn_id: AtomicU64,
    /// Peer changes made through the admin API, applied on top of every configuration
    /// built (admin change or reload). Its lock also serialises those rebuilds.
    pub admin_overlay: std::sync::Mutex<crate::admin::Overlay>,
    /// The worker processes of `ferrolb up`, for the admin API's `/workers`
    /// endpoints; unset (the default) under `ferrolb -c`.
    pub workers: std::sync::OnceLock<Arc<dyn crate::admin::WorkerControl>>,
    stop_tx: watch::Sender<StopMode>,
}

impl Shared {
    /// Shared state around a first runtime (as `run` makes it; also for tests of
    /// the admin API and health checks).
    pub fn new(runtime: Runtime, registry: PeerRegistry) -> Shared {
        Shared {
            runtime: ArcSwap::from_pointee(runtime),
            registry,
            next_conn_id: AtomicU64::new(1),
            admin_overlay: Default::default(),
            workers: std::sync::OnceLock::new(),
            stop_tx: watch::channel(StopMode::Running).0,
        }
    }

    /// A receiver that turns to `Graceful` or `Fast` when stopping.
    pub fn stop_signal(&self) -> watch::Receiver<StopMode> {
        self.stop_tx.subscribe()
    }
}

/// See [`RunHooks::on_shared`].
pub type OnShared = Box<dyn FnOnce(&Arc<Shared>) + Send>;

/// What an embedder (`ferrolb up`) adds to [`run_with_shutdown`]; the default adds
/// nothing.
#[derive(Default)]
pub struct RunHooks {
    /// Peer changes applied to the first configuration and kept across reloads, as
    /// if made through the admin API. Default none.
    pub overlay: Option<crate::admin::Overlay>,
    /// Called once with the shared state, before any listener accepts and before
    /// health checks or the admin listener start (so peers can be taken out of
    /// rotation first). Default none.
    pub on_shared: Option<OnShared>,
    /// When true, SIGINT and SIGTERM are left to the embedder, which stops the
    /// server through the `shutdown` channel. Default false (they stop it at once).
    pub embedder_handles_int_term: bool,
}

impl std::fmt::Debug for RunHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHooks")
            .field("overlay", &self.overlay)
            .field("on_shared", &self.on_shared.is_some())
            .field("embedder_handles_int_term", &self.embedder_handles_int_term)
            .finish()
    }
}

/// Runs until stopped by a signal. Binds every listener, writes the pid file only when
/// all are bound, and handles SIGHUP (reload), SIGQUIT (graceful stop), SIGTERM and
/// SIGINT (fast stop), SIGUSR1 (reopen logs).
pub fn run(opts: RunOptions) -> Result<(), ServerError> {
    let (_tx, rx) = watch::channel(false);
    run_with_shutdown(opts, rx)
}

/// Like [`run`], and also stops (gracefully) when `shutdown` turns true.
pub fn run_with_shutdown(
    opts: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    run_with_hooks(opts, shutdown, RunHooks::default())
}

/// Like [`run_with_shutdown`], with an embedder's [`RunHooks`].
pub fn run_with_hooks(
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
    hooks: RunHooks,
) -> Result<(), ServerError> {
    let mut config = load(&opts)?;
    if let Some(overlay) = &hooks.overlay {
        overlay.apply(&mut config);
    }
    let workers = config.worker_processes.max(1);
    let pid_path = config.pid.clone();
    let registry = PeerRegistry::new();
    let runtime = Runtime::build(config, &registry)?;
    let addrs: Vec<SocketAddr> = runtime.listen_addrs().into_iter().collect();

    // Bind everything before anything else so a taken port fails the start cleanly.
    let mut per_worker: Vec<Vec<std::net::TcpListener>> = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut ls = Vec::with_capacity(addrs.len());
        for &addr in &addrs {
            ls.push(super::listener::bind(addr).map_err(|err| ServerError::Bind { addr, err })?);
        }
        per_worker.push(ls);
    }

    let (stop_tx, _) = watch::channel(StopMode::Running);
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        registry,
        next_conn_id: AtomicU64::new(1),
        admin_overlay: std::sync::Mutex::new(hooks.overlay.unwrap_or_default()),
        workers: std::sync::OnceLock::new(),
        stop_tx,
    });
    if let Some(f) = hooks.on_shared {
        f(&shared);
    }

    // Active health checks and the admin listener run on threads of their own; they
    // end when `stop_tx` leaves `Running`.
    crate::health::active::spawn(shared.clone()).map_err(ServerError::Start)?;
    let admin_conf = shared.runtime.load().config.http.admin.clone();
    let admin = match (opts.admin, admin_conf) {
        (Some(addr), conf) => Some(crate::admin::AdminSettings {
            addr,
            token: conf.and_then(|c| c.token),
        }),
        (None, Some(c)) => Some(crate::admin::AdminSettings {
            addr: c.addr,
            token: c.token,
        }),
        (None, None) => None,
    };
    if let Some(settings) = admin {
        let addr = settings.addr;
        crate::admin::spawn(shared.clone(), settings)
            .map_err(|err| ServerError::Bind { addr, err })?;
    }

    let mut threads = Vec::with_capacity(workers);
    let mut listen_ctl = ListenControl {
        bound: addrs.iter().copied().collect(),
        workers: Vec::with_capacity(workers),
    };
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        listen_ctl.workers.push(tx);
        let listeners = addrs.iter().copied().zip(listeners).collect();
        let t = std::thread::Builder::new()
            .name(format!("ferrolb-worker-{i}"))
            .spawn(move || super::worker::run(shared, listeners, rx))
            .map_err(ServerError::Start)?;
        threads.push(t);
    }

    write_pid(&pid_path)?;
    // Startup problems were mirrored to the terminal; from here on the error log alone.
    crate::log::set_stderr_mirror(false);
    crate::log::emit(
        Level::Notice,
        None,
        format_args!(
            "ferrolb {} started, {workers} worker threads, listening on {}",
            env!("CARGO_PKG_VERSION"),
            list(&addrs)
        ),
    );

    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Start)?;
    let mode = signals.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(ServerError::Start)?;
        let mut quit = signal(SignalKind::quit()).map_err(ServerError::Start)?;
        // `ferrolb up` stops gracefully on these and must see them itself.
        let (mut term, mut int) = if hooks.embedder_handles_int_term {
            (None, None)
        } else {
            (
                Some(signal(SignalKind::terminate()).map_err(ServerError::Start)?),
                Some(signal(SignalKind::interrupt()).map_err(ServerError::Start)?),
            )
        };
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(ServerError::Start)?;
        loop {
            tokio::select! {
                _ = hup.recv() => reload(&opts, &shared, &mut listen_ctl, workers),
                _ = usr1.recv() => {
                    crate::log::emit(Level::Notice, None, format_args!("reopening logs"));
                    if let Err(e) = crate::log::reopen().and_then(|()| AccessLogs::reopen_all()) {
                        crate::log::emit(Level::Alert, None, format_args!("reopening logs failed: {e}"));
                    }
                }
                _ = quit.recv() => return Ok::<_, ServerError>(StopMode::Graceful),
                _ = recv_opt(&mut term) => return Ok(StopMode::Fast),
                _ = recv_opt(&mut int) => return Ok(StopMode::Fast),
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return Ok(StopMode::Graceful);
                    }
                }
            }
        }
    })?;

    crate::log::emit(
        Level::Notice,
        None,
        format_args!(
            "{}",
            if mode == StopMode::Graceful {
                "gracefully shutting down"
            } else {
                "exiting"
            }
        ),
    );
    shared.stop_tx.send_replace(mode);
    if mode == StopMode::Graceful {
        // Requests in progress get a bounded time to finish (nginx waits without a
        // bound unless worker_shutdown_timeout is set).
        let deadline = std::time::Instant::now() + GRACEFUL_STOP_LIMIT;
        while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if threads.iter().any(|t| !t.is_finished()) {
            crate::log::emit(
                Level::Warn,
                None,
                format_args!(
                    "requests still in progress after {}s, exiting",
                    GRACEFUL_STOP_LIMIT.as_secs()
                ),
            );
        }
    } else {
        // Fast stop: give workers a moment to drop their sockets, not to finish requests.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pid_path);
    crate::log::emit(Level::Notice, None, format_args!("exit"));
    crate::log::flush();
    Ok(())
}

/// Waits for a signal of an optional stream; never returns without one.
async fn recv_opt(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn load(opts: &RunOptions) -> Result<Config, ServerError> {
    let mut config = config::load(&opts.conf_path, &opts.load)?;
    if let Some(target) = &opts.error_log_override {
        config.error_log.target = target.clone();
    }
    crate::log::init(&config.error_log).map_err(|e| ServerError::Log(e.to_string()))?;
    for w in &config.warnings {
        crate::log::emit(
            Level::Warn,
            None,
            format_args!("{} in {}", w.message, w.span),
        );
    }
    Ok(config)
}

/// SIGHUP: load the configuration again; on any error keep the running one.
fn reload(opts: &RunOptions, shared: &Shared, listeners: &mut ListenControl, workers: usize) {
    crate::log::emit(
        Level::Notice,
        None,
        format_args!("signal 1 (SIGHUP) received, reconfiguring"),
    );
    match try_reload(opts, shared, listeners, workers) {
        Ok(()) => crate::log::emit(Level::Notice, None, format_args!("configuration reloaded")),
        Err(e) => crate::log::emit(
            Level::Emerg,
            None,
            format_args!("{e}; the running configuration is kept"),
        ),
    }
}

/// Loads, builds and binds everything the new configuration needs, and only then
/// swaps it in; any error leaves the running configuration untouched.
fn try_reload(
    opts: &RunOptions,
    shared: &Shared,
    listeners: &mut ListenControl,
    workers: usize,
) -> Result<(), ServerError> {
    let mut config = load(opts)?;
    if config.worker_processes.max(1) != workers {
        crate::log::emit(
            Level::Warn,
            None,
            format_args!("worker_processes changed: takes effect at the next restart"),
        );
    }
    // Admin API peer changes persist across reloads; the lock keeps an admin rebuild
    // from swapping in a runtime built on the configuration this reload replaces.
    let overlay = shared
        .admin_overlay
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    overlay.apply(&mut config);
    let runtime = Runtime::build(config, &shared.registry)?;
    // New addresses are bound before anything changes, so a taken port keeps the
    // running configuration whole; listeners that stay are never closed, so no
    // connection attempt is refused during a reload.
    let wanted = runtime.listen_addrs();
    let added = listeners.bind_new(&wanted)?;
    shared.runtime.store(Arc::new(runtime));
    drop(overlay);
    listeners.apply(added, &wanted);
    Ok(())
}

/// A change to one worker's listening sockets.
#[derive(Debug)]
pub(super) enum ListenerCmd {
    /// Start accepting on this socket.
    Add(SocketAddr, std::net::TcpListener),
    /// Stop accepting on this address and close it.
    Remove(SocketAddr),
}

/// The main thread's view of what is bound, and the way to tell workers.
struct ListenControl {
    bound: BTreeSet<SocketAddr>,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<ListenerCmd>>,
}

impl ListenControl {
    /// Binds, for every worker, each address of `wanted` not bound yet.
    fn bind_new(
        &self,
        wanted: &BTreeSet<SocketAddr>,
    ) -> Result<Vec<(SocketAddr, Vec<std::net::TcpListener>)>, ServerError> {
        let mut added = Vec::new();
        for &addr in wanted.difference(&self.bound) {
            let mut per_worker = Vec::with_capacity(self.workers.len());
            for _ in &self.workers {
                per_worker.push(
                    super::listener::bind(addr).map_err(|err| ServerError::Bind { addr, err })?,
                );
            }
            added.push((addr, per_worker));
        }
        Ok(added)
    }

    /// Hands new sockets to the workers and closes the ones no server uses any more.
    fn apply(
        &mut self,
        added: Vec<(SocketAddr, Vec<std::net::TcpListener>)>,
        wanted: &BTreeSet<SocketAddr>,
    ) {
        for (addr, per_worker) in added {
            for (tx, l) in self.workers.iter().zip(per_worker) {
                let _ = tx.send(ListenerCmd::Add(addr, l));
            }
            crate::log::emit(Level::Notice, None, format_args!("listening on {addr}"));
        }
        for &addr in self.bound.difference(wanted) {
            for tx in &self.workers {
                let _ = tx.send(ListenerCmd::Remove(addr));
            }
            crate::log::emit(Level::Notice, None, format_args!("closed listener {addr}"));
        }
        self.bound = wanted.clone();
    }
}

fn write_pid(path: &Path) -> Result<(), ServerError> {
    let err = |err| ServerError::Pid {
        path: path.to_owned(),
        err,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
    }
    std::fs::write(path, format!("{}\n", std::process::id())).map_err(err)
}

/// Per-thread worker state.
#[derive(Debug)]
pub struct Worker {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Client connections open on this thread (an atomic so tasks holding the
    /// worker are `Send`; only this thread touches it).
    pub active: std::sync::atomic::AtomicUsize,
    /// Wakes the accept loop when a connection closes below the limit.
    pub freed: tokio::sync::Notify,
}

impl Worker {
    /// A new worker for this thread.
    pub fn new(shared: Arc<Shared>) -> Arc<Worker> {
        Arc::new(Worker {
            shared,
            active: std::sync::atomic::AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// Client connections open on this thread.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A fresh connection number.
    pub fn next_conn_id(&self) -> u64 {
        self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
