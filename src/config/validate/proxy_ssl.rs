//! The `proxy_ssl_*` directives (http, server, location), merged directive by
//! directive, and the rustls client configuration of a `proxy_pass https://`.

use std::path::PathBuf;
use std::sync::Arc;

use super::ciphers::{select_ciphers, TLS13_SUITES};
use super::tls::{load_pair, read_certs, read_crls, read_passwords};
use super::values::{flag, invalid_value, templ};
use super::{once, unreachable_directive, Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::tls::{ClientCertificateVars, UpstreamTls, UpstreamVerify};

/// The `proxy_ssl_*` settings of one level (http, server, location); `None`: not set.
#[derive(Debug, Clone, Default)]
pub(super) struct ProxySslPartial {
    verify: Option<bool>,
    trusted_certificate: Option<(PathBuf, Directive)>,
    server_name: Option<bool>,
    name: Option<String>,
    certificate: Option<(PathBuf, Directive)>,
    certificate_key: Option<(PathBuf, Directive)>,
    protocols: Option<(bool, bool)>,
    ciphers: Option<Directive>,
    session_reuse: Option<bool>,
    crl: Option<(PathBuf, Directive)>,
    password_file: Option<(PathBuf, Directive)>,
    verify_depth: Option<usize>,
}

impl ProxySslPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &ProxySslPartial) -> ProxySslPartial {
        macro_rules! pick {
            ($($f:ident),*) => { ProxySslPartial {
                $($f: self.$f.clone().or_else(|| parent.$f.clone()),)*
            } };
        }
        pick!(
            verify,
            trusted_certificate,
            server_name,
            name,
            certificate,
            certificate_key,
            protocols,
            ciphers,
            session_reuse,
            crl,
            password_file,
            verify_depth
        )
    }
}

impl Validator<'_> {
    /// One `proxy_ssl_*` directive at http, server or location level.
    pub(super) fn proxy_ssl_setting(
        &mut self,
        p: &mut ProxySslPartial,
        d: &Directive,
    ) -> Result<()> {
        let a0 = d.arg(0);
        let env = self.env;
        let path = |v: &str| env.prefix.join(v);
        // `uwsgi_ssl_*` are the same settings for `uwsgi_pass suwsgi://`.
        let name = match d.name.strip_prefix("uwsgi_") {
            Some(rest) => format!("proxy_{rest}"),
            None => d.name.clone(),
        };
        match name.as_str() {
            "proxy_ssl_verify" => once(&mut p.verify, flag(d)?, d)?,
            "proxy_ssl_password_file" => once(&mut p.password_file, (path(a0), d.clone()), d)?,
            "proxy_ssl_server_name" => once(&mut p.server_name, flag(d)?, d)?,
            "proxy_ssl_session_reuse" => once(&mut p.session_reuse, flag(d)?, d)?,
            "proxy_ssl_trusted_certificate" => {
                once(&mut p.trusted_certificate, (path(a0), d.clone()), d)?
            }
            "proxy_ssl_certificate" | "proxy_ssl_certificate_key" => {
                let slot = if name == "proxy_ssl_certificate" {
                    &mut p.certificate
                } else {
                    &mut p.certificate_key
                };
                // With variables: kept as written, evaluated per request.
                let value = if a0.contains('$') {
                    PathBuf::from(a0)
                } else {
                    path(a0)
                };
                once(slot, (value, d.clone()), d)?;
            }
            "proxy_ssl_name" => {
                let name = if a0 == "$proxy_host" { None } else { Some(a0) };
                if name.is_some_and(|n| n.contains('$')) {
                    return Err(ConfigError::hinted(
                        &d.span,
                        "variables in \"proxy_ssl_name\" other than $proxy_host are not supported yet",
                        "write the name the upstream's certificate carries",
                    ));
                }
                once(&mut p.name, name.unwrap_or_default().to_owned(), d)?;
            }
            "proxy_ssl_protocols" => {
                let (mut v12, mut v13) = (false, false);
                for a in &d.args {
                    match a.value.as_str() {
                        "TLSv1.2" => v12 = true,
                        "TLSv1.3" => v13 = true,
                        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {}
                        other => return Err(invalid_value(d, other, Some("the protocols are SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3"))),
                    }
                }
                if !v12 && !v13 {
                    return Err(ConfigError::hinted(
                        &d.span,
                        "no protocol left: ferrolb speaks TLSv1.2 and TLSv1.3 only",
                        "write proxy_ssl_protocols TLSv1.2 TLSv1.3;",
                    ));
                }
                once(&mut p.protocols, (v12, v13), d)?;
            }
            "proxy_ssl_ciphers" => once(&mut p.ciphers, d.clone(), d)?,
            "proxy_ssl_crl" => once(&mut p.crl, (path(a0), d.clone()), d)?,
            "proxy_ssl_verify_depth" => {
                let n = super::values::number::<u32>(d, a0)?;
                once(
                    &mut p.verify_depth,
                    usize::try_from(n).unwrap_or(usize::MAX),
                    d,
                )?;
            }
            other => unreachable_directive(d, other)?,
        }
        Ok(())
    }

    /// How a location's `proxy_pass https://` connects, from its merged
    /// `proxy_ssl_*` settings; `pass` names the upstream (`$proxy_host`).
    pub(super) fn upstream_tls(
        &mut self,
        p: &ProxySslPartial,
        proxy_host: &str,
        pass_directive: &Directive,
    ) -> Result<Arc<UpstreamTls>> {
        use rustls::client::Resumption;
        use rustls::pki_types::ServerName;
        let (tls12, tls13) = p.protocols.unwrap_or((true, true));
        let mut suites = Vec::new();
        if tls13 {
            suites.extend_from_slice(TLS13_SUITES);
        }
        if tls12 {
            let list = p.ciphers.as_ref().map_or("DEFAULT", |d| d.arg(0));
            let (chosen, unmapped) = select_ciphers(list);
            if let Some(d) = &p.ciphers {
                if !unmapped.is_empty() {
                    self.warn(
                        d,
                        format!(
                            "ciphers with no rustls equivalent are not offered: {}",
                            unmapped.join(", ")
                        ),
                    );
                }
            }
            suites.extend(chosen);
        }
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: suites,
            ..rustls::crypto::ring::default_provider()
        });
        let mut versions = Vec::new();
        if tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let at = p.ciphers.as_ref().unwrap_or(pass_directive);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| {
                ConfigError::at(
                    &at.span,
                    format!("no TLS setting left for the upstream: {e}"),
                )
            })?;
        let builder = if p.verify == Some(true) {
            let Some((file, d)) = &p.trusted_certificate else {
                return Err(ConfigError::hinted(
                    &pass_directive.span,
                    "no proxy_ssl_trusted_certificate for proxy_ssl_verify",
                    "name the CA that signs the upstream's certificate: proxy_ssl_trusted_certificate /etc/ssl/upstream-ca.pem;",
                ));
            };
            let roots = read_certs(d, file, "certificate")?;
            let crls = match &p.crl {
                Some((file, d)) => read_crls(d, file)?,
                None => Vec::new(),
            };
            let chain = crate::config::tls_chain::ChainCheck::new(
                &roots,
                &crls,
                p.verify_depth.unwrap_or(1),
                crate::config::tls_chain::Purpose::Server,
                provider.signature_verification_algorithms,
            )
            .map_err(|e| {
                let at = p.crl.as_ref().map_or(d, |(_, cd)| cd);
                ConfigError::at(
                    &at.span,
                    format!("the upstream's CAs or CRLs do not load: {e}"),
                )
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UpstreamVerify::on(
                    chain,
                    provider.clone(),
                )))
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UpstreamVerify::off(provider)))
        };
        let has_vars = |p: &PathBuf| p.to_string_lossy().contains('$');
        let mut certificate_vars = None;
        let mut config = match (&p.certificate, &p.certificate_key) {
            (Some((cert, cd)), Some((key, kd))) if has_vars(cert) || has_vars(key) => {
                let t = |d: &Directive, p: &PathBuf| templ(d, &p.to_string_lossy(), &self.names);
                certificate_vars = Some(Arc::new(ClientCertificateVars::new(
                    t(cd, cert)?,
                    t(kd, key)?,
                    self.env.prefix.clone(),
                    read_passwords(&p.password_file)?,
                )));
                builder.with_no_client_auth()
            }
            (Some((cert, cd)), Some((key, kd))) => {
                let ck = load_pair(cd, cert, kd, key, &read_passwords(&p.password_file)?)?;
                builder
                    .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)))
            }
            (Some((_, d)), None) | (None, Some((_, d))) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    "proxy_ssl_certificate and proxy_ssl_certificate_key go together",
                    "give both, for the client certificate ferrolb shows the upstream",
                ))
            }
            (None, None) => builder.with_no_client_auth(),
        };
        // nginx sends SNI only when asked (`proxy_ssl_server_name on`).
        config.enable_sni = p.server_name == Some(true);
        if p.session_reuse == Some(false) {
            config.resumption = Resumption::disabled();
        }
        let host = match p.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => super::address::parse_host_port(proxy_host)
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .unwrap_or_else(|_| proxy_host.to_owned()),
        };
        let name = ServerName::try_from(host.clone()).map_err(|_| {
            ConfigError::at(
                &pass_directive.span,
                format!("\"{host}\" is not a host name or address for proxy_ssl_name"),
            )
        })?;
        Ok(Arc::new(UpstreamTls {
            config: Arc::new(config),
            name,
            certificate_vars,
        }))
    }
}
