//! HTTPS as production sites run it, through real `curl` and `openssl s_client`, with
//! certificates made by `openssl` here: SNI choosing the server and its certificate
//! (an unknown name going to the default server), RSA and ECDSA certificates side by
//! side, TLS 1.2-only and 1.3-only clients, certbot's `options-ssl-nginx.conf`,
//! `ssl_dhparam` and port-80 redirect server, plain HTTP sent to the TLS port, client
//! certificates (`ssl_verify_client on|optional`), session resumption, and `$scheme`
//! reaching Django. Every answer is compared with Debian's nginx on the same config;
//! bad certificate files are configuration errors with `file:line`, and a reload
//! swaps a certificate (a bad one keeps the old).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

/// The certificates of these tests, made once per run.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn get() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let dir = fresh_temp_dir("tls-pki");
            let pki = Pki { dir };
            pki.ca("ca", "Test CA");
            pki.ca("rogue-ca", "Rogue CA");
            pki.leaf(
                "ca",
                "example.com.rsa",
                "rsa",
                "/CN=example.com",
                "DNS:example.com,DNS:www.example.com",
                "serverAuth",
            );
            pki.leaf(
                "ca",
                "example.com.ec",
                "ec",
                "/CN=example.com",
                "DNS:example.com,DNS:www.example.com",
                "serverAuth",
            );
            pki.leaf(
                "ca",
                "example.com.second",
                "ec",
                "/CN=example.com/O=second",
                "DNS:example.com",
                "serverAuth",
            );
            pki.leaf(
                "ca",
                "other.test",
                "rsa",
                "/CN=other.test",
                "DNS:other.test",
                "serverAuth",
            );
            pki.leaf(
                "ca",
                "backend",
                "ec",
                "/CN=backend.internal",
                "DNS:backend.internal",
                "serverAuth",
            );
            pki.leaf(
                "ca",
                "client",
                "ec",
                "/C=US/O=Test Org, Inc./CN=client one",
                "DNS:client",
                "clientAuth",
            );
            pki.leaf(
                "rogue-ca",
                "rogue-client",
                "ec",
                "/CN=rogue",
                "DNS:rogue",
                "clientAuth",
            );
            // An X.509 v1 certificate, as `openssl req -x509` makes it without
            // extensions (nginx's own test suite uses such).
            fs::write(
                pki.path("v1.cnf"),
                "[ req ]\ndistinguished_name = dn\n[ dn ]\n",
            )
            .expect("v1.cnf");
            pki.openssl(&[
                "req",
                "-x509",
                "-new",
                "-config",
                "v1.cnf",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=v1.test",
                "-keyout",
                "v1.key",
                "-out",
                "v1.pem",
                "-days",
                "2",
            ]);
            // An OCSP response for the RSA certificate, for ssl_stapling_file.
            let serial = Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(pki.path("example.com.rsa.pem"))
                .output()
                .expect("serial");
            let serial = String::from_utf8_lossy(&serial.stdout)
                .trim()
                .trim_start_matches("serial=")
                .to_owned();
            fs::write(
                pki.path("index.txt"),
                format!("V\t391231235959Z\t\t{serial}\tunknown\t/CN=example.com\n"),
            )
            .expect("index");
            pki.openssl(&[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-issuer",
                "ca.pem",
                "-cert",
                "example.com.rsa.pem",
                "-respout",
                "example.com.rsa.ocsp",
                "-ndays",
                "2",
            ]);
            // A CRL of the test CA revoking the backend's certificate (v2: with a CRL
            // number, as webpki reads them).
            let serial = Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(pki.path("backend.pem"))
                .output()
                .expect("serial");
            let serial = String::from_utf8_lossy(&serial.stdout)
                .trim()
                .trim_start_matches("serial=")
                .to_owned();
            fs::write(
                pki.path("revoked.txt"),
                format!("R\t391231235959Z\t260101000000Z\t{serial}\tunknown\t/CN=backend.internal\n"),
            )
            .expect("revoked");
            fs::write(pki.path("crlnumber"), "01\n").expect("crlnumber");
            fs::write(
                pki.path("crl.cnf"),
                "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = revoked.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n",
            )
            .expect("crl.cnf");
            pki.openssl(&[
                "ca", "-gencrl", "-config", "crl.cnf", "-keyfile", "ca.key", "-cert", "ca.pem",
                "-out", "ca.crl",
            ]);
            // Full chains as certbot writes them: leaf then CA.
            for name in ["example.com.rsa", "example.com.ec"] {
                let chain = format!(
                    "{}{}",
                    fs::read_to_string(pki.path(&format!("{name}.pem"))).expect("leaf"),
                    fs::read_to_string(pki.path("ca.pem")).expect("ca")
                );
                fs::write(pki.path(&format!("{name}.fullchain.pem")), chain).expect("chain");
            }
            pki
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str, cn: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
        ]);
    }

    fn leaf(&self, ca: &str, name: &str, kind: &str, subj: &str, san: &str, usage: &str) {
        let key = format!("{name}.key");
        let newkey: &[&str] = match kind {
            "rsa" => &["-newkey", "rsa:2048"],
            _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let mut req = vec!["req"];
        req.extend_from_slice(newkey);
        let csr = format!("{name}.csr");
        req.extend_from_slice(&["-nodes", "-keyout", &key, "-out", &csr, "-subj", subj]);
        self.openssl(&req);
        let ext = format!("{name}.ext");
        fs::write(
            self.path(&ext),
            format!("subjectAltName={san}\nextendedKeyUsage={usage}\n"),
        )
        .expect("ext");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/letsencrypt")
        .join(name)
        .display()
        .to_string()
}

/// The site: certbot's HTTPS server (RSA and ECDSA, its options file and dhparam),
/// another name with its own certificate and tickets, certbot's port-80 redirect
/// server, and two client-certificate servers.
fn conf(pki: &Pki, [tls, plain, mtls, optional, reject]: [u16; 5], django: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
  upstream django {{ server 127.0.0.1:{django}; }}
  server {{
    listen 127.0.0.1:{tls} ssl default_server;
    server_name example.com www.example.com;
    ssl_certificate {rsa};
    ssl_certificate_key {rsa_key};
    ssl_certificate {ec};
    ssl_certificate_key {ec_key};
    include {options};
    ssl_dhparam {dhparam};
    location /django/ {{
      proxy_pass http://django/;
      proxy_set_header Host 127.0.0.1;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
    location /rel {{ return 302 /there; }}
    location / {{
      return 200 "example scheme=$scheme https=$https protocol=$ssl_protocol cipher=$ssl_cipher sni=$ssl_server_name uri=$uri curve=$ssl_curve curves=$ssl_curves\n";
    }}
  }}
  server {{
    listen 127.0.0.1:{tls};
    server_name no-tls-settings.test;
    add_header X-Name $ssl_server_name;
    return 200 "no TLS settings of its own\n";
  }}
  server {{
    listen 127.0.0.1:{tls} ssl;
    server_name other.test;
    ssl_certificate {other};
    ssl_certificate_key {other_key};
    ssl_protocols TLSv1.3;
    location / {{ return 200 "other sni=$ssl_server_name protocol=$ssl_protocol\n"; }}
  }}
  server {{
    if ($host = example.com) {{
      return 301 https://$host$request_uri;
    }}
    # Empty over plain HTTP: no field at all, as nginx.
    add_header X-Name $ssl_server_name always;
    listen 127.0.0.1:{plain};
    server_name example.com;
    return 404;
  }}
  server {{
    listen 127.0.0.1:{mtls} ssl;
    server_name example.com;
    ssl_certificate {rsa};
    ssl_certificate_key {rsa_key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    ssl_stapling on;
    ssl_stapling_file {ocsp};
    location / {{ return 200 "verify=$ssl_client_verify\n"; }}
    location /dn {{
      return 200 "s_dn=$ssl_client_s_dn i_dn=$ssl_client_i_dn serial=$ssl_client_serial fingerprint=$ssl_client_fingerprint\n";
    }}
    location /pem {{ return 200 "$ssl_client_escaped_cert|$ssl_client_raw_cert|$ssl_client_cert"; }}
  }}
  server {{
    listen 127.0.0.1:{optional} ssl;
    server_name example.com;
    ssl_certificate {ec};
    ssl_certificate_key {ec_key};
    ssl_client_certificate {ca};
    ssl_verify_client optional;
    location / {{ return 200 "verify=$ssl_client_verify\n"; }}
  }}
  server {{
    listen 127.0.0.1:{reject} ssl default_server;
    ssl_reject_handshake on;
  }}
  server {{
    listen 127.0.0.1:{reject} ssl;
    server_name example.com www.example.com;
    ssl_certificate {ec};
    ssl_certificate_key {ec_key};
    ssl_client_certificate {ca};
    ssl_verify_client optional;
    return 200 "known name\n";
  }}
}}
"#,
        rsa = pki.p("example.com.rsa.fullchain.pem"),
        rsa_key = pki.p("example.com.rsa.key"),
        ec = pki.p("example.com.ec.fullchain.pem"),
        ec_key = pki.p("example.com.ec.key"),
        other = pki.p("other.test.pem"),
        other_key = pki.p("other.test.key"),
        ca = pki.p("ca.pem"),
        ocsp = pki.p("example.com.rsa.ocsp"),
        options = fixture("options-ssl-nginx.conf"),
        dhparam = fixture("ssl-dhparams.pem"),
    )
}

/// Runs curl; the answer as `status location=... body` (a standard page reduced to
/// its headings, which name the server in their last line), ports as `PORT`.
fn curl(port: u16, host: &str, url_path: &str, extra: &[&str], scheme: &str) -> String {
    let pki = Pki::get();
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "5", "--cacert", &pki.p("ca.pem")])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{url_path}"))
        .output()
        .expect("run curl");
    describe(&out, port)
}

fn describe(out: &Output, port: u16) -> String {
    if !out.status.success() {
        // The exit status says what failed (35: the handshake); its text names the
        // TLS library's wording, which differs between servers.
        return format!("curl failed: exit {:?}", out.status.code());
    }
    let text = String::from_utf8_lossy(&out.stdout).replace(&port.to_string(), "PORT");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("?")
        .to_owned();
    let x_name = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-name:")
                .then(|| format!(" x-name={}", l[7..].trim()))
        })
        .unwrap_or_default();
    let location = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| l[9..].trim().to_owned())
        })
        .unwrap_or_else(|| "-".to_owned());
    let body = if body.contains("<hr><center>") {
        body.lines()
            .filter(|l| l.contains("<h1>") || (l.starts_with("<center>") && !l.contains("<hr>")))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        body.trim_end().to_owned()
    };
    format!("{status} location={location}{x_name} {body}")
}

/// One request compared with nginx.
struct Req {
    what: String,
    /// Index into the ports of [`conf`].
    port: usize,
    host: &'static str,
    path: &'static str,
    curl_options: Vec<String>,
    scheme: &'static str,
}

fn req(
    what: &str,
    port: usize,
    host: &'static str,
    path: &'static str,
    options: &[&str],
    scheme: &'static str,
) -> Req {
    Req {
        what: what.to_owned(),
        port,
        host,
        path,
        curl_options: options.iter().map(|s| s.to_string()).collect(),
        scheme,
    }
}

fn cases(pki: &Pki) -> Vec<Req> {
    let (client, client_key) = (pki.p("client.pem"), pki.p("client.key"));
    let (rogue, rogue_key) = (pki.p("rogue-client.pem"), pki.p("rogue-client.key"));
    let client: &[&str] = &["--cert", &client, "--key", &client_key];
    let rogue: &[&str] = &["--cert", &rogue, "--key", &rogue_key];
    let tls12 = ["--tls-max", "1.2"];
    vec![
        req(
            "TLS 1.3 (default client)",
            0,
            "example.com",
            "/a?b=1",
            &[],
            "https",
        ),
        req("TLS 1.2 only", 0, "example.com", "/", &tls12, "https"),
        req(
            "TLS 1.3 only",
            0,
            "www.example.com",
            "/",
            &["--tlsv1.3"],
            "https",
        ),
        req(
            "RSA certificate",
            0,
            "example.com",
            "/",
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ],
            "https",
        ),
        req(
            "ECDSA certificate",
            0,
            "example.com",
            "/",
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
            ],
            "https",
        ),
        req(
            "a server without TLS settings: the default server's",
            0,
            "no-tls-settings.test",
            "/",
            &["--insecure"],
            "https",
        ),
        req("SNI other.test", 0, "other.test", "/", &[], "https"),
        req(
            "SNI other.test, TLS 1.2 client",
            0,
            "other.test",
            "/",
            &tls12,
            "https",
        ),
        req(
            "unknown SNI goes to the default server",
            0,
            "unknown.test",
            "/",
            &["--insecure"],
            "https",
        ),
        req(
            "relative redirect gets https",
            0,
            "example.com",
            "/rel",
            &[],
            "https",
        ),
        req(
            "plain HTTP to the TLS port",
            0,
            "example.com",
            "/",
            &[],
            "http",
        ),
        req(
            "certbot's port-80 redirect",
            1,
            "example.com",
            "/x?y=1",
            &[],
            "http",
        ),
        req(
            "certbot's port-80 server, other host",
            1,
            "www.example.com",
            "/",
            &[],
            "http",
        ),
        req(
            "mTLS on, no certificate",
            2,
            "example.com",
            "/",
            &[],
            "https",
        ),
        req(
            "mTLS on, valid certificate",
            2,
            "example.com",
            "/",
            client,
            "https",
        ),
        req(
            "$ssl_client_s_dn and others",
            2,
            "example.com",
            "/dn",
            client,
            "https",
        ),
        req(
            "$ssl_client_escaped_cert and others",
            2,
            "example.com",
            "/pem",
            client,
            "https",
        ),
        req(
            "mTLS on, untrusted certificate",
            2,
            "example.com",
            "/",
            rogue,
            "https",
        ),
        req(
            "mTLS: a Host other than the SNI name",
            4,
            "example.com",
            "/",
            &[
                client[0],
                client[1],
                client[2],
                client[3],
                "-H",
                "Host: www.example.com",
            ],
            "https",
        ),
        req(
            "mTLS optional, no certificate",
            3,
            "example.com",
            "/",
            &[],
            "https",
        ),
        req(
            "mTLS optional, valid certificate",
            3,
            "example.com",
            "/",
            client,
            "https",
        ),
        req(
            "mTLS optional, untrusted certificate",
            3,
            "example.com",
            "/",
            rogue,
            "https",
        ),
        req(
            "ssl_reject_handshake: known name",
            4,
            "example.com",
            "/",
            &[],
            "https",
        ),
        req(
            "$scheme reaches Django",
            0,
            "example.com",
            "/django/scheme/",
            &[],
            "https",
        ),
    ]
}

/// `openssl s_client` twice with a saved session: whether the second one resumed.
fn resumed(port: u16, name: &str, version: &str) -> String {
    resumed_across(port, port, name, version)
}

/// [`resumed`] with the second connection to another port (another server).
fn resumed_across(first_port: u16, second_port: u16, name: &str, version: &str) -> String {
    let pki = Pki::get();
    let sess = fresh_temp_dir("tls-sess").join("sess");
    let run = |io: &str, port: u16| {
        let out = Command::new("sh")
            .arg("-c")
            // The short wait lets TLS 1.3 tickets (sent after the handshake) arrive.
            .arg(format!(
                "(sleep 0.2; echo) | timeout 5 openssl s_client {version} -connect 127.0.0.1:{port} -servername {name} -CAfile {ca} {io} {sess} 2>&1",
                ca = pki.p("ca.pem"),
                sess = sess.display()
            ))
            .output()
            .expect("run openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("New,") || l.starts_with("Reused,"))
            .map(|l| l.split(',').next().unwrap_or("").to_owned())
            .unwrap_or_else(|| format!("no session line: {text}"))
    };
    let first = run("-sess_out", first_port);
    let second = run("-sess_in", second_port);
    format!("{first} then {second}")
}

/// The certificate subject a server presents for `name`.
fn subject(port: u16, name: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 5 openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -subject"
        ))
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn https_answers_match_nginx() {
    let pki = Pki::get();
    let django = Django::start_n(1).remove(0);
    let (ferrolb, ports) = Proxy::start_on(|p| conf(pki, p, django.port));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |p| conf(pki, p, django.port)));
    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut ours_all = Vec::new();
    for r in cases(pki) {
        let extra: Vec<&str> = r.curl_options.iter().map(String::as_str).collect();
        let what = &r.what;
        let ask = |ports: &[u16; 5]| curl(ports[r.port], r.host, r.path, &extra, r.scheme);
        let ours = ask(&ports);
        assert!(
            !ours.starts_with("curl failed") || r.what.contains("rejected"),
            "{what}: {ours}\n{}",
            ferrolb.diagnostics()
        );
        if let Some((_, nports)) = &nginx {
            let theirs = ask(nports);
            compared += 1;
            if ours != theirs {
                mismatches.push(format!("{what}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
        ours_all.push(format!("{what}: {ours}"));
    }
    // What the answers must say, whatever nginx says.
    let all = ours_all.join("\n");
    for expected in [
        "TLS 1.2 only: 200 location=- example scheme=https https=on protocol=TLSv1.2",
        "TLS 1.3 only: 200 location=- example scheme=https https=on protocol=TLSv1.3",
        "RSA certificate: 200 location=- example scheme=https https=on protocol=TLSv1.2 cipher=ECDHE-RSA-AES128-GCM-SHA256",
        "ECDSA certificate: 200 location=- example scheme=https https=on protocol=TLSv1.2 cipher=ECDHE-ECDSA-CHACHA20-POLY1305",
        "SNI other.test: 200 location=- other sni=other.test protocol=TLSv1.3",
        "a server without TLS settings: the default server's: 200 location=- x-name=no-tls-settings.test no TLS settings of its own",
        "unknown SNI goes to the default server: 200 location=- example",
        "relative redirect gets https: 302 location=https://example.com:PORT/there",
        "plain HTTP to the TLS port: 400 location=- <center><h1>400 Bad Request</h1></center> <center>The plain HTTP request was sent to HTTPS port</center>",
        "certbot's port-80 redirect: 301 location=https://example.com/x?y=1",
        "mTLS on, no certificate: 400 location=- <center><h1>400 Bad Request</h1></center> <center>No required SSL certificate was sent</center>",
        "mTLS on, valid certificate: 200 location=- verify=SUCCESS",
        "$ssl_client_s_dn and others: 200 location=- s_dn=CN=client one,O=Test Org\\, Inc.,C=US i_dn=CN=Test CA serial=",
        "mTLS on, untrusted certificate: 400 location=- <center><h1>400 Bad Request</h1></center> <center>The SSL certificate error</center>",
        "mTLS optional, no certificate: 200 location=- verify=NONE",
        "mTLS: a Host other than the SNI name: 421 location=- <center><h1>421 Misdirected Request</h1></center>",
        "mTLS optional, valid certificate: 200 location=- verify=SUCCESS",
        "$scheme reaches Django: 200 location=- scheme=https secure=True",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // The default server rejects handshakes without a name it knows.
    let rejected = curl(ports[4], "unknown.test", "/", &["--insecure"], "https");
    assert_eq!(rejected, "curl failed: exit Some(35)");
    if let Some((_, nports)) = &nginx {
        let theirs = curl(nports[4], "unknown.test", "/", &["--insecure"], "https");
        assert_eq!(rejected, theirs, "nginx");
    }
    // other.test says TLS 1.3 only, but as with nginx the protocol is the default
    // server's choice.
    assert!(
        all.contains(
            "SNI other.test, TLS 1.2 client: 200 location=- other sni=other.test protocol=TLSv1.2"
        ),
        "{all}"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} answers differ from nginx:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // Certificates: SNI picks them; an unknown name gets the default server's.
    assert!(subject(ports[0], "other.test").contains("CN = other.test"));
    assert!(subject(ports[0], "unknown.test").contains("CN = example.com"));

    // ssl_stapling_file: the response is stapled.
    let stapled = |port: u16| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | timeout 5 openssl s_client -connect 127.0.0.1:{port} -servername example.com -status 2>/dev/null"
            ))
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter(|l| l.contains("OCSP Response Status") || l.contains("Cert Status"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let ours = stapled(ports[2]);
    assert_eq!(
        ours,
        "OCSP Response Status: successful (0x0); Cert Status: good"
    );
    if let Some((_, nports)) = &nginx {
        assert_eq!(stapled(nports[2]), ours, "nginx");
    }

    // Resumption: certbot's options (session cache, no tickets) and the default
    // (tickets), over TLS 1.2 and 1.3.
    for (name, version) in [
        ("example.com", "-tls1_2"),
        ("example.com", "-tls1_3"),
        ("other.test", "-tls1_3"),
    ] {
        let ours = resumed(ports[0], name, version);
        assert_eq!(ours, "New then Reused", "{name} {version}");
        // nginx keeps sessions in the default server's SSL context, which resumes
        // nothing for another name here; ferrolb resumes each server's own sessions.
        if let Some((_, nports)) = nginx.as_ref().filter(|_| name == "example.com") {
            assert_eq!(
                resumed(nports[0], name, version),
                ours,
                "nginx {name} {version}"
            );
        }
    }
    let log = ferrolb.error_log();
    assert!(
        log.contains("client sent plain HTTP request to HTTPS port"),
        "{log}"
    );
    assert!(
        log.contains("client sent no required SSL certificate"),
        "{log}"
    );
}

#[test]
fn a_version_1_certificate_is_served() {
    let pki = Pki::get();
    let (_proxy, [port]) = Proxy::start_on(|[p]| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{p} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    return 200 ok;\n  }}\n}}\n",
            pki.p("v1.pem"),
            pki.p("v1.key")
        )
    });
    assert!(subject(port, "v1.test").contains("CN = v1.test"));
}

#[test]
fn bad_certificate_files_are_config_errors_with_their_line() {
    let pki = Pki::get();
    let dir = fresh_temp_dir("tls-bad");
    let cases = [
        (
            format!(
                "ssl_certificate {}/missing.pem;\n    ssl_certificate_key {};",
                dir.display(),
                pki.p("example.com.rsa.key")
            ),
            "cannot load certificate",
        ),
        (
            format!(
                "ssl_certificate {};\n    ssl_certificate_key {};",
                pki.p("example.com.rsa.pem"),
                pki.p("example.com.ec.key")
            ),
            "does not belong to the certificate",
        ),
        (
            format!(
                "ssl_certificate {};\n    ssl_certificate_key {};",
                pki.p("example.com.rsa.key"),
                pki.p("example.com.rsa.key")
            ),
            "no \"BEGIN CERTIFICATE\" block",
        ),
        (
            "server_name x;".to_owned(),
            "no \"ssl_certificate\" is defined",
        ),
    ];
    for (lines, expected) in cases {
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!("events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:1 ssl;\n    {lines}\n  }}\n}}\n"),
        )
        .expect("write");
        let out = check_config(&dir, &conf);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{lines}: {err}");
        assert!(err.contains(expected), "{lines}: {err}");
        assert!(
            ["nginx.conf:4", "nginx.conf:5", "nginx.conf:6"]
                .iter()
                .any(|l| err.contains(l)),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
    }
}

#[test]
fn reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
    let pki = Pki::get();
    let site = |cert: &str, key: &str, port: u16| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    return 200 ok;\n  }}\n}}\n"
        )
    };
    let (mut proxy, [port]) = Proxy::start_on(|[p]| {
        site(
            &pki.p("example.com.ec.pem"),
            &pki.p("example.com.ec.key"),
            p,
        )
    });
    let first = subject(port, "example.com");
    assert!(
        first.contains("CN = example.com") && !first.contains("second"),
        "{first}"
    );
    // A client on new TLS connections all along: no request may fail.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) && count.load(Ordering::Relaxed) < 500 {
                let got = curl(port, "example.com", "/", &[], "https");
                if got != "200 location=- ok" {
                    failed.push(got);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            (count.load(Ordering::Relaxed), failed)
        })
    };
    wait_until(IO_TIMEOUT, "requests before the reloads", || {
        (count.load(Ordering::Relaxed) >= 10).then_some(())
    });
    // SIGHUP: `-s reload` would refuse to signal with a config that does not load.
    proxy.write_conf(&site(&pki.p("gone.pem"), &pki.p("gone.key"), port));
    let rejected = proxy.sighup();
    assert!(rejected.is_err(), "a missing certificate was accepted");
    let log = proxy.error_log();
    assert!(log.contains("cannot load certificate"), "{log}");
    assert_eq!(subject(port, "example.com"), first);
    assert!(curl(port, "example.com", "/", &[], "https").starts_with("200"));
    proxy.reload_with(&site(
        &pki.p("example.com.second.pem"),
        &pki.p("example.com.second.key"),
        port,
    ));
    let second = subject(port, "example.com");
    assert!(second.contains("O = second"), "{second}");
    let before = count.load(Ordering::Relaxed);
    wait_until(IO_TIMEOUT, "requests after the reloads", || {
        (count.load(Ordering::Relaxed) >= before + 10).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let (done, failed) = load.join().expect("load thread");
    assert!(
        failed.is_empty(),
        "{} of {done} requests failed: {failed:?}",
        failed.len()
    );
    assert!(done > 0);
    eprintln!("reload under load: {done} HTTPS requests, 0 failed");
}

/// A TLS backend that says what it saw of the TLS connection.
fn backend_conf(pki: &Pki, port: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client optional;
    return 200 "backend sni=$ssl_server_name protocol=$ssl_protocol reused=$ssl_session_reused client=$ssl_client_verify connection=$connection\n";
  }}
}}
"#,
        cert = pki.p("backend.pem"),
        key = pki.p("backend.key"),
        ca = pki.p("ca.pem"),
    )
}

/// A plain front proxying to the TLS backend, one location per way of connecting.
fn front_conf(pki: &Pki, port: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  upstream pooled {{ server 127.0.0.1:{backend}; keepalive 4; }}
  # nginx 1.23.4 and later (and ferrolb) default to these; Debian's 1.22 lacks TLSv1.3.
  proxy_ssl_protocols TLSv1.2 TLSv1.3;
  server {{
    listen 127.0.0.1:{port};
    location /off/ {{ proxy_pass https://127.0.0.1:{backend}/; }}
    location /verify/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name backend.internal;
      proxy_ssl_server_name on;
    }}
    location /wrong-name/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name other.internal;
    }}
    location /untrusted/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {rogue_ca};
      proxy_ssl_name backend.internal;
    }}
    location /revoked/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {ca};
      proxy_ssl_name backend.internal;
      proxy_ssl_crl {crl};
    }}
    location /client/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_certificate {client};
      proxy_ssl_certificate_key {client_key};
    }}
    location /tls12/ {{
      proxy_pass https://127.0.0.1:{backend}/;
      proxy_ssl_protocols TLSv1.2;
    }}
    location /pooled/ {{
      proxy_pass https://pooled/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#,
        ca = pki.p("ca.pem"),
        crl = pki.p("ca.crl"),
        rogue_ca = pki.p("rogue-ca.pem"),
        client = pki.p("client.pem"),
        client_key = pki.p("client.key"),
    )
}

#[test]
fn upstream_tls_verifies_sends_sni_and_client_certificates_and_reuses() {
    let pki = Pki::get();
    let (backend, [bport]) = Proxy::start_on(|[p]| backend_conf(pki, p));
    let (front, [port]) = Proxy::start_on(|[p]| front_conf(pki, p, bport));
    let get = |path: &str| {
        let r = http_get(port, path, "front.test")
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", front.diagnostics()));
        let text = r.text();
        let body = if r.status == 200 {
            text.trim_end().to_owned()
        } else {
            String::new()
        };
        format!("{} {body}", r.status)
    };
    let off = get("/off/");
    assert!(
        off.starts_with("200 backend sni= protocol=TLSv1.3 reused=") && off.contains("client=NONE"),
        "{off}"
    );
    let verified = get("/verify/");
    assert!(
        verified.starts_with("200 backend sni=backend.internal protocol=TLSv1.3"),
        "{verified}"
    );
    assert_eq!(get("/wrong-name/"), "502 ");
    assert_eq!(get("/untrusted/"), "502 ");
    assert_eq!(get("/revoked/"), "502 ");
    assert!(
        get("/client/").contains("client=SUCCESS"),
        "{}",
        get("/client/")
    );
    assert!(get("/tls12/").contains("protocol=TLSv1.2"));
    // Sessions are resumed by later connections (TLS 1.3 tickets)...
    let again = get("/off/");
    assert!(
        again.contains("reused=r"),
        "{again}\n{}",
        backend.diagnostics()
    );
    // ...and a pooled connection carries the next request without a new handshake.
    let first = get("/pooled/");
    let second = get("/pooled/");
    let conn = |s: &str| s.rsplit("connection=").next().unwrap_or("").to_owned();
    assert_eq!(conn(&first), conn(&second), "{first} / {second}");
    // The same front on nginx, against the same backend: the same answers (but for
    // the resumption and connection counters, which depend on the order of requests).
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |[p]| front_conf(pki, p, bport));
        let stable = |p: u16, path: &str| {
            let r = http_get(p, path, "front.test")
                .unwrap_or_else(|e| panic!("{path}: {e}\n{}", nginx.diagnostics()));
            let text = r.text();
            let kept: Vec<&str> = text
                .split_whitespace()
                .filter(|w| !w.starts_with("reused=") && !w.starts_with("connection="))
                .collect();
            format!(
                "{} {}",
                r.status,
                if r.status == 200 {
                    kept.join(" ")
                } else {
                    String::new()
                }
            )
        };
        for path in [
            "/off/",
            "/verify/",
            "/wrong-name/",
            "/untrusted/",
            "/revoked/",
            "/client/",
            "/tls12/",
        ] {
            assert_eq!(stable(port, path), stable(nport, path), "{path}");
        }
    }
}

#[test]
fn certificates_named_by_ssl_server_name() {
    let pki = Pki::get();
    let dir = fresh_temp_dir("tls-by-name");
    for (name, from) in [
        ("example.com", "example.com.ec"),
        ("other.test", "other.test"),
    ] {
        for ext in ["pem", "key"] {
            fs::copy(
                pki.path(&format!("{from}.{ext}")),
                dir.join(format!("{name}.{ext}")),
            )
            .expect("copy");
        }
    }
    // nginx's worker (user nobody when nginx starts as root) reads these at the
    // handshake: let it.
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(&dir).expect("list").flatten() {
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let conf = |port: u16| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/$ssl_server_name.pem;\n    ssl_certificate_key {d}/$ssl_server_name.key;\n    return 200 \"$ssl_server_name\\n\";\n  }}\n}}\n",
            d = dir.display()
        )
    };
    let (ferrolb, [port]) = Proxy::start_on(|[p]| conf(p));
    assert!(subject(port, "example.com").contains("CN = example.com"));
    assert!(subject(port, "other.test").contains("CN = other.test"));
    let unknown = curl(port, "unknown.test", "/", &["--insecure"], "https");
    assert_eq!(unknown, "curl failed: exit Some(35)");
    assert!(
        ferrolb.error_log().contains("unknown.test.pem"),
        "{}",
        ferrolb.error_log()
    );
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [nport]) = Proxy::start_bin_on(nginx_bin, |[p]| conf(p));
        for name in ["example.com", "other.test"] {
            assert_eq!(subject(port, name), subject(nport, name), "{name}");
            assert_eq!(
                curl(port, name, "/", &[], "https"),
                curl(nport, name, "/", &[], "https")
            );
        }
        let theirs = curl(nport, "unknown.test", "/", &["--insecure"], "https");
        assert_eq!(unknown, theirs);
    }
}

#[test]
fn graceful_stop_ends_a_handshake_that_never_comes() {
    let pki = Pki::get();
    let (mut proxy, [port]) = Proxy::start_on(|[p]| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{p} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    return 200 ok;\n  }}\n}}\n",
            pki.p("example.com.ec.pem"),
            pki.p("example.com.ec.key")
        )
    });
    // Connected, silent: the handshake waits for a ClientHello (60 s by default).
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    proxy.signal(nix::sys::signal::Signal::SIGQUIT);
    let status = proxy.wait_exit(std::time::Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        proxy.diagnostics()
    );
}

#[test]
fn servers_sharing_a_ticket_key_file_resume_each_others_sessions() {
    let pki = Pki::get();
    let dir = fresh_temp_dir("tls-ticket-key");
    let key: Vec<u8> = (0..80u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    fs::write(dir.join("ticket.key"), &key).expect("write key");
    let conf = |port: u16| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_session_ticket_key {};\n    return 200 ok;\n  }}\n}}\n",
            pki.p("example.com.ec.pem"),
            pki.p("example.com.ec.key"),
            dir.join("ticket.key").display()
        )
    };
    let (_a, [a]) = Proxy::start_on(|[p]| conf(p));
    let (_b, [b]) = Proxy::start_on(|[p]| conf(p));
    for version in ["-tls1_2", "-tls1_3"] {
        assert_eq!(
            resumed_across(a, b, "example.com", version),
            "New then Reused",
            "{version}"
        );
    }
    // A key file of the wrong size is an error at its line.
    fs::write(dir.join("short.key"), [0u8; 20]).expect("write");
    let bad = dir.join("bad.conf");
    fs::write(&bad, conf(1).replace("ticket.key", "short.key")).expect("write");
    let out = check_config(&dir, &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("must be 48 or 80 bytes") && err.contains("bad.conf:8"),
        "{err}"
    );
}
