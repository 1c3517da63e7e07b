//! HTTP/2 to clients: `curl --http2` over TLS (ALPN `h2`) and `--http2-prior-knowledge`
//! (h2c) through ferrolb to Django, static files and `return` over HTTP/2, each
//! answer compared with Debian's nginx on the same config; POST bodies with and
//! without `content-length` reaching Django whole; many concurrent streams (h2load)
//! within `http2_max_concurrent_streams`; the known HTTP/2 attacks (rapid reset,
//! CONTINUATION flood, HPACK bomb, SETTINGS/PING/empty-DATA floods) each ending in
//! GOAWAY after a bounded number of frames, a zero window ending at `send_timeout`,
//! an idle connection at `keepalive_timeout`;
//! GOAWAY on reload and graceful stop with the stream in progress finished.
//!
//! Frames no stock client sends are made by `tests/fixtures/h2_attacks.py` (Python's
//! `hpack`, installed by scripts/test.sh).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// A CA and a certificate for example.com, made once per run.
fn certs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fresh_temp_dir("h2-pki");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl (Debian package openssl)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]);
        ca.extend(["-subj", "/CN=Test CA"]);
        run(&ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "site.key", "-out", "site.csr"]);
        csr.extend(["-subj", "/CN=example.com"]);
        run(&csr);
        fs::write(dir.join("site.ext"), "subjectAltName=DNS:example.com\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "site.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "site.ext",
            "-out",
            "site.pem",
        ]);
        // Static files: a small one and one larger than any window or lane.
        let www = dir.join("www/static");
        fs::create_dir_all(&www).expect("www");
        fs::write(www.join("a.txt"), "static over h2\n").expect("a.txt");
        let big: String = (0..6000)
            .map(|i| format!("line {i:05} of a larger file\n"))
            .collect();
        fs::write(www.join("big.txt"), big).expect("big.txt");
        dir
    })
}

fn pki(name: &str) -> String {
    certs().join(name).display().to_string()
}

/// The site: one server on a TLS address with HTTP/2 and on a plain h2c address.
fn conf([tls, h2c]: [u16; 2], django: u16, extra: &str) -> String {
    format!(
        r#"events {{}}
http {{
  default_type text/plain;
  log_format h2 '$request|$server_protocol|$http2|$status';
  access_log logs/h2.log h2;
  upstream django {{ server 127.0.0.1:{django}; }}
  {extra}
  server {{
    listen 127.0.0.1:{tls} ssl http2;
    listen 127.0.0.1:{h2c} http2;
    server_name example.com;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
    location /django/ {{
      proxy_pass http://django/;
      proxy_set_header Host 127.0.0.1;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
    location /r {{ return 200 "r $server_protocol [$http2] $scheme $request\n"; }}
    location /rel {{ return 302 /there; }}
    location /err {{ error_page 404 = /r; }}
    location /static/ {{ }}
    # Proxied answers go to the client's stream directly (H2Downstream).
    location /self/ {{ proxy_pass https://127.0.0.1:{tls}/static/; }}
    location /gz/ {{
      gzip on;
      gzip_min_length 1;
      gzip_types text/plain;
      proxy_pass https://127.0.0.1:{tls}/static/;
    }}
    location /down/ {{ proxy_pass http://127.0.0.1:1/; }}
  }}
}}
"#,
        cert = pki("site.pem"),
        key = pki("site.key"),
        root = certs().join("www").display(),
    )
}

/// Runs curl; the answer as `status type=... location=... length=N body`, ports
/// replaced by `PORT`, a standard page reduced to its heading (the footer names the
/// server).
fn curl(port: u16, scheme: &str, path: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "5", "--cacert", &pki("ca.pem")])
        .args(["--resolve", &format!("example.com:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("{scheme}://example.com:{port}{path}"))
        .output()
        .expect("run curl");
    if !out.status.success() {
        return format!("curl failed: exit {:?}", out.status.code());
    }
    let text = String::from_utf8_lossy(&out.stdout).replace(&port.to_string(), "PORT");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    // A standard page's length differs by the server's name in its footer.
    let page = body.contains("<hr><center>");
    let body = if page {
        body.lines()
            .filter(|l| l.contains("<h1>"))
            .collect::<Vec<_>>()
            .join(" ")
    } else if body.len() > 200 {
        format!("{}... ({} bytes)", &body[..40], body.len())
    } else {
        body.trim_end().to_owned()
    };
    format!(
        "{} type={} location={} length={} {body}",
        head.lines().next().unwrap_or("?").trim(),
        field("content-type"),
        field("location"),
        if page {
            "page".to_owned()
        } else {
            field("content-length")
        },
    )
}

/// The test helper script and the Python that has `hpack`.
fn h2_script(args: &[String]) -> String {
    let (python, _) = django_env();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h2_attacks.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run tests/fixtures/h2_attacks.py");
    assert!(
        out.status.success(),
        "h2_attacks.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn h2_answers_match_nginx() {
    let django = Django::start_n(1).remove(0);
    let (ferrolb, ports) = Proxy::start_on(|p| conf(p, django.port, ""));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |p| conf(p, django.port, "")));
    let h2 = ["--http2"];
    let h2c = ["--http2-prior-knowledge"];
    let cases: Vec<(&str, usize, &str, &str, Vec<&str>)> = vec![
        ("return over h2", 0, "https", "/r?a=1", h2.to_vec()),
        ("return over h2c", 1, "http", "/r", h2c.to_vec()),
        ("static file", 0, "https", "/static/a.txt", h2.to_vec()),
        (
            "static file over h2c",
            1,
            "http",
            "/static/a.txt",
            h2c.to_vec(),
        ),
        (
            "HEAD of a static file",
            0,
            "https",
            "/static/a.txt",
            vec!["--http2", "-I"],
        ),
        (
            "a larger static file",
            0,
            "https",
            "/static/big.txt",
            h2.to_vec(),
        ),
        ("a missing file", 0, "https", "/static/none", h2.to_vec()),
        ("an error page", 0, "https", "/err/x", h2.to_vec()),
        ("a relative redirect", 0, "https", "/rel", h2.to_vec()),
        (
            "a directory without its slash",
            0,
            "https",
            "/static",
            h2.to_vec(),
        ),
        ("Django", 0, "https", "/django/", h2.to_vec()),
        ("Django over h2c", 1, "http", "/django/", h2c.to_vec()),
        (
            "$scheme reaches Django",
            0,
            "https",
            "/django/scheme/",
            h2.to_vec(),
        ),
        (
            "a POST to Django",
            0,
            "https",
            "/django/post/",
            vec!["--http2", "-d", "a=1"],
        ),
        (
            "a GET is a 405 from Django's POST view",
            0,
            "https",
            "/django/post/",
            h2.to_vec(),
        ),
        (
            "cookies",
            0,
            "https",
            "/r",
            vec!["--http2", "-b", "a=1; b=2"],
        ),
        (
            "a larger proxied file",
            0,
            "https",
            "/self/big.txt",
            h2.to_vec(),
        ),
        (
            "HEAD of a proxied file",
            1,
            "http",
            "/self/a.txt",
            vec!["--http2-prior-knowledge", "-I"],
        ),
        (
            "a proxied file gzipped",
            0,
            "https",
            "/gz/big.txt",
            vec!["--http2", "--compressed"],
        ),
        ("a proxied 404", 0, "https", "/self/none", h2.to_vec()),
        (
            "an upstream that is down",
            0,
            "https",
            "/down/",
            h2.to_vec(),
        ),
    ];
    let mut ours_all = Vec::new();
    let mut mismatches = Vec::new();
    for (what, port, scheme, path, extra) in &cases {
        let ours = curl(ports[*port], scheme, path, extra);
        if let Some((_, nports)) = &nginx {
            let theirs = curl(nports[*port], scheme, path, extra);
            if ours != theirs {
                mismatches.push(format!("{what}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
        ours_all.push(format!("{what}: {ours}"));
    }
    let all = ours_all.join("\n");
    for expected in [
        "return over h2: HTTP/2 200 type=text/plain location=- length=42 r HTTP/2.0 [h2] https GET /r?a=1 HTTP/2.0",
        "return over h2c: HTTP/2 200 type=text/plain location=- length=38 r HTTP/2.0 [h2c] http GET /r HTTP/2.0",
        "static file: HTTP/2 200 type=text/plain location=- length=15 static over h2",
        "HEAD of a static file: HTTP/2 200 type=text/plain location=- length=15 \n",
        "a larger static file: HTTP/2 200 type=text/plain location=- length=168000 line 00000",
        "(168000 bytes)",
        "a missing file: HTTP/2 404 type=text/html location=- length=page <center><h1>404 Not Found</h1></center>",
        "an error page: HTTP/2 200 type=text/plain location=- length=42 r HTTP/2.0 [h2] https GET /err/x HTTP/2.0",
        "a relative redirect: HTTP/2 302 type=text/html location=https://example.com:PORT/there",
        "Django: HTTP/2 200 type=text/html; charset=utf-8 location=- length=24 <h1>Using port",
        "$scheme reaches Django: HTTP/2 200 type=text/html; charset=utf-8 location=- length=24 scheme=https secure=True",
        "a POST to Django: HTTP/2 200 type=text/html; charset=utf-8 location=- length=29 <h1>Posted to port",
        "a GET is a 405 from Django's POST view: HTTP/2 405",
        "a larger proxied file: HTTP/2 200 type=text/plain location=- length=168000 line 00000",
        "HEAD of a proxied file: HTTP/2 200 type=text/plain location=- length=15 \n",
        "a proxied file gzipped: HTTP/2 200 type=text/plain location=- length=- line 00000",
        "an upstream that is down: HTTP/2 502 type=text/html location=- length=page <center><h1>502 Bad Gateway</h1></center>",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}\n{}", ferrolb.diagnostics());
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from nginx:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The access log says HTTP/2.0, as nginx's does.
    let log = poll(Duration::from_secs(5), || {
        let log = fs::read_to_string(ferrolb.dir.join("logs/h2.log")).ok()?;
        (log.lines().count() >= cases.len()).then_some(log)
    })
    .expect("access log lines");
    assert!(log.contains("GET /r?a=1 HTTP/2.0|HTTP/2.0|h2|200"), "{log}");
    assert!(log.contains("GET /r HTTP/2.0|HTTP/2.0|h2c|200"), "{log}");
    if let Some((n, _)) = &nginx {
        // nginx writes a line after the response has gone: wait for all of them.
        let theirs = poll(Duration::from_secs(5), || {
            let theirs = fs::read_to_string(n.dir.join("logs/h2.log")).ok()?;
            (theirs.lines().count() >= log.lines().count()).then_some(theirs)
        })
        .unwrap_or_default();
        let mut a: Vec<&str> = log.lines().collect();
        let mut b: Vec<&str> = theirs.lines().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "access log lines differ from nginx's");
    }
    // A plain HTTP/1 client on the h2c address is still served (nginx >= 1.25.1).
    let h1 = curl(ports[1], "http", "/r", &["--http1.1"]);
    assert!(h1.contains("r HTTP/1.1 [] http GET /r HTTP/1.1"), "{h1}");
    // And a TLS client that offers only http/1.1 by ALPN gets HTTP/1.1.
    let h1 = curl(ports[0], "https", "/r", &["--http1.1"]);
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert!(h1.contains("r HTTP/1.1 [] https GET /r HTTP/1.1"), "{h1}");
}

#[test]
fn request_bodies_reach_django_whole() {
    let django = Django::start_n(1).remove(0);
    let (ferrolb, ports) = Proxy::start_on(|p| conf(p, django.port, ""));
    let dir = fresh_temp_dir("h2-bodies");
    let mib = dir.join("1mib.bin");
    fs::write(&mib, vec![b'm'; 1 << 20]).expect("body file");
    let file = format!("@{}", mib.display());
    for (id, port, scheme, flags) in [
        ("small-tls", 0, "https", vec!["--http2", "-d", "hello=1"]),
        (
            "mib-tls",
            0,
            "https",
            vec!["--http2", "--data-binary", &file],
        ),
        (
            "mib-h2c",
            1,
            "http",
            vec!["--http2-prior-knowledge", "--data-binary", &file],
        ),
    ] {
        let header = format!("X-Request-Id: {id}");
        let mut extra = flags.clone();
        extra.extend(["-H", &header]);
        let got = curl(ports[port], scheme, "/django/post/", &extra);
        assert!(
            got.starts_with("HTTP/2 200"),
            "{id}: {got}\n{}",
            ferrolb.diagnostics()
        );
    }
    // DATA without content-length: the body is chunked to ferrolb's pipeline, which
    // reads it whole and sends it with a length (Django needs one).
    for size in ["300000", "1048576"] {
        let got = h2_script(&args(&[
            &ports[1].to_string(),
            "post_no_length",
            "/django/post/",
            size,
        ]));
        assert!(
            got.starts_with("status=200"),
            "{size}: {got}\n{}",
            ferrolb.diagnostics()
        );
    }
    let posted = fs::read_to_string(django.post_log_path()).unwrap_or_default();
    for line in [
        "small-tls ",
        "mib-tls ",
        "mib-h2c ",
        "nolength-300000 ",
        "nolength-1048576 ",
    ] {
        let found = posted.lines().find(|l| l.starts_with(line));
        let len = found.and_then(|l| l.split_whitespace().nth(2));
        let want = match line {
            "small-tls " => "7",
            "nolength-300000 " => "300000",
            _ => "1048576",
        };
        assert_eq!(len, Some(want), "{line}in Django's log:\n{posted}");
    }
}

#[test]
fn concurrent_streams_are_bounded_and_all_answered() {
    let django = Django::start_n(1).remove(0);
    let extra = "http2_max_concurrent_streams 16; http2_body_preread_size 32k;";
    let (ferrolb, ports) = Proxy::start_on(|p| conf(p, django.port, extra));
    let settings = h2_script(&args(&[&ports[1].to_string(), "settings"]));
    assert!(
        settings.contains("max_concurrent_streams=16")
            && settings.contains("initial_window_size=32768")
            && settings.contains("max_header_list_size=32768"),
        "{settings}"
    );
    let h2load = |url: String, n: &str| {
        let out = Command::new("h2load")
            // As many streams per client as allowed: more would be refused until the
            // client has the server's SETTINGS (RST_STREAM REFUSED_STREAM, as nginx).
            .args(["-n", n, "-c", "4", "-m", "16", &url])
            .stderr(Stdio::inherit())
            .output()
            .expect("run h2load (Debian package nghttp2-client)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = h2load(format!("http://127.0.0.1:{}/r", ports[1]), "4000");
    assert!(
        plain.contains("4000 succeeded, 0 failed, 0 errored"),
        "{plain}\n{}",
        ferrolb.diagnostics()
    );
    let tls = h2load(
        format!("https://127.0.0.1:{}/static/a.txt", ports[0]),
        "1000",
    );
    assert!(tls.contains("Application protocol: h2"), "{tls}");
    assert!(tls.contains("1000 succeeded, 0 failed, 0 errored"), "{tls}");
}

#[test]
fn attacks_end_in_goaway_after_bounded_frames() {
    let django = Django::start_n(1).remove(0);
    let extra = "send_timeout 1s; keepalive_timeout 2s;";
    let (ferrolb, ports) = Proxy::start_on(|p| conf(p, django.port, extra));
    let port = ports[1].to_string();
    // (attack, bound): for the floods ferrolb's frame budgets find, the frames of the
    // kind the server had received when it gave up (its log line says how many: a
    // count on the client's side would depend on how far it got before the GOAWAY
    // reached it, which a busy machine stretches); for those the h2 codec finds, the
    // offending frames the client had sent when it saw the GOAWAY.
    for (attack, bound) in [
        ("rapid_reset", 2000),
        ("settings_flood", 200),
        ("ping_flood", 200),
        ("empty_data_flood", 2000),
        ("continuation_flood", 2000),
        ("hpack_bomb", 8),
    ] {
        let got = h2_script(&args(&[&port, attack]));
        let kind = match attack {
            "rapid_reset" => Some("RST_STREAM"),
            "settings_flood" => Some("SETTINGS"),
            "ping_flood" => Some("PING"),
            // The codec ends this one; the log still says how many came.
            "empty_data_flood" => Some("empty DATA"),
            "continuation_flood" => Some("CONTINUATION"),
            _ => None,
        };
        let counted = match kind {
            None => got
                .split(' ')
                .find_map(|w| w.strip_prefix("after="))
                .and_then(|n| n.parse::<usize>().ok()),
            Some(kind) => poll(Duration::from_secs(5), || {
                // "http2 flood detected ([codec error; ]KIND frames, N received), ..."
                let log = ferrolb.error_log();
                let marker = format!("{kind} frames, ");
                let (_, rest) = log.split_once(&marker)?;
                rest.split(' ').next()?.parse::<usize>().ok()
            }),
        };
        assert!(
            got.starts_with("GOAWAY code=11 ") && counted.is_some_and(|n| n <= bound),
            "{attack}: {got}, counted {counted:?} (at most {bound})\n{}",
            ferrolb.diagnostics()
        );
    }
    // A client that never opens its window: the stream is reset at send_timeout.
    let got = h2_script(&args(&[&port, "zero_window", "/static/big.txt"]));
    let seconds: f64 = got
        .strip_prefix("RST_STREAM stream=1 code=8 seconds=")
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("zero window: {got}\n{}", ferrolb.diagnostics()));
    assert!((0.9..5.0).contains(&seconds), "{got}");
    assert!(got.ends_with("data=0"), "{got}");
    // Connection-specific fields make a request malformed (RFC 9113 8.2.2): the
    // stream is reset with PROTOCOL_ERROR, the connection serves on.
    let got = h2_script(&args(&[&port, "malformed"]));
    assert_eq!(got, "1:reset code=1 3:reset code=1 5:answered");
    // keepalive_timeout: an idle connection gets GOAWAY (NO_ERROR) and is closed.
    let got = h2_script(&args(&[&port, "idle"]));
    let seconds: f64 = got
        .strip_prefix("GOAWAY code=0 seconds=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("idle: {got}"));
    assert!((1.9..6.0).contains(&seconds), "{got}");
    // The server goes on serving others.
    let ok = curl(ports[0], "https", "/r", &["--http2"]);
    assert!(ok.starts_with("HTTP/2 200"), "{ok}");
    let log = ferrolb.error_log();
    assert!(log.contains("http2 flood detected"), "{log}");
}

#[test]
fn goaway_on_reload_and_graceful_stop_and_the_stream_finishes() {
    let django = Django::start_n(1).remove(0);
    let (mut ferrolb, ports) = Proxy::start_on(|p| conf(p, django.port, ""));
    let port = ports[1].to_string();
    // A stream in progress across each: it finishes, and the connection got GOAWAY.
    let hold = |then: &mut dyn FnMut()| {
        let (python, _) = django_env();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h2_attacks.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([&port, "hold", "/django/slow/?s=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run h2_attacks.py");
        let mut out = child.stdout.take().expect("stdout");
        let mut first = [0u8; 5];
        std::io::Read::read_exact(&mut out, &mut first).expect("sent");
        assert_eq!(&first, b"sent\n");
        let started = Instant::now();
        then();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).expect("answer");
        let _ = child.wait();
        (rest.trim().to_owned(), started.elapsed())
    };
    let (got, _) = hold(&mut || ferrolb.sighup().expect("reload"));
    assert!(
        got.starts_with("status=200") && got.contains("goaway=[0"),
        "reload: {got}\n{}",
        ferrolb.diagnostics()
    );
    let (got, _) = hold(&mut || ferrolb.signal(nix::sys::signal::Signal::SIGQUIT));
    assert!(
        got.starts_with("status=200") && got.contains("goaway=[0"),
        "graceful stop: {got}"
    );
    assert!(
        ferrolb.wait_exit(Duration::from_secs(10)).is_some(),
        "exits after the stream"
    );
}
