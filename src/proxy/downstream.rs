//! The client side of a forwarded request, as the forward path sees it: where the rest
//! of the request body comes from and where the response goes. The proxy never writes
//! to the client itself, so the front end decides the wire format: the HTTP/1
//! connection loop (`crate::server`) frames responses for HTTP/1.0 and 1.1 clients,
//! keeps or closes the connection and answers `Expect: 100-continue`; the HTTP/2 front
//! end implements it over a stream (HEADERS and DATA frames, the body from DATA).

use std::future::Future;
use std::time::Duration;

use crate::http1::{RequestHead, ResponseHead};
use crate::net::buffers::Buf;
use crate::net::io::IoFailure;
use crate::net::Stream;

/// The response the proxy relays: the upstream's parsed head in its buffer, and the
/// fields ferrolb adds.
#[derive(Debug)]
pub struct ResponseOut<'a> {
    /// The upstream response head (hop-by-hop fields are marked in it and must not
    /// reach the client).
    pub head: &'a ResponseHead,
    /// The buffer `head` was parsed from.
    pub buf: &'a [u8],
    /// A `101 Switching Protocols` to a request that asked for the upgrade: the
    /// connection becomes a tunnel.
    pub upgrade: bool,
    /// Fields ferrolb adds (`sticky` cookie, `add_header`), in order.
    pub extra: &'a [(&'a [u8], &'a [u8])],
    /// New values for fields of `head`, by field index, sorted (`proxy_redirect`,
    /// `proxy_cookie_*`): the field keeps its name and place.
    pub replaced: &'a [(usize, Vec<u8>)],
    /// `add_trailer` lines apply: a client that takes a trailer gets the body
    /// chunked, ended by [`Downstream::send_trailer`].
    pub trailer: bool,
}

impl ResponseOut<'_> {
    /// The value of field `i` of the head as it goes to the client.
    pub fn value(&self, i: usize) -> &[u8] {
        match self.replaced.binary_search_by_key(&i, |(j, _)| *j) {
            Ok(at) => &self.replaced[at].1,
            Err(_) => &self.buf[self.head.headers[i].value.clone()],
        }
    }

    /// The first field named `name` (any case) that goes to the client, by index and
    /// value as sent: hop-by-hop and hidden fields (`proxy_hide_header`) are not the
    /// response's.
    pub fn field(&self, name: &str) -> Option<(usize, &[u8])> {
        let i = self.head.headers.iter().position(|h| {
            !h.hop_by_hop && self.buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes())
        })?;
        Some((i, self.value(i)))
    }
}

/// What [`Downstream::start_response`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseStarted {
    /// Bytes of the response head (`$bytes_sent` minus the body).
    pub head_bytes: u64,
    /// Whether the client connection can carry another request after this response.
    pub keep_alive: bool,
}

/// The client side of one forwarded request.
///
/// Request body bytes come in the framing the request head declares
/// ([`RequestHead::framing`]); response body bytes go out as the upstream framed them
/// ([`ResponseHead::framing`]), and the implementation frames them for its client.
pub trait Downstream {
    /// Reads at most `want` more request body bytes into `buf`'s spare room, waiting at
    /// most `limit`; [`IoFailure::Closed`] when the client is gone.
    fn read_body(
        &mut self,
        buf: &mut Vec<u8>,
        want: usize,
        limit: Duration,
    ) -> impl Future<Output = Result<usize, IoFailure>>;

    /// Resolves when the client is gone (closed its connection, reset its stream)
    /// while the upstream has not answered: the proxy then gives up
    /// (`proxy_ignore_client_abort off`). A front end that cannot tell never resolves.
    fn gone(&mut self) -> impl Future<Output = ()> {
        std::future::pending()
    }

    /// Tells a client that sent `Expect: 100-continue` to go on with its body.
    fn send_continue(&mut self) -> impl Future<Output = Result<(), IoFailure>>;

    /// Answers with ferrolb's own page for `status`; returns its size. `keep_alive`:
    /// whether the connection may carry another request afterwards; `retry_after`:
    /// seconds for a `Retry-After` field (a 503 while `ferrolb up` starts workers).
    fn send_error(
        &mut self,
        req: &RequestHead,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u32>,
    ) -> impl Future<Output = Result<u64, IoFailure>>;

    /// Fields the next [`Downstream::send_error`] page carries (`add_header`); a
    /// front end that cannot add them ignores them.
    fn error_fields(&mut self, fields: Vec<(Vec<u8>, Vec<u8>)>) {
        let _ = fields;
    }

    /// Prepares the response head (written with the first body bytes). `keep_alive`:
    /// whether the request and the server settings allow another request; `head_buf`
    /// is a buffer the head may be built in.
    fn start_response(
        &mut self,
        req: &RequestHead,
        resp: &ResponseOut<'_>,
        keep_alive: bool,
        head_buf: Buf,
    ) -> ResponseStarted;

    /// The response head sent, when the response ends with a trailer
    /// ([`ResponseOut::trailer`], to a client that takes one); `None` otherwise.
    fn trailer_head(&self) -> Option<&[u8]> {
        None
    }

    /// Ends a body [`Downstream::trailer_head`] said ends with a trailer: sends
    /// `last_chunk` (the last chunk, the trailer fields and the final CRLF).
    fn send_trailer(&mut self, last_chunk: &[u8]) -> impl Future<Output = Result<(), IoFailure>> {
        let _ = last_chunk;
        std::future::ready(Ok(()))
    }

    /// Sends body bytes (the head first, if it is still pending).
    fn send_body(&mut self, data: &[u8]) -> impl Future<Output = Result<(), IoFailure>>;

    /// Ends the body (the head, if no body byte was sent; a final chunk, if the
    /// implementation framed the body itself).
    fn end_body(&mut self) -> impl Future<Output = Result<(), IoFailure>>;

    /// Paces the rest of the response at `rate` bytes a second, 0 for no limit (the
    /// upstream's `X-Accel-Limit-Rate`); a front end that cannot pace ignores it.
    fn limit_rate(&mut self, rate: u64) {
        let _ = rate;
    }

    /// Body bytes the client got so far (`$body_bytes_sent`).
    fn body_bytes(&self) -> u64;

    /// After an upgrade: sends the pending head and `initial` (upstream bytes that came
    /// with it), then carries bytes both ways until either side closes, or nothing
    /// moved for `idle` (nginx's `proxy_read_timeout` on upgraded connections); a write
    /// to the upstream may stall `upstream_send` (`proxy_send_timeout`). Returns the
    /// bytes that went to the client.
    fn tunnel(
        &mut self,
        upstream: &mut Stream,
        initial: &[u8],
        idle: Duration,
        upstream_send: Duration,
    ) -> impl Future<Output = Result<u64, IoFailure>>;
}
