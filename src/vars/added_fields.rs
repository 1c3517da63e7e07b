//! `add_header` and `add_trailer` fields of one response. Their values are evaluated
//! for the request when the response starts, except `$sent_http_NAME` and
//! `$sent_trailer_NAME`: those name fields of the head (or trailer) being made, so
//! they are read when the field is written, after the lines before it, as nginx's
//! headers filter evaluates each line in turn.

use crate::config::{AddHeader, TemplatePart, Var};

use super::upstream::head_field;
use super::RequestVars;

/// One field to add, its value ready but for the fields it reads from the head.
#[derive(Debug, Clone)]
pub struct AddedField<'s> {
    /// The name as written.
    pub name: &'s str,
    parts: Vec<Part<'s>>,
    /// Also on statuses `add_header` otherwise skips (`always`).
    pub always: bool,
}

#[derive(Debug, Clone)]
enum Part<'s> {
    Bytes(Vec<u8>),
    /// `$sent_http_NAME`: a field of the head (so far), by lowercase name.
    SentHttp(&'s str),
    /// `$sent_trailer_NAME`: a field of the trailer so far (none in a head).
    SentTrailer(&'s str),
}

impl<'s> AddedField<'s> {
    /// A field whose value is known (a field an error page keeps).
    pub fn fixed(name: &'s str, value: Vec<u8>, always: bool) -> Self {
        AddedField {
            name,
            parts: vec![Part::Bytes(value)],
            always,
        }
    }

    /// The value with the `$sent_*` fields read from `head` and `trailer` (each a
    /// first line, a status line or the last chunk's, then fields), its CR, LF and
    /// NUL bytes made spaces as nginx does.
    pub fn value(&self, head: &[u8], trailer: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::SentHttp(name) => {
                    sent_field(head, name, &mut out);
                }
                Part::SentTrailer(name) => {
                    head_field(trailer, name, false, &mut out);
                }
            }
        }
        for b in &mut out {
            if matches!(*b, b'\r' | b'\n' | 0) {
                *b = b' ';
            }
        }
        out
    }

    /// Whether the field replaces the response's own field of its name (or removes
    /// it, when the value is empty), as nginx's `add_header` does for `ETag` and
    /// `Last-Modified`; other fields are added beside the response's.
    pub fn replaces(&self) -> bool {
        self.name.eq_ignore_ascii_case("etag") || self.name.eq_ignore_ascii_case("last-modified")
    }
}

/// `$sent_http_NAME` over `head`: the first field of that name; nginx 1.22 joins the
/// `Cache-Control` and `Link` fields with `, `.
pub fn sent_field(head: &[u8], name: &str, out: &mut Vec<u8>) -> bool {
    head_field(head, name, name == "cache-control" || name == "link", out)
}

impl RequestVars<'_> {
    /// `lines` (`add_header` or `add_trailer`) evaluated for the request, but for the
    /// `$sent_*` variables.
    pub fn added_fields<'s>(&self, lines: &'s [AddHeader]) -> Vec<AddedField<'s>> {
        lines
            .iter()
            .map(|h| {
                let mut parts = Vec::new();
                let mut bytes = Vec::new();
                for p in &h.value.parts {
                    match p {
                        TemplatePart::Literal(s) => bytes.extend_from_slice(s.as_bytes()),
                        TemplatePart::Var(v @ (Var::SentHttp(n) | Var::SentTrailer(n))) => {
                            if !bytes.is_empty() {
                                parts.push(Part::Bytes(std::mem::take(&mut bytes)));
                            }
                            parts.push(match v {
                                Var::SentHttp(_) => Part::SentHttp(n.as_str()),
                                _ => Part::SentTrailer(n.as_str()),
                            });
                        }
                        TemplatePart::Var(v) => self.eval_var(v, &mut bytes),
                    }
                }
                if !bytes.is_empty() {
                    parts.push(Part::Bytes(bytes));
                }
                AddedField {
                    name: &h.name,
                    parts,
                    always: h.always,
                }
            })
            .collect()
    }
}

/// Appends `fields` that apply (all with `always`; the others when `applies`) to the
/// head begun at `out[start..]` (its status line first), each read after the ones
/// before it. An empty value adds nothing; `ETag` and `Last-Modified` replace the
/// head's field of their name in place, or remove it when empty, as nginx's.
pub fn append_fields(out: &mut Vec<u8>, start: usize, fields: &[AddedField<'_>], applies: bool) {
    for f in fields.iter().filter(|f| f.always || applies) {
        let value = f.value(&out[start..], b"");
        if f.replaces() {
            if let Some(line) = field_line(&out[start..], f.name) {
                let line = start + line.start..start + line.end;
                let mut new = Vec::new();
                if !value.is_empty() {
                    push_field(&mut new, f.name, &value);
                }
                out.splice(line, new);
                continue;
            }
        }
        if !value.is_empty() {
            push_field(out, f.name, &value);
        }
    }
}

/// Whether `add_trailer` lines give a response of `status` a trailer (one applies:
/// it is then sent chunked, as nginx's `expect_trailers`).
pub fn trailer_expected(fields: &[AddedField<'_>], applies: bool) -> bool {
    fields.iter().any(|f| f.always || applies)
}

/// The end of a chunked body with the `add_trailer` fields that apply: the last
/// chunk, the fields whose values are not empty (read after `head`, the response
/// head sent, and the trailer fields before them), and the final CRLF.
pub fn last_chunk(fields: &[AddedField<'_>], applies: bool, head: &[u8]) -> Vec<u8> {
    let mut out = b"0\r\n".to_vec();
    for f in fields.iter().filter(|f| f.always || applies) {
        let value = f.value(head, &out);
        if !value.is_empty() {
            push_field(&mut out, f.name, &value);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Where the first field named `name` is in `head` (its whole line, CRLF included),
/// after the first line.
fn field_line(head: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let mut at = memchr::memchr(b'\n', head)? + 1;
    while at < head.len() {
        let end = memchr::memchr(b'\n', &head[at..]).map_or(head.len(), |i| at + i + 1);
        let line = &head[at..end];
        if let Some(colon) = memchr::memchr(b':', line) {
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                return Some(at..end);
            }
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &'static str, parts: Vec<Part<'static>>, always: bool) -> AddedField<'static> {
        AddedField {
            name,
            parts,
            always,
        }
    }

    #[test]
    fn sent_fields_read_the_head_so_far() {
        let mut out = b"HTTP/1.1 204 No Content\r\nCache-Control: a\r\n".to_vec();
        let fields = [
            AddedField::fixed("Cache-Control", b"b".to_vec(), false),
            field("X-CC", vec![Part::SentHttp("cache-control")], false),
            field("X-None", vec![Part::SentHttp("x-none")], false),
            field("X-T", vec![Part::SentTrailer("x-cc")], false),
            field(
                "X-Two",
                vec![
                    Part::Bytes(b"<".to_vec()),
                    Part::SentHttp("x-cc"),
                    Part::Bytes(b">".to_vec()),
                ],
                false,
            ),
        ];
        append_fields(&mut out, 0, &fields, true);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 204 No Content\r\nCache-Control: a\r\nCache-Control: b\r\nX-CC: a, b\r\nX-Two: <a, b>\r\n"
        );
    }

    #[test]
    fn etag_and_last_modified_replace_or_remove() {
        let head = "HTTP/1.1 404 Not Found\r\nETag: \"x\"\r\nLast-Modified: then\r\nX: y\r\n";
        let mut out = head.as_bytes().to_vec();
        let fields = [
            AddedField::fixed("ETag", b"foo".to_vec(), true),
            AddedField::fixed("Last-Modified", Vec::new(), true),
            AddedField::fixed("X-Skipped", b"1".to_vec(), false),
            AddedField::fixed("X-Bad", b"a\r\nb".to_vec(), true),
        ];
        append_fields(&mut out, 0, &fields, false);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 404 Not Found\r\nETag: foo\r\nX: y\r\nX-Bad: a  b\r\n"
        );
        let mut out = head.as_bytes().to_vec();
        append_fields(
            &mut out,
            0,
            &[AddedField::fixed("ETag", Vec::new(), true)],
            false,
        );
        assert!(!String::from_utf8(out).expect("ascii").contains("ETag"));
    }

    #[test]
    fn trailers_read_the_head_and_the_trailer_so_far() {
        let head = b"HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\n";
        let fields = [
            AddedField::fixed("X-Var", b"v".to_vec(), false),
            AddedField::fixed("X-Empty", Vec::new(), true),
            field("X-Sent", vec![Part::SentHttp("accept-ranges")], false),
            field("X-Trailer", vec![Part::SentTrailer("x-var")], true),
        ];
        assert!(trailer_expected(&fields, false));
        assert!(!trailer_expected(&fields[..1], false));
        assert_eq!(
            String::from_utf8(last_chunk(&fields, true, head)).expect("ascii"),
            "0\r\nX-Var: v\r\nX-Sent: bytes\r\nX-Trailer: v\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(last_chunk(&fields, false, head)).expect("ascii"),
            "0\r\n\r\n"
        );
    }
}
