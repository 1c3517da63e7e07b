//! Typed, validated configuration: what the parser's directive tree becomes once every
//! directive has been checked and every inherited setting merged the way nginx merges it
//! (http → server → location). Nothing here knows about sockets or runtime state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

/// A place in a configuration file, kept on every directive so errors can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The file, as the user named it (relative names stay relative for messages).
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads (`worker_processes`; `auto` is the number of CPUs). Default 1, as nginx.
    pub worker_processes: usize,
    /// Maximum simultaneous connections per worker (`events { worker_connections }`),
    /// client and upstream together, as nginx counts them. Default 512.
    pub worker_connections: usize,
    /// `error_log`; default `logs/error.log` under the prefix at level `error`.
    pub error_log: ErrorLogConf,
    /// `pid`; default `logs/nginx.pid` under the prefix.
    pub pid: PathBuf,
    /// `daemon on|off`: detach from the terminal once listening. Default off: unlike
    /// nginx (default on), ferrolb has always run in the foreground, and service
    /// managers prefer that.
    pub daemon: bool,
    /// `worker_shutdown_timeout`: how long a graceful stop (SIGQUIT) waits for requests
    /// in progress before it closes their connections. Default none: ferrolb then waits
    /// 30 s at most (nginx waits without a bound).
    pub worker_shutdown_timeout: Option<Duration>,
    /// The `http { }` block; a config without one proxies nothing.
    pub http: Http,
    /// Non-fatal findings (directives accepted but ignored, …), for `-t` and the error log.
    pub warnings: Vec<Warning>,
}

impl Config {
    /// The `error_log`s of http, server and location levels, each level once (repeats
    /// where levels inherit one).
    pub fn level_error_logs(&self) -> Vec<&ErrorLogConf> {
        fn walk<'c>(locations: &'c [Location], out: &mut Vec<&'c ErrorLogConf>) {
            for l in locations {
                out.extend(l.settings.error_log.as_ref());
                walk(&l.locations, out);
            }
        }
        let mut out = Vec::new();
        for s in &self.http.servers {
            out.extend(s.settings.error_log.as_ref());
            walk(&s.locations, &mut out);
        }
        out
    }
}

/// A finding that does not stop the configuration from loading.
#[derive(Debug, Clone)]
pub struct Warning {
    /// Where.
    pub span: Span,
    /// What, e.g. `"sendfile" is accepted and ignored: ferrolb does not serve files`.
    pub message: String,
}

/// Where the error log goes and from which level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLogConf {
    /// The destination.
    pub target: LogTarget,
    /// Lowest level written. Default [`Level::Error`], as nginx.
    pub level: Level,
}

/// A log destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogTarget {
    /// `stderr`.
    Stderr,
    /// A file path, already resolved against the prefix.
    File(PathBuf),
    /// `/dev/null` or `off` for access logs.
    Off,
}

/// nginx's error log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `emerg`
    Emerg,
    /// `alert`
    Alert,
    /// `crit`
    Crit,
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `notice`
    Notice,
    /// `info`
    Info,
    /// `debug`
    Debug,
}

impl Level {
    /// The word nginx prints between brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The `http { }` block.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// Every upstream group: the declared ones first, in file order, then one implicit
    /// group per distinct `proxy_pass http://host:port` that names no declared upstream.
    pub upstreams: Vec<UpstreamConf>,
    /// Virtual servers in file order.
    pub servers: Vec<ServerConf>,
    /// `health_check` lines of every location, each naming the upstream its location
    /// proxies to. Empty by default (no active checks).
    pub health_checks: Vec<HealthCheckConf>,
    /// `ferrolb_admin ADDR [token=SECRET]`: the admin listener. `None` (the default)
    /// runs none.
    pub admin: Option<AdminConf>,
    /// `map` blocks in file order; [`Var::Map`] indexes them. Empty by default.
    pub maps: Vec<MapConf>,
    /// Names of the user variables (`set`, named regex captures) by slot; [`Var::User`]
    /// indexes them. Empty by default.
    pub user_vars: Vec<String>,
    /// `geo` blocks in file order; [`Var::Geo`] indexes them. Empty by default.
    pub geos: Vec<GeoConf>,
    /// `split_clients` blocks in file order; [`Var::SplitClients`] indexes them. Empty
    /// by default.
    pub split_clients: Vec<SplitClientsConf>,
    /// `limit_req_zone`s in file order; [`crate::config::LimitReq::zone`] indexes them.
    pub limit_req_zones: Vec<crate::config::admission::LimitReqZoneConf>,
    /// `limit_conn_zone`s in file order; [`crate::config::LimitConn::zone`] indexes them.
    pub limit_conn_zones: Vec<crate::config::admission::LimitConnZoneConf>,
    /// Every distinct `acme_certificate` of the servers, for the ACME client. Empty by
    /// default.
    pub acme_certificates: Vec<crate::config::acme::AcmeCertificate>,
    /// `open_log_file_cache` lines in file order; a level and the levels that inherit
    /// its line share one cache ([`LocSettings::open_log_file_cache`] indexes them).
    pub open_log_file_caches: Vec<OpenLogFileCacheConf>,
}

/// `open_log_file_cache max=N [inactive=TIME] [min_uses=N] [valid=TIME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenLogFileCacheConf {
    /// `max=`: the most files the cache knows; the least recently used is closed
    /// beyond it. Required.
    pub max: usize,
    /// `inactive=`: a file not written within this long is closed. Default 10 s.
    pub inactive: std::time::Duration,
    /// `min_uses=`: a file is kept open once written this many times (within
    /// `inactive`). Default 1.
    pub min_uses: u32,
    /// `valid=`: a kept file is opened again (by its path) after this long, so a
    /// rotated log is followed. Default 60 s.
    pub valid: std::time::Duration,
}

impl Http {
    /// Every address some server listens on, with the socket options of the one
    /// `listen` of it that sets them (nginx's defaults when none does).
    pub fn listen_sockets(&self) -> std::collections::BTreeMap<Endpoint, SocketOptions> {
        let mut out = std::collections::BTreeMap::new();
        for l in self.servers.iter().flat_map(|s| &s.listen) {
            match &l.socket {
                Some(o) => {
                    out.insert(l.addr.clone(), o.clone());
                }
                None => {
                    out.entry(l.addr.clone()).or_default();
                }
            }
        }
        out
    }
}

/// `ferrolb_admin ADDR [token=SECRET]` at http level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConf {
    /// Where the admin listener binds (e.g. `127.0.0.1:9090`).
    pub addr: SocketAddr,
    /// With a token every request needs `Authorization: Bearer TOKEN`. Default none.
    pub token: Option<String>,
    /// Where the directive is.
    pub span: Span,
}

/// One `health_check` directive (nginx Plus syntax) in a location that proxies to
/// `upstream`.
#[derive(Debug, Clone)]
pub struct HealthCheckConf {
    /// Index into [`Http::upstreams`].
    pub upstream: usize,
    /// `interval=`: time between two checks of one peer. Default 5 s.
    pub interval: Duration,
    /// `jitter=`: each check is delayed by a random time up to this. Default 0.
    pub jitter: Duration,
    /// `fails=`: consecutive failed checks that make a peer unhealthy. Default 1.
    pub fails: u32,
    /// `passes=`: consecutive passed checks that make it healthy again. Default 1.
    pub passes: u32,
    /// `uri=`: the request target of the check. Default `/`.
    pub uri: String,
    /// `port=`: checks go to this port instead of the peer's. Default: the peer's.
    pub port: Option<u16>,
    /// `match=NAME`: the conditions a response must meet. Default: status 2xx or 3xx.
    pub matcher: Option<Arc<MatchConf>>,
    /// `timeout=`: time limit of one check (connect, send, read the response).
    /// Default 5 s (nginx Plus uses the location's proxy timeouts, 60 s by default,
    /// which would keep a hung peer in rotation for minutes).
    pub timeout: Duration,
    /// `mandatory`: a new peer takes no requests until its first check passes.
    /// Default off (new peers count as healthy until a check fails).
    pub mandatory: bool,
    /// The location's `proxy_pass https://` settings: checks speak TLS as requests do.
    pub tls: Option<Arc<crate::config::tls::UpstreamTls>>,
    /// The `Host` header of the check: the location's `proxy_pass` host.
    pub host: String,
    /// Where the directive is.
    pub span: Span,
}

/// A `match NAME { }` block at http level: every condition must hold.
#[derive(Debug, Clone)]
pub struct MatchConf {
    /// The name `health_check match=` refers to.
    pub name: String,
    /// Conditions in file order.
    pub conditions: Vec<MatchCond>,
}

/// One condition of a `match` block.
#[derive(Debug, Clone)]
pub enum MatchCond {
    /// `status [!] 200 204 300-399`: the status is (not) one of these.
    Status {
        /// `!`
        negate: bool,
        /// Inclusive ranges (a single code is `(c, c)`).
        ranges: Vec<(u16, u16)>,
    },
    /// `header [!] Name [= value | != value | ~ re | !~ re]`.
    Header {
        /// The field name (compared case-insensitively).
        name: String,
        /// The test on its value.
        test: HeaderTest,
        /// True for the negated forms (`!`, `!=`, `!~`).
        negate: bool,
    },
    /// `body ~ re` / `body !~ re` (over the first 256 KiB of the body).
    Body {
        /// `!~`
        negate: bool,
        /// The pattern.
        regex: Regex,
    },
}

/// How a `match` block's `header` line tests a field.
#[derive(Debug, Clone)]
pub enum HeaderTest {
    /// `header Name;`: the field is present.
    Present,
    /// `header Name = value;`
    Equals(String),
    /// `header Name ~ re;`
    Matches(Regex),
}

/// An `upstream NAME { }` block (or an implicit one made for a bare `proxy_pass` address).
#[derive(Debug, Clone)]
pub struct UpstreamConf {
    /// The name as written (`myproject`, or `127.0.0.1:8000` for an implicit group).
    pub name: String,
    /// Where it was declared (the `proxy_pass` for implicit groups).
    pub span: Span,
    /// True for the group made from a `proxy_pass` address.
    pub implicit: bool,
    /// The balancing method. Default round robin.
    pub method: BalanceMethod,
    /// `sticky`: session affinity over the method. Default none.
    pub sticky: Option<StickyConf>,
    /// One entry per resolved address of every `server` line, in file order.
    pub peers: Vec<PeerConf>,
    /// `keepalive N`: idle upstream connections kept per worker thread. `None` (the
    /// default, as nginx) closes upstream connections after each response.
    pub keepalive: Option<usize>,
    /// `keepalive_timeout`: how long an idle upstream connection is kept. Default 60 s.
    pub keepalive_timeout: Duration,
    /// `keepalive_time`: a connection older than this is closed after its response
    /// instead of kept. Default 1 h.
    pub keepalive_time: Duration,
    /// `keepalive_requests`: requests per upstream connection before it is closed.
    /// Default 1000.
    pub keepalive_requests: u32,
}

/// How an upstream group picks a peer. Default: round robin. Every method is weighted
/// and honours `down`, `max_fails`/`fail_timeout` and `max_conns`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BalanceMethod {
    /// Smooth weighted round robin, nginx's default.
    #[default]
    RoundRobin,
    /// `least_conn`: fewest in-flight requests relative to weight; ties go round robin.
    LeastConn,
    /// `ip_hash`: nginx's hash of the client address (first three octets of IPv4, all
    /// of IPv6). No `backup` peers.
    IpHash,
    /// `hash KEY [consistent]`. No `backup` peers.
    Hash {
        /// The key, evaluated per request (may use variables).
        key: Template,
        /// `consistent`: nginx's ketama ring (160 points per unit of weight) instead of
        /// the plain `crc32 % total weight` mapping. Default false.
        consistent: bool,
    },
    /// `random [two [least_conn]]`. No `backup` peers.
    Random {
        /// `two`: draw two peers, use the one with fewer connections relative to
        /// weight. Default false (one weighted draw).
        two: bool,
    },
    /// `least_time header | last_byte [inflight] [decay=TIME]`: peak-EWMA latency,
    /// power of two choices.
    LeastTime {
        /// Which latency is measured. No default: the directive requires it.
        point: LatencyPoint,
        /// `inflight`: accepted for nginx Plus compatibility; the cost always counts
        /// in-flight requests. Default false.
        inflight: bool,
        /// `decay=`: the EWMA's time constant (ferrolb extension). Default 10 s.
        decay: Duration,
    },
}

impl BalanceMethod {
    /// The directive name, for messages.
    pub fn directive(&self) -> &'static str {
        match self {
            BalanceMethod::RoundRobin => "round robin",
            BalanceMethod::LeastConn => "least_conn",
            BalanceMethod::IpHash => "ip_hash",
            BalanceMethod::Hash { .. } => "hash",
            BalanceMethod::Random { .. } => "random",
            BalanceMethod::LeastTime { .. } => "least_time",
        }
    }

    /// Whether the method accepts `backup` servers (nginx: not `hash`, `ip_hash`,
    /// `random`).
    pub fn allows_backup(&self) -> bool {
        !matches!(
            self,
            BalanceMethod::IpHash | BalanceMethod::Hash { .. } | BalanceMethod::Random { .. }
        )
    }
}

/// The `least_time` measurement point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyPoint {
    /// `header`: from the start of the attempt to the response head.
    Header,
    /// `last_byte`: from the start of the attempt to the last byte of the response.
    LastByte,
}

/// `sticky cookie NAME [expires=] [domain=] [path=] [httponly] [secure] [samesite=]`
/// (nginx Plus syntax): session affinity on top of the balancing method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConf {
    /// The cookie name.
    pub cookie: String,
    /// `expires=`: sent as `Max-Age`; `max` is about 10 years. Default none (a
    /// session cookie).
    pub expires: Option<Duration>,
    /// `domain=`. Default none.
    pub domain: Option<String>,
    /// `path=`. Default none (the browser's default path).
    pub path: Option<String>,
    /// `httponly`. Default false.
    pub httponly: bool,
    /// `secure`. Default false.
    pub secure: bool,
    /// `samesite=strict|lax|none`. Default none.
    pub samesite: Option<String>,
}

/// A socket address as nginx writes one: an IP address and port, or a Unix socket path
/// (`unix:/run/app.sock`). Where a peer is (`server`, `proxy_pass`) and where a
/// server listens (`listen`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A Unix stream socket path.
    Unix(std::path::PathBuf),
}

impl Endpoint {
    /// The port of an IP peer; `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        self.inet().map(|a| a.port())
    }

    /// The IP address and port; `None` for a Unix socket.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Inet(a) => Some(*a),
            Endpoint::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Endpoint {
        Endpoint::Inet(a)
    }
}

impl<A: Into<std::net::IpAddr>> From<(A, u16)> for Endpoint {
    fn from((ip, port): (A, u16)) -> Endpoint {
        Endpoint::Inet(SocketAddr::new(ip.into(), port))
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.inet().as_ref() == Some(other)
    }
}

/// `127.0.0.1:8000`, `[::1]:8000` or `unix:/run/app.sock` (as [`Endpoint`] prints).
impl std::str::FromStr for Endpoint {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Endpoint, Self::Err> {
        match s.strip_prefix("unix:") {
            Some(path) => Ok(Endpoint::Unix(path.into())),
            None => s.parse().map(Endpoint::Inet),
        }
    }
}

/// As nginx prints peers: `127.0.0.1:8000`, `[::1]:8000`, `unix:/run/app.sock`.
impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Inet(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One peer: one address of one `server` line of an upstream block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConf {
    /// The `server` argument as written (`localhost:8000`); several peers share it when a
    /// name resolves to several addresses.
    pub name: String,
    /// The resolved address, or a Unix socket path (`server unix:/run/app.sock;`).
    pub addr: Endpoint,
    /// `weight=`. Default 1.
    pub weight: u32,
    /// `max_fails=`: failures within `fail_timeout` that make the peer unavailable;
    /// 0 disables the accounting. Default 1.
    pub max_fails: u32,
    /// `fail_timeout=`: the failure window and how long the peer then stays
    /// unavailable. Default 10 s.
    pub fail_timeout: Duration,
    /// `backup`: used only when every primary peer is unavailable.
    pub backup: bool,
    /// `down`: never used.
    pub down: bool,
    /// `max_conns=`: simultaneous connections limit; 0 (the default) is unlimited.
    pub max_conns: u32,
    /// `slow_start=`: after the peer recovers or is added, its share of requests
    /// ramps from ~0 to full over this time. Zero (the default) is off.
    pub slow_start: Duration,
    /// Where the `server` line is.
    pub span: Span,
}

impl PeerConf {
    /// A peer with nginx's defaults for every `server` parameter (weight 1, max_fails 1,
    /// fail_timeout 10 s, no backup, down, max_conns or slow_start): what `server ADDR;`
    /// means, and the start for implicit upstreams, the admin API and tests.
    pub fn new(name: String, addr: Endpoint, span: Span) -> PeerConf {
        PeerConf {
            name,
            addr,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
            slow_start: Duration::ZERO,
            span,
        }
    }
}

impl Span {
    /// A span for what comes from no file (the admin API, tests), named `what`.
    pub fn synthetic(what: &str) -> Span {
        Span {
            file: Arc::new(PathBuf::from(what)),
            line: 0,
            column: 0,
        }
    }
}

/// A `server { }` block.
#[derive(Debug, Clone)]
pub struct ServerConf {
    /// `listen` lines. Default `*:80` when running as root, else `*:8000`, as nginx.
    pub listen: Vec<Listen>,
    /// `server_name` entries in file order. Default: the empty name `""`.
    pub server_names: Vec<ServerName>,
    /// The first name (nginx's `$server_name`), `""` if none.
    pub primary_name: String,
    /// Locations in file order (nested ones inside their parent).
    pub locations: Vec<Location>,
    /// Settings at server level (already merged with http level); used when no location
    /// matches.
    pub settings: Arc<LocSettings>,
    /// The `ssl_*` settings with their files read; `None` without `ssl_certificate`
    /// (and without `ssl_reject_handshake on`).
    pub tls: Option<Arc<crate::config::tls::ServerTls>>,
    /// `ssl_verify_client` of this server, also of one without a certificate of its
    /// own (whose requests come over the handshake the address's default server ran,
    /// and are still checked by this setting, as nginx checks them). Default off.
    pub verify_client: crate::config::tls::VerifyClient,
    /// Where the block starts.
    pub span: Span,
}

/// A `listen` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Address and port (`0.0.0.0`/`[::]` for a bare port), or a Unix socket path
    /// (`listen unix:/run/ferrolb.sock;`; a relative path is taken as nginx takes it,
    /// against the working directory).
    pub addr: Endpoint,
    /// `default_server` (or the older `default`).
    pub default_server: bool,
    /// `ssl`: connections are TLS. As nginx, set on every `listen` of an address once
    /// one of them says `ssl`.
    pub ssl: bool,
    /// `http2` (or `http2 on;` in the server): HTTP/2 is offered by ALPN.
    pub http2: bool,
    /// `proxy_protocol`: connections start with a PROXY protocol header. As nginx,
    /// set for the address when any `listen` of it says so.
    pub proxy_protocol: bool,
    /// The socket options this `listen` sets (`backlog=`, `rcvbuf=`, `so_keepalive=`,
    /// ...); `None` when it sets none. As nginx, only one `listen` of an address may
    /// set them ("duplicate listen options"), and they hold for the address.
    pub socket: Option<SocketOptions>,
    /// Where.
    pub span: Span,
}

/// nginx's listen options: how the listening sockets of an address are made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketOptions {
    /// `backlog=N`: the length of the queue of connections not accepted yet, for each
    /// worker thread's socket. Default 511, as nginx on Linux.
    pub backlog: i32,
    /// `rcvbuf=SIZE`: `SO_RCVBUF`. Default: the kernel's.
    pub rcvbuf: Option<i32>,
    /// `sndbuf=SIZE`: `SO_SNDBUF`. Default: the kernel's.
    pub sndbuf: Option<i32>,
    /// `reuseport`. ferrolb always gives each worker thread a socket of its own
    /// joined by `SO_REUSEPORT`, as nginx does with this flag; kept to tell options
    /// apart across reloads only.
    pub reuseport: bool,
    /// `ipv6only=on|off`: `IPV6_V6ONLY` of an IPv6 address. Default on.
    pub ipv6only: bool,
    /// `so_keepalive=`: `None` leaves the system's default (off).
    pub keepalive: Option<SoKeepalive>,
    /// `deferred`: `TCP_DEFER_ACCEPT` (1 s, as nginx): a connection is accepted once
    /// data arrives. Default off.
    pub deferred: bool,
    /// `fastopen=N`: `TCP_FASTOPEN` with a queue of N. Default off.
    pub fastopen: Option<i32>,
    /// `bind`: ferrolb binds every address of a `listen` by itself anyway.
    pub bind: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            backlog: 511,
            rcvbuf: None,
            sndbuf: None,
            reuseport: false,
            ipv6only: true,
            keepalive: None,
            deferred: false,
            fastopen: None,
            bind: false,
        }
    }
}

/// `listen ... so_keepalive=on|off|[keepidle]:[keepintvl]:[keepcnt]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoKeepalive {
    /// `off`: `SO_KEEPALIVE` cleared.
    Off,
    /// `on`, or tuned: `SO_KEEPALIVE` set, and each given value set
    /// (`TCP_KEEPIDLE`, `TCP_KEEPINTVL` in seconds, `TCP_KEEPCNT`); the others stay
    /// the system's.
    On {
        /// Seconds idle before the first probe.
        idle: Option<u32>,
        /// Seconds between probes.
        interval: Option<u32>,
        /// Probes before the connection is dropped.
        count: Option<u32>,
    },
}

/// One `server_name` entry.
#[derive(Debug, Clone)]
pub enum ServerName {
    /// `example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com` or `.example.com`: stored as the suffix `.example.com`;
    /// `.example.com` also matches `example.com` itself (flag true).
    WildcardStart {
        /// The suffix including its leading dot, lowercase.
        suffix: String,
        /// True for the `.example.com` form, which also matches the bare name.
        matches_bare: bool,
    },
    /// `www.example.*`: stored as the prefix `www.example.`.
    WildcardEnd(String),
    /// `~regex`.
    Regex(Regex),
}

/// How a location pattern matches, nginx's modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    /// `location = /x`
    Exact,
    /// `location /x`
    Prefix,
    /// `location ^~ /x`: a prefix that, when longest, stops the regex search.
    PrefixNoRegex,
    /// `location ~ re`
    Regex,
    /// `location ~* re`
    RegexCaseless,
    /// `location @name`: reached only by `try_files` (and `error_page`), never by a URI.
    Named,
}

/// A `location` block.
#[derive(Debug, Clone)]
pub struct Location {
    /// The modifier.
    pub kind: LocationKind,
    /// The pattern as written.
    pub pattern: String,
    /// Compiled for the regex kinds.
    pub regex: Option<Regex>,
    /// Named captures of the regex (`(?<name>...)`), as (group, user variable slot):
    /// a match sets those variables, as nginx does.
    pub named_captures: Vec<(usize, usize)>,
    /// Nested locations.
    pub locations: Vec<Location>,
    /// `internal`: only internal redirects (`error_page`, `try_files`, `index`,
    /// `rewrite`) reach it; a client's own request gets 404.
    pub internal: bool,
    /// Settings, merged with every enclosing level.
    pub settings: Arc<LocSettings>,
    /// Where.
    pub span: Span,
}

/// The HTTP/2 settings of a level (nginx's `ngx_http_v2_module`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// `http2_max_concurrent_streams`: streams a client may have open at once.
    /// Default 128.
    pub max_concurrent_streams: u32,
    /// `http2_body_preread_size`: the window of a new stream, the request body bytes
    /// a client may send before it is read. Default 64 KiB.
    pub body_preread_size: u32,
    /// `http2_chunk_size`: the largest DATA frame ferrolb sends. Default 8 KiB.
    pub chunk_size: usize,
}

/// Everything that http, server and location levels set and inherit, after merging.
#[derive(Debug, Clone)]
pub struct LocSettings {
    /// What a request that lands here gets.
    pub action: Action,
    /// `proxy_set_header` lines in order. As nginx: a level that has any of them
    /// replaces (does not extend) the inherited list. A value that evaluates to the
    /// empty string removes the header. ferrolb's defaults differ from nginx's on Host
    /// (see [`crate::config::HostDefault`]).
    pub proxy_set_header: Vec<(String, Template)>,
    /// `proxy_http_version`. Default 1.0 (nginx), which sends `Connection: close`.
    pub proxy_http_version: ProxyHttpVersion,
    /// `proxy_connect_timeout`. Default 60 s.
    pub proxy_connect_timeout: Duration,
    /// `proxy_read_timeout`: between two reads from the upstream. Default 60 s.
    pub proxy_read_timeout: Duration,
    /// `proxy_send_timeout`: between two writes to the upstream. Default 60 s.
    pub proxy_send_timeout: Duration,
    /// `proxy_next_upstream`. Default `error timeout`.
    pub proxy_next_upstream: NextUpstream,
    /// `proxy_next_upstream_tries`; 0 (the default) means no limit.
    pub proxy_next_upstream_tries: u32,
    /// `proxy_next_upstream_timeout`; zero (the default) means no limit.
    pub proxy_next_upstream_timeout: Duration,
    /// `client_max_body_size` in bytes; 0 disables the check. Default 1 MiB.
    pub client_max_body_size: u64,
    /// `client_header_timeout`. Default 60 s.
    pub client_header_timeout: Duration,
    /// `client_body_timeout`. Default 60 s.
    pub client_body_timeout: Duration,
    /// `keepalive_timeout` for client connections; zero disables keep-alive. Default 75 s.
    pub keepalive_timeout: Duration,
    /// `keepalive_timeout`'s second value: a `Keep-Alive: timeout=N` field (whole
    /// seconds) on responses that keep the connection; none for 0. Default none.
    pub keepalive_header: Option<Duration>,
    /// `keepalive_requests` per client connection. Default 1000.
    pub keepalive_requests: u32,
    /// `add_header` lines (inherited like `proxy_set_header`).
    pub add_header: Vec<AddHeader>,
    /// `add_trailer` lines (inherited the same way): trailer fields after the body
    /// of an HTTP/1.1 response, which is then sent chunked, on the statuses
    /// `add_header` takes (any with `always`).
    pub add_trailer: Vec<AddHeader>,
    /// `access_log`. Default `logs/access.log` in the combined format.
    pub access_log: AccessLogConf,
    /// `open_log_file_cache`: which of [`Http::open_log_file_caches`] keeps the
    /// files of access logs whose paths have variables open. Default none (`off`):
    /// such a file is opened for each line.
    pub open_log_file_cache: Option<usize>,
    /// Static file settings (used by [`Action::Static`]).
    pub files: FilesConf,
    /// `proxy_request_buffering`: a request body larger than ferrolb's 64 KiB memory
    /// buffer is read whole into a temporary file before the upstream is contacted, and
    /// sent with a Content-Length (so it can be retried, and chunked bodies reach
    /// HTTP/1.0 upstreams). Off: streamed as it arrives. Default on.
    pub proxy_request_buffering: bool,
    /// `client_body_temp_path`: where those files are made (unlinked at once unless
    /// `client_body_in_file_only` keeps them). Default `client_body_temp` under the prefix.
    pub client_body_temp_path: PathBuf,
    /// `client_body_buffer_size`: a body up to this size (a quarter more for one with a
    /// Content-Length, as nginx sizes its buffer) is kept in memory and is
    /// `$request_body`; a larger one is spooled to a file (`$request_body_file`).
    /// Default 8k (nginx's two memory pages).
    pub client_body_buffer_size: u64,
    /// `client_body_in_file_only`: every request body that is read goes to a named file
    /// under `client_body_temp_path`. Default off.
    pub client_body_in_file_only: BodyInFileOnly,
    /// `client_body_in_single_buffer`: nginx keeps a body in one buffer. nginx 1.22's
    /// `$request_body` joins buffers anyway, so nothing a client or backend sees
    /// depends on it; kept for the configuration's sake. Default off.
    pub client_body_in_single_buffer: bool,
    /// `send_timeout`: how long one write to the client may stall before the
    /// connection is closed. Default 60 s.
    pub send_timeout: Duration,
    /// `underscores_in_headers`: header names with `_` are valid. Default off.
    pub underscores_in_headers: bool,
    /// `ignore_invalid_headers`: fields with names nginx finds invalid (anything but
    /// letters, digits and `-`, and `_` unless allowed) are dropped, never forwarded.
    /// Default on.
    pub ignore_invalid_headers: bool,
    /// `error_page` lines, one entry per status, in file order. As nginx: a level that
    /// has any replaces the inherited list. Empty by default.
    pub error_pages: Vec<ErrorPage>,
    /// `recursive_error_pages`: an error page's own error may get an error page too.
    /// Default off.
    pub recursive_error_pages: bool,
    /// `lingering_close`, `lingering_time`, `lingering_timeout`: how a connection that
    /// closes after an error response, or with request bytes still unread, is closed.
    /// Read from the address's default server.
    pub lingering: Lingering,
    /// `keepalive_time`: after this long a connection serves no further request.
    /// Default 1 h.
    pub keepalive_time: Duration,
    /// `keepalive_disable`: browsers whose connections are not kept alive. Default
    /// `msie6`.
    pub keepalive_disable: KeepaliveDisable,
    /// `proxy_hide_header`: upstream response fields not passed on (lower case), on
    /// top of nginx's default list (`Date`, `Server`, `X-Pad`, `X-Accel-*`). A level
    /// with any replaces the inherited list. Default none.
    pub proxy_hide_header: Vec<String>,
    /// `proxy_pass_header`: fields of the default hidden list passed on after all
    /// (lower case). Default none.
    pub proxy_pass_header: Vec<String>,
    /// `proxy_buffer_size`: the most an upstream response head may take; a larger
    /// one is a 502 (`upstream sent too big header`). Default 4k (nginx's page size);
    /// at most 64k.
    pub proxy_buffer_size: usize,
    /// `large_client_header_buffers NUMBER SIZE`: the request line and each header
    /// line must fit in SIZE bytes (else 414, and 494 sent as 400), the head in NUMBER ×
    /// SIZE. Read from the default server of the address, as nginx. Default 4 × 8k.
    pub large_client_header_buffers: (usize, usize),
    /// `max_headers`: at most this many request header lines (more is a 400), read
    /// from the default server of the address as `large_client_header_buffers`.
    /// Default 1000.
    pub max_headers: usize,
    /// `chunked_transfer_encoding`: a body of unknown length goes chunked to an
    /// HTTP/1.1 client (off: the connection closes to end it, and no `add_trailer`
    /// trailer is sent, as nginx). Default on.
    pub chunked_transfer_encoding: bool,
    /// `absolute_redirect`: a relative `Location` ferrolb makes gets scheme, host and
    /// port. Default on.
    pub absolute_redirect: bool,
    /// `server_name_in_redirect`: that host is the server's name, not the client's
    /// Host. Default off.
    pub server_name_in_redirect: bool,
    /// `port_in_redirect`: that port is the listening port (unless 80). Default on.
    pub port_in_redirect: bool,
    /// The charset module's settings.
    pub charset: crate::config::charset::CharsetConf,
    /// When a client may get gzip, and `gzip_vary`.
    pub gzip: GzipConf,
    /// `http2_*` settings (the address's default server's apply to a connection).
    pub http2: Http2Settings,
    /// What `uwsgi_pass` sends besides the body (`uwsgi_param`, modifiers).
    pub uwsgi: Arc<UwsgiConf>,
    /// `resolver`: for `proxy_pass` hosts given by variables. Default none (such a
    /// host must name an `upstream` group or be an address).
    pub resolver: Option<Arc<ResolverConf>>,
    /// `resolver_timeout`. Default 30 s.
    pub resolver_timeout: Duration,
    /// `proxy_intercept_errors`: an upstream response with a status of 300 or more
    /// that has an `error_page` gets that page instead of its own body. Default off.
    pub proxy_intercept_errors: bool,
    /// `proxy_ignore_client_abort` (`uwsgi_ignore_client_abort` where `uwsgi_pass`
    /// applies): off (the default) ends the request (499, upstream connection closed)
    /// when the client closes its connection while the upstream has not answered yet.
    pub proxy_ignore_client_abort: bool,
    /// `error_log FILE [LEVEL]` at http, server or location level (the first one;
    /// inherited): the error-log lines of requests routed here go to it instead of the
    /// main log. `None` (the default): the main `error_log`.
    pub error_log: Option<ErrorLogConf>,
    /// The rewrite module's directives of this level (`return`, `rewrite`, `set`,
    /// `break`, `if`) in file order; not inherited, as in nginx. Empty by default.
    pub rewrite: Vec<RewriteOp>,
    /// Real client address, `allow`/`deny`, `auth_basic`, `satisfy`, `limit_except`.
    pub admission: Arc<crate::config::admission::AdmissionConf>,
    /// `limit_rate`: bytes a second a response is sent at; 0 (the default) is no limit.
    pub limit_rate: SizeValue,
    /// `limit_rate_after`: bytes sent before `limit_rate` applies. Default 0.
    pub limit_rate_after: SizeValue,
    /// `proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path`,
    /// `proxy_cookie_flags`: how `Location`, `Refresh` and `Set-Cookie` of proxied
    /// responses are edited.
    pub proxy_edits: Arc<crate::config::proxy_edits::ProxyEdits>,
    /// `proxy_method`: the method sent upstream instead of the client's. Default none.
    pub proxy_method: Option<Template>,
    /// `proxy_set_body`: the body sent upstream instead of the client's (with its
    /// length as `Content-Length`). Default none.
    pub proxy_set_body: Option<Template>,
    /// `proxy_pass_request_headers`: the client's fields go upstream. Default on.
    pub proxy_pass_request_headers: bool,
    /// `proxy_pass_request_body`: the client's body goes upstream. Default on.
    pub proxy_pass_request_body: bool,
    /// `proxy_ignore_headers`: upstream control fields not acted on. Default none.
    pub proxy_ignore_headers: IgnoreHeaders,
    /// `proxy_limit_rate`: bytes a second read from the upstream; 0 (the default) is
    /// no limit.
    pub proxy_limit_rate: u64,
    /// `proxy_bind`: the local address of connections to upstreams. Default none
    /// (`off`: the system picks).
    pub proxy_bind: Option<ProxyBind>,
}

/// `proxy_bind ADDRESS` (IPv4 or IPv6, optionally with a port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyBind {
    /// Written as an address.
    Addr(std::net::SocketAddr),
    /// With variables, read per request as `ADDR[:PORT]`; empty: no bind, and a
    /// value that is no address is logged (`invalid local address`) and not used.
    Template(Template),
}

impl ProxyBind {
    /// `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT` as nginx's `ngx_parse_addr_port`
    /// reads it (port 0 when absent).
    pub fn parse_addr(s: &str) -> Option<std::net::SocketAddr> {
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Some((ip, 0).into());
        }
        if let Ok(a) = s.parse::<std::net::SocketAddr>() {
            return Some(a);
        }
        let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))?;
        Some((inner.parse::<std::net::Ipv6Addr>().ok()?, 0).into())
    }
}

/// `proxy_ignore_headers` as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IgnoreHeaders(pub u16);

impl IgnoreHeaders {
    /// `X-Accel-Redirect`.
    pub const X_ACCEL_REDIRECT: u16 = 1 << 0;
    /// `X-Accel-Expires` (caching only).
    pub const X_ACCEL_EXPIRES: u16 = 1 << 1;
    /// `X-Accel-Limit-Rate`.
    pub const X_ACCEL_LIMIT_RATE: u16 = 1 << 2;
    /// `X-Accel-Buffering`.
    pub const X_ACCEL_BUFFERING: u16 = 1 << 3;
    /// `X-Accel-Charset`.
    pub const X_ACCEL_CHARSET: u16 = 1 << 4;
    /// `Expires` (caching only).
    pub const EXPIRES: u16 = 1 << 5;
    /// `Cache-Control` (caching only).
    pub const CACHE_CONTROL: u16 = 1 << 6;
    /// `Set-Cookie` (caching only).
    pub const SET_COOKIE: u16 = 1 << 7;
    /// `Vary` (caching only).
    pub const VARY: u16 = 1 << 8;

    /// The bit of a field name as `proxy_ignore_headers` takes it (any case).
    pub fn named(name: &str) -> Option<u16> {
        Some(match name.to_ascii_lowercase().as_str() {
            "x-accel-redirect" => Self::X_ACCEL_REDIRECT,
            "x-accel-expires" => Self::X_ACCEL_EXPIRES,
            "x-accel-limit-rate" => Self::X_ACCEL_LIMIT_RATE,
            "x-accel-buffering" => Self::X_ACCEL_BUFFERING,
            "x-accel-charset" => Self::X_ACCEL_CHARSET,
            "expires" => Self::EXPIRES,
            "cache-control" => Self::CACHE_CONTROL,
            "set-cookie" => Self::SET_COOKIE,
            "vary" => Self::VARY,
            _ => return None,
        })
    }

    /// Whether `bit` is ignored.
    pub fn ignores(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// A size that may come from variables (`limit_rate $arg_rate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeValue {
    /// Written as a size.
    Fixed(u64),
    /// Evaluated per request and read as a size (`100k`); a value that is not one is 0.
    Template(Template),
}

impl Default for SizeValue {
    fn default() -> Self {
        SizeValue::Fixed(0)
    }
}

/// The request handler a location ends up with.
#[derive(Debug, Clone)]
pub enum Action {
    /// `proxy_pass`.
    Proxy(ProxyPass),
    /// No `proxy_pass` (a `return` is a [`RewriteOp`]): files under `root` or `alias` (nginx's static,
    /// index and autoindex modules, with `try_files`).
    Static,
}

/// Where a location's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocRoot {
    /// `root PATH`: the file is PATH plus the whole URI. Default `html` under the
    /// prefix, as nginx.
    Root(std::path::PathBuf),
    /// `alias PATH` in a prefix location: the file is PATH plus the URI after that
    /// location's prefix. The prefix stays with the value: a nested location that
    /// inherits the alias strips the prefix of the location that set it, as nginx.
    Alias {
        /// PATH.
        path: std::path::PathBuf,
        /// The prefix of the location `alias` is written in.
        location: String,
    },
    /// `root` or `alias` with variables (`root /srv/$host;`, `alias /srv/static/$1;`),
    /// evaluated per request; a relative value is under `prefix`, as nginx's
    /// `ngx_get_full_name`.
    Vars {
        /// The value.
        path: Template,
        /// The prefix a relative value is taken under.
        prefix: std::path::PathBuf,
        /// How the URI is added to it.
        uri: UriPart,
    },
}

/// How a [`DocRoot::Vars`] value and the URI make the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPart {
    /// `root`: the whole URI is appended.
    Whole,
    /// `alias` in a prefix location: the URI after this prefix (the location's the
    /// alias is written in) is appended.
    AfterPrefix(String),
    /// `alias` in a regex location: the value alone names the file (its captures
    /// carry the URI's parts), as nginx.
    None,
}

/// `if_modified_since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfModifiedSince {
    /// `off`: `If-Modified-Since` is ignored.
    Off,
    /// `exact` (default): 304 when the time equals the file's.
    #[default]
    Exact,
    /// `before`: 304 when the file is not newer.
    Before,
}

/// `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// `expires epoch`: `Expires` in 1970, `Cache-Control: no-cache`.
    Epoch,
    /// `expires max`: `Expires` in 2037, `Cache-Control: max-age=315360000`.
    Max,
    /// `expires TIME` (negative: `Cache-Control: no-cache`).
    After(i64),
    /// `expires modified TIME`: relative to the file's modification time.
    Modified(i64),
    /// `expires @TIME`: the next time the local clock shows this time of day
    /// (seconds since midnight).
    Daily(i64),
}

/// `expires` as configured: a value, or one a variable gives per request.
#[derive(Debug, Clone)]
pub enum ExpiresConf {
    /// A value written out.
    Fixed(Expires),
    /// `expires [modified] $var`: the template's value read as `expires` reads its
    /// argument for each response (`off`, empty or invalid: no fields).
    Var {
        /// `modified` was given.
        modified: bool,
        /// The value.
        value: Template,
    },
}

impl ExpiresConf {
    /// The value for one response; `eval` gives a template's value. A variable that
    /// gives `off`, nothing or an invalid value means no fields (nginx sends none).
    pub fn resolve(&self, eval: impl FnOnce(&Template) -> Vec<u8>) -> Option<Expires> {
        match self {
            ExpiresConf::Fixed(e) => Some(*e),
            ExpiresConf::Var { modified, value } => {
                let v = eval(value);
                Expires::parse(*modified, std::str::from_utf8(&v).ok()?)
                    .ok()
                    .flatten()
            }
        }
    }
}

impl Expires {
    /// The statuses nginx's headers filter sets `expires` on (its `safe_status`).
    pub fn applies_to(status: u16) -> bool {
        matches!(
            status,
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        )
    }

    /// `expires`' argument (after `modified`, when given): `Ok(None)` for `off`,
    /// `Err(())` when it is not a value nginx accepts.
    #[allow(clippy::result_unit_err)]
    pub fn parse(modified: bool, v: &str) -> Result<Option<Expires>, ()> {
        let secs = |t: &str| -> Result<i64, ()> {
            let (neg, t) = match t.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let dur = super::validate::values::parse_time(t).ok_or(())?;
            let s = i64::try_from(dur.as_secs()).map_err(|_| ())?;
            Ok(if neg { -s } else { s })
        };
        Ok(match (modified, v) {
            (false, "off") => None,
            (false, "epoch") => Some(Expires::Epoch),
            (false, "max") => Some(Expires::Max),
            (false, t) if t.starts_with('@') => {
                let day = secs(&t[1..])?;
                if !(0..86_400).contains(&day) {
                    return Err(());
                }
                Some(Expires::Daily(day))
            }
            (true, t) => Some(Expires::Modified(secs(t)?)),
            (false, t) => Some(Expires::After(secs(t)?)),
        })
    }
}

/// `try_files FILE ... FALLBACK`.
#[derive(Debug, Clone)]
pub struct TryFiles {
    /// Files to try in order.
    pub files: Vec<TryEntry>,
    /// What to do when none exists.
    pub fallback: TryFallback,
}

/// One file of `try_files`.
#[derive(Debug, Clone)]
pub struct TryEntry {
    /// The name, as a URI of the location.
    pub name: Template,
    /// The argument as written ends in `/`: a directory is tried (nginx decides it from
    /// the configuration, not from the value, so `$uri` never asks for one).
    pub dir: bool,
}

/// The last argument of `try_files`.
#[derive(Debug, Clone)]
pub enum TryFallback {
    /// `=CODE`.
    Status(u16),
    /// `@name`: a named location.
    Named(String),
    /// A URI: an internal redirect.
    Uri(Template),
}

/// File name extension → MIME type (`types { }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MimeTypes {
    /// Lower-case extension → type.
    pub by_ext: std::collections::HashMap<String, String>,
}

impl MimeTypes {
    /// nginx's built-in table, used without any `types` block.
    pub fn nginx_default() -> MimeTypes {
        let mut by_ext = std::collections::HashMap::new();
        for (ext, t) in [
            ("html", "text/html"),
            ("gif", "image/gif"),
            ("jpg", "image/jpeg"),
        ] {
            by_ext.insert(ext.to_owned(), t.to_owned());
        }
        MimeTypes { by_ext }
    }

    /// The type of a file name by its extension, if known.
    pub fn of(&self, name: &str) -> Option<&str> {
        let ext = name.rsplit_once('.')?.1;
        if ext.contains('/') {
            return None;
        }
        self.by_ext
            .get(ext)
            .or_else(|| self.by_ext.get(&ext.to_ascii_lowercase()))
            .map(String::as_str)
    }
}

/// How `autoindex` writes a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingConf {
    /// `autoindex_format`; default html.
    pub format: ListingFormat,
    /// `autoindex_exact_size`; default on (sizes in bytes, else rounded K, M, G).
    pub exact_size: bool,
    /// `autoindex_localtime`; default off (HTML times in UTC, else in local time).
    pub localtime: bool,
}

impl Default for ListingConf {
    fn default() -> Self {
        ListingConf {
            format: ListingFormat::Html,
            exact_size: true,
            localtime: false,
        }
    }
}

/// `autoindex_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListingFormat {
    /// `html` (the default).
    #[default]
    Html,
    /// `xml`.
    Xml,
    /// `json`.
    Json,
    /// `jsonp`: JSON wrapped in the `callback` argument's function, if there is one.
    Jsonp,
}

/// Static file settings of a location (nginx's core, index, autoindex, headers and
/// not-modified modules).
#[derive(Debug, Clone)]
pub struct FilesConf {
    /// `root` or `alias`.
    pub doc: DocRoot,
    /// `index`, in order, with variables evaluated per request; default `index.html`.
    pub index: Vec<Template>,
    /// `try_files`; none by default (not inherited, as in nginx).
    pub try_files: Option<TryFiles>,
    /// `types`; default nginx's built-in three.
    pub types: Arc<MimeTypes>,
    /// `default_type`; default `text/plain`.
    pub default_type: String,
    /// `etag`; default on.
    pub etag: bool,
    /// `if_modified_since`; default exact.
    pub if_modified_since: IfModifiedSince,
    /// `log_not_found`; default on.
    pub log_not_found: bool,
    /// `autoindex`; default off.
    pub autoindex: bool,
    /// `autoindex_format`, `autoindex_exact_size` and `autoindex_localtime`.
    pub listing: ListingConf,
    /// `expires`; default off.
    pub expires: Option<ExpiresConf>,
    /// `disable_symlinks on`; default off.
    pub disable_symlinks: bool,
    /// `max_ranges`: more satisfiable ranges than this get the whole file, and 0
    /// turns ranges off (no `Accept-Ranges`); `None` (the default) sets no limit.
    pub max_ranges: Option<u32>,
    /// `gzip_static`: send `FILE.gz` in place of `FILE`. Default off.
    pub gzip_static: GzipStatic,
}

/// nginx's lingering close: instead of closing a connection the client may still be
/// sending to (which resets it, and can destroy the response before the client read
/// it), ferrolb shuts its side down and reads what comes for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lingering {
    /// `lingering_close off|on|always`: `on` (the default) lingers when the client may
    /// still send (an error answered before the request was read whole, or bytes left
    /// behind the request); `always` after every response that closes.
    pub mode: LingeringMode,
    /// `lingering_time`: the most it reads for. Default 30 s.
    pub time: Duration,
    /// `lingering_timeout`: the most it waits for each read. Default 5 s.
    pub timeout: Duration,
}

/// `lingering_close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LingeringMode {
    /// Close at once.
    Off,
    /// When the client may still be sending.
    #[default]
    On,
    /// After every response that closes the connection.
    Always,
}

/// `gzip_static off|on|always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GzipStatic {
    /// Never.
    #[default]
    Off,
    /// When the client may get gzip ([`GzipConf`]).
    On,
    /// Whatever the client says.
    Always,
}

/// When a client may get a gzipped response (nginx's `ngx_http_gzip_ok`), and whether
/// responses say they vary by it.
#[derive(Debug, Clone)]
pub struct GzipConf {
    /// `gzip`: compress responses on the fly. Default off.
    pub enable: bool,
    /// `gzip_types`: the MIME types compressed; `text/html` always is. Default
    /// `text/html`.
    pub types: GzipTypes,
    /// `gzip_min_length`: responses whose `Content-Length` is below it stay plain (a
    /// response of unknown length is compressed). Default 20.
    pub min_length: u64,
    /// `gzip_comp_level`: 1 (fastest, the default) to 9.
    pub level: u32,
    /// `gzip_vary`: `Vary: Accept-Encoding` on responses that could have been gzipped.
    /// Default off.
    pub vary: bool,
    /// `gzip_http_version`: the least request version; `1.0` or `1.1` (default) as
    /// the minor version.
    pub http_version_minor: u8,
    /// `gzip_proxied`: for requests with `Via`. Default `off`.
    pub proxied: GzipProxied,
    /// `gzip_disable`: User-Agent patterns (caseless) that never get gzip. Default none.
    pub disable: Vec<Regex>,
    /// `gzip_disable msie6`: MSIE 4 and 5, and 6 without `SV1`, never get gzip.
    pub disable_msie6: bool,
}

impl Default for GzipConf {
    fn default() -> Self {
        GzipConf {
            enable: false,
            types: GzipTypes::default(),
            min_length: 20,
            level: 1,
            vary: false,
            http_version_minor: 1,
            proxied: GzipProxied::default(),
            disable: Vec::new(),
            disable_msie6: false,
        }
    }
}

/// `gzip_types`: which responses are compressed, by their MIME type (the
/// `Content-Type` before any `;`, compared caselessly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GzipTypes {
    /// `gzip_types *`: every type.
    Any,
    /// These types, lowercase; `text/html` is always among them.
    List(Vec<String>),
}

impl Default for GzipTypes {
    fn default() -> Self {
        GzipTypes::List(vec!["text/html".to_owned()])
    }
}

impl GzipTypes {
    /// Whether a response with this `Content-Type` value is compressed; without a
    /// type, only with `*` (nginx's `ngx_http_test_content_type`).
    pub fn matches(&self, content_type: Option<&[u8]>) -> bool {
        if *self == GzipTypes::Any {
            return true;
        }
        let Some(ct) = content_type else {
            return false;
        };
        let mime = ct
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if mime.is_empty() {
            return false;
        }
        match self {
            GzipTypes::Any => true,
            GzipTypes::List(list) => list.iter().any(|t| mime.eq_ignore_ascii_case(t.as_bytes())),
        }
    }
}

/// `gzip_proxied` as a set of nginx's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GzipProxied(pub u16);

impl GzipProxied {
    /// `off` (the default when the set is empty).
    pub const OFF: u16 = 1 << 0;
    /// `expired`: the response has `Expires` (in the past for nginx's static module).
    pub const EXPIRED: u16 = 1 << 1;
    /// `no-cache`: the response's `Cache-Control` has `no-cache`.
    pub const NO_CACHE: u16 = 1 << 2;
    /// `no-store`.
    pub const NO_STORE: u16 = 1 << 3;
    /// `private`.
    pub const PRIVATE: u16 = 1 << 4;
    /// `no_last_modified`: the response has no `Last-Modified`.
    pub const NO_LAST_MODIFIED: u16 = 1 << 5;
    /// `no_etag`: the response has no `ETag`.
    pub const NO_ETAG: u16 = 1 << 6;
    /// `auth`: the request has `Authorization`.
    pub const AUTH: u16 = 1 << 7;
    /// `any`.
    pub const ANY: u16 = 1 << 8;
}

impl FilesConf {
    /// The file a URI names (`$request_filename`): `root` plus the URI, or `alias` plus
    /// the URI after its location's prefix, or a regex location's `alias` alone. `eval`
    /// evaluates a value with variables. `None` when a value with variables makes a
    /// path that could leave it (a `..` component, a NUL byte) or is empty: such a
    /// file is never looked up.
    pub fn file_for(&self, uri: &str, eval: &dyn Fn(&Template) -> Vec<u8>) -> Option<PathBuf> {
        fn join(base: &std::path::Path, rest: &str) -> PathBuf {
            // As bytes: a `/`-led URI must not replace the base, as `Path::join` would.
            let mut s = base.as_os_str().to_owned();
            if !rest.is_empty() && !rest.starts_with('/') && !base.as_os_str().is_empty() {
                let ends_with_slash = base.as_os_str().to_string_lossy().ends_with('/');
                if !ends_with_slash {
                    s.push("/");
                }
            }
            s.push(rest);
            PathBuf::from(s)
        }
        // A URI outside the prefix (a `try_files` entry) is appended whole, as nginx.
        let after = |location: &str| uri.strip_prefix(location).unwrap_or(uri);
        match &self.doc {
            DocRoot::Root(root) => Some(join(root, uri)),
            DocRoot::Alias { path, location } => Some(join(path, after(location))),
            DocRoot::Vars { uri: part, .. } => {
                let base = self.evaluated_root(eval)?;
                let path = match part {
                    UriPart::Whole => join(&base, uri),
                    UriPart::AfterPrefix(location) => join(&base, after(location)),
                    UriPart::None => base,
                };
                let escapes = path
                    .components()
                    .any(|c| c == std::path::Component::ParentDir);
                (!escapes).then_some(path)
            }
        }
    }

    /// The file a `try_files` entry names: as [`Self::file_for`], except that a regex
    /// location's `alias` gets the entry appended (nginx's try_files handler adds the
    /// tried URI to the alias value there, where the request's own URI is not added).
    pub fn try_file_for(
        &self,
        candidate: &str,
        eval: &dyn Fn(&Template) -> Vec<u8>,
    ) -> Option<PathBuf> {
        if !self.alias_names_file() {
            return self.file_for(candidate, eval);
        }
        let mut base = self.evaluated_root(eval)?.into_os_string();
        base.push(candidate);
        let path = PathBuf::from(base);
        let escapes = path
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        (!escapes).then_some(path)
    }

    /// `$document_root`: the `root` or `alias` path, evaluated when it has variables
    /// (`None` when that gives nothing usable).
    pub fn document_root(&self, eval: &dyn Fn(&Template) -> Vec<u8>) -> Option<PathBuf> {
        match &self.doc {
            DocRoot::Root(p) | DocRoot::Alias { path: p, .. } => Some(p.clone()),
            DocRoot::Vars { .. } => self.evaluated_root(eval),
        }
    }

    fn evaluated_root(&self, eval: &dyn Fn(&Template) -> Vec<u8>) -> Option<PathBuf> {
        let DocRoot::Vars { path, prefix, .. } = &self.doc else {
            return None;
        };
        let value = eval(path);
        if value.is_empty() || value.contains(&0) {
            return None;
        }
        use std::os::unix::ffi::OsStrExt as _;
        Some(prefix.join(std::ffi::OsStr::from_bytes(&value)))
    }

    /// True for a regex location's `alias`: the value alone names the file.
    pub fn alias_names_file(&self) -> bool {
        matches!(
            self.doc,
            DocRoot::Vars {
                uri: UriPart::None,
                ..
            }
        )
    }
}

/// The protocol spoken to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1 (`proxy_pass`).
    #[default]
    Http,
    /// uWSGI's binary protocol (`uwsgi_pass`): the request as a packet of variables,
    /// the answer as an HTTP response.
    Uwsgi,
}

/// One `uwsgi_param NAME VALUE [if_not_empty]`.
#[derive(Debug, Clone)]
pub struct UwsgiParam {
    /// The variable name, as written.
    pub name: String,
    /// Its value.
    pub value: Template,
    /// `if_not_empty`: left out when the value is empty.
    pub if_not_empty: bool,
}

/// The uwsgi module's request settings of a location.
#[derive(Debug, Clone)]
pub struct UwsgiConf {
    /// `uwsgi_param` lines, in order (inherited as a whole, as nginx). Default none.
    pub params: Vec<UwsgiParam>,
    /// Request fields a `uwsgi_param HTTP_NAME` replaces: `NAME` lowercase with `_`
    /// for `-`, as nginx compares them.
    pub replaced_fields: Vec<String>,
    /// `uwsgi_modifier1`. Default 0 (a WSGI request).
    pub modifier1: u8,
    /// `uwsgi_modifier2`. Default 0.
    pub modifier2: u8,
    /// `uwsgi_pass_request_headers`: the request's fields as `HTTP_*` variables.
    /// Default on.
    pub pass_request_headers: bool,
    /// `uwsgi_pass_request_body`. Default on.
    pub pass_request_body: bool,
}

impl Default for UwsgiConf {
    fn default() -> Self {
        UwsgiConf {
            params: Vec::new(),
            replaced_fields: Vec::new(),
            modifier1: 0,
            modifier2: 0,
            pass_request_headers: true,
            pass_request_body: true,
        }
    }
}

/// A `proxy_pass` (or `uwsgi_pass`) target.
#[derive(Debug, Clone)]
pub struct ProxyPass {
    /// What the upstream speaks.
    pub protocol: UpstreamProtocol,
    /// Index into [`Http::upstreams`].
    pub upstream: usize,
    /// `http`, `https` or `uwsgi`.
    pub scheme: String,
    /// The host part as written, nginx's `$proxy_host` (`myproject`, `127.0.0.1:8000`).
    pub proxy_host: String,
    /// The URI part (`/app/` in `http://up/app/`), if any. With one, the part of the
    /// request URI that matched a prefix location is replaced by it; without, the
    /// request URI passes unchanged.
    pub uri: Option<String>,
    /// The prefix of the location the directive sits in (for the replacement above).
    pub location_prefix: Option<String>,
    /// `proxy_pass` with variables (`http://$backend`): the whole URL, evaluated per
    /// request. The host then names an `upstream` group, or is an address, or is
    /// resolved with `resolver`; a URI part is sent as it is (the whole request URI),
    /// none sends the client's. `upstream`, `proxy_host` and `uri` are then the
    /// request's, not the configuration's.
    pub url: Option<Template>,
    /// `https://`: how to run TLS to the upstream (from the location's
    /// `proxy_ssl_*`); `None` for `http://`.
    pub tls: Option<Arc<crate::config::tls::UpstreamTls>>,
}

/// `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]`: the DNS servers
/// that resolve `proxy_pass` hosts given by variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolverConf {
    /// The servers, port 53 unless given.
    pub servers: Vec<std::net::SocketAddr>,
    /// `valid=`: how long an answer is used, instead of its TTL. Default: the TTL.
    pub valid: Option<Duration>,
    /// `ipv4=`: ask for A records. Default on.
    pub ipv4: bool,
    /// `ipv6=`: ask for AAAA records. Default on.
    pub ipv6: bool,
}

/// `keepalive_disable`: the browsers a connection is not kept alive for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepaliveDisable {
    /// `msie6`: POST requests from MSIE 4 to 6 (6 without `SV1`).
    pub msie6: bool,
    /// `safari`: Safari on macOS (and the like), not Chrome.
    pub safari: bool,
}

/// `client_body_buffer_size`'s default: nginx's two 4 KiB memory pages.
pub const DEFAULT_CLIENT_BODY_BUFFER_SIZE: u64 = 8 * 1024;

/// `client_body_in_file_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyInFileOnly {
    /// Only bodies larger than `client_body_buffer_size` go to a file, unlinked at once.
    #[default]
    Off,
    /// Every body goes to a file that stays after the request.
    On,
    /// Every body goes to a file removed when the request is done.
    Clean,
}

/// `proxy_http_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHttpVersion {
    /// `1.0` (default).
    #[default]
    Http10,
    /// `1.1`.
    Http11,
}

/// The conditions under which a request goes on to the next peer
/// (`proxy_next_upstream`), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUpstream(pub u16);

impl NextUpstream {
    /// `error`: connect error, or error while sending / reading the head.
    pub const ERROR: u16 = 1 << 0;
    /// `timeout`.
    pub const TIMEOUT: u16 = 1 << 1;
    /// `invalid_header`: empty or unparsable response head.
    pub const INVALID_HEADER: u16 = 1 << 2;
    /// `http_500`.
    pub const HTTP_500: u16 = 1 << 3;
    /// `http_502`.
    pub const HTTP_502: u16 = 1 << 4;
    /// `http_503`.
    pub const HTTP_503: u16 = 1 << 5;
    /// `http_504`.
    pub const HTTP_504: u16 = 1 << 6;
    /// `http_403`.
    pub const HTTP_403: u16 = 1 << 7;
    /// `http_404`.
    pub const HTTP_404: u16 = 1 << 8;
    /// `http_429`.
    pub const HTTP_429: u16 = 1 << 9;
    /// `non_idempotent`: allow retrying POST, LOCK, PATCH after they were sent.
    pub const NON_IDEMPOTENT: u16 = 1 << 10;

    /// nginx's default, `error timeout`.
    pub const DEFAULT: NextUpstream = NextUpstream(Self::ERROR | Self::TIMEOUT);
    /// `off`.
    pub const OFF: NextUpstream = NextUpstream(0);

    /// Whether a flag is set.
    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// The flag for a response status, if `proxy_next_upstream` can name it.
    pub fn flag_for_status(status: u16) -> Option<u16> {
        Some(match status {
            500 => Self::HTTP_500,
            502 => Self::HTTP_502,
            503 => Self::HTTP_503,
            504 => Self::HTTP_504,
            403 => Self::HTTP_403,
            404 => Self::HTTP_404,
            429 => Self::HTTP_429,
            _ => return None,
        })
    }
}

impl Default for NextUpstream {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One status of an `error_page` line (`error_page 500 502 /50x.html;` is two).
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// The status it catches: 300–599, never 499.
    pub status: u16,
    /// The status the client gets for the page.
    pub response: ErrorPageStatus,
    /// Where the page is: `/uri` (an internal redirect, the method becomes GET unless
    /// HEAD), `@name` (a named location, the request unchanged), or anything else (a
    /// redirect the client follows). May hold variables, evaluated per request.
    pub target: Template,
    /// The arguments after `?` of a `/uri` target without variables.
    pub args: Option<String>,
}

/// The status an `error_page` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPageStatus {
    /// No `=`: the status that was caught (400 for nginx's 494–497). A redirect target
    /// gets 302.
    Caught,
    /// `=` alone: whatever the page's location answers.
    OfPage,
    /// `=CODE`.
    Code(u16),
}

/// An `add_header name value [always]` line.
#[derive(Debug, Clone)]
pub struct AddHeader {
    /// Header name as written.
    pub name: String,
    /// Value.
    pub value: Template,
    /// `always`: also on error responses (otherwise only 200, 201, 204, 206, 301, 302,
    /// 303, 304, 307, 308, as nginx).
    pub always: bool,
}

/// `access_log` lines of one level. Default: `logs/access.log` in the `combined`
/// format. As nginx, a level with any `access_log` replaces the inherited ones, and
/// `access_log off` at a level turns off every log of that level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogConf {
    /// `access_log off` (or only `/dev/null`).
    Off,
    /// One entry per `access_log` line, in file order; each request is written to
    /// every one whose condition holds.
    Logs(Vec<AccessLogTarget>),
}

impl AccessLogConf {
    /// The targets, none for `off`.
    pub fn targets(&self) -> &[AccessLogTarget] {
        match self {
            AccessLogConf::Off => &[],
            AccessLogConf::Logs(t) => t,
        }
    }

    /// True when some target's format has an `$upstream_*` list variable.
    pub fn uses_upstream(&self) -> bool {
        self.targets().iter().any(|t| {
            [&t.format, &t.condition, &t.path_template]
                .into_iter()
                .flatten()
                .any(|f| f.uses_upstream)
        })
    }

    /// True when some target's format has `$sent_http_NAME`.
    pub fn uses_sent_head(&self) -> bool {
        self.targets().iter().any(|t| {
            [&t.format, &t.condition, &t.path_template]
                .into_iter()
                .flatten()
                .any(|f| f.uses_sent_head())
        })
    }
}

/// One `access_log PATH [FORMAT [buffer=SIZE [gzip[=LEVEL]] [flush=TIME] [if=COND]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogTarget {
    /// The file (with a `path_template`: the path as written, under the prefix).
    pub path: PathBuf,
    /// A path with variables (`access_log logs/$host.log`): rendered for each line
    /// (response variables included) and opened for it, appending, as nginx does
    /// without `open_log_file_cache`. `None` for a fixed path.
    pub path_template: Option<Arc<LogFormat>>,
    /// The `log_format`; `None` for nginx's `combined`.
    pub format: Option<Arc<LogFormat>>,
    /// `if=`: the line is skipped when this renders empty or `0`. Kept as a
    /// format without escaping, so it is rendered as lines are (response variables
    /// such as `$status` included). Default none: always written.
    pub condition: Option<Arc<LogFormat>>,
    /// `buffer=`, `flush=`, `gzip`: how the file is written. They belong to the file:
    /// every `access_log` of one path shares them.
    pub buffering: LogBuffering,
    /// `access_log syslog:...`: lines go to a syslog server instead of `path` (which
    /// is then empty). Default none.
    pub syslog: Option<SyslogTarget>,
}

/// `syslog:server=ADDR[:PORT][,facility=F][,severity=S][,tag=T][,nohostname]`: one
/// RFC 3164 datagram per line, as nginx sends them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyslogTarget {
    /// `server=`: a UDP address (port 514 when not given) or `unix:/path` (a
    /// datagram socket such as `/dev/log`).
    pub server: Endpoint,
    /// `facility=`: 0 (`kern`) to 23 (`local7`, the default).
    pub facility: u8,
    /// `severity=`: 0 (`emerg`) to 7 (`debug`); default 6 (`info`).
    pub severity: u8,
    /// `tag=`: up to 32 letters, digits and `_`; default `nginx`.
    pub tag: String,
    /// `nohostname`: the header leaves out the host name.
    pub nohostname: bool,
}

/// How an access log file is written (`buffer=`, `flush=`, `gzip=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogBuffering {
    /// `buffer=SIZE`: lines are kept until this many bytes would be exceeded (or the
    /// flush time passes, or on reload, reopen and stop). 0 (the default): each line
    /// is written at once. `gzip` without `buffer=` gives 64 KiB, as nginx.
    pub size: usize,
    /// `flush=TIME`: the longest a buffered line waits. Default none: until the
    /// buffer fills.
    pub flush: Option<std::time::Duration>,
    /// `gzip[=LEVEL]`: each buffer is written as one gzip member at this level
    /// (1..=9; `gzip` alone is 1), so `zcat` reads the file. Default none.
    pub gzip: Option<u32>,
}

/// `log_format NAME [escape=default|json|none] STRING ...;`: the strings concatenated and
/// split into parts at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    /// The name as declared.
    pub name: String,
    /// How variable values are escaped (literals never are). Default [`LogEscape::Default`].
    pub escape: LogEscape,
    /// Literal and variable parts in order.
    pub parts: Vec<TemplatePart>,
    /// Whether any part is an `$upstream_*` variable that lists every attempt: only
    /// then does forwarding record per-attempt data.
    pub uses_upstream: bool,
}

impl LogFormat {
    /// True when the format has `$sent_http_NAME`: the response head sent must then be
    /// kept for the line.
    pub fn uses_sent_head(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, TemplatePart::Var(Var::SentHttp(_))))
    }
}

/// `log_format … escape=`: how variable values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogEscape {
    /// `"`, `\`, bytes below 0x20 and from 0x7f up become `\xHH`; a missing value is `-`.
    #[default]
    Default,
    /// JSON string escaping (`\"`, `\\`, `\n`, `\u00XX`); a missing value is empty.
    Json,
    /// Values as they are; a missing value is empty.
    None,
}

/// A string with `$variables`, split at parse time so evaluation is a walk over parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// Literal and variable parts in order.
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// A template with no variables.
    pub fn literal(s: &str) -> Self {
        Template {
            parts: if s.is_empty() {
                Vec::new()
            } else {
                vec![TemplatePart::Literal(s.to_owned())]
            },
        }
    }

    /// True when the template contains no variable.
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, TemplatePart::Literal(_)))
    }

    /// True when the template uses an `$upstream_*` variable: the attempts at peers
    /// must then be recorded for it.
    pub fn uses_upstream(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                TemplatePart::Var(
                    Var::UpstreamAddr
                        | Var::UpstreamStatus
                        | Var::UpstreamResponseTime
                        | Var::UpstreamConnectTime
                        | Var::UpstreamHeaderTime
                        | Var::UpstreamResponseLength
                        | Var::UpstreamBytesReceived
                        | Var::UpstreamBytesSent
                        | Var::UpstreamHttp(_)
                        | Var::UpstreamCookie(_)
                )
            )
        })
    }
}

/// One part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// A variable evaluated per request.
    Var(Var),
}

/// The variables ferrolb knows. Unknown variables are a configuration error, as in nginx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$host`: Host header without port, lowercase, else the server name.
    Host,
    /// `$http_NAME`: a request header; NAME lowercase with `_` for `-` (stored here with
    /// `-`, lowercase, e.g. `x-real-ip`). `$http_host` is `Http("host")`.
    Http(String),
    /// `$cookie_NAME`.
    Cookie(String),
    /// `$arg_NAME`.
    Arg(String),
    /// `$remote_addr`.
    RemoteAddr,
    /// `$remote_port`.
    RemotePort,
    /// `$proxy_add_x_forwarded_for`: the incoming X-Forwarded-For plus `, $remote_addr`.
    ProxyAddXForwardedFor,
    /// `$scheme`.
    Scheme,
    /// `$server_addr`.
    ServerAddr,
    /// `$server_port`.
    ServerPort,
    /// `$server_name`.
    ServerName,
    /// `$server_protocol`.
    ServerProtocol,
    /// `$request_uri`: the original URI with arguments.
    RequestUri,
    /// `$uri`: the path without arguments.
    Uri,
    /// `$args` / `$query_string`.
    Args,
    /// `$is_args`: `?` when there are arguments.
    IsArgs,
    /// `$request_method`.
    RequestMethod,
    /// `$request`: the request line.
    Request,
    /// `$proxy_host`.
    ProxyHost,
    /// `$proxy_port`.
    ProxyPort,
    /// `$upstream_addr`: the peer being tried in headers; in logs every peer tried,
    /// joined by `, `.
    UpstreamAddr,
    /// `$upstream_status` (logs, `add_header`): one status per attempt (502/504 for
    /// failed ones).
    UpstreamStatus,
    /// `$upstream_http_NAME`: a field of the upstream's response head (NAME as in
    /// [`Var::Http`]).
    UpstreamHttp(String),
    /// `$upstream_cookie_NAME`: the value of the cookie NAME in the upstream's
    /// `Set-Cookie` fields (the first that sets it).
    UpstreamCookie(String),
    /// `$limit_rate`: the rate `set $limit_rate` gave the response, in bytes a
    /// second; 0 before one is set (nginx takes `limit_rate` itself when the response
    /// starts).
    LimitRate,
    /// `$sent_http_NAME`: a field of the response head sent to the client (in the log),
    /// or of the head made so far (in `add_header`, after the lines before it);
    /// empty before the response (`return`, `set`, `proxy_set_header`).
    SentHttp(String),
    /// `$sent_trailer_NAME`: a trailer field added so far by `add_trailer` (in
    /// `add_trailer` values); empty elsewhere.
    SentTrailer(String),
    /// `$upstream_response_time` (logs): seconds per attempt, millisecond precision.
    UpstreamResponseTime,
    /// `$upstream_connect_time` (logs): seconds per attempt, `-` when it did not connect.
    UpstreamConnectTime,
    /// `$upstream_header_time` (logs): seconds per attempt, `-` without a response head.
    UpstreamHeaderTime,
    /// `$upstream_response_length`: each attempt's response body bytes.
    UpstreamResponseLength,
    /// `$upstream_bytes_received`: each attempt's response bytes, head and body.
    UpstreamBytesReceived,
    /// `$upstream_bytes_sent`: each attempt's request bytes, head and body.
    UpstreamBytesSent,
    /// `$status` (logs).
    Status,
    /// `$gzip_ratio` (logs): bytes in over bytes out of a body compressed on the fly.
    GzipRatio,
    /// `$time_local` (logs).
    TimeLocal,
    /// `$time_iso8601` (logs).
    TimeIso8601,
    /// `$msec` (logs): seconds since the epoch with milliseconds, at log time.
    Msec,
    /// `$request_time` (logs): seconds from the first byte of the request head to the
    /// end of the response, millisecond precision.
    RequestTime,
    /// `$body_bytes_sent` (logs).
    BodyBytesSent,
    /// `$bytes_sent` (logs): response head and body bytes.
    BytesSent,
    /// `$request_length`: request head plus declared body length.
    RequestLength,
    /// `$remote_user`: the user name of an `Authorization: Basic` header.
    RemoteUser,
    /// `$limit_req_status`: `PASSED`, `DELAYED`, `REJECTED`, `DELAYED_DRY_RUN`,
    /// `REJECTED_DRY_RUN`, or empty when no `limit_req` applied.
    LimitReqStatus,
    /// `$limit_conn_status`: `PASSED`, `REJECTED`, `REJECTED_DRY_RUN`, or empty.
    LimitConnStatus,
    /// `$realip_remote_addr`: the connection's peer, whatever `set_real_ip_from` made
    /// of `$remote_addr`.
    RealipRemoteAddr,
    /// `$realip_remote_port`.
    RealipRemotePort,
    /// `$proxy_protocol_addr`: the client address of the PROXY protocol header.
    ProxyProtocolAddr,
    /// `$proxy_protocol_port`.
    ProxyProtocolPort,
    /// `$proxy_protocol_server_addr`: the destination address of the PROXY header.
    ProxyProtocolServerAddr,
    /// `$proxy_protocol_server_port`.
    ProxyProtocolServerPort,
    /// `$proxy_protocol_tlv_NAME`: a TLV of a PROXY protocol v2 header.
    ProxyProtocolTlv(TlvName),
    /// `$connection`: the connection serial number.
    Connection,
    /// `$connection_requests`: requests on this connection so far, this one included.
    ConnectionRequests,
    /// `$pipe`: `p` when the request was pipelined, else `.`.
    Pipe,
    /// `$hostname`.
    Hostname,
    /// `$request_filename`: the file `$uri` names under the location's `root`/`alias`.
    RequestFilename,
    /// `$document_root`: the location's `root` or `alias`.
    DocumentRoot,
    /// `$realpath_root`: `$document_root` with symbolic links resolved.
    RealpathRoot,
    /// `$request_id`: 32 random hex digits, the same for every use in one request.
    RequestId,
    /// `$pid`: the process id.
    Pid,
    /// `$nginx_version`: the nginx version ferrolb answers as (`1.22.1`).
    NginxVersion,
    /// `$https`: `on` on a TLS connection, else empty.
    Https,
    /// `$http2`: `h2`, `h2c`, or empty for HTTP/1.
    Http2,
    /// `$ssl_protocol`: `TLSv1.2` or `TLSv1.3`; empty without TLS.
    SslProtocol,
    /// `$ssl_cipher`: the suite's OpenSSL name.
    SslCipher,
    /// `$ssl_server_name`: the name the client sent by SNI.
    SslServerName,
    /// `$ssl_client_verify`: `NONE`, `SUCCESS` or `FAILED:reason`.
    SslClientVerify,
    /// `$ssl_session_reused`: `r` when the session was resumed, else `.`.
    SslSessionReused,
    /// `$ssl_curve`: the key exchange group agreed, by OpenSSL's name.
    SslCurve,
    /// `$ssl_curves`: the groups the client offered.
    SslCurves,
    /// `$ssl_client_s_dn`: the client certificate's subject (RFC 2253).
    SslClientSDn,
    /// `$ssl_client_i_dn`: its issuer (RFC 2253).
    SslClientIDn,
    /// `$ssl_client_serial`: its serial number in hex.
    SslClientSerial,
    /// `$ssl_client_fingerprint`: the SHA-1 of its DER, in hex.
    SslClientFingerprint,
    /// `$ssl_client_raw_cert`: it in PEM.
    SslClientRawCert,
    /// `$ssl_client_cert`: it in PEM, lines after the first indented by a tab.
    SslClientCert,
    /// `$ssl_client_escaped_cert`: it in PEM, URI-escaped.
    SslClientEscapedCert,
    /// `$ssl_session_id`: the TLS session's identity in hex (64 digits), the same on
    /// every connection that resumes the session.
    SslSessionId,
    /// `$ssl_ciphers`: the suites the client offered, by OpenSSL's names, `:`-separated.
    SslCiphers,
    /// `$ssl_client_s_dn_legacy`: the client certificate's subject in OpenSSL's one-line
    /// form (`/C=US/O=Org/CN=client`).
    SslClientSDnLegacy,
    /// `$ssl_client_i_dn_legacy`: its issuer in that form.
    SslClientIDnLegacy,
    /// `$ssl_client_v_start`: its start of validity (`Nov 30 10:10:19 2026 GMT`).
    SslClientVStart,
    /// `$ssl_client_v_end`: its end of validity.
    SslClientVEnd,
    /// `$ssl_client_v_remain`: whole days until it expires (0 once expired).
    SslClientVRemain,
    /// `$content_type`, `$content_length`: the request's fields.
    ContentType,
    /// See [`Var::ContentType`].
    ContentLength,
    /// `$connection_time`: seconds (with milliseconds) since the connection opened.
    ConnectionTime,
    /// `$request_body_file`: the name of the file the request body was written to.
    RequestBodyFile,
    /// `$request_body`: the request body when it was read into memory (a body with a
    /// `Content-Length` that arrived with its head, up to the 64 KiB buffer); empty
    /// otherwise (a chunked or larger body, which nginx would hold in a file or in
    /// buffers it does not expose either).
    RequestBody,
    /// `$binary_remote_addr`: the client address in 4 (IPv4) or 16 bytes.
    BinaryRemoteAddr,
    /// `$date_gmt`, `$date_local`: now, as nginx's SSI formats it
    /// (`Monday, 30-Nov-2026 03:30:00 GMT`).
    DateGmt,
    /// See [`Var::DateGmt`].
    DateLocal,
    /// `$1`..`$9`: a group of the last regex that matched (location, `rewrite`, `if`,
    /// `map`).
    Capture(u8),
    /// A user variable (`set $name`, or a named regex capture): a slot of
    /// [`Http::user_vars`]. Empty until set, as nginx's uninitialized variables.
    User(usize),
    /// A `map` variable: an index into [`Http::maps`], evaluated when used.
    Map(usize),
    /// A `geo` variable: an index into [`Http::geos`].
    Geo(usize),
    /// A `split_clients` variable: an index into [`Http::split_clients`].
    SplitClients(usize),
    /// A name no level declares; carried for error messages only, it never appears in
    /// a validated template.
    #[doc(hidden)]
    Unknown(String),
}

/// Which TLV `$proxy_protocol_tlv_NAME` reads (nginx's names: `alpn`, `authority`,
/// `unique_id`, `ssl`, `netns`, `0xHH`; inside the SSL TLV `ssl_verify`,
/// `ssl_version`, `ssl_cn`, `ssl_cipher`, `ssl_sig_alg`, `ssl_key_alg`, `ssl_0xHH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvName {
    /// A TLV of the header, by type.
    Top(u8),
    /// A sub-TLV of the SSL TLV (type 0x20), by type.
    Ssl(u8),
    /// The SSL TLV's `verify` field, in decimal.
    SslVerify,
}

impl TlvName {
    /// The name after `proxy_protocol_tlv_`; `None` when nginx knows no such TLV.
    pub fn parse(name: &str) -> Option<TlvName> {
        let hex = |s: &str| {
            let h = s.strip_prefix("0x")?;
            (!h.is_empty() && h.len() <= 8)
                .then(|| u32::from_str_radix(h, 16).ok())
                .flatten()
                .and_then(|n| u8::try_from(n).ok())
        };
        Some(match name {
            "alpn" => TlvName::Top(0x01),
            "authority" => TlvName::Top(0x02),
            "unique_id" => TlvName::Top(0x05),
            "ssl" => TlvName::Top(0x20),
            "netns" => TlvName::Top(0x30),
            "ssl_verify" => TlvName::SslVerify,
            "ssl_version" => TlvName::Ssl(0x21),
            "ssl_cn" => TlvName::Ssl(0x22),
            "ssl_cipher" => TlvName::Ssl(0x23),
            "ssl_sig_alg" => TlvName::Ssl(0x24),
            "ssl_key_alg" => TlvName::Ssl(0x25),
            other => match other.strip_prefix("ssl_") {
                Some(h) => TlvName::Ssl(hex(h)?),
                None => TlvName::Top(hex(other)?),
            },
        })
    }
}

/// One directive of the rewrite module, run in order in the rewrite phase.
#[derive(Debug, Clone)]
pub enum RewriteOp {
    /// `return CODE [TEXT|URL]` / `return URL`: ends the request.
    Return {
        /// Status code; 444 closes the connection without a response.
        code: u16,
        /// Body text, or the `Location` for 301, 302, 303, 307, 308.
        text: Option<Template>,
    },
    /// `rewrite REGEX REPLACEMENT [FLAG]`.
    Rewrite(Box<RewriteRule>),
    /// `set $name VALUE`.
    Set {
        /// The user variable slot.
        slot: usize,
        /// The value.
        value: Template,
    },
    /// `set $limit_rate VALUE`: the response's rate from now on, a size (an invalid
    /// one leaves it as it was, as nginx).
    SetLimitRate(Template),
    /// `break`: stops this level's rewrite directives.
    Break,
    /// `if (CONDITION) { ... }`.
    If(Box<IfBlock>),
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]`.
#[derive(Debug, Clone)]
pub struct RewriteRule {
    /// Matched against `$uri`.
    pub regex: Regex,
    /// The pattern as written (for `rewrite_log`).
    pub pattern: String,
    /// Named captures of the regex as (group, user variable slot).
    pub named_captures: Vec<(usize, usize)>,
    /// The replacement, without a final `?`.
    pub replacement: Template,
    /// The replacement has a `?` (new arguments): the request's are joined with `&`.
    pub has_args: bool,
    /// A final `?`: the request's arguments are dropped.
    pub drop_args: bool,
    /// What happens after a match.
    pub flag: RewriteFlag,
}

/// The last argument of `rewrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteFlag {
    /// No flag: go on with the next directive; the location is searched again after
    /// the level's directives (in a location).
    None,
    /// `last`: stop, search the location again with the new URI.
    Last,
    /// `break`: stop, stay in this location.
    Break,
    /// `redirect` (or a replacement starting with `http://`, `https://`, `$scheme`):
    /// 302 with `Location`.
    Redirect,
    /// `permanent`: 301 with `Location`.
    Permanent,
}

/// An `if` block: its condition, its directives, and (in a location) the settings of
/// the implicit location nginx makes of it.
#[derive(Debug, Clone)]
pub struct IfBlock {
    /// The condition.
    pub condition: Condition,
    /// Rewrite directives inside, run when the condition holds; then the enclosing
    /// level's directives go on.
    pub ops: Vec<RewriteOp>,
    /// In a location: the block's own settings (the location's, with the block's
    /// `proxy_pass`, `add_header`, ... over them), which the request uses once the
    /// condition held. `None` at server level, where nginx switches no settings.
    pub location: Option<Arc<LocSettings>>,
}

/// An `if` condition, nginx's set.
#[derive(Debug, Clone)]
pub enum Condition {
    /// `($var)`: true unless empty or `0`.
    Value(Template),
    /// `($var = text)` / `($var != text)`.
    Equals {
        /// The variable side.
        left: Template,
        /// The text side.
        right: Template,
        /// `!=`.
        negate: bool,
    },
    /// `($var ~ re)`, `~*` (caseless), `!~`, `!~*`.
    Matches {
        /// The variable side.
        left: Template,
        /// The compiled regex.
        regex: Regex,
        /// Named captures as (group, user variable slot).
        named_captures: Vec<(usize, usize)>,
        /// `!~`, `!~*`.
        negate: bool,
    },
    /// `-f`, `-d`, `-e`, `-x` and their `!` forms.
    File {
        /// The path.
        path: Template,
        /// What is tested.
        test: FileTest,
        /// The `!` form.
        negate: bool,
    },
}

/// What `-f`, `-d`, `-e`, `-x` test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTest {
    /// `-f`: a regular file.
    File,
    /// `-d`: a directory.
    Dir,
    /// `-e`: a file, directory or symbolic link.
    Exists,
    /// `-x`: executable.
    Executable,
}

/// A `~re` / `~*re` key of a `map`.
#[derive(Debug, Clone)]
pub struct MapRegex {
    /// The compiled regex.
    pub regex: Regex,
    /// Its named captures as (group, user variable slot).
    pub named_captures: Vec<(usize, usize)>,
    /// The value when it matches (may use the captures).
    pub value: Template,
}

/// `map SOURCE $name { ... }` at http level.
#[derive(Debug, Clone)]
pub struct MapConf {
    /// The variable's name, without `$`.
    pub name: String,
    /// What is looked up.
    pub source: Template,
    /// `hostnames`: keys may be wildcards, a final dot of the source is ignored.
    pub hostnames: bool,
    /// `volatile`: not cached for the request (ferrolb evaluates every use anyway
    /// when set; otherwise the first value is kept, as nginx).
    pub volatile: bool,
    /// Exact keys, lower-cased (nginx compares them caselessly).
    pub exact: std::collections::HashMap<String, Template>,
    /// `hostnames` wildcards in file order: `.example.com`, `*.example.com`,
    /// `www.example.*`.
    pub wildcards: Vec<(ServerName, Template)>,
    /// `~re` / `~*re` keys in file order, with their named captures.
    pub regexes: Vec<MapRegex>,
    /// `default`; empty when not given.
    pub default: Template,
}

/// `geo [$address] $name { ... }` at http level (`ngx_http_geo_module`).
#[derive(Debug, Clone)]
pub struct GeoConf {
    /// The variable's name, without `$`.
    pub name: String,
    /// The address looked up: `None` for the client's (`$remote_addr`), else the
    /// value of this variable, parsed as an address.
    pub source: Option<Template>,
    /// `proxy ADDR|CIDR`: when the address is one of these, the one the last
    /// `X-Forwarded-For` names is looked up instead. Empty by default.
    pub proxies: Vec<crate::config::geo::Cidr>,
    /// `proxy_recursive`: walk `X-Forwarded-For` back past every trusted proxy.
    pub proxy_recursive: bool,
    /// `volatile`: found again at each use; otherwise kept for the request, as nginx.
    pub volatile: bool,
    /// The networks or ranges and their values.
    pub table: GeoTable,
}

/// The values of a `geo` block.
#[derive(Debug, Clone)]
pub enum GeoTable {
    /// Networks, longest prefix first; `default` is `0.0.0.0/0` and `::/0`.
    Cidr(crate::config::geo::PrefixTable<String>),
    /// `ranges`: IPv4 ranges, and the value of an address in none (`default`, empty
    /// when not given).
    Ranges {
        /// The ranges.
        ranges: crate::config::geo::RangeTable<String>,
        /// `default`.
        default: String,
    },
}

/// `split_clients STRING $name { PERCENT VALUE; ... }` at http level.
#[derive(Debug, Clone)]
pub struct SplitClientsConf {
    /// The variable's name, without `$`.
    pub name: String,
    /// The string hashed (MurmurHash2).
    pub key: Template,
    /// In file order: the bucket's upper bound on the 32-bit hash (exclusive; `None`
    /// for `*`, which takes every hash), and its value.
    pub parts: Vec<(Option<u32>, String)>,
}
