//! The command line: nginx's options, parsed the way nginx parses them (flags may be
//! grouped, `-cfile` and `-c file` are the same, `-` alone is ignored), plus the long
//! forms `--help`/`--version` and the `demo` subcommand.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ferrolb::demo::DemoOptions;

/// The version line nginx tools and scripts look for, with ours appended.
pub(crate) const VERSION_LINE: &str = concat!(
    "nginx version: nginx/1.22.1 (ferrolb ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// The nginx-compatible command line.
    Nginx(NginxArgs),
    /// `ferrolb demo …`.
    Demo(DemoOptions),
    /// `ferrolb demo --help`.
    DemoHelp,
}

/// Where `-v`/`-h` output goes: nginx writes it to stderr; the GNU-style long options
/// write to stdout as users of `--help | less` expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum InfoStream {
    /// nginx's short options.
    #[default]
    Stderr,
    /// `--help`, `--version`.
    Stdout,
}

/// `-s` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalCmd {
    /// `stop`: SIGTERM, fast shutdown.
    Stop,
    /// `quit`: SIGQUIT, graceful shutdown.
    Quit,
    /// `reopen`: SIGUSR1, reopen log files.
    Reopen,
    /// `reload`: SIGHUP, reload the configuration.
    Reload,
}

impl SignalCmd {
    /// The signal sent.
    pub(crate) fn signal(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            SignalCmd::Stop => Signal::SIGTERM,
            SignalCmd::Quit => Signal::SIGQUIT,
            SignalCmd::Reopen => Signal::SIGUSR1,
            SignalCmd::Reload => Signal::SIGHUP,
        }
    }
}

/// `-e` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorLogArg {
    /// `-e stderr`.
    Stderr,
    /// `-e FILE`, relative to the prefix.
    File(PathBuf),
}

/// The nginx options, as given.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NginxArgs {
    /// `-h`, `-?`, `--help`.
    pub(crate) help: bool,
    /// `-v`, `-V`, `-h`, `--version`: print the version line.
    pub(crate) version: bool,
    /// `-V`: also the compiler and configure arguments.
    pub(crate) configure: bool,
    /// Where the three above print.
    pub(crate) info_stream: InfoStream,
    /// `-t` (or `-T`).
    pub(crate) test: bool,
    /// `-T`.
    pub(crate) dump: bool,
    /// `-q`.
    pub(crate) quiet: bool,
    /// `-s`.
    pub(crate) signal: Option<SignalCmd>,
    /// `-p`.
    pub(crate) prefix: Option<PathBuf>,
    /// `-c`.
    pub(crate) conf: Option<PathBuf>,
    /// `-e`.
    pub(crate) error_log: Option<ErrorLogArg>,
    /// `-g`.
    pub(crate) globals: Option<String>,
    /// `--admin ADDR` / `--admin=ADDR`: the admin listener (wins over
    /// `ferrolb_admin`). Default none.
    pub(crate) admin: Option<std::net::SocketAddr>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses the arguments after the program name. The error is the message nginx would
/// print after `ferrolb: `.
pub(crate) fn parse(args: &[OsString]) -> Result<Command, String> {
    if args.first().map(|a| a.as_os_str()) == Some(OsStr::new("demo")) {
        return parse_demo(&args[1..]);
    }
    let mut out = NginxArgs::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        match a {
            b"--help" => {
                out.help = true;
                out.version = true;
                out.info_stream = InfoStream::Stdout;
                i += 1;
                continue;
            }
            b"--version" => {
                out.version = true;
                out.info_stream = InfoStream::Stdout;
                i += 1;
                continue;
            }
            _ if a == b"--admin" || a.starts_with(b"--admin=") => {
                let value = match a.strip_prefix(b"--admin=") {
                    Some(v) => lossy(v),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => lossy(v.as_bytes()),
                            None => return Err("option \"--admin\" requires an address".into()),
                        }
                    }
                };
                out.admin = Some(value.parse().map_err(|_| {
                    format!("invalid address \"{value}\" for \"--admin\" (use IP:PORT, e.g. 127.0.0.1:9090)")
                })?);
                i += 1;
                continue;
            }
            _ => {}
        }
        if a.first() != Some(&b'-') {
            return Err(format!("invalid option: \"{}\"", lossy(a)));
        }
        let mut p = 1;
        while p < a.len() {
            let c = a[p];
            p += 1;
            match c {
                b'?' | b'h' => {
                    out.help = true;
                    out.version = true;
                }
                b'v' => out.version = true,
                b'V' => {
                    out.version = true;
                    out.configure = true;
                }
                b't' => out.test = true,
                b'T' => {
                    out.test = true;
                    out.dump = true;
                }
                b'q' => out.quiet = true,
                b'p' | b'c' | b'e' | b'g' | b's' => {
                    // The value is the rest of this argument or the next argument.
                    let value: OsString = if p < a.len() {
                        OsStr::from_bytes(&a[p..]).to_os_string()
                    } else if i + 1 < args.len() {
                        i += 1;
                        args[i].clone()
                    } else {
                        let what = match c {
                            b'p' => "directory name",
                            b'c' | b'e' => "file name",
                            _ => "parameter",
                        };
                        return Err(format!("option \"-{}\" requires {}", c as char, what));
                    };
                    match c {
                        b'p' => out.prefix = Some(PathBuf::from(value)),
                        b'c' => out.conf = Some(PathBuf::from(value)),
                        b'e' => {
                            out.error_log = Some(if value == "stderr" {
                                ErrorLogArg::Stderr
                            } else {
                                ErrorLogArg::File(PathBuf::from(value))
                            })
                        }
                        b'g' => out.globals = Some(lossy(value.as_bytes())),
                        _ => {
                            out.signal = Some(match value.as_bytes() {
                                b"stop" => SignalCmd::Stop,
                                b"quit" => SignalCmd::Quit,
                                b"reopen" => SignalCmd::Reopen,
                                b"reload" => SignalCmd::Reload,
                                other => {
                                    return Err(format!("invalid option: \"-s {}\"", lossy(other)))
                                }
                            })
                        }
                    }
                    break;
                }
                other => {
                    return Err(format!(
                        "invalid option: \"{}\"",
                        lossy(std::slice::from_ref(&other))
                    ))
                }
            }
        }
        i += 1;
    }
    Ok(Command::Nginx(out))
}

fn parse_demo(args: &[OsString]) -> Result<Command, String> {
    let mut opts = DemoOptions::default();
    let mut i = 0;
    while i < args.len() {
        let a = lossy(args[i].as_bytes());
        if a == "-h" || a == "--help" {
            return Ok(Command::DemoHelp);
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        let slot = match name.as_str() {
            "--port" => &mut opts.port,
            "--backends" => &mut opts.backends,
            "--first-backend-port" => &mut opts.first_backend_port,
            _ => {
                return Err(format!(
                    "demo: invalid option: \"{a}\" (see \"ferrolb demo --help\")"
                ))
            }
        };
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) => lossy(v.as_bytes()),
                    None => return Err(format!("demo: option \"{name}\" requires a number")),
                }
            }
        };
        *slot = value
            .parse()
            .map_err(|_| format!("demo: invalid number \"{value}\" for \"{name}\""))?;
        i += 1;
    }
    Ok(Command::Demo(opts))
}

/// `-h` text after the version line.
pub(crate) const HELP: &str = "\
Usage: ferrolb [-?hvVtTq] [-s signal] [-p prefix]
               [-e filename] [-c filename] [-g directives] [--admin addr]
       ferrolb demo [--port N] [--backends N] [--first-backend-port N]

Options:
  -?,-h         : this help (also --help, printed to stdout)
  -v            : show version and exit (also --version, printed to stdout)
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a running ferrolb: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: the current directory)
  -e filename   : set error log file (default: the configuration's error_log,
                  else logs/error.log); \"stderr\" logs to stderr
  -c filename   : set configuration file, relative to the prefix (default:
                  conf/nginx.conf if it exists, else nginx.conf)
  -g directives : set global directives out of configuration file
  --admin addr  : serve the admin API and dashboard on addr (e.g.
                  127.0.0.1:9090); wins over the ferrolb_admin directive

Commands:
  demo          : start 4 demo backends on 127.0.0.1:8000-8003 and a round robin
                  balancer on 127.0.0.1:8080 in front of them; Ctrl-C stops

Exit status: 0 on success, 1 on any error.

Differences from nginx:
  - ferrolb runs in the foreground only: no daemon and no master/worker
    processes (worker_processes sets worker threads); -s signals that process.
  - The prefix defaults to the current directory, not a compiled-in path.
  - -s reads the pid file named by the configuration's \"pid\"; when the
    configuration file does not exist, logs/nginx.pid under the prefix.
  - Missing directories for log files are created.
";

/// `ferrolb demo --help` text.
pub(crate) const DEMO_HELP: &str = "\
Usage: ferrolb demo [--port N] [--backends N] [--first-backend-port N]

Starts N demo HTTP backends (default 4) on 127.0.0.1, ports from
--first-backend-port (default 8000), each answering <h1>Using port PORT</h1>,
and the balancer on 127.0.0.1:--port (default 8080) with an embedded
round robin configuration. Then try: curl http://127.0.0.1:8080/
Ctrl-C stops everything.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&v)
    }

    fn nginx(args: &[&str]) -> NginxArgs {
        match p(args) {
            Ok(Command::Nginx(a)) => a,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn admin_flag() {
        let a = nginx(&["--admin", "127.0.0.1:9090", "-c", "x.conf"]);
        assert_eq!(a.admin, Some(([127, 0, 0, 1], 9090).into()));
        assert_eq!(a.conf, Some(PathBuf::from("x.conf")));
        let a = nginx(&["--admin=0.0.0.0:9091"]);
        assert_eq!(a.admin, Some(([0, 0, 0, 0], 9091).into()));
        assert!(p(&["--admin"]).is_err());
        assert!(p(&["--admin", "localhost"])
            .unwrap_err()
            .contains("invalid address"));
    }

    #[test]
    fn empty_is_run() {
        assert_eq!(nginx(&[]), NginxArgs::default());
    }

    #[test]
    fn values_attached_or_separate() {
        let a = nginx(&["-c", "x.conf", "-pp/", "-e", "stderr", "-g", "daemon off;"]);
        assert_eq!(a.conf, Some(PathBuf::from("x.conf")));
        assert_eq!(a.prefix, Some(PathBuf::from("p/")));
        assert_eq!(a.error_log, Some(ErrorLogArg::Stderr));
        assert_eq!(a.globals.as_deref(), Some("daemon off;"));
        let a = nginx(&["-cx.conf", "-elogs/e.log"]);
        assert_eq!(a.conf, Some(PathBuf::from("x.conf")));
        assert_eq!(a.error_log, Some(ErrorLogArg::File("logs/e.log".into())));
    }

    #[test]
    fn grouped_flags() {
        let a = nginx(&["-tq"]);
        assert!(a.test && a.quiet && !a.dump);
        let a = nginx(&["-T"]);
        assert!(a.test && a.dump);
        // A value-taking flag ends the group: the rest is its value.
        let a = nginx(&["-tc", "f"]);
        assert!(a.test);
        assert_eq!(a.conf, Some(PathBuf::from("f")));
        let a = nginx(&["-qcf"]);
        assert_eq!(a.conf, Some(PathBuf::from("f")));
    }

    #[test]
    fn version_and_help() {
        let a = nginx(&["-v"]);
        assert!(a.version && !a.configure && !a.help);
        let a = nginx(&["-V"]);
        assert!(a.version && a.configure);
        for h in ["-h", "-?"] {
            let a = nginx(&[h]);
            assert!(a.help && a.version);
            assert_eq!(a.info_stream, InfoStream::Stderr);
        }
        let a = nginx(&["--help"]);
        assert!(a.help && a.info_stream == InfoStream::Stdout);
        let a = nginx(&["--version"]);
        assert!(a.version && !a.help && a.info_stream == InfoStream::Stdout);
    }

    #[test]
    fn signals() {
        for (s, want) in [
            ("stop", SignalCmd::Stop),
            ("quit", SignalCmd::Quit),
            ("reopen", SignalCmd::Reopen),
            ("reload", SignalCmd::Reload),
        ] {
            assert_eq!(nginx(&["-s", s]).signal, Some(want));
        }
        assert_eq!(nginx(&["-sreload"]).signal, Some(SignalCmd::Reload));
        assert_eq!(
            p(&["-s", "restart"]),
            Err("invalid option: \"-s restart\"".into())
        );
    }

    #[test]
    fn missing_values_use_nginx_messages() {
        assert_eq!(p(&["-c"]), Err("option \"-c\" requires file name".into()));
        assert_eq!(p(&["-e"]), Err("option \"-e\" requires file name".into()));
        assert_eq!(
            p(&["-p"]),
            Err("option \"-p\" requires directory name".into())
        );
        assert_eq!(p(&["-g"]), Err("option \"-g\" requires parameter".into()));
        assert_eq!(p(&["-s"]), Err("option \"-s\" requires parameter".into()));
        assert_eq!(
            p(&["-t", "-c"]),
            Err("option \"-c\" requires file name".into())
        );
    }

    #[test]
    fn invalid_options() {
        assert_eq!(p(&["-x"]), Err("invalid option: \"x\"".into()));
        assert_eq!(p(&["-tx"]), Err("invalid option: \"x\"".into()));
        assert_eq!(p(&["foo"]), Err("invalid option: \"foo\"".into()));
        assert_eq!(p(&["--foo"]), Err("invalid option: \"-\"".into()));
        // nginx ignores a lone dash.
        assert_eq!(nginx(&["-"]), NginxArgs::default());
    }

    #[test]
    fn demo_options() {
        assert_eq!(p(&["demo"]), Ok(Command::Demo(DemoOptions::default())));
        assert_eq!(
            p(&[
                "demo",
                "--port",
                "9090",
                "--backends=2",
                "--first-backend-port",
                "7000"
            ]),
            Ok(Command::Demo(DemoOptions {
                port: 9090,
                backends: 2,
                first_backend_port: 7000
            }))
        );
        assert_eq!(p(&["demo", "--help"]), Ok(Command::DemoHelp));
        assert!(p(&["demo", "--port"]).is_err());
        assert!(p(&["demo", "--port", "x"]).is_err());
        assert!(p(&["demo", "--nope"]).is_err());
    }
}
