//! Automatic certificates with nginx's ACME syntax (`acme_issuer`, `acme_certificate`,
//! `$acme_certificate`), end to end against Debian's `pebble` (an RFC 8555 test CA)
//! with `pebble-challtestsrv` as its DNS (every name resolves to 127.0.0.1), so pebble
//! validates HTTP-01 by connecting to ferrolb's plain-HTTP listener. Each test starts
//! its own pebble on free loopback ports with an HTTPS certificate made here (trusted
//! by ferrolb through `ssl_trusted_certificate`), and checks what curl sees against
//! pebble's root (from its management API, `/roots/0`).
//!
//! Cases: a certificate obtained and served; kept across a restart (no new order);
//! a failing order (pebble's HTTP-01 port has no listener) reported with the CA's text
//! and retried at once after a reload that fixes it; renewal at two thirds of a
//! short lifetime (pebble's `certificateValidityPeriod`) while serving, a kept-alive
//! TLS connection living across the swap, with the user's own `account_key`; external
//! account binding with a CA that requires it; `ferrolb -t` errors with `file:line`.
//!
//! Without `pebble` installed (scripts/test.sh installs it) the end-to-end tests say
//! so and pass on a developer's machine; under CI (`CI` set) they fail.

mod acme_support;
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use acme_support::*;
use common::*;

/// A TLS connection kept open by `openssl s_client`, for requests before and after
/// a certificate swap.
struct KeptTls {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl KeptTls {
    fn open(name: &str, port: u16) -> KeptTls {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-servername", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        KeptTls { child, lines }
    }

    /// One keep-alive request; panics unless the answer comes on this connection.
    fn get(&mut self, host: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        write!(stdin, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write request");
        stdin.flush().expect("flush");
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(5))
                .expect("an answer on the kept-alive TLS connection");
            if line.contains("hello over acme") {
                return;
            }
        }
    }
}

impl Drop for KeptTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin API's `/status` certificates member.
fn status_certificates(admin: u16) -> serde_json::Value {
    let r = http_get(admin, "/status", "localhost").expect("GET /status");
    let v: serde_json::Value = serde_json::from_str(&r.text()).expect("status JSON");
    v["certificates"].clone()
}

fn metrics(admin: u16) -> String {
    http_get(admin, "/metrics", "localhost")
        .expect("GET /metrics")
        .text()
}

#[test]
fn certificate_is_obtained_served_and_kept_across_a_restart() {
    let http = free_port();
    let Some(pebble) = Pebble::start(http, None) else {
        return;
    };
    let state = fresh_temp_dir("acme-state").join("acme_pebble");
    let started = std::time::Instant::now();
    let (proxy, [tls, admin]) =
        Proxy::start_on(|[tls, admin]| conf(&pebble, &state, "site.test", tls, http, admin));
    // Before the first certificate, handshakes for the server fail (as nginx's with
    // an empty $acme_certificate); then the issued one is served, valid for the name.
    let line = proxy.wait_log(
        0,
        "acme: certificate for \"site.test\" issued by issuer \"pebble\"",
        LIMIT,
    );
    assert!(line.contains("valid until"), "{line}");
    eprintln!(
        "acme: account registered and certificate issued by pebble {:?} after the start",
        started.elapsed()
    );
    assert_eq!(
        curl_verified(&pebble, "site.test", tls).as_deref(),
        Ok("hello over acme\n")
    );
    // Another name is not in the certificate: curl refuses it.
    let other = curl_verified(&pebble, "other.test", tls);
    assert!(other.is_err(), "{other:?}");

    // State: the account and the key readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let files: Vec<PathBuf> = fs::read_dir(&state)
        .expect("state_path")
        .map(|e| e.expect("entry").path())
        .collect();
    let key = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .expect("key file");
    let crt = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "crt"))
        .expect("crt file");
    assert_eq!(mode(key), 0o600);
    assert_eq!(mode(&state.join("account.json")), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert!(crt
        .file_name()
        .expect("name")
        .to_string_lossy()
        .starts_with("site.test-"));

    // The admin API shows it: names, issuer, expiry.
    let certs = status_certificates(admin);
    assert_eq!(
        certs[0]["names"],
        serde_json::json!(["site.test"]),
        "{certs}"
    );
    assert_eq!(certs[0]["issuer"], "pebble");
    assert_eq!(certs[0]["state"], "valid");
    assert_eq!(certs[0]["issued"], 1);
    let expires_in = certs[0]["expires_in"].as_i64().expect("expires_in");
    assert!(expires_in > 86_400 * 365, "{certs}");
    let m = metrics(admin);
    assert!(
        m.lines().any(
            |l| l.starts_with("ferrolb_acme_certificate_expiry_seconds{")
                && l.contains("issuer=\"pebble\"")
                && l.contains("names=\"site.test\"")
        ),
        "{m}"
    );
    let served = served_certificate("site.test", tls);
    let on_disk = fs::read(crt).expect("read crt");
    drop(proxy);

    // A restart serves the kept certificate from the first handshake and orders none.
    let (proxy, [tls2, admin2]) =
        Proxy::start_on(|[tls, admin]| conf(&pebble, &state, "site.test", tls, http, admin));
    assert_eq!(
        curl_verified(&pebble, "site.test", tls2).as_deref(),
        Ok("hello over acme\n")
    );
    assert_eq!(served_certificate("site.test", tls2), served);
    let certs = wait_until(LIMIT, "the kept certificate in /status", || {
        let c = status_certificates(admin2);
        (c[0]["state"] == "valid").then_some(c)
    });
    assert_eq!(certs[0]["issued"], 0, "{certs}");
    assert_eq!(fs::read(crt).expect("read crt"), on_disk);
    assert!(
        !proxy.error_log().contains("acme: certificate"),
        "{}",
        proxy.error_log()
    );
}

#[test]
fn failing_order_is_reported_and_retried_then_renewed_before_expiry() {
    // pebble validates on a port where nothing listens yet.
    let http = free_port();
    // Certificates live 9 s: renewed at about 6 s.
    let Some(pebble) = Pebble::start(http, Some(9)) else {
        return;
    };
    let state = fresh_temp_dir("acme-state").join("acme_pebble");
    // The account key is the user's own (nginx's `account_key FILE`).
    let account_key = state.with_file_name("account.pem");
    fs::write(
        &account_key,
        rcgen::KeyPair::generate()
            .expect("account key")
            .serialize_pem(),
    )
    .expect("write account key");
    let issuer_extra = format!("account_key {};", account_key.display());
    let conf = |tls, http, admin| {
        conf_with(
            &pebble,
            &state,
            "retry.test",
            tls,
            http,
            admin,
            &issuer_extra,
        )
    };
    let (mut proxy, [tls, admin, _elsewhere]) =
        Proxy::start_on(|[tls, admin, elsewhere]| conf(tls, elsewhere, admin));
    let line = proxy.wait_log(
        0,
        "acme: certificate for \"retry.test\" from issuer \"pebble\" failed",
        LIMIT,
    );
    // The CA's own words, and when the next attempt is.
    assert!(
        line.contains("API error: Get \"http://retry.test:"),
        "{line}"
    );
    assert!(
        line.contains("urn:ietf:params:acme:error:connection"),
        "{line}"
    );
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains("next attempt in 60s"), "{line}");
    let certs = status_certificates(admin);
    assert_eq!(certs[0]["state"], "failed", "{certs}");
    assert!(
        certs[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connection refused")),
        "{certs}"
    );
    assert!(metrics(admin)
        .contains("ferrolb_acme_certificate_failing{issuer=\"pebble\",names=\"retry.test\"} 1"));
    let refused = curl_verified(&pebble, "retry.test", tls);
    assert!(refused.is_err(), "{refused:?}");

    // A reload that puts the plain listener where pebble looks retries at once.
    let from = proxy.error_log().len();
    proxy.reload_with(&conf(tls, http, admin));
    proxy.wait_log(from, "acme: certificate for \"retry.test\" issued", LIMIT);
    assert_eq!(
        curl_verified(&pebble, "retry.test", tls).as_deref(),
        Ok("hello over acme\n")
    );
    let first = served_certificate("retry.test", tls);

    // Renewal at two thirds of the lifetime, served without a reload; a TLS
    // connection kept alive across the swap goes on with its session.
    let mut kept = KeptTls::open("retry.test", tls);
    kept.get("retry.test");
    let from = proxy.error_log().len();
    proxy.wait_log(from, "acme: certificate for \"retry.test\" renewed", LIMIT);
    kept.get("retry.test");
    let second = served_certificate("retry.test", tls);
    assert_ne!(first, second, "the renewed certificate is served");
    assert_eq!(
        curl_verified(&pebble, "retry.test", tls).as_deref(),
        Ok("hello over acme\n")
    );
    let certs = status_certificates(admin);
    assert!(
        certs[0]["issued"].as_u64().is_some_and(|n| n >= 2),
        "{certs}"
    );
    assert_eq!(certs[0]["last_error"], serde_json::Value::Null);
}

#[test]
fn challenges_need_a_plain_listener_and_one_is_added() {
    // No plain-HTTP server: `-t` says port 80 is added for the challenges.
    let dir = fresh_temp_dir("acme-t");
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        "events {}\nhttp {\n    acme_issuer le { uri https://127.0.0.1:1/dir; state_path off; }\n    server {\n        listen 127.0.0.1:8443 ssl;\n        server_name .example.test ~^re;\n        acme_certificate le;\n        ssl_certificate $acme_certificate;\n        ssl_certificate_key $acme_certificate_key;\n    }\n}\n",
    )
    .expect("write conf");
    let out = check_config(&dir, &conf);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("listening on 0.0.0.0:80 for ACME HTTP-01 challenges"),
        "{text}"
    );
    assert!(
        text.contains("unsupported regular expression in server_name: ~^re"),
        "{text}"
    );
}

#[test]
fn bad_acme_blocks_are_errors_with_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "acme_issuer le { contact a@b.test; }\n server { listen 127.0.0.1:1; }",
            "nginx.conf:3: \"uri\" is missing in acme_issuer \"le\"",
        ),
        (
            "acme_issuer le {\n uri https://ca.test/dir;\n challenge tls-alpn-01; }",
            "nginx.conf:5: challenge \"tls-alpn-01\" is not supported",
        ),
        (
            "acme_issuer le {\n uri https://ca.test/dir;\n colour blue; }",
            "nginx.conf:5: unknown directive \"colour\"",
        ),
        (
            "server {\n listen 127.0.0.1:1;\n acme_certificate nope; }",
            "nginx.conf:5: issuer \"nope\" is missing",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; }\n server {\n listen 127.0.0.1:1;\n server_name a.test;\n acme_certificate le key=rsa:2048; }",
            "nginx.conf:7: key \"rsa:2048\" is not supported",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; }\n server {\n listen 127.0.0.1:1;\n acme_certificate le *.a.test; }",
            "nginx.conf:6: \"acme_certificate\": wildcard name \"*.a.test\" cannot be validated with the http-01 challenge",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; }\n server {\n listen 127.0.0.1:1;\n acme_certificate le; }",
            "nginx.conf:6: \"acme_certificate\": no identifiers found in \"server_name\"",
        ),
        (
            "server {\n listen 127.0.0.1:1 ssl;\n ssl_certificate $acme_certificate;\n ssl_certificate_key $acme_certificate_key; }",
            "nginx.conf:5: \"$acme_certificate\" is empty in a server without \"acme_certificate\"",
        ),
        (
            "acme_shared_zone 1M;\n server { listen 127.0.0.1:1; }",
            "nginx.conf:3: \"acme_shared_zone\" must have \"zone\" parameter",
        ),
    ];
    for (body, expected) in cases {
        let dir = fresh_temp_dir("acme-bad");
        let conf = dir.join("nginx.conf");
        fs::write(&conf, format!("events {{}}\nhttp {{\n{body}\n}}\n")).expect("write conf");
        let out = check_config(&dir, &conf);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {body}");
        let (place, message) = expected.split_once(": ").expect("place: message");
        let line = text
            .lines()
            .find(|l| l.contains("[emerg]"))
            .unwrap_or_default();
        assert!(
            line.contains(message) && line.ends_with(place),
            "{body}\nwanted {message} in {place}\ngot {text}"
        );
    }
}

#[test]
fn external_account_binding_registers_with_the_mac_key() {
    // A CA that requires external account binding, with one key id and MAC key.
    let http = free_port();
    let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let settings = format!(
        ",\n    \"externalAccountBindingRequired\": true,\n    \"externalAccountMACKeys\": {{\"kid-ferrolb\": \"{mac}\"}}"
    );
    let Some(pebble) = Pebble::start_with(http, &settings) else {
        return;
    };
    let state = fresh_temp_dir("acme-state").join("acme_pebble");
    let eab = format!("external_account_key kid-ferrolb data:{mac};");
    let (proxy, [tls, _admin]) = Proxy::start_on(|[tls, admin]| {
        conf_with(&pebble, &state, "eab.test", tls, http, admin, &eab)
    });
    proxy.wait_log(0, "acme: certificate for \"eab.test\" issued", LIMIT);
    assert_eq!(
        curl_verified(&pebble, "eab.test", tls).as_deref(),
        Ok("hello over acme\n")
    );
}
