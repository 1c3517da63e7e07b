//! The HTTP/1 client side of a forwarded request ([`Downstream`]): the response head
//! as HTTP/1.0 and 1.1 clients need it (`Connection`, `Transfer-Encoding`), bodies
//! framed for them (a close-delimited upstream body is re-chunked for an HTTP/1.1
//! client so its connection can stay open), `100 Continue`, ferrolb's error pages and
//! upgrade tunnels. The head goes out in the same `writev` as the first body bytes.

use std::io::{IoSlice, Write as _};
use std::time::Duration;

use crate::http1::respond;
use crate::http1::{BodyFraming, ChunkedScanner, Method, RequestHead};
use crate::net::buffers::Buf;
use crate::net::io::{self, IoFailure};
use crate::net::pace::{self, Pace};
use crate::net::Stream;
use crate::proxy::{Downstream, ResponseOut, ResponseStarted};

/// How long writing to a client may stall before any configuration applies (nginx's
/// `send_timeout` default).
pub const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// The client connection of one HTTP/1 request, for the forward path.
#[derive(Debug)]
pub struct Http1Downstream<'s> {
    stream: &'s mut Stream,
    /// The response head, until it goes out with the first body bytes.
    head: Option<Buf>,
    /// A close-delimited upstream body re-framed as chunked for an HTTP/1.1 client.
    rechunk: bool,
    /// A chunked upstream body decoded for an HTTP/1.0 client, which cannot read
    /// chunks; the connection then closes to end the body, as nginx does it.
    dechunk: Option<ChunkedScanner>,
    /// Body bytes written (chunk framing included, as nginx counts what it sends).
    body_bytes: u64,
    /// `send_timeout`: how long one write to the client may stall.
    send_timeout: Duration,
    /// `limit_rate`, when the location sets one.
    pace: Option<Pace>,
    /// The status an error page is answered with, whatever the upstream said
    /// (nginx's `err_status`).
    status: Option<u16>,
    /// Fields an error page keeps from the response it replaces.
    kept_fields: &'s [(&'static str, Vec<u8>)],
    /// `add_header` fields for the error page ferrolb answers with, if it does.
    error_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// A copy of the response head sent, when the access log wants it
    /// (`$sent_http_NAME`); `None`: not wanted.
    sent_head: Option<Vec<u8>>,
    /// The head sent, when the body goes chunked to end with `add_trailer`'s
    /// fields ([`Downstream::send_trailer`] then writes the last chunk).
    trailer_head: Option<Vec<u8>>,
    /// `keepalive_timeout`'s second value (`Keep-Alive: timeout=N`).
    keepalive_header: Option<Duration>,
    /// `chunked_transfer_encoding`: a body of unknown length may go chunked to an
    /// HTTP/1.1 client (off: decoded, and the close ends it).
    chunked_te: bool,
}

impl<'s> Http1Downstream<'s> {
    /// The client side over `stream`; writes may stall `send_timeout` each.
    pub fn new(stream: &'s mut Stream, send_timeout: Duration) -> Self {
        Http1Downstream {
            send_timeout,
            stream,
            head: None,
            rechunk: false,
            dechunk: None,
            body_bytes: 0,
            pace: None,
            status: None,
            kept_fields: &[],
            error_fields: Vec::new(),
            sent_head: None,
            trailer_head: None,
            keepalive_header: None,
            chunked_te: true,
        }
    }

    /// Keeps a copy of the response head it sends, for [`Http1Downstream::take_sent_head`].
    pub fn keeping_head(mut self, keep: bool) -> Self {
        self.sent_head = keep.then(Vec::new);
        self
    }

    /// The response head sent (status line and fields); empty when none was sent or
    /// [`Http1Downstream::keeping_head`] did not ask for it.
    pub fn take_sent_head(&mut self) -> Vec<u8> {
        self.sent_head.take().unwrap_or_default()
    }

    fn keep_head(&mut self, head: &[u8]) {
        if let Some(kept) = &mut self.sent_head {
            kept.clear();
            kept.extend_from_slice(head);
        }
    }

    /// Sends `Keep-Alive: timeout=N` on responses that keep the connection.
    pub fn keepalive_header(mut self, timeout: Option<Duration>) -> Self {
        self.keepalive_header = timeout;
        self
    }

    /// `chunked_transfer_encoding`: off, a body of unknown length is not chunked.
    pub fn chunked_transfer_encoding(mut self, on: bool) -> Self {
        self.chunked_te = on;
        self
    }

    /// Paces the response's writes (`limit_rate`, `limit_rate_after`).
    pub fn paced(mut self, pace: Option<Pace>) -> Self {
        self.pace = pace;
        self
    }

    /// The client side of an error page served by proxying: the response gets `status`
    /// (when set) and `kept_fields`.
    pub fn for_error_page(
        mut self,
        status: Option<u16>,
        kept_fields: &'s [(&'static str, Vec<u8>)],
    ) -> Self {
        self.status = status;
        self.kept_fields = kept_fields;
        self
    }

    /// Writes `parts` after the pending head, if any, in one `writev`. At most four
    /// parts besides the head: no allocation per write.
    async fn write(&mut self, parts: &[&[u8]]) -> Result<(), IoFailure> {
        let head = self.head.take();
        if let Some(pace) = &mut self.pace {
            let mut all: [&[u8]; 5] = [&[]; 5];
            all[0] = head.as_deref().map_or(&[][..], |h| &h[..]);
            for (slot, p) in all[1..].iter_mut().zip(parts) {
                *slot = p;
            }
            pace::write_parts(self.stream, &all, Some(pace), self.send_timeout).await?;
            self.body_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
            return Ok(());
        }
        let mut slices = [IoSlice::new(&[]); 5];
        let mut n = 0;
        if let Some(h) = &head {
            slices[0] = IoSlice::new(h);
            n = 1;
        }
        for p in parts.iter().take(4) {
            slices[n] = IoSlice::new(p);
            n += 1;
        }
        io::write_all_vectored(self.stream, &mut slices[..n], self.send_timeout).await?;
        self.body_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }
}

impl Downstream for Http1Downstream<'_> {
    async fn read_body(
        &mut self,
        buf: &mut Vec<u8>,
        want: usize,
        limit: Duration,
    ) -> Result<usize, IoFailure> {
        io::read_some(self.stream, buf, want, limit).await
    }

    async fn gone(&mut self) {
        self.stream.peer_closed().await;
    }

    async fn send_continue(&mut self) -> Result<(), IoFailure> {
        // ferrolb answers `Expect` itself and does not pass it upstream.
        io::write_all(
            self.stream,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            self.send_timeout,
        )
        .await
    }

    async fn send_error(
        &mut self,
        req: &RequestHead,
        status: u16,
        keep_alive: bool,
        retry_after: Option<u32>,
    ) -> Result<u64, IoFailure> {
        let mut out = Buf::head();
        respond::error_page_retry_after(
            &mut out,
            status,
            keep_alive,
            req.minor_version == 0,
            req.method == Method::Head,
            retry_after,
        );
        let mut head_end = memchr::memmem::find(&out, b"\r\n\r\n").map_or(out.len(), |i| i + 4);
        if let (true, Some(t)) = (
            keep_alive,
            self.keepalive_header.filter(|t| t.as_secs() > 0),
        ) {
            const KEEP: &[u8] = b"Connection: keep-alive\r\n";
            if let Some(at) = memchr::memmem::find(&out[..head_end], KEEP) {
                let field = format!("Keep-Alive: timeout={}\r\n", t.as_secs());
                out.splice(at + KEEP.len()..at + KEEP.len(), field.bytes());
                head_end += field.len();
            }
        }
        if !self.error_fields.is_empty() && head_end >= 2 {
            let mut fields = Vec::new();
            for (name, value) in &self.error_fields {
                fields.extend_from_slice(name);
                fields.extend_from_slice(b": ");
                fields.extend_from_slice(value);
                fields.extend_from_slice(b"\r\n");
            }
            out.splice(head_end - 2..head_end - 2, fields.iter().copied());
            head_end += fields.len();
        }
        self.keep_head(&out[..head_end]);
        io::write_all(self.stream, &out, self.send_timeout).await?;
        Ok(out.len() as u64)
    }

    fn start_response(
        &mut self,
        req: &RequestHead,
        resp: &ResponseOut<'_>,
        keep_alive: bool,
        mut out: Buf,
    ) -> ResponseStarted {
        let head = resp.head;
        let http10_client = req.minor_version == 0;
        // Chunks for this client: HTTP/1.1 and `chunked_transfer_encoding on`.
        let chunks = !http10_client && self.chunked_te;
        let until_close = head.framing == BodyFraming::UntilClose;
        // `add_trailer`: an HTTP/1.1 client gets any body chunked (a chunked
        // upstream body decoded and framed again) to end with the trailer, as nginx.
        let trailer = resp.trailer
            && chunks
            && !resp.upgrade
            && head.framing != BodyFraming::None
            && !matches!(self.status.unwrap_or(head.status), 204 | 304);
        self.rechunk = (until_close || trailer) && chunks && !resp.upgrade;
        let chunked = head.framing == BodyFraming::Chunked;
        self.dechunk = (chunked && (!chunks || trailer)).then(ChunkedScanner::new);
        // Without chunks the client knows the end of a body of unknown length only by
        // the close.
        let keep_alive = keep_alive && !resp.upgrade && !((until_close || chunked) && !chunks);

        out.clear();
        match self.status {
            Some(s) => {
                out.extend_from_slice(b"HTTP/1.1 ");
                respond::push_status_code(&mut out, s);
                out.push(b' ');
                out.extend_from_slice(respond::reason(s).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            None => {
                out.extend_from_slice(b"HTTP/1.1 ");
                respond::push_status_code(&mut out, head.status);
                out.push(b' ');
                out.extend_from_slice(&resp.buf[head.reason.clone()]);
                out.extend_from_slice(b"\r\n");
            }
        }
        // nginx's own Server and Date, unless the upstream's are passed on
        // (`proxy_pass_header`).
        let passes = |name: &[u8]| {
            head.headers
                .iter()
                .any(|h| !h.hop_by_hop && resp.buf[h.name.clone()].eq_ignore_ascii_case(name))
        };
        if !passes(b"server") {
            out.extend_from_slice(b"Server: ferrolb\r\n");
        }
        if !passes(b"date") {
            out.extend_from_slice(b"Date: ");
            respond::write_http_date(&mut out);
            out.extend_from_slice(b"\r\n");
        }
        for (i, h) in head.headers.iter().enumerate() {
            if h.hop_by_hop
                || (trailer && resp.buf[h.name.clone()].eq_ignore_ascii_case(b"content-length"))
            {
                continue;
            }
            out.extend_from_slice(&resp.buf[h.name.clone()]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(resp.value(i));
            out.extend_from_slice(b"\r\n");
        }
        if resp.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
            if let Some(u) = head.header_value(resp.buf, "upgrade") {
                out.extend_from_slice(u);
            }
            out.extend_from_slice(b"\r\n");
        } else {
            if (chunked && self.dechunk.is_none()) || self.rechunk {
                // (A chunked body decoded for the trailer is chunked again.)
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            // nginx names the connection's fate on every response.
            respond::connection_fields(&mut out, keep_alive, self.keepalive_header);
        }
        // A kept `Content-Type` (an `X-Accel-Redirect`'s) yields to the response's own.
        let own_type = head.header_value(resp.buf, "content-type").is_some();
        let kept = self
            .kept_fields
            .iter()
            .filter(|(n, _)| !(own_type && n.eq_ignore_ascii_case("content-type")))
            .map(|(n, v)| (n.as_bytes(), &v[..]));
        for (name, value) in resp.extra.iter().copied().chain(kept) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let head_bytes = out.len() as u64;
        self.keep_head(&out);
        self.trailer_head = trailer.then(|| out.to_vec());
        self.head = Some(out);
        ResponseStarted {
            head_bytes,
            keep_alive,
        }
    }

    async fn send_body(&mut self, data: &[u8]) -> Result<(), IoFailure> {
        let payload;
        let data = match &mut self.dechunk {
            Some(sc) => {
                // Rare (an HTTP/1.0 client behind a chunking upstream, or a trailer
                // to add): copy the payload.
                let mut p = Vec::with_capacity(data.len());
                let _ = sc.scan_payload(data, |r| p.extend_from_slice(&data[r]));
                payload = p;
                &payload[..]
            }
            None => data,
        };
        if !self.rechunk || data.is_empty() {
            return self.write(&[data]).await;
        }
        // The chunk-size line on the stack: 16 hex digits and CRLF always fit.
        let mut size = [0u8; 20];
        let n = {
            let mut cursor = &mut size[..];
            let _ = write!(cursor, "{:x}\r\n", data.len());
            20 - cursor.len()
        };
        self.write(&[&size[..n], data, b"\r\n"]).await
    }

    async fn end_body(&mut self) -> Result<(), IoFailure> {
        if self.rechunk && self.trailer_head.is_none() {
            self.write(&[b"0\r\n\r\n"]).await
        } else if self.head.is_some() {
            self.write(&[]).await
        } else {
            Ok(())
        }
    }

    fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    fn trailer_head(&self) -> Option<&[u8]> {
        self.trailer_head.as_deref()
    }

    async fn send_trailer(&mut self, last_chunk: &[u8]) -> Result<(), IoFailure> {
        self.trailer_head = None;
        self.write(&[last_chunk]).await
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
        upstream: &mut Stream,
        initial: &[u8],
        idle: Duration,
        upstream_send: Duration,
    ) -> Result<u64, IoFailure> {
        self.write(&[initial]).await?;
        let mut buf = Buf::body();
        loop {
            // Whichever side has bytes first; nothing for `idle` ends the tunnel.
            let from_client = tokio::select! {
                r = self.stream.readable() => { r?; true }
                r = upstream.readable() => { r?; false }
                _ = tokio::time::sleep(idle) => return Err(IoFailure::Timeout),
            };
            let (from, to, limit) = if from_client {
                (&*self.stream, &*upstream, upstream_send)
            } else {
                (&*upstream, &*self.stream, self.send_timeout)
            };
            buf.clear();
            match from.try_read_buf(&mut *buf) {
                Ok(0) => return Ok(self.body_bytes),
                Ok(n) => {
                    io::write_all(to, &buf, limit).await?;
                    if !from_client {
                        self.body_bytes += n as u64;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
