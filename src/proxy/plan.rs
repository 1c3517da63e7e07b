//! The plan for one request, made before any peer is contacted: what of the request
//! body is at hand (and so can be replayed on another peer), and how many attempts
//! `proxy_next_upstream*` allows, and when.

use tokio::time::Instant;

use super::body_file::BodyFile;
use super::downstream::Downstream;
use super::Forward;
use crate::balance::{sticky, PickContext};
use crate::config::{BodyInFileOnly, Level, LocSettings, NextUpstream, ProxyHttpVersion};
use crate::http1::{BodyFraming, ChunkedScanner, RequestHead, ScanStep};
use crate::net::buffers::{Buf, BODY_BUF};
use crate::net::io::IoFailure;

/// How much of a request body is read completely before an upstream is contacted:
/// `client_body_buffer_size`, a quarter more for a body with a Content-Length (nginx
/// sizes its buffer so). The upstream gets head and body in one write, and the request
/// stays replayable on another peer. A larger body is spooled to a file
/// (`proxy_request_buffering`) or streamed in 64 KiB chunks.
pub(super) fn memory_limit(s: &LocSettings, framing: BodyFraming) -> u64 {
    let size = s.client_body_buffer_size;
    match framing {
        BodyFraming::Chunked => size,
        _ => size.saturating_add(size >> 2),
    }
}

/// The request body: how much of it is in the client buffer, and whether the rest has
/// been streamed from the client (which makes the request impossible to replay).
pub(super) struct RequestBody {
    /// Body bytes in the client buffer right after the head.
    pub(super) len: usize,
    /// Whether they are the whole body.
    pub(super) complete: bool,
    /// For a chunked body that continues past the buffer: the scanner's state.
    pub(super) scanner: Option<ChunkedScanner>,
    /// For a content-length body: bytes still to read from the client.
    pub(super) remaining: u64,
    /// A small chunked body, complete in the buffer, decoded: it goes upstream with a
    /// Content-Length (as nginx sends it), which every backend can read.
    pub(super) dechunked: Option<Buf>,
    /// Where the rest of the body stands once an attempt started streaming it.
    pub(super) streaming: Streaming,
    /// A body larger than the memory buffer, read whole into a temporary file
    /// (`proxy_request_buffering`): sent with a Content-Length, replayable.
    pub(super) spooled: Option<SpooledBody>,
}

/// A request body in a temporary file.
pub(super) struct SpooledBody {
    /// The file, read with positional reads so every attempt starts at 0.
    pub(super) file: BodyFile,
    /// The payload size.
    pub(super) len: u64,
    /// Bytes the client sent after the body (a pipelined request).
    pub(super) after: Vec<u8>,
}

/// Progress of streaming a body from the client to a peer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Streaming {
    /// Nothing streamed: the body (if any) is all in the client buffer.
    #[default]
    NotStarted,
    /// Some of the body was read from the client and sent; the client connection is
    /// now at an unknown point of its body and cannot carry another request.
    Partial,
    /// The whole body went upstream; these bytes were read past its end (a pipelined
    /// request behind a chunked body).
    Done(Vec<u8>),
}

impl RequestBody {
    /// Where the body is, for `$request_body` and `$request_body_file`.
    pub(super) fn kept(&self) -> crate::vars::KeptBody {
        use crate::vars::KeptBody;
        match (&self.spooled, &self.dechunked) {
            (Some(sp), _) => KeptBody::File(sp.file.path().to_path_buf()),
            (None, Some(payload)) => KeptBody::Decoded(payload.to_vec()),
            (None, None) => KeptBody::InBuffer,
        }
    }

    /// Whether the body can still be sent again to another peer.
    pub(super) fn replayable(&self) -> bool {
        self.streaming == Streaming::NotStarted
    }

    /// After the request: bytes at the start of `cbuf` that belong to it, once the
    /// buffer holds only what follows it. `None` when the client connection is at an
    /// unknown point of the body and must close.
    pub(super) fn settle(self, head_len: usize, cbuf: &mut Buf) -> Option<usize> {
        match self.streaming {
            Streaming::NotStarted if self.spooled.is_some() => {
                let after = self.spooled.map(|s| s.after).unwrap_or_default();
                cbuf.clear();
                cbuf.extend_from_slice(&after);
                Some(0)
            }
            Streaming::NotStarted => self.complete.then_some(head_len + self.len),
            Streaming::Partial => None,
            Streaming::Done(extra) => {
                cbuf.clear();
                cbuf.extend_from_slice(&extra);
                Some(0)
            }
        }
    }
}

/// What may follow a failed attempt (`proxy_next_upstream`, `_tries`, `_timeout`).
pub(super) struct Plan<'k> {
    /// GET, HEAD and the other methods RFC 9110 calls idempotent.
    pub(super) idempotent: bool,
    /// The conditions that send a request to the next peer.
    pub(super) next: NextUpstream,
    /// Attempts allowed: `proxy_next_upstream_tries` capped by the group's peers.
    pub(super) max_tries: usize,
    /// `proxy_next_upstream_timeout` measured from here; zero is unlimited.
    pub(super) started: Instant,
    /// What the balancing method reads from the request.
    pub(super) pick: PickContext<'k>,
}

/// Why a failed attempt is the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LastAttempt {
    /// `proxy_next_upstream` does not list the failure's condition.
    NotListed,
    /// The request reached the peer and is not idempotent (nginx's
    /// `non_idempotent` not set): it must not be sent twice.
    SentNonIdempotent,
    /// The body was streamed from the client and cannot be sent again.
    BodyStreamed,
    /// `proxy_next_upstream_tries` (or the number of peers) is used up.
    TriesUsed,
    /// `proxy_next_upstream_timeout` has passed.
    TimeUsed,
}

impl<'k> Plan<'k> {
    /// The plan for `f`; `key_buf` holds the evaluated `hash` key.
    pub(super) fn new(f: &Forward<'_>, cbuf: &[u8], key_buf: &'k mut Vec<u8>) -> Plan<'k> {
        let s = f.settings;
        let max_tries = match s.proxy_next_upstream_tries {
            0 => f.upstream.tries(),
            n => (n as usize).min(f.upstream.tries()),
        };
        Plan {
            idempotent: f.head.method.is_idempotent(),
            next: s.proxy_next_upstream,
            max_tries,
            started: Instant::now(),
            pick: pick_context(f, cbuf, key_buf),
        }
    }

    /// Whether attempt number `made` (1-based), which failed with `condition` (a
    /// [`NextUpstream`] flag), may be followed by another; `sent` says whether the
    /// request reached the peer.
    pub(super) fn after_failure(
        &self,
        condition: u16,
        sent: bool,
        body: &RequestBody,
        made: usize,
        s: &LocSettings,
    ) -> Result<(), LastAttempt> {
        if !self.next.has(condition) {
            Err(LastAttempt::NotListed)
        } else if sent && !self.idempotent && !self.next.has(NextUpstream::NON_IDEMPOTENT) {
            Err(LastAttempt::SentNonIdempotent)
        } else if !body.replayable() {
            Err(LastAttempt::BodyStreamed)
        } else if made >= self.max_tries {
            Err(LastAttempt::TriesUsed)
        } else if !s.proxy_next_upstream_timeout.is_zero()
            && self.started.elapsed() >= s.proxy_next_upstream_timeout
        {
            Err(LastAttempt::TimeUsed)
        } else {
            Ok(())
        }
    }
}

/// What the balancing method needs from the request: the client address, the `hash`
/// key (evaluated into `key_buf`, only for `hash`) and the sticky cookie's peer id.
fn pick_context<'k>(f: &Forward<'_>, cbuf: &[u8], key_buf: &'k mut Vec<u8>) -> PickContext<'k> {
    let up = f.upstream;
    let mut ctx = PickContext {
        client: f.info.remote.ip(),
        ..PickContext::default()
    };
    if up.hash_key().is_none() && up.sticky_cookie().is_none() {
        return ctx;
    }
    let vars = super::request::vars(f, cbuf, None);
    ctx.sticky = up
        .sticky_cookie()
        .and_then(|name| vars.cookie(name))
        .and_then(sticky::parse_cookie);
    if let Some(key) = up.hash_key() {
        vars.eval(key, key_buf);
        let key_buf: &'k Vec<u8> = key_buf;
        ctx.key = Some(key_buf);
    }
    ctx
}

/// Reads a small body completely into `cbuf`, then finds how much of the body is in
/// it. `Err(0)`: the client went away; `Err(status)`: answer with it.
pub(super) async fn take_body<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &mut Buf,
) -> Result<RequestBody, u16> {
    // nginx buffers a chunked body for an HTTP/1.0 upstream whatever
    // `proxy_request_buffering` says: HTTP/1.0 has no chunks.
    // uWSGI reads a body of CONTENT_LENGTH bytes only: a chunked one is decoded first,
    // as nginx does whatever `uwsgi_request_buffering` says.
    let chunked_to_http10 = f.head.framing == BodyFraming::Chunked
        && (f.settings.proxy_http_version == ProxyHttpVersion::Http10
            || f.pass.protocol == crate::config::UpstreamProtocol::Uwsgi);
    let buffering = f.settings.proxy_request_buffering || chunked_to_http10;
    let continued = buffer_small_body(f, client, cbuf, buffering).await?;
    let mut body = measure_body(cbuf, f.head, f.settings)?;
    if buffering && wants_file(f, &body) {
        if f.head.expect_continue && !continued {
            client.send_continue().await.map_err(|_| 0u16)?;
        }
        spool(f, client, cbuf, &mut body).await?;
    }
    Ok(body)
}

/// Whether the body goes to a file: `client_body_in_file_only`, or more of it than
/// fits the memory buffer (nginx then writes it to a file too, `$request_body_file`).
fn wants_file(f: &Forward<'_>, body: &RequestBody) -> bool {
    let has_body = match f.head.framing {
        BodyFraming::Length(n) => n > 0,
        BodyFraming::Chunked => true,
        BodyFraming::None | BodyFraming::UntilClose => false,
    };
    if !has_body {
        return false;
    }
    if f.settings.client_body_in_file_only != BodyInFileOnly::Off || !body.complete {
        return true;
    }
    let payload = match (&body.dechunked, f.head.framing) {
        (Some(p), _) => p.len() as u64,
        (None, BodyFraming::Length(n)) => n,
        _ => 0,
    };
    payload > memory_limit(f.settings, f.head.framing)
}

/// Writes the body (what is in `cbuf`, then the rest from the client) into a
/// temporary file under `client_body_temp_path`, decoding chunks, as nginx buffers
/// request bodies. Memory stays at one 64 KiB buffer whatever the body's size.
async fn spool<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    body: &mut RequestBody,
) -> Result<(), u16> {
    use std::io::Write as _;
    let s = f.settings;
    let dir = &s.client_body_temp_path;
    let created = BodyFile::create(dir, s.client_body_in_file_only);
    let mut file = created.map_err(|e| {
        crate::log::emit(
            Level::Crit,
            Some(f.info.id),
            format_args!(
                "open() \"{}\" failed ({}) while buffering the request body",
                dir.display(),
                crate::log::os_error_text(&e)
            ),
        );
        500u16
    })?;
    let write_err = |e: std::io::Error| {
        crate::log::emit(
            Level::Crit,
            Some(f.info.id),
            format_args!(
                "write() to a temporary file in \"{}\" failed ({})",
                dir.display(),
                crate::log::os_error_text(&e)
            ),
        );
        500u16
    };
    let read_err = |e: IoFailure| match e {
        IoFailure::Timeout => 408u16,
        // The client is gone, or stopped mid-body: nothing to answer.
        _ => 0u16,
    };
    let end = f.head.head_len + body.len;
    let initial = &cbuf[f.head.head_len..end];
    let max = s.client_max_body_size;
    let mut len: u64 = 0;
    // A body complete in the buffer: what follows it is a pipelined request.
    let mut after = if body.complete {
        cbuf[end..].to_vec()
    } else {
        Vec::new()
    };
    let mut piece = Buf::body();
    match f.head.framing {
        BodyFraming::Length(_) => {
            file.write_all(initial).map_err(write_err)?;
            len += initial.len() as u64;
            let mut remaining = body.remaining;
            while remaining > 0 {
                piece.clear();
                let want = remaining.min(BODY_BUF as u64) as usize;
                let n = client
                    .read_body(&mut piece, want, s.client_body_timeout)
                    .await
                    .map_err(read_err)?;
                file.write_all(&piece[..n]).map_err(write_err)?;
                remaining -= n as u64;
                len += n as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut sc = ChunkedScanner::new();
            let mut data = initial;
            loop {
                let mut failed = None;
                let step = sc
                    .scan_payload(data, |r| {
                        if failed.is_none() {
                            if let Err(e) = file.write_all(&data[r.clone()]) {
                                failed = Some(e);
                            }
                            len += r.len() as u64;
                        }
                    })
                    .map_err(|_| 400u16)?;
                if let Some(e) = failed {
                    return Err(write_err(e));
                }
                if max != 0 && sc.payload_len() > max {
                    return Err(413);
                }
                if let ScanStep::Done { body_end } = step {
                    after.extend_from_slice(&data[body_end..]);
                    break;
                }
                piece.clear();
                client
                    .read_body(&mut piece, BODY_BUF, s.client_body_timeout)
                    .await
                    .map_err(read_err)?;
                data = &piece[..];
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => return Ok(()),
    }
    body.complete = true;
    body.scanner = None;
    body.remaining = 0;
    body.dechunked = None;
    body.spooled = Some(SpooledBody { file, len, after });
    Ok(())
}

/// Reads the rest of a small body into `cbuf`; `Ok(true)` when it told the client to
/// go on (`100 Continue`). `Err(0)`: the client went away; `Err(status)`: answer with it.
/// Without `buffering` (`proxy_request_buffering off`) nothing is waited for: as
/// nginx, the upstream is contacted with the part of the body that came with the head
/// (the preread), and the rest is streamed as it comes.
async fn buffer_small_body<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &mut Buf,
    buffering: bool,
) -> Result<bool, u16> {
    let start = f.head.head_len;
    let max = f.settings.client_max_body_size;
    // A chunked body's length is unknown: read until it ends or passes the limit.
    let mut scanner = match f.head.framing {
        BodyFraming::Length(n) => {
            let end = start as u64 + n;
            if cbuf.len() as u64 >= end {
                // nginx says `100 Continue` whenever it reads a body, even one that
                // is all there already (`Content-Length: 0`).
                if f.head.expect_continue {
                    client.send_continue().await.map_err(|_| 0u16)?;
                }
                return Ok(f.head.expect_continue);
            }
            if n > memory_limit(f.settings, f.head.framing) || (max != 0 && n > max) {
                return Ok(false);
            }
            None
        }
        BodyFraming::Chunked => {
            let mut sc = ChunkedScanner::new();
            match sc.scan(&cbuf[start..]) {
                Ok(ScanStep::NeedMore) => Some(sc),
                // Complete already, or invalid (measure_body answers 400).
                _ => return Ok(false),
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => return Ok(false),
    };
    if !buffering {
        // The body is streamed, `100 Continue` sent once the head went upstream.
        return Ok(false);
    }
    if f.head.expect_continue {
        client.send_continue().await.map_err(|_| 0u16)?;
    }
    // Raw chunked bytes, framing included: the payload may still fit once decoded.
    let limit = memory_limit(f.settings, f.head.framing).max(BODY_BUF as u64);
    loop {
        let have = (cbuf.len() - start) as u64;
        let want = match (&scanner, f.head.framing) {
            (None, BodyFraming::Length(n)) if have < n => (n - have) as usize,
            (Some(_), _) if have < limit => (limit - have) as usize,
            _ => return Ok(f.head.expect_continue),
        };
        let before = cbuf.len();
        cbuf.make_room(before + want);
        match client
            .read_body(cbuf, want, f.settings.client_body_timeout)
            .await
        {
            Ok(_) => {}
            Err(IoFailure::Timeout) => return Err(408),
            Err(_) => return Err(0),
        }
        if let Some(sc) = &mut scanner {
            match sc.scan(&cbuf[before..]) {
                Ok(ScanStep::NeedMore) => {}
                _ => return Ok(f.head.expect_continue),
            }
        }
    }
}

/// Checks the declared body size and finds how much of the body is already buffered.
/// `Err(status)` is the error to answer with.
fn measure_body(cbuf: &[u8], head: &RequestHead, s: &LocSettings) -> Result<RequestBody, u16> {
    let avail = cbuf.len() - head.head_len;
    let max = s.client_max_body_size;
    let body = |len: usize, complete: bool| RequestBody {
        len,
        complete,
        scanner: None,
        remaining: 0,
        dechunked: None,
        streaming: Streaming::NotStarted,
        spooled: None,
    };
    Ok(match head.framing {
        BodyFraming::None | BodyFraming::UntilClose => body(0, true),
        BodyFraming::Length(n) => {
            if max != 0 && n > max {
                return Err(413);
            }
            let len = (n.min(avail as u64)) as usize;
            RequestBody {
                remaining: n - len as u64,
                ..body(len, len as u64 == n)
            }
        }
        BodyFraming::Chunked => {
            let mut sc = ChunkedScanner::new();
            let step = sc.scan(&cbuf[head.head_len..]).map_err(|_| 400u16)?;
            if max != 0 && sc.payload_len() > max {
                return Err(413);
            }
            match step {
                ScanStep::Done { body_end } => {
                    let raw = &cbuf[head.head_len..head.head_len + body_end];
                    let mut payload = Buf::head();
                    crate::http1::decode_chunked(raw, &mut payload).map_err(|_| 400u16)?;
                    RequestBody {
                        dechunked: Some(payload),
                        ..body(body_end, true)
                    }
                }
                ScanStep::NeedMore => RequestBody {
                    scanner: Some(sc),
                    ..body(avail, false)
                },
            }
        }
    })
}
