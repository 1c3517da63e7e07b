//! Editing a proxied response's `Location`, `Refresh` and `Set-Cookie` as nginx's
//! proxy module does (`proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path`,
//! `proxy_cookie_flags`): the first matching rule replaces the matched part of the
//! value, and a rewritten `Location` that became a path gets scheme, host and port
//! as ferrolb's own redirects do (`absolute_redirect`).

use crate::config::proxy_edits::{cookie_flag, CookieFlags, CookieName, EditMatch, EditRule};
use crate::config::{Template, TemplatePart, Var};
use crate::http1::ResponseHead;
use crate::vars::RequestVars;

/// New values for fields of `resp` (parsed from `buf`), by field index; empty when no
/// rule applies (the usual case allocates nothing). `absolute_base` gives what goes
/// before a rewritten `Location` path (`http://host:port`, or nothing).
pub(super) fn edited_fields(
    edits: &crate::config::proxy_edits::ProxyEdits,
    v: &RequestVars<'_>,
    resp: &ResponseHead,
    buf: &[u8],
    absolute_base: &dyn Fn() -> String,
) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    if edits.is_empty() {
        return out;
    }
    for (i, h) in resp.headers.iter().enumerate() {
        if h.hop_by_hop {
            continue;
        }
        let name = &buf[h.name.clone()];
        let value = &buf[h.value.clone()];
        if name.eq_ignore_ascii_case(b"location") && !edits.redirects.is_empty() {
            if let Some(mut new) = rewrite(&edits.redirects, v, value, 0) {
                if new.first() == Some(&b'/') {
                    let mut abs = absolute_base().into_bytes();
                    abs.append(&mut new);
                    new = abs;
                }
                out.push((i, new));
            }
        } else if name.eq_ignore_ascii_case(b"refresh") && !edits.redirects.is_empty() {
            let at = memchr::memmem::find(&value.to_ascii_lowercase(), b"url=");
            if let Some(new) = at.and_then(|at| rewrite(&edits.redirects, v, value, at + 4)) {
                out.push((i, new));
            }
        } else if name.eq_ignore_ascii_case(b"set-cookie") && !edits.cookies_untouched() {
            if let Some(new) = rewrite_cookie(edits, v, value) {
                out.push((i, new));
            }
        }
    }
    out
}

/// The first rule of `rules` that matches `value[prefix..]`, applied; `None` when
/// none matches.
fn rewrite(
    rules: &[EditRule],
    v: &RequestVars<'_>,
    value: &[u8],
    prefix: usize,
) -> Option<Vec<u8>> {
    let rest = &value[prefix..];
    for rule in rules {
        let (from, len, caps) = match &rule.pattern {
            EditMatch::Prefix(t) => {
                let pattern = v.evaluated(t);
                if !rest.starts_with(&pattern) {
                    continue;
                }
                (prefix, pattern.len(), None)
            }
            EditMatch::Domain(t) => {
                let pattern = v.evaluated(t);
                let (from, domain) = match rest.strip_prefix(b".") {
                    Some(d) => (prefix + 1, d),
                    None => (prefix, rest),
                };
                if !domain.eq_ignore_ascii_case(&pattern) {
                    continue;
                }
                (from, domain.len(), None)
            }
            EditMatch::Regex(re) => match re.captures(rest) {
                Some(c) => (prefix, rest.len(), Some(c)),
                None => continue,
            },
        };
        let mut new = Vec::with_capacity(value.len());
        new.extend_from_slice(&value[..from]);
        eval_with_captures(&rule.replacement, v, caps.as_ref(), &mut new);
        new.extend_from_slice(&value[from + len..]);
        return Some(new);
    }
    None
}

/// A replacement's value: `$1`.. are the groups of the rule's own regex (nginx sets
/// the request's captures to them), other variables the request's.
fn eval_with_captures(
    t: &Template,
    v: &RequestVars<'_>,
    caps: Option<&regex::bytes::Captures<'_>>,
    out: &mut Vec<u8>,
) {
    let Some(caps) = caps else {
        v.eval(t, out);
        return;
    };
    for part in &t.parts {
        match part {
            TemplatePart::Literal(s) => out.extend_from_slice(s.as_bytes()),
            TemplatePart::Var(Var::Capture(n)) => {
                if let Some(m) = caps.get(usize::from(*n)) {
                    out.extend_from_slice(m.as_bytes());
                }
            }
            TemplatePart::Var(var) => v.eval_var(var, out),
        }
    }
}

/// One `name[=value]` part of a `Set-Cookie` value; `None` key: removed.
struct Attr {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// `Set-Cookie` split at `;` into trimmed `name=value` parts, as nginx's
/// `ngx_http_proxy_parse_cookie`.
fn parse_cookie(value: &[u8]) -> Vec<Attr> {
    let trim = |s: &[u8]| -> Vec<u8> {
        let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
        let end = s.iter().rposition(|&b| b != b' ').map_or(start, |e| e + 1);
        s[start..end.max(start)].to_vec()
    };
    value
        .split(|&b| b == b';')
        .map(|part| match part.iter().position(|&b| b == b'=') {
            Some(eq) => Attr {
                key: Some(trim(&part[..eq])),
                value: Some(trim(&part[eq + 1..])),
            },
            None => Attr {
                key: Some(trim(part)),
                value: None,
            },
        })
        .collect()
}

/// A `Set-Cookie` value with its `domain=` and `path=` rewritten and its flags
/// edited; `None` when nothing changed (the field then passes as it came).
fn rewrite_cookie(
    edits: &crate::config::proxy_edits::ProxyEdits,
    v: &RequestVars<'_>,
    value: &[u8],
) -> Option<Vec<u8>> {
    let mut attrs = parse_cookie(value);
    // A cookie without `=` in its first part is no cookie: left alone.
    attrs.first()?.value.as_ref()?;
    let mut changed = false;
    for attr in attrs.iter_mut().skip(1) {
        let (Some(key), Some(val)) = (&attr.key, &attr.value) else {
            continue;
        };
        let rules = if key.eq_ignore_ascii_case(b"domain") {
            &edits.cookie_domains
        } else if key.eq_ignore_ascii_case(b"path") {
            &edits.cookie_paths
        } else {
            continue;
        };
        if let Some(new) = rewrite(rules, v, val, 0) {
            attr.value = Some(new);
            changed = true;
        }
    }
    if let Some(flags) = matching_flags(&edits.cookie_flags, v, &attrs) {
        changed |= edit_flags(&mut attrs, flags);
    }
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(value.len() + 32);
    for (i, attr) in attrs.iter().enumerate() {
        let Some(key) = &attr.key else { continue };
        if i > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(key);
        if let Some(val) = &attr.value {
            out.push(b'=');
            out.extend_from_slice(val);
        }
    }
    Some(out)
}

/// The flag bits of the first `proxy_cookie_flags` line for this cookie; `None` when
/// no line is for it or its flags come out as none.
fn matching_flags(lines: &[CookieFlags], v: &RequestVars<'_>, attrs: &[Attr]) -> Option<u16> {
    let name = attrs.first()?.key.as_deref()?;
    let line = lines.iter().find(|l| match &l.cookie {
        CookieName::Regex(re) => re.is_match(name),
        CookieName::Name(t) => v.evaluated(t).eq_ignore_ascii_case(name),
    })?;
    let mut bits = 0;
    for t in &line.flags {
        // A value that names no flag is skipped, as nginx skips it.
        bits |= cookie_flag::parse(&v.evaluated(t)).unwrap_or(0);
    }
    (bits != 0).then_some(bits)
}

/// nginx's `ngx_http_proxy_edit_cookie_flags`: existing attributes are kept, removed
/// or normalised, missing ones appended (`Secure`, `HttpOnly`, `SameSite=`).
fn edit_flags(attrs: &mut Vec<Attr>, mut flags: u16) -> bool {
    use cookie_flag::*;
    for attr in attrs.iter_mut().skip(1) {
        let Some(key) = &attr.key else { continue };
        if key.eq_ignore_ascii_case(b"secure") {
            if flags & SECURE_ON != 0 {
                flags &= !SECURE_ON;
            } else if flags & SECURE_OFF != 0 {
                attr.key = None;
            }
        } else if key.eq_ignore_ascii_case(b"httponly") {
            if flags & HTTPONLY_ON != 0 {
                flags &= !HTTPONLY_ON;
            } else if flags & HTTPONLY_OFF != 0 {
                attr.key = None;
            }
        } else if key.eq_ignore_ascii_case(b"samesite") {
            let wanted = [
                (SAMESITE_STRICT, "Strict"),
                (SAMESITE_LAX, "Lax"),
                (SAMESITE_NONE, "None"),
            ]
            .into_iter()
            .find(|(bit, _)| flags & bit != 0);
            match wanted {
                Some((bit, word)) => {
                    flags &= !bit;
                    let same = attr
                        .value
                        .as_deref()
                        .is_some_and(|v| v.eq_ignore_ascii_case(word.as_bytes()));
                    if !same {
                        attr.key = Some(b"SameSite".to_vec());
                        attr.value = Some(word.as_bytes().to_vec());
                    }
                }
                None if flags & SAMESITE_OFF != 0 => attr.key = None,
                None => {}
            }
        }
    }
    let mut push = |key: &str, value: Option<&str>| {
        attrs.push(Attr {
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        })
    };
    if flags & SECURE_ON != 0 {
        push("Secure", None);
    }
    if flags & HTTPONLY_ON != 0 {
        push("HttpOnly", None);
    }
    if flags & SAMESITE_STRICT != 0 {
        push("SameSite", Some("Strict"));
    } else if flags & SAMESITE_LAX != 0 {
        push("SameSite", Some("Lax"));
    } else if flags & SAMESITE_NONE != 0 {
        push("SameSite", Some("None"));
    }
    // nginx rebuilds the value whenever a line applied, even when nothing moved.
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(s: &str) -> Vec<Attr> {
        parse_cookie(s.as_bytes())
    }

    fn joined(a: &[Attr]) -> String {
        a.iter()
            .filter_map(|a| {
                let k = String::from_utf8_lossy(a.key.as_ref()?).into_owned();
                Some(match &a.value {
                    Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                    None => k,
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn flags_add_remove_and_normalise() {
        use cookie_flag::*;
        let mut a = attrs("id=1; secure;HttpOnly; SameSite=lax");
        edit_flags(&mut a, SECURE_OFF | HTTPONLY_ON | SAMESITE_STRICT);
        assert_eq!(joined(&a), "id=1; HttpOnly; SameSite=Strict");
        let mut a = attrs("id=1");
        edit_flags(&mut a, SECURE_ON | HTTPONLY_ON | SAMESITE_NONE);
        assert_eq!(joined(&a), "id=1; Secure; HttpOnly; SameSite=None");
        let mut a = attrs("id=1; samesite=Lax");
        edit_flags(&mut a, SAMESITE_LAX);
        assert_eq!(joined(&a), "id=1; samesite=Lax");
        let mut a = attrs("id=1; samesite=Lax; path=/");
        edit_flags(&mut a, SAMESITE_OFF);
        assert_eq!(joined(&a), "id=1; path=/");
    }

    #[test]
    fn cookie_parts_are_trimmed() {
        let a = attrs(" a = b ;path=/x ; Secure");
        assert_eq!(joined(&a), "a=b; path=/x; Secure");
    }
}
