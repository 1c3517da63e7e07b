//! `examples/django-production/nginx.conf`, a Django site's config as deployment
//! guides write it, run as written (paths and port moved to a temp dir) on ferrolb
//! and on Debian's nginx, with real gunicorn on a Unix socket: every answer compared.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Gunicorn(Child);

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gunicorn(sock: &Path, log: &Path) -> Gunicorn {
    let (python, django_dir) = django_env();
    let bin = python
        .parent()
        .map(|p| p.join("gunicorn"))
        .expect("venv bin");
    let out = std::fs::File::create(log).expect("log");
    let err = out.try_clone().expect("log");
    let child = Command::new(&bin)
        .arg("--chdir")
        .arg(&django_dir)
        .arg("--bind")
        .arg(format!("unix:{}", sock.display()))
        .arg("--workers")
        .arg("2")
        .arg("mysite.wsgi")
        .env(
            "DJANGO_ALLOWED_HOSTS",
            "example.com,www.example.com,localhost",
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let g = Gunicorn(child);
    let deadline = Instant::now() + START_TIMEOUT;
    while UnixStream::connect(sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "gunicorn not accepting on {}:\n{}",
            sock.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    g
}

/// The example file, with its site directory and port moved.
fn conf(site: &Path, port: u16) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/django-production/nginx.conf"),
    )
    .expect("the example config");
    text.replace("/srv/mysite", &site.display().to_string())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
}

/// What both servers must agree on; a connection closed without an answer is
/// `closed` (`return 444`).
fn answer(port: u16, method: &str, path: &str, host: &str, body: &[u8]) -> String {
    match http_request(port, method, path, host, &[], body) {
        Err(_) => "closed".into(),
        Ok(r) => {
            let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
            // Standard pages name their server; the site's own pages must match.
            let body = if r.status >= 300 && r.text().contains("<h1>") {
                "-".to_owned()
            } else {
                r.text()
            };
            format!(
                "{} type={} cache={} location={} {}",
                r.status,
                if r.status >= 300 {
                    "-".into()
                } else {
                    h("content-type")
                },
                h("cache-control"),
                h("location").replace(&port.to_string(), "PORT"),
                body
            )
        }
    }
}

#[test]
fn the_production_example_answers_as_nginx_does() {
    let site = fresh_temp_dir("django-production");
    for d in ["static/css", "media", "run", "errors"] {
        std::fs::create_dir_all(site.join(d)).expect("mkdir");
    }
    std::fs::write(site.join("errors/404.html"), "<p>no such page</p>\n").expect("404");
    std::fs::write(site.join("errors/50x.html"), "<p>back soon</p>\n").expect("50x");
    std::fs::write(site.join("static/css/site.css"), "body { margin: 0 }\n").expect("css");
    std::fs::write(site.join("media/upload.txt"), "an upload\n").expect("media");
    let g = gunicorn(&site.join("run/gunicorn.sock"), &site.join("gunicorn.log"));

    let (ours, [port]) = Proxy::start_on(|[p]| conf(&site, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&site, p)));

    let cases: [(&str, &str, &str, &[u8], &str); 11] = [
        ("GET", "/", "example.com", b"", "200"),
        ("GET", "/", "www.example.com", b"", "301"),
        ("GET", "/a/b?c=1", "www.example.com", b"", "301"),
        ("GET", "/", "unknown.test", b"", "closed"),
        ("GET", "/static/css/site.css", "example.com", b"", "200"),
        ("GET", "/static/css/nope.css", "example.com", b"", "404"),
        ("GET", "/media/upload.txt", "example.com", b"", "200"),
        ("GET", "/favicon.ico", "example.com", b"", "404"),
        ("POST", "/post/", "example.com", b"x=1", "200"),
        ("HEAD", "/static/css/site.css", "example.com", b"", "200"),
        ("GET", "/404.html", "example.com", b"", "404"),
    ];
    let mut diffs = Vec::new();
    let mut compare = |method: &str, path: &str, host: &str, body: &[u8], want: &str| {
        let a = answer(port, method, path, host, body);
        assert!(
            a.starts_with(want),
            "{method} {path} Host {host}: {a}\n{}",
            ours.diagnostics()
        );
        if let Some((_, [nport])) = &nginx {
            let b = answer(*nport, method, path, host, body);
            if a != b {
                diffs.push(format!(
                    "{method} {path} Host {host}\n  ferrolb: {a}\n  nginx:   {b}"
                ));
            }
        }
    };
    for (method, path, host, body, want) in cases {
        compare(method, path, host, body, want);
    }
    // The site's page when a static file is missing, and when gunicorn is down.
    compare(
        "GET",
        "/static/css/nope.css",
        "example.com",
        b"",
        "404 type=- cache=- location=- <p>no such page</p>",
    );
    // Its workers outlive a killed master until they notice; down means refusing.
    drop(g);
    let sock = site.join("run/gunicorn.sock");
    wait_until(START_TIMEOUT, "gunicorn's workers to exit", || {
        UnixStream::connect(&sock).is_err().then_some(())
    });
    compare(
        "GET",
        "/",
        "example.com",
        b"",
        "502 type=- cache=- location=- <p>back soon</p>",
    );
    compare(
        "POST",
        "/post/",
        "example.com",
        b"x=1",
        "502 type=- cache=- location=- <p>back soon</p>",
    );
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
    // favicon.ico is missing but `log_not_found off`: nothing in the error log.
    assert!(
        !ours.error_log().contains("favicon.ico"),
        "{}",
        ours.error_log()
    );
}
