//! The set of peers one request has tried.

/// Peers tried by one request, as a bit set over indices into [`crate::balance::Upstream::peers`].
///
/// Any number of peers; no heap allocation for up to 64 (the common case, and nginx's
/// own inline limit on 64-bit). Empty by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    bits: Bits,
    count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bits {
    Inline(u64),
    Heap(Box<[u64]>),
}

impl Default for Tried {
    fn default() -> Self {
        Tried::new(0)
    }
}

impl Tried {
    /// An empty set sized for `n` peers (larger indices are still accepted: the set
    /// grows, so a caller holding a set across a config reload cannot panic).
    pub fn new(n: usize) -> Self {
        let bits = if n <= 64 {
            Bits::Inline(0)
        } else {
            Bits::Heap(vec![0; n.div_ceil(64)].into_boxed_slice())
        };
        Tried { bits, count: 0 }
    }

    /// Adds peer `i`; adding it twice counts once.
    pub fn insert(&mut self, i: usize) {
        let (word, mask) = (i / 64, 1u64 << (i % 64));
        let slot = match &mut self.bits {
            Bits::Inline(w) if word == 0 => w,
            Bits::Inline(w) => {
                let mut v = vec![0u64; word + 1];
                v[0] = *w;
                self.bits = Bits::Heap(v.into_boxed_slice());
                return self.insert(i);
            }
            Bits::Heap(ws) if word < ws.len() => &mut ws[word],
            Bits::Heap(ws) => {
                let mut v = ws.to_vec();
                v.resize(word + 1, 0);
                self.bits = Bits::Heap(v.into_boxed_slice());
                return self.insert(i);
            }
        };
        if *slot & mask == 0 {
            *slot |= mask;
            self.count += 1;
        }
    }

    /// Whether peer `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        let (word, mask) = (i / 64, 1u64 << (i % 64));
        match &self.bits {
            Bits::Inline(w) => word == 0 && w & mask != 0,
            Bits::Heap(ws) => ws.get(word).is_some_and(|w| w & mask != 0),
        }
    }

    /// How many distinct peers were tried.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no peer was tried yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_stay_inline() {
        let mut t = Tried::new(64);
        t.insert(0);
        t.insert(63);
        t.insert(63);
        assert!(matches!(t.bits, Bits::Inline(_)));
        assert_eq!(t.len(), 2);
        assert!(t.contains(0) && t.contains(63) && !t.contains(1) && !t.contains(64));
    }

    #[test]
    fn more_than_64_peers() {
        let mut t = Tried::new(200);
        for i in (0..200).step_by(3) {
            t.insert(i);
        }
        for i in 0..200 {
            assert_eq!(t.contains(i), i % 3 == 0, "{i}");
        }
        assert_eq!(t.len(), 67);
        assert!(!t.contains(10_000));
    }

    #[test]
    fn grows_past_its_size() {
        let mut t = Tried::new(2);
        t.insert(1);
        t.insert(130);
        assert!(t.contains(1) && t.contains(130) && !t.contains(129));
        assert_eq!(t.len(), 2);
    }
}
