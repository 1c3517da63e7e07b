//! The charset module (`charset`, `charset_types`, `source_charset`,
//! `override_charset`, `charset_map` single-byte and to/from utf-8) on static files,
//! `return` texts, status pages and proxied answers (own charset, chunked, a utf-8
//! sequence split between chunks), each answer compared with Debian's nginx on the
//! same config when it is installed.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

/// `а` and `б` in koi8-r and utf-8.
const KOI: &[u8] = b"\xc1\xc2";
const UTF: &str = "аб";

fn tree() -> PathBuf {
    let dir = fresh_temp_dir("charset");
    for d in [
        "www/foo",
        "www/any",
        "www/var",
        "www/bytes",
        "www/koi",
        "www/toKoi",
    ] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let write = |p: &str, data: &[u8]| fs::write(dir.join(p), data).expect("write");
    write("www/t.html", b"plain\n");
    write("www/t.foo", b"foo\n");
    write("www/t.bin", b"bin\n");
    write("www/foo/t.foo", b"foo\n");
    write("www/any/t.bin", b"bin\n");
    write("www/var/t.html", b"var\n");
    write("www/bytes/t.html", &b"X".repeat(99));
    write("www/koi/t.html", &[KOI, b" koi\n"].concat());
    write(
        "www/toKoi/t.html",
        format!("{UTF} utf € \u{1F600}\n").as_bytes(),
    );
    // Fixed times: both servers must agree on the ETag.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for p in walk(&dir.join("www")) {
        if let Ok(f) = fs::File::options().write(true).open(&p) {
            let _ = f.set_times(fs::FileTimes::new().set_modified(t));
        }
    }
    dir
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Answers by path: bodies in a charset of their own, one chunked with `а` split
/// between two chunks.
fn backend() -> u16 {
    scripted_backend(|req, _, conn| {
        let (ct, body): (&str, Vec<u8>) = match req.path() {
            "/own-a" => ("text/html; charset=A", b"Y".repeat(20)),
            "/koi" => ("text/plain; charset=koi8-r", [KOI, b" koi\n"].concat()),
            "/none" => ("text/html", b"XX".to_vec()),
            "/accel" => {
                let body = UTF.as_bytes();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Accel-Charset: koi8-r\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(body);
                return;
            }
            "/chunked" => {
                let a = UTF.as_bytes();
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                      Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                for piece in [&a[..1], &a[1..3], &a[3..], "€ end\n".as_bytes()] {
                    let _ = write!(conn, "{:x}\r\n", piece.len());
                    let _ = conn.write_all(piece);
                    let _ = conn.write_all(b"\r\n");
                    let _ = conn.flush();
                }
                let _ = conn.write_all(b"0\r\n\r\n");
                return;
            }
            _ => ("text/plain", b"?".to_vec()),
        };
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(&body);
    })
}

fn conf(dir: &Path, port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  types {{ text/html html; text/foo foo; application/octet-stream bin; }}
  charset_map B A {{ 58 59; }}
  charset_map koi8-r utf-8 {{ C1 D0B0; C2 D0B1; }}
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location / {{ charset utf-8; }}
    location /foo/ {{ charset utf-8; charset_types text/foo; }}
    location /any/ {{ charset utf-8; charset_types *; }}
    location /var/ {{ charset $arg_c; if ($arg_k) {{ charset off; }} }}
    location /bytes/ {{ charset A; source_charset B; }}
    location /koi/ {{ charset utf-8; source_charset koi8-r; }}
    location /toKoi/ {{ charset koi8-r; source_charset utf-8; }}
    location = /ret {{ charset koi8-r; source_charset utf-8; return 200 "аб-€\n"; }}
    location = /ret-same {{ charset utf-8; return 200 "text\n"; }}
    location = /moved {{ charset utf-8; return 302 /x; }}
    location = /gone {{ charset utf-8; return 404; }}
    location /p-override/ {{ charset B; override_charset on; proxy_pass http://127.0.0.1:{backend}/; }}
    location /p-keep/ {{ charset B; proxy_pass http://127.0.0.1:{backend}/; }}
    location /p-utf/ {{ charset utf-8; override_charset on; proxy_pass http://127.0.0.1:{backend}/; }}
    location /p-accel/ {{ charset utf-8; source_charset utf-8; proxy_pass http://127.0.0.1:{backend}/; }}
    location /p-koi/ {{ charset koi8-r; override_charset on; proxy_pass http://127.0.0.1:{backend}/; }}
  }}
}}
"#,
        www = dir.join("www").display()
    )
}

/// What the two servers must agree on.
fn facts(r: &Response) -> String {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    format!(
        "{} type={} length={} chunked={} etag={} ranges={} body={:?}",
        r.status,
        h("content-type"),
        // Status pages name their server: their lengths differ.
        if r.status == 200 {
            h("content-length")
        } else {
            String::new()
        },
        r.header("transfer-encoding").is_some(),
        h("etag"),
        h("accept-ranges"),
        if r.status == 200 {
            String::from_utf8_lossy(&r.body).into_owned()
        } else {
            String::new()
        },
    )
}

#[test]
fn charset_matches_nginx() {
    let dir = tree();
    let backend = backend();
    let (ours, [port]) = Proxy::start_on(|[p]| conf(&dir, p, backend));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p, backend)));
    // (path, our expected facts' start, our expected body)
    let cases: [(&str, &str, &[u8]); 20] = [
        (
            "/t.html",
            "200 type=text/html; charset=utf-8 length=6",
            b"plain\n",
        ),
        ("/t.foo", "200 type=text/foo length=4", b"foo\n"),
        ("/foo/t.foo", "200 type=text/foo; charset=utf-8", b"foo\n"),
        (
            "/any/t.bin",
            "200 type=application/octet-stream; charset=utf-8",
            b"bin\n",
        ),
        (
            "/var/t.html?c=koi8-r",
            "200 type=text/html; charset=koi8-r",
            b"var\n",
        ),
        (
            "/var/t.html?c=koi8-r&k=1",
            "200 type=text/html length=4",
            b"var\n",
        ),
        (
            "/bytes/t.html",
            "200 type=text/html; charset=A length=99",
            &[b'Y'; 99],
        ),
        (
            "/koi/t.html",
            "200 type=text/html; charset=utf-8 length=- chunked=true",
            "аб koi\n".as_bytes(),
        ),
        (
            "/toKoi/t.html",
            "200 type=text/html; charset=koi8-r length=- chunked=true",
            b"\xc1\xc2 utf &#8364; &#128512;\n",
        ),
        (
            "/ret",
            "200 type=text/plain; charset=koi8-r length=- chunked=true",
            b"\xc1\xc2-&#8364;\n",
        ),
        (
            "/ret-same",
            "200 type=text/plain; charset=utf-8 length=5",
            b"text\n",
        ),
        ("/moved", "302 type=text/html length= ", b""),
        ("/gone", "404 type=text/html; charset=utf-8", b""),
        ("/missing.html", "404 type=text/html; charset=utf-8", b""),
        (
            "/p-keep/none",
            "200 type=text/html; charset=B length=2",
            b"XX",
        ),
        (
            "/p-override/own-a",
            "200 type=text/html; charset=B length=20",
            &[b'X'; 20],
        ),
        (
            "/p-keep/own-a",
            "200 type=text/html; charset=A length=20",
            &[b'Y'; 20],
        ),
        (
            "/p-utf/koi",
            "200 type=text/plain; charset=utf-8 length=- chunked=true",
            "аб koi\n".as_bytes(),
        ),
        (
            "/p-accel/accel",
            "200 type=text/html; charset=koi8-r length=- chunked=true",
            b"\xc1\xc2",
        ),
        (
            "/p-koi/chunked",
            "200 type=text/html; charset=koi8-r length=- chunked=true",
            b"\xc1\xc2&#8364; end\n",
        ),
    ];
    let mut diffs = Vec::new();
    for (path, expected, body) in cases {
        let r = http_get(port, path, "localhost").expect("GET");
        let got = facts(&r);
        assert!(
            got.starts_with(expected),
            "{path}: {got}\n{}",
            ours.error_log()
        );
        if r.status == 200 {
            assert_eq!(r.body, body, "{path}: {}", String::from_utf8_lossy(&r.body));
        }
        // nginx 1.22 sometimes breaks the chunked framing when a utf-8 sequence it
        // recodes is split between upstream reads: that case is checked on ours only.
        if let Some((_, [nport])) = nginx.as_ref().filter(|_| path != "/p-koi/chunked") {
            let theirs = facts(
                &http_get(*nport, path, "localhost")
                    .unwrap_or_else(|e| panic!("nginx GET {path}: {e}")),
            );
            if got != theirs {
                diffs.push(format!("{path}\n  ferrolb: {got}\n  nginx:   {theirs}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn charset_map_errors_are_refused_as_nginx_does() {
    let dir = fresh_temp_dir("charset-bad");
    for (body, message) in [
        (
            "charset_map A A { }",
            "\"charset_map\" between the same charsets",
        ),
        (
            "charset_map A B { }\n charset_map B A { }",
            "duplicate \"charset_map\" between",
        ),
        ("charset_map A B { 1G 20; }", "invalid value \"1G\""),
        (
            "charset_map A utf-8 { C1 D0B0B0B0; }",
            "invalid value \"D0B0B0B0\"",
        ),
    ] {
        let conf = dir.join("nginx.conf");
        fs::write(&conf, format!("events {{}}\nhttp {{\n {body}\n}}\n")).expect("write");
        let out = check_config(&dir, &conf);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}: accepted");
        assert!(text.contains(message), "{body}: {text}");
    }
}
