//! `ferrolb up` under test, shared by tests/up.rs and tests/dashboard.rs: [`Up`]
//! starts it in a fresh directory on ports from `free_port` (started again on fresh
//! ones when one was taken, see "Ports" in tests/common/mod.rs) and waits for
//! observable signals only: its listening sockets, `GET /workers`, its output.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::{
    self, check_ports, free_port, free_port_run, fresh_temp_dir, http_get, proxy_bin,
    says_port_taken, START_ATTEMPTS, START_TIMEOUT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running `ferrolb up` in its own directory, with an admin listener.
pub struct Up {
    /// Its directory (pid file, control socket, `out.log`).
    pub dir: PathBuf,
    /// The `ferrolb up` process.
    pub child: Child,
    /// The balancer's port.
    pub listen: u16,
    /// The admin port.
    pub admin: u16,
    /// Every worker pid seen, for the cleanup in `Drop`.
    pub seen: Vec<u32>,
}

impl Up {
    /// Starts `ferrolb up` and waits until it listens on its balancer and admin
    /// ports; starts it again on fresh ones when one was taken.
    pub fn start(workers: u16, extra: &[&str], command: &[OsString]) -> Up {
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

    pub fn spawn(workers: u16, extra: &[&str], command: &[OsString]) -> Up {
        let dir = fresh_temp_dir("up");
        let (listen, admin) = (free_port(), free_port());
        let out = fs::File::create(dir.join("out.log")).expect("out.log");
        let err = fs::File::create(dir.join("err.log")).expect("err.log");
        let mut cmd = Command::new(ferrolb_bin());
        cmd.arg("up")
            .arg("-w")
            .arg(workers.to_string())
            .arg("--first-worker-port")
            // Workers take consecutive ports: all of them free, not just the first.
            .arg(free_port_run(workers.max(1)).to_string())
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
    pub fn wait_listening(&mut self) -> Result<(), String> {
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

    /// Everything it printed: stdout (its own `ferrolb |` lines and the workers'),
    /// then stderr (the error log of the generated configuration).
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// What it printed on stdout.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }

    /// What it printed on stderr.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
    }

    /// Waits (at most `limit`) until its output contains `needle`.
    pub fn wait_output(&self, needle: &str, limit: Duration) {
        let seen = common::poll(limit, || self.output().contains(needle).then_some(()));
        assert!(
            seen.is_some(),
            "no \"{needle}\" in ferrolb up's output after {limit:?}\n{}",
            self.output()
        );
    }

    /// Waits (at most `limit`) for it to exit by itself; its exit status.
    pub fn exit_status(&mut self, limit: Duration) -> Option<ExitStatus> {
        common::poll(limit, || self.child.try_wait().ok().flatten())
    }

    /// `GET path` on the admin listener, as JSON.
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = http_get(self.admin, path, "127.0.0.1").expect("GET on the admin listener");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
    }

    /// `GET /workers`: (port, pid, state) of each worker.
    pub fn workers(&mut self) -> Vec<(u16, Option<u32>, String)> {
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
    pub fn wait_healthy(&mut self, n: usize, limit: Duration) -> Vec<(u16, u32)> {
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

    pub fn signal(&self, s: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), s);
    }

    /// Waits (bounded) for ferrolb to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
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

pub fn ferrolb_bin() -> PathBuf {
    // `up` is ferrolb's own; the harness's nginx mode does not apply.
    match option_env!("CARGO_BIN_EXE_ferrolb") {
        Some(b) => PathBuf::from(b),
        None => proxy_bin(),
    }
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The Python for test workers: `$FERROLB_TEST_PYTHON` when set, else `python3`.
pub fn python() -> OsString {
    std::env::var_os("FERROLB_TEST_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// A worker command that serves HTTP on its port (`$PORT`, through a shell) once the
/// file `gate` exists in ferrolb up's directory (its workers' working directory), or
/// at once with `gate` `None`: the test decides when the worker becomes ready.
pub fn http_server_after(gate: Option<&str>) -> Vec<OsString> {
    let wait = gate
        .map(|g| format!("while [ ! -e {g} ]; do sleep 0.05; done; "))
        .unwrap_or_default();
    vec![
        "sh".into(),
        "-c".into(),
        format!("{wait}exec \"$0\" -m http.server --bind 127.0.0.1 $PORT").into(),
        python(),
    ]
}
