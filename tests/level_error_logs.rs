//! `error_log` at server and location level: the lines of a request routed there go to
//! that level's log instead of the main one, at that level's verbosity, as nginx's.
//! Compared with Debian's nginx when it is installed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn conf(port: u16, www: &Path) -> String {
    format!(
        "events {{}}\nhttp {{\n  access_log off;\n  server {{\n    listen 127.0.0.1:{port};\n    \
         root {www};\n    error_log logs/server.log;\n    \
         location /loc/ {{ error_log logs/loc.log info; limit_rate 1k; }}\n    \
         location /inner/ {{ location /inner/deep/ {{ }} }}\n  }}\n}}\n",
        www = www.display()
    )
}

#[test]
fn requests_log_to_their_level_error_log() {
    let dir = fresh_temp_dir("level-logs");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("mkdir");
    let mut servers = vec![Proxy::start_on(|[p]| conf(p, &www))];
    let nginx_bin = PathBuf::from("/usr/sbin/nginx");
    if nginx_bin.exists() && !bin_is_nginx(&proxy_bin()) {
        servers.push(Proxy::start_bin_on(nginx_bin, |[p]| conf(p, &www)));
    }
    for (proxy, [port]) in &servers {
        let name = proxy.bin.display().to_string();
        for path in [
            "/at-server.txt",
            "/loc/at-location.txt",
            "/inner/deep/nested.txt",
        ] {
            let r = http_get(*port, path, "localhost").expect("GET");
            assert_eq!(r.status, 404, "{name} {path}");
        }
        let read = |f: &str| std::fs::read_to_string(proxy.dir.join(f)).unwrap_or_default();
        let server_log = wait_until(Duration::from_secs(10), "the server's log lines", || {
            let t = read("logs/server.log");
            (t.contains("nested.txt") && t.contains("at-server.txt")).then_some(t)
        });
        let loc_log = wait_until(Duration::from_secs(10), "the location's log line", || {
            let t = read("logs/loc.log");
            t.contains("at-location.txt").then_some(t)
        });
        assert!(!server_log.contains("at-location"), "{name}: {server_log}");
        assert!(loc_log.contains("[error]"), "{name}: {loc_log}");
        let main = proxy.error_log();
        for f in ["at-server", "at-location", "nested"] {
            assert!(!main.contains(f), "{name}: main log has {f}: {main}");
        }
    }
}
