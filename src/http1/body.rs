//! Body framing and the chunked-body scanner.
//!
//! The proxy relays chunked response bodies verbatim (no de-chunking and re-chunking on
//! the hot path); [`ChunkedScanner`] validates the framing and finds where the body ends,
//! so a malformed body is cut off instead of being passed to a peer that might read it
//! differently. A chunked request body streamed upstream is re-framed as nginx sends it
//! ([`ChunkedScanner::rechunk`]); [`BodyRest`] follows any request body from wherever a
//! reader left it (the discarding of a body a local answer does not use).

use super::{ParseError, MAX_HEAD_BYTES};

/// How the body of a message is delimited (RFC 9112 §6.3). Default: `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (also: responses to HEAD, 1xx/204/304, and 101 where the caller switches
    /// protocols).
    #[default]
    None,
    /// Exactly this many bytes. `Length(0)` is a declared empty body.
    Length(u64),
    /// `Transfer-Encoding: chunked`; scan with [`ChunkedScanner`].
    Chunked,
    /// The body runs until the peer closes the connection (responses only).
    UntilClose,
}

/// Result of one [`ChunkedScanner::scan`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStep {
    /// All of the scanned data belongs to the body and the body has not ended yet.
    NeedMore,
    /// The body ends at `data[..body_end]`; bytes after that belong to the next message.
    Done {
        /// Offset in the scanned slice one past the final CRLF of the body.
        body_end: usize,
    },
}

/// Longest chunk-size line extension accepted, in bytes. Extensions carry nothing the
/// proxy uses; capping them stops a peer from sending endless framing with no payload.
const MAX_CHUNK_EXT: u32 = 4096;

/// Where in the chunked grammar (RFC 9112 §7.1) the scanner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits of a chunk size.
    Size,
    /// Whitespace after the size; only `;` (an extension) may follow.
    SizeWs,
    /// Inside a chunk extension, up to CR.
    Ext,
    /// CR of the size line seen, expecting LF.
    SizeLf,
    /// Inside chunk data (`remaining` bytes left).
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to CR.
    TrailerValue,
    /// CR of a trailer line seen, expecting LF.
    TrailerLf,
    /// CR of the final empty line seen, expecting LF.
    FinalLf,
    /// The body has ended.
    Done,
}

/// Incremental validator of a chunked body.
///
/// Feed it every body byte in order, split anywhere; it keeps its state between calls.
/// Strict on framing: chunk sizes must be 1..=16 hex digits, every line must end in CRLF
/// (no bare CR or LF), extensions may not contain control bytes and are capped at 4 KiB
/// per chunk, trailer fields must be well-formed and total at most `MAX_HEAD_BYTES`.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    /// Size of the current chunk while reading its hex digits.
    size: u64,
    /// Hex digits read for the current size (leading zeros count: a peer cannot make us
    /// scan an unbounded size line).
    digits: u8,
    /// Data bytes left in the current chunk.
    remaining: u64,
    /// Extension bytes in the current size line.
    ext_len: u32,
    /// Bytes in the trailer section so far.
    trailer_len: usize,
    /// Decoded payload bytes so far.
    payload: u64,
    /// The trailer section's lines (CRLFs included), when kept
    /// ([`ChunkedScanner::keeping_trailer`]).
    trailer: Option<Vec<u8>>,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// `tchar` (RFC 9110 §5.6.2).
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Bytes allowed in a field value or chunk extension: HT, SP, VCHAR, obs-text. Excludes
/// every other control byte (NUL, CR, LF, DEL...).
#[inline]
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new() -> Self {
        ChunkedScanner {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            remaining: 0,
            ext_len: 0,
            trailer_len: 0,
            payload: 0,
            trailer: None,
        }
    }

    /// Keeps the trailer fields it scans, for [`ChunkedScanner::take_trailer`].
    pub fn keeping_trailer(mut self) -> Self {
        self.trailer = Some(Vec::new());
        self
    }

    /// The trailer lines scanned so far (`Name: value\r\n` each), when kept.
    pub fn take_trailer(&mut self) -> Vec<u8> {
        self.trailer
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Resets to the start of a new body (payload count back to 0).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Total decoded payload bytes seen so far (chunk data only, no framing), for
    /// `client_max_body_size`.
    #[inline]
    pub fn payload_len(&self) -> u64 {
        self.payload
    }

    /// True once the terminating empty line of the body has been scanned.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `data`, the next bytes of the body.
    ///
    /// Returns `NeedMore` when all of `data` is body and the body continues, or
    /// `Done { body_end }` when the body ends at `data[..body_end]`. After `Done`, further
    /// calls return `Done { body_end: 0 }` until [`reset`](Self::reset). After an error the
    /// state is unspecified; the connection must be closed.
    pub fn scan(&mut self, data: &[u8]) -> Result<ScanStep, ParseError> {
        self.scan_payload(data, |_| {})
    }

    /// [`scan`](Self::scan), also reporting where the payload (chunk data) lies in
    /// `data`, in order: decoding without copying.
    pub fn scan_payload(
        &mut self,
        data: &[u8],
        mut payload: impl FnMut(std::ops::Range<usize>),
    ) -> Result<ScanStep, ParseError> {
        if self.state == State::Done {
            return Ok(ScanStep::Done { body_end: 0 });
        }
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Data {
                // Chunk data is the bulk of the bytes: skip it without a per-byte loop.
                let avail = (data.len() - i) as u64;
                let take = avail.min(self.remaining);
                self.remaining -= take;
                self.payload = self.payload.saturating_add(take);
                // `take <= avail`, which came from a usize.
                payload(i..i + take as usize);
                i += take as usize;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = self.step(b)?;
            if self.state == State::Done {
                return Ok(ScanStep::Done { body_end: i });
            }
        }
        Ok(ScanStep::NeedMore)
    }

    /// [`scan`](Self::scan), appending the payload of `data` to `out` as one chunk (none
    /// when it carries no payload) and, once the body ends, the last chunk without
    /// trailers: nginx's framing of a chunked body it streams, each read sent on as one
    /// chunk.
    pub fn rechunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<ScanStep, ParseError> {
        let mut pieces: Vec<std::ops::Range<usize>> = Vec::new();
        let step = self.scan_payload(data, |r| {
            if !r.is_empty() {
                pieces.push(r);
            }
        })?;
        let len: usize = pieces.iter().map(|r| r.len()).sum();
        if len > 0 {
            write_chunk_header(out, len);
            for r in pieces {
                out.extend_from_slice(&data[r]);
            }
            out.extend_from_slice(b"\r\n");
        }
        if matches!(step, ScanStep::Done { .. }) {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Ok(step)
    }

    /// Advances the framing state machine by one byte (never called in `Data`).
    #[inline]
    fn step(&mut self, b: u8) -> Result<State, ParseError> {
        Ok(match self.state {
            State::SizeStart => {
                let v = hex_value(b).ok_or(ParseError::InvalidChunkSize)?;
                self.size = u64::from(v);
                self.digits = 1;
                self.ext_len = 0;
                State::Size
            }
            State::Size => match b {
                b'\r' => State::SizeLf,
                b';' => State::Ext,
                b' ' | b'\t' => State::SizeWs,
                b'\n' => return Err(ParseError::InvalidChunkFraming),
                _ => {
                    let v = hex_value(b).ok_or(ParseError::InvalidChunkSize)?;
                    // 16 hex digits always fit in u64, so the digit cap is the overflow
                    // check.
                    if self.digits >= 16 {
                        return Err(ParseError::InvalidChunkSize);
                    }
                    self.digits += 1;
                    self.size = (self.size << 4) | u64::from(v);
                    State::Size
                }
            },
            State::SizeWs => match b {
                b' ' | b'\t' => State::SizeWs,
                b';' => State::Ext,
                // "5 \r\n" is outside the grammar (BWS only precedes ';'), and a peer
                // might read "5 3" as 0x53: refuse rather than guess.
                _ => return Err(ParseError::InvalidChunkSize),
            },
            State::Ext => {
                if b == b'\r' {
                    State::SizeLf
                } else if !is_field_byte(b) {
                    return Err(ParseError::InvalidChunkExtension);
                } else {
                    self.ext_len += 1;
                    if self.ext_len > MAX_CHUNK_EXT {
                        return Err(ParseError::InvalidChunkExtension);
                    }
                    State::Ext
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ParseError::InvalidChunkFraming);
                }
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    self.remaining = self.size;
                    State::Data
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ParseError::InvalidChunkFraming);
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ParseError::InvalidChunkFraming);
                }
                State::SizeStart
            }
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                _ if is_tchar(b) => {
                    self.count_trailer(b)?;
                    State::TrailerName
                }
                b'\n' => return Err(ParseError::InvalidChunkFraming),
                // Includes SP/HT: obs-fold is not allowed in trailers either.
                _ => return Err(ParseError::InvalidTrailer),
            },
            State::TrailerName => {
                self.count_trailer(b)?;
                match b {
                    b':' => State::TrailerValue,
                    _ if is_tchar(b) => State::TrailerName,
                    _ => return Err(ParseError::InvalidTrailer),
                }
            }
            State::TrailerValue => {
                self.count_trailer(b)?;
                match b {
                    b'\r' => State::TrailerLf,
                    _ if is_field_byte(b) => State::TrailerValue,
                    _ => return Err(ParseError::InvalidTrailer),
                }
            }
            State::TrailerLf => {
                self.count_trailer(b)?;
                if b != b'\n' {
                    return Err(ParseError::InvalidChunkFraming);
                }
                State::TrailerStart
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ParseError::InvalidChunkFraming);
                }
                State::Done
            }
            // `scan` consumes data in bulk and stops at Done, so neither reaches here;
            // staying put is the harmless answer.
            s @ (State::Data | State::Done) => s,
        })
    }

    /// Counts one trailer byte against `MAX_HEAD_BYTES` (and keeps it, if asked).
    #[inline]
    fn count_trailer(&mut self, b: u8) -> Result<(), ParseError> {
        if let Some(t) = &mut self.trailer {
            t.push(b);
        }
        self.trailer_len += 1;
        if self.trailer_len > MAX_HEAD_BYTES {
            return Err(ParseError::TrailerTooLarge);
        }
        Ok(())
    }
}

/// What of a request body is still to come, whatever its framing: fed the body's
/// bytes in order, it says where the body ends. The part of the body a reader has not
/// taken yet, so a body can be read (or dropped) from wherever an earlier reader left
/// it.
#[derive(Clone, Debug)]
pub enum BodyRest {
    /// A Content-Length body: this many bytes still to come.
    Length(u64),
    /// A chunked body, the scanner where the framing stands.
    Chunked(ChunkedScanner),
}

impl BodyRest {
    /// The whole body of a message framed so; `None` when it has none.
    pub fn of(framing: BodyFraming) -> Option<Self> {
        match framing {
            BodyFraming::Length(0) | BodyFraming::None | BodyFraming::UntilClose => None,
            BodyFraming::Length(n) => Some(BodyRest::Length(n)),
            BodyFraming::Chunked => Some(BodyRest::Chunked(ChunkedScanner::new())),
        }
    }

    /// Takes the next bytes of the body from `data`: `NeedMore` when all of `data` is
    /// body and more is to come, `Done { body_end }` when the body ends at
    /// `data[..body_end]` (what follows is the next message's).
    pub fn feed(&mut self, data: &[u8]) -> Result<ScanStep, ParseError> {
        match self {
            BodyRest::Length(left) => {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                Ok(if *left == 0 {
                    // `take <= data.len()`, a usize.
                    ScanStep::Done {
                        body_end: take as usize,
                    }
                } else {
                    ScanStep::NeedMore
                })
            }
            BodyRest::Chunked(sc) => sc.scan(data),
        }
    }

    /// How much one read may ask for without taking bytes past the body: the rest of
    /// a Content-Length body, `max` for a chunked one (its end is only found by
    /// scanning; bytes read past it are the next message's).
    pub fn read_size(&self, max: usize) -> usize {
        match self {
            BodyRest::Length(left) => usize::try_from(*left).unwrap_or(max).min(max),
            BodyRest::Chunked(_) => max,
        }
    }
}

/// Appends the payload of a complete chunked body (`raw`, already accepted by a
/// [`ChunkedScanner`]) to `out`, dropping sizes, extensions and trailers. Used to send
/// small chunked request bodies upstream with a Content-Length, as nginx does, since
/// some backends (Django's runserver) cannot read chunked bodies.
pub fn decode_chunked(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ParseError> {
    let mut rest = raw;
    loop {
        let line_end = memchr::memchr(b'\n', rest).ok_or(ParseError::InvalidChunkFraming)?;
        let size_field = rest[..line_end]
            .split(|&b| b == b';' || b == b'\r' || b == b' ' || b == b'\t')
            .next()
            .unwrap_or_default();
        let mut size: usize = 0;
        for &b in size_field {
            let v = hex_value(b).ok_or(ParseError::InvalidChunkSize)?;
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(usize::from(v)))
                .ok_or(ParseError::InvalidChunkSize)?;
        }
        rest = &rest[line_end + 1..];
        if size == 0 {
            return Ok(());
        }
        let data = rest.get(..size).ok_or(ParseError::InvalidChunkFraming)?;
        out.extend_from_slice(data);
        rest = rest.get(size..).ok_or(ParseError::InvalidChunkFraming)?;
        rest = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
            .ok_or(ParseError::InvalidChunkFraming)?;
    }
}

/// Appends a chunk-size line `"{len:x}\r\n"` to `out` (for re-chunking a close-delimited
/// response to an HTTP/1.1 client). Does not allocate beyond growing `out`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // usize has at most 16 nibbles on supported targets; format without `fmt` machinery.
    let mut tmp = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut n = len;
    let mut pos = tmp.len();
    loop {
        pos -= 1;
        tmp[pos] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[pos..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Scans `data` split at `splits` (sorted offsets); returns the absolute body end.
    fn scan_split(data: &[u8], splits: &[usize]) -> Result<Option<usize>, ParseError> {
        let mut s = ChunkedScanner::new();
        let mut start = 0;
        for &end in splits.iter().chain(std::iter::once(&data.len())) {
            if end < start {
                continue;
            }
            match s.scan(&data[start..end])? {
                ScanStep::NeedMore => start = end,
                ScanStep::Done { body_end } => return Ok(Some(start + body_end)),
            }
        }
        Ok(None)
    }

    fn scan_all(data: &[u8]) -> Result<Option<usize>, ParseError> {
        scan_split(data, &[])
    }

    fn scan_bytewise(data: &[u8]) -> (Result<Option<usize>, ParseError>, u64) {
        let mut s = ChunkedScanner::new();
        for (i, b) in data.iter().enumerate() {
            match s.scan(std::slice::from_ref(b)) {
                Err(e) => return (Err(e), s.payload_len()),
                Ok(ScanStep::Done { body_end }) => {
                    assert_eq!(body_end, 1);
                    return (Ok(Some(i + 1)), s.payload_len());
                }
                Ok(ScanStep::NeedMore) => {}
            }
        }
        (Ok(None), s.payload_len())
    }

    const BODY: &[u8] =
        b"5;name=val;q=\"a b\"\r\nhello\r\nA\r\n0123456789\r\n000\r\nX-Sum: abc\r\nx-b: \r\n\r\n";
    const NEXT: &[u8] = b"GET / HTTP/1.1\r\n";

    #[test]
    fn body_rest_finds_the_end_across_pieces() {
        assert!(BodyRest::of(BodyFraming::None).is_none());
        assert!(BodyRest::of(BodyFraming::Length(0)).is_none());
        let mut len = BodyRest::of(BodyFraming::Length(7)).expect("a body");
        assert_eq!(len.read_size(4096), 7);
        assert_eq!(len.feed(b"abcd"), Ok(ScanStep::NeedMore));
        assert_eq!(len.read_size(2), 2);
        assert_eq!(len.feed(b"efgGET"), Ok(ScanStep::Done { body_end: 3 }));
        let mut ch = BodyRest::of(BodyFraming::Chunked).expect("a body");
        assert_eq!(ch.read_size(4096), 4096);
        assert_eq!(ch.feed(b"3\r\nab"), Ok(ScanStep::NeedMore));
        assert_eq!(
            ch.feed(b"c\r\n0\r\n\r\nGET"),
            Ok(ScanStep::Done { body_end: 8 })
        );
        let mut bad = BodyRest::of(BodyFraming::Chunked).expect("a body");
        assert!(bad.feed(b"4\r\nSEE-THIS\r\n").is_err());
    }

    #[test]
    fn rechunk_sends_each_piece_as_one_chunk() {
        let mut sc = ChunkedScanner::new();
        let mut out = Vec::new();
        let step = sc.rechunk(b"5\r\n01234\r\n4\r\nmany\r\n", &mut out);
        assert_eq!(step, Ok(ScanStep::NeedMore));
        assert_eq!(out, b"9\r\n01234many\r\n");
        out.clear();
        // Framing alone carries no chunk; trailers are dropped with the last chunk.
        assert_eq!(sc.rechunk(b"1", &mut out), Ok(ScanStep::NeedMore));
        assert!(out.is_empty());
        let step = sc.rechunk(b"\r\nx\r\n0\r\nA: b\r\n\r\nNEXT", &mut out);
        assert_eq!(step, Ok(ScanStep::Done { body_end: 16 }));
        assert_eq!(out, b"1\r\nx\r\n0\r\n\r\n");
    }

    #[test]
    fn simple_body() {
        let mut s = ChunkedScanner::new();
        assert_eq!(
            s.scan(b"4\r\nRust\r\n0\r\n\r\nGET"),
            Ok(ScanStep::Done { body_end: 14 })
        );
        assert_eq!(s.payload_len(), 4);
        assert!(s.is_done());
        // Further scans report nothing more of the body.
        assert_eq!(s.scan(b"more"), Ok(ScanStep::Done { body_end: 0 }));
        s.reset();
        assert_eq!(s.payload_len(), 0);
        assert_eq!(s.scan(b"0\r\n\r\n"), Ok(ScanStep::Done { body_end: 5 }));
    }

    #[test]
    fn every_split_point_with_trailers_and_extensions() {
        let mut data = BODY.to_vec();
        data.extend_from_slice(NEXT);
        for a in 0..=data.len() {
            assert_eq!(
                scan_split(&data, &[a]),
                Ok(Some(BODY.len())),
                "split at {a}"
            );
            for b in (a..=data.len()).step_by(3) {
                assert_eq!(
                    scan_split(&data, &[a, b]),
                    Ok(Some(BODY.len())),
                    "split at {a},{b}"
                );
            }
        }
        let (end, payload) = scan_bytewise(&data);
        assert_eq!(end, Ok(Some(BODY.len())));
        assert_eq!(payload, 15);
    }

    #[test]
    fn needs_more_until_final_crlf() {
        for k in 0..BODY.len() {
            assert_eq!(scan_all(&BODY[..k]), Ok(None), "prefix {k}");
        }
    }

    #[test]
    fn big_and_padded_sizes() {
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"ffffffffffffffff\r\n"), Ok(ScanStep::NeedMore));
        assert_eq!(s.scan(&[0u8; 100]), Ok(ScanStep::NeedMore));
        assert_eq!(s.payload_len(), 100);
        // 16 digits with leading zeros is fine; uppercase hex too.
        assert_eq!(
            scan_all(b"000000000000000A\r\n0123456789\r\n0\r\n\r\n"),
            Ok(Some(35))
        );
    }

    #[test]
    fn bad_chunk_sizes_rejected() {
        for body in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x5\r\n",
            b"12345678901234567\r\n",
            b"00000000000000001\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5 3\r\n",
            b";ext\r\n",
        ] {
            assert_eq!(
                scan_all(body),
                Err(ParseError::InvalidChunkSize),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // Whitespace before an extension is BWS and allowed.
        assert_eq!(scan_all(b"5 ;a=b\r\nhello\r\n0 ;x\r\n\r\n"), Ok(Some(23)));
    }

    #[test]
    fn missing_crlf_after_data_rejected() {
        assert_eq!(
            scan_all(b"5\r\nhelloX\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        assert_eq!(
            scan_all(b"5\r\nhello\rX0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        assert_eq!(
            scan_all(b"5\r\nhello\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        // A chunk longer than declared.
        assert_eq!(
            scan_all(b"3\r\nhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
    }

    #[test]
    fn bare_lf_and_cr_in_framing_rejected() {
        assert_eq!(
            scan_all(b"5\nhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        assert_eq!(
            scan_all(b"5\rhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        assert_eq!(scan_all(b"0\r\n\n"), Err(ParseError::InvalidChunkFraming));
        assert_eq!(scan_all(b"0\r\n\rX"), Err(ParseError::InvalidChunkFraming));
        assert_eq!(
            scan_all(b"0\r\nX: y\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(
            scan_all(b"0\r\nX: y\rZ\r\n"),
            Err(ParseError::InvalidChunkFraming)
        );
        assert_eq!(scan_all(b"0\n\r\n"), Err(ParseError::InvalidChunkFraming));
    }

    #[test]
    fn bad_chunk_extensions_rejected() {
        assert_eq!(
            scan_all(b"5;a\0b\r\nhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkExtension)
        );
        assert_eq!(
            scan_all(b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkExtension)
        );
        assert_eq!(
            scan_all(b"5;a\x7f\r\nhello\r\n0\r\n\r\n"),
            Err(ParseError::InvalidChunkExtension)
        );
        let mut long = b"1;".to_vec();
        long.resize(2 + MAX_CHUNK_EXT as usize, b'x');
        assert_eq!(scan_all(&long), Ok(None));
        long.push(b'x');
        assert_eq!(scan_all(&long), Err(ParseError::InvalidChunkExtension));
    }

    #[test]
    fn trailers() {
        assert_eq!(
            scan_all(b"0\r\nA: 1\r\nB:2\r\nC:\r\n\r\nNEXT"),
            Ok(Some(20))
        );
        // obs-fold, bad names and control bytes.
        assert_eq!(
            scan_all(b"0\r\nA: 1\r\n b\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(
            scan_all(b"0\r\nA B: 1\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(
            scan_all(b"0\r\n: 1\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(
            scan_all(b"0\r\nA: \x001\r\n\r\n"),
            Err(ParseError::InvalidTrailer)
        );
        assert_eq!(scan_all(b"0\r\nA\r\n\r\n"), Err(ParseError::InvalidTrailer));
    }

    #[test]
    fn trailer_size_capped() {
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"0\r\nX-Big: "), Ok(ScanStep::NeedMore));
        let filler = vec![b'a'; 1024];
        let mut result = Ok(ScanStep::NeedMore);
        for _ in 0..=MAX_HEAD_BYTES / 1024 {
            result = s.scan(&filler);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ParseError::TrailerTooLarge));
    }

    #[test]
    fn write_chunk_header_formats_lowercase_hex() {
        let mut out = Vec::new();
        for (n, s) in [
            (0usize, "0"),
            (1, "1"),
            (15, "f"),
            (16, "10"),
            (255, "ff"),
            (4096, "1000"),
        ] {
            out.clear();
            write_chunk_header(&mut out, n);
            assert_eq!(out, format!("{s}\r\n").as_bytes());
        }
        out.clear();
        write_chunk_header(&mut out, usize::MAX);
        assert_eq!(out, format!("{:x}\r\n", usize::MAX).as_bytes());
        // Appends rather than overwrites.
        write_chunk_header(&mut out, 10);
        assert!(out.ends_with(b"\r\na\r\n"));
    }

    /// A valid chunked body: (bytes, payload length).
    fn arb_body() -> impl Strategy<Value = (Vec<u8>, u64)> {
        let chunk = (
            proptest::collection::vec(any::<u8>(), 1..64),
            0usize..3,
            any::<bool>(),
            proptest::option::of("[a-z]{1,5}(=([a-z0-9]{1,5}|\"[ a-z]{0,5}\"))?"),
        );
        (
            proptest::collection::vec(chunk, 0..8),
            proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}"), 0..3),
        )
            .prop_map(|(chunks, trailers)| {
                let mut out = Vec::new();
                let mut payload = 0u64;
                for (data, zeros, upper, ext) in chunks {
                    let size = if upper {
                        format!("{:X}", data.len())
                    } else {
                        format!("{:x}", data.len())
                    };
                    out.resize(out.len() + zeros, b'0');
                    out.extend_from_slice(size.as_bytes());
                    if let Some(e) = ext {
                        out.push(b';');
                        out.extend_from_slice(e.as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                    payload += data.len() as u64;
                }
                out.extend_from_slice(b"0\r\n");
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                (out, payload)
            })
    }

    proptest! {
        #[test]
        fn prop_valid_body_any_splits(
            (body, payload) in arb_body(),
            tail in proptest::collection::vec(any::<u8>(), 0..32),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut data = body.clone();
            data.extend_from_slice(&tail);
            let mut splits: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            splits.sort_unstable();

            let mut s = ChunkedScanner::new();
            let mut start = 0;
            let mut end = None;
            for &cut in splits.iter().chain(std::iter::once(&data.len())) {
                match s.scan(&data[start..cut]) {
                    Ok(ScanStep::NeedMore) => start = cut,
                    Ok(ScanStep::Done { body_end }) => {
                        end = Some(start + body_end);
                        break;
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
            prop_assert_eq!(end, Some(body.len()));
            prop_assert_eq!(s.payload_len(), payload);

            let (bytewise, bytewise_payload) = scan_bytewise(&data);
            prop_assert_eq!(bytewise, Ok(Some(body.len())));
            prop_assert_eq!(bytewise_payload, payload);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut splits: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            splits.sort_unstable();
            if let Ok(Some(end)) = scan_split(&data, &splits) {
                prop_assert!(end <= data.len());
            }
        }

        #[test]
        fn prop_truncated_body_never_done(
            (body, _) in arb_body(),
            cut in any::<prop::sample::Index>(),
        ) {
            let k = cut.index(body.len());
            prop_assert_eq!(scan_all(&body[..k]), Ok(None));
        }
    }

    #[test]
    fn decode_chunked_keeps_only_the_payload() {
        let raw = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        let mut sc = ChunkedScanner::new();
        assert_eq!(
            sc.scan(raw).unwrap(),
            ScanStep::Done {
                body_end: raw.len()
            }
        );
        let mut out = Vec::new();
        decode_chunked(raw, &mut out).unwrap();
        assert_eq!(out, b"hello 0123456789");
        assert_eq!(out.len() as u64, sc.payload_len());
        let mut out = Vec::new();
        assert!(decode_chunked(b"5\r\nhel", &mut out).is_err());
    }
}
