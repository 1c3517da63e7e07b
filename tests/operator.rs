//! What an operator sees when starting, signalling and running ferrolb: start-up
//! failures on the terminal with the reason and a hint, a second instance refused on
//! an address already served, the start-up summary, `-s` from any directory and only
//! to a ferrolb, daemon mode. Real processes; every wait is on an observable signal
//! (an exit status, a pid file, a log line) under a deadline.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{fresh_temp_dir, local_listener, poll, wait_until, Proxy};

/// How long a ferrolb that should fail at once may take.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn ferrolb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferrolb"))
}

/// What a finished run left.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion (at most [`EXIT_LIMIT`]; killed and a panic after that),
/// its output captured in files under `dir`.
fn run_bounded(mut cmd: Command, dir: &Path) -> Run {
    let out_path = dir.join("run-stdout.log");
    let err_path = dir.join("run-stderr.log");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn");
    let status = poll(EXIT_LIMIT, || child.try_wait().ok().flatten());
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} still running after {EXIT_LIMIT:?}; stderr:\n{}",
            read(&err_path)
        );
    };
    Run {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// A minimal configuration serving `listen` with a fixed answer.
fn conf_listening(listen: &str) -> String {
    format!(
        "events {{}}\nhttp {{\n  server {{\n    listen {listen};\n    \
         location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `setpriv` to run as `nobody`, or `None` (with a note) where that cannot work.
fn setpriv_nobody() -> Option<Command> {
    if !is_root() {
        eprintln!("skipped: needs root to switch to the nobody user");
        return None;
    }
    let found = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(setpriv) = found else {
        eprintln!("skipped: setpriv not installed (util-linux)");
        return None;
    };
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
    Some(cmd)
}

/// A world-accessible directory with a copy of the binary in it: a checkout under
/// /root is out of reach of the nobody user. The directory (and the binary copy, over
/// 100 MB in a debug build) is removed when the test ends.
struct WorldDir {
    dir: PathBuf,
    bin: PathBuf,
}

impl Drop for WorldDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn world_dir(tag: &str) -> WorldDir {
    let dir = fresh_temp_dir(tag);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let bin = dir.join("ferrolb");
    fs::copy(ferrolb_bin(), &bin).expect("copy the binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod bin");
    WorldDir { dir, bin }
}

#[test]
fn port_in_use_is_reported_on_stderr_with_the_holder() {
    let dir = fresh_temp_dir("op-inuse");
    let taken = local_listener();
    let port = taken.local_addr().expect("addr").port();
    let conf = dir.join("nginx.conf");
    fs::write(&conf, conf_listening(&format!("127.0.0.1:{port}"))).expect("conf");
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-c").arg(&conf).current_dir(&dir);
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let want = format!(
        "ferrolb: [emerg] bind() to 127.0.0.1:{port} failed (98: Address already in use)\n"
    );
    assert!(run.stderr.starts_with(&want), "{}", run.stderr);
    // The holder is this test process, named by /proc.
    let hint = format!("  hint: pid {} (", std::process::id());
    assert!(run.stderr.contains(&hint), "{}", run.stderr);
    // And the error log has it too, next to the configuration.
    let log = fs::read_to_string(dir.join("logs/error.log")).expect("error log");
    assert!(
        log.contains(&format!("bind() to 127.0.0.1:{port} failed (98")),
        "{log}"
    );
    drop(taken);
}

#[test]
fn a_second_instance_is_refused_on_a_served_address() {
    let (first, [port]) = Proxy::start_on(|[p]| conf_listening(&format!("127.0.0.1:{p}")));
    let dir = fresh_temp_dir("op-second");
    // Its own prefix, pid file and error log: only the address is shared.
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg("nginx.conf")
        .current_dir(&dir);
    fs::write(
        dir.join("nginx.conf"),
        conf_listening(&format!("127.0.0.1:{port}")),
    )
    .expect("conf");
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "bind() to 127.0.0.1:{port} failed (98: Address already in use)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("hint: pid {} (", first.pid())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("ferrolb already running?"),
        "{}",
        run.stderr
    );
    assert!(
        !dir.join("logs/nginx.pid").exists(),
        "no pid file on failure"
    );
    // The first one still serves alone.
    let r = common::http_get(port, "/", "x").expect("first instance answers");
    assert_eq!(r.status, 200);
    assert_eq!(
        common::listener_of(port, first.pid()),
        common::Listener::Ours
    );
}

#[test]
fn permission_denied_below_1024_names_sudo_and_setcap() {
    let Some(mut cmd) = setpriv_nobody() else {
        return;
    };
    let world = world_dir("op-eacces");
    let (dir, bin) = (world.dir.clone(), world.bin.clone());
    fs::write(dir.join("nginx.conf"), conf_listening("127.0.0.1:80")).expect("conf");
    fs::set_permissions(dir.join("nginx.conf"), fs::Permissions::from_mode(0o644))
        .expect("chmod conf");
    cmd.arg(&bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg("nginx.conf");
    cmd.current_dir(&dir);
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "ferrolb: [emerg] bind() to 127.0.0.1:80 failed (13: Permission denied)\n"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("sudo"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "setcap cap_net_bind_service=+ep {}",
            bin.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn unreadable_config_is_reported_with_the_os_error() {
    let Some(mut cmd) = setpriv_nobody() else {
        return;
    };
    let world = world_dir("op-unreadable");
    let (dir, bin) = (world.dir.clone(), world.bin.clone());
    let conf = dir.join("nginx.conf");
    fs::write(&conf, conf_listening("127.0.0.1:8080")).expect("conf");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).expect("chmod conf");
    cmd.arg(&bin).arg("-c").arg(&conf).current_dir(&dir);
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "ferrolb: [emerg] open() \"{}\" failed (13: Permission denied)\n",
            conf.display()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: "), "{}", run.stderr);
}

#[test]
fn missing_config_is_reported_with_the_os_error() {
    let dir = fresh_temp_dir("op-missing");
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-c").arg(dir.join("nope.conf")).current_dir(&dir);
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "ferrolb: [emerg] open() \"{}\" failed (2: No such file or directory)\n",
            dir.join("nope.conf").display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn the_start_is_summarised_on_stderr() {
    let (mut proxy, [port, peer, admin]) = Proxy::start_on(|[p, peer, admin]| {
        format!(
            "events {{}}\nhttp {{\n  ferrolb_admin 127.0.0.1:{admin};\n  \
             upstream app {{ server 127.0.0.1:{peer}; server 127.0.0.1:1 backup; }}\n  \
             server {{ listen 127.0.0.1:{p}; location / {{ proxy_pass http://app; }} }}\n}}\n"
        )
    });
    let stderr_path = proxy.dir.join("stderr.log");
    let text = wait_until(Duration::from_secs(10), "the start-up summary", || {
        let t = fs::read_to_string(&stderr_path).ok()?;
        t.contains("  error log ").then_some(t)
    });
    let conf = proxy.conf_path();
    let want = format!(
        "ferrolb {} running, pid {}, configuration {}\n  \
         listening on 127.0.0.1:{port} (1 worker thread)\n  \
         upstream app: 127.0.0.1:{peer}, 127.0.0.1:1 (backup)\n  \
         admin: http://127.0.0.1:{admin}/\n  \
         error log {dir}/error.log, pid file {dir}/nginx.pid\n",
        env!("CARGO_PKG_VERSION"),
        proxy.pid(),
        conf.display(),
        dir = proxy.dir.display()
    );
    assert_eq!(text, want);
    proxy.stop();
}

#[test]
fn quiet_start_prints_nothing() {
    let dir = fresh_temp_dir("op-quiet");
    let probe = local_listener();
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    fs::write(
        dir.join("nginx.conf"),
        format!(
            "error_log logs/error.log notice;\n{}",
            conf_listening(&format!("127.0.0.1:{port}"))
        ),
    )
    .expect("conf");
    let err_path = dir.join("stderr.log");
    let mut child = Command::new(ferrolb_bin())
        .arg("-q")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg("nginx.conf")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    // "started" is logged after the summary would have been printed.
    let started = poll(Duration::from_secs(10), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(status));
        }
        let log = fs::read_to_string(dir.join("logs/error.log")).ok()?;
        log.contains("] ").then_some(())?;
        log.contains(" started, ").then_some(Ok(()))
    });
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exited = poll(EXIT_LIMIT, || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    match started {
        Some(Ok(())) => assert_eq!(stderr, "", "-q prints nothing on success"),
        Some(Err(status)) if stderr.contains("already in use") => {
            eprintln!("skipped: port {port} was taken meanwhile ({status})")
        }
        other => panic!("no start: {other:?}\n{stderr}"),
    }
}

/// A ferrolb started by a test with its own command line (the harness's [`Proxy`]
/// always passes `-p`). Killed on drop.
struct Started {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Started {
    /// Runs `ferrolb ARGS` in `cwd` on `DIR/nginx.conf` = `conf(port)` for a port of
    /// [`common::free_port`], and waits until it listens there (and nobody else does).
    /// Starts again on another port when that one was taken meanwhile.
    fn new(dir: &Path, cwd: &Path, args: &[&str], conf: impl Fn(u16) -> String) -> Started {
        for _ in 0..common::START_ATTEMPTS {
            let port = common::free_port();
            fs::write(dir.join("nginx.conf"), conf(port)).expect("write conf");
            let child = Command::new(ferrolb_bin())
                .args(args)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("stdout.log")).expect("stdout"))
                .stderr(fs::File::create(dir.join("stderr.log")).expect("stderr"))
                .spawn()
                .expect("spawn ferrolb");
            let mut s = Started {
                child,
                port,
                dir: dir.to_owned(),
            };
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut foreign = std::collections::HashSet::new();
            let outcome = poll(common::START_TIMEOUT, || {
                if let Ok(Some(status)) = s.child.try_wait() {
                    return Some(Err(status));
                }
                match common::check_ports(&[addr], s.child.id(), &mut foreign) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => None,
                    Err(_) => Some(Err(ExitStatus::default())),
                }
            });
            match outcome {
                Some(Ok(())) => return s,
                Some(Err(_)) if common::says_port_taken(&s.stderr()) => continue,
                other => panic!("ferrolb did not start: {other:?}\n{}", s.stderr()),
            }
        }
        panic!("every port tried was taken");
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }
}

#[test]
fn signals_find_the_instance_from_any_directory() {
    let parent = fresh_temp_dir("op-anydir");
    let dir = parent.join("site");
    fs::create_dir_all(&dir).expect("site dir");
    let conf = dir.join("nginx.conf");
    let conf_arg = conf.to_str().expect("utf-8 path").to_owned();
    // Started from the site directory with a relative -c and no -p ...
    let mut s = Started::new(&dir, &dir, &["-c", "nginx.conf"], |port| {
        format!(
            "error_log logs/error.log notice;\n{}",
            conf_listening(&format!("127.0.0.1:{port}"))
        )
    });
    // ... its pid file and logs sit next to the configuration.
    let pid = wait_until(Duration::from_secs(10), "the pid file", || {
        fs::read_to_string(dir.join("logs/nginx.pid")).ok()
    });
    assert_eq!(pid.trim(), s.child.id().to_string());
    // Reloaded from / with the absolute path, and from the parent with a relative one.
    for (cwd, arg) in [
        (Path::new("/"), conf_arg.as_str()),
        (parent.as_path(), "site/nginx.conf"),
    ] {
        let before = s.error_log().matches("configuration reloaded").count();
        let mut cmd = Command::new(ferrolb_bin());
        cmd.args(["-c", arg, "-s", "reload"]).current_dir(cwd);
        let run = run_bounded(cmd, &parent);
        assert!(run.status.success(), "{}", run.stderr);
        assert_eq!(run.stderr, "");
        wait_until(
            Duration::from_secs(10),
            "the reload in the error log",
            || (s.error_log().matches("configuration reloaded").count() > before).then_some(()),
        );
    }
    assert!(
        !parent.join("logs").exists(),
        "nothing written where -s ran"
    );
    let mut cmd = Command::new(ferrolb_bin());
    cmd.args(["-c", &conf_arg, "-s", "quit"]).current_dir("/");
    let run = run_bounded(cmd, &parent);
    assert!(run.status.success(), "{}", run.stderr);
    let status = poll(EXIT_LIMIT, || s.child.try_wait().ok().flatten()).expect("quit");
    assert!(status.success(), "{status}");
    assert!(!dir.join("logs/nginx.pid").exists(), "pid file removed");
    let _ = s.port;
}

#[test]
fn reloads_are_reported_on_a_terminal() {
    // `script` gives ferrolb a terminal as stderr.
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: script (util-linux) not installed");
        return;
    }
    let dir = fresh_temp_dir("op-tty");
    let conf = dir.join("nginx.conf");
    let transcript = dir.join("tty.log");
    let inner = format!(
        "exec {} -c {} 2>&1",
        ferrolb_bin().display(),
        conf.display()
    );
    // A port of free_port() may be taken before ferrolb binds it: then start again.
    let mut started = None;
    for _ in 0..common::START_ATTEMPTS {
        let port = common::free_port();
        fs::write(&conf, conf_listening(&format!("127.0.0.1:{port}"))).expect("conf");
        let _ = fs::remove_file(&transcript);
        let mut child = Command::new("/usr/bin/script")
            .args(["-q", "-f", "-e", "-c", &inner])
            .arg(&transcript)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("script");
        let outcome = wait_until(Duration::from_secs(10), "a start under script", || {
            let pid = fs::read_to_string(dir.join("logs/nginx.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                return Some(Some(pid));
            }
            let t = fs::read_to_string(&transcript).unwrap_or_default();
            child.try_wait().ok().flatten().map(|status| {
                assert!(common::says_port_taken(&t), "{status}: {t}");
                None
            })
        });
        if let Some(pid) = outcome {
            started = Some((child, pid));
            break;
        }
    }
    let (mut child, pid) = started.expect("a free port in five tries");
    let hup = |pid| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP")
    };
    hup(pid);
    let tty = |needle: &str| {
        wait_until(Duration::from_secs(10), needle, || {
            let t = fs::read_to_string(&transcript).ok()?;
            t.contains(needle).then_some(t)
        })
    };
    tty(&format!(
        "ferrolb: configuration {} reloaded",
        conf.display()
    ));
    // A broken configuration is rejected, with the error.
    fs::write(&conf, "events {}\nhttp { nonsense; }\n").expect("break conf");
    hup(pid);
    let t = tty("rejected");
    assert!(
        t.contains(&format!(
            "ferrolb: reload of {} rejected, the running configuration is kept: ",
            conf.display()
        )),
        "{t}"
    );
    assert!(t.contains("unknown directive \"nonsense\""), "{t}");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    if poll(EXIT_LIMIT, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn daemon_on_returns_once_listening_and_stops_on_quit() {
    let dir = fresh_temp_dir("op-daemon");
    let conf = dir.join("nginx.conf");
    let mut daemon = None;
    for _ in 0..common::START_ATTEMPTS {
        let port = common::free_port();
        fs::write(
            &conf,
            format!(
                "daemon on;\nerror_log logs/error.log notice;\n{}",
                conf_listening(&format!("127.0.0.1:{port}"))
            ),
        )
        .expect("conf");
        let mut cmd = Command::new(ferrolb_bin());
        cmd.arg("-c").arg(&conf).current_dir("/");
        let run = run_bounded(cmd, &dir);
        if run.status.code() == Some(1) && common::says_port_taken(&run.stderr) {
            continue;
        }
        assert!(run.status.success(), "{}", run.stderr);
        assert!(run.stderr.contains(" running, pid "), "{}", run.stderr);
        daemon = Some(port);
        break;
    }
    let port = daemon.expect("a free port in five tries");
    // The command has returned: the daemon is listening and its pid file written.
    let pid: u32 = fs::read_to_string(dir.join("logs/nginx.pid"))
        .expect("pid file written before the parent exits")
        .trim()
        .parse()
        .expect("a pid");
    assert_eq!(common::listener_of(port, pid), common::Listener::Ours);
    assert_eq!(
        common::http_get(port, "/", "x").expect("served").status,
        200
    );
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-c").arg(&conf).arg("-s").arg("quit");
    let run = run_bounded(cmd, &dir);
    assert!(run.status.success(), "{}", run.stderr);
    wait_until(
        Duration::from_secs(10),
        "the pid file removed at exit",
        || (!dir.join("logs/nginx.pid").exists()).then_some(()),
    );
    common::wait_refused(port, Duration::from_secs(10), "the daemon stopped");
}

#[test]
fn daemon_on_fails_with_the_error_and_exit_status() {
    let dir = fresh_temp_dir("op-daemon-fail");
    let taken = local_listener();
    let port = taken.local_addr().expect("addr").port();
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon on;\n{}",
            conf_listening(&format!("127.0.0.1:{port}"))
        ),
    )
    .expect("conf");
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-c").arg(&conf);
    let run = run_bounded(cmd, &dir);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr
            .matches(&format!(
                "[emerg] bind() to 127.0.0.1:{port} failed (98: Address already in use)"
            ))
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!dir.join("logs/nginx.pid").exists());
    drop(taken);
}

#[test]
fn version_shows_ferrolb_then_nginx() {
    let dir = fresh_temp_dir("op-version");
    let mut cmd = Command::new(ferrolb_bin());
    cmd.arg("-v");
    let run = run_bounded(cmd, &dir);
    assert!(run.status.success());
    assert_eq!(run.stdout, "");
    let mut lines = run.stderr.lines();
    assert_eq!(
        lines.next(),
        Some(concat!(
            "ferrolb version: ferrolb/",
            env!("CARGO_PKG_VERSION")
        ))
    );
    assert_eq!(lines.next(), Some("nginx version: nginx/1.22.1"));
    assert_eq!(lines.next(), None);
}
