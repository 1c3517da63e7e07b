//! Static files (`root`, `alias`, `index`, `try_files`, `autoindex`, `types`, ETag and
//! Last-Modified with 304/412, `Range` with 206/416, `HEAD`, the slash redirect) on a
//! temp tree, each answer compared with Debian's nginx on the same config when it is
//! installed, and a corpus of hostile paths that must never reach a file outside the
//! root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// The test tree: `www/` (root), `static/` (alias), `secret.txt` beside them.
fn tree() -> PathBuf {
    let dir = fresh_temp_dir("static");
    let www = dir.join("www");
    for d in [
        "www/dir",
        "www/noindex",
        "www/files/sub",
        "static/css",
        "www/app",
        "www/gz",
        "www/gza",
    ] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let write = |p: &str, text: &str| fs::write(dir.join(p), text).expect("write");
    write("www/index.html", "<h1>home</h1>\n");
    write("www/hello.txt", "hello, world\n");
    write("www/dir/index.html", "<p>dir index</p>\n");
    write("www/noindex/a.txt", "a\n");
    write("www/files/b.txt", "bb\n");
    write("www/files/a.txt", "a\n");
    write("www/files/sub/c.txt", "c\n");
    write("www/app/index.html", "<p>app shell</p>\n");
    write("www/data.bin", "0123456789");
    write("www/empty.txt", "");
    write("static/css/site.css", "body { color: black }\n");
    write("static/css/readme.txt", "css readme\n");
    write("secret.txt", "TOP SECRET\n");
    // gzip_static: the copies need not be gzip for the servers, only named so.
    write("www/gz/a.css", "plain a\n");
    write("www/gz/a.css.gz", "pretend-gzip a\n");
    write("www/gz/b.css", "plain b\n");
    write("www/gza/a.css", "plain a\n");
    write("www/gza/a.css.gz", "pretend-gzip a\n");
    std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("link.txt")).expect("symlink");
    // Fixed times: both servers must agree on Last-Modified and the ETag.
    for entry in walk(&dir) {
        let t = filetime(1_700_000_000);
        let f = fs::File::options()
            .write(true)
            .open(&entry)
            .or_else(|_| fs::File::open(&entry));
        if let Ok(f) = f {
            let _ = f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t));
        }
    }
    dir
}

fn filetime(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn conf(dir: &Path, port: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  types {{ text/html html; text/plain txt; text/css css; }}\n  \
         default_type application/octet-stream;\n  access_log off;\n  server {{\n    \
         listen 127.0.0.1:{port};\n    root {d}/www;\n    index index.html;\n    \
         location /static/ {{ alias {d}/static/; }}\n    \
         location /files/ {{ autoindex on; }}\n    \
         location /app/ {{ try_files $uri $uri/ /app/index.html; }}\n    \
         location /named/ {{ try_files $uri @fallback; }}\n    \
         location @fallback {{ return 200 \"fallback\\n\"; }}\n    \
         location /strict/ {{ try_files $uri =404; }}\n    \
         location /tryd/ {{ try_files /dir/ =404; }}\n    \
         location /tryd2/ {{ try_files $uri/ =404; }}\n    \
         location ~ ^/re-alias\\.txt$ {{ alias {d}/www/noindex; try_files /a.txt =404; }}\n    \
         location = /link.txt {{ disable_symlinks on; }}\n    \
         location /lm/ {{ alias {d}/www/; add_header Last-Modified \"Mon, 28 Sep 1970 06:00:00 GMT\"; }}\n    \
         location /nest/ {{ alias {d}/static/; location ~ \\.css$ {{ try_files $uri =404; }}\n      \
         location /nest/css/ {{ }} }}\n    \
         location /gz/ {{ gzip_static on; gzip_vary on; gzip_disable msie6 \"^Bad\"; }}\n    \
         location /gza/ {{ gzip_static always; gzip_http_version 1.0; gzip_proxied auth; }}\n  }}\n}}\n",
        d = dir.display()
    )
}

/// The parts of an answer both servers must agree on.
fn facts(r: &Response, port: u16) -> String {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let body = if r.status >= 300 && r.status != 304 {
        // Error pages name the server; the status says what matters.
        "<error page>".to_owned()
    } else if h("content-type").starts_with("multipart/byteranges") {
        // nginx numbers its boundaries per process.
        format!("<{} bytes of parts>", r.body.len())
    } else {
        r.text()
    };
    let ctype = h("content-type");
    let ctype = if ctype.starts_with("multipart/byteranges") {
        "multipart/byteranges".to_owned()
    } else {
        ctype
    };
    format!(
        "{} type={} length={} etag={} modified={} range={} location={} ranges={} connection={} encoding={} vary={}\n{}",
        r.status,
        if r.status >= 400 {
            "-".to_owned()
        } else {
            ctype
        },
        // Bodies are compared; the length only where there is none (HEAD, 304).
        if r.body.is_empty() {
            h("content-length")
        } else {
            "-".to_owned()
        },
        h("etag"),
        h("last-modified"),
        h("content-range"),
        h("location").replace(&port.to_string(), "PORT"),
        h("accept-ranges"),
        h("connection"),
        h("content-encoding"),
        h("vary"),
        body
    )
}

/// One request: method, path, extra headers, expected status.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    u16,
);

const CASES: &[Case] = &[
    ("GET", "/gz/a.css", &[], 200),
    (
        "GET",
        "/gz/a.css",
        &[("Accept-Encoding", "gzip, deflate")],
        200,
    ),
    (
        "GET",
        "/gz/a.css",
        &[("Accept-Encoding", "br;q=1, gzip;q=0")],
        200,
    ),
    ("HEAD", "/gz/a.css", &[("Accept-Encoding", "gzip")], 200),
    ("GET", "/gz/b.css", &[("Accept-Encoding", "gzip")], 200),
    (
        "GET",
        "/gz/a.css",
        &[("Accept-Encoding", "gzip"), ("Via", "1.1 cache")],
        200,
    ),
    (
        "GET",
        "/gz/a.css",
        &[("Accept-Encoding", "gzip"), ("User-Agent", "Bad bot")],
        200,
    ),
    (
        "GET",
        "/gz/a.css",
        &[
            ("Accept-Encoding", "gzip"),
            (
                "User-Agent",
                "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            ),
        ],
        200,
    ),
    (
        "GET",
        "/gz/a.css",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-3")],
        200,
    ),
    ("GET", "/gza/a.css", &[], 200),
    ("GET", "/", &[], 200),
    ("GET", "/hello.txt", &[], 200),
    ("HEAD", "/hello.txt", &[], 200),
    ("GET", "/empty.txt", &[], 200),
    ("GET", "/data.bin", &[], 200),
    ("GET", "/dir", &[], 301),
    ("GET", "/dir?x=1", &[], 301),
    ("GET", "/dir/", &[], 200),
    ("GET", "/noindex/", &[], 403),
    ("GET", "/missing.txt", &[], 404),
    ("GET", "/missing/", &[], 404),
    ("POST", "/hello.txt", &[], 405),
    ("GET", "/static/css/site.css", &[], 200),
    ("GET", "/static/css/nope.css", &[], 404),
    ("GET", "/files/", &[], 200),
    ("GET", "/files/sub/", &[], 200),
    ("GET", "/app/some/client/route", &[], 200),
    ("GET", "/app/index.html", &[], 200),
    ("GET", "/named/anything", &[], 200),
    ("GET", "/strict/nothing", &[], 404),
    // try_files: a directory entry makes the URI the name without its slash (301);
    // a regex location's alias gets the entry appended.
    ("GET", "/tryd/x", &[], 301),
    ("GET", "/tryd2/", &[], 404),
    ("GET", "/re-alias.txt", &[], 200),
    // A nested location's inherited alias strips the prefix of the location that set
    // it, not its own.
    ("GET", "/nest/css/site.css", &[], 200),
    ("GET", "/nest/css/readme.txt", &[], 200),
    ("GET", "/nest/css/", &[], 403),
    // If-Range is compared with the Last-Modified add_header set.
    (
        "GET",
        "/lm/data.bin",
        &[
            ("Range", "bytes=0-3"),
            ("If-Range", "Mon, 28 Sep 1970 06:00:00 GMT"),
        ],
        206,
    ),
    (
        "GET",
        "/lm/data.bin",
        &[
            ("Range", "bytes=0-3"),
            ("If-Range", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ],
        200,
    ),
    ("GET", "/link.txt", &[], 403),
    ("GET", "/data.bin", &[("Range", "bytes=0-3")], 206),
    ("GET", "/data.bin", &[("Range", "bytes=-3")], 206),
    ("GET", "/data.bin", &[("Range", "bytes=7-")], 206),
    ("GET", "/data.bin", &[("Range", "bytes=5-100")], 206),
    ("GET", "/data.bin", &[("Range", "bytes=10-")], 416),
    ("GET", "/data.bin", &[("Range", "bytes=0-1,4-5")], 206),
    ("GET", "/data.bin", &[("Range", "bytes=0-9,0-9")], 200),
    ("HEAD", "/data.bin", &[("Range", "bytes=0-3")], 206),
    (
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-3"), ("If-Range", "\"6553f100-a\"")],
        206,
    ),
    (
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-3"), ("If-Range", "\"other\"")],
        200,
    ),
    (
        "GET",
        "/data.bin",
        &[("If-None-Match", "\"6553f100-a\"")],
        304,
    ),
    (
        "GET",
        "/data.bin",
        &[("If-None-Match", "W/\"6553f100-a\", \"x\"")],
        304,
    ),
    ("GET", "/data.bin", &[("If-None-Match", "\"nope\"")], 200),
    (
        "GET",
        "/data.bin",
        &[("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")],
        304,
    ),
    (
        "GET",
        "/data.bin",
        &[("If-Modified-Since", "Tue, 14 Nov 2023 22:13:21 GMT")],
        200,
    ),
    ("GET", "/data.bin", &[("If-Match", "\"nope\"")], 412),
    (
        "GET",
        "/data.bin",
        &[("If-Unmodified-Since", "Mon, 13 Nov 2023 00:00:00 GMT")],
        412,
    ),
];

#[test]
fn static_answers_match_nginx() {
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p)));
    let mut mismatches = Vec::new();
    for (method, path, headers, want) in CASES {
        let ours = http_request(port, method, path, "localhost", headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", ferrolb.diagnostics()));
        assert_eq!(
            ours.status,
            *want,
            "{method} {path} {headers:?}: {}\n{}",
            ours.text(),
            ferrolb.error_log()
        );
        if let Some((nginx, [nport])) = &nginx {
            let theirs = http_request(*nport, method, path, "localhost", headers, b"")
                .unwrap_or_else(|e| panic!("nginx {method} {path}: {e}\n{}", nginx.diagnostics()));
            let (a, b) = (facts(&ours, port), facts(&theirs, *nport));
            if a != b {
                mismatches.push(format!(
                    "{method} {path} {headers:?}\n  ferrolb: {a}\n  nginx:   {b}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "answers differ from nginx:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn hostile_paths_never_leave_the_root() {
    let dir = tree();
    let (proxy, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let corpus = [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/dir/../../secret.txt",
        "/dir/%2e%2e/%2e%2e/secret.txt",
        "/static/../secret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/css/../../../secret.txt",
        "/files/../../secret.txt",
        "/app/../../secret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/dir/./../../secret.txt",
        "/%00/secret.txt",
        "/hello.txt%00.html",
        "/secret.txt",
        "/..\\secret.txt",
        "/%5c..%5csecret.txt",
        "/..;/secret.txt",
        "/%252e%252e/secret.txt",
        "/static%2f..%2f..%2fsecret.txt",
        "/....//secret.txt",
        "/dir/..%00/secret.txt",
        "/link.txt",
        "/static/../../secret.txt",
        "/.%00./secret.txt",
    ];
    for path in corpus {
        let r = http_request(port, "GET", path, "localhost", &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "GET {path} gave {}: {}\n{}",
            r.status,
            r.text(),
            proxy.error_log()
        );
        assert!(
            !r.text().contains("TOP SECRET"),
            "GET {path} leaked the file"
        );
    }
}

/// A 1 GiB file (sparse: no disk used) goes out in pieces: the server's peak memory
/// grows by a few buffers, not by the file.
#[test]
fn a_gibibyte_file_is_streamed_in_flat_memory() {
    use std::io::Read;
    let dir = tree();
    let big = dir.join("www/big.bin");
    let f = fs::File::create(&big).expect("create");
    f.set_len(1 << 30).expect("sparse 1 GiB");
    drop(f);
    let (proxy, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    // One small file first, so the buffers of a response exist before the baseline.
    http_get(port, "/hello.txt", "localhost").expect("warm up");
    let before = peak_rss_kib(proxy.pid());

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    std::io::Write::write_all(
        &mut s,
        b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .expect("request");
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("reading the body after {total} bytes: {e}"),
        }
    }
    assert!(
        total > 1 << 30,
        "the whole file and its head: {total} bytes"
    );
    let grown = peak_rss_kib(proxy.pid()).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "peak RSS grew by {grown} KiB while sending 1 GiB"
    );
}
