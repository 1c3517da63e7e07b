//! The rewrite phase as nginx runs it (`ngx_http_rewrite_module.c`, the script codes of
//! `ngx_http_script.c`): a level's `return`, `rewrite`, `set`, `break` and `if`
//! directives in file order, once at server level before the location search and once
//! in the location found. An `if` that holds in a location makes its block the request's
//! location settings (nginx's implicit location); its directives run inline, and the
//! location's following directives go on after them.

use std::sync::Arc;

use crate::config::charset::CharsetConf;
use crate::config::{
    Action, Condition, FileTest, Level, LocSettings, RewriteFlag, RewriteOp, RewriteRule,
    ServerName, Template, TemplatePart, Var,
};
use crate::http1::respond;
use crate::vars::{AddedField, Locals, RequestVars};

/// How many times the URI may change (`rewrite ... last`, `try_files`, `index`) before
/// nginx gives up with a 500: `NGX_HTTP_MAX_URI_CHANGES`.
pub(super) const MAX_URI_CHANGES: u32 = 10;

/// Which of nginx's two rewrite phases runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// `NGX_HTTP_SERVER_REWRITE_PHASE`: the server's directives, before the location
    /// search; a changed URI is simply what the search then uses.
    Server,
    /// `NGX_HTTP_REWRITE_PHASE`: the location's directives; a changed URI (without
    /// `break`) searches the location again.
    Location,
}

/// The URI as the rewrite phases leave it.
#[derive(Debug, Clone)]
pub(super) struct UriState {
    /// `$uri`.
    pub(super) uri: String,
    /// A `rewrite` changed the URI or the arguments: the upstream gets the new ones.
    pub(super) rewritten: bool,
    /// Cleared by `break` after a change (nginx's `valid_location`): a `proxy_pass`
    /// URI part no longer replaces the location prefix.
    pub(super) prefix_applies: bool,
    /// The client's path had `%XX` or `+` (nginx's `quoted_uri`/`plus_in_uri`):
    /// captures copied into a redirect or into arguments are escaped again.
    quoted: bool,
    /// Changed in this location phase and not kept by `break`.
    changed: bool,
}

impl UriState {
    /// The state for a request whose normalised path is `uri` and whose raw path is
    /// `raw_path`.
    pub(super) fn new(uri: String, raw_path: &[u8]) -> Self {
        UriState {
            uri,
            rewritten: false,
            prefix_applies: true,
            quoted: raw_path.iter().any(|&b| b == b'%' || b == b'+'),
            changed: false,
        }
    }

    /// After an internal redirect (`error_page`) to the normalised `uri`: the upstream
    /// gets the new URI and arguments, and a `proxy_pass` URI part applies again
    /// (nginx's `valid_location`).
    pub(super) fn redirected(&mut self, uri: String) {
        self.uri = uri;
        self.rewritten = true;
        self.prefix_applies = true;
        self.changed = false;
    }
}

/// What the request does after a phase.
#[derive(Debug)]
pub(super) enum Flow<'c> {
    /// Go on to the content handler: with an `if` block's settings when one held.
    Continue(Option<&'c Arc<LocSettings>>),
    /// The URI changed in the location: search the location again.
    SearchAgain,
    /// The request is answered here, with an `if` block's settings when one held.
    Answer(Answer, Option<&'c Arc<LocSettings>>),
}

/// An answer of the rewrite module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// `return 444`: close the connection without a response.
    Close,
    /// A status with the standard page (`return 403;`, or 500 when a rewrite fails).
    Status(u16),
    /// 401 with the standard page and `WWW-Authenticate: Basic realm="REALM"`
    /// (`auth_basic`).
    Unauthorized(Vec<u8>),
    /// `return CODE TEXT` for a code that is not a redirect, and `return 200;`.
    Text {
        /// The status.
        code: u16,
        /// The body.
        body: Vec<u8>,
    },
    /// `return 301 URL`, a redirecting `rewrite`: `location` as nginx puts it in the
    /// header (a relative one is made absolute when sent).
    Redirect {
        /// The status.
        code: u16,
        /// The `Location` value.
        location: Vec<u8>,
    },
}

/// What writing an [`Answer`] needs to know about the request and the location.
pub(super) struct ResponseFacts<'h> {
    /// The connection stays open afterwards.
    pub(super) keep_alive: bool,
    /// `keepalive_timeout`'s second value (`Keep-Alive: timeout=N`).
    pub(super) keepalive_header: Option<std::time::Duration>,
    /// `chunked_transfer_encoding`: an `add_trailer` trailer may chunk the body.
    pub(super) chunked_transfer_encoding: bool,
    /// The client spoke HTTP/1.0.
    pub(super) http10: bool,
    /// A HEAD request: no body.
    pub(super) head_only: bool,
    /// `default_type`: nginx's type for a `return` text.
    pub(super) default_type: &'h str,
    /// `add_header` lines, evaluated for the request.
    pub(super) add_header: &'h [AddedField<'h>],
    /// `add_trailer` lines, evaluated for the request.
    pub(super) add_trailer: &'h [AddedField<'h>],
    /// `http://HOST[:PORT]`, put before a relative `Location`.
    pub(super) location_base: &'h str,
    /// The status of an error page answered this way (nginx's `err_status`), in
    /// place of the answer's own.
    pub(super) status: Option<u16>,
    /// The location's charset settings and their names for this request.
    pub(super) charset: (&'h CharsetConf, &'h super::charset::Names),
}

/// Writes a `return` text, a redirect or a standard page as nginx sends them, with the
/// `add_header` lines that apply; returns the status and the body's length.
/// ([`Answer::Close`] writes nothing.)
pub(super) fn write_response(
    out: &mut Vec<u8>,
    answer: &Answer,
    f: &ResponseFacts<'_>,
) -> (u16, u64) {
    let (status, content_type, location, body): (u16, &str, Option<&[u8]>, Vec<u8>) = match answer {
        Answer::Text { code, body } => (*code, f.default_type, None, body.clone()),
        Answer::Redirect { code, location } => (
            *code,
            "text/html",
            Some(location),
            respond::error_body(*code).into_bytes(),
        ),
        Answer::Status(code) => (
            *code,
            "text/html",
            None,
            respond::error_body(*code).into_bytes(),
        ),
        Answer::Unauthorized(_) => (
            401,
            "text/html",
            None,
            respond::error_body(401).into_bytes(),
        ),
        Answer::Close => return (444, 0),
    };
    let status = f.status.unwrap_or(status);
    // nginx's charset filter sees these responses too.
    let charset = super::charset::decide(
        f.charset.0,
        f.charset.1,
        &super::charset::Facts {
            status,
            content_type: Some(content_type.as_bytes()),
            encoded: false,
            accel_charset: None,
        },
    );
    let content_type = charset.content_type.as_deref().unwrap_or(content_type);
    let body = match charset.recoding {
        Some(how) => {
            let mut recoded = Vec::with_capacity(body.len());
            super::charset::Recoder::new(how).piece(&body, &mut recoded);
            recoded
        }
        None => body,
    };
    // A recoding to or from utf-8 drops the length (nginx then sends the body chunked
    // to an HTTP/1.1 client; others get the length of the recoded body).
    let resized = charset.recoding.is_some_and(|c| c.changes_length());
    let head_start = out.len();
    respond::write_status_line_with(out, status, f.keep_alive, f.http10, f.keepalive_header);
    if let Answer::Unauthorized(realm) = answer {
        out.extend_from_slice(b"WWW-Authenticate: Basic realm=\"");
        out.extend_from_slice(realm);
        out.extend_from_slice(b"\"\r\n");
    }
    let applies = respond::add_header_applies(status);
    // `add_trailer`: the body goes chunked to an HTTP/1.1 client, to end with them.
    let chunked = !f.http10
        && f.chunked_transfer_encoding
        && !f.head_only
        && !matches!(status, 204 | 304)
        && (resized || crate::vars::trailer_expected(f.add_trailer, applies));
    if status == 204 {
        // nginx's header filter sends a 204 without type, length or body.
    } else if chunked {
        out.extend_from_slice(
            format!("Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n").as_bytes(),
        );
    } else {
        out.extend_from_slice(
            format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    if let Some(location) = location {
        out.extend_from_slice(b"Location: ");
        // nginx's `absolute_redirect on`: a path gets scheme, host and port.
        if location.first() == Some(&b'/') {
            out.extend_from_slice(f.location_base.as_bytes());
        }
        out.extend_from_slice(location);
        out.extend_from_slice(b"\r\n");
    }
    crate::vars::append_fields(out, head_start, f.add_header, applies);
    out.extend_from_slice(b"\r\n");
    if f.head_only || status == 204 {
        return (status, 0);
    }
    if !chunked {
        out.extend_from_slice(&body);
        return (status, body.len() as u64);
    }
    let body_start = out.len();
    if !body.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
    }
    let last = crate::vars::last_chunk(f.add_trailer, applies, &out[head_start..body_start]);
    out.extend_from_slice(&last);
    (status, (out.len() - body_start) as u64)
}

/// How a list of directives ended.
enum Step {
    /// Ran to its end: the enclosing list goes on.
    Next,
    /// `break`, `rewrite ... last|break`: the phase ends.
    Stop,
    /// Answered.
    Answer(Answer),
}

/// The request facts the directives need.
pub(super) struct Context<'v, 'a> {
    /// The request's variables (their `uri` is replaced by the state's as it changes).
    pub(super) vars: &'v RequestVars<'a>,
    /// Where `set`, captures and rewritten arguments go.
    pub(super) locals: &'v Locals<'a>,
    /// Writes an error-log line about the request.
    pub(super) log: &'v mut dyn FnMut(Level, String),
}

/// Runs one level's directives.
pub(super) fn run<'c>(
    ops: &'c [RewriteOp],
    phase: Phase,
    state: &mut UriState,
    cx: &mut Context<'_, '_>,
) -> Flow<'c> {
    state.changed = false;
    let mut chosen = None;
    match run_list(ops, state, cx, &mut chosen) {
        Step::Answer(a) => Flow::Answer(a, chosen),
        Step::Next | Step::Stop if phase == Phase::Location && state.changed => Flow::SearchAgain,
        Step::Next | Step::Stop => Flow::Continue(chosen),
    }
}

fn run_list<'c>(
    ops: &'c [RewriteOp],
    state: &mut UriState,
    cx: &mut Context<'_, '_>,
    chosen: &mut Option<&'c Arc<LocSettings>>,
) -> Step {
    for op in ops {
        match op {
            RewriteOp::Return { code, text } => {
                return Step::Answer(answer(*code, text, state, cx))
            }
            RewriteOp::Rewrite(rule) => match rewrite(rule, state, cx) {
                Step::Next => {}
                other => return other,
            },
            RewriteOp::Set { slot, value } => {
                let mut v = Vec::new();
                eval(value, state, cx, &mut v);
                cx.locals.set(*slot, v);
            }
            RewriteOp::SetLimitRate(value) => {
                let mut v = Vec::new();
                eval(value, state, cx, &mut v);
                match std::str::from_utf8(&v)
                    .ok()
                    .and_then(crate::config::validate::parse_size)
                {
                    Some(rate) => cx.locals.set_limit_rate(rate),
                    None => crate::log::emit(
                        crate::config::Level::Error,
                        None,
                        format_args!("invalid size \"{}\"", String::from_utf8_lossy(&v)),
                    ),
                }
            }
            RewriteOp::Break => {
                if state.changed {
                    state.prefix_applies = false;
                    state.changed = false;
                }
                return Step::Stop;
            }
            RewriteOp::If(block) => {
                if holds(&block.condition, state, cx) {
                    if let Some(settings) = &block.location {
                        // nginx keeps the content handler an earlier `if` set when this
                        // one sets none: a `proxy_pass` from an earlier block then runs
                        // with this block's settings, which have no upstream (500).
                        let proxied_before =
                            chosen.is_some_and(|s| matches!(s.action, Action::Proxy(_)));
                        if proxied_before && matches!(settings.action, Action::Static) {
                            (cx.log)(Level::Alert, "no upstream configuration".to_owned());
                            return Step::Answer(Answer::Status(500));
                        }
                        *chosen = Some(settings);
                    }
                    match run_list(&block.ops, state, cx, chosen) {
                        Step::Next => {}
                        other => return other,
                    }
                }
            }
        }
    }
    Step::Next
}

/// `return`: nginx sends a response of its own for a code below 400 or with a text,
/// else the standard page of the code; 444 closes the connection.
fn answer(
    code: u16,
    text: &Option<Template>,
    state: &UriState,
    cx: &mut Context<'_, '_>,
) -> Answer {
    if code == 444 {
        return Answer::Close;
    }
    let mut value = Vec::new();
    if let Some(t) = text {
        eval(t, state, cx, &mut value);
    }
    let redirect = matches!(code, 301 | 302 | 303 | 307 | 308);
    match text {
        Some(_) if redirect => Answer::Redirect {
            code,
            location: value,
        },
        None if code >= 400 || redirect => Answer::Status(code),
        _ => Answer::Text { code, body: value },
    }
}

/// `rewrite`: on a match, the replacement becomes the URI (and arguments) or a
/// redirect, as `ngx_http_script_regex_start_code`/`_end_code` build it.
fn rewrite(rule: &RewriteRule, state: &mut UriState, cx: &mut Context<'_, '_>) -> Step {
    let Some(caps) = rule.regex.captures(&state.uri) else {
        cx.locals.forget_captures();
        return Step::Next;
    };
    cx.locals.keep_captures(&caps, &rule.named_captures);
    drop(caps);
    let redirect = matches!(rule.flag, RewriteFlag::Redirect | RewriteFlag::Permanent);
    let mut out = Vec::new();
    // Where the arguments start: at the first `?` the replacement itself writes.
    let mut args_at: Option<usize> = None;
    let vars = RequestVars {
        uri: &state.uri,
        ..*cx.vars
    };
    for part in &rule.replacement.parts {
        match part {
            TemplatePart::Literal(s) => {
                if args_at.is_none() && !redirect {
                    if let Some(q) = s.find('?') {
                        args_at = Some(out.len() + q);
                    }
                }
                out.extend_from_slice(s.as_bytes());
            }
            TemplatePart::Var(Var::Capture(n)) => {
                let value = cx.locals.capture(usize::from(*n)).unwrap_or_default();
                if state.quoted && (redirect || args_at.is_some()) {
                    escape_args(&value, &mut out);
                } else {
                    out.extend_from_slice(&value);
                }
            }
            TemplatePart::Var(v) => vars.eval_var(v, &mut out),
        }
    }
    let mut request_args = Vec::new();
    vars.eval_var(&Var::Args, &mut request_args);
    let add_args = !rule.drop_args && !request_args.is_empty();
    if redirect {
        let mut location = unescape_redirect(&out);
        if add_args {
            location.push(if rule.has_args { b'&' } else { b'?' });
            location.extend_from_slice(&request_args);
        }
        let code = if rule.flag == RewriteFlag::Permanent {
            301
        } else {
            302
        };
        return Step::Answer(Answer::Redirect { code, location });
    }
    let new_uri = match args_at {
        Some(at) => {
            let mut args = out[at + 1..].to_vec();
            if add_args {
                args.push(b'&');
                args.extend_from_slice(&request_args);
            }
            cx.locals.set_args(args);
            out.truncate(at);
            out
        }
        None => {
            if rule.drop_args {
                cx.locals.set_args(Vec::new());
            }
            out
        }
    };
    if new_uri.is_empty() {
        (cx.log)(
            Level::Error,
            "the rewritten URI has a zero length".to_owned(),
        );
        return Step::Answer(Answer::Status(500));
    }
    let new_uri = String::from_utf8_lossy(&new_uri).into_owned();
    // nginx uses the result as it is; ferrolb resolves `.`/`..` segments a replacement
    // may write, so a file is never looked up outside the root.
    state.uri = if new_uri.contains("/.") {
        match super::uri::normalize(new_uri.as_bytes()) {
            Ok(u) => u.into_owned(),
            Err(_) => return Step::Answer(Answer::Status(400)),
        }
    } else {
        new_uri
    };
    state.rewritten = true;
    match rule.flag {
        RewriteFlag::Break => {
            state.prefix_applies = false;
            state.changed = false;
            Step::Stop
        }
        RewriteFlag::Last => {
            state.changed = true;
            Step::Stop
        }
        _ => {
            state.changed = true;
            Step::Next
        }
    }
}

/// Whether an `if` condition holds.
fn holds(cond: &Condition, state: &UriState, cx: &mut Context<'_, '_>) -> bool {
    let mut left = Vec::new();
    match cond {
        Condition::Value(t) => {
            eval(t, state, cx, &mut left);
            !(left.is_empty() || left == b"0")
        }
        Condition::Equals {
            left: l,
            right,
            negate,
        } => {
            eval(l, state, cx, &mut left);
            let mut r = Vec::new();
            eval(right, state, cx, &mut r);
            (left == r) != *negate
        }
        Condition::Matches {
            left: l,
            regex,
            named_captures,
            negate,
        } => {
            eval(l, state, cx, &mut left);
            let subject = String::from_utf8_lossy(&left);
            let matched = match regex.captures(&subject) {
                Some(caps) => {
                    cx.locals.keep_captures(&caps, named_captures);
                    true
                }
                None => {
                    cx.locals.forget_captures();
                    false
                }
            };
            matched != *negate
        }
        Condition::File { path, test, negate } => {
            eval(path, state, cx, &mut left);
            file_test(&left, *test) != *negate
        }
    }
}

/// Keeps the groups of the `server_name ~regex` that picked the server for `host`
/// (named ones become variables, as in nginx).
pub(super) fn server_name_captures(
    names: &[ServerName],
    host: Option<&str>,
    user_vars: &[String],
    locals: &Locals<'_>,
) {
    // Nothing to capture (nearly always): no allocation, no host normalisation.
    if !names.iter().any(|n| matches!(n, ServerName::Regex(_))) {
        return;
    }
    let Some(host) = host.map(super::vhost::normalize_host) else {
        return;
    };
    let host = host.to_ascii_lowercase();
    for name in names {
        let ServerName::Regex(re) = name else {
            continue;
        };
        if let Some(caps) = re.captures(&host) {
            let named: Vec<(usize, usize)> = re
                .capture_names()
                .enumerate()
                .filter_map(|(group, n)| {
                    let n = n?;
                    Some((group, user_vars.iter().position(|u| u == n)?))
                })
                .collect();
            locals.keep_captures(&caps, &named);
            return;
        }
    }
}

/// `-f`, `-d`, `-e`, `-x` on a path, following symbolic links as nginx's `stat` does.
pub(super) fn file_test(path: &[u8], test: FileTest) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    match test {
        FileTest::File => meta.is_file(),
        FileTest::Dir => meta.is_dir(),
        FileTest::Exists => true,
        // nginx's `ngx_is_exec`: the owner's execute bit.
        FileTest::Executable => meta.permissions().mode() & 0o100 != 0,
    }
}

fn eval(t: &Template, state: &UriState, cx: &Context<'_, '_>, out: &mut Vec<u8>) {
    RequestVars {
        uri: &state.uri,
        ..*cx.vars
    }
    .eval(t, out);
}

/// nginx's `NGX_ESCAPE_ARGS`: what a capture may not carry into arguments or a redirect.
fn escape_args(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        let escape = !(0x20..0x7f).contains(&b)
            || matches!(
                b,
                b' ' | b'"'
                    | b'#'
                    | b'%'
                    | b'&'
                    | b'+'
                    | b';'
                    | b'<'
                    | b'>'
                    | b'?'
                    | b'\\'
                    | b'^'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
            );
        if escape {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// nginx's `NGX_UNESCAPE_REDIRECT` of a redirect's `Location`: up to the first `?`,
/// `%XX` becomes its character when that is printable ASCII above `%`; the rest stays.
fn unescape_redirect(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'?' {
            out.extend_from_slice(&value[i..]);
            break;
        }
        let decoded = (b == b'%')
            .then(|| value.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(c) if c > b'%' && c < 0x7f => {
                out.push(c);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LoadOptions, RewriteOp};
    use crate::http1::RequestHead;
    use crate::net::ClientAddr;

    fn load(server: &str) -> Config {
        let opts = LoadOptions {
            text: Some(format!(
                "events {{}} http {{ map $http_user_agent $is_bot {{ default 0; ~*bot 1; }} server {{ {server} }} }}"
            )),
            ..Default::default()
        };
        crate::config::load(std::path::Path::new("t.conf"), &opts).expect("config loads")
    }

    /// Runs the server's directives, then those of its first location, on `request`.
    fn run_on(server: &str, request: &str) -> (Flow<'static>, UriState) {
        let cfg: &'static Config = Box::leak(Box::new(load(server)));
        let buf: &'static [u8] = Box::leak(request.as_bytes().to_vec().into_boxed_slice());
        let head: &'static mut RequestHead = Box::leak(Box::default());
        head.parse(buf).expect("request parses");
        let head: &'static RequestHead = head;
        let local = Box::leak(Box::new("127.0.0.1:80".parse().expect("addr")));
        let http = &cfg.http;
        let locals: &'static Locals<'static> = Box::leak(Box::new(Locals::new(http)));
        let vars: &'static RequestVars<'static> = Box::leak(Box::new(RequestVars {
            buf,
            head,
            remote: ClientAddr::Inet("10.0.0.1:5000".parse().expect("addr")),
            peer: ClientAddr::Inet("10.0.0.1:5000".parse().expect("addr")),
            proxy_protocol: None,
            local,
            server_name: "example.com",
            tls: None,
            uri: "",
            proxy_host: "",
            upstream_addr: None,
            locals: Some(locals),
            files: None,
            connection: 0,
            http2: None,
        }));
        let path = head.path(buf);
        let uri = crate::server::uri::normalize(path).expect("path normalises");
        let mut state = UriState::new(uri.into_owned(), path);
        let mut log = |_: Level, _: String| {};
        let mut cx = Context {
            vars,
            locals,
            log: &mut log,
        };
        let server = &http.servers[0];
        match run(&server.settings.rewrite, Phase::Server, &mut state, &mut cx) {
            Flow::Continue(_) => {}
            other => return (other, state),
        }
        let flow = match server.locations.first() {
            Some(l) => run(&l.settings.rewrite, Phase::Location, &mut state, &mut cx),
            None => Flow::Continue(None),
        };
        (flow, state)
    }

    fn get(path: &str, host: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl\r\n\r\n")
    }

    fn redirect(flow: &Flow<'_>) -> Option<(u16, String)> {
        match flow {
            Flow::Answer(Answer::Redirect { code, location }, _) => {
                Some((*code, String::from_utf8_lossy(location).into_owned()))
            }
            _ => None,
        }
    }

    #[test]
    fn replacements_and_arguments() {
        let conf = "location / { rewrite ^/old/(.*)$ /new/$1 permanent; \
                    rewrite ^/a/(\\w+)$ /b?x=$1 last; rewrite ^/drop$ /dropped? last; \
                    rewrite ^/ext/(.*) https://example.org/$1?y=2; rewrite ^/keep$ /kept break; }";
        let (f, _) = run_on(conf, &get("/old/a/b.html?q=1", "h"));
        assert_eq!(redirect(&f), Some((301, "/new/a/b.html?q=1".into())));
        let (f, _) = run_on(conf, &get("/ext/p", "h"));
        assert_eq!(
            redirect(&f),
            Some((302, "https://example.org/p?y=2".into()))
        );
        let (f, _) = run_on(conf, &get("/ext/p?z=3", "h"));
        assert_eq!(
            redirect(&f),
            Some((302, "https://example.org/p?y=2&z=3".into()))
        );
        // Escaped again when the client's path was escaped.
        let (f, _) = run_on(conf, &get("/old/a%20b", "h"));
        assert_eq!(redirect(&f), Some((301, "/new/a%20b".into())));
        let (f, s) = run_on(conf, &get("/a/xyz?q=1", "h"));
        assert!(matches!(f, Flow::SearchAgain));
        assert_eq!(s.uri, "/b");
        let (f, s) = run_on(conf, &get("/drop?q=1", "h"));
        assert!(matches!(f, Flow::SearchAgain));
        assert_eq!(s.uri, "/dropped");
        let (f, s) = run_on(conf, &get("/keep", "h"));
        assert!(matches!(f, Flow::Continue(None)));
        assert_eq!((s.uri.as_str(), s.prefix_applies), ("/kept", false));
    }

    #[test]
    fn server_level_if_and_return() {
        let conf = "if ($host = www.example.com) { return 301 https://example.com$request_uri; } \
                    if ($request_method = POST) { return 405; } \
                    if ($is_bot) { return 444; } \
                    set $greeting \"hi $arg_name\"; \
                    location / { return 200 \"$greeting from $uri\"; }";
        let (f, _) = run_on(conf, &get("/x?a=1", "www.example.com"));
        assert_eq!(
            redirect(&f),
            Some((301, "https://example.com/x?a=1".into()))
        );
        let (f, _) = run_on(
            conf,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(f, Flow::Answer(Answer::Status(405), _)));
        let (f, _) = run_on(
            conf,
            "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: Googlebot\r\n\r\n",
        );
        assert!(matches!(f, Flow::Answer(Answer::Close, _)));
        let (f, _) = run_on(conf, &get("/p?name=bob", "h"));
        assert!(
            matches!(&f, Flow::Answer(Answer::Text { code: 200, body }, _) if body == b"hi bob from /p"),
            "{f:?}"
        );
    }

    #[test]
    fn location_if_is_an_implicit_location() {
        let conf = "location / { set $v a; if ($arg_x) { set $v b; add_header X-V $v; } \
                    if ($uri ~ ^/(?<first>[^/]+)/) { return 200 \"$first $1 $v\"; } }";
        let (f, _) = run_on(conf, &get("/p?x=1", "h"));
        match f {
            Flow::Continue(Some(s)) => assert_eq!(s.add_header.len(), 1),
            other => panic!("{other:?}"),
        }
        let (f, _) = run_on(conf, &get("/dir/f", "h"));
        assert!(
            matches!(&f, Flow::Answer(Answer::Text { body, .. }, _) if body == b"dir dir a"),
            "{f:?}"
        );
    }

    #[test]
    fn break_and_file_tests() {
        let conf = "location / { rewrite ^ /x; break; return 200 never; }";
        let (f, s) = run_on(conf, &get("/p", "h"));
        assert!(matches!(f, Flow::Continue(None)), "{f:?}");
        assert!(!s.prefix_applies);
        assert!(file_test(b"/", FileTest::Dir));
        assert!(!file_test(b"/", FileTest::File));
        assert!(file_test(b"/", FileTest::Exists));
        assert!(file_test(b"/bin/sh", FileTest::Executable));
        assert!(!file_test(b"/no/such/file", FileTest::Exists));
        let cfg = load("location / { if (!-f $request_filename) { return 404; } }");
        assert!(matches!(
            cfg.http.servers[0].locations[0].settings.rewrite[0],
            RewriteOp::If(_)
        ));
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_args(b"a b&c/d?", &mut out);
        assert_eq!(out, b"a%20b%26c/d%3F");
        assert_eq!(unescape_redirect(b"/a%41%20b?x=%41"), b"/aA%20b?x=%41");
    }
}
