//! The admin listener's HTTP/1.1 server: the crate's `http1` request parser, bodies
//! framed by `Content-Length` only (up to 64 KiB), keep-alive, one task per
//! connection on the admin thread.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::AdminSettings;
use crate::config::Level;
use crate::http1::{BodyFraming, RequestHead};
use crate::server::{Shared, StopMode};

/// Largest request body accepted (peer changes are tiny JSON documents).
pub const MAX_BODY: u64 = 64 * 1024;
/// Idle time after which a connection is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds the admin listener now (so a taken port fails the start) and serves it on a
/// thread of its own until the server stops.
pub fn spawn(
    shared: Arc<Shared>,
    settings: AdminSettings,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let std_listener = std::net::TcpListener::bind(settings.addr)?;
    std_listener.set_nonblocking(true)?;
    if !settings.addr.ip().is_loopback() && settings.token.is_none() {
        crate::log::emit(
            Level::Warn,
            None,
            format_args!(
                "the admin listener on {} is reachable from other hosts and has no token",
                settings.addr
            ),
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ferrolb-admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        crate::log::emit(Level::Alert, None, format_args!("admin listener: {e}"));
                        return;
                    }
                };
                let mut stop = shared.stop_signal();
                let token: Option<Arc<str>> = settings.token.as_deref().map(Arc::from);
                loop {
                    tokio::select! {
                        r = listener.accept() => match r {
                            Ok((s, _)) => {
                                let (shared, token) = (shared.clone(), token.clone());
                                tokio::spawn(async move {
                                    // A broken admin connection ends only itself.
                                    let _ = serve(&shared, token.as_deref(), s).await;
                                });
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        },
                        r = stop.changed() => {
                            if r.is_err() || *stop.borrow() != StopMode::Running {
                                return;
                            }
                        }
                    }
                }
            })
        })
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(IDLE_TIMEOUT, s.read(&mut chunk))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn serve(shared: &Shared, token: Option<&str>, mut s: TcpStream) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut head = RequestHead::new();
        loop {
            if !buf.is_empty() {
                match head.parse(&buf) {
                    Ok(crate::http1::Parsed::Complete) => break,
                    Ok(_) => {}
                    Err(_) => return respond_error(&mut s, 400, "bad request").await,
                }
            }
            if buf.len() > crate::http1::MAX_HEAD_BYTES {
                return respond_error(&mut s, 431, "request head too large").await;
            }
            if read_more(&mut s, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let len = match head.framing {
            BodyFraming::None => 0,
            BodyFraming::Length(n) if n <= MAX_BODY => n as usize,
            BodyFraming::Length(_) => return respond_error(&mut s, 413, "body too large").await,
            _ => return respond_error(&mut s, 411, "send a Content-Length").await,
        };
        let end = head.head_len + len;
        while buf.len() < end {
            if read_more(&mut s, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let method = String::from_utf8_lossy(head.method_bytes(&buf)).into_owned();
        let target = String::from_utf8_lossy(&buf[head.target.clone()]).into_owned();
        let auth = head.header_value(&buf, "authorization");
        let reply = super::handle(
            shared,
            token,
            &method,
            &target,
            auth,
            &buf[head.head_len..end],
        );
        let keep = head.keep_alive;
        write_reply(&mut s, &reply, method == "HEAD", keep).await?;
        if !keep {
            return Ok(());
        }
        buf.drain(..end);
    }
}

async fn respond_error(s: &mut TcpStream, status: u16, why: &str) -> std::io::Result<()> {
    let reply = super::Reply {
        status,
        content_type: "application/json",
        body: serde_json::json!({ "error": why }).to_string().into_bytes(),
    };
    write_reply(s, &reply, false, false).await
}

async fn write_reply(
    s: &mut TcpStream,
    r: &super::Reply,
    head_only: bool,
    keep: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n",
        r.status,
        crate::http1::respond::reason(r.status),
        r.content_type,
        r.body.len(),
        if keep { "keep-alive" } else { "close" }
    )
    .into_bytes();
    if r.status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Bearer realm=\"ferrolb\"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    s.write_all(&out).await
}
