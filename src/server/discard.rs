//! nginx's discarding of a request body that the answer does not use (a `return`, a
//! static file, a page or redirect ferrolb makes itself): the body is read and
//! dropped, chunks decoded with the codec's limits, so the connection can carry the
//! next request, as `ngx_http_discard_request_body` does.
//!
//! Two steps, as nginx takes them. Before the answer, the part of the body already in
//! the buffer is looked at ([`buffered`], [`prepare`]): a chunked body whose framing is
//! invalid there is answered with 400 instead, and a client waiting for `100 Continue`
//! is told to send (nginx says it when it discards too). After the answer, the rest is
//! read and dropped ([`rest`]): each read waits `lingering_timeout` at most, all of them
//! `lingering_time`; a client that stops sending or sends invalid framing has its
//! connection closed, one that finished its body keeps it.

use std::time::Duration;

use crate::config::Lingering;
use crate::http1::{BodyRest, RequestHead, ScanStep};
use crate::net::buffers::{Buf, HEAD_BUF};
use crate::net::io;
use crate::net::{ClientInfo, Stream};

/// Where a request's body stands in the buffer its head was read into.
#[derive(Debug)]
pub(super) enum Buffered {
    /// The body (if any) ends in the buffer, this many bytes in, its head included;
    /// what follows is the next request's.
    Whole(usize),
    /// Everything after the head is body, and this much of it is still to come.
    Partial(BodyRest),
    /// The chunked framing in the buffer is invalid: the body cannot be told from
    /// what follows it.
    Invalid,
}

/// Where `head`'s body stands in `buf` (the head at its start).
pub(super) fn buffered(buf: &[u8], head: &RequestHead) -> Buffered {
    let Some(mut rest) = BodyRest::of(head.framing) else {
        return Buffered::Whole(head.head_len);
    };
    match rest.feed(buf.get(head.head_len..).unwrap_or_default()) {
        Ok(ScanStep::Done { body_end }) => Buffered::Whole(head.head_len + body_end),
        Ok(ScanStep::NeedMore) => Buffered::Partial(rest),
        Err(_) => Buffered::Invalid,
    }
}

/// Before a local answer: `false` when the buffered part of the body has invalid
/// chunked framing (nginx then answers 400 instead of a `return` text or a file);
/// a client that sent `Expect: 100-continue` and not yet its whole body gets
/// `100 Continue` first, as nginx's discarding sends it (`ngx_http_test_expect`).
pub(super) async fn prepare(
    stream: &Stream,
    info: &ClientInfo,
    buf: &[u8],
    head: &RequestHead,
    send_timeout: Duration,
) -> bool {
    match buffered(buf, head) {
        Buffered::Invalid => {
            crate::log::emit(
                crate::config::Level::Error,
                Some(info.id),
                format_args!("client sent invalid chunked body, client: {}", info.remote),
            );
            false
        }
        Buffered::Partial(_) if head.expect_continue => {
            // A client gone now fails the answer's write too.
            let _ = io::write_all(stream, b"HTTP/1.1 100 Continue\r\n\r\n", send_timeout).await;
            true
        }
        _ => true,
    }
}

/// After a local answer: the request (head and the part of its body in `buf`) leaves
/// the buffer, which keeps only the next request's bytes. Returns what of the body is
/// still to come (for [`rest`]); `Err` when the buffered framing is invalid and the
/// connection cannot carry another request.
pub(super) fn settle(buf: &mut Buf, head: &RequestHead) -> Result<Option<BodyRest>, ()> {
    match buffered(buf, head) {
        Buffered::Whole(end) => {
            let end = end.min(buf.len());
            buf.drain(..end);
            Ok(None)
        }
        Buffered::Partial(rest) => {
            buf.clear();
            Ok(Some(rest))
        }
        Buffered::Invalid => Err(()),
    }
}

/// Reads and drops the rest of a body once the answer went out; `buf` (empty) gets
/// the bytes read past its end, the next request's. `true` when the body ended and
/// the connection may carry another request; `false` when the client closed, waited
/// longer than `lingering_timeout` between reads or `lingering_time` in all, or sent
/// invalid framing.
pub(super) async fn rest(stream: &Stream, buf: &mut Buf, mut rest: BodyRest, l: Lingering) -> bool {
    let until = tokio::time::Instant::now() + l.time;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        buf.clear();
        // nginx's discard buffer is 4 KiB; a Content-Length body is read no further
        // than its end, so pipelined bytes stay in the socket.
        let want = rest.read_size(HEAD_BUF);
        match io::read_or_eof(stream, buf, want, l.timeout.min(left)).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        match rest.feed(buf) {
            Ok(ScanStep::NeedMore) => {}
            Ok(ScanStep::Done { body_end }) => {
                buf.drain(..body_end);
                return true;
            }
            Err(_) => return false,
        }
    }
}
