//! `large_client_header_buffers` as nginx applies it: a request line longer than a
//! buffer gets 414, a longer header line or a head larger than all buffers gets 400
//! "Request Header Or Cookie Too Large" (nginx's 494), with its log lines; compared
//! with Debian's nginx on the same config when it is installed. Upstream heads: one
//! larger than `proxy_buffer_size` is a 502 (`upstream sent too big header`), 300
//! short header lines pass.

mod common;

use std::path::PathBuf;

use common::*;

/// A backend whose answer depends on the path: `/big` has a 5000-byte header field,
/// `/many` 300 short ones, anything else is plain.
fn backend() -> u16 {
    use std::io::Write;
    scripted_backend(|req, _, conn| {
        let extra = if req.line.contains("/big") {
            format!("X-Big: {}\r\n", "b".repeat(5000))
        } else if req.line.contains("/many") {
            (0..300).map(|i| format!("X-{i}: v\r\n")).collect()
        } else {
            String::new()
        };
        let _ = write!(
            conn,
            "HTTP/1.0 200 OK\r\n{extra}Content-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
    })
}

fn conf(port: u16, small: u16, backend: u16) -> String {
    format!(
        r#"events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "ok\n"; }}
    location /up/ {{ proxy_pass http://127.0.0.1:{backend}; }}
    location /roomy/ {{ proxy_buffer_size 8k; proxy_pass http://127.0.0.1:{backend}; }}
  }}
  server {{
    listen 127.0.0.1:{small};
    large_client_header_buffers 2 1k;
    location / {{ return 200 "ok\n"; }}
  }}
}}
"#
    )
}

/// Status and page title.
fn facts(r: &std::io::Result<Response>) -> String {
    match r {
        Ok(r) => {
            let text = r.text();
            let title = text
                .split("<title>")
                .nth(1)
                .and_then(|t| t.split("</title>").next())
                .unwrap_or(text.trim());
            format!("{} {title}", r.status)
        }
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn oversized_heads_get_nginx_answers() {
    let long_path = format!("/{}", "a".repeat(9000));
    let mid_path = format!("/{}", "b".repeat(3000));
    let big = "x".repeat(9000);
    let kilo = "y".repeat(1000);
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("X-H{i}"), kilo.clone())).collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mid = "z".repeat(1500);
    type Case<'a> = (bool, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (false, "/", vec![]),
        (false, &long_path, vec![]),
        (false, "/", vec![("X-Big", big.as_str())]),
        (false, "/", many_refs.clone()),
        (false, "/", many_refs[..20].to_vec()),
        (false, &mid_path, vec![]),
        (true, &mid_path, vec![]),
        (true, "/", vec![("X-Mid", mid.as_str())]),
        (
            true,
            "/",
            vec![("X-A", &kilo[..900]), ("X-B", &kilo[..900])],
        ),
        (false, "/up/big", vec![]),
        (false, "/roomy/big", vec![]),
        (false, "/up/many", vec![]),
        (false, "/up/plain", vec![]),
    ];
    let up = backend();
    let (ferrolb, [port, small]) = Proxy::start_on(|[p, s]| conf(p, s, up));
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    let nginx = (nginx_bin.exists() && !bin_is_nginx(&proxy_bin()))
        .then(|| Proxy::start_bin_on(nginx_bin, |[p, s]| conf(p, s, up)));
    let mut diffs = Vec::new();
    let mut ours_all = Vec::new();
    for (on_small, path, headers) in &cases {
        let p = if *on_small { small } else { port };
        let ours = facts(&http_request(p, "GET", path, "localhost", headers, b""));
        assert!(
            !ours.starts_with("error"),
            "{}: {ours}",
            &path[..path.len().min(20)]
        );
        if let Some((_, [np, ns])) = &nginx {
            let p = if *on_small { *ns } else { *np };
            let theirs = facts(&http_request(p, "GET", path, "localhost", headers, b""));
            if ours != theirs {
                diffs.push(format!(
                    "{} ({} headers, small: {on_small})\n  ferrolb: {ours}\n  nginx:   {theirs}",
                    &path[..path.len().min(20)],
                    headers.len()
                ));
            }
        }
        ours_all.push(ours);
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
    assert_eq!(ours_all[0], "200 ok");
    assert_eq!(ours_all[1], "414 414 Request-URI Too Large");
    assert_eq!(ours_all[2], "400 400 Request Header Or Cookie Too Large");
    assert_eq!(ours_all[3], "400 400 Request Header Or Cookie Too Large");
    let log = ferrolb.error_log();
    assert!(log.contains("client sent too long URI"), "{log}");
    assert!(log.contains("client sent too large request"), "{log}");
    assert_eq!(ours_all[9], "502 502 Bad Gateway");
    assert_eq!(ours_all[10], "200 ok");
    assert_eq!(ours_all[11], "200 ok");
    assert!(
        log.contains("upstream sent too big header while reading response header from upstream"),
        "{log}"
    );
}
