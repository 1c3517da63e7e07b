//! nginx's ACME module directives: `acme_issuer NAME { }` and `acme_shared_zone` at
//! http level, `acme_certificate ISSUER [IDENTIFIER...] [key=ALG:SIZE]` in a server.
//! Syntax, defaults and refusals follow `ngx_http_acme_module`; what ferrolb's ACME
//! client cannot do (other challenges, RSA and P-521 keys) is refused with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use super::tls::{file_error, read_certs};
use super::values::{flag, invalid_value, parse_size};
use super::{once, Result, Validator};
use crate::config::acme::{AcmeCertificate, AcmeIssuer, CertKeyKind, LiveCertificate};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;

/// An `acme_certificate` line of a server, before its identifiers are known.
#[derive(Debug, Clone)]
pub(super) struct CertificateLine {
    issuer: Arc<AcmeIssuer>,
    identifiers: Vec<String>,
    key: CertKeyKind,
    directive: Directive,
}

impl Validator<'_> {
    /// An `acme_issuer NAME { ... }` block.
    pub(super) fn acme_issuer(&mut self, d: &Directive) -> Result<()> {
        let name = d.arg(0).to_owned();
        if self.acme_issuers.iter().any(|i| i.name == name) {
            return Err(ConfigError::at(
                &d.span,
                format!("\"acme_issuer\" \"{name}\" is duplicate"),
            ));
        }
        let mut uri = None;
        let mut contacts = Vec::new();
        let mut state_path: Option<Option<std::path::PathBuf>> = None;
        let mut tos = None;
        let mut account_key = None;
        let mut eab = None;
        let mut trusted = None;
        let mut verify = None;
        let mut challenge = None;
        for c in d.block.as_deref().unwrap_or_default() {
            let nargs = |min: usize, max: usize| {
                if c.block.is_some() {
                    return Err(ConfigError::at(
                        &c.span,
                        format!("directive \"{}\" is not terminated by \";\"", c.name),
                    ));
                }
                if c.args.len() < min || c.args.len() > max {
                    return Err(ConfigError::at(
                        &c.span,
                        format!("invalid number of arguments in \"{}\"", c.name),
                    ));
                }
                Ok(())
            };
            let a0 = c.arg(0);
            match c.name.as_str() {
                "uri" => {
                    nargs(1, 1)?;
                    let host = a0
                        .strip_prefix("https://")
                        .or_else(|| a0.strip_prefix("http://"));
                    if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                        return Err(invalid_value(
                            c,
                            a0,
                            Some("the ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory"),
                        ));
                    }
                    once(&mut uri, a0.to_owned(), c)?;
                }
                "contact" => {
                    nargs(1, 1)?;
                    if a0.is_empty() {
                        return Err(invalid_value(c, a0, None));
                    }
                    contacts.push(if has_scheme(a0) {
                        a0.to_owned()
                    } else {
                        format!("mailto:{a0}")
                    });
                }
                "state_path" => {
                    nargs(1, 1)?;
                    let v = (a0 != "off").then(|| self.env.prefix.join(a0));
                    once(&mut state_path, v, c)?;
                }
                "accept_terms_of_service" => {
                    nargs(0, 0)?;
                    once(&mut tos, true, c)?;
                }
                "account_key" => {
                    nargs(1, 1)?;
                    once(&mut account_key, self.account_key(c)?, c)?;
                }
                "external_account_key" => {
                    nargs(2, 2)?;
                    let encoded = match c.arg(1).strip_prefix("data:") {
                        Some(k) => k.to_owned(),
                        None => {
                            let file = self.env.prefix.join(c.arg(1));
                            std::fs::read_to_string(&file).map_err(|e| {
                                file_error(c, &file, "external account key", &e.to_string())
                            })?
                        }
                    };
                    use base64::Engine as _;
                    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(encoded.trim().trim_end_matches('='))
                        .map_err(|_| {
                            ConfigError::at(
                                &c.span,
                                "\"external_account_key\" directive invalid base64url encoded value",
                            )
                        })?;
                    once(&mut eab, (a0.to_owned(), key), c)?;
                }
                "ssl_trusted_certificate" => {
                    nargs(1, 1)?;
                    let file = self.env.prefix.join(a0);
                    once(&mut trusted, read_certs(c, &file, "certificate")?, c)?;
                }
                "ssl_verify" => {
                    nargs(1, 1)?;
                    once(&mut verify, flag(c)?, c)?;
                }
                "challenge" => {
                    nargs(1, 1)?;
                    match a0 {
                        "http" | "http-01" => once(&mut challenge, (), c)?,
                        "tls-alpn" | "tls-alpn-01" => {
                            return Err(ConfigError::hinted(
                                &c.span,
                                "challenge \"tls-alpn-01\" is not supported",
                                "ferrolb answers http-01 challenges on its plain-HTTP listener: remove the line or write challenge http-01;",
                            ))
                        }
                        other => {
                            return Err(ConfigError::at(
                                &c.span,
                                format!("unsupported challenge: {other}"),
                            ))
                        }
                    }
                }
                "preferred_chain" | "profile" => {
                    return Err(ConfigError::at(
                        &c.span,
                        format!(
                            "\"{}\" is not supported: the CA's default chain and profile are used",
                            c.name
                        ),
                    ))
                }
                other => {
                    return Err(ConfigError::hinted(
                        &c.span,
                        format!("unknown directive \"{other}\""),
                        "acme_issuer takes uri, contact, state_path, accept_terms_of_service, account_key, external_account_key, ssl_trusted_certificate, ssl_verify and challenge",
                    ))
                }
            }
        }
        let Some(uri) = uri else {
            return Err(ConfigError::hinted(
                &d.span,
                format!("\"uri\" is missing in acme_issuer \"{name}\""),
                "add the ACME directory URL: uri https://acme-v02.api.letsencrypt.org/directory;",
            ));
        };
        let state_path =
            state_path.unwrap_or_else(|| Some(self.env.prefix.join(format!("acme_{name}"))));
        self.acme_issuers.push(Arc::new(AcmeIssuer {
            name,
            uri,
            contacts,
            state_path,
            accept_terms_of_service: tos.unwrap_or(false),
            account_key: account_key.flatten(),
            external_account_key: eab,
            trusted_cas: trusted.unwrap_or_default(),
            ssl_verify: verify.unwrap_or(true),
            span: d.span.clone(),
        }));
        Ok(())
    }

    /// `account_key ecdsa:256|FILE`: `None` for a generated key.
    fn account_key(&self, c: &Directive) -> Result<Option<Vec<u8>>> {
        let v = c.arg(0);
        match v {
            "ecdsa:256" => return Ok(None),
            "ecdsa:384" | "ecdsa:521" | "rsa:2048" | "rsa:3072" | "rsa:4096" => {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("account key \"{v}\" is not supported"),
                    "ferrolb's ACME client signs with ES256: use account_key ecdsa:256; (or leave it out)",
                ))
            }
            _ => {}
        }
        if v.contains(':') && !v.contains('/') && !std::path::Path::new(v).exists() {
            return Err(invalid_value(
                c,
                v,
                Some("ecdsa:256, or the file of a PEM ECDSA P-256 key"),
            ));
        }
        let file = self.env.prefix.join(v);
        let key = PrivateKeyDer::from_pem_file(&file)
            .map_err(|e| file_error(c, &file, "account key", &format!("{e:?}")))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = key else {
            return Err(ConfigError::hinted(
                &c.span,
                format!("account key \"{}\" is not in PKCS#8 form", file.display()),
                "convert it: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8",
            ));
        };
        let der = pkcs8.secret_pkcs8_der().to_vec();
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &rng,
        )
        .map_err(|_| {
            ConfigError::hinted(
                &c.span,
                format!("account key \"{}\" is not an ECDSA P-256 key", file.display()),
                "ferrolb's ACME client signs with ES256: make one with openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
            )
        })?;
        Ok(Some(der))
    }

    /// `acme_shared_zone zone=NAME:SIZE`: checked and accepted (ferrolb keeps its
    /// certificates and challenges in process memory, which has no fixed size).
    pub(super) fn acme_shared_zone(&mut self, d: &Directive) -> Result<()> {
        let ok = d
            .arg(0)
            .strip_prefix("zone=")
            .and_then(|v| v.rsplit_once(':'))
            .is_some_and(|(name, size)| !name.is_empty() && parse_size(size).is_some());
        if !ok {
            return Err(ConfigError::hinted(
                &d.span,
                "\"acme_shared_zone\" must have \"zone\" parameter",
                "write acme_shared_zone zone=ngx_acme_shared:256k;",
            ));
        }
        once(&mut self.acme_shared_zone, (), d)
    }

    /// `acme_certificate ISSUER [IDENTIFIER...] [key=ALG:SIZE]` in a server.
    pub(super) fn acme_certificate_line(&mut self, d: &Directive) -> Result<CertificateLine> {
        let issuer_name = d.arg(0);
        let issuer = self
            .acme_issuers
            .iter()
            .find(|i| i.name == issuer_name)
            .cloned()
            .ok_or_else(|| {
                ConfigError::hinted(
                    &d.span,
                    format!("issuer \"{issuer_name}\" is missing"),
                    "declare it at http level: acme_issuer NAME { uri ...; }",
                )
            })?;
        let mut key = CertKeyKind::EcdsaP256;
        let mut identifiers = Vec::new();
        for a in &d.args[1..] {
            if let Some(k) = a.value.strip_prefix("key=") {
                key = match k {
                    "ecdsa:256" => CertKeyKind::EcdsaP256,
                    "ecdsa:384" => CertKeyKind::EcdsaP384,
                    "ecdsa:521" | "rsa:2048" | "rsa:3072" | "rsa:4096" => {
                        return Err(ConfigError::hinted(
                            &d.span,
                            format!("key \"{k}\" is not supported"),
                            "ferrolb's TLS library (rustls with ring) makes and serves ecdsa:256 and ecdsa:384 keys: write key=ecdsa:256 (the default) or key=ecdsa:384",
                        ))
                    }
                    _ => return Err(invalid_value(d, &a.value, Some("key=ecdsa:256 or key=ecdsa:384"))),
                };
                continue;
            }
            identifiers.push(identifier(d, &a.value)?);
        }
        Ok(CertificateLine {
            issuer,
            identifiers,
            key,
            directive: d.clone(),
        })
    }

    /// The certificate of a server's `acme_certificate` line, its identifiers taken
    /// from `server_name` when the line lists none (regular expressions are skipped
    /// with a warning, `.example.com` gives `www.example.com` and `example.com`, as
    /// nginx's module does). Servers asking for the same certificate share it.
    pub(super) fn acme_certificate(
        &mut self,
        line: CertificateLine,
        server_names: &[String],
    ) -> Result<AcmeCertificate> {
        let d = &line.directive;
        let mut identifiers = line.identifiers;
        if identifiers.is_empty() {
            for name in server_names {
                if name.starts_with('~') {
                    self.warn(
                        d,
                        format!("\"acme_certificate\": unsupported regular expression in server_name: {name}"),
                    );
                    continue;
                }
                if name.is_empty() {
                    continue;
                }
                let name = if name == "$hostname" {
                    crate::config::hostname()
                } else {
                    name.as_str()
                };
                if let Some(bare) = name.strip_prefix('.') {
                    identifiers.push(identifier(d, &format!("www.{bare}"))?);
                    identifiers.push(identifier(d, bare)?);
                } else {
                    identifiers.push(identifier(d, name)?);
                }
            }
            if identifiers.is_empty() {
                return Err(ConfigError::hinted(
                    &d.span,
                    "\"acme_certificate\": no identifiers found in \"server_name\"",
                    "name the server (server_name example.com;) or list the names: acme_certificate ISSUER example.com;",
                ));
            }
        }
        let mut seen = HashMap::new();
        identifiers.retain(|i| seen.insert(i.clone(), ()).is_none());
        let cert = AcmeCertificate {
            issuer: line.issuer,
            identifiers,
            key: line.key,
            live: LiveCertificate::default(),
            span: d.span.clone(),
        };
        let id = cert.id();
        if let Some(same) = self.acme_certificates.iter().find(|c| c.id() == id) {
            return Ok(AcmeCertificate {
                live: same.live.clone(),
                ..cert
            });
        }
        cert.load_kept();
        self.acme_certificates.push(cert.clone());
        Ok(cert)
    }
}

/// Whether a `contact` value names a URL scheme (`mailto:`, `tel:`).
fn has_scheme(v: &str) -> bool {
    let mut chars = v.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    for c in chars {
        if c == ':' {
            return true;
        }
        if !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return false;
        }
    }
    false
}

/// One certificate identifier: an IP address in its canonical form, or a DNS name in
/// lower case. Wildcards need the dns-01 challenge, which is not implemented.
fn identifier(d: &Directive, v: &str) -> Result<String> {
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    if v.starts_with("*.") || v.ends_with(".*") {
        return Err(ConfigError::hinted(
            &d.span,
            format!("\"acme_certificate\": wildcard name \"{v}\" cannot be validated with the http-01 challenge"),
            "list the names the certificate is for: acme_certificate ISSUER example.com www.example.com;",
        ));
    }
    let lower = v.to_ascii_lowercase();
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let ok = !lower.is_empty()
        && lower
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(valid_char));
    if !ok {
        return Err(ConfigError::at(
            &d.span,
            format!("\"acme_certificate\": invalid server name: \"{v}\""),
        ));
    }
    Ok(lower)
}

impl Validator<'_> {
    /// HTTP-01 challenges come to port 80: when no server listens for plain HTTP, a
    /// server `listen 80; location / { return 404; }` (the one nginx's module
    /// documentation has users add) is added, and a warning says so. A plain listener
    /// on another port is taken as reached through a port forward from 80.
    pub(super) fn acme_challenge_listener(
        &mut self,
        servers: &mut Vec<crate::config::types::ServerConf>,
        http: &super::settings::Partial,
        http_tls: &super::tls::TlsPartial,
    ) -> Result<()> {
        let Some(first) = self.acme_certificates.first() else {
            return Ok(());
        };
        let span = first.span.clone();
        let ssl: std::collections::HashSet<_> = servers
            .iter()
            .flat_map(|s| s.listen.iter().filter(|l| l.ssl).map(|l| l.addr.clone()))
            .collect();
        let plain = servers.iter().any(|s| {
            s.listen.iter().any(|l| {
                !ssl.contains(&l.addr) && matches!(l.addr, crate::config::Endpoint::Inet(_))
            })
        });
        if plain {
            return Ok(());
        }
        let arg = |v: &str| crate::config::parser::Arg {
            value: v.to_owned(),
            quoted: false,
            line: span.line,
        };
        let directive = |name: &str, args: &[&str], block: Option<Vec<Directive>>| Directive {
            name: name.to_owned(),
            args: args.iter().map(|a| arg(a)).collect(),
            block,
            span: span.clone(),
        };
        let server = directive(
            "server",
            &[],
            Some(vec![
                directive("listen", &["80"], None),
                directive(
                    "location",
                    &["/"],
                    Some(vec![directive("return", &["404"], None)]),
                ),
            ]),
        );
        self.warnings.push(crate::config::types::Warning {
            span: span.clone(),
            message: "no server listens for plain HTTP: listening on 0.0.0.0:80 for ACME HTTP-01 challenges (add a server with \"listen 80;\" to choose the address)".to_owned(),
        });
        let added = self.server(&server, http, http_tls)?;
        servers.push(added);
        Ok(())
    }
}
