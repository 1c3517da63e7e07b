//! Redirects ferrolb makes itself, compared with Debian's nginx on the same config:
//! `return 3xx /path` made absolute (`absolute_redirect`), the automatic 301 from
//! `/app` to `/app/` when `location /app/` proxies, and absolute URLs left alone; a
//! request without a host (HTTP/1.0 without Host, a Host nginx refuses, whose 400 goes
//! through the default server's `error_page`) is redirected to the local address.

mod common;

use std::path::PathBuf;

use common::*;

fn conf(port: u16, backend: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n    \
         location = /old {{ return 301 /new; }}\n    \
         location = /moved {{ return 302 /elsewhere?a=1; }}\n    \
         location = /away {{ return 307 https://example.com/x; }}\n    \
         location /app/ {{ proxy_pass http://127.0.0.1:{backend}; }}\n    \
         error_page 400 /old;\n    add_header X-Always yes always;\n    \
         location = /exact {{ return 200 \"exact\\n\"; }}\n    \
         location /exact/ {{ proxy_pass http://127.0.0.1:{backend}; }}\n  }}\n}}\n"
    )
}

fn facts(r: &Response, port: u16) -> String {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    format!(
        "{} location={} type={} body={}",
        r.status,
        h("location").replace(&port.to_string(), "PORT"),
        h("content-type"),
        if r.status == 200 {
            r.text()
        } else {
            "-".into()
        }
    )
}

#[test]
fn redirects_match_nginx() {
    // Nothing needs to listen there: every case is answered before proxying.
    let backend = DeadPort::new();
    let (ours, [port]) = Proxy::start_on(|[p]| conf(p, backend.port));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(p, backend.port)));
    let cases: [(&str, u16, &str); 6] = [
        ("/old", 301, "http://localhost:PORT/new"),
        ("/moved", 302, "http://localhost:PORT/elsewhere?a=1"),
        ("/away", 307, "https://example.com/x"),
        ("/app", 301, "http://localhost:PORT/app/"),
        ("/app?x=1", 301, "http://localhost:PORT/app/?x=1"),
        ("/exact", 200, "-"),
    ];
    let mut diffs = Vec::new();
    for (path, status, location) in cases {
        let r = http_get(port, path, "localhost").expect("GET");
        assert_eq!(
            r.status,
            status,
            "{path}: {}\n{}",
            r.text(),
            ours.error_log()
        );
        assert_eq!(
            r.header("location")
                .unwrap_or("-")
                .replace(&port.to_string(), "PORT"),
            location,
            "{path}"
        );
        if let Some((_, [nport])) = &nginx {
            let theirs = http_get(*nport, path, "localhost").expect("nginx GET");
            let (a, b) = (facts(&r, port), facts(&theirs, *nport));
            if a != b {
                diffs.push(format!("{path}\n  ferrolb: {a}\n  nginx:   {b}"));
            }
        }
    }
    let raw_cases: [(&[u8], u16, &str); 3] = [
        (
            b"GET /old HTTP/1.0\r\n\r\n",
            301,
            "http://127.0.0.1:PORT/new",
        ),
        (
            b"GET /old HTTP/1.0\r\nHost: .\r\n\r\n",
            301,
            "http://127.0.0.1:PORT/new",
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
            301,
            "http://127.0.0.1:PORT/new",
        ),
    ];
    for (bytes, status, location) in raw_cases {
        let what = String::from_utf8_lossy(bytes);
        let r = raw_request(port, bytes).expect("request");
        assert_eq!(
            (r.status, r.header("x-always")),
            (status, Some("yes")),
            "{what}"
        );
        let loc = r.header("location").unwrap_or("-");
        assert_eq!(loc.replace(&port.to_string(), "PORT"), location, "{what}");
        if let Some((_, [nport])) = &nginx {
            let theirs = raw_request(*nport, bytes).expect("nginx request");
            let (a, b) = (facts(&r, port), facts(&theirs, *nport));
            if a != b {
                diffs.push(format!("{what}\n  ferrolb: {a}\n  nginx:   {b}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
}
