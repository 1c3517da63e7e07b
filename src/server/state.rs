//! State the worker threads share: the configuration-derived [`Runtime`] (swapped
//! atomically on reload), the [`Shared`] state around it, and each thread's [`Worker`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::access_log::{AccessLog, AccessLogs, LogFileCache, SyslogSender};
use crate::balance::dynamic::DynamicGroups;
use crate::balance::Upstream;
use crate::config::{self, Config, Endpoint, LocSettings, LogBuffering};
use crate::net::tls::server::TlsOffer;
use crate::upstream::PeerRegistry;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration did not load.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// A listener could not be bound.
    #[error(
        "bind() to {addr} failed ({}){}",
        crate::log::os_error_text(err),
        hint_suffix(hint)
    )]
    Bind {
        /// The address.
        addr: Endpoint,
        /// The cause.
        err: std::io::Error,
        /// How to get past it, printed on a line of its own (see
        /// [`crate::server::listener::bind_hint`]).
        hint: Option<String>,
    },
    /// The pid file could not be written.
    #[error("open() \"{}\" failed ({})", path.display(), crate::log::os_error_text(err))]
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
    /// A server's TLS settings could not be put together.
    #[error("{span}: {message}")]
    Tls {
        /// The `server` block.
        span: config::Span,
        /// What failed.
        message: String,
    },
}

impl ServerError {
    /// A failed bind of `addr`, with a hint when one helps.
    pub fn bind(addr: Endpoint, err: std::io::Error) -> ServerError {
        let hint = crate::server::listener::bind_hint(&addr, &err);
        ServerError::Bind { addr, err, hint }
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
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

/// What a server does with a TLS handshake that SNI (or its being the default)
/// picks it for.
#[derive(Debug, Clone)]
pub enum TlsRole {
    /// Completes it with its certificates and settings.
    Serve(TlsOffer),
    /// `ssl_reject_handshake on`: ends it with an `unrecognized_name` alert.
    Reject,
    /// No TLS settings of its own: as nginx, the address's default server's apply.
    None,
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
    /// One sender per `access_log syslog:` target.
    pub syslogs: HashMap<config::SyslogTarget, Arc<SyslogSender>>,
    /// The `open_log_file_cache` caches, parallel to
    /// `config.http.open_log_file_caches` (new and empty after each reload).
    pub log_file_caches: Vec<LogFileCache>,
    /// The `limit_req_zone`s and `limit_conn_zone`s, their states kept across reloads.
    pub limit_zones: crate::admission::limits::LimitZones,
    /// Groups made per request for `proxy_pass` with variables.
    pub dynamic: DynamicGroups,
    /// What each server does with a TLS handshake that picks it, parallel to
    /// `config.http.servers`.
    pub tls_offers: Vec<TlsRole>,
    /// Listening addresses whose connections are TLS (`listen ... ssl`).
    pub tls_addrs: HashSet<Endpoint>,
    /// The smallest and the largest `max_headers` of the servers: a head with at most
    /// the smallest needs no look at its server's; none may have more than the
    /// largest.
    pub max_headers_range: (usize, usize),
}

impl Runtime {
    /// Builds the runtime state for a configuration; peer state comes from (and stays
    /// in) the registry so it survives reloads. Peers that `config` no longer has leave
    /// the registry, marked removed (see [`PeerRegistry::retain`]).
    pub fn build(config: Config, registry: &PeerRegistry) -> Result<Runtime, ServerError> {
        let upstreams = config
            .http
            .upstreams
            .iter()
            .map(|u| Upstream::build(u, registry))
            .collect();
        // One writer per file, with the buffering of its buffered `access_log` lines
        // (validation made them agree); unbuffered lines to that file share it.
        let mut wanted: HashMap<PathBuf, LogBuffering> = HashMap::new();
        let mut syslogs = HashMap::new();
        let mut collect = |s: &LocSettings| -> Result<(), ServerError> {
            for t in s.access_log.targets() {
                if let Some(target) = &t.syslog {
                    if !syslogs.contains_key(target) {
                        let sender = SyslogSender::open(target).map_err(|e| {
                            ServerError::Log(format!("socket() for syslog failed ({e})"))
                        })?;
                        syslogs.insert(target.clone(), Arc::new(sender));
                    }
                }
            }
            for t in s
                .access_log
                .targets()
                .iter()
                .filter(|t| t.path_template.is_none() && t.syslog.is_none())
            {
                let b = wanted.entry(t.path.clone()).or_default();
                if t.buffering != LogBuffering::default() {
                    *b = t.buffering;
                }
            }
            Ok(())
        };
        for server in &config.http.servers {
            collect(&server.settings)?;
            visit_locations(&server.locations, &mut collect)?;
        }
        let log_file_caches = config
            .http
            .open_log_file_caches
            .iter()
            .map(|c| LogFileCache::new(*c))
            .collect();
        let mut access_logs = HashMap::new();
        for (path, buffering) in wanted {
            let log = AccessLogs::open(&path, buffering).map_err(|e| {
                ServerError::Log(format!("open() \"{}\" failed ({e})", path.display()))
            })?;
            access_logs.insert(path, log);
        }
        let servers = &config.http.servers;
        let tls_offers = servers
            .iter()
            .map(|s| {
                let Some(tls) = s.tls.as_ref() else {
                    return Ok(TlsRole::None);
                };
                if tls.reject_handshake {
                    return Ok(TlsRole::Reject);
                }
                // The protocol and cipher lists are the default server's (see
                // `ServerTls::after_sni_from`).
                let default_tls = s
                    .listen
                    .iter()
                    .find(|l| l.ssl)
                    .and_then(|l| super::vhost::find_server(servers, &l.addr, None))
                    .and_then(|d| servers[d].tls.as_ref());
                let effective = match default_tls {
                    Some(d) => tls.after_sni_from(d),
                    None => (**tls).clone(),
                };
                // HTTP/2 is offered where the server's TLS address has it (nginx: an
                // address has http2 once any server on it says so).
                let h2 = s.listen.iter().any(|l| l.ssl && l.http2);
                let alpn: &[&[u8]] = if h2 {
                    &[b"h2", b"http/1.1"]
                } else {
                    &[b"http/1.1"]
                };
                TlsOffer::build(&effective, alpn)
                    .map(TlsRole::Serve)
                    .map_err(|e| ServerError::Tls {
                        span: tls.span.clone(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls_addrs = config
            .http
            .servers
            .iter()
            .flat_map(|s| s.listen.iter().filter(|l| l.ssl).map(|l| l.addr.clone()))
            .collect();
        // Last, after every step that can fail: peers dropped here are marked removed
        // (their pooled connections get closed), which a failed build must not do to
        // the configuration that stays in force.
        registry.retain(&config.http.upstreams);
        let max_headers = config.http.servers.iter().map(|s| s.settings.max_headers);
        let max_headers_range = (
            max_headers.clone().min().unwrap_or(1000),
            max_headers.max().unwrap_or(1000),
        );
        Ok(Runtime {
            max_headers_range,
            limit_zones: crate::admission::limits::LimitZones::build(&config.http),
            config,
            upstreams,
            access_logs,
            syslogs,
            log_file_caches,
            dynamic: DynamicGroups,
            tls_offers,
            tls_addrs,
        })
    }

    /// Every address some server listens on.
    pub fn listen_addrs(&self) -> BTreeSet<Endpoint> {
        Self::listen_addrs_of(&self.config)
    }

    /// Every address some server of `config` listens on (before a runtime is built).
    pub fn listen_addrs_of(config: &Config) -> BTreeSet<Endpoint> {
        config
            .http
            .servers
            .iter()
            .flat_map(|s| s.listen.iter().map(|l| l.addr.clone()))
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
    pub admin_overlay: std::sync::Mutex<crate::config::Overlay>,
    /// The worker processes of `ferrolb up`, for the admin API's `/workers`
    /// endpoints; unset (the default) under `ferrolb -c`.
    pub workers: std::sync::OnceLock<Arc<dyn WorkerControl>>,
    /// Turns to `Graceful` or `Fast` when the server stops (see [`Shared::stop`]).
    stop_tx: watch::Sender<StopMode>,
    /// Wakes every [`Shared::stopping`] waiter when the server stops.
    stop_notify: tokio::sync::Notify,
    /// Counts configuration reloads (not admin changes): HTTP/2 connections say
    /// GOAWAY when it moves, as nginx's old workers do on reload.
    reload_tx: watch::Sender<u64>,
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
            stop_notify: tokio::sync::Notify::new(),
            reload_tx: watch::channel(0).0,
        }
    }

    /// A receiver that changes at every configuration reload.
    pub fn reload_signal(&self) -> watch::Receiver<u64> {
        self.reload_tx.subscribe()
    }

    /// Tells connections that a reload installed a new configuration.
    pub fn announce_reload(&self) {
        self.reload_tx.send_modify(|n| *n += 1);
    }

    /// A receiver that turns to `Graceful` or `Fast` when stopping.
    pub fn stop_signal(&self) -> watch::Receiver<StopMode> {
        self.stop_tx.subscribe()
    }

    /// Starts stopping every thread that watches [`Shared::stop_signal`].
    pub fn stop(&self, mode: StopMode) {
        self.stop_tx.send_replace(mode);
        self.stop_notify.notify_waiters();
    }

    /// How the server runs now.
    pub fn stop_mode(&self) -> StopMode {
        *self.stop_tx.borrow()
    }

    /// Completes once stopping has begun (at once if it has). Made for the waits of
    /// client connections: its future is a third of a [`Shared::stop_signal`]
    /// receiver and its `changed()` future, and every idle connection holds one.
    pub async fn stopping(&self) {
        let notified = self.stop_notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the mode is read: a stop between the two still wakes it.
        notified.as_mut().enable();
        if self.stop_mode() != StopMode::Running {
            return;
        }
        notified.await;
    }

    /// Completes once stopping has begun (for threads that only need to know when).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop_signal();
        async move {
            while *rx.borrow_and_update() == StopMode::Running {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The worker processes of `ferrolb up` as the admin API sees them (implemented by
/// [`crate::supervise`], read by [`crate::admin`]; a trait so neither depends on the
/// other, kept here because [`Shared`] holds it).
pub trait WorkerControl: Send + Sync + std::fmt::Debug {
    /// Starts a rolling restart of every worker, one at a time, and returns at once.
    /// `Err` (a reason) when one is already running or the workers are stopping.
    fn restart(&self) -> Result<(), String>;
    /// The workers now (`GET /workers`, and the `workers` member of `/status`).
    fn report(&self) -> WorkersReport;
}

/// What `ferrolb up`'s workers are doing, as the admin listener reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkersReport {
    /// The upstream the workers fill.
    pub upstream: String,
    /// A rolling restart is running.
    pub restarting: bool,
    /// The running rolling restart, or the last one; `None` before the first.
    pub rolling: Option<RollingReport>,
    /// One entry per worker slot, in port order.
    pub workers: Vec<WorkerReport>,
}

/// Progress of a rolling restart.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RollingReport {
    /// Workers restarted so far.
    pub done: usize,
    /// Workers to restart.
    pub total: usize,
    /// The port being restarted now; `None` once it ended.
    pub current: Option<u16>,
    /// What asked for it (`POST /workers/restart`, `ferrolb -s restart`, a file change).
    pub why: String,
    /// How it ended (`"4 workers restarted"`, or the error); `None` while running.
    pub outcome: Option<String>,
    /// Whether it ended with every worker back.
    pub ok: Option<bool>,
}

/// One worker slot.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerReport {
    /// Its port (on 127.0.0.1).
    pub port: u16,
    /// Its process id (the leader of its process group); `None` while none runs.
    pub pid: Option<u32>,
    /// `starting`, `healthy`, `draining`, `stopping`, `failed` (waiting to start
    /// again), `gave-up` (start limit reached) or `stopped`.
    pub state: &'static str,
    /// Why it is `failed` or `gave-up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds since its current process started; `None` while none runs.
    pub uptime_secs: Option<f64>,
    /// Times it was started again (exit, failed start, or requested restart).
    pub restarts: u32,
    /// How its last process ended (`exit status 1`, `killed by signal 9`,
    /// `stopped for a restart`); `None` before the first exit.
    pub last_exit: Option<String>,
    /// Seconds since that exit.
    pub last_exit_secs_ago: Option<f64>,
}

/// A change to one worker's listening sockets.
#[derive(Debug)]
pub enum ListenerCmd {
    /// Start accepting on this socket.
    Add(Endpoint, super::listener::Listener),
    /// Stop accepting on this address and close it.
    Remove(Endpoint),
}

/// Per-thread worker state.
#[derive(Debug)]
pub struct Worker {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Client connections open on this thread (an atomic so tasks holding the
    /// worker are `Send`; only this thread touches it).
    pub active: std::sync::atomic::AtomicUsize,
}

impl Worker {
    /// A new worker for this thread.
    pub fn new(shared: Arc<Shared>) -> Arc<Worker> {
        Arc::new(Worker {
            shared,
            active: std::sync::atomic::AtomicUsize::new(0),
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
