//! Client identity and admission directives: `set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive`, `allow`, `deny`, `auth_basic`, `auth_basic_user_file`,
//! `satisfy` and the `limit_except` block, merged level over level as nginx merges
//! them (a level with any `allow`/`deny` replaces the inherited rules; `set_real_ip_from`
//! likewise; the others one by one).

use std::net::IpAddr;
use std::sync::Arc;

use super::values::{flag, templ};
use super::{once, Result, Validator};
use crate::config::admission::*;
use crate::config::directives;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::Template;

/// The admission settings of one level before merging; `None`: not set here.
#[derive(Debug, Clone, Default)]
pub(super) struct AdmissionPartial {
    real_ip_from: Option<Vec<AddrMatch>>,
    real_ip_header: Option<RealIpHeader>,
    real_ip_recursive: Option<bool>,
    rules: Option<Vec<AccessRule>>,
    /// `Some(None)` is `auth_basic off`.
    auth_basic: Option<Option<Template>>,
    auth_basic_user_file: Option<Template>,
    satisfy_any: Option<bool>,
    /// Allowed methods and the block's own settings, merged over this level's at the end.
    limit_except: Option<(Vec<String>, Box<AdmissionPartial>)>,
}

/// The methods `limit_except` knows (nginx's list).
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "MKCOL",
    "COPY",
    "MOVE",
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
];

/// What may stand inside a `limit_except` block in ferrolb.
const IN_LIMIT_EXCEPT: &[&str] = &["allow", "deny", "auth_basic", "auth_basic_user_file"];

impl AdmissionPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &AdmissionPartial) -> AdmissionPartial {
        AdmissionPartial {
            real_ip_from: self
                .real_ip_from
                .clone()
                .or_else(|| parent.real_ip_from.clone()),
            real_ip_header: self
                .real_ip_header
                .clone()
                .or_else(|| parent.real_ip_header.clone()),
            real_ip_recursive: self.real_ip_recursive.or(parent.real_ip_recursive),
            rules: self.rules.clone().or_else(|| parent.rules.clone()),
            auth_basic: self
                .auth_basic
                .clone()
                .or_else(|| parent.auth_basic.clone()),
            auth_basic_user_file: self
                .auth_basic_user_file
                .clone()
                .or_else(|| parent.auth_basic_user_file.clone()),
            satisfy_any: self.satisfy_any.or(parent.satisfy_any),
            limit_except: self
                .limit_except
                .clone()
                .or_else(|| parent.limit_except.clone()),
        }
    }

    /// Fills nginx's defaults in.
    pub(super) fn finish(&self) -> AdmissionConf {
        let auth_basic = match (&self.auth_basic, &self.auth_basic_user_file) {
            (Some(Some(realm)), Some(file)) => Some(AuthBasicConf {
                realm: realm.clone(),
                user_file: file.clone(),
            }),
            _ => None,
        };
        AdmissionConf {
            real_ip: self.real_ip_from.as_ref().map(|from| RealIpConf {
                from: from.clone(),
                header: self.real_ip_header.clone().unwrap_or(RealIpHeader::XRealIp),
                recursive: self.real_ip_recursive.unwrap_or(false),
            }),
            rules: self.rules.clone().unwrap_or_default(),
            auth_basic,
            satisfy_any: self.satisfy_any.unwrap_or(false),
            limit_except: self.limit_except.as_ref().map(|(allowed, inner)| {
                // The block is a location of its own inside this one; it has no
                // `limit_except` of its own.
                let mut inner = inner.over(self);
                inner.limit_except = None;
                Arc::new(LimitExcept {
                    allowed: allowed.clone(),
                    conf: Arc::new(inner.finish()),
                })
            }),
        }
    }
}

/// `10.0.0.0/8`, `192.0.2.1`, `::1`, `2001:db8::/32`, `unix:` and, where `all_ok`,
/// `all`. Host bits set in a CIDR are dropped with nginx's warning.
fn addr_match(d: &Directive, s: &str, all_ok: bool) -> Result<(AddrMatch, Option<String>)> {
    let invalid = || ConfigError::at(&d.span, format!("invalid parameter \"{s}\""));
    if s == "unix:" {
        return Ok((AddrMatch::Unix, None));
    }
    if all_ok && s == "all" {
        return Ok((AddrMatch::All, None));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((AddrMatch::Net(ipnet::IpNet::from(ip)), None));
    }
    let (ip, len) = s.split_once('/').ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|_| len.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(invalid)?;
    let net = ipnet::IpNet::new(ip, len).map_err(|_| invalid())?;
    let trunc = net.trunc();
    let warning = (trunc.addr() != ip).then(|| format!("low address bits of {s} are meaningless"));
    Ok((AddrMatch::Net(trunc), warning))
}

impl Validator<'_> {
    /// One admission directive of level `p`.
    pub(super) fn admission_setting(
        &mut self,
        p: &mut AdmissionPartial,
        d: &Directive,
    ) -> Result<()> {
        let a0 = d.arg(0);
        match d.name.as_str() {
            "set_real_ip_from" => {
                let (m, warning) = match a0 {
                    "all" => return Err(ConfigError::at(&d.span, "invalid parameter \"all\"")),
                    _ => addr_match(d, a0, false).map_err(|e| {
                        if a0.parse::<IpAddr>().is_err() && !a0.contains('/') && a0 != "unix:" {
                            ConfigError::hinted(
                                &d.span,
                                format!("invalid parameter \"{a0}\""),
                                "ferrolb takes addresses, CIDR blocks and \"unix:\" here, not host names",
                            )
                        } else {
                            e
                        }
                    })?,
                };
                if let Some(w) = warning {
                    self.warn(d, w);
                }
                p.real_ip_from.get_or_insert_with(Vec::new).push(m);
            }
            "real_ip_header" => {
                // nginx compares the two special names case-sensitively; any other
                // spelling names a header like any other.
                let h = match a0 {
                    "X-Real-IP" => RealIpHeader::XRealIp,
                    "X-Forwarded-For" => RealIpHeader::XForwardedFor,
                    "proxy_protocol" => RealIpHeader::ProxyProtocol,
                    other => RealIpHeader::Other(other.to_ascii_lowercase()),
                };
                once(&mut p.real_ip_header, h, d)?;
            }
            "real_ip_recursive" => once(&mut p.real_ip_recursive, flag(d)?, d)?,
            "allow" | "deny" => {
                let (who, warning) = addr_match(d, a0, true)?;
                if let Some(w) = warning {
                    self.warn(d, w);
                }
                p.rules.get_or_insert_with(Vec::new).push(AccessRule {
                    deny: d.name == "deny",
                    who,
                });
            }
            "auth_basic" => {
                let realm = (a0 != "off")
                    .then(|| templ(d, a0, &self.names))
                    .transpose()?;
                once(&mut p.auth_basic, realm, d)?;
            }
            "auth_basic_user_file" => {
                // Relative to the prefix, variables or not, as nginx's conf prefix.
                let path = if a0.starts_with('/') {
                    a0.to_owned()
                } else {
                    format!("{}/{a0}", self.env.prefix.display())
                };
                once(
                    &mut p.auth_basic_user_file,
                    templ(d, &path, &self.names)?,
                    d,
                )?;
            }
            "satisfy" => {
                let any = match a0 {
                    "all" => false,
                    "any" => true,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"satisfy\" directive, it must be \"all\" or \"any\""),
                        ))
                    }
                };
                once(&mut p.satisfy_any, any, d)?;
            }
            "limit_except" => self.limit_except(p, d)?,
            other => super::unreachable_directive(d, other)?,
        }
        Ok(())
    }

    /// `limit_except METHOD ... { allow/deny/auth_basic ... }`.
    fn limit_except(&mut self, p: &mut AdmissionPartial, d: &Directive) -> Result<()> {
        if p.limit_except.is_some() {
            return Err(super::duplicate(d));
        }
        let mut allowed = Vec::new();
        for a in &d.args {
            let m = a.value.to_ascii_uppercase();
            if !METHODS.contains(&m.as_str()) {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid method \"{}\"", a.value),
                ));
            }
            if m == "GET" {
                allowed.push("HEAD".to_owned());
            }
            allowed.push(m);
        }
        let mut inner = AdmissionPartial::default();
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::LOCATION)?.is_none() {
                continue;
            }
            if !IN_LIMIT_EXCEPT.contains(&c.name.as_str()) {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("\"{}\" inside \"limit_except\" is not supported", c.name),
                    "ferrolb takes allow, deny, auth_basic and auth_basic_user_file there",
                ));
            }
            self.admission_setting(&mut inner, c)?;
        }
        p.limit_except = Some((allowed, Box::new(inner)));
        Ok(())
    }
}
