//! A server's TLS settings as the `ssl_*` directives give them, with every file
//! (certificates, keys, CAs, CRLs, OCSP responses) already read and checked, so a bad
//! file is a configuration error at its directive, at start, `-t` and reload alike.
//! The rustls objects that serve connections are built from this by `crate::net::tls`.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::sign::CertifiedKey;
use rustls::SupportedCipherSuite;

use super::types::Span;

/// Why a certificate and key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertLoadError {
    /// The certificate file.
    #[error("cannot load certificate \"{}\": {why}", path.display())]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key file.
    #[error("cannot load certificate key \"{}\": {why}", path.display())]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the key \"{}\" does not belong to the certificate \"{}\"", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: std::path::PathBuf,
        /// The key file.
        key: std::path::PathBuf,
    },
}

/// Reads a PEM certificate chain (leaf first) and its key, and checks they belong
/// together.
pub fn load_certified_key(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<CertifiedKey, CertLoadError> {
    load_certified_key_with(cert, key, &[])
}

/// The passphrases of an `ssl_password_file`: one a line (trailing spaces, tabs and
/// CRs cut off, as nginx does), tried in turn on an encrypted key.
pub fn read_password_file(file: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    let text = std::fs::read(file)?;
    Ok(text
        .split(|&b| b == b'\n')
        .map(|line| {
            let end = line
                .iter()
                .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\r'))
                .map_or(0, |i| i + 1);
            line[..end].to_vec()
        })
        .filter(|l| !l.is_empty())
        .collect())
}

/// An `ENCRYPTED PRIVATE KEY` (PKCS#8, PBES2 as OpenSSL 3 writes it) opened with the
/// first of `passwords` that fits.
fn decrypt_key(
    pem_text: &str,
    passwords: &[Vec<u8>],
) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use pkcs8::der::Decode as _;
    let (label, doc) = pkcs8::SecretDocument::from_pem(pem_text).map_err(|e| e.to_string())?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(format!("unexpected PEM block \"{label}\""));
    }
    let info =
        pkcs8::EncryptedPrivateKeyInfo::from_der(doc.as_bytes()).map_err(|e| e.to_string())?;
    if passwords.is_empty() {
        return Err("the key is encrypted: give its passphrase with ssl_password_file".to_owned());
    }
    passwords
        .iter()
        .find_map(|p| info.decrypt(p).ok())
        .map(|plain| rustls::pki_types::PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
        .ok_or_else(|| "no passphrase in the password file decrypts it (bad decrypt)".to_owned())
}

/// [`load_certified_key`] with the passphrases of `ssl_password_file` for an
/// encrypted key.
pub fn load_certified_key_with(
    cert: &std::path::Path,
    key: &std::path::Path,
    passwords: &[Vec<u8>],
) -> Result<CertifiedKey, CertLoadError> {
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::PrivateKeyDer;
    let chain = read_certificates(cert).map_err(|why| CertLoadError::Certificate {
        path: cert.to_owned(),
        why,
    })?;
    let key_error = |why: String| CertLoadError::Key {
        path: key.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(key).map_err(|e| key_error(e.to_string()))?;
    let key_der = if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        decrypt_key(&text, passwords).map_err(key_error)?
    } else if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(key_error("a legacy encrypted PEM key (Proc-Type: 4,ENCRYPTED) is not supported: convert it to PKCS#8 with openssl pkcs8 -topk8 -in KEY -out KEY.p8 (or openssl genrsa without -traditional)".to_owned()));
    } else {
        PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
            key_error(match e {
                pem::Error::NoItemsFound => "no private key in the file".to_owned(),
                other => pem_error(&other),
            })
        })?
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| {
        CertLoadError::Key {
            path: key.to_owned(),
            why: e.to_string(),
        }
    })?;
    let ck = CertifiedKey::new(chain, signing);
    // Only a proven mismatch is an error: a certificate webpki does not parse (an
    // X.509 v1 certificate, as `openssl req -x509` makes without extensions) is
    // still served, as OpenSSL serves it.
    match ck.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertLoadError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        _ => Ok(ck),
    }
}

/// Every certificate of a PEM file (at least one); the error says why not.
pub fn read_certificates(file: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err("no \"BEGIN CERTIFICATE\" block in the file".to_owned());
    }
    Ok(certs)
}

/// A PEM reading error as a sentence.
pub fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "nothing found in the file".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The TLS settings of one `server` (its `ssl_*` directives over the http level's).
#[derive(Clone)]
pub struct ServerTls {
    /// `ssl_certificate` / `ssl_certificate_key` pairs in file order (RSA and ECDSA
    /// side by side); empty only with `ssl_reject_handshake on`.
    pub certificates: Vec<Arc<CertifiedKey>>,
    /// `ssl_certificate`/`ssl_certificate_key` pairs whose paths name
    /// `$ssl_server_name`: read at the handshake for the name the client sent (and
    /// kept until the next reload), as nginx reads them at every handshake.
    pub per_name_certificates: Vec<(String, String)>,
    /// `ssl_certificate $acme_certificate`: the certificate the ACME client keeps
    /// current; none until the first is issued (handshakes then fail, as nginx's).
    pub acme: Option<super::acme::LiveCertificate>,
    /// `ssl_protocols`: TLS 1.2 offered. Default on.
    pub tls12: bool,
    /// `ssl_protocols`: TLS 1.3 offered. Default on.
    pub tls13: bool,
    /// The suites `ssl_ciphers` selects, in its order (TLS 1.3 suites are not chosen by
    /// `ssl_ciphers`, as in OpenSSL, and are always all offered). Default
    /// `HIGH:!aNULL:!MD5`: every rustls suite.
    pub cipher_suites: Vec<SupportedCipherSuite>,
    /// `ssl_prefer_server_ciphers`: the server's order wins. Default off.
    pub prefer_server_ciphers: bool,
    /// `ssl_ecdh_curve`: key exchange groups in order. Default `auto`: X25519, P-256,
    /// P-384.
    pub kx_groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    /// `ssl_session_cache`.
    pub session_cache: SessionCache,
    /// `ssl_session_timeout`: how long a session may be resumed. Default 5m.
    pub session_timeout: Duration,
    /// `ssl_session_ticket_key` files' contents (48 or 80 bytes each): the first
    /// encrypts tickets, all decrypt, so instances sharing the files resume each
    /// other's sessions. Default none: keys ferrolb makes for the process.
    pub ticket_keys: Vec<Vec<u8>>,
    /// `ssl_session_tickets`. Default on.
    pub session_tickets: bool,
    /// `ssl_verify_client`. Default off.
    pub verify_client: VerifyClient,
    /// `ssl_client_certificate`: CAs that sign client certificates, also sent to clients
    /// as the acceptable CA names.
    pub client_cas: Vec<CertificateDer<'static>>,
    /// `ssl_trusted_certificate`: more CAs trusted for client certificates, not sent.
    pub trusted_cas: Vec<CertificateDer<'static>>,
    /// `ssl_verify_depth`: how many intermediate CAs may stand between a client
    /// certificate and a trusted root. Default 1.
    pub verify_depth: usize,
    /// `ssl_crl`: revocation lists checked for client certificates.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// `ssl_reject_handshake on`: handshakes that pick this server fail.
    pub reject_handshake: bool,
    /// The `server` block, for messages.
    pub span: Span,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificates", &self.certificates.len())
            .field("tls12", &self.tls12)
            .field("tls13", &self.tls13)
            .field("cipher_suites", &self.cipher_suites)
            .field("session_cache", &self.session_cache)
            .field("verify_client", &self.verify_client)
            .field("reject_handshake", &self.reject_handshake)
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// These settings as a handshake that SNI switched to this server runs them:
    /// nginx (with OpenSSL) has already chosen the protocol version, and keeps the
    /// cipher and curve lists, of the address's default server by then, so those come
    /// from `default`; certificates, client certificates and sessions are this
    /// server's.
    pub fn after_sni_from(&self, default: &ServerTls) -> ServerTls {
        ServerTls {
            tls12: default.tls12,
            tls13: default.tls13,
            cipher_suites: default.cipher_suites.clone(),
            kx_groups: default.kx_groups.clone(),
            ..self.clone()
        }
    }
}

/// `ssl_session_cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCache {
    /// `off`: sessions are not reused through a cache (tickets may still resume).
    Off,
    /// `none` (the default): as nginx, no session is stored.
    None,
    /// `shared:NAME:SIZE` or `builtin[:N]`: this many sessions are kept, shared by
    /// every worker thread (nginx stores about 4000 in 1 MiB).
    Entries(usize),
}

/// `ssl_verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// `off`: no certificate is asked for.
    Off,
    /// `on`: a valid certificate is required; a request without one gets nginx's 400
    /// "No required SSL certificate was sent", an invalid one "The SSL certificate
    /// error".
    On,
    /// `optional`: asked for; an invalid one gets the 400, none is fine.
    Optional,
    /// `optional_no_ca`: asked for, not required to verify (`$ssl_client_verify`
    /// says how it went).
    OptionalNoCa,
}

impl VerifyClient {
    /// Whether a certificate is asked for.
    pub fn asks(self) -> bool {
        self != VerifyClient::Off
    }
}

/// The 6 TLS 1.2 suites rustls has, with the OpenSSL name and the OpenSSL aliases
/// (as `openssl ciphers -s -tls1_2 ALIAS` lists them) each belongs to.
pub const TLS12_SUITES: &[(&str, SupportedCipherSuite, &[&str], u32)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        &["aECDSA", "ECDSA", "AES", "AES256", "AESGCM"],
        256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        &["aRSA", "AES", "AES256", "AESGCM"],
        256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        &["aECDSA", "ECDSA", "CHACHA20"],
        256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        &["aRSA", "CHACHA20"],
        256,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        &["aECDSA", "ECDSA", "AES", "AES128", "AESGCM"],
        128,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        &["aRSA", "AES", "AES128", "AESGCM"],
        128,
    ),
];

/// A suite's OpenSSL name, as nginx's `$ssl_cipher` shows it.
pub fn openssl_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as C;
    match suite {
        C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        other => TLS12_SUITES
            .iter()
            .find(|s| s.1.suite() == other)
            .map_or("", |s| s.0),
    }
}

/// How `proxy_pass https://` connects: the rustls client configuration built from the
/// location's `proxy_ssl_*` settings, and the name the upstream's certificate is
/// checked against (and sent by SNI with `proxy_ssl_server_name on`).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Protocols, suites, verification, client certificate, session reuse.
    pub config: Arc<rustls::ClientConfig>,
    /// `proxy_ssl_name`, default the host of `proxy_pass`.
    pub name: rustls::pki_types::ServerName<'static>,
    /// `proxy_ssl_certificate` / `proxy_ssl_certificate_key` with variables: the pair
    /// is evaluated per request and read then (`config` has no client certificate).
    pub certificate_vars: Option<Arc<ClientCertificateVars>>,
}

/// A client certificate whose paths hold variables, read per request as nginx reads
/// it, and kept by path (up to [`CLIENT_CERTIFICATES_KEPT`] pairs, until a reload).
#[derive(Debug)]
pub struct ClientCertificateVars {
    /// The certificate's path.
    pub cert: super::types::Template,
    /// The key's path.
    pub key: super::types::Template,
    /// Relative paths are taken from here (the configuration prefix).
    pub prefix: std::path::PathBuf,
    /// `proxy_ssl_password_file`'s passphrases.
    pub passwords: Vec<Vec<u8>>,
    configs: std::sync::Mutex<ConfigsByPath>,
}

/// Client configurations by evaluated (certificate, key) paths.
type ConfigsByPath = std::collections::HashMap<(Vec<u8>, Vec<u8>), Arc<rustls::ClientConfig>>;

/// How many evaluated certificate pairs [`ClientCertificateVars`] keeps.
pub const CLIENT_CERTIFICATES_KEPT: usize = 64;

impl ClientCertificateVars {
    /// A pair of path templates.
    pub fn new(
        cert: super::types::Template,
        key: super::types::Template,
        prefix: std::path::PathBuf,
        passwords: Vec<Vec<u8>>,
    ) -> ClientCertificateVars {
        ClientCertificateVars {
            cert,
            key,
            prefix,
            passwords,
            configs: Default::default(),
        }
    }

    /// The configuration for the evaluated paths: `base` with that certificate, or
    /// `base` itself when the certificate path is empty (no certificate, as nginx).
    pub fn config_for(
        &self,
        base: &Arc<rustls::ClientConfig>,
        cert: &[u8],
        key: &[u8],
    ) -> Result<Arc<rustls::ClientConfig>, CertLoadError> {
        if cert.is_empty() {
            return Ok(base.clone());
        }
        let mut kept = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        let id = (cert.to_vec(), key.to_vec());
        if let Some(c) = kept.get(&id) {
            return Ok(c.clone());
        }
        let path = |b: &[u8]| self.prefix.join(String::from_utf8_lossy(b).as_ref());
        let ck = load_certified_key_with(&path(cert), &path(key), &self.passwords)?;
        let mut config = (**base).clone();
        config.client_auth_cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(ck));
        let config = Arc::new(config);
        if kept.len() >= CLIENT_CERTIFICATES_KEPT {
            kept.clear();
        }
        kept.insert(id, config.clone());
        Ok(config)
    }
}

/// How the upstream's certificate is checked. `proxy_ssl_verify on` ([`UpstreamVerify::on`]):
/// its chain as OpenSSL checks it ([`super::tls_chain::ChainCheck`]:
/// `proxy_ssl_trusted_certificate`, `proxy_ssl_verify_depth`, `proxy_ssl_crl`), and its
/// name as nginx checks it ([`super::tls_chain::matches_host`]: subjectAltName, else
/// commonName). `off` (nginx's default, [`UpstreamVerify::off`]): the certificate is
/// taken as it is. Handshake signatures are checked either way
/// ([`verify_handshake_signature`], X.509 v1 certificates included).
#[derive(Debug)]
pub struct UpstreamVerify {
    chain: Option<super::tls_chain::ChainCheck>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl UpstreamVerify {
    /// `proxy_ssl_verify on` with this chain check.
    pub fn on(
        chain: super::tls_chain::ChainCheck,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> UpstreamVerify {
        UpstreamVerify {
            chain: Some(chain),
            provider,
        }
    }

    /// `proxy_ssl_verify off`.
    pub fn off(provider: Arc<rustls::crypto::CryptoProvider>) -> UpstreamVerify {
        UpstreamVerify {
            chain: None,
            provider,
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for UpstreamVerify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        chain
            .verify(end_entity, intermediates, now)
            .map_err(|why| {
                rustls::Error::General(format!("upstream SSL certificate verify error: ({why})"))
            })?;
        if !super::tls_chain::matches_host(end_entity, server_name) {
            return Err(rustls::Error::General(format!(
                "upstream SSL certificate does not match \"{}\"",
                server_name.to_str()
            )));
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
            false,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
            true,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks a handshake signature (`CertificateVerify`, or TLS 1.2's key exchange) made
/// with the key of `cert`. rustls reads the key through webpki, which refuses X.509 v1
/// certificates (what `openssl ca` and `openssl x509 -req` make without extensions);
/// OpenSSL takes them, so for one webpki cannot read the key is taken from the
/// certificate's SubjectPublicKeyInfo as x509-cert parses it and the signature is
/// still checked, with the algorithms the scheme allows (TLS 1.3: the first only).
pub fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
    algorithms: &rustls::crypto::WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use x509_cert::der::Decode;
    let checked = if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    };
    if rustls::server::ParsedCertificate::try_from(cert).is_ok() {
        return checked;
    }
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let parsed = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let key = parsed
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(bad)?;
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))?;
    let candidates = if tls13 {
        &candidates[..candidates.len().min(1)]
    } else {
        candidates
    };
    if candidates
        .iter()
        .any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok())
    {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    } else {
        Err(bad())
    }
}

/// A key exchange group as OpenSSL (and so nginx's `$ssl_curve`) names it; an unknown
/// one as its code in hex, as nginx prints it.
pub fn openssl_group_name(group: rustls::NamedGroup) -> String {
    use rustls::NamedGroup as G;
    match group {
        G::X25519 => "X25519".to_owned(),
        G::X448 => "X448".to_owned(),
        G::secp256r1 => "prime256v1".to_owned(),
        G::secp384r1 => "secp384r1".to_owned(),
        G::secp521r1 => "secp521r1".to_owned(),
        G::FFDHE2048 => "ffdhe2048".to_owned(),
        G::FFDHE3072 => "ffdhe3072".to_owned(),
        G::FFDHE4096 => "ffdhe4096".to_owned(),
        G::FFDHE6144 => "ffdhe6144".to_owned(),
        G::FFDHE8192 => "ffdhe8192".to_owned(),
        other => format!("0x{:04x}", u16::from(other)),
    }
}
