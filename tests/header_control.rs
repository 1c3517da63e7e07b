//! Which upstream response fields reach the client, as nginx decides: `Date`,
//! `Server`, `X-Pad` and `X-Accel-*` are replaced or dropped unless `proxy_pass_header`
//! names them, `proxy_hide_header` drops more, and the proxy's own `Server` and `Date`
//! go out otherwise. Compared with Debian's nginx on the same config.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::*;

fn backend() -> u16 {
    scripted_backend(|_, _, conn| {
        let _ = conn.write_all(
            b"HTTP/1.0 200 OK\r\nServer: gunicorn\r\nDate: Thu, 01 Jan 2015 00:00:00 GMT\r\nX-Pad: avoid browser bug\r\nX-Accel-Buffering: no\r\nX-Accel-Expires: 10\r\nX-Secret: s3cr3t\r\nX-Kept: yes\r\nContent-Length: 3\r\n\r\nok\n",
        );
    })
}

fn conf(port: u16, up: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location /plain {{ proxy_pass http://127.0.0.1:{up}; }}
    location /pass {{ proxy_pass_header Server; proxy_pass_header X-Accel-Buffering; proxy_pass http://127.0.0.1:{up}; }}
    location /hide {{ proxy_hide_header X-Secret; proxy_hide_header X-Kept; proxy_pass http://127.0.0.1:{up}; }}
  }}
}}
"#
    )
}

/// The fields that reached the client, their values but for the proxy's own ones.
fn fields(port: u16, path: &str) -> String {
    let r = http_get(port, path, "localhost").expect("answer");
    let mut out: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
        .map(|(n, v)| {
            let n = n.to_ascii_lowercase();
            match n.as_str() {
                // The proxy's own: present, value its own.
                "server" if v != "gunicorn" => "server=<proxy>".to_owned(),
                "date" if !v.contains("2015") => "date=<proxy>".to_owned(),
                _ => format!("{n}={v}"),
            }
        })
        .collect();
    out.sort();
    out.join(" ")
}

#[test]
fn upstream_fields_are_hidden_and_passed_as_nginx_does() {
    let up = backend();
    let (_ferrolb, [port]) = Proxy::start_on(|[p]| conf(p, up));
    let ours: Vec<String> = ["/plain", "/pass", "/hide"]
        .iter()
        .map(|p| fields(port, p))
        .collect();
    assert_eq!(
        ours[0],
        "content-length=3 date=<proxy> server=<proxy> x-kept=yes x-secret=s3cr3t"
    );
    assert!(
        ours[1].contains("server=gunicorn") && ours[1].contains("x-accel-buffering=no"),
        "{}",
        ours[1]
    );
    assert!(
        !ours[2].contains("x-secret") && !ours[2].contains("x-kept"),
        "{}",
        ours[2]
    );
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (_nginx, [np]) = Proxy::start_bin_on(nginx_bin, |[p]| conf(p, up));
        let theirs: Vec<String> = ["/plain", "/pass", "/hide"]
            .iter()
            .map(|p| fields(np, p))
            .collect();
        assert_eq!(ours, theirs);
    }
}
