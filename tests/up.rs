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
mod up_support;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{django_env, fresh_temp_dir, http_get, http_request, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use up_support::{ferrolb_bin, os, Up};

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

/// The give-up limit as the messages state it (`START_LIMIT_BURST` within
/// `START_LIMIT_INTERVAL` in src/supervise/backoff.rs).
const START_LIMIT: &str = "5 failed starts within 60s";

/// Exits with status 3 at once, saying so on stderr; `{port}` makes it a valid
/// worker command.
fn never_starts() -> Vec<OsString> {
    os(&[
        "sh",
        "-c",
        "echo \"cannot start on port $1\" >&2; exit 3",
        "sh",
        "{port}",
    ])
}

#[test]
fn a_command_that_never_starts_gives_up_and_ferrolb_exits_non_zero() {
    let mut up = Up::start(2, &["--grace", "1"], &never_starts());
    let ports: Vec<u16> = wait_until(Duration::from_secs(10), "GET /workers", || {
        let w = up.workers();
        (w.len() == 2).then(|| w.iter().map(|x| x.0).collect())
    });
    // While it retries, the balancer answers, but never with a worker's answer.
    let r = http_get(up.listen, "/", "127.0.0.1").expect("GET while retrying");
    assert!([502, 503].contains(&r.status), "{} {}", r.status, r.text());
    // The backoff spends 0.5 + 1 + 2 + 4 s before the fifth start: give-up after ~8 s.
    let status = up
        .exit_status(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("ferrolb up still running\n{}", up.output()));
    assert_eq!(status.code(), Some(1), "{}", up.output());
    let (out, err) = (up.stdout(), up.stderr());
    assert!(out.contains("FAILED to start: exit status 3"), "{out}");
    // The summary tells the truth: no "balancing ... over 2 workers".
    assert!(
        out.contains("ferrolb up: NO worker is serving: all 2 failed to start (retrying)"),
        "{out}"
    );
    assert!(!out.contains("ferrolb up: balancing"), "{out}");
    for port in ports {
        let gave_up = format!(
            "worker {port}: GAVE UP after {START_LIMIT} (last: exit status 3); not restarted until \"ferrolb -s restart\" or POST /workers/restart"
        );
        assert!(err.contains(&gave_up), "stderr lacks {gave_up:?}\n{err}");
    }
    assert!(
        err.lines().any(|l| l.contains("[emerg] ")
            && l.contains(&format!(
                ": up: every worker gave up ({START_LIMIT} each; last: worker "
            ))
            && l.contains("exit status 3); run the command by hand to see why: PORT=")
            && l.contains(" sh -c 'echo \"cannot start on port $1\" >&2; exit 3' sh ")),
        "{err}"
    );
    // The worker's own words reach the terminal too.
    assert!(out.contains("| cannot start on port"), "{out}");
}

#[test]
fn a_worker_that_never_starts_gives_up_while_the_others_keep_serving() {
    // The worker that makes the directory `lock` serves; the other finds it and
    // exits with status 4, every time.
    let command = vec![
        OsString::from("sh"),
        "-c".into(),
        "mkdir lock 2>/dev/null || exit 4; exec \"$0\" -m http.server --bind 127.0.0.1 $PORT"
            .into(),
        up_support::python(),
    ];
    let mut up = Up::start(2, &["--grace", "1"], &command);
    up.wait_output(
        "over 1 of 2 workers (1 failed to start; retrying)",
        Duration::from_secs(30),
    );
    up.wait_output("GAVE UP after", Duration::from_secs(40));
    up.wait_output("1 of 2 workers in rotation", Duration::from_secs(5));
    let workers = up.workers();
    let healthy: Vec<_> = workers.iter().filter(|w| w.2 == "healthy").collect();
    let gave_up: Vec<_> = workers.iter().filter(|w| w.2 == "gave-up").collect();
    assert_eq!((healthy.len(), gave_up.len()), (1, 1), "{workers:?}");
    let (serving, pid) = (
        healthy[0].0,
        healthy[0].1.expect("pid of the healthy worker"),
    );
    let failing = gave_up[0].0;
    assert!(up.stderr().contains(&format!(
        "worker {failing}: GAVE UP after {START_LIMIT} (last: exit status 4)"
    )));
    // The other keeps serving, and ferrolb keeps running.
    for _ in 0..3 {
        let r = http_get(up.listen, "/", "127.0.0.1").expect("GET");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(up.child.try_wait().ok().flatten().is_none());

    // /status carries the workers: pid, uptime, restarts and last exit.
    let status = up.admin_json("/status");
    let w = &status["workers"];
    assert_eq!(w["upstream"], "app", "{status}");
    let find = |port: u16| {
        w["workers"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["port"] == port))
            .cloned()
            .unwrap_or_else(|| panic!("no worker {port} in /status: {status}"))
    };
    let ok = find(serving);
    assert_eq!(ok["pid"], pid, "{ok}");
    assert_eq!(ok["state"], "healthy");
    assert!(ok["uptime_secs"].as_f64().is_some_and(|u| u > 0.0), "{ok}");
    assert_eq!(ok["restarts"], 0);
    let bad = find(failing);
    assert_eq!(bad["state"], "gave-up");
    assert_eq!(bad["pid"], serde_json::Value::Null);
    assert_eq!(bad["last_exit"], "exit status 4");
    assert_eq!(bad["reason"], "exit status 4");
    assert_eq!(bad["restarts"], 5, "{bad}");
    let peer = &status["upstreams"]["app"]["peers"];
    assert!(
        peer.as_array().is_some_and(|a| a
            .iter()
            .any(|p| p["addr"] == format!("127.0.0.1:{failing}") && p["state"] == "down")),
        "{peer}"
    );

    // /metrics too, labelled like the peers.
    let r = http_get(up.admin, "/metrics", "127.0.0.1").expect("GET /metrics");
    let metrics = r.text();
    for line in [
        format!("ferrolb_worker_pid{{upstream=\"app\",peer=\"127.0.0.1:{serving}\"}} {pid}"),
        format!("ferrolb_worker_healthy{{upstream=\"app\",peer=\"127.0.0.1:{serving}\"}} 1"),
        format!("ferrolb_worker_gave_up{{upstream=\"app\",peer=\"127.0.0.1:{failing}\"}} 1"),
        format!("ferrolb_worker_restarts_total{{upstream=\"app\",peer=\"127.0.0.1:{failing}\"}} 5"),
        "ferrolb_workers_rolling_restart{upstream=\"app\"} 0".to_owned(),
    ] {
        assert!(
            metrics.contains(&line),
            "/metrics lacks {line:?}\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!(
            "ferrolb_worker_uptime_seconds{{upstream=\"app\",peer=\"127.0.0.1:{serving}\"}} "
        )),
        "{metrics}"
    );
    up.signal(Signal::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(10)), "{}", up.output());
    assert_eq!(
        up.child.try_wait().ok().flatten().and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn a_command_without_port_is_an_error_with_a_hint() {
    let dir = fresh_temp_dir("up-noport");
    let out = Command::new(ferrolb_bin())
        .args(["up", "-w", "2", "--", "python3", "-m", "http.server"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run ferrolb up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[emerg] up: the worker command has no {port}: each worker must listen on the port ferrolb gives it."),
        "{err}"
    );
    for hint in [
        "ferrolb up -- python manage.py runserver {port}",
        "ferrolb up -- sh -c 'exec myapp --port $PORT'",
        "ferrolb up -- env PORT={port} myapp",
    ] {
        assert!(err.contains(hint), "no hint {hint:?}\n{err}");
    }
    // Nothing started: no worker output, no "starting" line.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("starting"));
}

#[test]
fn requests_before_the_first_worker_is_ready_get_503_with_retry_after() {
    // The worker listens once the test creates `go` in ferrolb up's directory.
    let mut up = Up::start(
        1,
        &["--grace", "1"],
        &up_support::http_server_after(Some("go")),
    );
    wait_until(Duration::from_secs(10), "the worker to be starting", || {
        up.workers()
            .first()
            .is_some_and(|w| w.2 == "starting")
            .then_some(())
    });
    let r = http_get(up.listen, "/", "127.0.0.1").expect("GET before ready");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"), "{:?}", r.headers);
    let status = up.admin_json("/status");
    assert_eq!(
        status["upstreams"]["app"]["peers"][0]["state"], "starting",
        "{status}"
    );
    fs::write(up.dir.join("go"), "").expect("create go");
    let ready = up.wait_healthy(1, Duration::from_secs(30));
    let r = http_get(up.listen, "/", "127.0.0.1").expect("GET after ready");
    assert_eq!(r.status, 200, "{}", r.text());
    let w = up.admin_json("/workers");
    assert_eq!(w["workers"][0]["pid"], ready[0].1, "{w}");
    assert!(
        up.stdout()
            .contains("ferrolb up: balancing http://127.0.0.1:"),
        "{}",
        up.output()
    );
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
