//! The rewrite module as users write it (certbot's `if ($host = ...)`, HTTP→HTTPS,
//! www→apex, trailing slashes, legacy paths, `rewrite ... last` into another location,
//! `if ($request_method = POST)`, `if (-f $request_filename)`, a `map` of user agents
//! used in `if`, `return` and `add_header`, `return 444`), each answer compared with
//! Debian's nginx on the same config when it is installed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A root with one file, for `-f`/`-d` and the static fallbacks.
fn tree() -> PathBuf {
    let dir = fresh_temp_dir("rewrite");
    fs::create_dir_all(dir.join("www/files/sub")).expect("mkdir");
    fs::write(dir.join("www/files/here.txt"), "here\n").expect("write");
    dir
}

fn conf(dir: &Path, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  map $http_user_agent $is_bot {{
    default 0;
    ~*(googlebot|bingbot) 1;
    "~*(?<crawler>[a-z]+)crawler" 2;
    curl/8.0 curl;
  }}
  map $host $site {{
    hostnames;
    default other;
    .apex.test apex;
    www.example.* example;
  }}
  # Django's advice: refuse requests for unknown hosts without an answer.
  server {{
    listen 127.0.0.1:{port} default_server;
    server_name _;
    return 444;
  }}
  # What certbot writes for the port-80 server.
  server {{
    if ($host = www.example.com) {{
      return 301 https://$host$request_uri;
    }}
    listen 127.0.0.1:{port};
    server_name www.example.com example.com;
    return 404;
  }}
  server {{
    listen 127.0.0.1:{port};
    server_name ~^(?<sub>[a-z]+)\.wild\.test$;
    return 200 "sub=$sub $1\n";
  }}
  server {{
    listen 127.0.0.1:{port};
    server_name http.example.com;
    return 301 https://$host$request_uri;
  }}
  server {{
    listen 127.0.0.1:{port};
    server_name www.apex.test;
    return 301 $scheme://apex.test$request_uri;
  }}
  server {{
    listen 127.0.0.1:{port};
    server_name apex.test;
    root {d}/www;
    rewrite ^/old/(.*)$ /new/$1 permanent;
    rewrite ^/ext/(.*)$ https://example.org/$1;
    set $server_level "srv";
    location /new/ {{ return 200 "new uri=$uri args=$args\n"; }}
    location /blog {{ rewrite ^([^.]*[^/])$ $1/ permanent; return 200 "blog $uri\n"; }}
    location /legacy/ {{ rewrite ^/legacy/(.*)$ /app/$1 last; }}
    location /app/ {{ return 200 "app uri=$uri args=$args $server_level\n"; }}
    location /api/ {{
      if ($request_method = POST) {{ return 405; }}
      if ($request_method !~ ^(GET|HEAD)$) {{ return 403; }}
      return 200 "api $request_method\n";
    }}
    location /files/ {{
      if (-f $request_filename) {{ return 200 "file $request_filename\n"; }}
      if (-d $request_filename) {{ return 200 "dir\n"; }}
      if (!-e $request_filename) {{ return 404; }}
    }}
    location /bot {{
      if ($is_bot = 1) {{ return 403; }}
      add_header X-Bot "$is_bot $site" always;
      return 200 "bot=$is_bot crawler=$crawler site=$site\n";
    }}
    location /loop {{ rewrite ^ /loop last; }}
    location = /drop {{ rewrite ^ /new/dropped? last; }}
    location = /addargs {{ rewrite ^ /new/added?b=2 last; }}
    location ~ ^/user/(?<name>[a-z]+)/(\d+)$ {{ return 200 "user $name $2\n"; }}
    location /close {{ return 444; }}
    location /set {{ set $a "x-$arg_v"; set $b "$a-y"; return 200 "$b\n"; }}
    location /rel {{ return 302 /new/rel; }}
    location /brk/ {{ rewrite ^/brk/(.*)$ /new/$1 break; return 200 "not reached\n"; }}
    location /ifloc {{
      if ($arg_x) {{ add_header X-If yes; }}
      return 200 "ifloc\n";
    }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// One request: method, path, Host, User-Agent.
type Case = (&'static str, &'static str, &'static str, &'static str);

const CASES: &[Case] = &[
    ("GET", "/", "unknown.test", "curl"),
    ("GET", "/x?a=1", "www.example.com", "curl"),
    // $host without the trailing dot and in lower case, as nginx makes it.
    ("GET", "/x?a=1", "WWW.Example.com.", "curl"),
    ("GET", "/x", "example.com", "curl"),
    ("GET", "/login/?next=/a", "http.example.com", "curl"),
    ("GET", "/", "shop.wild.test", "curl"),
    ("GET", "/p/q?z=1", "www.apex.test", "curl"),
    ("GET", "/old/a/b.html", "apex.test", "curl"),
    ("GET", "/old/a/b.html?q=1", "apex.test", "curl"),
    ("GET", "/old/a%20b", "apex.test", "curl"),
    ("GET", "/ext/p?z=3", "apex.test", "curl"),
    ("GET", "/blog/post", "apex.test", "curl"),
    ("GET", "/blog/post/", "apex.test", "curl"),
    ("GET", "/blog/post.html", "apex.test", "curl"),
    ("GET", "/legacy/page?x=1", "apex.test", "curl"),
    ("GET", "/api/items", "apex.test", "curl"),
    ("POST", "/api/items", "apex.test", "curl"),
    ("DELETE", "/api/items", "apex.test", "curl"),
    ("GET", "/files/here.txt", "apex.test", "curl"),
    ("GET", "/files/sub", "apex.test", "curl"),
    ("GET", "/files/missing.txt", "apex.test", "curl"),
    (
        "GET",
        "/bot",
        "apex.test",
        "Mozilla/5.0 (compatible; Googlebot/2.1)",
    ),
    ("GET", "/bot", "apex.test", "SuperCrawler/1.0"),
    ("GET", "/bot", "apex.test", "CURL/8.0"),
    ("GET", "/bot", "apex.test", "Firefox"),
    ("GET", "/loop", "apex.test", "curl"),
    ("GET", "/drop?q=1", "apex.test", "curl"),
    ("GET", "/addargs?q=1", "apex.test", "curl"),
    ("GET", "/user/alice/42", "apex.test", "curl"),
    ("GET", "/close", "apex.test", "curl"),
    ("GET", "/set?v=1", "apex.test", "curl"),
    ("GET", "/rel", "apex.test", "curl"),
    ("GET", "/brk/x", "apex.test", "curl"),
    ("GET", "/ifloc?x=1", "apex.test", "curl"),
    ("GET", "/ifloc", "apex.test", "curl"),
    ("HEAD", "/old/a", "apex.test", "curl"),
];

/// The parts of an answer both servers must agree on; `closed` for a connection
/// closed without a response (`return 444`).
fn facts(r: &std::io::Result<Response>, port: u16, dir: &Path) -> String {
    let r = match r {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return "closed".to_owned(),
        Err(e) => return format!("error: {e}"),
    };
    let h = |n: &str| r.header(n).unwrap_or("-").to_owned();
    let body = if r.status >= 300 {
        // Standard pages name the server; their heading must match.
        let text = r.text();
        match text.find("<h1>") {
            Some(i) => text[i..].lines().next().unwrap_or("").to_owned(),
            None => text,
        }
    } else {
        r.text()
    };
    format!(
        "{} location={} x-bot={} x-if={}\n{}",
        r.status,
        h("location").replace(&port.to_string(), "PORT"),
        h("x-bot"),
        h("x-if"),
        body.replace(&dir.display().to_string(), "DIR")
    )
}

#[test]
fn rewrite_answers_match_nginx() {
    let dir = tree();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| conf(&dir, p)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (method, path, host, agent) in CASES {
        let headers = [("User-Agent", *agent)];
        let ours = facts(
            &http_request(port, method, path, host, &headers, b""),
            port,
            &dir,
        );
        assert!(
            !ours.starts_with("error"),
            "{method} {path} ({host}): {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((nginx, [nport])) = &nginx {
            let theirs = facts(
                &http_request(*nport, method, path, host, &headers, b""),
                *nport,
                &dir,
            );
            assert!(
                !theirs.starts_with("error"),
                "nginx {method} {path}: {theirs}\n{}",
                nginx.diagnostics()
            );
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{method} {path} (Host: {host}, User-Agent: {agent})\n  ferrolb: {ours}\n  nginx:   {theirs}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The cycle is logged in nginx's words.
    let log = ferrolb.error_log();
    assert!(
        log.contains("rewrite or internal redirection cycle while processing \"/loop\""),
        "{log}"
    );
}

#[test]
fn refused_inside_if_with_a_reason() {
    let dir = fresh_temp_dir("rewrite-refused");
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        "events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n    location / {\n      if ($arg_x) {\n        proxy_set_header X y;\n      }\n    }\n  }\n}\n",
    )
    .expect("write");
    let out = check_config(&dir, &conf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("\"proxy_set_header\" directive is not allowed inside \"if\" in ")
            && err.contains("nginx.conf:7")
            && err.contains("hint:"),
        "{err}"
    );
}

/// A backend that answers every request with its request line and its `X-Who` header.
fn echo_backend() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = local_listener();
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(clone) = conn.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(clone);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut who = String::from("-");
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.strip_prefix("X-Who: ") {
                    who = v.trim().to_owned();
                }
            }
            let body = format!("{} who={who}\n", line.trim());
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn proxy_conf(backend: u16, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  map $http_user_agent $who {{ default human; ~*bot robot; }}
  server {{
    listen 127.0.0.1:{port};
    location /shop/ {{
      rewrite ^/shop/(.*)$ /store/$1 break;
      proxy_pass http://127.0.0.1:{backend};
    }}
    location /api/ {{
      set $tag "v1";
      proxy_set_header X-Who "$who-$tag";
      rewrite ^/api/old/(.*)$ /api/new/$1 break;
      proxy_pass http://127.0.0.1:{backend}/backend/;
    }}
    location /plain/ {{
      if ($arg_debug) {{ proxy_pass http://127.0.0.1:{backend}; }}
      return 204;
    }}
    # A later `if` without a handler keeps an earlier one's proxy_pass, with its own
    # settings, which have no upstream: 500, as nginx.
    location /ifs/ {{
      set $true 1;
      if ($true) {{ proxy_pass http://127.0.0.1:{backend}; }}
      if ($arg_second) {{ }}
    }}
  }}
}}
"#
    )
}

#[test]
fn rewritten_requests_reach_the_upstream_as_with_nginx() {
    let backend = echo_backend();
    let (ferrolb, [port]) = Proxy::start_on(|[p]| proxy_conf(backend, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p]| proxy_conf(backend, p)));
    let cases = [
        ("/shop/cart?item=3", "curl"),
        ("/shop/a%20b", "curl"),
        ("/api/old/x?y=1", "Googlebot"),
        ("/api/other", "curl"),
        ("/plain/p?debug=1", "curl"),
        ("/plain/p", "curl"),
        ("/ifs/a", "curl"),
        ("/ifs/a?second=1", "curl"),
    ];
    let mut mismatches = Vec::new();
    for (path, agent) in cases {
        let headers = [("User-Agent", agent)];
        let answer = |p: u16| {
            http_request(p, "GET", path, "localhost", &headers, b"")
                // Error pages name the server: the status is compared.
                .map(|r| match r.status {
                    400.. => r.status.to_string(),
                    _ => format!("{} {}", r.status, r.text()),
                })
                .unwrap_or_else(|e| format!("error: {e}"))
        };
        let ours = answer(port);
        assert!(
            !ours.starts_with("error"),
            "{path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((_, [nport])) = &nginx {
            let theirs = answer(*nport);
            if ours != theirs {
                mismatches.push(format!("{path}\n  ferrolb: {ours}  nginx:   {theirs}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "answers differ from nginx:\n{}",
        mismatches.join("\n")
    );
}
