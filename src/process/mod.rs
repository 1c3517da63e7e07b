//! The process: start-up (bind every listener, then start the worker threads, the
//! health-check thread and the admin listener), the main thread's signal loop (reload,
//! stop, reopen logs) and the pid file. Configuration is swapped atomically on reload;
//! each worker thread runs one current-thread tokio runtime with its own
//! `SO_REUSEPORT` listeners and its own upstream connection pools ([`crate::server`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::access_log::AccessLogs;
use crate::config::{self, Config, Level, LoadOptions, LogTarget};
use crate::config::{Endpoint, SocketOptions};
use crate::health::active::{CheckedPeers, Target};
use crate::server::listener::{self, Listener};
use crate::server::{worker, ListenerCmd, Runtime, ServerError, Shared, StopMode};
use crate::upstream::PeerRegistry;

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

/// What the nginx command line shows on the terminal (stderr) besides the error log.
/// The default shows nothing, for embedders (`ferrolb up`, `ferrolb demo`) that print
/// their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    /// Once serving, a short summary: listeners, upstreams and their peers, admin
    /// address, configuration file, logs. Default off (`-q` keeps it off).
    pub summary: bool,
    /// One line per reload: applied, or rejected with the error. Default off (the
    /// command line turns it on when stderr is a terminal).
    pub reloads: bool,
    /// Honour `daemon on;`: detach once listening (see [`daemonize`]). Default off:
    /// embedders stay in the foreground whatever the configuration says.
    pub daemon: bool,
}

/// See [`RunHooks::on_shared`].
pub type OnShared = Box<dyn FnOnce(&Arc<Shared>) + Send>;

/// What an embedder (`ferrolb up`) adds to [`run_with_shutdown`]; the default adds
/// nothing.
#[derive(Default)]
pub struct RunHooks {
    /// Peer changes applied to the first configuration and kept across reloads, as
    /// if made through the admin API. Default none.
    pub overlay: Option<crate::config::Overlay>,
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
    run_on_terminal(opts, Terminal::default())
}

/// Like [`run`], showing on stderr what `terminal` asks for.
pub fn run_on_terminal(opts: RunOptions, terminal: Terminal) -> Result<(), ServerError> {
    let (_tx, rx) = watch::channel(false);
    run_inner(opts, rx, RunHooks::default(), terminal)
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
    shutdown: watch::Receiver<bool>,
    hooks: RunHooks,
) -> Result<(), ServerError> {
    run_inner(opts, shutdown, hooks, Terminal::default())
}

fn run_inner(
    opts: RunOptions,
    mut shutdown: watch::Receiver<bool>,
    hooks: RunHooks,
    terminal: Terminal,
) -> Result<(), ServerError> {
    let mut config = load(&opts)?;
    if let Some(overlay) = &hooks.overlay {
        overlay.apply(&mut config);
    }
    // Before anything starts a thread (building the runtime starts access log
    // writers): only a single-threaded process can fork safely.
    let ready_pipe = if terminal.daemon && config.daemon {
        Some(daemonize()?)
    } else {
        None
    };
    let workers = config.worker_processes.max(1);
    let pid_path = config.pid.clone();
    let registry = PeerRegistry::new();
    let runtime = Runtime::build(config, &registry)?;
    let sockets = runtime.config.http.listen_sockets();
    let addrs: Vec<Endpoint> = sockets.keys().cloned().collect();

    // Bind everything before anything else so a taken port fails the start cleanly.
    // From here on, `listen_ctl` removes the Unix socket files it bound when the
    // process ends, whichever way.
    let mut listen_ctl = ListenControl {
        bound: BTreeMap::new(),
        workers: Vec::with_capacity(workers),
    };
    let mut per_worker: Vec<Vec<(Endpoint, Listener)>> = (0..workers).map(|_| Vec::new()).collect();
    for (addr, opts) in &sockets {
        let ls = listener::bind_for_workers(addr, opts, workers)
            .map_err(|err| ServerError::bind(addr.clone(), err))?;
        listen_ctl.bound.insert(addr.clone(), opts.clone());
        for (w, l) in per_worker.iter_mut().zip(ls) {
            w.push((addr.clone(), l));
        }
    }

    let shared = Arc::new(Shared::new(runtime, registry));
    if let Some(overlay) = hooks.overlay {
        *shared
            .admin_overlay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = overlay;
    }
    if let Some(f) = hooks.on_shared {
        f(&shared);
    }

    // Active health checks and the admin listener run on threads of their own; they
    // end when the server stops.
    crate::health::active::spawn(Arc::new(LivePeers(shared.clone())), shared.stopped())
        .map_err(ServerError::Start)?;
    crate::acme::spawn(Arc::new(LiveAcme(shared.clone())), shared.stopped())
        .map_err(ServerError::Start)?;
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
            .map_err(|err| ServerError::bind(addr.into(), err))?;
    }

    let mut threads = Vec::with_capacity(workers);
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        listen_ctl.workers.push(tx);
        let t = std::thread::Builder::new()
            .name(format!("ferrolb-worker-{i}"))
            .spawn(move || worker::run(shared, listeners, rx))
            .map_err(ServerError::Start)?;
        threads.push(t);
    }

    // The signal handlers are in place before the pid file says where to send
    // signals: a SIGHUP right after it appears reloads rather than kills.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Start)?;
    let (mut hup, mut quit, mut term, mut int, mut usr1) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = signals.enter();
        let hup = signal(SignalKind::hangup()).map_err(ServerError::Start)?;
        let quit = signal(SignalKind::quit()).map_err(ServerError::Start)?;
        // `ferrolb up` stops gracefully on these and must see them itself.
        let (term, int) = if hooks.embedder_handles_int_term {
            (None, None)
        } else {
            (
                Some(signal(SignalKind::terminate()).map_err(ServerError::Start)?),
                Some(signal(SignalKind::interrupt()).map_err(ServerError::Start)?),
            )
        };
        let usr1 = signal(SignalKind::user_defined1()).map_err(ServerError::Start)?;
        (hup, quit, term, int, usr1)
    };

    write_pid(&pid_path)?;
    // Startup problems were mirrored to the terminal; from here on the error log alone.
    crate::log::set_stderr_mirror(false);
    if terminal.summary {
        let rt = shared.runtime.load();
        eprint!(
            "{}",
            summary(&opts.conf_path, &rt.config, &addrs, workers, opts.admin)
        );
    }
    if let Some(pipe) = ready_pipe {
        detach(pipe);
    }
    crate::log::emit(
        Level::Notice,
        None,
        format_args!(
            "ferrolb {} started, {workers} worker threads, listening on {}",
            env!("CARGO_PKG_VERSION"),
            list(&addrs)
        ),
    );

    let mode = signals.block_on(async {
        loop {
            tokio::select! {
                _ = hup.recv() => reload(&opts, &shared, &mut listen_ctl, workers, terminal),
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
    shared.stop(mode);
    if mode == StopMode::Graceful {
        // Requests in progress get `worker_shutdown_timeout` to finish (nginx waits
        // without a bound when it is not set; ferrolb 30 s).
        let limit = shared
            .runtime
            .load()
            .config
            .worker_shutdown_timeout
            .unwrap_or(GRACEFUL_STOP_LIMIT);
        let deadline = std::time::Instant::now() + limit;
        while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if threads.iter().any(|t| !t.is_finished()) {
            crate::log::emit(
                Level::Warn,
                None,
                format_args!(
                    "shutdown timeout: requests still in progress after {:.3}s, closing their connections",
                    limit.as_secs_f64()
                ),
            );
        }
    } else {
        // Fast stop: give workers a moment to drop their sockets, not to finish requests.
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pid_path);
    crate::log::emit(Level::Notice, None, format_args!("exit"));
    AccessLogs::flush_all();
    crate::log::flush();
    Ok(())
}

/// The health checker's view of the live configuration.
struct LivePeers(Arc<Shared>);

impl CheckedPeers for LivePeers {
    fn version(&self) -> usize {
        Arc::as_ptr(&self.0.runtime.load()) as usize
    }

    fn targets(&self) -> Vec<Target> {
        let rt = self.0.runtime.load();
        crate::health::active::targets(&rt.config.http.health_checks, &rt.upstreams)
    }
}

/// The ACME client's view of the live configuration.
struct LiveAcme(Arc<Shared>);

impl crate::acme::AcmeSource for LiveAcme {
    fn version(&self) -> usize {
        Arc::as_ptr(&self.0.runtime.load()) as usize
    }

    fn certificates(&self) -> Vec<crate::config::acme::AcmeCertificate> {
        self.0.runtime.load().config.http.acme_certificates.clone()
    }
}

/// Waits for a signal of an optional stream; never returns without one.
async fn recv_opt(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn list(addrs: &[Endpoint]) -> String {
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
    crate::log::init_levels(config.level_error_logs())
        .map_err(|e| ServerError::Log(e.to_string()))?;
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
fn reload(
    opts: &RunOptions,
    shared: &Shared,
    listeners: &mut ListenControl,
    workers: usize,
    terminal: Terminal,
) {
    crate::log::emit(
        Level::Notice,
        None,
        format_args!("signal 1 (SIGHUP) received, reconfiguring"),
    );
    let shown = opts.conf_path.display();
    match try_reload(opts, shared, listeners, workers) {
        Ok(()) => {
            crate::log::emit(Level::Notice, None, format_args!("configuration reloaded"));
            if terminal.reloads {
                eprintln!("ferrolb: configuration {shown} reloaded");
            }
        }
        Err(e) => {
            crate::log::emit(
                Level::Emerg,
                None,
                format_args!("{e}; the running configuration is kept"),
            );
            if terminal.reloads {
                eprintln!(
                    "ferrolb: reload of {shown} rejected, the running configuration is kept: {e}"
                );
            }
        }
    }
}

/// The start-up summary, e.g.
///
/// ```text
/// ferrolb 0.1.0 running, pid 4242, configuration /etc/ferrolb/nginx.conf
///   listening on 127.0.0.1:8080 (2 worker threads)
///   upstream myproject: 127.0.0.1:8000, 127.0.0.1:8001 (backup)
///   admin: http://127.0.0.1:9090/
///   error log /etc/ferrolb/logs/error.log, pid file /etc/ferrolb/logs/nginx.pid
/// ```
fn summary(
    conf_path: &Path,
    config: &Config,
    addrs: &[Endpoint],
    workers: usize,
    admin_flag: Option<SocketAddr>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ferrolb {} running, pid {}, configuration {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        conf_path.display()
    );
    let threads = if workers == 1 { "thread" } else { "threads" };
    if addrs.is_empty() {
        let _ = writeln!(s, "  no listeners (no server block)");
    } else {
        let _ = writeln!(
            s,
            "  listening on {} ({workers} worker {threads})",
            list(addrs)
        );
    }
    for u in &config.http.upstreams {
        let peers: Vec<String> = u
            .peers
            .iter()
            .map(|p| {
                let mut text = p.addr.to_string();
                if p.backup {
                    text.push_str(" (backup)");
                }
                if p.down {
                    text.push_str(" (down)");
                }
                text
            })
            .collect();
        let _ = writeln!(s, "  upstream {}: {}", u.name, peers.join(", "));
    }
    let admin = admin_flag.or(config.http.admin.as_ref().map(|a| a.addr));
    if let Some(a) = admin {
        let _ = writeln!(s, "  admin: http://{a}/");
    }
    let log = match &config.error_log.target {
        LogTarget::File(p) => p.display().to_string(),
        LogTarget::Stderr => "stderr".into(),
        LogTarget::Off => "off".into(),
    };
    let _ = writeln!(s, "  error log {log}, pid file {}", config.pid.display());
    s
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
    // New addresses are bound before anything changes (building the runtime marks the
    // peers it drops as removed), so a taken port keeps the running configuration
    // whole; listeners that stay are never closed, so no connection attempt is refused
    // during a reload.
    let wanted = config.http.listen_sockets();
    let added = listeners.bind_new(&wanted)?;
    let runtime = match Runtime::build(config, &shared.registry) {
        Ok(rt) => rt,
        Err(e) => {
            for (addr, _) in &added {
                listener::release(addr);
            }
            return Err(e);
        }
    };
    shared.runtime.store(Arc::new(runtime));
    shared.announce_reload();
    drop(overlay);
    listeners.apply(added, &wanted);
    // As nginx's old workers write their buffers when they exit: buffered access log
    // lines of the old configuration reach the files now.
    AccessLogs::flush_all();
    Ok(())
}

/// The main thread's view of what is bound, and the way to tell workers. Dropping it
/// removes the socket files of the Unix listeners it bound.
struct ListenControl {
    bound: BTreeMap<Endpoint, SocketOptions>,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<ListenerCmd>>,
}

/// Sockets bound for a reload, one per worker, by address.
type Bound = Vec<(Endpoint, Vec<Listener>)>;

impl ListenControl {
    /// Binds, for every worker, each address of `wanted` not bound yet, and again
    /// each TCP address whose socket options changed (`SO_REUSEPORT` lets the new
    /// sockets join the old ones until [`Self::apply`] closes those); on an error,
    /// what it bound is released again.
    fn bind_new(&self, wanted: &BTreeMap<Endpoint, SocketOptions>) -> Result<Bound, ServerError> {
        let mut added: Bound = Vec::new();
        for (addr, opts) in wanted {
            match (self.bound.get(addr), addr) {
                (Some(old), _) if old == opts => continue,
                (Some(_), Endpoint::Unix(_)) => {
                    // The path is taken by the running socket: the file cannot be
                    // bound a second time.
                    crate::log::emit(
                        Level::Warn,
                        None,
                        format_args!(
                            "the listen options of {addr} changed; for a unix socket they apply after a restart"
                        ),
                    );
                    continue;
                }
                _ => {}
            }
            match listener::bind_for_workers(addr, opts, self.workers.len()) {
                Ok(ls) => added.push((addr.clone(), ls)),
                Err(err) => {
                    for (a, _) in &added {
                        listener::release(a);
                    }
                    return Err(ServerError::bind(addr.clone(), err));
                }
            }
        }
        Ok(added)
    }

    /// Hands new sockets to the workers and closes the ones no server uses any more.
    fn apply(&mut self, added: Bound, wanted: &BTreeMap<Endpoint, SocketOptions>) {
        for (addr, per_worker) in added {
            let rebound = self.bound.contains_key(&addr);
            for (tx, l) in self.workers.iter().zip(per_worker) {
                if rebound {
                    // Connections queued on the old socket and not accepted yet are
                    // reset when it closes.
                    let _ = tx.send(ListenerCmd::Remove(addr.clone()));
                }
                let _ = tx.send(ListenerCmd::Add(addr.clone(), l));
            }
            if rebound {
                crate::log::emit(
                    Level::Notice,
                    None,
                    format_args!("listening on {addr} with the new listen options"),
                );
            } else {
                crate::log::emit(Level::Notice, None, format_args!("listening on {addr}"));
            }
        }
        let gone: Vec<Endpoint> = self
            .bound
            .keys()
            .filter(|a| !wanted.contains_key(*a))
            .cloned()
            .collect();
        for addr in &gone {
            for tx in &self.workers {
                let _ = tx.send(ListenerCmd::Remove(addr.clone()));
            }
            listener::release(addr);
            crate::log::emit(Level::Notice, None, format_args!("closed listener {addr}"));
        }
        self.bound = wanted.clone();
    }
}

impl Drop for ListenControl {
    fn drop(&mut self) {
        for addr in self.bound.keys() {
            listener::release(addr);
        }
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

/// `daemon on;`: forks. The parent waits until the child listens (it has written the
/// pid file), then exits 0; if the child fails to start, the child has printed why
/// on the shared stderr and the parent exits 1. So the exit status of the command
/// tells whether the service started, as a service manager's `Type=forking` expects.
/// Returns, in the child only, the pipe to report readiness on (see [`detach`]).
///
/// Refuses to fork when the process has more than one thread: the child of a
/// multi-threaded process may find locks held by threads that no longer exist.
#[allow(unsafe_code)]
fn daemonize() -> Result<std::os::unix::net::UnixStream, ServerError> {
    use nix::unistd::{fork, setsid, ForkResult};
    use std::io::Read as _;
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        return Err(ServerError::Start(std::io::Error::other(format!(
            "daemon on: cannot fork with {threads} threads running"
        ))));
    }
    let (mut parent_end, child_end) =
        std::os::unix::net::UnixStream::pair().map_err(ServerError::Start)?;
    // SAFETY: the process has one thread (checked above), so the child is a complete
    // copy with no lock held by a thread that does not exist in it.
    match unsafe { fork() } {
        Err(errno) => Err(ServerError::Start(std::io::Error::from(errno))),
        Ok(ForkResult::Child) => {
            drop(parent_end);
            // A session of its own: no controlling terminal, no SIGHUP when the
            // terminal closes, not in the shell's job control.
            let _ = setsid();
            Ok(child_end)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(child_end);
            let mut word = String::new();
            // EOF without "ready": the child exited (or crashed) before listening.
            let _ = parent_end.read_to_string(&mut word);
            if word == "ready" {
                std::process::exit(0);
            }
            let _ = nix::sys::wait::waitpid(child, None);
            std::process::exit(1);
        }
    }
}

/// In the daemon child, once it listens: tells the waiting parent, then points stdin,
/// stdout and stderr at /dev/null (the terminal may close; the error log is the place
/// for what follows).
fn detach(mut ready: std::os::unix::net::UnixStream) {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let _ = ready.write_all(b"ready");
    drop(ready);
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}
