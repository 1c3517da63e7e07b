//! `autoindex` listings (`autoindex_format` html, xml, json and jsonp,
//! `autoindex_exact_size`, `autoindex_localtime`, `charset utf-8`) of a directory of
//! awkward names (spaces, quotes, `<&>`, control bytes, UTF-8, bytes that are not
//! UTF-8, long names, links), compared byte for byte with Debian's nginx on the same
//! config when it is installed.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::*;

/// A POSIX zone (no tzdata needed) half an hour off whole hours, so local times
/// differ from UTC in both hours and minutes.
const ZONE: &str = "IST-5:30";

/// The listed tree: files and directories with names each format escapes or cuts,
/// sizes each rounding step shows, links to a file, a directory and nowhere.
fn tree() -> PathBuf {
    let dir = fresh_temp_dir("autoindex");
    let list = dir.join("list");
    let long_utf8 = format!("long-{}", "ф".repeat(45));
    let dirs = [
        "sub dir".to_owned(),
        "dir<&>\"'".to_owned(),
        "d".repeat(49),
        "e".repeat(50),
        "f".repeat(51),
        format!("dir-{}", "ж".repeat(47)),
    ];
    for d in &dirs {
        fs::create_dir_all(list.join(d)).expect("mkdir");
    }
    fs::create_dir_all(dir.join("empty")).expect("mkdir");
    let files: Vec<(Vec<u8>, u64)> = vec![
        (b"plain.txt".to_vec(), 42),
        (b"with space.txt".to_vec(), 1),
        (b"quote'single".to_vec(), 0),
        (b"quote\"double".to_vec(), 0),
        (b"<&>.html".to_vec(), 0),
        (b"colon:name".to_vec(), 0),
        (b"back\\slash".to_vec(), 0),
        (b"tab\tand\x01ctl".to_vec(), 0),
        (b"percent%20+plus#hash?q".to_vec(), 0),
        ("ünïcødé-фф.txt".as_bytes().to_vec(), 7),
        (long_utf8.into_bytes(), 0),
        ("ф".repeat(50).into_bytes(), 0),
        (b"x".repeat(50), 0),
        (b"y".repeat(60), 0),
        (format!("{}<>&", "z".repeat(48)).into_bytes(), 0),
        (b"not-utf8-\xff\xfe".to_vec(), 0),
        (b".hidden".to_vec(), 0),
        (b"k9999".to_vec(), 9999),
        (b"k10000".to_vec(), 10000),
        (b"k10751".to_vec(), 10240 + 511),
        (b"k10752".to_vec(), 10240 + 512),
        (b"m-half".to_vec(), 3 * 1024 * 1024 + 512 * 1024),
        (b"g-sparse".to_vec(), 5 * 1024 * 1024 * 1024 + 1),
    ];
    for (name, size) in &files {
        let f = fs::File::create(list.join(OsStr::from_bytes(name))).expect("create");
        // Sparse: sizes only, no disk.
        f.set_len(*size).expect("set_len");
    }
    fs::write(list.join("plain.txt"), "x".repeat(42)).expect("write");
    std::os::unix::fs::symlink(list.join("sub dir"), list.join("link-to-dir")).expect("symlink");
    std::os::unix::fs::symlink(list.join("plain.txt"), list.join("link-to-file")).expect("symlink");
    std::os::unix::fs::symlink(dir.join("nowhere"), list.join("link-broken")).expect("symlink");
    // Fixed times, one per entry, so both servers list the same dates.
    let mut entries: Vec<PathBuf> = fs::read_dir(&list)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_symlink())
        .collect();
    entries.sort();
    for (i, p) in entries.iter().enumerate() {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(1_700_000_000 + 3_601 * i as u64);
        let f = fs::File::options()
            .write(true)
            .open(p)
            .or_else(|_| fs::File::open(p))
            .expect("open");
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .expect("set_times");
    }
    dir
}

fn conf(dir: &Path, port: u16) -> String {
    let list = dir.join("list");
    let loc = |path: &str, extra: &str| {
        format!(
            "    location /{path}/ {{ alias {}/; autoindex on; {extra} }}\n",
            list.display()
        )
    };
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n{}{}{}{}{}{}{}{}{}{}{}{}{}    location /empty/ {{ alias {}/empty/; autoindex on; autoindex_format json; }}\n  }}\n}}\n",
        loc("html", ""),
        loc("utf8", "charset utf-8;"),
        loc("koi", "charset koi8-r;"),
        loc("approx", "autoindex_exact_size off;"),
        loc("local", "autoindex_localtime on; autoindex_exact_size on;"),
        loc("xml", "autoindex_format xml;"),
        loc("xmlcs", "autoindex_format xml; charset utf-8;"),
        loc("json", "autoindex_format json; charset utf-8;"),
        loc("jsonp", "autoindex_format jsonp;"),
        loc("jsonpcs", "autoindex_format jsonp; charset utf-8;"),
        loc("gz", "gzip on; gzip_vary on; gzip_types application/json;"),
        loc("gzx", "gzip on; gzip_types text/xml; autoindex_format xml; gzip_proxied off;"),
        loc(
            "hdr",
            "add_header X-Listing \"t=$sent_http_content_type\"; add_header X-Always yes always; \
             expires modified 1h;",
        ),
        dir.display(),
    )
}

/// A request: method, path and header fields.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    ("GET", "/html/", &[]),
    ("HEAD", "/html/", &[]),
    ("GET", "/utf8/", &[]),
    ("GET", "/koi/", &[]),
    ("GET", "/approx/", &[]),
    ("GET", "/local/", &[]),
    ("GET", "/xml/", &[]),
    ("GET", "/xmlcs/", &[]),
    ("GET", "/json/", &[]),
    ("GET", "/empty/", &[]),
    ("GET", "/jsonp/", &[]),
    ("GET", "/jsonp/?callback=foo.bar_1", &[]),
    ("GET", "/jsonp/?x=1&CALLBACK=Up", &[]),
    ("GET", "/jsonp/?callback=", &[]),
    ("GET", "/jsonp/?callback=alert(1)", &[]),
    ("GET", "/jsonpcs/?callback=cb", &[]),
    ("GET", "/html/sub%20dir/", &[]),
    ("GET", "/html/dir%3C&%3E%22'/", &[]),
    ("GET", "/html/link-to-dir/", &[]),
    ("GET", "/html/nope/", &[]),
    ("POST", "/html/", &[]),
    ("GET", "/hdr/", &[]),
    ("POST", "/hdr/", &[]),
    ("GET", "/hdr/?callback=x", &[]),
    ("GET", "/gz/", &[("Accept-Encoding", "gzip")]),
    ("HEAD", "/gz/", &[("Accept-Encoding", "gzip")]),
    ("GET", "/gz/", &[]),
    ("GET", "/gzx/", &[("Accept-Encoding", "gzip")]),
    (
        "GET",
        "/gzx/",
        &[("Accept-Encoding", "gzip"), ("Via", "1.1 cache")],
    ),
];

/// What both servers must agree on: the status, the fields `add_header`, `expires`
/// and gzip add, and for a 200 the type and the body, byte for byte (unpacked when
/// gzipped: compressors differ in bytes, what they packed must not).
fn facts(r: &Response) -> Vec<u8> {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let mut out = format!(
        "{} x-listing={} x-always={} cache-control={} encoding={} vary={}",
        r.status,
        h("x-listing"),
        h("x-always"),
        h("cache-control"),
        h("content-encoding"),
        h("vary")
    )
    .into_bytes();
    if r.status == 200 {
        out.extend_from_slice(format!(" type={}\n", h("content-type")).as_bytes());
        if h("content-encoding") == "gzip" && !r.body.is_empty() {
            let mut plain = Vec::new();
            let mut unpack = flate2::read::GzDecoder::new(&r.body[..]);
            std::io::Read::read_to_end(&mut unpack, &mut plain).expect("a gzip body");
            out.extend_from_slice(&plain);
        } else {
            out.extend_from_slice(&r.body);
        }
    }
    out
}

#[test]
fn listings_match_nginx_byte_for_byte() {
    // Before any server starts: both read the zone from the environment.
    std::env::set_var("TZ", ZONE);
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p)));

    // Checks that hold without nginx too.
    let get = |path: &str| {
        http_get(port, path, "localhost")
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", ferrolb.diagnostics()))
    };
    let r = get("/xml/");
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    assert!(
        r.text()
            .contains(" size=\"0\">&lt;&amp;&gt;.html</file>\r\n"),
        "{}",
        r.text()
    );
    let r = get("/jsonp/?callback=foo");
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert!(
        r.text()
            .starts_with("/* callback */\r\nfoo([\r\n{ \"name\":\""),
        "{}",
        r.text()
    );
    assert!(r.text().ends_with("\r\n]);"));
    assert_eq!(get("/jsonp/?callback=a-b").status, 400);
    assert_eq!(get("/empty/").text(), "[\r\n]");
    let r = get("/approx/");
    assert!(r.text().contains("      5G\r\n"), "{}", r.text());
    assert!(!r.text().contains(".hidden"));
    let r = http_request(
        port,
        "GET",
        "/gz/",
        "localhost",
        &[("Accept-Encoding", "gzip")],
        b"",
    )
    .expect("GET /gz/");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    // The zone took: local times are 5:30 ahead of UTC ones.
    let (utc, local) = (get("/html/").text(), get("/local/").text());
    assert!(utc.contains(" 14-Nov-2023 23:13 "), "{utc}");
    assert!(local.contains(" 15-Nov-2023 04:43 "), "{local}");

    let Some((nginx, [nport])) = &nginx else {
        return;
    };
    let mut mismatches = Vec::new();
    for (method, path, fields) in CASES {
        let ours = http_request(port, method, path, "localhost", fields, b"")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", ferrolb.diagnostics()));
        let theirs = http_request(*nport, method, path, "localhost", fields, b"")
            .unwrap_or_else(|e| panic!("nginx {method} {path}: {e}\n{}", nginx.diagnostics()));
        let (a, b) = (facts(&ours), facts(&theirs));
        if a != b {
            mismatches.push(format!(
                "{method} {path} {fields:?}\n  ferrolb: {}\n  nginx:   {}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "listings differ from nginx:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn bad_formats_are_refused_with_the_line() {
    let dir = fresh_temp_dir("autoindex-conf");
    let (ok, text) = config_test(
        &dir,
        "events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n    autoindex_format yaml;\n  }\n}\n",
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("autoindex_format") && text.contains(":5"),
        "{text}"
    );
    let (ok, text) = config_test(
        &dir,
        "events {}\nhttp {\n  autoindex_exact_size maybe;\n}\n",
    );
    assert!(!ok, "{text}");
    assert!(text.contains(":3"), "{text}");
}
