//! A configuration with the proxy cache directives starts, says once that responses
//! pass through uncached, and proxies every request to the backend (each answer
//! carries a fresh counter, so a cached answer would show). Debian's nginx, which
//! has the cache, answers the second request from it: the one deliberate difference.

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{bin_is_nginx, http_get, proxy_bin, scripted_backend, Proxy};

fn conf(port: u16, backend: u16, cache_dir: &str) -> String {
    format!(
        "events {{}}
http {{
    access_log off;
    proxy_cache_path {cache_dir} levels=1:2 keys_zone=app:10m inactive=60m max_size=100m use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_cache app;
            proxy_cache_valid 200 10m;
            proxy_cache_key $scheme$host$request_uri;
            proxy_cache_use_stale error timeout updating;
            proxy_cache_lock on;
            proxy_cache_bypass $http_x_nocache;
            proxy_no_cache $http_x_nocache;
        }}
    }}
}}
"
    )
}

/// A backend whose every answer has the next number.
fn counting_backend() -> u16 {
    let n = Arc::new(AtomicU32::new(0));
    scripted_backend(move |_req, _reader, conn| {
        let body = format!("answer {}\n", n.fetch_add(1, Ordering::SeqCst) + 1);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

fn two_answers(bin: PathBuf) -> (Vec<String>, Proxy) {
    let backend = counting_backend();
    let cache = common::fresh_temp_dir("cache");
    let (proxy, [port]) =
        Proxy::start_bin_on(bin, |[p]| conf(p, backend, &cache.display().to_string()));
    let answers = (0..2)
        .map(|_| http_get(port, "/page", "x").expect("GET").text())
        .collect();
    (answers, proxy)
}

#[test]
fn cache_directives_load_with_one_warning_and_pass_responses_through() {
    let (answers, proxy) = two_answers(proxy_bin());
    assert_eq!(answers, ["answer 1\n", "answer 2\n"], "uncached");
    let log = proxy.error_log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ferrolb has no cache yet"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("nginx.conf:6"),
        "names the first cache directive: {}",
        warnings[0]
    );

    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        let (answers, _nginx) = two_answers(nginx_bin);
        assert_eq!(answers, ["answer 1\n", "answer 1\n"], "nginx caches");
    }
}
