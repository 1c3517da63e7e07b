//! The ACME client (nginx's `ngx_http_acme_module`): obtains and renews the
//! certificates of `acme_certificate` lines, and puts them in the live slots that
//! `ssl_certificate $acme_certificate` serves, so a renewal needs no reload and drops
//! no connection.
//!
//! * [`challenge`]: HTTP-01 answers for the plain-HTTP listeners.
//! * `account`: the HTTPS client for the directory and the account.
//! * `order`: one order, from new order to certificate chain.
//! * `store`: files under `state_path` (keys 0600).
//! * [`status`]: what `/status`, `/metrics` and the dashboard show.
//!
//! Timing follows nginx's module: a certificate is renewed at two thirds of its
//! lifetime (with 2% jitter); a failed order is retried after 1 minute, then 10, then
//! 100, then daily; a reload retries a failing certificate at once. A certificate kept
//! under `state_path` is served from the start and not ordered again while it is
//! before its renewal time.
//!
//! The client runs on a thread of its own with a current-thread tokio runtime, one
//! task per certificate; it watches the live configuration for reloads.

mod account;
pub mod challenge;
mod order;
pub mod status;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::acme::{unix_now, validity, AcmeCertificate, LiveCertificate};
use crate::config::Level;

/// Why an order or the state failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server's answer (its problem document) or the HTTP exchange.
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    /// The order could not complete (a challenge failed: the CA's reasons).
    #[error("{0}")]
    Order(String),
    /// The HTTPS client could not be built.
    #[error("ACME client: {0}")]
    Client(String),
    /// Making the key or the CSR.
    #[error("certificate key: {0}")]
    Key(String),
    /// Reading or writing `state_path`.
    #[error("state: {0}")]
    State(String),
}

/// The ACME client's view of the live configuration.
pub trait AcmeSource: Send + Sync + 'static {
    /// An identity of the configuration: it changes on every reload.
    fn version(&self) -> usize;
    /// The configuration's `acme_certificate`s.
    fn certificates(&self) -> Vec<AcmeCertificate>;
}

/// Starts the ACME client thread; it ends when `stop` completes.
pub fn spawn(
    source: Arc<dyn AcmeSource>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ferrolb-acme".into())
        .spawn(move || rt.block_on(drive(source, stop)))
}

/// One certificate's task and the slot it fills (replaced on reload).
struct Managed {
    task: tokio::task::JoinHandle<()>,
    live: Arc<Mutex<LiveCertificate>>,
}

/// Looks at the configuration every 100 ms; on a change starts tasks for new
/// certificates, ends those of removed ones, and hands the new slots to the others.
async fn drive(source: Arc<dyn AcmeSource>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut current: Option<usize> = None;
    let mut managed: HashMap<String, Managed> = HashMap::new();
    let accounts = Arc::new(Accounts::default());
    loop {
        let version = source.version();
        if current != Some(version) {
            let certs = source.certificates();
            let ids: Vec<String> = certs.iter().map(AcmeCertificate::id).collect();
            managed.retain(|id, m| {
                let keep = ids.contains(id);
                if !keep {
                    m.task.abort();
                }
                keep
            });
            status::retain(&ids);
            for (cert, id) in certs.into_iter().zip(ids) {
                let failing = status::snapshot()
                    .iter()
                    .any(|(i, s)| i == &id && s.last_error.is_some());
                match managed.get_mut(&id) {
                    Some(m) if !failing => {
                        // The new configuration's slot gets what is served now.
                        let mut live = m.live.lock().unwrap_or_else(|p| p.into_inner());
                        if let (Some(ck), None) = (live.load(), cert.live.load()) {
                            cert.live.store(ck);
                        }
                        *live = cert.live.clone();
                    }
                    _ => {
                        // New, or failing: a reload may have fixed the cause, so
                        // try again now (as nginx's module does).
                        if let Some(old) = managed.remove(&id) {
                            old.task.abort();
                            if let (Some(ck), None) = (
                                old.live.lock().unwrap_or_else(|p| p.into_inner()).load(),
                                cert.live.load(),
                            ) {
                                cert.live.store(ck);
                            }
                        }
                        let live = Arc::new(Mutex::new(cert.live.clone()));
                        let task = tokio::spawn(manage(cert, live.clone(), accounts.clone()));
                        managed.insert(id, Managed { task, live });
                    }
                }
            }
            current = Some(version);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = &mut stop => break,
        }
    }
    for m in managed.into_values() {
        m.task.abort();
    }
}

/// Accounts by issuer (name and directory), registered once and shared by its
/// certificates.
#[derive(Default)]
struct Accounts(tokio::sync::Mutex<HashMap<(String, String), instant_acme::Account>>);

impl Accounts {
    async fn get(&self, cert: &AcmeCertificate) -> Result<instant_acme::Account, AcmeError> {
        let key = (cert.issuer.name.clone(), cert.issuer.uri.clone());
        let mut map = self.0.lock().await;
        if let Some(a) = map.get(&key) {
            return Ok(a.clone());
        }
        let a = account::account(&cert.issuer).await?;
        map.insert(key, a.clone());
        Ok(a)
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two
/// thirds of its lifetime, moved by up to 2% of that either way.
pub fn renewal_time(not_before: i64, not_after: i64) -> i64 {
    let two_thirds = (not_after - not_before).max(0) * 2 / 3;
    let spread = two_thirds / 50;
    let jitter = if spread > 0 {
        i64::from(rand::random::<u32>()) % (2 * spread + 1) - spread
    } else {
        0
    };
    not_before + two_thirds + jitter
}

/// How long to wait after the `fails`-th failure in a row (0-based): 1 minute, 10
/// minutes, 100 minutes, then a day, as nginx's module.
pub fn retry_delay(fails: u32) -> Duration {
    Duration::from_secs(match fails {
        0 => 60,
        1 => 600,
        2 => 6000,
        _ => 24 * 60 * 60,
    })
}

/// A certificate's life: wait until it is due (none yet, or past its renewal
/// time), order, store, serve; on failure log the CA's reason and retry later.
async fn manage(cert: AcmeCertificate, live: Arc<Mutex<LiveCertificate>>, accounts: Arc<Accounts>) {
    let id = cert.id();
    let names = cert.identifiers.join(" ");
    let issuer = cert.issuer.name.clone();
    status::update(&id, |s| {
        s.names = cert.identifiers.clone();
        s.issuer = issuer.clone();
        if s.state.is_empty() {
            s.state = "pending";
        }
    });
    let mut fails = 0u32;
    loop {
        let served = live.lock().unwrap_or_else(|p| p.into_inner()).load();
        if let Some((not_before, not_after)) = served
            .as_ref()
            .and_then(|ck| ck.end_entity_cert().ok().and_then(|c| validity(c)))
        {
            let due = renewal_time(not_before, not_after);
            status::update(&id, |s| {
                s.not_before = Some(not_before);
                s.not_after = Some(not_after);
                s.next_attempt = Some(due);
                if s.last_error.is_none() {
                    s.state = "valid";
                }
            });
            if fails == 0 {
                let wait = due - unix_now();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
                }
            }
        }
        let renewal = served.is_some();
        let result = match accounts.get(&cert).await {
            Ok(account) => order::obtain(&account, &cert).await,
            Err(e) => Err(e),
        };
        match result.and_then(|issued| install(&cert, &issued)) {
            Ok(ck) => {
                fails = 0;
                let (not_before, not_after) = ck
                    .end_entity_cert()
                    .ok()
                    .and_then(|c| validity(c))
                    .unwrap_or((0, 0));
                live.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .store(Arc::new(ck));
                status::update(&id, |s| {
                    s.state = "valid";
                    s.last_error = None;
                    s.not_before = Some(not_before);
                    s.not_after = Some(not_after);
                    s.issued += 1;
                });
                crate::log::emit(
                    Level::Notice,
                    None,
                    format_args!(
                        "acme: certificate for \"{names}\" {} by issuer \"{issuer}\", valid until {}",
                        if renewal { "renewed" } else { "issued" },
                        http_date(not_after)
                    ),
                );
            }
            Err(e) => {
                let delay = retry_delay(fails);
                fails = fails.saturating_add(1);
                let next = unix_now() + i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
                status::update(&id, |s| {
                    s.state = "failed";
                    s.last_error = Some(e.to_string());
                    s.next_attempt = Some(next);
                });
                crate::log::emit(
                    Level::Error,
                    None,
                    format_args!(
                        "acme: certificate for \"{names}\" from issuer \"{issuer}\" failed: {e}; next attempt in {}s",
                        delay.as_secs()
                    ),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Checks what the CA sent, writes it under `state_path` and makes it servable.
fn install(cert: &AcmeCertificate, issued: &order::Issued) -> Result<CertifiedKey, AcmeError> {
    let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Order(format!("the CA sent an unreadable chain: {e:?}")))?;
    if chain.is_empty() {
        return Err(AcmeError::Order("the CA sent no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| AcmeError::Key(format!("{e:?}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    // Key first: a chain on disk never names a key that is not there yet.
    if let (Some(chain_file), Some(key_file)) = (cert.chain_file(), cert.key_file()) {
        store::write_private(&key_file, issued.key_pem.as_bytes())?;
        store::write_public(&chain_file, issued.chain_pem.as_bytes())?;
    }
    Ok(CertifiedKey::new(chain, signing))
}

/// Seconds since the epoch as an HTTP date, for log lines.
fn http_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds_of_the_lifetime() {
        // 90 days: 60 days after notBefore, give or take 2% (1.2 days).
        let day = 86_400;
        for _ in 0..100 {
            let t = renewal_time(0, 90 * day);
            assert!(
                (60 * day - 6 * day / 5..=60 * day + 6 * day / 5).contains(&t),
                "{t}"
            );
        }
        assert_eq!(renewal_time(100, 100), 100);
    }

    #[test]
    fn retries_back_off_as_nginx() {
        let secs: Vec<u64> = (0..5).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(secs, [60, 600, 6000, 86_400, 86_400]);
    }
}
