//! nginx's `ngx_http_acme_module` settings: `acme_issuer` blocks, `acme_certificate`
//! in a `server`, and the live certificate slot that `ssl_certificate
//! $acme_certificate` serves from. The ACME client that fills the slots is
//! `crate::acme`; this module only describes what to obtain and where it is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use super::types::Span;

/// An `acme_issuer NAME { }` block.
#[derive(Debug, Clone)]
pub struct AcmeIssuer {
    /// The block's name, which `acme_certificate` refers to.
    pub name: String,
    /// `uri`: the ACME directory URL (mandatory).
    pub uri: String,
    /// `contact` lines, each with `mailto:` added when it names no scheme.
    pub contacts: Vec<String>,
    /// `state_path`: where the account and the certificates are kept. Default
    /// `acme_NAME` under the prefix, as nginx's; `off` keeps them in memory only.
    pub state_path: Option<PathBuf>,
    /// `accept_terms_of_service`. Default off.
    pub accept_terms_of_service: bool,
    /// `account_key FILE`: a PKCS#8 ECDSA P-256 key (DER), read at load. Default
    /// none: a key is generated (and kept under `state_path`).
    pub account_key: Option<Vec<u8>>,
    /// `external_account_key KID FILE|data:KEY`: the key id and the MAC key, decoded.
    pub external_account_key: Option<(String, Vec<u8>)>,
    /// `ssl_trusted_certificate`: the CAs that may sign the ACME server's certificate.
    /// Empty: the system's CA bundle (nginx's default).
    pub trusted_cas: Vec<CertificateDer<'static>>,
    /// `ssl_verify`: verify the ACME server's certificate. Default on.
    pub ssl_verify: bool,
    /// Where the block is.
    pub span: Span,
}

/// The kind of private key an `acme_certificate` gets (`key=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKeyKind {
    /// `ecdsa:256` (the default).
    EcdsaP256,
    /// `ecdsa:384`.
    EcdsaP384,
}

impl CertKeyKind {
    /// The name as written in `key=`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKeyKind::EcdsaP256 => "ecdsa:256",
            CertKeyKind::EcdsaP384 => "ecdsa:384",
        }
    }
}

/// One certificate to obtain and renew: an `acme_certificate` line with its
/// identifiers resolved (from the line, or from the server's `server_name`).
#[derive(Debug, Clone)]
pub struct AcmeCertificate {
    /// The `acme_issuer` it comes from.
    pub issuer: Arc<AcmeIssuer>,
    /// DNS names (lowercase) and IP addresses, in order, without duplicates.
    pub identifiers: Vec<String>,
    /// `key=`.
    pub key: CertKeyKind,
    /// What handshakes serve; shared by every server with the same certificate.
    pub live: LiveCertificate,
    /// The directive.
    pub span: Span,
}

impl AcmeCertificate {
    /// A name that stays the same for the same issuer, identifiers and key kind: the
    /// first identifier and a hash (nginx's module names its files the same way), for
    /// file names and the status page.
    pub fn id(&self) -> String {
        let mut text = format!("{}\n{}", self.issuer.name, self.key.as_str());
        for i in &self.identifiers {
            text.push('\n');
            text.push_str(i);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let first = self.identifiers.first().map_or("", String::as_str);
        format!("{}-{hex}", first.replace(':', "_"))
    }

    /// The certificate chain's file under `state_path`, if the issuer keeps state.
    pub fn chain_file(&self) -> Option<PathBuf> {
        self.issuer
            .state_path
            .as_deref()
            .map(|d| d.join(format!("{}.crt", self.id())))
    }

    /// The private key's file under `state_path`, if the issuer keeps state.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.issuer
            .state_path
            .as_deref()
            .map(|d| d.join(format!("{}.key", self.id())))
    }

    /// Puts the certificate kept on disk (if any, and if it is not expired) in the
    /// live slot, so a start or reload serves it before the ACME client runs.
    pub fn load_kept(&self) {
        let (Some(chain), Some(key)) = (self.chain_file(), self.key_file()) else {
            return;
        };
        if let Ok(ck) = super::tls::load_certified_key(&chain, &key) {
            let expired = ck
                .end_entity_cert()
                .ok()
                .and_then(|c| validity(c))
                .is_some_and(|(_, not_after)| not_after <= unix_now());
            if !expired {
                self.live.store(Arc::new(ck));
            }
        }
    }
}

/// Seconds since the epoch now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A certificate's `notBefore` and `notAfter`, in seconds since the epoch.
pub fn validity(cert: &CertificateDer<'_>) -> Option<(i64, i64)> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let v = &c.tbs_certificate.validity;
    let secs = |t: &x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    Some((secs(&v.not_before), secs(&v.not_after)))
}

/// The certificate `ssl_certificate $acme_certificate` serves: empty until the first
/// one is issued (handshakes for the server then fail, as nginx's do while the
/// variable is empty), then swapped in place on every renewal, so connections in
/// progress keep theirs and new handshakes get the new one.
#[derive(Debug, Clone, Default)]
pub struct LiveCertificate(Arc<ArcSwapOption<CertifiedKey>>);

impl LiveCertificate {
    /// The certificate now, if one was issued.
    pub fn load(&self) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }

    /// Serves `ck` from now on.
    pub fn store(&self, ck: Arc<CertifiedKey>) {
        self.0.store(Some(ck));
    }
}

/// The state file of an issuer's account (its credentials, key included).
pub fn account_file(state_path: &Path) -> PathBuf {
    state_path.join("account.json")
}
