//! Per-thread pools of idle upstream connections (`keepalive N` in an upstream block).
//!
//! Each worker thread owns its pools, so taking and returning a connection is a plain
//! `Vec` push/pop with no lock. A pooled connection is a bare socket: no task, no
//! channel and no buffer is attached to it while it waits.

use rustc_hash::FxHashMap as HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// An idle upstream connection.
#[derive(Debug)]
pub struct IdleConn {
    /// The socket.
    pub stream: crate::net::Stream,
    /// When it became idle.
    pub since: Instant,
    /// Requests already sent on it (for `keepalive_requests`).
    pub requests: u32,
}

/// Identifies one peer of one upstream group across config reloads: the address of its
/// shared `PeerState`, which the registry keeps for as long as any config refers to it.
pub type PeerKey = usize;

/// The idle connections of one upstream group on one thread.
#[derive(Debug, Default)]
struct GroupPool {
    by_peer: HashMap<PeerKey, Vec<IdleConn>>,
    total: usize,
}

/// All idle upstream connections of one worker thread, by upstream group name.
#[derive(Debug, Default)]
pub struct ThreadPools {
    groups: HashMap<String, GroupPool>,
}

impl ThreadPools {
    /// Takes the most recently used idle connection to `peer` that is younger than
    /// `max_idle`; older ones are closed on the way.
    pub fn take(&mut self, group: &str, peer: PeerKey, max_idle: Duration) -> Option<IdleConn> {
        let g = self.groups.get_mut(group)?;
        let list = g.by_peer.get_mut(&peer)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            g.total -= 1;
            if now.duration_since(c.since) < max_idle {
                return Some(c);
            }
        }
        None
    }

    /// Puts a connection back; when the group already holds `capacity` idle
    /// connections the oldest one of this peer (or, failing that, the new one) is closed,
    /// as nginx evicts its least recently used cached connection.
    pub fn put(&mut self, group: &str, peer: PeerKey, capacity: usize, conn: IdleConn) {
        if capacity == 0 {
            return;
        }
        let g = match self.groups.get_mut(group) {
            Some(g) => g,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let list = g.by_peer.entry(peer).or_default();
        if g.total >= capacity {
            if list.is_empty() {
                return;
            }
            list.remove(0);
            g.total -= 1;
        }
        list.push(conn);
        g.total += 1;
    }

    /// Idle connections held for a group (for tests and status).
    pub fn idle_count(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |g| g.total)
    }

    /// Closes every idle connection (graceful stop, reload).
    pub fn clear(&mut self) {
        self.groups.clear();
    }
}

thread_local! {
    /// This worker thread's idle upstream connections.
    static POOLS: std::cell::RefCell<ThreadPools> = std::cell::RefCell::new(ThreadPools::default());
}

/// [`ThreadPools::take`] on this thread's pools.
pub fn take(group: &str, peer: PeerKey, max_idle: Duration) -> Option<IdleConn> {
    POOLS.with(|p| p.borrow_mut().take(group, peer, max_idle))
}

/// [`ThreadPools::put`] on this thread's pools.
pub fn put(group: &str, peer: PeerKey, capacity: usize, conn: IdleConn) {
    POOLS.with(|p| p.borrow_mut().put(group, peer, capacity, conn));
}

/// Closes every idle connection of this thread (the worker is stopping).
pub fn clear() {
    let _ = POOLS.try_with(|p| p.borrow_mut().clear());
}

/// Whether an idle pooled connection is still usable: a non-blocking read must find
/// nothing. EOF means the peer closed it; data means it sent something unasked (a late
/// error or garbage) — either way the connection must not carry a new request.
pub fn still_open(stream: &crate::net::Stream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (crate::net::Stream, tokio::net::TcpStream, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let port = a.local_addr().unwrap().port();
        let (b, _) = l.accept().await.unwrap();
        (a.into(), b, port)
    }

    #[tokio::test]
    async fn lifo_capacity_and_expiry() {
        let mut pools = ThreadPools::default();
        let (a1, _b1, p1) = pair().await;
        let (a2, _b2, p2) = pair().await;
        let (a3, _b3, _) = pair().await;
        let port = |s: &crate::net::Stream| match s {
            crate::net::Stream::Tcp(t) => t.local_addr().unwrap().port(),
            crate::net::Stream::Unix(_) => 0,
        };
        for s in [a1, a2, a3] {
            pools.put(
                "up",
                7,
                2,
                IdleConn {
                    stream: s,
                    since: Instant::now(),
                    requests: 1,
                },
            );
        }
        assert_eq!(pools.idle_count("up"), 2);
        // The oldest (a1) was evicted; LIFO gives a3 then a2.
        let c = pools.take("up", 7, Duration::from_secs(60)).unwrap();
        assert_ne!(port(&c.stream), p1);
        let c = pools.take("up", 7, Duration::from_secs(60)).unwrap();
        assert_eq!(port(&c.stream), p2);
        assert!(pools.take("up", 7, Duration::from_secs(60)).is_none());
    }

    #[tokio::test]
    async fn detects_closed_and_chatty_peers() {
        let (a, b, _) = pair().await;
        assert!(still_open(&a));
        drop(b);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!still_open(&a));

        let (a, mut b, _) = pair().await;
        b.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!still_open(&a));
    }
}
