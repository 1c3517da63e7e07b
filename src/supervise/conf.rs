//! The balancer's configuration under `ferrolb up`: generated, or the user's
//! `-c nginx.conf` with the workers filling one of its upstreams.

use std::net::SocketAddr;
use std::path::Path;

use crate::admin::{AddPeer, Overlay};
use crate::config::Config;

/// The name of the generated upstream: `app`.
pub const UPSTREAM: &str = "app";

/// The generated configuration: one upstream of the workers, one server on `listen`
/// proxying everything to it. No upstream `keepalive`: a connection per request to a
/// local worker costs microseconds, and a pool would keep connections to a worker that
/// a restart has just replaced. `health_uri` adds an HTTP `health_check`.
pub fn generate(ports: &[u16], listen: SocketAddr, health_uri: Option<&str>, pid: &Path) -> String {
    let mut servers = String::new();
    for p in ports {
        servers.push_str(&format!("        server 127.0.0.1:{p};\n"));
    }
    let health = health_uri
        .map(|u| format!("            health_check uri={u} interval=2s fails=2 passes=1;\n"))
        .unwrap_or_default();
    format!(
        "# ferrolb up (generated)\n\
         worker_processes 1;\n\
         error_log stderr notice;\n\
         pid \"{pid}\";\n\
         events {{\n    worker_connections 1024;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream {UPSTREAM} {{\n\
         {servers}\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen {listen};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://{UPSTREAM};\n\
         \x20           proxy_set_header Host $http_host;\n\
         \x20           proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20           proxy_set_header X-Forwarded-Proto $scheme;\n\
         {health}\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        pid = pid.display(),
    )
}

/// The upstream the workers fill in a user's configuration: `wanted`, or the only one
/// declared. `Err` says why none fits.
pub fn pick_upstream(config: &Config, wanted: Option<&str>) -> Result<usize, String> {
    let ups = &config.http.upstreams;
    match wanted {
        Some(name) => ups.iter().position(|u| u.name == name).ok_or_else(|| {
            format!(
                "the configuration has no upstream \"{name}\" (it has: {})",
                names(config)
            )
        }),
        None => {
            // Implicit groups (`proxy_pass http://host:port`) are named by address.
            let declared: Vec<usize> = (0..ups.len())
                .filter(|&i| ups[i].name.parse::<SocketAddr>().is_err())
                .collect();
            match declared.as_slice() {
                [one] => Ok(*one),
                [] => Err("the configuration declares no upstream for the workers".into()),
                _ => Err(format!(
                    "the configuration has several upstreams ({}): name the workers' one with --upstream NAME",
                    names(config)
                )),
            }
        }
    }
}

fn names(config: &Config) -> String {
    config
        .http
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The overlay that replaces upstream `name`'s servers by the workers, applied to the
/// first configuration and to every reload (as admin API changes are).
pub fn fill(config: &Config, name: &str, ports: &[u16]) -> Overlay {
    let mut o = Overlay::default();
    if let Some(u) = config.http.upstreams.iter().find(|u| u.name == name) {
        for p in &u.peers {
            o.remove(name, p.addr.clone());
        }
    }
    for &port in ports {
        o.add(
            name,
            &AddPeer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                weight: 1,
                max_fails: 1,
                fail_timeout: 10,
                slow_start: 0,
                backup: false,
                max_conns: 0,
            },
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};

    fn load_text(text: &str) -> Config {
        let opts = LoadOptions {
            prefix: std::env::temp_dir(),
            globals: None,
            text: Some(text.to_owned()),
            is_root: false,
            ..Default::default()
        };
        load(Path::new("t.conf"), &opts).unwrap()
    }

    #[test]
    fn generated_config_loads_and_names_the_workers() {
        let text = generate(
            &[8001, 8002],
            "127.0.0.1:8080".parse().unwrap(),
            Some("/health/"),
            Path::new("/tmp/x.pid"),
        );
        let c = load_text(&text);
        let i = pick_upstream(&c, None).unwrap();
        assert_eq!(c.http.upstreams[i].name, UPSTREAM);
        assert_eq!(c.http.upstreams[i].peers.len(), 2);
        assert_eq!(c.http.health_checks.len(), 1);
        assert_eq!(c.http.health_checks[0].uri, "/health/");
    }

    #[test]
    fn fill_replaces_the_servers() {
        let mut c = load_text(
            "events {}\nhttp { upstream web { server 127.0.0.1:9001; server 127.0.0.1:9002; }\n\
             upstream other { server 127.0.0.1:9100; }\n\
             server { listen 127.0.0.1:9000; location / { proxy_pass http://web; } } }\n",
        );
        assert!(pick_upstream(&c, None).is_err());
        assert!(pick_upstream(&c, Some("nope")).is_err());
        let i = pick_upstream(&c, Some("web")).unwrap();
        fill(&c, "web", &[7001, 7002, 7003]).apply(&mut c);
        let ports: Vec<u16> = c.http.upstreams[i]
            .peers
            .iter()
            .filter_map(|p| p.addr.port())
            .collect();
        assert_eq!(ports, [7001, 7002, 7003]);
    }
}
