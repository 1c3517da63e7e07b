//! Host name lookup for `server NAME:PORT` in upstreams, `proxy_pass http://NAME` and
//! `listen NAME:PORT`. Names are looked up once, when the configuration loads, as nginx
//! does; the lookup sits behind [`Resolve`] so tests (and embedders) can give a fixed
//! table instead of depending on the machine's DNS.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Looks host names up. Validation only asks about names: IP literals (`127.0.0.1`,
/// `[::1]`) are taken as written and never reach a resolver.
///
/// `Debug` so that the load options holding one can still be printed.
pub trait Resolve: fmt::Debug {
    /// Every address of `host`, each with `port`. An error or an empty list both make
    /// the directive fail with nginx's "host not found in ..."; the error's text is not
    /// shown, as nginx does not show it either.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo` through std): `/etc/hosts`, DNS and
/// whatever else the system is set up to ask. What [`super::load`] uses by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// A fixed table of names and their addresses; any other name is not found. Names
/// match regardless of case, as in DNS; addresses come back in the order given.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table: every name is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table with `host` resolving to `addrs` (replacing an earlier entry).
    pub fn with_host(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.hosts
            .insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match self.hosts.get(&host.to_ascii_lowercase()) {
            Some(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("\"{host}\" is not in the table"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn static_table_gives_every_address_with_the_port() {
        let r = StaticResolver::new().with_host(
            "Backend",
            [
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        );
        let addrs = r.resolve("backend", 8080).expect("in the table");
        assert_eq!(
            addrs,
            [
                SocketAddr::from(([10, 0, 0, 1], 8080)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 8080)),
            ]
        );
        let e = r.resolve("other", 80).expect_err("not in the table");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    /// The one test that asks the machine: `localhost` is in every `/etc/hosts`.
    #[test]
    fn system_resolver_knows_localhost() {
        let addrs = SystemResolver
            .resolve("localhost", 8000)
            .expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8000));
    }
}
