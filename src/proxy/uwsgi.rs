//! The request as uWSGI reads it (`uwsgi_pass`): one packet of variables in place of
//! an HTTP head, then the body. The packet is a 4-byte header (`modifier1`, the size of
//! the variables as u16 little-endian, `modifier2`), then each variable as a u16-LE
//! length-prefixed name and value: the `uwsgi_param` lines in order (an
//! `if_not_empty` one left out when empty), then each request field as
//! `HTTP_NAME` (uppercase, `-` as `_`; repeated fields joined with `, `, cookies
//! with `; `) unless a `uwsgi_param HTTP_NAME` replaces it — nginx's
//! `ngx_http_uwsgi_create_request`. uWSGI answers with an HTTP response, read like
//! any other, and closes the connection after it.

use super::attempt::AttemptError;
use super::plan::RequestBody;
use super::request::{vars, UpstreamHead};
use super::Forward;
use crate::config::{Endpoint, TemplatePart, UwsgiConf, Var};
use crate::http1::BodyFraming;
use crate::net::buffers::Buf;

/// The largest variables block the u16 size field can give.
const MAX_VARS: usize = 0xffff;

/// Builds the packet sent in place of an HTTP head. `Err`: the variables do not fit
/// in the packet (nginx's "uwsgi request is too big", a 500).
pub(super) fn build_packet(
    f: &Forward<'_>,
    cbuf: &[u8],
    peer: &Endpoint,
    body: &RequestBody,
) -> Result<UpstreamHead, AttemptError> {
    let conf: &UwsgiConf = &f.settings.uwsgi;
    let v = vars(f, cbuf, Some(peer));
    let mut out = Buf::head();
    out.extend_from_slice(&[conf.modifier1, 0, 0, conf.modifier2]);
    let mut value = Vec::new();
    for p in &conf.params {
        value.clear();
        match decoded_length(f, &p.value.parts, body) {
            Some(n) => value.extend_from_slice(n.to_string().as_bytes()),
            None => v.eval(&p.value, &mut value),
        }
        if p.if_not_empty && value.is_empty() {
            continue;
        }
        put(&mut out, p.name.as_bytes(), &[&value]);
    }
    if conf.pass_request_headers {
        header_vars(f, cbuf, conf, &mut out);
    }
    let size = out.len() - 4;
    if size > MAX_VARS {
        return Err(AttemptError::Client {
            status: 500,
            why: format!("uwsgi request is too big: {size}"),
        });
    }
    out[1..3].copy_from_slice(&(size as u16).to_le_bytes());
    Ok(UpstreamHead {
        bytes: out,
        // uWSGI ends its answer by closing: the connection is never reused.
        close: true,
    })
}

/// `$content_length` of a chunked request sent decoded: the decoded size (nginx sets
/// it once the body is read). `None` for any other value.
fn decoded_length(f: &Forward<'_>, parts: &[TemplatePart], body: &RequestBody) -> Option<u64> {
    if f.head.framing != BodyFraming::Chunked || parts != [TemplatePart::Var(Var::ContentLength)] {
        return None;
    }
    match (&body.dechunked, &body.spooled) {
        (Some(payload), _) => Some(payload.len() as u64),
        (None, Some(sp)) => Some(sp.len),
        (None, None) => Some(body.len as u64),
    }
}

/// The request's fields as `HTTP_*` variables, in order, each name once.
fn header_vars(f: &Forward<'_>, cbuf: &[u8], conf: &UwsgiConf, out: &mut Vec<u8>) {
    let headers = &f.head.headers;
    let mut key = Vec::with_capacity(64);
    for (i, h) in headers.iter().enumerate() {
        let name = &cbuf[h.name.clone()];
        let same = |o: &crate::http1::HeaderRange| cbuf[o.name.clone()].eq_ignore_ascii_case(name);
        // A repeated field went out with its first occurrence.
        if headers[..i].iter().any(same) {
            continue;
        }
        let replaced = conf.replaced_fields.iter().any(|r| {
            r.len() == name.len()
                && r.bytes().zip(name).all(|(a, &b)| {
                    let b = if b == b'-' {
                        b'_'
                    } else {
                        b.to_ascii_lowercase()
                    };
                    a == b
                })
        });
        if replaced {
            continue;
        }
        key.clear();
        key.extend_from_slice(b"HTTP_");
        key.extend(name.iter().map(|&b| match b {
            b'-' => b'_',
            b => b.to_ascii_uppercase(),
        }));
        let sep: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
            b"; "
        } else {
            b", "
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1);
        for o in headers[i..].iter().filter(|o| same(o)) {
            if !parts.is_empty() {
                parts.push(sep);
            }
            parts.push(&cbuf[o.value.clone()]);
        }
        put(out, &key, &parts);
    }
}

/// Appends one variable: its name and the concatenated `value` parts, each with a
/// u16-LE length (the packet's size check catches what does not fit).
fn put(out: &mut Vec<u8>, name: &[u8], value: &[&[u8]]) {
    let len: usize = value.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&(name.len().min(MAX_VARS) as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(len.min(MAX_VARS) as u16).to_le_bytes());
    for p in value {
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::put;

    #[test]
    fn variables_are_length_prefixed_little_endian() {
        let mut out = Vec::new();
        put(&mut out, b"REQUEST_METHOD", &[b"GET"]);
        put(&mut out, b"HTTP_COOKIE", &[b"a=1", b"; ", b"b=2"]);
        assert_eq!(
            out,
            b"\x0e\x00REQUEST_METHOD\x03\x00GET\x0b\x00HTTP_COOKIE\x08\x00a=1; b=2".to_vec()
        );
    }
}
