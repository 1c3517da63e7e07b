//! `ferrolb __worker-shim`: the small process between `ferrolb up` and one worker,
//! so that no worker outlives ferrolb, even when ferrolb is SIGKILLed.
//!
//! Why a shim: `PR_SET_PDEATHSIG` is delivered when the *thread* that forked the
//! child exits and reaches that child only, so setting it on the worker itself would
//! miss its own children (runserver's autoreloader runs the server in a child;
//! gunicorn forks workers). The shim sets the parent-death signal on itself (through
//! nix's safe wrapper, after exec, so no `pre_exec`/unsafe code is needed), starts the
//! worker in a process group of its own, and on any stop request (its parent died,
//! SIGTERM/SIGINT/SIGHUP from ferrolb) signals that whole group: SIGTERM, then SIGKILL
//! after the grace period or at a second request.
//!
//! It prints the worker's pid once, as an invisible APC escape on stdout
//! ([`PID_MARKER`]), which ferrolb's output reader takes out of the stream.

use std::ffi::OsString;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

/// Starts the pid announcement: `ESC _ ferrolb:pid=` then the decimal pid and
/// [`PID_MARKER_END`] (an APC string: terminals show nothing if it ever leaks).
pub const PID_MARKER: &str = "\x1b_ferrolb:pid=";
/// Ends the pid announcement (`ESC \`).
pub const PID_MARKER_END: &str = "\x1b\\";

/// The shim's command line: `__worker-shim --parent PID --grace-ms N -- CMD ARGS...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// The pid of the ferrolb that started it: if the shim's parent is already another
    /// process when it starts, ferrolb died before the death signal was armed.
    pub parent: i32,
    /// Time between SIGTERM and SIGKILL of the worker's group. Default 10 s.
    pub grace: Duration,
    /// The worker command and its arguments (`{port}` already substituted).
    pub command: Vec<OsString>,
}

/// Why the shim's arguments are unusable (a bug in ferrolb, or a user calling it).
#[derive(Debug, thiserror::Error)]
#[error("__worker-shim: {0} (usage: __worker-shim --parent PID --grace-ms N -- CMD ARGS...)")]
pub struct ShimUsage(String);

impl ShimArgs {
    /// Parses the arguments after `__worker-shim`.
    pub fn parse(args: &[OsString]) -> Result<ShimArgs, ShimUsage> {
        let mut parent = None;
        let mut grace = Duration::from_secs(10);
        let mut i = 0;
        while i < args.len() {
            let a = args[i].to_string_lossy();
            if a == "--" {
                let command = args[i + 1..].to_vec();
                if command.is_empty() {
                    return Err(ShimUsage("no command".into()));
                }
                let parent = parent.ok_or_else(|| ShimUsage("no --parent".into()))?;
                return Ok(ShimArgs {
                    parent,
                    grace,
                    command,
                });
            }
            let value = args
                .get(i + 1)
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| ShimUsage(format!("{a} needs a value")))?;
            match a.as_ref() {
                "--parent" => {
                    parent = Some(
                        value
                            .parse()
                            .map_err(|_| ShimUsage(format!("bad pid {value}")))?,
                    )
                }
                "--grace-ms" => {
                    grace = Duration::from_millis(
                        value
                            .parse()
                            .map_err(|_| ShimUsage(format!("bad grace {value}")))?,
                    )
                }
                other => return Err(ShimUsage(format!("unknown option {other}"))),
            }
            i += 2;
        }
        Err(ShimUsage("no \"--\" before the command".into()))
    }
}

/// Runs the shim; returns the process exit status: the worker's (128 + signal when
/// killed by one), 0 after a requested stop, 127 when the command cannot start.
pub fn run(args: ShimArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrolb: worker shim cannot start: {e}");
            return 1;
        }
    };
    rt.block_on(supervise_one(args))
}

async fn supervise_one(args: ShimArgs) -> i32 {
    // Handlers first: a stop request arriving from here on is queued, not fatal, so
    // the group is always signalled once the worker exists.
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = streams else {
        eprintln!("ferrolb: worker shim cannot handle signals");
        return 1;
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        eprintln!("ferrolb: worker shim cannot set its parent-death signal: {e}");
        return 1;
    }
    if nix::unistd::getppid().as_raw() != args.parent {
        // ferrolb died before the death signal was armed: start nothing.
        return 1;
    }
    let mut cmd = tokio::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .stdin(std::process::Stdio::null())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "ferrolb: cannot start \"{}\": {}",
                args.command[0].to_string_lossy(),
                crate::log::os_error_text(&e)
            );
            return 127;
        }
    };
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return 1;
    };
    let group = Pid::from_raw(pid);
    {
        use std::io::Write as _;
        // One write: atomic on the pipe, so worker output cannot split it.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("{PID_MARKER}{pid}{PID_MARKER_END}\n").as_bytes());
        let _ = out.flush();
    }

    let status = tokio::select! {
        s = child.wait() => s,
        _ = term.recv() => return stop(&mut child, group, args.grace, (&mut term, &mut int, &mut hup)).await,
        _ = int.recv() => return stop(&mut child, group, args.grace, (&mut term, &mut int, &mut hup)).await,
        _ = hup.recv() => return stop(&mut child, group, args.grace, (&mut term, &mut int, &mut hup)).await,
    };
    // The leader exited on its own: whatever it left in its group goes too, so a
    // restarted worker never finds an old child holding its port.
    let _ = killpg(group, Signal::SIGKILL);
    match status {
        Ok(s) => exit_code(s),
        Err(_) => 1,
    }
}

type Streams<'a> = (
    &'a mut tokio::signal::unix::Signal,
    &'a mut tokio::signal::unix::Signal,
    &'a mut tokio::signal::unix::Signal,
);

/// SIGTERM to the group; SIGKILL when the grace period ends or another stop request
/// comes; then waits (bounded) until no process of the group is left.
async fn stop(
    child: &mut tokio::process::Child,
    group: Pid,
    grace: Duration,
    (term, int, hup): Streams<'_>,
) -> i32 {
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let mut leader_gone = false;
    loop {
        tokio::select! {
            r = child.wait(), if !leader_gone => {
                // Also true on a wait error: nothing more to wait for from the leader.
                let _ = r;
                leader_gone = true;
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if leader_gone => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => break,
        }
        // Signal 0: does any process of the group still exist?
        if leader_gone && kill(Pid::from_raw(-group.as_raw()), None).is_err() {
            return 0;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    if !leader_gone {
        let _ = child.wait().await;
    }
    0
}

fn exit_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_and_refuses() {
        let a =
            ShimArgs::parse(&v(&["--parent", "12", "--grace-ms", "500", "--", "x", "y"])).unwrap();
        assert_eq!(a.parent, 12);
        assert_eq!(a.grace, Duration::from_millis(500));
        assert_eq!(a.command, v(&["x", "y"]));
        assert!(ShimArgs::parse(&v(&["--parent", "1", "--"])).is_err());
        assert!(ShimArgs::parse(&v(&["--", "x"])).is_err());
        assert!(ShimArgs::parse(&v(&["--parent"])).is_err());
        assert!(ShimArgs::parse(&v(&["--nope", "1", "--", "x"])).is_err());
    }
}
