//! Whether a client may get a gzipped response, as nginx decides it
//! (`ngx_http_gzip_ok`): it accepts gzip (`Accept-Encoding` names it with a quality
//! above zero), speaks at least `gzip_http_version`, is not behind a proxy (`Via`)
//! unless `gzip_proxied` allows this response, and its User-Agent matches no
//! `gzip_disable` pattern.

use crate::config::{GzipConf, GzipProxied};
use crate::http1::RequestHead;

/// What `gzip_proxied` looks at in the response.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ResponseFacts<'r> {
    /// The `Cache-Control` value, if any.
    pub(super) cache_control: Option<&'r [u8]>,
    /// `Expires`: `None` without one, else whether it is already past (a value that
    /// is no date counts as not past, as nginx reads it).
    pub(super) expires: Option<bool>,
    /// Whether it has `Last-Modified`.
    pub(super) last_modified: bool,
    /// Whether it has `ETag`.
    pub(super) etag: bool,
}

/// nginx's `ngx_http_gzip_ok` for a request whose head is in `buf`.
pub(super) fn gzip_ok(
    conf: &GzipConf,
    head: &RequestHead,
    buf: &[u8],
    resp: &ResponseFacts<'_>,
) -> bool {
    client_gzip(conf, head, buf).allows(conf, resp)
}

/// The request's part of `ngx_http_gzip_ok`, decided before the response is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientGzip {
    /// The client never gets gzip.
    Never,
    /// It does.
    Yes,
    /// It came through a proxy (`Via`): `gzip_proxied` decides by the response.
    ThroughProxy {
        /// The request has `Authorization` (`gzip_proxied auth`).
        auth: bool,
    },
}

impl ClientGzip {
    /// The verdict once the response is known.
    pub(super) fn allows(self, conf: &GzipConf, resp: &ResponseFacts<'_>) -> bool {
        match self {
            ClientGzip::Never => false,
            ClientGzip::Yes => true,
            ClientGzip::ThroughProxy { auth } => proxied_ok(conf.proxied.0, auth, resp),
        }
    }
}

/// The request's side: `Accept-Encoding`, version, `gzip_disable`, `Via`.
pub(super) fn client_gzip(conf: &GzipConf, head: &RequestHead, buf: &[u8]) -> ClientGzip {
    let Some(ae) = head.header_value(buf, "accept-encoding") else {
        return ClientGzip::Never;
    };
    if !accepts_gzip(ae) {
        return ClientGzip::Never;
    }
    let agent = head.header_value(buf, "user-agent").unwrap_or_default();
    if conf.disable_msie6 && is_msie6(agent) {
        return ClientGzip::Never;
    }
    if head.minor_version < conf.http_version_minor {
        return ClientGzip::Never;
    }
    let agent = String::from_utf8_lossy(agent);
    if conf.disable.iter().any(|re| re.is_match(&agent)) {
        return ClientGzip::Never;
    }
    if head.header_value(buf, "via").is_some() {
        return ClientGzip::ThroughProxy {
            auth: head.header_value(buf, "authorization").is_some(),
        };
    }
    ClientGzip::Yes
}

/// `gzip_proxied` for a request that came through a proxy, in nginx's order: `any`;
/// `auth` with `Authorization`; with `Expires`, only `expired` for one in the past;
/// with `Cache-Control`, only `no-cache`, `no-store`, `private` naming what it says;
/// otherwise yes, unless `no_last_modified` meets a `Last-Modified` or `no_etag` an
/// `ETag`.
fn proxied_ok(p: u16, auth: bool, resp: &ResponseFacts<'_>) -> bool {
    if p == 0 || p & GzipProxied::OFF != 0 {
        return false;
    }
    if p & GzipProxied::ANY != 0 || (auth && p & GzipProxied::AUTH != 0) {
        return true;
    }
    if let Some(past) = resp.expires {
        return p & GzipProxied::EXPIRED != 0 && past;
    }
    if let Some(cc) = resp.cache_control {
        let has = |token: &[u8]| {
            cc.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        };
        return (p & GzipProxied::NO_CACHE != 0 && has(b"no-cache"))
            || (p & GzipProxied::NO_STORE != 0 && has(b"no-store"))
            || (p & GzipProxied::PRIVATE != 0 && has(b"private"));
    }
    let declined_by_lm = p & GzipProxied::NO_LAST_MODIFIED != 0 && resp.last_modified;
    let declined_by_etag = p & GzipProxied::NO_ETAG != 0 && resp.etag;
    !(declined_by_lm || declined_by_etag)
}

/// Whether `Accept-Encoding` names `gzip` with a quality above zero (nginx looks for
/// the token `gzip` followed by `,`, `;q=...` or the end).
fn accepts_gzip(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        if !name.eq_ignore_ascii_case(b"gzip") {
            return false;
        }
        parts.all(|param| {
            let param = param.trim_ascii();
            match param.split_first() {
                Some((q, rest)) if q.eq_ignore_ascii_case(&b'q') => {
                    let v = rest.strip_prefix(b"=").unwrap_or(rest).trim_ascii();
                    quality_above_zero(v)
                }
                _ => true,
            }
        })
    })
}

/// A `q` value other than 0 (`0`, `0.`, `0.0`, `0.00`, `0.000`).
fn quality_above_zero(v: &[u8]) -> bool {
    match v.split_first() {
        Some((b'0', rest)) => rest
            .strip_prefix(b".")
            .is_some_and(|frac| frac.iter().any(|&d| d != b'0')),
        Some(_) => true,
        None => false,
    }
}

/// nginx's `msie6`: "MSIE 4." or "MSIE 5.", or "MSIE 6." without "SV1" after it.
fn is_msie6(agent: &[u8]) -> bool {
    let Some(at) = agent.windows(5).position(|w| w == b"MSIE ") else {
        return false;
    };
    let rest = &agent[at + 5..];
    match rest {
        [b'4' | b'5', b'.', ..] => true,
        [b'6', b'.', tail @ ..] => !tail.windows(3).any(|w| w == b"SV1"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_with_a_quality_above_zero() {
        assert!(accepts_gzip(b"gzip"));
        assert!(accepts_gzip(b"gzip, deflate, br"));
        assert!(accepts_gzip(b"deflate, GZIP;q=0.5"));
        assert!(accepts_gzip(b"br;q=1.0, gzip;q=0.001"));
        assert!(!accepts_gzip(b"gzip;q=0"));
        assert!(!accepts_gzip(b"gzip;q=0.000"));
        assert!(!accepts_gzip(b"x-gzip"));
        assert!(!accepts_gzip(b"deflate"));
        assert!(!accepts_gzip(b""));
    }

    #[test]
    fn proxied_as_nginx_decides() {
        let facts = ResponseFacts::default();
        let p = |flags: u16, auth: bool, r: &ResponseFacts<'_>| proxied_ok(flags, auth, r);
        assert!(!p(0, true, &facts));
        assert!(!p(GzipProxied::OFF | GzipProxied::ANY, false, &facts));
        assert!(p(GzipProxied::ANY, false, &facts));
        // Nothing that decides: yes.
        assert!(p(GzipProxied::NO_CACHE, false, &facts));
        let cc = ResponseFacts {
            cache_control: Some(b"private, max-age=0"),
            ..facts
        };
        assert!(!p(GzipProxied::NO_CACHE, false, &cc));
        assert!(p(GzipProxied::PRIVATE, false, &cc));
        assert!(p(GzipProxied::NO_CACHE | GzipProxied::AUTH, true, &cc));
        let past = ResponseFacts {
            expires: Some(true),
            ..facts
        };
        assert!(p(GzipProxied::EXPIRED, false, &past));
        assert!(!p(GzipProxied::NO_CACHE, false, &past));
        let future = ResponseFacts {
            expires: Some(false),
            ..facts
        };
        assert!(!p(GzipProxied::EXPIRED, false, &future));
        let tagged = ResponseFacts {
            etag: true,
            last_modified: true,
            ..facts
        };
        assert!(!p(GzipProxied::NO_ETAG, false, &tagged));
        assert!(!p(GzipProxied::NO_LAST_MODIFIED, false, &tagged));
        assert!(p(GzipProxied::NO_ETAG, false, &facts));
    }

    #[test]
    fn old_internet_explorers() {
        assert!(is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
        ));
        assert!(!is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"
        ));
        assert!(is_msie6(b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"));
        assert!(!is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"
        ));
    }
}
