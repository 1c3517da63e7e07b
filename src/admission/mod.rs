//! Who the client is and whether it may go on: the real client address behind trusted
//! proxies ([`realip`]), `allow`/`deny` ([`rules`]), basic authentication
//! ([`auth_basic`] over the hash formats of [`htpasswd`]), combined by `satisfy` and
//! `limit_except` in nginx's access phase ([`access_phase`]).
//!
//! Above `vars` (templates of realms and file names) and `net` (the client's
//! identity); below `server`, which calls in at nginx's phase points.

pub mod auth_basic;
pub mod htpasswd;
pub mod limit_conn;
pub mod limit_req;
pub mod limits;
pub mod realip;
pub mod rules;

use crate::config::{AdmissionConf, Level};
use crate::vars::RequestVars;

use auth_basic::AuthVerdict;
use rules::RuleVerdict;

pub use realip::real_client;

/// How the access phase ends for a request that may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403 Forbidden.
    Forbidden,
    /// 401 with `WWW-Authenticate: Basic realm="REALM"`.
    Unauthorized(Vec<u8>),
    /// 500: the password file could not be used.
    Failed,
}

/// nginx's access phase for a request whose location has `conf`: `limit_except` picks
/// the block's settings for a method it restricts; then `allow`/`deny` and
/// `auth_basic` run in that order. With `satisfy all` (the default) the first refusal
/// answers; with `satisfy any` one that lets the request through is enough, and
/// otherwise a 401 wins over a 403.
pub async fn access_phase(
    conf: &AdmissionConf,
    vars: &RequestVars<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
) -> Result<(), Refusal> {
    let method = &vars.buf[vars.head.method_range.clone()];
    let conf = match &conf.limit_except {
        Some(le) if le.restricts(method) => &*le.conf,
        _ => conf,
    };
    let forbidden_by_rule = |log: &mut (dyn FnMut(Level, String) + Send)| {
        log(Level::Error, "access forbidden by rule".to_owned());
        Refusal::Forbidden
    };
    let rule = rules::check(&conf.rules, vars.remote);
    if !conf.satisfy_any {
        if rule == RuleVerdict::Denied {
            return Err(forbidden_by_rule(log));
        }
        return match &conf.auth_basic {
            None => Ok(()),
            Some(auth) => match auth_basic::check(auth, vars, log).await {
                AuthVerdict::Passed => Ok(()),
                AuthVerdict::Unauthorized(realm) => Err(Refusal::Unauthorized(realm)),
                AuthVerdict::Forbidden => Err(Refusal::Forbidden),
                AuthVerdict::Failed => Err(Refusal::Failed),
            },
        };
    }
    // satisfy any
    if rule == RuleVerdict::Allowed {
        return Ok(());
    }
    let mut refusal = (rule == RuleVerdict::Denied).then_some(Refusal::Forbidden);
    if let Some(auth) = &conf.auth_basic {
        match auth_basic::check(auth, vars, log).await {
            AuthVerdict::Passed => return Ok(()),
            AuthVerdict::Unauthorized(realm) => refusal = Some(Refusal::Unauthorized(realm)),
            AuthVerdict::Forbidden => {
                if !matches!(refusal, Some(Refusal::Unauthorized(_))) {
                    refusal = Some(Refusal::Forbidden);
                }
            }
            AuthVerdict::Failed => return Err(Refusal::Failed),
        }
    }
    match refusal {
        None => Ok(()),
        Some(Refusal::Forbidden) => Err(forbidden_by_rule(log)),
        Some(r) => Err(r),
    }
}
