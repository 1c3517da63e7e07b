//! `$variable` strings split into [`Template`] parts at load time.

use super::types::{Template, TemplatePart, Var};

/// Why a template is invalid; the caller adds the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `$` not followed by a name.
    InvalidName,
    /// `${name` without `}`.
    MissingBracket(String),
    /// A name ferrolb does not know.
    Unknown(String),
}

impl TemplateError {
    /// nginx's wording for the error in `text`, and a hint where one helps.
    pub fn message(&self, text: &str) -> (String, Option<String>) {
        match self {
            TemplateError::InvalidName => (format!("invalid variable name in \"{text}\""), None),
            TemplateError::MissingBracket(name) => (
                format!("the closing bracket in \"{name}\" variable is missing"),
                None,
            ),
            TemplateError::Unknown(name) => (
                format!("unknown \"{name}\" variable"),
                Some(if name == "connection_upgrade" {
                    "$connection_upgrade comes from a \"map\" block: declare it with map $http_upgrade $connection_upgrade { default upgrade; \"\" close; }".to_owned()
                } else {
                    "see the README for the variables ferrolb knows, or declare it with \"set\" or \"map\"".to_owned()
                }),
            ),
        }
    }
}

/// The variable named `name` (without `$`).
pub fn var(name: &str) -> Option<Var> {
    let header = |rest: &str| rest.to_ascii_lowercase().replace('_', "-");
    if let Some(rest) = name.strip_prefix("http_") {
        return (!rest.is_empty()).then(|| Var::Http(header(rest)));
    }
    if let Some(rest) = name.strip_prefix("sent_http_") {
        return (!rest.is_empty()).then(|| Var::SentHttp(header(rest)));
    }
    if let Some(rest) = name.strip_prefix("sent_trailer_") {
        return (!rest.is_empty()).then(|| Var::SentTrailer(header(rest)));
    }
    if let Some(rest) = name.strip_prefix("upstream_http_") {
        return (!rest.is_empty()).then(|| Var::UpstreamHttp(header(rest)));
    }
    if let Some(rest) = name.strip_prefix("upstream_cookie_") {
        return (!rest.is_empty()).then(|| Var::UpstreamCookie(rest.to_owned()));
    }
    if let Some(rest) = name.strip_prefix("cookie_") {
        return (!rest.is_empty()).then(|| Var::Cookie(rest.to_owned()));
    }
    if let Some(rest) = name.strip_prefix("arg_") {
        // `$arg_` names no argument: always empty, as in nginx.
        return Some(Var::Arg(rest.to_owned()));
    }
    if let Some(rest) = name.strip_prefix("proxy_protocol_tlv_") {
        return crate::config::TlvName::parse(rest).map(Var::ProxyProtocolTlv);
    }
    Some(match name {
        "host" => Var::Host,
        "remote_addr" => Var::RemoteAddr,
        "remote_port" => Var::RemotePort,
        "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
        "scheme" => Var::Scheme,
        "server_addr" => Var::ServerAddr,
        "server_port" => Var::ServerPort,
        "server_name" => Var::ServerName,
        "server_protocol" => Var::ServerProtocol,
        "request_uri" => Var::RequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        "request_method" => Var::RequestMethod,
        "request" => Var::Request,
        "proxy_host" => Var::ProxyHost,
        "proxy_port" => Var::ProxyPort,
        "upstream_addr" => Var::UpstreamAddr,
        "upstream_status" => Var::UpstreamStatus,
        "upstream_response_time" => Var::UpstreamResponseTime,
        "upstream_connect_time" => Var::UpstreamConnectTime,
        "upstream_header_time" => Var::UpstreamHeaderTime,
        "upstream_response_length" => Var::UpstreamResponseLength,
        "upstream_bytes_received" => Var::UpstreamBytesReceived,
        "upstream_bytes_sent" => Var::UpstreamBytesSent,
        "status" => Var::Status,
        "gzip_ratio" => Var::GzipRatio,
        "time_local" => Var::TimeLocal,
        "time_iso8601" => Var::TimeIso8601,
        "msec" => Var::Msec,
        "request_time" => Var::RequestTime,
        "body_bytes_sent" => Var::BodyBytesSent,
        "bytes_sent" => Var::BytesSent,
        "request_length" => Var::RequestLength,
        "remote_user" => Var::RemoteUser,
        "connection" => Var::Connection,
        "connection_requests" => Var::ConnectionRequests,
        "connection_time" => Var::ConnectionTime,
        "pipe" => Var::Pipe,
        "hostname" => Var::Hostname,
        "request_filename" => Var::RequestFilename,
        "document_root" => Var::DocumentRoot,
        "realpath_root" => Var::RealpathRoot,
        "request_id" => Var::RequestId,
        "pid" => Var::Pid,
        "nginx_version" => Var::NginxVersion,
        "https" => Var::Https,
        "http2" => Var::Http2,
        "ssl_protocol" => Var::SslProtocol,
        "ssl_cipher" => Var::SslCipher,
        "ssl_server_name" => Var::SslServerName,
        "ssl_client_verify" => Var::SslClientVerify,
        "ssl_session_reused" => Var::SslSessionReused,
        "ssl_curve" => Var::SslCurve,
        "ssl_curves" => Var::SslCurves,
        "ssl_client_s_dn" => Var::SslClientSDn,
        "ssl_client_i_dn" => Var::SslClientIDn,
        "ssl_client_serial" => Var::SslClientSerial,
        "ssl_client_fingerprint" => Var::SslClientFingerprint,
        "ssl_client_raw_cert" => Var::SslClientRawCert,
        "ssl_client_cert" => Var::SslClientCert,
        "ssl_client_escaped_cert" => Var::SslClientEscapedCert,
        "ssl_session_id" => Var::SslSessionId,
        "ssl_ciphers" => Var::SslCiphers,
        "ssl_client_s_dn_legacy" => Var::SslClientSDnLegacy,
        "ssl_client_i_dn_legacy" => Var::SslClientIDnLegacy,
        "ssl_client_v_start" => Var::SslClientVStart,
        "ssl_client_v_end" => Var::SslClientVEnd,
        "ssl_client_v_remain" => Var::SslClientVRemain,
        "content_type" => Var::ContentType,
        "content_length" => Var::ContentLength,
        "request_body" => Var::RequestBody,
        "request_body_file" => Var::RequestBodyFile,
        "binary_remote_addr" => Var::BinaryRemoteAddr,
        "realip_remote_addr" => Var::RealipRemoteAddr,
        "limit_req_status" => Var::LimitReqStatus,
        "limit_conn_status" => Var::LimitConnStatus,
        "realip_remote_port" => Var::RealipRemotePort,
        "proxy_protocol_addr" => Var::ProxyProtocolAddr,
        "proxy_protocol_port" => Var::ProxyProtocolPort,
        "proxy_protocol_server_addr" => Var::ProxyProtocolServerAddr,
        "proxy_protocol_server_port" => Var::ProxyProtocolServerPort,
        "limit_rate" => Var::LimitRate,
        "date_gmt" => Var::DateGmt,
        "date_local" => Var::DateLocal,
        _ => return None,
    })
}

/// Splits `text` at `$name` and `${name}` (names are letters, digits and `_`, as nginx),
/// knowing only nginx's built-in variables and `$1`..`$9`.
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    parse_with(text, &|_| None)
}

/// [`parse`], with `user` naming the configuration's own variables (`set`, `map`, named
/// captures). Built-in names win, as nginx refuses to redefine them.
pub fn parse_with(
    text: &str,
    user: &dyn Fn(&str) -> Option<Var>,
) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        lit.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        // nginx reads `$1`..`$9` as one digit: `$10` is `$1` then `0`.
        if let Some(d @ b'1'..=b'9') = after.bytes().next() {
            if !lit.is_empty() {
                parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
            }
            parts.push(TemplatePart::Var(Var::Capture(d - b'0')));
            rest = &after[1..];
            continue;
        }
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| TemplateError::MissingBracket(inner.to_owned()))?;
            (&inner[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(TemplateError::InvalidName);
        }
        let v = var(name)
            .or_else(|| user(name))
            .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
        if !lit.is_empty() {
            parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
        }
        parts.push(TemplatePart::Var(v));
        rest = &after[consumed..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(Template { parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> TemplatePart {
        TemplatePart::Literal(s.to_owned())
    }

    #[test]
    fn splits_variables() {
        let t = parse("a${host}b$http_x_real_ip/$arg_id,$cookie_sid$query_string").expect("parses");
        assert_eq!(
            t.parts,
            vec![
                lit("a"),
                TemplatePart::Var(Var::Host),
                lit("b"),
                TemplatePart::Var(Var::Http("x-real-ip".into())),
                lit("/"),
                TemplatePart::Var(Var::Arg("id".into())),
                lit(","),
                TemplatePart::Var(Var::Cookie("sid".into())),
                TemplatePart::Var(Var::Args),
            ]
        );
        assert_eq!(
            parse("$http_host").expect("ok").parts,
            vec![TemplatePart::Var(Var::Http("host".into()))]
        );
        assert_eq!(parse("").expect("empty"), Template::default());
        assert!(parse("plain").expect("plain").is_literal());
    }

    #[test]
    fn log_variables() {
        let t = parse(
            "$status $body_bytes_sent $bytes_sent $request_length $request_time $msec \
             $time_local $time_iso8601 $remote_user $upstream_addr $upstream_status \
             $upstream_response_time $upstream_connect_time $upstream_header_time \
             $http_referer $http_user_agent $connection $connection_requests $pipe",
        )
        .expect("parses");
        let vars: Vec<Var> = t
            .parts
            .into_iter()
            .filter_map(|p| match p {
                TemplatePart::Var(v) => Some(v),
                TemplatePart::Literal(_) => None,
            })
            .collect();
        assert_eq!(
            vars,
            vec![
                Var::Status,
                Var::BodyBytesSent,
                Var::BytesSent,
                Var::RequestLength,
                Var::RequestTime,
                Var::Msec,
                Var::TimeLocal,
                Var::TimeIso8601,
                Var::RemoteUser,
                Var::UpstreamAddr,
                Var::UpstreamStatus,
                Var::UpstreamResponseTime,
                Var::UpstreamConnectTime,
                Var::UpstreamHeaderTime,
                Var::Http("referer".into()),
                Var::Http("user-agent".into()),
                Var::Connection,
                Var::ConnectionRequests,
                Var::Pipe,
            ]
        );
    }

    #[test]
    fn captures_and_user_variables() {
        let user = |n: &str| (n == "mine").then_some(Var::User(0));
        let t = parse_with("/new/$1$10/$mine${mine}x", &user).expect("parses");
        assert_eq!(
            t.parts,
            vec![
                lit("/new/"),
                TemplatePart::Var(Var::Capture(1)),
                TemplatePart::Var(Var::Capture(1)),
                lit("0/"),
                TemplatePart::Var(Var::User(0)),
                TemplatePart::Var(Var::User(0)),
                lit("x"),
            ]
        );
        assert_eq!(parse("$mine"), Err(TemplateError::Unknown("mine".into())));
    }

    #[test]
    fn errors() {
        assert_eq!(parse("$foo"), Err(TemplateError::Unknown("foo".into())));
        assert_eq!(parse("a $ b"), Err(TemplateError::InvalidName));
        assert_eq!(
            parse("${host"),
            Err(TemplateError::MissingBracket("host".into()))
        );
        assert_eq!(
            TemplateError::Unknown("foo".into()).message("$foo").0,
            "unknown \"foo\" variable"
        );
        let (msg, hint) = TemplateError::Unknown("sent_http_".into()).message("$sent_http_");
        assert_eq!(msg, "unknown \"sent_http_\" variable");
        assert!(hint.is_some_and(|h| h.contains("README")));
    }
}
