//! The demo backend as a real HTTP/1.1 server.

use ferrolb::demo::serve_backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one response with a Content-Length body; returns (head, body).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "eof in body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return (head, body);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read head");
        assert!(n > 0, "eof in head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn start() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(serve_backend(l, port));
    port
}

#[tokio::test]
async fn get_and_keep_alive() {
    let port = start().await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut buf = Vec::new();
    for path in ["/", "/any/path?x=1"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let (head, body) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("Content-Type: text/html; charset=utf-8"));
        assert_eq!(body, format!("<h1>Using port {port}</h1>").into_bytes());
    }
}

#[tokio::test]
async fn post_body_then_pipelined_get_and_close() {
    let port = start().await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut buf = Vec::new();
    s.write_all(
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let (_, body) = read_response(&mut s, &mut buf).await;
    let body = String::from_utf8(body).expect("utf-8");
    assert!(body.starts_with(&format!("<h1>Using port {port}</h1>")));
    assert!(body.contains("5 body bytes"), "{body}");
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("Connection: close"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.expect("eof");
    assert!(rest.is_empty() && buf.is_empty());
}

#[tokio::test]
async fn http10_closes_and_garbage_gets_400() {
    let port = start().await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.expect("read");
    assert!(String::from_utf8_lossy(&all).contains("Connection: close"));

    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"\x01\x02 nonsense\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.expect("read");
    assert!(all.starts_with(b"HTTP/1.1 400 "));
}
