//! Unix-socket upstreams, the most common Django deployment (gunicorn
//! `--bind unix:/run/gunicorn.sock`), as nginx writes them: `proxy_pass
//! http://unix:/path.sock;`, `http://unix:/path.sock:/uri/;` and `server
//! unix:/path.sock;` in an upstream next to a TCP peer, with failover between the two.
//! Real gunicorn and Django runserver from `scripts/test.sh`'s venv.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// gunicorn serving examples/django on a Unix socket, in its own process group.
struct Gunicorn {
    sock: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Gunicorn {
    fn start(tag: &str) -> Gunicorn {
        let (python, django_dir) = django_env();
        let dir = fresh_temp_dir(tag);
        let sock = dir.join("app.sock");
        let bin = python
            .parent()
            .map(|p| p.join("gunicorn"))
            .expect("venv bin dir");
        let out = std::fs::File::create(dir.join("gunicorn.log")).expect("log");
        let err = out.try_clone().expect("clone log");
        let child = Command::new(&bin)
            .arg("--chdir")
            .arg(&django_dir)
            .arg("--bind")
            .arg(format!("unix:{}", sock.display()))
            .arg("--workers")
            .arg("1")
            .arg("mysite.wsgi")
            .env("FERROLB_POST_LOG", dir.join("post.log"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut g = Gunicorn {
            sock,
            dir,
            child: Some(child),
        };
        g.wait_ready();
        g
    }

    /// Waits (10 s at most) until the socket accepts connections.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while UnixStream::connect(&self.sock).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("gunicorn exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "gunicorn socket {} not accepting:\n{}",
                self.sock.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gunicorn.log")).unwrap_or_default()
    }

    fn posted_ids(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("post.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// Stops it (SIGTERM, gunicorn's graceful stop) and waits until the socket
    /// refuses connections.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while UnixStream::connect(&self.sock).is_ok() {
            assert!(Instant::now() < deadline, "socket still accepts");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn sock(g: &Gunicorn) -> &Path {
    &g.sock
}

#[test]
fn proxy_pass_to_a_unix_socket_with_and_without_uri() {
    let g = Gunicorn::start("gunicorn-pass");
    let port = free_port();
    let proxy = Proxy::start(&format!(
        "events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:{port};\n    \
         location / {{ proxy_pass http://unix:{s}; }}\n    \
         location /app/ {{ proxy_pass http://unix:{s}:/; }}\n  }}\n}}\n",
        s = sock(&g).display()
    ));
    let r = http_get(port, "/", "localhost").expect("GET /");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.diagnostics());
    assert!(r.text().contains("Using port"), "{}", r.text());
    // `/app/` is replaced by `/`: the same view answers.
    let r = http_get(port, "/app/", "localhost").expect("GET /app/");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.diagnostics());
    assert!(r.text().contains("Using port"), "{}", r.text());
}

#[test]
fn failover_between_a_socket_peer_and_a_tcp_peer() {
    let mut g = Gunicorn::start("gunicorn-failover");
    let django = Django::start_n(1).pop().expect("one runserver");
    let tcp_port = django.port;
    let port = free_port();
    let proxy = Proxy::start(&format!(
        "events {{}}\nhttp {{\n  upstream app {{\n    server unix:{s};\n    \
         server 127.0.0.1:{tcp_port};\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n    \
         location / {{ proxy_pass http://app; }}\n  }}\n}}\n",
        s = sock(&g).display()
    ));
    // Both peers answer: the TCP one names its port, gunicorn on a socket does not.
    let mut from_tcp = 0;
    let mut from_sock = 0;
    for _ in 0..8 {
        let r = http_get(port, "/", "localhost").expect("GET");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.diagnostics());
        if r.backend_port() == Some(tcp_port) {
            from_tcp += 1;
        } else {
            from_sock += 1;
        }
    }
    assert_eq!((from_tcp, from_sock), (4, 4), "round robin over both");

    // The socket peer goes away: no GET fails, every one comes from the TCP peer.
    g.stop();
    for i in 0..20 {
        let r = http_get(port, "/", "localhost").expect("GET");
        assert_eq!(
            r.status,
            200,
            "GET {i}: {}\n{}",
            r.text(),
            proxy.diagnostics()
        );
        assert_eq!(r.backend_port(), Some(tcp_port), "GET {i}");
    }
    // A POST is delivered exactly once while the socket peer is down.
    for i in 0..4 {
        let id = format!("unix-post-{i}");
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
            "POST {i}: {}\n{}",
            r.text(),
            proxy.diagnostics()
        );
    }
    let ids = django.posted_ids();
    for i in 0..4 {
        let id = format!("unix-post-{i}");
        assert_eq!(ids.iter().filter(|x| **x == id).count(), 1, "{ids:?}");
    }
    assert!(g.posted_ids().is_empty());
    let log = proxy.error_log();
    assert!(
        log.contains(&format!(
            "upstream: \"http://unix:{}:/\"",
            sock(&g).display()
        )),
        "the error log names the socket peer as nginx does:\n{log}"
    );
}

/// One request over a Unix socket; the whole response.
fn get_over_unix(path: &Path, target: &str) -> String {
    use std::io::{Read, Write};
    let mut s = UnixStream::connect(path).expect("connect to the unix listener");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn listen_on_a_unix_socket_next_to_tcp() {
    let g = Gunicorn::start("gunicorn-behind-unix-listen");
    let dir = fresh_temp_dir("unix-listen");
    let path = dir.join("ferrolb.sock");
    let conf = |port: u16, unix: bool| {
        let listen_unix = if unix {
            format!("listen unix:{};", path.display())
        } else {
            String::new()
        };
        format!(
            "events {{}}\nhttp {{\n  log_format who '$remote_addr|$remote_port|$server_addr|$server_port';\n  \
             access_log {log} who;\n  server {{\n    listen 127.0.0.1:{port};\n    {listen_unix}\n    \
             location / {{ return 200 \"who $remote_addr $server_addr\\n\"; }}\n    \
             location /app/ {{ proxy_pass http://unix:{app}:/; }}\n  }}\n}}\n",
            log = dir.join("access.log").display(),
            app = sock(&g).display(),
        )
    };
    let (mut proxy, [port]) = Proxy::start_on(|[port]| conf(port, true));
    let got = get_over_unix(&path, "/");
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{got}\n{}",
        proxy.diagnostics()
    );
    assert!(
        got.ends_with(&format!("who unix: unix:{}\n", path.display())),
        "nginx's $remote_addr and $server_addr for a Unix socket: {got}"
    );
    // Socket to socket: a client on ferrolb's Unix listener, gunicorn on its own.
    let got = get_over_unix(&path, "/app/");
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{got}\n{}",
        proxy.diagnostics()
    );
    assert!(got.contains("Using port"), "{got}");
    // The TCP listener of the same server still answers.
    let r = http_get(port, "/", "localhost").expect("GET over TCP");
    assert_eq!(r.text(), "who 127.0.0.1 127.0.0.1\n");
    // The access log line of the socket client: empty ports, as nginx writes them.
    let want = format!("unix:||unix:{}|", path.display());
    wait_until(Duration::from_secs(10), "the access log line", || {
        std::fs::read_to_string(dir.join("access.log"))
            .ok()
            .filter(|t| t.lines().any(|l| l == want))
    });
    // A reload that drops the listener removes its socket file; one that adds it
    // back binds it again.
    proxy.reload_with(&conf(port, false));
    assert!(
        !path.exists(),
        "socket file of a dropped listener left behind"
    );
    proxy.reload_with(&conf(port, true));
    let got = get_over_unix(&path, "/");
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{got}\n{}",
        proxy.diagnostics()
    );
    // Stopped, it removes the socket file it made, so the next start can bind.
    proxy.stop();
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn a_stale_socket_file_fails_the_start_with_the_path() {
    let dir = fresh_temp_dir("unix-stale");
    let path = dir.join("taken.sock");
    std::fs::write(&path, b"").expect("make a stale file");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{ server {{ listen unix:{s}; \
             location / {{ return 200; }} }} }}\n",
            d = dir.display(),
            s = path.display()
        ),
    )
    .expect("write conf");
    let mut child = Command::new(proxy_bin())
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_until(START_TIMEOUT, "the refused start to exit", || {
        child.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    let want = format!(
        "bind() to unix:{} failed (98: Address already in use)",
        path.display()
    );
    assert!(log.contains(&want), "{log}");
    assert!(path.exists(), "a file ferrolb did not create is left alone");
}
