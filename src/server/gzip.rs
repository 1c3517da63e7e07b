//! Dynamic gzip (nginx's gzip filter): which responses are compressed, and a streaming
//! compressor that turns body pieces into a gzip member as they come (never the whole
//! body at once).
//!
//! A response is compressed when `gzip on`, its status is 200, 403 or 404, it has no `Content-Encoding`, its `Content-Length`
//! (when known) is at least `gzip_min_length`, its type is in `gzip_types`, and the
//! client may get gzip ([`super::gzip_ok`]). Passing every check but the client's
//! makes the response vary by `Accept-Encoding` (`gzip_vary`). The answer to a HEAD
//! gets the head a GET's would (`Content-Encoding: gzip`, no length), as nginx sends
//! it: its gzip filter runs before a HEAD is known to have no body.

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::config::GzipConf;

/// What nginx's gzip header filter looks at in a response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate<'r> {
    /// The status sent.
    pub(super) status: u16,
    /// No body can go out whatever the method (a tunnel; 204 and 304 fail the status
    /// test anyway). Not set for a HEAD.
    pub(super) header_only: bool,
    /// The `Content-Encoding` value, if any.
    pub(super) content_encoding: Option<&'r [u8]>,
    /// The `Content-Length`, when known.
    pub(super) content_length: Option<u64>,
    /// The `Content-Type` value, if any.
    pub(super) content_type: Option<&'r [u8]>,
}

/// The gzip filter's verdict on one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Compress the body.
    pub(super) compress: bool,
    /// Add `Vary: Accept-Encoding` (`gzip_vary` on a response that could be gzipped).
    pub(super) vary: bool,
}

/// nginx's `ngx_http_gzip_header_filter`; `client_ok` is asked only when the response
/// itself qualifies.
pub(super) fn verdict(
    conf: &GzipConf,
    c: &Candidate<'_>,
    client_ok: impl FnOnce() -> bool,
) -> Verdict {
    let qualifies = conf.enable
        && !c.header_only
        && matches!(c.status, 200 | 403 | 404)
        && c.content_encoding.is_none_or(|v| v.is_empty())
        && c.content_length.is_none_or(|n| n >= conf.min_length)
        && conf.types.matches(c.content_type);
    if !qualifies {
        return Verdict::default();
    }
    Verdict {
        compress: client_ok(),
        vary: conf.vary,
    }
}

/// An `ETag` value as it goes out with a compressed body (nginx's
/// `ngx_http_weak_etag`): a weak one unchanged, a strong one made weak, anything
/// else dropped (`None`).
pub(super) fn weak_etag(value: &[u8]) -> Option<Vec<u8>> {
    if value.starts_with(b"W/") {
        Some(value.to_vec())
    } else if value.starts_with(b"\"") {
        let mut v = Vec::with_capacity(value.len() + 2);
        v.extend_from_slice(b"W/");
        v.extend_from_slice(value);
        Some(v)
    } else {
        None
    }
}

/// zlib-rs (as zlib-ng) runs its level 1 with a quicker algorithm than zlib's
/// (static Huffman codes only): about 20% larger output than nginx gives at
/// `gzip_comp_level 1` on text. Its level 2 is zlib's level 1 algorithm, at zlib's
/// speed and ratio or better (bench/gzip.sh), so level 1 asks for that.
fn zlib_rs_level(level: u32) -> u32 {
    level.max(2)
}

/// The gzip member header nginx writes: deflate, no flags, no time, Unix.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// A failure of the compressor (zlib misuse; not expected from valid calls).
#[derive(Debug, thiserror::Error)]
#[error("deflate() failed: {0}")]
pub(super) struct DeflateError(String);

/// Compresses a body piece by piece into one gzip member. Each call returns the bytes
/// to send for what it was given; the buffer is reused between calls.
pub(super) struct GzipEncoder {
    deflate: Compress,
    crc: crc32fast::Hasher,
    out: Vec<u8>,
    header_written: bool,
    /// Bytes in and out once finished, for `$gzip_ratio`.
    totals: Option<(u64, u64)>,
}

impl std::fmt::Debug for GzipEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipEncoder")
            .field("in", &self.deflate.total_in())
            .field("out", &self.deflate.total_out())
            .finish()
    }
}

impl GzipEncoder {
    /// A compressor at `level` (1..=9), raw deflate with a 32 KiB window as nginx's.
    pub(super) fn new(level: u32) -> Self {
        GzipEncoder {
            deflate: Compress::new(Compression::new(zlib_rs_level(level)), false),
            crc: crc32fast::Hasher::new(),
            out: Vec::new(),
            header_written: false,
            totals: None,
        }
    }

    /// Compresses `data`; with `flush` everything given so far is in the output (a
    /// sync flush: the client can decode it before the rest arrives).
    pub(super) fn piece(&mut self, data: &[u8], flush: bool) -> Result<&[u8], DeflateError> {
        self.out.clear();
        self.header();
        self.crc.update(data);
        let mode = if flush {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        self.run(data, mode)?;
        Ok(&self.out)
    }

    /// Ends the member: what is left of the deflate stream and the trailer (CRC-32 and
    /// length).
    pub(super) fn finish(&mut self) -> Result<&[u8], DeflateError> {
        self.out.clear();
        self.header();
        self.run(&[], FlushCompress::Finish)?;
        let total_in = self.deflate.total_in();
        self.out
            .extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.out
            .extend_from_slice(&((total_in & 0xffff_ffff) as u32).to_le_bytes());
        self.totals = Some((total_in, 10 + self.deflate.total_out() + 8));
        Ok(&self.out)
    }

    /// `$gzip_ratio`: bytes in over bytes out, two decimals rounded half up, once the
    /// member is finished.
    pub(super) fn ratio(&self) -> Option<String> {
        let (zin, zout) = self.totals?;
        if zout == 0 {
            return None;
        }
        let mut int = zin / zout;
        let mut frac = (zin * 100 / zout) % 100;
        if (zin * 1000 / zout) % 10 > 4 {
            frac += 1;
            if frac > 99 {
                int += 1;
                frac = 0;
            }
        }
        Some(format!("{int}.{frac:02}"))
    }

    fn header(&mut self) {
        if !self.header_written {
            self.out.extend_from_slice(&GZIP_HEADER);
            self.header_written = true;
        }
    }

    /// Runs deflate over `input` until it is consumed and, for a flush or the finish,
    /// until zlib has nothing more to give.
    fn run(&mut self, mut input: &[u8], mode: FlushCompress) -> Result<(), DeflateError> {
        loop {
            if self.out.capacity() - self.out.len() < 4096 {
                self.out.reserve(input.len() / 2 + 8192);
            }
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(input, &mut self.out, mode)
                .map_err(|e| DeflateError(e.to_string()))?;
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            let room_left = self.out.len() < self.out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if matches!(mode, FlushCompress::Finish) => {}
                _ if input.is_empty() && room_left => return Ok(()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GzipTypes;
    use std::io::Read as _;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn pieces_make_one_member() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} of the body\n").into_bytes())
            .collect();
        for level in [1, 6, 9] {
            let mut enc = GzipEncoder::new(level);
            let mut out = Vec::new();
            for (i, piece) in text.chunks(70_000).enumerate() {
                out.extend_from_slice(enc.piece(piece, i % 2 == 0).expect("deflate"));
            }
            out.extend_from_slice(enc.finish().expect("deflate"));
            assert_eq!(&out[..10], &GZIP_HEADER);
            assert_eq!(gunzip(&out), text);
            let ratio: f64 = enc.ratio().expect("ratio").parse().expect("number");
            assert!(ratio > 3.0, "level {level}: ratio {ratio}");
        }
    }

    #[test]
    fn a_sync_flush_makes_the_piece_decodable() {
        let mut enc = GzipEncoder::new(1);
        let first = enc
            .piece(b"data: first event\n\n", true)
            .expect("deflate")
            .to_vec();
        let mut dec = flate2::Decompress::new(false);
        let mut plain = Vec::with_capacity(100);
        dec.decompress_vec(&first[10..], &mut plain, flate2::FlushDecompress::Sync)
            .expect("inflate");
        assert_eq!(plain, b"data: first event\n\n");
    }

    #[test]
    fn an_empty_body_is_an_empty_member() {
        let mut enc = GzipEncoder::new(1);
        let out = enc.finish().expect("deflate").to_vec();
        assert!(gunzip(&out).is_empty());
    }

    #[test]
    fn verdicts_as_nginx() {
        let conf = GzipConf {
            enable: true,
            vary: true,
            types: GzipTypes::List(vec!["text/html".into(), "text/css".into()]),
            ..GzipConf::default()
        };
        let c = Candidate {
            status: 200,
            header_only: false,
            content_encoding: None,
            content_length: Some(1000),
            content_type: Some(b"text/css; charset=utf-8"),
        };
        let yes = Verdict {
            compress: true,
            vary: true,
        };
        assert_eq!(verdict(&conf, &c, || true), yes);
        assert_eq!(
            verdict(&conf, &c, || false),
            Verdict {
                compress: false,
                vary: true
            }
        );
        let none = Verdict::default();
        let check = |c: Candidate<'_>| verdict(&conf, &c, || true);
        assert_eq!(check(Candidate { status: 500, ..c }), none);
        assert_eq!(check(Candidate { status: 404, ..c }), yes);
        assert_eq!(
            check(Candidate {
                header_only: true,
                ..c
            }),
            none
        );
        assert_eq!(
            check(Candidate {
                content_length: Some(19),
                ..c
            }),
            none
        );
        assert_eq!(
            check(Candidate {
                content_length: None,
                ..c
            }),
            yes
        );
        assert_eq!(
            check(Candidate {
                content_encoding: Some(b"br"),
                ..c
            }),
            none
        );
        assert_eq!(
            check(Candidate {
                content_type: Some(b"image/png"),
                ..c
            }),
            none
        );
        assert_eq!(
            check(Candidate {
                content_type: None,
                ..c
            }),
            none
        );
        let any = GzipConf {
            types: GzipTypes::Any,
            ..conf.clone()
        };
        assert!(
            verdict(
                &any,
                &Candidate {
                    content_type: None,
                    ..c
                },
                || true
            )
            .compress
        );
    }

    #[test]
    fn etags_weakened() {
        assert_eq!(weak_etag(b"\"abc\"").as_deref(), Some(&b"W/\"abc\""[..]));
        assert_eq!(weak_etag(b"W/\"abc\"").as_deref(), Some(&b"W/\"abc\""[..]));
        assert_eq!(weak_etag(b"abc"), None);
    }
}
