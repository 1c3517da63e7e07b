//! X.509 chain verification as OpenSSL does it for nginx (`ssl_verify_client`,
//! `ssl_verify_depth`, `ssl_crl`), for the certificates webpki refuses but OpenSSL
//! takes: a self-signed CA presented as the client certificate, CA certificates as
//! end entities (`basicConstraints CA:TRUE`), X.509 v1 certificates, and v1 CRLs
//! (what `openssl ca -gencrl` makes without `crl_extensions`).
//!
//! The rules: the chain is built trusted-first from the presented certificates up to a
//! trusted self-signed root; at most `depth` certificates may stand between the
//! client's and the root (OpenSSL 1.1.0+'s meaning of the verify depth); issuers must
//! be CAs (`basicConstraints CA:TRUE`, or X.509 v1) allowed to sign certificates; a
//! client certificate with an extended key usage must allow client authentication;
//! with CRLs, every certificate in the chain needs a current CRL from its issuer (as
//! nginx sets `X509_V_FLAG_CRL_CHECK_ALL`); signatures and validity times are checked.
//! nginx's verify callback lets OpenSSL go on after an error, so the error reported
//! is the last one found, in OpenSSL's order.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage};

/// One certificate: parsed, with the raw bytes its signature covers.
#[derive(Debug, Clone)]
struct Cert {
    der: Vec<u8>,
    tbs: Vec<u8>,
    parsed: x509_cert::Certificate,
    subject: Vec<u8>,
    issuer: Vec<u8>,
}

impl Cert {
    fn parse(der: &[u8]) -> Option<Cert> {
        let parsed = x509_cert::Certificate::from_der(der).ok()?;
        let tbs = first_element(der)?.to_vec();
        Some(Cert {
            der: der.to_vec(),
            tbs,
            subject: parsed.tbs_certificate.subject.to_der().ok()?,
            issuer: parsed.tbs_certificate.issuer.to_der().ok()?,
            parsed,
        })
    }

    fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    fn extension<T: AssociatedOid + for<'a> Decode<'a>>(&self) -> Option<Option<T>> {
        let exts = self.parsed.tbs_certificate.extensions.as_ref();
        match exts.and_then(|e| e.iter().find(|x| x.extn_id == T::OID)) {
            None => Some(None),
            Some(x) => T::from_der(x.extn_value.as_bytes()).ok().map(Some),
        }
    }

    /// Whether `self` has a critical extension this check does not apply (name or
    /// policy constraints, and anything unknown): such a certificate is refused, as
    /// OpenSSL refuses the critical extensions it does not handle, rather than
    /// accepted with a constraint unchecked.
    fn has_unhandled_critical_extension(&self) -> bool {
        const HANDLED: [&str; 5] = [
            "2.5.29.19", // basicConstraints
            "2.5.29.15", // keyUsage
            "2.5.29.37", // extKeyUsage
            "2.5.29.17", // subjectAltName
            "2.5.29.32", // certificatePolicies (OpenSSL checks none by default either)
        ];
        self.parsed
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .filter(|x| x.critical)
            .any(|x| !HANDLED.contains(&x.extn_id.to_string().as_str()))
    }

    /// Whether `self` may issue certificates (OpenSSL's `X509_check_ca`, roughly).
    fn is_ca(&self) -> bool {
        let v1 = self.parsed.tbs_certificate.extensions.is_none();
        let ca = match self.extension::<BasicConstraints>() {
            Some(Some(bc)) => bc.ca,
            Some(None) => v1,
            None => false,
        };
        let signs = match self.extension::<KeyUsage>() {
            Some(Some(ku)) => ku.key_cert_sign(),
            Some(None) => true,
            None => false,
        };
        ca && signs
    }

    /// Whether `self`'s signature was made by `issuer`'s key.
    fn signed_by(&self, issuer: &Cert, algs: &WebPkiSupportedAlgorithms) -> bool {
        signed(
            &self.tbs,
            &self.parsed.signature_algorithm,
            self.parsed.signature.raw_bytes(),
            issuer,
            algs,
        )
    }
}

/// The first element inside a DER SEQUENCE, header included (a certificate's or a
/// CRL's to-be-signed part, as it was signed).
fn first_element(der: &[u8]) -> Option<&[u8]> {
    let (outer_header, _) = tlv_len(der)?;
    let inner = der.get(outer_header..)?;
    let (header, len) = tlv_len(inner)?;
    inner.get(..header.checked_add(len)?)
}

/// A DER element's header length and content length.
fn tlv_len(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = der
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((2 + n, len))
}

/// An AlgorithmIdentifier's contents (without its SEQUENCE header), as webpki's
/// algorithm ids are written.
fn alg_id_contents(alg: &impl Encode) -> Option<Vec<u8>> {
    let der = alg.to_der().ok()?;
    let (header, _) = tlv_len(&der)?;
    Some(der[header..].to_vec())
}

fn signed(
    tbs: &[u8],
    sig_alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    signature: &[u8],
    issuer: &Cert,
    algs: &WebPkiSupportedAlgorithms,
) -> bool {
    let spki = &issuer.parsed.tbs_certificate.subject_public_key_info;
    let (Some(sig_id), Some(key_id)) = (alg_id_contents(sig_alg), alg_id_contents(&spki.algorithm))
    else {
        return false;
    };
    algs.all.iter().any(|alg| {
        alg.signature_alg_id().as_ref() == sig_id.as_slice()
            && alg.public_key_alg_id().as_ref() == key_id.as_slice()
            && alg
                .verify_signature(spki.subject_public_key.raw_bytes(), tbs, signature)
                .is_ok()
    })
}

/// A revocation list: who issued it, when it is current, what it revokes.
#[derive(Debug, Clone)]
struct Crl {
    tbs: Vec<u8>,
    sig_alg: x509_cert::spki::AlgorithmIdentifierOwned,
    signature: Vec<u8>,
    issuer: Vec<u8>,
    this_update: u64,
    next_update: Option<u64>,
    /// Revoked serial numbers, as DER INTEGER contents.
    revoked: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a v1 or v2 CRL; the error says why not.
    fn parse(der: &[u8]) -> Result<Crl, String> {
        let tbs = first_element(der).ok_or("not a DER CRL")?.to_vec();
        // x509-cert wants the version field, which v1 CRLs leave out: put one in for
        // the parse only (the signature covers the original bytes).
        let (header, _) = tlv_len(&tbs).ok_or("not a DER CRL")?;
        let parsed = match x509_cert::crl::CertificateList::from_der(der) {
            Ok(p) => p,
            Err(first) if tbs.get(header) != Some(&0x02) => {
                let mut body = vec![0x02, 0x01, 0x00];
                body.extend_from_slice(&tbs[header..]);
                let patched_tbs = der_sequence(&body);
                let (outer, _) = tlv_len(der).ok_or("not a DER CRL")?;
                let rest = &der[outer + tbs.len()..];
                let mut all = patched_tbs;
                all.extend_from_slice(rest);
                x509_cert::crl::CertificateList::from_der(&der_sequence(&all))
                    .map_err(|_| first.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let list = &parsed.tbs_cert_list;
        Ok(Crl {
            tbs,
            sig_alg: parsed.signature_algorithm.clone(),
            signature: parsed.signature.raw_bytes().to_vec(),
            issuer: list.issuer.to_der().map_err(|e| e.to_string())?,
            this_update: list.this_update.to_unix_duration().as_secs(),
            next_update: list.next_update.map(|t| t.to_unix_duration().as_secs()),
            revoked: list
                .revoked_certificates
                .iter()
                .flatten()
                .map(|r| r.serial_number.as_bytes().to_vec())
                .collect(),
        })
    }
}

/// A DER SEQUENCE around `body`.
fn der_sequence(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

/// Checks that every CRL of a file parses (at configuration time).
pub fn check_crls(crls: &[CertificateRevocationListDer<'_>]) -> Result<(), String> {
    for c in crls {
        Crl::parse(c.as_ref())?;
    }
    Ok(())
}

/// Why a chain was refused: OpenSSL's `X509_verify_cert_error_string` text, which
/// `$ssl_client_verify` shows after `FAILED:`.
pub type Refusal = &'static str;

/// What the end certificate is for: an extended key usage must allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client certificate (`ssl_verify_client`): `clientAuth`.
    Client,
    /// An upstream's certificate (`proxy_ssl_verify`): `serverAuth`.
    Server,
}

/// Whether a refusal only says the chain does not reach a trusted CA, which
/// `ssl_verify_client optional_no_ca` forgives (nginx's `ngx_ssl_verify_error_optional`).
pub fn is_missing_ca_error(why: &str) -> bool {
    matches!(
        why,
        "self-signed certificate"
            | "self-signed certificate in certificate chain"
            | "unable to get local issuer certificate"
            | "certificate not trusted"
            | "unable to verify the first certificate"
    )
}

/// Trusted CAs, CRLs and the depth limit, ready to check chains.
#[derive(Debug)]
pub struct ChainCheck {
    trusted: Vec<Cert>,
    crls: Vec<Crl>,
    depth: usize,
    purpose: Purpose,
    algs: WebPkiSupportedAlgorithms,
}

impl ChainCheck {
    /// A check against `trusted` CAs and `crls`, allowing `depth` intermediate
    /// certificates (`ssl_verify_depth`, default 1). Errors name what does not parse.
    pub fn new(
        trusted: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
        depth: usize,
        purpose: Purpose,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<ChainCheck, String> {
        let trusted = trusted
            .iter()
            .map(|c| {
                Cert::parse(c.as_ref()).ok_or_else(|| "a CA certificate does not parse".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let crls = crls
            .iter()
            .map(|c| Crl::parse(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChainCheck {
            trusted,
            crls,
            depth,
            purpose,
            algs,
        })
    }

    /// Whether any CA is trusted.
    pub fn has_roots(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Verifies `end` with the `intermediates` the peer sent, at `now`.
    pub fn verify(
        &self,
        end: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Refusal> {
        let now = now.as_secs();
        let leaf = Cert::parse(end.as_ref()).ok_or("unable to decode issuer public key")?;
        let presented: Vec<Cert> = intermediates
            .iter()
            .filter_map(|c| Cert::parse(c.as_ref()))
            .collect();
        let chain = self.build(leaf, &presented)?;
        let mut last: Option<Refusal> = None;
        // Extensions: none critical left unchecked; issuers must be CAs; the end
        // certificate must be for its purpose.
        if chain.iter().any(Cert::has_unhandled_critical_extension) {
            last = Some("unhandled critical extension");
        }
        for c in &chain[1..] {
            if !c.is_ca() {
                last = Some("invalid CA certificate");
            }
        }
        if let Some(Some(eku)) = chain[0].extension::<ExtendedKeyUsage>() {
            let wanted = x509_cert::der::oid::ObjectIdentifier::new_unwrap(match self.purpose {
                Purpose::Client => "1.3.6.1.5.5.7.3.2",
                Purpose::Server => "1.3.6.1.5.5.7.3.1",
            });
            let any = x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.29.37.0");
            if !eku.0.iter().any(|o| *o == wanted || *o == any) {
                last = Some("unsupported certificate purpose");
            }
        }
        // Revocation: every certificate, each by a CRL its issuer signed.
        if !self.crls.is_empty() {
            for (i, c) in chain.iter().enumerate() {
                let issuer = chain.get(i + 1).unwrap_or(c);
                if let Err(e) = self.revocation(c, issuer, now) {
                    last = Some(e);
                }
            }
        }
        // Signatures and times, from the root down (the root's own is not checked).
        for i in (0..chain.len()).rev() {
            let c = &chain[i];
            if let Some(issuer) = chain.get(i + 1) {
                if !c.signed_by(issuer, &self.algs) {
                    last = Some("certificate signature failure");
                }
            }
            let v = &c.parsed.tbs_certificate.validity;
            if v.not_before.to_unix_duration().as_secs() > now {
                last = Some("certificate is not yet valid");
            } else if v.not_after.to_unix_duration().as_secs() < now {
                last = Some("certificate has expired");
            }
        }
        last.map_or(Ok(()), Err)
    }

    /// The chain from `leaf` up to a trusted self-signed root, trusted issuers tried
    /// first.
    fn build(&self, leaf: Cert, presented: &[Cert]) -> Result<Vec<Cert>, Refusal> {
        let mut chain = vec![leaf];
        loop {
            let Some(top) = chain.last() else {
                return Err("unable to get local issuer certificate");
            };
            let trusted_top = self.trusted.iter().any(|t| t.der == top.der);
            if trusted_top && top.self_issued() {
                break;
            }
            let issuer = self
                .trusted
                .iter()
                .chain(presented)
                .find(|c| {
                    c.subject == top.issuer && c.der != top.der && top.signed_by(c, &self.algs)
                })
                .cloned();
            match issuer {
                Some(i) => {
                    // Leaf + `depth` intermediates + the root. OpenSSL 3 stops at a
                    // trusted CA it may not go past as an issuer it cannot get.
                    if chain.len() >= self.depth.saturating_add(2) {
                        return Err(if trusted_top {
                            "unable to get issuer certificate"
                        } else {
                            "certificate chain too long"
                        });
                    }
                    chain.push(i);
                }
                None if trusted_top => return Err("unable to get issuer certificate"),
                None if top.self_issued() && chain.len() == 1 => {
                    return Err("self-signed certificate")
                }
                None if top.self_issued() => {
                    return Err("self-signed certificate in certificate chain")
                }
                None if chain.len() == 1 => return Err("unable to get local issuer certificate"),
                None => return Err("unable to get local issuer certificate"),
            }
        }
        Ok(chain)
    }

    /// `cert` against the CRLs `issuer` signed.
    fn revocation(&self, cert: &Cert, issuer: &Cert, now: u64) -> Result<(), Refusal> {
        let crl = self
            .crls
            .iter()
            .filter(|c| c.issuer == cert.issuer)
            .find(|c| signed(&c.tbs, &c.sig_alg, &c.signature, issuer, &self.algs))
            .ok_or("unable to get certificate CRL")?;
        if crl.this_update > now {
            return Err("CRL is not yet valid");
        }
        if crl.next_update.is_some_and(|n| n < now) {
            return Err("CRL has expired");
        }
        let serial = cert.parsed.tbs_certificate.serial_number.as_bytes();
        if crl.revoked.iter().any(|r| r.as_slice() == serial) {
            return Err("certificate revoked");
        }
        Ok(())
    }
}

/// Whether an upstream's certificate is for `name`, as nginx checks it
/// (`X509_check_host`): its DNS subjectAltNames (`*.` matching one leftmost label) or
/// IP addresses, or with no DNS name among them, its subject's commonName.
pub fn matches_host(end: &CertificateDer<'_>, name: &rustls::pki_types::ServerName<'_>) -> bool {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let Some(cert) = Cert::parse(end.as_ref()) else {
        return false;
    };
    let wanted = match name {
        rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        rustls::pki_types::ServerName::IpAddress(ip) => {
            let ip = std::net::IpAddr::from(*ip);
            let octets = match ip {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            return match cert.extension::<SubjectAltName>() {
                Some(Some(san)) => san.0.iter().any(
                    |g| matches!(g, GeneralName::IpAddress(a) if a.as_bytes() == octets.as_slice()),
                ),
                _ => false,
            };
        }
        _ => return false,
    };
    let dns_match = |pattern: &str| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(rest) => wanted
                .split_once('.')
                .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
            None => pattern == wanted,
        }
    };
    if let Some(Some(san)) = cert.extension::<SubjectAltName>() {
        let dns: Vec<&str> = san
            .0
            .iter()
            .filter_map(|g| match g {
                GeneralName::DnsName(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        if !dns.is_empty() {
            return dns.into_iter().any(dns_match);
        }
    }
    let cn = x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.parsed
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .any(|atv| {
            atv.oid == cn
                && atv
                    .value
                    .decode_as::<String>()
                    .ok()
                    .or_else(|| {
                        atv.value
                            .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                            .ok()
                            .map(|s| s.as_str().to_owned())
                    })
                    .is_some_and(|v| dns_match(&v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn algs() -> WebPkiSupportedAlgorithms {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    }

    /// A CA (with `extra` extensions) and a leaf it signed, both DER.
    fn ca_and_leaf(
        extra: Vec<rcgen::CustomExtension>,
    ) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        ca.custom_extensions = extra;
        let ca_der = ca.self_signed(&ca_key).expect("CA").der().clone();
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_der = leaf.signed_by(&key, &issuer).expect("leaf").der().clone();
        (ca_der, leaf_der)
    }

    fn check(ca: &CertificateDer<'_>) -> ChainCheck {
        ChainCheck::new(std::slice::from_ref(ca), &[], 1, Purpose::Server, algs()).expect("check")
    }

    #[test]
    fn a_leaf_of_a_trusted_ca_passes_and_one_of_another_does_not() {
        let (ca, leaf) = ca_and_leaf(Vec::new());
        assert_eq!(check(&ca).verify(&leaf, &[], UnixTime::now()), Ok(()));
        let (other_ca, _) = ca_and_leaf(Vec::new());
        assert_eq!(
            check(&other_ca).verify(&leaf, &[], UnixTime::now()),
            Err("unable to get local issuer certificate")
        );
        // Long after `not_after` (rcgen's default is 4096-01-01).
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(80_000_000_000));
        assert_eq!(
            check(&ca).verify(&leaf, &[], later),
            Err("certificate has expired")
        );
    }

    #[test]
    fn a_critical_extension_the_check_does_not_apply_refuses_the_chain() {
        // A critical name-constraints-like extension this check cannot enforce.
        let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 30], vec![0x30, 0x00]);
        ext.set_criticality(true);
        let (ca, leaf) = ca_and_leaf(vec![ext]);
        assert_eq!(
            check(&ca).verify(&leaf, &[], UnixTime::now()),
            Err("unhandled critical extension")
        );
        // The same, not critical: ignored, as OpenSSL ignores it.
        let ext = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
        let (ca, leaf) = ca_and_leaf(vec![ext]);
        assert_eq!(check(&ca).verify(&leaf, &[], UnixTime::now()), Ok(()));
    }
}
