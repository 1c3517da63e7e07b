//! End-to-end harness shared by the integration tests (std + tokio + nix only).
//!
//! * [`free_port`]: a loopback port nobody else in this process was handed.
//! * [`Proxy`]: the binary under test (ferrolb, or nginx via `FERROLB_TEST_BIN`)
//!   started on a config text in a fresh temp dir.
//! * [`Django`]: the article's Django project under `manage.py runserver`.
//! * [`http_get`], [`http_post`], [`http_request`], [`KeepAlive`]: a tiny blocking
//!   HTTP/1.1 client with a 10 s timeout on every socket operation.
//!
//! The harness itself can be validated against real nginx:
//! `FERROLB_TEST_BIN=/usr/sbin/nginx cargo test --test django`.
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
/// How long [`Proxy::start`] and [`Django::start`] wait for their port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Ports and temp dirs
// ---------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1. Each port is handed out at most once per test
/// process, so concurrently running tests never get the same one (the OS could
/// otherwise return a port again after its probe socket is closed).
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

/// Polls `child` until it exits or `limit` passes.
/// The exit status of a started child that has already exited.
fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    child.as_mut().and_then(|c| c.try_wait().ok().flatten())
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(_) => return None,
        }
    }
}

/// Signals the process group led by `child`, escalating: `first`, then SIGTERM
/// and SIGKILL, each after `grace`. Reaps the child. Returns its exit status.
fn stop_group(child: &mut Child, first: Signal, grace: Duration) -> Option<ExitStatus> {
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

/// Waits until something accepts TCP connections on `addr`.
fn wait_for_accept(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        sleep(Duration::from_millis(25));
    }
    false
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

/// True when the binary under test is nginx itself (harness validation mode).
pub fn bin_is_nginx(bin: &Path) -> bool {
    bin.file_name()
        .map(|n| n.to_string_lossy().starts_with("nginx"))
        .unwrap_or(false)
}

/// Addresses of the `listen` directives in `conf` (port-only and `*:` listens
/// become 127.0.0.1). Good enough for the configs tests write.
pub fn listen_addrs(conf: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for stmt in conf.split([';', '{', '}']) {
        let stmt = stmt
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut words = stmt.split_whitespace();
        if words.next() != Some("listen") {
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

/// A running balancer (ferrolb or nginx) with its own prefix directory:
/// `DIR/nginx.conf`, `DIR/error.log`, `DIR/nginx.pid`, `DIR/stdout.log`,
/// `DIR/stderr.log`, `DIR/logs/` (nginx's default access log lives there).
pub struct Proxy {
    /// The prefix directory (`-p`).
    pub dir: PathBuf,
    /// The binary being run.
    pub bin: PathBuf,
    child: Option<Child>,
    conf_text: String,
}

impl Proxy {
    /// Writes `conf_text` (with the harness's `pid` and `error_log` lines put in
    /// front) to a fresh `DIR/nginx.conf`, runs `BIN -p DIR/ -c DIR/nginx.conf`
    /// and waits (10 s at most) until every `listen` address in it accepts.
    /// Panics with the error log if it does not.
    pub fn start(conf_text: &str) -> Proxy {
        let bin = proxy_bin();
        let dir = fresh_temp_dir("proxy");
        fs::create_dir_all(dir.join("logs")).expect("create logs dir");
        let mut proxy = Proxy {
            dir,
            bin,
            child: None,
            conf_text: String::new(),
        };
        proxy.write_conf(conf_text);
        proxy.spawn();
        proxy
    }

    /// Path of the config file the proxy runs with.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// The proxy's error log (`DIR/error.log`), plus anything it printed on
    /// stdout/stderr, for assertion messages.
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
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let addrs = listen_addrs(&self.conf_text);
        assert!(
            !addrs.is_empty(),
            "no `listen` directive found in the test config"
        );
        let deadline = Instant::now() + START_TIMEOUT;
        for addr in addrs {
            loop {
                if let Some(status) = exited(&mut self.child) {
                    panic!(
                        "{} exited ({status}) before listening on {addr}\n{}",
                        self.bin.display(),
                        self.diagnostics()
                    );
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "{} not listening on {addr} after {:?}\n{}",
                        self.bin.display(),
                        START_TIMEOUT,
                        self.diagnostics()
                    );
                }
                sleep(Duration::from_millis(25));
            }
        }
    }

    /// Asks the running proxy to re-read its config: `BIN -p DIR -c CONF -s reload`
    /// (which signals the pid in `DIR/nginx.pid`). Panics if that command fails.
    /// Then waits a moment and until every `listen` address accepts. A reload is
    /// asynchronous: tests that need the new config in force should poll for it.
    pub fn reload(&mut self) {
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
        sleep(Duration::from_millis(300));
        self.wait_listening();
    }

    /// Replaces the config text (same rules as [`Proxy::start`]) and reloads.
    pub fn reload_with(&mut self, conf_text: &str) {
        self.write_conf(conf_text);
        self.reload();
    }

    /// Sends SIGHUP straight to the master process (the other way to reload).
    pub fn sighup(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGHUP).expect("SIGHUP proxy");
    }

    /// Stops the proxy: SIGTERM to its process group, SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        stop_group(&mut child, Signal::SIGTERM, Duration::from_secs(3))
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
    /// Starts one instance on `port` and waits until it answers HTTP.
    pub fn start(port: u16) -> Django {
        let mut d = Django::spawn(port);
        d.wait_ready();
        d
    }

    /// Starts one instance per port, in parallel, and waits for all of them.
    pub fn start_all(ports: &[u16]) -> Vec<Django> {
        let mut all: Vec<Django> = ports.iter().map(|&p| Django::spawn(p)).collect();
        for d in &mut all {
            d.wait_ready();
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

    /// Waits (10 s at most) until the server answers a GET with any status.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = exited(&mut self.child) {
                panic!(
                    "runserver on port {} exited ({status}) before answering\n{}",
                    self.port,
                    self.output()
                );
            }
            if http_get(self.port, "/", "127.0.0.1").is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "runserver on port {} not answering after {:?}\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.output()
                );
            }
            sleep(Duration::from_millis(50));
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
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts after runserver exited",
                self.port
            );
            sleep(Duration::from_millis(25));
        }
    }

    /// Starts it again on the same port (stopping it first if needed) and waits
    /// until it answers.
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn_child();
        self.wait_ready();
    }
}

impl Drop for Django {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
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
