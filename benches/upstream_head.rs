//! Cost of the header rewriting on the way upstream (`proxy::upstream_head`): the
//! request line with the `proxy_pass` URI, `proxy_set_header` lines with their
//! variables, the client's headers minus hop-by-hop ones and those the config sets.
//! A browser's GET as Django behind nginx sees it (cookies, `Accept-*`, a hop-by-hop
//! `Connection: keep-alive`), in three locations:
//!
//! - `upstream_head/bench_config`: `bench/conf/nginx-proxy.conf`'s (`Connection ""`);
//! - `upstream_head/forwarded`: the usual Django set (Host, X-Real-IP, X-Forwarded-*);
//! - `upstream_head/uri_replaced`: `proxy_pass http://app/v2/` under `location /api/`.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrolb::balance::Upstream;
use ferrolb::config::{self, Action, LoadOptions};
use ferrolb::http1::{Parsed, RequestHead};
use ferrolb::net::ClientAddr;
use ferrolb::proxy::{upstream_head, ClientInfo, Forward};
use ferrolb::upstream::PeerRegistry;

const CONF: &str = r#"
events {}
http {
    upstream app { server 127.0.0.1:8000; keepalive 32; }
    server {
        listen 127.0.0.1:8080;
        location = /bench {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /articles/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
        location /api/ {
            proxy_pass http://app/v2/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"#;

const BROWSER: &str = "Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: csrftoken=Xq3v9Jk2LmN8pQr4StU6vWx0YzA1bC5d; sessionid=8f2k1m9x0q7w3e5r6t4y2u8i1o0p9a7s\r\n\
Upgrade-Insecure-Requests: 1\r\n\
X-Forwarded-For: 198.51.100.7\r\n\r\n";

fn bench(c: &mut Criterion) {
    let opts = LoadOptions {
        text: Some(CONF.to_string()),
        ..Default::default()
    };
    let conf = match config::load(Path::new("bench.conf"), &opts) {
        Ok(conf) => conf,
        Err(e) => panic!("the benchmark's config must load: {e}"),
    };
    let upstream = Upstream::build(&conf.http.upstreams[0], &PeerRegistry::new());
    let peer = &upstream.peers[0].conf.addr;
    let info = ClientInfo::new(
        1,
        ClientAddr::Inet(([192, 0, 2, 10], 50_000).into()),
        ([127, 0, 0, 1], 8080).into(),
    );
    let mut group = c.benchmark_group("upstream_head");
    for (name, index, target, uri) in [
        ("bench_config", 0, "/bench", "/bench"),
        (
            "forwarded",
            1,
            "/articles/2024/balancing?page=3",
            "/articles/2024/balancing",
        ),
        (
            "uri_replaced",
            2,
            "/api/articles/42?fields=title",
            "/api/articles/42",
        ),
    ] {
        let loc = &conf.http.servers[0].locations[index];
        let Action::Proxy(pass) = &loc.settings.action else {
            panic!("location {index} of the benchmark's config proxies");
        };
        let request = format!("GET {target} HTTP/1.1\r\n{BROWSER}");
        let mut head = RequestHead::default();
        assert!(matches!(
            head.parse(request.as_bytes()),
            Ok(Parsed::Complete)
        ));
        let f = Forward {
            head: &head,
            settings: &loc.settings,
            pass,
            upstream: &upstream,
            info: &info,
            server_name: "",
            uri,
            keep_client: true,
            locals: None,
            rewritten: None,
            log_upstream: false,
            hands_off: &|_| false,
            absolute_base: &|_| String::new(),
        };
        // What is measured must be the rewriting asked for.
        let sent =
            String::from_utf8_lossy(&upstream_head(&f, request.as_bytes(), peer)).into_owned();
        assert!(!sent.contains("Connection: keep-alive"), "{name}: {sent}");
        match name {
            "forwarded" => assert!(
                sent.contains("X-Forwarded-For: 198.51.100.7, 192.0.2.10\r\n"),
                "{sent}"
            ),
            "uri_replaced" => assert!(
                sent.starts_with("GET /v2/articles/42?fields=title "),
                "{sent}"
            ),
            _ => {}
        }
        group.bench_function(name, |b| {
            b.iter(|| upstream_head(black_box(&f), black_box(request.as_bytes()), peer))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
