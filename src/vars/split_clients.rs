//! `split_clients` variables at run time: MurmurHash2 of the evaluated string, and the
//! first slice of the hash space it falls in.

use crate::config::SplitClientsConf;

/// MurmurHash2, 32-bit, seed 0, as `ngx_murmur_hash2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    // nginx seeds with the length (of a size_t, truncated to 32 bits).
    let mut h = data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The value of the slice `key` hashes into; empty when none (the percentages add up
/// to less than 100% and there is no `*`).
pub(super) fn value<'s>(split: &'s SplitClientsConf, key: &[u8]) -> &'s str {
    let hash = murmur2(key);
    split
        .parts
        .iter()
        .find(|(bound, _)| bound.is_none_or(|b| hash < b))
        .map_or("", |(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn murmur2_reference_values() {
        // Reference values of MurmurHash2 with seed 0.
        assert_eq!(murmur2(b""), 0);
        assert_eq!(murmur2(b"a"), 0x92685f5e);
        assert_eq!(murmur2(b"abcd"), 0x26873021);
        assert_eq!(murmur2(b"hello world"), 0x44a81419);
    }
}
