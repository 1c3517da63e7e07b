//! Directive tree → typed [`Config`]: checks every directive against the table in
//! [`super::directives`], parses values, resolves host names and merges inherited
//! settings the way nginx does (a value set at a deeper level wins; a level with any
//! `proxy_set_header`/`add_header` replaces the inherited list).
//!
//! This module walks the main and http levels; each concern lives in its own module:
//! value syntax in `values`, `host:port` and name lookup in `address`, inherited
//! settings in `settings`, `server` and `location` blocks, `upstream` blocks,
//! `proxy_pass` in `proxy`, `health_check` and `match` in `health`, logging directives
//! in `logs`, `ferrolb_admin` in `admin`, the rewrite module and `map` in
//! `rewrite`, `geo` in `geo`, `split_clients` in `split_clients`, TLS in `tls`
//! (`ssl_*`), `proxy_ssl` (`proxy_ssl_*`) and `ciphers` (OpenSSL cipher lists).

mod acme;
mod address;
mod admin;
mod admission;
mod cache;
mod charset;
mod ciphers;
mod geo;
mod health;
mod listen;
mod location;
mod logs;
mod proxy;
mod proxy_edits;
mod proxy_ssl;
mod rewrite;
mod server;
mod settings;
mod split_clients;
mod tls;
mod upstream;
mod uwsgi;
pub(crate) mod values;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::admission::{LimitConnZoneConf, LimitReqZoneConf};
use super::directives::{self, did_you_mean, lookup, Kind, Lookup, Spec};
use super::error::ConfigError;
use super::parser::Directive;
use super::resolve::Resolve;
use super::types::*;

pub use address::{parse_host_port, HostPortError};
pub use values::{parse_size, parse_time};

use admin::admin_conf;
use logs::log_format;
use settings::Partial;
use values::{flag, invalid_value, number};

type Result<T> = std::result::Result<T, ConfigError>;

/// What validation needs from the load options.
#[derive(Debug, Clone)]
pub struct Env {
    /// Relative paths resolve against this.
    pub prefix: PathBuf,
    /// Default listen port 80 when true, else 8000.
    pub is_root: bool,
    /// Looks up the host names in `server`, `proxy_pass` and `listen`.
    pub resolver: Arc<dyn Resolve + Send + Sync>,
}

/// Validates a parsed main context (`-g` directives first, then the file).
pub fn validate(directives: &[Directive], env: &Env, warnings: Vec<Warning>) -> Result<Config> {
    let mut v = Validator {
        names: rewrite::collect_names(directives),
        env,
        warnings,
        upstreams: Vec::new(),
        log_formats: HashMap::new(),
        matches: HashMap::new(),
        health_checks: Vec::new(),
        limit_req_zones: Vec::new(),
        limit_conn_zones: Vec::new(),
        cache: cache::CacheDirectives::default(),
        log_buffering: HashMap::new(),
        upstream_zones: Vec::new(),
        open_log_file_caches: Vec::new(),
        acme_issuers: Vec::new(),
        acme_certificates: Vec::new(),
        acme_shared_zone: None,
    };
    v.main(directives)
}

struct Validator<'a> {
    env: &'a Env,
    /// Every variable the configuration declares (`set`, `map`, named captures).
    names: rewrite::VarNames,
    warnings: Vec<Warning>,
    upstreams: Vec<UpstreamConf>,
    /// `log_format`s declared so far (`combined` is built in and not listed).
    log_formats: HashMap<String, Arc<LogFormat>>,
    /// `match` blocks by name (declared anywhere at http level).
    matches: HashMap<String, Arc<MatchConf>>,
    /// `health_check` lines found in locations so far.
    health_checks: Vec<HealthCheckConf>,
    /// `limit_req_zone`s (declared anywhere at http level).
    limit_req_zones: Vec<LimitReqZoneConf>,
    /// `limit_conn_zone`s (declared anywhere at http level).
    limit_conn_zones: Vec<LimitConnZoneConf>,
    /// `acme_issuer` blocks (declared anywhere at http level).
    acme_issuers: Vec<Arc<super::acme::AcmeIssuer>>,
    /// Distinct `acme_certificate`s of the servers so far.
    acme_certificates: Vec<super::acme::AcmeCertificate>,
    /// `acme_shared_zone` seen.
    acme_shared_zone: Option<()>,
    /// The proxy cache directives seen (accepted, not acted on).
    cache: cache::CacheDirectives,
    /// `buffer=`/`flush=`/`gzip` of each buffered access log file: one setting per file.
    log_buffering: HashMap<PathBuf, LogBuffering>,
    /// `zone NAME [SIZE]` lines of upstreams.
    upstream_zones: Vec<(String, Option<u64>, Span)>,
    /// `open_log_file_cache` lines, in file order.
    open_log_file_caches: Vec<OpenLogFileCacheConf>,
}

/// Words that are both a directive's name and a flag parameter of `directive`
/// (`access_log ... gzip`, `listen ... ssl`): on a line of their own they continue
/// the directive, as nginx reads them, rather than start the next one.
fn is_flag_parameter(directive: &str, word: &str) -> bool {
    match directive {
        "access_log" => word == "gzip",
        "listen" => matches!(word, "ssl" | "http2" | "quic"),
        _ => false,
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

/// nginx's error for a single-valued directive set twice in one level.
fn duplicate(d: &Directive) -> ConfigError {
    ConfigError::at(&d.span, format!("\"{}\" directive is duplicate", d.name))
}

/// One `map`, `geo` or `split_clients` block per variable name. (nginx lets a later
/// block silently replace an earlier one; that is always a mistake, so it is refused.)
fn declare_once(names: &mut HashSet<String>, name: &str, d: &Directive) -> Result<()> {
    if names.insert(name.to_owned()) {
        return Ok(());
    }
    Err(ConfigError::hinted(
        &d.span,
        format!("the duplicate \"{name}\" variable"),
        "another map, geo or split_clients block already makes this variable; nginx would use the last one",
    ))
}

/// Directives the table routes to a context whose handler has no arm for them would be
/// a bug in the table; report it as an error rather than panic.
fn unreachable_directive(d: &Directive, name: &str) -> Result<()> {
    Err(ConfigError::at(
        &d.span,
        format!("\"{name}\" directive is not allowed here"),
    ))
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
        if let Kind::Obsolete(instead) = spec.kind {
            // nginx's own warnings (ngx_http_v2_module's obsolete directives).
            let message = match instead {
                Some(new) => format!(
                    "the \"{}\" directive is obsolete, use the \"{new}\" directive instead",
                    d.name
                ),
                None => format!("the \"{}\" directive is obsolete, ignored", d.name),
            };
            self.warn(d, message);
            return Ok(None);
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
            if a.line > prev_line
                && !a.quoted
                && directives::is_known(&a.value)
                && !is_flag_parameter(&d.name, &a.value)
            {
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

    /// The main level: `-g` directives, then the file.
    fn main(&mut self, ds: &[Directive]) -> Result<Config> {
        let mut worker_processes = None;
        let mut worker_connections = None;
        let mut error_log: Option<ErrorLogConf> = None;
        let mut pid = None;
        let mut daemon = None;
        let mut shutdown_timeout = None;
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
                "error_log" => self.first_error_log(&mut error_log, d)?,
                "pid" => once(&mut pid, self.env.prefix.join(d.arg(0)), d)?,
                "daemon" => once(&mut daemon, flag(d)?, d)?,
                "worker_shutdown_timeout" => {
                    once(&mut shutdown_timeout, values::time(d, d.arg(0))?, d)?
                }
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
            daemon: daemon.unwrap_or(false),
            worker_shutdown_timeout: shutdown_timeout,
            http: http.unwrap_or_default(),
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    /// The `http { }` block.
    fn http(&mut self, ds: &[Directive]) -> Result<Http> {
        let mut level = Partial::default();
        let mut tls_level = tls::TlsPartial::default();
        let mut servers = Vec::new();
        // Charset maps first: a location's `charset` may need a map declared further down.
        level.charset.maps = Some(Arc::new(charset::charset_maps(ds)?));
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
        // Zones too: `limit_req zone=` may name one declared further down.
        for d in ds
            .iter()
            .filter(|d| d.name == "limit_req_zone" || d.name == "limit_conn_zone")
        {
            if self.check(d, directives::HTTP)?.is_some() {
                self.limit_zone(d)?;
            }
        }
        // Issuers too: `acme_certificate` in a server names one.
        for d in ds.iter().filter(|d| d.name == "acme_issuer") {
            if self.check(d, directives::HTTP)?.is_some() {
                self.acme_issuer(d)?;
            }
        }
        let mut admin = None;
        let mut maps = Vec::new();
        let mut geos = Vec::new();
        let mut splits = Vec::new();
        // Names of map, geo and split_clients variables so far: one block per name.
        let mut computed: HashSet<String> = HashSet::new();
        for d in ds.iter().filter(|d| {
            !matches!(
                d.name.as_str(),
                "upstream" | "match" | "limit_req_zone" | "limit_conn_zone" | "acme_issuer"
            )
        }) {
            if self.check(d, directives::HTTP)?.is_none() {
                continue;
            }
            match d.name.as_str() {
                "server" => servers.push(d),
                "log_format" => {
                    let format = log_format(d, &self.names)?;
                    if format.name == "combined" || self.log_formats.contains_key(&format.name) {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("duplicate \"log_format\" name \"{}\"", format.name),
                        ));
                    }
                    self.log_formats
                        .insert(format.name.clone(), Arc::new(format));
                }
                // Accepted: ferrolb writes no rewrite notices and warns of no variable.
                "rewrite_log" | "uninitialized_variable_warn" => {
                    flag(d)?;
                }
                "ferrolb_admin" => once(&mut admin, admin_conf(d)?, d)?,
                "acme_shared_zone" => self.acme_shared_zone(d)?,
                "map" => {
                    let map = self.map_block(d)?;
                    declare_once(&mut computed, &map.name, d)?;
                    maps.push(map);
                }
                "geo" => {
                    let geo = self.geo_block(d)?;
                    declare_once(&mut computed, &geo.name, d)?;
                    geos.push(geo);
                }
                "split_clients" => {
                    let split = self.split_clients_block(d)?;
                    declare_once(&mut computed, &split.name, d)?;
                    splits.push(split);
                }
                n if n.starts_with("ssl_") => self.tls_setting(&mut tls_level, d)?,
                _ => self.setting(&mut level, d)?,
            }
        }
        let mut servers = servers
            .into_iter()
            .map(|d| self.server(d, &level, &tls_level))
            .collect::<Result<Vec<_>>>()?;
        self.acme_challenge_listener(&mut servers, &level, &tls_level)?;
        self.ssl_addresses(&mut servers)?;
        self.conflicting_names(&servers);
        self.cache_zones_known()?;
        self.upstream_zones_sized()?;
        // As nginx: the socket options of an address are set by one `listen` only.
        let mut with_options: HashSet<&Endpoint> = HashSet::new();
        for l in servers.iter().flat_map(|s| &s.listen) {
            if l.socket.is_some() && !with_options.insert(&l.addr) {
                return Err(ConfigError::at(
                    &l.span,
                    format!("duplicate listen options for {}", l.addr),
                ));
            }
        }
        let mut defaults: HashMap<&Endpoint, ()> = HashMap::new();
        for s in &servers {
            for l in s.listen.iter().filter(|l| l.default_server) {
                if defaults.insert(&l.addr, ()).is_some() {
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
            // In the order the names were collected, which is file order too.
            maps: self.names.order_maps(maps),
            user_vars: self.names.user_names(),
            geos: self.names.order_geos(geos),
            split_clients: self.names.order_split_clients(splits),
            limit_req_zones: std::mem::take(&mut self.limit_req_zones),
            limit_conn_zones: std::mem::take(&mut self.limit_conn_zones),
            open_log_file_caches: std::mem::take(&mut self.open_log_file_caches),
            acme_certificates: std::mem::take(&mut self.acme_certificates),
        })
    }

    /// As nginx, an address is TLS for every server on it once one `listen` of it says
    /// `ssl` (and likewise `http2`). A Unix socket listener may be TLS too.
    fn ssl_addresses(&mut self, servers: &mut [ServerConf]) -> Result<()> {
        let ssl: HashSet<Endpoint> = servers
            .iter()
            .flat_map(|s| s.listen.iter().filter(|l| l.ssl).map(|l| l.addr.clone()))
            .collect();
        let h2: HashSet<Endpoint> = servers
            .iter()
            .flat_map(|s| s.listen.iter().filter(|l| l.http2).map(|l| l.addr.clone()))
            .collect();
        for s in servers.iter_mut() {
            for l in &mut s.listen {
                l.ssl |= ssl.contains(&l.addr);
                l.http2 |= h2.contains(&l.addr);
            }
        }
        // As nginx: the default server of a TLS address needs a certificate (or
        // ssl_reject_handshake on); the others may go without, and then handshakes
        // run with the default server's.
        for addr in &ssl {
            let default = servers
                .iter()
                .find(|s| s.listen.iter().any(|l| &l.addr == addr && l.default_server))
                .or_else(|| {
                    servers
                        .iter()
                        .find(|s| s.listen.iter().any(|l| &l.addr == addr))
                });
            if let Some(s) = default.filter(|s| s.tls.is_none()) {
                let span = s
                    .listen
                    .iter()
                    .find(|l| &l.addr == addr)
                    .map_or(&s.span, |l| &l.span);
                return Err(ConfigError::hinted(
                    span,
                    "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
                    "add ssl_certificate and ssl_certificate_key to the default server of this address (or to http), or ssl_reject_handshake on;",
                ));
            }
        }
        Ok(())
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
                    if !seen.insert((l.addr.clone(), key.clone())) {
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
}
