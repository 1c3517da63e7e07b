//! End-to-end harness shared by the integration tests (std + tokio + nix + socket2).
//!
//! * [`Proxy`]: the binary under test (ferrolb, or nginx via `FERROLB_TEST_BIN`)
//!   started on a config text in a fresh temp dir.
//! * [`Django`]: the article's Django project under `manage.py runserver`.
//! * [`http_get`], [`http_post`], [`http_request`], [`KeepAlive`]: a tiny blocking
//!   HTTP/1.1 client with a 10 s timeout on every socket operation.
//!
//! The harness itself can be validated against real nginx:
//! `FERROLB_TEST_BIN=/usr/sbin/nginx cargo test --test django`.
//!
//! # Waiting: signals, never sleeps
//!
//! No helper sleeps and then assumes something happened. Every wait polls an
//! observable signal under a deadline and panics naming what it waited for:
//! [`Proxy::start_on`] waits until each configured address has a listening socket
//! owned by the started process; [`Proxy::reload`] waits for the reload's outcome
//! in the error log (ferrolb: `configuration reloaded` or `... the running
//! configuration is kept`; nginx: `reconfiguring`, then its new worker processes
//! started and every old one `gracefully shutting down`, or the `[emerg]` line);
//! [`Django::start_n`] waits until runserver owns its port and answers HTTP;
//! [`wait_refused`] waits until a port refuses connections. [`poll`] and
//! [`wait_until`] are the building blocks for the tests' own conditions; the
//! short sleep between two checks inside them is a polling interval, not a guess.
//!
//! # Ports
//!
//! A port number handed to another process is a race: between picking it and the
//! other process binding it, anything may take it (a test running in parallel,
//! another checkout's test run, an outgoing connection's ephemeral port). And
//! ferrolb binds with `SO_REUSEPORT`: a second ferrolb of the same user on the
//! same port binds *without* an error and silently shares the connections. So:
//!
//! * A test's own servers (scripted backends) bind `127.0.0.1:0` and keep the
//!   listener ([`local_listener`]); no port number changes hands.
//! * A port that must refuse connections (a dead upstream, a stopped backend) is
//!   a [`DeadPort`]: a socket bound without `SO_REUSEADDR` that never listens, so
//!   nobody else can bind the port and a connect gets `ECONNREFUSED`.
//! * Ports that the process under test binds come from [`free_port`], which can
//!   only probe, and are used only through starters that check and retry:
//!   [`Proxy::start_on`], [`Django::start_n`] (and `Up::start` in tests/up.rs).
//!   A start counts when every address has a LISTEN socket (in
//!   `/proc/net/tcp{,6}`) that belongs to the started process and no other
//!   process listens on that port. When the process reports "already in use", or
//!   another process listens on one of its ports, it is stopped and started again
//!   on fresh ports, at most [`START_ATTEMPTS`] times. [`Proxy::try_reload`]
//!   reports the same race for a listener added by a reload.
//!
//! What stays: a port released on purpose and bound again by the same test
//! (a Django restarted on its port by [`Django::start_again`]: the proxy's config
//! names it, so it cannot move) can be taken in between; that start then panics
//! saying so.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Timeout applied to every socket operation of the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Proxy::start_on`] and [`Django::start_n`] wait for their ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Proxy::reload`] waits for the reload's outcome.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Starts on fresh ports before a start that keeps finding its port taken fails.
pub const START_ATTEMPTS: u32 = 5;
/// Interval between two checks of a polled condition.
pub const POLL_STEP: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Checks `f` every [`POLL_STEP`] until it returns `Some` (returned) or `limit`
/// passes (`None`). `f` runs at least once.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(POLL_STEP);
    }
}

/// [`poll`], panicking with "timed out after LIMIT waiting for WHAT" on timeout.
pub fn wait_until<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(limit, f).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Waits (at most `limit`) until connecting to 127.0.0.1:`port` is refused;
/// panics naming `what` otherwise.
pub fn wait_refused(port: u16, limit: Duration, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let refused = poll(limit, || {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    assert!(
        refused.is_some(),
        "port {port} still accepts connections after {limit:?}: {what}"
    );
}

// ---------------------------------------------------------------------------
// Ports and temp dirs
// ---------------------------------------------------------------------------

/// A candidate port on 127.0.0.1 for *another process* to bind (see "Ports" in
/// the module doc): free when probed, handed out at most once per test process,
/// but nothing keeps others from taking it before that process binds it. Use it
/// only through a starter that checks and retries ([`Proxy::start_on`],
/// [`Django::start_n`]); a server in the test itself uses [`local_listener`].
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if handed.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("free_port: no fresh port after 1000 tries");
}

/// The first of `n` consecutive ports that are all free now, for `ferrolb up`, whose
/// workers take consecutive ports. Chosen below the kernel's ephemeral range (32768
/// and up), where no `free_port` or outgoing connection of a concurrent test can take
/// one of them between this check and the workers' bind.
pub fn free_port_run(n: u16) -> u16 {
    for _ in 0..1000 {
        let first = 20_000 + rand::random::<u16>() % 11_000;
        let all_free = (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return first;
        }
    }
    panic!("free_port_run: no {n} free consecutive ports after 1000 tries");
}

/// A listener on 127.0.0.1 on a port the kernel picks, for a server run by the
/// test itself: keep it (or hand it to the server thread) instead of its number.
pub fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// The start of a request a scripted backend read: its request line (trimmed) and
/// its Content-Length (0 when absent).
pub struct BackendRequest {
    /// `GET /path HTTP/1.1`.
    pub line: String,
    /// The declared body length.
    pub content_length: usize,
}

impl BackendRequest {
    /// The request target.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("/")
    }
}

/// A backend on a free 127.0.0.1 port that reads each request's head and calls
/// `answer` with it, the reader (positioned at the body) and the connection to write
/// to; one thread per connection. Returns the port.
pub fn scripted_backend(
    answer: impl Fn(BackendRequest, &mut BufReader<TcpStream>, &mut TcpStream) + Send + Sync + 'static,
) -> u16 {
    let listener = local_listener();
    let port = listener.local_addr().expect("addr").port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answer = std::sync::Arc::clone(&answer);
            std::thread::spawn(move || {
                let Ok(clone) = conn.try_clone() else { return };
                let mut reader = BufReader::with_capacity(1 << 16, clone);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut content_length = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        if n.eq_ignore_ascii_case("content-length") {
                            content_length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let req = BackendRequest {
                    line: line.trim().to_owned(),
                    content_length,
                };
                answer(req, &mut reader, &mut conn);
            });
        }
    });
    port
}

/// The highest resident set size of a process so far, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A port on 127.0.0.1 that refuses connections for as long as this value lives:
/// a socket bound without `SO_REUSEADDR` that never listens. Nobody else can bind
/// the port meanwhile, so it cannot turn into someone's server.
pub struct DeadPort {
    /// The port.
    pub port: u16,
    _socket: socket2::Socket,
}

impl DeadPort {
    /// A dead port the kernel picks.
    pub fn new() -> DeadPort {
        DeadPort::hold(0).expect("bind a dead port on 127.0.0.1:0")
    }

    /// Keeps `port` dead, e.g. a test backend's port right after it stopped.
    /// Fails if someone else has bound it.
    pub fn hold(port: u16) -> io::Result<DeadPort> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let port = socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| bad("dead port: not an inet socket"))?;
        Ok(DeadPort {
            port,
            _socket: socket,
        })
    }
}

impl Default for DeadPort {
    fn default() -> DeadPort {
        DeadPort::new()
    }
}

/// Who listens on a port, as seen in `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// No socket listens on the port.
    Nobody,
    /// Every socket listening on the port belongs to the process asked about.
    Ours,
    /// Some socket listening on the port belongs to another process.
    Foreign,
}

/// Inodes of the sockets listening on `port` (any address, IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // 0A: TCP_LISTEN
            }
            let Some((_, hex_port)) = f[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(hex_port, 16) != Ok(port) {
                continue;
            }
            if let Ok(inode) = f[9].parse() {
                out.push(inode);
            }
        }
    }
    out
}

/// Inodes of the sockets open in process `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Who listens on `port`: nobody, only process `pid`, or (also) another process.
pub fn listener_of(port: u16, pid: u32) -> Listener {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Listener::Nobody;
    }
    let ours = socket_inodes(pid);
    if inodes.iter().all(|i| ours.contains(i)) {
        Listener::Ours
    } else {
        Listener::Foreign
    }
}

/// Checks every address of `addrs` for process `pid`: `Ok(true)` once all are
/// [`Listener::Ours`], `Ok(false)` while some do not accept yet, `Err(port)` for a
/// port another process listens on. A foreign verdict counts only when the
/// previous check (`foreign_before`) saw it too, so a socket caught between
/// `/proc/net/tcp` and the fd table is not mistaken for a stranger's. (`/proc` is
/// read only once everything accepts: with many sockets in TIME_WAIT, reading
/// `/proc/net/tcp` costs tens of milliseconds.)
pub fn check_ports(
    addrs: &[SocketAddr],
    pid: u32,
    foreign_before: &mut HashSet<u16>,
) -> Result<bool, u16> {
    let accepting = addrs
        .iter()
        .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
    if !accepting {
        foreign_before.clear();
        return Ok(false);
    }
    let mut all = true;
    let mut foreign_now = HashSet::new();
    for port in addrs.iter().map(SocketAddr::port) {
        match listener_of(port, pid) {
            Listener::Ours => {}
            Listener::Nobody => all = false,
            Listener::Foreign => {
                all = false;
                if foreign_before.contains(&port) {
                    return Err(port);
                }
                foreign_now.insert(port);
            }
        }
    }
    *foreign_before = foreign_now;
    Ok(all)
}

/// True when a process's output says a bind failed because the port was taken.
pub fn says_port_taken(text: &str) -> bool {
    text.to_ascii_lowercase().contains("already in use")
}

/// A new, empty, unique directory under `std::env::temp_dir()`.
pub fn fresh_temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "ferrolb-test-{tag}-{}-{n}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The exit status of a started child that has already exited.
fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    child.as_mut().and_then(|c| c.try_wait().ok().flatten())
}

/// Polls `child` until it exits or `limit` passes.
fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll(limit, || match child.try_wait() {
        Ok(Some(status)) => Some(Some(status)),
        Ok(None) => None,
        Err(_) => Some(None),
    })
    .flatten()
}

/// Signals the process group led by `child`, escalating: `first`, then SIGTERM
/// and SIGKILL, each after `grace`. Reaps the child. Returns its exit status.
pub fn stop_group(child: &mut Child, first: Signal, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        // The leader is gone; make sure nothing it left in the group survives.
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        return Some(status);
    }
    let pgid = Pid::from_raw(child.id() as i32);
    for signal in [first, Signal::SIGTERM] {
        let _ = killpg(pgid, signal);
        if let Some(status) = wait_timeout(child, grace) {
            let _ = killpg(pgid, Signal::SIGKILL);
            return Some(status);
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.kill();
    child.wait().ok()
}

/// Why a start did not give a running server.
#[derive(Debug)]
enum StartError {
    /// One of its ports was taken by someone else: start again on other ports.
    PortTaken(String),
    /// Anything else: the test fails.
    Failed(String),
}

// ---------------------------------------------------------------------------
// Proxy: the binary under test
// ---------------------------------------------------------------------------

/// The binary under test: `$FERROLB_TEST_BIN` if set (e.g. `/usr/sbin/nginx`),
/// else the crate's own `ferrolb` binary.
pub fn proxy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERROLB_TEST_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    match option_env!("CARGO_BIN_EXE_ferrolb") {
        Some(bin) => PathBuf::from(bin),
        None => panic!(
            "this crate has no `ferrolb` binary target yet; set FERROLB_TEST_BIN=/usr/sbin/nginx \
             to run the end-to-end tests against nginx"
        ),
    }
}

/// Runs `BIN -t -p DIR -c CONF` (the configuration check) and returns its output.
pub fn check_config(dir: &Path, conf: &Path) -> std::process::Output {
    Command::new(proxy_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .output()
        .expect("run -t")
}

/// True when the binary under test is nginx itself (harness validation mode).
pub fn bin_is_nginx(bin: &Path) -> bool {
    bin.file_name()
        .map(|n| n.to_string_lossy().starts_with("nginx"))
        .unwrap_or(false)
}

/// Debian's nginx to compare answers with, when it is installed and ferrolb is not
/// it (the tests then run ferrolb alone).
pub fn reference_nginx() -> Option<PathBuf> {
    let bin = PathBuf::from("/usr/sbin/nginx");
    (bin.exists() && !bin_is_nginx(&proxy_bin())).then_some(bin)
}

/// Addresses the config makes the proxy listen on: its `listen` directives and
/// ferrolb's `ferrolb_admin` (port-only and `*:` listens become 127.0.0.1).
/// Good enough for the configs tests write.
pub fn listen_addrs(conf: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for stmt in conf.split([';', '{', '}']) {
        let stmt = stmt
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut words = stmt.split_whitespace();
        if !matches!(words.next(), Some("listen" | "ferrolb_admin")) {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if !addr.ends_with(']') => (h, p),
            _ => ("127.0.0.1", addr),
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let host = match host {
            "*" | "0.0.0.0" | "" => "127.0.0.1",
            "[::]" => "[::1]",
            h => h,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(mut it) = (host, port).to_socket_addrs() {
            if let Some(a) = it.next() {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
        }
    }
    addrs
}

/// The outcome of each reload the error log `log` records, in order; `None` for
/// one still under way.
///
/// ferrolb writes one line per reload once it is done: `configuration reloaded`,
/// or `...; the running configuration is kept`. nginx writes `reconfiguring`,
/// then either an `[emerg]` line (the old configuration stays) or `start worker
/// process N` for its new workers; the new configuration alone serves new
/// connections once every worker of the old one has logged `gracefully shutting
/// down` (they stop accepting then).
fn reload_outcomes(log: &str, nginx: bool) -> Vec<Option<Result<(), String>>> {
    let mut out = Vec::new();
    if !nginx {
        for line in log.lines() {
            if line.ends_with(": configuration reloaded") {
                out.push(Some(Ok(())));
            } else if line.contains("the running configuration is kept") {
                out.push(Some(Err(line.to_string())));
            }
        }
        return out;
    }
    // The pid in "2026/01/01 00:00:00 [notice] 123#123: ...".
    let pid_of = |line: &str| -> Option<u32> {
        let rest = &line[line.find("] ")? + 2..];
        rest[..rest.find('#')?].parse().ok()
    };
    struct Pending {
        old: HashSet<u32>,
        started: bool,
    }
    let mut live: HashSet<u32> = HashSet::new();
    let mut pending: Vec<(usize, Pending)> = Vec::new();
    for line in log.lines() {
        if line.ends_with(": reconfiguring") {
            out.push(None);
            pending.push((
                out.len() - 1,
                Pending {
                    old: live.clone(),
                    started: false,
                },
            ));
        } else if let Some(i) = line.find("start worker process ") {
            if let Ok(pid) = line[i + "start worker process ".len()..]
                .trim()
                .parse::<u32>()
            {
                live.insert(pid);
                if let Some((_, p)) = pending.last_mut() {
                    p.started = true;
                }
            }
        } else if line.ends_with(": gracefully shutting down") {
            if let Some(pid) = pid_of(line) {
                live.remove(&pid);
                for (_, p) in &mut pending {
                    p.old.remove(&pid);
                }
            }
        } else if line.contains("[emerg]") {
            if let Some((i, p)) = pending.last() {
                if !p.started {
                    out[*i] = Some(Err(line.to_string()));
                    pending.pop();
                }
            }
        }
        pending.retain(|(i, p)| {
            let done = p.started && p.old.is_empty();
            if done {
                out[*i] = Some(Ok(()));
            }
            !done
        });
    }
    out
}

/// A running balancer (ferrolb or nginx) with its own prefix directory:
/// `DIR/nginx.conf`, `DIR/error.log`, `DIR/nginx.pid`, `DIR/stdout.log`,
/// `DIR/stderr.log`, `DIR/logs/` (nginx's default access log lives there).
pub struct Proxy {
    /// The prefix directory (`-p`).
    pub dir: PathBuf,
    /// The binary being run.
    pub bin: PathBuf,
    child: Option<Child>,
    /// The text in the config file (without the harness lines).
    conf_text: String,
    /// The config text the running process has loaded.
    running_conf: String,
}

impl Proxy {
    /// Starts the proxy on a config made by `conf` from `N` ports of
    /// [`free_port`], waits until it listens on all its addresses, and returns it
    /// with the ports. When a port turns out to be taken (see "Ports" in the
    /// module doc), starts it again on fresh ports, at most [`START_ATTEMPTS`]
    /// times. Panics with the diagnostics on any other failure.
    ///
    /// `let (proxy, [listen, admin]) = Proxy::start_on(|[listen, admin]| conf(listen, admin));`
    pub fn start_on<const N: usize>(conf: impl Fn([u16; N]) -> String) -> (Proxy, [u16; N]) {
        Proxy::start_bin_on(proxy_bin(), conf)
    }

    /// [`Proxy::start_on`] with another binary (e.g. `/usr/sbin/nginx`, to compare
    /// answers on the same config).
    pub fn start_bin_on<const N: usize>(
        bin: PathBuf,
        conf: impl Fn([u16; N]) -> String,
    ) -> (Proxy, [u16; N]) {
        let mut taken = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ports: [u16; N] = std::array::from_fn(|_| free_port());
            match Proxy::try_start_bin(bin.clone(), &conf(ports)) {
                Ok(proxy) => return (proxy, ports),
                Err(StartError::PortTaken(why)) => {
                    eprintln!("ferrolb test: a port was taken, starting again on others: {why}");
                    taken.push(why);
                }
                Err(StartError::Failed(why)) => panic!("{why}"),
            }
        }
        panic!(
            "the proxy found a port taken in each of {START_ATTEMPTS} starts:\n{}",
            taken.join("\n")
        );
    }

    /// Starts the proxy on `conf_text` as is (its ports cannot move: no retry, see
    /// [`Proxy::start_on`]). Writes it (with the harness's `pid` and `error_log`
    /// lines put in front) to a fresh `DIR/nginx.conf`, runs
    /// `BIN -p DIR/ -c DIR/nginx.conf` and waits (10 s at most) until it listens
    /// on every address of the config. Panics with the error log if it does not.
    pub fn start(conf_text: &str) -> Proxy {
        match Proxy::try_start(conf_text) {
            Ok(proxy) => proxy,
            Err(StartError::PortTaken(why) | StartError::Failed(why)) => panic!("{why}"),
        }
    }

    fn try_start(conf_text: &str) -> Result<Proxy, StartError> {
        Proxy::try_start_bin(proxy_bin(), conf_text)
    }

    fn try_start_bin(bin: PathBuf, conf_text: &str) -> Result<Proxy, StartError> {
        let dir = fresh_temp_dir("proxy");
        fs::create_dir_all(dir.join("logs")).expect("create logs dir");
        let mut proxy = Proxy {
            dir,
            bin,
            child: None,
            conf_text: String::new(),
            running_conf: String::new(),
        };
        proxy.write_conf(conf_text);
        proxy.running_conf = proxy.conf_text.clone();
        proxy.spawn();
        let addrs = listen_addrs(conf_text);
        assert!(
            !addrs.is_empty(),
            "no `listen` directive found in the test config"
        );
        proxy.wait_listening(&addrs, true)?;
        Ok(proxy)
    }

    /// Path of the config file the proxy runs with.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// The proxy's error log (`DIR/error.log`).
    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// Everything useful for a failure message.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- {} error.log ---\n{}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.dir.display(),
            self.error_log(),
            read_lossy(&self.dir.join("stderr.log")),
            read_lossy(&self.dir.join("stdout.log")),
        )
    }

    /// Process id of the (master) process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy not running").id()
    }

    /// Sends `signal` to the (master) process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to the proxy: {e}"));
    }

    /// Waits (at most `limit`) until the error log has a line containing `needle`
    /// past byte `from` (0, or an earlier [`Proxy::error_log`]'s length); returns
    /// that line. Panics with the diagnostics otherwise.
    pub fn wait_log(&self, from: usize, needle: &str, limit: Duration) -> String {
        poll(limit, || {
            let log = self.error_log();
            log.get(from..)?
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "no error log line with {needle:?} after {limit:?}\n{}",
                self.diagnostics()
            )
        })
    }

    /// Writes the config text (with the harness lines) without signalling the proxy.
    pub fn write_conf(&mut self, conf_text: &str) {
        let full = format!(
            "pid {dir}/nginx.pid;\nerror_log {dir}/error.log info;\n{conf_text}",
            dir = self.dir.display()
        );
        fs::write(self.conf_path(), full).expect("write nginx.conf");
        self.conf_text = conf_text.to_string();
    }

    fn base_command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        // A trailing slash: nginx concatenates the prefix and relative paths.
        cmd.arg("-p").arg(format!("{}/", self.dir.display()));
        cmd.arg("-c").arg(self.conf_path());
        cmd
    }

    fn spawn(&mut self) {
        let mut cmd = self.base_command();
        if bin_is_nginx(&self.bin) {
            cmd.arg("-g").arg("daemon off;");
        }
        let stdout = fs::File::create(self.dir.join("stdout.log")).expect("stdout.log");
        let stderr = fs::File::create(self.dir.join("stderr.log")).expect("stderr.log");
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawn {} -p {}: {e}",
                self.bin.display(),
                self.dir.display()
            )
        });
        self.child = Some(child);
    }

    /// Waits until the process owns a listening socket on every address of
    /// `addrs` and nobody else listens on those ports. `starting`: a bind failure
    /// in its output means a taken port (nginx retries a failed bind for 2.5 s
    /// before it exits).
    fn wait_listening(&mut self, addrs: &[SocketAddr], starting: bool) -> Result<(), StartError> {
        let pid = self.pid();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut foreign = HashSet::new();
        loop {
            if let Some(status) = exited(&mut self.child) {
                let diag = self.diagnostics();
                let why = format!(
                    "{} exited ({status}) before listening on {addrs:?}\n{diag}",
                    self.bin.display()
                );
                return Err(if says_port_taken(&diag) {
                    StartError::PortTaken(why)
                } else {
                    StartError::Failed(why)
                });
            }
            match check_ports(addrs, pid, &mut foreign) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(port) => {
                    return Err(StartError::PortTaken(format!(
                        "another process listens on port {port} too\n{}",
                        self.diagnostics()
                    )))
                }
            }
            if starting && says_port_taken(&self.diagnostics()) {
                return Err(StartError::PortTaken(format!(
                    "{} reports a port already in use\n{}",
                    self.bin.display(),
                    self.diagnostics()
                )));
            }
            if Instant::now() >= deadline {
                return Err(StartError::Failed(format!(
                    "{} not listening on all of {addrs:?} after {START_TIMEOUT:?}\n{}",
                    self.bin.display(),
                    self.diagnostics()
                )));
            }
            sleep(POLL_STEP);
        }
    }

    /// How many reloads the error log shows begun or done.
    fn reloads_logged(&self) -> usize {
        reload_outcomes(&self.error_log(), bin_is_nginx(&self.bin)).len()
    }

    /// Waits for the outcome of reload number `index` (0-based) in the error log;
    /// when it succeeded, also until the process listens on every address the
    /// new config adds.
    fn wait_reload(&mut self, index: usize) -> Result<(), String> {
        let nginx = bin_is_nginx(&self.bin);
        let outcome = poll(RELOAD_TIMEOUT, || {
            reload_outcomes(&self.error_log(), nginx)
                .get(index)
                .cloned()
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "no outcome of reload #{} in the error log after {RELOAD_TIMEOUT:?} \
                 (ferrolb: \"configuration reloaded\" or \"the running configuration is kept\"; \
                 nginx: new workers started and old ones \"gracefully shutting down\", or [emerg])\n{}",
                index + 1,
                self.diagnostics()
            )
        });
        outcome?;
        let previous = std::mem::replace(&mut self.running_conf, self.conf_text.clone());
        // Addresses that stay were checked when they were added.
        let kept = listen_addrs(&previous);
        let added: Vec<SocketAddr> = listen_addrs(&self.running_conf)
            .into_iter()
            .filter(|a| !kept.contains(a))
            .collect();
        match self.wait_listening(&added, false) {
            Ok(()) => Ok(()),
            Err(StartError::PortTaken(why)) => {
                // Running the new config, but sharing a port: let the test move it.
                Err(format!("reloaded, but a new port is shared: {why}"))
            }
            Err(StartError::Failed(why)) => {
                self.running_conf = previous;
                panic!("after reload #{}: {why}", index + 1)
            }
        }
    }

    /// Asks the running proxy to re-read its config: `BIN -p DIR -c CONF -s reload`
    /// (which signals the pid in `DIR/nginx.pid`; panics if that command fails),
    /// then waits for the reload's outcome in the error log (see
    /// [`reload_outcomes`]) and, when it succeeded, until every address the new
    /// config adds listens (owned by the proxy alone). `Err(line)` when the proxy kept its running configuration
    /// (e.g. a new listen port was taken: the test may retry on another).
    ///
    /// With ferrolb the new config is in force for every request accepted after
    /// this returns. With nginx, for every new connection; a kept-alive one may
    /// still be served by an old worker until it closes.
    pub fn try_reload(&mut self) -> Result<(), String> {
        let index = self.reloads_logged();
        let out = self
            .base_command()
            .arg("-s")
            .arg("reload")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {} -s reload: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "`{} -s reload` failed ({}): {}{}\n{}",
            self.bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        self.wait_reload(index)
    }

    /// [`Proxy::try_reload`] that panics unless the new config is in force.
    pub fn reload(&mut self) {
        if let Err(why) = self.try_reload() {
            panic!("reload rejected: {why}\n{}", self.diagnostics());
        }
    }

    /// Replaces the config text (same rules as [`Proxy::start`]) and reloads.
    pub fn reload_with(&mut self, conf_text: &str) {
        self.write_conf(conf_text);
        self.reload();
    }

    /// Replaces the config text and reloads; see [`Proxy::try_reload`].
    pub fn try_reload_with(&mut self, conf_text: &str) -> Result<(), String> {
        self.write_conf(conf_text);
        self.try_reload()
    }

    /// Sends SIGHUP straight to the master process (the other way to reload; it
    /// also reaches a config `-s reload` would refuse) and waits for the outcome
    /// like [`Proxy::try_reload`].
    pub fn sighup(&mut self) -> Result<(), String> {
        let index = self.reloads_logged();
        self.signal(Signal::SIGHUP);
        self.wait_reload(index)
    }

    /// Stops the proxy: SIGTERM to its process group, SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        stop_group(&mut child, Signal::SIGTERM, Duration::from_secs(3))
    }

    /// Waits (at most `limit`) for the proxy to exit by itself; reaps it.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = wait_timeout(self.child.as_mut()?, limit)?;
        self.child = None;
        Some(status)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "ferrolb test: proxy dir kept for debugging: {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// Django: the article's backends
// ---------------------------------------------------------------------------

pub fn django_env() -> (PathBuf, PathBuf) {
    let python = std::env::var_os("FERROLB_TEST_PYTHON").filter(|v| !v.is_empty());
    let dir = std::env::var_os("FERROLB_DJANGO_DIR").filter(|v| !v.is_empty());
    match (python, dir) {
        (Some(p), Some(d)) => (PathBuf::from(p), PathBuf::from(d)),
        _ => panic!(
            "FERROLB_TEST_PYTHON and FERROLB_DJANGO_DIR must be set for the Django end-to-end \
             tests: run them through `scripts/test.sh` (it creates .venv with Django and exports \
             both), or export FERROLB_TEST_PYTHON=$PWD/.venv/bin/python \
             FERROLB_DJANGO_DIR=$PWD/examples/django yourself"
        ),
    }
}

/// One `manage.py runserver 127.0.0.1:PORT --noreload` of `examples/django`,
/// in its own process group, logging its POSTs to `DIR/post.log`.
pub struct Django {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its scratch directory (output and POST log).
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Django {
    /// Starts `n` instances on ports of [`free_port`], in parallel, and waits
    /// until each owns its port and answers HTTP. An instance whose port was
    /// taken is started again on another (at most [`START_ATTEMPTS`] times).
    pub fn start_n(n: usize) -> Vec<Django> {
        let mut all: Vec<Django> = (0..n).map(|_| Django::spawn(free_port())).collect();
        for d in &mut all {
            let mut attempt = 1;
            loop {
                match d.wait_ready() {
                    Ok(()) => break,
                    Err(StartError::PortTaken(why)) if attempt < START_ATTEMPTS => {
                        eprintln!("ferrolb test: runserver's port was taken, moving: {why}");
                        attempt += 1;
                        d.kill();
                        d.port = free_port();
                        d.spawn_child();
                    }
                    Err(StartError::PortTaken(why) | StartError::Failed(why)) => panic!("{why}"),
                }
            }
        }
        all
    }

    fn spawn(port: u16) -> Django {
        let dir = fresh_temp_dir(&format!("django-{port}"));
        let mut d = Django {
            port,
            dir,
            child: None,
            starts: 0,
        };
        d.spawn_child();
        d
    }

    fn spawn_child(&mut self) {
        let (python, django_dir) = django_env();
        self.starts += 1;
        let out_path = self.dir.join(format!("runserver-{}.log", self.starts));
        let out = fs::File::create(&out_path).expect("runserver log");
        let err = out.try_clone().expect("clone log");
        let child = Command::new(&python)
            .arg("manage.py")
            .arg("runserver")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--noreload")
            .current_dir(&django_dir)
            .env("FERROLB_POST_LOG", self.post_log_path())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} manage.py runserver: {e}", python.display()));
        self.child = Some(child);
    }

    /// Waits (10 s at most) until the server process owns its port and answers
    /// a GET with any status.
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.child.as_ref().expect("runserver started").id();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut foreign = HashSet::new();
        loop {
            if let Some(status) = exited(&mut self.child) {
                let output = self.output();
                let why = format!(
                    "runserver on port {} exited ({status}) before answering\n{output}",
                    self.port
                );
                return Err(if says_port_taken(&output) {
                    StartError::PortTaken(why)
                } else {
                    StartError::Failed(why)
                });
            }
            match check_ports(&[addr], pid, &mut foreign) {
                Ok(true) => {
                    if http_get(self.port, "/", "127.0.0.1").is_ok() {
                        return Ok(());
                    }
                }
                Ok(false) => {}
                Err(port) => {
                    return Err(StartError::PortTaken(format!(
                        "another process listens on port {port}"
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(StartError::Failed(format!(
                    "runserver on port {} not answering after {:?}\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.output()
                )));
            }
            sleep(POLL_STEP);
        }
    }

    /// Everything runserver printed (all runs).
    pub fn output(&self) -> String {
        (1..=self.starts)
            .map(|n| read_lossy(&self.dir.join(format!("runserver-{n}.log"))))
            .collect::<Vec<_>>()
            .join("\n--- restarted ---\n")
    }

    /// Where this instance appends "<X-Request-Id> <port> <body-len>" per POST.
    pub fn post_log_path(&self) -> PathBuf {
        self.dir.join("post.log")
    }

    /// The `X-Request-Id`s of the POSTs this instance received, in order.
    pub fn posted_ids(&self) -> Vec<String> {
        read_lossy(&self.post_log_path())
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// True while the runserver process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops it like Ctrl-C would: SIGINT to its process group, then waits for
    /// it to exit (SIGTERM after 5 s, SIGKILL after 10 s, in case SIGINT was
    /// ignored: a shell starts background jobs with SIGINT ignored) and until its
    /// port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Signal::SIGINT, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("runserver on port {} did not exit", self.port));
        }
        wait_refused(
            self.port,
            START_TIMEOUT,
            &format!("runserver on port {} has exited", self.port),
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (stopping it first if needed) and waits
    /// until it answers. The port cannot move (the proxy's config names it):
    /// panics if someone took it in between.
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn_child();
        if let Err(StartError::PortTaken(why) | StartError::Failed(why)) = self.wait_ready() {
            panic!(
                "runserver could not start again on its port {}: {why}",
                self.port
            );
        }
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "ferrolb test: runserver {} dir kept for debugging: {}",
                self.port,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The backend port in the article's "<h1>Using port N<h1>" (or the POST
    /// view's "Posted to port N") body.
    pub fn backend_port(&self) -> Option<u16> {
        let text = self.text();
        let rest = &text[text.find("port ")? + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
            .unwrap_or(false)
    }
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn write_request(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("connection") {
        req.push_str(if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
    }
    if (!body.is_empty() || method == "POST" || method == "PUT")
        && !has("content-length")
        && !has("transfer-encoding")
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Reads one response. Returns it and whether the connection can be reused.
fn read_response(reader: &mut BufReader<TcpStream>, method: &str) -> io::Result<(Response, bool)> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status_line = line.trim_end().to_string();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the response header",
                ));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (n, v) = h
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {h:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends: the real response follows
        }
        let http10 = version == "HTTP/1.0";
        let mut reusable = !resp.wants_close() && !http10;
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok((resp, reusable));
        }
        let chunked = resp
            .header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        if chunked {
            loop {
                let mut size_line = String::new();
                if reader.read_line(&mut size_line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    ));
                }
                let size_hex = size_line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    // trailers, up to the empty line
                    loop {
                        let mut t = String::new();
                        if reader.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                reader.read_exact(&mut resp.body[start..])?;
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            resp.body.resize(len, 0);
            reader.read_exact(&mut resp.body)?;
        } else {
            reader.read_to_end(&mut resp.body)?;
            reusable = false;
        }
        return Ok((resp, reusable));
    }
}

/// Sends one request on a fresh connection (`Connection: close` unless
/// `headers` say otherwise) and reads the response.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = connect(port)?;
    write_request(&mut stream, method, path, host, headers, body, false)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method).map(|(r, _)| r)
}

/// Sends `bytes` as they are on a fresh connection and reads one response to a GET.
pub fn raw_request(port: u16, bytes: &[u8]) -> io::Result<Response> {
    let mut stream = connect(port)?;
    stream.write_all(bytes)?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, "GET").map(|(r, _)| r)
}

/// `GET path` with `Host: host` on a fresh connection.
pub fn http_get(port: u16, path: &str, host: &str) -> io::Result<Response> {
    http_request(port, "GET", path, host, &[], b"")
}

/// `POST path` with `Host: host`, extra `headers` and `body` on a fresh
/// connection (form-encoded unless `headers` set a Content-Type).
pub fn http_post(
    port: u16,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        all.push(("Content-Type", "application/x-www-form-urlencoded"));
    }
    http_request(port, "POST", path, host, &all, body)
}

/// A keep-alive client: one connection reused for as long as the server keeps
/// it open; a new one is made transparently when the previous one was closed
/// by a `Connection: close` (or EOF-delimited) response. A request that fails
/// on a reused connection is NOT retried: the error is returned.
pub struct KeepAlive {
    port: u16,
    host: String,
    reader: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub connections: u32,
}

impl KeepAlive {
    /// A client for 127.0.0.1:`port` sending `Host: host`; connects lazily.
    pub fn new(port: u16, host: &str) -> KeepAlive {
        KeepAlive {
            port,
            host: host.to_string(),
            reader: None,
            connections: 0,
        }
    }

    /// Sends one request with `Connection: keep-alive`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self.reader.is_none() {
            self.reader = Some(BufReader::new(connect(self.port)?));
            self.connections += 1;
        }
        let reader = self.reader.as_mut().expect("connected");
        let result = write_request(
            reader.get_mut(),
            method,
            path,
            &self.host,
            headers,
            body,
            true,
        )
        .and_then(|()| read_response(reader, method));
        match result {
            Ok((resp, reusable)) => {
                if !reusable {
                    self.reader = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.reader = None;
                Err(e)
            }
        }
    }

    /// `GET path` on the kept-alive connection.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// True while a connection is open.
    pub fn is_connected(&self) -> bool {
        self.reader.is_some()
    }
}

/// Runs `ferrolb -t` (the binary under test) on `text` written to `DIR/nginx.conf`:
/// whether the test passed, and its stderr.
pub fn config_test(dir: &Path, text: &str) -> (bool, String) {
    let conf = dir.join("nginx.conf");
    fs::write(&conf, text).expect("write the config");
    let out = std::process::Command::new(proxy_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("run -t");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A response body to compare between servers: a standard error page names its
/// server, so only its heading line counts; any other body as it is.
pub fn page_heading_or_body(text: String) -> String {
    match text.find("<h1>") {
        Some(i) => text[i..].lines().next().unwrap_or("").to_owned(),
        None => text,
    }
}
