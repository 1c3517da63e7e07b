//! Loading whole configurations: defaults, inheritance, upstreams, errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The only names these tests resolve, so none of them asks the machine's DNS.
fn hosts() -> Arc<StaticResolver> {
    Arc::new(StaticResolver::new().with_host(
        "localhost",
        [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
    ))
}

fn opts(text: &str) -> LoadOptions {
    LoadOptions {
        prefix: PathBuf::from("/srv/lb"),
        globals: None,
        text: Some(text.to_owned()),
        is_root: false,
        resolver: hosts(),
    }
}

fn load_text(text: &str) -> Config {
    load(Path::new("nginx.conf"), &opts(text)).unwrap_or_else(|e| panic!("should load: {e}"))
}

fn load_err(text: &str) -> String {
    load(Path::new("nginx.conf"), &opts(text))
        .expect_err("should fail")
        .to_string()
}

/// The first line of an error (the hint, if any, follows on the next lines).
fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or("")
}

fn in_http(body: &str) -> String {
    format!("events {{}}\nhttp {{\n{body}\n}}\n")
}

const ARTICLE: &str = "events {}
http {
  upstream myproject {
    server 127.0.0.1:8000;
    server 127.0.0.1:8001;
    server 127.0.0.1:8002;
    server 127.0.0.1:8003;
  }
  server {
    listen 80;
    server_name localhost;
    location / {
      proxy_pass http://myproject;
      proxy_set_header Host $host;
    }
  }
}
";

#[test]
fn article_config_loads() {
    let c = load_text(ARTICLE);
    assert_eq!(c.http.upstreams.len(), 1);
    let up = &c.http.upstreams[0];
    assert_eq!(up.name, "myproject");
    assert!(!up.implicit);
    assert_eq!(up.peers.len(), 4);
    assert_eq!(
        up.peers[3].addr,
        "127.0.0.1:8003".parse::<Endpoint>().expect("addr")
    );
    assert_eq!(up.peers[0].span.line, 4);
    let s = &c.http.servers[0];
    assert_eq!(
        s.listen[0].addr,
        "0.0.0.0:80".parse::<Endpoint>().expect("addr")
    );
    assert_eq!(s.primary_name, "localhost");
    let loc = &s.locations[0];
    match &loc.settings.action {
        Action::Proxy(p) => {
            assert_eq!(p.upstream, 0);
            assert_eq!(p.proxy_host, "myproject");
            assert_eq!(p.uri, None);
            assert_eq!(p.location_prefix.as_deref(), Some("/"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        loc.settings.proxy_set_header,
        vec![(
            "Host".to_owned(),
            Template {
                parts: vec![TemplatePart::Var(Var::Host)]
            }
        )]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

const BENCH: &str = "/work/shared/bench/conf/nginx-proxy.conf";

#[test]
fn bench_config_loads_with_and_without_globals() {
    if !Path::new(BENCH).exists() {
        return;
    }
    let mut o = LoadOptions {
        prefix: PathBuf::from("/tmp"),
        ..Default::default()
    };
    let c = load(Path::new(BENCH), &o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.worker_connections, 16384);
    assert_eq!(c.http.upstreams[0].keepalive, Some(512));
    let loc = &c.http.servers[0].locations[0];
    assert_eq!(loc.settings.proxy_http_version, ProxyHttpVersion::Http11);
    assert_eq!(loc.settings.access_log, AccessLogConf::Off);
    assert_eq!(loc.settings.proxy_set_header[0].0, "Connection");
    assert!(loc.settings.proxy_set_header[0].1.parts.is_empty());
    // Honoured now (a 16 KiB POST body stays in memory), no longer warned about.
    assert_eq!(loc.settings.client_body_buffer_size, 32 * 1024);

    o.globals = Some("daemon off; pid /tmp/x.pid; error_log /tmp/e.log;".to_owned());
    let c = load(Path::new(BENCH), &o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pid, PathBuf::from("/tmp/x.pid"));
    assert_eq!(
        c.error_log.target,
        LogTarget::File(PathBuf::from("/tmp/e.log"))
    );
}

#[test]
fn globals_duplicate_file_directives() {
    let mut o = opts("events {}\npid other.pid;\n");
    o.globals = Some("daemon off; pid /tmp/x.pid;".to_owned());
    let e = load(Path::new("nginx.conf"), &o)
        .expect_err("duplicate")
        .to_string();
    assert_eq!(e, "nginx.conf:2: \"pid\" directive is duplicate");
    o.globals = Some("bogus on;".to_owned());
    let e = load(Path::new("nginx.conf"), &o)
        .expect_err("unknown")
        .to_string();
    assert_eq!(e, "command line:1: unknown directive \"bogus\"");
}

#[test]
fn defaults() {
    let c = load_text(
        "events {}\nhttp { server { location / { proxy_pass http://127.0.0.1:9000; } } }",
    );
    assert_eq!(c.worker_processes, 1);
    assert_eq!(c.worker_connections, 512);
    assert_eq!(c.pid, PathBuf::from("/srv/lb/logs/nginx.pid"));
    assert_eq!(
        c.error_log,
        ErrorLogConf {
            target: LogTarget::File(PathBuf::from("/srv/lb/logs/error.log")),
            level: Level::Error
        }
    );
    let s = &c.http.servers[0];
    assert_eq!(
        s.listen[0].addr,
        "0.0.0.0:8000".parse::<Endpoint>().expect("addr")
    );
    assert!(matches!(&s.server_names[..], [ServerName::Exact(n)] if n.is_empty()));
    assert_eq!(s.primary_name, "");
    assert!(matches!(s.settings.action, Action::Static));
    let l = &s.locations[0].settings;
    assert_eq!(l.proxy_http_version, ProxyHttpVersion::Http10);
    assert_eq!(l.proxy_connect_timeout, Duration::from_secs(60));
    assert_eq!(l.proxy_read_timeout, Duration::from_secs(60));
    assert_eq!(l.proxy_send_timeout, Duration::from_secs(60));
    assert_eq!(l.proxy_next_upstream, NextUpstream::DEFAULT);
    assert_eq!(l.proxy_next_upstream_tries, 0);
    assert_eq!(l.proxy_next_upstream_timeout, Duration::ZERO);
    assert_eq!(l.client_max_body_size, 1 << 20);
    assert_eq!(l.client_header_timeout, Duration::from_secs(60));
    assert_eq!(l.client_body_timeout, Duration::from_secs(60));
    assert_eq!(l.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(l.keepalive_requests, 1000);
    assert!(l.proxy_set_header.is_empty() && l.add_header.is_empty());
    assert_eq!(
        l.access_log,
        AccessLogConf::Logs(vec![AccessLogTarget {
            path: PathBuf::from("/srv/lb/logs/access.log"),
            path_template: None,
            format: None,
            condition: None,
            buffering: LogBuffering::default(),
            syslog: None,
        }])
    );
    let root = load(
        Path::new("nginx.conf"),
        &LoadOptions {
            is_root: true,
            ..opts("events {} http { server { } }")
        },
    )
    .expect("loads");
    assert_eq!(root.http.servers[0].listen[0].addr.port(), Some(80));
}

#[test]
fn main_level_values() {
    let c = load_text("worker_processes auto;\nerror_log stderr warn;\npid run/lb.pid;\ndaemon off;\nevents { worker_connections 100; use epoll; }\n");
    assert!(c.worker_processes >= 1);
    assert_eq!(c.worker_connections, 100);
    assert_eq!(
        c.error_log,
        ErrorLogConf {
            target: LogTarget::Stderr,
            level: Level::Warn
        }
    );
    assert_eq!(c.pid, PathBuf::from("/srv/lb/run/lb.pid"));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.starts_with("\"use\" is accepted and ignored")));
    assert_eq!(
        first_line(&load_err("events {}\nerror_log x.log loud;\n")),
        "nginx.conf:2: invalid log level \"loud\""
    );
    assert_eq!(load_err("events {}\ndaemon maybe;"), "nginx.conf:2: invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\"");
    assert_eq!(
        load_err("events {}\nworker_processes 1;\nworker_processes 2;"),
        "nginx.conf:3: \"worker_processes\" directive is duplicate"
    );
}

#[test]
fn inheritance_deeper_level_wins() {
    let c = load_text(&in_http(
        "proxy_read_timeout 10s; client_max_body_size 10m; keepalive_timeout 5;
         server {
           proxy_read_timeout 20s;
           location /a { proxy_read_timeout 500ms;
             location /a/b { client_max_body_size 0; } }
           location /c { }
         }",
    ));
    let s = &c.http.servers[0];
    assert_eq!(s.settings.proxy_read_timeout, Duration::from_secs(20));
    let a = &s.locations[0];
    assert_eq!(a.settings.proxy_read_timeout, Duration::from_millis(500));
    assert_eq!(a.settings.client_max_body_size, 10 << 20);
    let ab = &a.locations[0];
    assert_eq!(ab.settings.proxy_read_timeout, Duration::from_millis(500));
    assert_eq!(ab.settings.client_max_body_size, 0);
    assert_eq!(ab.settings.keepalive_timeout, Duration::from_secs(5));
    assert_eq!(
        s.locations[1].settings.proxy_read_timeout,
        Duration::from_secs(20)
    );
}

#[test]
fn header_lists_replace_not_extend() {
    let c = load_text(&in_http(
        "proxy_set_header X-A a; proxy_set_header X-B b; add_header H1 v1;
         server {
           location /inherit { }
           location /replace { proxy_set_header X-C $remote_addr; add_header H2 v2 always; }
         }",
    ));
    let locs = &c.http.servers[0].locations;
    let names = |l: &Location| {
        l.settings
            .proxy_set_header
            .iter()
            .map(|h| h.0.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&locs[0]), ["X-A", "X-B"]);
    assert_eq!(names(&locs[1]), ["X-C"]);
    assert_eq!(locs[0].settings.add_header.len(), 1);
    assert_eq!(locs[1].settings.add_header[0].name, "H2");
    assert!(locs[1].settings.add_header[0].always);
}

#[test]
fn upstream_server_parameters() {
    let c = load_text(&in_http(
        "upstream u {
           server 127.0.0.1 weight=3 max_fails=0 fail_timeout=30s max_conns=7;
           server 127.0.0.1:81 backup;
           server [::1]:82 down;
           keepalive 16; keepalive_timeout 5s; keepalive_requests 50;
           zone u 64k;
         }",
    ));
    let u = &c.http.upstreams[0];
    let p = &u.peers[0];
    assert_eq!(p.addr, "127.0.0.1:80".parse::<Endpoint>().expect("addr"));
    assert_eq!(
        (p.weight, p.max_fails, p.fail_timeout, p.max_conns),
        (3, 0, Duration::from_secs(30), 7)
    );
    assert!(!p.backup && !p.down);
    assert!(u.peers[1].backup);
    assert!(u.peers[2].down);
    assert_eq!(
        u.peers[2].addr,
        "[::1]:82".parse::<Endpoint>().expect("addr")
    );
    assert_eq!(
        (u.keepalive, u.keepalive_timeout, u.keepalive_requests),
        (Some(16), Duration::from_secs(5), 50)
    );
    assert!(!c.warnings.iter().any(|w| w.message.contains("\"zone\"")));
    let d = &c.http.upstreams[0].peers[1];
    assert_eq!(
        (d.weight, d.max_fails, d.fail_timeout),
        (1, 1, Duration::from_secs(10))
    );
}

#[test]
fn localhost_resolves_to_every_address() {
    let c = load_text(&in_http("upstream u { server localhost:8000; }"));
    let peers = &c.http.upstreams[0].peers;
    assert!(!peers.is_empty());
    assert!(
        peers
            .iter()
            .all(|p| p.name == "localhost:8000"
                && p.addr.inet().is_some_and(|a| a.ip().is_loopback()))
    );
}

#[test]
fn upstream_errors() {
    let e = load_err(&in_http("upstream u {\n server localhost:99999;\n}"));
    assert_eq!(
        e,
        "nginx.conf:4: invalid port in upstream \"localhost:99999\""
    );
    let e = load_err(&in_http("upstream u {\n server 127.0.0.1 weight=0;\n}"));
    assert_eq!(e, "nginx.conf:4: invalid parameter \"weight=0\"");
    let e = load_err(&in_http(
        "upstream u {\n server 127.0.0.1 slow_start=soon;\n}",
    ));
    assert_eq!(e, "nginx.conf:4: invalid parameter \"slow_start=soon\"");
    let e = load_err(&in_http("upstream u {\n}"));
    assert_eq!(e, "nginx.conf:3: no servers are inside upstream");
    let e = load_err(&in_http(
        "upstream u { server 127.0.0.1; }\nupstream U { server 127.0.0.1; }",
    ));
    assert_eq!(e, "nginx.conf:4: duplicate upstream \"U\"");
    let e = load_err(&in_http(
        "upstream u {\n server no-such-host.invalid:80;\n}",
    ));
    assert_eq!(
        e,
        "nginx.conf:4: host not found in upstream \"no-such-host.invalid:80\""
    );
}

#[test]
fn implicit_upstreams() {
    let c = load_text(&in_http(
        "server {
           location /a { proxy_pass http://127.0.0.1:9001/x/; }
           location /b { proxy_pass http://127.0.0.1:9001; }
           location /c { proxy_pass http://127.0.0.1; }
           location ~ ^/r { proxy_pass http://later; }
         }
         upstream later { server 127.0.0.1:9002; }",
    ));
    let ups = &c.http.upstreams;
    let names: Vec<_> = ups.iter().map(|u| (u.name.as_str(), u.implicit)).collect();
    assert_eq!(
        names,
        [
            ("later", false),
            ("127.0.0.1:9001", true),
            ("127.0.0.1:80", true)
        ]
    );
    let pp = |i: usize| match &c.http.servers[0].locations[i].settings.action {
        Action::Proxy(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (
            pp(0).upstream,
            pp(0).uri.as_deref(),
            pp(0).location_prefix.as_deref()
        ),
        (1, Some("/x/"), Some("/a"))
    );
    assert_eq!(pp(1).upstream, 1);
    assert_eq!(
        (pp(2).upstream, pp(2).proxy_host.as_str()),
        (2, "127.0.0.1")
    );
    assert_eq!(
        (pp(3).upstream, pp(3).location_prefix.as_deref()),
        (0, None)
    );
    assert_eq!(ups[1].span.line, 4);
}

#[test]
fn proxy_pass_errors() {
    let loc = |d: &str| {
        load_err(&in_http(&format!(
            "server {{\nlocation ~ ^/x {{\n{d}\n}}\n}}"
        )))
    };
    assert_eq!(
        first_line(&loc("proxy_ssl_verify on; proxy_pass https://127.0.0.1;")),
        "nginx.conf:5: no proxy_ssl_trusted_certificate for proxy_ssl_verify"
    );
    assert!(loc("proxy_pass http://127.0.0.1/uri;").starts_with(
        "nginx.conf:5: \"proxy_pass\" cannot have URI part in location given by regular expression"
    ));
    assert_eq!(
        first_line(&loc("proxy_pass ftp://x;")),
        "nginx.conf:5: invalid URL prefix in \"ftp://x\""
    );
    assert_eq!(
        first_line(&loc("if ($x) { }")),
        "nginx.conf:5: unknown \"x\" variable"
    );
    assert_eq!(
        first_line(&loc("if ($host) {\nproxy_set_header A b; }")),
        "nginx.conf:6: \"proxy_set_header\" directive is not allowed inside \"if\""
    );
    assert_eq!(
        first_line(&loc("if $host { }")),
        "nginx.conf:5: invalid condition \"$host\""
    );
    assert_eq!(
        first_line(&loc("rewrite ^/(.*)$ /$1 bogus;")),
        "nginx.conf:5: invalid parameter \"bogus\""
    );
    let e = load_err(&in_http(
        "upstream u { server 127.0.0.1; }\nserver { location / {\nproxy_pass http://u:8080; } }",
    ));
    assert_eq!(
        first_line(&e),
        "nginx.conf:5: upstream \"u\" may not have port 8080"
    );
    let e = load_err(&in_http("server {\nproxy_pass http://x;\n}"));
    assert_eq!(
        first_line(&e),
        "nginx.conf:4: \"proxy_pass\" directive is not allowed here"
    );
    assert!(
        e.contains("hint: \"proxy_pass\" belongs in: location"),
        "{e}"
    );
}

#[test]
fn listen_and_server_name() {
    let c = load_text(&in_http(
        "server { listen 127.0.0.1:8080 default_server reuseport backlog=511; listen [::1]:81; listen 10.0.0.1;
                  server_name Example.COM *.example.org .bare.net www.example.* ~^api\\d+\\.x$; }",
    ));
    let s = &c.http.servers[0];
    let addrs: Vec<String> = s.listen.iter().map(|l| l.addr.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:8080", "[::1]:81", "10.0.0.1:80"]);
    assert!(s.listen[0].default_server && !s.listen[1].default_server);
    assert_eq!(s.primary_name, "Example.COM");
    assert!(matches!(&s.server_names[0], ServerName::Exact(n) if n == "example.com"));
    assert!(
        matches!(&s.server_names[1], ServerName::WildcardStart { suffix, matches_bare: false } if suffix == ".example.org")
    );
    assert!(
        matches!(&s.server_names[2], ServerName::WildcardStart { suffix, matches_bare: true } if suffix == ".bare.net")
    );
    assert!(matches!(&s.server_names[3], ServerName::WildcardEnd(p) if p == "www.example."));
    assert!(matches!(&s.server_names[4], ServerName::Regex(r) if r.is_match("API7.x")));
    let e = load_err(&in_http("server {\nlisten localhost:99999;\n}"));
    assert_eq!(
        e,
        "nginx.conf:4: invalid port in \"localhost:99999\" of the \"listen\" directive"
    );
    let e = load_err(&in_http("server {\nlisten 80 ssl;\n}"));
    assert!(
        e.starts_with(
            "nginx.conf:4: no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive"
        ),
        "{e}"
    );
    let e = load_err(&in_http("server {\nserver_name a*b;\n}"));
    assert_eq!(e, "nginx.conf:4: invalid server name or wildcard \"a*b\"");
    let e = load_err(&in_http(
        "server { listen 80 default_server; }\nserver {\nlisten 80 default_server; }",
    ));
    assert_eq!(e, "nginx.conf:5: a duplicate default server for 0.0.0.0:80");
}

#[test]
fn values_and_their_errors() {
    let c = load_text(&in_http(
        "proxy_next_upstream error timeout http_502 non_idempotent; proxy_next_upstream_tries 3;
         proxy_next_upstream_timeout 1m30s; client_header_timeout '1h 2m'; client_max_body_size 2k;
         server { return 301 https://$host$request_uri; location / { proxy_next_upstream off; } }",
    ));
    let s = &c.http.servers[0];
    let nu = s.settings.proxy_next_upstream;
    assert!(
        nu.has(NextUpstream::HTTP_502)
            && nu.has(NextUpstream::NON_IDEMPOTENT)
            && !nu.has(NextUpstream::HTTP_500)
    );
    assert_eq!(s.settings.proxy_next_upstream_tries, 3);
    assert_eq!(
        s.settings.proxy_next_upstream_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(s.settings.client_header_timeout, Duration::from_secs(3720));
    assert_eq!(s.settings.client_max_body_size, 2048);
    assert_eq!(
        s.locations[0].settings.proxy_next_upstream,
        NextUpstream::OFF
    );
    // A server-level return runs in the server rewrite phase, before location lookup.
    assert!(
        matches!(&s.settings.rewrite[..], [RewriteOp::Return { code: 301, text: Some(t) }] if t.parts.len() == 3)
    );
    assert!(s.locations[0].settings.rewrite.is_empty());
    let bad = |d: &str| first_line(&load_err(&in_http(&format!("server {{\n{d}\n}}")))).to_owned();
    assert_eq!(
        bad("proxy_read_timeout 10x;"),
        "nginx.conf:4: \"proxy_read_timeout\" directive invalid value \"10x\""
    );
    assert_eq!(
        bad("client_max_body_size 1t;"),
        "nginx.conf:4: \"client_max_body_size\" directive invalid value \"1t\""
    );
    assert_eq!(
        bad("keepalive_requests many;"),
        "nginx.conf:4: \"keepalive_requests\" directive invalid number \"many\""
    );
    assert_eq!(
        bad("proxy_next_upstream error off;"),
        "nginx.conf:4: invalid value \"off\" in \"proxy_next_upstream\" directive"
    );
    assert_eq!(
        bad("proxy_next_upstream http_418;"),
        "nginx.conf:4: invalid value \"http_418\" in \"proxy_next_upstream\" directive"
    );
    assert_eq!(bad("proxy_http_version 2;"), "nginx.conf:4: invalid value \"2\" in \"proxy_http_version\" directive, it must be \"1.0\" or \"1.1\"");
    assert_eq!(
        bad("return abc;"),
        "nginx.conf:4: invalid return code \"abc\""
    );
    assert_eq!(
        bad("proxy_set_header X $foo;"),
        "nginx.conf:4: unknown \"foo\" variable"
    );
    assert_eq!(
        bad("proxy_read_timeout 1s;\nproxy_read_timeout 2s;"),
        "nginx.conf:5: \"proxy_read_timeout\" directive is duplicate"
    );
    let ret = load_text(&in_http(
        "server { location / { return http://x/; } location /t { return 404 'gone'; } }",
    ));
    let locs = &ret.http.servers[0].locations;
    assert!(matches!(
        &locs[0].settings.rewrite[..],
        [RewriteOp::Return {
            code: 302,
            text: Some(_)
        }]
    ));
    assert!(
        matches!(&locs[1].settings.rewrite[..], [RewriteOp::Return { code: 404, text: Some(t) }] if *t == Template::literal("gone"))
    );
}

#[test]
fn unknown_misplaced_and_miscounted_directives() {
    let e = load_err("events {}\nhttp {\n  proxy_pas http://x;\n}");
    assert_eq!(
        e,
        "nginx.conf:3: unknown directive \"proxy_pas\"\n  hint: did you mean \"proxy_pass\"?"
    );
    assert_eq!(
        load_err("events {}\nfoo;"),
        "nginx.conf:2: unknown directive \"foo\""
    );
    assert_eq!(
        first_line(&load_err("events {}\nlisten 80;")),
        "nginx.conf:2: \"listen\" directive is not allowed here"
    );
    assert_eq!(
        load_err(&in_http("server {\nlisten;\n}")),
        "nginx.conf:4: invalid number of arguments in \"listen\" directive"
    );
    assert_eq!(
        load_err("events {}\nhttp;"),
        "nginx.conf:2: directive \"http\" has no opening \"{\""
    );
    assert_eq!(
        first_line(&load_err(&in_http(
            "server {\nserver_name a\nlocation / { }\n}"
        ))),
        "nginx.conf:4: directive \"server_name\" is not terminated by \";\""
    );
    let e = load_err(&in_http("server {\nlisten 80\nserver_name a;\n}"));
    assert_eq!(
        e,
        "nginx.conf:4: directive \"listen\" is not terminated by \";\"\n  hint: \"server_name\" on line 5 looks like the next directive; add \";\" at the end of line 4"
    );
}

#[test]
fn ignored_directives_warn() {
    let c = load_text(&in_http(
        "sendfile on; tcp_nopush on; gzip on; gzip_types text/plain; types { text/html html; }
         default_type application/octet-stream; server_tokens off; ssl_buffer_size 4k;
         log_format main '$remote_addr'; access_log logs/a.log main; client_body_temp_path /tmp;
         server { root /var/www; index index.html; location / { proxy_buffering off; } }",
    ));
    for name in [
        "sendfile",
        "tcp_nopush",
        "server_tokens",
        "ssl_buffer_size",
        "proxy_buffering",
    ] {
        let needle = format!("\"{name}\" is accepted and ignored");
        assert!(
            c.warnings.iter().any(|w| w.message.starts_with(&needle)),
            "no warning for {name}"
        );
    }
    // Static file directives are honoured now, with nginx's inheritance.
    for name in ["types", "default_type", "root", "index"] {
        let needle = format!("\"{name}\" is accepted and ignored");
        assert!(!c.warnings.iter().any(|w| w.message.starts_with(&needle)));
    }
    let files = &c.http.servers[0].locations[0].settings.files;
    assert_eq!(files.doc, DocRoot::Root(PathBuf::from("/var/www")));
    assert_eq!(files.default_type, "application/octet-stream");
    assert_eq!(files.types.of("a.HTML"), Some("text/html"));
    assert_eq!(files.index, [Template::literal("index.html")]);
    match c.http.servers[0].settings.access_log.targets() {
        [t] => {
            assert_eq!(t.path, PathBuf::from("/srv/lb/logs/a.log"));
            assert_eq!(t.format.as_ref().map(|f| f.name.as_str()), Some("main"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        first_line(&load_err(&in_http("access_log x.log fancy;"))),
        "nginx.conf:3: unknown log format \"fancy\""
    );
}

#[test]
fn log_format_directive() {
    let c = load_text(&in_http(
        "log_format j escape=json '{\"s\":\"$status\",' '\"u\":\"$upstream_addr\"}';
         log_format plain '$remote_addr $request_time';
         access_log logs/j.log j;
         server { location /p { access_log logs/p.log plain; } location /c { access_log logs/c.log combined; } }",
    ));
    let s = &c.http.servers[0];
    let Some(format) = &s.settings.access_log.targets()[0].format else {
        panic!("{:?}", s.settings.access_log)
    };
    assert_eq!(format.escape, LogEscape::Json);
    assert!(format.uses_upstream);
    // The strings are concatenated with nothing between them.
    assert_eq!(
        format.parts,
        vec![
            TemplatePart::Literal("{\"s\":\"".into()),
            TemplatePart::Var(Var::Status),
            TemplatePart::Literal("\",\"u\":\"".into()),
            TemplatePart::Var(Var::UpstreamAddr),
            TemplatePart::Literal("\"}".into()),
        ]
    );
    let Some(format) = &s.locations[0].settings.access_log.targets()[0].format else {
        panic!("{:?}", s.locations[0].settings.access_log)
    };
    assert_eq!(format.escape, LogEscape::Default);
    assert!(!format.uses_upstream);
    let c_log = s.locations[1].settings.access_log.targets();
    assert_eq!(c_log.len(), 1);
    assert_eq!(c_log[0].path, PathBuf::from("/srv/lb/logs/c.log"));
    assert!(c_log[0].format.is_none());

    let err = |body: &str| first_line(&load_err(&in_http(body))).to_owned();
    assert_eq!(
        err("log_format combined '$status';"),
        "nginx.conf:3: duplicate \"log_format\" name \"combined\""
    );
    assert_eq!(
        err("log_format a '$status';\nlog_format a '$status';"),
        "nginx.conf:4: duplicate \"log_format\" name \"a\""
    );
    assert_eq!(
        err("log_format a escape=xml '$status';"),
        "nginx.conf:3: unknown log format escaping \"xml\""
    );
    assert_eq!(
        err("log_format a escape=json;"),
        "nginx.conf:3: invalid number of arguments in \"log_format\" directive"
    );
    assert_eq!(
        err("log_format a '$nope';"),
        "nginx.conf:3: unknown \"nope\" variable"
    );
    assert_eq!(
        err("server {\nlocation / {\naccess_log x.log x; } }"),
        "nginx.conf:5: unknown log format \"x\""
    );
}

#[test]
fn location_rules() {
    let e = load_err(&in_http("server { location /a { }\nlocation /a { } }"));
    assert_eq!(e, "nginx.conf:4: duplicate location \"/a\"");
    let e = load_err(&in_http("server { location /a {\nlocation /b { } } }"));
    assert_eq!(
        e,
        "nginx.conf:4: location \"/b\" is outside location \"/a\""
    );
    let e = load_err(&in_http("server { location = /a {\nlocation /a/b { } } }"));
    assert_eq!(
        e,
        "nginx.conf:4: location \"/a/b\" cannot be inside the exact location \"/a\""
    );
    let e = load_err(&in_http("server {\nlocation ~ ( { } }"));
    assert!(e.starts_with("nginx.conf:4: invalid regex \"(\""), "{e}");
    let c = load_text(&in_http(
        "server { location =/x { } location ~*\\.PNG$ { } location ^~/s { } }",
    ));
    let kinds: Vec<_> = c.http.servers[0]
        .locations
        .iter()
        .map(|l| (l.kind, l.pattern.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (LocationKind::Exact, "/x"),
            (LocationKind::RegexCaseless, "\\.PNG$"),
            (LocationKind::PrefixNoRegex, "/s")
        ]
    );
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrolb-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("conf/conf.d")).expect("mkdir");
    d
}

#[test]
fn includes_through_load_and_dump() {
    let d = tmpdir("dump");
    std::fs::write(
        d.join("conf/nginx.conf"),
        "events {}\nhttp {\n  include mime.types;\n  include conf.d/*.conf;\n}\n",
    )
    .expect("write");
    std::fs::write(d.join("conf/mime.types"), "types {\n  text/html html;\n}\n").expect("write");
    std::fs::write(d.join("conf/conf.d/b.conf"), "server { listen 8081; }").expect("write");
    std::fs::write(d.join("conf/conf.d/a.conf"), "server { listen 8080; }\n").expect("write");
    let o = LoadOptions {
        prefix: d.clone(),
        globals: None,
        text: None,
        is_root: false,
        resolver: hosts(),
    };
    let c = load(Path::new("conf/nginx.conf"), &o).unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<u16> = c
        .http
        .servers
        .iter()
        .filter_map(|s| s.listen[0].addr.port())
        .collect();
    assert_eq!(ports, [8080, 8081]);
    assert_eq!(
        c.http.servers[0].span.file.as_path(),
        Path::new("conf/conf.d/a.conf")
    );
    let text = dump(Path::new("conf/nginx.conf"), &o).expect("dumps");
    let expected = format!(
        "# configuration file {p}/conf/nginx.conf:\nevents {{}}\nhttp {{\n  include mime.types;\n  include conf.d/*.conf;\n}}\n\n\
         # configuration file {p}/conf/mime.types:\ntypes {{\n  text/html html;\n}}\n\n\
         # configuration file {p}/conf/conf.d/a.conf:\nserver {{ listen 8080; }}\n\n\
         # configuration file {p}/conf/conf.d/b.conf:\nserver {{ listen 8081; }}\n",
        p = d.display()
    );
    assert_eq!(text, expected);
    let missing = load(Path::new("conf/none.conf"), &o)
        .expect_err("missing main file")
        .to_string();
    assert!(
        missing.starts_with("conf/none.conf: cannot read configuration file"),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn conflicting_server_names_warn() {
    let c = load_text(&in_http(
        "server { server_name a; }\nserver { server_name A; }",
    ));
    assert!(c.warnings.iter().any(|w| w.message
        == "conflicting server name \"a\" on 0.0.0.0:8000, ignored"
        && w.span.line == 4));
}

#[test]
fn blog_snippet_through_load() {
    let src = "http {\n  upstream myproject {\n    server localhost:8000;\n    server localhost:8001;\n    server localhost:8002;\n    server localhost:8003;\n\n  server {\n    listen 80;\n    server_name localhost;\n    location / {\n      proxy_pass http://myproject;\n";
    assert_eq!(
        load_err(src),
        "nginx.conf:13: unexpected end of file: blocks still open: location (line 11), server (line 8), upstream (line 2), http (line 1)"
    );
}

#[test]
fn misplaced_pattern_directive_names_its_contexts() {
    let e = load_err("events {}\ngzip on;");
    assert_eq!(e, "nginx.conf:2: \"gzip\" directive is not allowed here\n  hint: \"gzip\" belongs in: http, server, location");
}

#[test]
fn health_check_match_admin_and_slow_start() {
    let c = load_text(&in_http(
        "ferrolb_admin 127.0.0.1:9090 token=s3cret;\n\
         match ok { status 200-399; status ! 302; header Content-Type ~ text/html; body ~ \"ok\"; }\n\
         upstream u { server 127.0.0.1:8001 slow_start=30s; server 127.0.0.1:8002; }\n\
         server { listen 127.0.0.1:8080; location / { proxy_pass http://u; health_check interval=200ms fails=2 passes=3 uri=/health/ match=ok mandatory; } }",
    ));
    let admin = c.http.admin.as_ref().expect("admin");
    assert_eq!(admin.addr.to_string(), "127.0.0.1:9090");
    assert_eq!(admin.token.as_deref(), Some("s3cret"));
    assert_eq!(
        c.http.upstreams[0].peers[0].slow_start,
        Duration::from_secs(30)
    );
    assert_eq!(c.http.upstreams[0].peers[1].slow_start, Duration::ZERO);
    let hc = &c.http.health_checks[0];
    assert_eq!(hc.upstream, 0);
    assert_eq!(hc.interval, Duration::from_millis(200));
    assert_eq!((hc.fails, hc.passes, hc.mandatory), (2, 3, true));
    assert_eq!(hc.uri, "/health/");
    assert_eq!(hc.timeout, Duration::from_secs(5));
    assert_eq!(hc.matcher.as_ref().map(|m| m.conditions.len()), Some(4));

    // Defaults.
    let c = load_text(&in_http(
        "upstream u { server 127.0.0.1:8001; }\n\
         server { listen 127.0.0.1:8080; location / { proxy_pass http://u; health_check; } }",
    ));
    let hc = &c.http.health_checks[0];
    assert_eq!(hc.interval, Duration::from_secs(5));
    assert_eq!((hc.fails, hc.passes, hc.mandatory), (1, 1, false));
    assert_eq!(hc.uri, "/");
    assert!(c.http.admin.is_none());

    let e = load_err(&in_http(
        "server { listen 127.0.0.1:8080; location / {\n health_check match=nope; proxy_pass http://127.0.0.1:1; } }",
    ));
    assert_eq!(first_line(&e), "nginx.conf:4: match \"nope\" not found");
    let e = load_err(&in_http(
        "server { listen 127.0.0.1:8080; location / {\n health_check fails=0; proxy_pass http://127.0.0.1:1; } }",
    ));
    assert_eq!(e, "nginx.conf:4: invalid parameter \"fails=0\"");
    let e = load_err(&in_http(
        "server { listen 127.0.0.1:8080; location / {\n health_check; return 200; } }",
    ));
    assert_eq!(
        first_line(&e),
        "nginx.conf:4: \"health_check\" needs a \"proxy_pass\" in the same location"
    );
    let e = load_err(&in_http("match m {\n colour red;\n}"));
    assert_eq!(
        first_line(&e),
        "nginx.conf:4: unknown directive \"colour\" in \"match\""
    );
    let e = load_err(&in_http("ferrolb_admin localhost:9090;"));
    assert_eq!(
        first_line(&e),
        "nginx.conf:3: \"ferrolb_admin\" directive invalid value \"localhost:9090\""
    );
}

#[test]
fn balancing_methods() {
    let method = |body: &str| {
        load_text(&in_http(&format!(
            "upstream u {{\n{body}\n server 127.0.0.1;\n}}"
        )))
        .http
        .upstreams[0]
            .method
            .clone()
    };
    assert_eq!(method(""), BalanceMethod::RoundRobin);
    assert_eq!(method("least_conn;"), BalanceMethod::LeastConn);
    assert_eq!(method("ip_hash;"), BalanceMethod::IpHash);
    assert!(matches!(
        method("hash $request_uri consistent;"),
        BalanceMethod::Hash { consistent: true, ref key } if !key.is_literal()
    ));
    assert!(matches!(
        method("hash \"$cookie_sid$arg_x\";"),
        BalanceMethod::Hash {
            consistent: false,
            ..
        }
    ));
    assert_eq!(method("random;"), BalanceMethod::Random { two: false });
    assert_eq!(method("random two;"), BalanceMethod::Random { two: true });
    assert_eq!(
        method("random two least_conn;"),
        BalanceMethod::Random { two: true }
    );
    assert_eq!(
        method("least_time last_byte inflight;"),
        BalanceMethod::LeastTime {
            point: LatencyPoint::LastByte,
            inflight: true,
            decay: Duration::from_secs(10)
        }
    );
    assert_eq!(
        method("least_time header decay=2s;"),
        BalanceMethod::LeastTime {
            point: LatencyPoint::Header,
            inflight: false,
            decay: Duration::from_secs(2)
        }
    );
    // The last method wins, with nginx's warning.
    let c = load_text(&in_http(
        "upstream u {\n ip_hash;\n least_conn;\n server 127.0.0.1;\n}",
    ));
    assert_eq!(c.http.upstreams[0].method, BalanceMethod::LeastConn);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("load balancing method redefined")));
}

#[test]
fn balancing_method_errors() {
    let err = |body: &str| {
        first_line(&load_err(&in_http(&format!("upstream u {{\n{body}\n}}")))).to_owned()
    };
    assert_eq!(
        err("hash;\n server 127.0.0.1;"),
        "nginx.conf:4: invalid number of arguments in \"hash\" directive"
    );
    assert_eq!(
        err("hash \"\";\n server 127.0.0.1;"),
        "nginx.conf:4: empty key in \"hash\""
    );
    assert_eq!(
        err("hash $uri ring;\n server 127.0.0.1;"),
        "nginx.conf:4: invalid parameter \"ring\""
    );
    let e = err("hash $nosuchvar;\n server 127.0.0.1;");
    assert!(
        e.starts_with("nginx.conf:4: unknown \"nosuchvar\" variable"),
        "{e}"
    );
    assert_eq!(
        err("random three;\n server 127.0.0.1;"),
        "nginx.conf:4: invalid parameter \"three\""
    );
    assert_eq!(
        err("least_time first_byte;\n server 127.0.0.1;"),
        "nginx.conf:4: invalid parameter \"first_byte\""
    );
    for m in ["ip_hash", "hash $uri", "random two"] {
        // Either order: the server line is named.
        assert_eq!(
            err(&format!(
                "{m};\n server 127.0.0.1;\n server 127.0.0.2 backup;"
            )),
            "nginx.conf:6: balancing method does not support parameter \"backup\"",
            "{m}"
        );
        assert_eq!(
            err(&format!(
                "server 127.0.0.2 backup;\n {m};\n server 127.0.0.1;"
            )),
            "nginx.conf:4: balancing method does not support parameter \"backup\"",
            "{m}"
        );
    }
    assert_eq!(
        err("sticky route $x;\n server 127.0.0.1;"),
        "nginx.conf:4: \"sticky route\" is not supported"
    );
    assert_eq!(
        err("sticky cookie;\n server 127.0.0.1;"),
        "nginx.conf:4: no cookie name in \"sticky cookie\""
    );
    assert_eq!(
        err("sticky cookie a;\n sticky cookie b;\n server 127.0.0.1;"),
        "nginx.conf:5: \"sticky\" directive is duplicate"
    );
    assert_eq!(
        err("sticky cookie srv samesite=maybe;\n server 127.0.0.1;"),
        "nginx.conf:4: invalid parameter \"samesite=maybe\""
    );
}

#[test]
fn sticky_parameters() {
    let c = load_text(&in_http(
        "upstream u {\n least_conn;\n sticky cookie srv_id expires=1h domain=.example.com path=/ httponly secure samesite=lax;\n server 127.0.0.1;\n server 127.0.0.2 backup;\n}",
    ));
    let u = &c.http.upstreams[0];
    assert_eq!(u.method, BalanceMethod::LeastConn);
    assert_eq!(
        u.sticky,
        Some(StickyConf {
            cookie: "srv_id".into(),
            expires: Some(Duration::from_secs(3600)),
            domain: Some(".example.com".into()),
            path: Some("/".into()),
            httponly: true,
            secure: true,
            samesite: Some("Lax".into()),
        })
    );
}

/// Loads `text` with `resolver` as the only source of host names.
fn load_with(resolver: StaticResolver, text: &str) -> Result<Config, ConfigError> {
    let o = LoadOptions {
        resolver: Arc::new(resolver),
        ..opts(text)
    };
    load(Path::new("nginx.conf"), &o)
}

fn backend_pair() -> StaticResolver {
    StaticResolver::new().with_host(
        "backend",
        [
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        ],
    )
}

#[test]
fn a_name_with_two_addresses_gives_two_peers() {
    let c = load_with(
        backend_pair(),
        &in_http(
            "upstream u {\n server Backend:8080 weight=3 max_fails=2;\n}\n\
             server { listen backend:81; location / { proxy_pass http://u; }\n\
                      location /direct { proxy_pass http://backend:9000; } }",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
    // As nginx: each address of a `server` name is a peer of its own, with the
    // line's parameters and the name as written.
    let u = &c.http.upstreams[0];
    let peers: Vec<_> = u
        .peers
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.addr.clone(),
                p.weight,
                p.max_fails,
                p.span.line,
            )
        })
        .collect();
    assert_eq!(
        peers,
        [
            ("Backend:8080", addr("10.0.0.1:8080").into(), 3, 2, 4),
            ("Backend:8080", addr("10.0.0.2:8080").into(), 3, 2, 4),
        ]
    );
    // An implicit upstream from `proxy_pass` gets every address too.
    let implicit = &c.http.upstreams[1];
    assert_eq!(implicit.name, "backend:9000");
    let peers: Vec<_> = implicit
        .peers
        .iter()
        .filter_map(|p| p.addr.inet())
        .collect();
    assert_eq!(peers, [addr("10.0.0.1:9000"), addr("10.0.0.2:9000")]);
    // And `listen NAME:PORT` listens on each address.
    let listens: Vec<_> = c.http.servers[0]
        .listen
        .iter()
        .filter_map(|l| l.addr.inet())
        .collect();
    assert_eq!(listens, [addr("10.0.0.1:81"), addr("10.0.0.2:81")]);
}

#[test]
fn unknown_names_are_not_found_where_they_are_written() {
    let err = |resolver: StaticResolver, body: &str| {
        load_with(resolver, &in_http(body))
            .expect_err("should fail")
            .to_string()
    };
    assert_eq!(
        err(backend_pair(), "upstream u {\n server nosuch:8080;\n}"),
        "nginx.conf:4: host not found in upstream \"nosuch:8080\""
    );
    assert_eq!(
        err(
            backend_pair(),
            "server {\nlocation / {\nproxy_pass http://nosuch:9000/x;\n}\n}"
        ),
        "nginx.conf:5: host not found in upstream \"nosuch:9000\""
    );
    assert_eq!(
        err(backend_pair(), "server {\nlisten nosuch:80;\n}"),
        "nginx.conf:4: host not found in \"nosuch:80\" of the \"listen\" directive"
    );
    // A name the resolver knows but with no addresses is not found either.
    let empty = StaticResolver::new().with_host("empty", []);
    assert_eq!(
        err(empty, "upstream u {\n server empty;\n}"),
        "nginx.conf:4: host not found in upstream \"empty\""
    );
}

#[test]
fn resolver_names_are_looked_up_once_as_nginx() {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
    // Each address of a name is a server; an address with a port keeps it.
    let c = load_with(
        backend_pair(),
        &in_http("server { location / { resolver backend:5353 127.0.0.1 [::1]:54 ipv6=off; } }"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = c.http.servers[0].locations[0]
        .settings
        .resolver
        .clone()
        .expect("a resolver");
    assert_eq!(
        r.servers,
        [
            addr("10.0.0.1:5353"),
            addr("10.0.0.2:5353"),
            addr("127.0.0.1:53"),
            addr("[::1]:54")
        ]
    );
    assert!(!r.ipv6);
    let err = |body: &str| {
        load_with(backend_pair(), &in_http(body))
            .expect_err("should fail")
            .to_string()
    };
    assert_eq!(
        err("resolver nosuch;"),
        "nginx.conf:3: host not found in resolver \"nosuch\""
    );
    assert_eq!(
        err("resolver backend:0;"),
        "nginx.conf:3: invalid port in resolver \"backend:0\""
    );
    for bad in ["valid=500ms", "valid=x", "ipv6=maybe"] {
        assert_eq!(
            err(&format!("resolver 127.0.0.1 {bad};")),
            format!("nginx.conf:3: invalid parameter: {bad}")
        );
    }
}

#[test]
fn ip_literals_never_reach_the_resolver() {
    // An empty table knows no names, so only literals can load.
    let c = load_with(
        StaticResolver::new(),
        &in_http(
            "upstream u { server 127.0.0.1:8001; server [::1]:8002; }\n\
             server { listen 127.0.0.1:8080; listen [::1]:8080;\n\
                      location / { proxy_pass http://u; }\n\
                      location /x { proxy_pass http://[::1]:9000; } }",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.http.upstreams[0].peers.len(), 2);
    assert_eq!(c.http.upstreams[1].peers.len(), 1);
    assert_eq!(c.http.servers[0].listen.len(), 2);
}

#[test]
fn send_timeout_is_honoured_with_inheritance() {
    let c = load_text(&in_http(
        "send_timeout 5s; server { location / { } location /slow/ { send_timeout 2m; } }",
    ));
    let s = &c.http.servers[0];
    assert_eq!(s.locations[0].settings.send_timeout, Duration::from_secs(5));
    assert_eq!(
        s.locations[1].settings.send_timeout,
        Duration::from_secs(120)
    );
    assert!(!c
        .warnings
        .iter()
        .any(|w| w.message.contains("send_timeout")));
}

#[test]
fn root_and_alias_with_variables_never_name_a_path_that_leaves_them() {
    let c = load_text(&in_http(
        "server { listen 80; location ~ ^/s/(.*)$ { alias /srv/static/$1; } \
         location /v/ { alias /srv/$arg_d/; } location /r/ { root /srv/$arg_r; } }",
    ));
    let locs = &c.http.servers[0].locations;
    let regex = &locs[0].settings.files;
    assert!(regex.alias_names_file());
    // The evaluated value stands for the request's captures or arguments.
    let with = |v: &'static str| move |_: &Template| v.as_bytes().to_vec();
    assert_eq!(
        regex.file_for("/s/a.css", &with("/srv/static/a.css")),
        Some(PathBuf::from("/srv/static/a.css"))
    );
    assert_eq!(
        regex.file_for("/s/x", &with("/srv/static/../etc/passwd")),
        None
    );
    assert_eq!(regex.file_for("/s/x", &with("/srv/static/a\0b")), None);
    assert_eq!(regex.file_for("/s/x", &with("")), None);
    let prefix = &locs[1].settings.files;
    assert_eq!(
        prefix.file_for("/v/f.txt", &with("/srv/d1/")),
        Some(PathBuf::from("/srv/d1/f.txt"))
    );
    assert_eq!(prefix.file_for("/v/f.txt", &with("/srv/../")), None);
    let root = &locs[2].settings.files;
    assert_eq!(
        root.file_for("/r/f.txt", &with("/srv/one")),
        Some(PathBuf::from("/srv/one/r/f.txt"))
    );
    assert_eq!(root.file_for("/r/f.txt", &with("/srv/..")), None);
    // A relative value is under the prefix, as nginx.
    assert_eq!(
        root.file_for("/r/f.txt", &with("html")),
        Some(PathBuf::from("/srv/lb/html/r/f.txt"))
    );
}

#[test]
fn admission_directives_merge_as_nginx() {
    let c = load_text(&in_http(
        "set_real_ip_from 10.0.0.0/8;\n\
         real_ip_header X-Forwarded-For;\n\
         allow 192.0.2.0/24;\n\
         deny all;\n\
         auth_basic \"realm\";\n\
         limit_req_zone $binary_remote_addr zone=one:10m rate=30r/m;\n\
         limit_conn_zone $binary_remote_addr zone=addr:1m;\n\
         server {\n\
           listen 80 proxy_protocol;\n\
           real_ip_recursive on;\n\
           limit_req zone=one burst=5 nodelay;\n\
           location / { auth_basic_user_file users; limit_conn addr 2; }\n\
           location /open/ { allow all; auth_basic off; limit_req_status 429; }\n\
           location /w/ { limit_except GET { deny all; } }\n\
         }",
    ));
    let s = &c.http.servers[0];
    assert!(s.listen[0].proxy_protocol);
    let root = &s.locations[0].settings.admission;
    let real = root.real_ip.as_ref().expect("inherited realip");
    assert_eq!(real.header, RealIpHeader::XForwardedFor);
    assert!(real.recursive);
    assert_eq!(
        real.from,
        vec![AddrMatch::Net("10.0.0.0/8".parse().expect("net"))]
    );
    assert_eq!(root.rules.len(), 2);
    let auth = root.auth_basic.as_ref().expect("realm and file merged");
    assert_eq!(auth.user_file, Template::literal("/srv/lb/users"));
    assert_eq!(c.http.limit_req_zones[0].rate, 500);
    assert_eq!(c.http.limit_req_zones[0].size, 10 << 20);
    assert_eq!(
        root.limit_req.limits,
        vec![LimitReq {
            zone: 0,
            burst: 5000,
            delay: u64::MAX
        }]
    );
    assert_eq!(root.limit_conn.limits, vec![LimitConn { zone: 0, conn: 2 }]);
    let open = &s.locations[1].settings.admission;
    assert_eq!(
        open.rules.len(),
        1,
        "a level with rules replaces the inherited ones"
    );
    assert!(open.auth_basic.is_none());
    assert_eq!((open.limit_req.status, root.limit_req.status), (429, 503));
    let le = s.locations[2]
        .settings
        .admission
        .limit_except
        .as_ref()
        .expect("limit_except");
    assert!(!le.restricts(b"HEAD") && !le.restricts(b"GET") && le.restricts(b"POST"));
    assert_eq!(le.conf.rules.len(), 1);
}

#[test]
fn admission_directive_errors() {
    let server = |body: &str| in_http(&format!("server {{\nlisten 80;\n{body}\n}}"));
    for (body, want) in [
        ("allow 10.0.0.300;", "nginx.conf:5: invalid parameter \"10.0.0.300\""),
        ("deny 10.0.0.0/33;", "nginx.conf:5: invalid parameter \"10.0.0.0/33\""),
        ("set_real_ip_from all;", "nginx.conf:5: invalid parameter \"all\""),
        ("set_real_ip_from proxy.example;", "nginx.conf:5: host not found in set_real_ip_from \"proxy.example\""),
        ("satisfy some;", "nginx.conf:5: invalid value \"some\" in \"satisfy\" directive, it must be \"all\" or \"any\""),
        ("limit_req zone=nowhere;", "nginx.conf:5: zero size shared memory zone \"nowhere\""),
        ("limit_conn nowhere 1;", "nginx.conf:5: zero size shared memory zone \"nowhere\""),
        ("location / { limit_except FETCH { deny all; } }", "nginx.conf:5: invalid method \"FETCH\""),
        ("location / { limit_except GET { root /srv; } }", "nginx.conf:5: \"root\" inside \"limit_except\" is not supported"),
        ("location / { limit_except GET { proxy_pass http://127.0.0.1:1/x; } }", "nginx.conf:5: \"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block"),
        ("limit_req_status 200;", "nginx.conf:5: \"limit_req_status\" directive invalid value \"200\": value must be between 400 and 599"),
        ("auth_basic a;\nauth_basic b;", "nginx.conf:6: \"auth_basic\" directive is duplicate"),
    ] {
        assert_eq!(first_line(&load_err(&server(body))), want, "{body}");
    }
    for (http, want) in [
        (
            "limit_req_zone $binary_remote_addr zone=one:10m;",
            "nginx.conf:3: invalid number of arguments in \"limit_req_zone\" directive",
        ),
        (
            "limit_req_zone $binary_remote_addr zone=one:10m zone=two:10m;",
            "nginx.conf:3: no rate is defined for limit_req_zone",
        ),
        (
            "limit_req_zone $binary_remote_addr rate=1r/s rate=2r/s;",
            "nginx.conf:3: \"limit_req_zone\" must have \"zone\" parameter",
        ),
        (
            "limit_req_zone $binary_remote_addr zone=one:10m rate=1r/h;",
            "nginx.conf:3: invalid rate \"rate=1r/h\"",
        ),
        (
            "limit_req_zone $binary_remote_addr zone=one:1k rate=1r/s;",
            "nginx.conf:3: zone \"one\" is too small",
        ),
        (
            "limit_conn_zone $binary_remote_addr zone=one:1m;\nlimit_conn_zone $host zone=one:1m;",
            "nginx.conf:4: duplicate zone \"one\"",
        ),
        (
            "limit_req_zone $binary_remote_addr zone=one:1m rate=1r/s sync;",
            "nginx.conf:3: \"sync\" parameter is not supported",
        ),
    ] {
        assert_eq!(first_line(&load_err(&in_http(http))), want, "{http}");
    }
    // A name stands for each of its addresses.
    let c = load_text(&server("set_real_ip_from localhost;"));
    let from = &c.http.servers[0]
        .settings
        .admission
        .real_ip
        .as_ref()
        .expect("realip")
        .from;
    assert_eq!(from.len(), 2, "{from:?}");
    // Host bits set in a CIDR are dropped, with nginx's warning.
    let c = load_text(&server("allow 10.1.2.3/8;"));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message == "low address bits of 10.1.2.3/8 are meaningless"));
}

#[test]
fn proxy_protocol_tlv_names() {
    for (name, want) in [
        ("alpn", Some(TlvName::Top(1))),
        ("0x000ae", Some(TlvName::Top(0xae))),
        ("ssl_verify", Some(TlvName::SslVerify)),
        ("ssl_cn", Some(TlvName::Ssl(0x22))),
        ("ssl_0x25", Some(TlvName::Ssl(0x25))),
        ("0x1ff", None),
        ("bogus", None),
    ] {
        assert_eq!(TlvName::parse(name), want, "{name}");
    }
    let e = load_err(&in_http(
        "server {\nlisten 80 proxy_protocol;\nreturn 200 $proxy_protocol_tlv_bogus;\n}",
    ));
    assert!(e.contains("proxy_protocol_tlv_bogus"), "{e}");
}

#[test]
fn uwsgi_pass_targets_and_twins() {
    let c = load_text(&in_http(
        "proxy_read_timeout 7s; uwsgi_read_timeout 3s; uwsgi_param A a; gzip on; gzip_types text/css *;
         upstream app { server 127.0.0.1:8001; server unix:/run/app.sock; }
         server {
           location /u { uwsgi_pass app; uwsgi_param B $uri if_not_empty; uwsgi_param HTTP_X_Y-Z v;
                         uwsgi_modifier1 30; uwsgi_hide_header X-Secret; uwsgi_next_upstream off; }
           location /t { uwsgi_pass uwsgi://127.0.0.1:8002; }
           location /s { uwsgi_pass unix:/run/other.sock; gzip_min_length 1k; gzip_comp_level 6; }
           location /p { proxy_pass http://app; }
           location /v { uwsgi_pass $arg_b; }
           location /i { if ($arg_u) { uwsgi_pass app; } proxy_pass http://app; }
         }",
    ));
    let locs = &c.http.servers[0].locations;
    let in_if = match &locs[5].settings.rewrite[..] {
        [RewriteOp::If(block)] => block.location.as_ref().expect("a location if"),
        other => panic!("{other:?}"),
    };
    assert!(matches!(&in_if.action, Action::Proxy(p) if p.protocol == UpstreamProtocol::Uwsgi));
    assert_eq!(in_if.proxy_read_timeout, Duration::from_secs(3));
    let pass = |i: usize| match &locs[i].settings.action {
        Action::Proxy(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    let u = &locs[0].settings;
    assert!(pass(4).url.is_some() && pass(4).protocol == UpstreamProtocol::Uwsgi);
    assert_eq!(pass(0).protocol, UpstreamProtocol::Uwsgi);
    assert_eq!(pass(0).scheme, "uwsgi");
    assert_eq!(u.proxy_read_timeout, Duration::from_secs(3));
    assert_eq!(u.proxy_hide_header, vec!["x-secret".to_owned()]);
    assert_eq!(u.proxy_next_upstream, NextUpstream::OFF);
    assert_eq!(u.uwsgi.modifier1, 30);
    let names: Vec<&str> = u.uwsgi.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["B", "HTTP_X_Y-Z"]);
    assert!(u.uwsgi.params[0].if_not_empty);
    assert_eq!(u.uwsgi.replaced_fields, ["x_y_z"]);
    // Inherited as a whole where a level has none.
    assert_eq!(locs[1].settings.uwsgi.params.len(), 1);
    assert_eq!(pass(1).proxy_host, "127.0.0.1:8002");
    assert_eq!(pass(2).proxy_host, "localhost");
    // The proxy's own settings in a proxy_pass location, the same group.
    assert_eq!(pass(3).protocol, UpstreamProtocol::Http);
    assert_eq!(pass(3).upstream, pass(0).upstream);
    assert_eq!(locs[3].settings.proxy_read_timeout, Duration::from_secs(7));
    let g = &locs[2].settings.gzip;
    assert!(g.enable);
    assert_eq!((g.min_length, g.level), (1024, 6));
    assert_eq!(g.types, GzipTypes::Any);
}

#[test]
fn uwsgi_and_gzip_errors() {
    let loc = |d: &str| load_err(&in_http(&format!("server {{\nlocation /x {{\n{d}\n}}\n}}")));
    assert!(loc("uwsgi_pass 127.0.0.1:8001/app;").starts_with("nginx.conf:5: invalid address"));
    assert!(
        loc("uwsgi_pass somehost;").starts_with("nginx.conf:5: no port in upstream \"somehost\"")
    );
    assert!(loc("uwsgi_ssl_conf_command Options x;").contains("not supported"));
    assert!(loc("uwsgi_pass 127.0.0.1:1; proxy_pass http://127.0.0.1:2;").contains("duplicate"));
    assert!(loc("uwsgi_param A b c;").contains("invalid parameter \"c\""));
    assert!(loc("uwsgi_modifier1 256;").contains("invalid value"));
    assert!(loc("uwsgi_cache_valid 10m;").contains("ferrolb does not cache"));
    assert!(
        loc("uwsgi_store on;").contains("not supported")
            || loc("uwsgi_store on;").contains("uwsgi_pass has")
    );
    assert!(loc("gzip_comp_level 10;").contains("between 1 and 9"));
    assert!(loc("gzip_buffers 0 8k;").contains("gzip_buffers takes NUMBER SIZE"));
    assert!(loc("gzip_min_length lots;").contains("invalid value"));
}

#[test]
fn listen_socket_options() {
    let c = load_text(&in_http(
        "server { listen 127.0.0.1:8080 backlog=100 rcvbuf=64k sndbuf=32k so_keepalive=30m::10 deferred fastopen=16 reuseport bind; }
         server { listen 127.0.0.1:8080; listen [::1]:8081 ipv6only=off so_keepalive=off; listen 9000-9002; }",
    ));
    let s = c.http.listen_sockets();
    let a = &s[&Endpoint::Inet("127.0.0.1:8080".parse().expect("addr"))];
    assert_eq!(a.backlog, 100);
    assert_eq!((a.rcvbuf, a.sndbuf), (Some(65536), Some(32768)));
    assert_eq!(
        a.keepalive,
        Some(SoKeepalive::On {
            idle: Some(1800),
            interval: None,
            count: Some(10)
        })
    );
    assert!(a.deferred && a.reuseport && a.bind);
    assert_eq!(a.fastopen, Some(16));
    let b = &s[&Endpoint::Inet("[::1]:8081".parse().expect("addr"))];
    assert!(!b.ipv6only);
    assert_eq!(b.keepalive, Some(SoKeepalive::Off));
    assert_eq!(b.backlog, 511);
    for port in 9000..=9002 {
        let d = &s[&Endpoint::Inet(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))];
        assert_eq!(d, &SocketOptions::default());
    }
    assert_eq!(s.len(), 5);

    let err = |body: &str| first_line(&load_err(&in_http(body))).to_owned();
    assert_eq!(
        err("server { listen 80 backlog=1; }\nserver { listen 80 rcvbuf=8k; }"),
        "nginx.conf:4: duplicate listen options for 0.0.0.0:80"
    );
    assert_eq!(
        err("server { listen 80 backlog=0; }"),
        "nginx.conf:3: invalid backlog \"backlog=0\""
    );
    assert_eq!(
        err("server { listen 80 so_keepalive=::; }"),
        "nginx.conf:3: invalid so_keepalive value: \"::\""
    );
    assert_eq!(
        err("server { listen [::]:80 ipv6only=of; }"),
        "nginx.conf:3: invalid ipv6only flags \"of\""
    );
    assert_eq!(
        err("server { listen 8003-8000; }"),
        "nginx.conf:3: invalid port range in \"8003-8000\" of the \"listen\" directive"
    );
    assert!(err("server { listen 80 setfib=1; }").contains("FreeBSD"));
    let c = load_text(&in_http("server { listen 80 accept_filter=dataready; }"));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.message.contains("accept filters")));
}

#[test]
fn proxy_cache_directives_load_with_one_warning() {
    let c = load_text(&in_http(
        "proxy_cache_path /tmp/c levels=1:2 keys_zone=app:10m inactive=60m max_size=1g use_temp_path=off;
         server { listen 80;
           location / { proxy_pass http://127.0.0.1:9; proxy_cache app; proxy_cache_valid 200 302 10m;
             proxy_cache_valid any 1m; proxy_cache_key $scheme$host$request_uri; proxy_cache_bypass $http_x;
             proxy_no_cache $http_y; proxy_cache_use_stale error timeout updating http_502; proxy_cache_lock on; } }",
    ));
    let cache: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.message.contains("no cache"))
        .collect();
    assert_eq!(cache.len(), 1, "{:?}", c.warnings);
    assert_eq!(cache[0].span.line, 3);

    let err = |body: &str| first_line(&load_err(&in_http(body))).to_owned();
    assert_eq!(
        err("proxy_cache_path /tmp/c levels=1:2;"),
        "nginx.conf:3: \"/tmp/c\" must have \"keys_zone\" parameter"
    );
    assert_eq!(
        err("proxy_cache_path /tmp/c levels=3 keys_zone=a:1m;"),
        "nginx.conf:3: invalid \"levels\" \"levels=3\""
    );
    assert_eq!(
        err("proxy_cache_path /tmp/c keys_zone=a:1k;"),
        "nginx.conf:3: keys zone \"keys_zone=a:1k\" is too small"
    );
    assert_eq!(
        err("server { listen 80; location / { proxy_cache nope; } }"),
        "nginx.conf:3: zero size shared memory zone \"nope\""
    );
    assert_eq!(
        err("proxy_cache_path /a keys_zone=z:1m; proxy_cache_path /b keys_zone=z:1m;"),
        "nginx.conf:3: duplicate zone \"z\""
    );
    // `proxy_cache off` caches nothing: no warning.
    let c = load_text(&in_http("proxy_cache off;"));
    assert!(!c.warnings.iter().any(|w| w.message.contains("no cache")));
}

#[test]
fn access_log_parameters() {
    let c = load_text(&in_http(
        "log_format m '$status';
         map $status $loggable { ~^[23] 0; default 1; }
         server { listen 80;
           access_log logs/a.log m buffer=32k flush=5s if=$loggable;
           access_log logs/b.log combined gzip=4;
           access_log logs/a.log;
           location /off { access_log logs/x.log; access_log off; }
         }",
    ));
    let s = &c.http.servers[0];
    let t = s.settings.access_log.targets();
    assert_eq!(t.len(), 3);
    assert_eq!(
        t[0].buffering,
        LogBuffering {
            size: 32 * 1024,
            flush: Some(Duration::from_secs(5)),
            gzip: None
        }
    );
    assert!(t[0].condition.is_some());
    assert_eq!(
        t[1].buffering,
        LogBuffering {
            size: 64 * 1024,
            flush: None,
            gzip: Some(4)
        }
    );
    assert_eq!(t[2].buffering, LogBuffering::default());
    assert_eq!(s.locations[0].settings.access_log, AccessLogConf::Off);

    let err = |body: &str| first_line(&load_err(&in_http(body))).to_owned();
    assert_eq!(
        err("access_log a.log combined flush=1s;"),
        "nginx.conf:3: no buffer is defined for access_log \"a.log\""
    );
    assert_eq!(
        err("access_log a.log combined gzip=10;"),
        "nginx.conf:3: invalid compression level \"10\""
    );
    assert_eq!(
        err("access_log a.log combined buffer=0;"),
        "nginx.conf:3: invalid buffer size \"0\""
    );
    assert_eq!(
        err("access_log a.log combined buffer=8k; access_log a.log combined buffer=16k;"),
        "nginx.conf:3: access_log \"a.log\" already defined with conflicting parameters"
    );
    assert_eq!(
        err("access_log a.log combined bogus;"),
        "nginx.conf:3: invalid parameter \"bogus\""
    );
    assert_eq!(
        err("access_log off combined;"),
        "nginx.conf:3: invalid parameter \"combined\""
    );
    let c = load_text(&in_http(
        "log_subrequest on; open_log_file_cache max=10 inactive=20s min_uses=2 valid=1m;
         server { listen 80; location / { open_log_file_cache off; } }",
    ));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(
        c.http.open_log_file_caches,
        [OpenLogFileCacheConf {
            max: 10,
            inactive: Duration::from_secs(20),
            min_uses: 2,
            valid: Duration::from_secs(60),
        }]
    );
    assert_eq!(c.http.servers[0].settings.open_log_file_cache, Some(0));
    assert_eq!(
        c.http.servers[0].locations[0].settings.open_log_file_cache,
        None
    );
    assert_eq!(
        err("open_log_file_cache inactive=10s;"),
        "nginx.conf:3: \"open_log_file_cache\" must have \"max\" parameter"
    );
    assert_eq!(
        err("open_log_file_cache max=x;"),
        "nginx.conf:3: invalid \"open_log_file_cache\" parameter \"max=x\""
    );
    assert_eq!(
        err("access_log logs/$host.log combined buffer=4k;"),
        "nginx.conf:3: buffered logs cannot have variables in name"
    );
}

#[test]
fn upstream_zone_checked_as_nginx() {
    let up = |zone: &str| {
        in_http(&format!(
            "upstream u {{ {zone} server 127.0.0.1:1; }}\nserver {{ listen 80; location / {{ proxy_pass http://u; }} }}"
        ))
    };
    let c = load_text(&up("zone u 64k;"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        first_line(&load_err(&up("zone u 4k;"))),
        "nginx.conf:3: zone \"u\" is too small"
    );
    assert_eq!(
        first_line(&load_err(&up("zone u;"))),
        "nginx.conf:3: zero size shared memory zone \"u\""
    );
    assert_eq!(
        first_line(&load_err(&up("zone u x;"))),
        "nginx.conf:3: invalid zone size \"x\""
    );
}

#[test]
fn access_log_syslog_targets() {
    let c = load_text(&in_http(
        "access_log syslog:server=127.0.0.1:5140,facility=local6,severity=notice,tag=web_1,nohostname;
         access_log syslog:server=unix:/dev/log;
         server { listen 80; }",
    ));
    let t = &c.http.servers[0].settings.access_log;
    let t = t.targets();
    assert_eq!(
        t[0].syslog,
        Some(SyslogTarget {
            server: Endpoint::Inet("127.0.0.1:5140".parse().expect("addr")),
            facility: 22,
            severity: 5,
            tag: "web_1".into(),
            nohostname: true,
        })
    );
    assert_eq!(
        t[1].syslog,
        Some(SyslogTarget {
            server: Endpoint::Unix("/dev/log".into()),
            facility: 23,
            severity: 6,
            tag: "nginx".into(),
            nohostname: false,
        })
    );
    let err = |body: &str| first_line(&load_err(&in_http(body))).to_owned();
    assert_eq!(
        err("access_log syslog:facility=local0;"),
        "nginx.conf:3: no syslog server specified"
    );
    assert_eq!(
        err("access_log syslog:server=127.0.0.1,facility=local9;"),
        "nginx.conf:3: unknown syslog facility \"local9\""
    );
    assert_eq!(
        err("access_log syslog:server=127.0.0.1,tag=a-b;"),
        "nginx.conf:3: syslog \"tag\" only allows alphanumeric characters and underscore"
    );
    assert_eq!(
        err("access_log syslog:server=127.0.0.1 combined buffer=8k;"),
        "nginx.conf:3: logs to syslog cannot be buffered"
    );
}

#[test]
fn acme_certificates_take_server_names_as_nginx_module() {
    let c = load_text(&in_http(
        "acme_issuer le {\n uri https://ca.test/dir;\n contact admin@example.test;\n contact tel:+1-555;\n }
         server { listen 80; }
         server { listen 443 ssl; server_name .example.test Shop.Example.test ~^x 192.0.2.1 shop.example.test;
                  acme_certificate le; ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key; }
         server { listen 443 ssl; server_name www.example.test;
                  acme_certificate le www.example.test example.test shop.example.test 192.0.2.1 key=ecdsa:256;
                  ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key; }
         server { listen 8443 ssl; server_name other.test;
                  acme_certificate le key=ecdsa:384;
                  ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key; }",
    ));
    let certs = &c.http.acme_certificates;
    assert_eq!(certs.len(), 2, "{certs:?}");
    assert_eq!(
        certs[0].identifiers,
        [
            "www.example.test",
            "example.test",
            "shop.example.test",
            "192.0.2.1"
        ]
    );
    assert_eq!(certs[1].identifiers, ["other.test"]);
    assert_eq!(certs[1].key, acme::CertKeyKind::EcdsaP384);
    let issuer = &certs[0].issuer;
    assert_eq!(issuer.contacts, ["mailto:admin@example.test", "tel:+1-555"]);
    assert_eq!(
        issuer.state_path.as_deref(),
        Some(Path::new("/srv/lb/acme_le"))
    );
    assert!(issuer.ssl_verify && !issuer.accept_terms_of_service);
    // The two servers asking for the same certificate serve one slot.
    let served: Vec<_> = c.http.servers[1..3]
        .iter()
        .map(|s| s.tls.as_ref().and_then(|t| t.acme.clone()).expect("acme"))
        .collect();
    let ck = Arc::new(rustls::sign::CertifiedKey::new(
        Vec::new(),
        rustls::crypto::ring::sign::any_ecdsa_type(&rustls::pki_types::PrivateKeyDer::Pkcs8(
            rcgen::KeyPair::generate()
                .expect("key")
                .serialize_der()
                .into(),
        ))
        .expect("signing key"),
    ));
    served[0].store(ck.clone());
    assert!(served[1].load().is_some_and(|c| Arc::ptr_eq(&c, &ck)));
    assert!(c.warnings.iter().any(|w| w
        .message
        .contains("unsupported regular expression in server_name: ~^x")));
}

#[test]
fn acme_state_path_off_and_issuer_errors() {
    let c = load_text(&in_http(
        "acme_issuer le { uri https://ca.test/dir; state_path off; ssl_verify off; accept_terms_of_service; }
         server { listen 80; server_name a.test; acme_certificate le; }",
    ));
    let cert = &c.http.acme_certificates[0];
    assert_eq!(cert.issuer.state_path, None);
    assert_eq!(cert.chain_file(), None);
    assert!(!cert.issuer.ssl_verify && cert.issuer.accept_terms_of_service);
    for (body, want) in [
        (
            "acme_issuer le { uri https://ca.test/dir; }\nacme_issuer le { uri https://ca.test/dir; }",
            "\"acme_issuer\" \"le\" is duplicate",
        ),
        (
            "acme_issuer le { uri ca.test; }",
            "invalid value \"ca.test\"",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; account_key rsa:2048; }",
            "account key \"rsa:2048\" is not supported",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; external_account_key kid data:!!; }",
            "invalid base64url encoded value",
        ),
        (
            "acme_issuer le { uri https://ca.test/dir; }\nserver { listen 80; server_name a.test; acme_certificate le; acme_certificate le; }",
            "\"acme_certificate\" directive is duplicate",
        ),
    ] {
        let e = load_err(&in_http(body));
        assert!(first_line(&e).contains(want), "{body}: {e}");
    }
}

#[test]
fn acme_certificate_variable_inherited_by_a_plain_server_is_empty() {
    // http-level `ssl_certificate $acme_certificate` for every TLS server; the port-80
    // server has no acme_certificate and serves no certificate (as nginx's empty
    // variable), which is no error.
    let c = load_text(&in_http(
        "acme_issuer le { uri https://ca.test/dir; state_path off; }
         ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key;
         server { listen 80; return 301 https://$host$request_uri; }
         server { listen 443 ssl; server_name a.test; acme_certificate le; }",
    ));
    let plain = c.http.servers[0].tls.as_ref().expect("tls settings");
    assert!(plain.acme.is_none() && plain.certificates.is_empty());
    assert!(c.http.servers[1].tls.as_ref().expect("tls").acme.is_some());
}

#[test]
fn http2_at_http_level_is_inherited_and_a_server_may_turn_it_off() {
    let c = load_text(&in_http(
        "http2 on;
         server { listen 8080; server_name a; }
         server { listen 8081; http2 off; server_name b; }",
    ));
    assert!(c.http.servers[0].listen.iter().all(|l| l.http2));
    assert!(c.http.servers[1].listen.iter().all(|l| !l.http2));
}

#[test]
fn http2_directives() {
    let c = load_text(&in_http(
        "http2_max_concurrent_streams 32; http2_idle_timeout 10s; http2_push_preload on;
         server { listen 443 ssl http2; listen 8080; http2_body_preread_size 16k;
           ssl_reject_handshake on;
           location / { http2_chunk_size 4k; } }
         server { listen 8080; http2 on; server_name b; }",
    ));
    let s = &c.http.servers[0];
    assert!(s.listen.iter().all(|l| l.http2), "{:?}", s.listen);
    assert_eq!(s.settings.http2.max_concurrent_streams, 32);
    assert_eq!(s.settings.http2.body_preread_size, 16384);
    assert_eq!(s.settings.http2.chunk_size, 8192);
    assert_eq!(s.locations[0].settings.http2.chunk_size, 4096);
    let warned = |m: &str| c.warnings.iter().any(|w| w.message == m);
    assert!(warned(
        "the \"http2_idle_timeout\" directive is obsolete, use the \"keepalive_timeout\" directive instead"
    ));
    assert!(warned(
        "the \"http2_push_preload\" directive is obsolete, ignored"
    ));
    assert_eq!(
        first_line(&load_err(&in_http("http2_chunk_size 0;"))),
        "nginx.conf:3: the http2 chunk size cannot be zero"
    );
}

#[test]
fn keepalive_header_add_trailer_and_max_headers() {
    let c = load_text(&in_http(
        "keepalive_timeout 75 9; max_headers 50;
         server {
           add_trailer X-T $msec always;
           location /a { keepalive_timeout 30s; add_trailer X-U $sent_http_etag; }
           location /b { keepalive_timeout 30s 0; }
         }",
    ));
    let s = &c.http.servers[0];
    assert_eq!(s.settings.max_headers, 50);
    assert_eq!(s.settings.keepalive_header, Some(Duration::from_secs(9)));
    assert!(s.settings.add_trailer[0].always);
    // The header's value is inherited on its own, as nginx merges it.
    let a = &s.locations[0];
    assert_eq!(a.settings.keepalive_timeout, Duration::from_secs(30));
    assert_eq!(a.settings.keepalive_header, Some(Duration::from_secs(9)));
    assert_eq!(a.settings.add_trailer.len(), 1);
    assert_eq!(a.settings.add_trailer[0].name, "X-U");
    assert_eq!(
        s.locations[1].settings.keepalive_header,
        Some(Duration::ZERO)
    );
    let defaults = load_text(&in_http("server { }"));
    let d = &defaults.http.servers[0].settings;
    assert_eq!((d.max_headers, d.keepalive_header), (1000, None));
}
