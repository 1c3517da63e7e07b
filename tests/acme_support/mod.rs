//! A pebble ACME CA for the tests (tests/acme.rs, tests/dashboard.rs): Debian's
//! `pebble` with `pebble-challtestsrv` as its DNS (every name is 127.0.0.1), on free
//! loopback ports, with an HTTPS certificate made here; and ferrolb configurations
//! that get their certificate from it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

pub const LIMIT: Duration = Duration::from_secs(20);

/// A pebble CA and its DNS stub, stopped on drop.
pub struct Pebble {
    pub dir: PathBuf,
    pub dns: Child,
    pub ca: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// The file of the CA that signed pebble's own HTTPS certificate.
    pub api_ca: PathBuf,
    /// The file of pebble's issuing root (what curl trusts).
    pub root: PathBuf,
    /// Whether dropping it removes `dir` (not for a failed start that is retried).
    owns_dir: bool,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port`, issuing certificates valid for
    /// `validity` seconds (pebble's default, 5 years, when `None`). `None` when pebble
    /// is not installed.
    pub fn start(http_port: u16, validity: Option<u64>) -> Option<Pebble> {
        let settings = validity.map_or(String::new(), |v| {
            format!(",\n    \"certificateValidityPeriod\": {v}")
        });
        Pebble::start_with(http_port, &settings)
    }

    /// [`Pebble::start`] with more members of pebble's settings (`,\n "name": value`;
    /// a member given again overrides the default, as Go's JSON decoder keeps the last).
    pub fn start_with(http_port: u16, settings: &str) -> Option<Pebble> {
        if !Path::new("/usr/bin/pebble").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "/usr/bin/pebble is missing in CI: scripts/test.sh installs it"
            );
            eprintln!("SKIPPED: /usr/bin/pebble is not installed (apt-get install pebble; scripts/test.sh does)");
            return None;
        }
        let dir = fresh_temp_dir("pebble");
        // pebble's own HTTPS certificate, signed by a CA made here.
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferrolb test ACME API CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).expect("cert");
        let api_ca = dir.join("api-ca.pem");
        fs::write(&api_ca, ca_cert.pem()).expect("write CA");
        fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
        fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");

        // The ports are free when probed; another process may take one before pebble
        // binds it: then pebble exits saying so, and it starts again on others.
        for _ in 0..3 {
            match Pebble::try_start(&dir, &api_ca, http_port, settings) {
                Ok(pebble) => return Some(pebble),
                Err(why) if says_port_taken(&why) => eprintln!("pebble: a port was taken: {why}"),
                Err(why) => panic!("pebble did not start: {why}"),
            }
        }
        panic!("pebble found a port taken in each of 3 starts");
    }

    fn try_start(
        dir: &Path,
        api_ca: &Path,
        http_port: u16,
        settings: &str,
    ) -> Result<Pebble, String> {
        let (api, management, dns, tls_port, dns_management) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        fs::write(
            dir.join("pebble.json"),
            format!(
                r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{api}",
    "managementListenAddress": "127.0.0.1:{management}",
    "certificate": "{dir}/cert.pem",
    "privateKey": "{dir}/key.pem",
    "httpPort": {http_port},
    "tlsPort": {tls_port},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false{settings}
  }}
}}"#,
                dir = dir.display()
            ),
        )
        .expect("write pebble.json");
        let log = |name: &str| fs::File::create(dir.join(name)).expect("log file");
        let dns_port = dns;
        let dns = Command::new("/usr/bin/pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("start pebble-challtestsrv");
        let ca = Command::new("/usr/bin/pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("start pebble");
        let mut pebble = Pebble {
            directory: format!("https://127.0.0.1:{api}/dir"),
            root: dir.join("root.pem"),
            api_ca: api_ca.to_owned(),
            dir: dir.to_owned(),
            dns,
            ca,
            owns_dir: false,
        };
        // Up when the management API answers (its root is what curl trusts) and the
        // DNS stub says it serves; either process exiting first is a failed start.
        let mut root = None;
        let up = poll(LIMIT, || {
            for c in [&mut pebble.ca, &mut pebble.dns] {
                if let Ok(Some(status)) = c.try_wait() {
                    return Some(Err(format!("exited ({status})")));
                }
            }
            if root.is_none() {
                let out = Command::new("curl")
                    .args(["-sf", "--cacert"])
                    .arg(&pebble.api_ca)
                    .arg(format!("https://127.0.0.1:{management}/roots/0"))
                    .output()
                    .ok()?;
                root = (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout);
            }
            let dns_up =
                fs::read_to_string(pebble.dir.join("dns.log")).is_ok_and(|l| l.contains("DNS"));
            (root.is_some() && dns_up).then_some(Ok(()))
        });
        let why = |what: String| {
            format!(
                "{what}\n--- pebble ---\n{}{}\n--- dns ---\n{}{}",
                fs::read_to_string(dir.join("pebble.log")).unwrap_or_default(),
                fs::read_to_string(dir.join("pebble.err")).unwrap_or_default(),
                fs::read_to_string(dir.join("dns.log")).unwrap_or_default(),
                fs::read_to_string(dir.join("dns.err")).unwrap_or_default(),
            )
        };
        match up {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(why(e)),
            None => return Err(why(format!("not up after {LIMIT:?}"))),
        }
        fs::write(&pebble.root, root.unwrap_or_default()).expect("write root");
        pebble.owns_dir = true;
        Ok(pebble)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.ca, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.owns_dir {
            return;
        }
        if std::thread::panicking() {
            eprintln!("pebble log:\n{}", self.log());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The configuration: an issuer on `pebble`, a TLS server for `name` with its ACME
/// certificate on `tls`, a plain-HTTP server on `http`, the admin API on `admin`.
pub fn conf(pebble: &Pebble, state: &Path, name: &str, tls: u16, http: u16, admin: u16) -> String {
    conf_with(pebble, state, name, tls, http, admin, "")
}

/// [`conf`] with more lines in the `acme_issuer` block.
pub fn conf_with(
    pebble: &Pebble,
    state: &Path,
    name: &str,
    tls: u16,
    http: u16,
    admin: u16,
    issuer_extra: &str,
) -> String {
    format!(
        r#"events {{}}
http {{
    acme_issuer pebble {{
        uri {uri};
        contact admin@example.test;
        state_path {state};
        accept_terms_of_service;
        ssl_trusted_certificate {ca};
        {issuer_extra}
    }}
    acme_shared_zone zone=ngx_acme_shared:1M;
    ferrolb_admin 127.0.0.1:{admin};

    server {{
        listen 127.0.0.1:{tls} ssl;
        server_name {name};
        acme_certificate pebble;
        ssl_certificate $acme_certificate;
        ssl_certificate_key $acme_certificate_key;
        ssl_certificate_cache max=2;
        location / {{ return 200 "hello over acme\n"; }}
    }}
    server {{
        listen 127.0.0.1:{http};
        location / {{ return 404; }}
    }}
}}
"#,
        uri = pebble.directory,
        state = state.display(),
        ca = pebble.api_ca.display(),
    )
}

/// curl `https://NAME:PORT/` verifying against pebble's root: `Ok(body)` or
/// `Err(curl's error)`.
pub fn curl_verified(pebble: &Pebble, name: &str, port: u16) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(&pebble.root)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The served certificate's `notAfter` and serial, as openssl prints them.
pub fn served_certificate(name: &str, port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial -enddate"
        ))
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
