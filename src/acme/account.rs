//! The ACME account of an issuer: the HTTPS client that talks to its directory
//! (trusting `ssl_trusted_certificate`, or the system's CAs), and the account, kept
//! under `state_path` (`account.json`, mode 0600) and reused across restarts.

use std::sync::Arc;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, ExternalAccountKey, HttpClient, Key, NewAccount,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::store;
use super::AcmeError;
use crate::config::acme::{account_file, AcmeIssuer};

/// An HTTPS client for the issuer's directory, as `ssl_trusted_certificate` and
/// `ssl_verify` say.
fn http_client(issuer: &AcmeIssuer) -> Result<Box<dyn HttpClient>, AcmeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Client(e.to_string()))?;
    let config = if !issuer.ssl_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::config::tls::UpstreamVerify::off(
                provider,
            )))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if issuer.trusted_cas.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        } else {
            roots.add_parsable_certificates(issuer.trusted_cas.iter().cloned());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, BodyWrapper<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    Ok(Box::new(client))
}

/// The issuer's account: restored from `state_path` (when it was registered with the
/// same directory and no `account_key` is configured), or registered (with the
/// configured key, which finds the account it already has, or a new one) and saved
/// there.
pub(super) async fn account(issuer: &AcmeIssuer) -> Result<Account, AcmeError> {
    let kept = issuer.state_path.as_deref().map(account_file);
    if let Some(file) = &kept {
        let same_directory = |text: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(text)
                .ok()
                .is_some_and(|v| v["directory"] == issuer.uri.as_str())
                && issuer.account_key.is_none()
        };
        if let Some(text) = std::fs::read(file).ok().filter(|t| same_directory(t)) {
            let creds: AccountCredentials = serde_json::from_slice(&text)
                .map_err(|e| AcmeError::State(format!("{}: {e}", file.display())))?;
            return Ok(Account::builder_with_http(http_client(issuer)?)
                .from_credentials(creds)
                .await?);
        }
    }
    let contacts: Vec<&str> = issuer.contacts.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: issuer.accept_terms_of_service,
        only_return_existing: false,
    };
    let builder = Account::builder_with_http(http_client(issuer)?);
    let (account, creds) = match &issuer.account_key {
        Some(der) => {
            let pkcs8 = PrivatePkcs8KeyDer::from(der.clone());
            let key = Key::from_pkcs8_der(pkcs8.clone_key())?;
            builder
                .create_from_key((key, PrivateKeyDer::Pkcs8(pkcs8)), issuer.uri.clone())
                .await?
        }
        None => {
            let eab = issuer
                .external_account_key
                .as_ref()
                .map(|(kid, key)| ExternalAccountKey::new(kid.clone(), key));
            builder
                .create(&new, issuer.uri.clone(), eab.as_ref())
                .await?
        }
    };
    if let Some(file) = &kept {
        let text = serde_json::to_vec(&creds).map_err(|e| AcmeError::State(e.to_string()))?;
        store::write_private(file, &text)?;
    }
    Ok(account)
}
