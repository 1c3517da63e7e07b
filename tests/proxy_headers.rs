//! The proxy's header and request controls, run on the same config by ferrolb and
//! Debian's nginx and compared: `proxy_redirect` (default, off, pairs, regexes) on
//! `Location` and `Refresh`, `proxy_cookie_domain`/`_path`/`_flags` on `Set-Cookie`,
//! `proxy_method`, `proxy_set_body` with `$request_body`,
//! `proxy_pass_request_headers`/`_body`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use common::*;

/// A backend that answers every request with a redirect that names itself, two
/// cookies, and a body echoing the request line, the fields that say something
/// about the proxy's controls (never `Host` or `Connection`, which differ by design)
/// and the body.
fn backend() -> u16 {
    head_backend(|up, req| {
        let mut echo = format!("{}\n", req.line);
        for (n, v) in &req.fields {
            if [
                "content-length",
                "transfer-encoding",
                "x-test",
                "content-type",
            ]
            .contains(&n.as_str())
            {
                echo.push_str(&format!("{n}: {v}\n"));
            }
        }
        echo.push_str(&format!("body={}\n", String::from_utf8_lossy(&req.body)));
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{up}/app/x?y=1\r\nRefresh: 5; url=http://127.0.0.1:{up}/app/r\r\nSet-Cookie: id=1; Domain=.example.com; Path=/app/sub; HttpOnly\r\nSet-Cookie: other=2; path=/app/; secure\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
            echo.len()
        )
    })
}

/// A request as [`head_backend`] read it.
struct Seen {
    /// The request line, trimmed.
    line: String,
    /// The fields, names lower case, values trimmed.
    fields: Vec<(String, String)>,
    /// The body (by its Content-Length).
    body: Vec<u8>,
    /// The address the connection came from.
    peer: String,
}

/// A backend on a free port that reads each request whole and writes what `answer`
/// makes of it (given the backend's own port), one request a connection.
fn head_backend(answer: impl Fn(u16, &Seen) -> String + Send + Sync + 'static) -> u16 {
    let listener: TcpListener = local_listener();
    let up = listener.local_addr().expect("addr").port();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answer = std::sync::Arc::clone(&answer);
            std::thread::spawn(move || {
                let peer = conn
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let Ok(clone) = conn.try_clone() else { return };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut fields = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        fields.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let length = fields
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let seen = Seen {
                    line: line.trim().to_owned(),
                    fields,
                    body,
                    peer,
                };
                let _ = conn.write_all(answer(up, &seen).as_bytes());
            });
        }
    });
    up
}

fn conf(port: u16, up: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location /front/ {{ proxy_pass http://127.0.0.1:{up}/app/; }}
    location /nouri/ {{ proxy_pass http://127.0.0.1:{up}; }}
    location /off/ {{ proxy_redirect off; proxy_pass http://127.0.0.1:{up}/app/; }}
    location /pair/ {{
      proxy_pass http://127.0.0.1:{up}/app/;
      proxy_redirect http://127.0.0.1:{up}/app/r /refreshed;
      proxy_redirect default;
    }}
    location /re/ {{
      proxy_redirect ~^http://([^/]+)/APP/(.*)$ http://$host/nomatch/$2;
      proxy_redirect ~*^http://([^/]+)/APP/(.*)$ http://$host/re/$2&from=$1;
      proxy_pass http://127.0.0.1:{up}/app/;
    }}
    location /cookie/ {{
      proxy_cookie_domain .example.com www.$host;
      proxy_cookie_path /app/ /cookie/;
      proxy_cookie_flags id secure samesite=strict;
      proxy_cookie_flags ~ nosecure nohttponly;
      proxy_pass http://127.0.0.1:{up}/app/;
    }}
    location /cookie-re/ {{
      proxy_cookie_path ~^/app/(.*)$ /$1/under;
      proxy_cookie_domain ~^\.?example\.(.*)$ other.$1;
      proxy_pass http://127.0.0.1:{up}/app/;
    }}
    location /method {{ proxy_method PUT; proxy_pass http://127.0.0.1:{up}; }}
    location /setbody {{ proxy_set_body "a=$arg_a&body=$request_body"; proxy_pass http://127.0.0.1:{up}; }}
    location /nobody {{
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_pass http://127.0.0.1:{up};
    }}
    location /noheaders {{ proxy_pass_request_headers off; proxy_pass http://127.0.0.1:{up}; }}
  }}
}}
"#
    )
}

/// The requests compared: method, path, body.
const REQUESTS: [(&str, &str, &str); 11] = [
    ("GET", "/front/a", ""),
    ("GET", "/nouri/a", ""),
    ("GET", "/off/a", ""),
    ("GET", "/pair/a", ""),
    ("GET", "/re/a", ""),
    ("GET", "/cookie/a", ""),
    ("GET", "/cookie-re/a", ""),
    ("POST", "/method", "m=1"),
    ("POST", "/setbody?a=1", "hello"),
    ("POST", "/nobody", "dropped"),
    ("POST", "/noheaders", "kept"),
];

/// What the client got that the controls decide, the proxy's port as `PORT`.
fn answer(port: u16, method: &str, path: &str, body: &str) -> String {
    let r = http_request(
        port,
        method,
        path,
        "localhost",
        &[("X-Test", "t"), ("Content-Type", "text/plain")],
        body.as_bytes(),
    )
    .expect("answer");
    let mut out = format!("{} {method} {path}\n", r.status);
    for (n, v) in &r.headers {
        let n = n.to_ascii_lowercase();
        if ["location", "refresh", "set-cookie"].contains(&n.as_str()) {
            out.push_str(&format!("{n}: {v}\n"));
        }
    }
    out.push_str(&r.text());
    out.replace(&format!(":{port}/"), ":PORT/")
}

#[test]
fn header_and_request_controls_match_nginx() {
    let up = backend();
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(p, up));
    let ours: Vec<String> = REQUESTS
        .iter()
        .map(|(m, p, b)| answer(port, m, p, b))
        .collect();
    let u = up;
    let expect = |i: usize, needles: &[String]| {
        for n in needles {
            assert!(ours[i].contains(n.as_str()), "{n:?} not in\n{}", ours[i]);
        }
    };
    expect(
        0,
        &[
            "location: http://localhost:PORT/front/x?y=1".into(),
            "refresh: 5; url=/front/r".into(),
        ],
    );
    expect(1, &["location: http://localhost:PORT/app/x?y=1".into()]);
    expect(2, &[format!("location: http://127.0.0.1:{u}/app/x?y=1")]);
    expect(
        3,
        &[
            "location: http://localhost:PORT/pair/x?y=1".into(),
            "refresh: 5; url=/refreshed".into(),
        ],
    );
    expect(
        4,
        &[format!(
            "location: http://localhost/re/x?y=1&from=127.0.0.1:{u}"
        )],
    );
    expect(
        5,
        &[
            "set-cookie: id=1; Domain=.www.localhost; Path=/cookie/sub; HttpOnly; Secure; SameSite=Strict".into(),
            "set-cookie: other=2; path=/cookie/\n".into(),
        ],
    );
    expect(
        6,
        &["set-cookie: id=1; Domain=other.com; Path=/sub/under; HttpOnly".into()],
    );
    expect(7, &["PUT /method HTTP/1.0".into(), "body=m=1".into()]);
    expect(
        8,
        &[
            "POST /setbody?a=1".into(),
            "content-length: 14".into(),
            "body=a=1&body=hello".into(),
        ],
    );
    expect(9, &["POST /nobody".into(), "body=\n".into()]);
    expect(10, &["content-length: 4".into(), "body=kept".into()]);
    assert!(!ours[10].contains("x-test"), "{}", ours[10]);

    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) = Proxy::start_bin_on(nginx_bin, |[p]| conf(p, up));
        for (i, (m, p, b)) in REQUESTS.iter().enumerate() {
            assert_eq!(ours[i], answer(np, m, p, b), "{m} {p}");
        }
    }
}

#[test]
fn bad_header_controls_are_refused_with_their_place() {
    for (directive, says) in [
        (
            "proxy_redirect default;",
            "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
        ),
        (
            "location /a { proxy_redirect default; proxy_pass http://127.0.0.1:2; }",
            "should be placed after",
        ),
        (
            "proxy_redirect off; proxy_redirect / /x;",
            "\"proxy_redirect\" directive is duplicate",
        ),
        (
            "proxy_cookie_flags id secure bogus;",
            "invalid flag \"bogus\"",
        ),
        ("more_set_headers 'X-A: b';", "add_header"),
        (
            "proxy_ignore_headers X-Nothing;",
            "invalid value \"X-Nothing\"",
        ),
    ] {
        let dir = fresh_temp_dir("proxy-headers-bad");
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:1;\n    {directive}\n    location / {{ return 200; }}\n  }}\n}}\n"
            ),
        )
        .expect("write conf");
        let out = check_config(&dir, &conf);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{directive} accepted");
        assert!(text.contains(says), "{directive}: {text}");
        assert!(text.contains("nginx.conf:5"), "{directive}: {text}");
    }
}

/// A backend that answers with `X-Accel-Redirect` set to the raw value of the
/// request's `to=` argument, with fields nginx keeps through the redirect and one it
/// drops.
fn accel_backend() -> u16 {
    scripted_backend(|req, _, conn| {
        let target = req
            .path()
            .split_once("to=")
            .map_or("", |(_, v)| v)
            .to_owned();
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nX-Accel-Redirect: {target}\r\nContent-Type: text/blah\r\nSet-Cookie: s=1\r\nX-Other: dropped\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndrop"
        );
    })
}

fn accel_conf(port: u16, up: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location /xar {{ proxy_pass http://127.0.0.1:{up}; }}
    location /ign {{ proxy_ignore_headers X-Accel-Redirect; proxy_pass http://127.0.0.1:{up}; }}
    location /files/ {{
      return 200 "files uri=$uri args=$args method=$request_method xar=$upstream_http_x_accel_redirect\n";
    }}
    location @named {{ return 200 "named uri=$uri method=$request_method\n"; }}
  }}
}}
"#
    )
}

const ACCEL_REQUESTS: [(&str, &str); 7] = [
    ("GET", "/xar?to=/files/a%20b?x=1"),
    ("POST", "/xar?to=/files/p"),
    ("HEAD", "/xar?to=/files/h"),
    ("GET", "/xar?to=@named"),
    ("GET", "/xar?to=/files/../etc"),
    ("GET", "/xar?to=/files/.%2e/etc"),
    ("GET", "/ign?to=/files/a"),
];

/// Status, the fields a redirect keeps or drops, and the body.
fn accel_answer(port: u16, method: &str, path: &str) -> String {
    let r = http_request(
        port,
        method,
        path,
        "localhost",
        &[],
        if method == "POST" { b"body" } else { b"" },
    )
    .expect("answer");
    let mut out = format!("{} {method} {path}\n", r.status);
    for (n, v) in &r.headers {
        let n = n.to_ascii_lowercase();
        if ["content-type", "set-cookie", "x-other", "x-accel-redirect"].contains(&n.as_str()) {
            out.push_str(&format!("{n}: {v}\n"));
        }
    }
    if r.status == 200 {
        out.push_str(&r.text());
    }
    out
}

#[test]
fn x_accel_redirect_as_nginx() {
    let up = accel_backend();
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| accel_conf(p, up));
    let ours: Vec<String> = ACCEL_REQUESTS
        .iter()
        .map(|(m, p)| accel_answer(port, m, p))
        .collect();
    assert!(
        ours[0].contains("files uri=/files/a b args=x=1 method=GET xar=/files/a%20b?x=1"),
        "{}",
        ours[0]
    );
    assert!(
        ours[0].contains("set-cookie: s=1") && !ours[0].contains("x-other"),
        "{}",
        ours[0]
    );
    assert!(ours[1].contains("method=GET"), "{}", ours[1]);
    assert!(ours[3].contains("named uri=/xar method=GET"), "{}", ours[3]);
    assert!(ours[4].starts_with("404"), "{}", ours[4]);
    assert!(ours[5].starts_with("404"), "{}", ours[5]);
    assert!(
        ours[6].contains("drop") && !ours[6].contains("x-accel-redirect"),
        "{}",
        ours[6]
    );
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) = Proxy::start_bin_on(nginx_bin, |[p]| accel_conf(p, up));
        for (i, (m, p)) in ACCEL_REQUESTS.iter().enumerate() {
            assert_eq!(ours[i], accel_answer(np, m, p), "{m} {p}");
        }
    }
}

fn always_conf(port: u16, dead: u16, up: u16, root: &str) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    add_header X-Always a always;
    add_header X-Success b;
    location /ret {{ return 403; }}
    location /text {{ return 200 "x"; }}
    location /redir {{ return 301 /x; }}
    location /dead {{ proxy_pass http://127.0.0.1:{dead}; }}
    location /up {{ proxy_pass http://127.0.0.1:{up}; }}
    location /paged {{ error_page 404 /page.html; }}
  }}
}}
"#
    )
}

/// `add_header` on answers and error pages: `always` lines on every status, others
/// only on nginx's list (200, 201, 204, 206, 301, 302, 303, 304, 307, 308).
#[test]
fn add_header_always_on_error_pages_as_nginx() {
    let dead = DeadPort::new();
    let up = accel_backend();
    let dir = fresh_temp_dir("proxy-headers-always");
    std::fs::write(dir.join("page.html"), "page\n").expect("page");
    let root = dir.display().to_string();
    let paths = [
        "/missing",
        "/ret",
        "/text",
        "/redir",
        "/dead",
        "/up?to=",
        "/paged/none",
    ];
    let fields = |port: u16| -> Vec<String> {
        paths
            .iter()
            .map(|p| {
                let r = http_get(port, p, "localhost").expect("answer");
                let mut names: Vec<String> = r
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        n.to_ascii_lowercase().starts_with("x-always")
                            || n.eq_ignore_ascii_case("x-success")
                    })
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                names.sort();
                format!("{} {p} {}", r.status, names.join(" "))
            })
            .collect()
    };
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| always_conf(p, dead.port, up, &root));
    let ours = fields(port);
    assert_eq!(ours[1], "403 /ret X-Always=a");
    assert_eq!(ours[2], "200 /text X-Always=a X-Success=b");
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) =
            Proxy::start_bin_on(nginx_bin, |[p]| always_conf(p, dead.port, up, &root));
        assert_eq!(ours, fields(np));
    }
}

/// A backend that answers with the address the connection came from, and
/// `X-Accel-Limit-Rate` with 40000 bytes when asked (`/rated`), else 40000 bytes.
fn peer_backend() -> u16 {
    head_backend(|_, req| {
        let body = if req.line.contains("/rated") || req.line.contains("/slow") {
            "X".repeat(40000)
        } else {
            req.peer.clone()
        };
        let rate = if req.line.contains("/rated") {
            "X-Accel-Limit-Rate: 20000\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 200 OK\r\n{rate}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
}

fn bind_conf(port: u16, up: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    proxy_bind 127.0.0.2;
    location /inherit {{ proxy_pass http://127.0.0.1:{up}; }}
    location /off {{ proxy_bind off; proxy_pass http://127.0.0.1:{up}; }}
    location /var {{ proxy_bind $arg_b; proxy_pass http://127.0.0.1:{up}; }}
    location /rated {{ proxy_pass http://127.0.0.1:{up}; }}
    location /slow {{ proxy_limit_rate 20000; proxy_pass http://127.0.0.1:{up}; }}
    location /fast {{ proxy_limit_rate 0; proxy_pass http://127.0.0.1:{up}/slow; }}
  }}
}}
"#
    )
}

/// `proxy_bind` gives the upstream connection's local address (inherited, `off`,
/// from variables, a bad value ignored); `proxy_limit_rate` and the upstream's
/// `X-Accel-Limit-Rate` pace a 40000-byte response at 20000 bytes a second (a
/// second's worth at once, so at least a second), unpaced it comes at once.
#[test]
fn proxy_bind_and_rates() {
    let up = peer_backend();
    let paths = [
        "/inherit",
        "/off",
        "/var?b=127.0.0.3",
        "/var?b=",
        "/var?b=nonsense",
    ];
    let peers = |port: u16| -> Vec<String> {
        paths
            .iter()
            .map(|p| http_get(port, p, "localhost").expect("answer").text())
            .collect()
    };
    let (ferrolb, [port]) = Proxy::start_on(|[p]| bind_conf(p, up));
    let ours = peers(port);
    assert_eq!(
        ours,
        [
            "127.0.0.2",
            "127.0.0.1",
            "127.0.0.3",
            "127.0.0.1",
            "127.0.0.1"
        ]
    );
    assert!(ferrolb
        .error_log()
        .contains("invalid local address \"nonsense\""));
    for (path, paced) in [("/rated", true), ("/slow", true), ("/fast", false)] {
        let t = std::time::Instant::now();
        let r = http_get(port, path, "localhost").expect("answer");
        assert_eq!(r.body.len(), 40000, "{path}");
        let took = t.elapsed();
        if paced {
            assert!(
                took >= std::time::Duration::from_millis(900),
                "{path}: {took:?}"
            );
        } else {
            assert!(
                took < std::time::Duration::from_millis(900),
                "{path}: {took:?}"
            );
        }
    }
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) = Proxy::start_bin_on(nginx_bin, |[p]| bind_conf(p, up));
        assert_eq!(ours, peers(np));
    }
}
