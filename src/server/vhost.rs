//! Virtual server selection, nginx's rules: the servers listening on the connection's
//! local address (or, when none does, on the wildcard address of its port) are the
//! candidates; the Host name picks among them by exact name, then the longest
//! `*.example.com` wildcard, then the longest `www.example.*` wildcard, then the first
//! matching regex in file order; failing that the `default_server` of that address, or
//! the first candidate. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::{Endpoint, ServerConf, ServerName};

/// Index into `servers` of the server for a connection accepted on local address
/// `listen` with request Host `host` (as received: may carry a port, upper case or a
/// trailing dot). `None` only when no server listens on that port at all.
pub fn find_server(servers: &[ServerConf], listen: &Endpoint, host: Option<&str>) -> Option<usize> {
    let addr = &served_address(servers, listen);
    // One server on the address (the usual case): it is the answer whatever the
    // Host, and no name needs normalising.
    let mut on_addr = (0..servers.len()).filter(|&i| listens_on(&servers[i], addr));
    let first = on_addr.next()?;
    if on_addr.next().is_none() {
        return Some(first);
    }
    let candidates: Vec<usize> = (0..servers.len())
        .filter(|&i| listens_on(&servers[i], addr))
        .collect();
    let name = normalize_host(host.unwrap_or(""));
    by_name(servers, &candidates, &name).or_else(|| {
        candidates
            .iter()
            .copied()
            .find(|&i| {
                servers[i]
                    .listen
                    .iter()
                    .any(|l| &l.addr == addr && l.default_server)
            })
            .or(candidates.first().copied())
    })
}

/// Whether more than one server listens where a connection to `listen` arrived (nginx
/// then chooses among them by name).
pub fn several_servers(servers: &[ServerConf], listen: &Endpoint) -> bool {
    let addr = &served_address(servers, listen);
    servers
        .iter()
        .filter(|s| listens_on(s, addr))
        .nth(1)
        .is_some()
}

fn listens_on(s: &ServerConf, a: &Endpoint) -> bool {
    s.listen.iter().any(|l| &l.addr == a)
}

/// The `listen` address that serves a connection accepted on local address `listen`:
/// itself, or `*:PORT` when no server listens on that specific address.
fn served_address(servers: &[ServerConf], listen: &Endpoint) -> Endpoint {
    match listen {
        Endpoint::Inet(a) if !servers.iter().any(|s| listens_on(s, listen)) => {
            let any = match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            Endpoint::Inet(SocketAddr::new(any, a.port()))
        }
        _ => listen.clone(),
    }
}

/// True when connections accepted on `local` start with a PROXY protocol header: a
/// `listen` of its address has `proxy_protocol` (nginx sets it per address).
pub fn proxy_protocol_on(servers: &[ServerConf], local: &Endpoint) -> bool {
    any_listen_of(servers, local, |l| l.proxy_protocol)
}

/// Whether the address `local` serves HTTP/2 (`listen ... http2` or `http2 on`).
pub fn http2_on(servers: &[ServerConf], local: &Endpoint) -> bool {
    any_listen_of(servers, local, |l| l.http2)
}

/// Whether a `listen` of the address `local` is served on says `what`.
fn any_listen_of(
    servers: &[ServerConf],
    local: &Endpoint,
    what: impl Fn(&crate::config::Listen) -> bool,
) -> bool {
    let addr = served_address(servers, local);
    servers
        .iter()
        .flat_map(|s| &s.listen)
        .any(|l| l.addr == addr && what(l))
}

/// Host header → name to match: as nginx's `$host`, port stripped, lowercase, one
/// trailing dot removed.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let name = crate::http1::request::host_name(host.as_bytes()).unwrap_or(host.as_bytes());
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

fn by_name(servers: &[ServerConf], candidates: &[usize], name: &str) -> Option<usize> {
    let names = || {
        candidates
            .iter()
            .flat_map(move |&i| servers[i].server_names.iter().map(move |n| (i, n)))
    };
    if let Some((i, _)) = names().find(|(_, n)| matches!(n, ServerName::Exact(e) if e == name)) {
        return Some(i);
    }
    if name.is_empty() {
        // Requests without Host only match the empty name.
        return None;
    }
    // `max_by_key` keeps the last of equal keys; the first declared should win.
    let longest = |f: &dyn Fn(&ServerName) -> Option<usize>| {
        let mut best: Option<(usize, usize)> = None;
        for (i, n) in names() {
            if let Some(len) = f(n) {
                if best.is_none_or(|(_, l)| len > l) {
                    best = Some((i, len));
                }
            }
        }
        best.map(|(i, _)| i)
    };
    let start = longest(&|n| match n {
        ServerName::WildcardStart {
            suffix,
            matches_bare,
        } => {
            let sub = name.len() > suffix.len() && name.ends_with(suffix.as_str());
            let bare = *matches_bare && name == &suffix[1..];
            (sub || bare).then_some(suffix.len())
        }
        _ => None,
    });
    if start.is_some() {
        return start;
    }
    let end = longest(&|n| match n {
        ServerName::WildcardEnd(prefix) => {
            (name.len() > prefix.len() && name.starts_with(prefix.as_str())).then_some(prefix.len())
        }
        _ => None,
    });
    if end.is_some() {
        return end;
    }
    names()
        .find(|(_, n)| matches!(n, ServerName::Regex(r) if r.is_match(name)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn servers(text: &str) -> Vec<ServerConf> {
        let opts = crate::config::LoadOptions {
            text: Some(format!("events {{}} http {{ {text} }}")),
            is_root: true,
            ..Default::default()
        };
        crate::config::load(Path::new("t.conf"), &opts)
            .expect("config loads")
            .http
            .servers
    }

    fn addr(s: &str) -> Endpoint {
        s.parse().expect("socket address")
    }

    #[test]
    fn names_in_nginx_order() {
        let s = servers(
            "server { listen 80; server_name first; }
             server { listen 80; server_name example.com www.example.com; }
             server { listen 80; server_name *.example.com; }
             server { listen 80; server_name *.api.example.com; }
             server { listen 80; server_name www.example.*; }
             server { listen 80; server_name www.*; }
             server { listen 80; server_name ~^(?<user>.+)\\.users\\.org$; }
             server { listen 80; server_name .bare.org; }
             server { listen 80 default_server; server_name _; }",
        );
        let a = addr("10.0.0.1:80");
        for (host, want) in [
            (Some("example.com"), Some(1)),
            (Some("WWW.Example.COM.:8080"), Some(1)),
            (Some("foo.example.com"), Some(2)),
            (Some("x.api.example.com"), Some(3)), // longest wildcard-start
            (Some("www.example.org"), Some(4)),   // longest wildcard-end
            (Some("www.other.net"), Some(5)),
            (Some("Bob.users.org"), Some(6)), // regex, caseless
            (Some("bare.org"), Some(7)),
            (Some("a.bare.org"), Some(7)),
            (Some("unknown.net"), Some(8)), // default_server
            (None, Some(8)),
        ] {
            assert_eq!(find_server(&s, &a, host), want, "host {host:?}");
        }
    }

    #[test]
    fn default_is_first_without_default_server_and_empty_name_catches_no_host() {
        let s = servers(
            "server { listen 8080; server_name a; }
             server { listen 8080; server_name \"\"; }",
        );
        let a = addr("127.0.0.1:8080");
        assert_eq!(find_server(&s, &a, Some("zzz")), Some(0));
        assert_eq!(find_server(&s, &a, None), Some(1));
        assert_eq!(find_server(&s, &addr("127.0.0.1:9999"), None), None);
    }

    #[test]
    fn specific_address_hides_wildcard() {
        let s = servers(
            "server { listen 80; server_name wild; }
             server { listen 127.0.0.1:80; server_name local; }
             server { listen [::]:80; server_name six; }",
        );
        assert_eq!(
            find_server(&s, &addr("127.0.0.1:80"), Some("wild")),
            Some(1)
        );
        assert_eq!(
            find_server(&s, &addr("10.1.1.1:80"), Some("local")),
            Some(0)
        );
        assert_eq!(find_server(&s, &addr("[::1]:80"), Some("x")), Some(2));
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM.:80"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host(""), "");
    }
}
