//! `geo` and `split_clients`, run on the same config by ferrolb and Debian's nginx
//! (when it is installed) and compared answer by answer: networks (IPv4, IPv6,
//! longest prefix, `delete`, `include`, `default`), `ranges`, a source variable,
//! `proxy`/`proxy_recursive` with `X-Forwarded-For`, Unix-socket clients, the values
//! used in `return`, `if`, `map`, `add_header` and `proxy_set_header`; and the
//! `split_clients` bucket of 200+ keys.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn conf(dir: &Path, port: u16, echo: u16, echo2: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  geo $g_client {{
    default none;
    127.0.0.0/8 loopback;
    127.0.0.2 two;
    255.255.255.255 unixsock;
  }}
  geo $arg_ip $g_arg {{
    default def;
    10.0.0.0/8 ten;
    10.1.0.0/16 ten-one;
    10.1.2.0/24 ten-one-two;
    delete 10.1.0.0/16;
    192.168.0.0/16 lan;
    2001:db8::/32 doc6;
    2001:db8:1::/48 doc6-1;
    include {d}/geo.inc;
  }}
  geo $arg_ip $g_ranges {{
    ranges;
    default out;
    10.0.0.0-10.0.0.255 r1;
    10.0.0.10-10.0.0.20 r2;
    10.0.0.30-10.0.0.40 r3;
    delete 10.0.0.30-10.0.0.40;
    10.1.0.0-10.1.255.255 w1;
    10.2.0.0-10.2.255.255 w2;
    10.1.128.0-10.2.0.255 across;
    255.255.255.0-255.255.255.254 top;
  }}
  geo $g_proxy {{
    proxy 127.0.0.1;
    proxy 10.0.0.0/8;
    default none;
    1.1.1.0/24 one;
    2.2.2.0/24 two;
    10.0.0.0/8 ten;
    127.0.0.0/8 loop;
    2001:db8::/32 doc6;
  }}
  geo $g_rec {{
    proxy_recursive;
    proxy 127.0.0.1;
    proxy 10.0.0.0/8;
    default none;
    1.1.1.0/24 one;
    2.2.2.0/24 two;
    10.0.0.0/8 ten;
    127.0.0.0/8 loop;
  }}
  geo $arg_ip $g_arg_proxy {{
    proxy 10.0.0.0/8;
    default none;
    3.3.3.3 three;
    10.0.0.0/8 ten;
  }}
  geo $arg_ip $g_hash {{
    default d;
    10.0.0.0/8 ten;
    192.168.0.0/16 lan;
    172.16.0.0/12 private;
    1.0.0.0/8 one;
    2.0.0.0/8 two;
  }}
  upstream hashy {{
    hash $g_hash;
    server 127.0.0.1:{echo};
    server 127.0.0.1:{echo2};
  }}
  geo $g_empty {{
    10.0.0.0/8 ten;
  }}
  map $g_arg $m {{
    ten-one-two deep;
    default "m-$g_arg";
  }}
  split_clients "${{arg_k}}" $bucket {{
    0.5% tiny;
    20% b;
    33.33% c;
    * rest;
  }}
  split_clients "${{arg_k}}-$g_client" $partial {{
    10% a;
    15.5% b;
  }}
  log_format geo '$request_uri $g_arg $g_ranges $bucket $m';
  server {{
    listen 127.0.0.1:{port};
    listen unix:{d}/{port}.sock;
    access_log {d}/{port}-geo.log geo;
    location / {{
      return 200 "client=$g_client arg=$g_arg ranges=$g_ranges proxy=$g_proxy rec=$g_rec ap=$g_arg_proxy empty=[$g_empty] m=$m\n";
    }}
    location /hdr {{
      add_header X-Geo "$g_arg/$g_ranges";
      return 200 "hdr\n";
    }}
    location /if {{
      if ($g_arg = lan) {{ return 403; }}
      return 200 "not lan\n";
    }}
    location /up {{
      proxy_set_header X-Geo "$g_arg $bucket";
      proxy_pass http://127.0.0.1:{echo}/echo;
    }}
    location /cache {{
      set $first "$g_arg/$bucket";
      rewrite ^ /cached?ip=10.1.2.3&k=other last;
    }}
    location /cached {{
      return 200 "first=$first now=$g_arg/$bucket\n";
    }}
    location /hash {{
      proxy_pass http://hashy/who;
    }}
    location /split {{
      return 200 "$bucket|$partial\n";
    }}
  }}
  server {{
    listen 127.0.0.1:{echo};
    location /echo {{ return 200 "echo $http_x_geo\n"; }}
    location /who {{ return 200 "first peer\n"; }}
  }}
  server {{
    listen 127.0.0.1:{echo2};
    location /who {{ return 200 "second peer\n"; }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// The answer's parts both servers must agree on.
fn facts(r: &std::io::Result<Response>) -> String {
    match r {
        Ok(r) => {
            let body = page_heading_or_body(r.text());
            format!(
                "{} x-geo={} {body}",
                r.status,
                r.header("x-geo").unwrap_or("-")
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

/// One request over a Unix socket: the response body.
fn body_over_unix(path: &Path, target: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(path).expect("connect to the unix listener");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map_or(out.clone(), |(_, b)| b.to_owned())
}

/// (path, X-Forwarded-For lines).
type Case = (&'static str, &'static [&'static str]);

const GEO_CASES: &[Case] = &[
    ("/", &[]),
    ("/?ip=10.9.9.9", &[]),
    ("/?ip=10.1.5.5", &[]),
    ("/?ip=10.1.2.3", &[]),
    ("/?ip=192.168.7.7", &[]),
    ("/?ip=172.16.0.1", &[]),
    ("/?ip=172.16.5.5", &[]),
    ("/?ip=2001:db8::5", &[]),
    ("/?ip=2001:db8:1::5", &[]),
    ("/?ip=::ffff:10.1.2.3", &[]),
    ("/?ip=2001:db9::1", &[]),
    ("/?ip=not-an-address", &[]),
    ("/?ip=10.0.0.5", &[]),
    ("/?ip=10.0.0.15", &[]),
    ("/?ip=10.0.0.35", &[]),
    ("/?ip=10.1.0.1", &[]),
    ("/?ip=10.1.200.1", &[]),
    ("/?ip=10.2.0.7", &[]),
    ("/?ip=10.2.1.7", &[]),
    ("/?ip=255.255.255.255", &[]),
    ("/?ip=255.255.255.7", &[]),
    ("/?ip=1.2.3.4:80", &[]),
    ("/", &["1.1.1.1"]),
    ("/", &["1.1.1.1, 2.2.2.2"]),
    ("/", &["2.2.2.2, 10.0.0.1"]),
    ("/", &["2.2.2.2, 10.0.0.1, 10.0.0.2"]),
    ("/", &["1.1.1.1", "10.0.0.3"]),
    ("/", &["1.1.1.1", "2.2.2.2, 10.0.0.3"]),
    ("/", &["junk, 10.0.0.3"]),
    ("/", &["2.2.2.2,10.0.0.3,  "]),
    ("/", &["[2001:db8::7]:443"]),
    ("/", &["1.1.1.1:8080"]),
    ("/", &["bogus"]),
    ("/?ip=10.0.0.9", &["3.3.3.3"]),
    ("/?ip=3.3.3.3", &["10.0.0.9"]),
    ("/hdr?ip=10.1.2.3", &[]),
    ("/hdr?ip=10.0.0.15", &[]),
    ("/if?ip=192.168.1.1", &[]),
    ("/if?ip=10.1.1.1", &[]),
    ("/up?ip=192.168.1.1&k=abc", &[]),
    ("/up?ip=2001:db8:1::1&k=zz", &[]),
    ("/cache?ip=192.168.1.1&k=abc", &[]),
    ("/hash?ip=10.1.1.1", &[]),
    ("/hash?ip=192.168.1.1", &[]),
    ("/hash?ip=172.16.0.1", &[]),
    ("/hash?ip=1.1.1.1", &[]),
    ("/hash?ip=2.2.2.2", &[]),
    ("/hash?ip=8.8.8.8", &[]),
];

#[test]
fn geo_answers_match_nginx() {
    let dir = fresh_temp_dir("geo");
    fs::write(
        dir.join("geo.inc"),
        "172.16.0.0/12 private;\n172.16.5.0/24 five;\n",
    )
    .expect("write the include");
    let (ferrolb, [port, _, _]) = Proxy::start_on(|[p, e, e2]| conf(&dir, p, e, e2));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, e, e2]| conf(&dir, p, e, e2)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut peers = std::collections::BTreeSet::new();
    for (path, xff) in GEO_CASES {
        let headers: Vec<(&str, &str)> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
        let ours = facts(&http_request(port, "GET", path, "localhost", &headers, b""));
        assert!(
            !ours.starts_with("error"),
            "{path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if path.starts_with("/hash") {
            peers.insert(ours.clone());
        }
        if let Some((nginx, [nport, _, _])) = &nginx {
            let theirs = facts(&http_request(
                *nport,
                "GET",
                path,
                "localhost",
                &headers,
                b"",
            ));
            assert!(
                !theirs.starts_with("error"),
                "nginx {path}: {theirs}\n{}",
                nginx.diagnostics()
            );
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{path} {xff:?}\n  ferrolb: {ours}\n  nginx:   {theirs}"
                ));
            }
        }
    }
    // A Unix-socket client is looked up as 255.255.255.255, as nginx does.
    let ours = body_over_unix(&dir.join(format!("{port}.sock")), "/?ip=10.0.0.15");
    assert!(ours.starts_with("client=unixsock "), "{ours}");
    if let Some((_, [nport, _, _])) = &nginx {
        let theirs = body_over_unix(&dir.join(format!("{nport}.sock")), "/?ip=10.0.0.15");
        compared += 1;
        if ours != theirs {
            mismatches.push(format!(
                "unix socket\n  ferrolb: {ours}\n  nginx:   {theirs}"
            ));
        }
    }
    // `hash $g_hash` spreads the geo values over both peers.
    assert_eq!(peers.len(), 2, "{peers:?}");
    // The same values in the access log lines.
    let log_lines = |port: u16| {
        wait_until(
            std::time::Duration::from_secs(10),
            "the access log lines",
            || {
                let text = fs::read_to_string(dir.join(format!("{port}-geo.log"))).ok()?;
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                (lines.len() > GEO_CASES.len()).then_some(lines)
            },
        )
    };
    let ours = log_lines(port);
    assert!(
        ours.iter()
            .any(|l| l == "/?ip=10.1.2.3 ten-one-two w1 tiny deep"),
        "{ours:?}"
    );
    if let Some((_, [nport, _, _])) = &nginx {
        let theirs = log_lines(*nport);
        compared += ours.len();
        if ours != theirs {
            mismatches.push(format!(
                "log lines
  ferrolb: {ours:?}
  nginx:   {theirs:?}"
            ));
        }
    }
    // A value is found once and kept for the request, as nginx keeps it: after the
    // rewrite gives other arguments, `$g_arg` and `$bucket` stay what they were.
    let kept = http_get(port, "/cache?ip=192.168.1.1&k=abc", "localhost")
        .expect("request")
        .text();
    assert_eq!(kept, "first=lan/b now=lan/b\n");
    eprintln!("geo: {compared} answers and log lines compared with nginx");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Keys of every length from 0 to 12 bytes (MurmurHash2 reads 4 at a time, then the
/// tail), and 200 `kN` keys.
fn split_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..=12).map(|n| "x".repeat(n)).collect();
    keys.extend((0..200).map(|i| format!("k{i}")));
    keys
}

#[test]
fn split_clients_buckets_match_nginx() {
    let dir = fresh_temp_dir("split-clients");
    fs::write(dir.join("geo.inc"), "").expect("write the include");
    let (ferrolb, [port, _, _]) = Proxy::start_on(|[p, e, e2]| conf(&dir, p, e, e2));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, e, e2]| conf(&dir, p, e, e2)));
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for key in split_keys() {
        let path = format!("/split?k={key}");
        let ours = facts(&http_get(port, &path, "localhost"));
        assert!(
            ours.starts_with("200 "),
            "{path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        *seen.entry(ours.clone()).or_default() += 1;
        if let Some((_, [nport, _, _])) = &nginx {
            let theirs = facts(&http_get(*nport, &path, "localhost"));
            compared += 1;
            if ours != theirs {
                mismatches.push(format!("{path}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
    }
    eprintln!("split_clients: {compared} keys compared with nginx; buckets {seen:?}");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} buckets differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The slices are used: 20%, 33.33% and the rest all get keys.
    for bucket in ["b|", "c|", "rest|"] {
        assert!(
            seen.keys().any(|k| k.contains(&format!(" {bucket}"))),
            "no key in {bucket}: {seen:?}"
        );
    }
}

#[test]
fn bad_geo_and_split_clients_blocks_are_refused_with_the_line() {
    let dir = fresh_temp_dir("variables-refused");
    let wrap = |block: &str| {
        format!("events {{}}\nhttp {{\n{block}\n  server {{ listen 127.0.0.1:1; }}\n}}\n")
    };
    for (block, line, message) in [
        (
            "  split_clients $uri $s {\n    60% a;\n    50% b;\n  }",
            5,
            "percent total is greater than 100%",
        ),
        (
            "  split_clients $uri $s {\n    50.005% a;\n  }",
            4,
            "invalid percent value \"50.005%\"",
        ),
        (
            "  split_clients $uri $s {\n    * a;\n    1% b;\n  }",
            5,
            "percent total is greater than 100%",
        ),
        (
            "  geo $g {\n    10.0.0.0/8 a;\n    ranges;\n  }",
            5,
            "the \"ranges\" directive must be the first directive inside \"geo\" block",
        ),
        (
            "  geo $g {\n    10.0.0.0/33 a;\n  }",
            4,
            "invalid network \"10.0.0.0/33\"",
        ),
        (
            "  geo $g {\n    ranges;\n    10.0.0.9-10.0.0.1 a;\n  }",
            5,
            "invalid range \"10.0.0.9-10.0.0.1\"",
        ),
        (
            "  geo $g {\n    ranges;\n    10.0.0.0-10.0.0.9 a;\n    10.0.0.5-10.0.0.20 b;\n  }",
            6,
            "range \"10.0.0.5-10.0.0.20\" overlaps \"10.0.0.0-10.0.0.9\"",
        ),
        (
            "  geo $g {\n    10.0.0.0/8 a b;\n  }",
            4,
            "invalid number of the geo parameters",
        ),
        (
            "  map $uri $g { default 1; }\n  geo $g {\n    default 2;\n  }",
            4,
            "the duplicate \"g\" variable",
        ),
    ] {
        let (ok, err) = config_test(&dir, &wrap(block));
        assert!(!ok, "{block}: accepted");
        assert!(
            err.contains(message) && err.contains(&format!("nginx.conf:{line}")),
            "{block}: {err}"
        );
    }
}

fn upstream_conf(dir: &Path, port: u16, backend: u16, dead: u16) -> String {
    format!(
        r#"events {{}}
http {{
  default_type text/plain;
  log_format up '$request_uri app=$upstream_http_x_app type=$upstream_http_content_type status=$upstream_status addr=$upstream_addr missing=$upstream_http_x_none';
  upstream flaky {{
    server 127.0.0.1:{dead};
    server 127.0.0.1:{backend};
  }}
  server {{
    listen 127.0.0.1:{port};
    access_log {d}/{port}.log up;
    location /u {{
      add_header X-Up "$upstream_http_x_app|$upstream_status|$upstream_addr|$upstream_http_x_none|";
      proxy_pass http://127.0.0.1:{backend}/app;
    }}
    location /flaky {{
      add_header X-Up "$upstream_http_x_app|$upstream_status|$upstream_addr";
      proxy_pass http://flaky/app;
    }}
    location /times {{
      add_header X-Up "$upstream_response_time $upstream_connect_time $upstream_header_time";
      proxy_pass http://127.0.0.1:{backend}/app;
    }}
    location /local {{
      add_header X-Up "[$upstream_http_x_app][$upstream_status]";
      return 200 "local [$upstream_http_x_app] msec=$msec\n";
    }}
  }}
  server {{
    listen 127.0.0.1:{backend};
    access_log off;
    location /app {{
      add_header X-App web-1;
      return 200 "app\n";
    }}
  }}
}}
"#,
        d = dir.display()
    )
}

#[test]
fn upstream_variables_in_add_header_and_log_match_nginx() {
    let dir = fresh_temp_dir("upstream-vars");
    let dead = DeadPort::new();
    let (ferrolb, [port, backend]) = Proxy::start_on(|[p, b]| upstream_conf(&dir, p, b, dead.port));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, b]| upstream_conf(&dir, p, b, dead.port)));
    // What must agree, with the ports each server was given named.
    let answer = |port: u16, backend: u16, path: &str| {
        let r = http_get(port, path, "localhost").expect("request");
        let up = r.header("x-up").unwrap_or("-").to_owned();
        format!("{} {up} {}", r.status, r.text())
            .replace(&backend.to_string(), "BACKEND")
            .replace(&dead.port.to_string(), "DEAD")
    };
    let paths = ["/u", "/flaky", "/flaky", "/u?x=1"];
    let ours: Vec<String> = paths.iter().map(|p| answer(port, backend, p)).collect();
    assert_eq!(
        ours[0],
        "200 web-1|200|127.0.0.1:BACKEND|| app\n",
        "{}",
        ferrolb.diagnostics()
    );
    assert_eq!(
        ours[1],
        "200 web-1|502, 200|127.0.0.1:DEAD, 127.0.0.1:BACKEND app\n"
    );
    // The time values: seconds with milliseconds, one per attempt; the response
    // time of the attempt being relayed is not known yet: `-`, as nginx's.
    let r = http_get(port, "/times", "localhost").expect("request");
    let times = r.header("x-up").unwrap_or("-").to_owned();
    let parts: Vec<&str> = times.split(' ').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "-"
            && parts[1..]
                .iter()
                .all(|t| t.len() >= 5 && t.as_bytes()[t.len() - 4] == b'.'),
        "{times}"
    );
    // No upstream: the variables are empty; $msec is now, in seconds.milliseconds.
    let r = http_get(port, "/local", "localhost").expect("request");
    assert_eq!(r.header("x-up"), Some("[][]"));
    let body = r.text();
    let msec: f64 = body
        .trim_end()
        .rsplit_once("msec=")
        .and_then(|(_, m)| m.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - msec).abs() < 60.0, "{body}");
    let log_lines = |port: u16, backend: u16, want: usize| {
        wait_until(
            std::time::Duration::from_secs(10),
            "the access log lines",
            || {
                let text = fs::read_to_string(dir.join(format!("{port}.log"))).ok()?;
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.starts_with("/times") && !l.starts_with("/local"))
                    .map(|l| {
                        l.replace(&backend.to_string(), "BACKEND")
                            .replace(&dead.port.to_string(), "DEAD")
                    })
                    .collect();
                (lines.len() >= want).then_some(lines)
            },
        )
    };
    let our_log = log_lines(port, backend, paths.len());
    assert_eq!(
        our_log[0],
        "/u app=web-1 type=text/plain status=200 addr=127.0.0.1:BACKEND missing=-"
    );
    if let Some((_, [nport, nbackend])) = &nginx {
        let theirs: Vec<String> = paths.iter().map(|p| answer(*nport, *nbackend, p)).collect();
        assert_eq!(ours, theirs, "add_header answers differ from nginx");
        let _ = http_get(*nport, "/times", "localhost");
        let _ = http_get(*nport, "/local", "localhost");
        assert_eq!(
            our_log,
            log_lines(*nport, *nbackend, paths.len()),
            "log lines differ from nginx"
        );
        eprintln!(
            "upstream variables: {} answers and {} log lines compared with nginx",
            paths.len(),
            paths.len()
        );
    }
}

fn sent_conf(dir: &Path, port: u16, backend: u16, dead: u16) -> String {
    format!(
        r#"events {{}}
http {{
  default_type text/plain;
  log_format sent '$request_uri $status ct=$sent_http_content_type len=$sent_http_content_length loc=$sent_http_location app=$sent_http_x_app up=$sent_http_x_up conn=$sent_http_connection etag=$sent_http_etag cc=$sent_http_cache_control none=$sent_http_x_none';
  server {{
    listen 127.0.0.1:{port};
    access_log {d}/{port}-sent.log sent;
    root {d}/www;
    location /u {{
      add_header X-Up "from $upstream_addr";
      add_header Cache-Control no-cache;
      add_header Cache-Control private;
      proxy_pass http://127.0.0.1:{backend}/app;
    }}
    location /bad {{ proxy_pass http://127.0.0.1:{dead}; }}
    location /local {{ return 200 "local\n"; }}
    location /redir {{ return 301 /elsewhere; }}
    location /file.txt {{ }}
  }}
  server {{
    listen 127.0.0.1:{backend};
    access_log off;
    location /app {{
      add_header X-App web-1;
      return 200 "app\n";
    }}
  }}
}}
"#,
        d = dir.display()
    )
}

#[test]
fn sent_http_in_log_format_matches_nginx() {
    let dir = fresh_temp_dir("sent-http");
    fs::create_dir_all(dir.join("www")).expect("mkdir");
    fs::write(dir.join("www/file.txt"), "a file\n").expect("write");
    let dead = DeadPort::new();
    let (ferrolb, [port, backend]) = Proxy::start_on(|[p, b]| sent_conf(&dir, p, b, dead.port));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, b]| sent_conf(&dir, p, b, dead.port)));
    let paths = [
        "/u",
        "/bad",
        "/local",
        "/redir",
        "/file.txt",
        "/missing",
        "/file.txt",
    ];
    let lines = |port: u16, backend: u16| {
        for path in paths {
            let _ = http_get(port, path, "localhost");
        }
        wait_until(
            std::time::Duration::from_secs(10),
            "the access log lines",
            || {
                let text = fs::read_to_string(dir.join(format!("{port}-sent.log"))).ok()?;
                let lines: Vec<String> = text
                    .lines()
                    .map(|l| {
                        let l = l
                            .replace(&backend.to_string(), "BACKEND")
                            .replace(&port.to_string(), "PORT");
                        // A standard page names its server (`nginx/1.22.1`, `ferrolb`):
                        // its length differs by that.
                        match (l.find(" ct=text/html len="), l.find(" loc=")) {
                            (Some(a), Some(b)) => {
                                format!("{} ct=text/html len=PAGE{}", &l[..a], &l[b..])
                            }
                            _ => l,
                        }
                    })
                    .collect();
                (lines.len() >= paths.len()).then_some(lines)
            },
        )
    };
    let ours = lines(port, backend);
    assert_eq!(
        ours[0],
        "/u 200 ct=text/plain len=4 loc=- app=web-1 up=from 127.0.0.1:BACKEND conn=close etag=- cc=no-cache, private none=-",
        "{}",
        ferrolb.diagnostics()
    );
    assert!(
        ours[3].contains("loc=http://localhost:PORT/elsewhere"),
        "{}",
        ours[3]
    );
    if let Some((_, [nport, nbackend])) = &nginx {
        let theirs = lines(*nport, *nbackend);
        let differ: Vec<String> = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("  ferrolb: {a}\n  nginx:   {b}"))
            .collect();
        eprintln!("sent_http: {} log lines compared with nginx", ours.len());
        assert!(
            differ.is_empty(),
            "log lines differ from nginx:\n{}",
            differ.join("\n")
        );
    }
}

#[test]
fn geo_warnings_match_nginx() {
    let dir = fresh_temp_dir("geo-warnings");
    let text = "events {}\nhttp {\n  geo $g { default a; default b; 10.1.2.3/8 x; 10.0.0.0/8 y; delete 11.0.0.0/8; }\n  geo $r { ranges; 10.0.0.1-10.0.0.9 a; 10.0.0.1-10.0.0.9 b; default c; default d; delete 10.0.0.20-10.0.0.30; }\n  server { listen 127.0.0.1:1; return 200 \"$g $r\"; }\n}\n";
    let (ok, err) = config_test(&dir, text);
    assert!(ok, "{err}");
    // `[warn] MESSAGE in FILE:LINE`, without the program's prefix.
    let warnings = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.split_once("[warn] ").map(|(_, w)| w.to_owned()))
            .map(|w| {
                w.split_once(": ").map_or(w.clone(), |(pid, rest)| {
                    // nginx writes `PID#TID: ` before the message.
                    if pid.contains('#') {
                        rest.to_owned()
                    } else {
                        w.clone()
                    }
                })
            })
            .collect()
    };
    let ours = warnings(&err);
    assert_eq!(ours.len(), 8, "{err}");
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let conf = dir.join("nginx.conf");
        let out = std::process::Command::new(&nginx_bin)
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg("error_log stderr; pid nginx.pid;")
            .output()
            .expect("run nginx -t");
        let theirs = warnings(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(ours, theirs);
    }
}
