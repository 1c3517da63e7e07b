//! The TLS edges nginx's own test suite exercises, with certificates made the way it
//! makes them (`openssl ca` with `CA:TRUE` on every certificate, a self-signed CA as
//! the client's certificate, v1 CRLs from `openssl ca -gencrl`, keys encrypted by
//! `openssl genrsa -aes128`): `ssl_verify_depth`, `ssl_crl`, `ssl_password_file`,
//! `proxy_ssl_password_file`, `proxy_ssl_verify` with a commonName-only certificate
//! and `proxy_ssl_crl`, `listen ... ssl proxy_protocol`, `uwsgi_pass suwsgi://`, and the
//! variables `$ssl_client_{s,i}_dn_legacy`, `$ssl_client_v_{start,end,remain}`. Every
//! answer is compared with Debian's nginx on the same config.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;

/// The certificates, made once per run in nginx-tests' way.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn get() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            let pki = Pki {
                dir: fresh_temp_dir("tls-edges-pki"),
            };
            let d = pki.dir.display().to_string();
            fs::write(
                pki.dir.join("openssl.conf"),
                "[ req ]\ndefault_bits = 2048\nencrypt_key = no\ndistinguished_name = dn\nx509_extensions = ext\n[ dn ]\n[ ext ]\nbasicConstraints = critical,CA:TRUE\n",
            )
            .expect("openssl.conf");
            fs::write(
                pki.dir.join("ca.conf"),
                format!("[ ca ]\ndefault_ca = myca\n[ myca ]\nnew_certs_dir = {d}\ndatabase = {d}/certindex\ndefault_md = sha256\npolicy = pol\nserial = {d}/certserial\ndefault_days = 2\nx509_extensions = ext\n[ pol ]\ncommonName = supplied\n[ ext ]\nbasicConstraints = critical,CA:TRUE\n"),
            )
            .expect("ca.conf");
            fs::write(pki.dir.join("certserial"), "1000").expect("serial");
            fs::write(pki.dir.join("certindex"), "").expect("index");
            for name in ["root", "localhost"] {
                pki.sh(&format!("openssl req -x509 -new -config openssl.conf -subj /CN={name}/ -out {name}.crt -keyout {name}.key"));
            }
            for name in ["int", "end"] {
                pki.sh(&format!("openssl req -new -config openssl.conf -subj /CN={name}/ -out {name}.csr -keyout {name}.key"));
            }
            pki.sh("openssl ca -batch -config ca.conf -keyfile root.key -cert root.crt -subj /CN=int/ -in int.csr -out int.crt");
            pki.sh("openssl ca -batch -config ca.conf -keyfile int.key -cert int.crt -subj /CN=end/ -in end.csr -out end.crt");
            pki.sh("openssl ca -gencrl -config ca.conf -keyfile root.key -cert root.crt -out empty.crl -crldays 1");
            pki.sh("openssl ca -gencrl -config ca.conf -keyfile int.key -cert int.crt -out int.crl -crldays 1");
            pki.sh("cat empty.crl int.crl > empty-chain.crl");
            pki.sh("openssl ca -config ca.conf -revoke int.crt -keyfile root.key -cert root.crt");
            pki.sh("openssl ca -gencrl -config ca.conf -keyfile root.key -cert root.crt -out root.crl -crldays 1");
            pki.sh("cat root.crt int.crt > root-int.crt");
            // Encrypted keys, as nginx-tests' ssl_password_file.t makes them.
            pki.sh("openssl genrsa -out secret.key -passout pass:secret -aes128 2048");
            pki.sh("openssl req -x509 -new -config openssl.conf -subj /CN=secret/ -key secret.key -passin pass:secret -out secret.crt");
            fs::write(pki.dir.join("passwords"), "wrong\nsecret\n").expect("passwords");
            // nginx's workers read per-request client certificates as nobody.
            pki.sh("chmod 0644 *.key");
            pki
        })
    }

    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn sh(&self, cmd: &str) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

const PORTS: usize = 10;

fn conf(pki: &Pki, ports: [u16; PORTS]) -> String {
    let [plain, depth0, depth1, crl_root, crl_empty, crl_chain, secret, pp, stub, verifier] = ports;
    let p = |n: &str| pki.p(n);
    let verify = |port: u16, extra: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_verify_client optional_no_ca;\n    ssl_client_certificate {roots};\n    add_header X-Verify $ssl_client_verify always;\n    {extra}\n    location / {{ return 200 \"verify=$ssl_client_verify s_dn=$ssl_client_s_dn_legacy i_dn=$ssl_client_i_dn_legacy start=$ssl_client_v_start end=$ssl_client_v_end remain=$ssl_client_v_remain\\n\"; }}\n  }}\n",
            roots = p("root-int.crt"),
            cert = p("localhost.crt"),
            key = p("localhost.key"),
        )
    };
    format!(
        r#"events {{}}
http {{
  access_log off;
  default_type text/plain;
{v0}{v1}{v2}{v3}{v4}
  server {{
    listen 127.0.0.1:{depth1} ssl;
    server_name nocert.test;
    ssl_verify_client on;
  }}
  server {{
    listen 127.0.0.1:{secret} ssl;
    ssl_certificate {secret_crt};
    ssl_certificate_key {secret_key};
    ssl_password_file {passwords};
    location / {{ return 200 "secret\n"; }}
  }}
  server {{
    listen 127.0.0.1:{pp} ssl proxy_protocol;
    ssl_certificate {localhost};
    ssl_certificate_key {localhost_key};
    location / {{ return 200 "pp addr=$proxy_protocol_addr https=$https\n"; }}
  }}
  server {{
    listen 127.0.0.1:{stub} ssl;
    ssl_certificate {int_crt};
    ssl_certificate_key {int_key};
    location / {{ return 200 "stub\n"; }}
  }}
  server {{
    listen 127.0.0.1:{verifier} ssl;
    ssl_certificate {int_crt};
    ssl_certificate_key {int_key};
    ssl_verify_client optional_no_ca;
    ssl_trusted_certificate {root_int};
    location / {{ return 200 "upstream saw $ssl_client_verify $ssl_client_s_dn\n"; }}
  }}
  server {{
    listen 127.0.0.1:{plain};
    proxy_ssl_verify on;
    proxy_ssl_trusted_certificate {root};
    proxy_ssl_name int;
    proxy_ssl_session_reuse off;
    location /empty-crl {{
      proxy_pass https://127.0.0.1:{stub}/;
      proxy_ssl_crl {empty_crl};
      proxy_ssl_certificate {secret_crt};
      proxy_ssl_certificate_key {secret_key};
      proxy_ssl_password_file {passwords};
    }}
    location /revoked {{
      proxy_pass https://127.0.0.1:{stub}/;
      proxy_ssl_crl {root_crl};
    }}
    location /wrong-name {{
      proxy_pass https://127.0.0.1:{stub}/;
      proxy_ssl_name other;
    }}
    location /vars {{
      proxy_pass https://127.0.0.1:{verifier}/;
      proxy_ssl_verify off;
      proxy_ssl_certificate {dir}/$arg_c.crt;
      proxy_ssl_certificate_key {dir}/$arg_c.key;
      proxy_ssl_password_file {passwords};
    }}
    location /suwsgi {{
      uwsgi_pass suwsgi://127.0.0.1:{stub};
      uwsgi_ssl_verify on;
      uwsgi_ssl_trusted_certificate {root};
      uwsgi_ssl_name int;
      uwsgi_ssl_session_reuse off;
    }}
    location /suwsgi-untrusted {{
      uwsgi_ssl_session_reuse off;
      uwsgi_pass suwsgi://127.0.0.1:{stub};
      uwsgi_ssl_verify on;
      uwsgi_ssl_trusted_certificate {localhost};
      uwsgi_ssl_name int;
    }}
  }}
}}
"#,
        localhost = p("localhost.crt"),
        localhost_key = p("localhost.key"),
        v0 = verify(depth0, "ssl_verify_depth 0;"),
        v1 = verify(depth1, ""),
        v2 = verify(
            crl_root,
            &format!("ssl_verify_depth 2; ssl_crl {};", p("root.crl"))
        ),
        v3 = verify(
            crl_empty,
            &format!("ssl_verify_depth 2; ssl_crl {};", p("empty.crl"))
        ),
        v4 = verify(
            crl_chain,
            &format!("ssl_verify_depth 2; ssl_crl {};", p("empty-chain.crl"))
        ),
        secret_crt = p("secret.crt"),
        secret_key = p("secret.key"),
        passwords = p("passwords"),
        int_crt = p("int.crt"),
        int_key = p("int.key"),
        root = p("root.crt"),
        empty_crl = p("empty.crl"),
        root_crl = p("root.crl"),
        root_int = p("root-int.crt"),
        dir = pki.dir.display(),
    )
}

/// Status line and body of a curl request (`-k`: these tests are not about the
/// server's certificate).
fn curl(port: u16, scheme: &str, path: &str, extra: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-k", "-i", "--max-time", "5"])
        .args(extra)
        .arg(format!("{scheme}://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    if !out.status.success() {
        return format!("curl failed: exit {:?}", out.status.code());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").trim().to_owned();
    // `add_header X-Verify $ssl_client_verify always` says why a 400 was given.
    let verify = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-verify:")
                .then(|| format!(" [x-verify {}]", l[9..].trim()))
        })
        .unwrap_or_default();
    let status = format!("{status}{verify}");
    let body = if body.contains("<h1>") {
        body.lines()
            .filter(|l| l.contains("<h1>"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        body.trim_end().to_owned()
    };
    format!("{status} {body}")
}

#[test]
fn tls_edges_match_nginx() {
    let pki = Pki::get();
    let cert = |name: &str| {
        vec![
            "--cert".to_owned(),
            pki.p(&format!("{name}.crt")),
            "--key".to_owned(),
            pki.p(&format!("{name}.key")),
        ]
    };
    // (what, port index, scheme, path, curl options)
    let mut cases: Vec<(String, usize, &str, &str, Vec<String>)> = Vec::new();
    for (port, what) in [(1, "depth 0"), (2, "depth 1 (default)")] {
        for client in ["root", "int", "end"] {
            cases.push((
                format!("{what}, client {client}"),
                port,
                "https",
                "/",
                cert(client),
            ));
        }
    }
    for (port, what) in [
        (3, "root.crl (int revoked)"),
        (4, "empty.crl (root's only)"),
        (5, "empty-chain.crl"),
    ] {
        for client in ["int", "end"] {
            cases.push((
                format!("ssl_crl {what}, client {client}"),
                port,
                "https",
                "/",
                cert(client),
            ));
        }
    }
    cases.push(("no client certificate".into(), 2, "https", "/", Vec::new()));
    cases.push((
        "a server without a certificate, ssl_verify_client on, none sent".into(),
        2,
        "https",
        "/",
        vec!["-H".into(), "Host: nocert.test".into()],
    ));
    cases.push((
        "encrypted key, ssl_password_file".into(),
        6,
        "https",
        "/",
        Vec::new(),
    ));
    cases.push((
        "ssl proxy_protocol".into(),
        7,
        "https",
        "/",
        vec!["--haproxy-protocol".into()],
    ));
    for path in [
        "/vars?c=end",
        "/vars?c=localhost",
        "/vars?c=secret",
        "/vars?c=missing",
        "/empty-crl",
        "/revoked",
        "/wrong-name",
        "/suwsgi",
        "/suwsgi-untrusted",
    ] {
        cases.push((format!("upstream {path}"), 0, "http", path, Vec::new()));
    }

    let (ferrolb, ports) = Proxy::start_on(|p| conf(pki, p));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |p| conf(pki, p)));
    let mut mismatches = Vec::new();
    let mut ours_all = Vec::new();
    for (what, port, scheme, path, extra) in &cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let ours = curl(ports[*port], scheme, path, &extra);
        if let Some((_, nports)) = &nginx {
            let theirs = curl(nports[*port], scheme, path, &extra);
            if ours != theirs {
                mismatches.push(format!("{what}\n  ferrolb: {ours}\n  nginx:   {theirs}"));
            }
        }
        ours_all.push(format!("{what}: {ours}"));
    }
    let all = ours_all.join("\n");
    for expected in [
        "depth 0, client root: HTTP/1.1 200 OK [x-verify SUCCESS] verify=SUCCESS s_dn=/CN=root",
        "depth 0, client end: HTTP/1.1 400 Bad Request [x-verify FAILED:unable to get issuer certificate]",
        "depth 1 (default), client end: HTTP/1.1 200 OK [x-verify SUCCESS] verify=SUCCESS s_dn=/CN=end i_dn=/CN=int",
        "ssl_crl root.crl (int revoked), client end: HTTP/1.1 400 Bad Request [x-verify FAILED:certificate revoked]",
        "ssl_crl empty.crl (root's only), client end: HTTP/1.1 400 Bad Request [x-verify FAILED:unable to get certificate CRL]",
        "ssl_crl empty-chain.crl, client end: HTTP/1.1 200 OK [x-verify SUCCESS] verify=SUCCESS",
        "encrypted key, ssl_password_file: HTTP/1.1 200 OK secret",
        "a server without a certificate, ssl_verify_client on, none sent: HTTP/1.1 400 Bad Request",
        "ssl proxy_protocol: HTTP/1.1 200 OK pp addr=127.0.0.1",
        "upstream /empty-crl: HTTP/1.1 200 OK stub",
        "upstream /vars?c=end: HTTP/1.1 200 OK upstream saw SUCCESS CN=end",
        "upstream /vars?c=missing: HTTP/1.1 500 Internal Server Error",
        "upstream /revoked: HTTP/1.1 502 Bad Gateway",
        "upstream /wrong-name: HTTP/1.1 502 Bad Gateway",
        "upstream /suwsgi-untrusted: HTTP/1.1 502 Bad Gateway",
    ] {
        assert!(
            all.contains(expected),
            "missing {expected:?} in:\n{all}\n{}",
            ferrolb.diagnostics()
        );
    }
    assert!(
        all.contains("remain=1") || all.contains("remain=0"),
        "$ssl_client_v_remain of a 2-day certificate:\n{all}"
    );
    assert!(
        mismatches.is_empty(),
        "answers differ from nginx's:\n{}\n\nferrolb:\n{all}",
        mismatches.join("\n")
    );
}

/// A refused request on TLS (an HTTP/0.9 line with bytes behind it, as nginx-tests'
/// ssl.t sends): the answer is followed by close_notify before the lingering close,
/// so the client's TLS shutdown completes, as with nginx.
#[test]
fn a_refused_request_ends_with_close_notify() {
    let pki = Pki::get();
    let conf = |[p]: [u16; 1]| {
        format!(
            "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{p} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
            pki.p("localhost.crt"),
            pki.p("localhost.key")
        )
    };
    let (python, _) = django_env();
    let script = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10))
s.sendall(b"GET /\r\nextra")
got = b""
try:
    while True:
        d = s.recv(16384)
        if not d:
            break
        got += d
    s.unwrap()
    print("clean shutdown", got.split(b"\r\n")[0].decode())
except (ssl.SSLError, OSError) as e:
    print("no close_notify:", type(e).__name__, got.split(b"\r\n")[0].decode())
"#;
    let mut servers = vec![Proxy::start_on(conf)];
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        servers.push(Proxy::start_bin_on(nginx_bin, conf));
    }
    for (proxy, [port]) in &servers {
        let out = Command::new(&python)
            .args(["-c", script, &port.to_string()])
            .output()
            .expect("python");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with("clean shutdown"),
            "{}: {said}{}",
            proxy.bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
