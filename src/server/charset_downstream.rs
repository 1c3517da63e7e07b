//! The charset filter on proxied responses: a [`Downstream`] in front of the client's
//! that decides from the upstream head ([`super::charset::decide`]) whether the
//! `Content-Type` names a charset and whether the body is recoded, and recodes the
//! body piece by piece as the upstream sends it. A byte-for-byte recoding keeps the
//! upstream's length; one to or from utf-8 drops `Content-Length`, as nginx does, and
//! the body then goes chunked to an HTTP/1.1 client and ends by closing for an
//! HTTP/1.0 one.

use std::time::Duration;

use super::charset::{decide, Facts, Names, Recoder};
use super::gzip_downstream::Source;
use crate::config::charset::CharsetConf;
use crate::http1::{BodyFraming, Method, RequestHead, ResponseHead};
use crate::net::buffers::Buf;
use crate::net::io::IoFailure;
use crate::net::Stream;
use crate::proxy::{Downstream, ResponseOut, ResponseStarted};

/// The recoding of one response in progress.
#[derive(Debug)]
struct Recoding<'m> {
    recoder: Recoder<'m>,
    source: Source,
    finished: bool,
    /// The payload of the current piece, reused.
    payload: Vec<u8>,
    /// The recoded payload, reused.
    out: Vec<u8>,
}

/// A client side that names and recodes charsets as nginx's charset filter does.
#[derive(Debug)]
pub(super) struct CharsetDownstream<'m, D> {
    inner: D,
    conf: &'m CharsetConf,
    names: Names,
    /// Whether the upstream's `X-Accel-Charset` counts (not in `proxy_ignore_headers`).
    accel_charset: bool,
    active: Option<Recoding<'m>>,
}

impl<'m, D: Downstream> CharsetDownstream<'m, D> {
    /// Wraps `inner` with a location's settings and their names for this request.
    pub(super) fn new(inner: D, conf: &'m CharsetConf, names: Names, accel_charset: bool) -> Self {
        CharsetDownstream {
            inner,
            conf,
            names,
            accel_charset,
            active: None,
        }
    }

    /// The client side it wraps.
    pub(super) fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    async fn finish(&mut self) -> Result<(), IoFailure> {
        if let Some(r) = self.active.as_mut() {
            if r.finished {
                return Ok(());
            }
            r.finished = true;
        }
        self.inner.end_body().await
    }
}

impl<D: Downstream> Downstream for CharsetDownstream<'_, D> {
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
        let field = |name: &str| resp.field(name);
        // `X-Accel-Charset` is hidden from the client but read all the same.
        let accel = head
            .headers
            .iter()
            .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"x-accel-charset"))
            .map(|h| &buf[h.value.clone()])
            .filter(|_| self.accel_charset);
        let content_type = field("content-type");
        let decision = decide(
            self.conf,
            &self.names,
            &Facts {
                status: head.status,
                content_type: content_type.map(|(_, v)| v),
                encoded: field("content-encoding").is_some_and(|(_, v)| !v.is_empty()),
                accel_charset: accel,
            },
        );
        let (Some(new_type), Some((at, _))) = (&decision.content_type, content_type) else {
            return self.inner.start_response(req, resp, keep_alive, head_buf);
        };
        // The new value keeps the field's place.
        let mut replaced = resp.replaced.to_vec();
        match replaced.binary_search_by_key(&at, |(j, _)| *j) {
            Ok(k) => replaced[k].1 = new_type.clone().into_bytes(),
            Err(k) => replaced.insert(k, (at, new_type.clone().into_bytes())),
        }
        let Some(how) = decision.recoding.filter(|_| !resp.upgrade) else {
            let out = ResponseOut {
                replaced: &replaced,
                ..*resp
            };
            return self.inner.start_response(req, &out, keep_alive, head_buf);
        };
        let resized = how.changes_length();
        let mut changed: ResponseHead = head.clone();
        if resized {
            for h in &mut changed.headers {
                if buf[h.name.clone()].eq_ignore_ascii_case(b"content-length") {
                    h.hop_by_hop = true;
                }
            }
        }
        let is_head = req.method == Method::Head;
        // A chunked body loses its framing here and gets the client side's.
        if !is_head && (resized || head.framing == BodyFraming::Chunked) {
            changed.framing = BodyFraming::UntilClose;
        }
        let out = ResponseOut {
            head: &changed,
            replaced: &replaced,
            ..*resp
        };
        let started = self.inner.start_response(req, &out, keep_alive, head_buf);
        if !is_head {
            self.active = Some(Recoding {
                recoder: Recoder::new(how),
                source: Source::of(head.framing),
                finished: false,
                payload: Vec::new(),
                out: Vec::new(),
            });
        }
        started
    }

    async fn send_body(&mut self, data: &[u8]) -> Result<(), IoFailure> {
        let Some(r) = self.active.as_mut() else {
            return self.inner.send_body(data).await;
        };
        if r.finished {
            return Ok(());
        }
        let last = r.source.payload(data, &mut r.payload)?;
        r.out.clear();
        r.recoder.piece(&r.payload, &mut r.out);
        if !r.out.is_empty() {
            self.inner.send_body(&r.out).await?;
        }
        // A body that ends with a trailer is ended by `send_trailer`.
        if last && self.inner.trailer_head().is_none() {
            self.finish().await?;
        }
        Ok(())
    }

    async fn end_body(&mut self) -> Result<(), IoFailure> {
        self.finish().await
    }

    fn body_bytes(&self) -> u64 {
        self.inner.body_bytes()
    }

    fn trailer_head(&self) -> Option<&[u8]> {
        self.inner.trailer_head()
    }

    async fn send_trailer(&mut self, last_chunk: &[u8]) -> Result<(), IoFailure> {
        if let Some(r) = self.active.as_mut() {
            r.finished = true;
        }
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
