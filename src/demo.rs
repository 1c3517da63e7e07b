//! `ferrolb demo`: a self-contained showcase. Starts small HTTP backends on consecutive
//! ports and the balancer in front of them with an embedded configuration, so
//! `curl http://127.0.0.1:8080/` shows round robin at work without writing any file.
//!
//! The backend ([`serve_backend`]) is deliberately small but speaks correct HTTP/1.1
//! (keep-alive, `Content-Length` bodies, `Expect: 100-continue`, pipelining); the test
//! suites use it as a real upstream.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::LoadOptions;
use crate::process::{self, RunOptions};
use crate::server::ServerError;

/// Options of `ferrolb demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    /// The balancer's port (`--port`, default 8080).
    pub port: u16,
    /// How many backends (`--backends`, default 4).
    pub backends: u16,
    /// The first backend's port (`--first-backend-port`, default 8000); the others follow.
    pub first_backend_port: u16,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port: 8080,
            backends: 4,
            first_backend_port: 8000,
        }
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A port could not be bound (usually already in use).
    #[error(
        "bind() to 127.0.0.1:{port} failed ({}){}",
        crate::log::os_error_text(source),
        if source.kind() == io::ErrorKind::AddrInUse {
            format!(": port {port} is already in use; stop what uses it or pick other ports (see \"ferrolb demo --help\")")
        } else {
            String::new()
        }
    )]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The options do not describe a usable set of ports.
    #[error("{0}")]
    Options(String),
    /// The backends' runtime could not start.
    #[error("cannot start the demo backends: {0}")]
    Runtime(#[source] io::Error),
    /// The balancer failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl DemoOptions {
    /// The backend ports, checked to fit below 65536 and not to include the balancer's.
    pub fn backend_ports(&self) -> Result<Vec<u16>, DemoError> {
        if self.backends == 0 {
            return Err(DemoError::Options("--backends must be at least 1".into()));
        }
        let last = u32::from(self.first_backend_port) + u32::from(self.backends) - 1;
        if self.first_backend_port == 0 || last > u32::from(u16::MAX) {
            return Err(DemoError::Options(format!(
                "backend ports {}..{} are not valid TCP ports",
                self.first_backend_port, last
            )));
        }
        let ports: Vec<u16> = (0..self.backends)
            .map(|i| self.first_backend_port + i)
            .collect();
        if self.port == 0 || ports.contains(&self.port) {
            return Err(DemoError::Options(format!(
                "--port {} must be a valid port outside the backend ports {}..{}",
                self.port, self.first_backend_port, last
            )));
        }
        Ok(ports)
    }

    /// The embedded configuration the balancer runs with.
    pub fn config_text(&self) -> Result<String, DemoError> {
        let ports = self.backend_ports()?;
        let mut servers = String::new();
        for p in &ports {
            servers.push_str(&format!("        server 127.0.0.1:{p};\n"));
        }
        // The pid file goes to the temp directory so the demo leaves nothing in the
        // current directory.
        let pid = std::env::temp_dir().join(format!("ferrolb-demo-{}.pid", self.port));
        Ok(format!(
            "# ferrolb demo configuration (embedded)\n\
             worker_processes 1;\n\
             error_log stderr;\n\
             pid \"{pid}\";\n\
             \n\
             events {{\n    worker_connections 1024;\n}}\n\
             \n\
             http {{\n\
             \x20   access_log off;\n\
             \n\
             \x20   upstream demo_backends {{\n\
             {servers}\
             \x20       keepalive 32;\n\
             \x20   }}\n\
             \n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \n\
             \x20       location / {{\n\
             \x20           proxy_pass http://demo_backends;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n",
            pid = pid.display(),
            servers = servers,
            port = self.port,
        ))
    }
}

fn bind_std(port: u16) -> Result<std::net::TcpListener, DemoError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let l = std::net::TcpListener::bind(addr).map_err(|source| DemoError::Bind { port, source })?;
    l.set_nonblocking(true)
        .map_err(|source| DemoError::Bind { port, source })?;
    Ok(l)
}

/// The instructions printed when the demo starts.
pub fn banner(opts: &DemoOptions) -> String {
    let first = opts.first_backend_port;
    let last = first + opts.backends.saturating_sub(1);
    let twice = u32::from(opts.backends) * 2;
    format!(
        "ferrolb demo: {n} backends on 127.0.0.1:{first}..{last}, balancer on 127.0.0.1:{port}\n\
         \n\
         Try:\n\
         \x20   curl http://127.0.0.1:{port}/\n\
         \x20   for i in $(seq {twice}); do curl -s http://127.0.0.1:{port}/; echo; done\n\
         \n\
         Round robin: {twice} requests show ports {first}..{last} in order, twice.\n\
         Press Ctrl-C to stop.\n",
        n = opts.backends,
        port = opts.port,
    )
}

/// Runs the demo until Ctrl-C: binds every backend port and checks the balancer's port
/// first, so a port in use is reported by number before anything starts.
pub fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let ports = opts.backend_ports()?;
    let text = opts.config_text()?;
    let listeners = ports
        .iter()
        .map(|&p| bind_std(p).map(|l| (p, l)))
        .collect::<Result<Vec<_>, _>>()?;
    // Probe the balancer port; the runtime binds it again right after. Closing a
    // listening socket that accepted nothing leaves no TIME_WAIT behind.
    drop(bind_std(opts.port)?);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();

    let backends = std::thread::Builder::new()
        .name("demo-backends".into())
        .spawn(move || {
            rt.block_on(async move {
                for (port, l) in listeners {
                    match TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(serve_backend(l, port));
                        }
                        Err(e) => {
                            crate::emerg!("demo backend on port {} failed: {}", port, e);
                        }
                    }
                }
                tokio::select! {
                    r = tokio::signal::ctrl_c() => {
                        if let Err(e) = r {
                            crate::alert!("cannot wait for Ctrl-C: {}", e);
                        }
                    }
                    _ = done_rx => {}
                }
                // Ignored when the balancer has already returned.
                let _ = shutdown_tx.send(true);
            });
        })
        .map_err(DemoError::Runtime)?;

    eprint!("{}", banner(&opts));
    let result = process::run_with_shutdown(
        RunOptions {
            admin: None,
            conf_path: PathBuf::from("<ferrolb demo>"),
            load: LoadOptions {
                prefix: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                globals: None,
                text: Some(text),
                // Only changes the default `listen`, and the demo names its own.
                is_root: false,
                ..Default::default()
            },
            error_log_override: None,
        },
        shutdown_rx,
    );
    // Stop the backends whether the balancer stopped on Ctrl-C or failed.
    let _ = done_tx.send(());
    let _ = backends.join();
    result.map_err(DemoError::from)
}

/// Largest request head the demo backend accepts.
const MAX_HEAD: usize = 64 * 1024;
/// How long an idle keep-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the demo backend on `listener` forever: every request gets
/// `<h1>Using port PORT</h1>` (for POST followed by the received body length).
pub async fn serve_backend(listener: TcpListener, port: u16) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    // Per-connection errors (peer reset, garbage) end that connection
                    // only.
                    let _ = serve_connection(stream, port).await;
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                crate::error!("demo backend {}: accept() failed: {}", port, e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Head {
    method: String,
    keep_alive: bool,
    content_length: u64,
    expect_continue: bool,
    head_len: usize,
}

enum Parsed {
    Partial,
    Done(Head),
    Bad(u16),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431),
        Err(_) => return Parsed::Bad(400),
    };
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version == 1;
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match (v, content_length) {
                (None, _) => return Parsed::Bad(400),
                (Some(v), Some(prev)) if v != prev => return Parsed::Bad(400),
                (Some(v), _) => content_length = Some(v),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // A demo backend does not decode chunked bodies; refusing is honest.
            return Parsed::Bad(411);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for tok in h.value.split(|&b| b == b',') {
                let tok = tok.trim_ascii();
                if tok.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    Parsed::Done(Head {
        method: req.method.unwrap_or("GET").to_owned(),
        keep_alive,
        content_length: content_length.unwrap_or(0),
        expect_continue: expect_continue && version == 1,
        head_len,
    })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle"))??;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    send_body: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nServer: ferrolb-demo\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: {}\r\n\r\n",
        crate::http1::respond::reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if send_body {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await
}

async fn serve_connection(mut stream: TcpStream, port: u16) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse_head(&buf) {
                    Parsed::Done(h) => break h,
                    Parsed::Bad(status) => {
                        let reason = crate::http1::respond::reason(status);
                        let body = format!("<h1>{status} {reason}</h1>");
                        respond(&mut stream, status, &body, true, false).await?;
                        return Ok(());
                    }
                    Parsed::Partial if buf.len() > MAX_HEAD => {
                        let body = "<h1>431 Request Header Fields Too Large</h1>";
                        respond(&mut stream, 431, body, true, false).await?;
                        return Ok(());
                    }
                    Parsed::Partial => {}
                }
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                // Peer closed between requests (or mid-head): nothing to answer.
                return Ok(());
            }
        };
        buf.drain(..head.head_len);

        if head.expect_continue
            && head.content_length > 0
            && (buf.len() as u64) < head.content_length
        {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        // Consume the body without keeping it: only its length matters.
        let mut remaining = head.content_length;
        loop {
            let take = remaining.min(buf.len() as u64) as usize;
            buf.drain(..take);
            remaining -= take as u64;
            if remaining == 0 {
                break;
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                return Ok(());
            }
        }

        let mut body = format!("<h1>Using port {port}</h1>");
        if head.method == "POST" {
            body.push_str(&format!(
                "\n<p>Received {} body bytes</p>",
                head.content_length
            ));
        }
        let send_body = head.method != "HEAD";
        respond(&mut stream, 200, &body, send_body, head.keep_alive).await?;
        if !head.keep_alive {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports() {
        let o = DemoOptions::default();
        assert_eq!(
            o.backend_ports().expect("ports"),
            vec![8000, 8001, 8002, 8003]
        );
        let text = o.config_text().expect("text");
        assert!(text.contains("server 127.0.0.1:8003;"));
        assert!(text.contains("listen 127.0.0.1:8080;"));
        assert!(text.contains("keepalive 32;"));
        assert!(text.contains("access_log off;"));
    }

    #[test]
    fn rejects_bad_ports() {
        let o = DemoOptions {
            port: 8001,
            ..DemoOptions::default()
        };
        assert!(o.backend_ports().is_err());
        let o = DemoOptions {
            first_backend_port: 65534,
            ..DemoOptions::default()
        };
        assert!(o.backend_ports().is_err());
        let o = DemoOptions {
            backends: 0,
            ..DemoOptions::default()
        };
        assert!(o.backend_ports().is_err());
    }

    #[test]
    fn head_parsing() {
        match parse_head(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc") {
            Parsed::Done(h) => {
                assert_eq!(h.content_length, 3);
                assert!(!h.keep_alive);
                assert_eq!(h.method, "POST");
            }
            _ => panic!("expected a head"),
        }
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Bad(400)
        ));
    }
}
