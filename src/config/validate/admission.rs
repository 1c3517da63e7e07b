//! Client identity and admission directives: `set_real_ip_from`, `real_ip_header`,
//! `real_ip_recursive`, `allow`, `deny`, `auth_basic`, `auth_basic_user_file`,
//! `satisfy` and the `limit_except` block, merged level over level as nginx merges
//! them (a level with any `allow`/`deny` replaces the inherited rules; `set_real_ip_from`
//! likewise; the others one by one).

use std::net::IpAddr;
use std::sync::Arc;

use super::values::{flag, parse_size, templ};
use super::{once, Result, Validator};
use crate::config::admission::*;
use crate::config::directives;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::{Level, Template};

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
    limit_except: Option<(
        Vec<String>,
        Box<AdmissionPartial>,
        Option<crate::config::ProxyPass>,
    )>,
    limit_req: LimitPartial<LimitReq>,
    limit_conn: LimitPartial<LimitConn>,
}

/// `limit_req*` or `limit_conn*` of one level before merging.
#[derive(Debug, Clone)]
struct LimitPartial<T> {
    limits: Option<Vec<T>>,
    status: Option<u16>,
    log_level: Option<Level>,
    dry_run: Option<bool>,
}

impl<T> Default for LimitPartial<T> {
    fn default() -> Self {
        LimitPartial {
            limits: None,
            status: None,
            log_level: None,
            dry_run: None,
        }
    }
}

impl<T: Clone> LimitPartial<T> {
    fn over(&self, parent: &LimitPartial<T>) -> LimitPartial<T> {
        LimitPartial {
            limits: self.limits.clone().or_else(|| parent.limits.clone()),
            status: self.status.or(parent.status),
            log_level: self.log_level.or(parent.log_level),
            dry_run: self.dry_run.or(parent.dry_run),
        }
    }

    fn finish(&self) -> LimitSettings<T> {
        let d = LimitSettings::<T>::default();
        LimitSettings {
            limits: self.limits.clone().unwrap_or_default(),
            status: self.status.unwrap_or(d.status),
            log_level: self.log_level.unwrap_or(d.log_level),
            dry_run: self.dry_run.unwrap_or(d.dry_run),
        }
    }

    /// `*_status`, `*_log_level`, `*_dry_run`.
    fn option(&mut self, d: &Directive, what: &str) -> Result<()> {
        let a0 = d.arg(0);
        match what {
            "status" => {
                let code = a0
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (400..=599).contains(c) && a0.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        ConfigError::at(&d.span, format!("\"{}\" directive invalid value \"{a0}\": value must be between 400 and 599", d.name))
                    })?;
                once(&mut self.status, code, d)
            }
            "log_level" => {
                let level = match a0 {
                    "info" => Level::Info,
                    "notice" => Level::Notice,
                    "warn" => Level::Warn,
                    "error" => Level::Error,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"{}\" directive, it must be \"info\", \"notice\", \"warn\" or \"error\"", d.name),
                        ))
                    }
                };
                once(&mut self.log_level, level, d)
            }
            _ => once(&mut self.dry_run, flag(d)?, d),
        }
    }
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
            limit_req: self.limit_req.over(&parent.limit_req),
            limit_conn: self.limit_conn.over(&parent.limit_conn),
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
            limit_except: self.limit_except.as_ref().map(|(allowed, inner, pass)| {
                // The block is a location of its own inside this one; it has no
                // `limit_except` of its own.
                let mut inner = inner.over(self);
                inner.limit_except = None;
                Arc::new(LimitExcept {
                    allowed: allowed.clone(),
                    conf: Arc::new(inner.finish()),
                    pass: pass.clone(),
                })
            }),
            limit_req: self.limit_req.finish(),
            limit_conn: self.limit_conn.finish(),
        }
    }
}

/// nginx's error for a zone no `*_zone` directive declares.
fn unknown_zone(d: &Directive, name: &str, declare: &str) -> ConfigError {
    ConfigError::hinted(
        &d.span,
        format!("zero size shared memory zone \"{name}\""),
        format!("declare it at http level: {declare} KEY zone={name}:10m ..."),
    )
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
                if a0 == "all" {
                    return Err(ConfigError::at(&d.span, "invalid parameter \"all\""));
                }
                let is_name = a0.parse::<IpAddr>().is_err() && !a0.contains('/') && a0 != "unix:";
                if is_name {
                    // A host name stands for every address it has, as in nginx.
                    let addrs = self.resolve(a0, 0).ok_or_else(|| {
                        ConfigError::at(
                            &d.span,
                            format!("host not found in set_real_ip_from \"{a0}\""),
                        )
                    })?;
                    let from = p.real_ip_from.get_or_insert_with(Vec::new);
                    from.extend(
                        addrs
                            .iter()
                            .map(|a| AddrMatch::Net(ipnet::IpNet::from(a.ip()))),
                    );
                    return Ok(());
                }
                let (m, warning) = addr_match(d, a0, false)?;
                p.real_ip_from.get_or_insert_with(Vec::new).push(m);
                if let Some(w) = warning {
                    self.warn(d, w);
                }
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
            "limit_req" => {
                let limit = self.limit_req(d)?;
                let list = p.limit_req.limits.get_or_insert_with(Vec::new);
                if list.iter().any(|l| l.zone == limit.zone) {
                    return Err(super::duplicate(d));
                }
                list.push(limit);
            }
            "limit_conn" => {
                let limit = self.limit_conn(d)?;
                let list = p.limit_conn.limits.get_or_insert_with(Vec::new);
                if list.iter().any(|l| l.zone == limit.zone) {
                    return Err(super::duplicate(d));
                }
                list.push(limit);
            }
            "limit_req_status" => p.limit_req.option(d, "status")?,
            "limit_req_log_level" => p.limit_req.option(d, "log_level")?,
            "limit_req_dry_run" => p.limit_req.option(d, "dry_run")?,
            "limit_conn_status" => p.limit_conn.option(d, "status")?,
            "limit_conn_log_level" => p.limit_conn.option(d, "log_level")?,
            "limit_conn_dry_run" => p.limit_conn.option(d, "dry_run")?,
            other => super::unreachable_directive(d, other)?,
        }
        Ok(())
    }

    /// `limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m` or `limit_conn_zone KEY
    /// zone=NAME:SIZE`, at http level.
    pub(super) fn limit_zone(&mut self, d: &Directive) -> Result<()> {
        let key = templ(d, d.arg(0), &self.names)?;
        let mut zone = None;
        let mut rate = None;
        for a in &d.args[1..] {
            let v = a.value.as_str();
            if let Some(z) = v.strip_prefix("zone=") {
                let (name, size) = z.rsplit_once(':').ok_or_else(|| {
                    ConfigError::at(&d.span, format!("invalid zone size \"{v}\""))
                })?;
                let size = parse_size(size)
                    .filter(|_| !name.is_empty())
                    .ok_or_else(|| {
                        ConfigError::at(&d.span, format!("invalid zone size \"{v}\""))
                    })?;
                // nginx: at least 8 pages.
                if size < 8 * 4096 {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("zone \"{name}\" is too small"),
                    ));
                }
                zone = Some((name.to_owned(), size));
            } else if let (Some(r), "limit_req_zone") = (v.strip_prefix("rate="), d.name.as_str()) {
                let bad = || ConfigError::at(&d.span, format!("invalid rate \"{v}\""));
                let (n, scale) = match (r.strip_suffix("r/s"), r.strip_suffix("r/m")) {
                    (Some(n), _) => (n, 1),
                    (_, Some(n)) => (n, 60),
                    _ => return Err(bad()),
                };
                let n: u64 = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0 && r.as_bytes()[0].is_ascii_digit())
                    .ok_or_else(bad)?;
                rate = Some(n * 1000 / scale);
            } else if v == "sync" {
                return Err(ConfigError::hinted(
                    &d.span,
                    "\"sync\" parameter is not supported",
                    "zones are shared by every worker thread of one ferrolb; there is no cluster",
                ));
            } else {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{v}\""),
                ));
            }
        }
        let Some((name, size)) = zone else {
            return Err(ConfigError::at(
                &d.span,
                format!("\"{}\" must have \"zone\" parameter", d.name),
            ));
        };
        let taken = self.limit_req_zones.iter().any(|z| z.name == name)
            || self.limit_conn_zones.iter().any(|z| z.name == name);
        if taken {
            return Err(ConfigError::at(
                &d.span,
                format!("duplicate zone \"{name}\""),
            ));
        }
        if d.name == "limit_req_zone" {
            let Some(rate) = rate else {
                return Err(ConfigError::at(
                    &d.span,
                    "no rate is defined for limit_req_zone",
                ));
            };
            self.limit_req_zones.push(LimitReqZoneConf {
                name,
                key,
                key_text: d.arg(0).to_owned(),
                size,
                rate,
            });
        } else {
            self.limit_conn_zones.push(LimitConnZoneConf {
                name,
                key,
                key_text: d.arg(0).to_owned(),
                size,
            });
        }
        Ok(())
    }

    /// `limit_req zone=NAME [burst=N] [nodelay|delay=N]`.
    fn limit_req(&mut self, d: &Directive) -> Result<LimitReq> {
        let mut zone = None;
        let mut burst = 0u64;
        let mut delay = 0u64;
        for a in &d.args {
            let v = a.value.as_str();
            let number = |n: &str, what: &str| {
                n.parse::<u64>()
                    .ok()
                    .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        ConfigError::at(&d.span, format!("invalid {what} value \"{v}\""))
                    })
            };
            if let Some(name) = v.strip_prefix("zone=") {
                let i = self
                    .limit_req_zones
                    .iter()
                    .position(|z| z.name == name)
                    .ok_or_else(|| unknown_zone(d, name, "limit_req_zone"))?;
                zone = Some(i);
            } else if let Some(n) = v.strip_prefix("burst=") {
                burst = number(n, "burst")?.saturating_mul(1000);
            } else if let Some(n) = v.strip_prefix("delay=") {
                delay = number(n, "delay")?.saturating_mul(1000);
            } else if v == "nodelay" {
                delay = u64::MAX;
            } else {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{v}\""),
                ));
            }
        }
        let zone = zone.ok_or_else(|| {
            ConfigError::at(&d.span, "\"limit_req\" must have \"zone\" parameter")
        })?;
        Ok(LimitReq { zone, burst, delay })
    }

    /// `limit_conn NAME N`.
    fn limit_conn(&mut self, d: &Directive) -> Result<LimitConn> {
        let name = d.arg(0);
        let zone = self
            .limit_conn_zones
            .iter()
            .position(|z| z.name == name)
            .ok_or_else(|| unknown_zone(d, name, "limit_conn_zone"))?;
        let n = d.arg(1);
        let conn = n
            .parse::<u32>()
            .ok()
            .filter(|&c| c > 0 && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ConfigError::at(&d.span, format!("invalid number of connections \"{n}\""))
            })?;
        if conn > 65535 {
            return Err(ConfigError::at(
                &d.span,
                "connection limit must be less 65536",
            ));
        }
        Ok(LimitConn { zone, conn })
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
        let mut pass = None;
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::LOCATION)?.is_none() {
                continue;
            }
            if c.name == "proxy_pass" {
                // The block is a location without a pattern of its own: the URI
                // passes as it is (a URI part is refused, as nginx).
                let target = self.proxy_pass(c, super::LocationKind::Regex, "")?;
                super::once(&mut pass, target, c)?;
                continue;
            }
            if !IN_LIMIT_EXCEPT.contains(&c.name.as_str()) {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("\"{}\" inside \"limit_except\" is not supported", c.name),
                    "ferrolb takes allow, deny, auth_basic, auth_basic_user_file and proxy_pass there",
                ));
            }
            self.admission_setting(&mut inner, c)?;
        }
        p.limit_except = Some((allowed, Box::new(inner), pass));
        Ok(())
    }
}
