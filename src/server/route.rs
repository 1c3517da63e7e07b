//! Where a request ends up: nginx's phases from the server rewrite phase to the content
//! handler's choice — location search, the location's rewrite phase, the `internal`
//! check, the preaccess and access phases of each location (realip, `limit_req`,
//! `limit_conn`, `allow`/`deny`, `auth_basic`; see [`super::admission`]), and the
//! internal redirects of `rewrite ... last`, `index` and `try_files` — until a
//! location's settings and what to answer with are known. Nothing is written to the
//! client here.

use super::rewrite::{self, Answer, Flow, Phase, UriState};
use super::static_files::{self, Resolved};
use super::{location, uri};
use crate::admission::limit_conn::ConnSlot;
use crate::admission::limits::LimitZones;
use crate::config::{Action, Level, LocSettings, Location, LocationKind, ServerConf};
use crate::http1::RequestHead;
use crate::net::ClientInfo;
use crate::proxy::request_vars;
use crate::vars::{Locals, RequestVars};
use std::sync::OnceLock;

/// A request's place in its internal redirects. Lives across error pages, which are
/// internal redirects too.
#[derive(Debug)]
pub(super) struct Route<'a> {
    /// The URI as the rewrite phases left it (`$uri`).
    pub(super) rw: UriState,
    /// The named location to go to next (`try_files ... @name`, `error_page ... @name`).
    pub(super) named: Option<&'a Location>,
    /// Internal redirects so far; at [`rewrite::MAX_URI_CHANGES`] nginx answers 500.
    pub(super) redirects: u32,
    /// Reached through an internal redirect (nginx's `r->internal`): `internal`
    /// locations answer only then.
    pub(super) internal: bool,
    /// A head nginx refuses (400, 414, 494): answered with this status by the server's
    /// own settings (its `error_page`, `add_header ... always`), before any phase.
    pub(super) refused: Option<u16>,
}

impl<'a> Route<'a> {
    /// A client's request for the normalised `uri` (raw path `raw_path`).
    pub(super) fn new(uri: String, raw_path: &[u8]) -> Self {
        Route {
            rw: UriState::new(uri, raw_path),
            named: None,
            redirects: 0,
            internal: false,
            refused: None,
        }
    }

    /// Whether another internal redirect is allowed (nginx's `r->uri_changes`).
    pub(super) fn may_redirect(&self) -> bool {
        self.redirects < rewrite::MAX_URI_CHANGES
    }

    /// An internal redirect to `uri` (normalised) with new arguments: the search starts
    /// again at the server rewrite phase.
    pub(super) fn redirect(&mut self, uri: String) {
        self.redirects += 1;
        self.rw.redirected(uri);
        self.named = None;
        self.internal = true;
    }

    /// A jump to a named location.
    pub(super) fn jump_to_named(&mut self, loc: &'a Location) {
        self.redirects += 1;
        self.named = Some(loc);
        self.internal = true;
    }
}

/// Where the phases ended.
pub(super) struct Routed<'a> {
    /// The settings of the location (or its `if` block) that answers.
    pub(super) settings: &'a LocSettings,
    /// What the static module found, for static locations.
    pub(super) target: Option<Resolved>,
    /// What the rewrite module answered, if it did.
    pub(super) answer: Option<Answer>,
}

/// What the phases need besides the route.
pub(super) struct Request<'r, 'a> {
    pub(super) server: &'a ServerConf,
    pub(super) head: &'r RequestHead,
    pub(super) buf: &'r [u8],
    pub(super) info: &'r ClientInfo,
    /// The client a location's realip names (once per request, as nginx).
    pub(super) real: &'r OnceLock<ClientInfo>,
    /// The `limit_req_zone`s and `limit_conn_zone`s.
    pub(super) zones: &'r LimitZones,
    pub(super) locals: &'r Locals<'a>,
}

/// Runs the phases for the route's URI, following internal redirects, and says which
/// settings answer and with what.
pub(super) async fn run<'a>(
    req: &Request<'_, 'a>,
    route: &mut Route<'a>,
    conn_slots: &mut Vec<ConnSlot>,
) -> Routed<'a> {
    let Request {
        server,
        head,
        buf,
        info,
        real,
        zones,
        locals,
    } = *req;
    let mut target: Option<Resolved> = None;
    let mut answer: Option<Answer> = None;
    // nginx's server rewrite phase runs first, and again after each internal redirect.
    let mut server_phase = route.named.is_none();
    let mut log = |level, what: String| {
        crate::log::emit(
            level,
            Some(info.id),
            format_args!(
                "{what}, client: {}, server: {}",
                real.get().unwrap_or(info).remote,
                server.primary_name
            ),
        )
    };
    let settings: &LocSettings = loop {
        // Built only when a phase needs variables: the proxy fast path takes none.
        let base = || RequestVars {
            locals: Some(locals),
            ..request_vars(
                head,
                buf,
                real.get().unwrap_or(info),
                &server.primary_name,
                "",
            )
        };
        if let Some(code) = route.refused.take() {
            answer = Some(Answer::Status(code));
            break &server.settings;
        }
        if std::mem::take(&mut server_phase) && !server.settings.rewrite.is_empty() {
            let mut cx = rewrite::Context {
                vars: &RequestVars {
                    files: Some(&server.settings.files),
                    ..base()
                },
                locals,
                log: &mut log,
            };
            // A server's `if` switches no settings.
            let flow = rewrite::run(
                &server.settings.rewrite,
                Phase::Server,
                &mut route.rw,
                &mut cx,
            );
            route.internal |= route.rw.rewritten;
            if let Flow::Answer(a, _) = flow {
                answer = Some(a);
                break &server.settings;
            }
        }
        if route.named.is_none() && location::auto_redirect(&server.locations, &route.rw.uri) {
            // nginx's find-config phase: `/app` for `location /app/ { proxy_pass ...; }`
            // is sent to `/app/`, the arguments kept.
            let mut to = Vec::with_capacity(route.rw.uri.len() + 1);
            crate::http1::escape::escape_uri(route.rw.uri.as_bytes(), &mut to);
            to.push(b'/');
            let mut args = Vec::new();
            base().eval_var(&crate::config::Var::Args, &mut args);
            if !args.is_empty() {
                to.push(b'?');
                to.extend_from_slice(&args);
            }
            answer = Some(Answer::Redirect {
                code: 301,
                location: to,
            });
            break &server.settings;
        }
        let loc = route
            .named
            .or_else(|| location::find_location(&server.locations, &route.rw.uri));
        if let Some(l) = loc.filter(|l| l.internal && !route.internal) {
            // nginx's find-config phase: before the location's rewrite phase.
            answer = Some(Answer::Status(404));
            break &l.settings;
        }
        if let Some(caps) = loc.and_then(|l| l.regex.as_ref()?.captures(&route.rw.uri)) {
            locals.keep_captures(&caps, loc.map_or(&[][..], |l| &l.named_captures));
        }
        let mut settings = loc.map_or(&*server.settings, |l| &*l.settings);
        // nginx's find-config phase switches to the location's error log.
        crate::log::route_request(info.id, settings.error_log.as_ref());
        // Without a location the server's directives ran already (nginx skips the
        // location phase of the server's "null location").
        if loc.is_some() && !settings.rewrite.is_empty() {
            let mut cx = rewrite::Context {
                vars: &RequestVars {
                    files: Some(&settings.files),
                    ..base()
                },
                locals,
                log: &mut log,
            };
            match rewrite::run(&settings.rewrite, Phase::Location, &mut route.rw, &mut cx) {
                Flow::Answer(a, chosen) => {
                    answer = Some(a);
                    break chosen.map_or(settings, |s| &**s);
                }
                Flow::SearchAgain if route.may_redirect() => {
                    route.redirects += 1;
                    route.named = None;
                    route.internal = true;
                    continue;
                }
                Flow::SearchAgain => {
                    log(
                        Level::Error,
                        format!(
                            "rewrite or internal redirection cycle while processing \"{}\"",
                            route.rw.uri
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
        // The preaccess phase: a location's realip when none named the client yet.
        if real.get().is_none() {
            if let Some(client) = super::admission::real_client(settings, info, head, buf) {
                let _ = real.set(client);
            }
        }
        let vars = RequestVars {
            files: Some(&settings.files),
            uri: &route.rw.uri,
            ..base()
        };
        let phases = async {
            super::admission::limits(zones, settings, &vars, locals, &mut log, conn_slots).await?;
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
            files: Some(&settings.files),
            uri: &route.rw.uri,
            ..base()
        };
        match static_files::resolve(&settings.files, &route.rw.uri, &vars, &mut log) {
            Resolved::Redirect(to) if route.may_redirect() => {
                // Arguments of a fallback URI are not carried over (nginx keeps the
                // request's own).
                let path = to.split('?').next().unwrap_or("/");
                match uri::normalize(path.as_bytes()) {
                    Ok(u) => {
                        let u = u.into_owned();
                        route.redirects += 1;
                        route.named = None;
                        route.internal = true;
                        // An internal redirect as nginx's: the upstream gets the new
                        // URI (`proxy_pass` without a URI part too).
                        route.rw.redirected(u);
                        server_phase = true;
                    }
                    Err(_) => {
                        target = Some(Resolved::Status(400));
                        break settings;
                    }
                }
            }
            Resolved::Named(name) if route.may_redirect() => match named_location(server, &name) {
                Some(l) => route.jump_to_named(l),
                None => {
                    log(
                        Level::Error,
                        format!("could not find named location \"{name}\""),
                    );
                    target = Some(Resolved::Status(500));
                    break settings;
                }
            },
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
    Routed {
        settings,
        target,
        answer,
    }
}

/// The server's `location @name`.
pub(super) fn named_location<'a>(server: &'a ServerConf, name: &str) -> Option<&'a Location> {
    server
        .locations
        .iter()
        .find(|l| l.kind == LocationKind::Named && l.pattern == name)
}
