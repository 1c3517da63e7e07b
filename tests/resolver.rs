//! The `resolver` directive as nginx's resolver behaves (src/core/ngx_resolver.c),
//! measured against Debian's nginx on the same config with DNS servers of the test's
//! own (UDP and TCP on 127.0.0.1, scripted per name, logging each question): the A
//! and AAAA questions asked together and their answers combined (a CNAME followed only
//! when neither has addresses, the last one read winning), error answers never cached
//! and logged with nginx's text, the servers of a directive asked in turn, TTLs kept,
//! cached CNAMEs followed, truncated answers asked again over TCP, names longer than
//! RFC 1035 allows followed, `resolver_timeout`.
//!
//! Every name points at a port nothing listens on: the request then tries each address
//! in order and the error page shows `$upstream_addr`, the addresses the resolver gave
//! in the order it gave them (empty when the name did not resolve).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const A: u16 = 1;
const AAAA: u16 = 28;

/// One answer record; every owner name is the question's (nginx never reads them).
enum Rr {
    A(&'static str, u32),
    Aaaa(&'static str, u32),
    Cname(String, u32),
}

/// A scripted answer.
struct Reply {
    rcode: u8,
    truncated: bool,
    records: Vec<Rr>,
    /// Answer with another id than the question's.
    wrong_id: bool,
}

fn ok(records: Vec<Rr>) -> Option<Reply> {
    Some(Reply {
        rcode: 0,
        truncated: false,
        records,
        wrong_id: false,
    })
}

fn rcode(code: u8) -> Option<Reply> {
    Some(Reply {
        rcode: code,
        truncated: false,
        records: Vec::new(),
        wrong_id: false,
    })
}

/// A question as the server saw it: name, type, over TCP.
type Asked = (String, u16, bool);

/// The script: (name, type, over TCP, how many times this name and type were asked
/// before) to the answer, `None` for no answer at all.
type Script = fn(&str, u16, bool, usize) -> Option<Reply>;

/// A DNS server on 127.0.0.1 (UDP, and TCP on the same port) answering by `script`.
struct FakeDns {
    port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl FakeDns {
    fn start(script: Script) -> FakeDns {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().expect("addr").port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Mutex::new(HashMap::<(String, u16), usize>::new()));
        let answer = {
            let asked = asked.clone();
            move |q: &[u8], tcp: bool| -> Option<Vec<u8>> {
                let (name, qtype, end) = question(q)?;
                asked.lock().ok()?.push((name.clone(), qtype, tcp));
                let before = {
                    let mut c = counts.lock().ok()?;
                    let n = c.entry((name.clone(), qtype)).or_insert(0);
                    *n += 1;
                    *n - 1
                };
                let reply = script(&name, qtype, tcp, before)?;
                Some(encode(q, end, &reply))
            }
        };
        let udp_answer = answer.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                if let Some(r) = udp_answer(&buf[..n], false) {
                    let _ = udp.send_to(&r, from);
                }
            }
        });
        std::thread::spawn(move || {
            for conn in tcp.incoming() {
                let Ok(mut conn) = conn else { return };
                let answer = answer.clone();
                std::thread::spawn(move || loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut q).is_err() {
                        return;
                    }
                    if let Some(r) = answer(&q, true) {
                        let mut framed = u16::try_from(r.len()).unwrap_or(0).to_be_bytes().to_vec();
                        framed.extend_from_slice(&r);
                        if conn.write_all(&framed).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeDns { port, asked }
    }

    /// The questions asked so far, sorted (A and AAAA go out together; their order on
    /// the wire is not what is compared).
    fn asked(&self) -> Vec<Asked> {
        let mut a = self.asked.lock().map(|a| a.clone()).unwrap_or_default();
        a.sort();
        a
    }
}

/// The question's name (lower case, dotted), type, and where it ends.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = usize::from(q[i]);
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    Some((labels.join("."), qtype, i + 5))
}

fn encode(q: &[u8], end: usize, reply: &Reply) -> Vec<u8> {
    let id = u16::from_be_bytes([q[0], q[1]]);
    let id = if reply.wrong_id {
        id.wrapping_add(1)
    } else {
        id
    };
    let mut r = id.to_be_bytes().to_vec();
    let flags: u16 = 0x8180 | u16::from(reply.rcode) | if reply.truncated { 0x0200 } else { 0 };
    r.extend_from_slice(&flags.to_be_bytes());
    let count = u16::try_from(reply.records.len()).unwrap_or(0);
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&count.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    for rr in &reply.records {
        let (rtype, ttl, data): (u16, u32, Vec<u8>) = match rr {
            Rr::A(ip, ttl) => {
                let ip: std::net::Ipv4Addr = ip.parse().expect("v4");
                (A, *ttl, ip.octets().to_vec())
            }
            Rr::Aaaa(ip, ttl) => {
                let ip: std::net::Ipv6Addr = ip.parse().expect("v6");
                (AAAA, *ttl, ip.octets().to_vec())
            }
            Rr::Cname(name, ttl) => {
                let mut d = Vec::new();
                for label in name.split('.') {
                    d.push(u8::try_from(label.len()).unwrap_or(0));
                    d.extend_from_slice(label.as_bytes());
                }
                d.push(0);
                (5, *ttl, d)
            }
        };
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
}

fn long_name() -> String {
    vec!["a".repeat(63); 4].join(".")
}

/// The first server of every location.
fn script_one(name: &str, qtype: u16, tcp: bool, before: usize) -> Option<Reply> {
    let cname = |to: &str| Rr::Cname(to.to_owned(), 3600);
    match (name, qtype) {
        ("a.test" | "shared.test", A) => ok(vec![Rr::A("127.0.0.1", 3600)]),
        // A has addresses, AAAA only a CNAME: the CNAME is not followed.
        ("n-c.test", A) => ok(vec![Rr::A("127.0.0.2", 3600)]),
        ("n-c.test", AAAA) => ok(vec![cname("alias6.test")]),
        // Both answers only a CNAME: the one read last (AAAA's, asked second) wins.
        ("c1-c2.test", A) => ok(vec![cname("alias4.test")]),
        ("c1-c2.test", AAAA) => ok(vec![cname("alias6.test")]),
        ("alias4.test", A) => ok(vec![Rr::A("127.0.0.4", 3600)]),
        ("alias6.test", AAAA) => ok(vec![Rr::Aaaa("::1", 3600)]),
        // CNAME and its addresses in one answer, AAAA answered directly.
        ("cn-n.test", A) => ok(vec![
            cname("alias4.test"),
            Rr::A("127.0.0.4", 3600),
            Rr::A("127.0.0.5", 3600),
        ]),
        ("cn-n.test", AAAA) => ok(vec![Rr::Aaaa("::1", 3600)]),
        // An error for one question fails the name, whatever the other says.
        ("n-e.test", A) => ok(vec![Rr::A("127.0.0.1", 3600)]),
        ("n-e.test", AAAA) => rcode(2),
        ("nx.test", _) => rcode(3),
        // A CNAME to a name already cached.
        ("cn.test", _) => ok(vec![cname("a.test")]),
        // A CNAME to a 4 x 63 bytes name: 257 bytes on the wire.
        ("long.test", _) => ok(vec![Rr::Cname(long_name(), 3600)]),
        (n, A) if n == long_name() => ok(vec![Rr::A("127.0.0.1", 3600)]),
        // Over UDP truncated (and a wrong address), over TCP the answer.
        ("tc.test", _) if !tcp => Some(Reply {
            rcode: 0,
            truncated: true,
            records: if qtype == A {
                vec![Rr::A("127.0.0.9", 3600)]
            } else {
                Vec::new()
            },
            wrong_id: false,
        }),
        ("tc.test", A) => ok(vec![Rr::A("127.0.0.1", 3600)]),
        // TTL 1 s, then an error.
        ("ttl.test", A) if before == 0 => ok(vec![Rr::A("127.0.0.1", 1)]),
        ("ttl.test", A) => rcode(2),
        // Never answered.
        ("slow.test", _) => None,
        // The first of two servers fails.
        ("2.test", _) => rcode(2),
        // Answers nginx drops: the question goes to the next server after 5 s.
        ("id.test", A) => Some(Reply {
            wrong_id: true,
            ..ok(vec![Rr::A("127.0.0.9", 3600)])?
        }),
        ("id.test", AAAA) => rcode(1),
        _ => ok(Vec::new()),
    }
}

/// The second server of `/two`.
fn script_two(name: &str, qtype: u16, _tcp: bool, _before: usize) -> Option<Reply> {
    match (name, qtype) {
        ("2.test" | "id.test", A) => ok(vec![Rr::A("127.0.0.1", 3600)]),
        _ => ok(Vec::new()),
    }
}

fn conf(one: u16, two: u16, dead: u16, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  proxy_connect_timeout 2s;
  server {{
    listen 127.0.0.1:{port};
    resolver 127.0.0.1:{one};
    location /s1 {{ proxy_pass http://$host:{dead}; error_page 502 = /tried; }}
    location /s2 {{ proxy_pass http://$host:{dead}; error_page 502 = /tried; }}
    location / {{
      resolver 127.0.0.1:{one};
      resolver_timeout 5s;
      proxy_pass http://$host:{dead};
      error_page 502 = /tried;
    }}
    location /two {{
      resolver 127.0.0.1:{one} 127.0.0.1:{two};
      proxy_pass http://$host:{dead};
      error_page 502 = /tried;
    }}
    location /timeout {{
      resolver 127.0.0.1:{one};
      resolver_timeout 1s;
      proxy_pass http://$host:{dead};
      error_page 502 = /tried;
    }}
    location /refused {{
      resolver 127.0.0.1:{dead};
      resolver_timeout 1s;
      proxy_pass http://$host:{dead};
      error_page 502 = /tried;
    }}
    location = /tried {{ return 200 "tried $upstream_addr"; }}
  }}
}}
"#
    )
}

/// One balancer with its own DNS servers (their answers depend on what they were
/// asked before).
struct Run {
    proxy: Proxy,
    port: u16,
    one: FakeDns,
    two: FakeDns,
    dead: u16,
}

impl Run {
    fn start(bin: PathBuf, dead: u16) -> Run {
        let one = FakeDns::start(script_one);
        let two = FakeDns::start(script_two);
        let (proxy, [port]) = Proxy::start_bin_on(bin, |[p]| conf(one.port, two.port, dead, p));
        Run {
            proxy,
            port,
            one,
            two,
            dead,
        }
    }

    /// What `path` with `Host: host` answers, the dead port as `DEAD`.
    fn ask(&self, host: &str, path: &str) -> String {
        match http_get(self.port, path, host) {
            Ok(r) => format!("{} {}", r.status, r.text()).replace(&self.dead.to_string(), "DEAD"),
            Err(e) => format!("error: {e}"),
        }
    }
}

/// (Host, path, what ferrolb answers). No step gets several addresses from the
/// cache, which nginx hands out from a random one.
type Step = (&'static str, &'static str, &'static str);

const STEPS: &[Step] = &[
    ("a.test", "/", "200 tried 127.0.0.1:DEAD"),
    ("n-c.test", "/", "200 tried 127.0.0.2:DEAD"),
    ("c1-c2.test", "/", "200 tried [::1]:DEAD"),
    (
        "cn-n.test",
        "/",
        "200 tried 127.0.0.4:DEAD, 127.0.0.5:DEAD, [::1]:DEAD",
    ),
    ("n-e.test", "/", "200 tried "),
    ("nx.test", "/", "200 tried "),
    ("cn.test", "/", "200 tried 127.0.0.1:DEAD"),
    ("long.test", "/", "200 tried 127.0.0.1:DEAD"),
    ("tc.test", "/", "200 tried 127.0.0.1:DEAD"),
    // The first server fails, the error is not cached, the next name goes to the
    // second server, whose answer is.
    ("2.test", "/two", "200 tried "),
    ("2.test", "/two", "200 tried 127.0.0.1:DEAD"),
    ("2.test", "/two", "200 tried 127.0.0.1:DEAD"),
    ("ttl.test", "/", "200 tried 127.0.0.1:DEAD"),
    ("ttl.test", "/", "200 tried 127.0.0.1:DEAD"),
    ("slow.test", "/timeout", "200 tried "),
    // No DNS server on the UDP port: nginx's send() errors, then the timeout.
    ("refused.test", "/refused", "200 tried "),
    // Locations inheriting one `resolver` share its cache.
    ("shared.test", "/s1", "200 tried 127.0.0.1:DEAD"),
    ("shared.test", "/s2", "200 tried 127.0.0.1:DEAD"),
];

/// ferrolb, and Debian's nginx on the same config when it is installed.
fn start_both(dead: u16) -> (Run, Option<Run>) {
    let ours = Run::start(proxy_bin(), dead);
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx =
        (nginx_bin.exists() && !bin_is_nginx(&proxy_bin())).then(|| Run::start(nginx_bin, dead));
    (ours, nginx)
}

/// Each of `lines` is in the error log of ferrolb and of nginx.
fn assert_logged(ours: &Run, nginx: Option<&Run>, lines: &[&str]) {
    for (who, run) in [("ferrolb", Some(ours)), ("nginx", nginx)] {
        let Some(run) = run else { continue };
        let log = run.proxy.error_log();
        for line in lines {
            assert!(log.contains(line), "{who}: {line}\n{log}");
        }
    }
}

#[test]
fn resolver_matches_nginx() {
    let dead = DeadPort::new();
    let (ours, nginx) = start_both(dead.port);
    let mut mismatches = Vec::new();
    let mut step = |host: &str, path: &str, expect: Option<&str>| {
        let got = ours.ask(host, path);
        if let Some(expect) = expect {
            assert_eq!(got, expect, "{host}{path}\n{}", ours.proxy.diagnostics());
        }
        if let Some(nginx) = &nginx {
            let theirs = nginx.ask(host, path);
            if got != theirs {
                mismatches.push(format!(
                    "{host}{path}\n  ferrolb: {got}\n  nginx:   {theirs}"
                ));
            }
        }
        got
    };
    for (host, path, expect) in STEPS {
        step(host, path, Some(expect));
    }
    // The TTL of 1 s runs out (nginx counts whole seconds: 2 s to be sure); the
    // server now fails.
    let expired = Instant::now() + Duration::from_millis(2100);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    step("ttl.test", "/", Some("200 tried "));

    // Which server was asked what, and how often: the cache and the turns.
    let one = ours.one.asked();
    let two = ours.two.asked();
    let count = |asked: &[Asked], name: &str| asked.iter().filter(|a| a.0 == name).count();
    assert_eq!(
        count(&one, "a.test"),
        2,
        "a.test asked once (A and AAAA), then cached: {one:?}"
    );
    assert_eq!(count(&one, "2.test"), 2, "{one:?}");
    assert_eq!(count(&one, "shared.test"), 2, "{one:?}");
    assert_eq!(count(&two, "2.test"), 2, "{two:?}");
    assert_eq!(count(&one, "ttl.test"), 4, "{one:?}");
    assert!(one.contains(&("tc.test".to_owned(), A, true)), "{one:?}");
    if let Some(nginx) = &nginx {
        for (what, o, n) in [
            ("first", &one, nginx.one.asked()),
            ("second", &two, nginx.two.asked()),
        ] {
            if *o != n {
                mismatches.push(format!(
                    "questions to the {what} server\n  ferrolb: {o:?}\n  nginx:   {n:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "differ from nginx:\n{}",
        mismatches.join("\n")
    );

    assert_logged(
        &ours,
        nginx.as_ref(),
        &[
            "n-e.test could not be resolved (2: Server failure)",
            "nx.test could not be resolved (3: Host not found), client: 127.0.0.1, server: , \
             request: \"GET / HTTP/1.",
            "\", host: \"nx.test\"",
            "slow.test could not be resolved (110: Operation timed out)",
            "send() failed (111: Connection refused) while resolving, resolver: 127.0.0.1:",
            "refused.test could not be resolved (110: Operation timed out)",
        ],
    );
}

/// An answer with another id and a FORMERR are logged and dropped; 5 s later the
/// questions go to the next server, which answers.
#[test]
fn dropped_answers_wait_for_the_resend_to_the_next_server_as_nginx() {
    let dead = DeadPort::new();
    let (ours, nginx) = start_both(dead.port);
    // Both at once: the 5 s run side by side.
    let started = Instant::now();
    let (got, theirs) = std::thread::scope(|s| {
        let theirs = nginx.as_ref().map(|n| s.spawn(|| n.ask("id.test", "/two")));
        (ours.ask("id.test", "/two"), theirs.map(|t| t.join()))
    });
    assert_eq!(
        got,
        "200 tried 127.0.0.1:DEAD",
        "{}",
        ours.proxy.diagnostics()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "answered before the resend"
    );
    let one = ours.one.asked();
    let two = ours.two.asked();
    assert_eq!(
        (one.len(), two.len()),
        (2, 2),
        "A and AAAA to each server: {one:?} {two:?}"
    );
    assert_logged(
        &ours,
        nginx.as_ref(),
        &[
            "wrong ident ",
            "DNS error (1: Format error), query id:",
            "name:\"id.test\"",
        ],
    );
    if let (Some(nginx), Some(theirs)) = (&nginx, theirs) {
        let theirs = theirs.unwrap_or_else(|_| "nginx's request panicked".to_owned());
        assert_eq!(got, theirs, "ferrolb and nginx differ");
        assert_eq!((one, two), (nginx.one.asked(), nginx.two.asked()));
    }
}
