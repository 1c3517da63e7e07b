//! Per-thread pools of idle upstream connections (`keepalive N` in an upstream block).
//!
//! Each worker thread owns its pools, so taking and returning a connection is a plain
//! `Vec` push/pop with no lock. A pooled connection is a bare socket: no task, no
//! channel and no buffer is attached to it while it waits.
//!
//! Connections are filed by the [`PeerId`] of their peer's state, which is never
//! reused, so a peer added at the address of a removed one starts with no sockets.
//! When [`super::PeerRegistry::retain`] drops peers it marks their states `removed`
//! and bumps a process-wide purge epoch; each thread's pools compare that epoch on
//! every take and put (one relaxed load) and, when it moved, close the idle
//! connections of removed peers, which gives their room in the group back. The worker
//! loop calls [`sweep`] every [`SWEEP_PERIOD`] so that a thread serving no requests
//! purges too, and so that connections idle past `keepalive_timeout` are closed even
//! when no request asks for their peer again.

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::peer::{PeerId, PeerState};

/// How often a worker thread calls [`sweep`]: the longest an idle thread keeps the
/// sockets of a removed peer, and how late past `keepalive_timeout` an unused idle
/// connection may be closed. One second.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Bumped after peers are marked removed; pools compare it with the epoch they last
/// purged at. Starts at 0, as does every [`ThreadPools`].
static PURGE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Tells every thread's pools that some peers were marked `removed` (called by the
/// registry after it marked them).
pub(super) fn note_removals() {
    // Release: a pool that sees the new epoch (and fences) also sees the flags.
    PURGE_EPOCH.fetch_add(1, Ordering::Release);
}

/// An idle upstream connection.
#[derive(Debug)]
pub struct IdleConn {
    /// The socket.
    pub stream: crate::net::Stream,
    /// When it became idle.
    pub since: Instant,
    /// Requests already sent on it (for `keepalive_requests`).
    pub requests: u32,
    /// When it was made (for `keepalive_time`).
    pub opened: Instant,
}

/// The idle connections to one peer, with the peer's state so a purge can read its
/// `removed` flag.
#[derive(Debug)]
struct PeerIdle {
    state: Arc<PeerState>,
    /// Oldest first (connections are pushed as they become idle).
    conns: Vec<IdleConn>,
}

/// The idle connections of one upstream group on one thread.
#[derive(Debug)]
struct GroupPool {
    by_peer: HashMap<PeerId, PeerIdle>,
    total: usize,
    /// The group's `keepalive_timeout`, as last given to [`ThreadPools::put`].
    max_idle: Duration,
}

impl GroupPool {
    /// Closes the connections idle for `max_idle` or longer.
    fn close_expired(&mut self, now: Instant) {
        let max_idle = self.max_idle;
        for idle in self.by_peer.values_mut() {
            let expired = idle
                .conns
                .partition_point(|c| now.duration_since(c.since) >= max_idle);
            idle.conns.drain(..expired);
            self.total -= expired;
        }
    }

    /// Closes the connections of peers marked removed and forgets those peers.
    fn close_removed(&mut self) {
        let total = &mut self.total;
        self.by_peer.retain(|_, idle| {
            let keep = !idle.state.removed.load(Ordering::Relaxed);
            if !keep {
                *total -= idle.conns.len();
            }
            keep
        });
    }
}

/// All idle upstream connections of one worker thread, by upstream group name.
#[derive(Debug, Default)]
pub struct ThreadPools {
    groups: HashMap<String, GroupPool>,
    /// The [`PURGE_EPOCH`] value of the last purge.
    purged_epoch: u64,
}

impl ThreadPools {
    /// Takes the most recently used idle connection to `peer` that is younger than
    /// `max_idle`; older ones are closed on the way.
    pub fn take(&mut self, group: &str, peer: PeerId, max_idle: Duration) -> Option<IdleConn> {
        self.purge_if_peers_removed();
        let g = self.groups.get_mut(group)?;
        let list = &mut g.by_peer.get_mut(&peer)?.conns;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            g.total -= 1;
            if now.duration_since(c.since) < max_idle {
                return Some(c);
            }
        }
        None
    }

    /// Puts a connection to `peer` back, to be closed after `max_idle` unused. A
    /// connection to a removed peer is closed instead. When the group already holds
    /// `capacity` idle connections, expired ones are closed first; if it is still
    /// full, the oldest one of this peer (or, failing that, the new one) is closed, as
    /// nginx evicts its least recently used cached connection.
    pub fn put(
        &mut self,
        group: &str,
        peer: &Arc<PeerState>,
        capacity: usize,
        max_idle: Duration,
        conn: IdleConn,
    ) {
        if capacity == 0 {
            return;
        }
        self.purge_if_peers_removed();
        if peer.removed.load(Ordering::Relaxed) {
            return;
        }
        let g = match self.groups.get_mut(group) {
            Some(g) => g,
            None => self
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| GroupPool {
                    by_peer: HashMap::default(),
                    total: 0,
                    max_idle,
                }),
        };
        g.max_idle = max_idle;
        if g.total >= capacity {
            g.close_expired(Instant::now());
        }
        let list = &mut g
            .by_peer
            .entry(peer.id)
            .or_insert_with(|| PeerIdle {
                state: Arc::clone(peer),
                conns: Vec::new(),
            })
            .conns;
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

    /// Closes the idle connections of removed peers when peers were removed since the
    /// last purge; otherwise costs one relaxed load.
    fn purge_if_peers_removed(&mut self) {
        let epoch = PURGE_EPOCH.load(Ordering::Relaxed);
        if epoch != self.purged_epoch {
            // Pairs with the release in `note_removals`: the flags set before this
            // epoch are visible below.
            fence(Ordering::Acquire);
            self.purged_epoch = epoch;
            self.close_removed();
        }
    }

    /// Closes the idle connections of every peer marked removed, whatever the epoch.
    fn close_removed(&mut self) {
        for g in self.groups.values_mut() {
            g.close_removed();
        }
        self.groups.retain(|_, g| !g.by_peer.is_empty());
    }

    /// The periodic pass: closes the connections of removed peers (when any were
    /// removed since the last purge) and those idle past their group's
    /// `keepalive_timeout`, and forgets peers and groups left with none.
    pub fn sweep(&mut self) {
        self.purge_if_peers_removed();
        let now = Instant::now();
        for g in self.groups.values_mut() {
            g.close_expired(now);
            g.by_peer.retain(|_, idle| !idle.conns.is_empty());
        }
        self.groups.retain(|_, g| !g.by_peer.is_empty());
    }

    /// Idle connections held for a group (for tests and status).
    pub fn idle_count(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |g| g.total)
    }

    /// Closes every idle connection (the worker is stopping).
    pub fn clear(&mut self) {
        self.groups.clear();
    }
}

thread_local! {
    /// This worker thread's idle upstream connections.
    static POOLS: std::cell::RefCell<ThreadPools> = std::cell::RefCell::new(ThreadPools::default());
}

/// [`ThreadPools::take`] on this thread's pools.
pub fn take(group: &str, peer: PeerId, max_idle: Duration) -> Option<IdleConn> {
    POOLS.with(|p| p.borrow_mut().take(group, peer, max_idle))
}

/// [`ThreadPools::put`] on this thread's pools.
pub fn put(
    group: &str,
    peer: &Arc<PeerState>,
    capacity: usize,
    max_idle: Duration,
    conn: IdleConn,
) {
    POOLS.with(|p| p.borrow_mut().put(group, peer, capacity, max_idle, conn));
}

/// [`ThreadPools::sweep`] on this thread's pools (the worker loop calls it every
/// [`SWEEP_PERIOD`]).
pub fn sweep() {
    let _ = POOLS.try_with(|p| p.borrow_mut().sweep());
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
    use tokio::net::TcpStream;

    fn local_port(s: &crate::net::Stream) -> u16 {
        match s {
            crate::net::Stream::Tcp(t) => t.local_addr().map(|a| a.port()).unwrap_or(0),
            _ => 0,
        }
    }
    use crate::upstream::PeerRegistry;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const MINUTE: Duration = Duration::from_secs(60);

    /// A connected pair: (our end, the backend's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn idle(stream: TcpStream) -> IdleConn {
        idle_for(stream, Duration::ZERO)
    }

    /// An idle connection that became idle `age` ago.
    fn idle_for(stream: TcpStream, age: Duration) -> IdleConn {
        let stream = crate::net::Stream::from(stream);
        IdleConn {
            stream,
            since: Instant::now() - age,
            requests: 1,
            opened: Instant::now() - age,
        }
    }

    /// Whether the backend's end of a pooled connection sees it closed (EOF).
    async fn closed_by_pool(backend_end: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), backend_end.read(&mut byte)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn lifo_capacity_and_expiry() {
        let mut pools = ThreadPools::default();
        let peer = Arc::new(PeerState::default());
        let (a1, _b1) = pair().await;
        let (a2, _b2) = pair().await;
        let (a3, _b3) = pair().await;
        let p1 = a1.local_addr().unwrap().port();
        let p2 = a2.local_addr().unwrap().port();
        for s in [a1, a2, a3] {
            pools.put("up", &peer, 2, MINUTE, idle(s));
        }
        assert_eq!(pools.idle_count("up"), 2);
        // The oldest (a1) was evicted; LIFO gives a3 then a2.
        let c = pools.take("up", peer.id, MINUTE).unwrap();
        assert_ne!(local_port(&c.stream), p1);
        let c = pools.take("up", peer.id, MINUTE).unwrap();
        assert_eq!(local_port(&c.stream), p2);
        assert!(pools.take("up", peer.id, MINUTE).is_none());
    }

    #[tokio::test]
    async fn removed_peer_sockets_are_closed_and_their_room_freed() {
        let mut pools = ThreadPools::default();
        let (gone, kept) = (
            Arc::new(PeerState::default()),
            Arc::new(PeerState::default()),
        );
        let (g1, mut g1_backend) = pair().await;
        let (g2, mut g2_backend) = pair().await;
        let (k1, _k1_backend) = pair().await;
        pools.put("up", &gone, 3, MINUTE, idle(g1));
        pools.put("up", &gone, 3, MINUTE, idle(g2));
        pools.put("up", &kept, 3, MINUTE, idle(k1));
        assert_eq!(pools.idle_count("up"), 3);

        gone.removed.store(true, Ordering::Relaxed);
        note_removals();
        // The periodic sweep notices the new epoch with no request involved.
        pools.sweep();
        assert_eq!(pools.idle_count("up"), 1);
        assert!(closed_by_pool(&mut g1_backend).await);
        assert!(closed_by_pool(&mut g2_backend).await);
        assert!(pools.take("up", gone.id, MINUTE).is_none());

        // The freed room takes new connections of a live peer without evicting.
        let (k2, _k2_backend) = pair().await;
        let (k3, _k3_backend) = pair().await;
        pools.put("up", &kept, 3, MINUTE, idle(k2));
        pools.put("up", &kept, 3, MINUTE, idle(k3));
        assert_eq!(pools.idle_count("up"), 3);

        // A connection returned to a removed peer (a request that outlived the
        // reload) is closed rather than pooled.
        let (g3, mut g3_backend) = pair().await;
        pools.put("up", &gone, 4, MINUTE, idle(g3));
        assert_eq!(pools.idle_count("up"), 3);
        assert!(closed_by_pool(&mut g3_backend).await);
    }

    #[tokio::test]
    async fn a_new_peer_at_a_removed_peers_address_gets_none_of_its_sockets() {
        let registry = PeerRegistry::new();
        let addr: std::net::SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let old = registry.get_or_create("up", &addr.into());
        let mut pools = ThreadPools::default();
        let (a, mut a_backend) = pair().await;
        pools.put("up", &old, 4, MINUTE, idle(a));

        // A configuration without the peer, then one with it again.
        registry.retain(&[]);
        assert!(old.removed.load(Ordering::Relaxed));
        let new = registry.get_or_create("up", &addr.into());
        assert_ne!(new.id, old.id);
        assert!(!new.removed.load(Ordering::Relaxed));

        // The first take after the reload purges (one epoch load) and finds nothing.
        assert!(pools.take("up", new.id, MINUTE).is_none());
        assert_eq!(pools.idle_count("up"), 0);
        assert!(closed_by_pool(&mut a_backend).await);
    }

    #[tokio::test]
    async fn sweep_closes_connections_idle_past_the_timeout() {
        let mut pools = ThreadPools::default();
        let peer = Arc::new(PeerState::default());
        let (old, mut old_backend) = pair().await;
        let (fresh, _fresh_backend) = pair().await;
        let max_idle = Duration::from_secs(1);
        let stale = idle_for(old, 2 * max_idle);
        pools.put("up", &peer, 4, max_idle, stale);
        pools.put("up", &peer, 4, max_idle, idle(fresh));
        pools.sweep();
        assert_eq!(pools.idle_count("up"), 1);
        assert!(closed_by_pool(&mut old_backend).await);
        assert!(pools.take("up", peer.id, max_idle).is_some());
        // Nothing left: the sweep forgets the peer and the group.
        pools.sweep();
        assert!(pools.groups.is_empty());
    }

    #[tokio::test]
    async fn a_full_group_makes_room_from_expired_connections_first() {
        let mut pools = ThreadPools::default();
        let (one, two) = (
            Arc::new(PeerState::default()),
            Arc::new(PeerState::default()),
        );
        let (old, _old_backend) = pair().await;
        let (fresh, _fresh_backend) = pair().await;
        let max_idle = Duration::from_secs(1);
        let stale = idle_for(old, 2 * max_idle);
        pools.put("up", &one, 1, max_idle, stale);
        pools.put("up", &two, 1, max_idle, idle(fresh));
        assert_eq!(pools.idle_count("up"), 1);
        assert!(pools.take("up", two.id, max_idle).is_some());
    }

    #[tokio::test]
    async fn detects_closed_and_chatty_peers() {
        let (a, b) = pair().await;
        let a = crate::net::Stream::from(a);
        assert!(still_open(&a));
        drop(b);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!still_open(&a));

        let (a, mut b) = pair().await;
        b.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!still_open(&crate::net::Stream::from(a)));
    }
}
