//! One HTTP/2 stream through the request pipeline. The stream's request head is given
//! to the pipeline as HTTP/1.1 (from [`super::request_head`]); the pipeline serves it as
//! it serves an HTTP/1 connection (virtual server, location, rewrite, `return`, static
//! files, error pages, the proxy). A proxied request talks to the stream itself
//! ([`H2Downstream`](crate::server::h2_downstream::H2Downstream)): its body from the
//! DATA frames, the response straight to HEADERS and DATA. Local answers go through an
//! in-memory pipe: the request's DATA go in (chunked when no `content-length`
//! announced the size) once the pipeline reads there, and its HTTP/1.1 response comes
//! back out, to the client as HEADERS and DATA frames.
//!
//! Memory per stream is bounded: the client may send `http2_body_preread_size` bytes
//! before the pipeline reads them (the stream window is given back only as bytes move
//! on), each direction of the pipe holds at most [`LANE`] bytes, and response bytes
//! are read from the pipe only as the client's window lets them out. A client that
//! never opens its window stalls the pipeline's writes, which end at `send_timeout`;
//! the stream is then reset and everything it held is freed.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};

use super::request_head::{self, BodyFraming as RequestBody};
use crate::config::Level;
use crate::http1::{BodyFraming, ChunkedScanner, Method, Parsed, ResponseHead};
use crate::net::buffers::Buf;
use crate::net::pipe::{pipe, PipeEnd};
use crate::net::{ClientInfo, Stream};
use crate::server::h2_downstream::{response_of, send_frames, Answered, H2Stream};
use crate::server::state::Runtime;

/// Bytes each direction of a stream's pipe holds at most.
pub(super) const LANE: usize = 32 * 1024;

/// What a stream needs from its connection.
pub(super) struct StreamCtx {
    /// The configuration when the stream began.
    pub(super) rt: Arc<Runtime>,
    pub(super) info: Arc<ClientInfo>,
    /// Streams on the connection so far, this one included (`$connection_requests`).
    pub(super) served: u32,
    /// When the connection was accepted (`keepalive_time`).
    pub(super) opened: tokio::time::Instant,
    /// `http2_chunk_size`: the largest DATA frame sent.
    pub(super) chunk_size: usize,
    /// How long the client's window may stay shut (`send_timeout`).
    pub(super) send_timeout: Duration,
}

/// How the response relay ended.
#[derive(Debug, PartialEq, Eq)]
enum Relayed {
    /// The whole response went out.
    Complete,
    /// The client reset the stream, or it was reset for a reason already logged.
    Aborted,
}

/// Serves one stream until its response is sent or it is reset.
pub(super) async fn serve(
    ctx: StreamCtx,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let (parts, body) = req.into_parts();
    let mut buf = Buf::head();
    let framing = match request_head::build(&parts, body.is_end_stream(), &mut buf) {
        Ok(f) => f,
        Err(e) => {
            crate::log::emit(
                Level::Info,
                Some(ctx.info.id),
                format_args!("{e}, client: {}", ctx.info.remote),
            );
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        }
    };
    let method = Method::from_token(parts.method.as_str().as_bytes());
    let h2 = H2Stream::new(
        (framing != RequestBody::None).then_some(body),
        respond,
        framing == RequestBody::Chunked,
        ctx.chunk_size,
        ctx.info.clone(),
    );
    let (outer, inner) = pipe(LANE);
    let pipeline = async {
        let mut inner = Stream::Pipe(Box::new(inner));
        crate::server::conn::serve_request(
            &ctx.rt,
            &mut inner,
            &ctx.info,
            &mut buf,
            ctx.served,
            ctx.opened,
            Some(&h2),
        )
        .await;
        // Dropping the pipeline's end ends the response.
    };
    let relay = async {
        let request_body = pump_body(&h2, &outer, framing);
        let response = relay_response(&outer, &h2, method, &ctx);
        tokio::pin!(request_body, response);
        let mut body_done = false;
        loop {
            tokio::select! {
                () = &mut request_body, if !body_done => body_done = true,
                r = &mut response => break r,
            }
        }
    };
    tokio::pin!(pipeline, relay);
    let mut pipeline_done = false;
    let relayed = loop {
        tokio::select! {
            () = &mut pipeline, if !pipeline_done => pipeline_done = true,
            r = &mut relay => break r,
        }
    };
    if relayed == Relayed::Complete && !pipeline_done {
        // Only its access log line is left to write; a request body the client did
        // not finish (the answer came first) ends here rather than at
        // client_body_timeout.
        outer.close_write();
        pipeline.await;
    }
}

/// Moves the request body from the client's DATA frames into the pipe, giving window
/// back as the pipeline takes the bytes; only once the pipeline reads there (a
/// proxied request takes the body from the stream itself).
async fn pump_body(h2: &H2Stream, to: &PipeEnd, framing: RequestBody) {
    if framing == RequestBody::None {
        return;
    }
    to.read_asked().await;
    let Some(mut body) = h2.take_body() else {
        to.close_write();
        return;
    };
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            // The client reset the stream: the pipeline sees the body end short.
            to.close_write();
            return;
        };
        let n = chunk.len();
        let written = if framing == RequestBody::Chunked && n > 0 {
            let mut size = Vec::with_capacity(12);
            crate::http1::write_chunk_header(&mut size, n);
            async {
                to.write_all(&size).await?;
                to.write_all(&chunk).await?;
                to.write_all(b"\r\n").await
            }
            .await
        } else {
            to.write_all(&chunk).await
        };
        if written.is_err() {
            // The pipeline answered without reading the whole body.
            return;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if framing == RequestBody::Chunked {
        let _ = to.write_all(b"0\r\n\r\n").await;
    }
}

/// What [`next_bytes`] found.
enum Read {
    Bytes,
    End,
    Reset,
}

/// Reads more of the pipeline's response into `buf`, unless the client resets the
/// stream first.
async fn next_bytes(
    from: &PipeEnd,
    buf: &mut BytesMut,
    mut reset: impl FnMut(&mut Context<'_>) -> Poll<()>,
) -> Read {
    loop {
        tokio::select! {
            _ = from.readable() => {
                buf.reserve(LANE);
                match from.try_read_buf(buf) {
                    Ok(0) => return Read::End,
                    Ok(_) => return Read::Bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Read::End,
                }
            }
            _ = std::future::poll_fn(|cx| reset(cx)) => return Read::Reset,
        }
    }
}

/// The pipeline's response as HEADERS and DATA frames, when it answers through the
/// pipe; else the proxy's outcome.
async fn relay_response(from: &PipeEnd, h2: &H2Stream, method: Method, ctx: &StreamCtx) -> Relayed {
    let mut buf = BytesMut::new();
    // The pipeline's first bytes, or its end (a proxied answer went out itself).
    match next_bytes(from, &mut buf, |cx| h2.poll_reset(cx)).await {
        Read::Bytes => {}
        Read::End => {
            return match h2.finish() {
                Answered::Complete => Relayed::Complete,
                Answered::Nothing | Answered::Unfinished | Answered::Relayed => Relayed::Aborted,
            };
        }
        Read::Reset => return Relayed::Aborted,
    }
    let Some(respond) = h2.take_respond() else {
        // The proxy answered already; nothing more can go out.
        return Relayed::Aborted;
    };
    // Boxed: a proxied stream never gets here, and its task stays small.
    Box::pin(relay_answer(from, h2, respond, buf, method, ctx)).await
}

/// Relays the pipeline's answer, whose first bytes are in `buf`.
async fn relay_answer(
    from: &PipeEnd,
    h2: &H2Stream,
    mut respond: SendResponse<Bytes>,
    mut buf: BytesMut,
    method: Method,
    ctx: &StreamCtx,
) -> Relayed {
    let mut head = ResponseHead::new();
    // The head, after any interim `100 Continue`.
    loop {
        match head.parse(&buf, method) {
            Ok(Parsed::Complete) if (100..200).contains(&head.status) => {
                let _ = buf.split_to(head.head_len);
                head = ResponseHead::new();
                continue;
            }
            Ok(Parsed::Complete) => break,
            Ok(_) => {}
            Err(_) => {
                respond.send_reset(Reason::INTERNAL_ERROR);
                return Relayed::Aborted;
            }
        }
        match next_bytes(from, &mut buf, |cx| respond.poll_reset(cx).map(|_| ())).await {
            Read::Bytes => {}
            // The pipeline closed without an answer (`return 444`, a failed head).
            Read::End => {
                respond.send_reset(Reason::CANCEL);
                return Relayed::Aborted;
            }
            Read::Reset => return Relayed::Aborted,
        }
    }
    let Some(response) = response_of(&head, &buf) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return Relayed::Aborted;
    };
    let framing = head.framing;
    let _ = buf.split_to(head.head_len);
    let no_body = matches!(framing, BodyFraming::None | BodyFraming::Length(0));
    let Ok(mut send) = respond.send_response(response, no_body) else {
        return Relayed::Aborted;
    };
    if no_body {
        return Relayed::Complete;
    }
    let mut body = BodySource {
        framing,
        left: match framing {
            BodyFraming::Length(n) => n,
            _ => u64::MAX,
        },
        // `add_trailer`'s fields end a chunked answer: they go as a trailing HEADERS.
        chunks: ChunkedScanner::new().keeping_trailer(),
        done: false,
    };
    let mut payload = BytesMut::new();
    body.decode(&mut buf, &mut payload);
    loop {
        if payload.is_empty() && !body.done {
            match next_bytes(from, &mut buf, |cx| send.poll_reset(cx).map(|_| ())).await {
                Read::Bytes => body.decode(&mut buf, &mut payload),
                Read::End if body.framing == BodyFraming::UntilClose => body.done = true,
                Read::End => {
                    // The pipeline gave up mid-body (upstream failed, send_timeout).
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Relayed::Aborted;
                }
                Read::Reset => return Relayed::Aborted,
            }
            continue;
        }
        let last = body.done;
        let trailer = if last {
            super::super::h2_downstream::trailer_fields(&body.chunks.take_trailer())
        } else {
            http::HeaderMap::new()
        };
        let sent = send_frames(
            &mut send,
            payload.split().freeze(),
            last && trailer.is_empty(),
            h2.chunk_size(),
            ctx.send_timeout,
            &ctx.info,
        )
        .await;
        if sent.is_err() {
            return Relayed::Aborted;
        }
        if last {
            if !trailer.is_empty() && send.send_trailers(trailer).is_err() {
                return Relayed::Aborted;
            }
            return Relayed::Complete;
        }
    }
}

/// The response body's payload out of the pipeline's HTTP/1 framing.
struct BodySource {
    framing: BodyFraming,
    /// Bytes of a `Length` body still to come.
    left: u64,
    chunks: ChunkedScanner,
    /// The whole payload has been decoded.
    done: bool,
}

impl BodySource {
    /// Moves the payload in `raw` to `payload`; framing bytes are dropped.
    fn decode(&mut self, raw: &mut BytesMut, payload: &mut BytesMut) {
        match self.framing {
            BodyFraming::Length(_) => {
                let n = (raw.len() as u64).min(self.left) as usize;
                payload.extend_from_slice(&raw.split_to(n));
                self.left -= n as u64;
                self.done = self.left == 0;
                raw.clear();
            }
            BodyFraming::Chunked => {
                let data = raw.split().freeze();
                match self
                    .chunks
                    .scan_payload(&data, |r| payload.extend_from_slice(&data[r]))
                {
                    Ok(crate::http1::ScanStep::Done { .. }) => self.done = true,
                    Ok(crate::http1::ScanStep::NeedMore) => {}
                    // Our own pipeline framed it: cannot happen; end the body.
                    Err(_) => self.done = true,
                }
            }
            BodyFraming::UntilClose => payload.extend_from_slice(&raw.split()),
            BodyFraming::None => self.done = true,
        }
    }
}
