//! Starting a worker (through the shim, in a process group of its own) and stopping it.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdout};

/// How workers are started; the same for every worker but the port.
#[derive(Debug, Clone)]
pub struct SpawnConf {
    /// The ferrolb executable, re-run as `__worker-shim` (default: the running one).
    pub exe: PathBuf,
    /// The command template: every `{port}` in an argument becomes the port.
    pub command: Vec<OsString>,
    /// SIGTERM → SIGKILL grace period for the worker's group (`--grace`, default 10 s).
    pub grace: Duration,
}

/// A started shim, with the pipes carrying its (and its worker's) output.
#[derive(Debug)]
pub struct Spawned {
    /// The shim process (ferrolb's direct child).
    pub child: Child,
    /// The shim's pid.
    pub shim_pid: u32,
    /// Merged worker output, first half.
    pub stdout: Option<ChildStdout>,
    /// Merged worker output, second half.
    pub stderr: Option<ChildStderr>,
}

/// `template` with `{port}` replaced in every argument.
pub fn substitute(template: &[OsString], port: u16) -> Vec<OsString> {
    let port = port.to_string();
    template
        .iter()
        .map(|a| {
            let b = a.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i..].starts_with(b"{port}") {
                    out.extend_from_slice(port.as_bytes());
                    i += b"{port}".len();
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            OsString::from_vec(out)
        })
        .collect()
}

/// Starts the shim for the worker on `port` (with `PORT` set). Must run on the
/// supervisor thread: the shim's parent-death signal fires when the thread that forked
/// it exits, and that thread lives as long as ferrolb.
pub fn start(conf: &SpawnConf, port: u16) -> std::io::Result<Spawned> {
    let mut cmd = tokio::process::Command::new(&conf.exe);
    cmd.arg("__worker-shim")
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--grace-ms")
        .arg(conf.grace.as_millis().to_string())
        .arg("--")
        .args(substitute(&conf.command, port))
        .env("PORT", port.to_string())
        // Python buffers a pipe's output; workers' lines should show as they come.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the terminal's Ctrl-C reaches ferrolb only, which stops the
        // workers in order (balancer first) instead of all at once.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let shim_pid = child.id().unwrap_or(0);
    Ok(Spawned {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        shim_pid,
    })
}

/// Stops a worker: SIGTERM to the shim (which SIGTERMs the worker's group, then
/// SIGKILLs it after the grace period); if the shim itself is not gone a little after
/// that, SIGKILL to it and to the worker's group. Returns when the shim is reaped.
pub async fn terminate(child: &mut Child, shim_pid: u32, worker_pid: Option<u32>, grace: Duration) {
    if let Ok(pid) = i32::try_from(shim_pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let margin = grace + Duration::from_secs(2);
    if tokio::time::timeout(margin, child.wait()).await.is_err() {
        kill_now(shim_pid, worker_pid);
        let _ = child.wait().await;
    }
}

/// SIGKILL to the shim and the worker's group, at once (second Ctrl-C).
pub fn kill_now(shim_pid: u32, worker_pid: Option<u32>) {
    if let Some(pid) = worker_pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Ok(pid) = i32::try_from(shim_pid) {
        if pid > 0 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_every_port() {
        let t: Vec<OsString> = ["gunicorn", "-b", "127.0.0.1:{port}", "{port}{port}", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let got = substitute(&t, 8001);
        assert_eq!(got[2], "127.0.0.1:8001");
        assert_eq!(got[3], "80018001");
        assert_eq!(got[4], "x");
    }
}
