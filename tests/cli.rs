//! Runs the `ferrolb` binary the way operators and scripts do.

use std::path::PathBuf;
use std::process::{Command, Output};

fn ferrolb(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrolb"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run ferrolb")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrolb-cli-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_short_goes_to_stderr() {
    let d = tempdir("v");
    let o = ferrolb(&["-v"], &d);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stderr),
        format!(
            "ferrolb version: ferrolb/{}\nnginx version: nginx/1.22.1\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn version_long_goes_to_stdout() {
    let d = tempdir("version");
    let o = ferrolb(&["--version"], &d);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout),
        format!(
            "ferrolb version: ferrolb/{}\nnginx version: nginx/1.22.1\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn configure_details() {
    let d = tempdir("vv");
    let o = ferrolb(&["-V"], &d);
    assert!(o.status.success());
    let e = text(&o.stderr);
    assert!(e.starts_with("ferrolb version: ferrolb/"), "{e}");
    assert!(e.contains("\nnginx version: nginx/1.22.1\n"), "{e}");
    assert!(e.contains("built by rustc "), "{e}");
    assert!(e.contains("configure arguments:"), "{e}");
    assert!(e.contains("--without-http_fastcgi_module"), "{e}");
    assert!(
        !e.contains("http_gzip_module") && !e.contains("http_uwsgi_module"),
        "{e}"
    );
}

#[test]
fn help_documents_options_and_deviations() {
    let d = tempdir("help");
    let o = ferrolb(&["--help"], &d);
    assert!(o.status.success());
    let out = text(&o.stdout);
    for needle in [
        "-c filename",
        "-p prefix",
        "-s signal",
        "-T",
        "demo",
        "foreground",
        "current directory",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in {out}");
    }
    let o = ferrolb(&["-h"], &d);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("Usage: ferrolb"));
}

#[test]
fn invalid_option_fails_like_nginx() {
    let d = tempdir("bad");
    let o = ferrolb(&["-c"], &d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "ferrolb: option \"-c\" requires file name\n"
    );
    let known = "  options: -? -h -v -V -t -T -q, -s signal, -p prefix, -e filename, \
                 -c filename, -g directives, --admin addr, --help, --version; \
                 commands: demo, up (see \"ferrolb --help\")\n";
    for (arg, named) in [("-x", "x"), ("--nope", "--nope"), ("halp", "halp")] {
        let o = ferrolb(&[arg], &d);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            text(&o.stderr),
            format!("ferrolb: invalid option: \"{named}\"\n{known}")
        );
    }
    let o = ferrolb(&["demo", "--nope"], &d);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "ferrolb: demo: unexpected argument '--nope' found\n  options: --balancer-port N, \
         --backends N, --first-backend-port N, --help (see \"ferrolb demo --help\")\n"
    );
    let o = ferrolb(&["up", "--wrokers", "2", "--", "x"], &d);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.starts_with("ferrolb: up: unexpected argument '--wrokers' found; tip: a similar argument exists: '--workers'\n"),
        "{e}"
    );
}

#[test]
fn help_word_shows_the_help() {
    let d = tempdir("helpword");
    let o = ferrolb(&["help"], &d);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("Usage: ferrolb"));
}

#[test]
fn test_missing_file_fails() {
    let d = tempdir("t");
    let o = ferrolb(&["-t", "-c", "missing.conf"], &d);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("ferrolb: [emerg] "), "{e}");
    let conf = d.join("missing.conf");
    assert!(
        e.contains(&format!(
            "ferrolb: configuration file {} test failed",
            conf.display()
        )),
        "{e}"
    );
}

#[test]
fn test_errors_also_go_to_dash_e_file() {
    let d = tempdir("te");
    let o = ferrolb(&["-t", "-c", "missing.conf", "-e", "logs/err.log"], &d);
    assert_eq!(o.status.code(), Some(1));
    let log = std::fs::read_to_string(d.join("logs/err.log")).expect("-e file created");
    assert!(log.contains(" [emerg] "), "{log}");
    assert!(text(&o.stderr).contains("ferrolb: [emerg] "));
}

#[test]
fn signal_without_pid_file_fails_clearly() {
    let d = tempdir("s");
    let o = ferrolb(&["-s", "reload"], &d);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    let d = d.canonicalize().expect("temp dir");
    let pid = d.join("logs/nginx.pid");
    assert_eq!(
        e,
        format!(
            "ferrolb: [error] open() \"{}\" failed (2: No such file or directory)\n  \
             hint: is ferrolb running? {} does not exist, so the pid file is logs/nginx.pid \
             in the prefix {}; give -s the same -c FILE (and -p DIR, if any) that started it\n",
            pid.display(),
            d.join("nginx.conf").display(),
            d.display()
        )
    );
}

#[test]
fn signal_with_bad_pid_file_fails_clearly() {
    let d = tempdir("sp");
    std::fs::create_dir_all(d.join("logs")).expect("logs");
    std::fs::write(d.join("logs/nginx.pid"), "garbage\n").expect("pid");
    let o = ferrolb(&["-s", "stop"], &d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("invalid PID number \"garbage\""));
}

#[test]
fn signal_is_refused_for_a_pid_that_is_not_ferrolb() {
    let d = tempdir("sk");
    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    // Until the child has exec'd `sleep`, /proc still names the test's thread.
    let comm = format!("/proc/{}/comm", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
        assert!(std::time::Instant::now() < deadline, "sleep never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::fs::create_dir_all(d.join("logs")).expect("logs");
    let pid_file = d.join("logs/nginx.pid");
    std::fs::write(&pid_file, format!("{}\n", child.id())).expect("pid");
    let o = ferrolb(
        &["-p", d.to_str().expect("utf-8 temp dir"), "-s", "stop"],
        &std::env::temp_dir(),
    );
    assert_eq!(o.status.code(), Some(1));
    let pid_file = d.canonicalize().expect("temp dir").join("logs/nginx.pid");
    assert_eq!(
        text(&o.stderr),
        format!(
            "ferrolb: [error] process {} (from \"{}\") is \"sleep\", not ferrolb: not \
             signalled\n  hint: the pid file is stale and its number was reused; remove it\n",
            child.id(),
            pid_file.display()
        )
    );
    // Still alive: nothing was sent.
    assert!(child.try_wait().expect("try_wait").is_none());
    child.kill().expect("kill sleep");
    child.wait().expect("reap sleep");
}

#[test]
fn signal_names_a_pid_that_is_gone() {
    let d = tempdir("sg");
    let mut child = Command::new("true").spawn().expect("true");
    child.wait().expect("reap");
    std::fs::create_dir_all(d.join("logs")).expect("logs");
    std::fs::write(d.join("logs/nginx.pid"), format!("{}\n", child.id())).expect("pid");
    let o = ferrolb(&["-s", "quit"], &d);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("no process {} (from ", child.id())),
        "{e}"
    );
    assert!(e.contains("pid file is stale"), "{e}");
}

#[test]
fn demo_names_a_taken_port() {
    let d = tempdir("demo");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let p = port.to_string();
    let balancer = if port > 60000 {
        port - 1000
    } else {
        port + 1000
    }
    .to_string();
    let o = ferrolb(
        &[
            "demo",
            "--backends",
            "1",
            "--first-backend-port",
            &p,
            "--balancer-port",
            &balancer,
        ],
        &d,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains(&format!("127.0.0.1:{port} failed")), "{e}");
    assert!(e.contains("already in use"), "{e}");
}
