//! `sticky cookie`: session affinity over any method.

use std::io::Write as _;

use super::{PickContext, Select};
use crate::config::{Endpoint, StickyConf};
use crate::upstream::Peer;

/// Length of a sticky cookie value: 16 hex digits.
pub const COOKIE_LEN: usize = 16;

/// nginx Plus's `sticky cookie NAME …` over another method.
///
/// The cookie value names a peer by [`peer_id`] (a 64-bit hash of its address, in hex,
/// so the address itself is not disclosed). A request whose cookie names an eligible
/// peer of this set goes there; any other request (no cookie, unknown id, peer down,
/// tried, failed or at `max_conns`) is balanced by the inner method, and the response
/// then carries a new cookie (see [`crate::balance::Upstream::sticky_set_cookie`]).
pub struct Sticky {
    inner: Box<dyn Select>,
    /// `(peer id, index)` sorted by id.
    ids: Box<[(u64, u32)]>,
}

impl Sticky {
    /// Stickiness over `inner` for `peers` (the set `inner` picks from).
    pub fn new(inner: Box<dyn Select>, peers: &[Peer]) -> Self {
        let mut ids: Vec<(u64, u32)> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (peer_id(&p.conf.addr), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        ids.sort_unstable();
        Sticky {
            inner,
            ids: ids.into_boxed_slice(),
        }
    }
}

impl Select for Sticky {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if let Some(id) = ctx.sticky {
            if let Ok(k) = self.ids.binary_search_by_key(&id, |e| e.0) {
                let i = self.ids[k].1 as usize;
                if eligible(i) {
                    return Some(i);
                }
            }
        }
        self.inner.pick(peers, ctx, eligible)
    }

    fn failed(&self, i: usize) {
        self.inner.failed(i);
    }
}

/// The id a sticky cookie uses for the peer at `addr`: FNV-1a over the address text,
/// then a 64-bit finalizer. Stable across restarts and reloads, and the same in every
/// ferrolb instance, so cookies keep working behind several balancers.
pub fn peer_id(addr: &Endpoint) -> u64 {
    let mut text = Vec::with_capacity(48);
    let _ = write!(text, "{addr}");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The peer id in a cookie value, if it is one (exactly 16 hex digits).
pub fn parse_cookie(value: &[u8]) -> Option<u64> {
    if value.len() != COOKIE_LEN || !value.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()
}

/// The `Set-Cookie` value naming the peer at `addr`, built once per peer:
/// `NAME=ID` then `Max-Age`, `Domain`, `Path`, `HttpOnly`, `Secure`, `SameSite` as
/// configured. `expires=` is sent as `Max-Age` (relative, so it can be precomputed;
/// every current browser honours it).
pub fn set_cookie(conf: &StickyConf, addr: &Endpoint) -> Box<[u8]> {
    let mut v = Vec::with_capacity(64);
    let _ = write!(v, "{}={:016x}", conf.cookie, peer_id(addr));
    if let Some(e) = conf.expires {
        let _ = write!(v, "; Max-Age={}", e.as_secs());
    }
    if let Some(d) = &conf.domain {
        let _ = write!(v, "; Domain={d}");
    }
    if let Some(p) = &conf.path {
        let _ = write!(v, "; Path={p}");
    }
    if conf.httponly {
        v.extend_from_slice(b"; HttpOnly");
    }
    if conf.secure {
        v.extend_from_slice(b"; Secure");
    }
    if let Some(s) = &conf.samesite {
        let _ = write!(v, "; SameSite={s}");
    }
    v.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all, peers};
    use super::super::RoundRobin;
    use super::*;
    use std::time::Duration;

    #[test]
    fn cookie_goes_to_its_peer_while_eligible() {
        let ps = peers(&[1, 1, 1]);
        let sel = Sticky::new(Box::new(RoundRobin::new(&ps)), &ps);
        let id = peer_id(&ps[2].conf.addr);
        let ctx = PickContext {
            sticky: Some(id),
            ..PickContext::default()
        };
        for _ in 0..10 {
            assert_eq!(sel.pick(&ps, &ctx, &all), Some(2));
        }
        let not2 = |i: usize| i != 2;
        let got: Vec<_> = (0..4).map(|_| sel.pick(&ps, &ctx, &not2)).collect();
        assert!(got.iter().all(|g| matches!(g, Some(0) | Some(1))));
        let unknown = PickContext {
            sticky: Some(id ^ 1),
            ..PickContext::default()
        };
        assert!(sel.pick(&ps, &unknown, &all).is_some());
    }

    #[test]
    fn cookie_text() {
        let ps = peers(&[1]);
        let addr = ps[0].conf.addr.clone();
        let conf = StickyConf {
            cookie: "srv_id".into(),
            expires: Some(Duration::from_secs(3600)),
            domain: Some(".example.com".into()),
            path: Some("/".into()),
            httponly: true,
            secure: true,
            samesite: Some("Lax".into()),
        };
        let v = String::from_utf8(set_cookie(&conf, &addr).into_vec()).unwrap_or_default();
        let id = format!("{:016x}", peer_id(&addr));
        assert_eq!(
            v,
            format!("srv_id={id}; Max-Age=3600; Domain=.example.com; Path=/; HttpOnly; Secure; SameSite=Lax")
        );
        assert!(!v.contains("10.0.0.1"));
        assert_eq!(parse_cookie(id.as_bytes()), Some(peer_id(&addr)));
        assert_eq!(parse_cookie(b"xyz"), None);
        assert_eq!(parse_cookie(b"0123456789abcdeg"), None);
        assert_ne!(
            peer_id(&ps[0].conf.addr),
            peer_id(&std::net::SocketAddr::from(([10, 0, 0, 1], 81)).into())
        );
    }
}
