//! One `resolver` directive's name resolution on one worker thread, nginx's algorithm
//! (src/core/ngx_resolver.c): a cache of names with their addresses or CNAME, the
//! requests waiting on a name being asked, the A and AAAA questions sent together to
//! one server (servers taken in turn per new name, the next one on each 5 s resend),
//! truncated UDP answers asked again over TCP, error answers handed to the waiting
//! requests and never cached. The engine is a task owning all of it; requests reach it
//! through a channel and wait for their answer with their own `resolver_timeout`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::wire::{self, Header, TYPE_A, TYPE_AAAA};
use super::ResolveError;
use crate::config::ResolverConf;
use crate::log::os_error_text;

/// nginx's `resend_timeout`: an unanswered question goes to the next server after this.
const RESEND: Duration = Duration::from_secs(5);
/// nginx's `expire`: a cached name unused this long is forgotten.
const EXPIRE: Duration = Duration::from_secs(30);
/// nginx's `tcp_timeout`: connecting to and writing to a server over TCP.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// nginx's `NGX_RESOLVER_MAX_RECURSION`: CNAMEs followed for one request.
const MAX_RECURSION: u32 = 50;
/// nginx's `NGX_RESOLVER_UDP_SIZE`.
const UDP_SIZE: usize = 4096;
/// What a request gets: the addresses in the order to try them, or why none.
type Answer = Result<Vec<IpAddr>, ResolveError>;

/// A request for the addresses of `name` (lower case, no trailing dot).
pub(super) struct Request {
    pub(super) name: String,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// A request waiting on a name, with the CNAMEs it has followed so far.
struct Waiter {
    reply: oneshot::Sender<Answer>,
    recursion: u32,
}

/// What the sockets' tasks report to the engine.
enum Event {
    Udp {
        server: usize,
        generation: u64,
        data: Vec<u8>,
    },
    UdpFailed {
        server: usize,
        generation: u64,
        err: std::io::Error,
    },
    Tcp {
        data: Vec<u8>,
    },
}

/// The sockets to one server: a connected UDP socket and a TCP connection, each made
/// when first needed and made again after failing, as nginx's.
#[derive(Default)]
struct Conn {
    udp: Option<Udp>,
    tcp: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// A connected UDP socket: the handle sent on (tokio's would refuse to send until
/// its reactor saw the socket writable) and the task reading its answers.
struct Udp {
    send: std::net::UdpSocket,
    /// Tells this socket's reports from those of one it replaced.
    generation: u64,
    reader: JoinHandle<()>,
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One name: being asked, or answered (addresses or a CNAME) and cached.
struct Node {
    /// A addresses; `None` while the A question is unanswered (`Some(empty)` when
    /// `ipv4=off`).
    a: Option<Vec<Ipv4Addr>>,
    /// AAAA addresses, likewise.
    aaaa: Option<Vec<Ipv6Addr>>,
    /// The questions sent, kept while the name is asked (their ids match answers).
    query_a: Option<Vec<u8>>,
    query_aaaa: Option<Vec<u8>>,
    /// The question went to TCP after a truncated UDP answer.
    tcp_a: bool,
    tcp_aaaa: bool,
    /// The server asked (index into the directive's servers).
    last_connection: usize,
    /// An error answer to one question, given when the other is answered.
    code: u8,
    cname: Option<String>,
    /// The last second (Unix time) the answer is used in: `valid=` or the lowest
    /// TTL after the second it came in, as nginx counts (a TTL of 0 serves the rest
    /// of its second).
    valid: Option<u64>,
    ttl: u32,
    waiting: Vec<Waiter>,
    /// Asked: when to resend. Answered: when it is forgotten unless used.
    expire: Instant,
    asking: bool,
}

impl Node {
    fn new(now: Instant) -> Node {
        Node {
            a: None,
            aaaa: None,
            query_a: None,
            query_aaaa: None,
            tcp_a: false,
            tcp_aaaa: false,
            last_connection: 0,
            code: 0,
            cname: None,
            valid: None,
            ttl: u32::MAX,
            waiting: Vec::new(),
            expire: now,
            asking: false,
        }
    }

    fn naddrs(&self) -> usize {
        self.a.as_ref().map_or(0, Vec::len) + self.aaaa.as_ref().map_or(0, Vec::len)
    }

    /// Drops the requests that stopped waiting (timed out, client gone) and says
    /// whether any is left.
    fn has_waiting(&mut self) -> bool {
        self.waiting.retain(|w| !w.reply.is_closed());
        !self.waiting.is_empty()
    }

    /// Done asking: the answer is kept until `valid`.
    fn answered(&mut self, now: Instant, valid: Option<Duration>) {
        let keep = valid.map_or(u64::from(self.ttl), |v| v.as_secs());
        self.valid = Some(unix_secs().saturating_add(keep));
        self.expire = now + EXPIRE;
        self.asking = false;
        self.query_a = None;
        self.query_aaaa = None;
    }
}

/// The wall clock in whole seconds, nginx's `ngx_time()`.
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The addresses in nginx's order: A then AAAA; from the cache (`rotate`) each family
/// starts at a random one and the whole list at a random place, so that requests
/// spread over a name's addresses.
fn export(a: &[Ipv4Addr], aaaa: &[Ipv6Addr], rotate: bool) -> Vec<IpAddr> {
    let n = a.len() + aaaa.len();
    let mut out = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED); n];
    let random = |m: usize| {
        if rotate && m > 0 {
            rand::random_range(0..m)
        } else {
            0
        }
    };
    let mut d = random(n);
    let mut place = |all: Vec<IpAddr>| {
        let mut j = random(all.len());
        for _ in 0..all.len() {
            out[d] = all[j];
            d = (d + 1) % n;
            j = (j + 1) % all.len();
        }
    };
    place(a.iter().map(|&x| IpAddr::V4(x)).collect());
    place(aaaa.iter().map(|&x| IpAddr::V6(x)).collect());
    out
}

fn deliver(waiting: Vec<Waiter>, answer: &Answer) {
    for w in waiting {
        // A request that stopped waiting has nobody to tell.
        let _ = w.reply.send(answer.clone());
    }
}

struct Engine {
    servers: Vec<SocketAddr>,
    ipv4: bool,
    ipv6: bool,
    valid: Option<Duration>,
    conns: Vec<Conn>,
    /// The server the next new name is asked from.
    last_connection: usize,
    nodes: HashMap<String, Node>,
    events: mpsc::UnboundedSender<Event>,
    generation: u64,
    last_sweep: Instant,
}

/// Runs the resolution of `conf` until every requester is gone.
pub(super) async fn run(conf: ResolverConf, mut requests: mpsc::UnboundedReceiver<Request>) {
    if conf.servers.is_empty() {
        // The configuration refuses a `resolver` without servers; never loop on none.
        while let Some(r) = requests.recv().await {
            let _ = r.reply.send(Err(ResolveError::Failed(
                "no name servers defined".to_owned(),
            )));
        }
        return;
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut e = Engine {
        conns: conf.servers.iter().map(|_| Conn::default()).collect(),
        servers: conf.servers,
        ipv4: conf.ipv4,
        ipv6: conf.ipv6,
        valid: conf.valid,
        last_connection: 0,
        nodes: HashMap::new(),
        events: events_tx,
        generation: 0,
        last_sweep: Instant::now(),
    };
    loop {
        let resend_at = e.next_resend();
        tokio::select! {
            req = requests.recv() => match req {
                Some(r) => {
                    let waiter = Waiter { reply: r.reply, recursion: 0 };
                    e.resolve(r.name, vec![waiter]);
                }
                None => break,
            },
            Some(ev) = events.recv() => e.event(ev),
            _ = tokio::time::sleep_until(resend_at.unwrap_or_else(Instant::now)),
                if resend_at.is_some() => e.resend(),
        }
    }
}

impl Engine {
    /// nginx's `ngx_resolve_name_locked`: from the cache, by joining the requests
    /// already waiting on the name, or by asking.
    fn resolve(&mut self, name: String, mut waiters: Vec<Waiter>) {
        let now = Instant::now();
        self.sweep(now);
        if let Some(node) = self.nodes.get_mut(&name) {
            if node.valid.is_some_and(|v| unix_secs() <= v) {
                node.expire = now + EXPIRE;
                if node.naddrs() > 0 {
                    let addrs = export(
                        node.a.as_deref().unwrap_or_default(),
                        node.aaaa.as_deref().unwrap_or_default(),
                        true,
                    );
                    waiters.append(&mut node.waiting);
                    deliver(waiters, &Ok(addrs));
                    return;
                }
                let cname = node.cname.clone().unwrap_or_default();
                waiters.append(&mut node.waiting);
                self.follow_cname(cname, waiters);
                return;
            }
            if node.has_waiting() {
                node.waiting.append(&mut waiters);
                return;
            }
        }
        // Not known, expired, or asked with nobody waiting any more: ask (again).
        let id = || rand::random::<u16>();
        let query_a = self
            .ipv4
            .then(|| wire::query(id(), &name, TYPE_A))
            .flatten();
        let query_aaaa = self
            .ipv6
            .then(|| wire::query(id(), &name, TYPE_AAAA))
            .flatten();
        if query_a.is_none() && query_aaaa.is_none() {
            self.nodes.remove(&name);
            deliver(waiters, &Err(ResolveError::Dns(wire::RCODE_NXDOMAIN)));
            return;
        }
        let n = self.servers.len();
        let node = self
            .nodes
            .entry(name.clone())
            .or_insert_with(|| Node::new(now));
        node.query_a = query_a;
        node.query_aaaa = query_aaaa;
        node.a = (!self.ipv4).then(Vec::new);
        node.aaaa = (!self.ipv6).then(Vec::new);
        node.tcp_a = false;
        node.tcp_aaaa = false;
        node.last_connection = self.last_connection;
        self.last_connection = (self.last_connection + 1) % n;
        if !self.send(&name) {
            // nginx retries at once with the next server.
            if let Some(node) = self.nodes.get_mut(&name) {
                node.last_connection = (node.last_connection + 1) % n;
            }
            self.send(&name);
        }
        if let Some(node) = self.nodes.get_mut(&name) {
            node.expire = now + RESEND;
            node.asking = true;
            node.code = 0;
            node.cname = None;
            node.valid = None;
            node.ttl = u32::MAX;
            node.waiting = waiters;
        }
    }

    /// The requests go on with the name a CNAME gave, those that followed too many
    /// get "Host not found".
    fn follow_cname(&mut self, cname: String, waiters: Vec<Waiter>) {
        let (mut go, stop): (Vec<Waiter>, Vec<Waiter>) = waiters
            .into_iter()
            .filter(|w| !w.reply.is_closed())
            .partition(|w| w.recursion < MAX_RECURSION);
        deliver(stop, &Err(ResolveError::Dns(wire::RCODE_NXDOMAIN)));
        if go.is_empty() {
            return;
        }
        for w in &mut go {
            w.recursion += 1;
        }
        self.resolve(cname, go);
    }

    /// Forgets answered names unused for [`EXPIRE`], at most once a second.
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        self.nodes.retain(|_, n| n.asking || now <= n.expire);
    }

    /// Sends the unanswered questions of `name` to its server; false when a send failed.
    fn send(&mut self, name: &str) -> bool {
        let Some(node) = self.nodes.get(name) else {
            return false;
        };
        let server = node.last_connection;
        let mut sends = Vec::new();
        if node.a.is_none() {
            if let Some(q) = &node.query_a {
                sends.push((q.clone(), node.tcp_a));
            }
        }
        if node.aaaa.is_none() {
            if let Some(q) = &node.query_aaaa {
                sends.push((q.clone(), node.tcp_aaaa));
            }
        }
        for (q, tcp) in sends {
            let sent = if tcp {
                self.send_tcp(server, &q)
            } else {
                self.send_udp(server, &q)
            };
            if !sent {
                return false;
            }
        }
        true
    }

    fn send_udp(&mut self, server: usize, q: &[u8]) -> bool {
        let addr = self.servers[server];
        if self.conns[server].udp.is_none() {
            match self.udp_socket(server) {
                Ok(made) => self.conns[server].udp = Some(made),
                Err(e) => {
                    crate::error!(
                        "socket() failed ({}) while resolving, resolver: {addr}",
                        os_error_text(&e)
                    );
                    return false;
                }
            }
        }
        let Some(udp) = &self.conns[server].udp else {
            return false;
        };
        match udp.send.send(q) {
            Ok(n) if n == q.len() => true,
            Ok(_) => {
                crate::crit!("send() incomplete while resolving, resolver: {addr}");
                self.conns[server].udp = None;
                false
            }
            Err(e) => {
                crate::error!(
                    "send() failed ({}) while resolving, resolver: {addr}",
                    os_error_text(&e)
                );
                self.conns[server].udp = None;
                false
            }
        }
    }

    /// A UDP socket connected to `server`, with a task reading its answers.
    fn udp_socket(&mut self, server: usize) -> std::io::Result<Udp> {
        let addr = self.servers[server];
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let std_sock = std::net::UdpSocket::bind(local)?;
        std_sock.connect(addr)?;
        std_sock.set_nonblocking(true)?;
        let sender = std_sock.try_clone()?;
        let reader = UdpSocket::from_std(std_sock)?;
        self.generation += 1;
        let generation = self.generation;
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; UDP_SIZE];
            loop {
                match reader.recv(&mut buf).await {
                    Ok(n) => {
                        let data = buf[..n].to_vec();
                        let ev = Event::Udp {
                            server,
                            generation,
                            data,
                        };
                        if events.send(ev).is_err() {
                            return;
                        }
                    }
                    Err(err) => {
                        let _ = events.send(Event::UdpFailed {
                            server,
                            generation,
                            err,
                        });
                        return;
                    }
                }
            }
        });
        Ok(Udp {
            send: sender,
            generation,
            reader: task,
        })
    }

    fn send_tcp(&mut self, server: usize, q: &[u8]) -> bool {
        let Ok(len) = u16::try_from(q.len()) else {
            return false;
        };
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(q);
        if let Some(tx) = &self.conns[server].tcp {
            match tx.send(frame) {
                Ok(()) => return true,
                Err(back) => frame = back.0,
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sent = tx.send(frame).is_ok();
        tokio::spawn(tcp_conn(self.servers[server], rx, self.events.clone()));
        self.conns[server].tcp = Some(tx);
        sent
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Udp {
                server,
                generation,
                data,
            } => {
                if self.conns[server].udp.as_ref().map(|u| u.generation) == Some(generation) {
                    self.process_response(&data, false);
                }
            }
            Event::UdpFailed {
                server,
                generation,
                err,
            } => {
                if self.conns[server].udp.as_ref().map(|u| u.generation) == Some(generation) {
                    crate::error!(
                        "recv() failed ({}) while resolving, resolver: {}",
                        os_error_text(&err),
                        self.servers[server]
                    );
                    self.conns[server].udp = None;
                }
            }
            Event::Tcp { data } => self.process_response(&data, true),
        }
    }

    /// The earliest resend of a name being asked.
    fn next_resend(&self) -> Option<Instant> {
        self.nodes
            .values()
            .filter(|n| n.asking)
            .map(|n| n.expire)
            .min()
    }

    /// nginx's `ngx_resolver_resend`: names still awaited are asked from the next
    /// server; those nobody waits for any more are forgotten.
    fn resend(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.asking && n.expire <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let n = self.servers.len();
        for name in due {
            let Some(node) = self.nodes.get_mut(&name) else {
                continue;
            };
            if !node.has_waiting() {
                self.nodes.remove(&name);
                continue;
            }
            node.last_connection = (node.last_connection + 1) % n;
            node.expire = now + RESEND;
            self.send(&name);
        }
    }

    /// nginx's `ngx_resolver_process_response`: what is wrong with an answer is
    /// logged and the answer dropped; the requests then wait for a resend's answer or
    /// their timeout.
    fn process_response(&mut self, buf: &[u8], tcp: bool) {
        let Some(h) = Header::read(buf) else {
            crate::error!("short DNS response");
            return;
        };
        if !h.is_standard_response() || (h.truncated() && tcp) {
            crate::error!(
                "invalid {} DNS response {} fl:{:04X}",
                if tcp { "TCP" } else { "UDP" },
                h.id,
                h.flags
            );
            return;
        }
        let code = h.rcode();
        if code == wire::RCODE_FORMERR || code > wire::RCODE_REFUSED {
            let asked = (code == wire::RCODE_FORMERR)
                .then(|| {
                    self.nodes.iter().find(|(_, n)| {
                        n.asking
                            && [&n.query_a, &n.query_aaaa]
                                .iter()
                                .any(|q| q.as_ref().is_some_and(|q| q[..2] == h.id.to_be_bytes()))
                    })
                })
                .flatten();
            let text = wire::strerror(u16::from(code));
            match asked {
                Some((name, _)) => crate::error!(
                    "DNS error ({code}: {text}), query id:{}, name:\"{name}\"",
                    h.id
                ),
                None => crate::error!("DNS error ({code}: {text}), query id:{}", h.id),
            }
            return;
        }
        let (qtype, qclass, answers) = match wire::question(buf, &h) {
            Ok(q) => q,
            Err(e) => {
                crate::error!("{e}");
                return;
            }
        };
        if qclass != 1 {
            crate::error!("unknown query class {qclass} in DNS response");
            return;
        }
        if qtype != TYPE_A && qtype != TYPE_AAAA {
            crate::error!("unknown query type {qtype} in DNS response");
            return;
        }
        self.process_a(buf, &h, qtype, answers);
    }

    /// nginx's `ngx_resolver_process_a`: the answer to one of a name's two questions.
    fn process_a(&mut self, buf: &[u8], h: &Header, qtype: u16, answers: usize) {
        let name = match wire::name_at(buf, wire::HEADER_LEN) {
            Ok(n) => n,
            Err(e) => {
                crate::error!("{e}");
                return;
            }
        };
        let now = Instant::now();
        let six = qtype == TYPE_AAAA;
        let Some(node) = self.nodes.get_mut(&name) else {
            crate::error!("unexpected DNS response for {name}");
            return;
        };
        let (query, pending, tcp) = if six {
            (&node.query_aaaa, node.aaaa.is_none(), node.tcp_aaaa)
        } else {
            (&node.query_a, node.a.is_none(), node.tcp_a)
        };
        let Some(query) = query.as_ref().filter(|_| pending).cloned() else {
            crate::error!("unexpected DNS response for {name}");
            return;
        };
        if h.truncated() && tcp {
            return;
        }
        let expect = u16::from_be_bytes([query[0], query[1]]);
        if h.id != expect {
            crate::error!(
                "wrong ident {} in DNS response for {name}, expect {expect}",
                h.id
            );
            return;
        }
        if h.truncated() {
            if !node.has_waiting() {
                self.nodes.remove(&name);
                return;
            }
            if six {
                node.tcp_aaaa = true;
            } else {
                node.tcp_a = true;
            }
            node.expire = now + RESEND;
            let server = node.last_connection;
            self.send_tcp(server, &query);
            return;
        }
        let mut code = h.rcode();
        if code == 0 && node.code != 0 {
            code = node.code;
        }
        let other_pending = if six {
            node.a.is_none()
        } else {
            node.aaaa.is_none()
        };
        if code == 0 && h.answers == 0 {
            if six {
                node.aaaa = Some(Vec::new());
            } else {
                node.a = Some(Vec::new());
            }
            if other_pending {
                return;
            }
            if node.naddrs() > 0 {
                return self.export_answer(&name, now);
            }
            code = wire::RCODE_NXDOMAIN;
        }
        if code != 0 {
            if six {
                node.aaaa = Some(Vec::new());
            } else {
                node.a = Some(Vec::new());
            }
            if other_pending {
                node.code = code;
                return;
            }
            if let Some(node) = self.nodes.remove(&name) {
                deliver(node.waiting, &Err(ResolveError::Dns(code)));
            }
            return;
        }
        let records = match wire::answers(buf, answers, h.answers) {
            Ok(r) => r,
            Err(e) => {
                crate::error!("{e}");
                return;
            }
        };
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut cname = None;
        for r in &records {
            node.ttl = node.ttl.min(r.ttl);
            let data = buf.get(r.data..r.data + r.len);
            match r.rtype {
                TYPE_A | TYPE_AAAA if r.rtype != qtype => {
                    let t = if r.rtype == TYPE_A { "A" } else { "AAAA" };
                    crate::error!("unexpected {t} record in DNS response");
                    return;
                }
                TYPE_A => match data {
                    _ if r.len != 4 => {
                        crate::error!("invalid A record in DNS response");
                        return;
                    }
                    Some(&[a, b, c, d]) => v4.push(Ipv4Addr::new(a, b, c, d)),
                    _ => {
                        crate::error!("short DNS response");
                        return;
                    }
                },
                TYPE_AAAA => match data.map(<[u8; 16]>::try_from) {
                    _ if r.len != 16 => {
                        crate::error!("invalid AAAA record in DNS response");
                        return;
                    }
                    Some(Ok(x)) => v6.push(Ipv6Addr::from(x)),
                    _ => {
                        crate::error!("short DNS response");
                        return;
                    }
                },
                wire::TYPE_CNAME => cname = Some(r.data),
                wire::TYPE_DNAME => {}
                t => crate::error!("unexpected RR type {t} in DNS response"),
            }
        }
        let found = !v4.is_empty() || !v6.is_empty();
        if six {
            node.aaaa = Some(v6);
        } else {
            node.a = Some(v4);
        }
        if found && other_pending {
            return;
        }
        if !other_pending && node.naddrs() > 0 {
            return self.export_answer(&name, now);
        }
        let Some(at) = cname else {
            crate::error!("no A or CNAME types in DNS response");
            return;
        };
        if other_pending {
            return;
        }
        let target = match wire::name_at(buf, at) {
            Ok(t) => t,
            Err(e) => {
                crate::error!("{e}");
                return;
            }
        };
        node.cname = Some(target.clone());
        node.answered(now, self.valid);
        let waiting = std::mem::take(&mut node.waiting);
        self.follow_cname(target, waiting);
    }

    /// Both questions answered with addresses: cache them and hand them out.
    fn export_answer(&mut self, name: &str, now: Instant) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        node.answered(now, self.valid);
        let addrs = export(
            node.a.as_deref().unwrap_or_default(),
            node.aaaa.as_deref().unwrap_or_default(),
            false,
        );
        deliver(std::mem::take(&mut node.waiting), &Ok(addrs));
    }
}

/// A TCP connection to a DNS server: writes the queued questions (length-prefixed)
/// and reports each answer, until the server closes it or an I/O error.
async fn tcp_conn(
    addr: SocketAddr,
    mut questions: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let stream = match tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            crate::error!(
                "connect() failed ({}) while resolving, resolver: {addr}",
                os_error_text(&e)
            );
            return;
        }
        Err(_) => {
            crate::error!("connect() timed out while resolving, resolver: {addr}");
            return;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        tokio::select! {
            q = questions.recv() => {
                let Some(q) = q else { return };
                match tokio::time::timeout(TCP_TIMEOUT, wr.write_all(&q)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            n = rd.read(&mut chunk) => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    if buf.len() < 2 + len {
                        break;
                    }
                    let data = buf[2..2 + len].to_vec();
                    buf.drain(..2 + len);
                    if events.send(Event::Tcp { data }).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_answers_keep_their_order() {
        let a = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)];
        let six = [Ipv6Addr::LOCALHOST];
        let out = export(&a, &six, false);
        assert_eq!(
            out,
            vec![
                IpAddr::V4(a[0]),
                IpAddr::V4(a[1]),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
    }

    #[test]
    fn cached_answers_rotate_but_keep_every_address() {
        let a = [
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::new(127, 0, 0, 3),
        ];
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut out = export(&a, &[], true);
            firsts.insert(out[0]);
            out.sort();
            assert_eq!(out, a.iter().map(|&x| IpAddr::V4(x)).collect::<Vec<_>>());
        }
        assert_eq!(firsts.len(), 3);
    }
}
