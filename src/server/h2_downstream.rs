//! The HTTP/2 client side of a forwarded request ([`Downstream`]): the proxy talks to
//! the client's h2 stream directly. The request body comes from the stream's DATA
//! frames (window given back as the proxy takes them), the response head goes out as
//! a HEADERS frame built from the upstream's parsed head (no HTTP/1 head is written
//! and parsed back), the body as DATA frames of at most `http2_chunk_size` bytes, as
//! the client's window lets them out.
//!
//! The stream's two halves live in an [`H2Stream`] shared with the HTTP/2 front end
//! (`super::h2`), which serves local answers (`return`, static files, error pages)
//! through an in-memory pipe instead: whichever side answers takes the response half,
//! and the front end watches it for the client's reset meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderName, HeaderValue};

use crate::config::Level;
use crate::http1::respond;
use crate::http1::{
    BodyFraming, ChunkedScanner, Method, Parsed, RequestHead, ResponseHead, ScanStep,
};
use crate::net::buffers::Buf;
use crate::net::io::IoFailure;
use crate::net::pace::Pace;
use crate::net::{ClientInfo, Stream};
use crate::proxy::{Downstream, ResponseOut, ResponseStarted};

/// Where the response half of a stream is.
#[derive(Debug)]
enum Respond {
    /// Nothing sent yet.
    Waiting(SendResponse<Bytes>),
    /// HEADERS sent, the body goes on.
    Sending(SendStream<Bytes>),
    /// Sending DATA right now (the half is out of the lock while it waits for window).
    Busy,
    /// The response ended (END_STREAM sent) or the stream was reset.
    Ended,
    /// The front end took it to relay a pipeline answer.
    Taken,
}

#[derive(Debug)]
struct Sides {
    body: Option<RecvStream>,
    respond: Respond,
}

/// How the response half of a stream ended up, when the pipeline is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// Nothing was sent: the pipeline gave no answer (`return 444`).
    Nothing,
    /// HEADERS went out but the body did not end (the upstream failed mid-body).
    Unfinished,
    /// The whole response went out through [`H2Downstream`].
    Complete,
    /// The front end relays the answer itself.
    Relayed,
}

/// One h2 stream's request body and response halves, shared by the front end and the
/// proxy (both on the stream's task; the lock is never held across a wait).
#[derive(Debug)]
pub(super) struct H2Stream {
    sides: Mutex<Sides>,
    /// The request head announces a chunked body (no `content-length`): the body is
    /// handed to the proxy as HTTP/1 chunks.
    chunked_body: bool,
    /// `http2_chunk_size`: the largest DATA frame sent; the address's default
    /// server's until the pipeline found the location.
    chunk_size: AtomicUsize,
    info: Arc<ClientInfo>,
}

impl H2Stream {
    /// The halves of a stream; `body`: `None` when HEADERS ended the stream.
    pub(super) fn new(
        body: Option<RecvStream>,
        respond: SendResponse<Bytes>,
        chunked_body: bool,
        chunk_size: usize,
        info: Arc<ClientInfo>,
    ) -> H2Stream {
        H2Stream {
            sides: Mutex::new(Sides {
                body,
                respond: Respond::Waiting(respond),
            }),
            chunked_body,
            chunk_size: AtomicUsize::new(chunk_size.max(1)),
            info,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sides> {
        self.sides.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http2_chunk_size` of the location that serves the stream.
    pub(super) fn set_chunk_size(&self, n: usize) {
        self.chunk_size.store(n.max(1), Ordering::Relaxed);
    }

    /// The largest DATA frame to send.
    pub(super) fn chunk_size(&self) -> usize {
        self.chunk_size.load(Ordering::Relaxed)
    }

    /// The request body, for the pipe; `None` when the proxy took it already.
    pub(super) fn take_body(&self) -> Option<RecvStream> {
        self.lock().body.take()
    }

    /// The response half, for relaying the pipeline's answer; `None` when the proxy
    /// answered already.
    pub(super) fn take_respond(&self) -> Option<SendResponse<Bytes>> {
        let mut s = self.lock();
        match std::mem::replace(&mut s.respond, Respond::Taken) {
            Respond::Waiting(r) => Some(r),
            other => {
                s.respond = other;
                None
            }
        }
    }

    /// Ready when the client reset the stream (while the response half is here).
    pub(super) fn poll_reset(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.lock().respond {
            Respond::Waiting(r) => r.poll_reset(cx).map(|_| ()),
            Respond::Sending(s) => s.poll_reset(cx).map(|_| ()),
            Respond::Busy | Respond::Ended | Respond::Taken => Poll::Pending,
        }
    }

    /// What became of the response once the pipeline is done; an unfinished or absent
    /// answer resets the stream (INTERNAL_ERROR, CANCEL), as an HTTP/1 client would
    /// see the connection close.
    pub(super) fn finish(&self) -> Answered {
        let mut s = self.lock();
        match std::mem::replace(&mut s.respond, Respond::Ended) {
            Respond::Waiting(mut r) => {
                r.send_reset(Reason::CANCEL);
                Answered::Nothing
            }
            Respond::Sending(mut st) => {
                st.send_reset(Reason::INTERNAL_ERROR);
                Answered::Unfinished
            }
            Respond::Busy => Answered::Unfinished,
            Respond::Ended => Answered::Complete,
            Respond::Taken => {
                s.respond = Respond::Taken;
                Answered::Relayed
            }
        }
    }

    /// Sends HEADERS; `end`: no body follows.
    fn send_head(&self, resp: http::Response<()>, end: bool) -> Result<(), IoFailure> {
        let mut s = self.lock();
        let Respond::Waiting(r) = &mut s.respond else {
            return Err(IoFailure::Closed);
        };
        match r.send_response(resp, end) {
            Ok(send) => {
                s.respond = if end {
                    Respond::Ended
                } else {
                    Respond::Sending(send)
                };
                Ok(())
            }
            Err(_) => {
                s.respond = Respond::Ended;
                Err(IoFailure::Closed)
            }
        }
    }

    /// Sends `fields` as the trailing HEADERS, ending the stream.
    fn send_trailers(&self, fields: http::HeaderMap) -> Result<(), IoFailure> {
        let mut s = self.lock();
        let Respond::Sending(send) = &mut s.respond else {
            return Err(IoFailure::Closed);
        };
        let r = send.send_trailers(fields).map_err(|_| IoFailure::Closed);
        s.respond = Respond::Ended;
        r
    }

    /// Sends `data` as DATA frames after HEADERS; `end`: the last of the body.
    async fn send_data(&self, data: Bytes, end: bool, limit: Duration) -> Result<(), IoFailure> {
        let mut send = {
            let mut s = self.lock();
            match std::mem::replace(&mut s.respond, Respond::Busy) {
                Respond::Sending(send) => send,
                other => {
                    s.respond = other;
                    return Err(IoFailure::Closed);
                }
            }
        };
        let r = send_frames(&mut send, data, end, self.chunk_size(), limit, &self.info).await;
        self.lock().respond = match (&r, end) {
            (Ok(()), false) => Respond::Sending(send),
            _ => Respond::Ended,
        };
        r
    }
}

/// Sends `data` on `send` in frames of at most `chunk_size` bytes, each as the
/// client's window allows, waiting at most `limit` for window each time (then the
/// stream is reset, as nginx's `send_timeout` closes a connection); `end`: END_STREAM
/// on the last frame.
pub(super) async fn send_frames(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    chunk_size: usize,
    limit: Duration,
    info: &ClientInfo,
) -> Result<(), IoFailure> {
    if data.is_empty() {
        return if end {
            send.send_data(data, true).map_err(|_| IoFailure::Closed)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        let want = data.len().min(chunk_size);
        send.reserve_capacity(want);
        let granted = tokio::time::timeout(limit, async {
            loop {
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(0)) => continue,
                    Some(Ok(n)) => return Some(n),
                    _ => return None,
                }
            }
        })
        .await;
        let n = match granted {
            Ok(Some(n)) => n.min(want),
            Ok(None) => return Err(IoFailure::Closed),
            Err(_) => {
                crate::log::emit(
                    Level::Info,
                    Some(info.id),
                    format_args!(
                        "client timed out (110: Connection timed out) while sending response to client, client: {}",
                        info.remote
                    ),
                );
                send.send_reset(Reason::CANCEL);
                return Err(IoFailure::Timeout);
            }
        };
        let frame = data.split_to(n);
        let last = end && data.is_empty();
        send.send_data(frame, last).map_err(|_| IoFailure::Closed)?;
    }
    Ok(())
}

/// Trailer lines (`Name: value\r\n` each; a last-chunk line is skipped) as HTTP/2 fields,
/// names lower case; a line that makes no field is left out.
pub(super) fn trailer_fields(lines: &[u8]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(&line[..colon].to_ascii_lowercase());
        let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (name, value) {
            map.append(n, v);
        }
    }
    map
}

/// Fields of an HTTP/1 response that have no place in HTTP/2 (RFC 9113 §8.2.2).
fn connection_specific(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// Adds a field to an h2 response head; one HTTP/2 cannot carry (a connection-specific
/// one, a name that is no token) is left out, as nginx leaves out what it cannot encode.
pub(super) fn push_field(headers: &mut http::HeaderMap, name: &[u8], value: &[u8]) {
    if connection_specific(name) {
        return;
    }
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        headers.append(name, value);
    }
}

/// An h2 response head with `status` and the fields of an HTTP/1 `head` parsed from
/// `buf`; `None` for a status HTTP/2 cannot carry.
pub(super) fn response_of(head: &ResponseHead, buf: &[u8]) -> Option<http::Response<()>> {
    let mut r = http::Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(head.status).ok()?;
    for h in &head.headers {
        if !h.hop_by_hop {
            push_field(r.headers_mut(), &buf[h.name.clone()], &buf[h.value.clone()]);
        }
    }
    Some(r)
}

/// The client side of one proxied request on an h2 stream.
#[derive(Debug)]
pub(super) struct H2Downstream<'s> {
    stream: &'s H2Stream,
    /// The response head, until the first body bytes (or the end) go out.
    head: Option<http::Response<()>>,
    /// The head says no body follows: HEADERS end the stream.
    no_body: bool,
    /// A chunked upstream body, decoded to its payload.
    dechunk: Option<ChunkedScanner>,
    /// A close-delimited upstream body: counted as the HTTP/1 chunks it would be.
    until_close: bool,
    /// Bytes of a `Length` body still to come.
    left: Option<u64>,
    /// END_STREAM went out.
    ended: bool,
    /// Request body bytes received and not yet handed to the proxy.
    incoming: BytesMut,
    /// The request body's end was handed over.
    body_end: bool,
    /// Body bytes counted for `$body_bytes_sent`.
    body_bytes: u64,
    /// `send_timeout`: how long the client's window may stay shut.
    send_timeout: Duration,
    pace: Option<Pace>,
    /// The status an error page is answered with, whatever the upstream said.
    status: Option<u16>,
    /// Fields an error page keeps from the response it replaces.
    kept_fields: &'s [(&'static str, Vec<u8>)],
    /// `add_header` fields for ferrolb's own error page.
    error_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The response head as HTTP/1 text, when the access log wants it.
    sent_head: Option<Vec<u8>>,
    /// The head as HTTP/1 text, when `add_trailer`'s fields end the body (a
    /// trailing HEADERS): END_STREAM waits for them.
    trailer_head: Option<Vec<u8>>,
}

impl<'s> H2Downstream<'s> {
    /// The client side over `stream`; the client's window may stay shut
    /// `send_timeout` at a time.
    pub(super) fn new(stream: &'s H2Stream, send_timeout: Duration) -> Self {
        H2Downstream {
            stream,
            head: None,
            no_body: false,
            dechunk: None,
            until_close: false,
            left: None,
            ended: false,
            incoming: BytesMut::new(),
            body_end: false,
            body_bytes: 0,
            send_timeout,
            pace: None,
            status: None,
            kept_fields: &[],
            error_fields: Vec::new(),
            sent_head: None,
            trailer_head: None,
        }
    }

    /// Keeps the response head as HTTP/1 text, for [`H2Downstream::take_sent_head`].
    pub(super) fn keeping_head(mut self, keep: bool) -> Self {
        self.sent_head = keep.then(Vec::new);
        self
    }

    /// The response head sent, as HTTP/1 text; empty when not asked for.
    pub(super) fn take_sent_head(&mut self) -> Vec<u8> {
        self.sent_head.take().unwrap_or_default()
    }

    /// Paces the response's DATA (`limit_rate`, `limit_rate_after`).
    pub(super) fn paced(mut self, pace: Option<Pace>) -> Self {
        self.pace = pace;
        self
    }

    /// An error page served by proxying: the response gets `status` (when set) and
    /// `kept_fields`.
    pub(super) fn for_error_page(
        mut self,
        status: Option<u16>,
        kept_fields: &'s [(&'static str, Vec<u8>)],
    ) -> Self {
        self.status = status;
        self.kept_fields = kept_fields;
        self
    }

    /// Sends the pending head, if any.
    fn flush_head(&mut self, end: bool) -> Result<(), IoFailure> {
        match self.head.take() {
            Some(h) => self.stream.send_head(h, end),
            None => Ok(()),
        }
    }

    /// Sends body payload, paced when `limit_rate` applies; `end`: the stream ends
    /// with it.
    async fn send_payload(&mut self, mut data: Bytes, end: bool) -> Result<(), IoFailure> {
        let Some(pace) = &mut self.pace else {
            return self.stream.send_data(data, end, self.send_timeout).await;
        };
        if data.is_empty() {
            return self.stream.send_data(data, end, self.send_timeout).await;
        }
        while !data.is_empty() {
            let n = usize::try_from(pace.allowance().await)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let part = data.split_to(n);
            let last = end && data.is_empty();
            self.stream.send_data(part, last, self.send_timeout).await?;
            pace.sent(n as u64);
        }
        Ok(())
    }
}

/// The length of a chunk-size line for `n` bytes plus the CRLF after the data.
fn chunk_overhead(n: usize) -> u64 {
    let hex_digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    u64::from(hex_digits) + 4
}

impl H2Downstream<'_> {
    /// Takes what the client's stream gave next into `incoming`: a DATA frame (framed
    /// as a chunk when the body is announced as chunked, its window given back), or
    /// the end of the body.
    fn take_frame(
        &mut self,
        next: Option<Result<bytes::Bytes, h2::Error>>,
    ) -> Result<(), IoFailure> {
        match next {
            Some(Ok(data)) => {
                let n = data.len();
                if n == 0 {
                    return Ok(());
                }
                if self.stream.chunked_body {
                    let mut size = Vec::with_capacity(12);
                    crate::http1::write_chunk_header(&mut size, n);
                    self.incoming.extend_from_slice(&size);
                    self.incoming.extend_from_slice(&data);
                    self.incoming.extend_from_slice(b"\r\n");
                } else {
                    self.incoming.extend_from_slice(&data);
                }
                if let Some(b) = &mut self.stream.lock().body {
                    let _ = b.flow_control().release_capacity(n);
                }
                Ok(())
            }
            // The client reset the stream.
            Some(Err(_)) => Err(IoFailure::Closed),
            None => {
                self.body_end = true;
                if self.stream.chunked_body {
                    self.incoming.extend_from_slice(b"0\r\n\r\n");
                }
                Ok(())
            }
        }
    }
}

impl Downstream for H2Downstream<'_> {
    async fn read_body(
        &mut self,
        buf: &mut Vec<u8>,
        want: usize,
        limit: Duration,
    ) -> Result<usize, IoFailure> {
        while self.incoming.is_empty() {
            if self.body_end {
                return Err(IoFailure::Closed);
            }
            let next = tokio::time::timeout(
                limit,
                std::future::poll_fn(|cx| match &mut self.stream.lock().body {
                    Some(b) => b.poll_data(cx),
                    None => Poll::Ready(None),
                }),
            )
            .await
            .map_err(|_| IoFailure::Timeout)?;
            self.take_frame(next)?;
        }
        // DATA frames already received go on with it, as nginx reads what has come
        // (one chunk upstream for them all, when the body is streamed).
        while self.incoming.len() < want && !self.body_end {
            let ready = std::future::poll_fn(|cx| {
                Poll::Ready(match &mut self.stream.lock().body {
                    Some(b) => match b.poll_data(cx) {
                        Poll::Ready(next) => Some(next),
                        Poll::Pending => None,
                    },
                    None => Some(None),
                })
            })
            .await;
            match ready {
                Some(next) => self.take_frame(next)?,
                None => break,
            }
        }
        let n = want.min(self.incoming.len());
        buf.extend_from_slice(&self.incoming.split_to(n));
        Ok(n)
    }

    async fn gone(&mut self) {
        std::future::poll_fn(|cx| self.stream.poll_reset(cx)).await;
    }

    async fn send_continue(&mut self) -> Result<(), IoFailure> {
        // HTTP/2 clients wait for no interim answer; the pipe path drops it too.
        Ok(())
    }

    async fn send_error(
        &mut self,
        req: &RequestHead,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u32>,
    ) -> Result<u64, IoFailure> {
        // A rare path: ferrolb's own page is written as HTTP/1 and read back.
        let mut out = Buf::head();
        respond::error_page_retry_after(
            &mut out,
            status,
            keep_alive,
            false,
            req.method == Method::Head,
            retry_after,
        );
        let mut head = ResponseHead::new();
        let Ok(Parsed::Complete) = head.parse(&out, req.method) else {
            return Err(IoFailure::Closed);
        };
        let Some(mut resp) = response_of(&head, &out) else {
            return Err(IoFailure::Closed);
        };
        let mut fields_len = 0;
        for (name, value) in &self.error_fields {
            push_field(resp.headers_mut(), name, value);
            fields_len += name.len() + value.len() + 4;
        }
        if let Some(kept) = &mut self.sent_head {
            kept.clear();
            kept.extend_from_slice(&out[..head.head_len - 2]);
            for (name, value) in &self.error_fields {
                kept.extend_from_slice(name);
                kept.extend_from_slice(b": ");
                kept.extend_from_slice(value);
                kept.extend_from_slice(b"\r\n");
            }
            kept.extend_from_slice(b"\r\n");
        }
        let body = Bytes::copy_from_slice(&out[head.head_len..]);
        self.stream.send_head(resp, body.is_empty())?;
        if !body.is_empty() {
            self.stream.send_data(body, true, self.send_timeout).await?;
        }
        Ok((out.len() + fields_len) as u64)
    }

    fn start_response(
        &mut self,
        req: &RequestHead,
        resp: &ResponseOut<'_>,
        keep_alive: bool,
        _head_buf: Buf,
    ) -> ResponseStarted {
        let head = resp.head;
        let chunked = head.framing == BodyFraming::Chunked;
        self.until_close = head.framing == BodyFraming::UntilClose;
        self.dechunk = chunked.then(ChunkedScanner::new);
        self.no_body = matches!(head.framing, BodyFraming::None | BodyFraming::Length(0));
        self.left = match head.framing {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let http10_client = req.minor_version == 0;
        let keep_alive = keep_alive && !((self.until_close || chunked) && http10_client);
        let status = self.status.unwrap_or(head.status);
        let reason_len = match self.status {
            Some(s) => respond::reason(s).len(),
            None => head.reason(resp.buf).len(),
        };
        let mut h = http::Response::new(());
        *h.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let fields = h.headers_mut();
        // `$bytes_sent` counts the head as the HTTP/1 head of the same response.
        let mut head_bytes = "HTTP/1.1 200 \r\n".len() + reason_len;
        // `add_trailer` applies: the body ends with a trailing HEADERS.
        let trailer =
            resp.trailer && !self.no_body && !resp.upgrade && !matches!(status, 204 | 304);
        let keeping = self.sent_head.is_some();
        let text = (keeping || trailer).then(|| self.sent_head.take().unwrap_or_default());
        let mut text = text.map(|mut t| {
            t.clear();
            t.extend_from_slice(b"HTTP/1.1 ");
            respond::push_status_code(&mut t, status);
            t.push(b' ');
            match self.status {
                Some(s) => t.extend_from_slice(respond::reason(s).as_bytes()),
                None => t.extend_from_slice(head.reason(resp.buf)),
            }
            t.extend_from_slice(b"\r\n");
            t
        });
        let mut add = |name: &[u8], value: &[u8]| {
            push_field(fields, name, value);
            head_bytes += name.len() + value.len() + 4;
            if let Some(t) = &mut text {
                t.extend_from_slice(name);
                t.extend_from_slice(b": ");
                t.extend_from_slice(value);
                t.extend_from_slice(b"\r\n");
            }
        };
        let passes = |name: &[u8]| {
            head.headers
                .iter()
                .any(|h| !h.hop_by_hop && resp.buf[h.name.clone()].eq_ignore_ascii_case(name))
        };
        if !passes(b"server") {
            add(b"Server", b"ferrolb");
        }
        if !passes(b"date") {
            let mut date = Vec::with_capacity(32);
            respond::write_http_date(&mut date);
            add(b"Date", &date);
        }
        for (i, f) in head.headers.iter().enumerate() {
            if !f.hop_by_hop {
                add(&resp.buf[f.name.clone()], resp.value(i));
            }
        }
        let own_type = head.header_value(resp.buf, "content-type").is_some();
        let kept = self
            .kept_fields
            .iter()
            .filter(|(n, _)| !(own_type && n.eq_ignore_ascii_case("content-type")))
            .map(|(n, v)| (n.as_bytes(), &v[..]));
        for (name, value) in resp.extra.iter().copied().chain(kept) {
            add(name, value);
        }
        // The HTTP/1 head's framing and connection lines.
        if chunked || self.until_close {
            head_bytes += "Transfer-Encoding: chunked\r\n".len();
        }
        head_bytes += if keep_alive {
            "Connection: keep-alive\r\n".len()
        } else {
            "Connection: close\r\n".len()
        };
        head_bytes += 2;
        if let Some(mut t) = text {
            t.extend_from_slice(b"\r\n");
            if trailer {
                self.trailer_head = Some(t.clone());
            }
            if keeping {
                self.sent_head = Some(t);
            }
        }
        if let Some(p) = &mut self.pace {
            p.sent(head_bytes as u64);
        }
        self.head = Some(h);
        ResponseStarted {
            head_bytes: head_bytes as u64,
            keep_alive,
        }
    }

    async fn send_body(&mut self, data: &[u8]) -> Result<(), IoFailure> {
        if self.ended {
            return Ok(());
        }
        self.body_bytes += data.len() as u64;
        if self.until_close && !data.is_empty() {
            self.body_bytes += chunk_overhead(data.len());
        }
        // The payload, and whether it completes the body (the stream then ends with
        // it: HTTP/1 framing has no end marker the proxy would send separately).
        let (payload, end) = match (&mut self.dechunk, &mut self.left) {
            (Some(sc), _) => {
                let mut payload = BytesMut::with_capacity(data.len());
                let step = sc.scan_payload(data, |r| payload.extend_from_slice(&data[r]));
                let end = matches!(step, Ok(ScanStep::Done { .. }) | Err(_));
                (payload.freeze(), end)
            }
            (None, Some(left)) => {
                let n = (data.len() as u64).min(*left) as usize;
                *left -= n as u64;
                (Bytes::copy_from_slice(&data[..n]), *left == 0)
            }
            (None, None) => (Bytes::copy_from_slice(data), self.no_body),
        };
        // With a trailer to come, the stream ends with it instead.
        let fin = end && self.trailer_head.is_none();
        if self.head.is_some() {
            self.flush_head(fin && payload.is_empty())?;
            if end && payload.is_empty() {
                self.ended = true;
                return Ok(());
            }
        }
        if payload.is_empty() && !end {
            return Ok(());
        }
        self.ended = end;
        if payload.is_empty() && !fin {
            return Ok(());
        }
        self.send_payload(payload, fin).await
    }

    async fn end_body(&mut self) -> Result<(), IoFailure> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if self.head.is_some() {
            self.flush_head(self.no_body)?;
            if self.no_body {
                return Ok(());
            }
        }
        if self.until_close {
            self.body_bytes += "0\r\n\r\n".len() as u64;
        }
        if self.trailer_head.is_some() {
            // `send_trailer` ends the stream.
            return Ok(());
        }
        self.stream
            .send_data(Bytes::new(), true, self.send_timeout)
            .await
    }

    fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    fn trailer_head(&self) -> Option<&[u8]> {
        self.trailer_head.as_deref()
    }

    async fn send_trailer(&mut self, last_chunk: &[u8]) -> Result<(), IoFailure> {
        self.trailer_head = None;
        self.flush_head(false)?;
        let fields = trailer_fields(last_chunk);
        if fields.is_empty() {
            return self
                .stream
                .send_data(Bytes::new(), true, self.send_timeout)
                .await;
        }
        self.stream.send_trailers(fields)
    }

    fn error_fields(&mut self, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        self.error_fields = fields;
    }

    fn limit_rate(&mut self, rate: u64) {
        self.pace = match &self.pace {
            Some(p) => p.at_rate(rate),
            None => Pace::new(rate, 0),
        };
    }

    async fn tunnel(
        &mut self,
        _upstream: &mut Stream,
        _initial: &[u8],
        _idle: Duration,
        _upstream_send: Duration,
    ) -> Result<u64, IoFailure> {
        // An h2 request never asks for an upgrade (the front end refuses `upgrade`).
        Err(IoFailure::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_overhead_counts_hex_digits_and_crlfs() {
        assert_eq!(chunk_overhead(1), 5);
        assert_eq!(chunk_overhead(15), 5);
        assert_eq!(chunk_overhead(16), 6);
        assert_eq!(chunk_overhead(0x1000), 8);
    }

    #[test]
    fn connection_fields_and_bad_names_are_left_out() {
        let mut h = http::HeaderMap::new();
        push_field(&mut h, b"Connection", b"close");
        push_field(&mut h, b"Transfer-Encoding", b"chunked");
        push_field(&mut h, b"bad name", b"x");
        push_field(&mut h, b"X-Ok", b"1");
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-ok").map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
}
