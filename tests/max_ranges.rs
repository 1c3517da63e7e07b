//! `max_ranges` on static files, compared with Debian's nginx on the same config:
//! within the limit a 206, beyond it the whole file with `Accept-Ranges`, and
//! `max_ranges 0` the whole file without it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn conf(dir: &Path, port: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n    \
         root {};\n    location /two/ {{ max_ranges 2; }}\n    location /none/ {{ max_ranges 0; }}\n  }}\n}}\n",
        dir.display()
    )
}

fn facts(r: &Response) -> String {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let ct = h("content-type");
    // The multipart boundary differs between servers.
    let ct = ct.split(';').next().unwrap_or_default().to_owned();
    format!(
        "{} type={ct} ranges={} range={} len={}",
        r.status,
        h("accept-ranges"),
        h("content-range"),
        r.body.len()
    )
}

#[test]
fn max_ranges_matches_nginx() {
    let dir = fresh_temp_dir("max-ranges");
    for d in ["two", "none"] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
        fs::write(dir.join(d).join("t.txt"), "0123456789".repeat(10)).expect("write");
    }
    let (ours, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p)));
    let cases = [
        (
            "/two/t.txt",
            "bytes=0-9, -10",
            "206 type=multipart/byteranges",
        ),
        (
            "/two/t.txt",
            "bytes=0-9, -10, 1000-",
            "206 type=multipart/byteranges",
        ),
        (
            "/two/t.txt",
            "bytes=0-9, -10, 10-19",
            "200 type=text/plain ranges=bytes range=- len=100",
        ),
        (
            "/none/t.txt",
            "bytes=0-9",
            "200 type=text/plain ranges=- range=- len=100",
        ),
        (
            "/none/t.txt",
            "",
            "200 type=text/plain ranges=- range=- len=100",
        ),
    ];
    let mut diffs = Vec::new();
    for (path, range, expected) in cases {
        let headers: Vec<(&str, &str)> = if range.is_empty() {
            Vec::new()
        } else {
            vec![("Range", range)]
        };
        let get = |p: u16| http_request(p, "GET", path, "localhost", &headers, b"").expect("GET");
        let got = facts(&get(port));
        assert!(
            got.starts_with(expected),
            "{path} {range}: {got}\n{}",
            ours.error_log()
        );
        if let Some((_, [nport])) = &nginx {
            let theirs = facts(&get(*nport));
            if got != theirs {
                diffs.push(format!(
                    "{path} {range}\n  ferrolb: {got}\n  nginx:   {theirs}"
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
}
