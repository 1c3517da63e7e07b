//! Percent-encoding for the wire, with nginx's tables: `NGX_ESCAPE_URI` when nginx
//! puts a decoded `$uri` back into a request line (`proxy_pass` with a URI, a
//! rewritten URI) or a `Location` (a directory's slash redirect), and
//! `NGX_ESCAPE_URI_COMPONENT` for a file name in an `autoindex` link.

/// Whether nginx escapes `b` in a URI: controls, space, `"`, `#`, `%`, `<`, `>`, `?`,
/// `\`, `^`, `` ` ``, `{`, `|`, `}`, DEL and every non-ASCII byte.
const fn escaped(b: u8) -> bool {
    matches!(
        b,
        0..=0x20 | b'"' | b'#' | b'%' | b'<' | b'>' | b'?' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | 0x7f..=0xff
    )
}

/// Appends `path` to `out`, escaped as nginx escapes a URI.
pub fn escape_uri(path: &[u8], out: &mut Vec<u8>) {
    escape_with(path, out, escaped);
}

/// Appends `name` to `out` with everything but letters, digits, `-`, `.`, `_` and
/// `~` escaped (a file name in a link: a `:` cannot make it a scheme).
pub fn escape_uri_component(name: &[u8], out: &mut Vec<u8>) {
    escape_with(name, out, |b| {
        !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    });
}

fn escape_with(bytes: &[u8], out: &mut Vec<u8>, escaped: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if escaped(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_escapes_these_and_keeps_the_rest() {
        let mut out = Vec::new();
        escape_uri(b"/auto \"#%<>?\\^`{|}/", &mut out);
        assert_eq!(out, b"/auto%20%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D/");
        out.clear();
        escape_uri("/a[b]&c=d;e'é".as_bytes(), &mut out);
        assert_eq!(out, b"/a[b]&c=d;e'%C3%A9");
        out.clear();
        escape_uri_component(b"test-colon:blah a_b.~", &mut out);
        assert_eq!(out, b"test-colon%3Ablah%20a_b.~");
    }
}
