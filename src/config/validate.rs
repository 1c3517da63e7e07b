//! Directive tree → typed [`Config`]: checks every directive against the table in
//! [`super::directives`], parses values, resolves upstream names and merges inherited
//! settings the way nginx does (a value set at a deeper level wins; a level with any
//! `proxy_set_header`/`add_header` replaces the inherited list).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::RegexBuilder;

use super::directives::{self, did_you_mean, lookup, Kind, Lookup, Spec};
use super::error::ConfigError;
use super::parser::Directive;
use super::template;
use super::types::*;

type Result<T> = std::result::Result<T, ConfigError>;

/// What validation needs from the load options.
#[derive(Debug, Clone)]
pub struct Env {
    /// Relative paths resolve against this.
    pub prefix: PathBuf,
    /// Default listen port 80 when true, else 8000.
    pub is_root: bool,
}

/// Validates a parsed main context (`-g` directives first, then the file).
pub fn validate(directives: &[Directive], env: &Env, warnings: Vec<Warning>) -> Result<Config> {
    let mut v = Validator {
        env,
        warnings,
        upstreams: Vec::new(),
        log_formats: HashMap::new(),
        matches: HashMap::new(),
        health_checks: Vec::new(),
    };
    v.main(directives)
}

struct Validator<'a> {
    env: &'a Env,
    warnings: Vec<Warning>,
    upstreams: Vec<UpstreamConf>,
    /// `log_format`s declared so far (`combined` is built in and not listed).
    log_formats: HashMap<String, Arc<LogFormat>>,
    /// `match` blocks by name (declared anywhere at http level).
    matches: HashMap<String, Arc<MatchConf>>,
    /// `health_check` lines found in locations so far.
    health_checks: Vec<HealthCheckConf>,
}

/// Settings of one level before merging; `None` means "not set here".
#[derive(Debug, Clone, Default)]
struct Partial {
    proxy_set_header: Option<Vec<(String, Template)>>,
    proxy_http_version: Option<ProxyHttpVersion>,
    proxy_connect_timeout: Option<Duration>,
    proxy_read_timeout: Option<Duration>,
    proxy_send_timeout: Option<Duration>,
    proxy_next_upstream: Option<NextUpstream>,
    proxy_next_upstream_tries: Option<u32>,
    proxy_next_upstream_timeout: Option<Duration>,
    client_max_body_size: Option<u64>,
    client_header_timeout: Option<Duration>,
    client_body_timeout: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    keepalive_requests: Option<u32>,
    add_header: Option<Vec<AddHeader>>,
    access_log: Option<AccessLogConf>,
}

impl Partial {
    /// This level over `parent`.
    fn over(&self, parent: &Partial) -> Partial {
        macro_rules! pick {
            ($($f:ident),*) => { Partial { $($f: self.$f.clone().or_else(|| parent.$f.clone()),)* } };
        }
        pick!(
            proxy_set_header,
            proxy_http_version,
            proxy_connect_timeout,
            proxy_read_timeout,
            proxy_send_timeout,
            proxy_next_upstream,
            proxy_next_upstream_tries,
            proxy_next_upstream_timeout,
            client_max_body_size,
            client_header_timeout,
            client_body_timeout,
            keepalive_timeout,
            keepalive_requests,
            add_header,
            access_log
        )
    }

    /// Fills nginx's defaults in.
    fn finish(&self, action: Action, prefix: &Path) -> Arc<LocSettings> {
        let secs = Duration::from_secs;
        Arc::new(LocSettings {
            action,
            proxy_set_header: self.proxy_set_header.clone().unwrap_or_default(),
            proxy_http_version: self.proxy_http_version.unwrap_or_default(),
            proxy_connect_timeout: self.proxy_connect_timeout.unwrap_or(secs(60)),
            proxy_read_timeout: self.proxy_read_timeout.unwrap_or(secs(60)),
            proxy_send_timeout: self.proxy_send_timeout.unwrap_or(secs(60)),
            proxy_next_upstream: self.proxy_next_upstream.unwrap_or_default(),
            proxy_next_upstream_tries: self.proxy_next_upstream_tries.unwrap_or(0),
            proxy_next_upstream_timeout: self.proxy_next_upstream_timeout.unwrap_or(Duration::ZERO),
            client_max_body_size: self.client_max_body_size.unwrap_or(1024 * 1024),
            client_header_timeout: self.client_header_timeout.unwrap_or(secs(60)),
            client_body_timeout: self.client_body_timeout.unwrap_or(secs(60)),
            keepalive_timeout: self.keepalive_timeout.unwrap_or(secs(75)),
            keepalive_requests: self.keepalive_requests.unwrap_or(1000),
            add_header: self.add_header.clone().unwrap_or_default(),
            access_log: self
                .access_log
                .clone()
                .unwrap_or_else(|| AccessLogConf::Combined(prefix.join("logs/access.log"))),
        })
    }
}

/// Sets a single-valued directive once per level, as nginx's `is duplicate`.
fn once<T>(slot: &mut Option<T>, value: T, d: &Directive) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(d));
    }
    *slot = Some(value);
    Ok(())
}

fn duplicate(d: &Directive) -> ConfigError {
    ConfigError::at(&d.span, format!("\"{}\" directive is duplicate", d.name))
}

fn invalid_value(d: &Directive, value: &str, hint: Option<&str>) -> ConfigError {
    let msg = format!("\"{}\" directive invalid value \"{value}\"", d.name);
    match hint {
        Some(h) => ConfigError::hinted(&d.span, msg, h),
        None => ConfigError::at(&d.span, msg),
    }
}

const TIME_HINT: &str = "use a number with an optional unit ms, s, m, h, d, w, M, y (e.g. 30s or 1m30s); no unit means seconds";
const SIZE_HINT: &str = "use a number of bytes with an optional unit k, m or g (e.g. 10m)";

/// nginx's time syntax: `500ms`, `30s`, `30`, `1h30m`, `1h 30m`.
pub fn parse_time(s: &str) -> Option<Duration> {
    let mut total_ms: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                None | Some(' ') => (1000, 0),
                Some('s') => (1000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                Some('w') => (7 * 86_400_000, 1),
                Some('M') => (30 * 86_400_000, 1),
                Some('y') => (365 * 86_400_000, 1),
                Some(_) => return None,
            }
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        rest = rest[len..].trim_start();
    }
    Some(Duration::from_millis(total_ms))
}

/// nginx's size syntax: `1024`, `8k`, `10m`, `1g` (either case).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Why `host[:port]` did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPortError {
    /// Port not in 1..=65535 or not a number.
    InvalidPort,
    /// Empty host.
    NoHost,
    /// An unbracketed IPv6 address or an unclosed `[`.
    InvalidHost,
}

/// Splits `host[:port]` / `[v6][:port]`; the host comes back without brackets.
pub fn parse_host_port(s: &str) -> std::result::Result<(&str, Option<u16>), HostPortError> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']').ok_or(HostPortError::InvalidHost)?;
        let after = &r[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(HostPortError::InvalidHost)?),
        };
        (&r[..end], port)
    } else {
        match s.rfind(':') {
            Some(i) if s[..i].contains(':') => return Err(HostPortError::InvalidHost),
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).ok_or(HostPortError::InvalidPort)?),
    };
    if host.is_empty() {
        return Err(HostPortError::NoHost);
    }
    Ok((host, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

fn resolve(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    (!addrs.is_empty()).then_some(addrs)
}

fn flag(d: &Directive) -> Result<bool> {
    match d.arg(0) {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError::at(
            &d.span,
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                d.name
            ),
        )),
    }
}

fn number<T: std::str::FromStr>(d: &Directive, s: &str) -> Result<T> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::at(
            &d.span,
            format!("\"{}\" directive invalid number \"{s}\"", d.name),
        ));
    }
    s.parse().map_err(|_| {
        ConfigError::at(
            &d.span,
            format!("\"{}\" directive invalid number \"{s}\"", d.name),
        )
    })
}

fn time(d: &Directive, s: &str) -> Result<Duration> {
    parse_time(s).ok_or_else(|| invalid_value(d, s, Some(TIME_HINT)))
}

fn templ(d: &Directive, s: &str) -> Result<Template> {
    template::parse(s).map_err(|e| {
        let (msg, hint) = e.message(s);
        match hint {
            Some(h) => ConfigError::hinted(&d.span, msg, h),
            None => ConfigError::at(&d.span, msg),
        }
    })
}

/// `log_format NAME [escape=default|json|none] STRING ...;`.
fn log_format(d: &Directive) -> Result<LogFormat> {
    let name = d.arg(0).to_owned();
    let mut rest = &d.args[1..];
    let mut escape = LogEscape::Default;
    if let Some(e) = rest.first().and_then(|a| a.value.strip_prefix("escape=")) {
        escape = match e {
            "default" => LogEscape::Default,
            "json" => LogEscape::Json,
            "none" => LogEscape::None,
            other => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("unknown log format escaping \"{other}\""),
                ))
            }
        };
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(ConfigError::at(
            &d.span,
            "invalid number of arguments in \"log_format\" directive",
        ));
    }
    // nginx concatenates the strings as written, with nothing between them.
    let text: String = rest.iter().map(|a| a.value.as_str()).collect();
    let parts = templ(d, &text)?.parts;
    let uses_upstream = parts.iter().any(|p| {
        matches!(
            p,
            TemplatePart::Var(
                Var::UpstreamAddr
                    | Var::UpstreamStatus
                    | Var::UpstreamResponseTime
                    | Var::UpstreamConnectTime
                    | Var::UpstreamHeaderTime
            )
        )
    });
    Ok(LogFormat {
        name,
        escape,
        parts,
        uses_upstream,
    })
}

impl Validator<'_> {
    fn warn(&mut self, d: &Directive, message: String) {
        self.warnings.push(Warning {
            span: d.span.clone(),
            message,
        });
    }

    /// Checks name, context, block-ness and argument count. `None` for directives that
    /// are accepted and ignored (already warned about).
    fn check(&mut self, d: &Directive, ctx: u8) -> Result<Option<&'static Spec>> {
        let spec = match lookup(&d.name, ctx) {
            Lookup::Unknown => {
                let msg = format!("unknown directive \"{}\"", d.name);
                return Err(match did_you_mean(&d.name) {
                    Some(s) => ConfigError::hinted(&d.span, msg, format!("did you mean \"{s}\"?")),
                    None if d.name.contains(['{', '}', ';']) => ConfigError::hinted(
                        &d.span,
                        msg,
                        "\"{\", \"}\" and \";\" must be separated from words by spaces",
                    ),
                    None => ConfigError::at(&d.span, msg),
                });
            }
            Lookup::NotAllowedHere => {
                let allowed = directives::contexts_of(&d.name);
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("\"{}\" directive is not allowed here", d.name),
                    format!(
                        "\"{}\" belongs in: {}",
                        d.name,
                        directives::context_names(allowed)
                    ),
                ));
            }
            Lookup::Found(spec) => spec,
        };
        if let Kind::Unsupported(why) = spec.kind {
            return Err(ConfigError::at(
                &d.span,
                format!("\"{}\" directive is not supported: {why}", d.name),
            ));
        }
        if !spec.block || d.block.is_none() {
            self.missing_semicolon(d)?;
        }
        match (spec.block, &d.block) {
            (true, None) => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("directive \"{}\" has no opening \"{{\"", d.name),
                ))
            }
            (false, Some(_)) => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("directive \"{}\" is not terminated by \";\"", d.name),
                ))
            }
            _ => {}
        }
        if d.args.len() < spec.min_args || d.args.len() > spec.max_args {
            return Err(ConfigError::at(
                &d.span,
                format!("invalid number of arguments in \"{}\" directive", d.name),
            ));
        }
        if let Kind::Ignored(why) = spec.kind {
            self.warn(d, format!("\"{}\" is accepted and ignored: {why}", d.name));
            return Ok(None);
        }
        Ok(Some(spec))
    }

    /// `listen 80\n server_name x;` parses as one directive; say what really happened.
    fn missing_semicolon(&self, d: &Directive) -> Result<()> {
        let mut prev_line = d.span.line;
        for a in &d.args {
            if a.line > prev_line && !a.quoted && directives::is_known(&a.value) {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("directive \"{}\" is not terminated by \";\"", d.name),
                    format!(
                        "\"{}\" on line {} looks like the next directive; add \";\" at the end of line {prev_line}",
                        a.value, a.line
                    ),
                ));
            }
            prev_line = a.line;
        }
        Ok(())
    }

    fn main(&mut self, ds: &[Directive]) -> Result<Config> {
        let mut worker_processes = None;
        let mut worker_connections = None;
        let mut error_log: Option<ErrorLogConf> = None;
        let mut pid = None;
        let mut daemon = None;
        let mut events = None;
        let mut http = None;
        for d in ds {
            if self.check(d, directives::MAIN)?.is_none() {
                continue;
            }
            match d.name.as_str() {
                "worker_processes" => {
                    let n = match d.arg(0) {
                        "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
                        s => number::<usize>(d, s)?,
                    };
                    if n == 0 {
                        return Err(invalid_value(d, "0", None));
                    }
                    once(&mut worker_processes, n, d)?;
                }
                "events" => {
                    once(&mut events, (), d)?;
                    for e in d.block.as_deref().unwrap_or_default() {
                        if self.check(e, directives::EVENTS)?.is_none() {
                            continue;
                        }
                        // worker_connections is the only handled events directive.
                        let n: usize = number(e, e.arg(0))?;
                        if n < 2 {
                            return Err(invalid_value(
                                e,
                                e.arg(0),
                                Some("at least 2: one client and one upstream connection"),
                            ));
                        }
                        once(&mut worker_connections, n, e)?;
                    }
                }
                "error_log" => {
                    let conf = self.error_log(d)?;
                    if error_log.is_none() {
                        error_log = Some(conf);
                    } else {
                        self.warn(
                            d,
                            "only the first \"error_log\" is used; nginx would write to every one"
                                .to_owned(),
                        );
                    }
                }
                "pid" => once(&mut pid, self.env.prefix.join(d.arg(0)), d)?,
                "daemon" => once(&mut daemon, flag(d)?, d)?,
                "http" => {
                    if http.is_some() {
                        return Err(duplicate(d));
                    }
                    http = Some(self.http(d.block.as_deref().unwrap_or_default())?);
                }
                other => unreachable_directive(d, other)?,
            }
        }
        if events.is_none() {
            if let Some(first) = ds.first() {
                self.warn(
                    first,
                    "no \"events\" section in configuration; nginx refuses to start without one"
                        .to_owned(),
                );
            }
        }
        let prefix = &self.env.prefix;
        Ok(Config {
            worker_processes: worker_processes.unwrap_or(1),
            worker_connections: worker_connections.unwrap_or(512),
            error_log: error_log.unwrap_or_else(|| ErrorLogConf {
                target: LogTarget::File(prefix.join("logs/error.log")),
                level: Level::Error,
            }),
            pid: pid.unwrap_or_else(|| prefix.join("logs/nginx.pid")),
            http: http.unwrap_or_default(),
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    fn error_log(&mut self, d: &Directive) -> Result<ErrorLogConf> {
        let target = match d.arg(0) {
            "stderr" => LogTarget::Stderr,
            "/dev/null" => LogTarget::Off,
            s if s.starts_with("syslog:") || s.starts_with("memory:") => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("error log \"{s}\" is not supported: use a file or stderr"),
                ))
            }
            s => {
                if s == "off" {
                    self.warn(d, "\"error_log off\" writes to a file named \"off\", as in nginx; use /dev/null to disable the log".to_owned());
                }
                LogTarget::File(self.env.prefix.join(s))
            }
        };
        let level = match d.args.get(1).map(|a| a.value.as_str()) {
            None => Level::Error,
            Some(l) => match l {
                "emerg" => Level::Emerg,
                "alert" => Level::Alert,
                "crit" => Level::Crit,
                "error" => Level::Error,
                "warn" => Level::Warn,
                "notice" => Level::Notice,
                "info" => Level::Info,
                "debug" => Level::Debug,
                other => {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!("invalid log level \"{other}\""),
                        "levels are debug, info, notice, warn, error, crit, alert, emerg",
                    ))
                }
            },
        };
        Ok(ErrorLogConf { target, level })
    }

    fn http(&mut self, ds: &[Directive]) -> Result<Http> {
        let mut level = Partial::default();
        let mut servers = Vec::new();
        // Upstream blocks first: proxy_pass may name one declared further down, and
        // implicit groups go after all declared ones.
        for d in ds.iter().filter(|d| d.name == "upstream") {
            if self.check(d, directives::HTTP)?.is_some() {
                self.upstream(d)?;
            }
        }
        // `match` blocks too: a location's `health_check match=` may name a later one.
        for d in ds.iter().filter(|d| d.name == "match") {
            if self.check(d, directives::HTTP)?.is_some() {
                self.match_block(d)?;
            }
        }
        let mut admin = None;
        for d in ds
            .iter()
            .filter(|d| d.name != "upstream" && d.name != "match")
        {
            if self.check(d, directives::HTTP)?.is_none() {
                continue;
            }
            match d.name.as_str() {
                "server" => servers.push(d),
                "log_format" => {
                    let format = log_format(d)?;
                    if format.name == "combined" || self.log_formats.contains_key(&format.name) {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("duplicate \"log_format\" name \"{}\"", format.name),
                        ));
                    }
                    self.log_formats
                        .insert(format.name.clone(), Arc::new(format));
                }
                "error_log" => self.warn(d, "\"error_log\" is only used at main level".to_owned()),
                "ferrolb_admin" => once(&mut admin, admin_conf(d)?, d)?,
                _ => self.setting(&mut level, d)?,
            }
        }
        let servers = servers
            .into_iter()
            .map(|d| self.server(d, &level))
            .collect::<Result<Vec<_>>>()?;
        self.conflicting_names(&servers);
        let mut defaults: HashMap<SocketAddr, ()> = HashMap::new();
        for s in &servers {
            for l in s.listen.iter().filter(|l| l.default_server) {
                if defaults.insert(l.addr, ()).is_some() {
                    return Err(ConfigError::at(
                        &l.span,
                        format!("a duplicate default server for {}", l.addr),
                    ));
                }
            }
        }
        Ok(Http {
            upstreams: std::mem::take(&mut self.upstreams),
            servers,
            health_checks: std::mem::take(&mut self.health_checks),
            admin,
        })
    }

    /// nginx warns when two servers on one address share a name; the first one wins.
    fn conflicting_names(&mut self, servers: &[ServerConf]) {
        let mut seen = HashSet::new();
        for s in servers {
            for l in &s.listen {
                for n in &s.server_names {
                    let key = match n {
                        ServerName::Exact(e) => e.clone(),
                        ServerName::WildcardStart {
                            suffix,
                            matches_bare: true,
                        } => suffix.clone(),
                        ServerName::WildcardStart { suffix, .. } => format!("*{suffix}"),
                        ServerName::WildcardEnd(p) => format!("{p}*"),
                        ServerName::Regex(_) => continue,
                    };
                    if !seen.insert((l.addr, key.clone())) {
                        self.warnings.push(Warning {
                            span: s.span.clone(),
                            message: format!(
                                "conflicting server name \"{key}\" on {}, ignored",
                                l.addr
                            ),
                        });
                    }
                }
            }
        }
    }

    /// Settings valid at http, server and location level.
    fn setting(&mut self, p: &mut Partial, d: &Directive) -> Result<()> {
        let a0 = d.arg(0);
        match d.name.as_str() {
            "proxy_set_header" => {
                let value = templ(d, d.arg(1))?;
                p.proxy_set_header
                    .get_or_insert_with(Vec::new)
                    .push((a0.to_owned(), value));
            }
            "add_header" => {
                let always = match d.args.get(2).map(|a| a.value.as_str()) {
                    None => false,
                    Some("always") => true,
                    Some(other) => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid parameter \"{other}\""),
                        ))
                    }
                };
                let value = templ(d, d.arg(1))?;
                p.add_header.get_or_insert_with(Vec::new).push(AddHeader {
                    name: a0.to_owned(),
                    value,
                    always,
                });
            }
            "proxy_http_version" => {
                let v = match a0 {
                    "1.0" => ProxyHttpVersion::Http10,
                    "1.1" => ProxyHttpVersion::Http11,
                    other => {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{other}\" in \"proxy_http_version\" directive, it must be \"1.0\" or \"1.1\""),
                        ))
                    }
                };
                once(&mut p.proxy_http_version, v, d)?;
            }
            "proxy_connect_timeout" => once(&mut p.proxy_connect_timeout, time(d, a0)?, d)?,
            "proxy_read_timeout" => once(&mut p.proxy_read_timeout, time(d, a0)?, d)?,
            "proxy_send_timeout" => once(&mut p.proxy_send_timeout, time(d, a0)?, d)?,
            "proxy_next_upstream_timeout" => {
                once(&mut p.proxy_next_upstream_timeout, time(d, a0)?, d)?
            }
            "client_header_timeout" => once(&mut p.client_header_timeout, time(d, a0)?, d)?,
            "client_body_timeout" => once(&mut p.client_body_timeout, time(d, a0)?, d)?,
            "proxy_next_upstream_tries" => {
                once(&mut p.proxy_next_upstream_tries, number(d, a0)?, d)?
            }
            "keepalive_requests" => once(&mut p.keepalive_requests, number(d, a0)?, d)?,
            "client_max_body_size" => {
                let n = parse_size(a0).ok_or_else(|| invalid_value(d, a0, Some(SIZE_HINT)))?;
                once(&mut p.client_max_body_size, n, d)?;
            }
            "keepalive_timeout" => {
                once(&mut p.keepalive_timeout, time(d, a0)?, d)?;
                if d.args.len() > 1 {
                    time(d, d.arg(1))?;
                    self.warn(
                        d,
                        "the second \"keepalive_timeout\" value (the Keep-Alive header) is ignored"
                            .to_owned(),
                    );
                }
            }
            "proxy_next_upstream" => once(&mut p.proxy_next_upstream, next_upstream(d)?, d)?,
            "access_log" => {
                let conf = self.access_log(d)?;
                if p.access_log.is_some() {
                    self.warn(d, "only the first \"access_log\" of a level is used; nginx would write to every one".to_owned());
                } else {
                    p.access_log = Some(conf);
                }
            }
            other => unreachable_directive(d, other)?,
        }
        Ok(())
    }

    fn access_log(&mut self, d: &Directive) -> Result<AccessLogConf> {
        let path = d.arg(0);
        if path == "off" {
            if d.args.len() > 1 {
                return Err(ConfigError::at(
                    &d.span,
                    "invalid number of arguments in \"access_log\" directive",
                ));
            }
            return Ok(AccessLogConf::Off);
        }
        if path.starts_with("syslog:") {
            return Err(ConfigError::at(
                &d.span,
                "syslog access logs are not supported: use a file",
            ));
        }
        if path.contains('$') {
            return Err(ConfigError::at(
                &d.span,
                "variables in \"access_log\" paths are not supported",
            ));
        }
        let format = match d.args.get(1).map(|a| a.value.as_str()) {
            None | Some("combined") => None,
            Some(name) => match self.log_formats.get(name) {
                Some(f) => Some(Arc::clone(f)),
                None => {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!("unknown log format \"{name}\""),
                        "declare it with \"log_format\" before this line, or use \"combined\"",
                    ))
                }
            },
        };
        if d.args.len() > 2 {
            self.warn(d, "\"access_log\" parameters after the format (buffer=, flush=, gzip, if=) are ignored".to_owned());
        }
        if path == "/dev/null" {
            return Ok(AccessLogConf::Off);
        }
        let path = self.env.prefix.join(path);
        Ok(match format {
            None => AccessLogConf::Combined(path),
            Some(format) => AccessLogConf::Format { path, format },
        })
    }

    fn upstream(&mut self, d: &Directive) -> Result<()> {
        let name = d.arg(0);
        if self
            .upstreams
            .iter()
            .any(|u| u.name.eq_ignore_ascii_case(name))
        {
            return Err(ConfigError::at(
                &d.span,
                format!("duplicate upstream \"{name}\""),
            ));
        }
        let mut peers = Vec::new();
        let mut keepalive = None;
        let mut keepalive_timeout = None;
        let mut keepalive_requests = None;
        let mut method = None;
        let mut sticky = None;
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::UPSTREAM)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "server" => peers.extend(self.peer(c)?),
                "keepalive" => {
                    let n: usize = number(c, c.arg(0))?;
                    if n == 0 {
                        return Err(invalid_value(c, "0", None));
                    }
                    once(&mut keepalive, n, c)?;
                }
                "keepalive_timeout" => once(&mut keepalive_timeout, time(c, c.arg(0))?, c)?,
                "keepalive_requests" => once(&mut keepalive_requests, number(c, c.arg(0))?, c)?,
                "least_conn" | "ip_hash" | "hash" | "random" | "least_time" => {
                    if method.is_some() {
                        self.warn(c, "load balancing method redefined".to_owned());
                    }
                    method = Some(balance_method(c)?);
                }
                "sticky" => once(&mut sticky, sticky_conf(c)?, c)?,
                other => unreachable_directive(c, other)?,
            }
        }
        if peers.is_empty() {
            return Err(ConfigError::at(&d.span, "no servers are inside upstream"));
        }
        let method = method.unwrap_or_default();
        // nginx rejects `backup` once one of these methods is set; here the order of
        // the lines does not matter, so a backup that nginx would silently never use
        // is an error too.
        if let Some(b) = peers.iter().find(|p| p.backup && !method.allows_backup()) {
            return Err(ConfigError::hinted(
                &b.span,
                "balancing method does not support parameter \"backup\"",
                format!(
                    "\"{}\" never uses backup servers; remove \"backup\" or the method",
                    method.directive()
                ),
            ));
        }
        self.upstreams.push(UpstreamConf {
            name: name.to_owned(),
            span: d.span.clone(),
            implicit: false,
            method,
            sticky,
            peers,
            keepalive,
            keepalive_timeout: keepalive_timeout.unwrap_or(Duration::from_secs(60)),
            keepalive_requests: keepalive_requests.unwrap_or(1000),
        });
        Ok(())
    }

    fn peer(&mut self, c: &Directive) -> Result<Vec<PeerConf>> {
        let addr = c.arg(0);
        let mut weight = 1;
        let mut max_fails = 1;
        let mut fail_timeout = Duration::from_secs(10);
        let mut backup = false;
        let mut down = false;
        let mut max_conns = 0;
        let mut slow_start = Duration::ZERO;
        for a in &c.args[1..] {
            let p = a.value.as_str();
            let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
            let num = |v: &str| -> Result<u32> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                v.parse().map_err(|_| bad())
            };
            if let Some(v) = p.strip_prefix("weight=") {
                weight = num(v)?;
                if weight == 0 {
                    return Err(bad());
                }
            } else if let Some(v) = p.strip_prefix("max_fails=") {
                max_fails = num(v)?;
            } else if let Some(v) = p.strip_prefix("fail_timeout=") {
                fail_timeout = parse_time(v).ok_or_else(bad)?;
            } else if let Some(v) = p.strip_prefix("max_conns=") {
                max_conns = num(v)?;
            } else if let Some(v) = p.strip_prefix("slow_start=") {
                slow_start = parse_time(v).ok_or_else(bad)?;
            } else if p == "backup" {
                backup = true;
            } else if p == "down" {
                down = true;
            } else {
                return Err(bad());
            }
        }
        if addr.starts_with("unix:") {
            return Err(ConfigError::at(
                &c.span,
                format!("unix socket upstream \"{addr}\" is not supported"),
            ));
        }
        let addrs = self.resolve_upstream(c, addr)?;
        Ok(addrs
            .into_iter()
            .map(|sa| PeerConf {
                name: addr.to_owned(),
                addr: sa,
                weight,
                max_fails,
                fail_timeout,
                backup,
                down,
                max_conns,
                slow_start,
                span: c.span.clone(),
            })
            .collect())
    }

    fn resolve_upstream(&mut self, d: &Directive, addr: &str) -> Result<Vec<SocketAddr>> {
        let (host, port) = parse_host_port(addr).map_err(|e| {
            ConfigError::at(
                &d.span,
                match e {
                    HostPortError::InvalidPort => format!("invalid port in upstream \"{addr}\""),
                    HostPortError::NoHost => format!("no host in upstream \"{addr}\""),
                    HostPortError::InvalidHost => format!("invalid host in upstream \"{addr}\""),
                },
            )
        })?;
        resolve(host, port.unwrap_or(80)).ok_or_else(|| {
            ConfigError::at(&d.span, format!("host not found in upstream \"{addr}\""))
        })
    }

    fn server(&mut self, d: &Directive, http: &Partial) -> Result<ServerConf> {
        let mut p = Partial::default();
        let mut listen: Vec<Listen> = Vec::new();
        let mut names = Vec::new();
        let mut primary_name = None;
        let mut ret = None;
        let mut loc_ds = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::SERVER)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "listen" => {
                    for l in self.listen(c)? {
                        if listen.iter().any(|x| x.addr == l.addr) {
                            return Err(ConfigError::at(
                                &c.span,
                                format!("a duplicate listen {}", l.addr),
                            ));
                        }
                        listen.push(l);
                    }
                }
                "server_name" => {
                    for a in &c.args {
                        primary_name.get_or_insert_with(|| a.value.clone());
                        names.push(server_name(c, &a.value)?);
                    }
                }
                "location" => loc_ds.push(c),
                "return" => once(&mut ret, ret_action(c)?, c)?,
                "error_log" => self.warn(c, "\"error_log\" is only used at main level".to_owned()),
                _ => self.setting(&mut p, c)?,
            }
        }
        let merged = p.over(http);
        if listen.is_empty() {
            let port = if self.env.is_root { 80 } else { 8000 };
            listen.push(Listen {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                default_server: false,
                span: d.span.clone(),
            });
        }
        if names.is_empty() {
            names.push(ServerName::Exact(String::new()));
        }
        // A server-level `return` runs in nginx's server-rewrite phase, before any
        // location is looked up, so it is every location's action too.
        let locations = self.locations(&loc_ds, &merged, None, ret.as_ref())?;
        Ok(ServerConf {
            listen,
            server_names: names,
            primary_name: primary_name.unwrap_or_default(),
            locations,
            settings: merged.finish(ret.unwrap_or(Action::NotFound), &self.env.prefix),
            span: d.span.clone(),
        })
    }

    fn listen(&mut self, c: &Directive) -> Result<Vec<Listen>> {
        let a = c.arg(0);
        let mut default_server = false;
        for p in &c.args[1..] {
            let p = p.value.as_str();
            let name = p.split('=').next().unwrap_or(p);
            match name {
                "default_server" | "default" => default_server = true,
                "ssl" | "quic" => {
                    return Err(ConfigError::at(&c.span, format!("\"{p}\" parameter of \"listen\" is not supported yet: TLS is not supported yet")))
                }
                "proxy_protocol" => {
                    return Err(ConfigError::at(&c.span, "\"proxy_protocol\" parameter of \"listen\" is not supported"))
                }
                "backlog" | "rcvbuf" | "sndbuf" => {
                    let v = p.split_once('=').map(|x| x.1).unwrap_or("");
                    if (name == "backlog" && !v.bytes().all(|b| b.is_ascii_digit() || b == b'-')) || (name != "backlog" && parse_size(v).is_none()) || v.is_empty() {
                        return Err(ConfigError::at(&c.span, format!("invalid {name} \"{v}\"")));
                    }
                    self.warn(c, format!("\"listen\" parameter \"{p}\" is accepted and ignored"));
                }
                "reuseport" | "deferred" | "bind" | "ipv6only" | "so_keepalive" | "fastopen" | "accept_filter" | "setfib" | "http2" => {
                    self.warn(c, format!("\"listen\" parameter \"{p}\" is accepted and ignored"));
                }
                _ => return Err(ConfigError::at(&c.span, format!("invalid parameter \"{p}\""))),
            }
        }
        if a.starts_with("unix:") {
            return Err(ConfigError::at(
                &c.span,
                format!("unix socket listen \"{a}\" is not supported"),
            ));
        }
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let invalid_port = || {
            ConfigError::at(
                &c.span,
                format!("invalid port in \"{a}\" of the \"listen\" directive"),
            )
        };
        let addrs = if a.bytes().all(|b| b.is_ascii_digit()) {
            vec![SocketAddr::new(
                any4,
                parse_port(a).ok_or_else(invalid_port)?,
            )]
        } else {
            let (host, port) = parse_host_port(a).map_err(|e| match e {
                HostPortError::InvalidPort => invalid_port(),
                _ => ConfigError::at(
                    &c.span,
                    format!("invalid host in \"{a}\" of the \"listen\" directive"),
                ),
            })?;
            let port = port.unwrap_or(80);
            if host == "*" {
                vec![SocketAddr::new(any4, port)]
            } else {
                resolve(host, port).ok_or_else(|| {
                    ConfigError::at(
                        &c.span,
                        format!("host not found in \"{a}\" of the \"listen\" directive"),
                    )
                })?
            }
        };
        Ok(addrs
            .into_iter()
            .map(|addr| Listen {
                addr,
                default_server,
                span: c.span.clone(),
            })
            .collect())
    }

    fn locations(
        &mut self,
        ds: &[&Directive],
        parent: &Partial,
        enclosing: Option<(LocationKind, &str)>,
        forced: Option<&Action>,
    ) -> Result<Vec<Location>> {
        let mut out: Vec<Location> = Vec::new();
        for d in ds {
            let loc = self.location(d, parent, enclosing, forced)?;
            let clash = out.iter().any(|o| {
                o.pattern == loc.pattern
                    && match (o.kind, loc.kind) {
                        (LocationKind::Exact, LocationKind::Exact) => true,
                        (a, b) => is_prefix(a) && is_prefix(b),
                    }
            });
            if clash {
                return Err(ConfigError::at(
                    &d.span,
                    format!("duplicate location \"{}\"", loc.pattern),
                ));
            }
            out.push(loc);
        }
        Ok(out)
    }

    fn location(
        &mut self,
        d: &Directive,
        parent: &Partial,
        enclosing: Option<(LocationKind, &str)>,
        forced: Option<&Action>,
    ) -> Result<Location> {
        let (kind, pattern) = location_pattern(d)?;
        if pattern.starts_with('@') {
            return Err(ConfigError::at(
                &d.span,
                format!("named location \"{pattern}\" is not supported"),
            ));
        }
        if let Some((pkind, ppat)) = enclosing {
            if pkind == LocationKind::Exact {
                return Err(ConfigError::at(
                    &d.span,
                    format!(
                        "location \"{pattern}\" cannot be inside the exact location \"{ppat}\""
                    ),
                ));
            }
            if !is_regex(kind) && !pattern.starts_with(ppat) {
                return Err(ConfigError::at(
                    &d.span,
                    format!("location \"{pattern}\" is outside location \"{ppat}\""),
                ));
            }
        }
        let regex = if is_regex(kind) {
            Some(
                RegexBuilder::new(&pattern)
                    .case_insensitive(kind == LocationKind::RegexCaseless)
                    .build()
                    .map_err(|e| {
                        ConfigError::at(&d.span, format!("invalid regex \"{pattern}\": {e}"))
                    })?,
            )
        } else {
            None
        };
        let mut p = Partial::default();
        let mut proxy = None;
        let mut ret = None;
        let mut nested = Vec::new();
        let mut checks = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::LOCATION)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "location" => nested.push(c),
                "health_check" => checks.push(c),
                "proxy_pass" => once(&mut proxy, self.proxy_pass(c, kind, &pattern)?, c)?,
                "return" => once(&mut ret, ret_action(c)?, c)?,
                "error_log" => self.warn(c, "\"error_log\" is only used at main level".to_owned()),
                _ => self.setting(&mut p, c)?,
            }
        }
        let merged = p.over(parent);
        let locations = self.locations(&nested, &merged, Some((kind, &pattern)), forced)?;
        // `return` runs in the rewrite phase, before the proxy content handler.
        let action = match (forced, ret, proxy) {
            (Some(f), _, _) => f.clone(),
            (None, Some(r), _) => r,
            (None, None, Some(pp)) => Action::Proxy(pp),
            (None, None, None) => Action::NotFound,
        };
        for c in checks {
            let Action::Proxy(pp) = &action else {
                return Err(ConfigError::hinted(
                    &c.span,
                    "\"health_check\" needs a \"proxy_pass\" in the same location",
                    "put it in the location that proxies to the upstream to check",
                ));
            };
            let hc = self.health_check(c, pp)?;
            self.health_checks.push(hc);
        }
        Ok(Location {
            kind,
            pattern,
            regex,
            locations,
            settings: merged.finish(action, &self.env.prefix),
            span: d.span.clone(),
        })
    }

    /// A `match NAME { }` block.
    fn match_block(&mut self, d: &Directive) -> Result<()> {
        let name = d.arg(0).to_owned();
        let mut conditions = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if c.block.is_some() {
                return Err(ConfigError::at(
                    &c.span,
                    format!("directive \"{}\" is not terminated by \";\"", c.name),
                ));
            }
            conditions.push(match c.name.as_str() {
                "status" => match_status(c)?,
                "header" => match_header(c)?,
                "body" => match_body(c)?,
                other => {
                    return Err(ConfigError::hinted(
                        &c.span,
                        format!("unknown directive \"{other}\" in \"match\""),
                        "a match block takes \"status\", \"header\" and \"body\" lines",
                    ))
                }
            });
        }
        let m = Arc::new(MatchConf {
            name: name.clone(),
            conditions,
        });
        if self.matches.insert(name.clone(), m).is_some() {
            return Err(ConfigError::at(
                &d.span,
                format!("duplicate match \"{name}\""),
            ));
        }
        Ok(())
    }

    /// `health_check [interval=5s] [jitter=0] [fails=1] [passes=1] [uri=/] [port=N]
    /// [match=NAME] [timeout=5s] [mandatory]` in a location proxying with `pp`.
    fn health_check(&mut self, c: &Directive, pp: &ProxyPass) -> Result<HealthCheckConf> {
        let mut hc = HealthCheckConf {
            upstream: pp.upstream,
            interval: Duration::from_secs(5),
            jitter: Duration::ZERO,
            fails: 1,
            passes: 1,
            uri: "/".to_owned(),
            port: None,
            matcher: None,
            timeout: Duration::from_secs(5),
            mandatory: false,
            host: pp.proxy_host.clone(),
            span: c.span.clone(),
        };
        for a in &c.args {
            let p = a.value.as_str();
            let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
            let count = |v: &str| -> Result<u32> {
                v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(bad)
            };
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key {
                "interval" => {
                    hc.interval = parse_time(value).filter(|d| !d.is_zero()).ok_or_else(bad)?
                }
                "jitter" => hc.jitter = parse_time(value).ok_or_else(bad)?,
                "timeout" => {
                    hc.timeout = parse_time(value).filter(|d| !d.is_zero()).ok_or_else(bad)?
                }
                "fails" => hc.fails = count(value)?,
                "passes" => hc.passes = count(value)?,
                "uri" if value.starts_with('/') => hc.uri = value.to_owned(),
                "port" => hc.port = Some(parse_port(value).ok_or_else(bad)?),
                "match" => {
                    hc.matcher = Some(self.matches.get(value).cloned().ok_or_else(|| {
                        ConfigError::hinted(
                            &c.span,
                            format!("match \"{value}\" not found"),
                            "declare it with \"match NAME { ... }\" in the http block",
                        )
                    })?)
                }
                "mandatory" if value.is_empty() => hc.mandatory = true,
                "persistent" if value.is_empty() => {}
                _ => return Err(bad()),
            }
        }
        Ok(hc)
    }

    fn proxy_pass(
        &mut self,
        d: &Directive,
        kind: LocationKind,
        pattern: &str,
    ) -> Result<ProxyPass> {
        let url = d.arg(0);
        if url.contains('$') {
            return Err(ConfigError::at(
                &d.span,
                "variables in \"proxy_pass\" are not supported yet",
            ));
        }
        let lower = url.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &url[7..]
        } else if lower.starts_with("https://") {
            return Err(ConfigError::at(
                &d.span,
                "https upstreams are not supported yet",
            ));
        } else {
            return Err(ConfigError::hinted(
                &d.span,
                format!("invalid URL prefix in \"{url}\""),
                "proxy_pass takes http://host[:port][/uri]",
            ));
        };
        let (hostport, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        if uri.is_some() && is_regex(kind) {
            return Err(ConfigError::at(
                &d.span,
                "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
            ));
        }
        let (host, port) = parse_host_port(hostport).map_err(|e| {
            ConfigError::at(
                &d.span,
                match e {
                    HostPortError::InvalidPort => {
                        format!("invalid port in upstream \"{hostport}\"")
                    }
                    HostPortError::NoHost => format!("no host in upstream \"{hostport}\""),
                    HostPortError::InvalidHost => {
                        format!("invalid host in upstream \"{hostport}\"")
                    }
                },
            )
        })?;
        let declared = self
            .upstreams
            .iter()
            .position(|u| !u.implicit && u.name.eq_ignore_ascii_case(host));
        let upstream = match (declared, port) {
            (Some(_), Some(port)) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("upstream \"{host}\" may not have port {port}"),
                    format!(
                    "ports go on the \"server\" lines of upstream \"{host}\"; write http://{host}"
                ),
                ))
            }
            (Some(i), None) => i,
            (None, port) => {
                let port = port.unwrap_or(80);
                let name = if host.contains(':') {
                    format!("[{}]:{port}", host.to_ascii_lowercase())
                } else {
                    format!("{}:{port}", host.to_ascii_lowercase())
                };
                match self
                    .upstreams
                    .iter()
                    .position(|u| u.implicit && u.name == name)
                {
                    Some(i) => i,
                    None => {
                        let addrs = resolve(host, port).ok_or_else(|| {
                            ConfigError::at(
                                &d.span,
                                format!("host not found in upstream \"{hostport}\""),
                            )
                        })?;
                        let peers = addrs
                            .into_iter()
                            .map(|addr| PeerConf::new(hostport.to_owned(), addr, d.span.clone()))
                            .collect();
                        self.upstreams.push(UpstreamConf {
                            name,
                            span: d.span.clone(),
                            implicit: true,
                            method: BalanceMethod::RoundRobin,
                            sticky: None,
                            peers,
                            keepalive: None,
                            keepalive_timeout: Duration::from_secs(60),
                            keepalive_requests: 1000,
                        });
                        self.upstreams.len() - 1
                    }
                }
            }
        };
        Ok(ProxyPass {
            upstream,
            scheme: "http".to_owned(),
            proxy_host: hostport.to_owned(),
            uri,
            location_prefix: (!is_regex(kind)).then(|| pattern.to_owned()),
        })
    }
}

/// `ferrolb_admin ADDR [token=SECRET]`.
fn admin_conf(d: &Directive) -> Result<AdminConf> {
    let addr: SocketAddr = d.arg(0).parse().map_err(|_| {
        invalid_value(
            d,
            d.arg(0),
            Some("use an IP address and port, e.g. 127.0.0.1:9090"),
        )
    })?;
    let token = match d.args.get(1).map(|a| a.value.as_str()) {
        None => None,
        Some(t) => match t.strip_prefix("token=") {
            Some(v) if !v.is_empty() => Some(v.to_owned()),
            _ => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{t}\""),
                ))
            }
        },
    };
    Ok(AdminConf {
        addr,
        token,
        span: d.span.clone(),
    })
}

/// `status [!] CODE|FROM-TO ...` in a `match` block.
fn match_status(c: &Directive) -> Result<MatchCond> {
    let mut args = c.args.iter().map(|a| a.value.as_str()).peekable();
    let negate = args.next_if_eq(&"!").is_some();
    let bad = |v: &str| ConfigError::at(&c.span, format!("invalid status \"{v}\" in \"match\""));
    let code = |v: &str| -> Result<u16> {
        v.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| bad(v))
    };
    let mut ranges = Vec::new();
    for v in args {
        let r = match v.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(v)?, code(v)?),
        };
        if r.0 > r.1 {
            return Err(bad(v));
        }
        ranges.push(r);
    }
    if ranges.is_empty() {
        return Err(ConfigError::at(
            &c.span,
            "invalid number of arguments in \"status\" directive",
        ));
    }
    Ok(MatchCond::Status { negate, ranges })
}

/// `header [!] Name [= v | != v | ~ re | !~ re]` in a `match` block.
fn match_header(c: &Directive) -> Result<MatchCond> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let re = |v: &str| {
        regex::Regex::new(v)
            .map_err(|e| ConfigError::at(&c.span, format!("invalid regex \"{v}\": {e}")))
    };
    let (name, test, negate) = match args.as_slice() {
        ["!", name] => (*name, HeaderTest::Present, true),
        [name] => (*name, HeaderTest::Present, false),
        [name, "=", v] => (*name, HeaderTest::Equals((*v).to_owned()), false),
        [name, "!=", v] => (*name, HeaderTest::Equals((*v).to_owned()), true),
        [name, "~", v] => (*name, HeaderTest::Matches(re(v)?), false),
        [name, "!~", v] => (*name, HeaderTest::Matches(re(v)?), true),
        _ => {
            return Err(ConfigError::hinted(
                &c.span,
                "invalid \"header\" condition in \"match\"",
                "use: header Name; header ! Name; header Name = value; header Name ~ regex (or != / !~)",
            ))
        }
    };
    Ok(MatchCond::Header {
        name: name.to_owned(),
        test,
        negate,
    })
}

/// `body ~ re` / `body !~ re` in a `match` block.
fn match_body(c: &Directive) -> Result<MatchCond> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let (negate, pattern) = match args.as_slice() {
        ["~", p] => (false, *p),
        ["!~", p] => (true, *p),
        _ => {
            return Err(ConfigError::hinted(
                &c.span,
                "invalid \"body\" condition in \"match\"",
                "use: body ~ \"regex\"; or body !~ \"regex\";",
            ))
        }
    };
    let regex = regex::Regex::new(pattern)
        .map_err(|e| ConfigError::at(&c.span, format!("invalid regex \"{pattern}\": {e}")))?;
    Ok(MatchCond::Body { negate, regex })
}

/// Directives the table routes to a context whose handler has no arm for them would be
/// a bug in the table; report it as an error rather than panic.
/// One balancing method directive (`least_conn`, `ip_hash`, `hash`, `random`,
/// `least_time`); the argument count is already checked.
fn balance_method(c: &Directive) -> Result<BalanceMethod> {
    let bad = |a: &str| ConfigError::at(&c.span, format!("invalid parameter \"{a}\""));
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    Ok(match (c.name.as_str(), args.as_slice()) {
        ("least_conn", _) => BalanceMethod::LeastConn,
        ("ip_hash", _) => BalanceMethod::IpHash,
        ("hash", [key, rest @ ..]) => {
            if key.is_empty() {
                return Err(ConfigError::at(&c.span, "empty key in \"hash\""));
            }
            let consistent = match rest {
                [] => false,
                ["consistent"] => true,
                [other, ..] => return Err(bad(other)),
            };
            BalanceMethod::Hash {
                key: templ(c, key)?,
                consistent,
            }
        }
        ("random", []) => BalanceMethod::Random { two: false },
        ("random", ["two"] | ["two", "least_conn"]) => BalanceMethod::Random { two: true },
        ("random", ["two", other, ..] | [other, ..]) => {
            let hint = if *other == "least_time=header" || *other == "least_time=last_byte" {
                "\"random two least_time=\" is nginx Plus; use \"least_time\" or \"random two\""
            } else {
                "use \"random\", \"random two\" or \"random two least_conn\""
            };
            return Err(ConfigError::hinted(
                &c.span,
                format!("invalid parameter \"{other}\""),
                hint,
            ));
        }
        ("least_time", [point, rest @ ..]) => {
            let point = match *point {
                "header" => LatencyPoint::Header,
                "last_byte" => LatencyPoint::LastByte,
                other => {
                    return Err(ConfigError::hinted(
                        &c.span,
                        format!("invalid parameter \"{other}\""),
                        "use \"header\" or \"last_byte\"",
                    ))
                }
            };
            let mut inflight = false;
            let mut decay = None;
            for a in rest {
                if *a == "inflight" && !inflight {
                    inflight = true;
                } else if let Some(v) = a.strip_prefix("decay=").filter(|_| decay.is_none()) {
                    let t = parse_time(v)
                        .filter(|t| !t.is_zero())
                        .ok_or_else(|| invalid_value(c, a, Some(TIME_HINT)))?;
                    decay = Some(t);
                } else {
                    return Err(bad(a));
                }
            }
            BalanceMethod::LeastTime {
                point,
                inflight,
                decay: decay.unwrap_or(Duration::from_secs(10)),
            }
        }
        (_, _) => {
            return Err(ConfigError::at(
                &c.span,
                format!("invalid number of arguments in \"{}\" directive", c.name),
            ))
        }
    })
}

/// `sticky cookie NAME [expires=] [domain=] [path=] [httponly] [secure] [samesite=]`.
fn sticky_conf(c: &Directive) -> Result<StickyConf> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let (name, params) = match args.as_slice() {
        ["cookie", name, params @ ..] => (*name, params),
        ["cookie"] => {
            return Err(ConfigError::at(
                &c.span,
                "no cookie name in \"sticky cookie\"",
            ))
        }
        [mode, ..] => {
            return Err(ConfigError::hinted(
                &c.span,
                format!("\"sticky {mode}\" is not supported"),
                "use \"sticky cookie NAME\"",
            ))
        }
        [] => {
            return Err(ConfigError::at(
                &c.span,
                "invalid number of arguments in \"sticky\" directive",
            ))
        }
    };
    // A cookie name is an RFC 6265 token; anything else would break the header.
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    if !token(name) {
        return Err(ConfigError::at(
            &c.span,
            format!("invalid cookie name \"{name}\""),
        ));
    }
    let mut conf = StickyConf {
        cookie: name.to_owned(),
        expires: None,
        domain: None,
        path: None,
        httponly: false,
        secure: false,
        samesite: None,
    };
    // Attribute values go into the Set-Cookie header as written.
    let attr_ok = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    for p in params {
        let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
        if let Some(v) = p.strip_prefix("expires=") {
            conf.expires = Some(if v == "max" {
                Duration::from_secs(315_360_000)
            } else {
                parse_time(v).ok_or_else(|| invalid_value(c, p, Some(TIME_HINT)))?
            });
        } else if let Some(v) = p.strip_prefix("domain=") {
            conf.domain = Some(Some(v.to_owned()).filter(|v| attr_ok(v)).ok_or_else(bad)?);
        } else if let Some(v) = p.strip_prefix("path=") {
            conf.path = Some(Some(v.to_owned()).filter(|v| attr_ok(v)).ok_or_else(bad)?);
        } else if let Some(v) = p.strip_prefix("samesite=") {
            let v = match v.to_ascii_lowercase().as_str() {
                "strict" => "Strict",
                "lax" => "Lax",
                "none" => "None",
                _ => return Err(bad()),
            };
            conf.samesite = Some(v.to_owned());
        } else if *p == "httponly" {
            conf.httponly = true;
        } else if *p == "secure" {
            conf.secure = true;
        } else {
            return Err(bad());
        }
    }
    Ok(conf)
}

fn unreachable_directive(d: &Directive, name: &str) -> Result<()> {
    Err(ConfigError::at(
        &d.span,
        format!("\"{name}\" directive is not allowed here"),
    ))
}

fn is_regex(k: LocationKind) -> bool {
    matches!(k, LocationKind::Regex | LocationKind::RegexCaseless)
}

fn is_prefix(k: LocationKind) -> bool {
    matches!(k, LocationKind::Prefix | LocationKind::PrefixNoRegex)
}

/// `location [=|~|~*|^~] pattern`, also with the modifier glued on (`=/x`), as nginx.
fn location_pattern(d: &Directive) -> Result<(LocationKind, String)> {
    let invalid = |m: &str| ConfigError::at(&d.span, format!("invalid location modifier \"{m}\""));
    if d.args.len() == 2 {
        let kind = match d.arg(0) {
            "=" => LocationKind::Exact,
            "~" => LocationKind::Regex,
            "~*" => LocationKind::RegexCaseless,
            "^~" => LocationKind::PrefixNoRegex,
            m => return Err(invalid(m)),
        };
        return Ok((kind, d.arg(1).to_owned()));
    }
    let a = d.arg(0);
    Ok(if let Some(r) = a.strip_prefix("~*") {
        (LocationKind::RegexCaseless, r.to_owned())
    } else if let Some(r) = a.strip_prefix("^~") {
        (LocationKind::PrefixNoRegex, r.to_owned())
    } else if let Some(r) = a.strip_prefix('~') {
        (LocationKind::Regex, r.to_owned())
    } else if let Some(r) = a.strip_prefix('=') {
        (LocationKind::Exact, r.to_owned())
    } else {
        (LocationKind::Prefix, a.to_owned())
    })
}

fn server_name(d: &Directive, v: &str) -> Result<ServerName> {
    if let Some(re) = v.strip_prefix('~') {
        // nginx compiles server name regexes caseless.
        let r = RegexBuilder::new(re)
            .case_insensitive(true)
            .build()
            .map_err(|e| {
                ConfigError::at(&d.span, format!("invalid server name regex \"{v}\": {e}"))
            })?;
        return Ok(ServerName::Regex(r));
    }
    if v == "$hostname" {
        return Ok(ServerName::Exact(crate::config::hostname().to_owned()));
    }
    let lower = v.to_ascii_lowercase();
    let invalid = || ConfigError::at(&d.span, format!("invalid server name or wildcard \"{v}\""));
    if let Some(rest) = lower.strip_prefix('*') {
        if !rest.starts_with('.') || rest.len() < 2 || rest.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardStart {
            suffix: rest.to_owned(),
            matches_bare: false,
        });
    }
    if lower.starts_with('.') {
        if lower.len() < 2 || lower.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardStart {
            suffix: lower,
            matches_bare: true,
        });
    }
    if let Some(rest) = lower.strip_suffix('*') {
        if !rest.ends_with('.') || rest.len() < 2 || rest.contains('*') {
            return Err(invalid());
        }
        return Ok(ServerName::WildcardEnd(rest.to_owned()));
    }
    if lower.contains('*') {
        return Err(invalid());
    }
    Ok(ServerName::Exact(lower))
}

fn ret_action(d: &Directive) -> Result<Action> {
    let a0 = d.arg(0);
    let is_url =
        |s: &str| s.starts_with("http://") || s.starts_with("https://") || s.starts_with("$scheme");
    if d.args.len() == 1 && is_url(a0) {
        return Ok(Action::Return {
            code: 302,
            text: Some(templ(d, a0)?),
        });
    }
    let code: u16 = a0
        .parse()
        .ok()
        .filter(|c| *c <= 999 && a0.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ConfigError::at(&d.span, format!("invalid return code \"{a0}\"")))?;
    let text = match d.args.get(1) {
        Some(t) => Some(templ(d, &t.value)?),
        None => None,
    };
    Ok(Action::Return { code, text })
}

fn next_upstream(d: &Directive) -> Result<NextUpstream> {
    let mut bits = 0u16;
    for a in &d.args {
        let v = a.value.as_str();
        let bit = match v {
            "off" if d.args.len() == 1 => return Ok(NextUpstream::OFF),
            "error" => NextUpstream::ERROR,
            "timeout" => NextUpstream::TIMEOUT,
            "invalid_header" => NextUpstream::INVALID_HEADER,
            "http_500" => NextUpstream::HTTP_500,
            "http_502" => NextUpstream::HTTP_502,
            "http_503" => NextUpstream::HTTP_503,
            "http_504" => NextUpstream::HTTP_504,
            "http_403" => NextUpstream::HTTP_403,
            "http_404" => NextUpstream::HTTP_404,
            "http_429" => NextUpstream::HTTP_429,
            "non_idempotent" => NextUpstream::NON_IDEMPOTENT,
            "off" => {
                return Err(ConfigError::hinted(
                    &d.span,
                    "invalid value \"off\" in \"proxy_next_upstream\" directive",
                    "\"off\" must be the only value",
                ))
            }
            other => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("invalid value \"{other}\" in \"proxy_next_upstream\" directive"),
                    "values are error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent, off",
                ))
            }
        };
        if bits & bit != 0 {
            return Err(ConfigError::at(&d.span, format!("duplicate value \"{v}\"")));
        }
        bits |= bit;
    }
    Ok(NextUpstream(bits))
}
