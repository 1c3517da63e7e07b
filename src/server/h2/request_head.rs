//! An HTTP/2 request as an HTTP/1.1 head, for the request pipeline, which parses it
//! with the HTTP/1 codec like any other: the pseudo-headers become the request line
//! and `Host`, cookie crumbs are joined with `"; "` (RFC 9113 §8.2.3), and a body
//! without `content-length` is announced as chunked (the front end frames its DATA so).

use http::request::Parts;

/// How the request body follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body: the HEADERS frame ended the stream.
    None,
    /// DATA bytes as they come, `content-length` of them.
    Length,
    /// DATA bytes as HTTP/1 chunks, a last chunk at the end of the stream.
    Chunked,
}

/// Why a request cannot be served: RFC 9113 makes it malformed (a stream error of
/// type PROTOCOL_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client sent {0} in an HTTP/2 request")]
pub(super) struct Malformed(&'static str);

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); the codec refuses them already, this is
/// the pipeline's own guard.
fn connection_specific(name: &str, value: &[u8]) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    ) || (name == "te" && !value.eq_ignore_ascii_case(b"trailers"))
}

/// Writes the HTTP/1.1 head of `parts` into `out`; `end_stream`: the HEADERS frame
/// ended the stream (no body follows).
pub(super) fn build(
    parts: &Parts,
    end_stream: bool,
    out: &mut Vec<u8>,
) -> Result<BodyFraming, Malformed> {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let authority = parts.uri.authority().map(|a| a.as_str());
    if parts.method == http::Method::CONNECT {
        out.extend_from_slice(
            authority
                .ok_or(Malformed("CONNECT without :authority"))?
                .as_bytes(),
        );
    } else {
        let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        if target.is_empty() {
            return Err(Malformed("an empty :path"));
        }
        out.extend_from_slice(target.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(a) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut cookies = 0;
    let mut length = false;
    for (name, value) in &parts.headers {
        let name = name.as_str();
        let value = value.as_bytes();
        if connection_specific(name, value) {
            return Err(Malformed("a connection-specific header field"));
        }
        match name {
            // `:authority` wins over a `host` field (RFC 9113 §8.3.1).
            "host" if authority.is_some() => continue,
            // Only `trailers` is allowed, and it says nothing to an HTTP/1 hop.
            "te" => continue,
            "cookie" => {
                cookies += 1;
                continue;
            }
            "content-length" => length = true,
            _ => {}
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if cookies > 0 {
        out.extend_from_slice(b"cookie: ");
        for (i, c) in parts.headers.get_all("cookie").iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let framing = if end_stream {
        BodyFraming::None
    } else if length {
        BodyFraming::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        BodyFraming::Chunked
    };
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::Request<()>, end_stream: bool) -> (String, Result<BodyFraming, Malformed>) {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        let r = build(&parts, end_stream, &mut out);
        (String::from_utf8(out).expect("utf-8"), r)
    }

    #[test]
    fn pseudo_headers_make_the_request_line_and_host() {
        let req = http::Request::get("https://example.com/a?b=1")
            .header("user-agent", "t")
            .header("host", "other")
            .body(())
            .expect("request");
        let (h, r) = head(req, true);
        assert_eq!(r, Ok(BodyFraming::None));
        assert_eq!(
            h,
            "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nuser-agent: t\r\n\r\n"
        );
    }

    #[test]
    fn cookie_crumbs_are_joined_and_a_body_without_length_is_chunked() {
        let req = http::Request::post("https://example.com/")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (h, r) = head(req, false);
        assert_eq!(r, Ok(BodyFraming::Chunked));
        assert_eq!(
            h,
            "POST / HTTP/1.1\r\nhost: example.com\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_body_with_length_keeps_it() {
        let req = http::Request::put("http://h/x")
            .header("content-length", "3")
            .body(())
            .expect("request");
        let (h, r) = head(req, false);
        assert_eq!(r, Ok(BodyFraming::Length));
        assert!(h.contains("content-length: 3\r\n") && !h.contains("chunked"));
    }

    #[test]
    fn connection_specific_fields_are_malformed() {
        for (n, v) in [
            ("connection", "close"),
            ("keep-alive", "1"),
            ("proxy-connection", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
        ] {
            let req = http::Request::get("http://h/")
                .header(n, v)
                .body(())
                .expect("request");
            assert!(head(req, true).1.is_err(), "{n}");
        }
    }
}
