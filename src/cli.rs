//! The command line: nginx's options, parsed the way nginx parses them (flags may be
//! grouped, `-cfile` and `-c file` are the same, `-` alone is ignored), plus the long
//! forms `--help`/`--version` and the `demo` subcommand.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ferrolb::demo::DemoOptions;
use ferrolb::supervise::shim::ShimArgs;
use ferrolb::supervise::UpOptions;

/// ferrolb's own version line, printed first by `-v`/`-V`/`--version`.
pub(crate) const OWN_VERSION_LINE: &str =
    concat!("ferrolb version: ferrolb/", env!("CARGO_PKG_VERSION"));

/// The line nginx tools and scripts parse, printed after ferrolb's own.
pub(crate) const NGINX_VERSION_LINE: &str = "nginx version: nginx/1.22.1";

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// The nginx-compatible command line.
    Nginx(NginxArgs),
    /// `ferrolb demo …`.
    Demo(DemoOptions),
    /// `ferrolb demo --help`.
    DemoHelp,
    /// `ferrolb up …`.
    Up(UpOptions),
    /// `ferrolb up --help`.
    UpHelp,
    /// `ferrolb __worker-shim …` (hidden: started by `ferrolb up` per worker).
    WorkerShim(ShimArgs),
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
    /// `restart`: rolling restart of `ferrolb up`'s workers, over its control socket
    /// (no signal: nginx's are all taken).
    Restart,
}

impl SignalCmd {
    /// The signal sent.
    /// `None` for `restart`, which is a control request.
    pub(crate) fn signal(self) -> Option<nix::sys::signal::Signal> {
        use nix::sys::signal::Signal;
        match self {
            SignalCmd::Stop => Some(Signal::SIGTERM),
            SignalCmd::Quit => Some(Signal::SIGQUIT),
            SignalCmd::Reopen => Some(Signal::SIGUSR1),
            SignalCmd::Reload => Some(Signal::SIGHUP),
            SignalCmd::Restart => None,
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

/// nginx's `invalid option: "x"`, then what exists.
fn invalid_option(what: &str) -> String {
    format!(
        "invalid option: \"{what}\"\n  options: -? -h -v -V -t -T -q, -s signal, -p prefix, \
         -e filename, -c filename, -g directives, --admin addr, --help, --version; \
         commands: demo, up (see \"ferrolb --help\")"
    )
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
    if args.first().map(|a| a.as_os_str()) == Some(OsStr::new("up")) {
        return parse_up(&args[1..]);
    }
    if args.first().map(|a| a.as_os_str()) == Some(OsStr::new("__worker-shim")) {
        return ShimArgs::parse(&args[1..])
            .map(Command::WorkerShim)
            .map_err(|e| e.to_string());
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
        if a == b"help" {
            // Not an nginx option, but what a newcomer types first.
            out.help = true;
            out.version = true;
            out.info_stream = InfoStream::Stdout;
            i += 1;
            continue;
        }
        if a.first() != Some(&b'-') || a.starts_with(b"--") {
            return Err(invalid_option(&lossy(a)));
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
                                b"restart" => SignalCmd::Restart,
                                other => {
                                    return Err(format!("invalid option: \"-s {}\"", lossy(other)))
                                }
                            })
                        }
                    }
                    break;
                }
                other => return Err(invalid_option(&lossy(std::slice::from_ref(&other)))),
            }
        }
        i += 1;
    }
    Ok(Command::Nginx(out))
}

/// `ferrolb demo`, parsed by clap; `--help` prints [`DEMO_HELP`].
#[derive(Debug, clap::Parser)]
#[command(
    name = "ferrolb demo",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct DemoArgs {
    /// `-h`, `--help`.
    #[arg(short = 'h', long = "help")]
    help: bool,
    /// The balancer's port. Default 8080.
    #[arg(long, value_name = "N")]
    balancer_port: Option<u16>,
    /// The old spelling of `--balancer-port` (deprecated: `up --port` means the first
    /// worker port).
    #[arg(
        long = "port",
        value_name = "N",
        hide = true,
        conflicts_with = "balancer_port"
    )]
    old_port: Option<u16>,
    /// How many backends. Default 4.
    #[arg(long, value_name = "N")]
    backends: Option<u16>,
    /// The first backend's port. Default 8000.
    #[arg(long, value_name = "N")]
    first_backend_port: Option<u16>,
}

/// `ferrolb up`, parsed by clap; `--help` prints [`UP_HELP`].
#[derive(Debug, clap::Parser)]
#[command(
    name = "ferrolb up",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct UpArgs {
    /// `-h`, `--help`.
    #[arg(short = 'h', long = "help")]
    help: bool,
    /// Number of workers. Default 4.
    #[arg(short = 'w', long = "workers", value_name = "N")]
    workers: Option<u16>,
    /// The first worker port. Default 8000.
    #[arg(long, value_name = "N")]
    first_worker_port: Option<u16>,
    /// The old spelling of `--first-worker-port` (deprecated: `demo --port` means the
    /// balancer port).
    #[arg(
        long = "port",
        value_name = "N",
        hide = true,
        conflicts_with = "first_worker_port"
    )]
    old_port: Option<u16>,
    /// The balancer's address. Default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// An nginx configuration to use instead of a generated one.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    conf: Option<PathBuf>,
    /// With `-c`, the upstream the workers fill.
    #[arg(long, value_name = "NAME", requires = "conf")]
    upstream: Option<String>,
    /// Admin API and dashboard address.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Readiness and health check URI.
    #[arg(long = "health", value_name = "URI")]
    health: Option<String>,
    /// Seconds for requests and workers to finish before SIGKILL. Default 10.
    #[arg(long, value_name = "SECS")]
    grace: Option<String>,
    /// Paths whose changes trigger a rolling restart.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    watch: Vec<PathBuf>,
    /// The worker command, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Parses a subcommand's arguments with clap; its errors become one line naming the
/// subcommand, with clap's suggestion (`tip: ...`) when it has one.
/// `known` lists the options for an unknown one.
fn clap_parse<T: clap::Parser>(sub: &str, known: &str, args: &[OsString]) -> Result<T, String> {
    let argv =
        std::iter::once(OsString::from(format!("ferrolb {sub}"))).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_owned();
        let tips: Vec<&str> = lines
            .filter(|l| l.trim_start().starts_with("tip: a similar"))
            .map(str::trim)
            .collect();
        let mut msg = format!("{sub}: {first}");
        for t in tips {
            msg.push_str(&format!("; {t}"));
        }
        if e.kind() == clap::error::ErrorKind::UnknownArgument {
            msg.push_str(&format!("\n  options: {known}"));
        }
        msg.push_str(&format!(" (see \"ferrolb {sub} --help\")"));
        msg
    })
}

/// The note printed when an old option spelling is used.
fn deprecated(sub: &str, old: &str, new: &str) {
    eprintln!("ferrolb: note: \"{sub} {old}\" is deprecated, use \"{new}\"");
}

fn parse_demo(args: &[OsString]) -> Result<Command, String> {
    let a: DemoArgs = clap_parse(
        "demo",
        "--balancer-port N, --backends N, --first-backend-port N, --help",
        args,
    )?;
    if a.help {
        return Ok(Command::DemoHelp);
    }
    let mut opts = DemoOptions::default();
    if let Some(p) = a.old_port {
        deprecated("demo", "--port", "--balancer-port");
        opts.port = p;
    }
    if let Some(p) = a.balancer_port {
        opts.port = p;
    }
    if let Some(n) = a.backends {
        opts.backends = n;
    }
    if let Some(p) = a.first_backend_port {
        opts.first_backend_port = p;
    }
    Ok(Command::Demo(opts))
}

fn parse_up(args: &[OsString]) -> Result<Command, String> {
    let a: UpArgs = clap_parse(
        "up",
        "-w N, --first-worker-port N, --listen ADDR, -c FILE, --upstream NAME, \
         --admin ADDR, --health URI, --grace SECS, --watch PATH..., --help, -- COMMAND",
        args,
    )?;
    if a.help {
        return Ok(Command::UpHelp);
    }
    let bad = |m: String| format!("up: {m} (see \"ferrolb up --help\")");
    let mut o = UpOptions::default();
    if let Some(n) = a.workers {
        o.workers = n;
    }
    if let Some(p) = a.old_port {
        deprecated("up", "--port", "--first-worker-port");
        o.first_port = p;
    }
    if let Some(p) = a.first_worker_port {
        o.first_port = p;
    }
    if let Some(l) = a.listen {
        o.listen = l;
    }
    o.conf = a.conf;
    o.upstream = a.upstream;
    o.admin = a.admin;
    if let Some(v) = a.health {
        if !v.starts_with('/') {
            return Err(bad(format!(
                "--health takes a path starting with /, not \"{v}\""
            )));
        }
        o.health_uri = Some(v);
    }
    if let Some(v) = a.grace {
        let secs: f64 = v
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 1e6)
            .ok_or_else(|| bad(format!("invalid seconds \"{v}\"")))?;
        o.grace = std::time::Duration::from_secs_f64(secs);
    }
    o.watch = a.watch;
    o.command = a.command;
    if o.command.is_empty() {
        return Err(bad("no worker command after \"--\"".into()));
    }
    Ok(Command::Up(o))
}

/// `-h` text after the version line.
pub(crate) const HELP: &str = "\
Usage: ferrolb [-?hvVtTq] [-s signal] [-p prefix]
               [-e filename] [-c filename] [-g directives] [--admin addr]
       ferrolb demo [--balancer-port N] [--backends N] [--first-backend-port N]
       ferrolb up [-w N] [--first-worker-port N] [--listen addr] [-c file]
                  [--admin addr]
                  [--watch path...] -- command args... {port}

Options:
  -?,-h         : this help (also --help, printed to stdout)
  -v            : show version and exit (also --version, printed to stdout)
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing,
                  and the start-up summary
  -s signal     : send signal to a running ferrolb: stop, quit, reopen, reload;
                  or restart: rolling restart of \"ferrolb up\" workers
  -p prefix     : set prefix path, where relative paths of the configuration
                  (logs/, the pid file) resolve (default: the directory of the
                  -c file; without -c, the current directory)
  -e filename   : set error log file (default: the configuration's error_log,
                  else logs/error.log); \"stderr\" logs to stderr
  -c filename   : set configuration file, relative to the prefix with -p, else
                  to the current directory (default: conf/nginx.conf if it
                  exists, else nginx.conf)
  -g directives : set global directives out of configuration file
  --admin addr  : serve the admin API and dashboard on addr (e.g.
                  127.0.0.1:9090); wins over the ferrolb_admin directive

Commands:
  demo          : start 4 demo backends on 127.0.0.1:8000-8003 and a round robin
                  balancer on 127.0.0.1:8080 in front of them; Ctrl-C stops
  up            : start your app's worker processes and balance them; see
                  \"ferrolb up --help\"

Exit status: 0 on success, 1 on any error.

Differences from nginx:
  - ferrolb runs in the foreground unless the configuration says \"daemon on;\"
    (nginx's default is on); no master/worker processes (worker_processes sets
    worker threads); -s signals that one process.
  - The prefix defaults to the directory of the -c file (without -c, the
    current directory), not a compiled-in path: logs/ and the pid file sit
    next to the configuration, and \"ferrolb -c FILE -s reload\" finds the
    instance started with -c FILE from any directory.
  - -s reads the pid file named by the configuration's \"pid\" (when the
    configuration file does not exist, logs/nginx.pid under the prefix) and
    signals the process only if it is a ferrolb.
  - Start-up errors, a start-up summary (not with -q) and, on a terminal,
    the outcome of each reload are printed on stderr.
  - Missing directories for log files are created.
  - The client's Host header is passed upstream by default (nginx sends the
    upstream's name, which Django rejects); proxy_set_header Host $proxy_host;
    restores nginx's behaviour. See README.md, \"Deviations from nginx\".
";

/// `ferrolb demo --help` text.
pub(crate) const DEMO_HELP: &str = "\
Usage: ferrolb demo [--balancer-port N] [--backends N] [--first-backend-port N]

Starts N demo HTTP backends (default 4) on 127.0.0.1, ports from
--first-backend-port (default 8000), each answering <h1>Using port PORT</h1>,
and the balancer on 127.0.0.1:--balancer-port (default 8080) with an
embedded round robin configuration. Then try: curl http://127.0.0.1:8080/
Ctrl-C stops everything. (--port is the old, deprecated spelling of
--balancer-port.)
";

/// `ferrolb up --help` text.
pub(crate) const UP_HELP: &str = "\
Usage: ferrolb up [-w N] [--first-worker-port N] [--listen ADDR]
                  [-c nginx.conf [--upstream NAME]]
                  [--admin ADDR] [--health URI] [--grace SECS] [--watch PATH...]
                  -- COMMAND ARGS... {port}

Starts N copies of COMMAND (\"workers\"), each with {port} in its arguments
replaced by its own port and PORT set in its environment, and balances requests
over them round robin. COMMAND must take the port: {port} in its arguments, or
$PORT in a shell command (sh -c '... $PORT'). A worker gets traffic only once it
is ready (its port accepts connections, or GET --health URI answers 2xx/3xx);
until one is, requests get 503 with Retry-After: 1. A worker that exits is
reported, taken out of rotation and started again (backoff from 0.5 s up to
30 s); after 5 failed starts within 60 s it gives up (ferrolb -s restart or
POST /workers/restart tries it again), and when every worker gave up ferrolb
exits with status 1. Worker output is shown line by line behind a \"PORT |\"
prefix.

Options:
  -w N            : number of workers (default 4)
  --first-worker-port N
                  : first worker port; workers get the first N free ports
                    from there (default 8000; --port is the old, deprecated
                    spelling)
  --listen ADDR   : balancer address (default 127.0.0.1:8080)
  -c FILE         : use this nginx configuration instead of a generated one;
                    the workers replace the servers of its upstream
  --upstream NAME : with -c, the upstream the workers fill (default: the only
                    upstream the file declares)
  --admin ADDR    : admin API and live dashboard on ADDR (e.g. 127.0.0.1:9090)
  --health URI    : readiness and health check GET URI (default: TCP connect);
                    with -c, the upstream's health_check is used if it has one
  --grace SECS    : time for requests in flight to finish and for workers to
                    exit after SIGTERM, before SIGKILL (default 10)
  --watch PATH... : rolling restart when files under PATH change (debounced)

Rolling restart, one worker at a time (drain, stop, start, wait until ready,
back in rotation), without a failed request:
  ferrolb -s restart            (from the same directory; waits until done)
  curl -X POST http://ADDR/workers/restart      (with --admin ADDR)

Ctrl-C or SIGTERM: stop accepting, finish requests in flight, SIGTERM the
workers' process groups, SIGKILL after --grace. Ctrl-C twice: stop at once.
No worker outlives ferrolb, even if ferrolb is killed with SIGKILL.

Django (examples/django, the article's app):
  cd examples/django
  ferrolb up -w 4 --first-worker-port 8001 --watch . -- \\
      python manage.py runserver --noreload {port}
  curl http://127.0.0.1:8080/test_load_banlance/

gunicorn (production-style; rolling restarts drop nothing):
  cd examples/django
  ferrolb up -w 4 --first-worker-port 8001 --admin 127.0.0.1:9090 -- \\
      gunicorn -b 127.0.0.1:{port} mysite.wsgi
  ferrolb -s restart      # after deploying new code

Any server that takes a port works: uvicorn app:app --port {port},
node server.js (reading $PORT), a Go binary with -addr :{port}.
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
        assert_eq!(nginx(&["-s", "restart"]).signal, Some(SignalCmd::Restart));
        assert_eq!(
            p(&["-s", "upgrade"]),
            Err("invalid option: \"-s upgrade\"".into())
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
        let starts = |args: &[&str], want: &str| {
            let e = p(args).unwrap_err();
            assert!(e.starts_with(want), "{args:?}: {e}");
            assert!(e.contains("options: -? -h -v -V"), "{e}");
            assert!(e.contains("commands: demo, up"), "{e}");
        };
        starts(&["-x"], "invalid option: \"x\"\n");
        starts(&["-tx"], "invalid option: \"x\"\n");
        starts(&["foo"], "invalid option: \"foo\"\n");
        starts(&["--foo"], "invalid option: \"--foo\"\n");
        let a = nginx(&["help"]);
        assert!(a.help && a.info_stream == InfoStream::Stdout);
        // nginx ignores a lone dash.
        assert_eq!(nginx(&["-"]), NginxArgs::default());
    }

    #[test]
    fn up_options() {
        let Ok(Command::Up(o)) = p(&[
            "up",
            "-w",
            "3",
            "--port=9000",
            "--listen",
            "127.0.0.1:9999",
            "--admin",
            "127.0.0.1:9090",
            "--watch",
            "a",
            "b",
            "--grace",
            "0.5",
            "--",
            "cmd",
            "{port}",
        ]) else {
            panic!("up did not parse");
        };
        assert_eq!(o.workers, 3);
        assert_eq!(o.first_port, 9000);
        assert_eq!(o.listen, ([127, 0, 0, 1], 9999).into());
        assert_eq!(o.admin, Some(([127, 0, 0, 1], 9090).into()));
        assert_eq!(o.watch, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(o.grace, std::time::Duration::from_millis(500));
        assert_eq!(o.command, [OsString::from("cmd"), OsString::from("{port}")]);
        let Ok(Command::Up(o)) = p(&["up", "-w4", "--", "x"]) else {
            panic!("-w4");
        };
        assert_eq!(o.workers, 4);
        let Ok(Command::Up(o)) = p(&["up", "--first-worker-port", "9100", "--", "x"]) else {
            panic!("--first-worker-port");
        };
        assert_eq!(o.first_port, 9100);
        let e = p(&["up", "--prot", "1", "--", "x"]).unwrap_err();
        assert!(e.contains("tip:"), "{e}");
        assert_eq!(p(&["up", "--help"]), Ok(Command::UpHelp));
        assert!(p(&["up", "-w", "4"])
            .unwrap_err()
            .contains("no worker command"));
        assert!(p(&["up", "--nope", "--", "x"]).is_err());
        assert!(p(&["up", "--upstream", "x", "--", "y"]).is_err());
        assert!(matches!(
            p(&["__worker-shim", "--parent", "1", "--", "x"]),
            Ok(Command::WorkerShim(_))
        ));
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
        assert_eq!(
            p(&["demo", "--balancer-port", "9091"]),
            Ok(Command::Demo(DemoOptions {
                port: 9091,
                ..DemoOptions::default()
            }))
        );
        assert!(p(&["demo", "--port", "1", "--balancer-port", "2"]).is_err());
        assert_eq!(p(&["demo", "--help"]), Ok(Command::DemoHelp));
        let e = p(&["demo", "--nope"]).unwrap_err();
        assert!(
            e.starts_with("demo: unexpected argument '--nope' found"),
            "{e}"
        );
        assert!(e.ends_with("(see \"ferrolb demo --help\")"), "{e}");
        assert!(p(&["demo", "--port"]).is_err());
        assert!(p(&["demo", "--port", "x"]).is_err());
        assert!(p(&["demo", "--nope"]).is_err());
    }
}
