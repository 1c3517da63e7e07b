//! `hash KEY consistent`: nginx's ketama ring.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{PickContext, RoundRobin, Select, NGINX_DRAWS};
use crate::upstream::Peer;

/// Points on the ring per unit of weight, as nginx.
pub const POINTS_PER_WEIGHT: u32 = 160;

/// nginx's consistent hash (compatible with Cache::Memcached::Fast), built exactly as
/// nginx builds it so keys land where nginx puts them.
///
/// Each `server` line (its text as written, split at the last `:` followed only by
/// digits into host and port) gets `160 × weight` points per address: point `j` is
/// `crc32(HOST "\0" PORT PREV)` where PREV is point `j-1` as 4 little-endian bytes (0
/// for the first). Points are sorted, equal hashes keep the first. A key goes to the
/// first point `>= crc32(KEY)` (wrapping), found by binary search; while that point's
/// server has no eligible address the walk goes on to the next point, 21 points at
/// most, then falls back to round robin, as nginx does; an empty key or a single peer
/// goes to round robin directly. Adding or removing a server only moves the keys of
/// its own points.
///
/// **Deviation:** when one `server` name resolved to several addresses, nginx
/// chooses among them by smooth weighted round robin; this rotates through them.
#[derive(Debug)]
pub struct ConsistentHash {
    /// `(hash, server)` sorted by hash, hashes unique.
    points: Box<[(u32, u32)]>,
    /// Peer indices per distinct server text, in file order.
    servers: Box<[Box<[u32]>]>,
    /// Rotates among the addresses of one server.
    rotor: AtomicUsize,
    /// nginx's round robin when the key is empty or the walk finds nothing.
    fallback: RoundRobin,
}

/// nginx's split of a server text into host and port: the port is the digits after
/// the last `:`, if all of them are digits (`unix:` paths have no port).
fn host_port(server: &str) -> (&str, &str) {
    if server.len() >= 5 && server[..5].eq_ignore_ascii_case("unix:") {
        return (&server[5..], "");
    }
    match server.rfind(':') {
        Some(c) if server[c + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            (&server[..c], &server[c + 1..])
        }
        _ => (server, ""),
    }
}

impl ConsistentHash {
    /// The ring for `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        let mut names: Vec<&str> = Vec::new();
        let mut servers: Vec<Vec<u32>> = Vec::new();
        let mut points: Vec<(u32, u32)> = Vec::new();
        for (i, p) in peers.iter().enumerate() {
            let s = match names.iter().position(|n| *n == p.conf.name) {
                Some(s) => s,
                None => {
                    names.push(&p.conf.name);
                    servers.push(Vec::new());
                    names.len() - 1
                }
            };
            servers[s].push(u32::try_from(i).unwrap_or(u32::MAX));
            let (host, port) = host_port(&p.conf.name);
            let mut base = crc32fast::Hasher::new();
            base.update(host.as_bytes());
            base.update(b"\0");
            base.update(port.as_bytes());
            let mut prev: u32 = 0;
            for _ in 0..p.conf.weight.max(1).saturating_mul(POINTS_PER_WEIGHT) {
                let mut h = base.clone();
                h.update(&prev.to_le_bytes());
                prev = h.finalize();
                points.push((prev, u32::try_from(s).unwrap_or(u32::MAX)));
            }
        }
        // Stable, so equal hashes keep the first in file order (nginx's qsort leaves
        // that unspecified; it only happens on a crc32 collision).
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        ConsistentHash {
            points: points.into_boxed_slice(),
            servers: servers.into_iter().map(Vec::into_boxed_slice).collect(),
            rotor: AtomicUsize::new(0),
            fallback: RoundRobin::new(peers),
        }
    }

    /// Number of distinct points on the ring.
    pub fn points(&self) -> usize {
        self.points.len()
    }

    /// An eligible address of server `s`, if any.
    fn address(&self, s: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let addrs = self.servers.get(s)?;
        if let [only] = **addrs {
            let i = only as usize;
            return eligible(i).then_some(i);
        }
        let start = self.rotor.fetch_add(1, Relaxed);
        (0..addrs.len())
            .map(|k| addrs[(start + k) % addrs.len()] as usize)
            .find(|&i| eligible(i))
    }
}

impl Select for ConsistentHash {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.points.len();
        let key = ctx.key.unwrap_or_default();
        if n == 0 || key.is_empty() || peers.len() < 2 {
            return self.fallback.pick(peers, ctx, eligible);
        }
        let hash = crc32fast::hash(key);
        let start = self.points.partition_point(|p| p.0 < hash);
        (0..NGINX_DRAWS)
            .find_map(|k| self.address(self.points[(start + k) % n].1 as usize, eligible))
            .or_else(|| self.fallback.pick(peers, ctx, eligible))
    }

    fn failed(&self, i: usize) {
        self.fallback.failed(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all, peers};
    use super::*;

    /// nginx's ring built literally (bytes concatenated, no hasher state reuse) and its
    /// lookup: the server text the key lands on, skipping `down` servers.
    fn nginx_chash(servers: &[(&str, u32)], key: &[u8], down: &[bool]) -> Option<usize> {
        let mut points: Vec<(u32, usize)> = Vec::new();
        for (s, &(name, weight)) in servers.iter().enumerate() {
            let (host, port) = match name.rsplit_once(':') {
                Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p),
                _ => (name, ""),
            };
            let mut prev = [0u8; 4];
            for _ in 0..weight * 160 {
                let mut input = Vec::new();
                input.extend_from_slice(host.as_bytes());
                input.push(0);
                input.extend_from_slice(port.as_bytes());
                input.extend_from_slice(&prev);
                let h = crc32fast::hash(&input);
                points.push((h, s));
                prev = h.to_le_bytes();
            }
        }
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        let hash = crc32fast::hash(key);
        let (mut i, mut j) = (0, points.len());
        while i < j {
            let k = (i + j) / 2;
            if hash > points[k].0 {
                i = k + 1;
            } else if hash < points[k].0 {
                j = k;
            } else {
                i = k;
                break;
            }
        }
        (0..points.len())
            .map(|t| points[(i + t) % points.len()].1)
            .find(|&s| !down[s])
    }

    fn named(servers: &[(&str, u32)]) -> Vec<Peer> {
        let mut ps = peers(&servers.iter().map(|s| s.1).collect::<Vec<_>>());
        for (p, s) in ps.iter_mut().zip(servers) {
            p.conf.name = s.0.to_owned();
        }
        ps
    }

    #[test]
    fn matches_nginx_ring() {
        let servers = [
            ("backend1.example.com:8080", 1),
            ("10.0.0.2", 3),
            ("10.0.0.3:80", 2),
            ("unix-like:name", 1),
            ("[::1]:9000", 1),
        ];
        let ps = named(&servers);
        let sel = ConsistentHash::new(&ps);
        for down in [[false; 5], [true, false, false, true, false]] {
            let up = |i: usize| !down[i];
            for k in 0..5000 {
                let key = format!("/item/{k}");
                let ctx = PickContext {
                    key: Some(key.as_bytes()),
                    ..PickContext::default()
                };
                assert_eq!(
                    sel.pick(&ps, &ctx, &up),
                    nginx_chash(&servers, key.as_bytes(), &down),
                    "{key}"
                );
            }
        }
        assert_eq!(host_port("unix:/tmp/s"), ("/tmp/s", ""));
        assert_eq!(host_port("a:b"), ("a:b", ""));
        let none = |_: usize| false;
        assert_eq!(sel.pick(&ps, &PickContext::default(), &none), None);
    }

    fn owners(n: usize, skip: Option<usize>, keys: &[String]) -> Vec<Option<String>> {
        let ps: Vec<Peer> = peers(&vec![1; n])
            .into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, p)| p)
            .collect();
        let sel = ConsistentHash::new(&ps);
        keys.iter()
            .map(|k| {
                let ctx = PickContext {
                    key: Some(k.as_bytes()),
                    ..PickContext::default()
                };
                sel.pick(&ps, &ctx, &all).map(|i| ps[i].conf.name.clone())
            })
            .collect()
    }

    #[test]
    fn one_more_or_less_peer_moves_about_one_nth() {
        let keys: Vec<String> = (0..100_000).map(|k| format!("user-{k}")).collect();
        // Removing peer `skip` from n is also adding it to the other n − 1.
        let mut worst: f64 = 0.0;
        for n in 4usize..=32 {
            let full = owners(n, None, &keys);
            for skip in [n / 2, n - 1] {
                let less = owners(n, Some(skip), &keys);
                let moved = full.iter().zip(&less).filter(|(a, b)| a != b).count();
                let bound = 1.3 / n as f64 * keys.len() as f64;
                worst = worst.max(moved as f64 * n as f64 / keys.len() as f64);
                assert!(
                    (moved as f64) <= bound,
                    "n={n} removing {skip}: {moved} keys moved (bound {bound})"
                );
            }
        }
        eprintln!("consistent hash: worst moved share × N = {worst:.3}");
    }
}
