//! `access_log` parameters against the real files, on ferrolb and on Debian's nginx
//! with the same configuration: several logs at one level, `if=` (a `map` of
//! `$status`, a query argument), `buffer=` (nothing written until a reload),
//! `flush=` (written without any signal), `gzip` (gzip members that `zcat` and
//! flate2 read, written at reload and stop).

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin_is_nginx, http_get, proxy_bin, Proxy};

fn conf(port: u16) -> String {
    format!(
        "events {{}}
http {{
    map $status $loggable {{ ~^[23] 0; default 1; }}
    log_format short '$request_uri $status';
    server {{
        listen 127.0.0.1:{port};
        access_log logs/errors.log short if=$loggable;
        access_log logs/asked.log short if=$arg_log;
        access_log logs/all.log short;
        access_log logs/buffered.log short buffer=1m;
        access_log logs/flushed.log short buffer=1m flush=1s;
        access_log logs/zipped.log short gzip=5;
        location /missing {{ return 404; }}
        location /quiet {{ access_log off; return 200 \"quiet\\n\"; }}
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
"
    )
}

const REQUESTS: &[&str] = &[
    "/a",
    "/missing",
    "/b?log=1",
    "/c?log=0",
    "/quiet?log=1",
    "/missing?log=yes",
    "/end?log=1",
];

/// The complete lines of `path` once it has `n` of them (5 s at most).
fn lines(path: &Path, n: usize, proxy: &Proxy) -> Vec<String> {
    let mut text = String::new();
    common::poll(Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let lines: Vec<String> = complete.lines().map(str::to_owned).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} has fewer than {n} lines after 5 s:\n{text}\n{}",
            path.display(),
            proxy.diagnostics()
        )
    })
}

/// What one server wrote.
#[derive(Debug, PartialEq)]
struct Written {
    errors: Vec<String>,
    asked: Vec<String>,
    all: Vec<String>,
    /// buffered.log's size before the reload (nothing is written before it).
    buffered_before_reload: u64,
    buffered: Vec<String>,
    flushed: Vec<String>,
    /// zipped.log decoded by flate2, and by zcat.
    zipped: Vec<String>,
    zcat: Vec<String>,
}

fn run(bin: PathBuf) -> Written {
    let (mut proxy, [port]) = Proxy::start_bin_on(bin, |[p]| conf(p));
    for uri in REQUESTS {
        http_get(port, uri, "x").expect("GET");
    }
    let logs = proxy.dir.join("logs");
    let all = lines(&logs.join("all.log"), 6, &proxy);
    let errors = lines(&logs.join("errors.log"), 2, &proxy);
    let asked = lines(&logs.join("asked.log"), 3, &proxy);
    // flush=1s: written without any signal.
    let flushed = lines(&logs.join("flushed.log"), 6, &proxy);
    let size = |name: &str| std::fs::metadata(logs.join(name)).map_or(0, |m| m.len());
    let buffered_before_reload = size("buffered.log");
    // A reload writes the buffers of the configuration it replaces.
    proxy.reload();
    let buffered = lines(&logs.join("buffered.log"), 6, &proxy);
    common::wait_until(Duration::from_secs(5), "gzip member", || {
        (size("zipped.log") > 0).then_some(())
    });
    proxy.stop();
    let raw = std::fs::read(logs.join("zipped.log")).expect("zipped.log");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .expect("zipped.log is gzip");
    let zipped = text.lines().map(str::to_owned).collect();
    let zcat = Command::new("zcat")
        .arg(logs.join("zipped.log"))
        .output()
        .expect("run zcat");
    assert!(zcat.status.success(), "{zcat:?}");
    let zcat = String::from_utf8_lossy(&zcat.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    Written {
        errors,
        asked,
        all,
        buffered_before_reload,
        buffered,
        flushed,
        zipped,
        zcat,
    }
}

#[test]
fn access_log_parameters_write_what_nginx_writes() {
    let ours = run(proxy_bin());
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = strs(&[
        "/a 200",
        "/missing 404",
        "/b?log=1 200",
        "/c?log=0 200",
        "/missing?log=yes 404",
        "/end?log=1 200",
    ]);
    assert_eq!(ours.all, all);
    assert_eq!(ours.errors, strs(&["/missing 404", "/missing?log=yes 404"]));
    assert_eq!(
        ours.asked,
        strs(&["/b?log=1 200", "/missing?log=yes 404", "/end?log=1 200"])
    );
    assert_eq!(ours.buffered_before_reload, 0);
    assert_eq!(ours.buffered, all);
    assert_eq!(ours.flushed, all);
    assert_eq!(ours.zipped, all);
    assert_eq!(ours.zcat, all);

    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        assert_eq!(run(nginx_bin), ours, "nginx wrote otherwise");
    }
}

/// The datagrams a server sends to a syslog socket for two requests, their time
/// stamps cut out (`<PRI>Mmm dd hh:mm:ss REST` gives `<PRI> REST`).
fn syslog_datagrams(bin: PathBuf) -> Vec<String> {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    sink.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let syslog = sink.local_addr().expect("addr").port();
    let (_proxy, [port]) = Proxy::start_bin_on(bin, |[p]| {
        format!(
            "events {{}}
http {{
    log_format short '$request_uri $status';
    server {{
        listen 127.0.0.1:{p};
        access_log syslog:server=127.0.0.1:{syslog},facility=local6,severity=notice,tag=web_1 short;
        access_log syslog:server=127.0.0.1:{syslog},nohostname short if=$arg_x;
        location / {{ return 204; }}
    }}
}}
"
        )
    });
    http_get(port, "/a?x=1", "x").expect("GET");
    http_get(port, "/b", "x").expect("GET");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        let n = sink.recv(&mut buf).expect("a datagram within 5 s");
        let d = String::from_utf8_lossy(&buf[..n]).into_owned();
        let close = d.find('>').expect("<PRI>") + 1;
        // "Nov 30 07:30:10" is 15 bytes.
        got.push(format!("{}{}", &d[..close], &d[close + 15..]));
    }
    got.sort();
    got
}

#[test]
fn syslog_targets_get_nginx_datagrams() {
    let ours = syslog_datagrams(proxy_bin());
    let host = {
        let out = Command::new("hostname").output().expect("hostname");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .to_ascii_lowercase()
    };
    assert_eq!(
        ours,
        [
            format!("<181> {host} web_1: /a?x=1 204"),
            format!("<181> {host} web_1: /b 204"),
            "<190> nginx: /a?x=1 204".to_owned(),
        ]
    );
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        assert_eq!(syslog_datagrams(nginx_bin), ours, "nginx sent otherwise");
    }
}
