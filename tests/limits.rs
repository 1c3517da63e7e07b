//! `limit_req` and `limit_conn` counted against Debian's nginx on the same config:
//! bounded sequences of requests (and bursts of concurrent ones) get the same numbers
//! of passed, delayed and rejected answers. Rates are chosen so the bucket cannot
//! drain a whole request while a sequence runs (1r/m), or so concurrent requests
//! arrive well within one drain step (2r/s: 500 ms); requests in progress are held by
//! a backend that answers only when told to.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;

fn conf(dir: &Path, backend: u16, [port]: [u16; 1]) -> String {
    let d = dir.display();
    format!(
        r#"events {{}}
http {{
  access_log off;
  root {d}/www;
  limit_req_zone $http_x_key zone=slow:1m rate=1r/m;
  limit_req_zone $http_x_key2 zone=slow2:1m rate=1r/m;
  limit_req_zone $http_x_key zone=fast:1m rate=2r/s;
  limit_conn_zone $http_x_key zone=perkey:1m;
  add_header X-Limit "$limit_req_status/$limit_conn_status" always;
  server {{
    listen 127.0.0.1:{port};
    location /strict/ {{ limit_req zone=slow; }}
    location /nodelay/ {{ limit_req zone=slow burst=3 nodelay; }}
    location /status/ {{ limit_req zone=slow burst=1 nodelay; limit_req_status 429; limit_req_log_level warn; }}
    location /dry/ {{ limit_req zone=slow; limit_req_dry_run on; }}
    location /two/ {{ limit_req zone=slow burst=4 nodelay; limit_req zone=slow2 burst=1 nodelay; }}
    location /delay/ {{ limit_req zone=fast burst=3; }}
    location /delay1/ {{ limit_req zone=fast burst=3 delay=1; }}
    location /inherit/ {{
      limit_req zone=slow burst=1 nodelay;
      location /inherit/inner/ {{ }}
      location /inherit/own/ {{ limit_req zone=slow2; }}
    }}
    location /conn/ {{ limit_conn perkey 2; proxy_pass http://127.0.0.1:{backend}; }}
    location /conn-dry/ {{ limit_conn perkey 1; limit_conn_dry_run on; limit_conn_status 429; proxy_pass http://127.0.0.1:{backend}; }}
    location /big/ {{ limit_rate 200k; }}
    location /big-proxied/ {{ limit_rate 200k; proxy_pass http://127.0.0.1:{port}/big-free/; }}
    location /big-free/ {{ alias {d}/www/big/; }}
  }}
}}
"#
    )
}

fn tree() -> PathBuf {
    let dir = fresh_temp_dir("limits");
    for d in [
        "strict",
        "nodelay",
        "status",
        "dry",
        "two",
        "delay",
        "delay1",
        "inherit",
        "inherit/inner",
        "inherit/own",
    ] {
        std::fs::create_dir_all(dir.join("www").join(d)).expect("mkdir");
        std::fs::write(dir.join("www").join(d).join("f"), "ok\n").expect("write");
    }
    std::fs::create_dir_all(dir.join("www/big")).expect("mkdir");
    std::fs::write(dir.join("www/big/f"), vec![b'x'; BIG]).expect("write");
    dir
}

/// `STATUS X-Limit` of one answer.
fn one(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    match http_request(port, "GET", path, "t", headers, b"") {
        Ok(r) => format!("{} {}", r.status, r.header("x-limit").unwrap_or("-")),
        Err(e) => format!("error {e}"),
    }
}

/// Sends `req` on a connection opened before `barrier` lets every sender go; the
/// answer as [`one`] gives it.
fn sent_together(port: u16, req: &str, barrier: &Barrier) -> String {
    let conn = TcpStream::connect(("127.0.0.1", port));
    barrier.wait();
    let answer = conn.and_then(|mut c| {
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        c.write_all(req.as_bytes())?;
        let mut out = Vec::new();
        c.read_to_end(&mut out)?;
        Ok(out)
    });
    let raw = match answer {
        Ok(raw) => String::from_utf8_lossy(&raw).into_owned(),
        Err(e) => return format!("error {e}"),
    };
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let status = head.split(' ').nth(1).unwrap_or("-");
    let limit = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Limit: "))
        .unwrap_or("-");
    format!("{status} {limit}")
}

/// How many answers of each kind.
fn tally(answers: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for a in answers {
        *t.entry(a).or_default() += 1;
    }
    t
}

/// The sequences; each uses its own key so they do not share buckets.
fn sequences(port: u16, run: &str) -> Vec<(String, BTreeMap<String, usize>)> {
    let mut out = Vec::new();
    let key = |name: &str| format!("{run}-{name}");
    for (name, path, n) in [
        ("strict", "/strict/f", 4),
        ("nodelay", "/nodelay/f", 7),
        ("status", "/status/f", 4),
        ("dry", "/dry/f", 3),
        ("inherit", "/inherit/inner/f", 4),
    ] {
        let k = key(name);
        let answers = (0..n).map(|_| one(port, path, &[("X-Key", &k)]));
        out.push((format!("{name} x{n}"), tally(answers)));
    }
    // Two zones: the second (burst 1) rejects first; the first is not charged for the
    // rejected ones, so after the second's key changes the first still has room.
    let (k1, k2) = (key("two"), key("two-b"));
    let mut answers: Vec<String> = (0..4)
        .map(|_| one(port, "/two/f", &[("X-Key", &k1), ("X-Key2", &k2)]))
        .collect();
    let k3 = key("two-c");
    answers.extend((0..4).map(|_| one(port, "/two/f", &[("X-Key", &k1), ("X-Key2", &k3)])));
    out.push(("two zones x8".into(), tally(answers)));
    // Without the key header nothing is counted.
    out.push((
        "no key x5".into(),
        tally((0..5).map(|_| one(port, "/strict/f", &[]))),
    ));
    // A nested location inherits; one with its own line does not.
    let k = key("own");
    out.push((
        "own x3".into(),
        tally((0..3).map(|_| one(port, "/inherit/own/f", &[("X-Key", &k), ("X-Key2", &k)]))),
    ));
    // Concurrent requests at 2r/s, burst 3: one at once, three delayed, the rest
    // rejected (they all arrive well within the 500 ms a request takes to drain).
    for path in ["/delay/f", "/delay1/f"] {
        let k = key(path);
        // Each request's connection is open before any is sent, and all are sent at
        // once past a barrier: a busy machine cannot spread the arrivals over the
        // bucket's drain time and change the counts.
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: t\r\nX-Key: {k}\r\nConnection: close\r\n\r\n"
                );
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || sent_together(port, &req, &barrier))
            })
            .collect();
        let answers = handles
            .into_iter()
            .map(|h| h.join().expect("request thread"));
        out.push((format!("{path} x6 at once"), tally(answers)));
    }
    out
}

/// A backend that takes requests and answers them only when `release` says so.
struct HoldingBackend {
    port: u16,
    taken: Arc<AtomicUsize>,
    release: mpsc::Sender<()>,
}

impl HoldingBackend {
    fn start() -> HoldingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let taken = Arc::new(AtomicUsize::new(0));
        let (release, released) = mpsc::channel::<()>();
        let t = taken.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                held.push(reader.into_inner());
                t.fetch_add(1, Ordering::SeqCst);
                // Answer everything held once released (the test then connects once
                // more, so a release is seen without polling).
                while released.try_recv().is_ok() {
                    for mut s in held.drain(..) {
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                        );
                    }
                }
            }
        });
        HoldingBackend {
            port,
            taken,
            release,
        }
    }
}

/// Four concurrent requests of one key through `limit_conn perkey 2`: two reach the
/// backend and wait there, two are refused at once; then the backend answers.
fn concurrent_connections(
    port: u16,
    backend: &HoldingBackend,
    path: &str,
) -> BTreeMap<String, usize> {
    let before = backend.taken.load(Ordering::SeqCst);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.to_owned();
            thread::spawn(move || one(port, &path, &[("X-Key", "conn")]))
        })
        .collect();
    let expect_held = if path.contains("dry") { 4 } else { 2 };
    wait_until(IO_TIMEOUT, "requests held by the backend", || {
        (backend.taken.load(Ordering::SeqCst) >= before + expect_held).then_some(())
    });
    // The refused ones come back without the backend.
    let mut answers = Vec::new();
    let mut pending = Vec::new();
    for h in handles {
        if h.is_finished() {
            answers.push(h.join().expect("thread"));
        } else {
            pending.push(h);
        }
    }
    // Release: one more connection arrives to wake the backend's accept loop.
    backend.release.send(()).expect("release");
    let _ = TcpStream::connect(("127.0.0.1", backend.port)).map(|mut s| {
        let _ = s.write_all(b"GET /wake HTTP/1.1\r\n\r\n");
        let mut sink = Vec::new();
        let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
        let _ = s.read_to_end(&mut sink);
    });
    answers.extend(pending.into_iter().map(|h| h.join().expect("thread")));
    tally(answers)
}

/// The file `limit_rate 200k` sends: a second's worth at once, the rest a second later.
const BIG: usize = 300 * 1024;

/// Seconds a GET of `path` takes, and the body size.
fn timed(port: u16, path: &str) -> (f64, usize) {
    let t = std::time::Instant::now();
    let r = http_request(port, "GET", path, "t", &[], b"").expect("GET");
    (t.elapsed().as_secs_f64(), r.body.len())
}

#[test]
fn limit_rate_paces_like_nginx() {
    let dir = tree();
    let (_ferrolb, [port]) = Proxy::start_on(|p| conf(&dir, 1, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |p| conf(&dir, 1, p)));
    for path in ["/big/f", "/big-proxied/f"] {
        let (secs, len) = timed(port, path);
        assert_eq!(len, BIG, "{path}");
        // 300 KiB at 200 KiB/s: the second write waits a second.
        assert!((0.9..2.5).contains(&secs), "{path}: {secs:.2} s");
        let (free, _) = timed(port, "/big-free/f");
        assert!(free < 0.5, "unlimited: {free:.2} s");
        if let Some((_, [nport])) = &nginx {
            let (theirs, _) = timed(*nport, path);
            eprintln!("limit_rate {path}: ferrolb {secs:.2} s, nginx {theirs:.2} s");
            assert!(
                (secs - theirs).abs() < 0.6,
                "{path}: ferrolb {secs:.2} s, nginx {theirs:.2} s"
            );
        }
    }
}

#[test]
fn limit_counts_match_nginx() {
    let dir = tree();
    let backend = HoldingBackend::start();
    let (ferrolb, [port]) = Proxy::start_on(|p| conf(&dir, backend.port, p));
    let mut ours = sequences(port, "f");
    ours.push((
        "conn x4".into(),
        concurrent_connections(port, &backend, "/conn/f"),
    ));
    ours.push((
        "conn dry run x4".into(),
        concurrent_connections(port, &backend, "/conn-dry/f"),
    ));
    for (name, counts) in &ours {
        eprintln!("ferrolb {name}: {counts:?}");
    }
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |p| conf(&dir, backend.port, p));
        let mut theirs = sequences(nport, "n");
        theirs.push((
            "conn x4".into(),
            concurrent_connections(nport, &backend, "/conn/f"),
        ));
        theirs.push((
            "conn dry run x4".into(),
            concurrent_connections(nport, &backend, "/conn-dry/f"),
        ));
        let differ: Vec<String> = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .map(|((name, a), (_, b))| format!("{name}\n  ferrolb: {a:?}\n  nginx:   {b:?}"))
            .collect();
        assert!(
            differ.is_empty(),
            "{} of {} sequences differ from nginx:\n{}\n{}",
            differ.len(),
            ours.len(),
            differ.join("\n"),
            nginx.diagnostics()
        );
        eprintln!("limits: {} sequences counted alike by nginx", ours.len());
    }
    let log = ferrolb.error_log();
    for needle in [
        "limiting requests, excess: 1.000 by zone \"slow\"",
        "limiting requests, dry run, excess: 1.000 by zone \"slow\"",
        "limiting connections by zone \"perkey\"",
        "[warn]",
    ] {
        assert!(log.contains(needle), "{needle} not in:\n{log}");
    }
    // The excess of a delayed request depends on when it came (the bucket drains
    // between arrivals): 0.996, 1.000, ...
    assert!(
        log.lines()
            .any(|l| l.contains("delaying request, excess: ") && l.contains(", by zone \"fast\"")),
        "no delay line in:\n{log}"
    );
}
