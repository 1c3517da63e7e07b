//! One ACME order (RFC 8555 section 7.4): new order, HTTP-01 challenges published for
//! the plain-HTTP listeners, a fresh key and CSR, the chain downloaded.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use super::challenge::Published;
use super::AcmeError;
use crate::config::acme::{AcmeCertificate, CertKeyKind};

/// A certificate chain (PEM, leaf first) and its private key (PEM, PKCS#8).
pub(super) struct Issued {
    pub(super) chain_pem: String,
    pub(super) key_pem: String,
}

/// How long the CA may take to validate and to issue, polled with backoff.
fn polling() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(90))
}

/// Orders a certificate for `cert` with `account`.
pub(super) async fn obtain(account: &Account, cert: &AcmeCertificate) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = cert
        .identifiers
        .iter()
        .map(|i| match i.parse::<std::net::IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(i.clone()),
        })
        .collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut published = Published::default();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Order(format!(
                    "authorization for {} is {other:?}",
                    authz.identifier()
                )))
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            AcmeError::Order(format!("the CA offers no http-01 challenge for {name}"))
        })?;
        let key_authorization = challenge.key_authorization();
        published.add(&challenge.token, key_authorization.as_str());
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&polling()).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order(challenge_errors(&mut order).await));
    }
    drop(published);
    let alg = match cert.key {
        CertKeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        CertKeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| AcmeError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(cert.identifiers.clone())
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&polling()).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The CA's reasons an order became invalid: each failed challenge's problem.
async fn challenge_errors(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let Ok(authz) = authz else { continue };
        for c in &authz.challenges {
            if let Some(problem) = &c.error {
                reasons.push(format!("{}: {problem}", authz.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        "the order is invalid".to_owned()
    } else {
        reasons.join("; ")
    }
}
