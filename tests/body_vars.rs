//! Request-body and connection variables, run on the same config by ferrolb and
//! Debian's nginx (when it is installed) and compared answer by answer:
//! `client_body_buffer_size` deciding between `$request_body` and
//! `$request_body_file`, chunked bodies, `client_body_in_file_only on|clean` (the file
//! holds the body; `clean` removes it after the request), `$connection_requests`,
//! `proxy_pass` inside `limit_except`, `$pipe`, `$connection_time`, a request pipelined behind a body streamed with
//! `proxy_request_buffering off`, `$arg_`, `expires $arg_e`, `expires` on proxied and `return` responses, `keepalive_disable`,
//! and `$upstream_response_length` / `$upstream_bytes_*` in the access log.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn conf(dir: &Path, port: u16, back: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {d}/body_temp;
  log_format up '$uri $upstream_response_length $upstream_bytes_received $upstream_bytes_sent';
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {d}/html;
    add_header X-Conn "$connection_requests $pipe";
    location / {{
      client_body_buffer_size 2k;
      add_header X-Body "$request_body";
      add_header X-Body-File "$request_body_file";
      proxy_pass http://127.0.0.1:{back};
    }}
    location /unbuf {{
      proxy_request_buffering off;
      client_body_buffer_size 2k;
      add_header X-Body "$request_body";
      proxy_pass http://127.0.0.1:{back};
    }}
    location /on {{
      client_body_in_file_only on;
      add_header X-Body-File "$request_body_file";
      proxy_pass http://127.0.0.1:{back};
    }}
    location /clean {{
      client_body_in_file_only clean;
      client_body_in_single_buffer on;
      add_header X-Body-File "$request_body_file";
      proxy_pass http://127.0.0.1:{back};
    }}
    location /up {{
      access_log {d}/up.log up;
      proxy_pass http://127.0.0.1:{back}/data;
    }}
    location /lmt {{
      proxy_pass http://127.0.0.1:{back}/replacement;
      limit_except POST {{
        proxy_pass http://127.0.0.1:{back};
      }}
    }}
    location /exp {{
      expires epoch;
      proxy_pass http://127.0.0.1:{back}/cc;
    }}
    location /expmod {{
      expires modified 2048;
      proxy_pass http://127.0.0.1:{back}/cc;
    }}
    location /expret {{
      expires max;
      return 200 "r\n";
    }}
    location /arg {{
      return 200 "[$arg_l:$arg_]\n";
    }}
    location /time {{
      return 200 "$connection_time\n";
    }}
    location /var {{
      expires $arg_e;
    }}
    location /safari {{
      keepalive_disable safari;
      return 200 "s\n";
    }}
    location /ka {{
      return 200 "k\n";
    }}
  }}
  server {{
    listen 127.0.0.1:{back};
    location / {{ return 200 "TEST $uri\n"; }}
    location /data {{ return 200 "0123456789abcdef"; }}
    location /cc {{
      add_header Cache-Control a;
      add_header Cache-Control b;
      add_header Expires soon;
      add_header Last-Modified "Mon, 28 Sep 1970 06:00:00 GMT";
      return 200 "cc\n";
    }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// Writes `req` on a new connection and reads until the server closes it.
fn exchange(port: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(req).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A request with a Content-Length body; `close` asks to close after it.
fn with_body(path: &str, body: &str, close: bool) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

/// The values of field `name` in every response of `text`, in order.
fn fields(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .collect()
}

/// What the two servers must agree on for one exchange: statuses, `X-Body`, whether
/// `X-Body-File` named a file, `X-Conn`, `Connection`, `Expires` presence and the
/// bodies' first lines.
fn facts(text: &str) -> String {
    let statuses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("HTTP/1."))
        .map(|l| l.get(9..12).unwrap_or(""))
        .collect();
    let files: Vec<bool> = fields(text, "x-body-file")
        .iter()
        .map(|f| !f.is_empty())
        .collect();
    let expires: Vec<String> = fields(text, "expires")
        .iter()
        .map(|e| e.rsplit(' ').nth(1).unwrap_or("").to_owned())
        .collect();
    format!(
        "status={statuses:?} body={:?} file={files:?} conn={:?} connection={:?} cache={:?} expires={expires:?} text={:?}",
        fields(text, "x-body"),
        fields(text, "x-conn"),
        fields(text, "connection"),
        fields(text, "cache-control"),
        text.split("\r\n\r\n").nth(1).and_then(|b| b.lines().next()).unwrap_or(""),
    )
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let small = "0123456789";
    let big = "0123456789".repeat(512);
    let chunked = b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n".to_vec();
    vec![
        ("small body in memory", with_body("/", small, true).into_bytes()),
        ("body over the buffer in a file", with_body("/", &big, true).into_bytes()),
        ("chunked body decoded", chunked),
        (
            "pipelined bodies",
            [
                with_body("/", small, false),
                with_body("/", &big, false),
                with_body("/", "foobar", true),
            ]
            .concat()
            .into_bytes(),
        ),
        (
            "pipelined behind a streamed body",
            [
                with_body("/unbuf", small, false),
                with_body("/unbuf", &big, false),
                with_body("/unbuf", "foobar", true),
            ]
            .concat()
            .into_bytes(),
        ),
        (
            "limit_except proxy_pass for a restricted method",
            b"GET /lmt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "limit_except: an allowed method keeps the location's proxy_pass",
            with_body("/lmt", "x", true).into_bytes(),
        ),
        (
            "expires epoch replaces a proxied response's fields",
            b"GET /exp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "expires modified counts from the upstream's Last-Modified",
            b"GET /expmod HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "expires on a return",
            b"GET /expret HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "$arg_ is empty",
            b"GET /arg?l=42 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "expires var max",
            b"GET /var/f?e=max HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "expires var seconds",
            b"GET /var/f?e=2048 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "expires var negative",
            b"GET /var/f?e=-5 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "expires var bad",
            b"GET /var/f?e=bad HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "expires var off",
            b"GET /var/f?e=off HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "keepalive_disable msie6 POST",
            b"POST /ka HTTP/1.1\r\nHost: localhost\r\nUser-Agent: MSIE 5.0\r\nContent-Length: 0\r\n\r\nGET /ka HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "keepalive_disable msie6 GET",
            b"GET /ka HTTP/1.1\r\nHost: localhost\r\nUser-Agent: MSIE 6.0; SV2\r\n\r\nGET /ka HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "keepalive_disable safari",
            b"GET /safari HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mac OS X Safari/7534.48.3\r\n\r\nGET /ka HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "keepalive_disable safari not Chrome",
            b"GET /safari HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mac OS X Chrome/1 Safari/7534.48.3\r\n\r\nGET /ka HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
        ),
    ]
}

/// Sets up the prefix: a static file for `expires`.
fn prepare(dir: &Path) {
    fs::create_dir_all(dir.join("html/var")).expect("html dir");
    fs::write(dir.join("html/var/f"), "file\n").expect("file");
}

/// The `X-Body-File` of a response, when it names one.
fn body_file(text: &str) -> Option<PathBuf> {
    fields(text, "x-body-file")
        .into_iter()
        .find(|f| !f.is_empty())
        .map(PathBuf::from)
}

/// Checks what one server does with `client_body_in_file_only` and the access log's
/// `$upstream_*` byte counts, and the value shapes of `$connection_time`; returns
/// the log line for `/up`.
fn files_and_counts(name: &str, dir: &Path, port: u16) -> String {
    let big = "0123456789".repeat(512);
    let r = exchange(port, with_body("/", &big, true).as_bytes());
    let unlinked = body_file(&r).unwrap_or_else(|| panic!("{name}: no file named: {r}"));
    assert!(unlinked.starts_with(dir.join("body_temp")), "{name}: {r}");
    assert!(
        !unlinked.exists(),
        "{name}: a default body file is unlinked at once"
    );

    let r = exchange(port, with_body("/on", "kept body", true).as_bytes());
    let kept = body_file(&r).unwrap_or_else(|| panic!("{name}: no file named: {r}"));
    assert_eq!(
        fs::read_to_string(&kept).unwrap_or_default(),
        "kept body",
        "{name}: client_body_in_file_only on keeps the body in its file"
    );

    let r = exchange(port, with_body("/clean", "clean body", true).as_bytes());
    let cleaned = body_file(&r).unwrap_or_else(|| panic!("{name}: no file named: {r}"));
    wait_until(
        Duration::from_secs(5),
        "the clean body file removed",
        || (!cleaned.exists()).then_some(()),
    );

    let r = exchange(
        port,
        b"GET /time HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let t = r.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_owned();
    let (s, ms) = t.split_once('.').unwrap_or(("", ""));
    assert!(
        s.parse::<u64>().is_ok() && ms.len() == 3 && ms.parse::<u32>().is_ok(),
        "{name}: $connection_time {t:?}"
    );

    exchange(
        port,
        b"GET /up HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    wait_until(Duration::from_secs(5), "the /up log line", || {
        let log = fs::read_to_string(dir.join("up.log")).ok()?;
        log.lines().next().map(str::to_owned)
    })
}

#[test]
fn body_and_connection_variables_match_nginx() {
    let dir = fresh_temp_dir("body-vars");
    prepare(&dir);
    let ndir = fresh_temp_dir("body-vars-nginx");
    prepare(&ndir);
    let (ferrolb, [port, _]) = Proxy::start_on(|[p, b]| conf(&dir, p, b));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, b]| conf(&ndir, p, b)));

    for (what, req) in cases() {
        let ours = facts(&exchange(port, &req));
        if let Some((nginx, [nport, _])) = &nginx {
            let theirs = facts(&exchange(*nport, &req));
            assert_eq!(
                ours,
                theirs,
                "{what}\n  ferrolb: {ours}\n  nginx:   {theirs}\n{}",
                nginx.diagnostics()
            );
        }
    }

    let line = files_and_counts("ferrolb", &dir, port);
    // 16 body bytes; the response head and the request head are counted too.
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.first(), Some(&"/up"), "{line}");
    assert_eq!(parts.get(1), Some(&"16"), "{line}");
    let received: u64 = parts.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let sent: u64 = parts.get(3).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(received > 16 && sent > 0, "{line}");
    if let Some((_, [nport, _])) = &nginx {
        let theirs = files_and_counts("nginx", &ndir, *nport);
        // The heads differ (Server, Date); the body length does not.
        assert_eq!(
            theirs.split(' ').nth(1),
            Some("16"),
            "nginx's log line: {theirs}"
        );
    }
    drop(ferrolb);
}
