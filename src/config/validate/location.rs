//! `location` blocks: their patterns, nesting rules, duplicates, and the action each
//! ends with (`return`, `proxy_pass` or none), plus the `health_check`s they hold.

use regex::RegexBuilder;

use super::rewrite::Level;
use super::settings::Partial;
use super::{once, Result, Validator};
use crate::config::directives;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

impl Validator<'_> {
    /// Sibling locations.
    pub(super) fn locations(
        &mut self,
        ds: &[&Directive],
        parent: &Partial,
        enclosing: Option<(LocationKind, &str)>,
    ) -> Result<Vec<Location>> {
        let mut out: Vec<Location> = Vec::new();
        for d in ds {
            let loc = self.location(d, parent, enclosing)?;
            let clash = out.iter().any(|o| {
                o.pattern == loc.pattern
                    && match (o.kind, loc.kind) {
                        (LocationKind::Exact, LocationKind::Exact) => true,
                        (a, b) => is_prefix(a) && is_prefix(b),
                    }
            });
            if clash {
                return Err(ConfigError::at(
                    &d.span,
                    format!("duplicate location \"{}\"", loc.pattern),
                ));
            }
            out.push(loc);
        }
        Ok(out)
    }

    fn location(
        &mut self,
        d: &Directive,
        parent: &Partial,
        enclosing: Option<(LocationKind, &str)>,
    ) -> Result<Location> {
        let (kind, pattern) = location_pattern(d)?;
        if kind == LocationKind::Named && enclosing.is_some() {
            return Err(ConfigError::at(
                &d.span,
                format!("named location \"{pattern}\" can be on the server level only"),
            ));
        }
        if let Some((pkind, ppat)) = enclosing {
            if pkind == LocationKind::Exact {
                return Err(ConfigError::at(
                    &d.span,
                    format!(
                        "location \"{pattern}\" cannot be inside the exact location \"{ppat}\""
                    ),
                ));
            }
            if !is_regex(kind) && !pattern.starts_with(ppat) {
                return Err(ConfigError::at(
                    &d.span,
                    format!("location \"{pattern}\" is outside location \"{ppat}\""),
                ));
            }
        }
        let regex = if is_regex(kind) {
            Some(
                RegexBuilder::new(&super::values::pcre(&pattern))
                    .case_insensitive(kind == LocationKind::RegexCaseless)
                    .build()
                    .map_err(|e| {
                        ConfigError::at(&d.span, format!("invalid regex \"{pattern}\": {e}"))
                    })?,
            )
        } else {
            None
        };
        let mut p = Partial::default();
        let mut proxy = None;
        let mut proxy_directive = None;
        let mut rewrite_ds = Vec::new();
        let mut nested = Vec::new();
        let mut checks = Vec::new();
        let mut internal = None;
        for c in d.block.as_deref().unwrap_or_default() {
            if self.check(c, directives::LOCATION)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "location" => nested.push(c),
                "health_check" => checks.push(c),
                "proxy_pass" | "uwsgi_pass" => {
                    let target = if c.name == "uwsgi_pass" {
                        self.uwsgi_pass(c, kind, &pattern)?
                    } else {
                        self.proxy_pass(c, kind, &pattern)?
                    };
                    if proxy.is_some() {
                        return Err(ConfigError::at(
                            &c.span,
                            "\"uwsgi_pass\" or \"proxy_pass\" directive is duplicate",
                        ));
                    }
                    proxy = Some(target);
                    proxy_directive = Some(c);
                }
                "return"
                | "rewrite"
                | "set"
                | "break"
                | "if"
                | "rewrite_log"
                | "uninitialized_variable_warn" => rewrite_ds.push(c),
                "alias" => {
                    if kind == LocationKind::Named {
                        return Err(ConfigError::at(
                            &c.span,
                            "\"alias\" cannot be used in named location",
                        ));
                    }
                    // In a regex location the value alone is the file: its captures
                    // carry the parts of the URI, as nginx.
                    let uri = if is_regex(kind) {
                        UriPart::None
                    } else {
                        UriPart::AfterPrefix(pattern.clone())
                    };
                    let alias = self.doc_root(c, uri)?;
                    once(&mut p.alias, alias, c)?;
                }
                "internal" => once(&mut internal, true, c)?,
                _ => self.setting(&mut p, c)?,
            }
        }
        let mut merged = p.over(parent);
        merged.charset.check(&d.span)?;
        // `proxy_redirect default` (written or implied) from this level's `proxy_pass`;
        // nested locations inherit the result, as in nginx.
        let pass = proxy.as_ref().zip(proxy_directive).map(|(pp, pd)| {
            let location = if is_regex(kind) || kind == LocationKind::Named {
                ""
            } else {
                pattern.as_str()
            };
            (pd.arg(0), pp.uri.is_some(), location, &pd.span)
        });
        super::proxy_edits::ProxyEditsPartial::resolve_default(
            &p.proxy_edits,
            &mut merged.proxy_edits,
            pass,
        )?;
        let locations = self.locations(&nested, &merged, Some((kind, &pattern)))?;
        if let Some((pp, pd)) = proxy.as_mut().zip(proxy_directive) {
            if pp.scheme == "https" {
                pp.tls = Some(self.upstream_tls(&merged.proxy_ssl, &pp.proxy_host, pd)?);
            } else if pp.scheme == "suwsgi" {
                pp.tls = Some(self.upstream_tls(&merged.uwsgi_ssl, &pp.proxy_host, pd)?);
            }
        }
        let action = match proxy {
            Some(pp) => Action::Proxy(pp),
            None => Action::Static,
        };
        // `return`, `rewrite`, `if`: nginx's rewrite phase, before the content handler.
        let rewrite = self.rewrite_ops(
            &rewrite_ds,
            &Level::Location {
                merged: &merged,
                action: &action,
            },
        )?;
        if p.alias.is_some() && merged_has_own_root(d) {
            return Err(ConfigError::at(
                &d.span,
                "\"alias\" directive is duplicate, \"root\" directive was specified earlier",
            ));
        }
        for c in checks {
            let Action::Proxy(pp) = &action else {
                return Err(ConfigError::hinted(
                    &c.span,
                    "\"health_check\" needs a \"proxy_pass\" in the same location",
                    "put it in the location that proxies to the upstream to check",
                ));
            };
            if pp.protocol != UpstreamProtocol::Http {
                return Err(ConfigError::hinted(
                    &c.span,
                    "\"health_check\" probes speak HTTP, not uwsgi",
                    "check the group from a location with proxy_pass to an HTTP port of the same servers, or rely on passive checks (max_fails, fail_timeout)",
                ));
            }
            if pp.url.is_some() {
                return Err(ConfigError::hinted(
                    &c.span,
                    "\"health_check\" needs a \"proxy_pass\" without variables",
                    "the group to check is known only per request; name it: proxy_pass http://NAME;",
                ));
            }
            let hc = self.health_check(c, pp)?;
            self.health_checks.push(hc);
        }
        let named_captures = regex
            .as_ref()
            .map(|r| self.names.named_captures(r))
            .unwrap_or_default();
        Ok(Location {
            kind,
            pattern,
            regex,
            named_captures,
            locations,
            internal: internal.unwrap_or(false),
            settings: merged.finish(action, rewrite, &self.env.prefix),
            span: d.span.clone(),
        })
    }
}

/// Whether a location block sets `root` itself (nginx refuses `root` with `alias`).
fn merged_has_own_root(d: &Directive) -> bool {
    d.block
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.name == "root")
}

/// Regex locations take no URI part in `proxy_pass` and no prefix replacement.
pub(super) fn is_regex(k: LocationKind) -> bool {
    matches!(k, LocationKind::Regex | LocationKind::RegexCaseless)
}

fn is_prefix(k: LocationKind) -> bool {
    matches!(k, LocationKind::Prefix | LocationKind::PrefixNoRegex)
}

/// `location [=|~|~*|^~] pattern`, also with the modifier glued on (`=/x`), as nginx.
fn location_pattern(d: &Directive) -> Result<(LocationKind, String)> {
    let invalid = |m: &str| ConfigError::at(&d.span, format!("invalid location modifier \"{m}\""));
    if d.args.len() == 2 {
        let kind = match d.arg(0) {
            "=" => LocationKind::Exact,
            "~" => LocationKind::Regex,
            "~*" => LocationKind::RegexCaseless,
            "^~" => LocationKind::PrefixNoRegex,
            m => return Err(invalid(m)),
        };
        return Ok((kind, d.arg(1).to_owned()));
    }
    let a = d.arg(0);
    Ok(if let Some(r) = a.strip_prefix("~*") {
        (LocationKind::RegexCaseless, r.to_owned())
    } else if let Some(r) = a.strip_prefix("^~") {
        (LocationKind::PrefixNoRegex, r.to_owned())
    } else if let Some(r) = a.strip_prefix('~') {
        (LocationKind::Regex, r.to_owned())
    } else if let Some(r) = a.strip_prefix('=') {
        (LocationKind::Exact, r.to_owned())
    } else if a.starts_with('@') {
        (LocationKind::Named, a.to_owned())
    } else {
        (LocationKind::Prefix, a.to_owned())
    })
}
