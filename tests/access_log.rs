//! Access logs end to end: a JSON `log_format` with the upstream variables, a retried
//! request listing both attempts, and the default `combined` line.

mod common;

use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{http_get, http_request, DeadPort, Proxy};

/// One backend answering `<h1>Using port N</h1>`, on a runtime in a background thread.
fn backend() -> u16 {
    let l = common::local_listener();
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            l.set_nonblocking(true).expect("nonblocking");
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            tokio::spawn(ferrolb::demo::serve_backend(l, port));
            std::future::pending::<()>().await;
        });
    });
    port
}

/// The complete (newline-terminated) lines of `path` once it has at least `n`
/// of them (the writer thread writes them within milliseconds; allow 5 s on a
/// loaded machine).
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
            "{} has fewer than {n} complete lines after 5 s:\n{text}\n{}",
            path.display(),
            proxy.diagnostics()
        )
    })
}

const JSON_FORMAT: &str = r#"log_format j escape=json '{"status":"$status","request":"$request",'
      '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
      '"request_time":"$request_time","upstream_response_time":"$upstream_response_time",'
      '"upstream_connect_time":"$upstream_connect_time","upstream_header_time":"$upstream_header_time",'
      '"body_bytes_sent":"$body_bytes_sent","bytes_sent":"$bytes_sent","ua":"$http_user_agent",'
      '"connection_requests":"$connection_requests","pipe":"$pipe","remote_user":"$remote_user",'
      '"time":"$time_iso8601","msec":"$msec","request_length":"$request_length"}';"#;

fn config(port: u16, live: u16, dead: u16) -> String {
    format!(
        "events {{}}\nhttp {{\n  {JSON_FORMAT}\n  upstream live {{ server 127.0.0.1:{live}; }}\n  \
         upstream retry {{ server 127.0.0.1:{dead} max_fails=0; server 127.0.0.1:{live} max_fails=0; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    access_log logs/json.log j;\n    \
         location / {{ proxy_pass http://live; }}\n    \
         location /retry {{ proxy_pass http://retry; }}\n    \
         location /local {{ return 200 \"hi\"; }}\n    \
         location /combined {{ access_log logs/combined.log; proxy_pass http://live; }}\n  }}\n}}\n"
    )
}

fn parse(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name} in {v}"))
}

/// `0.004`: seconds with exactly three decimals.
fn is_seconds(s: &str) -> bool {
    matches!(s.split_once('.'), Some((a, b)) if !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 3 && b.bytes().all(|c| c.is_ascii_digit()))
}

#[test]
fn json_format_lists_every_attempt() {
    let live = backend();
    let dead_port = DeadPort::new();
    let dead = dead_port.port;
    let (proxy, [port]) = Proxy::start_on(|[port]| config(port, live, dead));
    let json_log = proxy.dir.join("logs/json.log");

    let r = http_request(
        port,
        "GET",
        "/a?x=1",
        "example.test",
        &[("User-Agent", "t\"est")],
        b"",
    )
    .expect("GET /a");
    assert_eq!(r.status, 200);
    let v = parse(&lines(&json_log, 1, &proxy)[0]);
    assert_eq!(field(&v, "status"), "200");
    assert_eq!(field(&v, "request"), "GET /a?x=1 HTTP/1.1");
    assert_eq!(field(&v, "upstream_addr"), format!("127.0.0.1:{live}"));
    assert_eq!(field(&v, "upstream_status"), "200");
    assert_eq!(field(&v, "ua"), "t\"est");
    assert!(is_seconds(field(&v, "request_time")), "{v}");
    assert!(is_seconds(field(&v, "upstream_response_time")), "{v}");
    assert!(is_seconds(field(&v, "upstream_connect_time")), "{v}");
    assert!(is_seconds(field(&v, "upstream_header_time")), "{v}");
    let body: u64 = field(&v, "body_bytes_sent").parse().expect("number");
    let total: u64 = field(&v, "bytes_sent").parse().expect("number");
    assert_eq!(body, r.body.len() as u64);
    assert!(total > body, "{v}");
    assert_eq!(field(&v, "connection_requests"), "1");
    assert_eq!(field(&v, "pipe"), ".");
    // Missing values are empty with escape=json, as in nginx.
    assert_eq!(field(&v, "remote_user"), "");
    assert!(field(&v, "time").contains('T'), "{v}");
    assert!(is_seconds(field(&v, "msec")), "{v}");
    assert!(field(&v, "request_length").parse::<u64>().expect("number") > 20);

    // A request answered locally contacted no upstream.
    assert_eq!(
        http_get(port, "/local", "example.test")
            .expect("GET")
            .status,
        200
    );
    let v = parse(&lines(&json_log, 2, &proxy)[1]);
    assert_eq!(field(&v, "status"), "200");
    assert_eq!(field(&v, "upstream_addr"), "");
    assert_eq!(field(&v, "upstream_status"), "");

    // Round robin over (dead, live) with max_fails=0: at least one of two requests
    // starts at the dead peer (each worker thread keeps its own position), fails over,
    // and lists both attempts.
    for _ in 0..2 {
        let r = http_get(port, "/retry", "example.test").expect("GET /retry");
        assert_eq!(r.status, 200, "{}", proxy.diagnostics());
    }
    let all = lines(&json_log, 4, &proxy);
    let retried: Vec<serde_json::Value> = all[2..]
        .iter()
        .map(|l| parse(l))
        .filter(|v| field(v, "upstream_addr").contains(", "))
        .collect();
    assert!(!retried.is_empty(), "{all:#?}");
    for v in &retried {
        assert_eq!(
            field(v, "upstream_addr"),
            format!("127.0.0.1:{dead}, 127.0.0.1:{live}")
        );
        assert_eq!(field(v, "upstream_status"), "502, 200");
        assert_eq!(field(v, "status"), "200");
        let connect = field(v, "upstream_connect_time");
        let (first, second) = connect.split_once(", ").expect("two connect times");
        assert_eq!(first, "-", "{v}");
        assert!(is_seconds(second), "{v}");
        let times = field(v, "upstream_response_time");
        assert_eq!(
            times.split(", ").filter(|t| is_seconds(t)).count(),
            2,
            "{v}"
        );
    }
}

#[test]
fn combined_line_looks_like_nginx() {
    let live = backend();
    let dead = DeadPort::new();
    let (proxy, [port]) = Proxy::start_on(|[port]| config(port, live, dead.port));
    let r = http_request(
        port,
        "GET",
        "/combined/x",
        "example.test",
        &[("Referer", "http://r.test/"), ("User-Agent", "curl/8.5.0")],
        b"",
    )
    .expect("GET");
    assert_eq!(r.status, 200);
    let line = lines(&proxy.dir.join("logs/combined.log"), 1, &proxy).remove(0);
    // 127.0.0.1 - - [25/Nov/2026:16:31:53 +0000] "GET /combined/x HTTP/1.1" 200 29 "http://r.test/" "curl/8.5.0"
    let (head, rest) = line.split_once(" [").expect("[");
    assert_eq!(head, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").expect("]");
    assert_eq!(time.len(), 26, "{line}");
    assert_eq!(&time[2..3], "/");
    assert_eq!(&time[11..12], ":");
    assert_eq!(
        rest,
        format!(
            "\"GET /combined/x HTTP/1.1\" 200 {} \"http://r.test/\" \"curl/8.5.0\"",
            r.body.len()
        )
    );
    // The JSON log did not get this request.
    assert!(std::fs::read_to_string(proxy.dir.join("logs/json.log"))
        .unwrap_or_default()
        .is_empty());

    // A line logged just before a stop is in the file once the process has exited.
    let mut proxy = proxy;
    assert_eq!(
        http_get(port, "/combined/y", "example.test")
            .expect("GET")
            .status,
        200
    );
    proxy.stop();
    let text = std::fs::read_to_string(proxy.dir.join("logs/combined.log")).expect("read");
    assert!(text.contains("\"GET /combined/y HTTP/1.1\" 200"), "{text}");
}
