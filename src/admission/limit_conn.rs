//! `limit_conn` (nginx's `ngx_http_limit_conn_module`): requests in progress per key.
//! A request holds a [`ConnSlot`] of each of its location's zones from the preaccess
//! phase until its response is done; a key whose count reaches the limit refuses the
//! next one. Only keys with requests in progress are kept, bounded by the zone's size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes a key is counted for, beyond its own bytes.
pub const KEY_COST: u64 = 64;

/// The counts of one zone.
#[derive(Debug)]
pub struct Counts {
    by_key: HashMap<Vec<u8>, u32>,
    bytes: u64,
    size: u64,
}

impl Counts {
    /// Room for `size` bytes of keys.
    pub fn new(size: u64) -> Self {
        Counts {
            by_key: HashMap::new(),
            bytes: 0,
            size,
        }
    }

    /// Keys with requests in progress.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when no request is counted.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// One `limit_conn_zone`, over counts that survive reloads.
#[derive(Debug)]
pub struct ConnZone {
    /// The zone's name (for log lines).
    pub name: String,
    counts: Arc<Mutex<Counts>>,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The key has `limit` requests in progress.
    Limit,
    /// The zone is full.
    NoRoom,
}

impl ConnZone {
    /// A zone over `counts` (shared with the previous configuration's zone of the same
    /// name and size).
    pub fn new(name: String, counts: Arc<Mutex<Counts>>) -> Self {
        ConnZone { name, counts }
    }

    /// The zone's counts.
    pub fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more request of `key`, unless it has `limit` already.
    pub fn acquire(&self, key: &[u8], limit: u32) -> Result<ConnSlot, Refused> {
        let mut c = self.counts();
        match c.by_key.get_mut(key) {
            Some(n) if *n >= limit => return Err(Refused::Limit),
            Some(n) => *n += 1,
            None => {
                let cost = KEY_COST + key.len() as u64;
                if c.bytes + cost > c.size {
                    return Err(Refused::NoRoom);
                }
                c.bytes += cost;
                c.by_key.insert(key.to_vec(), 1);
            }
        }
        Ok(ConnSlot {
            counts: self.counts.clone(),
            key: key.to_vec(),
        })
    }
}

/// One request counted against a key; dropping it ends the request's count.
#[derive(Debug)]
pub struct ConnSlot {
    counts: Arc<Mutex<Counts>>,
    key: Vec<u8>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone = match c.by_key.get_mut(&self.key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            c.by_key.remove(&self.key);
            c.bytes -= KEY_COST + self.key.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_progress() {
        let z = ConnZone::new("addr".into(), Arc::new(Mutex::new(Counts::new(1 << 20))));
        let a = z.acquire(b"k", 2).expect("first");
        let b = z.acquire(b"k", 2).expect("second");
        assert_eq!(z.acquire(b"k", 2).unwrap_err(), Refused::Limit);
        let other = z.acquire(b"j", 2).expect("another key");
        drop(a);
        let c = z.acquire(b"k", 2).expect("a slot came free");
        drop((b, c, other));
        assert!(z.counts().is_empty());
        assert_eq!(z.counts().bytes, 0);
    }

    #[test]
    fn bounded_by_the_zone() {
        let z = ConnZone::new("addr".into(), Arc::new(Mutex::new(Counts::new(32 * 1024))));
        let held: Vec<_> = (0..10_000u32)
            .map_while(|i| z.acquire(format!("key{i:05}").as_bytes(), 1).ok())
            .collect();
        let per = KEY_COST + 8;
        assert_eq!(held.len() as u64, 32 * 1024 / per);
        assert_eq!(z.acquire(b"one-more", 1).unwrap_err(), Refused::NoRoom);
        drop(held);
        assert!(z.counts().is_empty());
    }
}
