//! The request path as nginx normalises it into `$uri` before matching locations:
//! percent-decoded, `//` merged, `.` and `..` segments resolved.

use std::borrow::Cow;

/// Why a path was refused (→ 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// `..` would climb above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// A `%` not followed by two hex digits, or a decoded NUL.
    #[error("invalid percent-encoding in the path")]
    BadEscape,
    /// The decoded path is not UTF-8.
    #[error("the decoded path is not UTF-8")]
    NotUtf8,
    /// The path does not start with `/`.
    #[error("the path does not start with \"/\"")]
    NotAbsolute,
}

/// Normalises a raw path (the request target without its query). Borrows when there
/// is nothing to change, which is nearly always.
pub fn normalize(raw: &[u8]) -> Result<Cow<'_, str>, UriError> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if raw[0] != b'/' {
        return Err(UriError::NotAbsolute);
    }
    let clean =
        memchr::memchr(b'%', raw).is_none() && !raw.windows(2).any(|w| w == b"//" || w == b"/.");
    if clean {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| UriError::NotUtf8);
    }
    normalize_slow(raw).map(Cow::Owned)
}

fn normalize_slow(raw: &[u8]) -> Result<String, UriError> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            // Two hex digits, nothing else: `from_str_radix` would also take a sign
            // (`%+1`), which nginx refuses.
            let v = match raw.get(i + 1..i + 3) {
                Some(&[hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                    hex_digit(hi) << 4 | hex_digit(lo)
                }
                _ => return Err(UriError::BadEscape),
            };
            if v == 0 {
                return Err(UriError::BadEscape);
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    // Fast path: nothing to resolve.
    let needs_work = decoded.windows(2).any(|w| w == b"//" || w == b"/.");
    if !needs_work {
        return String::from_utf8(decoded).map_err(|_| UriError::NotUtf8);
    }
    let trailing_slash =
        decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(UriError::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    String::from_utf8(out).map_err(|_| UriError::NotUtf8)
}

/// The value of an ASCII hex digit (callers check `is_ascii_hexdigit` first).
fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => (b | 0x20) - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_nginx() {
        let ok = |a: &str, b: &str| assert_eq!(normalize(a.as_bytes()).unwrap(), b, "{a}");
        ok("/", "/");
        ok("", "/");
        ok("/test_load_banlance/", "/test_load_banlance/");
        ok("/a//b", "/a/b");
        ok("/a/./b", "/a/b");
        ok("/a/b/../c", "/a/c");
        ok("/a/b/..", "/a/");
        ok("/a%20b", "/a b");
        ok("/%61pi/", "/api/");
        assert_eq!(normalize(b"/.."), Err(UriError::AboveRoot));
        assert_eq!(normalize(b"/a/../../b"), Err(UriError::AboveRoot));
        assert_eq!(normalize(b"/%zz"), Err(UriError::BadEscape));
        assert_eq!(normalize(b"/%00"), Err(UriError::BadEscape));
        // Found by the fuzzer's invariant (fuzz/regressions/uri): a sign is no hex digit.
        assert_eq!(normalize(b"/%+1"), Err(UriError::BadEscape));
        assert_eq!(normalize(b"/%-1"), Err(UriError::BadEscape));
        ok("/%4a%4A", "/JJ");
        assert_eq!(normalize(b"x"), Err(UriError::NotAbsolute));
    }
}
