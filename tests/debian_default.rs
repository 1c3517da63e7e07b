//! Debian's stock `/etc/nginx/nginx.conf` with its `sites-enabled/default` (`root`,
//! `index`, `try_files $uri $uri/ =404`, `include` of `mime.types`, `conf.d` and
//! `modules-enabled`), as the `nginx` package installs it, runs on ferrolb and serves
//! the default page as nginx does. The files are copied with what a test must move:
//! the ports, the pid and log paths, the document root, and (for nginx, running as
//! root here) the `user`. Skipped, saying so, where the nginx package is not
//! installed (`scripts/test.sh` installs it).

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;

/// A server in its own process group: nginx's workers stop with their master.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = stop_group(
            &mut self.0,
            nix::sys::signal::Signal::SIGTERM,
            std::time::Duration::from_secs(3),
        );
    }
}

/// A copy of /etc/nginx and the default site's files under `dir`, listening on
/// `port`; returns the main file.
fn stock_copy(dir: &Path, port: u16) -> PathBuf {
    let etc = dir.join("etc-nginx");
    let status = Command::new("cp")
        .arg("-rL")
        .arg("/etc/nginx")
        .arg(&etc)
        .status()
        .expect("cp");
    assert!(status.success(), "copy /etc/nginx");
    fs::create_dir_all(dir.join("logs")).expect("logs");
    fs::create_dir_all(dir.join("www")).expect("www");
    let page = Path::new("/var/www/html/index.nginx-debian.html");
    let text = fs::read_to_string(page).unwrap_or_else(|_| "<h1>Welcome to nginx!</h1>\n".into());
    fs::write(dir.join("www/index.nginx-debian.html"), text).expect("page");
    let d = dir.display().to_string();
    let main = etc.join("nginx.conf");
    let conf = fs::read_to_string(&main)
        .expect("nginx.conf")
        .replace("user www-data;", "user root;")
        .replace("/run/nginx.pid", &format!("{d}/nginx.pid"))
        .replace("/var/log/nginx/", &format!("{d}/logs/"))
        .replace("/etc/nginx/", &format!("{}/", etc.display()));
    fs::write(&main, conf).expect("write nginx.conf");
    let site = etc.join("sites-enabled/default");
    let text = fs::read_to_string(&site)
        .expect("sites-enabled/default")
        .replace(
            "listen 80 default_server;",
            &format!("listen 127.0.0.1:{port} default_server;"),
        )
        // The IPv6 wildcard may not exist in a test container; the IPv4 line stays.
        .replace("listen [::]:80 default_server;", "")
        .replace("root /var/www/html;", &format!("root {d}/www;"));
    fs::write(&site, text).expect("write default");
    main
}

fn start(bin: &Path, tag: &str) -> (Running, u16, PathBuf) {
    let dir = fresh_temp_dir(tag);
    let port = free_port();
    let main = stock_copy(&dir, port);
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&main);
    if bin_is_nginx(bin) {
        // nginx's own prefix: `load_module modules/...` lines are relative to it.
        cmd.arg("-g").arg("daemon off;");
    } else {
        cmd.arg("-p").arg(format!("{}/", dir.display()));
    }
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr.log")).expect("stderr"))
        .spawn()
        .expect("spawn");
    let running = Running(child);
    wait_until(START_TIMEOUT, "the stock config's listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (running, port, dir)
}

fn facts(port: u16, method: &str, path: &str) -> String {
    match http_request(port, method, path, "localhost", &[], b"") {
        Ok(r) => {
            let text = r.text();
            let body = match text.find("<h1>") {
                Some(i) if r.status >= 300 => text[i..].lines().next().unwrap_or("").to_owned(),
                _ => text,
            };
            format!(
                "{} type={} etag={} ranges={}\n{body}",
                r.status,
                r.header("content-type").unwrap_or("-"),
                r.header("etag").is_some(),
                r.header("accept-ranges").unwrap_or("-"),
            )
        }
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn debian_stock_config_serves_its_default_page() {
    let nginx = PathBuf::from("/usr/sbin/nginx");
    if !Path::new("/etc/nginx/sites-enabled/default").exists() || !nginx.exists() {
        eprintln!("skipped: Debian's nginx package (its /etc/nginx) is not installed");
        return;
    }
    let (_ours, port, dir) = start(&proxy_bin(), "debian-default");
    let (_theirs, nport, _) = start(&nginx, "debian-default-nginx");
    let page = fs::read_to_string(dir.join("www/index.nginx-debian.html")).expect("page");
    let cases = [
        ("GET", "/"),
        ("HEAD", "/"),
        ("GET", "/index.nginx-debian.html"),
        ("GET", "/missing"),
        ("GET", "/missing/"),
        ("POST", "/"),
    ];
    let mut diffs = Vec::new();
    for (method, path) in cases {
        let ours = facts(port, method, path);
        let theirs = facts(nport, method, path);
        if ours != theirs {
            diffs.push(format!(
                "{method} {path}\n  ferrolb: {ours}\n  nginx:   {theirs}"
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "differs from nginx:\n{}",
        diffs.join("\n")
    );
    let r = http_get(port, "/", "localhost").expect("the default page");
    assert_eq!((r.status, r.text()), (200, page));
    assert_eq!(r.header("content-type"), Some("text/html"));
}
