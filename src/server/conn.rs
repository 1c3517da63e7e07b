//! One client connection: read a head, route it (virtual server, location), answer or
//! forward it, log it, and go on with the next request on the same connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;

use super::boxed::in_box;
use super::charset_downstream::CharsetDownstream;
use super::discard;
use super::error_pages::{self, PageState};
use super::gzip_downstream::GzipDownstream;
use super::h2_downstream::{H2Downstream, H2Stream};
use super::http1_downstream::Http1Downstream;
use super::keepalive_disable;
use super::proxy_target;
use super::rewrite::{self, Answer};
use super::route::{self, Route, Routed};
use super::state::{Runtime, StopMode, Worker};
use super::static_files::{self, Resolved};
use super::tls_handshake::Started;
use super::{uri, vhost};
use crate::access_log::{
    AccessLog, CombinedFields, ConnFacts, LogFileCache, PendingLine, ResponseFacts, SyslogSender,
    UpstreamAttempt,
};
use crate::config::tls::VerifyClient;
use crate::config::Expires;
use crate::config::{
    Action, Level, Lingering, LingeringMode, LocSettings, LogFormat, MapConf, ServerConf,
};
use crate::http1::respond;
use crate::http1::{BodyFraming, Method, RequestHead};
use crate::net::buffers::{Buf, Recycled, REQUEST_HEADS};
use crate::net::io::{self, IoFailure};
use crate::net::{ClientAddr, ClientInfo, Stream, Transport};
use crate::proxy::request_vars;
use crate::proxy::{Forward, RewrittenUri};
use crate::vars::{AddedField, ConnectionFacts, Locals, RequestVars};

/// How long a new connection may take to send its first request head when no server
/// listens on its address any more (a reload dropped it); nginx's
/// `client_header_timeout` default.
const FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How much one read of a request head asks for: a head and a small body usually
/// arrive in one go.
const HEAD_READ: usize = crate::net::buffers::HEAD_BUF;

/// A client connection's task: the TLS handshake or PROXY protocol header when its
/// address has one, then its requests until it closes, errs, or the server stops.
///
/// What an idle keep-alive connection keeps is this future, so it is kept small: the
/// connection is held here once (`conn` is reassigned, never copied into a second
/// local), the rare handshake and every request's state are boxed, and the idle wait
/// polls the socket's readiness instead of keeping a readiness future.
///
/// An async block rather than an `async fn`: a function's future keeps its arguments
/// twice (as passed, and moved into the body), a block's captures are used in place.
///
/// `handshake`: the listening address, when a TLS handshake or a PROXY protocol header
/// comes first ([`super::tls_handshake::is_plain`] is false).
pub(super) fn run(
    worker: Arc<Worker>,
    handshake: Option<Box<crate::config::Endpoint>>,
    mut conn: Started,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    /// Counts the connection in [`Worker::active`] until the task ends.
    struct Active<'w>(&'w Worker);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0
                .active
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    async move {
        let _active = Active(&worker);
        if let Some(listen) = handshake {
            let Started { stream, info, .. } = conn;
            match in_box(|| super::tls_handshake::begin(&worker, &listen, stream, info)).await {
                Some(started) => conn = started,
                None => return,
            }
        }
        if conn
            .info
            .tls()
            .is_some_and(|t| t.alpn.as_deref() == Some(b"h2"))
        {
            // Boxed: an HTTP/1 connection's task must not carry room for it.
            return Box::pin(super::h2::serve(
                &worker,
                &mut conn.stream,
                &conn.info,
                Vec::new(),
            ))
            .await;
        }
        serve(&worker, &mut conn).await;
    }
}

/// Serves a client connection's requests.
async fn serve(worker: &Worker, conn: &mut Started) {
    let stream = &mut conn.stream;
    let info = &conn.info;
    let mut rt: Arc<Runtime> = worker.shared.runtime.load_full();
    let mut cbuf: Option<Buf> = conn.first.take().map(|bytes| {
        let mut b = Buf::head();
        b.extend_from_slice(&bytes);
        b
    });
    let mut served = 0u32;
    // Until a request says which server it is for, the address's default server's
    // `client_header_timeout` applies: to the first byte and to the whole first head.
    let first = {
        let servers = &rt.config.http.servers;
        vhost::find_server(servers, &info.local, None).map_or(FIRST_HEAD_TIMEOUT, |i| {
            servers[i].settings.client_header_timeout
        })
    };
    // Bytes read before (behind a PROXY protocol header, or plain HTTP on a TLS
    // address) are the first request's, not a pipelined one.
    let mut first_request = true;
    let mut idle_timeout = first;
    let mut header_timeout = first;
    let opened = tokio::time::Instant::now();

    loop {
        // Wait for the next request without holding a buffer. Readiness can be
        // spurious (a fresh connection often reports readable with nothing to read), so
        // a buffer is only kept once a read actually returns bytes.
        let mut fresh_read = false;
        while cbuf.as_ref().is_none_or(|b| b.is_empty()) {
            cbuf = None;
            if worker.shared.stop_mode() != StopMode::Running {
                return;
            }
            let readable = std::future::poll_fn(|cx| stream.poll_readable(cx));
            tokio::select! {
                r = tokio::time::timeout(idle_timeout, readable) => {
                    if !matches!(r, Ok(Ok(()))) {
                        return;
                    }
                }
                () = worker.shared.stopping() => return,
            }
            let mut b = Buf::head();
            match stream.try_read_buf(&mut (&mut *b).limit(HEAD_READ)) {
                Ok(0) => return,
                Ok(n) => {
                    if n < HEAD_READ {
                        // The whole request is in: forget the readiness now so the
                        // next wait does not begin with a read that finds nothing.
                        io::drained(stream);
                    }
                    cbuf = Some(b);
                    fresh_read = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        let Some(buf) = cbuf.as_mut() else { return };
        if first_request
            && is_h2_preface(buf)
            && vhost::http2_on(&rt.config.http.servers, &info.local)
        {
            // h2c with prior knowledge, as nginx detects it on an `http2` address.
            let first = buf.to_vec();
            drop(cbuf);
            return in_box(|| super::h2::serve(worker, stream, info, first)).await;
        }
        // `$request_time` counts from here: the first bytes of this request are in
        // the buffer (read just now, or left over from the previous request).
        let started = std::time::Instant::now();
        // Taken before the test: `&&` would skip it after a fresh read and leave the
        // second request counted as the first.
        let was_first = std::mem::take(&mut first_request);
        let pipelined = !fresh_read && !was_first;

        // Pick up a reloaded configuration between requests.
        {
            let current = worker.shared.runtime.load();
            if !Arc::ptr_eq(&rt, &current) {
                rt = Arc::clone(&current);
            }
        }
        served += 1;
        // Asked when the answer is made: a request delayed (limit_req) past the
        // start of a stop is answered with `Connection: close`, as nginx.
        let stopping = || worker.shared.stop_mode() != StopMode::Running;
        // Boxed: a request's state (head parsing, forwarding, relaying) is large and
        // exists only while a request is in progress, so an idle connection's task
        // stays small.
        let request = in_box(|| async {
            // The request's client when a trusted proxy names another (realip).
            let real = std::sync::OnceLock::new();
            let mut ex = Exchange {
                rt: &rt,
                stream: &mut *stream,
                info,
                real: &real,
                served,
                opened,
                stopping: &stopping,
                started,
                pipelined,
                h2: None,
            };
            exchange(&mut ex, buf, header_timeout).await
        });
        match request.await {
            Next::Again { keepalive, header } => {
                idle_timeout = keepalive;
                header_timeout = header;
            }
            Next::Close { client_may_send } => {
                let l = lingering_of(&rt, &info.local);
                let linger = match l.mode {
                    LingeringMode::Off => false,
                    LingeringMode::On => client_may_send,
                    LingeringMode::Always => true,
                };
                if linger {
                    // A stop cuts a lingering close short; one that began while
                    // stopping runs its course.
                    let running = worker.shared.stop_mode() == StopMode::Running;
                    tokio::select! {
                        // Boxed: rare, and its state must not enlarge every idle task.
                        () = Box::pin(lingering_close(stream, l)) => {}
                        () = worker.shared.stopping(), if running => {}
                    }
                } else {
                    // nginx ends a TLS connection with close_notify either way.
                    stream.close_notify();
                }
                return;
            }
        }
    }
}

/// Whether the first bytes of a connection are (the start of) the HTTP/2 client
/// preface: at least its `PRI` method, which no HTTP/1 request has.
fn is_h2_preface(buf: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = buf.len().min(PREFACE.len());
    n >= 3 && buf[..n] == PREFACE[..n]
}

/// Serves one request whose HTTP/1 head (and any body bytes) are in `buf`, on a stream
/// that carries nothing else: an HTTP/2 stream as [`super::h2`] presents it. The same
/// phases as a request on an HTTP/1 connection, and its access log line; `served`:
/// requests on the client connection so far, this one included.
pub(super) async fn serve_request(
    rt: &Runtime,
    stream: &mut Stream,
    info: &ClientInfo,
    buf: &mut Buf,
    served: u32,
    opened: tokio::time::Instant,
    h2: Option<&H2Stream>,
) {
    let header_timeout = {
        let servers = &rt.config.http.servers;
        vhost::find_server(servers, &info.local, None).map_or(FIRST_HEAD_TIMEOUT, |i| {
            servers[i].settings.client_header_timeout
        })
    };
    let real = std::sync::OnceLock::new();
    let mut ex = Exchange {
        rt,
        stream,
        info,
        real: &real,
        served,
        opened,
        stopping: &|| false,
        started: std::time::Instant::now(),
        pipelined: false,
        h2,
    };
    let _ = in_box(|| exchange(&mut ex, buf, header_timeout)).await;
}

/// What the connection does after a request.
enum Next {
    /// Waits for another request, this long at most, and gives its head this long.
    Again {
        keepalive: Duration,
        header: Duration,
    },
    /// Closes; `client_may_send`: the request may not have been read whole (an error
    /// answered early, bytes left behind it), so nginx's lingering close applies.
    Close { client_may_send: bool },
}

/// The lingering settings of the address's default server.
fn lingering_of(rt: &Runtime, local: &crate::config::Endpoint) -> Lingering {
    let servers = &rt.config.http.servers;
    vhost::find_server(servers, local, None).map_or(
        Lingering {
            mode: LingeringMode::On,
            time: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        },
        |i| servers[i].settings.lingering,
    )
}

/// nginx's lingering close: the write side is shut (the client sees the end of the
/// response), then whatever the client still sends is read and dropped until it
/// closes, nothing comes for `timeout`, or `time` is over; only then does the socket
/// close, so the client is not reset before it read the answer.
async fn lingering_close(stream: &mut Stream, l: Lingering) {
    use tokio::io::AsyncWriteExt;
    if stream.shutdown().await.is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + l.time;
    let mut scratch = Buf::head();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(l.timeout.min(left), stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        scratch.clear();
        match stream.try_read_buf(&mut (&mut *scratch).limit(HEAD_READ)) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// One request on a connection, from its first bytes (already in `buf`) to the end
/// of its response, and what the connection does next.
async fn exchange(ex: &mut Exchange<'_>, buf: &mut Buf, header_timeout: Duration) -> Next {
    let info = ex.info;
    let rt = ex.rt;
    // A level's own error log serves the request until its end.
    let _log_scope = crate::log::RequestLogScope::new(info.id);
    let mut head = Recycled::take(&REQUEST_HEADS);
    let mut limits = None;
    let read = io::read_head(
        ex.stream,
        buf,
        io::HeadRead::Chunk(HEAD_READ),
        io::HeadTimeout::Whole(header_timeout),
        crate::http1::MAX_HEAD_BYTES,
        |b: &mut Buf| {
            // nginx's first buffer (`client_header_buffer_size`) is 1k: a head within
            // it needs no look at the limits.
            if b.len() > 1024 {
                let (n, size, _) = *limits.get_or_insert_with(|| head_limits(rt, &info.local));
                oversized(b, n, size)?;
            }
            let (fewest, most) = rt.max_headers_range;
            let parsed = head.parse_limited(b, most)?;
            if parsed == crate::http1::Parsed::Complete && head.headers.len() > fewest {
                let (_, _, max) = *limits.get_or_insert_with(|| head_limits(rt, &info.local));
                // An HTTP/2 request's `:authority` became its first line, `host`: nginx
                // does not count it.
                let max = max + usize::from(ex.h2.is_some() && head.host == Some(0));
                if head.headers.len() > max {
                    return Err(crate::http1::ParseError::TooManyHeaders);
                }
            }
            Ok(parsed)
        },
    )
    .await;
    match read {
        Ok(()) => {}
        Err(io::HeadError::Invalid(e)) => {
            use crate::http1::ParseError;
            match e {
                ParseError::RequestLineTooLong
                | ParseError::HeaderTooLarge
                | ParseError::HeadTooLarge
                | ParseError::TooManyHeaders => crate::log::emit(
                    Level::Info,
                    Some(info.id),
                    format_args!(
                        "client sent {e} while reading client request headers, client: {}",
                        info.remote
                    ),
                ),
                _ => crate::log::emit(
                    Level::Info,
                    Some(info.id),
                    format_args!("client sent invalid request ({e}), client: {}", info.remote),
                ),
            }
            head.keep_refused(e);
            let outcome = refused(ex, buf, &head, e.status_code()).await;
            if let Some(log) = &outcome.log {
                log.write(&outcome, ex.started);
            }
            // The rest of what the client sent is unread: nginx lingers.
            return Next::Close {
                client_may_send: true,
            };
        }
        Err(io::HeadError::Io {
            err: IoFailure::Timeout,
            ..
        }) => {
            crate::log::emit(
                Level::Info,
                Some(info.id),
                format_args!("client timed out (110: Connection timed out) while reading client request headers, client: {}", info.remote),
            );
            reject(ex.stream, 408).await;
            return Next::Close {
                client_may_send: false,
            };
        }
        Err(io::HeadError::Io { .. }) => {
            return Next::Close {
                client_may_send: false,
            }
        }
    }
    drop_invalid_fields(ex, buf, &mut head);
    let outcome = handle(ex, buf, &head).await;
    if let Some(log) = &outcome.log {
        log.write(&outcome, ex.started);
    }
    let unread = outcome.unread_body.is_some();
    // An HTTP/2 stream's front end drops the DATA nobody reads (nginx's `skip_data`).
    let http1 = ex.h2.is_none();
    if let (true, true, Some(rest)) = (http1, outcome.keep_alive, outcome.unread_body) {
        // nginx's discarded body: read and dropped behind the answer, and only a
        // body read to its end lets the connection carry the next request.
        let l = lingering_of(rt, &info.local);
        if !super::discard::rest(ex.stream, buf, rest, l).await {
            return Next::Close {
                client_may_send: false,
            };
        }
    }
    if outcome.keep_alive {
        Next::Again {
            keepalive: outcome.keepalive_timeout,
            header: outcome.header_timeout,
        }
    } else {
        Next::Close {
            client_may_send: outcome.status >= 400 || !buf.is_empty() || unread,
        }
    }
}

/// `large_client_header_buffers` and `max_headers` of the address's default server
/// (the head is read before the virtual server is known).
fn head_limits(rt: &Runtime, local: &crate::config::Endpoint) -> (usize, usize, usize) {
    let servers = &rt.config.http.servers;
    vhost::find_server(servers, local, None).map_or((4, 8192, 1000), |i| {
        let s = &servers[i].settings;
        let (n, size) = s.large_client_header_buffers;
        (n, size, s.max_headers)
    })
}

/// nginx's limits on a head being read into `large_client_header_buffers`: the request
/// line within `size` bytes (else 414), every header line too and the head within
/// `n` × `size` (else 494).
fn oversized(b: &[u8], n: usize, size: usize) -> Result<(), crate::http1::ParseError> {
    use crate::http1::ParseError;
    let end = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(b.len(), |i| i + 4);
    let mut lines = b[..end].split(|&c| c == b'\n');
    if lines.next().is_some_and(|l| l.len() + 1 > size) {
        return Err(ParseError::RequestLineTooLong);
    }
    if lines.any(|l| l.len() + 1 > size) || end > n.saturating_mul(size) {
        return Err(ParseError::HeaderTooLarge);
    }
    Ok(())
}

/// `ignore_invalid_headers` with `underscores_in_headers`, as nginx applies them: with
/// the default server's settings of the address (fields are read before the virtual
/// server is known). A dropped field is never forwarded nor seen as a variable, so a
/// client cannot pass `X_Forwarded_For` for a backend that folds `_` into `-` (Django).
fn drop_invalid_fields(ex: &Exchange<'_>, buf: &[u8], head: &mut RequestHead) {
    // The common case first, without looking up a server: every name is plain.
    if head
        .headers
        .iter()
        .all(|h| h.name(buf).iter().all(|&b| PLAIN_NAME_BYTE[usize::from(b)]))
    {
        return;
    }
    let servers = &ex.rt.config.http.servers;
    let Some(default) = vhost::find_server(servers, &ex.info.local, None) else {
        return;
    };
    let s = &servers[default].settings;
    if !s.ignore_invalid_headers {
        return;
    }
    let underscores = s.underscores_in_headers;
    let valid = |name: &[u8]| {
        name.iter()
            .all(|&b| PLAIN_NAME_BYTE[usize::from(b)] || (underscores && b == b'_'))
    };
    for r in head.drop_fields(buf, |name| !valid(name)) {
        crate::log::emit(
            Level::Info,
            Some(ex.info.id),
            format_args!(
                "client sent invalid header line: \"{}\" while reading client request headers, client: {}",
                String::from_utf8_lossy(&buf[r]),
                ex.info.remote
            ),
        );
    }
}

/// Bytes nginx takes in a header name without question: letters, digits and `-`.
static PLAIN_NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-';
        b += 1;
    }
    t
};

/// The connection-level context of one request.
struct Exchange<'a> {
    rt: &'a Runtime,
    stream: &'a mut Stream,
    /// The client: the connection's, or once realip made it out, `real`'s.
    info: &'a ClientInfo,
    /// The client a trusted proxy named (`set_real_ip_from`), set once per request.
    real: &'a std::sync::OnceLock<ClientInfo>,
    /// Requests on this connection so far, this one included.
    served: u32,
    /// When the connection was accepted (`keepalive_time`).
    opened: tokio::time::Instant,
    /// Whether the server is stopping (then: answer, and close).
    stopping: &'a (dyn Fn() -> bool + Sync),
    /// When the first byte of the request head was at hand (`$request_time`).
    started: std::time::Instant,
    /// Whether the request arrived behind the previous one (`$pipe`).
    pipelined: bool,
    /// The HTTP/2 stream `stream` is a pipe for: a proxied request talks to it directly.
    h2: Option<&'a H2Stream>,
}

/// Writes a bare error response before closing the connection.
async fn reject(stream: &mut Stream, status: u16) {
    let mut out = Buf::head();
    respond::error_page(&mut out, status, false, false, false);
    let _ = io::write_all(stream, &out, Duration::from_secs(5)).await;
}

/// What a handled request leaves for the connection loop.
struct Handled<'a> {
    status: u16,
    body_bytes: u64,
    /// Response head bytes (`$bytes_sent` is this plus `body_bytes`).
    head_bytes: u64,
    /// Peers tried, when the log format lists them.
    attempts: Vec<UpstreamAttempt>,
    /// The response head sent, when the log format has `$sent_http_NAME`.
    sent_head: Vec<u8>,
    /// `$gzip_ratio` of a body compressed on the fly.
    gzip_ratio: Option<String>,
    keep_alive: bool,
    /// What of the request body is still to come after a local answer: read and
    /// dropped before the next request ([`super::discard::rest`]).
    unread_body: Option<crate::http1::BodyRest>,
    keepalive_timeout: Duration,
    header_timeout: Duration,
    log: Option<LogLine<'a>>,
}

/// Answers a head nginx refuses with `status` as nginx does: by the settings of the
/// address's default server (the head named no server nginx would trust), through
/// its `error_page` for the status and its `add_header ... always`; the connection
/// closes after.
async fn refused<'a>(
    ex: &mut Exchange<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    status: u16,
) -> Handled<'a> {
    let servers = &ex.rt.config.http.servers;
    let Some(server) = vhost::find_server(servers, &ex.info.local, None).map(|i| &servers[i])
    else {
        reject(ex.stream, status).await;
        return Handled::nothing(status);
    };
    crate::log::route_request(ex.info.id, server.settings.error_log.as_ref());
    let path = head.path(buf);
    let uri = uri::normalize(path).map_or_else(|_| String::new(), |u| u.into_owned());
    let locals = Locals::new(&ex.rt.config.http);
    locals.set_started(ex.started);
    let mut route = Route::new(uri, path);
    route.refused = Some(status);
    let pass = Pass {
        route,
        pages: PageState::default(),
        log: None,
        first: true,
        close: true,
        conn_slots: Vec::new(),
    };
    let mut handled = serve_pass(ex, server, &locals, buf, head, pass).await;
    // Logged as the status it is on the wire (nginx's 494 is an internal code).
    handled.status = respond::wire_status(handled.status);
    handled
}

impl Handled<'_> {
    /// An answer written without the phases (nothing to log, the connection closes).
    fn nothing(status: u16) -> Self {
        Handled {
            gzip_ratio: None,
            status,
            body_bytes: 0,
            head_bytes: 0,
            attempts: Vec::new(),
            sent_head: Vec::new(),
            keep_alive: false,
            unread_body: None,
            keepalive_timeout: Duration::ZERO,
            header_timeout: Duration::ZERO,
            log: None,
        }
    }
}

/// Routes and answers one request whose head is in `buf`.
async fn handle<'a>(ex: &mut Exchange<'a>, buf: &mut Buf, head: &RequestHead) -> Handled<'a> {
    let (rt, info) = (ex.rt, ex.info);
    let servers = &rt.config.http.servers;
    let host = match &head.absolute_host {
        Some(r) => std::str::from_utf8(&buf[r.clone()]).ok(),
        None => head
            .header_value(buf, "host")
            .and_then(|h| std::str::from_utf8(h).ok()),
    };
    let server: Option<&ServerConf> =
        vhost::find_server(servers, &info.local, host).map(|i| &servers[i]);
    let Some(server) = server else {
        // Only possible with no server at all for this address; valid configs always
        // have a default server per listen address.
        reject(ex.stream, 404).await;
        return Handled::nothing(404);
    };
    crate::log::route_request(info.id, server.settings.error_log.as_ref());
    // nginx's post-read phase: the real client address by the server's settings.
    if let Some(real) = super::admission::real_client(&server.settings, info, head, buf) {
        let _ = ex.real.set(real);
        if let Some(r) = ex.real.get() {
            ex.info = r;
        }
    }
    let info = ex.info;

    let shared_address = || vhost::several_servers(servers, &info.local);
    if let Some(refusal) = tls_refusal(server, info, host, shared_address) {
        // The server's `error_page` for it may redirect (`error_page 497 =301
        // https://$host$request_uri;`), as nginx's does.
        let locals = Locals::new(&rt.config.http);
        let mut answer = Answer::Status(refusal);
        let mut pages = PageState::default();
        if let Some(page) = pages.find(&server.settings, refusal) {
            let mut to = Vec::new();
            RequestVars {
                locals: Some(&locals),
                ..request_vars(head, buf, info, &server.primary_name, "")
            }
            .eval(&page.target, &mut to);
            if !matches!(to.first(), Some(b'/' | b'@')) {
                answer = Answer::Redirect {
                    code: error_pages::redirect_status(page),
                    location: to,
                };
            }
        }
        let redirected = matches!(answer, Answer::Redirect { .. });
        // Through the server's `add_header ... always`, as nginx's error page goes.
        let mut handled = standard_answer(
            ex,
            buf,
            head,
            answer,
            &server.settings,
            false,
            &locals,
            "",
            server,
        )
        .await;
        if redirected {
            return handled;
        }
        // Logged as the status it is on the wire (nginx's 495-497 are internal codes).
        handled.status = respond::wire_status(refusal);
        return handled;
    }
    // HTTP-01 challenges of the ACME client, on any plain-HTTP server (the CA comes
    // to port 80 with the name being validated).
    if matches!(info.transport, crate::net::Transport::Plain) {
        if let Some(key_authorization) = crate::acme::challenge::answer(head.path(buf)) {
            return answer_local(
                ex.stream,
                buf,
                head,
                200,
                Some(key_authorization),
                &server.settings,
                true,
            )
            .await;
        }
    }
    if head.method == Method::Trace {
        // nginx refuses TRACE while reading the head, before any phase: 405, closed.
        crate::log::emit(
            Level::Info,
            Some(info.id),
            format_args!("client sent TRACE method, client: {}", info.remote),
        );
        return answer_local(ex.stream, buf, head, 405, None, &server.settings, false).await;
    }
    let path = head.path(buf);
    // Owned: forwarding rearranges the buffer the path points into.
    let uri = match uri::normalize(path) {
        Ok(u) => u.into_owned(),
        Err(e) => {
            crate::log::emit(
                Level::Info,
                Some(info.id),
                format_args!(
                    "client sent invalid request path ({e}), client: {}",
                    info.remote
                ),
            );
            // Logged by the server's access log, `$uri` empty, as nginx's.
            let locals = Locals::new(&rt.config.http);
            locals.set_started(ex.started);
            let vars_here = || RequestVars {
                locals: Some(&locals),
                ..request_vars(head, buf, info, &server.primary_name, "")
            };
            let log = capture_log(rt, &server.settings, &vars_here, ex, ex.served);
            let mut handled =
                answer_local(ex.stream, buf, head, 400, None, &server.settings, false).await;
            handled.log = log;
            return handled;
        }
    };
    let http = &rt.config.http;
    let locals = Locals::new(http);
    locals.set_started(ex.started);
    locals.set_connection_facts(ConnectionFacts {
        opened: ex.opened.into_std(),
        requests: u64::from(ex.served),
        pipelined: ex.pipelined,
    });
    rewrite::server_name_captures(&server.server_names, host, &http.user_vars, &locals);
    let pass = Pass {
        route: Route::new(uri, path),
        pages: PageState::default(),
        log: None,
        first: true,
        close: false,
        conn_slots: Vec::new(),
    };
    serve_pass(ex, server, &locals, buf, head, pass).await
}

/// One trip of a request through the phases: the client's own, then one per error
/// page (nginx's internal redirects of `error_page`).
struct Pass<'a> {
    route: Route<'a>,
    pages: PageState,
    /// The access log line, captured by the first pass from the client's request (an
    /// error page logs the request the client made, with the final status).
    log: Option<LogLine<'a>>,
    first: bool,
    /// An earlier pass left the request body unread: the connection closes after this
    /// response.
    close: bool,
    /// `limit_conn` counts the request until its response is done.
    conn_slots: Vec<crate::admission::limit_conn::ConnSlot>,
}

/// An error that may get an error page; nothing was written to the client for it.
struct Failure {
    status: u16,
    /// Whether the connection may carry another request after the answer.
    keep: bool,
    /// Fields the page keeps (`WWW-Authenticate` of an intercepted upstream 401).
    kept_fields: Vec<(&'static str, Vec<u8>)>,
    /// What goes out without a page: a redirect (nginx looks its 3xx up in the
    /// `error_page`s too), else the status's standard page.
    unpaged: Option<Answer>,
}

impl Failure {
    fn new(status: u16, keep: bool) -> Self {
        Failure {
            status,
            keep,
            kept_fields: Vec::new(),
            unpaged: None,
        }
    }
}

/// How the content phase ended.
enum Content<'a> {
    Sent(Handled<'a>),
    Failed(Failure),
    /// The upstream's `X-Accel-Redirect`; the buffer holds the request's head (and
    /// whatever follows the request), its body gone.
    AccelRedirect(crate::proxy::AccelRedirect, bool),
}

/// Runs one pass: the phases, then the answer (a `return`, the proxy, the static
/// module) or an error and, when the location has one, its error page in a further
/// pass. Error pages recurse (at most [`rewrite::MAX_URI_CHANGES`] deep): only those
/// further passes are boxed, the first runs inline.
async fn serve_pass<'f, 'a: 'f>(
    ex: &'f mut Exchange<'a>,
    server: &'a ServerConf,
    locals: &'f Locals<'a>,
    buf: &'f mut Buf,
    head: &'f RequestHead,
    mut pass: Pass<'a>,
) -> Handled<'a> {
    let (rt, info, served) = (ex.rt, ex.info, ex.served);
    let Routed {
        settings,
        target,
        answer,
    } = route::run(
        &route::Request {
            server,
            head,
            buf,
            info,
            real: ex.real,
            zones: &rt.limit_zones,
            locals,
        },
        &mut pass.route,
        &mut pass.conn_slots,
    )
    .await;
    // A location's realip (the preaccess phase) may have named the client.
    if let Some(r) = ex.real.get() {
        ex.info = r;
    }
    let info = ex.info;
    // Out of the route while this pass runs; an error page puts a new one back.
    let uri = std::mem::take(&mut pass.route.rw.uri);
    let stopping = (ex.stopping)();
    let keep = head.keep_alive
        && !settings.keepalive_timeout.is_zero()
        && served < settings.keepalive_requests
        && ex.opened.elapsed() < settings.keepalive_time
        && !keepalive_disable::applies(settings.keepalive_disable, head, buf)
        && !stopping
        && !pass.close;

    if let Some(h2) = ex.h2 {
        h2.set_chunk_size(settings.http2.chunk_size);
    }
    // nginx does not answer CONNECT (over HTTP/1 nor HTTP/2); TRACE was refused
    // before the phases (see `handle`).
    if head.method == Method::Connect {
        return answer_local(ex.stream, buf, head, 405, None, settings, false).await;
    }
    let vars_here = || RequestVars {
        locals: Some(locals),
        files: Some(&settings.files),
        ..request_vars(head, buf, info, &server.primary_name, &uri)
    };
    let first = std::mem::take(&mut pass.first);
    if first {
        pass.log = capture_log(rt, settings, &vars_here, ex, served);
    } else if settings.access_log.targets().is_empty() {
        pass.log = None;
    }
    let proxied = answer.is_none()
        && (limit_except_pass(settings, head, buf).is_some()
            || matches!(settings.action, Action::Proxy(_)));
    // A local answer discards the body (an HTTP/2 stream's is dropped by its front
    // end): nginx looks at the part it has first, and answers a broken chunked body
    // with 400 instead of a `return` text or a file.
    let body_ok = proxied
        || ex.h2.is_some()
        || !first
        || discard::prepare(ex.stream, info, buf, head, settings.send_timeout).await;

    let content = match answer {
        Some(Answer::Status(code)) if code >= 400 => Content::Failed(Failure::new(code, keep)),
        // auth_basic: a page for 401 keeps the challenge, as nginx's does.
        Some(Answer::Unauthorized(realm)) => {
            let mut challenge = b"Basic realm=\"".to_vec();
            challenge.extend_from_slice(&realm);
            challenge.push(b'"');
            Content::Failed(Failure {
                kept_fields: vec![("WWW-Authenticate", challenge)],
                unpaged: Some(Answer::Unauthorized(realm)),
                ..Failure::new(401, keep)
            })
        }
        Some(redirect @ Answer::Redirect { code, .. }) => Content::Failed(Failure {
            unpaged: Some(redirect),
            ..Failure::new(code, keep)
        }),
        Some(Answer::Text { .. }) | None if !body_ok => Content::Failed(Failure::new(400, false)),
        Some(answer) => {
            let mut headers = evaluated_add_header(settings, &vars_here());
            // `expires` goes before `add_header`'s fields, on the statuses that take
            // both (not `always`), as nginx's headers filter sets it.
            if let Some(e) = expires_for(settings, &vars_here()) {
                let now = crate::http1::dates::now_secs();
                let (expires, cache_control) = crate::proxy::expires::fields(e, now, None);
                headers.splice(
                    0..0,
                    [
                        AddedField::fixed("Expires", expires.into_bytes(), false),
                        AddedField::fixed("Cache-Control", cache_control.into_bytes(), false),
                    ],
                );
            }
            keep_fields(&mut headers, &pass.pages);
            let content_type = kept_content_type(&pass.pages);
            let location_base = absolute_base(
                head,
                buf,
                &Site {
                    info,
                    settings,
                    server_name: &server.primary_name,
                },
            );
            // Boxed, as the static path below: the proxy path's state is what a
            // request holds most of the time, and an inline answer would enlarge it
            // for all.
            Content::Sent(
                Box::pin(send_answer(
                    ex.stream,
                    buf,
                    head,
                    answer,
                    settings,
                    keep,
                    &headers,
                    &vars_here().added_fields(&settings.add_trailer),
                    &location_base,
                    pass.pages.status,
                    content_type.as_deref(),
                    &super::charset::Names::new(&settings.charset, |t| vars_here().evaluated(t)),
                ))
                .await,
            )
        }
        None => match (limit_except_pass(settings, head, buf), &settings.action) {
            (Some(proxy_pass), _) | (None, Action::Proxy(proxy_pass)) => {
                proxy(
                    ex, server, locals, buf, head, settings, proxy_pass, &uri, &pass, keep,
                )
                .await
            }
            (None, Action::Static) => {
                let mut headers = evaluated_add_header(settings, &vars_here());
                keep_fields(&mut headers, &pass.pages);
                let file = StaticRequest {
                    settings,
                    uri: &uri,
                    site: Site {
                        info,
                        settings,
                        server_name: &server.primary_name,
                    },
                    keep,
                    add_header: &headers,
                    add_trailer: &vars_here().added_fields(&settings.add_trailer),
                    status: pass.pages.status,
                    limit_rate: limit_rate(settings, &vars_here()),
                    expires: expires_for(settings, &vars_here()),
                    args: {
                        let mut args = Vec::new();
                        vars_here().eval_var(&crate::config::Var::Args, &mut args);
                        args
                    },
                    charset: super::charset::Names::new(&settings.charset, |t| {
                        vars_here().evaluated(t)
                    }),
                };
                in_box(|| serve_static(ex.stream, buf, head, target, &file)).await
            }
        },
    };
    let failure = match content {
        Content::Sent(mut handled) => {
            handled.log = pass.log.take();
            return handled;
        }
        Content::Failed(f) => f,
        Content::AccelRedirect(accel, keep) => {
            pass.close |= !keep;
            pass.route.rw.uri = uri;
            return accel_redirect(ex, server, locals, buf, head, pass, accel, settings).await;
        }
    };
    let Some(page) = pass.pages.find(settings, failure.status) else {
        let answer = failure.unpaged.unwrap_or(Answer::Status(failure.status));
        let mut handled = standard_answer(
            ex,
            buf,
            head,
            answer,
            settings,
            failure.keep,
            locals,
            &uri,
            server,
        )
        .await;
        handled.log = pass.log.take();
        return handled;
    };
    // The page's status rule first: `$status` in the target is the status it sets.
    pass.pages.answer_with(page);
    pass.pages.kept_fields = failure.kept_fields;
    if let Some(Answer::Redirect { location, .. }) = failure.unpaged {
        // nginx keeps a redirect's Location through the page's internal redirect.
        pass.pages.kept_fields.push(("Location", location));
    }
    locals.set_status(pass.pages.status);
    let mut to = Vec::new();
    // The buffer holds the request again (the proxy path put it back).
    RequestVars {
        locals: Some(locals),
        files: Some(&settings.files),
        ..request_vars(head, buf, info, &server.primary_name, &uri)
    }
    .eval(&page.target, &mut to);
    if !pass.route.may_redirect() && matches!(to.first(), Some(b'/' | b'@')) {
        crate::log::emit(
            Level::Error,
            Some(info.id),
            format_args!(
                "rewrite or internal redirection cycle while internally redirecting to \"{}\", client: {}, server: {}",
                String::from_utf8_lossy(&to),
                info.remote,
                server.primary_name
            ),
        );
        return internal_error(ex, buf, head, settings, &mut pass).await;
    }
    pass.close |= !failure.keep;
    match to.first() {
        Some(b'/') => {
            let (path, args) = match &page.args {
                Some(a) => (&to[..], a.as_bytes()),
                None if page.target.is_literal() => (&to[..], &b""[..]),
                None => match to.iter().position(|&b| b == b'?') {
                    Some(q) => (&to[..q], &to[q + 1..]),
                    None => (&to[..], &b""[..]),
                },
            };
            let Ok(new_uri) = uri::normalize(path).map(std::borrow::Cow::into_owned) else {
                return internal_error(ex, buf, head, settings, &mut pass).await;
            };
            locals.set_args(args.to_vec());
            pass.route.redirect(new_uri);
            let body = discard::buffered(buf, head);
            redirect_as_get(ex, server, locals, buf, head, pass, body, settings).await
        }
        Some(b'@') => {
            let name = String::from_utf8_lossy(&to);
            match route::named_location(server, &name) {
                Some(l) => {
                    pass.route.rw.uri = uri;
                    pass.route.jump_to_named(l);
                    Box::pin(serve_pass(ex, server, locals, buf, head, pass)).await
                }
                None => {
                    crate::log::emit(
                        Level::Error,
                        Some(info.id),
                        format_args!(
                            "could not find named location \"{name}\", client: {}, server: {}",
                            info.remote, server.primary_name
                        ),
                    );
                    internal_error(ex, buf, head, settings, &mut pass).await
                }
            }
        }
        _ => {
            let answer = Answer::Redirect {
                code: error_pages::redirect_status(page),
                location: to,
            };
            let mut handled = standard_answer(
                ex,
                buf,
                head,
                answer,
                settings,
                failure.keep,
                locals,
                &uri,
                server,
            )
            .await;
            handled.log = pass.log.take();
            handled
        }
    }
}

/// The rest of an internal redirect to a URI (an error page, `X-Accel-Redirect`):
/// the request, as a GET (HEAD stays HEAD) without its body, replaces the client's
/// in the buffer, before the bytes of any request behind it, and is served again.
/// `body`: where the client's body stands in the buffer; what of it is still to come
/// is discarded behind the answer, and a body whose framing is broken closes the
/// connection afterwards.
#[allow(clippy::too_many_arguments)]
async fn redirect_as_get<'a>(
    ex: &mut Exchange<'a>,
    server: &'a ServerConf,
    locals: &Locals<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    mut pass: Pass<'a>,
    body: discard::Buffered,
    settings: &LocSettings,
) -> Handled<'a> {
    let mut bytes = error_pages::page_request(head, buf);
    let mut unread = None;
    match body {
        discard::Buffered::Whole(end) => bytes.extend_from_slice(&buf[end.min(buf.len())..]),
        discard::Buffered::Partial(rest) => unread = Some(rest),
        discard::Buffered::Invalid => pass.close = true,
    }
    buf.clear();
    buf.extend_from_slice(&bytes);
    let mut page_head = RequestHead::new();
    if !matches!(page_head.parse(buf), Ok(crate::http1::Parsed::Complete)) {
        return internal_error(ex, buf, head, settings, &mut pass).await;
    }
    drop_invalid_fields(ex, buf, &mut page_head);
    let mut handled = Box::pin(serve_pass(ex, server, locals, buf, &page_head, pass)).await;
    if unread.is_some() {
        handled.unread_body = unread;
    }
    handled
}

/// nginx's `X-Accel-Redirect`: to a `@name` location with the request as it is, or
/// to a URI (unsafe ones get 404) as a GET; the upstream's `Content-Type`,
/// `Set-Cookie`, `Content-Disposition`, `Cache-Control`, `Expires` and
/// `Accept-Ranges` go out with the new response.
#[allow(clippy::too_many_arguments)]
async fn accel_redirect<'a>(
    ex: &mut Exchange<'a>,
    server: &'a ServerConf,
    locals: &Locals<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    mut pass: Pass<'a>,
    accel: crate::proxy::AccelRedirect,
    settings: &LocSettings,
) -> Handled<'a> {
    let fail = |status: u16, what: Option<String>| {
        if let Some(what) = what {
            crate::log::emit(
                Level::Error,
                Some(ex.info.id),
                format_args!(
                    "{what}, client: {}, server: {}",
                    ex.info.remote, server.primary_name
                ),
            );
        }
        status
    };
    let status = if !pass.route.may_redirect() {
        fail(
            500,
            Some(format!(
                "rewrite or internal redirection cycle while internally redirecting to \"{}\"",
                String::from_utf8_lossy(&accel.target)
            )),
        )
    } else if accel.target.first() == Some(&b'@') {
        let name = String::from_utf8_lossy(&accel.target).into_owned();
        match route::named_location(server, &name) {
            Some(l) => {
                pass.pages.kept_fields.extend(accel.kept_fields);
                pass.route.jump_to_named(l);
                // The named location gets the request as it came; one with a body
                // comes as a GET, as the body is gone (nginx sends it again).
                if matches!(head.framing, BodyFraming::None) {
                    return Box::pin(serve_pass(ex, server, locals, buf, head, pass)).await;
                }
                // The proxy read the body: the buffer holds the head, then the next request.
                let gone = discard::Buffered::Whole(head.head_len);
                return redirect_as_get(ex, server, locals, buf, head, pass, gone, settings).await;
            }
            None => fail(
                500,
                Some(format!("could not find named location \"{name}\"")),
            ),
        }
    } else {
        match crate::proxy::split_unsafe_uri(&accel.target) {
            Some((path, args)) => {
                pass.pages.kept_fields.extend(accel.kept_fields);
                locals.set_args(args);
                pass.route
                    .redirect(String::from_utf8_lossy(&path).into_owned());
                // The proxy read the body: the buffer holds the head, then the next request.
                let gone = discard::Buffered::Whole(head.head_len);
                return redirect_as_get(ex, server, locals, buf, head, pass, gone, settings).await;
            }
            None => {
                // nginx has copied the kept fields before it checks the URI.
                pass.pages.kept_fields.extend(accel.kept_fields);
                404
            }
        }
    };
    // The proxy read the body: what follows the head in the buffer is the next
    // request, none of it to be dropped with this answer.
    let mut bodiless = head.clone();
    bodiless.framing = BodyFraming::None;
    let head = &bodiless;
    let uri = pass.route.rw.uri.clone();
    let vars = RequestVars {
        locals: Some(locals),
        files: Some(&settings.files),
        ..request_vars(head, buf, ex.info, &server.primary_name, &uri)
    };
    let mut headers = evaluated_add_header(settings, &vars);
    keep_fields(&mut headers, &pass.pages);
    let mut handled = send_answer(
        ex.stream,
        buf,
        head,
        Answer::Status(status),
        settings,
        !pass.close,
        &headers,
        &vars.added_fields(&settings.add_trailer),
        "",
        None,
        None,
        &super::charset::Names::new(&settings.charset, |t| vars.evaluated(t)),
    )
    .await;
    handled.log = pass.log.take();
    handled
}

/// Answers with nginx's page for a status, or a redirect, with the location's
/// `add_header` lines that apply.
#[allow(clippy::too_many_arguments)]
async fn standard_answer<'a>(
    ex: &mut Exchange<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    answer: Answer,
    settings: &LocSettings,
    keep: bool,
    locals: &Locals<'_>,
    uri: &str,
    server: &ServerConf,
) -> Handled<'a> {
    let vars = RequestVars {
        locals: Some(locals),
        files: Some(&settings.files),
        ..request_vars(head, buf, ex.info, &server.primary_name, uri)
    };
    let headers = evaluated_add_header(settings, &vars);
    let trailers = vars.added_fields(&settings.add_trailer);
    let location_base = absolute_base(
        head,
        buf,
        &Site {
            info: ex.info,
            settings,
            server_name: &server.primary_name,
        },
    );
    send_answer(
        ex.stream,
        buf,
        head,
        answer,
        settings,
        keep,
        &headers,
        &trailers,
        &location_base,
        None,
        None,
        &super::charset::Names::new(&settings.charset, |t| vars.evaluated(t)),
    )
    .await
}

/// The access log lines of a request, when its location logs.
fn capture_log<'a, 'v>(
    rt: &'a Runtime,
    settings: &'a LocSettings,
    vars: &dyn Fn() -> RequestVars<'v>,
    ex: &Exchange<'_>,
    served: u32,
) -> Option<LogLine<'a>> {
    let targets = settings.access_log.targets();
    if targets.is_empty() {
        return None;
    }
    let vars = vars();
    let conn = ConnFacts {
        id: ex.info.id,
        requests: served,
        pipelined: ex.pipelined,
    };
    let entries: Vec<LogEntry<'a>> = targets
        .iter()
        .filter_map(|t| {
            let dest = match (&t.syslog, &t.path_template) {
                (Some(target), _) => LogDest::Syslog(rt.syslogs.get(target)?),
                (None, None) => LogDest::Shared(rt.access_logs.get(&t.path)?),
                (None, Some(p)) => LogDest::PerLine {
                    path: p,
                    pending: PendingLine::prepare(p, &vars, &conn),
                    cache: settings
                        .open_log_file_cache
                        .and_then(|i| rt.log_file_caches.get(i)),
                },
            };
            let kind = match &t.format {
                None => LineKind::combined(&vars),
                Some(format) => LineKind::Format {
                    format,
                    pending: PendingLine::prepare(format, &vars, &conn),
                },
            };
            let condition = t
                .condition
                .as_deref()
                .map(|c| (c, PendingLine::prepare(c, &vars, &conn)));
            Some(LogEntry {
                dest,
                kind,
                condition,
            })
        })
        .collect();
    (!entries.is_empty()).then_some(LogLine {
        maps: &rt.config.http.maps,
        remote: vars.remote,
        entries,
    })
}

/// Adds the fields an error page keeps to its `add_header` lines (always sent);
/// a kept `Content-Type` (an `X-Accel-Redirect`'s) is the answer's type instead
/// ([`kept_content_type`]).
fn keep_fields(headers: &mut Vec<AddedField<'_>>, pages: &PageState) {
    for (name, value) in &pages.kept_fields {
        if !name.eq_ignore_ascii_case("content-type") {
            headers.push(AddedField::fixed(name, value.clone(), true));
        }
    }
}

/// The `Content-Type` an `X-Accel-Redirect` response passed on: it replaces the
/// type of a `return` text, as nginx's set type wins over `default_type`.
fn kept_content_type(pages: &PageState) -> Option<String> {
    pages
        .kept_fields
        .iter()
        // The last one, as nginx's copy of each replaces the type set before.
        .rfind(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// nginx's checks of the transport before a request is served: plain HTTP on a TLS
/// address (497), and the client certificate `ssl_verify_client` requires (496: none
/// sent, 495: it did not verify). Those are answered with a 400 page saying why.
///
/// And as nginx, on an address several servers share, a request whose Host is not
/// the name the handshake was made for gets 421 Misdirected Request when the server
/// it goes to checks client certificates: the certificate was judged by the settings
/// of the server the name chose.
fn tls_refusal(
    server: &ServerConf,
    info: &ClientInfo,
    host: Option<&str>,
    shared_address: impl FnOnce() -> bool,
) -> Option<u16> {
    if matches!(info.transport, Transport::PlainOnTlsPort) {
        crate::log::emit(
            Level::Info,
            Some(info.id),
            format_args!(
                "client sent plain HTTP request to HTTPS port while reading client request headers, client: {}, server: {}",
                info.remote, server.primary_name
            ),
        );
        return Some(497);
    }
    let facts = info.tls()?;
    let verify = server.verify_client;
    if let Some(sni) = &facts.server_name {
        if verify.asks() && vhost::normalize_host(host.unwrap_or("")) != *sni && shared_address() {
            crate::log::emit(
                Level::Info,
                Some(info.id),
                format_args!(
                    "client attempted to request the server name different from the one that was negotiated while reading client request headers, client: {}, server: {}",
                    info.remote, server.primary_name
                ),
            );
            return Some(421);
        }
    }
    let verdict = facts.client_verify.as_str();
    let (code, what) = match (verify, verdict) {
        (VerifyClient::On, "NONE") => (496, "client sent no required SSL certificate".to_owned()),
        (VerifyClient::On | VerifyClient::Optional, v) if v.starts_with("FAILED:") => (
            495,
            format!("client SSL certificate verify error: ({})", &v[7..]),
        ),
        // `optional_no_ca` forgives only a missing or untrusted CA (nginx's
        // `ngx_ssl_verify_error_optional`): a revoked or expired certificate still fails.
        (VerifyClient::OptionalNoCa, v)
            if v.strip_prefix("FAILED:")
                .is_some_and(|why| !crate::config::tls_chain::is_missing_ca_error(why)) =>
        {
            (
                495,
                format!("client SSL certificate verify error: ({})", &v[7..]),
            )
        }
        _ => return None,
    };
    crate::log::emit(
        Level::Info,
        Some(info.id),
        format_args!(
            "{what} while reading client request headers, client: {}, server: {}",
            info.remote, server.primary_name
        ),
    );
    Some(code)
}

/// Forwards the request; an error the location has a page for comes back as a
/// [`Content::Failed`], with the request's bytes back in `buf` for the page's pass.
#[allow(clippy::too_many_arguments)]
async fn proxy<'a>(
    ex: &mut Exchange<'a>,
    server: &'a ServerConf,
    locals: &Locals<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    settings: &'a LocSettings,
    pass_to: &'a crate::config::ProxyPass,
    uri: &str,
    pass: &Pass<'a>,
    keep: bool,
) -> Content<'a> {
    let rt = ex.rt;
    let target;
    let (pass_to, upstream): (&crate::config::ProxyPass, &crate::balance::Upstream) =
        match &pass_to.url {
            None => match rt.upstreams.get(pass_to.upstream) {
                Some(u) => (pass_to, u),
                None => return Content::Failed(Failure::new(500, false)),
            },
            Some(url) => {
                let mut evaluated = Vec::new();
                RequestVars {
                    locals: Some(locals),
                    ..request_vars(head, buf, ex.info, &server.primary_name, uri)
                }
                .eval(url, &mut evaluated);
                let evaluated = String::from_utf8_lossy(&evaluated);
                let uwsgi = pass_to.protocol == crate::config::UpstreamProtocol::Uwsgi;
                let evaluated = if uwsgi {
                    proxy_target::uwsgi_as_url(&evaluated)
                } else {
                    evaluated
                };
                match proxy_target::find(rt, settings, url, &evaluated).await {
                    Ok(mut t) => {
                        if uwsgi {
                            t.pass.protocol = crate::config::UpstreamProtocol::Uwsgi;
                            t.pass.scheme = "uwsgi".to_owned();
                            t.pass.uri = None;
                        }
                        target = t;
                        (&target.pass, &*target.group)
                    }
                    Err(e) => {
                        // nginx's layout, with the request line and the Host.
                        let vars = request_vars(head, buf, ex.info, &server.primary_name, uri);
                        let mut request = Vec::new();
                        vars.request_line(&mut request);
                        let mut host = Vec::new();
                        vars.host(&mut host);
                        crate::log::emit(
                            Level::Error,
                            Some(ex.info.id),
                            format_args!(
                                "{e}, client: {}, server: {}, request: \"{}\", host: \"{}\"",
                                ex.info.remote,
                                server.primary_name,
                                String::from_utf8_lossy(&request),
                                String::from_utf8_lossy(&host)
                            ),
                        );
                        return Content::Failed(Failure::new(e.status(), keep));
                    }
                }
            }
        };
    // With error pages, the request's bytes are kept: forwarding consumes them from
    // the buffer, and a page's pass needs them again. The body only when it is all
    // there (a `@name` page sends it again); otherwise `@name` pages are not handed
    // off and the proxy answers the error itself.
    let body_whole = body_in_buffer(buf, head);
    let saved: Option<Vec<u8>> = (!settings.error_pages.is_empty())
        .then(|| buf[..(head.head_len + body_whole.unwrap_or(0)).min(buf.len())].to_vec());
    let hands_off = |status: u16| {
        saved.is_some() && pass.pages.has_page(settings, status, body_whole.is_some())
    };
    // An error page after a failed attempt may use them too.
    let log_upstream = settings.access_log.uses_upstream()
        || settings.add_header.iter().any(|h| h.value.uses_upstream())
        || settings.add_trailer.iter().any(|h| h.value.uses_upstream())
        || saved.is_some();
    let f = Forward {
        head,
        settings,
        pass: pass_to,
        upstream,
        info: ex.info,
        server_name: &server.primary_name,
        uri,
        keep_client: keep,
        log_upstream,
        locals: Some(locals),
        rewritten: pass.route.rw.rewritten.then_some(RewrittenUri {
            prefix_applies: pass.route.rw.prefix_applies,
        }),
        hands_off: &hands_off,
        absolute_base: &|cbuf: &[u8]| {
            let site = Site {
                info: ex.info,
                settings,
                server_name: &server.primary_name,
            };
            absolute_base(head, cbuf, &site)
        },
    };
    let (rate, after) = limit_rate(
        settings,
        &RequestVars {
            locals: Some(locals),
            ..request_vars(head, buf, ex.info, &server.primary_name, uri)
        },
    );
    let gzip_client = if settings.gzip.enable {
        super::gzip_ok::client_gzip(&settings.gzip, head, buf)
    } else {
        super::gzip_ok::ClientGzip::Never
    };
    let pace = crate::net::pace::Pace::new(rate, after);
    let gzip = &settings.gzip;
    let charset_names = {
        let vars = RequestVars {
            locals: Some(locals),
            ..request_vars(head, buf, ex.info, &server.primary_name, uri)
        };
        super::charset::Names::new(&settings.charset, |t| vars.evaluated(t))
    };
    let accel_charset =
        settings.proxy_ignore_headers.0 & crate::config::IgnoreHeaders::X_ACCEL_CHARSET == 0;
    let charset = &settings.charset;
    let (done, sent_head, gzip_ratio) = match ex.h2 {
        Some(h2) => {
            let client = H2Downstream::new(h2, settings.send_timeout)
                .for_error_page(pass.pages.status, &pass.pages.kept_fields)
                .keeping_head(keeps_sent_head(settings))
                .paced(pace);
            let client = GzipDownstream::new(client, gzip, gzip_client);
            let client = CharsetDownstream::new(client, charset, charset_names, accel_charset);
            forward_to(&f, client, buf, H2Downstream::take_sent_head).await
        }
        None => {
            let client = Http1Downstream::new(ex.stream, settings.send_timeout)
                .keepalive_header(settings.keepalive_header)
                .chunked_transfer_encoding(settings.chunked_transfer_encoding)
                .for_error_page(pass.pages.status, &pass.pages.kept_fields)
                .keeping_head(keeps_sent_head(settings))
                .paced(pace);
            let client = GzipDownstream::new(client, gzip, gzip_client);
            let client = CharsetDownstream::new(client, charset, charset_names, accel_charset);
            forward_to(&f, client, buf, Http1Downstream::take_sent_head).await
        }
    };
    if let (Some(off), Some(saved)) = (done.handed_off, saved) {
        locals.keep_buffered_body(saved.get(head.head_len..).unwrap_or_default());
        // The request before whatever the client sent behind it, as it arrived.
        buf.splice(0..0, saved);
        return Content::Failed(Failure {
            status: off.status,
            keep: done.keep_client,
            kept_fields: off
                .www_authenticate
                .into_iter()
                .map(|v| ("WWW-Authenticate", v))
                .collect(),
            unpaged: None,
        });
    }
    if let Some(accel) = done.accel_redirect {
        return Content::AccelRedirect(accel, done.keep_client);
    }
    Content::Sent(Handled {
        status: pass.pages.status.unwrap_or(done.status),
        body_bytes: done.body_bytes,
        head_bytes: done.head_bytes,
        attempts: done.attempts,
        sent_head,
        gzip_ratio,
        keep_alive: done.keep_client,
        unread_body: None,
        keepalive_timeout: settings.keepalive_timeout,
        header_timeout: settings.client_header_timeout,
        log: None,
    })
}

/// What the static module needs about the request besides its head.
struct StaticRequest<'r> {
    settings: &'r LocSettings,
    uri: &'r str,
    site: Site<'r>,
    keep: bool,
    add_header: &'r [AddedField<'r>],
    add_trailer: &'r [AddedField<'r>],
    /// The status of an error page served from a file.
    status: Option<u16>,
    /// `limit_rate` and `limit_rate_after` for this response.
    limit_rate: (u64, u64),
    /// `expires` for this response.
    expires: Option<Expires>,
    /// The request's arguments (`$args`), for a JSONP listing's `callback`.
    args: Vec<u8>,
    /// `charset` and `source_charset` for this response.
    charset: super::charset::Names,
}

impl StaticRequest<'_> {
    /// Writes an error-log line about this request, with the client and server as
    /// nginx names them.
    fn log(&self, level: Level, text: &str) {
        crate::log::emit(
            level,
            Some(self.site.info.id),
            format_args!(
                "{text}, client: {}, server: {}",
                self.site.info.remote, self.site.server_name
            ),
        );
    }
}

/// The `proxy_pass` of the location's `limit_except` block when the request's method
/// is one the block restricts.
fn limit_except_pass<'s>(
    settings: &'s LocSettings,
    head: &RequestHead,
    buf: &[u8],
) -> Option<&'s crate::config::ProxyPass> {
    let le = settings.admission.limit_except.as_ref()?;
    let method = buf.get(head.method_range.clone())?;
    le.restricts(method).then_some(le.pass.as_ref()).flatten()
}

/// `expires` of `settings` for a request: a variable's value read as the directive's
/// argument; none when it is `off`, empty or not a valid value (nginx logs that and
/// sends no fields).
fn expires_for(settings: &LocSettings, vars: &RequestVars<'_>) -> Option<Expires> {
    settings
        .files
        .expires
        .as_ref()?
        .resolve(|t| vars.evaluated(t))
}

/// `limit_rate` and `limit_rate_after` of `settings` for a request.
fn limit_rate(settings: &LocSettings, vars: &RequestVars<'_>) -> (u64, u64) {
    (
        // `set $limit_rate` wins over the directive, as nginx's `limit_rate_set`.
        vars.locals
            .and_then(Locals::limit_rate)
            .unwrap_or_else(|| vars.size(&settings.limit_rate)),
        vars.size(&settings.limit_rate_after),
    )
}

/// Forwards through `client` (an HTTP/1 or HTTP/2 front end behind gzip, behind the
/// charset filter): what the proxy did, the response head kept for `$sent_http_*`,
/// and `$gzip_ratio`.
async fn forward_to<D: crate::proxy::Downstream>(
    f: &crate::proxy::Forward<'_>,
    mut client: CharsetDownstream<'_, GzipDownstream<'_, D>>,
    buf: &mut Buf,
    sent_head: fn(&mut D) -> Vec<u8>,
) -> (crate::proxy::Forwarded, Vec<u8>, Option<String>) {
    let done = crate::proxy::forward(f, &mut client, buf).await;
    let gzip = client.inner_mut();
    let ratio = gzip.ratio().map(str::to_owned);
    (done, sent_head(gzip.inner_mut()), ratio)
}

/// Answers from the file system what [`static_files::resolve`] found; errors are left
/// to the caller (the location may have a page for them).
async fn serve_static<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    target: Option<Resolved>,
    req: &StaticRequest<'_>,
) -> Content<'a> {
    let settings = req.settings;
    // A body is discarded behind the answer; one whose framing is broken already
    // leaves the connection unusable.
    let keep = req.keep && !matches!(discard::buffered(buf, head), discard::Buffered::Invalid);
    let get_or_head = matches!(head.method, Method::Get | Method::Head);
    let sent = match target {
        Some(Resolved::Status(code)) => return Content::Failed(Failure::new(code, keep)),
        // autoindex lists for GET and HEAD only; nginx then forbids the directory.
        Some(Resolved::Listing(dir)) if !get_or_head => {
            req.log(Level::Error, &static_files::forbidden_directory(&dir));
            return Content::Failed(Failure::new(403, keep));
        }
        // The static module answers 405 to anything but GET and HEAD.
        Some(Resolved::File(..) | Resolved::AddSlash(_)) if !get_or_head => {
            return Content::Failed(Failure::new(405, keep))
        }
        Some(Resolved::File(path, meta)) => {
            let client_ok =
                || super::gzip_ok::gzip_ok(&settings.gzip, head, buf, &Default::default());
            let (gzipped, vary) =
                static_files::precompressed(&settings.files, &settings.gzip, client_ok, &path);
            let r = static_files::FileRequest {
                head,
                buf,
                files: &settings.files,
                expires: req.expires,
                keepalive_header: req.settings.keepalive_header,
                chunked_transfer_encoding: req.settings.chunked_transfer_encoding,
                add_header: req.add_header,
                add_trailer: req.add_trailer,
                keep_alive: keep,
                send_timeout: settings.send_timeout,
                status: req.status,
                limit_rate: req.limit_rate,
                gzipped: gzipped.as_ref().map(|(p, _)| p.as_path()),
                vary,
                keep_head: keeps_sent_head(settings),
                gzip: settings.gzip.enable.then(|| {
                    (
                        &settings.gzip,
                        super::gzip_ok::client_gzip(&settings.gzip, head, buf),
                    )
                }),
                charset: &settings.charset,
                charset_names: &req.charset,
            };
            let meta = gzipped.as_ref().map_or(&meta, |(_, m)| m);
            match static_files::send_file(stream, &r, &path, meta).await {
                Ok(sent) => sent,
                Err(status) => return Content::Failed(Failure::new(status, keep)),
            }
        }
        Some(Resolved::Listing(dir)) => {
            let response = static_files::ListingResponse {
                expires: req.expires,
                add_header: req.add_header,
                gzip: settings.gzip.enable.then(|| {
                    (
                        &settings.gzip,
                        super::gzip_ok::client_gzip(&settings.gzip, head, buf),
                    )
                }),
                charset: req.charset.charset.as_deref(),
            };
            let sent = static_files::send_listing(
                stream,
                head,
                (&settings.files, &response),
                &dir,
                (req.uri, &req.args),
                keep,
                settings.send_timeout,
            )
            .await;
            match sent {
                Ok(sent) => sent,
                Err((status, level, text)) => {
                    req.log(level, &text);
                    return Content::Failed(Failure::new(status, keep));
                }
            }
        }
        Some(Resolved::AddSlash(named)) => {
            let uri = named.as_deref().unwrap_or(req.uri);
            let location = redirect_with_slash(head, buf, &req.site, uri);
            static_files::send_redirect(stream, head, &location, keep, settings.send_timeout).await
        }
        Some(Resolved::Redirect(_) | Resolved::Named(_)) | None => {
            return Content::Failed(Failure::new(500, false))
        }
    };
    let (unread_body, keep_alive) = match discard::settle(buf, head) {
        Ok(rest) => (rest, sent.keep_alive),
        Err(()) => (None, false),
    };
    Content::Sent(Handled {
        status: sent.status,
        body_bytes: sent.body_bytes,
        head_bytes: sent.head_bytes,
        attempts: Vec::new(),
        sent_head: sent.head,
        gzip_ratio: sent.gzip_ratio,
        keep_alive,
        unread_body,
        keepalive_timeout: settings.keepalive_timeout,
        header_timeout: settings.client_header_timeout,
        log: None,
    })
}

/// nginx's redirect to a directory's URI with its slash, the arguments kept.
fn redirect_with_slash(head: &RequestHead, buf: &[u8], site: &Site<'_>, uri: &str) -> String {
    let args = head
        .query(buf)
        .map(|q| format!("?{}", String::from_utf8_lossy(q)))
        .unwrap_or_default();
    let mut path = Vec::with_capacity(uri.len() + 1);
    crate::http1::escape::escape_uri(uri.as_bytes(), &mut path);
    format!(
        "{}{}/{args}",
        absolute_base(head, buf, site),
        String::from_utf8_lossy(&path)
    )
}

/// Who answers a request, for the redirects it makes.
struct Site<'a> {
    info: &'a ClientInfo,
    settings: &'a LocSettings,
    server_name: &'a str,
}

/// What nginx puts before a relative `Location`: with `absolute_redirect on` (the
/// default) `http://HOST[:PORT]` (`https://` over TLS), HOST being the Host the client
/// asked for (the server's name with `server_name_in_redirect on`, or without a Host)
/// and PORT the listening port unless it is the scheme's own (80, 443) or
/// `port_in_redirect off`; nothing with `absolute_redirect off`.
fn absolute_base(head: &RequestHead, buf: &[u8], site: &Site<'_>) -> String {
    let s = site.settings;
    if !s.absolute_redirect {
        return String::new();
    }
    // nginx's `headers_in.server`: the host of an absolute-form target, else Host.
    let asked = head
        .absolute_host
        .clone()
        .map(|r| &buf[r])
        .or_else(|| head.header_value(buf, "host"))
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(vhost::normalize_host)
        .filter(|h| !h.is_empty());
    // Without one (HTTP/1.0 without Host, a head refused for its host) nginx names
    // the address the connection came to.
    let host = match (asked, site.info.local.inet()) {
        _ if s.server_name_in_redirect => site.server_name.to_owned(),
        (Some(h), _) => h,
        (None, Some(std::net::SocketAddr::V4(a))) => a.ip().to_string(),
        (None, Some(std::net::SocketAddr::V6(a))) => format!("[{}]", a.ip()),
        (None, None) => site.server_name.to_owned(),
    };
    let (scheme, default_port) = match site.info.tls() {
        Some(_) => ("https", 443),
        None => ("http", 80),
    };
    let port = match site.info.local.port() {
        Some(p) if p != default_port && s.port_in_redirect => format!(":{p}"),
        _ => String::new(),
    };
    format!("{scheme}://{host}{port}")
}

/// A level's `add_header` lines with their values for this request.
fn evaluated_add_header<'s>(
    settings: &'s LocSettings,
    vars: &RequestVars<'_>,
) -> Vec<AddedField<'s>> {
    vars.added_fields(&settings.add_header)
}

/// Sends what the rewrite phase answered: nothing for `return 444` (the connection
/// closes), the standard page of a status, a `return` text, or a redirect with
/// nginx's page (a relative `Location` made absolute with `location_base`).
#[allow(clippy::too_many_arguments)]
async fn send_answer<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    answer: Answer,
    settings: &LocSettings,
    keep: bool,
    add_header: &[AddedField<'_>],
    add_trailer: &[AddedField<'_>],
    location_base: &str,
    status: Option<u16>,
    content_type: Option<&str>,
    charset: &super::charset::Names,
) -> Handled<'a> {
    let (status, out, body_len, keep) = match answer {
        Answer::Close => return Handled::nothing(444),
        answer => {
            // nginx closes after a 400 or 5xx; a body is discarded behind any other
            // answer, unless its framing is broken already.
            let keep = keep
                && !matches!(discard::buffered(buf, head), discard::Buffered::Invalid)
                && !matches!(answer, Answer::Status(code) if code >= 500 || code == 400);
            let mut out = Buf::head();
            let (status, body_len) = rewrite::write_response(
                &mut out,
                &answer,
                &rewrite::ResponseFacts {
                    keep_alive: keep,
                    keepalive_header: settings.keepalive_header,
                    chunked_transfer_encoding: settings.chunked_transfer_encoding,
                    http10: head.minor_version == 0,
                    head_only: head.method == Method::Head,
                    default_type: content_type.unwrap_or(&settings.files.default_type),
                    add_header,
                    add_trailer,
                    location_base,
                    status,
                    charset: (&settings.charset, charset),
                },
            );
            (status, out, body_len, keep)
        }
    };
    send_local(stream, buf, head, &out, status, body_len, keep, settings).await
}

/// Whether the location's access log has `$sent_http_NAME`: the head sent is then
/// kept for its line.
fn keeps_sent_head(settings: &LocSettings) -> bool {
    settings.access_log.uses_sent_head()
}

/// Bytes of a request body already in the buffer behind the head: `Some` when the
/// whole body is there (0 for none), `None` when some of it is still to come (the
/// connection must then close after answering).
fn body_in_buffer(buf: &[u8], head: &RequestHead) -> Option<usize> {
    match head.framing {
        BodyFraming::None | BodyFraming::UntilClose => Some(0),
        BodyFraming::Length(n) if (buf.len() - head.head_len) as u64 >= n => Some(n as usize),
        _ => None,
    }
}

/// ferrolb's own 500 for a pass that cannot go on (an error page target that is no
/// URI, a named location that does not exist, a redirect cycle), logged with the
/// pass's access log line.
async fn internal_error<'a>(
    ex: &mut Exchange<'a>,
    buf: &mut Buf,
    head: &RequestHead,
    settings: &LocSettings,
    pass: &mut Pass<'a>,
) -> Handled<'a> {
    let mut handled = answer_local(ex.stream, buf, head, 500, None, settings, false).await;
    handled.log = pass.log.take();
    handled
}

/// Answers a request ferrolb handles itself (`return`, 404, errors): an error page, a
/// redirect, or the `return` text. The request body is discarded behind it.
async fn answer_local<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    status: u16,
    text: Option<Vec<u8>>,
    settings: &LocSettings,
    keep: bool,
) -> Handled<'a> {
    let keep = keep
        && !matches!(discard::buffered(buf, head), discard::Buffered::Invalid)
        && status < 500
        && status != 400;
    let http10 = head.minor_version == 0;
    let head_only = head.method == Method::Head;
    let mut out = Buf::head();
    let mut body_len = 0u64;
    let status_line = |out: &mut Vec<u8>| {
        respond::write_status_line_with(out, status, keep, http10, settings.keepalive_header);
    };
    match text {
        Some(t) if respond::is_redirect(status) => {
            // nginx sends its page for the status with the Location.
            let page = respond::error_body(status);
            status_line(&mut out);
            out.extend_from_slice(b"Content-Type: text/html\r\nContent-Length: ");
            out.extend_from_slice(page.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\nLocation: ");
            out.extend_from_slice(&t);
            out.extend_from_slice(b"\r\n\r\n");
            if !head_only {
                body_len = page.len() as u64;
                out.extend_from_slice(page.as_bytes());
            }
        }
        Some(t) => {
            status_line(&mut out);
            // nginx types a `return` text with `default_type`.
            out.extend_from_slice(
                format!(
                    "Content-Type: {}\r\nContent-Length: {}\r\n",
                    settings.files.default_type,
                    t.len()
                )
                .as_bytes(),
            );
            let v_applies = respond::add_header_applies(status);
            for h in &settings.add_header {
                if h.always || v_applies {
                    out.extend_from_slice(h.name.as_bytes());
                    out.extend_from_slice(b": ");
                    // add_header values here are evaluated without request variables.
                    for p in &h.value.parts {
                        if let crate::config::TemplatePart::Literal(s) = p {
                            out.extend_from_slice(s.as_bytes());
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"\r\n");
            if !head_only {
                body_len = t.len() as u64;
                out.extend_from_slice(&t);
            }
        }
        None => {
            let start = out.len();
            respond::error_page(&mut out, status, keep, http10, head_only);
            body_len = (out.len() - start) as u64;
        }
    }
    send_local(stream, buf, head, &out, status, body_len, keep, settings).await
}

/// Writes a response ferrolb made (`out`: head, then `body_len` body bytes), drops the
/// request from the buffer (what of its body is still to come is discarded before the
/// next request), and says what the connection does next.
#[allow(clippy::too_many_arguments)]
async fn send_local<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    out: &[u8],
    status: u16,
    body_len: u64,
    keep: bool,
    settings: &LocSettings,
) -> Handled<'a> {
    let ok = io::write_all(stream, out, settings.send_timeout)
        .await
        .is_ok();
    let (unread_body, keep) = match discard::settle(buf, head) {
        Ok(rest) => (rest, keep),
        Err(()) => (None, false),
    };
    Handled {
        gzip_ratio: None,
        status,
        body_bytes: body_len,
        head_bytes: out.len() as u64 - body_len,
        attempts: Vec::new(),
        sent_head: if keeps_sent_head(settings) {
            out[..out.len() - body_len as usize].to_vec()
        } else {
            Vec::new()
        },
        keep_alive: keep && ok,
        unread_body,
        keepalive_timeout: settings.keepalive_timeout,
        header_timeout: settings.client_header_timeout,
        log: None,
    }
}

/// What the access log lines of a request need, captured before the request is
/// forwarded (forwarding drains the buffer the head points into). Only built when the
/// location logs, so requests with `access_log off` pay nothing.
struct LogLine<'a> {
    /// The configuration's maps, for maps of response variables.
    maps: &'a [MapConf],
    /// `$remote_addr` of the request.
    remote: ClientAddr,
    /// One per `access_log` of the location.
    entries: Vec<LogEntry<'a>>,
}

/// One `access_log` line's part of a request's logging.
struct LogEntry<'a> {
    dest: LogDest<'a>,
    kind: LineKind<'a>,
    /// `if=`: its format and request-phase rendering.
    condition: Option<(&'a LogFormat, PendingLine)>,
}

/// Where an access log line goes.
enum LogDest<'a> {
    /// A file opened at load time, with its writer thread.
    Shared(&'a AccessLog),
    /// A syslog server.
    Syslog(&'a SyslogSender),
    /// A path with variables, rendered after the response and opened for the line
    /// (or kept open by the location's `open_log_file_cache`).
    PerLine {
        path: &'a LogFormat,
        pending: PendingLine,
        cache: Option<&'a LogFileCache>,
    },
}

enum LineKind<'a> {
    /// nginx's `combined`, formatted by hand from the few values it needs.
    Combined {
        request: Vec<u8>,
        remote_user: Option<Vec<u8>>,
        referer: Option<Vec<u8>>,
        user_agent: Option<Vec<u8>>,
    },
    /// A `log_format`, its request-phase parts already rendered.
    Format {
        format: &'a LogFormat,
        pending: PendingLine,
    },
}

impl LineKind<'_> {
    fn combined(vars: &RequestVars<'_>) -> Self {
        let mut request = Vec::with_capacity(128);
        vars.request_line(&mut request);
        LineKind::Combined {
            request,
            remote_user: vars
                .head
                .header_value(vars.buf, "authorization")
                .and_then(crate::vars::basic_credentials)
                .map(|(user, _)| user),
            referer: vars
                .head
                .header_value(vars.buf, "referer")
                .map(<[u8]>::to_vec),
            user_agent: vars
                .head
                .header_value(vars.buf, "user-agent")
                .map(<[u8]>::to_vec),
        }
    }
}

impl LogLine<'_> {
    fn write(&self, h: &Handled<'_>, started: std::time::Instant) {
        let facts = ResponseFacts {
            status: h.status,
            body_bytes: h.body_bytes,
            bytes_sent: h.head_bytes + h.body_bytes,
            started,
            upstream: &h.attempts,
            sent_head: &h.sent_head,
            gzip_ratio: h.gzip_ratio.as_deref(),
            maps: self.maps,
        };
        let mut line = Vec::with_capacity(256);
        for e in &self.entries {
            if let Some((format, pending)) = &e.condition {
                line.clear();
                pending.finish(format, &facts, &mut line);
                // As nginx: skipped when the condition is empty or "0".
                let value = line.strip_suffix(b"\n").unwrap_or(&line);
                if value.is_empty() || value == b"0" {
                    continue;
                }
            }
            line.clear();
            match &e.kind {
                LineKind::Combined {
                    request,
                    remote_user,
                    referer,
                    user_agent,
                } => crate::access_log::format_combined(
                    &mut line,
                    &CombinedFields {
                        remote_addr: self.remote,
                        remote_user: remote_user.as_deref(),
                        request,
                        status: h.status,
                        body_bytes_sent: h.body_bytes,
                        referer: referer.as_deref(),
                        user_agent: user_agent.as_deref(),
                    },
                ),
                LineKind::Format { format, pending } => pending.finish(format, &facts, &mut line),
            }
            match &e.dest {
                LogDest::Shared(log) => log.write_line(&line),
                LogDest::Syslog(s) => s.send(&line),
                LogDest::PerLine {
                    path: format,
                    pending,
                    cache,
                } => {
                    let mut path = Vec::new();
                    pending.finish(format, &facts, &mut path);
                    path.pop();
                    use std::os::unix::ffi::OsStrExt as _;
                    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&path));
                    match cache {
                        Some(c) => c.append(path, &line),
                        None => crate::access_log::append_line(path, &line),
                    }
                }
            }
        }
    }
}
