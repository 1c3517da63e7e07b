//! The `X-Accel-*` controls an upstream sends the proxy (nginx's upstream module):
//! `X-Accel-Redirect` replaces the response with an internal redirect, which the
//! caller makes ([`super::Forwarded::accel_redirect`]); `X-Accel-Limit-Rate` sets the
//! response's rate. `X-Accel-Buffering`, `-Charset` and `-Expires` are hidden and
//! otherwise not acted on (ferrolb never buffers responses, recodes them or caches).

use crate::config::{IgnoreHeaders, LocSettings};
use crate::http1::ResponseHead;

/// An upstream's `X-Accel-Redirect`: where the request goes instead, and the fields
/// of the upstream's response the new one keeps (nginx's list: `Content-Type`,
/// `Set-Cookie`, `Content-Disposition`, `Cache-Control`, `Expires`, `Accept-Ranges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelRedirect {
    /// The field's value: `@name`, or a URI with arguments, still escaped.
    pub target: Vec<u8>,
    /// The kept fields, in the upstream's order.
    pub kept_fields: Vec<(&'static str, Vec<u8>)>,
}

/// Fields an `X-Accel-Redirect` response passes to the response that replaces it.
const KEPT_ON_REDIRECT: [&str; 6] = [
    "Content-Type",
    "Set-Cookie",
    "Content-Disposition",
    "Cache-Control",
    "Expires",
    "Accept-Ranges",
];

/// The first value of field `name` in the head.
fn field<'b>(resp: &ResponseHead, buf: &'b [u8], name: &str) -> Option<&'b [u8]> {
    resp.headers
        .iter()
        .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &buf[h.value.clone()])
}

/// The response's `X-Accel-Redirect`, unless `proxy_ignore_headers` ignores it.
pub(super) fn redirect(resp: &ResponseHead, buf: &[u8], s: &LocSettings) -> Option<AccelRedirect> {
    if s.proxy_ignore_headers
        .ignores(IgnoreHeaders::X_ACCEL_REDIRECT)
    {
        return None;
    }
    // An empty value redirects too (to nowhere: nginx's 404).
    let target = field(resp, buf, "x-accel-redirect")?;
    let kept_fields = resp
        .headers
        .iter()
        .filter_map(|h| {
            let name = &buf[h.name.clone()];
            KEPT_ON_REDIRECT
                .iter()
                .find(|k| name.eq_ignore_ascii_case(k.as_bytes()))
                .map(|k| (*k, buf[h.value.clone()].to_vec()))
        })
        .collect();
    Some(AccelRedirect {
        target: target.to_vec(),
        kept_fields,
    })
}

/// The response's `X-Accel-Limit-Rate` in bytes a second, unless ignored: `off` is
/// no limit (`Some(0)`), a number is the rate; anything else is none, as nginx.
pub(super) fn limit_rate(resp: &ResponseHead, buf: &[u8], s: &LocSettings) -> Option<u64> {
    if s.proxy_ignore_headers
        .ignores(IgnoreHeaders::X_ACCEL_LIMIT_RATE)
    {
        return None;
    }
    let v = field(resp, buf, "x-accel-limit-rate")?;
    if v.eq_ignore_ascii_case(b"off") {
        return Some(0);
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// nginx's `ngx_http_parse_unsafe_uri`: an `X-Accel-Redirect` URI split from its
/// arguments at `?`, percent-decoded when it has escapes; `None` (nginx answers 404)
/// when it is empty, starts with `?`, or holds `..` as a path segment or a NUL
/// before or after decoding.
pub fn split_unsafe_uri(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn safe(p: &[u8]) -> bool {
        let dotdot_at =
            |i: usize| p.get(i..i + 2) == Some(b"..") && matches!(p.get(i + 2), None | Some(b'/'));
        if dotdot_at(0) || p.contains(&0) {
            return false;
        }
        !p.iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && dotdot_at(i + 1))
    }
    if value.is_empty() || value[0] == b'?' {
        return None;
    }
    let (uri, args) = match value.iter().position(|&b| b == b'?') {
        Some(q) => (&value[..q], &value[q + 1..]),
        None => (value, &b""[..]),
    };
    if !safe(uri) {
        return None;
    }
    let uri = if uri.contains(&b'%') {
        let decoded = percent_decode(uri);
        if !safe(&decoded) {
            return None;
        }
        decoded
    } else {
        uri.to_vec()
    };
    Some((uri, args.to_vec()))
}

/// `%XX` sequences decoded; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split_unsafe_uri;

    #[test]
    fn unsafe_uris_are_refused_as_nginx_does() {
        let ok = |v: &str| {
            split_unsafe_uri(v.as_bytes()).map(|(u, a)| {
                (
                    String::from_utf8_lossy(&u).into_owned(),
                    String::from_utf8_lossy(&a).into_owned(),
                )
            })
        };
        assert_eq!(ok("/foo?bar"), Some(("/foo".into(), "bar".into())));
        assert_eq!(ok("/foo%20bar"), Some(("/foo bar".into(), "".into())));
        assert_eq!(ok("/a..b/..c"), Some(("/a..b/..c".into(), "".into())));
        for bad in [
            "",
            "?x",
            "..",
            "../foo",
            "/foo/..",
            "/foo/../x",
            "/foo/.%2e",
            "/a%00",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
    }
}
