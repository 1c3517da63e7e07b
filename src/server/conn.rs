//! One client connection: read a head, route it (virtual server, location), answer or
//! forward it, log it, and go on with the next request on the same connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;

use super::http1_downstream::Http1Downstream;
use super::rewrite::{self, Answer, Flow, Phase, UriState};
use super::state::{Runtime, StopMode, Worker};
use super::static_files::{self, Resolved};
use super::{location, uri, vhost};
use crate::access_log::{
    AccessLog, CombinedFields, ConnFacts, PendingLine, ResponseFacts, UpstreamAttempt,
};
use crate::config::{
    AccessLogConf, Action, Level, LocSettings, Location, LocationKind, LogFormat, ServerConf,
};
use crate::http1::respond;
use crate::http1::{BodyFraming, Method, RequestHead};
use crate::net::buffers::{Buf, Recycled, REQUEST_HEADS};
use crate::net::io::{self, IoFailure};
use crate::net::{ClientAddr, ClientInfo, Stream};
use crate::proxy::request_vars;
use crate::proxy::{Forward, RewrittenUri};
use crate::vars::{Locals, RequestVars};

/// How long a new connection may take to send its first request head, before any
/// server settings are known (nginx's `client_header_timeout` default).
const FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How much one read of a request head asks for: a head and a small body usually
/// arrive in one go.
const HEAD_READ: usize = crate::net::buffers::HEAD_BUF;

/// Serves a client connection until it closes, errs, or the server stops.
pub(super) async fn serve(worker: &Worker, mut stream: Stream, mut info: ClientInfo) {
    let mut rt: Arc<Runtime> = worker.shared.runtime.load_full();
    let mut stop = worker.shared.stop_signal();
    let mut cbuf: Option<Buf> = None;
    if super::vhost::proxy_protocol_on(&rt.config.http.servers, &info.local) {
        match super::admission::read_proxy_header(&stream, &mut info, FIRST_HEAD_TIMEOUT).await {
            Some(rest) => cbuf = Some(rest),
            None => return,
        }
    }
    // Bytes that came with the PROXY header are the first request's, not a pipelined one.
    let mut first = true;
    let mut served = 0u32;
    let mut idle_timeout = FIRST_HEAD_TIMEOUT;
    let mut header_timeout = FIRST_HEAD_TIMEOUT;

    loop {
        // Wait for the next request without holding a buffer. Readiness can be
        // spurious (a fresh connection often reports readable with nothing to read), so
        // a buffer is only kept once a read actually returns bytes.
        let mut fresh_read = false;
        while cbuf.as_ref().is_none_or(|b| b.is_empty()) {
            cbuf = None;
            if *stop.borrow() != StopMode::Running {
                return;
            }
            tokio::select! {
                r = tokio::time::timeout(idle_timeout, stream.readable()) => {
                    if !matches!(r, Ok(Ok(()))) {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            let mut b = Buf::head();
            match stream.try_read_buf(&mut (&mut *b).limit(HEAD_READ)) {
                Ok(0) => return,
                Ok(n) => {
                    if n < HEAD_READ {
                        // The whole request is in: forget the readiness now so the
                        // next wait does not begin with a read that finds nothing.
                        io::drained(&stream);
                    }
                    cbuf = Some(b);
                    fresh_read = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        let Some(buf) = cbuf.as_mut() else { return };
        // `$request_time` counts from here: the first bytes of this request are in
        // the buffer (read just now, or left over from the previous request).
        let started = std::time::Instant::now();
        let pipelined = !fresh_read && !std::mem::take(&mut first);

        // Pick up a reloaded configuration between requests.
        {
            let current = worker.shared.runtime.load();
            if !Arc::ptr_eq(&rt, &current) {
                rt = Arc::clone(&current);
            }
        }
        served += 1;
        let mut ex = Exchange {
            rt: &rt,
            stream: &mut stream,
            info: &info,
            served,
            stopping: *stop.borrow() != StopMode::Running,
            started,
            pipelined,
        };
        // Boxed: a request's state (head parsing, forwarding, relaying) is large and
        // exists only while a request is in progress, so an idle connection's task
        // stays small.
        match Box::pin(exchange(&mut ex, buf, header_timeout)).await {
            Some((keepalive, header)) => {
                idle_timeout = keepalive;
                header_timeout = header;
            }
            None => return,
        }
    }
}

/// One request on a connection, from its first bytes (already in `buf`) to the end
/// of its response. `None` when the connection must close; otherwise the keep-alive
/// and header timeouts for the next request.
async fn exchange(
    ex: &mut Exchange<'_>,
    buf: &mut Buf,
    header_timeout: Duration,
) -> Option<(Duration, Duration)> {
    let info = ex.info;
    let mut head = Recycled::take(&REQUEST_HEADS);
    let read = io::read_head(
        ex.stream,
        buf,
        io::HeadRead::Chunk(HEAD_READ),
        io::HeadTimeout::Whole(header_timeout),
        crate::http1::MAX_HEAD_BYTES,
        |b: &mut Buf| head.parse(b),
    )
    .await;
    match read {
        Ok(()) => {}
        Err(io::HeadError::Invalid(e)) => {
            crate::log::emit(
                Level::Info,
                Some(info.id),
                format_args!("client sent invalid request ({e}), client: {}", info.remote),
            );
            reject(ex.stream, e.status_code()).await;
            return None;
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
            return None;
        }
        Err(io::HeadError::Io { .. }) => return None,
    }
    drop_invalid_fields(ex, buf, &mut head);
    let outcome = handle(ex, buf, &head).await;
    if let Some(log) = &outcome.log {
        log.write(&outcome, ex.started);
    }
    outcome
        .keep_alive
        .then_some((outcome.keepalive_timeout, outcome.header_timeout))
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
    info: &'a ClientInfo,
    /// Requests on this connection so far, this one included.
    served: u32,
    /// The server is stopping: answer, then close.
    stopping: bool,
    /// When the first byte of the request head was at hand (`$request_time`).
    started: std::time::Instant,
    /// Whether the request arrived behind the previous one (`$pipe`).
    pipelined: bool,
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
    keep_alive: bool,
    keepalive_timeout: Duration,
    header_timeout: Duration,
    log: Option<LogLine<'a>>,
}

/// Routes and answers one request whose head is in `buf`.
async fn handle<'a>(ex: &mut Exchange<'a>, buf: &mut Buf, head: &RequestHead) -> Handled<'a> {
    let (rt, info, served, stopping) = (ex.rt, ex.info, ex.served, ex.stopping);
    let stream = &mut *ex.stream;
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
        reject(stream, 404).await;
        return Handled {
            status: 404,
            body_bytes: 0,
            head_bytes: 0,
            attempts: Vec::new(),
            keep_alive: false,
            keepalive_timeout: Duration::ZERO,
            header_timeout: Duration::ZERO,
            log: None,
        };
    };

    // nginx's post-read phase: the real client address by the server's settings.
    let post_read = super::admission::real_client(&server.settings, info, head, buf);
    let info: &ClientInfo = post_read.as_ref().unwrap_or(info);
    // The preaccess phase's, by the location's, when the server's changed nothing.
    let located: std::sync::OnceLock<ClientInfo> = std::sync::OnceLock::new();
    // `limit_conn` counts the request until it is done.
    let mut conn_slots = Vec::new();

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
            return answer_local(stream, buf, head, 400, None, &server.settings, false).await;
        }
    };
    if location::auto_redirect(&server.locations, &uri) {
        let to = redirect_with_slash(head, buf, info, &uri);
        let keep = head.keep_alive && !stopping;
        let sent =
            static_files::send_redirect(stream, head, &to, keep, server.settings.send_timeout)
                .await;
        return Handled {
            status: sent.status,
            body_bytes: sent.body_bytes,
            head_bytes: sent.head_bytes,
            attempts: Vec::new(),
            keep_alive: sent.keep_alive && body_in_buffer(buf, head) == Some(0),
            keepalive_timeout: server.settings.keepalive_timeout,
            header_timeout: server.settings.client_header_timeout,
            log: None,
        };
    }
    // The location, after the rewrite phases and the internal redirects of `index` and
    // `try_files`.
    let http = &rt.config.http;
    let locals = Locals::new(&http.maps, http.user_vars.len());
    rewrite::server_name_captures(&server.server_names, host, &http.user_vars, &locals);
    let mut rw = UriState::new(uri, path);
    let mut named: Option<&Location> = None;
    let mut target: Option<Resolved> = None;
    let mut answer: Option<Answer> = None;
    let mut redirects = 0;
    // nginx's server rewrite phase runs first, and again after each internal redirect.
    let mut server_phase = true;
    let mut log = |level, what: String| {
        crate::log::emit(
            level,
            Some(info.id),
            format_args!(
                "{what}, client: {}, server: {}",
                located.get().unwrap_or(info).remote,
                server.primary_name
            ),
        )
    };
    let settings: &LocSettings = loop {
        // Built only when a phase needs variables: the proxy fast path takes none.
        let base = || RequestVars {
            locals: Some(&locals),
            ..request_vars(
                head,
                buf,
                located.get().unwrap_or(info),
                &server.primary_name,
                "",
            )
        };
        if std::mem::take(&mut server_phase) && !server.settings.rewrite.is_empty() {
            let mut cx = rewrite::Context {
                vars: &RequestVars {
                    files: Some((&server.settings.files, None)),
                    ..base()
                },
                locals: &locals,
                log: &mut log,
            };
            // A server's `if` switches no settings.
            if let Flow::Answer(a, _) =
                rewrite::run(&server.settings.rewrite, Phase::Server, &mut rw, &mut cx)
            {
                answer = Some(a);
                break &server.settings;
            }
        }
        let loc = named.or_else(|| location::find_location(&server.locations, &rw.uri));
        let prefix = loc
            .filter(|l| l.regex.is_none())
            .map(|l| l.pattern.as_str());
        if let Some(caps) = loc.and_then(|l| l.regex.as_ref()?.captures(&rw.uri)) {
            locals.keep_captures(&caps, loc.map_or(&[][..], |l| &l.named_captures));
        }
        let mut settings = loc.map_or(&*server.settings, |l| &*l.settings);
        // Without a location the server's directives ran already (nginx skips the
        // location phase of the server's "null location").
        if loc.is_some() && !settings.rewrite.is_empty() {
            let mut cx = rewrite::Context {
                vars: &RequestVars {
                    files: Some((&settings.files, prefix)),
                    ..base()
                },
                locals: &locals,
                log: &mut log,
            };
            match rewrite::run(&settings.rewrite, Phase::Location, &mut rw, &mut cx) {
                Flow::Answer(a, chosen) => {
                    answer = Some(a);
                    break chosen.map_or(settings, |s| &**s);
                }
                Flow::SearchAgain if redirects < rewrite::MAX_URI_CHANGES => {
                    redirects += 1;
                    named = None;
                    continue;
                }
                Flow::SearchAgain => {
                    log(
                        Level::Error,
                        format!(
                            "rewrite or internal redirection cycle while processing \"{}\"",
                            rw.uri
                        ),
                    );
                    answer = Some(Answer::Status(500));
                    break settings;
                }
                Flow::Continue(chosen) => {
                    if let Some(s) = chosen {
                        settings = s;
                    }
                }
            }
        }
        if post_read.is_none() && located.get().is_none() {
            if let Some(real) = super::admission::real_client(settings, info, head, buf) {
                let _ = located.set(real);
            }
        }
        let vars = RequestVars {
            files: Some((&settings.files, prefix)),
            uri: &rw.uri,
            ..base()
        };
        let phases = async {
            super::admission::limits(
                &rt.limit_zones,
                settings,
                &vars,
                &locals,
                &mut log,
                &mut conn_slots,
            )
            .await?;
            super::admission::access(settings, &vars, &mut log).await
        };
        if let Err(refused) = phases.await {
            answer = Some(refused);
            break settings;
        }
        if !matches!(settings.action, Action::Static) {
            break settings;
        }
        let vars = RequestVars {
            files: Some((&settings.files, prefix)),
            uri: &rw.uri,
            ..base()
        };
        match static_files::resolve(&settings.files, prefix, &rw.uri, &vars, &mut log) {
            Resolved::Redirect(to) if redirects < rewrite::MAX_URI_CHANGES => {
                redirects += 1;
                named = None;
                server_phase = true;
                // Arguments of a fallback URI are not carried over (nginx keeps the
                // request's own).
                let path = to.split('?').next().unwrap_or("/");
                rw.uri = match uri::normalize(path.as_bytes()) {
                    Ok(u) => u.into_owned(),
                    Err(_) => {
                        target = Some(Resolved::Status(400));
                        break settings;
                    }
                };
            }
            Resolved::Named(name) if redirects < rewrite::MAX_URI_CHANGES => {
                redirects += 1;
                match server
                    .locations
                    .iter()
                    .find(|l| l.kind == LocationKind::Named && l.pattern == name)
                {
                    Some(l) => named = Some(l),
                    None => {
                        log(
                            Level::Error,
                            format!("could not find named location \"{name}\""),
                        );
                        target = Some(Resolved::Status(500));
                        break settings;
                    }
                }
            }
            Resolved::Redirect(to) | Resolved::Named(to) => {
                log(
                    Level::Error,
                    format!("rewrite or internal redirection cycle while internally redirecting to \"{to}\""),
                );
                target = Some(Resolved::Status(500));
                break settings;
            }
            other => {
                target = Some(other);
                break settings;
            }
        }
    };
    let info: &ClientInfo = located.get().unwrap_or(info);
    let uri: &str = &rw.uri;
    let vars_here = || RequestVars {
        locals: Some(&locals),
        files: Some((&settings.files, None)),
        ..request_vars(head, buf, info, &server.primary_name, uri)
    };
    let keep = head.keep_alive
        && !settings.keepalive_timeout.is_zero()
        && served < settings.keepalive_requests
        && !stopping;

    if head.method == Method::Connect {
        return answer_local(stream, buf, head, 405, None, settings, false).await;
    }

    let log = match &settings.access_log {
        AccessLogConf::Off => None,
        AccessLogConf::Combined(path) => rt
            .access_logs
            .get(path)
            .map(|log| LogLine::capture(log, &vars_here())),
        AccessLogConf::Format { path, format } => rt.access_logs.get(path).map(|log| {
            let conn = ConnFacts {
                id: info.id,
                requests: served,
                pipelined: ex.pipelined,
            };
            LogLine {
                log,
                remote: info.remote,
                kind: LineKind::Format {
                    format,
                    pending: PendingLine::prepare(format, &vars_here(), &conn),
                },
            }
        }),
    };
    if let Some(answer) = answer {
        let headers = evaluated_add_header(settings, &vars_here());
        let location_base = absolute_base(head, buf, info);
        // Boxed, as the static path below: the proxy path's state is what a request
        // holds most of the time, and an inline answer would enlarge it for all.
        let mut handled = Box::pin(send_answer(
            stream,
            buf,
            head,
            answer,
            settings,
            keep,
            &headers,
            &location_base,
        ))
        .await;
        handled.log = log;
        return handled;
    }
    let log_upstream = matches!(&settings.access_log, AccessLogConf::Format { format, .. } if format.uses_upstream);
    // `limit_rate`, `limit_rate_after` for this response.
    let limit_rate = {
        let v = vars_here();
        (
            v.size(&settings.limit_rate),
            v.size(&settings.limit_rate_after),
        )
    };
    let mut handled = match &settings.action {
        Action::Proxy(pass) => {
            let Some(upstream) = rt.upstreams.get(pass.upstream) else {
                return answer_local(stream, buf, head, 500, None, settings, false).await;
            };
            let f = Forward {
                head,
                settings,
                pass,
                upstream,
                info,
                server_name: &server.primary_name,
                uri,
                keep_client: keep,
                log_upstream,
                locals: Some(&locals),
                rewritten: rw.rewritten.then_some(RewrittenUri {
                    prefix_applies: rw.prefix_applies,
                }),
            };
            let pace = crate::net::pace::Pace::new(limit_rate.0, limit_rate.1);
            let mut client = Http1Downstream::new(stream, settings.send_timeout).paced(pace);
            let done = crate::proxy::forward(&f, &mut client, buf).await;
            Handled {
                status: done.status,
                body_bytes: done.body_bytes,
                head_bytes: done.head_bytes,
                attempts: done.attempts,
                keep_alive: done.keep_client,
                keepalive_timeout: settings.keepalive_timeout,
                header_timeout: settings.client_header_timeout,
                log: None,
            }
        }
        Action::Static => {
            let headers = evaluated_add_header(settings, &vars_here());
            Box::pin(serve_static(
                stream, buf, head, settings, target, uri, info, keep, &headers, limit_rate,
            ))
            .await
        }
    };
    handled.log = log;
    handled
}

/// Answers from the file system what [`static_files::resolve`] found.
#[allow(clippy::too_many_arguments)]
async fn serve_static<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    settings: &LocSettings,
    target: Option<Resolved>,
    uri: &str,
    info: &ClientInfo,
    keep: bool,
    add_header: &[(&str, Vec<u8>, bool)],
    limit_rate: (u64, u64),
) -> Handled<'a> {
    let body_in_buf = body_in_buffer(buf, head);
    let keep = keep && body_in_buf.is_some();
    let get_or_head = matches!(head.method, Method::Get | Method::Head);
    let sent = match target {
        Some(Resolved::Status(code)) => {
            return answer_local(stream, buf, head, code, None, settings, keep).await
        }
        // The static module answers 405 to anything but GET and HEAD.
        Some(Resolved::File(..) | Resolved::Listing(_) | Resolved::AddSlash) if !get_or_head => {
            return answer_local(stream, buf, head, 405, None, settings, keep).await
        }
        Some(Resolved::File(path, meta)) => {
            let r = static_files::FileRequest {
                head,
                buf,
                files: &settings.files,
                add_header,
                keep_alive: keep,
                send_timeout: settings.send_timeout,
                limit_rate,
            };
            static_files::send_file(stream, &r, &path, &meta).await
        }
        Some(Resolved::Listing(dir)) => {
            static_files::send_listing(stream, head, &dir, uri, keep, settings.send_timeout).await
        }
        Some(Resolved::AddSlash) => {
            let location = redirect_with_slash(head, buf, info, uri);
            static_files::send_redirect(stream, head, &location, keep, settings.send_timeout).await
        }
        Some(Resolved::Redirect(_) | Resolved::Named(_)) | None => {
            return answer_local(stream, buf, head, 500, None, settings, false).await
        }
    };
    if let Some(n) = body_in_buf {
        let end = (head.head_len + n).min(buf.len());
        buf.drain(..end);
    }
    Handled {
        status: sent.status,
        body_bytes: sent.body_bytes,
        head_bytes: sent.head_bytes,
        attempts: Vec::new(),
        keep_alive: sent.keep_alive,
        keepalive_timeout: settings.keepalive_timeout,
        header_timeout: settings.client_header_timeout,
        log: None,
    }
}

/// nginx's absolute redirect to a directory's URI with its slash, the arguments kept.
fn redirect_with_slash(head: &RequestHead, buf: &[u8], info: &ClientInfo, uri: &str) -> String {
    let args = head
        .query(buf)
        .map(|q| format!("?{}", String::from_utf8_lossy(q)))
        .unwrap_or_default();
    format!("{}{uri}/{args}", absolute_base(head, buf, info))
}

/// What nginx puts before a relative `Location` (`absolute_redirect on`):
/// `http://HOST[:PORT]` with the Host the client asked for and the listening port
/// unless 80.
fn absolute_base(head: &RequestHead, buf: &[u8], info: &ClientInfo) -> String {
    let host = head
        .header_value(buf, "host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(vhost::normalize_host)
        .unwrap_or_default();
    let port = match info.local.port() {
        Some(80) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    format!("http://{host}{port}")
}

/// A level's `add_header` lines with their values for this request.
fn evaluated_add_header<'s>(
    settings: &'s LocSettings,
    vars: &RequestVars<'_>,
) -> Vec<(&'s str, Vec<u8>, bool)> {
    settings
        .add_header
        .iter()
        .map(|h| {
            let mut v = Vec::new();
            vars.eval(&h.value, &mut v);
            (h.name.as_str(), v, h.always)
        })
        .collect()
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
    add_header: &[(&str, Vec<u8>, bool)],
    location_base: &str,
) -> Handled<'a> {
    let (status, out, body_len, keep) = match answer {
        Answer::Close => {
            return Handled {
                status: 444,
                body_bytes: 0,
                head_bytes: 0,
                attempts: Vec::new(),
                keep_alive: false,
                keepalive_timeout: settings.keepalive_timeout,
                header_timeout: settings.client_header_timeout,
                log: None,
            }
        }
        answer => {
            // nginx closes after an error that may have left the request unread.
            let keep = keep
                && body_in_buffer(buf, head).is_some()
                && !matches!(answer, Answer::Status(code) if code >= 500 || code == 400);
            let mut out = Buf::head();
            let (status, body_len) = rewrite::write_response(
                &mut out,
                &answer,
                &rewrite::ResponseFacts {
                    keep_alive: keep,
                    http10: head.minor_version == 0,
                    head_only: head.method == Method::Head,
                    default_type: &settings.files.default_type,
                    add_header,
                    location_base,
                },
            );
            (status, out, body_len, keep)
        }
    };
    send_local(stream, buf, head, &out, status, body_len, keep, settings).await
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

/// Answers a request ferrolb handles itself (`return`, 404, errors): an error page, a
/// redirect, or the `return` text. Discards a request body that is already buffered;
/// otherwise closes the connection after answering.
async fn answer_local<'a>(
    stream: &mut Stream,
    buf: &mut Buf,
    head: &RequestHead,
    status: u16,
    text: Option<Vec<u8>>,
    settings: &LocSettings,
    keep: bool,
) -> Handled<'a> {
    let body_in_buf = body_in_buffer(buf, head);
    let keep = keep && body_in_buf.is_some() && status < 500 && status != 400;
    let http10 = head.minor_version == 0;
    let head_only = head.method == Method::Head;
    let mut out = Buf::head();
    let mut body_len = 0u64;
    match text {
        Some(t) if respond::is_redirect(status) => {
            // nginx sends its page for the status with the Location.
            let page = respond::error_body(status);
            respond::write_status_line(&mut out, status, keep, http10);
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
            respond::write_status_line(&mut out, status, keep, http10);
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

/// Writes a response ferrolb made (`out`: head, then `body_len` body bytes), drops a
/// request body that is already in the buffer, and says what the connection does next.
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
    if let Some(n) = body_in_buffer(buf, head) {
        let end = (head.head_len + n).min(buf.len());
        buf.drain(..end);
    }
    Handled {
        status,
        body_bytes: body_len,
        head_bytes: out.len() as u64 - body_len,
        attempts: Vec::new(),
        keep_alive: keep && ok,
        keepalive_timeout: settings.keepalive_timeout,
        header_timeout: settings.client_header_timeout,
        log: None,
    }
}

/// What the access log line of a request needs, captured before the request is
/// forwarded (forwarding drains the buffer the head points into). Only built when the
/// location logs, so requests with `access_log off` pay nothing.
struct LogLine<'a> {
    log: &'a AccessLog,
    /// `$remote_addr` of the request.
    remote: ClientAddr,
    kind: LineKind<'a>,
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

impl<'a> LogLine<'a> {
    fn capture(log: &'a AccessLog, vars: &RequestVars<'_>) -> Self {
        let mut request = Vec::with_capacity(128);
        vars.request_line(&mut request);
        LogLine {
            log,
            remote: vars.remote,
            kind: LineKind::Combined {
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
            },
        }
    }

    fn write(&self, h: &Handled<'_>, started: std::time::Instant) {
        let mut line = Vec::with_capacity(256);
        match &self.kind {
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
            LineKind::Format { format, pending } => pending.finish(
                format,
                &ResponseFacts {
                    status: h.status,
                    body_bytes: h.body_bytes,
                    bytes_sent: h.head_bytes + h.body_bytes,
                    started,
                    upstream: &h.attempts,
                },
                &mut line,
            ),
        }
        self.log.write_line(&line);
    }
}
