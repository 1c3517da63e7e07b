//! `ferrolb up` end to end, with real worker processes: Django `runserver` and
//! gunicorn from examples/django (run through `scripts/test.sh`, which provides the
//! venv), and `false` for a worker that cannot start.
//!
//! Every loop is bounded and waits for something observable (a worker state in
//! `GET /workers`, a line of output, the load's progress), never for time; the
//! balancer and admin ports come from `free_port` and a start that finds one taken
//! is retried on fresh ones (see "Ports" in tests/common/mod.rs); each ferrolb runs
//! in a fresh directory (its pid file and control socket live there).

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{
    check_ports, django_env, free_port, fresh_temp_dir, http_get, http_request, proxy_bin,
    says_port_taken, wait_until, START_ATTEMPTS, START_TIMEOUT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `ferrolb up` in its own directory, with an admin listener.
struct Up {
    dir: PathBuf,
    child: Child,
    listen: u16,
    admin: u16,
    /// Every worker pid seen, for the cleanup in `Drop`.
    seen: Vec<u32>,
}

impl Up {
    /// Starts `ferrolb up` and waits until it listens on its balancer and admin
    /// ports; starts it again on fresh ones when one was taken.
    fn start(workers: u16, extra: &[&str], command: &[OsString]) -> Up {
        for attempt in 1..=START_ATTEMPTS {
            let mut up = Up::spawn(workers, extra, command);
            match up.wait_listening() {
                Ok(()) => return up,
                Err(why) if attempt < START_ATTEMPTS && says_port_taken(&why) => {
                    eprintln!("a port was taken, starting again on others:\n{why}");
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    fn spawn(workers: u16, extra: &[&str], command: &[OsString]) -> Up {
        let dir = fresh_temp_dir("up");
        let (listen, admin) = (free_port(), free_port());
        let out = fs::File::create(dir.join("out.log")).expect("out.log");
        let err = out.try_clone().expect("clone");
        let mut cmd = Command::new(ferrolb_bin());
        cmd.arg("up")
            .arg("-w")
            .arg(workers.to_string())
            .arg("--first-worker-port")
            .arg(free_port().to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .args(extra)
            .arg("--")
            .args(command)
            .current_dir(&dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().expect("spawn ferrolb up");
        Up {
            dir,
            child,
            listen,
            admin,
            seen: Vec::new(),
        }
    }

    /// Waits until ferrolb owns listening sockets on its balancer and admin
    /// ports and nobody else listens there. `Err` with the output (which says
    /// "already in use", or this function does, when a port was taken).
    fn wait_listening(&mut self) -> Result<(), String> {
        let addrs = [self.listen, self.admin].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let pid = self.child.id();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut foreign = std::collections::HashSet::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("ferrolb up exited ({status})\n{}", self.output()));
            }
            match check_ports(&addrs, pid, &mut foreign) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(port) => {
                    return Err(format!(
                        "port {port} already in use by another process\n{}",
                        self.output()
                    ))
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "ferrolb up not listening on {addrs:?} after {START_TIMEOUT:?}\n{}",
                    self.output()
                ));
            }
            sleep(common::POLL_STEP);
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }

    /// `GET /workers`: (port, pid, state) of each worker.
    fn workers(&mut self) -> Vec<(u16, Option<u32>, String)> {
        let Ok(r) = http_get(self.admin, "/workers", "127.0.0.1") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let list: Vec<(u16, Option<u32>, String)> = v["workers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|w| {
                        (
                            w["port"].as_u64().unwrap_or(0) as u16,
                            w["pid"].as_u64().map(|p| p as u32),
                            w["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (_, pid, _) in &list {
            if let Some(p) = pid {
                if !self.seen.contains(p) {
                    self.seen.push(*p);
                }
            }
        }
        list
    }

    /// Waits (bounded) until `n` workers are healthy; returns them.
    fn wait_healthy(&mut self, n: usize, limit: Duration) -> Vec<(u16, u32)> {
        let deadline = Instant::now() + limit;
        loop {
            let w = self.workers();
            let healthy: Vec<(u16, u32)> = w
                .iter()
                .filter(|(_, pid, s)| s == "healthy" && pid.is_some())
                .map(|(port, pid, _)| (*port, pid.unwrap_or(0)))
                .collect();
            if healthy.len() == n {
                return healthy;
            }
            assert!(
                Instant::now() < deadline,
                "workers not healthy after {limit:?}: {w:?}\n{}",
                self.output()
            );
            assert!(
                self.child.try_wait().ok().flatten().is_none(),
                "ferrolb exited\n{}",
                self.output()
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, s: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), s);
    }

    /// Waits (bounded) for ferrolb to exit.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // Whatever happened, leave nothing behind: ferrolb, then any worker group.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &p in &self.seen {
            let _ = nix::sys::signal::killpg(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
    }
}

fn ferrolb_bin() -> PathBuf {
    // `up` is ferrolb's own; the harness's nginx mode does not apply.
    match option_env!("CARGO_BIN_EXE_ferrolb") {
        Some(b) => PathBuf::from(b),
        None => proxy_bin(),
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn runserver(extra: &[&str]) -> Vec<OsString> {
    let (python, dir) = django_env();
    let mut v = vec![
        python.into_os_string(),
        dir.join("manage.py").into_os_string(),
        "runserver".into(),
    ];
    v.extend(extra.iter().map(OsString::from));
    v.push("{port}".into());
    v
}

fn gunicorn() -> Vec<OsString> {
    let (python, dir) = django_env();
    let venv_bin = python.parent().map(Path::to_path_buf).unwrap_or_default();
    vec![
        venv_bin.join("gunicorn").into_os_string(),
        "--chdir".into(),
        dir.into_os_string(),
        "-b".into(),
        "127.0.0.1:{port}".into(),
        "mysite.wsgi".into(),
    ]
}

/// Whether `pid` is a live process (a zombie is dead: it runs nothing).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Every live process whose process group is one of `groups`.
fn group_members(groups: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the name: state, ppid, pgrp.
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" {
            if let Ok(pgrp) = f[2].parse::<u32>() {
                if groups.contains(&pgrp) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// A bounded load loop on `threads` threads against the balancer: each thread sends
/// sequential GETs until `stop` is set or `max_each` requests. Counts, per backend
/// port, the requests it answered, as they happen.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    by_port: Arc<Mutex<BTreeMap<u16, u64>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, threads: usize, max_each: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let by_port = Arc::new(Mutex::new(BTreeMap::new()));
        let handles = (0..threads)
            .map(|_| {
                let (stop, ok, failed, by_port) =
                    (stop.clone(), ok.clone(), failed.clone(), by_port.clone());
                std::thread::spawn(move || {
                    for _ in 0..max_each {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match http_get(port, "/test_load_banlance/", "127.0.0.1") {
                            Ok(r) if r.status == 200 => {
                                if let Some(p) = r.backend_port() {
                                    *by_port.lock().unwrap().entry(p).or_default() += 1;
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                eprintln!("load: status {} {}", r.status, r.text());
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("load: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            by_port,
            handles,
        }
    }

    fn total(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// Requests answered by the backend on `port` so far.
    fn served_by(&self, port: u16) -> u64 {
        self.by_port
            .lock()
            .unwrap()
            .get(&port)
            .copied()
            .unwrap_or(0)
    }

    /// Waits (at most `limit`) until `n` more requests have been answered.
    fn wait_ok(&self, n: u64, limit: Duration, what: &str) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        wait_until(
            limit,
            &format!("{n} more successful requests through the balancer ({what})"),
            || (self.ok.load(Ordering::Relaxed) >= target).then_some(()),
        );
    }

    fn finish(self) -> (u64, u64, BTreeSet<u16>) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
        let seen = self.by_port.lock().unwrap().keys().copied().collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            seen,
        )
    }
}

#[test]
fn runserver_workers_all_answer_and_admin_restart_replaces_them() {
    let mut up = Up::start(4, &[], &runserver(&["--noreload"]));
    let workers = up.wait_healthy(4, Duration::from_secs(60));
    let ports: BTreeSet<u16> = workers.iter().map(|w| w.0).collect();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let r = http_get(up.listen, "/test_load_banlance/", "127.0.0.1").expect("GET");
        assert_eq!(r.status, 200, "{}", r.text());
        seen.extend(r.backend_port());
        if seen == ports {
            break;
        }
    }
    assert_eq!(seen, ports, "every worker answers through the balancer");
    let out = up.output();
    assert!(
        out.contains("ferrolb up: balancing http://127.0.0.1:"),
        "{out}"
    );
    for (port, pid) in &workers {
        assert!(
            out.contains(&format!("{port} | ")),
            "prefixed output of {port}"
        );
        assert!(out.contains(&pid.to_string()), "summary shows pid {pid}");
    }

    // POST /workers/restart: 202, then every worker is replaced.
    let r =
        http_request(up.admin, "POST", "/workers/restart", "127.0.0.1", &[], b"").expect("POST");
    assert_eq!(r.status, 202, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = up.workers();
        let replaced = now.iter().all(|(port, pid, state)| {
            state == "healthy"
                && workers
                    .iter()
                    .any(|(p, old)| p == port && Some(*old) != *pid)
        });
        if replaced && now.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restart did not finish: {now:?}\n{}",
            up.output()
        );
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn kill_9_of_a_worker_under_load_fails_no_request() {
    let mut up = Up::start(4, &[], &runserver(&["--noreload"]));
    let workers = up.wait_healthy(4, Duration::from_secs(60));
    let load = Load::start(up.listen, 2, 20_000);
    load.wait_ok(100, Duration::from_secs(30), "before the kill");
    let (victim_port, victim_pid) = workers[1];
    kill(Pid::from_raw(victim_pid as i32), Signal::SIGKILL).expect("kill -9");
    // It comes back with a new pid and is healthy again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let w = up.workers();
        if w.iter()
            .any(|(p, pid, s)| *p == victim_port && s == "healthy" && *pid != Some(victim_pid))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker {victim_port} not back: {w:?}\n{}",
            up.output()
        );
        sleep(Duration::from_millis(100));
    }
    // Keep the load on after its return until it has served again, and for 200
    // more requests.
    let served_before = load.served_by(victim_port);
    wait_until(
        Duration::from_secs(30),
        &format!("the restarted worker {victim_port} to serve a request"),
        || (load.served_by(victim_port) > served_before).then_some(()),
    );
    load.wait_ok(200, Duration::from_secs(30), "after the worker's return");
    let (ok, failed, seen) = load.finish();
    eprintln!("kill -9 under load: {ok} ok, {failed} failed");
    assert!(
        up.output()
            .contains(&format!("worker {victim_port}: exited")),
        "{}",
        up.output()
    );
    assert_eq!(failed, 0, "failed GETs during kill -9\n{}", up.output());
    assert!(ok > 100, "the load loop ran ({ok})");
    assert!(
        seen.contains(&victim_port),
        "the restarted worker serves again: {seen:?}"
    );
}

#[test]
fn rolling_restart_of_gunicorn_under_load_fails_no_request() {
    let mut up = Up::start(4, &["--grace", "5"], &gunicorn());
    let before = up.wait_healthy(4, Duration::from_secs(60));
    let load = Load::start(up.listen, 2, 20_000);
    load.wait_ok(100, Duration::from_secs(30), "before the restart");
    // `ferrolb -s restart` from ferrolb up's directory answers when the restart is done.
    let at_start = load.total();
    let status = Command::new(ferrolb_bin())
        .args(["-s", "restart"])
        .current_dir(&up.dir)
        .status()
        .expect("ferrolb -s restart");
    assert!(status.success(), "-s restart failed\n{}", up.output());
    let during = load.total() - at_start;
    // At least 2,000 requests in all, the restart included.
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.total() < 2_000 && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    let (ok, failed, seen) = load.finish();
    eprintln!(
        "rolling restart under load: {ok} ok, {failed} failed ({during} sent during the restart)"
    );
    let after = up.wait_healthy(4, Duration::from_secs(10));
    for (port, pid) in &before {
        let new = after.iter().find(|(p, _)| p == port).map(|w| w.1);
        assert!(
            new.is_some_and(|n| n != *pid),
            "worker {port} kept pid {pid}: {after:?}"
        );
    }
    assert_eq!(
        failed,
        0,
        "failed requests during the rolling restart\n{}",
        up.output()
    );
    assert!(ok + failed >= 2_000, "only {} requests", ok + failed);
    assert_eq!(seen.len(), 4, "{seen:?}");
}

/// Runserver *with* its autoreloader: the server runs in a child of the worker, which
/// only a process-group kill reaches.
fn stop_leaves_nothing(signal: Signal) {
    let mut up = Up::start(2, &["--grace", "3"], &runserver(&[]));
    let workers = up.wait_healthy(2, Duration::from_secs(60));
    let groups: Vec<u32> = workers.iter().map(|w| w.1).collect();
    // The autoreloader's child has started once the worker is ready.
    let members = group_members(&groups);
    assert!(
        members.len() >= 4,
        "runserver and its reloader child per worker: {members:?}"
    );
    up.signal(signal);
    assert!(
        up.wait_exit(Duration::from_secs(20)),
        "ferrolb did not exit on {signal:?}"
    );
    // SIGKILL leaves the shims to do the work: SIGTERM, then SIGKILL after --grace.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: Vec<u32> = members.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() && group_members(&groups).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still alive after {signal:?}: {left:?}\n{}",
            up.output()
        );
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_leaves_no_worker_process() {
    stop_leaves_nothing(Signal::SIGTERM);
}

#[test]
fn sigkill_of_ferrolb_leaves_no_worker_process() {
    stop_leaves_nothing(Signal::SIGKILL);
}

#[test]
fn a_command_that_exits_at_once_is_reported_and_ferrolb_keeps_running() {
    let mut up = Up::start(2, &["--grace", "1"], &os(&["false"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = up.output();
        if out.contains("FAILED to start") && out.contains("ferrolb up: balancing") {
            break;
        }
        assert!(Instant::now() < deadline, "no failure report\n{out}");
        sleep(Duration::from_millis(100));
    }
    assert!(
        up.child.try_wait().ok().flatten().is_none(),
        "ferrolb exited\n{}",
        up.output()
    );
    let w = up.workers();
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|(_, _, s)| s != "healthy"), "{w:?}");
    // The balancer still answers (no worker: 502), and stops cleanly.
    let r = http_get(up.listen, "/", "127.0.0.1").expect("GET");
    assert_eq!(r.status, 502);
    assert!(up.output().contains("exit status 1"), "{}", up.output());
    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(10)), "{}", up.output());
}

#[test]
fn watch_restarts_every_worker_when_a_file_changes() {
    let (python, _) = django_env();
    let src = fresh_temp_dir("up-watch-src");
    fs::write(src.join("app.py"), "v1").expect("write");
    let watched = src.to_string_lossy().into_owned();
    let mut up = Up::start(
        2,
        &["--grace", "2", "--watch", &watched],
        &[
            python.into_os_string(),
            "-m".into(),
            "http.server".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "{port}".into(),
        ],
    );
    let before = up.wait_healthy(2, Duration::from_secs(30));
    // The watcher reports a difference between two scans, and nothing says when
    // its first scan (the baseline) was taken: a change made before it is part of
    // the baseline. So, once it says it watches, change the file, and change it
    // again (another size, another mtime) while no change is reported; each write
    // after the baseline is seen (within a 0.5 s scan plus the 1 s debounce).
    wait_until(
        Duration::from_secs(30),
        "\"watching ... for changes\" in ferrolb's output",
        || up.output().contains("for changes").then_some(()),
    );
    let mut version = 1;
    let mut written = Instant::now() - Duration::from_secs(60);
    wait_until(
        Duration::from_secs(30),
        "ferrolb to report \"app.py changed\"",
        || {
            if up.output().contains("app.py changed") {
                return Some(());
            }
            if written.elapsed() >= Duration::from_secs(3) {
                version += 1;
                let text = format!("v{version} {}", "x".repeat(version));
                fs::write(src.join("app.py"), text).expect("write");
                written = Instant::now();
            }
            None
        },
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = up.workers();
        let replaced = now.len() == 2
            && now.iter().all(|(port, pid, s)| {
                s == "healthy"
                    && before
                        .iter()
                        .any(|(p, old)| p == port && Some(*old) != *pid)
            });
        if replaced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after the change: {now:?}\n{}",
            up.output()
        );
        sleep(Duration::from_millis(200));
    }
    assert!(up.output().contains("app.py changed"), "{}", up.output());
}
