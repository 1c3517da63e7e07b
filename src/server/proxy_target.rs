//! `proxy_pass` with variables, as nginx runs it: the URL is evaluated per request; its
//! host names an `upstream` group (no port given) or an implicit group
//! (`host:port`), or is an address, or is resolved with the location's `resolver`.
//! A URI part is then sent as it is, the whole request URI.

use std::ops::Deref;
use std::sync::Arc;

use super::state::Runtime;
use crate::balance::Upstream;
use crate::config::validate::parse_host_port;
use crate::config::{Endpoint, LocSettings, ProxyPass};
use crate::net::resolver::{self, ResolveError};

/// The group a request goes to: one of the configuration, or one made for it.
pub(super) enum Group<'a> {
    Configured(&'a Upstream),
    Made(Arc<Upstream>),
}

impl Deref for Group<'_> {
    type Target = Upstream;
    fn deref(&self) -> &Upstream {
        match self {
            Group::Configured(u) => u,
            Group::Made(u) => u,
        }
    }
}

/// Where one request is proxied to.
pub(super) struct Target<'a> {
    /// The `proxy_pass` as if written with this request's values.
    pub(super) pass: ProxyPass,
    pub(super) group: Group<'a>,
}

/// Why the evaluated URL leads nowhere; nginx's status and error log wording.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum TargetError {
    #[error("invalid URL prefix in \"{0}\"")]
    Prefix(String),
    #[error("invalid port in upstream \"{0}\"")]
    Url(String),
    #[error("no resolver defined to resolve {0}")]
    NoResolver(String),
    #[error("{host} could not be resolved ({}: {err})", err.code())]
    NotResolved { host: String, err: ResolveError },
}

impl TargetError {
    /// The status the client gets.
    pub(super) fn status(&self) -> u16 {
        match self {
            TargetError::Prefix(_) | TargetError::Url(_) => 500,
            TargetError::NoResolver(_) | TargetError::NotResolved { .. } => 502,
        }
    }
}

/// An evaluated `uwsgi_pass` value (`[uwsgi://]ADDRESS`) as the `http://` URL
/// [`find`] reads; any other scheme is left for [`find`] to refuse.
pub(super) fn uwsgi_as_url(value: &str) -> std::borrow::Cow<'_, str> {
    let rest = match value.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("uwsgi://") => &value[8..],
        _ if value.contains("://") => return value.into(),
        _ => value,
    };
    format!("http://{rest}").into()
}

/// The target of an evaluated `proxy_pass` URL.
pub(super) async fn find<'a>(
    rt: &'a Runtime,
    settings: &LocSettings,
    template: &crate::config::Template,
    url: &str,
) -> Result<Target<'a>, TargetError> {
    let rest = match url.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("http://") => &url[7..],
        _ => return Err(TargetError::Prefix(url.to_owned())),
    };
    let pass = |proxy_host: &str, uri: Option<&str>| ProxyPass {
        protocol: crate::config::UpstreamProtocol::Http,
        upstream: usize::MAX,
        scheme: "http".to_owned(),
        proxy_host: proxy_host.to_owned(),
        // nginx sends `http://up?a=1` as `/?a=1`.
        uri: uri.map(|u| {
            if u.starts_with('?') {
                format!("/{u}")
            } else {
                u.to_owned()
            }
        }),
        location_prefix: None,
        url: Some(template.clone()),
        // `https://` values are refused above: no TLS settings are made per request.
        tls: None,
    };
    if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case("unix:") {
        let after = &rest[5..];
        let (path, uri) = match after.find(':') {
            Some(i) => (&after[..i], Some(&after[i + 1..])),
            None => (after, None),
        };
        if path.is_empty() {
            return Err(TargetError::Url(rest.to_owned()));
        }
        let addr = Endpoint::Unix(path.into());
        let group = rt.dynamic.get(&format!("unix:{path}"), &[addr]);
        return Ok(Target {
            pass: pass("localhost", uri.filter(|u| !u.is_empty())),
            group: Group::Made(group),
        });
    }
    let (hostport, uri) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) =
        parse_host_port(hostport).map_err(|_| TargetError::Url(hostport.to_owned()))?;
    let upstreams = &rt.config.http.upstreams;
    // A declared group answers a host given without a port; an implicit one (another
    // location's `proxy_pass http://host:port`) its own `host:port`.
    let declared = upstreams
        .iter()
        .position(|u| !u.implicit && port.is_none() && u.name.eq_ignore_ascii_case(host));
    let port = port.unwrap_or(80);
    let name = if host.contains(':') {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    } else {
        format!("{}:{port}", host.to_ascii_lowercase())
    };
    let implicit = || upstreams.iter().position(|u| u.implicit && u.name == name);
    if let Some(u) = declared.or_else(implicit).and_then(|i| rt.upstreams.get(i)) {
        return Ok(Target {
            pass: pass(hostport, uri),
            group: Group::Configured(u),
        });
    }
    let addrs: Vec<Endpoint> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![Endpoint::Inet(std::net::SocketAddr::new(ip, port))],
        Err(_) => {
            let Some(resolver) = &settings.resolver else {
                return Err(TargetError::NoResolver(host.to_owned()));
            };
            resolver::lookup(resolver, settings.resolver_timeout, host)
                .await
                .map_err(|err| TargetError::NotResolved {
                    host: host.to_owned(),
                    err,
                })?
                .into_iter()
                .map(|ip| Endpoint::Inet(std::net::SocketAddr::new(ip, port)))
                .collect()
        }
    };
    Ok(Target {
        pass: pass(hostport, uri),
        group: Group::Made(rt.dynamic.get(&name, &addrs)),
    })
}
