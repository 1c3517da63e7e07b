//! Dynamic gzip (`gzip`, `gzip_types`, `gzip_min_length`, `gzip_comp_level`,
//! `gzip_vary`, `gzip_http_version`): proxied responses with a length, chunked and
//! close-delimited, static files, and the ones left alone (HEAD, 304, small bodies,
//! other types, already encoded). Each answer is compared with Debian's nginx on the
//! same config when it is installed: status, the fields gzip changes, and the body
//! after decompression. A streamed response reaches the client piece by piece.

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A text that compresses well, ~300 KiB: several upstream reads.
fn big_text() -> Vec<u8> {
    (0..12_000u32)
        .flat_map(|i| {
            format!("line {i:05}: the quick brown fox jumps over the lazy dog\n").into_bytes()
        })
        .collect()
}

/// The backend: fixed answers by path, each connection closed after one answer.
fn backend() -> u16 {
    scripted_backend(|req, reader, conn| {
        let mut body = vec![0u8; req.content_length];
        let _ = reader.read_exact(&mut body);
        let big = big_text();
        let head_only = req.line.starts_with("HEAD ");
        let plain = |ctype: &str, extra: &str, body: &[u8]| {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if !head_only {
                out.extend_from_slice(body);
            }
            out
        };
        let out = match req.path() {
            "/length" => plain(
                "text/plain; charset=utf-8",
                "ETag: \"v1-abc\"\r\nAccept-Ranges: bytes\r\n",
                &big,
            ),
            "/html" => plain("text/html", "ETag: W/\"weak\"\r\n", &big),
            "/small" => plain("text/plain", "", b"tiny body"),
            "/nocache" => plain("text/plain", "Cache-Control: private, no-cache\r\n", &big),
            "/cached" => plain("text/plain", "Cache-Control: max-age=60\r\n", &big),
            "/encoded" => plain("text/plain", "Content-Encoding: br\r\n", &big),
            "/image" => plain("image/png", "", &big),
            "/missing" => {
                let mut out = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    big.len()
                )
                .into_bytes();
                out.extend_from_slice(&big);
                out
            }
            "/error" => {
                let mut out = format!(
                    "HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    big.len()
                )
                .into_bytes();
                out.extend_from_slice(&big);
                out
            }
            "/notmod" => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_vec()
            }
            "/chunked" => {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
                for piece in big.chunks(50_000) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
            "/until-close" => {
                let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
                out.extend_from_slice(&big);
                out
            }
            _ => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
        };
        let _ = conn.write_all(&out);
    })
}

fn tree() -> PathBuf {
    let dir = fresh_temp_dir("gzip");
    fs::create_dir_all(dir.join("www")).expect("mkdir");
    fs::write(dir.join("www/big.txt"), big_text()).expect("write");
    fs::write(dir.join("www/page.html"), big_text()).expect("write");
    fs::write(dir.join("www/small.txt"), "tiny body").expect("write");
    fs::write(dir.join("www/data.bin"), big_text()).expect("write");
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for name in ["big.txt", "page.html", "small.txt", "data.bin"] {
        let f = fs::File::options()
            .write(true)
            .open(dir.join("www").join(name))
            .expect("open");
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .expect("times");
    }
    dir
}

fn conf(dir: &Path, port: u16, backend: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  types {{ text/html html; text/plain txt; }}\n  \
         default_type application/octet-stream;\n  \
         log_format ratio '$request_method $request_uri $gzip_ratio';\n  access_log logs/ratio.log ratio;\n  \
         gzip on;\n  gzip_types text/plain;\n  gzip_vary on;\n  gzip_comp_level 5;\n  gzip_buffers 16 8k;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n    \
         location /up/ {{ proxy_pass http://127.0.0.1:{backend}/; }}\n    \
         location /up10/ {{ gzip_http_version 1.0; proxy_pass http://127.0.0.1:{backend}/; }}\n    \
         location /off/ {{ gzip off; proxy_pass http://127.0.0.1:{backend}/; }}\n    \
         location /any/ {{ gzip_types *; gzip_min_length 1; proxy_pass http://127.0.0.1:{backend}/; }}\n    \
         location /via/ {{ gzip_proxied no-cache auth; proxy_pass http://127.0.0.1:{backend}/; }}\n  }}\n}}\n",
        d = dir.display()
    )
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("not gzip ({e}): {} bytes", data.len()));
    out
}

/// What both servers must agree on; the body as decoded, summarised.
fn facts(r: &Response) -> String {
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let encoded = h("content-encoding") == "gzip";
    let body = if encoded && !r.body.is_empty() {
        gunzip(&r.body)
    } else {
        r.body.clone()
    };
    let body = if r.status >= 400 && body != big_text() {
        "<error page>".to_owned()
    } else if body == big_text() {
        "<big text>".to_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    format!(
        "{} type={} length={} chunked={} etag={} ranges={} encoding={} vary={} body={}",
        r.status,
        h("content-type"),
        if encoded {
            h("content-length")
        } else {
            "(plain)".into()
        },
        h("transfer-encoding"),
        h("etag"),
        h("accept-ranges"),
        h("content-encoding"),
        h("vary"),
        body
    )
}

const GZ: &[(&str, &str)] = &[("Accept-Encoding", "gzip, deflate")];
const NONE: &[(&str, &str)] = &[];
const VIA: &[(&str, &str)] = &[("Accept-Encoding", "gzip"), ("Via", "1.1 cdn")];

/// Method, path, request fields, and whether the answer is compressed.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

const CASES: &[Case] = &[
    ("GET", "/up/length", GZ, true),
    ("GET", "/up/length", NONE, false),
    (
        "GET",
        "/up/length",
        &[("Accept-Encoding", "gzip;q=0")],
        false,
    ),
    ("GET", "/up/html", GZ, true),
    ("GET", "/up/chunked", GZ, true),
    ("GET", "/up/until-close", GZ, true),
    ("GET", "/up/small", GZ, false),
    ("GET", "/up/encoded", GZ, false),
    ("GET", "/up/image", GZ, false),
    ("GET", "/up/missing", GZ, true),
    ("GET", "/up/error", GZ, false),
    ("GET", "/up/notmod", GZ, false),
    // A HEAD's answer has the head a GET's would, as nginx sends it.
    ("HEAD", "/up/length", GZ, true),
    ("HEAD", "/up/small", GZ, false),
    (
        "GET",
        "/up/length",
        &[("Accept-Encoding", "gzip"), ("Via", "1.1 cdn")],
        false,
    ),
    ("GET", "/off/length", GZ, false),
    ("GET", "/via/nocache", VIA, true),
    // gzip_proxied: nothing in the answer decides against it.
    ("GET", "/via/length", VIA, true),
    ("GET", "/via/cached", VIA, false),
    (
        "GET",
        "/via/cached",
        &[
            ("Accept-Encoding", "gzip"),
            ("Via", "1.1 cdn"),
            ("Authorization", "Basic eDp5"),
        ],
        true,
    ),
    (
        "GET",
        "/via/length",
        &[
            ("Accept-Encoding", "gzip"),
            (
                "User-Agent",
                "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            ),
        ],
        true,
    ),
    ("GET", "/any/image", GZ, true),
    ("GET", "/any/small", GZ, true),
    ("GET", "/big.txt", GZ, true),
    ("GET", "/big.txt", NONE, false),
    (
        "GET",
        "/big.txt",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
        true,
    ),
    ("HEAD", "/big.txt", GZ, true),
    ("GET", "/page.html", GZ, true),
    ("GET", "/small.txt", GZ, false),
    ("GET", "/data.bin", GZ, false),
    (
        "GET",
        "/big.txt",
        &[
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", "\"6553f100-a4100\""),
        ],
        false,
    ),
];

#[test]
fn gzip_answers_decode_and_match_nginx() {
    let dir = tree();
    let backend = backend();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p, backend));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p, backend)));
    let mut mismatches = Vec::new();
    for (method, path, headers, compressed) in CASES {
        let ours = http_request(port, method, path, "localhost", headers, b"")
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", ferrolb.diagnostics()));
        let encoded = ours.header("content-encoding") == Some("gzip");
        assert_eq!(
            encoded,
            *compressed,
            "{method} {path} {headers:?}: {:?}\n{}",
            ours.headers,
            ferrolb.error_log()
        );
        if encoded {
            assert!(
                ours.header("content-length").is_none(),
                "{path}: {:?}",
                ours.headers
            );
            let framing = if *method == "HEAD" {
                None
            } else {
                Some("chunked")
            };
            assert_eq!(ours.header("transfer-encoding"), framing, "{method} {path}");
            assert!(
                ours.body.len() < big_text().len() / 3 || path.ends_with("small"),
                "{path}"
            );
        }
        if let Some((nginx, [nport])) = &nginx {
            let theirs = http_request(*nport, method, path, "localhost", headers, b"")
                .unwrap_or_else(|e| panic!("nginx {method} {path}: {e}\n{}", nginx.diagnostics()));
            let (a, b) = (facts(&ours), facts(&theirs));
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
    // A compressed answer (chunked) leaves an HTTP/1.1 connection open for the next.
    let mut ka = KeepAlive::new(port, "localhost");
    for path in ["/up/length", "/up/chunked", "/big.txt", "/up/length"] {
        let r = ka.request("GET", path, GZ, b"").expect("keep-alive GET");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gunzip(&r.body), big_text(), "{path}");
        assert!(ka.is_connected(), "{path}: {:?}", r.headers);
    }
    assert_eq!(ka.connections, 1);
    // `$gzip_ratio`: the compressed bodies have one (a HEAD's answer has no body),
    // as nginx writes it.
    let log = wait_until(Duration::from_secs(10), "the access log", || {
        let text = fs::read_to_string(ferrolb.dir.join("logs/ratio.log")).ok()?;
        (text.lines().count() >= CASES.len() + 4).then_some(text)
    });
    // One request at a time: the lines are in the order of the cases.
    for (line, (method, _, _, compressed)) in log.lines().zip(CASES) {
        let ratio = line.rsplit(' ').next().unwrap_or_default();
        if *compressed && *method != "HEAD" {
            assert!(ratio.parse::<f64>().is_ok_and(|r| r > 0.0), "{line}");
        } else {
            assert_eq!(ratio, "-", "{line}");
        }
    }
}

/// An HTTP/1.0 client gets the compressed body ended by the close, as nginx sends it.
#[test]
fn http10_clients_get_the_body_until_close() {
    let dir = tree();
    let backend = backend();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p, backend));
    for path in ["/up10/length", "/up10/chunked", "/up/length"] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // Keep-alive asked for where the answer must close anyway.
        let connection = if path.starts_with("/up10/") {
            "keep-alive"
        } else {
            "close"
        };
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: {connection}\r\n\r\n"
        )
        .expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all)
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", ferrolb.diagnostics()));
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
        let body = &all[split + 4..];
        if path.starts_with("/up10/") {
            assert!(head.contains("content-encoding: gzip"), "{path}: {head}");
            assert!(head.contains("connection: close"), "{path}: {head}");
            assert!(!head.contains("content-length"), "{path}: {head}");
            assert!(!head.contains("transfer-encoding"), "{path}: {head}");
            assert_eq!(gunzip(body), big_text(), "{path}");
        } else {
            // gzip_http_version 1.1 (the default): HTTP/1.0 gets it plain.
            assert!(!head.contains("content-encoding"), "{path}: {head}");
            assert_eq!(body, big_text(), "{path}");
        }
    }
}

/// The compressor never holds a whole body: what the upstream sent so far reaches the
/// client, decodable, while the upstream still holds back the rest.
#[test]
fn a_streamed_response_is_compressed_as_it_comes() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let backend = scripted_backend(move |_req, _reader, conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n14\r\ndata: first event..\n\r\n",
        );
        // The rest only once the client has shown it got the first event.
        let _ = release_rx
            .lock()
            .map(|rx| rx.recv_timeout(Duration::from_secs(20)));
        let _ = conn.write_all(b"13\r\ndata: second event\n\r\n0\r\n\r\n");
    });
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p, backend));
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /up/events HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("head line");
        if line.trim().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}\n{}",
        ferrolb.diagnostics()
    );
    // Read chunks and inflate until the first event shows.
    let mut inflate = flate2::Decompress::new(false);
    let mut plain = Vec::with_capacity(1 << 16);
    let mut gz = Vec::new();
    let mut first_seen = false;
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
        let mut chunk = vec![0u8; n + 2];
        reader.read_exact(&mut chunk).expect("chunk");
        if n == 0 {
            break;
        }
        gz.extend_from_slice(&chunk[..n]);
        if !first_seen && gz.len() > 10 {
            plain.clear();
            inflate = flate2::Decompress::new(false);
            inflate
                .decompress_vec(&gz[10..], &mut plain, flate2::FlushDecompress::Sync)
                .expect("inflate");
            if plain.starts_with(b"data: first event..\n") {
                first_seen = true;
                release_tx.send(()).expect("release the backend");
            }
        }
    }
    assert!(first_seen, "the first event never came alone");
    let _ = inflate;
    assert_eq!(gunzip(&gz), b"data: first event..\ndata: second event\n");
}
