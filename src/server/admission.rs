//! Where the server calls into [`crate::admission`], at nginx's phase points: the PROXY
//! protocol header when a connection opens (`conn.rs`), the real client address in the
//! post-read phase (server settings, `conn.rs`), and for each location a request visits
//! (`route.rs`) the preaccess phase (a location's realip, `limit_req`, `limit_conn`)
//! and the access phase (`allow`/`deny`, `auth_basic`, `satisfy`, `limit_except`).

use std::sync::Arc;
use std::time::Duration;

use super::rewrite::Answer;
use crate::admission::limit_conn::ConnSlot;
use crate::admission::limits::{self, LimitZones};
use crate::admission::{self, Refusal};
use crate::config::{Level, LocSettings};
use crate::http1::RequestHead;
use crate::net::buffers::Buf;
use crate::net::proxy_protocol::{self, ReadError};
use crate::net::{ClientInfo, Stream};
use crate::vars::{Locals, RequestVars};

/// Reads the PROXY protocol header of a connection on a `listen ... proxy_protocol`
/// address into `info`; returns the bytes that followed it, or `None` when the
/// connection must close (a broken header is logged as nginx logs it).
pub(super) async fn read_proxy_header(
    stream: &Stream,
    info: &mut ClientInfo,
    limit: Duration,
) -> Option<Buf> {
    match proxy_protocol::read(stream, limit).await {
        Ok((addrs, rest)) => {
            info.proxy_protocol = addrs.map(Arc::new);
            Some(rest)
        }
        Err(ReadError::Invalid(e)) => {
            crate::log::emit(
                Level::Error,
                Some(info.id),
                format_args!(
                    "{e} while reading PROXY protocol, client: {}, server: {}",
                    info.peer, info.local
                ),
            );
            None
        }
        Err(ReadError::Io(_)) => None,
    }
}

/// The client as the level's `set_real_ip_from` makes it out, when it changes.
pub(super) fn real_client(
    settings: &LocSettings,
    info: &ClientInfo,
    head: &RequestHead,
    buf: &[u8],
) -> Option<ClientInfo> {
    let conf = settings.admission.real_ip.as_ref()?;
    admission::real_client(conf, info, head, buf)
}

/// nginx's preaccess phase after realip: `limit_req` (waiting out a delay here), then
/// `limit_conn` (its slots kept in `slots` until the request is done); the answer when
/// the request is refused.
pub(super) async fn limits(
    zones: &LimitZones,
    settings: &LocSettings,
    vars: &RequestVars<'_>,
    locals: &Locals<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
    slots: &mut Vec<ConnSlot>,
) -> Result<(), Answer> {
    let conf = &settings.admission;
    limits::limit_requests(zones, &conf.limit_req, vars, locals, log)
        .await
        .map_err(Answer::Status)?;
    limits::limit_connections(zones, &conf.limit_conn, vars, locals, log, slots)
        .map_err(Answer::Status)
}

/// nginx's access phase for the location's `settings`; the answer when the request
/// may not go on.
pub(super) async fn access(
    settings: &LocSettings,
    vars: &RequestVars<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
) -> Result<(), Answer> {
    if settings.admission.is_open() {
        return Ok(());
    }
    admission::access_phase(&settings.admission, vars, log)
        .await
        .map_err(|r| match r {
            Refusal::Forbidden => Answer::Status(403),
            Refusal::Unauthorized(realm) => Answer::Unauthorized(realm),
            Refusal::Failed => Answer::Status(500),
        })
}
