//! Cost of finding a request's `location` (`server::location::find_location`) in a
//! server block shaped like a real site's: exact matches, prefixes (some nested), a
//! `^~` prefix and regexes, for a request path that ends on each kind of match.
//!
//! `find_location/KIND` is one lookup; the config is loaded once, as ferrolb loads it.

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ferrolb::config::{self, LoadOptions};
use ferrolb::server::location::find_location;

const SITE: &str = r#"
events {}
http {
    upstream app { server 127.0.0.1:8000; }
    server {
        listen 127.0.0.1:8080;
        location = / { proxy_pass http://app; }
        location = /favicon.ico { return 204; }
        location = /robots.txt { return 200 "User-agent: *\n"; }
        location = /healthz { return 200 "ok\n"; }
        location / { proxy_pass http://app; }
        location /api/ {
            proxy_pass http://app;
            location /api/v1/ { proxy_pass http://app; }
            location /api/v2/ { proxy_pass http://app; }
            location ~ ^/api/v2/export/.+\.csv$ { proxy_pass http://app; }
        }
        location /admin/ { proxy_pass http://app; }
        location /accounts/ { proxy_pass http://app; }
        location /blog/ { proxy_pass http://app; }
        location /media/ { proxy_pass http://app; }
        location ^~ /static/ { return 404; }
        location ~* \.(png|jpe?g|gif|svg|webp)$ { return 404; }
        location ~ \.php$ { return 403; }
        location ~ ^/(wp-admin|wp-login|xmlrpc)  { return 403; }
        location ~ /\.(git|env|ht) { return 403; }
    }
}
"#;

fn bench(c: &mut Criterion) {
    let opts = LoadOptions {
        text: Some(SITE.to_string()),
        ..Default::default()
    };
    let conf = match config::load(Path::new("bench.conf"), &opts) {
        Ok(conf) => conf,
        Err(e) => panic!("the benchmark's config must load: {e}"),
    };
    let locations = &conf.http.servers[0].locations;
    let mut group = c.benchmark_group("find_location");
    for (kind, path, want) in [
        ("exact", "/healthz", "/healthz"),
        ("prefix", "/blog/2024/11/balancing-django", "/blog/"),
        ("nested_prefix", "/api/v1/articles/42/comments", "/api/v1/"),
        (
            "nested_regex",
            "/api/v2/export/2024-11.csv",
            "^/api/v2/export/.+\\.csv$",
        ),
        ("no_regex_prefix", "/static/css/site.4f2a9c.css", "/static/"),
        (
            "regex",
            "/blog/images/cover.webp",
            "\\.(png|jpe?g|gif|svg|webp)$",
        ),
        ("fallback", "/articles/2024/balancing", "/"),
    ] {
        // A benchmark of the wrong lookup would measure nothing useful.
        let found = find_location(locations, path).map(|l| l.pattern.as_str());
        assert_eq!(found, Some(want), "{path} must end on {want}");
        group.bench_function(kind, |b| {
            b.iter(|| find_location(black_box(locations), black_box(path)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
