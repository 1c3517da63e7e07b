//! Who holds a listening address, as `/proc` tells: the listening sockets of the kernel's
//! tables (`/proc/net/tcp`, `/proc/net/tcp6`, `/proc/net/unix`), then the processes
//! whose file descriptors are those sockets. Used to refuse an address another process
//! listens on (ferrolb's own worker threads share theirs with `SO_REUSEPORT`, which
//! would otherwise let a second instance join silently) and to name that process in the
//! start-up error.
//!
//! Everything here is best effort: a table or a process that cannot be read (another
//! user's, without privileges) is skipped, never an error.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::config::Endpoint;

/// A process that has a listening socket on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command line, arguments joined by spaces (its `comm` name when the command
    /// line is empty, as for kernel threads).
    pub command: String,
}

/// What `/proc` tells about the listeners on an address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    /// Processes found owning a listening socket there (this process included).
    pub processes: Vec<Holder>,
    /// User ids owning listening sockets there (from the kernel's table; known even
    /// when the process is another user's and cannot be inspected).
    pub uids: Vec<u32>,
    /// Whether any listening socket was found.
    pub listening: bool,
}

impl Holders {
    /// True when every listening socket found belongs to this process (and at least
    /// one was found): a reload or a worker thread binding an address ferrolb already
    /// serves.
    pub fn only_this_process(&self) -> bool {
        let me = std::process::id();
        self.listening && !self.processes.is_empty() && self.processes.iter().all(|h| h.pid == me)
    }

    /// A sentence naming the holders for a hint, e.g.
    /// `pid 1234 (python3 manage.py runserver 8080) listens there`, or `None` when
    /// nothing useful was found.
    pub fn describe(&self) -> Option<String> {
        let others: Vec<&Holder> = self.processes.iter().collect();
        if !others.is_empty() {
            let names: Vec<String> = others
                .iter()
                .map(|h| format!("pid {} ({})", h.pid, h.command))
                .collect();
            let verb = if names.len() == 1 {
                "listens"
            } else {
                "listen"
            };
            return Some(format!("{} {verb} there", names.join(", ")));
        }
        if let Some(uid) = self.uids.first() {
            return Some(format!(
                "a process of user id {uid} listens there (not visible to this user; \
                 try: sudo ss -ltnp)"
            ));
        }
        None
    }
}

/// The processes listening on `addr`. For TCP, a socket counts when its port is the
/// same and either address is a wildcard or both are equal (those are the ones that
/// make a bind fail). For a Unix path, the socket bound to that path.
pub fn of(addr: &Endpoint) -> Holders {
    let (inodes, uids) = match addr {
        Endpoint::Inet(a) => tcp_listeners(*a),
        Endpoint::Unix(path) => (unix_listeners(path), Vec::new()),
    };
    let processes = owners(&inodes);
    Holders {
        listening: !inodes.is_empty(),
        processes,
        uids,
    }
}

/// Inodes and owners' uids of the listening TCP sockets that overlap `want`.
fn tcp_listeners(want: SocketAddr) -> (HashSet<u64>, Vec<u32>) {
    let mut inodes = HashSet::new();
    let mut uids = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // 0A: TCP_LISTEN
            }
            let Some(local) = parse_hex_addr(f[1]) else {
                continue;
            };
            if local.port() != want.port() || !overlaps(local.ip(), want.ip()) {
                continue;
            }
            if let Ok(inode) = f[9].parse::<u64>() {
                if inode != 0 && inodes.insert(inode) {
                    if let Ok(uid) = f[7].parse::<u32>() {
                        if !uids.contains(&uid) {
                            uids.push(uid);
                        }
                    }
                }
            }
        }
    }
    (inodes, uids)
}

/// Whether a socket bound to `a` keeps one from binding `b` on the same port: equal
/// addresses, or a wildcard on either side (an IPv6 wildcard without `IPV6_V6ONLY`
/// covers IPv4 too; /proc does not tell which, so it counts).
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    let a = canonical(a);
    let b = canonical(b);
    a == b
        || a.is_unspecified() && (a.is_ipv6() || b.is_ipv4())
        || b.is_unspecified() && (b.is_ipv6() || a.is_ipv4())
}

/// `::ffff:1.2.3.4` as `1.2.3.4`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits then `:PORT` (IPv6), in the kernel's
/// byte order: each 32-bit word is in host order (little endian on every Linux
/// ferrolb runs on).
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = s.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    let ip = match ip_hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Inodes of the listening Unix sockets bound to `path`.
fn unix_listeners(path: &Path) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(text) = fs::read_to_string("/proc/net/unix") else {
        return inodes;
    };
    let want = path.to_string_lossy();
    // Num RefCount Protocol Flags Type St Inode Path
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[7] != want {
            continue;
        }
        // Flags 00010000: __SO_ACCEPTCON, the socket listens.
        if f[3] != "00010000" {
            continue;
        }
        if let Ok(inode) = f[6].parse::<u64>() {
            inodes.insert(inode);
        }
    }
    inodes
}

/// The processes with a file descriptor on one of `inodes`, by pid.
fn owners(inodes: &HashSet<u64>) -> Vec<Holder> {
    let mut out = Vec::new();
    if inodes.is_empty() {
        return out;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .ok()
                .and_then(|t| {
                    let t = t.to_string_lossy().into_owned();
                    t.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            out.push(Holder {
                pid,
                command: command_of(pid),
            });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// The command line of `pid` (at most 80 characters), else its `comm` name, else `?`.
pub fn command_of(pid: u32) -> String {
    const MAX: usize = 80;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let joined = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let text = if joined.is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    } else {
        joined
    };
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_hex_addresses() {
        assert_eq!(
            parse_hex_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_hex_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_hex_addr("zz:1"), None);
    }

    #[test]
    fn wildcards_overlap_specific_addresses() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        assert!(overlaps(any4, lo4) && overlaps(lo4, any4));
        assert!(overlaps(any6, lo4) && overlaps(lo6, any6));
        assert!(!overlaps(lo4, "127.0.0.2".parse().unwrap()));
        assert!(!overlaps(any4, lo6));
    }

    #[test]
    fn finds_this_process_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = of(&Endpoint::Inet(addr));
        assert!(h.listening, "{h:?}");
        assert!(h.only_this_process(), "{h:?}");
        assert!(h
            .describe()
            .unwrap()
            .contains(&std::process::id().to_string()));
        drop(l);
        assert!(!of(&Endpoint::Inet(addr)).listening);
    }
}
