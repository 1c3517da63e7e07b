//! What nginx's `$ssl_client_*` variables say about a client certificate: subject and
//! issuer in RFC 2253 form, serial, SHA-1 fingerprint and the PEM text.

use x509_cert::der::{Decode, EncodePem};

/// The client certificate's facts, computed once after the handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// `$ssl_client_s_dn`: `CN=client,O=Org,C=US` (RFC 2253: most specific first).
    pub subject: String,
    /// `$ssl_client_i_dn`.
    pub issuer: String,
    /// `$ssl_client_serial`: upper-case hex, as OpenSSL prints it.
    pub serial: String,
    /// `$ssl_client_fingerprint`: SHA-1 of the DER, lower-case hex.
    pub fingerprint: String,
    /// `$ssl_client_raw_cert`: the PEM text.
    pub pem: String,
}

impl ClientCert {
    /// `$ssl_client_escaped_cert`: the PEM text escaped as a URI component (nginx's
    /// `NGX_ESCAPE_URI_COMPONENT`), for a header.
    pub fn escaped_pem(&self, out: &mut Vec<u8>) {
        for &b in self.pem.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
    }

    /// `$ssl_client_cert` (deprecated in nginx): the PEM text with a tab before every
    /// line but the first, so it can stand in a header.
    pub fn tabbed_pem(&self, out: &mut Vec<u8>) {
        let pem = self.pem.trim_end_matches('\n');
        for (i, line) in pem.split('\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\n\t");
            }
            out.extend_from_slice(line.as_bytes());
        }
    }
}

impl ClientCert {
    /// The facts of a DER certificate; `None` when it does not parse.
    pub fn of(der: &[u8]) -> Option<ClientCert> {
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        let tbs = &cert.tbs_certificate;
        let serial = tbs
            .serial_number
            .as_bytes()
            .iter()
            .skip_while(|&&b| b == 0)
            .map(|b| format!("{b:02X}"))
            .collect::<String>();
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        Some(ClientCert {
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            serial: if serial.is_empty() {
                "00".into()
            } else {
                serial
            },
            fingerprint: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            pem: cert
                .to_pem(x509_cert::der::pem::LineEnding::LF)
                .unwrap_or_default(),
        })
    }
}
