//! The upstream side of a request: its head (proxy_set_header, hop-by-hop removal, the
//! `proxy_pass` URI) and sending it with its body.

use std::io::IoSlice;

use super::attempt::{AttemptError, UpstreamConn};
use super::downstream::Downstream;
use super::plan::{RequestBody, Streaming};
use super::{Forward, Forwarded};
use crate::config::{Endpoint, ProxyHttpVersion, UpstreamProtocol};
use crate::http1::{BodyFraming, ChunkedScanner, ScanStep};
use crate::net::buffers::Buf;
use crate::net::io::{self, IoFailure};
use crate::vars::RequestVars;

/// A built upstream request head.
pub(super) struct UpstreamHead {
    /// The bytes to send.
    pub(super) bytes: Buf,
    /// Whether it asks the upstream to close the connection afterwards.
    pub(super) close: bool,
}

/// The variables view of the request being forwarded.
pub(super) fn vars<'a>(
    f: &'a Forward<'a>,
    cbuf: &'a [u8],
    peer: Option<&'a Endpoint>,
) -> RequestVars<'a> {
    RequestVars {
        buf: cbuf,
        head: f.head,
        remote: f.info.remote,
        peer: f.info.peer,
        proxy_protocol: f.info.proxy_protocol.as_deref(),
        local: &f.info.local,
        server_name: f.server_name,
        tls: f.info.tls(),
        uri: f.uri,
        proxy_host: &f.pass.proxy_host,
        upstream_addr: peer,
        locals: f.locals,
        // `$document_root`, `$request_filename` are the location's, as in nginx
        // (`uwsgi_params` sends DOCUMENT_ROOT).
        files: Some(&f.settings.files),
        connection: f.info.id,
        http2: f.info.http2_name(),
    }
}

/// Builds the head sent upstream. As nginx: `proxy_set_header` lines first (an empty
/// value drops the header), then the client's headers minus hop-by-hop ones and those
/// the config set. Unlike nginx, Host defaults to the client's Host (as HAProxy and
/// Envoy do), because nginx's `Host: $proxy_host` makes Django answer 400.
pub(super) fn build_head(
    f: &Forward<'_>,
    cbuf: &[u8],
    peer: &Endpoint,
    requests_before: u32,
    body: &RequestBody,
) -> UpstreamHead {
    let head = f.head;
    let v = vars(f, cbuf, Some(peer));
    let mut out = Buf::head();

    // The configured version, as nginx, for HTTP/1.0 clients too (a chunked answer is
    // decoded for them); an upgrade, or a chunked body streamed as it comes, needs
    // HTTP/1.1; a buffered one goes with a Content-Length.
    let client_body = sends_client_body(f);
    let streams_chunks = client_body
        && head.framing == BodyFraming::Chunked
        && body.dechunked.is_none()
        && body.spooled.is_none();
    let http11 = f.settings.proxy_http_version == ProxyHttpVersion::Http11
        || (head.minor_version == 1 && (head.upgrade || streams_chunks));

    match &f.settings.proxy_method {
        Some(m) => v.eval(m, &mut out),
        None => out.extend_from_slice(&cbuf[head.method_range.clone()]),
    }
    out.push(b' ');
    write_uri(f, cbuf, &v, &mut out);
    out.extend_from_slice(if http11 {
        b" HTTP/1.1\r\n"
    } else {
        b" HTTP/1.0\r\n"
    });

    let mut set_host = false;
    let mut set_connection: Option<bool> = None; // Some(close?)
    let mut value = Vec::new();
    for (name, template) in &f.settings.proxy_set_header {
        value.clear();
        v.eval(template, &mut value);
        let is_connection = name.eq_ignore_ascii_case("connection");
        if is_connection {
            set_connection = Some(
                contains_token(&value, b"close")
                    || (!http11 && !contains_token(&value, b"keep-alive")),
            );
        }
        if name.eq_ignore_ascii_case("host") {
            set_host = true;
        }
        if value.is_empty() {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    if !set_host {
        out.extend_from_slice(b"Host: ");
        match head.host.map(|i| &head.headers[i]) {
            Some(h) if head.absolute_host.is_none() => {
                out.extend_from_slice(&cbuf[h.value.clone()])
            }
            _ => match &head.absolute_host {
                Some(r) => out.extend_from_slice(&cbuf[r.clone()]),
                None => out.extend_from_slice(f.pass.proxy_host.as_bytes()),
            },
        }
        out.extend_from_slice(b"\r\n");
    }
    let close = if head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        if let Some(u) = head.header_value(cbuf, "upgrade") {
            out.extend_from_slice(u);
        }
        out.extend_from_slice(b"\r\n");
        true
    } else {
        match set_connection {
            Some(close) => close,
            None => {
                let pooled = f.upstream.keepalive.is_some()
                    && http11
                    && requests_before + 1 < f.upstream.keepalive_requests;
                if !pooled {
                    out.extend_from_slice(b"Connection: close\r\n");
                }
                !pooled
            }
        }
    };
    let own_length = |out: &mut Buf, n: u64| {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    let set_length = f.settings.proxy_set_header.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    // `proxy_set_body`: its value's length, as nginx's `$proxy_internal_body_length`.
    let set_body_len = f
        .settings
        .proxy_set_body
        .as_ref()
        .map(|t| v.evaluated(t).len());
    match (&body.dechunked, &body.spooled) {
        _ if set_length => {}
        _ if set_body_len.is_some() => own_length(&mut out, set_body_len.unwrap_or(0) as u64),
        // Without the client's fields, its length still goes (nginx sends it from
        // `$proxy_internal_body_length`, also with `proxy_pass_request_body off`).
        (None, None) if !f.settings.proxy_pass_request_headers => {
            if let BodyFraming::Length(n) = head.framing {
                own_length(&mut out, n);
            } else if streams_chunks {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
        }
        (Some(payload), _) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(payload.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A spooled body with a Content-Length keeps the client's field.
        (None, Some(sp)) if head.framing == BodyFraming::Chunked => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(sp.len.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        (None, None) if head.framing == BodyFraming::Chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        _ => {}
    }
    let client_fields = if f.settings.proxy_pass_request_headers {
        &head.headers[..]
    } else {
        &[]
    };
    for h in client_fields {
        if h.hop_by_hop {
            continue;
        }
        let name = &cbuf[h.name.clone()];
        if f.settings.proxy_set_body.is_some()
            && (name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"expect") {
            continue;
        }
        if f.settings
            .proxy_set_header
            .iter()
            .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&cbuf[h.value.clone()]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    UpstreamHead { bytes: out, close }
}

/// The head [`forward`](super::forward) sends upstream for `f`'s request when it has
/// no body, on a connection that carried no request yet: the header rewriting alone,
/// without I/O (what `benches/upstream_head.rs` measures).
pub fn upstream_head(f: &Forward<'_>, cbuf: &[u8], peer: &Endpoint) -> Buf {
    let no_body = RequestBody {
        len: 0,
        complete: true,
        scanner: None,
        remaining: 0,
        dechunked: None,
        streaming: Streaming::NotStarted,
        spooled: None,
    };
    build_head(f, cbuf, peer, 0, &no_body).bytes
}

/// The request URI sent upstream: the client's as is, or, when `proxy_pass` has a URI
/// part, the normalised path with the matched location prefix replaced by it.
fn write_uri(f: &Forward<'_>, cbuf: &[u8], v: &RequestVars<'_>, out: &mut Vec<u8>) {
    // `proxy_pass` with variables: a URI part is the whole URI, as evaluated.
    if let (Some(_), Some(uri)) = (&f.pass.url, &f.pass.uri) {
        out.extend_from_slice(uri.as_bytes());
        return;
    }
    if let Some(rewritten) = f.rewritten {
        // nginx sends the rewritten `$uri`, escaped, and the arguments as they are now.
        match (&f.pass.uri, &f.pass.location_prefix) {
            (Some(uri), Some(prefix)) if rewritten.prefix_applies => {
                out.extend_from_slice(uri.as_bytes());
                crate::http1::escape::escape_uri(
                    f.uri.strip_prefix(prefix.as_str()).unwrap_or("").as_bytes(),
                    out,
                );
            }
            _ => crate::http1::escape::escape_uri(f.uri.as_bytes(), out),
        }
        let mut args = Vec::new();
        v.eval_var(&crate::config::Var::Args, &mut args);
        if !args.is_empty() {
            out.push(b'?');
            out.extend_from_slice(&args);
        }
        return;
    }
    let Some(uri) = &f.pass.uri else {
        v.request_uri(out);
        return;
    };
    let rest = match &f.pass.location_prefix {
        Some(prefix) => f.uri.strip_prefix(prefix.as_str()).unwrap_or(""),
        None => f.uri,
    };
    out.extend_from_slice(uri.as_bytes());
    crate::http1::escape::escape_uri(rest.as_bytes(), out);
    if let Some(q) = f.head.query(cbuf) {
        out.push(b'?');
        out.extend_from_slice(q);
    }
}

/// Whether the client's body goes upstream: not with `proxy_set_body` (its value goes
/// instead) or `proxy_pass_request_body off`; the body is read and dropped then.
pub(super) fn sends_client_body(f: &Forward<'_>) -> bool {
    match f.pass.protocol {
        UpstreamProtocol::Uwsgi => f.settings.uwsgi.pass_request_body,
        _ => f.settings.proxy_pass_request_body && f.settings.proxy_set_body.is_none(),
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Sends the head and the body: the buffered part in the same `writev` as the head,
/// the rest streamed from the client in 64 KiB chunks (recorded in
/// `body.streaming`, with the bytes of a following pipelined request read past the end
/// of a chunked body).
pub(super) async fn send<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    conn: &mut UpstreamConn,
    head: &[u8],
    body: &mut RequestBody,
) -> Result<(), AttemptError> {
    if !body.replayable() {
        // Only a retry could get here, and the plan allows none once the body left.
        return Err(AttemptError::Client {
            status: 502,
            why: "request body already sent to another peer".into(),
        });
    }
    let extra = send_head_and_body(f, client, cbuf, conn, head, body).await?;
    if body.streaming == Streaming::Partial {
        body.streaming = Streaming::Done(extra.unwrap_or_default());
    }
    Ok(())
}

async fn send_head_and_body<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    conn: &mut UpstreamConn,
    head: &[u8],
    body: &mut RequestBody,
) -> Result<Option<Vec<u8>>, AttemptError> {
    let send_timeout = f.settings.proxy_send_timeout;
    // `proxy_set_body`, `proxy_pass_request_body off` or `uwsgi_pass_request_body
    // off`: the configured body (if any) goes instead, and what is still to come of
    // the client's is read and dropped, so the connection can carry the next request.
    let sends = sends_client_body(f);
    let mut own = Vec::new();
    let http = f.pass.protocol != UpstreamProtocol::Uwsgi;
    if let (false, true, Some(t)) = (sends, http, &f.settings.proxy_set_body) {
        vars(f, cbuf, None).eval(t, &mut own);
    }
    if let Some(sp) = body.spooled.as_ref().filter(|_| sends) {
        io::write_all(&conn.stream, head, send_timeout)
            .await
            .map_err(AttemptError::Send)?;
        send_spooled(sp, conn, send_timeout).await?;
        return Ok(None);
    }
    let start = f.head.head_len;
    // A chunked body that continues past the buffer goes on re-framed as nginx sends
    // it: the preread part as one chunk, then one chunk per read.
    let mut preread = Vec::new();
    let initial = match &body.dechunked {
        _ if !sends => &own[..],
        Some(payload) => &payload[..],
        None if f.head.framing == BodyFraming::Chunked => {
            ChunkedScanner::new()
                .rechunk(&cbuf[start..start + body.len], &mut preread)
                .map_err(|e| AttemptError::Client {
                    status: 400,
                    why: format!("client sent invalid chunked body ({e})"),
                })?;
            &preread[..]
        }
        None => &cbuf[start..start + body.len],
    };
    let mut slices = [IoSlice::new(head), IoSlice::new(initial)];
    io::write_all_vectored(&conn.stream, &mut slices, send_timeout)
        .await
        .map_err(AttemptError::Send)?;
    if body.complete || body.spooled.is_some() {
        return Ok(None);
    }

    if f.head.expect_continue {
        client
            .send_continue()
            .await
            .map_err(|e| client_error(408, "client closed before sending its body", e))?;
    }
    body.streaming = Streaming::Partial;
    let body_timeout = f.settings.client_body_timeout;
    let mut bbuf = Buf::body();
    match f.head.framing {
        BodyFraming::Length(_) => {
            let mut remaining = body.remaining;
            while remaining > 0 {
                bbuf.clear();
                let want = remaining.min(crate::net::buffers::BODY_BUF as u64);
                let n = client
                    .read_body(&mut bbuf, want as usize, body_timeout)
                    .await
                    .map_err(|e| client_error(400, "client sent a short body", e))?;
                remaining -= n as u64;
                if sends {
                    io::write_all(&conn.stream, &bbuf, send_timeout)
                        .await
                        .map_err(AttemptError::Send)?;
                }
            }
            Ok(None)
        }
        BodyFraming::Chunked => {
            let Some(mut sc) = body.scanner.clone() else {
                return Ok(None);
            };
            let max = f.settings.client_max_body_size;
            let mut framed = Vec::new();
            loop {
                bbuf.clear();
                client
                    .read_body(&mut bbuf, crate::net::buffers::BODY_BUF, body_timeout)
                    .await
                    .map_err(|e| client_error(400, "client sent a short chunked body", e))?;
                framed.clear();
                let step = sc
                    .rechunk(&bbuf, &mut framed)
                    .map_err(|e| AttemptError::Client {
                        status: 400,
                        why: format!("client sent invalid chunked body ({e})"),
                    })?;
                if max != 0 && sc.payload_len() > max {
                    return Err(AttemptError::Client {
                        status: 413,
                        why: format!(
                            "client intended to send too large chunked body: {} bytes",
                            sc.payload_len()
                        ),
                    });
                }
                if sends {
                    io::write_all(&conn.stream, &framed, send_timeout)
                        .await
                        .map_err(AttemptError::Send)?;
                }
                if let ScanStep::Done { body_end } = step {
                    return Ok((body_end < bbuf.len()).then(|| bbuf[body_end..].to_vec()));
                }
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => Ok(None),
    }
}

/// Sends a spooled body from its start (positional reads: a retry starts over).
async fn send_spooled(
    sp: &super::plan::SpooledBody,
    conn: &mut UpstreamConn,
    send_timeout: std::time::Duration,
) -> Result<(), AttemptError> {
    let mut piece = Buf::body();
    let mut at = 0u64;
    while at < sp.len {
        let want = (sp.len - at).min(crate::net::buffers::BODY_BUF as u64) as usize;
        piece.clear();
        piece.resize(want, 0);
        // A local file in the page cache: read in place, as nginx does.
        let n = sp
            .file
            .read_at(&mut piece[..want], at)
            .map_err(|e| AttemptError::Client {
                status: 500,
                why: format!(
                    "pread() of the buffered request body failed ({})",
                    crate::log::os_error_text(&e)
                ),
            })?;
        if n == 0 {
            return Err(AttemptError::Client {
                status: 500,
                why: "the buffered request body was truncated".into(),
            });
        }
        io::write_all(&conn.stream, &piece[..n], send_timeout)
            .await
            .map_err(AttemptError::Send)?;
        at += n as u64;
    }
    Ok(())
}

fn client_error(status: u16, why: &str, e: IoFailure) -> AttemptError {
    let status = if matches!(e, IoFailure::Timeout) {
        408
    } else {
        status
    };
    AttemptError::Client {
        status,
        why: format!("{why} {}", e.describe()),
    }
}

/// Answers with an error page (nothing was sent to the client yet), or leaves it to
/// the caller when the location has its own page for `status`.
pub(super) async fn answer_error<D: Downstream>(
    f: &Forward<'_>,
    client: &mut D,
    cbuf: &[u8],
    status: u16,
    done: &mut Forwarded,
) {
    if matches!(status, 400 | 408 | 413) || done.consumed.is_none() {
        done.keep_client = false;
    }
    done.status = status;
    // `$upstream_*` on the error (and in an error page, which nginx reaches with the
    // request's upstream states kept) list every attempt made.
    let listed = f.log_upstream && !done.attempts.is_empty();
    if let Some(locals) = f.locals.filter(|_| listed) {
        locals.set_upstream(done.attempts.clone());
    }
    if status == 499 {
        // The client is gone (nginx's "client closed request"): nothing to answer.
        done.keep_client = false;
        return;
    }
    if (f.hands_off)(status) {
        done.handed_off = Some(super::HandedOff {
            status,
            www_authenticate: Vec::new(),
        });
        return;
    }
    // `add_header ... always` (and the others, for a status they apply to) go on
    // ferrolb's own error pages too, as on nginx's.
    let applies = crate::http1::respond::add_header_applies(status);
    let lines = f.settings.add_header.iter().filter(|h| h.always || applies);
    let mut fields = Vec::new();
    let tried = done.upstream_addr.as_ref().filter(|_| !listed);
    let v = vars(f, cbuf, tried);
    for h in lines {
        let value = v.evaluated(&h.value);
        if !value.is_empty() {
            fields.push((h.name.as_bytes().to_vec(), value));
        }
    }
    if !fields.is_empty() {
        client.error_fields(fields);
    }
    match client
        .send_error(f.head, status, done.keep_client, done.retry_after_secs)
        .await
    {
        Ok(bytes) => done.head_bytes = bytes,
        Err(_) => done.keep_client = false,
    }
}
