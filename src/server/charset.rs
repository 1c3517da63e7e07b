//! nginx's charset filter: whether a response's `Content-Type` gets `; charset=NAME`
//! and whether its body is recoded (`charset`, `source_charset`, `override_charset`,
//! `charset_types`, `charset_map`), decided from the response as nginx's
//! `ngx_http_charset_header_filter` does; and the recoding itself, piece by piece.

use crate::config::charset::{CharsetConf, Recoding};
use crate::config::{Level, Template};

/// What the charset filter needs of a response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts<'a> {
    /// The response status (a 301 or 302 names no charset).
    pub(super) status: u16,
    /// Its `Content-Type` value; none or empty: the filter does nothing.
    pub(super) content_type: Option<&'a [u8]>,
    /// Whether it has a non-empty `Content-Encoding` (never recoded).
    pub(super) encoded: bool,
    /// The upstream's `X-Accel-Charset`, if any.
    pub(super) accel_charset: Option<&'a [u8]>,
}

/// The filter's decision with the new `Content-Type` value.
#[derive(Debug, Clone)]
pub(super) struct Decision<'m> {
    /// The `Content-Type` value to send instead of the response's; `None` leaves it.
    pub(super) content_type: Option<String>,
    /// How to recode the body, if at all.
    pub(super) recoding: Option<Recoding<'m>>,
}

/// A `Content-Type` value split as nginx reads it: the MIME type, whether anything
/// follows it, and its `charset` parameter (quotes removed).
struct ContentType<'a> {
    mime: &'a str,
    has_params: bool,
    charset: Option<&'a str>,
}

fn split_content_type(v: &str) -> ContentType<'_> {
    let end = v.find([';', ' ']).unwrap_or(v.len());
    let charset = v[end..].split(';').skip(1).find_map(|p| {
        let p = p.trim_start();
        let (name, value) = p.split_at_checked(8)?;
        name.eq_ignore_ascii_case("charset=").then(|| {
            let value = value.split([';', ' ']).next().unwrap_or_default();
            value.trim_matches('"')
        })
    });
    ContentType {
        mime: &v[..end],
        has_params: end < v.len(),
        charset: charset.filter(|c| !c.is_empty()),
    }
}

/// A charset as the filter sees it: its name, and whether the configuration knows it.
struct Named {
    name: String,
    known: bool,
}

/// A location's `charset` and `source_charset` with their variables evaluated for
/// one request.
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    /// `charset`; `None` for `off`.
    pub(super) charset: Option<String>,
    /// `source_charset`; `None` for `off`.
    pub(super) source: Option<String>,
}

impl Names {
    /// Evaluates `conf`'s names with `eval`.
    pub(super) fn new(conf: &CharsetConf, eval: impl Fn(&Template) -> Vec<u8>) -> Names {
        let name = |t: &Template| String::from_utf8_lossy(&eval(t)).into_owned();
        Names {
            charset: conf.charset.as_ref().map(name),
            source: conf.source.as_ref().map(name),
        }
    }
}

/// Decides for one response.
pub(super) fn decide<'m>(conf: &'m CharsetConf, names: &Names, resp: &Facts<'_>) -> Decision<'m> {
    let unchanged = Decision {
        content_type: None,
        recoding: None,
    };
    let Some(ct) = resp
        .content_type
        .filter(|c| !c.is_empty())
        .and_then(|c| std::str::from_utf8(c).ok())
    else {
        return unchanged;
    };
    let ct = split_content_type(ct);
    let maps = &conf.maps;
    let named = |name: String| Named {
        known: maps.known(&name).is_some(),
        name: maps.known(&name).map(str::to_owned).unwrap_or(name),
    };
    // The destination: `X-Accel-Charset`, or `charset` where it applies.
    let dst = if let Some(a) = resp.accel_charset.filter(|a| !a.is_empty()) {
        let name = String::from_utf8_lossy(a).into_owned();
        if maps.known(&name).is_none() {
            log_error(format_args!("unknown charset \"{name}\" to override"));
            return unchanged;
        }
        named(name)
    } else {
        let Some(charset) = &names.charset else {
            return unchanged;
        };
        if ct.charset.is_some() {
            if !conf.override_charset {
                return unchanged;
            }
        } else if !conf.types.matches(Some(ct.mime.as_bytes())) {
            return unchanged;
        }
        named(charset.clone())
    };
    // The source: the response's own charset, or `source_charset`.
    let src = match (ct.charset, &names.source) {
        (Some(c), _) => named(c.to_owned()),
        (None, Some(s)) => named(s.clone()),
        (None, None) => return named_charset(&ct, resp.status, &dst.name, false, None),
    };
    if !dst.known || !src.known {
        if dst.known == src.known && dst.name.eq_ignore_ascii_case(&src.name) {
            return named_charset(&ct, resp.status, &dst.name, false, None);
        }
        return no_map(&src.name, &dst.name);
    }
    if dst.name.eq_ignore_ascii_case(&src.name) {
        return named_charset(&ct, resp.status, &dst.name, true, None);
    }
    if resp.encoded {
        return unchanged;
    }
    match maps.recoding(&src.name, &dst.name) {
        Some(r) => named_charset(&ct, resp.status, &dst.name, true, Some(r)),
        None => no_map(&src.name, &dst.name),
    }
}

/// nginx names `charset` in the `Content-Type` it sends when the value is the bare
/// MIME type (`cut`: the filter dropped the response's own parameters); never on a
/// 301 or 302.
fn named_charset<'m>(
    ct: &ContentType<'_>,
    status: u16,
    name: &str,
    cut: bool,
    recoding: Option<Recoding<'m>>,
) -> Decision<'m> {
    let redirect = matches!(status, 301 | 302);
    let content_type = if !cut && (ct.has_params || redirect) {
        None
    } else if redirect {
        Some(ct.mime.to_owned())
    } else {
        Some(format!("{}; charset={name}", ct.mime))
    };
    Decision {
        content_type,
        recoding,
    }
}

fn no_map<'m>(src: &str, dst: &str) -> Decision<'m> {
    log_error(format_args!(
        "no \"charset_map\" between the charsets \"{src}\" and \"{dst}\""
    ));
    Decision {
        content_type: None,
        recoding: None,
    }
}

fn log_error(args: std::fmt::Arguments<'_>) {
    crate::log::emit(Level::Error, None, args);
}

/// The recoding of one body in progress: a utf-8 sequence split between two pieces
/// is kept until its end comes.
#[derive(Debug)]
pub(super) struct Recoder<'m> {
    how: Recoding<'m>,
    /// The start of an incomplete utf-8 sequence (at most 3 bytes).
    saved: Vec<u8>,
}

/// The longest utf-8 sequence nginx decodes.
const UTF_LEN: usize = 4;

impl<'m> Recoder<'m> {
    /// A recoder for one body.
    pub(super) fn new(how: Recoding<'m>) -> Self {
        Recoder {
            how,
            saved: Vec::new(),
        }
    }

    /// Recodes the next piece of the body, appending to `out`.
    pub(super) fn piece(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.how {
            Recoding::Bytes(t) => out.extend(input.iter().map(|&b| t[usize::from(b)])),
            Recoding::ToUtf8(t) => {
                for &b in input {
                    out.extend_from_slice(&t[usize::from(b)]);
                }
            }
            Recoding::FromUtf8(t) => {
                let mut input = input;
                if !self.saved.is_empty() {
                    let had = self.saved.len();
                    let take = (UTF_LEN - had).min(input.len());
                    let mut joined = std::mem::take(&mut self.saved);
                    joined.extend_from_slice(&input[..take]);
                    let used = match decode_utf8(&joined) {
                        Decoded::Incomplete => {
                            // `take` was all of the piece: wait for more.
                            self.saved = joined;
                            return;
                        }
                        Decoded::Point(n, used) => {
                            from_point(t, n, out);
                            used
                        }
                        Decoded::Invalid(used) => {
                            out.push(b'?');
                            used
                        }
                    };
                    input = &input[used.saturating_sub(had).min(take)..];
                }
                let mut i = 0;
                while i < input.len() {
                    let b = input[i];
                    if b < 0x80 {
                        out.push(b);
                        i += 1;
                        continue;
                    }
                    match decode_utf8(&input[i..]) {
                        Decoded::Point(n, used) => {
                            from_point(t, n, out);
                            i += used;
                        }
                        Decoded::Invalid(used) => {
                            out.push(b'?');
                            i += used;
                        }
                        Decoded::Incomplete => {
                            self.saved = input[i..].to_vec();
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// A code point as a single byte, or as nginx's HTML entity where the map has none.
fn from_point(t: &std::collections::HashMap<u32, u8>, n: u32, out: &mut Vec<u8>) {
    match t.get(&n).filter(|&&b| b != 0) {
        Some(&b) if n < 0x10000 => out.push(b),
        _ => {
            use std::io::Write;
            let _ = write!(out, "&#{n};");
        }
    }
}

/// One utf-8 sequence read as nginx's `ngx_utf8_decode` reads it.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// A code point and the bytes it took.
    Point(u32, usize),
    /// Not utf-8 (or a value beyond U+10FFFF); the bytes to skip.
    Invalid(usize),
    /// The input ends inside the sequence.
    Incomplete,
}

fn decode_utf8(p: &[u8]) -> Decoded {
    let c = p[0];
    let (more, mut u, min) = match c {
        0xf0.. => (3, u32::from(c & 0x07), 0x10000),
        0xe0.. => (2, u32::from(c & 0x0f), 0x800),
        0xc2.. => (1, u32::from(c & 0x1f), 0x80),
        _ => return Decoded::Invalid(1),
    };
    if p.len() - 1 < more {
        return Decoded::Incomplete;
    }
    for (k, &b) in p[1..=more].iter().enumerate() {
        // nginx checks only that the byte is not ASCII, and has consumed it.
        if b < 0x80 {
            return Decoded::Invalid(k + 2);
        }
        u = (u << 6) | u32::from(b & 0x3f);
    }
    if u >= min && u <= 0x10ffff {
        Decoded::Point(u, more + 1)
    } else {
        Decoded::Invalid(more + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table() -> HashMap<u32, u8> {
        let mut t: HashMap<u32, u8> = (0..0x80u8).map(|b| (u32::from(b), b)).collect();
        t.insert(0x430, 0xc1); // а
        t
    }

    fn recode_in_pieces(input: &[u8], cut: usize) -> Vec<u8> {
        let t = table();
        let mut r = Recoder::new(Recoding::FromUtf8(&t));
        let mut out = Vec::new();
        r.piece(&input[..cut], &mut out);
        r.piece(&input[cut..], &mut out);
        out
    }

    #[test]
    fn from_utf8_split_sequences_recode_as_whole_ones() {
        let input = "xа€y😀z".as_bytes();
        let whole = recode_in_pieces(input, 0);
        assert_eq!(whole, b"x\xc1&#8364;y&#128512;z");
        for cut in 0..=input.len() {
            assert_eq!(recode_in_pieces(input, cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn invalid_utf8_becomes_a_question_mark() {
        let t = table();
        let mut r = Recoder::new(Recoding::FromUtf8(&t));
        let mut out = Vec::new();
        r.piece(b"a\x80b\xc3(", &mut out);
        // nginx consumes the ASCII byte that broke the sequence.
        assert_eq!(out, b"a?b?");
    }

    #[test]
    fn content_type_parameters() {
        let ct = split_content_type("text/html; charset=\"koi8-r\"");
        assert_eq!(ct.mime, "text/html");
        assert_eq!(ct.charset, Some("koi8-r"));
        assert!(split_content_type("text/html").charset.is_none());
    }
}
