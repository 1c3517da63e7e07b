//! `uwsgi_pass` end to end with real uWSGI (PyPI's `pyuwsgi`, installed in the test
//! venv) running the example Django app, one instance on TCP and one on a Unix socket
//! in one upstream group: GET and POST (small and 1 MiB, with a length and chunked)
//! compared with Debian's nginx on the same config (status, body, and the CGI
//! variables Django saw), and failover: a frozen or stopped instance's GETs go to the
//! other, a POST that reached a frozen one is not sent again.

mod common;

use std::fs;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// nginx's `uwsgi_params` (as its source tree ships it), for machines without
/// Debian's copy in /etc/nginx.
const UWSGI_PARAMS: &str = "
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;

uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;

uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
";

/// Where the uwsgi listens.
enum Socket {
    Tcp(u16),
    Unix(PathBuf),
}

/// One uWSGI process serving `examples/django`, named by the `X-Backend` field it adds
/// to every answer, logging its POSTs to `DIR/post.log`.
struct Uwsgi {
    name: &'static str,
    socket: Socket,
    dir: PathBuf,
    child: Child,
}

impl Uwsgi {
    /// Starts it and waits until it accepts connections (a taken TCP port: again on
    /// another, a few times).
    fn start(name: &'static str, unix: bool) -> Uwsgi {
        let (python, django) = django_env();
        let uwsgi = python.with_file_name("uwsgi");
        assert!(
            uwsgi.exists(),
            "{} not found: the test venv needs pyuwsgi (scripts/test.sh installs examples/django/requirements.txt)",
            uwsgi.display()
        );
        let dir = fresh_temp_dir(&format!("uwsgi-{name}"));
        let mut last = String::new();
        for _ in 0..3 {
            let socket = if unix {
                Socket::Unix(dir.join("app.sock"))
            } else {
                Socket::Tcp(free_port())
            };
            let addr = match &socket {
                Socket::Tcp(p) => format!("127.0.0.1:{p}"),
                Socket::Unix(p) => p.display().to_string(),
            };
            let log = dir.join("uwsgi.log");
            let out = fs::File::create(&log).expect("uwsgi log");
            let child = Command::new(&uwsgi)
                .args(["--socket", &addr, "--module", "mysite.wsgi:application"])
                .args(["--processes", "1", "--die-on-term", "--need-app"])
                .args(["--add-header", &format!("X-Backend: {name}")])
                .args(["--buffer-size", "16384", "--disable-logging"])
                .current_dir(&django)
                .env("FERROLB_POST_LOG", dir.join("post.log"))
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", uwsgi.display()));
            let mut u = Uwsgi {
                name,
                socket,
                dir: dir.clone(),
                child,
            };
            let ready = poll(Duration::from_secs(20), || {
                if let Ok(Some(_)) = u.child.try_wait() {
                    return Some(false);
                }
                u.accepts().then_some(true)
            });
            if ready == Some(true) {
                return u;
            }
            last = fs::read_to_string(&log).unwrap_or_default();
            u.stop();
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("uWSGI {name} did not start:\n{last}");
    }

    fn accepts(&self) -> bool {
        match &self.socket {
            Socket::Tcp(p) => std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok(),
            Socket::Unix(p) => UnixStream::connect(p).is_ok(),
        }
    }

    /// As `uwsgi_pass` and `server` write it.
    fn address(&self) -> String {
        match &self.socket {
            Socket::Tcp(p) => format!("127.0.0.1:{p}"),
            Socket::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    fn signal(&self, s: Signal) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), s);
    }

    fn stop(&mut self) {
        self.signal(Signal::SIGCONT);
        stop_group(&mut self.child, Signal::SIGKILL, Duration::from_secs(5));
    }

    /// The request ids its POST log holds.
    fn posted(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("post.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').next().map(str::to_owned))
            .collect()
    }
}

impl Drop for Uwsgi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory with `uwsgi_params`: Debian's when installed, else nginx's own.
fn params_dir() -> PathBuf {
    let dir = fresh_temp_dir("uwsgi-params");
    let text =
        fs::read_to_string("/etc/nginx/uwsgi_params").unwrap_or_else(|_| UWSGI_PARAMS.to_owned());
    fs::write(dir.join("uwsgi_params"), text).expect("write uwsgi_params");
    dir
}

fn conf(port: u16, params: &Path, backends: &[&Uwsgi], extra: &str) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {} max_fails=0;\n", b.address()))
        .collect();
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  client_max_body_size 4m;\n  \
         upstream django {{\n{servers}  }}\n  server {{\n    listen 127.0.0.1:{port};\n    \
         location / {{\n      include {p}/uwsgi_params;\n      \
         uwsgi_param HTTP_X_REPLACED from-config;\n      \
         uwsgi_param X_EMPTY $http_x_nothing if_not_empty;\n      \
         uwsgi_param X_FILLED $http_x_custom if_not_empty;\n      \
         uwsgi_pass django;\n{extra}    }}\n    \
         location /by-arg/ {{ include {p}/uwsgi_params; uwsgi_pass $arg_to; }}\n  }}\n}}\n",
        p = params.display()
    )
}

/// The CGI variables of a `/meta/` answer, minus the ones that name a port.
fn meta(r: &Response) -> String {
    let mut v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()));
    if let Some(m) = v.as_object_mut() {
        m.remove("REMOTE_PORT");
        m.remove("SERVER_PORT");
        m.remove("HTTP_HOST");
        // Each server's prefix is its own directory: keep the part under it.
        if let Some(root) = m.get_mut("DOCUMENT_ROOT") {
            let tail = root
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("");
            *root = serde_json::Value::String(format!("PREFIX/{tail}"));
        }
    }
    v.to_string()
}

#[test]
fn uwsgi_answers_match_nginx() {
    let a = Uwsgi::start("tcp", false);
    let b = Uwsgi::start("unix", true);
    let params = params_dir();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(p, &params, &[&a, &b], ""));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(p, &params, &[&a, &b], "")));
    let mib: Vec<u8> = (0..1 << 20).map(|i| b"abcdefghij"[i % 10]).collect();
    let chunked_body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    type Case<'c> = (&'c str, &'c str, Vec<(&'c str, &'c str)>, &'c [u8]);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/", vec![], b""),
        (
            "GET",
            "/meta/?x=1&y=%20two",
            vec![
                ("X-Custom", "custom value"),
                ("X-Replaced", "from-client"),
                ("User-Agent", "uwsgi-test"),
                ("Accept-Language", "fr"),
            ],
            b"",
        ),
        ("HEAD", "/meta/", vec![], b""),
        (
            "POST",
            "/meta/",
            vec![("Content-Type", "text/plain")],
            b"small body",
        ),
        (
            "POST",
            "/meta/",
            vec![("Content-Type", "application/octet-stream")],
            &mib,
        ),
        (
            "POST",
            "/meta/",
            vec![
                ("Content-Type", "text/plain"),
                ("Transfer-Encoding", "chunked"),
            ],
            chunked_body,
        ),
        ("POST", "/post/", vec![("X-Request-Id", "small-1")], b"a=1"),
        ("POST", "/post/", vec![("X-Request-Id", "big-1")], &mib),
        ("GET", "/nowhere/", vec![], b""),
        // `uwsgi_pass $arg_to`: a group named per request (Django has no such page).
        ("GET", "/by-arg/?to=django", vec![], b""),
    ];
    let mut mismatches = Vec::new();
    for (method, path, headers, body) in &cases {
        let ours = http_request(port, method, path, "localhost", headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", ferrolb.diagnostics()));
        assert!(
            ours.status < 500,
            "{method} {path}: {} {}\n{}",
            ours.status,
            ours.text(),
            ferrolb.error_log()
        );
        let backend = ours.header("x-backend").unwrap_or("-").to_owned();
        assert!(
            ["tcp", "unix"].contains(&backend.as_str()),
            "{method} {path}: {:?}",
            ours.headers
        );
        if *path == "/meta/?x=1&y=%20two" {
            let m = meta(&ours);
            for want in [
                "\"HTTP_X_CUSTOM\":\"custom value\"",
                "\"HTTP_X_REPLACED\":\"from-config\"",
                "\"X_FILLED\":\"custom value\"",
                "\"QUERY_STRING\":\"x=1&y=%20two\"",
                "\"PATH_INFO\":\"/meta/\"",
                "\"REQUEST_METHOD\":\"GET\"",
            ] {
                assert!(m.contains(want), "{want} not in {m}");
            }
            assert!(!m.contains("X_EMPTY"), "{m}");
        }
        if let Some((nginx, [nport])) = &nginx {
            let theirs = http_request(*nport, method, path, "localhost", headers, body)
                .unwrap_or_else(|e| panic!("nginx {method} {path}: {e}\n{}", nginx.diagnostics()));
            let summary = |r: &Response| {
                let body = if path.starts_with("/meta/") && !r.body.is_empty() {
                    meta(r)
                } else {
                    r.text()
                        .replace(&port.to_string(), "PORT")
                        .replace(&nport.to_string(), "PORT")
                };
                format!(
                    "{} type={} length={} body={body}",
                    r.status,
                    r.header("content-type").unwrap_or("-"),
                    r.header("content-length").unwrap_or("-"),
                )
            };
            let (x, y) = (summary(&ours), summary(&theirs));
            if x != y {
                mismatches.push(format!("{method} {path}\n  ferrolb: {x}\n  nginx:   {y}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "answers differ from nginx:\n{}",
        mismatches.join("\n")
    );
    // Each POST reached one backend once (twice in all with nginx).
    let copies = if nginx.is_some() { 2 } else { 1 };
    for id in ["small-1", "big-1"] {
        let n = a
            .posted()
            .iter()
            .chain(&b.posted())
            .filter(|p| *p == id)
            .count();
        assert_eq!(n, copies, "{id}: {:?} {:?}", a.posted(), b.posted());
    }
}

#[test]
fn uwsgi_failover() {
    let a = Uwsgi::start("tcp", false);
    let b = Uwsgi::start("unix", true);
    let params = params_dir();
    let (ferrolb, [port]) =
        Proxy::start_on(|[p]| conf(p, &params, &[&a, &b], "      uwsgi_read_timeout 1s;\n"));
    // Frozen: connections are accepted by the kernel and the request is sent, but
    // nothing answers. Round robin over two peers sends one request of each pair to it.
    a.signal(Signal::SIGSTOP);
    for i in 0..2 {
        let r = http_get(port, "/", "localhost").expect("GET");
        assert_eq!(
            r.status,
            200,
            "GET {i}: {}\n{}",
            r.text(),
            ferrolb.error_log()
        );
        assert_eq!(r.header("x-backend"), Some(b.name), "GET {i}");
    }
    let mut statuses = Vec::new();
    for id in ["frozen-1", "frozen-2"] {
        let r =
            http_post(port, "/post/", "localhost", &[("X-Request-Id", id)], b"x=1").expect("POST");
        statuses.push((id, r.status));
    }
    let timed_out: Vec<&str> = statuses
        .iter()
        .filter(|(_, s)| *s == 504)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(timed_out.len(), 1, "{statuses:?}\n{}", ferrolb.error_log());
    assert!(
        statuses.iter().all(|(_, s)| *s == 200 || *s == 504),
        "{statuses:?}"
    );
    // The POST that reached the frozen backend was not sent to the other one; once
    // thawed, the frozen one handles it (it got it exactly once).
    a.signal(Signal::SIGCONT);
    let lost = timed_out[0];
    wait_until(Duration::from_secs(10), "the thawed backend's POST", || {
        a.posted().iter().any(|p| p == lost).then_some(())
    });
    assert!(!b.posted().iter().any(|p| p == lost), "{:?}", b.posted());
    // Stopped: the connection is refused, nothing was sent, so GET and POST alike go
    // to the other backend.
    let mut a = a;
    a.stop();
    for i in 0..2 {
        let r = http_get(port, "/", "localhost").expect("GET");
        assert_eq!(r.status, 200, "GET {i} after stop");
        let id = format!("after-stop-{i}");
        let r = http_post(
            port,
            "/post/",
            "localhost",
            &[("X-Request-Id", &id)],
            b"x=1",
        )
        .expect("POST");
        assert_eq!(
            r.status,
            200,
            "POST {i} after stop: {}",
            ferrolb.error_log()
        );
        assert_eq!(r.header("x-backend"), Some(b.name));
    }
    let log = ferrolb.error_log();
    assert!(log.contains("upstream timed out"), "{log}");
    assert!(log.contains("uwsgi://"), "{log}");
}

/// `include uwsgi_params;` names a file next to the main one, as nginx reads it; a
/// missing one fails the check with the path.
#[test]
fn uwsgi_params_include_is_relative_to_the_config() {
    let dir = fresh_temp_dir("uwsgi-include");
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        "events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n    location / {\n      \
         include uwsgi_params;\n      uwsgi_pass 127.0.0.1:2;\n    }\n  }\n}\n",
    )
    .expect("write conf");
    let missing = check_config(&dir, &conf);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains(&format!("{}/uwsgi_params", dir.display())),
        "{err}"
    );
    fs::write(dir.join("uwsgi_params"), UWSGI_PARAMS).expect("write params");
    let ok = check_config(&dir, &conf);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
