//! Evaluation of nginx variables (`$host`, `$remote_addr`, …) in `proxy_set_header`,
//! `add_header`, `return`, `rewrite`, `if`, `set`, `map` and `log_format` templates.

use crate::net::proxy_protocol::ProxyAddrs;
use crate::net::tls::TlsFacts;
use crate::net::ClientAddr;
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};

use crate::config::{Endpoint, FilesConf, Http, MapConf, ServerName, Template, TemplatePart, Var};

mod added_fields;
mod geo;
mod split_clients;
mod upstream;

use crate::http1::RequestHead;
pub use added_fields::{append_fields, last_chunk, sent_field, trailer_expected, AddedField};
pub use geo::forwarded;
pub use split_clients::murmur2;
pub use upstream::{head_field, seconds, upstream_value, AttemptPeer, Traffic, UpstreamAttempt};

/// Groups `$0`..`$9` a regex match keeps (nginx's `$1`..`$9`).
const KEPT_CAPTURES: usize = 10;

/// Locks one of [`Locals`]' cells. Uncontended (one request, one task); a `Mutex`
/// rather than a `RefCell` only so a connection's future stays `Send`. A panic while
/// one was held leaves a value that is still usable.
fn cell<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one request's rewrite phase leaves for its variables: `set` values, the groups
/// of the last regex match, `map` results (each computed once, when first used, as
/// nginx does unless the map is `volatile`) and rewritten arguments.
#[derive(Debug)]
pub struct Locals<'a> {
    /// The `map`, `geo` and `split_clients` blocks the variables come from.
    http: &'a Http,
    user: Mutex<Vec<Option<Vec<u8>>>>,
    captures: Mutex<Vec<Option<Vec<u8>>>>,
    map_values: Mutex<Vec<Kept>>,
    args: Mutex<Option<Vec<u8>>>,
    /// `$request_id`, made when first used.
    request_id: Mutex<Option<[u8; 32]>>,
    /// `$limit_req_status` and `$limit_conn_status`, once a limit applied.
    limit_status: Mutex<[Option<&'static str>; 2]>,
    /// When the request's first bytes were at hand (`$request_time` before the log).
    started: Mutex<Option<std::time::Instant>>,
    /// The client connection's facts (`$connection_time`, `$connection_requests`,
    /// `$pipe`).
    connection_facts: Mutex<Option<ConnectionFacts>>,
    /// `$status` before the response: an error page's status.
    status: Mutex<Option<u16>>,
    /// The attempts at peers so far, the one being relayed last, while its head is
    /// being relayed (`$upstream_*` in `add_header`).
    upstream: Mutex<Vec<UpstreamAttempt>>,
    /// `geo` values, found when first used and kept for the request (unless the block
    /// is `volatile`), as nginx keeps them.
    geo_values: Mutex<Vec<Kept>>,
    /// `split_clients` values, kept the same way.
    split_values: Mutex<Vec<Kept>>,
    /// Where the proxy kept the request body (`$request_body`, `$request_body_file`).
    body: Mutex<KeptBody>,
    /// The rate `set $limit_rate` gave the response.
    limit_rate: Mutex<Option<u64>>,
}

/// What the connection-level variables read for one request.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionFacts {
    /// When the connection was accepted (`$connection_time`).
    pub opened: std::time::Instant,
    /// Requests on it so far, this one included (`$connection_requests`).
    pub requests: u64,
    /// The request was in the buffer behind the previous one (`$pipe` is `p`).
    pub pipelined: bool,
}

/// Where a request body was kept once read, for `$request_body` and
/// `$request_body_file`.
#[derive(Debug, Default, Clone)]
pub enum KeptBody {
    /// As it arrived, in the client buffer behind the head (or not read at all).
    #[default]
    InBuffer,
    /// Decoded into memory (a chunked body).
    Decoded(Vec<u8>),
    /// Written to the file of this name; `$request_body` is then empty.
    File(std::path::PathBuf),
}

/// Appends the kept value of slot `index` of `cells`, or `find`s it and keeps it
/// (every use finds it again when `volatile`). A cycle (a block whose address or key
/// uses itself) gives the empty value.
fn kept_or_find(
    cells: &Mutex<Vec<Kept>>,
    index: usize,
    volatile: bool,
    out: &mut Vec<u8>,
    find: impl FnOnce() -> Vec<u8>,
) {
    match cell(cells).get(index) {
        Some(Kept::Known(v)) if !volatile => {
            out.extend_from_slice(v);
            return;
        }
        Some(Kept::Computing) | None => return,
        _ => {}
    }
    cell(cells)[index] = Kept::Computing;
    let v = find();
    out.extend_from_slice(&v);
    cell(cells)[index] = Kept::Known(v);
}

/// 16 random bytes in hex, nginx's `$request_id`.
fn new_request_id() -> [u8; 32] {
    let bytes: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A `map`, `geo` or `split_clients` value for the request.
#[derive(Debug, Clone)]
enum Kept {
    NotYet,
    /// Being computed: a use now is a cycle (`map $a $b` and `map $b $a`).
    Computing,
    Known(Vec<u8>),
}

impl<'a> Locals<'a> {
    /// Nothing set yet, for the variables `http` declares.
    pub fn new(http: &'a Http) -> Self {
        Locals {
            http,
            user: Mutex::new(vec![None; http.user_vars.len()]),
            captures: Mutex::new(Vec::new()),
            map_values: Mutex::new(vec![Kept::NotYet; http.maps.len()]),
            args: Mutex::new(None),
            request_id: Mutex::new(None),
            limit_status: Mutex::new([None, None]),
            started: Mutex::new(None),
            connection_facts: Mutex::new(None),
            status: Mutex::new(None),
            upstream: Mutex::new(Vec::new()),
            geo_values: Mutex::new(vec![Kept::NotYet; http.geos.len()]),
            split_values: Mutex::new(vec![Kept::NotYet; http.split_clients.len()]),
            body: Mutex::new(KeptBody::InBuffer),
            limit_rate: Mutex::new(None),
        }
    }

    /// `set $limit_rate`: the response's rate, bytes a second (0: none).
    pub fn set_limit_rate(&self, rate: u64) {
        *cell(&self.limit_rate) = Some(rate);
    }

    /// The rate `set $limit_rate` gave, if it ran.
    pub fn limit_rate(&self) -> Option<u64> {
        *cell(&self.limit_rate)
    }

    /// Where the request body was kept once read.
    pub fn set_body(&self, kept: KeptBody) {
        *cell(&self.body) = kept;
    }

    /// Keeps `body`, the proxied request's body as it was in the client buffer, when
    /// `$request_body` still reads it from there: an error page's internal redirect
    /// replaces the buffered request with one without a body, and nginx's
    /// `$request_body` still has the body the proxy read.
    pub fn keep_buffered_body(&self, body: &[u8]) {
        let mut kept = cell(&self.body);
        if matches!(*kept, KeptBody::InBuffer) && !body.is_empty() {
            *kept = KeptBody::Decoded(body.to_vec());
        }
    }

    /// The attempts at peers so far, the one whose response is being relayed last
    /// (with its response fields): `$upstream_*` evaluate over them.
    pub fn set_upstream(&self, attempts: Vec<UpstreamAttempt>) {
        *cell(&self.upstream) = attempts;
    }

    /// The status an error page answers with (nginx's `err_status`), `$status` until
    /// the response is made; `None`: no status yet (`$status` is `000`).
    pub fn set_status(&self, status: Option<u16>) {
        *cell(&self.status) = status;
    }

    /// When the request's first bytes were at hand: `$request_time` counts from it.
    pub fn set_started(&self, at: std::time::Instant) {
        *cell(&self.started) = Some(at);
    }

    /// The client connection's facts for this request.
    pub fn set_connection_facts(&self, facts: ConnectionFacts) {
        *cell(&self.connection_facts) = Some(facts);
    }

    /// Sets `$limit_req_status` (`PASSED`, `DELAYED`, `REJECTED`, `*_DRY_RUN`).
    pub fn set_limit_req_status(&self, status: &'static str) {
        cell(&self.limit_status)[0] = Some(status);
    }

    /// Sets `$limit_conn_status` (`PASSED`, `REJECTED`, `REJECTED_DRY_RUN`).
    pub fn set_limit_conn_status(&self, status: &'static str) {
        cell(&self.limit_status)[1] = Some(status);
    }

    /// `$limit_req_status`, once a `limit_req` applied to the request.
    pub fn limit_req_status(&self) -> Option<&'static str> {
        cell(&self.limit_status)[0]
    }

    /// `$limit_conn_status`, once a `limit_conn` applied to the request.
    pub fn limit_conn_status(&self) -> Option<&'static str> {
        cell(&self.limit_status)[1]
    }

    /// `$request_id` of this request: made on first use, the same afterwards.
    pub fn request_id(&self) -> [u8; 32] {
        *cell(&self.request_id).get_or_insert_with(new_request_id)
    }

    /// `set $var value`.
    pub fn set(&self, slot: usize, value: Vec<u8>) {
        if let Some(v) = cell(&self.user).get_mut(slot) {
            *v = Some(value);
        }
    }

    /// Keeps the groups of a match as `$0`..`$9`, and its named groups in their
    /// variables (`named` pairs a group with a user variable slot).
    pub fn keep_captures(&self, caps: &regex::Captures<'_>, named: &[(usize, usize)]) {
        let groups = caps
            .iter()
            .take(KEPT_CAPTURES)
            .map(|m| m.map(|m| m.as_str().as_bytes().to_vec()))
            .collect();
        *cell(&self.captures) = groups;
        for &(group, slot) in named {
            let value = caps.get(group).map_or(&[][..], |m| m.as_str().as_bytes());
            self.set(slot, value.to_vec());
        }
    }

    /// A failed match forgets the previous one's groups, as nginx.
    pub fn forget_captures(&self) {
        cell(&self.captures).clear();
    }

    /// Group `n` of the last match, if it took part.
    pub fn capture(&self, n: usize) -> Option<Vec<u8>> {
        cell(&self.captures).get(n).cloned().flatten()
    }

    /// Replaces the request's arguments (`rewrite` with `?`); empty means none.
    pub fn set_args(&self, args: Vec<u8>) {
        *cell(&self.args) = Some(args);
    }

    /// The arguments when a `rewrite` replaced them.
    pub fn rewritten_args(&self) -> Option<Vec<u8>> {
        cell(&self.args).clone()
    }
}

/// What a variable can be evaluated against: one request on one connection.
#[derive(Debug)]
pub struct RequestVars<'a> {
    /// The buffer the request head was parsed from.
    pub buf: &'a [u8],
    /// The parsed head.
    pub head: &'a RequestHead,
    /// The client (`$remote_addr`), after `set_real_ip_from`.
    pub remote: ClientAddr,
    /// The connection's peer (`$realip_remote_addr`).
    pub peer: ClientAddr,
    /// The connection's PROXY protocol addresses (`$proxy_protocol_addr`).
    pub proxy_protocol: Option<&'a ProxyAddrs>,
    /// The listening address the client connected to.
    pub local: &'a Endpoint,
    /// The matched server's primary name.
    pub server_name: &'a str,
    /// What the client's TLS handshake agreed on; `None` on a plain connection
    /// (`$scheme` is then `http`).
    pub tls: Option<&'a TlsFacts>,
    /// The normalised path (`$uri`).
    pub uri: &'a str,
    /// The `proxy_pass` host as written, when proxying.
    pub proxy_host: &'a str,
    /// The peer address being tried, when proxying.
    pub upstream_addr: Option<&'a Endpoint>,
    /// The rewrite phase's variables, where there is one (absent: user variables and
    /// captures are empty).
    pub locals: Option<&'a Locals<'a>>,
    /// `$connection`: the client connection's serial number; 0 where there is no
    /// connection (the variable is then empty).
    pub connection: u64,
    /// The location's files (`$request_filename`, `$document_root`).
    pub files: Option<&'a FilesConf>,
    /// `$http2`: `"h2"` or `"h2c"` for a request over HTTP/2, `None` for HTTP/1
    /// (`$server_protocol` and `$request` then say `HTTP/2.0`).
    pub http2: Option<&'static str>,
}

impl RequestVars<'_> {
    /// `$scheme`: `https` on a TLS connection, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header_value(self.buf, name)
    }

    /// `$host`: the host from an absolute-form target, else the Host header without its
    /// port, else the server name. Lower-cased as nginx does.
    pub fn host(&self, out: &mut Vec<u8>) {
        let raw = match &self.head.absolute_host {
            Some(r) => Some(&self.buf[r.clone()]),
            None => self.header("host"),
        };
        match raw {
            Some(h) if !h.is_empty() => {
                let h = crate::http1::request::host_name(h).unwrap_or(h);
                out.extend(h.iter().map(u8::to_ascii_lowercase));
            }
            _ => out.extend_from_slice(self.server_name.as_bytes()),
        }
    }

    /// Calls `f` with the request's arguments: the rewritten ones if a `rewrite` set
    /// them, else the target's.
    fn with_query<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self.locals.and_then(Locals::rewritten_args) {
            Some(args) => f((!args.is_empty()).then_some(&args[..])),
            None => f(self.head.query(self.buf)),
        }
    }

    /// A map's value: the first key that matches the source (exact, then hostname
    /// wildcards, then regexes in order), else the default; computed once per request.
    fn map_value(&self, locals: &Locals<'_>, index: usize, out: &mut Vec<u8>) {
        let Some(map) = locals.http.maps.get(index) else {
            return;
        };
        kept_or_find(&locals.map_values, index, map.volatile, out, || {
            let mut source = self.evaluated(&map.source);
            if map.hostnames && source.last() == Some(&b'.') {
                source.pop();
            }
            let source = String::from_utf8_lossy(&source).into_owned();
            self.evaluated(find_in_map(map, &source, &mut |c, n| {
                locals.keep_captures(c, n)
            }))
        });
    }

    /// The `map` block `index` of the configuration, when there are variables.
    pub fn map_conf(&self, index: usize) -> Option<&MapConf> {
        self.locals.and_then(|l| l.http.maps.get(index))
    }

    /// The value of cookie `name` (`$cookie_NAME`), if the request has it.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        // Every `Cookie` field in turn, as nginx searches them.
        self.fields("cookie").find_map(|c| cookie_value(c, name))
    }

    /// The values of every request field named `name` (lowercase), in order.
    fn fields<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.head
            .headers
            .iter()
            .filter(move |h| self.buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value(self.buf))
    }

    /// `$http_NAME`: the first field of that name; nginx 1.22 joins all the `Cookie`
    /// fields with `; ` and all the `X-Forwarded-For` fields with `, `.
    fn http_field(&self, name: &str, out: &mut Vec<u8>) {
        let sep: &[u8] = match name {
            "cookie" => b"; ",
            "x-forwarded-for" => b", ",
            _ => {
                if let Some(v) = self.header(name) {
                    out.extend_from_slice(v);
                }
                return;
            }
        };
        for (i, v) in self.fields(name).enumerate() {
            if i > 0 {
                out.extend_from_slice(sep);
            }
            out.extend_from_slice(v);
        }
    }

    /// Appends the value of one variable.
    pub fn eval_var(&self, var: &Var, out: &mut Vec<u8>) {
        // io::Write on Vec never fails.
        match var {
            Var::Host => self.host(out),
            Var::Http(name) => self.http_field(name, out),
            Var::Cookie(name) => {
                if let Some(v) = self.cookie(name) {
                    out.extend_from_slice(v);
                }
            }
            Var::Arg(name) => self.with_query(|q| {
                if let Some(v) = q.and_then(|q| arg_value(q, name)) {
                    out.extend_from_slice(v);
                }
            }),
            Var::RemoteAddr => self.remote.push_to(out),
            Var::RemotePort => {
                // Empty for a Unix-socket client, as in nginx.
                if let Some(port) = self.remote.port() {
                    let _ = write!(out, "{port}");
                }
            }
            Var::ProxyAddXForwardedFor => {
                // Every X-Forwarded-For line, joined as nginx joins them.
                for v in self.head.header_values(self.buf, "x-forwarded-for") {
                    out.extend_from_slice(v);
                    out.extend_from_slice(b", ");
                }
                self.remote.push_to(out);
            }
            Var::Scheme => out.extend_from_slice(self.scheme().as_bytes()),
            // nginx's `$server_addr` of a Unix listener is its `unix:/path`, and its
            // `$server_port` is empty.
            Var::ServerAddr => match self.local {
                Endpoint::Inet(a) => {
                    let _ = write!(out, "{}", a.ip());
                }
                unix => {
                    let _ = write!(out, "{unix}");
                }
            },
            Var::ServerPort => {
                if let Some(port) = self.local.port() {
                    let _ = write!(out, "{port}");
                }
            }
            Var::ServerName => out.extend_from_slice(self.server_name.as_bytes()),
            Var::ServerProtocol => self.protocol(out),
            Var::Http2 => {
                if let Some(h) = self.http2 {
                    out.extend_from_slice(h.as_bytes());
                }
            }
            Var::RequestUri => self.request_uri(out),
            Var::Uri => out.extend_from_slice(self.uri.as_bytes()),
            Var::Args => self.with_query(|q| {
                if let Some(q) = q {
                    out.extend_from_slice(q);
                }
            }),
            Var::IsArgs => self.with_query(|q| {
                if q.is_some() {
                    out.push(b'?');
                }
            }),
            Var::RequestMethod => out.extend_from_slice(&self.buf[self.head.method_range.clone()]),
            Var::Request => self.request_line(out),
            Var::ProxyHost => out.extend_from_slice(self.proxy_host.as_bytes()),
            Var::ProxyPort => {
                let port = self.proxy_host.rsplit_once(':').map_or("80", |(_, p)| p);
                out.extend_from_slice(port.as_bytes());
            }
            // The peer being tried while the request goes to it; every peer tried
            // once a response is being relayed.
            Var::UpstreamAddr => match (self.upstream_addr, self.locals) {
                (Some(a), _) => {
                    let _ = write!(out, "{a}");
                }
                (None, Some(l)) => {
                    upstream_value(var, &cell(&l.upstream), out);
                }
                (None, None) => {}
            },
            Var::UpstreamStatus
            | Var::UpstreamResponseTime
            | Var::UpstreamConnectTime
            | Var::UpstreamHeaderTime
            | Var::UpstreamResponseLength
            | Var::UpstreamBytesReceived
            | Var::UpstreamBytesSent
            | Var::UpstreamHttp(_)
            | Var::UpstreamCookie(_) => {
                if let Some(l) = self.locals {
                    upstream_value(var, &cell(&l.upstream), out);
                }
            }
            Var::Connection => {
                if self.connection != 0 {
                    let _ = write!(out, "{}", self.connection);
                }
            }
            Var::Msec => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                seconds(out, now);
            }
            Var::Hostname => out.extend_from_slice(crate::config::hostname().as_bytes()),
            Var::RequestLength => {
                // The head plus the declared body: a chunked body's size is only known
                // once it has been relayed.
                let body = match self.head.framing {
                    crate::http1::BodyFraming::Length(n) => n,
                    _ => 0,
                };
                let _ = write!(out, "{}", self.head.head_len as u64 + body);
            }
            Var::Capture(n) => {
                if let Some(v) = self.locals.and_then(|l| l.capture(usize::from(*n))) {
                    out.extend_from_slice(&v);
                }
            }
            Var::User(slot) => {
                if let Some(l) = self.locals {
                    if let Some(Some(v)) = cell(&l.user).get(*slot) {
                        out.extend_from_slice(v);
                    }
                }
            }
            Var::Map(index) => {
                if let Some(l) = self.locals {
                    self.map_value(l, *index, out);
                }
            }
            Var::Geo(index) => {
                if let Some(l) = self.locals {
                    if let Some(g) = l.http.geos.get(*index) {
                        kept_or_find(&l.geo_values, *index, g.volatile, out, || {
                            geo::value(g, self).as_bytes().to_vec()
                        });
                    }
                }
            }
            Var::SplitClients(index) => {
                if let Some(l) = self.locals {
                    if let Some(split) = l.http.split_clients.get(*index) {
                        kept_or_find(&l.split_values, *index, false, out, || {
                            split_clients::value(split, &self.evaluated(&split.key))
                                .as_bytes()
                                .to_vec()
                        });
                    }
                }
            }
            Var::RequestFilename => {
                if let Some(files) = self.files {
                    if let Some(path) = files.file_for(self.uri, &|t| self.evaluated(t)) {
                        out.extend_from_slice(path.as_os_str().as_encoded_bytes());
                    }
                }
            }
            Var::DocumentRoot => {
                if let Some(root) = self
                    .files
                    .and_then(|f| f.document_root(&|t| self.evaluated(t)))
                {
                    out.extend_from_slice(root.as_os_str().as_encoded_bytes());
                }
            }
            Var::RealpathRoot => {
                let root = self
                    .files
                    .and_then(|f| f.document_root(&|t| self.evaluated(t)));
                if let Some(p) = root.and_then(|r| std::fs::canonicalize(r).ok()) {
                    out.extend_from_slice(p.as_os_str().as_encoded_bytes());
                }
            }
            Var::RequestId => match self.locals {
                Some(l) => out.extend_from_slice(&l.request_id()),
                None => out.extend_from_slice(&new_request_id()),
            },
            Var::Pid => {
                let _ = write!(out, "{}", std::process::id());
            }
            Var::NginxVersion => out.extend_from_slice(b"1.22.1"),
            Var::Https => {
                if self.tls.is_some() {
                    out.extend_from_slice(b"on");
                }
            }
            Var::SslProtocol => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.protocol.as_bytes());
                }
            }
            Var::SslCipher => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.cipher.as_bytes());
                }
            }
            Var::SslServerName => {
                if let Some(name) = self.tls.and_then(|t| t.server_name.as_deref()) {
                    out.extend_from_slice(name.as_bytes());
                }
            }
            Var::SslClientVerify => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.client_verify.as_bytes());
                }
            }
            Var::SslClientSDn
            | Var::SslClientIDn
            | Var::SslClientSerial
            | Var::SslClientFingerprint
            | Var::SslClientRawCert
            | Var::SslClientCert
            | Var::SslClientEscapedCert
            | Var::SslClientSDnLegacy
            | Var::SslClientIDnLegacy
            | Var::SslClientVStart
            | Var::SslClientVEnd
            | Var::SslClientVRemain => {
                if let Some(c) = self.tls.and_then(|t| t.client_cert.as_deref()) {
                    match var {
                        Var::SslClientSDnLegacy => {
                            out.extend_from_slice(c.subject_legacy.as_bytes())
                        }
                        Var::SslClientIDnLegacy => {
                            out.extend_from_slice(c.issuer_legacy.as_bytes())
                        }
                        Var::SslClientVStart => c.write_time(c.not_before, out),
                        Var::SslClientVEnd => c.write_time(c.not_after, out),
                        Var::SslClientVRemain => {
                            let _ = write!(out, "{}", c.days_remaining());
                        }
                        Var::SslClientSDn => out.extend_from_slice(c.subject.as_bytes()),
                        Var::SslClientIDn => out.extend_from_slice(c.issuer.as_bytes()),
                        Var::SslClientSerial => out.extend_from_slice(c.serial.as_bytes()),
                        Var::SslClientFingerprint => {
                            out.extend_from_slice(c.fingerprint.as_bytes())
                        }
                        Var::SslClientRawCert => out.extend_from_slice(c.pem.as_bytes()),
                        Var::SslClientCert => c.tabbed_pem(out),
                        _ => c.escaped_pem(out),
                    }
                }
            }
            Var::SslCurve => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.curve.as_bytes());
                }
            }
            Var::SslCurves => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.curves.as_bytes());
                }
            }
            Var::SslSessionId => {
                if let Some(t) = self.tls {
                    for b in &t.session_id {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
            Var::SslCiphers => {
                if let Some(t) = self.tls {
                    out.extend_from_slice(t.ciphers.as_bytes());
                }
            }
            Var::SslSessionReused => {
                if let Some(t) = self.tls {
                    out.push(if t.reused { b'r' } else { b'.' });
                }
            }
            Var::ContentType => {
                if let Some(v) = self.header("content-type") {
                    out.extend_from_slice(v);
                }
            }
            Var::ContentLength => {
                if let Some(v) = self.header("content-length") {
                    out.extend_from_slice(v);
                }
            }
            Var::RequestBodyFile => {
                if let Some(KeptBody::File(path)) = self.locals.map(|l| cell(&l.body).clone()) {
                    out.extend_from_slice(path.as_os_str().as_encoded_bytes());
                }
            }
            Var::RequestBody => {
                let kept = self.locals.map(|l| {
                    let b = cell(&l.body);
                    match &*b {
                        KeptBody::InBuffer => None,
                        KeptBody::Decoded(v) => Some(v.clone()),
                        KeptBody::File(_) => Some(Vec::new()),
                    }
                });
                if let Some(Some(v)) = kept {
                    out.extend_from_slice(&v);
                } else if let crate::http1::BodyFraming::Length(n) = self.head.framing {
                    let start = self.head.head_len;
                    let end = usize::try_from(n).map_or(usize::MAX, |n| start.saturating_add(n));
                    if let Some(body) = self.buf.get(start..end) {
                        out.extend_from_slice(body);
                    }
                }
            }
            // Seconds with milliseconds so far (`add_header X-Time $request_time`); the
            // access log fills in its own at the end.
            Var::RequestTime => {
                if let Some(at) = self.locals.and_then(|l| *cell(&l.started)) {
                    let ms = at.elapsed().as_millis();
                    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
                }
            }
            // Seconds with milliseconds since the connection was accepted.
            Var::ConnectionTime | Var::ConnectionRequests | Var::Pipe => {
                if let Some(c) = self.locals.and_then(|l| *cell(&l.connection_facts)) {
                    match var {
                        Var::ConnectionTime => seconds(out, c.opened.elapsed()),
                        Var::ConnectionRequests => {
                            let _ = write!(out, "{}", c.requests);
                        }
                        _ => out.push(if c.pipelined { b'p' } else { b'.' }),
                    }
                }
            }
            Var::LimitReqStatus => {
                if let Some(s) = self.locals.and_then(Locals::limit_req_status) {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Var::LimitConnStatus => {
                if let Some(s) = self.locals.and_then(Locals::limit_conn_status) {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Var::RealipRemoteAddr => {
                let _ = write!(out, "{}", self.peer);
            }
            Var::RealipRemotePort => {
                if let Some(port) = self.peer.port() {
                    let _ = write!(out, "{port}");
                }
            }
            Var::ProxyProtocolAddr => {
                if let Some(p) = self.proxy_protocol {
                    out.extend_from_slice(p.src_addr.as_bytes());
                }
            }
            Var::ProxyProtocolPort => {
                if let Some(p) = self.proxy_protocol {
                    let _ = write!(out, "{}", p.src_port);
                }
            }
            Var::ProxyProtocolServerAddr => {
                if let Some(p) = self.proxy_protocol {
                    out.extend_from_slice(p.dst_addr.as_bytes());
                }
            }
            Var::ProxyProtocolTlv(name) => {
                let Some(p) = self.proxy_protocol else {
                    return;
                };
                match name {
                    crate::config::TlvName::Top(t) => {
                        if let Some(v) = p.tlv(*t) {
                            out.extend_from_slice(v);
                        }
                    }
                    crate::config::TlvName::SslVerify => {
                        if let Some((verify, _)) = p.ssl() {
                            let _ = write!(out, "{verify}");
                        }
                    }
                    crate::config::TlvName::Ssl(t) => {
                        if let Some((_, subs)) = p.ssl() {
                            if let Some((_, v)) = subs.iter().find(|(k, _)| k == t) {
                                out.extend_from_slice(v);
                            }
                        }
                    }
                }
            }
            Var::ProxyProtocolServerPort => {
                if let Some(p) = self.proxy_protocol {
                    let _ = write!(out, "{}", p.dst_port);
                }
            }
            Var::RemoteUser => {
                if let Some((user, _)) = self.header("authorization").and_then(basic_credentials) {
                    out.extend_from_slice(&user);
                }
            }
            Var::BinaryRemoteAddr => match self.remote.ip() {
                Some(std::net::IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
                Some(std::net::IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
                None => {}
            },
            Var::DateGmt => {
                let _ = write!(
                    out,
                    "{}",
                    chrono::Utc::now().format("%A, %d-%b-%Y %H:%M:%S GMT")
                );
            }
            Var::DateLocal => {
                let _ = write!(
                    out,
                    "{}",
                    chrono::Local::now().format("%A, %d-%b-%Y %H:%M:%S %Z")
                );
            }
            Var::LimitRate => {
                let rate = self.locals.and_then(Locals::limit_rate).unwrap_or(0);
                let _ = write!(out, "{rate}");
            }
            // Before the response, the status of the error being answered, as nginx.
            Var::Status => {
                let status = self.locals.and_then(|l| *cell(&l.status)).unwrap_or(0);
                let _ = write!(out, "{status:03}");
            }
            // Log-only variables (filled by `crate::access_log::PendingLine`) have no value
            // while the request is being forwarded; no response field is made before
            // the response (`add_header` reads them through `added_fields`).
            Var::TimeLocal
            | Var::TimeIso8601
            | Var::BodyBytesSent
            | Var::BytesSent
            | Var::SentHttp(_)
            | Var::SentTrailer(_)
            | Var::GzipRatio
            | Var::Unknown(_) => {}
        }
    }

    /// A whole template's value.
    pub fn evaluated(&self, t: &Template) -> Vec<u8> {
        let mut out = Vec::new();
        self.eval(t, &mut out);
        out
    }

    /// A size setting's value for the request: a template's value read as a size
    /// (`12k`); 0 when it is not one, as nginx's default.
    pub fn size(&self, v: &crate::config::SizeValue) -> u64 {
        match v {
            crate::config::SizeValue::Fixed(n) => *n,
            crate::config::SizeValue::Template(t) => {
                let mut out = Vec::new();
                self.eval(t, &mut out);
                std::str::from_utf8(&out)
                    .ok()
                    .and_then(crate::config::validate::parse_size)
                    .unwrap_or(0)
            }
        }
    }

    /// Appends a whole template.
    pub fn eval(&self, t: &Template, out: &mut Vec<u8>) {
        for part in &t.parts {
            match part {
                TemplatePart::Literal(s) => out.extend_from_slice(s.as_bytes()),
                TemplatePart::Var(v) => self.eval_var(v, out),
            }
        }
    }

    /// Appends `$request_uri`: the target as the client sent it (origin-form; an
    /// absolute-form target without a path gets the `/` it implies).
    pub fn request_uri(&self, out: &mut Vec<u8>) {
        let t = &self.buf[self.head.target.clone()];
        if t.first() != Some(&b'/') && t.first() != Some(&b'*') {
            out.push(b'/');
        }
        out.extend_from_slice(t);
    }

    /// `$request`: the request line.
    pub fn request_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[self.head.method_range.clone()]);
        out.push(b' ');
        self.request_uri(out);
        out.push(b' ');
        self.protocol(out);
    }

    /// `$server_protocol`: `HTTP/1.0`, `HTTP/1.1`, or `HTTP/2.0`.
    pub fn protocol(&self, out: &mut Vec<u8>) {
        if self.http2.is_some() {
            out.extend_from_slice(b"HTTP/2.0");
        } else {
            let _ = write!(out, "HTTP/1.{}", self.head.minor_version);
        }
    }
}

/// The value template of the first key of `map` that matches `source`, keeping a
/// regex key's groups as the request's captures.
/// What [`find_in_map`] does with a regex key's captures (and named captures).
type KeepCaptures<'c> = dyn FnMut(&regex::Captures<'_>, &[(usize, usize)]) + 'c;

fn find_in_map<'m>(
    map: &'m MapConf,
    source: &str,
    keep_captures: &mut KeepCaptures<'_>,
) -> &'m Template {
    let lower = source.to_ascii_lowercase();
    if let Some(t) = map.exact.get(&lower) {
        return t;
    }
    if map.hostnames && !lower.is_empty() {
        // nginx: the longest `*.`/`.` suffix first, then the longest `.*` prefix.
        let suffix = map
            .wildcards
            .iter()
            .filter_map(|(name, t)| match name {
                ServerName::WildcardStart {
                    suffix,
                    matches_bare,
                } if lower.ends_with(suffix.as_str())
                    || (*matches_bare && lower == suffix[1..]) =>
                {
                    Some((suffix.len(), t))
                }
                _ => None,
            })
            .max_by_key(|(len, _)| *len);
        let prefix = || {
            map.wildcards
                .iter()
                .filter_map(|(name, t)| match name {
                    ServerName::WildcardEnd(p) if lower.starts_with(p.as_str()) => {
                        Some((p.len(), t))
                    }
                    _ => None,
                })
                .max_by_key(|(len, _)| *len)
        };
        if let Some((_, t)) = suffix.or_else(prefix) {
            return t;
        }
    }
    if !source.is_empty() {
        for key in &map.regexes {
            if let Some(caps) = key.regex.captures(source) {
                keep_captures(&caps, &key.named_captures);
                return &key.value;
            }
        }
    }
    &map.default
}

/// Appends the value `map` gives `key` when the key is known only once the response
/// is (a map of `$status` in a log format or `access_log ... if=`): the literal text
/// of the value; variables in the value are empty there (the request is gone).
pub fn map_value_after_response(map: &MapConf, key: &str, out: &mut Vec<u8>) {
    let key = match key.strip_suffix('.') {
        Some(k) if map.hostnames => k,
        _ => key,
    };
    for p in &find_in_map(map, key, &mut |_, _| {}).parts {
        if let TemplatePart::Literal(s) = p {
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// The user name and password of an `Authorization: Basic ...` value, read as nginx
/// reads them (`Basic` in any case, spaces before the base64 text, padding optional,
/// the user ends at the first `:`); `None` when it is not such a value.
pub fn basic_credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = value[6..].trim_ascii_start();
    if encoded.is_empty() {
        return None;
    }
    let encoded = encoded
        .strip_suffix(b"==")
        .or_else(|| encoded.strip_suffix(b"="))
        .unwrap_or(encoded);
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .ok()?;
    let colon = memchr::memchr(b':', &decoded)?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

fn cookie_value<'a>(cookies: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookies.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii_start();
        let eq = memchr::memchr(b'=', pair)?;
        (pair[..eq].eq_ignore_ascii_case(name.as_bytes())).then(|| &pair[eq + 1..])
    })
}

fn arg_value<'a>(query: &'a [u8], name: &str) -> Option<&'a [u8]> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| match memchr::memchr(b'=', pair) {
            Some(eq) => pair[..eq]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &pair[eq + 1..]),
            None => pair
                .eq_ignore_ascii_case(name.as_bytes())
                .then_some(&b""[..]),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(cookie_value(b"a=1; sid=xyz; b=2", "sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(b"a=1", "sid"), None);
        assert_eq!(arg_value(b"x=1&page=3", "page"), Some(&b"3"[..]));
        assert_eq!(arg_value(b"flag&x=1", "flag"), Some(&b""[..]));
    }
}
