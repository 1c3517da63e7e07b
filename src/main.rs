//! The `ferrolb` binary: nginx's command line in front of the library.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod cli;
mod features;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// jemalloc rather than glibc's malloc: tokio allocates every connection's task and
/// socket registration 128-byte aligned, which glibc serves with per-allocation
/// padding and jemalloc from exact size classes. Measured with 5,000 idle keep-alive
/// connections: 1,384 -> 1,087 bytes each, with the same CPU per request.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use ferrolb::config::{self, ErrorLogConf, Level, LoadOptions, LogTarget};
use ferrolb::process::{self, RunOptions};

use cli::{Command, ErrorLogArg, InfoStream, NginxArgs, SignalCmd};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let cmd = match cli::parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("ferrolb: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cmd {
        Command::Nginx(a) => nginx_main(a),
        Command::DemoHelp => {
            print!("{}", cli::DEMO_HELP);
            Ok(true)
        }
        Command::UpHelp => {
            print!("{}", cli::UP_HELP);
            Ok(true)
        }
        Command::WorkerShim(args) => {
            let code = ferrolb::supervise::shim::run(args);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Command::Up(opts) => match ferrolb::supervise::run(opts) {
            Ok(()) => Ok(true),
            Err(e) => {
                ferrolb::emerg!("{}", e);
                Ok(false)
            }
        },
        Command::Demo(opts) => match ferrolb::demo::run(opts) {
            Ok(()) => Ok(true),
            Err(e) => {
                ferrolb::emerg!("{}", e);
                Ok(false)
            }
        },
    };
    ferrolb::log::flush();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            ferrolb::emerg!("{:#}", e);
            ExitCode::FAILURE
        }
    }
}

/// Runs the nginx command line; `Ok(false)` means "failed, already reported".
fn nginx_main(a: NginxArgs) -> anyhow::Result<bool> {
    if a.version {
        print_info(&a);
        // As nginx: -v/-V/-h only print, unless combined with -t.
        if !a.test {
            return Ok(true);
        }
    }

    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let (prefix, conf_path) = prefix_and_conf(&cwd, a.prefix.as_deref(), a.conf.as_deref());
    let error_log_override = a.error_log.as_ref().map(|e| match e {
        ErrorLogArg::Stderr => LogTarget::Stderr,
        ErrorLogArg::File(f) => LogTarget::File(prefix.join(f)),
    });
    if let Some(target) = &error_log_override {
        // Startup and -t messages go where -e says; nginx also copies warnings and
        // errors to the terminal while starting, so does ferrolb.
        ferrolb::log::init(&ErrorLogConf {
            target: target.clone(),
            level: Level::Notice,
        })?;
        ferrolb::log::set_stderr_mirror(true);
    }
    let load = LoadOptions {
        prefix: prefix.clone(),
        globals: a.globals.clone(),
        text: None,
        is_root: is_root(),
        ..Default::default()
    };

    if let Some(sig) = a.signal {
        return Ok(send_signal(sig, &prefix, &conf_path, &load));
    }
    if a.test {
        return Ok(test_config(&a, &conf_path, &load));
    }

    // Whatever stops the start is shown on the terminal as well as written to the
    // error log, as nginx does with its `[emerg]` start-up errors; `process::run` turns
    // the copy off once it serves.
    ferrolb::log::set_stderr_mirror(true);
    let terminal = process::Terminal {
        summary: !a.quiet,
        // A reload is asked for from elsewhere (`-s reload`, systemctl): its outcome
        // on a terminal someone watches, not into a service's captured output, which
        // has the error log.
        reloads: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        daemon: true,
    };
    let opts = RunOptions {
        conf_path,
        load,
        error_log_override,
        admin: a.admin,
    };
    match process::run_on_terminal(opts, terminal) {
        Ok(()) => Ok(true),
        Err(ferrolb::server::ServerError::Config(e)) => {
            report_config_error(&e);
            Ok(false)
        }
        Err(e) => {
            ferrolb::emerg!("{}", e);
            Ok(false)
        }
    }
}

fn print_info(a: &NginxArgs) {
    let mut text = format!("{}\n{}\n", cli::OWN_VERSION_LINE, cli::NGINX_VERSION_LINE);
    if a.help {
        text.push_str(cli::HELP);
    }
    if a.configure {
        let rustc = env!("FERROLB_RUSTC_VERSION");
        let rustc = rustc.strip_prefix("rustc ").unwrap_or(rustc);
        text.push_str(&format!(
            "built by rustc {rustc}\nbuilt with rustls 0.23 (ring)\nTLS SNI support enabled\nconfigure arguments: {}\n",
            features::configure_arguments()
        ));
    }
    // Nothing useful to do if the terminal is gone.
    let _ = match a.info_stream {
        InfoStream::Stderr => std::io::stderr().write_all(text.as_bytes()),
        InfoStream::Stdout => std::io::stdout().write_all(text.as_bytes()),
    };
}

/// The prefix (where relative paths of the configuration resolve: `logs/`, the pid
/// file) and the configuration file, by one rule an operator can predict from any
/// directory:
///
/// * `-p DIR`: the prefix is DIR; `-c FILE` is relative to it, as in nginx.
/// * `-c FILE` without `-p`: FILE is relative to the current directory and the prefix
///   is the directory FILE is in, so `logs/` and the pid file sit next to it and
///   `ferrolb -c FILE -s reload` finds the instance from anywhere.
/// * neither: the current directory, with `conf/nginx.conf` or `nginx.conf` in it.
///
/// The prefix is made absolute and symlink-free when it exists, so that two spellings
/// of one directory find the same pid file.
fn prefix_and_conf(cwd: &Path, prefix: Option<&Path>, conf: Option<&Path>) -> (PathBuf, PathBuf) {
    let canonical = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    match (prefix, conf) {
        (Some(p), conf) => {
            let prefix = canonical(cwd.join(p));
            let conf = match conf {
                Some(c) => prefix.join(c),
                None => default_conf(&prefix),
            };
            (prefix, conf)
        }
        (None, Some(c)) => {
            let conf = cwd.join(c);
            let dir = conf
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| cwd.to_owned());
            let prefix = canonical(dir);
            let name = conf.file_name().map(PathBuf::from).unwrap_or_default();
            (prefix.clone(), prefix.join(name))
        }
        (None, None) => {
            let prefix = canonical(cwd.to_owned());
            let conf = default_conf(&prefix);
            (prefix, conf)
        }
    }
}

/// `conf/nginx.conf` as nginx's layout has it, else `nginx.conf` next to the binary's
/// working directory (the common layout of a project checkout).
fn default_conf(prefix: &Path) -> PathBuf {
    let nginx_layout = prefix.join("conf/nginx.conf");
    if nginx_layout.exists() {
        nginx_layout
    } else {
        prefix.join("nginx.conf")
    }
}

/// Whether we run as root (it changes the default `listen` port). /proc/self belongs to
/// the effective user; this avoids unsafe code and extra nix features.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Reports a configuration error as nginx does: `[emerg] message in FILE:LINE`. The
/// loader's errors display as `FILE:LINE: message`; anything else is shown as is.
fn report_config_error(e: &config::ConfigError) {
    if let config::ConfigError::Io { path, source } = e {
        // nginx's words for a configuration file it cannot open.
        let hint = match source.kind() {
            std::io::ErrorKind::NotFound => {
                "give the file with -c FILE (relative to the prefix, -p), or try \"ferrolb demo\""
            }
            std::io::ErrorKind::PermissionDenied => {
                "the file (or a directory above it) is not readable by this user"
            }
            _ => "",
        };
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("\n  hint: {hint}")
        };
        ferrolb::emerg!(
            "open() \"{}\" failed ({}){}",
            path.display(),
            ferrolb::log::os_error_text(source),
            hint
        );
        return;
    }
    let text = e.to_string();
    match split_location(&text) {
        Some((file, line, msg)) => {
            // The place goes on the message's first line; hint lines follow it.
            let (first, rest) = msg.split_once('\n').unwrap_or((msg, ""));
            let rest = if rest.is_empty() {
                String::new()
            } else {
                format!("\n{rest}")
            };
            ferrolb::emerg!("{} in {}:{}{}", first, file, line, rest)
        }
        None => ferrolb::emerg!("{}", text),
    }
}

/// Splits `FILE:LINE: message` (the file may itself contain colons).
fn split_location(text: &str) -> Option<(&str, u32, &str)> {
    let mut search = 0;
    while let Some(rel) = text[search..].find(": ") {
        let sep = search + rel;
        let head = &text[..sep];
        if let Some(colon) = head.rfind(':') {
            if let Ok(line) = head[colon + 1..].parse::<u32>() {
                if colon > 0 {
                    return Some((&head[..colon], line, &text[sep + 2..]));
                }
            }
        }
        search = sep + 2;
    }
    None
}

/// `-t` / `-T`: returns success.
fn test_config(a: &NginxArgs, conf_path: &Path, load: &LoadOptions) -> bool {
    if a.quiet {
        ferrolb::log::set_level(Level::Error);
    }
    let shown = conf_path.display();
    match config::load(conf_path, load) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                ferrolb::warn!("{} in {}", w.message, w.span);
            }
            if !a.quiet {
                eprintln!("ferrolb: the configuration file {shown} syntax is ok");
                eprintln!("ferrolb: configuration file {shown} test is successful");
            }
            if a.dump {
                match config::dump(conf_path, load) {
                    Ok(text) => {
                        let mut out = std::io::stdout().lock();
                        if out
                            .write_all(text.as_bytes())
                            .and_then(|_| out.flush())
                            .is_err()
                        {
                            return false;
                        }
                    }
                    Err(e) => {
                        report_config_error(&e);
                        return false;
                    }
                }
            }
            true
        }
        Err(e) => {
            report_config_error(&e);
            eprintln!("ferrolb: configuration file {shown} test failed");
            false
        }
    }
}

/// `-s`: returns success. Signals only a process that is a ferrolb (by `/proc`), so a
/// stale pid file whose number now belongs to something else is never acted on.
fn send_signal(sig: SignalCmd, prefix: &Path, conf_path: &Path, load: &LoadOptions) -> bool {
    let conf_exists = conf_path.exists();
    let pid_path = if conf_exists {
        match config::load(conf_path, load) {
            Ok(cfg) => cfg.pid,
            Err(e) => {
                report_config_error(&e);
                return false;
            }
        }
    } else {
        prefix.join("logs/nginx.pid")
    };
    let text = match std::fs::read(&pid_path) {
        Ok(t) => t,
        Err(e) => {
            let why = if conf_exists {
                format!(
                    "the pid file is the \"pid\" of {} (default logs/nginx.pid in the prefix {})",
                    conf_path.display(),
                    prefix.display()
                )
            } else {
                format!(
                    "{} does not exist, so the pid file is logs/nginx.pid in the prefix {}",
                    conf_path.display(),
                    prefix.display()
                )
            };
            ferrolb::error!(
                "open() \"{}\" failed ({})\n  hint: is ferrolb running? {why}; give -s the \
                 same -c FILE (and -p DIR, if any) that started it",
                pid_path.display(),
                ferrolb::log::os_error_text(&e)
            );
            return false;
        }
    };
    let trimmed = String::from_utf8_lossy(&text).trim().to_owned();
    let pid = match trimmed.parse::<i32>() {
        Ok(p) if p > 0 => p,
        _ => {
            ferrolb::error!(
                "invalid PID number \"{}\" in \"{}\"",
                trimmed,
                pid_path.display()
            );
            return false;
        }
    };
    match process_kind(pid) {
        ProcessKind::Ferrolb => {}
        ProcessKind::Gone => {
            ferrolb::error!(
                "no process {pid} (from \"{}\"): ferrolb is not running\n  hint: the pid \
                 file is stale (ferrolb was killed?); remove it",
                pid_path.display()
            );
            return false;
        }
        ProcessKind::Other(name) => {
            ferrolb::error!(
                "process {pid} (from \"{}\") is \"{name}\", not ferrolb: not signalled\n  \
                 hint: the pid file is stale and its number was reused; remove it",
                pid_path.display()
            );
            return false;
        }
    }
    let Some(signal) = sig.signal() else {
        // `restart`: a request over `ferrolb up`'s control socket, answered when done.
        return match ferrolb::supervise::request_restart(&pid_path) {
            Ok(msg) => {
                eprintln!("ferrolb: {msg}");
                true
            }
            Err(e) => {
                ferrolb::error!("restart failed: {}", e);
                false
            }
        };
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        Ok(()) => true,
        Err(errno) => {
            ferrolb::error!(
                "kill({}, {}) failed ({}: {})",
                pid,
                signal as i32,
                errno as i32,
                errno.desc()
            );
            false
        }
    }
}

/// What a pid names, for `-s`.
#[derive(Debug, PartialEq, Eq)]
enum ProcessKind {
    /// A ferrolb process.
    Ferrolb,
    /// No such process.
    Gone,
    /// Something else, by its name.
    Other(String),
}

/// Tells by `/proc/PID/exe` (the binary's file name, ` (deleted)` after an upgrade
/// replaced it) or `/proc/PID/comm` (readable for other users' processes too) whether
/// `pid` is a ferrolb. A binary renamed to something without "ferrolb" in it is not
/// recognised: the error says what the process is.
fn process_kind(pid: i32) -> ProcessKind {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let comm = match std::fs::read_to_string(proc_dir.join("comm")) {
        Ok(c) => c.trim().to_owned(),
        Err(_) => return ProcessKind::Gone,
    };
    let exe_name = std::fs::read_link(proc_dir.join("exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let is_ferrolb = comm.starts_with("ferrolb")
        || exe_name
            .as_deref()
            .is_some_and(|n| n.starts_with("ferrolb"));
    if is_ferrolb {
        ProcessKind::Ferrolb
    } else {
        ProcessKind::Other(comm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_loader_errors() {
        assert_eq!(
            split_location("/a/nginx.conf:12: unknown directive \"foo\""),
            Some(("/a/nginx.conf", 12, "unknown directive \"foo\""))
        );
        assert_eq!(
            split_location("c:/x:3: bad: really"),
            Some(("c:/x", 3, "bad: really"))
        );
        assert_eq!(split_location("config loader not merged yet"), None);
        assert_eq!(
            split_location("open() \"x\" failed (2: No such file)"),
            None
        );
    }
}
