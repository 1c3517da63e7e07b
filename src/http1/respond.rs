//! Responses ferrolb makes itself: error pages, `return`, `100 Continue`.

use std::io::Write as _;

/// The reason phrase for a status code ferrolb (or its admin API, or the demo backends)
/// may produce, with nginx's wording; "Unknown" for any other code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        408 => "Request Time-out",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Whether a status is a redirect that `return code URL` sends with a Location header.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Whether `add_header` (without `always`) applies to a status, as in nginx.
pub fn add_header_applies(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Writes the status line, `Server`, `Date` and `Connection: keep-alive` or `close`, as
/// nginx writes it on every response. (`http10_client` no longer changes the output;
/// kept so callers say who they answer.)
pub fn write_status_line(out: &mut Vec<u8>, status: u16, keep_alive: bool, http10_client: bool) {
    write_status_line_with(out, status, keep_alive, http10_client, None);
}

/// [`write_status_line`], with `Keep-Alive: timeout=N` after `Connection: keep-alive`
/// when `keepalive_header` (`keepalive_timeout`'s second value) is set.
pub fn write_status_line_with(
    out: &mut Vec<u8>,
    status: u16,
    keep_alive: bool,
    http10_client: bool,
    keepalive_header: Option<std::time::Duration>,
) {
    let _ = http10_client;
    let status = wire_status(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_status_code(out, status);
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: ferrolb\r\nDate: ");
    write_http_date(out);
    out.extend_from_slice(b"\r\n");
    connection_fields(out, keep_alive, keepalive_header);
}

/// `Connection: keep-alive` (and `Keep-Alive: timeout=N` when `keepalive_header` is
/// set) or `Connection: close`, as nginx names the connection's fate.
pub fn connection_fields(
    out: &mut Vec<u8>,
    keep_alive: bool,
    keepalive_header: Option<std::time::Duration>,
) {
    if keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
        // nginx sends none for 0.
        if let Some(t) = keepalive_header.filter(|t| t.as_secs() > 0) {
            let _ = write!(out, "Keep-Alive: timeout={}\r\n", t.as_secs());
        }
    } else {
        out.extend_from_slice(b"Connection: close\r\n");
    }
}

/// Appends a status code as its three digits (a status line's code always has three),
/// without the formatting machinery: it is on every response.
pub fn push_status_code(out: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

/// A complete error page response (nginx's look, ferrolb's name).
pub fn error_page(
    out: &mut Vec<u8>,
    status: u16,
    keep_alive: bool,
    http10_client: bool,
    head_only: bool,
) {
    error_page_retry_after(out, status, keep_alive, http10_client, head_only, None);
}

/// The status on the wire for one of nginx's internal codes: 494 to 497 are 400s
/// whose page says more (header too large, TLS certificate problems, plain HTTP sent
/// to an HTTPS port).
pub fn wire_status(status: u16) -> u16 {
    match status {
        494..=497 => 400,
        s => s,
    }
}

/// What the page of an internal 4xx code says under its "400 Bad Request".
fn special_400(status: u16) -> Option<&'static str> {
    Some(match status {
        494 => "Request Header Or Cookie Too Large",
        495 => "The SSL certificate error",
        496 => "No required SSL certificate was sent",
        497 => "The plain HTTP request was sent to HTTPS port",
        _ => return None,
    })
}

/// The standard page of a status, nginx's layout (and its titles: a 302 page says
/// "Found" under a "Moved Temporarily" status line, a 401 page "Authorization
/// Required" under "Unauthorized").
pub fn error_body(status: u16) -> String {
    if let Some(why) = special_400(status) {
        return format!(
            "<html>\r\n<head><title>400 {why}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>{why}</center>\r\n<hr><center>ferrolb</center>\r\n</body>\r\n</html>\r\n"
        );
    }
    let title = match status {
        302 => "Found",
        401 => "Authorization Required",
        s => reason(s),
    };
    format!(
        "<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<hr><center>ferrolb</center>\r\n</body>\r\n</html>\r\n",
        r = title
    )
}

/// [`error_page`] with a `Retry-After: SECS` header when `retry_after_secs` is set
/// (a 503 while the peers are still starting).
pub fn error_page_retry_after(
    out: &mut Vec<u8>,
    status: u16,
    keep_alive: bool,
    http10_client: bool,
    head_only: bool,
    retry_after_secs: Option<u32>,
) {
    let body = error_body(status);
    write_status_line(out, status, keep_alive, http10_client);
    if let Some(secs) = retry_after_secs {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: text/html\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Appends the current time as an HTTP date (`Wed, 25 Nov 2026 16:31:53 GMT`), formatted
/// once per second per thread: it is on every generated response.
pub fn write_http_date(out: &mut Vec<u8>) {
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        let now = chrono::Utc::now();
        let secs = now.timestamp();
        if d.0 != secs {
            d.1 = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            d.0 = secs;
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

thread_local! {
    static DATE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_is_complete() {
        let mut out = Vec::new();
        error_page(&mut out, 502, false, false, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
