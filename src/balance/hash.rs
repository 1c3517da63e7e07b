//! `hash KEY`: nginx's plain (non-consistent) key hash.

use super::{probe_then_round_robin, PickContext, RoundRobin, Select, Weights};
use crate::upstream::Peer;

/// nginx's `hash KEY` without `consistent` (compatible with Cache::Memcached): each
/// draw adds `(crc32([REHASH] KEY) >> 16) & 0x7fff` to a running 32-bit hash, where
/// REHASH is the draw number in decimal, omitted on the first draw; the running hash
/// modulo the total weight picks a peer by weight. After 20 misses (unavailable
/// peers) nginx falls back to round robin, and so does this; an empty key goes
/// straight to round robin, as in nginx.
#[derive(Debug)]
pub struct Hash {
    weights: Weights,
    fallback: RoundRobin,
}

impl Hash {
    /// A selector over `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        Hash {
            weights: Weights::of(peers),
            fallback: RoundRobin::new(peers),
        }
    }
}

/// `n` in decimal, without allocating.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Select for Hash {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = ctx.key.unwrap_or_default();
        if key.is_empty() {
            // nginx hashes nothing for an empty key: round robin.
            return self.fallback.pick(peers, ctx, eligible);
        }
        let mut hash: u32 = 0;
        let mut rehash: u32 = 0;
        probe_then_round_robin(&self.fallback, peers, ctx, eligible, || {
            let mut h = crc32fast::Hasher::new();
            if rehash > 0 {
                h.update(decimal(rehash, &mut [0; 10]));
            }
            h.update(key);
            hash = hash.wrapping_add((h.finalize() >> 16) & 0x7fff);
            rehash += 1;
            let i = self.weights.index(u64::from(hash));
            eligible(i).then_some(i)
        })
    }

    fn failed(&self, i: usize) {
        self.fallback.failed(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{nginx_draws, peers};
    use super::*;

    /// nginx's `get_hash_peer` written out literally; `None` where nginx falls back to
    /// round robin.
    fn nginx_hash(key: &[u8], weights: &[u32], down: &[bool]) -> Option<usize> {
        let (mut hash, mut rehash) = (0u32, 0u32);
        nginx_draws(weights, down, || {
            let mut input = Vec::new();
            if rehash > 0 {
                input.extend_from_slice(rehash.to_string().as_bytes());
            }
            input.extend_from_slice(key);
            hash = hash.wrapping_add((crc32fast::hash(&input) >> 16) & 0x7fff);
            rehash += 1;
            hash
        })
    }

    fn check(weights: &[u32], down: &[bool]) {
        let ps = peers(weights);
        let sel = Hash::new(&ps);
        let up = |i: usize| !down[i];
        for k in 0..3000 {
            let key = format!("/page/{k}?x={}", k * 7);
            let ctx = PickContext {
                key: Some(key.as_bytes()),
                ..PickContext::default()
            };
            let got = sel.pick(&ps, &ctx, &up);
            match nginx_hash(key.as_bytes(), weights, down) {
                Some(want) => assert_eq!(got, Some(want), "{key} {weights:?} {down:?}"),
                None => assert!(got.is_none_or(|g| !down[g])),
            }
        }
    }

    #[test]
    fn matches_nginx_sequence() {
        check(&[1, 1, 1], &[false; 3]);
        check(&[5, 1, 2, 7], &[false; 4]);
        check(&[3, 1, 1, 2, 9], &[false, true, false, true, false]);
        check(&[2; 40], &[false; 40]);
        check(&[1, 1, 1, 1], &[true, true, true, false]);
    }

    #[test]
    fn decimal_formats() {
        for n in [0u32, 1, 9, 10, 20, 12345, u32::MAX] {
            assert_eq!(decimal(n, &mut [0; 10]), n.to_string().as_bytes());
        }
    }
}
