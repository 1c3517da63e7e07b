//! Request routing of the admin listener, independent of the socket (unit-testable).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};

use serde::Deserialize;

use super::{AddPeer, AdminError};
use crate::config::{Endpoint, Level};
use crate::server::{Runtime, Shared};
use crate::upstream::{now, AdminState};

/// An admin response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    fn error(e: &AdminError) -> Reply {
        Reply::json(
            e.status(),
            serde_json::json!({ "error": e.to_string() }).to_string(),
        )
    }
}

/// The JSON body of `PATCH /upstreams/{name}/peers/{addr}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchPeer {
    /// `drain` (or `draining`), `down`, `up`.
    state: Option<String>,
    /// New weight (≥ 1).
    weight: Option<u32>,
}

/// Handles one admin request. `target` is the request target (path and query),
/// `auth` the `Authorization` header value.
pub fn handle(
    shared: &Shared,
    token: Option<&str>,
    method: &str,
    target: &str,
    auth: Option<&[u8]>,
    body: &[u8],
) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(token) = token {
        let from_query = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(|v| percent_decode(v).into_bytes());
        let given = auth
            .and_then(|a| a.strip_prefix(b"Bearer "))
            .map(<[u8]>::to_vec)
            .or(from_query);
        if !given.is_some_and(|g| constant_time_eq(&g, token.as_bytes())) {
            return Reply::json(401, r#"{"error":"a bearer token is required"}"#.to_owned());
        }
    }
    match route(shared, method, path, body) {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    }
}

fn route(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Result<Reply, AdminError> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        ("GET" | "HEAD", []) => Ok(Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: super::dashboard::PAGE.as_bytes().to_vec(),
        }),
        ("GET" | "HEAD", ["status"]) => Ok(Reply::json(
            200,
            super::status::json(
                &shared.runtime.load(),
                shared.workers.get().map(|w| w.report()),
            ),
        )),
        ("GET" | "HEAD", ["metrics"]) => Ok(Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: super::metrics::render(
                shared.runtime.load_full(),
                shared.workers.get().map(|w| w.report()),
            )
            .into_bytes(),
        }),
        ("POST", ["upstreams", name, "peers"]) => add_peer(shared, name, body),
        ("PATCH", ["upstreams", name, "peers", addr]) => patch_peer(shared, name, addr, body),
        ("DELETE", ["upstreams", name, "peers", addr]) => delete_peer(shared, name, addr),
        ("GET" | "HEAD", ["workers"]) => Ok(Reply::json(
            200,
            serde_json::to_string(&workers(shared)?.report()).unwrap_or_default(),
        )),
        ("POST", ["workers", "restart"]) => {
            // 202: the restart runs one worker at a time, for as long as the workers
            // take to start; `GET /workers` shows its progress.
            workers(shared)?.restart().map_err(AdminError::Conflict)?;
            crate::log::emit(
                Level::Notice,
                None,
                format_args!("admin API: rolling restart of the workers requested"),
            );
            Ok(Reply::json(202, r#"{"restart":"started"}"#.to_owned()))
        }
        (
            _,
            []
            | ["status"]
            | ["metrics"]
            | ["upstreams", _, "peers", ..]
            | ["workers"]
            | ["workers", "restart"],
        ) => Err(AdminError::Method),
        _ => Err(AdminError::NotFound(format!("no such endpoint: {path}"))),
    }
}

/// The worker control of `ferrolb up`; 404 under plain `ferrolb -c`.
fn workers(shared: &Shared) -> Result<&Arc<dyn super::WorkerControl>, AdminError> {
    shared.workers.get().ok_or_else(|| {
        AdminError::NotFound("no worker processes: they exist under \"ferrolb up\"".into())
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, AdminError> {
    s.parse()
        .map_err(|_| AdminError::BadRequest(format!("invalid peer address \"{s}\"")))
}

/// The upstream named `name` and the index of the peer at `addr` in it.
fn find(rt: &Runtime, name: &str, addr: SocketAddr) -> Result<(usize, usize), AdminError> {
    let u = rt
        .upstreams
        .iter()
        .position(|u| u.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("no upstream \"{name}\"")))?;
    let p = rt.upstreams[u]
        .peers
        .iter()
        .position(|p| p.conf.addr == Endpoint::Inet(addr))
        .ok_or_else(|| AdminError::NotFound(format!("no peer {addr} in upstream \"{name}\"")))?;
    Ok((u, p))
}

fn peer_json(shared: &Shared, name: &str, addr: SocketAddr) -> Reply {
    let status = super::status::snapshot(&shared.runtime.load());
    let peer = status
        .upstreams
        .get(name)
        .and_then(|u| u.peers.iter().find(|p| p.addr == addr.to_string()));
    Reply::json(200, serde_json::to_string(&peer).unwrap_or_default())
}

fn patch_peer(shared: &Shared, name: &str, addr: &str, body: &[u8]) -> Result<Reply, AdminError> {
    let addr = parse_addr(addr)?;
    let patch: PatchPeer = serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    let state = match patch.state.as_deref() {
        None => None,
        Some("up") => Some(AdminState::Up),
        Some("drain" | "draining") => Some(AdminState::Draining),
        Some("down") => Some(AdminState::Down),
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "invalid state \"{other}\": use \"up\", \"drain\" or \"down\""
            )))
        }
    };
    if patch.weight == Some(0) {
        return Err(AdminError::BadRequest("weight must be at least 1".into()));
    }
    let rt = shared.runtime.load_full();
    let (u, p) = find(&rt, name, addr)?;
    if let Some(s) = state {
        rt.upstreams[u].peers[p].state.admin.store(s as u8, Relaxed);
    }
    if let Some(w) = patch.weight {
        if w != rt.upstreams[u].peers[p].conf.weight {
            rebuild(shared, |o| o.set_weight(name, addr, w))?;
        }
    }
    crate::log::emit(
        Level::Notice,
        None,
        format_args!("admin API: peer {addr} of upstream \"{name}\" changed ({patch:?})"),
    );
    Ok(peer_json(shared, name, addr))
}

fn add_peer(shared: &Shared, name: &str, body: &[u8]) -> Result<Reply, AdminError> {
    let add: AddPeer = serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    if add.weight == 0 {
        return Err(AdminError::BadRequest("weight must be at least 1".into()));
    }
    let rt = shared.runtime.load_full();
    let up = rt
        .upstreams
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("no upstream \"{name}\"")))?;
    if up
        .peers
        .iter()
        .any(|p| p.conf.addr == Endpoint::Inet(add.addr))
    {
        return Err(AdminError::Conflict(format!(
            "peer {} is already in upstream \"{name}\"",
            add.addr
        )));
    }
    drop(rt);
    rebuild(shared, |o| o.add(name, &add))?;
    // A new peer: slow start (if any) ramps from now; no admin state carried over.
    let rt = shared.runtime.load_full();
    if let Ok((u, p)) = find(&rt, name, add.addr) {
        let s = &rt.upstreams[u].peers[p].state;
        s.recovered_at.store(now().0, Relaxed);
        s.admin.store(AdminState::Up as u8, Relaxed);
    }
    crate::log::emit(
        Level::Notice,
        None,
        format_args!("admin API: peer {} added to upstream \"{name}\"", add.addr),
    );
    let mut r = peer_json(shared, name, add.addr);
    r.status = 201;
    Ok(r)
}

fn delete_peer(shared: &Shared, name: &str, addr: &str) -> Result<Reply, AdminError> {
    let addr = parse_addr(addr)?;
    let rt = shared.runtime.load_full();
    let (u, p) = find(&rt, name, addr)?;
    if rt.upstreams[u].peers.len() == 1 {
        return Err(AdminError::Conflict(format!(
            "{addr} is the last peer of upstream \"{name}\": add another first"
        )));
    }
    // Drain first: requests that already hold the old runtime will not pick it, and
    // those in flight finish on it (they keep its state alive).
    rt.upstreams[u].peers[p]
        .state
        .admin
        .store(AdminState::Draining as u8, Relaxed);
    drop(rt);
    rebuild(shared, |o| o.remove(name, addr.into()))?;
    crate::log::emit(
        Level::Notice,
        None,
        format_args!("admin API: peer {addr} removed from upstream \"{name}\""),
    );
    Ok(Reply::json(
        200,
        serde_json::json!({ "removed": addr.to_string(), "upstream": name }).to_string(),
    ))
}

/// Records a change in the overlay and swaps in a runtime rebuilt from the current
/// configuration with the overlay applied (the reload path, without re-reading files).
fn rebuild(shared: &Shared, change: impl FnOnce(&mut super::Overlay)) -> Result<(), AdminError> {
    // The overlay lock also serialises rebuilds with reloads, so neither swaps in a
    // runtime built from a configuration the other has replaced.
    let mut overlay = shared
        .admin_overlay
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut next = overlay.clone();
    change(&mut next);
    let mut config = shared.runtime.load().config.clone();
    next.apply(&mut config);
    let rt =
        Runtime::build(config, &shared.registry).map_err(|e| AdminError::Rebuild(e.to_string()))?;
    shared.runtime.store(Arc::new(rt));
    *overlay = next;
    Ok(())
}

/// Decodes `%XX` escapes (an IPv6 peer is `%5B::1%5D:80` in a path); invalid escapes
/// stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares without an early exit, so response time does not leak the token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_compare() {
        assert_eq!(percent_decode("%5B::1%5D:80"), "[::1]:80");
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
