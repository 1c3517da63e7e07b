//! Invariant checks for ferrolb's parsers, one function per fuzz target. Each takes the
//! fuzzer's bytes and panics when a parser breaks a rule it promises; "does not panic"
//! is the least of them.
//!
//! One copy of this file serves two builds: the `fuzz/` crate (cargo-fuzz, nightly)
//! calls it from its targets, and `tests/fuzz_corpus.rs` in the main crate includes it
//! with `#[path]` to replay the committed corpus and regressions on stable, without a
//! fuzzer. So it may only use `std` and `ferrolb`.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrolb::config::lexer::{Lexer, Token};
use ferrolb::config::parser::{parse_str, Directive};
use ferrolb::config::{ConfigError, LoadOptions, StaticResolver};
use ferrolb::http1::escape::{escape_uri, escape_uri_component};
use ferrolb::http1::{
    decode_chunked, BodyFraming, ChunkedScanner, HeaderRange, Method, ParseError, Parsed,
    RequestHead, ResponseHead, ScanStep, TargetForm,
};
use ferrolb::server::uri::{normalize, UriError};

// ---------------------------------------------------------------- request head

/// A request that sets every optional field, parsed into a head before the input so
/// that a field the parser forgets to reset shows up as a difference.
const PRIMER_REQUEST: &[u8] = b"PUT http://primer.example:81/p?q HTTP/1.1\r\nHost: primer\r\n\
X-Forwarded-For: 1.1.1.1\r\nConnection: upgrade, x-hop\r\nUpgrade: websocket\r\n\
Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nX-Hop: 1\r\n\r\n";

/// `RequestHead::parse` on arbitrary bytes; a complete head with a chunked body also
/// feeds its body to the chunked checks.
pub fn request_head(data: &[u8]) {
    let parse = |buf: &[u8]| {
        let mut head = RequestHead::new();
        let result = head.parse(buf);
        (result, head)
    };
    let (full, head) = parse(data);
    if full == Ok(Parsed::Complete) {
        check_request_fields(&head, data);
    }

    // A head reused across requests parses exactly as a fresh one.
    let mut reused = RequestHead::new();
    assert_eq!(reused.parse(PRIMER_REQUEST), Ok(Parsed::Complete));
    assert_eq!(reused.parse(data), full, "reused head disagrees");
    if full == Ok(Parsed::Complete) {
        assert_eq!(
            format!("{reused:?}"),
            format!("{head:?}"),
            "reused head keeps stale fields"
        );
    }

    let head_len = (full == Ok(Parsed::Complete)).then_some(head.head_len);
    check_prefixes(data, full, head_len, |buf| {
        let (r, h) = parse(buf);
        (r, format!("{h:?}"))
    });

    if full == Ok(Parsed::Complete) && head.framing == BodyFraming::Chunked {
        chunked_body(&data[head.head_len..], data.len() as u8);
    }
}

fn check_request_fields(h: &RequestHead, buf: &[u8]) {
    let head = check_head_common(buf, h.head_len, h.minor_version, &h.headers);
    assert!(within(head, &h.method_range), "method range");
    assert!(within(head, &h.target), "target range");
    if let Some(r) = &h.absolute_host {
        assert!(within(head, r), "absolute host range");
    }

    let method = &buf[h.method_range.clone()];
    assert!(!method.is_empty(), "empty method");
    assert_eq!(h.method_bytes(buf), method);
    assert_eq!(Method::from_token(method), h.method);
    assert!(
        method
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'_' || b == b'-'),
        "method {method:?} outside nginx's grammar"
    );

    let target = &buf[h.target.clone()];
    match h.form {
        TargetForm::Origin => assert!(target.starts_with(b"/"), "origin form {target:?}"),
        TargetForm::Asterisk => {
            assert_eq!(target, b"*");
            assert_eq!(h.method, Method::Options);
        }
        TargetForm::Authority => {
            assert_eq!(h.method, Method::Connect);
            assert!(!target.is_empty());
        }
        TargetForm::Absolute => {
            let host = h.absolute_host.clone().expect("absolute form has a host");
            assert!(!host.is_empty());
            assert!(
                target.is_empty() || matches!(target[0], b'/' | b'?' | b'#'),
                "absolute-form rest {target:?}"
            );
        }
    }
    assert_eq!(h.absolute_host.is_some(), h.form == TargetForm::Absolute);
    if h.form == TargetForm::Origin || h.form == TargetForm::Absolute {
        assert!(h.path(buf).starts_with(b"/") || h.path(buf).starts_with(b"#"));
    }
    assert_eq!(h.query(buf).is_some(), target.contains(&b'?'));

    // Host: at most one, and the index points at it; required in HTTP/1.1.
    let hosts: Vec<usize> = indexes_named(&h.headers, buf, b"host");
    assert!(hosts.len() <= 1, "two Host fields accepted");
    assert_eq!(h.host, hosts.first().copied(), "host index");
    if h.minor_version == 1 {
        assert!(h.host.is_some(), "HTTP/1.1 without Host accepted");
    }
    assert_eq!(
        h.xff,
        indexes_named(&h.headers, buf, b"x-forwarded-for")
            .first()
            .copied(),
        "xff index"
    );

    // Framing follows the fields; never close-delimited for a request.
    let cl = !indexes_named(&h.headers, buf, b"content-length").is_empty();
    let te = !indexes_named(&h.headers, buf, b"transfer-encoding").is_empty();
    match h.framing {
        BodyFraming::None => assert!(!cl && !te, "framing None with CL or TE"),
        BodyFraming::Length(_) => assert!(cl && !te, "Length without CL, or with TE"),
        BodyFraming::Chunked => {
            assert!(te && !cl, "Chunked without TE, or with CL");
            assert_eq!(h.minor_version, 1, "chunked HTTP/1.0 request");
        }
        BodyFraming::UntilClose => panic!("close-delimited request body"),
    }
    if h.minor_version == 0 {
        assert!(
            !h.upgrade && !h.expect_continue,
            "HTTP/1.0 upgrade or expect"
        );
        if indexes_named(&h.headers, buf, b"connection").is_empty() {
            assert!(!h.keep_alive, "HTTP/1.0 keep-alive without Connection");
        }
    }
}

// --------------------------------------------------------------- response head

/// The request methods a response can answer; the first input byte picks one.
const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Connect,
    Method::Options,
    Method::Put,
    Method::Delete,
    Method::Other,
];

/// A response that sets every optional field (see [`PRIMER_REQUEST`]).
const PRIMER_RESPONSE: &[u8] = b"HTTP/1.1 299 Primer Reason\r\nTransfer-Encoding: chunked\r\n\
Connection: x-hop\r\nX-Hop: 1\r\n\r\n";

/// `ResponseHead::parse` for the method picked by the first byte, on the rest; a
/// complete head with a chunked body also feeds its body to the chunked checks.
pub fn response_head(data: &[u8]) {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(pick) % METHODS.len()];
    let parse = |b: &[u8]| {
        let mut head = ResponseHead::new();
        let result = head.parse(b, method);
        (result, head)
    };
    let (full, head) = parse(buf);
    if full == Ok(Parsed::Complete) {
        check_response_fields(&head, buf, method);
    }

    let mut reused = ResponseHead::new();
    assert_eq!(
        reused.parse(PRIMER_RESPONSE, Method::Get),
        Ok(Parsed::Complete)
    );
    assert_eq!(reused.parse(buf, method), full, "reused head disagrees");
    if full == Ok(Parsed::Complete) {
        assert_eq!(
            format!("{reused:?}"),
            format!("{head:?}"),
            "reused head keeps stale fields"
        );
    }

    let head_len = (full == Ok(Parsed::Complete)).then_some(head.head_len);
    check_prefixes(buf, full, head_len, |b| {
        let (r, h) = parse(b);
        (r, format!("{h:?}"))
    });

    if full == Ok(Parsed::Complete) && head.framing == BodyFraming::Chunked {
        chunked_body(&buf[head.head_len..], pick);
    }
}

fn check_response_fields(h: &ResponseHead, buf: &[u8], method: Method) {
    let head = check_head_common(buf, h.head_len, h.minor_version, &h.headers);
    assert!(within(head, &h.reason), "reason range");
    assert!((100..=999).contains(&h.status), "status {}", h.status);
    assert!(
        !h.reason(buf).contains(&b'\r') && !h.reason(buf).contains(&b'\n'),
        "reason with CR/LF"
    );

    let no_body = (100..200).contains(&h.status)
        || h.status == 204
        || h.status == 304
        || method == Method::Head
        || (method == Method::Connect && (200..300).contains(&h.status));
    let cl = !indexes_named(&h.headers, buf, b"content-length").is_empty();
    let te = !indexes_named(&h.headers, buf, b"transfer-encoding").is_empty();
    match h.framing {
        BodyFraming::None => assert!(no_body, "no body for status {}", h.status),
        BodyFraming::Length(_) => assert!(!no_body && cl && !te, "Length framing"),
        BodyFraming::Chunked => {
            assert!(!no_body && te && !cl, "Chunked framing");
            if h.minor_version == 0 {
                assert!(!h.keep_alive, "chunked HTTP/1.0 response kept alive");
            }
        }
        BodyFraming::UntilClose => {
            assert!(!no_body && !te && !cl, "UntilClose framing");
            assert!(!h.keep_alive, "close-delimited response kept alive");
        }
    }
}

// ------------------------------------------------------------ shared head checks

/// Checks what request and response heads share; returns the head's bytes.
fn check_head_common<'b>(
    buf: &'b [u8],
    head_len: usize,
    minor_version: u8,
    headers: &[HeaderRange],
) -> &'b [u8] {
    assert!(head_len > 0 && head_len <= buf.len(), "head_len {head_len}");
    let head = &buf[..head_len];
    assert!(head.ends_with(b"\n"), "head does not end with a line end");
    assert!(minor_version <= 1, "HTTP/1.{minor_version}");
    for f in headers {
        assert!(within(head, &f.name), "name range {:?}", f.name);
        assert!(within(head, &f.value), "value range {:?}", f.value);
        let name = f.name(buf);
        let value = f.value(buf);
        assert!(!name.is_empty(), "empty field name");
        assert!(
            !name.iter().any(|b| b" \t\r\n:".contains(b)),
            "field name {name:?}"
        );
        assert!(
            !value.iter().any(|b| b"\r\n".contains(b)),
            "CR or LF in value {value:?}"
        );
        assert!(
            !value.starts_with(b" ") && !value.starts_with(b"\t"),
            "value not trimmed {value:?}"
        );
        assert!(
            !value.ends_with(b" ") && !value.ends_with(b"\t"),
            "value not trimmed {value:?}"
        );
        let always_hop = [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"transfer-encoding",
            b"upgrade",
        ];
        if always_hop.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            assert!(f.hop_by_hop, "{name:?} not marked hop-by-hop");
        }
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"content-length") {
            assert!(!f.hop_by_hop, "{name:?} marked hop-by-hop");
        }
    }
    head
}

/// Every prefix of the input parses as `Partial` or as the whole input does: a head
/// never completes early, and an error never depends on where a read happened to end.
/// When the whole input is a complete head, a prefix that contains it gives the same
/// head field for field (`describe` returns the result and the head's `Debug` text).
fn check_prefixes(
    data: &[u8],
    full: Result<Parsed, ParseError>,
    head_len: Option<usize>,
    mut describe: impl FnMut(&[u8]) -> (Result<Parsed, ParseError>, String),
) {
    let whole = head_len.map(|_| describe(data).1);
    let stride = data.len() / 48 + 1;
    for cut in 0..data.len() {
        let near_end = head_len.is_some_and(|n| cut.abs_diff(n) <= 1);
        if cut % stride != 0 && !near_end {
            continue;
        }
        let (r, text) = describe(&data[..cut]);
        match head_len {
            Some(n) if cut >= n => {
                assert_eq!(r, Ok(Parsed::Complete), "prefix of {cut} bytes");
                assert_eq!(Some(&text), whole.as_ref(), "prefix of {cut} bytes");
            }
            Some(_) => assert_eq!(r, Ok(Parsed::Partial), "prefix of {cut} bytes"),
            None => assert!(
                r == Ok(Parsed::Partial) || r == full,
                "prefix of {cut} bytes gives {r:?}, the whole input {full:?}"
            ),
        }
    }
}

fn within(head: &[u8], r: &Range<usize>) -> bool {
    r.start <= r.end && r.end <= head.len()
}

fn indexes_named(headers: &[HeaderRange], buf: &[u8], name: &[u8]) -> Vec<usize> {
    headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.name(buf).eq_ignore_ascii_case(name))
        .map(|(i, _)| i)
        .collect()
}

// ------------------------------------------------------------------- chunked

/// The first byte seeds how bodies are split and chunked; the rest is used twice: as a
/// chunked body as sent (scanner vs decoder, whole vs in pieces) and as a payload to
/// encode and decode again.
pub fn chunked(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    chunked_body(rest, seed);
    chunked_round_trip(rest, seed);
}

/// Scans `body` whole, byte by byte and in seed-sized pieces: same outcome, same body
/// end and payload; an accepted body decodes to the payload the scanner reported.
fn chunked_body(body: &[u8], seed: u8) {
    let mut whole = ChunkedScanner::new();
    let mut payload = Vec::new();
    let outcome = whole.scan_payload(body, |r| payload.extend_from_slice(&body[r]));
    assert_eq!(payload.len() as u64, whole.payload_len(), "payload length");

    for piece in [1, usize::from(seed % 13) + 2, usize::from(seed) * 7 + 3] {
        let (pieces, len) = scan_in_pieces(body, piece);
        assert_eq!(pieces, outcome, "in pieces of {piece}");
        assert_eq!(len, whole.payload_len(), "payload in pieces of {piece}");
    }

    match outcome {
        Ok(ScanStep::Done { body_end }) => {
            assert!(
                body_end >= 5 && body_end <= body.len(),
                "body_end {body_end}"
            );
            assert!(body[..body_end].ends_with(b"\r\n\r\n"), "body end");
            assert!(whole.is_done());
            assert_eq!(whole.scan(b"more"), Ok(ScanStep::Done { body_end: 0 }));
            let mut decoded = Vec::new();
            assert_eq!(decode_chunked(&body[..body_end], &mut decoded), Ok(()));
            assert_eq!(decoded, payload, "decoder and scanner disagree");
        }
        Ok(ScanStep::NeedMore) => assert!(!whole.is_done()),
        Err(_) => {}
    }
    // The decoder is only given accepted bodies, but must not panic on anything.
    let _ = decode_chunked(body, &mut Vec::new());
}

/// Scans `body` in pieces of `piece` bytes; the outcome with `body_end` relative to
/// the whole body, and the payload length.
fn scan_in_pieces(body: &[u8], piece: usize) -> (Result<ScanStep, ParseError>, u64) {
    let mut s = ChunkedScanner::new();
    let mut start = 0;
    for chunk in body.chunks(piece) {
        match s.scan(chunk) {
            Ok(ScanStep::NeedMore) => start += chunk.len(),
            Ok(ScanStep::Done { body_end }) => {
                return (
                    Ok(ScanStep::Done {
                        body_end: start + body_end,
                    }),
                    s.payload_len(),
                )
            }
            Err(e) => return (Err(e), s.payload_len()),
        }
    }
    (Ok(ScanStep::NeedMore), s.payload_len())
}

/// Encodes `payload` as a chunked body (sizes, hex case, leading zeros, extensions and
/// trailers varied by `seed`), then checks it scans to its exact end and decodes back.
fn chunked_round_trip(payload: &[u8], seed: u8) {
    let mut encoded = Vec::new();
    let mut rest = payload;
    let mut k = u32::from(seed);
    while !rest.is_empty() {
        k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = (k >> 16) as usize % 64 + 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        let hex = if k & 1 == 0 {
            format!("{:x}", chunk.len())
        } else {
            format!("{:03X}", chunk.len())
        };
        encoded.extend_from_slice(hex.as_bytes());
        if k & 2 != 0 {
            encoded.extend_from_slice(b" ;name=\"quoted value\";flag");
        }
        encoded.extend_from_slice(b"\r\n");
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
        rest = tail;
    }
    encoded.extend_from_slice(b"0\r\n");
    if seed & 4 != 0 {
        encoded.extend_from_slice(b"X-Checksum: abc\r\nx-empty:\r\n");
    }
    encoded.extend_from_slice(b"\r\n");
    let end = encoded.len();
    encoded.extend_from_slice(b"GET /next HTTP/1.1\r\n");

    let mut s = ChunkedScanner::new();
    let mut seen = Vec::new();
    assert_eq!(
        s.scan_payload(&encoded, |r| seen.extend_from_slice(&encoded[r])),
        Ok(ScanStep::Done { body_end: end }),
        "encoded body not accepted"
    );
    assert_eq!(seen, payload, "scanner payload");
    assert_eq!(s.payload_len(), payload.len() as u64);
    let mut decoded = Vec::new();
    assert_eq!(decode_chunked(&encoded[..end], &mut decoded), Ok(()));
    assert_eq!(decoded, payload, "decoded payload");
    let (pieces, _) = scan_in_pieces(&encoded, usize::from(seed % 5) + 1);
    assert_eq!(pieces, Ok(ScanStep::Done { body_end: end }));
}

// -------------------------------------------------------------------- config

/// The name errors point at, and the prefix nothing is read from.
const CONFIG_NAME: &str = "fuzz.conf";
const NO_PREFIX: &str = "/nonexistent/ferrolb-fuzz";

/// The nginx.conf parser and validator on UTF-8 text. Texts with an `include` are
/// skipped: it is the one directive that reads files (and `/dev/zero` or a glob over
/// `/` are not what this target is for). Host names go to a fixed table, never DNS.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if has_include(text) {
        return;
    }
    let name = Path::new(CONFIG_NAME);
    let tree = parse_str(name, text);
    match &tree {
        Ok(tree) => {
            // Printed back with every word quoted, the tree parses to itself.
            let mut printed = String::new();
            print_tree(tree, &mut printed);
            let again = parse_str(name, &printed)
                .unwrap_or_else(|e| panic!("printed tree does not parse: {e}\n{printed}"));
            assert_eq!(shape(&again), shape(tree), "printed tree:\n{printed}");
        }
        Err(e) => check_config_error(e, text),
    }

    let opts = LoadOptions {
        prefix: PathBuf::from(NO_PREFIX),
        globals: None,
        text: Some(text.to_owned()),
        is_root: false,
        resolver: Arc::new(
            StaticResolver::new().with_host("backend", ["127.0.0.1".parse().expect("an IP")]),
        ),
    };
    match (ferrolb::config::load(name, &opts), &tree) {
        (Err(e), Ok(_)) => check_config_error(&e, text),
        (Err(e), Err(parse_error)) => {
            assert_eq!(
                e.to_string(),
                parse_error.to_string(),
                "load and parse differ"
            )
        }
        (Ok(_), Err(e)) => panic!("loaded a text that does not parse: {e}"),
        (Ok(_), Ok(_)) => {}
    }
}

/// Whether any word up to the end (or the first lexing error) is `include`.
fn has_include(text: &str) -> bool {
    let mut lexer = Lexer::new(text, Arc::new(PathBuf::from(CONFIG_NAME)));
    loop {
        match lexer.next_token().map(|t| t.token) {
            Ok(Token::Eof) | Err(_) => return false,
            Ok(Token::Word { text, .. }) if text == "include" => return true,
            Ok(_) => {}
        }
    }
}

/// An error names the file and a line and column inside the text, and says something.
fn check_config_error(e: &ConfigError, text: &str) {
    let message = e.to_string();
    assert!(!message.is_empty());
    let span = e
        .span()
        .unwrap_or_else(|| panic!("error without a place: {message}"));
    assert_eq!(span.file.as_path(), Path::new(CONFIG_NAME), "{message}");
    let lines = text.split('\n').count();
    assert!(
        span.line >= 1 && span.line as usize <= lines,
        "line {} of {lines}: {message}",
        span.line
    );
    assert!(span.column >= 1, "{message}");
    assert!(
        message.starts_with(&format!("{CONFIG_NAME}:{}", span.line)),
        "{message}"
    );
}

fn print_tree(tree: &[Directive], out: &mut String) {
    for d in tree {
        quote(&d.name, out);
        for a in &d.args {
            out.push(' ');
            quote(&a.value, out);
        }
        match &d.block {
            None => out.push_str(";\n"),
            Some(inner) => {
                out.push_str(" {\n");
                print_tree(inner, out);
                out.push_str("}\n");
            }
        }
    }
}

fn quote(word: &str, out: &mut String) {
    out.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A directive tree without places: names, argument texts and blocks.
#[derive(Debug, PartialEq)]
struct Shape {
    name: String,
    args: Vec<String>,
    block: Option<Vec<Shape>>,
}

fn shape(tree: &[Directive]) -> Vec<Shape> {
    tree.iter()
        .map(|d| Shape {
            name: d.name.clone(),
            args: d.args.iter().map(|a| a.value.clone()).collect(),
            block: d.block.as_deref().map(shape),
        })
        .collect()
}

// ----------------------------------------------------------------------- uri

/// `$uri` normalisation and nginx's escaping: a bad escape is always refused, the
/// result is normalised, and escaping it for the wire (as `proxy_pass` does) gives
/// the upstream the same `$uri` back.
pub fn uri(data: &[u8]) {
    let normalized = normalize(data);
    if data.first() == Some(&b'/') {
        assert_eq!(
            matches!(normalized, Err(UriError::BadEscape)),
            has_bad_escape(data),
            "{normalized:?} for {data:?}"
        );
    }
    if let Ok(path) = &normalized {
        let path: &str = path;
        assert!(path.starts_with('/'), "{path:?}");
        assert!(!path.contains("//"), "{path:?}");
        assert!(
            !path.split('/').any(|s| s == "." || s == ".."),
            "dot segment left in {path:?}"
        );
        if !path.contains('%') {
            assert_eq!(
                normalize(path.as_bytes()),
                Ok(Cow::Borrowed(path)),
                "not idempotent"
            );
        }
        if !path.contains('\0') {
            let mut wire = Vec::new();
            escape_uri(path.as_bytes(), &mut wire);
            assert_eq!(
                normalize(&wire).as_deref(),
                Ok(path),
                "escaped {wire:?} reads back differently"
            );
        }
    }

    let mut escaped = Vec::new();
    escape_uri(data, &mut escaped);
    assert_eq!(percent_decode(&escaped), data, "escape_uri round trip");
    assert!(
        escaped
            .iter()
            .all(|&b| b > 0x20 && b < 0x7f && !b"\"#<>?\\^`{|}".contains(&b)),
        "escape_uri left a byte nginx escapes: {escaped:?}"
    );
    escaped.clear();
    escape_uri_component(data, &mut escaped);
    assert_eq!(percent_decode(&escaped), data, "component round trip");
    assert!(
        escaped
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "escape_uri_component left {escaped:?}"
    );
}

/// Whether `raw` has a `%` without two hex digits after it, or a `%00`.
fn has_bad_escape(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            match raw.get(i + 1..i + 3) {
                Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                    if *a == b'0' && *b == b'0' {
                        return true;
                    }
                    i += 3;
                }
                _ => return true,
            }
        } else {
            i += 1;
        }
    }
    false
}

/// Decodes `%XX` (upper-case hex only, as the escapers write it); any other `%` is an
/// error in an escaper's output.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3).expect("% at the end");
            let hex = std::str::from_utf8(hex).expect("hex digits");
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "escape %{hex}"
            );
            out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}
