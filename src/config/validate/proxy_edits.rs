//! `proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path` and
//! `proxy_cookie_flags` (http, server, location), merged as nginx merges them: each
//! list comes whole from the closest level that has one, `off` clearing it.

use super::values::{pcre, templ};
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::proxy_edits::*;
use crate::config::types::{Span, Template};

/// One `proxy_redirect` entry before the location's `proxy_pass` is known.
#[derive(Debug, Clone)]
enum RedirectEntry {
    Rule(EditRule),
    /// `proxy_redirect default`, resolved against the same level's `proxy_pass`.
    Default(Span),
}

/// The field edits of one level; `None`: not set here, `Some(empty)`: `off`.
#[derive(Debug, Clone, Default)]
pub(super) struct ProxyEditsPartial {
    redirects: Option<Vec<RedirectEntry>>,
    cookie_domains: Option<Vec<EditRule>>,
    cookie_paths: Option<Vec<EditRule>>,
    cookie_flags: Option<Vec<CookieFlags>>,
}

impl ProxyEditsPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &ProxyEditsPartial) -> ProxyEditsPartial {
        ProxyEditsPartial {
            redirects: self.redirects.clone().or_else(|| parent.redirects.clone()),
            cookie_domains: self
                .cookie_domains
                .clone()
                .or_else(|| parent.cookie_domains.clone()),
            cookie_paths: self
                .cookie_paths
                .clone()
                .or_else(|| parent.cookie_paths.clone()),
            cookie_flags: self
                .cookie_flags
                .clone()
                .or_else(|| parent.cookie_flags.clone()),
        }
    }

    /// A location's own `proxy_pass URL` (its text, whether it has a URI part, its
    /// place) in a location named
    /// `location` (empty for regex and named locations): `proxy_redirect default` of
    /// this level becomes the pair nginx makes of them, and so does the default when
    /// no level set `proxy_redirect`. `own` is this level's partial alone (a `default`
    /// there must come with a `proxy_pass` here).
    pub(super) fn resolve_default(
        own: &ProxyEditsPartial,
        merged: &mut ProxyEditsPartial,
        pass: Option<(&str, bool, &str, &Span)>,
    ) -> Result<()> {
        let rule = |url: &str, has_uri: bool, location: &str| {
            let (pattern, replacement) = if has_uri {
                (url.to_owned(), location.to_owned())
            } else {
                (format!("{url}/"), "/".to_owned())
            };
            RedirectEntry::Rule(EditRule {
                pattern: EditMatch::Prefix(Template::literal(&pattern)),
                replacement: Template::literal(&replacement),
            })
        };
        let own_has_default = own
            .redirects
            .iter()
            .flatten()
            .any(|e| matches!(e, RedirectEntry::Default(_)));
        match (&mut merged.redirects, pass) {
            (None, Some((url, has_uri, location, _))) if !url.contains('$') => {
                merged.redirects = Some(vec![rule(url, has_uri, location)]);
            }
            (Some(list), pass) if own_has_default => {
                for e in list.iter_mut() {
                    if let RedirectEntry::Default(span) = e {
                        // nginx reads `default` with the `proxy_pass` seen so far.
                        let before = |p: &Span| {
                            p.file == span.file && (span.line, span.column) < (p.line, p.column)
                        };
                        let Some((url, has_uri, location, _)) = pass.filter(|(.., p)| !before(p))
                        else {
                            return Err(ConfigError::at(
                                span,
                                "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
                            ));
                        };
                        if url.contains('$') {
                            return Err(ConfigError::at(
                                span,
                                "\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables",
                            ));
                        }
                        *e = rule(url, has_uri, location);
                    }
                }
            }
            _ => {}
        }
        // A `default` from an enclosing level, which has no `proxy_pass`.
        if let Some(RedirectEntry::Default(span)) = merged
            .redirects
            .iter()
            .flatten()
            .find(|e| matches!(e, RedirectEntry::Default(_)))
        {
            return Err(ConfigError::at(
                span,
                "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
            ));
        }
        Ok(())
    }

    /// The merged edits ([`ProxyEditsPartial::resolve_default`] has replaced every
    /// `default` of a location).
    pub(super) fn finish(&self) -> ProxyEdits {
        ProxyEdits {
            redirects: self
                .redirects
                .iter()
                .flatten()
                .filter_map(|e| match e {
                    RedirectEntry::Rule(r) => Some(r.clone()),
                    RedirectEntry::Default(_) => None,
                })
                .collect(),
            cookie_domains: self.cookie_domains.clone().unwrap_or_default(),
            cookie_paths: self.cookie_paths.clone().unwrap_or_default(),
            cookie_flags: self.cookie_flags.clone().unwrap_or_default(),
        }
    }
}

/// `regex` compiled as nginx compiles the pattern of `~` (`caseless` for `~*`).
fn edit_regex(d: &Directive, pattern: &str, caseless: bool) -> Result<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(&pcre(pattern))
        .case_insensitive(caseless)
        .build()
        .map_err(|e| ConfigError::at(&d.span, format!("invalid regex \"{pattern}\": {e}")))
}

/// Whether a list already set at this level was `off` (nginx: "is duplicate").
fn duplicate<T>(d: &Directive, list: &Option<Vec<T>>) -> Result<()> {
    if matches!(list, Some(l) if l.is_empty()) {
        return Err(ConfigError::at(
            &d.span,
            format!("\"{}\" directive is duplicate", d.name),
        ));
    }
    Ok(())
}

impl Validator<'_> {
    /// One of the directives of this module at http, server or location level.
    pub(super) fn proxy_edit_setting(
        &mut self,
        p: &mut ProxyEditsPartial,
        d: &Directive,
    ) -> Result<()> {
        let a0 = d.arg(0);
        let off = d.args.len() == 1 && a0 == "off";
        let invalid = || ConfigError::at(&d.span, format!("invalid parameter \"{a0}\""));
        match d.name.as_str() {
            "proxy_redirect" => {
                duplicate(d, &p.redirects)?;
                if off {
                    if p.redirects.is_some() {
                        return Err(ConfigError::at(
                            &d.span,
                            "\"proxy_redirect\" directive is duplicate",
                        ));
                    }
                    p.redirects = Some(Vec::new());
                    return Ok(());
                }
                let entry = if d.args.len() == 1 {
                    if a0 != "default" {
                        return Err(invalid());
                    }
                    RedirectEntry::Default(d.span.clone())
                } else {
                    RedirectEntry::Rule(self.edit_rule(d, true)?)
                };
                p.redirects.get_or_insert_with(Vec::new).push(entry);
            }
            "proxy_cookie_domain" | "proxy_cookie_path" => {
                let list = if d.name == "proxy_cookie_domain" {
                    &mut p.cookie_domains
                } else {
                    &mut p.cookie_paths
                };
                duplicate(d, list)?;
                if d.args.len() == 1 {
                    if a0 != "off" {
                        return Err(invalid());
                    }
                    if list.is_some() {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("\"{}\" directive is duplicate", d.name),
                        ));
                    }
                    *list = Some(Vec::new());
                    return Ok(());
                }
                let rule = self.edit_rule(d, d.name == "proxy_cookie_path")?;
                let list = if d.name == "proxy_cookie_domain" {
                    &mut p.cookie_domains
                } else {
                    &mut p.cookie_paths
                };
                list.get_or_insert_with(Vec::new).push(rule);
            }
            "proxy_cookie_flags" => {
                duplicate(d, &p.cookie_flags)?;
                if d.args.len() == 1 {
                    if a0 != "off" {
                        return Err(invalid());
                    }
                    if p.cookie_flags.is_some() {
                        return Err(ConfigError::at(
                            &d.span,
                            "\"proxy_cookie_flags\" directive is duplicate",
                        ));
                    }
                    p.cookie_flags = Some(Vec::new());
                    return Ok(());
                }
                let cookie = match a0.strip_prefix('~') {
                    Some(re) => CookieName::Regex(edit_regex(d, re, true)?),
                    None => CookieName::Name(templ(d, a0, &self.names)?),
                };
                let mut flags = Vec::new();
                for a in &d.args[1..] {
                    let t = templ(d, &a.value, &self.names)?;
                    // nginx checks literal flags only when a response comes; a
                    // misspelt literal is refused here, where it is certainly wrong.
                    if t.is_literal() && cookie_flag::parse(a.value.as_bytes()).is_none() {
                        return Err(ConfigError::hinted(
                            &d.span,
                            format!("invalid flag \"{}\" in \"proxy_cookie_flags\"", a.value),
                            "the flags are secure, nosecure, httponly, nohttponly, samesite=strict, samesite=lax, samesite=none and nosamesite",
                        ));
                    }
                    flags.push(t);
                }
                p.cookie_flags
                    .get_or_insert_with(Vec::new)
                    .push(CookieFlags { cookie, flags });
            }
            other => super::unreachable_directive(d, other)?,
        }
        Ok(())
    }

    /// A `PATTERN REPLACEMENT` pair: `~regex` (`~*` caseless where `tilde_star`
    /// applies; `proxy_cookie_domain`'s `~` is always caseless) or a template;
    /// `proxy_cookie_domain` drops a leading dot from both sides.
    fn edit_rule(&mut self, d: &Directive, tilde_star: bool) -> Result<EditRule> {
        let (a0, a1) = (d.arg(0), d.arg(1));
        let domain = d.name == "proxy_cookie_domain";
        let (pattern, a1) = if let Some(re) = a0.strip_prefix('~') {
            let (re, caseless) = match re.strip_prefix('*') {
                Some(r) if tilde_star => (r, true),
                _ => (re, domain),
            };
            (EditMatch::Regex(edit_regex(d, re, caseless)?), a1)
        } else if domain {
            let p = a0.strip_prefix('.').unwrap_or(a0);
            (
                EditMatch::Domain(templ(d, p, &self.names)?),
                a1.strip_prefix('.').unwrap_or(a1),
            )
        } else {
            (EditMatch::Prefix(templ(d, a0, &self.names)?), a1)
        };
        Ok(EditRule {
            pattern,
            replacement: templ(d, a1, &self.names)?,
        })
    }
}
