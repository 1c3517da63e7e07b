//! Client identity and admission as nginx does them, each answer compared with Debian's
//! nginx on the same config: the real client address behind trusted proxies
//! (`X-Forwarded-For` recursive and not, `X-Real-IP`, any header, untrusted peers,
//! server and location level), PROXY protocol v1 and v2 from a raw socket, `allow` and
//! `deny` (order, CIDR, IPv6, inheritance, `return` before the access phase),
//! `auth_basic` with a password line in every format nginx reads, `satisfy`,
//! `limit_except`.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;

const PASSWORD: &str = "s3cret-Pa55";

/// `htpasswd -nb[d|B|s] user password`'s line.
fn htpasswd(flag: &str, user: &str) -> String {
    let out = Command::new("htpasswd")
        .args([&format!("-nb{flag}"), user, PASSWORD])
        .output()
        .expect("htpasswd (apache2-utils; scripts/test.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `openssl passwd -FLAG password`'s hash.
fn openssl(flag: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", flag, PASSWORD])
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A password file with a line in every format, comments, and a user listed twice.
fn password_file(dir: &Path) -> Vec<&'static str> {
    use sha1::{Digest, Sha1};
    let mut ssha = Sha1::new();
    ssha.update(PASSWORD.as_bytes());
    ssha.update(b"salt4");
    let mut raw = ssha.finalize().to_vec();
    raw.extend_from_slice(b"salt4");
    let ssha = base64::engine::general_purpose::STANDARD.encode(raw);
    let bcrypt_y = htpasswd("B", "bcrypt_y");
    let bcrypt_b = bcrypt_y
        .replacen("$2y$", "$2b$", 1)
        .replacen("bcrypt_y", "bcrypt_b", 1);
    let lines = [
        "# users of every hash format".to_owned(),
        htpasswd("d", "des"),
        format!("md5:{}", openssl("-1")),
        format!("apr1:{}", openssl("-apr1")),
        htpasswd("m", "apr1_htpasswd"),
        format!("sha256:{}", openssl("-5")),
        format!("sha512:{}", openssl("-6")),
        bcrypt_y,
        bcrypt_b,
        format!("plain:{{PLAIN}}{PASSWORD}"),
        htpasswd("s", "sha"),
        format!("ssha:{{SSHA}}{ssha}"),
        format!("commented:{{PLAIN}}{PASSWORD}:the rest is a comment"),
        // The password field ends at the first `:`: this one is "pass".
        "colon:{PLAIN}pass:word".to_owned(),
        "twice:{PLAIN}first".to_owned(),
        format!("twice:{{PLAIN}}{PASSWORD}"),
        format!("#hidden:{{PLAIN}}{PASSWORD}"),
    ];
    fs::write(dir.join("htpasswd"), lines.join("\r\n") + "\n").expect("write htpasswd");
    vec![
        "des",
        "md5",
        "apr1",
        "apr1_htpasswd",
        "sha256",
        "sha512",
        "bcrypt_y",
        "bcrypt_b",
        "plain",
        "sha",
        "ssha",
        "commented",
    ]
}

fn tree() -> PathBuf {
    let dir = fresh_temp_dir("admission");
    for d in [
        "paged",
        "paged/deny",
        "",
        "rec",
        "norec",
        "xreal",
        "custom",
        "untrusted",
        "real",
        "acl",
        "acl/inner",
        "acl/own",
        "le",
        "le-auth",
        "auth",
        "auth/open",
        "any-ip",
        "any-deny",
        "all-deny",
        "missing",
        "pp",
    ] {
        fs::create_dir_all(dir.join("www").join(d)).expect("mkdir");
        fs::write(dir.join("www").join(d).join("f.txt"), format!("{d}\n")).expect("write");
    }
    fs::write(dir.join("www/401.html"), "who are you?\n").expect("write");
    fs::write(dir.join("www/404.html"), "not here\n").expect("write");
    dir
}

/// Shown in a header of a static answer: headers are made after the access phase
/// (a `return` would answer in the rewrite phase, before a location's realip).
const SHOW: &str = r#"add_header X-Show "addr=$remote_addr port=$remote_port realip=$realip_remote_addr xff=$proxy_add_x_forwarded_for" always;"#;

fn conf(dir: &Path, [a, b, p, c]: [u16; 4]) -> String {
    let d = dir.display();
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  root {d}/www;
  # Realip at server level: the post-read phase.
  server {{
    listen 127.0.0.1:{a};
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    location / {{ {SHOW} }}
    # Too late: the server's settings already made the address out.
    location /rec/ {{ real_ip_recursive on; set_real_ip_from 10.0.0.0/8; {SHOW} }}
  }}
  # Realip at location level: the preaccess phase; access rules on the real address.
  server {{
    listen 127.0.0.1:{b};
    location / {{ {SHOW} }}
    location /rec/ {{
      set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8; set_real_ip_from 2001:db8::/32;
      real_ip_header X-Forwarded-For; real_ip_recursive on;
      {SHOW}
    }}
    location /norec/ {{
      set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8;
      real_ip_header X-Forwarded-For;
      {SHOW}
    }}
    location /xreal/ {{ set_real_ip_from 127.0.0.1; {SHOW} }}
    location /custom/ {{ set_real_ip_from 127.0.0.0/8; real_ip_header X-Client-Addr; {SHOW} }}
    location /untrusted/ {{ set_real_ip_from 192.0.2.1; real_ip_header X-Forwarded-For; {SHOW} }}
    location /acl/ {{
      set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;
      deny 192.0.2.1;
      allow 192.0.2.0/24;
      allow 2001:db8::/32;
      deny all;
      location /acl/own/ {{ allow 198.51.100.7; deny all; }}
    }}
    location /ret/ {{ deny all; return 200 "the rewrite phase comes first\n"; }}
  }}
  # PROXY protocol from a balancer in front.
  server {{
    listen 127.0.0.1:{p} proxy_protocol;
    location / {{ return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port addr=$remote_addr\n"; }}
    location = /show {{ return 200 "ppserver=$proxy_protocol_server_addr:$proxy_protocol_server_port\n"; }}
    location /real/ {{ set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol; {SHOW} }}
    location /pp/ {{
      set_real_ip_from 127.0.0.1; real_ip_header proxy_protocol;
      allow 192.0.2.0/24; deny all;
    }}
  }}
  # Basic authentication, satisfy, limit_except.
  server {{
    listen 127.0.0.1:{c};
    location = /who {{ return 200 "user=$remote_user\n"; }}
    location /auth/ {{
      auth_basic "Restricted area";
      auth_basic_user_file {d}/htpasswd;
      location /auth/open/ {{ auth_basic off; }}
    }}
    location /missing/ {{ auth_basic "x"; auth_basic_user_file {d}/nonexistent; }}
    location /any-ip/ {{
      satisfy any; allow 127.0.0.1; deny all;
      auth_basic "any"; auth_basic_user_file {d}/htpasswd;
    }}
    location /any-deny/ {{
      satisfy any; deny all;
      auth_basic "any"; auth_basic_user_file {d}/htpasswd;
    }}
    location /all-deny/ {{ deny all; auth_basic "all"; auth_basic_user_file {d}/htpasswd; }}
    location /le/ {{ limit_except GET {{ deny all; }} }}
    location /paged/ {{
      auth_basic "paged"; auth_basic_user_file {d}/htpasswd;
      error_page 401 /401.html;
      error_page 403 =404 /404.html;
      location /paged/deny/ {{ deny all; }}
    }}
    location = /401.html {{ }}
    location = /404.html {{ }}
    location /le-auth/ {{
      limit_except GET POST {{ auth_basic "writers"; auth_basic_user_file {d}/htpasswd; }}
    }}
  }}
}}
"#
    )
}

/// What both servers must agree on: status, `WWW-Authenticate`, and the body (the
/// heading of a standard page); `closed` for a connection closed without an answer.
fn facts(raw: &[u8]) -> String {
    if raw.is_empty() {
        return "closed".to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap_or("?");
    // Every challenge field: an error page must not repeat it.
    let auth: Vec<&str> = head
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("www-authenticate").then(|| v.trim())
        })
        .collect();
    let auth = if auth.is_empty() {
        "-".to_owned()
    } else {
        auth.join(" + ")
    };
    let show = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Show: "))
        .unwrap_or("-");
    let body = match body.find("<h1>") {
        Some(i) => body[i..].lines().next().unwrap_or(""),
        None => body,
    };
    // The peer's own port differs from run to run.
    let show = regex::Regex::new(r"addr=127\.0\.0\.1 port=\d+")
        .expect("regex")
        .replace(show, "addr=127.0.0.1 port=PEER");
    format!("{status} www-authenticate={auth} show={show} {body}")
}

/// Sends `bytes` on a fresh connection and reads until the server closes it.
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    // A reset after a refused header counts as closed.
    let _ = s.read_to_end(&mut out);
    out
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if method == "POST" {
        r.push_str("Content-Length: 0\r\n");
    }
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn v2(cmd: u8, fam: u8, addr: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(fam);
    h.extend_from_slice(&(addr.len() as u16).to_be_bytes());
    h.extend_from_slice(addr);
    h
}

/// (port index, label, bytes sent).
fn cases(users: &[&str]) -> Vec<(usize, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |port: usize, label: String, bytes: Vec<u8>| out.push((port, label, bytes));
    let xff = |v: &str| vec![("X-Forwarded-For", v.to_owned())];
    let get = |path: &str, h: &[(&str, String)]| {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        request("GET", path, &h)
    };
    // Server-level realip, and a location that cannot change it any more.
    for (path, v) in [
        ("/f.txt", "203.0.113.9"),
        ("/f.txt", "1.1.1.1, 203.0.113.9:5555"),
        ("/f.txt", "1.1.1.1, 10.0.0.1"),
        ("/f.txt", "garbage"),
        ("/f.txt", "[2001:db8::7]:443"),
        ("/rec/f.txt", "203.0.113.9, 10.0.0.1"),
    ] {
        add(0, format!("A {path} XFF {v}"), get(path, &xff(v)));
    }
    add(0, "A / without XFF".into(), get("/f.txt", &[]));
    // Location-level realip.
    for (path, v) in [
        ("/rec/f.txt", "203.0.113.9, 10.0.0.1"),
        (
            "/rec/f.txt",
            "198.51.100.1, 203.0.113.9, 10.2.3.4, 127.0.0.1",
        ),
        ("/rec/f.txt", "10.0.0.1, 10.0.0.2"),
        ("/rec/f.txt", "2001:db8::1, 2001:db8::2"),
        ("/rec/f.txt", "x, 10.0.0.2"),
        ("/norec/f.txt", "203.0.113.9, 10.0.0.1"),
        ("/untrusted/f.txt", "203.0.113.9"),
    ] {
        add(1, format!("B {path} XFF {v}"), get(path, &xff(v)));
    }
    add(
        1,
        "B /rec/ two XFF lines".into(),
        request(
            "GET",
            "/rec/f.txt",
            &[
                ("X-Forwarded-For", "203.0.113.1"),
                ("X-Forwarded-For", "10.0.0.3"),
            ],
        ),
    );
    add(
        1,
        "B /xreal/".into(),
        get("/xreal/f.txt", &[("X-Real-IP", "192.0.2.44".into())]),
    );
    add(
        1,
        "B /xreal/ port".into(),
        get("/xreal/f.txt", &[("X-Real-IP", "192.0.2.44:8080".into())]),
    );
    add(
        1,
        "B /custom/".into(),
        get("/custom/f.txt", &[("X-Client-Addr", "192.0.2.45".into())]),
    );
    for v in [
        "192.0.2.1",
        "192.0.2.2",
        "2001:db8::99",
        "2001:db9::1",
        "198.51.100.7",
        "8.8.8.8",
    ] {
        add(
            1,
            format!("B /acl/f.txt from {v}"),
            get("/acl/f.txt", &xff(v)),
        );
        add(
            1,
            format!("B /acl/inner/ from {v}"),
            get("/acl/inner/f.txt", &xff(v)),
        );
        add(
            1,
            format!("B /acl/own/ from {v}"),
            get("/acl/own/f.txt", &xff(v)),
        );
    }
    add(1, "B /ret/".into(), get("/ret/", &[]));
    // PROXY protocol.
    let with = |header: &[u8], path: &str| [header, &request("GET", path, &[])].concat();
    for path in ["/", "/show", "/real/f.txt", "/pp/f.txt"] {
        add(
            2,
            format!("PP v1 {path}"),
            with(b"PROXY TCP4 192.0.2.10 10.0.0.1 40000 80\r\n", path),
        );
        add(
            2,
            format!("PP v1 other {path}"),
            with(b"PROXY TCP4 203.0.113.10 10.0.0.1 40001 80\r\n", path),
        );
        add(
            2,
            format!("PP v1 tcp6 {path}"),
            with(b"PROXY TCP6 2001:db8::5 ::1 40002 443\r\n", path),
        );
        add(
            2,
            format!("PP v1 unknown {path}"),
            with(b"PROXY UNKNOWN\r\n", path),
        );
        let v4 = [192, 0, 2, 11, 10, 0, 0, 1, 0x9c, 0x43, 0, 80];
        add(2, format!("PP v2 {path}"), with(&v2(1, 0x11, &v4), path));
        add(
            2,
            format!("PP v2 local {path}"),
            with(&v2(0, 0x11, &v4), path),
        );
        let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
        v6.resize(15, 0);
        v6.push(9);
        v6.extend_from_slice(&[0; 15]);
        v6.push(1);
        v6.extend_from_slice(&[0x9c, 0x44, 1, 0xbb]);
        add(
            2,
            format!("PP v2 inet6 {path}"),
            with(&v2(1, 0x21, &v6), path),
        );
    }
    add(2, "PP none".into(), request("GET", "/", &[]));
    add(
        2,
        "PP broken".into(),
        with(b"PROXY TCP4 192.0.2.x 10.0.0.1 1 2\r\n", "/"),
    );
    // Basic authentication.
    for u in users {
        add(
            3,
            format!("auth {u}"),
            get("/auth/f.txt", &[("Authorization", basic(u, PASSWORD))]),
        );
        add(
            3,
            format!("auth {u} wrong"),
            get("/auth/f.txt", &[("Authorization", basic(u, "wrong"))]),
        );
    }
    for (label, value) in [
        ("twice (first line wins)", basic("twice", PASSWORD)),
        ("colon: whole", basic("colon", "pass:word")),
        ("colon: up to the colon", basic("colon", "pass")),
        (
            "password with a colon",
            basic("plain", &format!("{PASSWORD}:")),
        ),
        ("hidden (comment)", basic("hidden", PASSWORD)),
        ("#hidden", basic("#hidden", PASSWORD)),
        ("unknown user", basic("nobody", PASSWORD)),
        (
            "lower-case scheme",
            format!("basic  {}", &basic("plain", PASSWORD)[6..]),
        ),
        (
            "no padding",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(format!("plain:{PASSWORD}"))
            ),
        ),
        ("bad base64", "Basic !!!!".to_owned()),
        (
            "no colon",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("plain")
            ),
        ),
        ("bearer", "Bearer abc".to_owned()),
    ] {
        add(
            3,
            format!("auth {label}"),
            get("/auth/f.txt", &[("Authorization", value)]),
        );
    }
    add(3, "auth none".into(), get("/auth/f.txt", &[]));
    add(3, "auth off inside".into(), get("/auth/open/f.txt", &[]));
    add(
        3,
        "who".into(),
        get("/who", &[("Authorization", basic("alice", "x"))]),
    );
    add(3, "who none".into(), get("/who", &[]));
    add(3, "error_page 401".into(), get("/paged/f.txt", &[]));
    add(
        3,
        "error_page 401 good".into(),
        get(
            "/paged/f.txt",
            &[("Authorization", basic("plain", PASSWORD))],
        ),
    );
    add(
        3,
        "error_page 403 =404".into(),
        get(
            "/paged/deny/f.txt",
            &[("Authorization", basic("plain", PASSWORD))],
        ),
    );
    add(
        3,
        "missing file".into(),
        get(
            "/missing/f.txt",
            &[("Authorization", basic("plain", PASSWORD))],
        ),
    );
    for path in ["/any-ip/f.txt", "/any-deny/f.txt", "/all-deny/f.txt"] {
        add(3, format!("{path} none"), get(path, &[]));
        add(
            3,
            format!("{path} good"),
            get(path, &[("Authorization", basic("plain", PASSWORD))]),
        );
        add(
            3,
            format!("{path} bad"),
            get(path, &[("Authorization", basic("plain", "no"))]),
        );
    }
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        add(
            3,
            format!("limit_except {method}"),
            request(method, "/le/f.txt", &[]),
        );
        add(
            3,
            format!("limit_except auth {method}"),
            request(method, "/le-auth/f.txt", &[]),
        );
        add(
            3,
            format!("limit_except auth {method} with user"),
            request(
                method,
                "/le-auth/f.txt",
                &[("Authorization", &basic("plain", PASSWORD))],
            ),
        );
    }
    out
}

#[test]
fn admission_answers_match_nginx() {
    let dir = tree();
    let users = password_file(&dir);
    let (ferrolb, ports) = Proxy::start_on(|p| conf(&dir, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |p| conf(&dir, p)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let cases = cases(&users);
    for (i, label, bytes) in &cases {
        let ours = facts(&exchange(ports[*i], bytes));
        if let Some((_, nports)) = &nginx {
            let theirs = facts(&exchange(nports[*i], bytes));
            compared += 1;
            if ours != theirs {
                mismatches.push(format!("{label}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        } else {
            assert!(ours != "closed" || label.contains("PP"), "{label}: {ours}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}\n{}",
        mismatches.len(),
        mismatches.join("\n"),
        ferrolb.diagnostics()
    );
    // Every user of every format got in, and with a wrong password did not.
    for u in &users {
        let good = facts(&exchange(
            ports[3],
            &request(
                "GET",
                "/auth/f.txt",
                &[("Authorization", &basic(u, PASSWORD))],
            ),
        ));
        assert!(good.starts_with("200"), "{u}: {good}");
    }
    let log = ferrolb.error_log();
    for needle in [
        "access forbidden by rule",
        "user \"plain\": password mismatch",
        "user \"nobody\" was not found in",
        "broken header: \"GET / HTTP/1.1\" while reading PROXY protocol",
    ] {
        assert!(log.contains(needle), "{needle} not in:\n{log}");
    }
    eprintln!(
        "admission: {compared} answers compared with nginx, {} cases",
        cases.len()
    );
}

fn log_conf(dir: &Path, [port]: [u16; 1]) -> String {
    format!(
        r#"events {{}}
http {{
  root {d}/www;
  log_format real '$remote_addr|$remote_port|$realip_remote_addr|$remote_user|$status|$binary_remote_addr';
  server {{
    listen 127.0.0.1:{port};
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    location /rec/ {{ access_log logs/real.log real; }}
    location /acl/ {{ access_log logs/combined.log; }}
  }}
}}
"#,
        d = dir.display()
    )
}

/// The lines of `log` once there are `n`, the time field blanked.
fn log_lines(proxy: &Proxy, log: &str, n: usize) -> Vec<String> {
    let path = proxy.dir.join("logs").join(log);
    let text = wait_until(IO_TIMEOUT, log, || {
        let t = fs::read_to_string(&path).ok()?;
        (t.lines().count() >= n).then_some(t)
    });
    text.lines()
        .map(|l| match (l.find('['), l.find(']')) {
            (Some(a), Some(b)) if b > a => format!("{}[]{}", &l[..a], &l[b + 1..]),
            _ => l.to_owned(),
        })
        .collect()
}

#[test]
fn access_logs_name_the_real_client_and_user() {
    let dir = tree();
    let run = |proxy: &Proxy, port: u16| {
        for (path, xff, auth) in [
            ("/rec/f.txt", "203.0.113.7:4000", Some(basic("alice", "x"))),
            ("/rec/f.txt", "2001:db8::3", None),
            ("/acl/f.txt", "198.51.100.2", Some(basic("bob", "y"))),
            ("/acl/f.txt", "198.51.100.3", Some("Basic !!".to_owned())),
        ] {
            let mut h = vec![("X-Forwarded-For", xff.to_owned())];
            if let Some(a) = auth {
                h.push(("Authorization", a));
            }
            let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
            exchange(port, &request("GET", path, &h));
        }
        let mut lines = log_lines(proxy, "real.log", 2);
        lines.extend(log_lines(proxy, "combined.log", 2));
        lines
    };
    let (ferrolb, [port]) = Proxy::start_on(|p| log_conf(&dir, p));
    let ours = run(&ferrolb, port);
    assert!(
        ours[0].starts_with("203.0.113.7|4000|127.0.0.1|alice|200|\\xCB\\x00q\\x07"),
        "{ours:?}"
    );
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |p| log_conf(&dir, p));
        let theirs = run(&nginx, nport);
        assert_eq!(ours, theirs, "\n{}", ferrolb.diagnostics());
    }
}

fn unix_conf(dir: &Path, sock: &Path, [port]: [u16; 1]) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  root {d}/www;
  server {{
    listen unix:{s};
    listen 127.0.0.1:{port};
    location /acl/ {{ allow unix:; deny all; }}
    location /le/ {{ deny unix:; }}
    location /xreal/ {{ set_real_ip_from unix:; {SHOW} }}
  }}
}}
"#,
        d = dir.display(),
        s = sock.display()
    )
}

/// Sends `bytes` on the Unix socket and reads until the server closes.
fn unix_exchange(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn unix_socket_clients_match_unix_rules() {
    let dir = tree();
    let cases = [
        ("/acl/f.txt", vec![]),
        ("/le/f.txt", vec![]),
        ("/xreal/f.txt", vec![("X-Real-IP", "192.0.2.77")]),
        ("/xreal/f.txt", vec![]),
    ];
    let run = |sock: &Path, port: u16| {
        let mut out = Vec::new();
        for (path, h) in &cases {
            let req = request("GET", path, h);
            out.push(format!(
                "unix {path}: {}",
                facts(&unix_exchange(sock, &req))
            ));
            out.push(format!("tcp {path}: {}", facts(&exchange(port, &req))));
        }
        out
    };
    let sock = dir.join("ferrolb.sock");
    let (_ferrolb, [port]) = Proxy::start_on(|p| unix_conf(&dir, &sock, p));
    wait_until(IO_TIMEOUT, "unix listener", || sock.exists().then_some(()));
    let ours = run(&sock, port);
    assert!(ours[0].starts_with("unix /acl/f.txt: 200"), "{ours:?}");
    assert!(ours[1].starts_with("tcp /acl/f.txt: 403"), "{ours:?}");
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let nsock = dir.join("nginx.sock");
        let (_nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |p| unix_conf(&dir, &nsock, p));
        wait_until(IO_TIMEOUT, "nginx unix listener", || {
            nsock.exists().then_some(())
        });
        let theirs = run(&nsock, nport);
        assert_eq!(ours, theirs);
    }
}

/// A backend that answers with its name and the client-address fields it got.
fn echo_backend(name: &'static str) -> u16 {
    use std::io::BufRead;
    let listener = local_listener();
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(clone) = conn.try_clone() else {
                continue;
            };
            let mut reader = std::io::BufReader::new(clone);
            let mut fields = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if lower.starts_with("x-forwarded-for:") || lower.starts_with("x-real-ip:") {
                    fields.push(h.trim().to_owned());
                }
            }
            let body = format!("{name} {}\n", fields.join(" | "));
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn proxied_conf(backends: [u16; 2], [port]: [u16; 1]) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  upstream app {{
    ip_hash;
    server 127.0.0.1:{a};
    server 127.0.0.1:{b};
  }}
  server {{
    listen 127.0.0.1:{port};
    set_real_ip_from 127.0.0.1;
    set_real_ip_from 10.0.0.0/8;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;
    location / {{
      proxy_pass http://app;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
    }}
  }}
}}
"#,
        a = backends[0],
        b = backends[1]
    )
}

#[test]
fn upstreams_see_the_real_client() {
    let backends = [echo_backend("a"), echo_backend("b")];
    let clients = [
        "203.0.113.7",
        "198.51.100.20, 10.1.1.1",
        "192.0.2.1",
        "192.0.2.200",
        "2001:db8::9",
        "8.8.8.8",
        "1.1.1.1, 9.9.9.9, 10.0.0.2",
    ];
    let run = |port: u16| -> Vec<String> {
        clients
            .iter()
            .map(|xff| {
                let r = http_request(port, "GET", "/", "t", &[("X-Forwarded-For", xff)], b"")
                    .expect("GET");
                format!("{xff} -> {}", r.text().trim())
            })
            .collect()
    };
    let (_ferrolb, [port]) = Proxy::start_on(|p| proxied_conf(backends, p));
    let ours = run(port);
    assert!(ours[1].contains("X-Real-IP: 198.51.100.20"), "{ours:#?}");
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |p| proxied_conf(backends, p));
        assert_eq!(ours, run(nport));
    }
}
