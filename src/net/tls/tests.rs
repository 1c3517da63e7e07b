//! A TLS server and client over a real TCP connection, through the same calls the
//! proxy makes: bodies larger than the socket buffers both ways (so writes block and
//! ciphertext waits in rustls until the socket takes it), then a clean end.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::client;
use super::server::{accept, Accepted, TlsOffer};
use crate::config::tls::{ServerTls, SessionCache, UpstreamTls, UpstreamVerify, VerifyClient};
use crate::net::io;
use crate::net::Stream;

const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUR7t0ifCwSuwS5zKrT+gF5TU8yOIwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEzMDA0Mjc1OVoYDzIxMjYxMTA2
MDQyNzU5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATtv/Q9ZMoCu5rJa+vd3av4jpOSVetXMkeuJK77+kFokAp2m2qMHuZP
3x1Z9PtXgjH/kYPiMYRrZ0rpFRjB2dNDo2kwZzAdBgNVHQ4EFgQU7zpCIkLJyWg+
tc5+CMSGdBJbVkAwHwYDVR0jBBgwFoAU7zpCIkLJyWg+tc5+CMSGdBJbVkAwDwYD
VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID
SAAwRQIhAPVRtgwQ22nZ4U8xzQtH0/7mGOGS5xeeNEXd8jDp/EpWAiAh0aR4vJW5
l4xKYD85laOfNREQmpOD/9gKiBiyEJ6cZg==
-----END CERTIFICATE-----
";

const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgD3M9xB7in7Yl0/E/
cNadlz3O6R8m3LDiqf9aWWq8bvqhRANCAATtv/Q9ZMoCu5rJa+vd3av4jpOSVetX
MkeuJK77+kFokAp2m2qMHuZP3x1Z9PtXgjH/kYPiMYRrZ0rpFRjB2dND
-----END PRIVATE KEY-----
";

fn server_offer() -> TlsOffer {
    let chain = vec![CertificateDer::from_pem_slice(CERT.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).expect("key");
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).expect("signing key");
    let tls = ServerTls {
        certificates: vec![Arc::new(rustls::sign::CertifiedKey::new(chain, signing))],
        per_name_certificates: Vec::new(),
        acme: None,
        tls12: true,
        tls13: true,
        cipher_suites: rustls::crypto::ring::ALL_CIPHER_SUITES.to_vec(),
        prefer_server_ciphers: false,
        kx_groups: rustls::crypto::ring::ALL_KX_GROUPS.to_vec(),
        session_cache: SessionCache::Entries(16),
        session_timeout: Duration::from_secs(300),
        session_tickets: true,
        ticket_keys: Vec::new(),
        verify_client: VerifyClient::Off,
        client_cas: Vec::new(),
        trusted_cas: Vec::new(),
        crls: Vec::new(),
        verify_depth: 1,
        reject_handshake: false,
        span: crate::config::Span {
            file: Arc::new("t.conf".into()),
            line: 1,
            column: 1,
        },
    };
    TlsOffer::build(&tls, &[b"http/1.1"]).expect("offer")
}

fn client_tls() -> UpstreamTls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UpstreamVerify::off(provider)))
        .with_no_client_auth();
    UpstreamTls {
        config: Arc::new(config),
        name: ServerName::try_from("localhost").expect("name"),
        certificate_vars: None,
    }
}

/// Reads until `n` bytes arrived (or the end).
async fn read_n(s: &Stream, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match io::read_or_eof(s, &mut got, 64 * 1024, Duration::from_secs(10)).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

#[tokio::test]
async fn large_bodies_cross_tls_both_ways_and_the_end_is_seen() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let down: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
    let (up2, down2) = (up.clone(), down.clone());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let offer = server_offer();
        let Ok(Accepted::Tls(s)) = accept(Stream::Tcp(tcp), Vec::new(), |_| Some(offer)).await
        else {
            panic!("no TLS handshake");
        };
        assert_eq!(s.tls_facts().expect("facts").protocol, "TLSv1.3");
        io::write_all(&s, &down2, Duration::from_secs(10))
            .await
            .expect("server write");
        assert_eq!(read_n(&s, up2.len()).await, up2);
        // The client closed: the end is a clean 0.
        let mut rest = Vec::new();
        let n = io::read_or_eof(&s, &mut rest, 1024, Duration::from_secs(10))
            .await
            .expect("read end");
        assert_eq!(n, 0);
    });
    let raw = Stream::connect(&addr.into()).await.expect("connect");
    let c = client::connect(raw, &client_tls())
        .await
        .expect("client handshake");
    // The client reads only after the server's write had to wait for it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(read_n(&c, down.len()).await, down);
    io::write_all(&c, &up, Duration::from_secs(10))
        .await
        .expect("client write");
    c.close_notify();
    drop(c);
    server.await.expect("server task");
}

#[tokio::test]
async fn plain_http_on_a_tls_port_is_told_apart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = tokio::spawn(async move {
        let s = Stream::connect(&addr.into()).await.expect("connect");
        io::write_all(&s, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(5))
            .await
            .expect("write");
        s
    });
    let (tcp, _) = listener.accept().await.expect("accept");
    match accept(Stream::Tcp(tcp), Vec::new(), |_| Some(server_offer())).await {
        Ok(Accepted::Plain { first, .. }) => assert!(first.starts_with(b"GET / ")),
        other => panic!("{other:?}"),
    }
    drop(client.await);
}
