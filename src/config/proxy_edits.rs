//! How a location edits the fields of a proxied response: `proxy_redirect` on
//! `Location` and `Refresh`, `proxy_cookie_domain`, `proxy_cookie_path` and
//! `proxy_cookie_flags` on `Set-Cookie` (nginx's `ngx_http_proxy_rewrite_*`).

use super::types::Template;

/// What a rewrite rule matches at the start of a field value (or of a cookie
/// attribute's value).
#[derive(Debug, Clone)]
pub enum EditMatch {
    /// A literal or a template compared, case-sensitively, with the start of the value
    /// (`proxy_redirect`, `proxy_cookie_path`); the matched start is replaced.
    Prefix(Template),
    /// `proxy_cookie_domain`'s plain form: the whole domain, a leading dot on either
    /// side ignored, compared without regard to case; the domain after the dot is
    /// replaced.
    Domain(Template),
    /// `~ regex` (`~*`: caseless), searched in the value; on a match the whole value is
    /// replaced, the replacement's `$1`.. taking the groups.
    Regex(regex::bytes::Regex),
}

/// One `proxy_redirect`, `proxy_cookie_domain` or `proxy_cookie_path` pair.
#[derive(Debug, Clone)]
pub struct EditRule {
    /// What the value must match.
    pub pattern: EditMatch,
    /// What replaces the matched part (variables and, after a regex, its groups).
    pub replacement: Template,
}

/// `proxy_cookie_flags` flag bits, nginx's `NGX_HTTP_PROXY_COOKIE_*`.
pub mod cookie_flag {
    /// `secure`: add `Secure`.
    pub const SECURE_ON: u16 = 1 << 0;
    /// `nosecure`: remove `Secure`.
    pub const SECURE_OFF: u16 = 1 << 1;
    /// `httponly`: add `HttpOnly`.
    pub const HTTPONLY_ON: u16 = 1 << 2;
    /// `nohttponly`: remove `HttpOnly`.
    pub const HTTPONLY_OFF: u16 = 1 << 3;
    /// `samesite=strict`.
    pub const SAMESITE_STRICT: u16 = 1 << 4;
    /// `samesite=lax`.
    pub const SAMESITE_LAX: u16 = 1 << 5;
    /// `samesite=none`.
    pub const SAMESITE_NONE: u16 = 1 << 6;
    /// `nosamesite`: remove `SameSite`.
    pub const SAMESITE_OFF: u16 = 1 << 7;

    /// The flag a (lower-cased) `proxy_cookie_flags` word names.
    pub fn parse(word: &[u8]) -> Option<u16> {
        Some(match word.to_ascii_lowercase().as_slice() {
            b"secure" => SECURE_ON,
            b"nosecure" => SECURE_OFF,
            b"httponly" => HTTPONLY_ON,
            b"nohttponly" => HTTPONLY_OFF,
            b"samesite=strict" => SAMESITE_STRICT,
            b"samesite=lax" => SAMESITE_LAX,
            b"samesite=none" => SAMESITE_NONE,
            b"nosamesite" => SAMESITE_OFF,
            _ => return None,
        })
    }
}

/// Which cookies a `proxy_cookie_flags` line is for.
#[derive(Debug, Clone)]
pub enum CookieName {
    /// The name, compared without regard to case (a template; `$`-free usually).
    Name(Template),
    /// `~regex`, caseless, searched in the name.
    Regex(regex::bytes::Regex),
}

/// One `proxy_cookie_flags cookie flag...` line. The flags are templates; each
/// value is one of the words of [`cookie_flag::parse`] (others are skipped, as
/// nginx skips them, with a debug message).
#[derive(Debug, Clone)]
pub struct CookieFlags {
    /// The cookies it is for.
    pub cookie: CookieName,
    /// The flags, evaluated per response.
    pub flags: Vec<Template>,
}

/// A location's response field edits after merging. Each list is inherited whole
/// from the closest level that has one (an `off` at a level clears it).
#[derive(Debug, Clone, Default)]
pub struct ProxyEdits {
    /// `proxy_redirect` rules, tried in order on `Location` and on the `url=` part of
    /// `Refresh`; the first that matches rewrites. Default (`proxy_redirect default`):
    /// the `proxy_pass` URL (with `/` when it has no URI part) becomes the location's
    /// prefix (or `/`). Empty: `off`, or `proxy_pass` with variables.
    pub redirects: Vec<EditRule>,
    /// `proxy_cookie_domain` rules for `Set-Cookie`'s `domain=`. Default none (`off`).
    pub cookie_domains: Vec<EditRule>,
    /// `proxy_cookie_path` rules for `Set-Cookie`'s `path=`. Default none (`off`).
    pub cookie_paths: Vec<EditRule>,
    /// `proxy_cookie_flags` lines; the first whose cookie matches applies. Default
    /// none (`off`).
    pub cookie_flags: Vec<CookieFlags>,
}

impl ProxyEdits {
    /// True when nothing edits `Set-Cookie`.
    pub fn cookies_untouched(&self) -> bool {
        self.cookie_domains.is_empty()
            && self.cookie_paths.is_empty()
            && self.cookie_flags.is_empty()
    }

    /// True when nothing edits any field.
    pub fn is_empty(&self) -> bool {
        self.redirects.is_empty() && self.cookies_untouched()
    }
}
