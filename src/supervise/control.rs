//! Restart requests from outside: `POST /workers/restart` on the admin listener (via
//! [`crate::admin::WorkerControl`]) and `ferrolb -s restart`, which talks to a unix
//! socket next to the pid file.
//!
//! Why a socket and not a signal: nginx's signals already have meanings (USR1 reopens
//! logs, USR2/WINCH upgrade the binary) that scripts rely on, and a signal cannot carry
//! an answer; over the socket `ferrolb -s restart` waits until the restart is done and
//! exits non-zero if a worker did not come back, so `git pull && ferrolb -s restart` is
//! a deploy script. The socket is found the way `-s` finds the pid: from `-c`'s `pid`
//! directive (or `logs/nginx.pid` under the current directory), plus [`SOCKET_SUFFIX`].
//! Its file mode (the umask) limits who may restart.
//!
//! Protocol: the client sends `restart\n`; the server answers one line, `ok ...` or
//! `error ...`, when the rolling restart ends.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::rolling::Progress;
use super::worker::SlotInfo;
use crate::server::{WorkerReport, WorkersReport};

/// Appended to the pid file's path to name the control socket: `.ctl`.
pub const SOCKET_SUFFIX: &str = ".ctl";

/// The control socket's path for a pid file.
pub fn socket_path(pid_path: &Path) -> PathBuf {
    let mut s = pid_path.as_os_str().to_owned();
    s.push(SOCKET_SUFFIX);
    PathBuf::from(s)
}

/// A restart request to the supervisor.
#[derive(Debug)]
pub struct RestartRequest {
    /// What asked (for the terminal).
    pub why: String,
    /// Told the outcome when it ends (`-s restart` waits for it). None: nobody waits.
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// The admin API's handle on the workers.
#[derive(Debug)]
pub struct Control {
    /// To the supervisor.
    pub tx: mpsc::UnboundedSender<RestartRequest>,
    /// The upstream the workers fill.
    pub upstream: String,
    /// Every slot's view.
    pub slots: Vec<Arc<Mutex<SlotInfo>>>,
    /// A rolling restart is running (set by the supervisor).
    pub restarting: Arc<AtomicBool>,
    /// The running or last rolling restart.
    pub progress: Progress,
}

impl crate::admin::WorkerControl for Control {
    fn restart(&self) -> Result<(), String> {
        if self.restarting.load(Ordering::Relaxed) {
            return Err("a rolling restart is already running".into());
        }
        self.tx
            .send(RestartRequest {
                why: "POST /workers/restart".into(),
                reply: None,
            })
            .map_err(|_| "the workers are stopping".to_owned())
    }

    fn report(&self) -> WorkersReport {
        let now = Instant::now();
        let workers = self
            .slots
            .iter()
            .map(|s| {
                let i = s.lock().unwrap_or_else(PoisonError::into_inner);
                WorkerReport {
                    port: i.port,
                    pid: i.pid,
                    state: i.state.word(),
                    reason: i.state.reason().map(str::to_owned),
                    uptime_secs: i.started.map(|t| secs(now - t)),
                    restarts: i.restarts,
                    last_exit: i.last_exit.as_ref().map(|(how, _)| how.clone()),
                    last_exit_secs_ago: i.last_exit.as_ref().map(|(_, t)| secs(now - *t)),
                }
            })
            .collect();
        WorkersReport {
            upstream: self.upstream.clone(),
            restarting: self.restarting.load(Ordering::Relaxed),
            rolling: self
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            workers,
        }
    }
}

/// Seconds, to the millisecond (JSON readers need no more).
fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Why `ferrolb -s restart` failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No `ferrolb up` listens there.
    #[error("connect() to \"{}\" failed ({}): is \"ferrolb up\" running in this directory (with the same -c)?", path.display(), crate::log::os_error_text(source))]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("control socket \"{}\": {}", path.display(), crate::log::os_error_text(source))]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The restart ran and did not succeed.
    #[error("{0}")]
    Refused(String),
}

/// `ferrolb -s restart`: asks the `ferrolb up` whose pid file is `pid_path` for a
/// rolling restart and waits until it ends. Returns its message.
pub fn request_restart(pid_path: &Path) -> Result<String, ControlError> {
    let path = socket_path(pid_path);
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let mut s =
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| ControlError::Connect {
            path: path.clone(),
            source,
        })?;
    s.write_all(b"restart\n").map_err(io)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(io)?;
    let line = line.trim();
    match line.strip_prefix("ok ") {
        Some(msg) => Ok(msg.to_owned()),
        None => Err(ControlError::Refused(
            line.strip_prefix("error ").unwrap_or(line).to_owned(),
        )),
    }
}

/// Binds the control socket (replacing a stale one: a socket nobody accepts on).
/// `Err` when another `ferrolb up` serves it.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another ferrolb up serves it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    tokio::net::UnixListener::bind(path)
}

/// Serves the control socket forever: each connection's request becomes a
/// [`RestartRequest`] and gets the outcome as its answer.
pub async fn serve(listener: tokio::net::UnixListener, tx: mpsc::UnboundedSender<RestartRequest>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut r = tokio::io::BufReader::new(r);
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            let answer = if line.trim() == "restart" {
                let (reply, outcome) = oneshot::channel();
                let sent = tx.send(RestartRequest {
                    why: "ferrolb -s restart".into(),
                    reply: Some(reply),
                });
                match (sent, outcome.await) {
                    (Ok(()), Ok(Ok(msg))) => format!("ok {msg}\n"),
                    (Ok(()), Ok(Err(e))) => format!("error {e}\n"),
                    _ => "error the workers are stopping\n".to_owned(),
                }
            } else {
                format!("error unknown request \"{}\"\n", line.trim())
            };
            let _ = w.write_all(answer.as_bytes()).await;
        });
    }
}
