//! Value syntax shared by many directives: nginx times and sizes, numbers, `on`/`off`
//! flags and variable templates, with the error each gives when it does not parse.

use std::time::Duration;

use super::rewrite::VarNames;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::template;
use crate::config::types::{GzipTypes, Template};

/// nginx's `"NAME" directive invalid value "V"`, with a hint on the syntax when we have one.
pub(super) fn invalid_value(d: &Directive, value: &str, hint: Option<&str>) -> ConfigError {
    let msg = format!("\"{}\" directive invalid value \"{value}\"", d.name);
    match hint {
        Some(h) => ConfigError::hinted(&d.span, msg, h),
        None => ConfigError::at(&d.span, msg),
    }
}

/// The hint for a value [`parse_time`] rejects.
pub(super) const TIME_HINT: &str = "use a number with an optional unit ms, s, m, h, d, w, M, y (e.g. 30s or 1m30s); no unit means seconds";
/// The hint for a value [`parse_size`] rejects.
pub(super) const SIZE_HINT: &str =
    "use a number of bytes with an optional unit k, m or g (e.g. 10m)";

/// nginx's time syntax: `500ms`, `30s`, `30`, `1h30m`, `1h 30m`.
pub fn parse_time(s: &str) -> Option<Duration> {
    let mut total_ms: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                None | Some(' ') => (1000, 0),
                Some('s') => (1000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                Some('w') => (7 * 86_400_000, 1),
                Some('M') => (30 * 86_400_000, 1),
                Some('y') => (365 * 86_400_000, 1),
                Some(_) => return None,
            }
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        rest = rest[len..].trim_start();
    }
    Some(Duration::from_millis(total_ms))
}

/// nginx's size syntax: `1024`, `8k`, `10m`, `1g` (either case).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A MIME type list (`gzip_types`, `charset_types`): the types in lower case, each
/// once, after `always` (nginx's `gzip_types` always has `text/html`); `*` is any type.
pub(super) fn mime_types(d: &Directive, always: Option<&str>) -> GzipTypes {
    let mut list: Vec<String> = always.into_iter().map(str::to_owned).collect();
    for a in &d.args {
        if a.value == "*" {
            return GzipTypes::Any;
        }
        let t = a.value.to_ascii_lowercase();
        if !list.contains(&t) {
            list.push(t);
        }
    }
    GzipTypes::List(list)
}

/// The first argument as `on`/`off`.
pub(super) fn flag(d: &Directive) -> Result<bool> {
    match d.arg(0) {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(ConfigError::at(
            &d.span,
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                d.name
            ),
        )),
    }
}

/// A plain decimal number; nginx accepts no sign and no unit here.
pub(super) fn number<T: std::str::FromStr>(d: &Directive, s: &str) -> Result<T> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::at(
            &d.span,
            format!("\"{}\" directive invalid number \"{s}\"", d.name),
        ));
    }
    s.parse().map_err(|_| {
        ConfigError::at(
            &d.span,
            format!("\"{}\" directive invalid number \"{s}\"", d.name),
        )
    })
}

/// A [`parse_time`] value, or the directive's invalid-value error.
pub(super) fn time(d: &Directive, s: &str) -> Result<Duration> {
    parse_time(s).ok_or_else(|| invalid_value(d, s, Some(TIME_HINT)))
}

/// A text with `$variables`, or the template error placed at the directive.
pub(super) fn templ(d: &Directive, s: &str, names: &VarNames) -> Result<Template> {
    template::parse_with(s, &|n| names.lookup(n)).map_err(|e| {
        let (msg, hint) = e.message(s);
        match hint {
            Some(h) => ConfigError::hinted(&d.span, msg, h),
            None => ConfigError::at(&d.span, msg),
        }
    })
}

/// A PCRE pattern as the `regex` crate reads it: PCRE's `\Q...\E` quoting (which the
/// crate lacks) becomes escaped characters; everything else is passed through.
pub(super) fn pcre(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains("\\Q") {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    while let Some(at) = rest.find("\\Q") {
        // An escaped backslash before it (`\\Q`) is not quoting.
        let backslashes = rest[..at].chars().rev().take_while(|&c| c == '\\').count();
        if backslashes % 2 == 1 {
            out.push_str(&rest[..at + 2]);
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let quoted = &rest[at + 2..];
        let (lit, after) = match quoted.find("\\E") {
            Some(e) => (&quoted[..e], &quoted[e + 2..]),
            None => (quoted, ""),
        };
        out.push_str(&regex::escape(lit));
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod pcre_tests {
    use super::pcre;

    #[test]
    fn quoting_becomes_escapes() {
        assert_eq!(
            pcre("^(?P<name>[a-z]+)\\Q.example.com\\E$"),
            "^(?P<name>[a-z]+)\\.example\\.com$"
        );
        assert_eq!(pcre("a\\Q*+"), "a\\*\\+");
        assert_eq!(pcre("plain.*"), "plain.*");
        assert_eq!(pcre("x\\\\Qy"), "x\\\\Qy");
    }
}
