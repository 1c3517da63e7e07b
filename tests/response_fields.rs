//! Response fields and the variables that read them, run on the same config by
//! ferrolb and Debian's nginx and compared: `$sent_http_NAME` in `add_header` (the
//! head made so far, `Cache-Control` joined), `add_header ETag` replacing or removing
//! the response's, `add_trailer` (chunked `return`, static and proxied answers, its
//! `always`, `$sent_trailer_NAME`, none for HTTP/1.0 or HEAD), request fields that
//! nginx joins (`Cookie`, `X-Forwarded-For`) or takes once (a 400), `set
//! $limit_rate`, `keepalive_timeout`'s `Keep-Alive` field and `max_headers`; and
//! `add_trailer` over HTTP/2 (a trailing HEADERS frame), read with the `h2` Python
//! package of the test venv.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn conf(port: u16, root: &Path) -> String {
    let root = root.display();
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    keepalive_timeout 30 9;
    max_headers 20;
    location /s {{
      add_header Cache-Control foo;
      add_header Cache-Control bar;
      add_header Foo a;
      add_header Foo b;
      add_header X-Sent-CC $sent_http_cache_control;
      add_header X-Sent-Foo $sent_http_foo;
      add_header X-Sent-None "[$sent_http_none]";
      return 200 "s";
    }}
    location /etag/ {{
      add_header ETag foo always;
      add_header ETag '' always;
      add_header X-A 1 always;
    }}
    location /etag-set/ {{ add_header ETag '"mine"'; }}
    location /t {{
      add_header X-H h;
      add_trailer X-T t;
      add_trailer X-Sent-T $sent_trailer_x_t;
      add_trailer X-Empty '';
      add_trailer X-Hdr $sent_http_x_h;
      return 200 "hello";
    }}
    location /t404 {{
      add_trailer X-T t;
      add_trailer X-Always a always;
      return 404;
    }}
    location /tfile/ {{ add_trailer X-T $uri; }}
    location /tproxy {{
      add_trailer X-T p;
      proxy_pass http://127.0.0.1:{port}/tfile/f.txt;
    }}
    location /nochunk/ {{
      alias {root}/tfile/;
      chunked_transfer_encoding off;
      add_trailer X-T t;
    }}
    location /v {{
      add_header X-Cookie $http_cookie;
      add_header X-XFF $http_x_forwarded_for;
      add_header X-CB $cookie_b;
      add_header X-Via $http_via;
      return 204;
    }}
    location /rate {{
      set $limit_rate $arg_l;
      add_header X-Rate $limit_rate;
      return 200 ok;
    }}
  }}
}}
"#
    )
}

/// Raw requests, each ending the connection (`Connection: close` on the last).
fn requests() -> Vec<String> {
    let get = |path: &str, fields: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{fields}Connection: close\r\n\r\n")
    };
    let many = |n: usize| {
        (1..n)
            .map(|i| format!("X-Blah: {i}\r\n"))
            .collect::<String>()
    };
    vec![
        get("/s", ""),
        get("/etag/f.txt", ""),
        get("/etag/nx", ""),
        get("/etag-set/f.txt", ""),
        get("/t", ""),
        "HEAD /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
        "GET /t HTTP/1.0\r\n\r\n".into(),
        get("/t404", ""),
        get("/tfile/f.txt", ""),
        get("/tproxy", ""),
        get("/nochunk/f.txt", ""),
        get(
            "/v",
            "Cookie: a=1\r\nCookie: b=2\r\nX-Forwarded-For: x\r\nX-Forwarded-For: y\r\nVia: 1\r\nVia: 2\r\n",
        ),
        get("/v", "If-Match: a\r\nIf-Match: a\r\n"),
        get("/v", "Content-Length: 0\r\nContent-Length: 0\r\n"),
        get("/rate?l=40k", ""),
        get("/rate", ""),
        // A kept connection names its timeout; the second request closes it.
        format!(
            "GET /s HTTP/1.1\r\nHost: localhost\r\n\r\n{}",
            get("/s", "")
        ),
        // Host, Connection and 18 more lines: `max_headers 20` takes them, not one
        // more.
        get("/s", &many(19)),
        get("/s", &many(20)),
    ]
}

/// Sends `raw` and reads until the server closes.
fn exchange(port: u16, raw: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The fields these controls decide: names lower case, sorted (the two servers
/// order their own fields differently); values as sent.
const FIELDS: [&str; 7] = [
    "etag",
    "cache-control",
    "foo",
    "transfer-encoding",
    "keep-alive",
    "connection",
    "content-length",
];

/// What a client sees of each response in `bytes`: its status line, the fields that
/// matter, and a body that is not an error page (chunks decoded) with its trailer.
fn summary(mut bytes: &[u8], head_only: bool) -> String {
    let mut out = String::new();
    while !bytes.is_empty() {
        let Some(end) = find(bytes, b"\r\n\r\n") else {
            out.push_str("(cut head)\n");
            break;
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        out.push_str(&status);
        out.push('\n');
        let error = status.split(' ').nth(1).is_some_and(|c| c >= "400");
        let mut kept: Vec<String> = Vec::new();
        let mut length = None;
        let mut chunked = false;
        for l in lines {
            let Some((n, v)) = l.split_once(':') else {
                continue;
            };
            let n = n.trim().to_ascii_lowercase();
            let v = v.trim();
            if n == "content-length" {
                length = v.parse::<usize>().ok();
            }
            if n == "transfer-encoding" {
                chunked = true;
            }
            let skip = error && n == "content-length";
            if !skip && (n.starts_with("x-") || FIELDS.contains(&n.as_str())) {
                kept.push(format!("{n}: {v}"));
            }
        }
        kept.sort();
        for k in kept {
            out.push_str(&k);
            out.push('\n');
        }
        if head_only || status.contains(" 204 ") {
            continue;
        }
        let (body, trailer, rest) = if chunked {
            dechunk(bytes)
        } else {
            let n = length.unwrap_or(bytes.len()).min(bytes.len());
            (bytes[..n].to_vec(), Vec::new(), &bytes[n..])
        };
        bytes = rest;
        if !error {
            out.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
        }
        for t in trailer {
            out.push_str(&format!("trailer {t}\n"));
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A chunked body's payload, its trailer lines and what follows it.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, Vec<String>, &[u8]) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(b, b"\r\n") else {
            return (body, vec!["(cut chunk)".into()], &[]);
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(b.len());
        body.extend_from_slice(&b[..take]);
        b = &b[(take + 2).min(b.len())..];
    }
    let mut trailer = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let line = String::from_utf8_lossy(&b[..eol]).into_owned();
        b = &b[eol + 2..];
        if line.is_empty() {
            break;
        }
        trailer.push(line);
    }
    (body, trailer, b)
}

fn answers(port: u16) -> Vec<String> {
    requests()
        .iter()
        .map(|r| {
            let out = summary(&exchange(port, r), r.starts_with("HEAD"));
            format!("{}=> {out}", r.lines().next().unwrap_or_default())
        })
        .collect()
}

#[test]
fn response_fields_and_trailers_match_nginx() {
    let dir = fresh_temp_dir("response-fields");
    for sub in ["etag", "etag-set", "tfile"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        std::fs::write(dir.join(sub).join("f.txt"), "file body\n").expect("write");
    }
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(p, &dir));
    let ours = answers(port);
    let expect = |i: usize, needles: &[&str]| {
        for n in needles {
            assert!(ours[i].contains(n), "{n:?} not in\n{}", ours[i]);
        }
    };
    expect(
        0,
        &[
            "x-sent-cc: foo, bar\n",
            "x-sent-foo: a\n",
            "x-sent-none: []\n",
        ],
    );
    assert!(!ours[1].contains("\netag:"), "{}", ours[1]);
    assert!(
        !ours[2].contains("\netag:") && ours[2].contains("x-a: 1"),
        "{}",
        ours[2]
    );
    expect(3, &["etag: \"mine\"\n"]);
    expect(
        4,
        &[
            "transfer-encoding: chunked",
            "body: hello\n",
            "trailer X-T: t\ntrailer X-Sent-T: t\ntrailer X-Hdr: h\n",
        ],
    );
    assert!(!ours[4].contains("X-Empty"), "{}", ours[4]);
    assert!(
        !ours[5].contains("trailer") && !ours[5].contains("chunked"),
        "{}",
        ours[5]
    );
    assert!(
        !ours[6].contains("trailer") && ours[6].contains("content-length: 5"),
        "{}",
        ours[6]
    );
    expect(7, &["trailer X-Always: a\n"]);
    assert!(!ours[7].contains("X-T"), "{}", ours[7]);
    expect(8, &["body: file body\n", "trailer X-T: /tfile/f.txt\n"]);
    expect(9, &["body: file body\n", "trailer X-T: p\n"]);
    assert!(
        ours[10].contains("content-length: 10") && !ours[10].contains("trailer"),
        "{}",
        ours[10]
    );
    expect(
        11,
        &[
            "x-cookie: a=1; b=2\n",
            "x-xff: x, y\n",
            "x-cb: 2\n",
            "x-via: 1\n",
        ],
    );
    expect(12, &["400 Bad Request"]);
    expect(13, &["400 Bad Request"]);
    expect(14, &["x-rate: 40960\n"]);
    expect(15, &["x-rate: 0\n"]);
    expect(16, &["keep-alive: timeout=9\n"]);
    expect(17, &["200 OK"]);
    expect(18, &["400 Bad Request"]);

    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) = Proxy::start_bin_on(nginx_bin, |[p]| conf(p, &dir));
        let theirs = answers(np);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "request {i}");
        }
    }
}

#[test]
fn add_trailer_and_max_headers_are_checked() {
    let dir = fresh_temp_dir("response-fields-bad");
    for (directive, says) in [
        (
            "add_trailer X-T t sometimes;",
            "invalid parameter \"sometimes\"",
        ),
        (
            "max_headers many;",
            "\"max_headers\" directive invalid number \"many\"",
        ),
    ] {
        let text =
            format!("events {{}}\nhttp {{ server {{ listen 127.0.0.1:1; {directive} }} }}\n");
        let (ok, out) = config_test(&dir, &text);
        assert!(!ok, "{directive} accepted: {out}");
        assert!(out.contains(says), "{directive}: {out}");
    }
}

/// An h2c server (nginx 1.22's `listen ... http2`) with trailers on a `return`, a
/// file and a proxied response (from the plain HTTP/1 port).
fn h2_conf([h2c, plain]: [u16; 2], root: &Path) -> String {
    let root = root.display();
    format!(
        r#"events {{}}
http {{
  access_log off;
  root {root};
  server {{
    listen 127.0.0.1:{h2c} http2;
    location /t {{ add_trailer X-T t; add_trailer X-Sent $sent_trailer_x_t; return 200 "hello"; }}
    location /tfile/ {{ add_trailer X-T $uri; }}
    location /tproxy {{ add_trailer X-T p; proxy_pass http://127.0.0.1:{plain}/tfile/f.txt; }}
    location /t404 {{ add_trailer X-T t; return 404; }}
  }}
  server {{ listen 127.0.0.1:{plain}; }}
}}
"#
    )
}

fn h2_get(port: u16, path: &str) -> String {
    let (python, _) = django_env();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h2_trailers.py");
    let out = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(path)
        .output()
        .expect("run tests/fixtures/h2_trailers.py");
    assert!(
        out.status.success(),
        "h2_trailers.py {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // An error page names its server: its status says enough.
    match text.split_once("\nbody <html>") {
        Some((before, _)) => format!("{before}\nbody (page)"),
        None => text,
    }
}

#[test]
fn add_trailer_over_http2_matches_nginx() {
    let dir = fresh_temp_dir("response-fields-h2");
    std::fs::create_dir_all(dir.join("tfile")).expect("mkdir");
    std::fs::write(dir.join("tfile/f.txt"), "file body\n").expect("write");
    let paths = ["/t", "/tfile/f.txt", "/tproxy", "/t404"];
    let (_ferrolb, [h2c, _]) = Proxy::start_on(|p| h2_conf(p, &dir));
    let ours: Vec<String> = paths.iter().map(|p| h2_get(h2c, p)).collect();
    assert_eq!(
        ours[0],
        "status 200\ntrailer x-t: t\ntrailer x-sent: t\nbody hello\n"
    );
    assert_eq!(
        ours[1],
        "status 200\ntrailer x-t: /tfile/f.txt\nbody file body\n\n"
    );
    assert_eq!(ours[2], "status 200\ntrailer x-t: p\nbody file body\n\n");
    assert!(!ours[3].contains("trailer"), "{}", ours[3]);

    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [nh2c, _]) = Proxy::start_bin_on(nginx_bin, |p| h2_conf(p, &dir));
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(ours[i], h2_get(nh2c, p), "{p}");
        }
    }
}
