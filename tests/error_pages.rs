//! `error_page`, `proxy_intercept_errors`, `recursive_error_pages` and `internal` as
//! Django sites write them: the site's 404 and 50x pages for missing files, dead
//! backends and `return 404`, a single-page app's `=200 /index.html` fallback, static
//! misses handed to Django through `= @django`, redirecting pages, upstream errors
//! intercepted (a 401 keeps its `WWW-Authenticate`), a POST whose page is fetched as
//! GET, and internal-only locations. Every answer is compared with Debian's nginx on
//! the same config when it is installed.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;

/// The site's pages and files.
fn tree() -> PathBuf {
    let dir = fresh_temp_dir("error-pages");
    let html = dir.join("html");
    fs::create_dir_all(html.join("static")).expect("mkdir");
    fs::create_dir_all(html.join("spa")).expect("mkdir");
    fs::write(html.join("404.html"), "<p>our 404 page</p>\n").expect("write");
    fs::write(html.join("50x.html"), "<p>our 50x page</p>\n").expect("write");
    fs::write(html.join("index.html"), "<p>the app shell</p>\n").expect("write");
    fs::write(html.join("static/app.css"), "body {}\n").expect("write");
    dir
}

/// A backend that answers `/…/500`, `/…/404` and `/…/401` with that status and its
/// own body, and anything else with 200 and the request line, the body's length and
/// the query; always HTTP/1.0 and closing.
fn backend() -> u16 {
    scripted_backend(|req, reader, conn| {
        let mut body = vec![0; req.content_length];
        let _ = reader.read_exact(&mut body);
        let path = req.path();
        let (status, extra, text) = if path.ends_with("/500") {
            ("500 Internal Server Error", "", "upstream 500\n".to_owned())
        } else if path.ends_with("/404") {
            ("404 Not Found", "", "upstream 404\n".to_owned())
        } else if path.ends_with("/401") {
            (
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"app\"\r\n",
                "upstream 401\n".to_owned(),
            )
        } else {
            ("200 OK", "", format!("{} body={}\n", req.line, body.len()))
        };
        let _ = write!(
            conn,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    })
}

fn conf(dir: &Path, app: u16, dead: u16, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  upstream app {{ server 127.0.0.1:{app}; }}
  upstream dead {{ server 127.0.0.1:{dead}; }}
  server {{
    listen 127.0.0.1:{port};
    server_name _;
    root {d}/html;
    error_page 404 /404.html;
    error_page 500 502 503 504 /50x.html;
    location = /404.html {{ internal; }}
    location = /50x.html {{ }}
    location /static/ {{ }}
    location /dead/ {{ proxy_pass http://dead; }}
    location /app/ {{ proxy_pass http://app; }}
    location /intercept/ {{
      proxy_pass http://app;
      proxy_intercept_errors on;
      error_page 401 /401;
      error_page 500 /50x.html;
    }}
    location = /401 {{ return 200 "log in first\n"; }}
    location /fallback/ {{ error_page 404 = @django; }}
    location @django {{ proxy_pass http://app; }}
    location /spa/ {{ error_page 404 =200 /index.html; }}
    location /moved/ {{ error_page 404 =301 http://example.com/new; }}
    location /gone/ {{ error_page 404 http://example.com/gone; }}
    location /forbidden {{ return 403; }}
    location /ret404 {{ return 404; }}
    location /text404 {{ return 404 "own text\n"; }}
    location /once/ {{ error_page 404 /once/missing.html; }}
    location /again/ {{ recursive_error_pages on; error_page 404 /again/next; }}
    location /secret {{ internal; return 200 "secret\n"; }}
    location /to-secret {{ rewrite ^ /secret last; }}
    location /post-page/ {{ proxy_pass http://dead; error_page 502 /show; }}
    location /post-named/ {{ proxy_pass http://dead; error_page 502 = @django; }}
    location /args/ {{ error_page 404 /show?from=args; }}
    location /var/ {{ error_page 404 /show?code=$status; }}
    location = /show {{ return 200 "uri=$uri args=$args method=$request_method\n"; }}
    location /other {{ error_page 404 = /show; }}
    location /small/ {{ client_max_body_size 2; proxy_pass http://app; error_page 413 /show; }}
    location /deny/ {{ error_page 403 =404 /404.html; return 403; }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// One request: method, path, body.
type Case = (&'static str, &'static str, &'static str);

const CASES: &[Case] = &[
    ("GET", "/static/app.css", ""),
    ("GET", "/static/missing.css", ""),
    ("HEAD", "/static/missing.css", ""),
    ("POST", "/static/app.css", "a=1"),
    ("GET", "/404.html", ""),
    ("GET", "/50x.html", ""),
    ("GET", "/dead/x", ""),
    ("GET", "/app/500", ""),
    ("GET", "/app/ok?q=1", ""),
    ("GET", "/intercept/500", ""),
    ("GET", "/intercept/404", ""),
    ("GET", "/intercept/401", ""),
    ("GET", "/intercept/ok", ""),
    ("GET", "/fallback/page?x=2", ""),
    ("POST", "/fallback/form", "field=value"),
    ("GET", "/spa/deep/link", ""),
    ("GET", "/moved/x", ""),
    ("GET", "/gone/x", ""),
    ("GET", "/forbidden", ""),
    ("GET", "/ret404", ""),
    ("GET", "/text404", ""),
    ("GET", "/once/x", ""),
    ("GET", "/again/x", ""),
    ("GET", "/secret", ""),
    ("GET", "/to-secret", ""),
    ("POST", "/post-page/form", "a=1&b=2"),
    ("POST", "/post-named/form", "a=1&b=2"),
    ("GET", "/args/x?mine=1", ""),
    ("GET", "/var/x", ""),
    ("GET", "/other?o=1", ""),
    ("POST", "/small/x", "a=1&b=2"),
    ("HEAD", "/dead/x", ""),
    ("GET", "/deny/x", ""),
];

/// The parts of an answer both servers must agree on.
fn facts(r: &std::io::Result<Response>, port: u16) -> String {
    let r = match r {
        Ok(r) => r,
        Err(e) => return format!("error: {e}"),
    };
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let text = r.text();
    // Standard pages name the server; their heading must match.
    let body = match text.find("<h1>") {
        Some(i) => text[i..].lines().next().unwrap_or("").to_owned(),
        None => text,
    };
    format!(
        "{} type={} location={} www-authenticate={} etag={}\n{}",
        r.status,
        h("content-type"),
        h("location").replace(&port.to_string(), "PORT"),
        h("www-authenticate"),
        r.header("etag").is_some(),
        body.replace(&port.to_string(), "PORT")
    )
}

#[test]
fn error_pages_match_nginx() {
    let dir = tree();
    let app = backend();
    let dead = DeadPort::new();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, app, dead.port, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, app, dead.port, p)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (method, path, body) in CASES {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let ours = facts(
            &http_request(port, method, path, "site.test", &headers, body.as_bytes()),
            port,
        );
        assert!(
            !ours.starts_with("error"),
            "{method} {path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((nginx, [nport])) = &nginx {
            let theirs = facts(
                &http_request(*nport, method, path, "site.test", &headers, body.as_bytes()),
                *nport,
            );
            assert!(
                !theirs.starts_with("error"),
                "nginx {method} {path}: {theirs}\n{}",
                nginx.diagnostics()
            );
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{method} {path}\n  ferrolb: {ours}\n  nginx:   {theirs}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Whatever ferrolb's answers, they must be these (so the test means something where
/// nginx is not installed).
#[test]
fn error_pages_answer_as_configured() {
    let dir = tree();
    let app = backend();
    let dead = DeadPort::new();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, app, dead.port, p));
    let get = |path: &str| http_get(port, path, "site.test").expect("answer");

    let r = get("/static/missing.css");
    assert_eq!(
        (r.status, r.text()),
        (404, "<p>our 404 page</p>\n".to_owned())
    );
    let r = get("/dead/x");
    assert_eq!(
        (r.status, r.text()),
        (502, "<p>our 50x page</p>\n".to_owned())
    );
    let r = get("/app/500");
    assert_eq!((r.status, r.text()), (500, "upstream 500\n".to_owned()));
    let r = get("/intercept/500");
    assert_eq!(
        (r.status, r.text()),
        (500, "<p>our 50x page</p>\n".to_owned())
    );
    let r = get("/intercept/401");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"app\""));
    assert_eq!(r.text(), "log in first\n");
    let r = get("/spa/deep/link");
    assert_eq!(
        (r.status, r.text()),
        (200, "<p>the app shell</p>\n".to_owned())
    );
    let r = get("/secret");
    assert_eq!(
        (r.status, r.text()),
        (404, "<p>our 404 page</p>\n".to_owned())
    );
    let r = get("/to-secret");
    assert_eq!((r.status, r.text()), (200, "secret\n".to_owned()));
    let r = http_post(port, "/post-page/f", "site.test", &[], b"a=1").expect("answer");
    assert_eq!(
        (r.status, r.text()),
        (502, "uri=/show args= method=GET\n".to_owned())
    );
    let r = http_post(port, "/post-named/f", "site.test", &[], b"a=1").expect("answer");
    assert_eq!(
        (r.status, r.text()),
        (200, "POST /post-named/f HTTP/1.0 body=3\n".to_owned())
    );
    let r = get("/args/x?mine=1");
    assert_eq!(r.text(), "uri=/show args=from=args method=GET\n");
    let r = get("/again/x");
    assert_eq!(
        r.status, 500,
        "a page that errs again, recursively, ends in a cycle"
    );
    assert!(
        ferrolb.error_log().contains(
            "rewrite or internal redirection cycle while internally redirecting to \"/again/next\""
        ),
        "{}",
        ferrolb.error_log()
    );
}

/// Pipelined requests behind a POST whose error page is proxied as GET stay intact:
/// the page's request replaces the POST in the buffer, not what follows it.
#[test]
fn a_paged_post_keeps_the_requests_behind_it() {
    let dir = tree();
    let app = backend();
    let dead = DeadPort::new();
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, app, dead.port, p));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"POST /post-page/f HTTP/1.1\r\nHost: site.test\r\nContent-Length: 3\r\n\r\na=1\
          GET /static/app.css HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 502 "), "{all}");
    assert!(all.contains("uri=/show args= method=GET"), "{all}");
    assert!(all.contains("HTTP/1.1 200 OK"), "{all}");
    assert!(all.ends_with("body {}\n"), "{all}");
}

#[test]
fn bad_error_page_lines_are_refused_with_the_place() {
    for (line, says) in [
        (
            "error_page 200 /x;",
            "value \"200\" must be between 300 and 599",
        ),
        ("error_page 499 /x;", "invalid value \"499\""),
        ("error_page =404 /x;", "invalid value \"=404\""),
        ("error_page 404 =abc /x;", "invalid value \"=abc\""),
    ] {
        let dir = fresh_temp_dir("error-pages-bad");
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!("events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:1;\n    {line}\n  }}\n}}\n"),
        )
        .expect("write");
        let out = std::process::Command::new(proxy_bin())
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .output()
            .expect("run -t");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: {err}");
        assert!(
            err.contains(says) && err.contains("nginx.conf:5"),
            "{line}: {err}"
        );
    }
}
