//! The `ssl_*` directives of http and server levels: parsed per level, merged as nginx
//! merges them (a server's value wins over the http level's), then the files they
//! name are read into a [`ServerTls`]. Everything rustls cannot do is either mapped
//! (OpenSSL cipher names and aliases, curve names), warned about where it only drops
//! something weaker or unused, or refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::kx_group;
use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::sign::CertifiedKey;

use super::ciphers::{select_ciphers, TLS13_SUITES};
use super::values::{flag, invalid_value, parse_size, time};
use super::{once, unreachable_directive, Result, Validator};
use crate::config::acme::AcmeCertificate;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::tls::{
    load_certified_key_with, pem_error, read_certificates, read_password_file, CertLoadError,
    ServerTls, SessionCache, VerifyClient,
};

/// The `ssl_*` settings of one level; `None`: not set here.
#[derive(Debug, Clone, Default)]
pub(super) struct TlsPartial {
    /// `ssl_certificate` lines (path, directive), in order.
    certificates: Option<Vec<(PathBuf, Directive)>>,
    /// `ssl_certificate_key` lines, paired with the certificates by position.
    keys: Option<Vec<(PathBuf, Directive)>>,
    protocols: Option<(bool, bool)>,
    ciphers: Option<Directive>,
    prefer_server_ciphers: Option<bool>,
    ecdh_curve: Option<Directive>,
    session_cache: Option<SessionCache>,
    session_timeout: Option<Duration>,
    session_tickets: Option<bool>,
    verify_client: Option<VerifyClient>,
    verify_depth: Option<usize>,
    client_certificate: Option<(PathBuf, Directive)>,
    trusted_certificate: Option<(PathBuf, Directive)>,
    crl: Option<(PathBuf, Directive)>,
    password_file: Option<(PathBuf, Directive)>,
    stapling: Option<bool>,
    stapling_file: Option<(PathBuf, Directive)>,
    reject_handshake: Option<bool>,
    /// `ssl_session_ticket_key` files' contents, in order.
    ticket_keys: Option<Vec<Vec<u8>>>,
}

impl TlsPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &TlsPartial) -> TlsPartial {
        macro_rules! pick {
            ($($f:ident),*) => { TlsPartial {
                $($f: self.$f.clone().or_else(|| parent.$f.clone()),)*
            } };
        }
        pick!(
            certificates,
            keys,
            protocols,
            ciphers,
            prefer_server_ciphers,
            ecdh_curve,
            session_cache,
            session_timeout,
            session_tickets,
            verify_client,
            verify_depth,
            client_certificate,
            trusted_certificate,
            crl,
            password_file,
            stapling,
            stapling_file,
            reject_handshake,
            ticket_keys
        )
    }

    /// Whether a certificate is configured at this level or above.
    pub(super) fn has_certificate(&self) -> bool {
        self.certificates.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// The `ssl_certificate $acme_certificate` line, if any.
    pub(super) fn acme_certificate(&self) -> Option<&Directive> {
        self.certificates
            .as_ref()?
            .iter()
            .find(|(p, _)| p.as_os_str() == "$acme_certificate")
            .map(|(_, d)| d)
    }

    /// `ssl_verify_client` here or above; default off.
    pub(super) fn verify_client(&self) -> VerifyClient {
        self.verify_client.unwrap_or(VerifyClient::Off)
    }

    /// Whether `ssl_reject_handshake on` is set.
    pub(super) fn rejects(&self) -> bool {
        self.reject_handshake == Some(true)
    }
}

impl Validator<'_> {
    /// One `ssl_*` directive at http or server level.
    pub(super) fn tls_setting(&mut self, p: &mut TlsPartial, d: &Directive) -> Result<()> {
        let a0 = d.arg(0);
        let env = self.env;
        let path = |v: &str| env.prefix.join(v);
        match d.name.as_str() {
            "ssl_certificate" | "ssl_certificate_key" => {
                let acme_var = if d.name == "ssl_certificate" {
                    "$acme_certificate"
                } else {
                    "$acme_certificate_key"
                };
                if a0 == acme_var {
                    // Served from memory by the ACME client, never read as a file.
                    let slot = if d.name == "ssl_certificate" {
                        &mut p.certificates
                    } else {
                        &mut p.keys
                    };
                    slot.get_or_insert_with(Vec::new)
                        .push((PathBuf::from(a0), d.clone()));
                    return Ok(());
                }
                if without_server_name(a0).contains('$') {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!(
                            "variables in \"{}\" other than $ssl_server_name are not supported yet",
                            d.name
                        ),
                        "name the files of each server in its own server block, or use $ssl_server_name",
                    ));
                }
                if a0.starts_with("data:") {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("\"data:\" in \"{}\" is not supported yet", d.name),
                    ));
                }
                let slot = if d.name == "ssl_certificate" {
                    &mut p.certificates
                } else {
                    &mut p.keys
                };
                slot.get_or_insert_with(Vec::new)
                    .push((path(a0), d.clone()));
            }
            "ssl_protocols" => {
                let (mut v12, mut v13) = (false, false);
                let mut old = Vec::new();
                for a in &d.args {
                    match a.value.as_str() {
                        "TLSv1.2" => v12 = true,
                        "TLSv1.3" => v13 = true,
                        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => old.push(a.value.clone()),
                        other => return Err(invalid_value(d, other, Some("the protocols are SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3"))),
                    }
                }
                if !old.is_empty() {
                    self.warn(
                        d,
                        format!(
                            "{} not offered: rustls implements TLS 1.2 and 1.3 only",
                            old.join(", ")
                        ),
                    );
                }
                if !v12 && !v13 {
                    return Err(ConfigError::hinted(
                        &d.span,
                        "no protocol left: ferrolb offers TLSv1.2 and TLSv1.3 only",
                        "write ssl_protocols TLSv1.2 TLSv1.3;",
                    ));
                }
                once(&mut p.protocols, (v12, v13), d)?;
            }
            "ssl_ciphers" => once(&mut p.ciphers, d.clone(), d)?,
            "ssl_prefer_server_ciphers" => once(&mut p.prefer_server_ciphers, flag(d)?, d)?,
            "ssl_ecdh_curve" => once(&mut p.ecdh_curve, d.clone(), d)?,
            "ssl_session_cache" => once(&mut p.session_cache, session_cache(d)?, d)?,
            "ssl_session_timeout" => once(&mut p.session_timeout, time(d, a0)?, d)?,
            "ssl_session_tickets" => once(&mut p.session_tickets, flag(d)?, d)?,
            "ssl_verify_client" => {
                let v = match a0 {
                    "off" => VerifyClient::Off,
                    "on" => VerifyClient::On,
                    "optional" => VerifyClient::Optional,
                    "optional_no_ca" => VerifyClient::OptionalNoCa,
                    other => {
                        return Err(invalid_value(
                            d,
                            other,
                            Some("use on, off, optional or optional_no_ca"),
                        ))
                    }
                };
                once(&mut p.verify_client, v, d)?;
            }
            "ssl_client_certificate" => once(&mut p.client_certificate, (path(a0), d.clone()), d)?,
            "ssl_trusted_certificate" => {
                once(&mut p.trusted_certificate, (path(a0), d.clone()), d)?
            }
            "ssl_crl" => once(&mut p.crl, (path(a0), d.clone()), d)?,
            "ssl_password_file" => once(&mut p.password_file, (path(a0), d.clone()), d)?,
            "ssl_stapling" => once(&mut p.stapling, flag(d)?, d)?,
            "ssl_stapling_file" => once(&mut p.stapling_file, (path(a0), d.clone()), d)?,
            "ssl_stapling_verify" | "ssl_stapling_responder" => {
                // They tune fetching responses from the CA, which ferrolb does not do.
            }
            "ssl_reject_handshake" => once(&mut p.reject_handshake, flag(d)?, d)?,
            "ssl_dhparam" => {
                // rustls has no finite-field DHE suites: the file is checked, not used.
                let file = path(a0);
                let text = std::fs::read(&file)
                    .map_err(|e| file_error(d, &file, "DH parameters", &e.to_string()))?;
                if !text.windows(14).any(|w| w == b"DH PARAMETERS-") {
                    return Err(file_error(
                        d,
                        &file,
                        "DH parameters",
                        "no \"BEGIN DH PARAMETERS\" block",
                    ));
                }
            }
            "ssl_verify_depth" => {
                let n = super::values::number::<u32>(d, a0)?;
                once(
                    &mut p.verify_depth,
                    usize::try_from(n).unwrap_or(usize::MAX),
                    d,
                )?;
            }
            "ssl_early_data" => {
                if flag(d)? {
                    self.warn(d, "\"ssl_early_data on\" is accepted and ignored: 0-RTT data is refused, clients send the request after the handshake".to_owned());
                }
            }
            "ssl_session_ticket_key" => {
                // Read here so a bad file is an error at its line; nginx takes 48 or
                // 80 bytes (a 16-byte name, then the key material).
                let file = path(a0);
                let key = std::fs::read(&file)
                    .map_err(|e| file_error(d, &file, "session ticket key", &e.to_string()))?;
                if key.len() != 48 && key.len() != 80 {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!("\"{}\" must be 48 or 80 bytes", file.display()),
                        "make one with: openssl rand 80 > ticket.key",
                    ));
                }
                p.ticket_keys.get_or_insert_with(Vec::new).push(key);
            }
            other => unreachable_directive(d, other)?,
        }
        Ok(())
    }

    /// The merged settings of a server with its files read. `None` when the server has
    /// no certificate and does not reject handshakes (it cannot terminate TLS).
    pub(super) fn server_tls(
        &mut self,
        p: &TlsPartial,
        server: &Directive,
        acme: Option<&AcmeCertificate>,
    ) -> Result<Option<Arc<ServerTls>>> {
        if !p.has_certificate() && !p.rejects() {
            return Ok(None);
        }
        let certs = p.certificates.clone().unwrap_or_default();
        let keys = p.keys.clone().unwrap_or_default();
        let stapled = match (p.stapling, &p.stapling_file) {
            (Some(true), Some((file, d))) => Some(
                std::fs::read(file)
                    .map_err(|e| file_error(d, file, "OCSP response", &e.to_string()))?,
            ),
            (Some(true), None) => {
                if let Some((_, d)) = certs.first() {
                    self.warn(d, "\"ssl_stapling\" without \"ssl_stapling_file\" staples nothing: ferrolb does not fetch OCSP responses".to_owned());
                }
                None
            }
            _ => None,
        };
        let mut certificates = Vec::with_capacity(certs.len());
        let mut per_name_certificates = Vec::new();
        let mut acme_served = None;
        let passwords = read_passwords(&p.password_file)?;
        for (i, (cert_path, cd)) in certs.iter().enumerate() {
            let Some((key_path, kd)) = keys.get(i) else {
                return Err(ConfigError::hinted(
                    &cd.span,
                    format!(
                        "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                        cert_path.display()
                    ),
                    "each ssl_certificate needs its ssl_certificate_key, in the same order",
                ));
            };
            let is_acme = |p: &Path, var: &str| p.as_os_str() == var;
            match (
                is_acme(cert_path, "$acme_certificate"),
                is_acme(key_path, "$acme_certificate_key"),
            ) {
                (true, true) => {
                    // Empty in a server without `acme_certificate` (as nginx's
                    // variable): no certificate from this pair.
                    acme_served = acme.map(|a| a.live.clone());
                    continue;
                }
                (false, false) => {}
                _ => {
                    return Err(ConfigError::hinted(
                        &cd.span,
                        "$acme_certificate and $acme_certificate_key go together",
                        "write ssl_certificate $acme_certificate; ssl_certificate_key $acme_certificate_key;",
                    ))
                }
            }
            let names = |p: &Path| p.to_string_lossy().contains('$');
            if names(cert_path) || names(key_path) {
                // Read at the handshake, for the name the client sends.
                per_name_certificates.push((
                    cert_path.to_string_lossy().into_owned(),
                    key_path.to_string_lossy().into_owned(),
                ));
                continue;
            }
            let mut ck = load_pair(cd, cert_path, kd, key_path, &passwords)?;
            if let Some(ocsp) = &stapled {
                ck.ocsp = Some(ocsp.clone());
            }
            certificates.push(Arc::new(ck));
        }
        let (tls12, tls13) = p.protocols.unwrap_or((true, true));
        let mut cipher_suites = Vec::new();
        if tls13 {
            cipher_suites.extend_from_slice(TLS13_SUITES);
        }
        if tls12 {
            let (chosen, unmapped) = match &p.ciphers {
                Some(d) => {
                    let (c, u) = select_ciphers(d.arg(0));
                    if !u.is_empty() {
                        self.warn(
                            d,
                            format!(
                                "ciphers with no rustls equivalent are not offered: {}",
                                u.join(", ")
                            ),
                        );
                    }
                    if c.is_empty() {
                        if !tls13 {
                            return Err(ConfigError::hinted(&d.span, format!("no cipher of \"{}\" exists in rustls", d.arg(0)), "rustls offers ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384, ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305, ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256"));
                        }
                        self.warn(
                            d,
                            "no TLS 1.2 cipher is left: only TLS 1.3 is offered".to_owned(),
                        );
                    }
                    (c, u)
                }
                None => (select_ciphers("HIGH:!aNULL:!MD5").0, Vec::new()),
            };
            let _ = unmapped;
            cipher_suites.extend(chosen);
        }
        let kx_groups = match &p.ecdh_curve {
            Some(d) => self.curves(d)?,
            None => vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        };
        let read_cas =
            |slot: &Option<(PathBuf, Directive)>| -> Result<Vec<CertificateDer<'static>>> {
                match slot {
                    Some((file, d)) => read_certs(d, file, "certificate"),
                    None => Ok(Vec::new()),
                }
            };
        let client_cas = read_cas(&p.client_certificate)?;
        let trusted_cas = read_cas(&p.trusted_certificate)?;
        let verify_client = p.verify_client.unwrap_or(VerifyClient::Off);
        if matches!(verify_client, VerifyClient::On | VerifyClient::Optional)
            && client_cas.is_empty()
            && trusted_cas.is_empty()
        {
            return Err(ConfigError::hinted(
                &server.span,
                "no ssl_client_certificate for ssl_verify_client",
                "name the CA that signs client certificates: ssl_client_certificate /etc/ssl/clients-ca.pem;",
            ));
        }
        let crls = match &p.crl {
            Some((file, d)) => read_crls(d, file)?,
            None => Vec::new(),
        };
        Ok(Some(Arc::new(ServerTls {
            verify_depth: p.verify_depth.unwrap_or(1),
            certificates,
            per_name_certificates,
            acme: acme_served,
            tls12,
            tls13,
            cipher_suites,
            prefer_server_ciphers: p.prefer_server_ciphers.unwrap_or(false),
            kx_groups,
            session_cache: p.session_cache.unwrap_or(SessionCache::None),
            session_timeout: p.session_timeout.unwrap_or(Duration::from_secs(300)),
            session_tickets: p.session_tickets.unwrap_or(true),
            ticket_keys: p.ticket_keys.clone().unwrap_or_default(),
            verify_client,
            client_cas,
            trusted_cas,
            crls,
            reject_handshake: p.rejects(),
            span: server.span.clone(),
        })))
    }

    /// `ssl_ecdh_curve auto|NAME[:NAME...]`.
    fn curves(&mut self, d: &Directive) -> Result<Vec<&'static dyn SupportedKxGroup>> {
        let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        let mut missing = Vec::new();
        for name in d.arg(0).split(':') {
            let g: &'static dyn SupportedKxGroup = match name {
                "auto" => {
                    out.extend([kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1]);
                    continue;
                }
                "X25519" | "x25519" => kx_group::X25519,
                "prime256v1" | "secp256r1" | "P-256" => kx_group::SECP256R1,
                "secp384r1" | "P-384" => kx_group::SECP384R1,
                other => {
                    missing.push(other.to_owned());
                    continue;
                }
            };
            out.push(g);
        }
        if !missing.is_empty() {
            self.warn(
                d,
                format!(
                    "curves with no rustls equivalent are not offered: {}",
                    missing.join(", ")
                ),
            );
        }
        if out.is_empty() {
            return Err(ConfigError::hinted(
                &d.span,
                format!("no curve of \"{}\" exists in rustls", d.arg(0)),
                "rustls offers X25519, prime256v1 and secp384r1",
            ));
        }
        Ok(out)
    }
}

/// `ssl_session_cache off|none|[builtin[:N]] [shared:NAME:SIZE]`.
fn session_cache(d: &Directive) -> Result<SessionCache> {
    let mut entries = 0usize;
    for a in &d.args {
        let v = a.value.as_str();
        match v {
            "off" if d.args.len() == 1 => return Ok(SessionCache::Off),
            "none" if d.args.len() == 1 => return Ok(SessionCache::None),
            "builtin" => entries += 20480,
            _ => {
                if let Some(n) = v.strip_prefix("builtin:") {
                    entries += super::values::number::<usize>(d, n)?;
                } else if let Some(rest) = v.strip_prefix("shared:") {
                    let size = rest
                        .rsplit_once(':')
                        .and_then(|(name, size)| (!name.is_empty()).then_some(size))
                        .and_then(parse_size)
                        .ok_or_else(|| {
                            invalid_value(d, v, Some("write shared:NAME:SIZE, e.g. shared:SSL:10m"))
                        })?;
                    // nginx keeps about 4000 sessions in 1 MiB.
                    entries += (size as usize / 256).max(1);
                } else {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("invalid session cache \"{v}\""),
                    ));
                }
            }
        }
    }
    Ok(SessionCache::Entries(entries))
}

/// A certificate chain and its key, checked to belong together; an error points at
/// the directive of the file at fault.
pub(super) fn load_pair(
    cd: &Directive,
    cert_path: &Path,
    kd: &Directive,
    key_path: &Path,
    passwords: &[Vec<u8>],
) -> Result<CertifiedKey> {
    load_certified_key_with(cert_path, key_path, passwords).map_err(|e| match e {
        CertLoadError::Certificate { path, why } => file_error(cd, &path, "certificate", &why),
        CertLoadError::Key { path, why } => file_error(kd, &path, "certificate key", &why),
        mismatch @ CertLoadError::Mismatch { .. } => ConfigError::hinted(
            &kd.span,
            mismatch.to_string(),
            "give each ssl_certificate_key right after its ssl_certificate",
        ),
    })
}

/// The passphrases of an `ssl_password_file` / `proxy_ssl_password_file` line; none
/// without one.
pub(super) fn read_passwords(slot: &Option<(PathBuf, Directive)>) -> Result<Vec<Vec<u8>>> {
    match slot {
        Some((file, d)) => read_password_file(file).map_err(|e| {
            ConfigError::at(&d.span, format!("cannot open \"{}\": {e}", file.display()))
        }),
        None => Ok(Vec::new()),
    }
}

/// Every certificate of a PEM file (at least one).
pub(super) fn read_certs(
    d: &Directive,
    file: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    read_certificates(file).map_err(|why| file_error(d, file, what, &why))
}

/// Every revocation list of a PEM file.
pub(super) fn read_crls(
    d: &Directive,
    file: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_file_iter(file)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| file_error(d, file, "CRL", &pem_error(&e)))?;
    crate::config::tls_chain::check_crls(&crls).map_err(|why| file_error(d, file, "CRL", &why))?;
    Ok(crls)
}

/// A path with its `$ssl_server_name` (the one variable certificate paths may hold)
/// taken out.
fn without_server_name(path: &str) -> String {
    path.replace("${ssl_server_name}", "")
        .replace("$ssl_server_name", "")
}

/// nginx's `cannot load certificate "FILE"` with the reason and a hint.
pub(super) fn file_error(d: &Directive, file: &Path, what: &str, why: &str) -> ConfigError {
    ConfigError::hinted(
        &d.span,
        format!("cannot load {what} \"{}\": {why}", file.display()),
        "check the path and that the user ferrolb runs as can read it; certbot's files are /etc/letsencrypt/live/NAME/fullchain.pem and privkey.pem",
    )
}
