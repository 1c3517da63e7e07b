//! `alias` in regex locations with captures (`location ~ ^/static/(.*)$ { alias
//! /srv/static/$1; }`, named captures too) and variables in `alias` and `root`,
//! compared with Debian's nginx on the same tree; then hostile paths that must never
//! reach a file outside the alias.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

const SECRET: &str = "SECRET-OUTSIDE-THE-ALIAS";

/// The tree: assets and uploads served through aliases, a secret next to them.
fn tree() -> PathBuf {
    let dir = fresh_temp_dir("alias-vars");
    for (path, body) in [
        ("assets/app.css", "body{}\n"),
        ("assets/sub/index.html", "<p>sub index</p>\n"),
        ("assets/sub/x.js", "x()\n"),
        ("uploads/a.png", "PNG\n"),
        ("uploads/b.txt", "b text\n"),
        ("vhosts/a.test/page.txt", "a.test page\n"),
        ("roots/one/byroot/f.txt", "root one\n"),
        ("www/index.html", "<p>www</p>\n"),
        ("secret.txt", SECRET),
        ("assets/secret.txt", "assets copy, fine\n"),
    ] {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, body).expect("write");
    }
    dir
}

fn conf(dir: &Path, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  types {{ text/css css; application/javascript js; image/png png; text/html html; text/plain txt; }}
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    location ~ ^/static/(.*)$ {{ alias {d}/assets/$1; }}
    location ~ ^/media/(?<file>.+\.(?:png|txt))$ {{ alias {d}/uploads/$file; }}
    location ~ ^/pub/(.*)$ {{ alias {d}/assets/; }}
    location /host/ {{ alias {d}/vhosts/$host/; }}
    location /byroot/ {{ root {d}/roots/$arg_r; }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// (path, Host).
const CASES: &[(&str, &str)] = &[
    ("/static/app.css", "localhost"),
    ("/static/sub/x.js", "localhost"),
    ("/static/missing.css", "localhost"),
    ("/static/sub", "localhost"),
    ("/static/sub/", "localhost"),
    ("/static/sub/index.html", "localhost"),
    ("/static/app.css?v=3", "localhost"),
    ("/static/%61pp.css", "localhost"),
    ("/media/a.png", "localhost"),
    ("/media/b.txt", "localhost"),
    ("/media/c.gif", "localhost"),
    ("/pub/anything", "localhost"),
    ("/host/page.txt", "a.test"),
    ("/host/page.txt", "b.test"),
    ("/byroot/f.txt?r=one", "localhost"),
    ("/byroot/f.txt?r=two", "localhost"),
    ("/", "localhost"),
];

fn facts(r: &std::io::Result<Response>, port: u16) -> String {
    match r {
        Ok(r) => {
            let body = page_heading_or_body(r.text());
            format!(
                "{} type={} location={} {body}",
                r.status,
                r.header("content-type").unwrap_or("-"),
                r.header("location")
                    .unwrap_or("-")
                    .replace(&port.to_string(), "PORT"),
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn alias_with_captures_and_variables_matches_nginx() {
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (path, host) in CASES {
        let ours = facts(&http_get(port, path, host), port);
        assert!(
            !ours.starts_with("error"),
            "{path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((_, [nport])) = &nginx {
            let theirs = facts(&http_get(*nport, path, host), *nport);
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{path} (Host: {host})\n  ferrolb: {ours}\n  nginx:   {theirs}"
                ));
            }
        }
    }
    // The answers the table relies on, whatever nginx is there.
    assert!(facts(&http_get(port, "/static/sub/x.js", "localhost"), port).ends_with(" x()\n"));
    assert!(facts(&http_get(port, "/media/b.txt", "localhost"), port).ends_with(" b text\n"));
    eprintln!("alias: {compared} answers compared with nginx");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Raw request targets (and Host values) that try to leave the alias or the root.
const HOSTILE: &[(&str, &str)] = &[
    ("/static/../secret.txt", "localhost"),
    ("/static/..%2fsecret.txt", "localhost"),
    ("/static/%2e%2e/secret.txt", "localhost"),
    ("/static/%2e%2e%2fsecret.txt", "localhost"),
    ("/static/.%2e/secret.txt", "localhost"),
    ("/static/%2e./secret.txt", "localhost"),
    ("/static/sub/../../secret.txt", "localhost"),
    ("/static/sub/%2e%2e/%2e%2e/secret.txt", "localhost"),
    ("/static/..", "localhost"),
    ("/static/%2e%2e", "localhost"),
    ("/static/....//secret.txt", "localhost"),
    ("/static//../secret.txt", "localhost"),
    ("/static/%5c..%5csecret.txt", "localhost"),
    ("/static/%252e%252e/secret.txt", "localhost"),
    ("/static/%00/../secret.txt", "localhost"),
    ("/static/a%00b", "localhost"),
    ("/static/..;/secret.txt", "localhost"),
    ("/static/%c0%ae%c0%ae/secret.txt", "localhost"),
    ("/media/..%2f..%2fsecret.txt", "localhost"),
    ("/media/../secret.txt", "localhost"),
    ("/media/%2e%2e%2f%2e%2e%2fsecret.txt", "localhost"),
    ("/pub/../secret.txt", "localhost"),
    ("/host/../secret.txt", "localhost"),
    ("/host/page.txt", ".."),
    ("/host/secret.txt", "..%2f.."),
    ("/byroot/f.txt?r=..", "localhost"),
    ("/byroot/secret.txt?r=../../..", "localhost"),
    ("/byroot/../secret.txt?r=one", "localhost"),
    ("/byroot/x?r=%2e%2e/%2e%2e", "localhost"),
    ("/byroot/secret.txt?r=..%2f..%2f..", "localhost"),
    ("/byroot/secret.txt?r=/", "localhost"),
    ("/byroot/secret.txt?r=one/../../..", "localhost"),
];

#[test]
fn hostile_paths_never_leave_the_alias() {
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    for (path, host) in HOSTILE {
        match http_get(port, path, host) {
            Ok(r) => {
                let text = r.text();
                assert!(
                    !text.contains(SECRET),
                    "{path} (Host: {host}) reached the secret: {} {text}",
                    r.status
                );
                // A target that normalises to somewhere inside (`/static/..` is
                // `/`) may be served; nothing else but a refusal.
                assert!(
                    matches!(r.status, 200 | 301 | 400 | 403 | 404),
                    "{path} (Host: {host}): {} {text}\n{}",
                    r.status,
                    ferrolb.diagnostics()
                );
            }
            // A request the server closes on without answering is refused too.
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{path}: {e}"),
        }
    }
}
