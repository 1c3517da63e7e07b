//! Typed settings of client identity and admission: the real client address
//! (`set_real_ip_from`, `real_ip_header`, `real_ip_recursive`), access rules
//! (`allow`, `deny`), basic authentication (`auth_basic`, `auth_basic_user_file`),
//! `satisfy` and `limit_except`, after merging as nginx merges them.

use std::net::IpAddr;
use std::sync::Arc;

use super::types::Template;

/// Who a rule or a trusted-proxy entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMatch {
    /// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.1`).
    Net(ipnet::IpNet),
    /// `unix:`: clients on a Unix socket.
    Unix,
    /// `all`: every client.
    All,
}

impl AddrMatch {
    /// True when `addr` (`None`: a Unix-socket client) is matched. An IPv4-mapped IPv6
    /// address (`::ffff:10.0.0.1`) is matched as the IPv4 address, as nginx does.
    pub fn matches(&self, addr: Option<IpAddr>) -> bool {
        match (self, addr) {
            (AddrMatch::All, _) => true,
            (AddrMatch::Unix, None) => true,
            (AddrMatch::Net(net), Some(ip)) => {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                net.contains(&ip)
            }
            _ => false,
        }
    }
}

/// Where the real client address is read from (`real_ip_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default).
    XRealIp,
    /// `X-Forwarded-For`: the right-most address, or with `real_ip_recursive on` the
    /// right-most one that is not a trusted proxy.
    XForwardedFor,
    /// `proxy_protocol`: the source address of the PROXY protocol header.
    ProxyProtocol,
    /// Any other header, its name in lower case.
    Other(String),
}

/// The `ngx_http_realip_module` settings of a level that has `set_real_ip_from`
/// (inherited from the enclosing level when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIpConf {
    /// The trusted proxies (`set_real_ip_from`), in order.
    pub from: Vec<AddrMatch>,
    /// `real_ip_header`. Default `X-Real-IP`.
    pub header: RealIpHeader,
    /// `real_ip_recursive`. Default off.
    pub recursive: bool,
}

/// One `allow` or `deny` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// `deny` rather than `allow`.
    pub deny: bool,
    /// Who it applies to.
    pub who: AddrMatch,
}

/// `auth_basic REALM` with its `auth_basic_user_file` (both needed for any check, as
/// in nginx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthBasicConf {
    /// The realm in `WWW-Authenticate: Basic realm="..."`; may hold variables.
    pub realm: Template,
    /// The htpasswd file, read at every check as nginx reads it; may hold variables.
    pub user_file: Template,
}

/// Methods a `limit_except` block lets through, and the settings every other method
/// gets.
#[derive(Debug, Clone)]
pub struct LimitExcept {
    /// Upper-case method names that are not restricted (`GET` brings `HEAD`).
    pub allowed: Vec<String>,
    /// The block's settings, over the enclosing location's.
    pub conf: Arc<AdmissionConf>,
    /// `proxy_pass` inside the block: where the methods it restricts go (the
    /// location's own content handler serves the others), as nginx.
    pub pass: Option<super::types::ProxyPass>,
}

impl LimitExcept {
    /// True when `method` is subject to the block.
    pub fn restricts(&self, method: &[u8]) -> bool {
        !self.allowed.iter().any(|m| m.as_bytes() == method)
    }
}

/// The access-phase settings of one level, merged.
#[derive(Debug, Clone, Default)]
pub struct AdmissionConf {
    /// `set_real_ip_from` and friends; `None` when no level sets a trusted proxy.
    pub real_ip: Option<RealIpConf>,
    /// `allow`/`deny` in order (a level with any replaces the inherited list).
    pub rules: Vec<AccessRule>,
    /// `auth_basic` (`None`: off, or no `auth_basic_user_file`).
    pub auth_basic: Option<AuthBasicConf>,
    /// `satisfy any` (default `all`).
    pub satisfy_any: bool,
    /// `limit_except`, inherited by nested locations.
    pub limit_except: Option<Arc<LimitExcept>>,
    /// `limit_req` and its status, log level and dry run.
    pub limit_req: LimitSettings<LimitReq>,
    /// `limit_conn` and its status, log level and dry run.
    pub limit_conn: LimitSettings<LimitConn>,
}

impl AdmissionConf {
    /// True when no access-phase check applies (the fast path skips the phase).
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.auth_basic.is_none() && self.limit_except.is_none()
    }
}

/// `limit_req_zone KEY zone=NAME:SIZE rate=RATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReqZoneConf {
    /// The zone's name.
    pub name: String,
    /// What requests are counted by; an empty value is not counted.
    pub key: Template,
    /// The key as written (for log lines).
    pub key_text: String,
    /// The zone's size in bytes: it bounds the states kept.
    pub size: u64,
    /// Requests per second times 1000 (`1r/m` is 16), nginx's unit.
    pub rate: u64,
}

/// `limit_conn_zone KEY zone=NAME:SIZE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConnZoneConf {
    /// The zone's name.
    pub name: String,
    /// What requests in progress are counted by; an empty value is not counted.
    pub key: Template,
    /// The key as written (for log lines).
    pub key_text: String,
    /// The zone's size in bytes: it bounds the keys kept.
    pub size: u64,
}

/// One `limit_req zone=NAME [burst=N] [nodelay|delay=N]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReq {
    /// Index into [`crate::config::Http::limit_req_zones`].
    pub zone: usize,
    /// `burst` times 1000. Default 0.
    pub burst: u64,
    /// `delay` times 1000: excess up to it is not delayed; `nodelay` is `u64::MAX`.
    /// Default 0.
    pub delay: u64,
}

/// One `limit_conn NAME N` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConn {
    /// Index into [`crate::config::Http::limit_conn_zones`].
    pub zone: usize,
    /// Requests in progress allowed per key.
    pub conn: u32,
}

/// The settings of `limit_req` or `limit_conn` at a level, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings<T> {
    /// The lines, in order (a level with any replaces the inherited list).
    pub limits: Vec<T>,
    /// `limit_req_status` / `limit_conn_status`. Default 503.
    pub status: u16,
    /// `limit_req_log_level` / `limit_conn_log_level`. Default `error`.
    pub log_level: super::types::Level,
    /// `limit_req_dry_run` / `limit_conn_dry_run`. Default off.
    pub dry_run: bool,
}

impl<T> Default for LimitSettings<T> {
    fn default() -> Self {
        LimitSettings {
            limits: Vec::new(),
            status: 503,
            log_level: super::types::Level::Error,
            dry_run: false,
        }
    }
}
