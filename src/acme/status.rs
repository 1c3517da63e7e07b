//! What the ACME client knows of each certificate, for `/status`, `/metrics` and the
//! dashboard.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// One managed certificate as the admin pages show it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CertificateStatus {
    /// The identifiers the certificate is for.
    pub names: Vec<String>,
    /// The `acme_issuer` name.
    pub issuer: String,
    /// `pending` (none issued yet), `valid`, or `failed` (the last attempt failed; a
    /// certificate issued before is still served while it is valid).
    pub state: &'static str,
    /// The served certificate's `notBefore`, seconds since the epoch.
    pub not_before: Option<i64>,
    /// The served certificate's `notAfter`, seconds since the epoch.
    pub not_after: Option<i64>,
    /// When the next order (first issue, renewal or retry) is due.
    pub next_attempt: Option<i64>,
    /// The last failure, with the CA's text.
    pub last_error: Option<String>,
    /// Certificates issued since the start.
    pub issued: u64,
}

fn table() -> &'static Mutex<BTreeMap<String, CertificateStatus>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, CertificateStatus>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Every managed certificate by id, in id order.
pub fn snapshot() -> Vec<(String, CertificateStatus)> {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Changes (or adds) the entry of `id`.
pub(super) fn update(id: &str, f: impl FnOnce(&mut CertificateStatus)) {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    f(t.entry(id.to_owned()).or_default());
}

/// Forgets certificates no longer configured.
pub(super) fn retain(ids: &[String]) {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| ids.contains(k));
}
