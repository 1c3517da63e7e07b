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
    /// `$ssl_client_s_dn_legacy`: the subject as OpenSSL's one-line form prints it
    /// (`/C=US/O=Org/CN=client`: least specific first).
    pub subject_legacy: String,
    /// `$ssl_client_i_dn_legacy`.
    pub issuer_legacy: String,
    /// Start of validity, seconds since the epoch (`$ssl_client_v_start`).
    pub not_before: i64,
    /// End of validity, seconds since the epoch (`$ssl_client_v_end`).
    pub not_after: i64,
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
    /// `$ssl_client_v_start` / `$ssl_client_v_end`: a time as OpenSSL's
    /// `ASN1_TIME_print` writes it (`Nov  3 10:10:19 2026 GMT`).
    pub fn write_time(&self, secs: i64, out: &mut Vec<u8>) {
        if let Some(t) = chrono::DateTime::from_timestamp(secs, 0) {
            out.extend_from_slice(t.format("%b %e %H:%M:%S %Y GMT").to_string().as_bytes());
        }
    }

    /// `$ssl_client_v_remain`: whole days left until the end of validity, 0 when less
    /// than one is left (as nginx counts).
    pub fn days_remaining(&self) -> i64 {
        let now = chrono::Utc::now().timestamp();
        if self.not_after < now.saturating_add(86_400) {
            0
        } else {
            (self.not_after - now) / 86_400
        }
    }
}

/// A name in OpenSSL's one-line form: `/TYPE=value` per attribute, in the order of
/// the certificate (least specific first).
fn legacy_name(name: &x509_cert::name::Name) -> String {
    let mut out = String::new();
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            out.push('/');
            out.push_str(&atv.to_string());
        }
    }
    out
}

fn unix_secs(t: &x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
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
            subject_legacy: legacy_name(&tbs.subject),
            issuer_legacy: legacy_name(&tbs.issuer),
            not_before: unix_secs(&tbs.validity.not_before),
            not_after: unix_secs(&tbs.validity.not_after),
        })
    }
}
