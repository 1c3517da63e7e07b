//! `proxy_pass` with variables, as docker-compose and multi-tenant configs write it:
//! the value names an `upstream` group, is an address, or is a name resolved with
//! `resolver` (a DNS server started by the test, answering 127.0.0.1 for any name but
//! `missing.*`); a URI part in the value is the whole URI sent; without a resolver a
//! name is a 502 with nginx's log line. Every answer is compared with Debian's nginx
//! on the same config when it is installed.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;

use common::*;

/// A DNS server on 127.0.0.1 answering A queries with 127.0.0.1 (TTL 1 s), and also
/// 127.0.0.2 for names starting with `pair`; names starting with `missing` with
/// NXDOMAIN, other query types with no records.
fn dns_stub() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let port = sock.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut q = [0u8; 512];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut q) else {
                return;
            };
            let q = &q[..n];
            if n < 12 {
                continue;
            }
            // The question: labels up to a zero byte, then type and class.
            let mut i = 12;
            let mut name = String::new();
            while i < n && q[i] != 0 {
                let len = q[i] as usize;
                let Some(label) = q.get(i + 1..i + 1 + len) else {
                    break;
                };
                name.push_str(&String::from_utf8_lossy(label));
                name.push('.');
                i += 1 + len;
            }
            let end = i + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let missing = name.starts_with("missing");
            let pair = name.starts_with("pair");
            let answer = !missing && qtype == 1;
            let mut r = Vec::with_capacity(64);
            r.extend_from_slice(&q[..2]);
            r.extend_from_slice(if missing {
                &[0x81, 0x83]
            } else {
                &[0x81, 0x80]
            });
            let records = u8::from(answer) * if pair { 2 } else { 1 };
            r.extend_from_slice(&[0, 1, 0, records, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            if answer {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
            }
            if answer && pair {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 2]);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    port
}

/// A backend answering every request with its name and the request line.
fn backend(name: &'static str) -> u16 {
    scripted_backend(move |req, _, conn| {
        let body = format!("{name}: {}\n", req.line);
        let _ = write!(
            conn,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

fn conf(dns: u16, one: u16, two: u16, port: u16, bare: u16, dead: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{one}; }}
  server {{
    listen 127.0.0.1:{port};
    resolver 127.0.0.1:{dns} valid=1s ipv6=off;
    resolver_timeout 5s;
    location /by-name/ {{ set $b app; proxy_pass http://$b; }}
    location /by-addr/ {{ set $b 127.0.0.1:{two}; proxy_pass http://$b; }}
    location /by-dns/ {{ proxy_pass http://backend.test:{two}$request_uri; }}
    location /with-uri/ {{ set $b app; proxy_pass http://$b/fixed/path; }}
    location /missing/ {{ set $h missing.test; proxy_pass http://$h:{two}; }}
    location /arg/ {{ proxy_pass http://$arg_to; }}
    location /bad/ {{ set $b "ftp://x"; proxy_pass $b; }}
    location /pair/ {{ set $h pair.test; proxy_pass http://$h:{dead}; error_page 502 = /tried; }}
    location = /tried {{ return 200 "tried $upstream_addr"; }}
  }}
  server {{
    listen 127.0.0.1:{bare};
    location / {{ proxy_pass http://$arg_to; }}
  }}
}}
"#
    )
}

/// Port numbers differ between the two runs: answers name them as placeholders.
fn facts(r: &std::io::Result<Response>, ports: &[(u16, &str)]) -> String {
    match r {
        Ok(r) => {
            let mut text = r.text();
            for (p, name) in ports {
                text = text.replace(&p.to_string(), name);
            }
            let text = match text.find("<h1>") {
                Some(i) => text[i..].lines().next().unwrap_or("").to_owned(),
                None => text,
            };
            format!("{} {text}", r.status)
        }
        Err(e) => format!("error: {e}"),
    }
}

/// `200 tried A, B` with the addresses sorted.
fn tried_in_any_order(facts: String) -> String {
    match facts.strip_prefix("200 tried ") {
        Some(list) => {
            let mut addrs: Vec<&str> = list.split(", ").collect();
            addrs.sort_unstable();
            format!("200 tried {}", addrs.join(", "))
        }
        None => facts,
    }
}

#[test]
fn proxy_pass_with_variables_matches_nginx() {
    let dns = dns_stub();
    let one = backend("one");
    let two = backend("two");
    let dead = DeadPort::new();
    let dead = dead.port;
    let cases = |two: u16| -> Vec<(String, bool)> {
        vec![
            ("/by-name/x?q=1".to_owned(), false),
            ("/by-addr/y".to_owned(), false),
            ("/by-dns/z?k=v".to_owned(), false),
            ("/with-uri/ignored?a=b".to_owned(), false),
            ("/missing/m".to_owned(), false),
            (format!("/arg/p?to=127.0.0.1:{two}"), false),
            ("/arg/p?to=app".to_owned(), false),
            ("/bad/".to_owned(), false),
            // The request's own group: the next request tries both addresses again.
            ("/pair/a".to_owned(), false),
            ("/pair/b".to_owned(), false),
            (format!("/?to=127.0.0.1:{two}"), true),
            (format!("/?to=backend.test:{two}"), true),
        ]
    };
    let (ferrolb, [port, bare]) = Proxy::start_on(|[p, b]| conf(dns, one, two, p, b, dead));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, b]| conf(dns, one, two, p, b, dead)));
    let names = [(two, "TWO"), (one, "ONE"), (dead, "DEAD")];
    let mut mismatches = Vec::new();
    for (path, on_bare) in cases(two) {
        let p = if on_bare { bare } else { port };
        let ours = facts(&http_get(p, &path, "site.test"), &names);
        // nginx's resolver (and ferrolb's, as nginx's) starts a cached answer's
        // addresses at a random one: which of the two is tried first differs, not
        // that both are.
        let ours = tried_in_any_order(ours);
        assert!(
            !ours.starts_with("error"),
            "{path}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((_nginx, [np, nb])) = &nginx {
            let p = if on_bare { *nb } else { *np };
            let theirs = tried_in_any_order(facts(&http_get(p, &path, "site.test"), &names));
            if ours != theirs {
                mismatches.push(format!("{path}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "differ from nginx:\n{}",
        mismatches.join("\n")
    );

    // What ferrolb answers, whatever nginx does.
    let get = |path: &str| http_get(port, path, "site.test").expect("answer");
    assert_eq!(
        get("/by-name/x?q=1").text(),
        "one: GET /by-name/x?q=1 HTTP/1.0\n"
    );
    assert_eq!(
        get("/by-dns/z?k=v").text(),
        "two: GET /by-dns/z?k=v HTTP/1.0\n"
    );
    assert_eq!(
        get("/with-uri/i?a=b").text(),
        "one: GET /fixed/path HTTP/1.0\n"
    );
    assert_eq!(get("/missing/m").status, 502);
    for _ in 0..2 {
        let tried = get("/pair/c").text().replace(&dead.to_string(), "DEAD");
        assert_eq!(
            tried_in_any_order(format!("200 {tried}")),
            "200 tried 127.0.0.1:DEAD, 127.0.0.2:DEAD"
        );
    }
    let r = http_get(bare, "/?to=backend.test:1", "site.test").expect("answer");
    assert_eq!(r.status, 502);
    let log = ferrolb.error_log();
    assert!(
        log.contains("no resolver defined to resolve backend.test"),
        "{log}"
    );
    assert!(
        log.contains("missing.test could not be resolved (3: Host not found)"),
        "{log}"
    );
}
