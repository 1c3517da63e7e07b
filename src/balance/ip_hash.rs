//! `ip_hash`: nginx's client-address hash.

use super::{probe_then_round_robin, PickContext, RoundRobin, Select, Weights};
use crate::upstream::Peer;
use std::net::IpAddr;

/// nginx's `ip_hash`: the first three octets of an IPv4 client address (so a /24 lands
/// on one peer), all 16 bytes of an IPv6 one, hashed as `h = (h · 113 + byte) % 6271`
/// from 89; `h % total weight` picks a peer by weight. An unavailable peer makes the
/// hash chain go on (another round over the same bytes); after 20 misses nginx falls
/// back to round robin, and so does this. Shares are only roughly proportional to
/// weight (6271 buckets over a skewed client population), exactly as in nginx.
#[derive(Debug)]
pub struct IpHash {
    weights: Weights,
    fallback: RoundRobin,
}

impl IpHash {
    /// A selector over `peers`, weighted by their `weight=`.
    pub fn new(peers: &[Peer]) -> Self {
        IpHash {
            weights: Weights::of(peers),
            fallback: RoundRobin::new(peers),
        }
    }
}

/// The bytes nginx hashes for a client: 3 octets of IPv4, 16 of IPv6, and three zero
/// bytes for anything else (unix sockets).
fn client_bytes(client: Option<IpAddr>) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match client {
        Some(IpAddr::V4(a)) => {
            b[..3].copy_from_slice(&a.octets()[..3]);
            (b, 3)
        }
        Some(IpAddr::V6(a)) => (a.octets(), 16),
        None => (b, 3),
    }
}

impl Select for IpHash {
    fn pick(
        &self,
        peers: &[Peer],
        ctx: &PickContext<'_>,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let (bytes, len) = client_bytes(ctx.client);
        let mut hash: u32 = 89;
        probe_then_round_robin(&self.fallback, peers, ctx, eligible, || {
            for &b in &bytes[..len] {
                hash = (hash * 113 + u32::from(b)) % 6271;
            }
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
    use super::super::testing::{all, nginx_draws, peers};
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// nginx's `get_ip_hash_peer` written out literally over a linked list of weighted
    /// peers; `None` where nginx would fall back to round robin.
    fn nginx_ip_hash(addr: &[u8], weights: &[u32], down: &[bool]) -> Option<usize> {
        let mut hash: u32 = 89;
        nginx_draws(weights, down, || {
            for &a in addr {
                hash = (hash * 113 + a as u32) % 6271;
            }
            hash
        })
    }

    fn check(weights: &[u32], down: &[bool]) {
        let ps = peers(weights);
        let sel = IpHash::new(&ps);
        let up = |i: usize| !down[i];
        for k in 0..2000u32 {
            let v4 = Ipv4Addr::from(k.wrapping_mul(2_654_435_761));
            let v6 = Ipv6Addr::from(
                u128::from(k).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
            );
            for (ip, bytes) in [
                (IpAddr::V4(v4), v4.octets()[..3].to_vec()),
                (IpAddr::V6(v6), v6.octets().to_vec()),
            ] {
                let ctx = PickContext {
                    client: Some(ip),
                    ..PickContext::default()
                };
                let got = sel.pick(&ps, &ctx, &up);
                match nginx_ip_hash(&bytes, weights, down) {
                    Some(want) => assert_eq!(got, Some(want), "{ip} {weights:?} {down:?}"),
                    None => assert!(got.is_none_or(|g| !down[g])),
                }
            }
        }
    }

    #[test]
    fn matches_nginx_sequence() {
        check(&[1, 1, 1], &[false; 3]);
        check(&[5, 1, 2, 7], &[false; 4]);
        check(&[3, 1, 1, 2, 9], &[false, true, false, true, false]);
        check(&[1; 12], &[false; 12]);
        // Nearly everything down: nginx falls back to round robin after 20 misses.
        check(&[1, 1, 1, 1], &[true, true, true, false]);
    }

    #[test]
    fn a_slash_24_sticks_to_one_peer() {
        let ps = peers(&[1, 1, 1, 1]);
        let sel = IpHash::new(&ps);
        let pick = |ip: [u8; 4]| {
            let ctx = PickContext {
                client: Some(IpAddr::from(ip)),
                ..PickContext::default()
            };
            sel.pick(&ps, &ctx, &all)
        };
        let first = pick([192, 168, 7, 1]);
        for last in 0..=255 {
            assert_eq!(pick([192, 168, 7, last]), first);
        }
        // The literal value nginx computes for 192.168.7.x over 4 equal peers.
        let mut h: u32 = 89;
        for b in [192u32, 168, 7] {
            h = (h * 113 + b) % 6271;
        }
        assert_eq!(first, Some((h % 4) as usize));
    }
}
