//! Dynamic gzip of proxied responses: a [`Downstream`] in front of the client's that
//! decides from the upstream head whether to compress ([`super::gzip::verdict`]),
//! rewrites the head as nginx's gzip filter does (`Content-Encoding: gzip`, no
//! `Content-Length` or `Accept-Ranges`, a weak `ETag`, `Vary: Accept-Encoding`), and
//! compresses the body piece by piece as the upstream sends it, flushing after each
//! piece so a streamed response reaches the client as it comes. The body then has no
//! length: chunked for an HTTP/1.1 client, ended by closing for an HTTP/1.0 one (the
//! client side frames a close-delimited body that way).

use std::time::Duration;

use super::gzip::{verdict, weak_etag, Candidate, GzipEncoder};
use super::gzip_ok::{ClientGzip, ResponseFacts};
use crate::config::GzipConf;
use crate::http1::{BodyFraming, ChunkedScanner, Method, RequestHead, ResponseHead, ScanStep};
use crate::net::buffers::Buf;
use crate::net::io::IoFailure;
use crate::net::Stream;
use crate::proxy::{Downstream, ResponseOut, ResponseStarted};

/// How the upstream body arrives, for finding its end and its payload.
#[derive(Debug)]
pub(super) enum Source {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    /// Chunked: the framing is removed before compressing.
    Chunked(ChunkedScanner),
    /// Ends when the relay calls `end_body` (close-delimited).
    UntilEnd,
}

impl Source {
    /// How a body of `framing` arrives.
    pub(super) fn of(framing: BodyFraming) -> Source {
        match framing {
            BodyFraming::Length(n) => Source::Length(n),
            BodyFraming::Chunked => Source::Chunked(ChunkedScanner::new()),
            _ => Source::UntilEnd,
        }
    }

    /// The payload in `data` (the next bytes as the upstream framed them), into
    /// `payload`; true when the body is complete.
    pub(super) fn payload(
        &mut self,
        data: &[u8],
        payload: &mut Vec<u8>,
    ) -> Result<bool, IoFailure> {
        payload.clear();
        Ok(match self {
            Source::Length(left) => {
                let take = (data.len() as u64).min(*left) as usize;
                *left -= take as u64;
                payload.extend_from_slice(&data[..take]);
                *left == 0
            }
            Source::Chunked(sc) => {
                let step = sc
                    .scan_payload(data, |r| payload.extend_from_slice(&data[r]))
                    .map_err(|_| IoFailure::Closed)?;
                matches!(step, ScanStep::Done { .. })
            }
            Source::UntilEnd => {
                payload.extend_from_slice(data);
                false
            }
        })
    }
}

/// The compression of one response in progress.
#[derive(Debug)]
struct Compressing {
    encoder: GzipEncoder,
    source: Source,
    finished: bool,
    /// The payload of a chunked piece, reused.
    payload: Vec<u8>,
}

/// A client side that gzips the response when nginx would.
#[derive(Debug)]
pub struct GzipDownstream<'c, D> {
    inner: D,
    conf: &'c GzipConf,
    client: ClientGzip,
    active: Option<Compressing>,
    /// `$gzip_ratio` once the body is done.
    ratio: Option<String>,
}

impl<'c, D: Downstream> GzipDownstream<'c, D> {
    /// Wraps `inner`; `client` is the request's part of the decision.
    pub(super) fn new(inner: D, conf: &'c GzipConf, client: ClientGzip) -> Self {
        GzipDownstream {
            inner,
            conf,
            client,
            active: None,
            ratio: None,
        }
    }

    /// The client side it wraps.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// `$gzip_ratio` of the response, if it was compressed to the end.
    pub fn ratio(&self) -> Option<&str> {
        self.ratio.as_deref()
    }

    /// Ends the member and the body.
    async fn finish(&mut self) -> Result<(), IoFailure> {
        let Some(c) = self.active.as_mut().filter(|c| !c.finished) else {
            return Ok(());
        };
        c.finished = true;
        let tail = c.encoder.finish().map_err(|e| deflate_failure(&e))?;
        self.inner.send_body(tail).await?;
        self.ratio = c.encoder.ratio();
        self.inner.end_body().await
    }
}

fn deflate_failure(e: &super::gzip::DeflateError) -> IoFailure {
    crate::log::emit(crate::config::Level::Alert, None, format_args!("{e}"));
    IoFailure::Closed
}

impl<D: Downstream> Downstream for GzipDownstream<'_, D> {
    async fn read_body(
        &mut self,
        buf: &mut Vec<u8>,
        want: usize,
        limit: Duration,
    ) -> Result<usize, IoFailure> {
        self.inner.read_body(buf, want, limit).await
    }

    async fn gone(&mut self) {
        self.inner.gone().await;
    }

    async fn send_continue(&mut self) -> Result<(), IoFailure> {
        self.inner.send_continue().await
    }

    async fn send_error(
        &mut self,
        req: &RequestHead,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u32>,
    ) -> Result<u64, IoFailure> {
        self.inner
            .send_error(req, status, keep_alive, retry_after)
            .await
    }

    fn start_response(
        &mut self,
        req: &RequestHead,
        resp: &ResponseOut<'_>,
        keep_alive: bool,
        head_buf: Buf,
    ) -> ResponseStarted {
        let head = resp.head;
        let buf = resp.buf;
        let field = |name: &str| resp.field(name).map(|(_, v)| v);
        let is_head = req.method == Method::Head;
        let content_length = match head.framing {
            BodyFraming::Length(n) => Some(n),
            // A HEAD's answer names the length a GET's body would have.
            BodyFraming::None if is_head => field("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse().ok()),
            _ => None,
        };
        let candidate = Candidate {
            status: head.status,
            header_only: resp.upgrade || (head.framing == BodyFraming::None && !is_head),
            content_encoding: field("content-encoding"),
            content_length,
            content_type: field("content-type"),
        };
        let facts = ResponseFacts {
            cache_control: field("cache-control"),
            expires: field("expires").map(|v| {
                crate::http1::dates::parse_http_date(v)
                    .is_some_and(|t| t < crate::http1::dates::now_secs())
            }),
            last_modified: field("last-modified").is_some(),
            etag: field("etag").is_some(),
        };
        let v = verdict(self.conf, &candidate, || {
            self.client.allows(self.conf, &facts)
        });
        if !v.compress && !v.vary {
            return self.inner.start_response(req, resp, keep_alive, head_buf);
        }
        let mut extra: Vec<(&[u8], &[u8])> = resp.extra.to_vec();
        if v.vary {
            extra.push((b"Vary", b"Accept-Encoding"));
        }
        if !v.compress {
            let out = ResponseOut {
                extra: &extra,
                ..*resp
            };
            return self.inner.start_response(req, &out, keep_alive, head_buf);
        }
        let mut changed: ResponseHead = head.clone();
        let mut etag = None;
        for h in &mut changed.headers {
            let name = &buf[h.name.clone()];
            if h.hop_by_hop {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"accept-ranges")
            {
                h.hop_by_hop = true;
            } else if name.eq_ignore_ascii_case(b"etag") {
                h.hop_by_hop = true;
                etag = weak_etag(&buf[h.value.clone()]);
            }
        }
        // The compressed body has no known length; a HEAD's answer stays without one.
        if !is_head {
            changed.framing = BodyFraming::UntilClose;
        }
        if let Some(e) = &etag {
            extra.push((b"ETag", e));
        }
        extra.push((b"Content-Encoding", b"gzip"));
        let out = ResponseOut {
            head: &changed,
            extra: &extra,
            ..*resp
        };
        let started = self.inner.start_response(req, &out, keep_alive, head_buf);
        if is_head {
            return started;
        }
        self.active = Some(Compressing {
            encoder: GzipEncoder::new(self.conf.level),
            source: Source::of(head.framing),
            finished: false,
            payload: Vec::new(),
        });
        started
    }

    async fn send_body(&mut self, data: &[u8]) -> Result<(), IoFailure> {
        let Some(c) = self.active.as_mut() else {
            return self.inner.send_body(data).await;
        };
        if c.finished {
            return Ok(());
        }
        let last = c.source.payload(data, &mut c.payload)?;
        let payload = &c.payload[..];
        if !payload.is_empty() {
            // A flush per upstream read, as nginx's gzip filter does for an unbuffered
            // upstream: what arrived can be decoded at once.
            let out = c
                .encoder
                .piece(payload, !last)
                .map_err(|e| deflate_failure(&e))?;
            if !out.is_empty() {
                self.inner.send_body(out).await?;
            }
        }
        if last {
            self.finish().await?;
        }
        Ok(())
    }

    async fn end_body(&mut self) -> Result<(), IoFailure> {
        if self.active.is_some() {
            self.finish().await
        } else {
            self.inner.end_body().await
        }
    }

    fn body_bytes(&self) -> u64 {
        self.inner.body_bytes()
    }

    fn trailer_head(&self) -> Option<&[u8]> {
        self.inner.trailer_head()
    }

    async fn send_trailer(&mut self, last_chunk: &[u8]) -> Result<(), IoFailure> {
        self.inner.send_trailer(last_chunk).await
    }

    fn limit_rate(&mut self, rate: u64) {
        self.inner.limit_rate(rate);
    }

    fn error_fields(&mut self, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        self.inner.error_fields(fields);
    }

    async fn tunnel(
        &mut self,
        upstream: &mut Stream,
        initial: &[u8],
        idle: Duration,
        upstream_send: Duration,
    ) -> Result<u64, IoFailure> {
        self.inner
            .tunnel(upstream, initial, idle, upstream_send)
            .await
    }
}
