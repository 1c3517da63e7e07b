//! The server side of TLS: a rustls configuration per `server` block, built from its
//! [`ServerTls`], and the handshake that reads the ClientHello, lets the caller pick
//! the `server` by SNI, and goes on with that server's configuration (certificates,
//! protocols, client certificates).

use std::io;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::default_provider;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    Acceptor, ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert,
    ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::{
    Connection, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureAlgorithm, SignatureScheme,
};

use super::{complete_handshake, Raw, TlsFacts, TlsStream};
use crate::config::tls::{ServerTls, SessionCache};
use crate::config::tls_chain::{ChainCheck, Purpose};
use crate::net::Stream;

/// What a `server` block offers in a handshake.
#[derive(Debug, Clone)]
pub struct TlsOffer {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// Checks a client certificate after the handshake (`$ssl_client_verify`); `None`
    /// when none is asked for.
    client_check: Option<Arc<ClientCheck>>,
}

/// Why a server configuration could not be built (the configuration checks make this
/// rare: an `ssl_protocols` and `ssl_ciphers` pair that leaves nothing, say).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(String);

impl TlsOffer {
    /// The configuration of a server. `alpn`: protocols offered, in order.
    pub fn build(tls: &ServerTls, alpn: &[&[u8]]) -> Result<TlsOffer, BuildError> {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: tls.cipher_suites.clone(),
            kx_groups: tls.kx_groups.clone(),
            ..default_provider()
        });
        let mut versions = Vec::new();
        if tls.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if tls.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| BuildError(e.to_string()))?;
        let client_check = if tls.verify_client.asks() {
            Some(Arc::new(ClientCheck::new(tls, provider.clone())?))
        } else {
            None
        };
        let builder = match &client_check {
            Some(c) => builder.with_client_cert_verifier(Arc::new(AskClientCert(c.clone()))),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(PickCertificate::new(tls)));
        config.ignore_client_order = tls.prefer_server_ciphers;
        let timeout_secs = tls.session_timeout.as_secs();
        config.session_storage = match tls.session_cache {
            SessionCache::Entries(n) => Arc::new(ExpiringSessions {
                inner: ServerSessionMemoryCache::new(n),
                secs: timeout_secs,
            }),
            SessionCache::Off | SessionCache::None => Arc::new(NoServerSessionStorage {}),
        };
        if tls.session_tickets {
            let keys = if tls.ticket_keys.is_empty() {
                process_ticket_keys()
            } else {
                Some(Arc::new(FileTicketKeys::new(&tls.ticket_keys)) as Arc<dyn ProducesTickets>)
            };
            if let Some(keys) = keys {
                config.ticketer = Arc::new(TicketLifetime {
                    keys,
                    secs: u32::try_from(tls.session_timeout.as_secs())
                        .unwrap_or(u32::MAX)
                        .max(1),
                });
            }
        }
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsOffer {
            config: Arc::new(config),
            client_check,
        })
    }

    /// An offer that fails every handshake (`ssl_reject_handshake on`, or a server on a
    /// TLS address without a certificate, which nginx also fails).
    pub fn refuse() -> TlsOffer {
        static REFUSE: OnceLock<Arc<ServerConfig>> = OnceLock::new();
        let config = REFUSE.get_or_init(|| {
            let mut c = ServerConfig::builder_with_provider(Arc::new(default_provider()))
                .with_safe_default_protocol_versions()
                .map(|b| b.with_no_client_auth())
                .map(|b| b.with_cert_resolver(Arc::new(PickCertificate::default())))
                .unwrap_or_else(|_| {
                    ServerConfig::builder()
                        .with_no_client_auth()
                        .with_cert_resolver(Arc::new(PickCertificate::default()))
                });
            c.session_storage = Arc::new(NoServerSessionStorage {});
            Arc::new(c)
        });
        TlsOffer {
            config: config.clone(),
            client_check: None,
        }
    }
}

/// Session ticket keys for the whole process (every worker thread, every reload),
/// rotated by rustls every 6 hours.
fn process_ticket_keys() -> Option<Arc<dyn ProducesTickets>> {
    static KEYS: OnceLock<Option<Arc<dyn ProducesTickets>>> = OnceLock::new();
    KEYS.get_or_init(|| rustls::crypto::ring::Ticketer::new().ok())
        .clone()
}

/// Tickets sealed with `ssl_session_ticket_key` files: the first file's key seals, any
/// file's opens (a ticket starts with the 16-byte name of its key, as nginx's). The
/// key material after the name goes through SHA-256 into an AES-256-GCM key, so 48-
/// and 80-byte files both work.
struct FileTicketKeys {
    keys: Vec<([u8; 16], ring::aead::LessSafeKey)>,
    random: ring::rand::SystemRandom,
}

impl std::fmt::Debug for FileTicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTicketKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl FileTicketKeys {
    fn new(files: &[Vec<u8>]) -> FileTicketKeys {
        let keys = files
            .iter()
            .filter(|f| f.len() > 16)
            .filter_map(|f| {
                let mut name = [0u8; 16];
                name.copy_from_slice(&f[..16]);
                let material = ring::digest::digest(&ring::digest::SHA256, &f[16..]);
                let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, material.as_ref())
                    .ok()?;
                Some((name, ring::aead::LessSafeKey::new(key)))
            })
            .collect();
        FileTicketKeys {
            keys,
            random: ring::rand::SystemRandom::new(),
        }
    }
}

impl ProducesTickets for FileTicketKeys {
    fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use ring::rand::SecureRandom;
        let (name, key) = self.keys.first()?;
        let mut nonce = [0u8; 12];
        self.random.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(name),
            &mut sealed,
        )
        .ok()?;
        let mut out = Vec::with_capacity(16 + 12 + sealed.len());
        out.extend_from_slice(name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < 16 + 12 + 16 {
            return None;
        }
        let (name, rest) = ticket.split_at(16);
        let (nonce, sealed) = rest.split_at(12);
        let (_, key) = self.keys.iter().find(|(n, _)| n == name)?;
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, ring::aead::Aad::from(name), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Seconds since the epoch, as a session's birth time.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Prefixes a session's sealed state with its birth time.
fn stamp(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + plain.len());
    out.extend_from_slice(&now_secs().to_be_bytes());
    out.extend_from_slice(plain);
    out
}

/// The state after the birth time, when the session is younger than `secs`
/// (`ssl_session_timeout`: rustls itself lets a server resume a session of any age).
fn unstamp(stamped: Vec<u8>, secs: u64) -> Option<Vec<u8>> {
    let born = u64::from_be_bytes(stamped.get(..8)?.try_into().ok()?);
    if now_secs().saturating_sub(born) > secs {
        return None;
    }
    Some(stamped[8..].to_vec())
}

/// The session cache with `ssl_session_timeout` enforced.
#[derive(Debug)]
struct ExpiringSessions {
    inner: Arc<ServerSessionMemoryCache>,
    secs: u64,
}

impl rustls::server::StoresServerSessions for ExpiringSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, stamp(&value))
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.inner.get(key)?, self.secs)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.inner.take(key)?, self.secs)
    }
    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// Tickets that say `ssl_session_timeout` as their lifetime and are refused once
/// older.
#[derive(Debug)]
struct TicketLifetime {
    keys: Arc<dyn ProducesTickets>,
    secs: u32,
}

impl ProducesTickets for TicketLifetime {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        self.secs
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.encrypt(&stamp(plain))
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        unstamp(self.keys.decrypt(cipher)?, u64::from(self.secs))
    }
}

/// Picks the certificate for a ClientHello among a server's (RSA and ECDSA side by
/// side): ECDSA first when the client can take it, as OpenSSL ends up doing with
/// nginx's default cipher order, else the first one the client can verify.
#[derive(Debug, Default)]
struct PickCertificate {
    certs: Vec<Arc<CertifiedKey>>,
    /// Pairs naming `$ssl_server_name`, with the ones read so far by name.
    per_name: Vec<(String, String)>,
    /// `$acme_certificate`: read at each handshake, so a renewal is served at once.
    acme: Option<crate::config::acme::LiveCertificate>,
    by_name: std::sync::Mutex<std::collections::HashMap<String, Vec<Arc<CertifiedKey>>>>,
}

/// How many names' certificates [`PickCertificate`] keeps (a client picks the names).
const PER_NAME_KEPT: usize = 4096;

impl PickCertificate {
    fn new(tls: &ServerTls) -> PickCertificate {
        let mut certs = tls.certificates.clone();
        // Stable: within a kind, file order.
        certs.sort_by_key(|c| c.key.algorithm() != SignatureAlgorithm::ECDSA);
        PickCertificate {
            certs,
            per_name: tls.per_name_certificates.clone(),
            acme: tls.acme.clone(),
            by_name: Default::default(),
        }
    }

    /// The certificates whose paths name `$ssl_server_name`, for `name`: read the first
    /// time (a file that cannot be read is logged and left out, failing the handshake
    /// when nothing else fits, as in nginx).
    fn for_name(&self, name: Option<&str>) -> Vec<Arc<CertifiedKey>> {
        if self.per_name.is_empty() {
            return Vec::new();
        }
        let name = name.unwrap_or("");
        // The name becomes part of a path: never one that leaves the directory.
        if name.contains(['/', '\\']) || name.starts_with('.') || name.contains("..") {
            return Vec::new();
        }
        let mut kept = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = kept.get(name) {
            return found.clone();
        }
        let fill = |t: &str| {
            t.replace("${ssl_server_name}", name)
                .replace("$ssl_server_name", name)
        };
        let mut loaded = Vec::new();
        for (cert, key) in &self.per_name {
            let (cert, key) = (fill(cert), fill(key));
            match crate::config::tls::load_certified_key(cert.as_ref(), key.as_ref()) {
                Ok(ck) => loaded.push(Arc::new(ck)),
                Err(e) => crate::log::emit(
                    crate::config::Level::Error,
                    None,
                    format_args!("{e} while SSL handshaking"),
                ),
            }
        }
        loaded.sort_by_key(|c| c.key.algorithm() != SignatureAlgorithm::ECDSA);
        if !loaded.is_empty() {
            if kept.len() >= PER_NAME_KEPT {
                kept.clear();
            }
            kept.insert(name.to_owned(), loaded.clone());
        }
        loaded
    }
}

impl ResolvesServerCert for PickCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let suites = hello.cipher_suites();
        let tls13 = suites
            .iter()
            .any(|s| format!("{s:?}").starts_with("TLS13_"));
        let mut named = self.for_name(hello.server_name());
        if let Some(ck) = self.acme.as_ref().and_then(|a| a.load()) {
            named.insert(0, ck);
        }
        named
            .iter()
            .chain(&self.certs)
            .find(|c| {
                if c.key.choose_scheme(schemes).is_none() {
                    return false;
                }
                if tls13 {
                    return true;
                }
                // TLS 1.2: the client must offer a suite for this key's kind.
                let kind = match c.key.algorithm() {
                    SignatureAlgorithm::ECDSA => "_ECDSA_",
                    _ => "_RSA_",
                };
                suites.iter().any(|s| format!("{s:?}").contains(kind))
            })
            .or_else(|| named.first().or(self.certs.first()))
            .cloned()
    }
}

/// Client certificates, checked as nginx checks them: the handshake completes whatever
/// the client sends (the signature proving the key is still checked), and the request
/// is answered with nginx's 400 pages when `ssl_verify_client` requires more; the
/// verdict is `$ssl_client_verify`.
#[derive(Debug)]
struct ClientCheck {
    /// The chain check against the configured CAs; `None` with `optional_no_ca` and
    /// no CA.
    chain: Option<ChainCheck>,
    /// The names sent as acceptable CAs (`ssl_client_certificate`'s only).
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCheck {
    fn new(tls: &ServerTls, provider: Arc<CryptoProvider>) -> Result<ClientCheck, BuildError> {
        let mut hint_store = RootCertStore::empty();
        for ca in &tls.client_cas {
            hint_store
                .add(ca.clone())
                .map_err(|e| BuildError(format!("ssl_client_certificate: {e}")))?;
        }
        let roots: Vec<_> = tls
            .client_cas
            .iter()
            .chain(&tls.trusted_cas)
            .cloned()
            .collect();
        let chain = if roots.is_empty() {
            None
        } else {
            Some(
                ChainCheck::new(
                    &roots,
                    &tls.crls,
                    tls.verify_depth,
                    Purpose::Client,
                    provider.signature_verification_algorithms,
                )
                .map_err(BuildError)?,
            )
        };
        // A CA listed twice is named once, as OpenSSL names it.
        let mut hints = hint_store.subjects();
        let mut seen = std::collections::HashSet::new();
        hints.retain(|h| seen.insert(h.as_ref().to_vec()));
        Ok(ClientCheck {
            chain,
            hints,
            provider,
        })
    }

    /// `$ssl_client_verify` for the certificates a client presented.
    fn verdict(&self, certs: Option<&[CertificateDer<'static>]>) -> String {
        let Some((end, intermediates)) = certs.and_then(|c| c.split_first()) else {
            return "NONE".to_owned();
        };
        let Some(chain) = &self.chain else {
            return "FAILED:unable to get local issuer certificate".to_owned();
        };
        match chain.verify(end, intermediates, UnixTime::now()) {
            Ok(()) => "SUCCESS".to_owned(),
            Err(why) => format!("FAILED:{why}"),
        }
    }
}

/// Asks for a client certificate without failing the handshake over it.
#[derive(Debug)]
struct AskClientCert(Arc<ClientCheck>);

impl ClientCertVerifier for AskClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Judged after the handshake (`ClientCheck::verdict`), as nginx does.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::config::tls::verify_handshake_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
            false,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::config::tls::verify_handshake_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
            true,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Bytes in a `$ssl_session_id` (as OpenSSL's session ids: 32).
const SESSION_ID_LEN: usize = 32;

/// A new session's identity for `$ssl_session_id`: random, so unlinkable across
/// sessions.
fn new_session_id() -> [u8; SESSION_ID_LEN] {
    let mut id = [0u8; SESSION_ID_LEN];
    rand::fill(&mut id[..]);
    id
}

/// How a connection to a TLS listener began.
#[derive(Debug)]
pub enum Accepted {
    /// The handshake completed.
    Tls(Stream),
    /// The client spoke plain HTTP (its first byte is no TLS record): nginx answers
    /// it with 400 "The plain HTTP request was sent to HTTPS port". `first` holds the
    /// bytes read so far.
    Plain {
        /// The connection.
        stream: Stream,
        /// What the client sent so far.
        first: Vec<u8>,
    },
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client closed the connection or the socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS exchange failed (the peer got an alert).
    #[error("{0}")]
    Tls(rustls::Error),
    /// The server chosen rejects handshakes (`ssl_reject_handshake on`).
    #[error("rejected (ssl_reject_handshake)")]
    Rejected,
}

/// A TLS alert record ending a handshake with `unrecognized_name` (fatal), as nginx's
/// `ssl_reject_handshake` sends it: plain bytes, nothing is encrypted yet.
const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// Runs the server handshake on `raw`: reads the ClientHello, asks `pick` for the
/// offer of the server its SNI name (or none) selects, and completes the handshake
/// with it; `None` from `pick` rejects the handshake with an `unrecognized_name`
/// alert. `already`: bytes of the connection read before (behind a PROXY protocol
/// header). The caller bounds the time.
pub async fn accept(
    raw: Stream,
    already: Vec<u8>,
    pick: impl FnOnce(Option<&str>) -> Option<TlsOffer>,
) -> Result<Accepted, HandshakeError> {
    let mut acceptor = Acceptor::default();
    let mut first_read = true;
    let mut pending = Some(already).filter(|a| !a.is_empty());
    let accepted = loop {
        let mut chunk = [0u8; 4096];
        let read;
        let bytes: &[u8] = if let Some(a) = pending.take() {
            read = a;
            &read
        } else {
            raw.readable().await?;
            let n = match raw.try_read(&mut chunk) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            };
            &chunk[..n]
        };
        if std::mem::take(&mut first_read) && bytes[0] != 0x16 {
            // No TLS handshake record: a plain HTTP client.
            return Ok(Accepted::Plain {
                stream: raw,
                first: bytes.to_vec(),
            });
        }
        let mut fed = bytes;
        while !fed.is_empty() {
            acceptor.read_tls(&mut fed)?;
        }
        match acceptor.accept() {
            Ok(Some(a)) => break a,
            Ok(None) => {}
            Err((e, mut alert)) => {
                let _ = alert.write(&mut Raw(&raw));
                return Err(HandshakeError::Tls(e));
            }
        }
    };
    let curves = accepted
        .client_hello()
        .named_groups()
        .unwrap_or_default()
        .iter()
        .map(|g| crate::config::tls::openssl_group_name(*g))
        .collect::<Vec<_>>()
        .join(":");
    let ciphers = accepted
        .client_hello()
        .cipher_suites()
        .iter()
        .map(|&s| match crate::config::tls::openssl_name(s) {
            "" => {
                let n = u16::from(s);
                format!("0x{:02x}{:02x}", n >> 8, n & 0xff)
            }
            name => name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(":");
    let Some(offer) = pick(accepted.client_hello().server_name()) else {
        let _ = raw.try_write_vectored(&[std::io::IoSlice::new(&UNRECOGNIZED_NAME)]);
        return Err(HandshakeError::Rejected);
    };
    let fresh_id = new_session_id();
    let mut conn = match accepted.into_connection(offer.config.clone()) {
        Ok(mut c) => {
            // Sealed into the session (cache entry or ticket) this handshake makes.
            c.set_resumption_data(&fresh_id);
            Connection::Server(c)
        }
        Err((e, mut alert)) => {
            let _ = alert.write(&mut Raw(&raw));
            return Err(HandshakeError::Tls(e));
        }
    };
    complete_handshake(&raw, &mut conn).await?;
    let mut facts = TlsFacts::of(&conn);
    facts.curves = curves;
    facts.ciphers = ciphers;
    facts.session_id = match &conn {
        Connection::Server(c) if facts.reused => c
            .received_resumption_data()
            .filter(|d| d.len() == SESSION_ID_LEN)
            .map_or_else(|| fresh_id.to_vec(), <[u8]>::to_vec),
        _ => fresh_id.to_vec(),
    };
    if let Some(check) = &offer.client_check {
        facts.client_verify = check.verdict(conn.peer_certificates());
    }
    Ok(Accepted::Tls(Stream::Tls(Box::new(TlsStream::new(
        raw, conn, facts,
    )))))
}
