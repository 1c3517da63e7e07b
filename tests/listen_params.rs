//! `listen` parameters on the real listening sockets: every worker's socket is copied
//! out of the running process (`tests/tools/listen_sockopts.py`, pidfd_getfd) and its
//! options read with getsockopt; the backlog is `ss -ltn`'s Send-Q. The same
//! configuration run by Debian's nginx must give the same values. Port ranges,
//! `ipv6only=off`, keepalive on accepted connections, a reload that changes the
//! options, and nginx's "duplicate listen options".

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin_is_nginx, config_test, http_get, proxy_bin, Proxy};

/// One server with every option on `tuned`, one with none on `plain`.
fn conf(tuned: u16, plain: u16, workers: u32, backlog: u32) -> String {
    format!(
        "worker_processes {workers};
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{tuned} backlog={backlog} rcvbuf=64k sndbuf=48k so_keepalive=70:20:4 deferred fastopen=5 reuseport;
        location / {{ return 200 \"tuned\\n\"; }}
    }}
    server {{
        listen 127.0.0.1:{plain};
        location / {{ return 200 \"plain\\n\"; }}
    }}
}}
"
    )
}

/// The options of every listening socket of `pid` on `port`, one JSON object each.
fn sockopts(pid: u32, port: u16) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/listen_sockopts.py");
    let python = std::env::var_os("FERROLB_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let out = Command::new(python)
        .arg(script)
        .arg(pid.to_string())
        .arg(port.to_string())
        .output()
        .expect("run listen_sockopts.py with python");
    assert!(
        out.status.success(),
        "listen_sockopts.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from listen_sockopts.py")
}

/// The backlog of each listening socket on `port` (Send-Q of `ss -ltn`).
fn backlogs(port: u16) -> Vec<u32> {
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

#[test]
fn socket_options_are_set_on_every_worker_socket_as_nginx_sets_them() {
    let (ferrolb, [tuned, plain]) = Proxy::start_on(|[t, p]| conf(t, p, 2, 77));
    assert_eq!(http_get(tuned, "/", "x").expect("GET").text(), "tuned\n");
    let ours = sockopts(ferrolb.pid(), tuned);
    assert_eq!(ours.len(), 2, "one socket per worker thread: {ours:?}");
    let want = serde_json::json!({
        "family": "inet",
        // The kernel doubles what setsockopt asks for.
        "rcvbuf": 2 * 64 * 1024,
        "sndbuf": 2 * 48 * 1024,
        "keepalive": 1,
        "keepidle": 70,
        "keepintvl": 20,
        "keepcnt": 4,
        "defer_accept": 1,
        "fastopen": 5,
        "reuseport": 1,
    });
    for s in &ours {
        assert_eq!(s, &want);
    }
    assert_eq!(backlogs(tuned), [77, 77]);
    assert_eq!(backlogs(plain), [511, 511], "nginx's default backlog");
    for s in sockopts(ferrolb.pid(), plain) {
        assert_eq!(
            (&s["keepalive"], &s["defer_accept"], &s["fastopen"]),
            (&0.into(), &0.into(), &0.into()),
            "{s}"
        );
    }

    // Debian's nginx on the same configuration sets the same values.
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (nginx, [n_tuned, n_plain]) =
            Proxy::start_bin_on(nginx_bin, |[t, p]| conf(t, p, 1, 77));
        let theirs = sockopts(nginx.pid(), n_tuned);
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert_eq!(theirs[0], want, "nginx");
        assert_eq!(backlogs(n_tuned), [77]);
        assert_eq!(backlogs(n_plain), [511]);
    }
}

#[test]
fn keepalive_reaches_accepted_connections_and_a_reload_applies_new_options() {
    let (mut ferrolb, [tuned, plain]) = Proxy::start_on(|[t, p]| conf(t, p, 1, 77));
    // An accepted connection inherits SO_KEEPALIVE: its keepalive timer runs.
    let client = std::net::TcpStream::connect(("127.0.0.1", tuned)).expect("connect");
    std::io::Write::write_all(&mut &client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut &client, &mut head).expect("response");
    let local = client.local_addr().expect("addr").port();
    let ss = Command::new("ss")
        .args(["-tnoH", &format!("sport = :{tuned} and dport = :{local}")])
        .output()
        .expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(ss.contains("timer:(keepalive"), "{ss}");
    drop(client);

    // A reload with another backlog binds new sockets with it; the address keeps
    // answering.
    ferrolb.reload_with(&conf(tuned, plain, 1, 33));
    ferrolb.wait_log(0, "with the new listen options", Duration::from_secs(10));
    common::wait_until(Duration::from_secs(10), "backlog 33", || {
        (backlogs(tuned) == [33]).then_some(())
    });
    assert_eq!(http_get(tuned, "/", "x").expect("GET").text(), "tuned\n");
    assert_eq!(backlogs(plain), [511]);
}

#[test]
fn port_ranges_and_ipv6only_off() {
    let first = common::free_port_run(3);
    let v6 = common::free_port();
    let text = format!(
        "events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{first}-{last};
        listen [::]:{v6} ipv6only=off;
        location / {{ return 200 \"$server_port\\n\"; }}
    }}
}}
",
        last = first + 2
    );
    let ferrolb = Proxy::start(&text);
    for port in first..=first + 2 {
        common::wait_until(Duration::from_secs(10), "range port", || {
            http_get(port, "/", "x").ok()
        });
        assert_eq!(
            http_get(port, "/", "x").expect("GET").text(),
            format!("{port}\n")
        );
    }
    // ipv6only=off: the IPv6 wildcard takes IPv4 connections too.
    assert_eq!(
        http_get(v6, "/", "x").expect("GET over IPv4").text(),
        format!("{v6}\n")
    );
    let opts = sockopts(ferrolb.pid(), v6);
    assert!(opts.iter().all(|s| s["v6only"] == 0), "{opts:?}");
}

#[test]
fn conflicting_listen_options_are_refused_as_nginx() {
    let dir = common::fresh_temp_dir("listen-dup");
    let (ok, out) = config_test(
        &dir,
        "events {}\nhttp {\n server { listen 127.0.0.1:8080 backlog=10; }\n server { listen 127.0.0.1:8080 rcvbuf=8k; }\n}\n",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("duplicate listen options for 127.0.0.1:8080"),
        "{out}"
    );
    let (ok, out) = config_test(
        &dir,
        "events {}\nhttp {\n server { listen 127.0.0.1:8080 setfib=1; }\n}\n",
    );
    assert!(!ok && out.contains("setfib"), "{out}");
}
