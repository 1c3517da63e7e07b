//! Test backends for the admin, health-check and dashboard tests: a blocking
//! HTTP/1.1 server on a thread that answers `<h1>Using port N</h1>` (so
//! `Response::backend_port` works), can be told to answer 500 on `/health/`, counts
//! the requests it served, and can be stopped (its port then refuses connections).
//! A backend binds a port the kernel picks and keeps its listener (see "Ports"
//! in tests/common/mod.rs).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running test backend.
pub struct Backend {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// When true, `/health/` answers 500.
    pub sick: Arc<AtomicBool>,
    /// Requests served other than `/health/`.
    pub hits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts a backend on a port the kernel picks.
    pub fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let port = listener.local_addr().expect("backend address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let sick = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, h, st) = (sick.clone(), hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, h) = (s.clone(), h.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, port, &s, &h);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener drops here: the port refuses connections from now on.
        });
        Backend {
            port,
            sick,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops accepting and closes the listening socket (the accept thread owns
    /// it: once joined, the port refuses connections).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Requests served so far (health checks excluded).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(conn: TcpStream, port: u16, sick: &AtomicBool, hits: &AtomicU64) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let (status, text) = if path.starts_with("/health/") {
        if sick.load(Ordering::Relaxed) {
            ("500 Internal Server Error", "sick".to_owned())
        } else {
            ("200 OK", "ok".to_owned())
        }
    } else {
        hits.fetch_add(1, Ordering::Relaxed);
        ("200 OK", format!("<h1>Using port {port}</h1>"))
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    w.flush()
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
