//! nginx's `error_page`: which page an error gets, and the request that fetches it.
//!
//! An error (a 404 of the static module, a `return 403;`, a 502 of the proxy, an
//! upstream's own 5xx with `proxy_intercept_errors on`) is looked up in the `error_page`
//! lines of the location that produced it. A `/uri` page is an internal redirect as a
//! GET (HEAD stays HEAD) without the request body; a `@name` page goes to the named
//! location with the request unchanged; anything else is a redirect for the client.
//! Without `recursive_error_pages` a request gets at most one page: nginx marks the
//! request as soon as a location with pages handled an error, matched or not.

use crate::config::{ErrorPage, ErrorPageStatus, LocSettings};
use crate::http1::{Method, RequestHead};

/// What a request went through on its way to error pages.
#[derive(Debug, Default)]
pub(super) struct PageState {
    /// A location with `error_page`s handled one of this request's errors (nginx's
    /// `r->error_page`): no more pages unless `recursive_error_pages`.
    pub(super) used: bool,
    /// The status every later response of this request gets (nginx's `err_status`);
    /// `None`: the response's own.
    pub(super) status: Option<u16>,
    /// Fields the page keeps from the response it replaces (`WWW-Authenticate` of an
    /// intercepted 401).
    pub(super) kept_fields: Vec<(&'static str, Vec<u8>)>,
}

impl PageState {
    /// The page for `status` in `settings`, marking the request as nginx does.
    pub(super) fn find<'s>(
        &mut self,
        settings: &'s LocSettings,
        status: u16,
    ) -> Option<&'s ErrorPage> {
        if self.used || settings.error_pages.is_empty() {
            return None;
        }
        if !settings.recursive_error_pages {
            self.used = true;
        }
        settings.error_pages.iter().find(|p| p.status == status)
    }

    /// Whether `status` would get a page in `settings`, without marking anything: what
    /// the proxy asks before it leaves an error to the caller. `named_ok`: a `@name`
    /// page can be served (the request body, if any, is at hand to send again).
    pub(super) fn has_page(&self, settings: &LocSettings, status: u16, named_ok: bool) -> bool {
        !self.used
            && settings
                .error_pages
                .iter()
                .find(|p| p.status == status)
                .is_some_and(|p| named_ok || !starts_with(p, b'@'))
    }

    /// Takes the page's status rule for the rest of the request: the caught status,
    /// the page location's own, or the `=CODE`.
    pub(super) fn answer_with(&mut self, page: &ErrorPage) {
        self.status = match page.response {
            ErrorPageStatus::Caught => Some(page.status),
            ErrorPageStatus::OfPage => None,
            ErrorPageStatus::Code(c) => Some(c),
        };
    }
}

/// Whether the page's target, when it has no variables, starts with `b`.
fn starts_with(page: &ErrorPage, b: u8) -> bool {
    match page.target.parts.first() {
        Some(crate::config::TemplatePart::Literal(s)) => s.as_bytes().first() == Some(&b),
        _ => false,
    }
}

/// The status of a redirecting page (a target that is neither `/uri` nor `@name`):
/// its `=CODE` when that is a redirect, else 302.
pub(super) fn redirect_status(page: &ErrorPage) -> u16 {
    match page.response {
        ErrorPageStatus::Code(c @ (301 | 302 | 303 | 307 | 308)) => c,
        _ => 302,
    }
}

/// The head of the request a `/uri` page is fetched with: the client's request line
/// and fields, as GET (HEAD stays HEAD), without the fields that announce a body.
/// `buf` is the buffer `head` was parsed from. A head refused for its host
/// ([`RequestHead::keep_refused`]) goes as HTTP/1.0 without one, as nginx serves its
/// page without a host.
pub(super) fn page_request(head: &RequestHead, buf: &[u8]) -> Vec<u8> {
    let hostless = head.host.is_none() && head.absolute_host.is_none();
    let mut out = Vec::with_capacity(head.head_len);
    out.extend_from_slice(if head.method == Method::Head {
        b"HEAD "
    } else {
        b"GET "
    });
    // The target after an absolute form's authority may be empty or a query; an
    // empty head has none.
    let target = &buf[head.target.clone()];
    if matches!(target.first(), None | Some(b'?')) {
        out.push(b'/');
    }
    out.extend_from_slice(target);
    out.extend_from_slice(if head.minor_version == 0 || hostless {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in &head.headers {
        let name = h.name(buf);
        let dropped: &[&[u8]] = if hostless {
            &[b"content-length", b"transfer-encoding", b"expect", b"host"]
        } else {
            &[b"content-length", b"transfer-encoding", b"expect"]
        };
        if dropped.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&buf[h.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyFraming, Parsed};

    fn parse(bytes: &[u8]) -> RequestHead {
        let mut h = RequestHead::new();
        assert!(matches!(h.parse(bytes), Ok(Parsed::Complete)));
        h
    }

    #[test]
    fn page_request_is_a_get_without_body() {
        let raw = b"POST /form?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\nX-A: b\r\n\r\nabc";
        let head = parse(raw);
        let out = page_request(&head, raw);
        assert_eq!(
            out,
            b"GET /form?x=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n".to_vec()
        );
        let again = parse(&out);
        assert_eq!(again.method, Method::Get);
        assert_eq!(again.framing, BodyFraming::None);
    }

    #[test]
    fn a_head_refused_for_its_host_fetches_its_page_without_one() {
        for raw in [
            &b"GET /x?a=1 HTTP/1.1\r\nHost: .\r\nX-A: b\r\n\r\n"[..],
            b"GET /x?a=1 HTTP/1.1\r\nX-A: b\r\n\r\n",
            b"GET /x?a=1 HTTP/1.0\r\nHost: a\r\nHost: b\r\nX-A: b\r\n\r\n",
        ] {
            let mut head = RequestHead::new();
            let Err(e) = head.parse(raw) else {
                panic!("parsed: {}", String::from_utf8_lossy(raw))
            };
            head.keep_refused(e);
            let out = page_request(&head, raw);
            assert_eq!(out, b"GET /x?a=1 HTTP/1.0\r\nX-A: b\r\n\r\n".to_vec());
            let again = parse(&out);
            assert_eq!(again.host, None);
        }
        let mut head = RequestHead::new();
        let e = head.parse(b"garbage\r\n\r\n").expect_err("garbage");
        head.keep_refused(e);
        assert_eq!(
            page_request(&head, b"garbage\r\n\r\n"),
            b"GET / HTTP/1.0\r\n\r\n"
        );
    }

    #[test]
    fn head_stays_head_and_http10_stays() {
        let raw = b"HEAD /x HTTP/1.0\r\nHost: a\r\n\r\n";
        let head = parse(raw);
        assert_eq!(page_request(&head, raw), raw.to_vec());
    }
}
