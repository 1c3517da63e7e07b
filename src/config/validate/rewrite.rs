//! The rewrite module (`return`, `rewrite`, `set`, `break`, `if`) and `map`: their
//! syntax as nginx parses it (`ngx_http_rewrite_module.c`, `ngx_http_map_module.c`),
//! and the names of the variables a configuration declares.
//!
//! nginx knows every variable of a configuration before it checks any use (a `set`
//! further down the file, or a `map` after the server, is fine), so [`collect_names`]
//! walks the whole tree first.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use super::settings::Partial;
use super::values::templ;
use super::{Result, Validator};
use crate::config::directives::{self, Lookup};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::template;
use crate::config::types::*;

/// The variables a configuration declares: `set` and named regex captures (slots of
/// [`Http::user_vars`]) and `map`s (indexes of [`Http::maps`]).
#[derive(Debug, Clone, Default)]
pub(super) struct VarNames {
    user: Vec<String>,
    maps: Vec<String>,
    geos: Vec<String>,
    split_clients: Vec<String>,
}

impl VarNames {
    /// The variable a name (without `$`) stands for, if the configuration declares it.
    pub(super) fn lookup(&self, name: &str) -> Option<Var> {
        if let Some(i) = self.maps.iter().position(|m| m == name) {
            return Some(Var::Map(i));
        }
        if let Some(i) = self.geos.iter().position(|m| m == name) {
            return Some(Var::Geo(i));
        }
        if let Some(i) = self.split_clients.iter().position(|m| m == name) {
            return Some(Var::SplitClients(i));
        }
        self.user_slot(name).map(Var::User)
    }

    fn user_slot(&self, name: &str) -> Option<usize> {
        self.user.iter().position(|u| u == name)
    }

    fn declare_user(&mut self, name: &str) {
        // Built-in names cannot be redefined; `set` reports that where it is.
        if template::var(name).is_none() && self.lookup(name).is_none() {
            self.user.push(name.to_owned());
        }
    }

    /// `maps` in the order of their [`Var::Map`] indexes.
    pub(super) fn order_maps(&self, mut maps: Vec<MapConf>) -> Vec<MapConf> {
        maps.sort_by_key(|m| self.maps.iter().position(|n| *n == m.name));
        maps
    }

    /// `geo` blocks in the order of their [`Var::Geo`] indexes.
    pub(super) fn order_geos(&self, mut geos: Vec<GeoConf>) -> Vec<GeoConf> {
        geos.sort_by_key(|g| self.geos.iter().position(|n| *n == g.name));
        geos
    }

    /// `split_clients` blocks in the order of their [`Var::SplitClients`] indexes.
    pub(super) fn order_split_clients(
        &self,
        mut splits: Vec<SplitClientsConf>,
    ) -> Vec<SplitClientsConf> {
        splits.sort_by_key(|g| self.split_clients.iter().position(|n| *n == g.name));
        splits
    }

    /// Slot names in slot order, for [`Http::user_vars`].
    pub(super) fn user_names(&self) -> Vec<String> {
        self.user.clone()
    }

    /// The slot of each named group of `regex`, as (group, slot).
    pub(super) fn named_captures(&self, regex: &Regex) -> Vec<(usize, usize)> {
        regex
            .capture_names()
            .enumerate()
            .filter_map(|(group, name)| Some((group, self.user_slot(name?)?)))
            .collect()
    }
}

/// Every variable the tree declares, in file order.
pub(super) fn collect_names(ds: &[Directive]) -> VarNames {
    let mut names = VarNames::default();
    // Maps first: a `set` of a map's name is refused where it is written.
    collect_maps(ds, &mut names);
    collect_user(ds, &mut names);
    names
}

/// The variables of `map`, `geo` and `split_clients` blocks.
fn collect_maps(ds: &[Directive], names: &mut VarNames) {
    for d in ds {
        let (list, arg) = match d.name.as_str() {
            "map" => (&mut names.maps, d.args.get(1)),
            // `geo $name` or `geo $address $name`.
            "geo" => (&mut names.geos, d.args.last()),
            "split_clients" => (&mut names.split_clients, d.args.get(1)),
            _ => {
                if let Some(block) = &d.block {
                    collect_maps(block, names);
                }
                continue;
            }
        };
        if let Some(name) = arg.and_then(|a| a.value.strip_prefix('$')) {
            if template::var(name).is_none() && !list.iter().any(|m| m == name) {
                list.push(name.to_owned());
            }
        }
    }
}

fn collect_user(ds: &[Directive], names: &mut VarNames) {
    for d in ds {
        let regexes: Vec<&str> = match d.name.as_str() {
            "set" => {
                if let Some(name) = d.args.first().and_then(|a| a.value.strip_prefix('$')) {
                    names.declare_user(name);
                }
                Vec::new()
            }
            "location" | "rewrite" | "if" | "server_name" => {
                d.args.iter().map(|a| a.value.as_str()).collect()
            }
            // Map keys are the block's directive names.
            "map" => d.block.iter().flatten().map(|k| k.name.as_str()).collect(),
            // Their lines are addresses and percentages, no directives.
            "geo" | "split_clients" => continue,
            _ => Vec::new(),
        };
        for text in regexes {
            for name in named_groups(text) {
                names.declare_user(name);
            }
        }
        if d.name != "map" {
            if let Some(block) = &d.block {
                collect_user(block, names);
            }
        }
    }
}

/// The names of `(?<name>...)` and `(?P<name>...)` groups in a pattern's text.
fn named_groups(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("(?").filter_map(move |(i, _)| {
        let rest = &text[i + 2..];
        let rest = rest.strip_prefix('P').unwrap_or(rest).strip_prefix('<')?;
        let end = rest.find('>')?;
        let name = &rest[..end];
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .then_some(name)
    })
}

/// Compiles a pattern of `rewrite`, `if` or `map`, saying where ferrolb's regex engine
/// differs from nginx's PCRE when it refuses one.
pub(super) fn compile_regex(d: &Directive, pattern: &str, caseless: bool) -> Result<Regex> {
    RegexBuilder::new(&super::values::pcre(pattern))
        .case_insensitive(caseless)
        .build()
        .map_err(|e| {
            ConfigError::hinted(
                &d.span,
                format!("invalid regex \"{pattern}\": {e}"),
                "ferrolb's regular expressions are PCRE's without look-around and backreferences",
            )
        })
}

/// Where a rewrite directive is: it decides which directives an `if` block may hold
/// and whether the block becomes an implicit location.
pub(super) enum Level<'a> {
    /// `server { }`: nginx's server rewrite phase, before the location search.
    Server,
    /// A location, with its merged settings and action (an `if` block inherits them).
    Location {
        /// The location's settings over every enclosing level.
        merged: &'a Partial,
        /// What the location does when no `if` block changes it.
        action: &'a Action,
    },
}

impl Validator<'_> {
    /// A level's rewrite directives in order (the caller passes only those).
    pub(super) fn rewrite_ops(
        &mut self,
        ds: &[&Directive],
        level: &Level<'_>,
    ) -> Result<Vec<RewriteOp>> {
        let mut ops = Vec::new();
        for d in ds {
            if let Some(op) = self.rewrite_op(d, level)? {
                ops.push(op);
            }
        }
        Ok(ops)
    }

    fn rewrite_op(&mut self, d: &Directive, level: &Level<'_>) -> Result<Option<RewriteOp>> {
        Ok(Some(match d.name.as_str() {
            "return" => return_op(d, &self.names)?,
            "rewrite" => RewriteOp::Rewrite(Box::new(self.rewrite_rule(d)?)),
            "break" => RewriteOp::Break,
            "set" => self.set_op(d)?,
            "if" => RewriteOp::If(Box::new(self.if_block(d, level)?)),
            // Accepted: ferrolb writes no rewrite notices and warns of no variable.
            "rewrite_log" | "uninitialized_variable_warn" => {
                super::values::flag(d)?;
                return Ok(None);
            }
            other => return super::unreachable_directive(d, other).map(|()| None),
        }))
    }

    fn set_op(&mut self, d: &Directive) -> Result<RewriteOp> {
        let Some(name) = d.arg(0).strip_prefix('$') else {
            return Err(ConfigError::at(
                &d.span,
                format!("invalid variable name \"{}\"", d.arg(0)),
            ));
        };
        if name == "limit_rate" {
            // nginx's `$limit_rate` has a set handler: it changes the response's rate.
            return Ok(RewriteOp::SetLimitRate(templ(d, d.arg(1), &self.names)?));
        }
        let slot = match self.names.lookup(name) {
            Some(Var::User(slot)) => slot,
            Some(_) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("\"set\" of the \"map\", \"geo\" or \"split_clients\" variable \"{name}\" is not supported"),
                    "use another variable name",
                ))
            }
            None => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("the duplicate \"{name}\" variable"),
                    "built-in variables cannot be set; use another name",
                ))
            }
        };
        Ok(RewriteOp::Set {
            slot,
            value: templ(d, d.arg(1), &self.names)?,
        })
    }

    fn rewrite_rule(&mut self, d: &Directive) -> Result<RewriteRule> {
        let pattern = d.arg(0);
        let regex = compile_regex(d, pattern, false)?;
        let mut text = d.arg(1);
        if text.is_empty() {
            return Err(ConfigError::at(&d.span, "empty replacement"));
        }
        // A final `?` drops the request's arguments and is not part of the result.
        let drop_args = text.ends_with('?');
        if drop_args {
            text = &text[..text.len() - 1];
        }
        let is_redirect = ["http://", "https://", "$scheme"]
            .iter()
            .any(|p| text.starts_with(p));
        let flag = match d.args.get(2).map(|a| a.value.as_str()) {
            None if is_redirect => RewriteFlag::Redirect,
            None => RewriteFlag::None,
            Some("last") if !is_redirect => RewriteFlag::Last,
            Some("break") if !is_redirect => RewriteFlag::Break,
            // A redirecting replacement stays a 302 whatever `last`/`break` say.
            Some("last" | "break" | "redirect") => RewriteFlag::Redirect,
            Some("permanent") => RewriteFlag::Permanent,
            Some(other) => {
                return Err(ConfigError::hinted(
                    &d.span,
                    format!("invalid parameter \"{other}\""),
                    "the flag is one of last, break, redirect, permanent",
                ))
            }
        };
        Ok(RewriteRule {
            named_captures: self.names.named_captures(&regex),
            regex,
            pattern: pattern.to_owned(),
            replacement: templ(d, text, &self.names)?,
            has_args: text.contains('?'),
            drop_args,
            flag,
        })
    }

    fn if_block(&mut self, d: &Directive, level: &Level<'_>) -> Result<IfBlock> {
        let args: Vec<&str> = d.args.iter().map(|a| a.value.as_str()).collect();
        let condition = parse_condition(&args, &self.names).map_err(|e| {
            let msg = e.message;
            match e.hint {
                Some(h) => ConfigError::hinted(&d.span, msg, h),
                None => ConfigError::at(&d.span, msg),
            }
        })?;
        let ctx = match level {
            Level::Server => directives::SERVER_IF,
            Level::Location { .. } => directives::LOCATION_IF,
        };
        let mut own = Partial::default();
        let mut proxy = None;
        let mut proxy_directive = None;
        let mut rewrite_ds = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if matches!(directives::lookup(&c.name, ctx), Lookup::NotAllowedHere) {
                return Err(ConfigError::hinted(
                    &c.span,
                    format!("\"{}\" directive is not allowed inside \"if\"", c.name),
                    if ctx == directives::SERVER_IF {
                        "inside a server's \"if\" nginx and ferrolb run only return, rewrite, set and break"
                    } else {
                        "inside a location's \"if\" ferrolb runs return, rewrite, set, break, proxy_pass, uwsgi_pass and add_header; put other directives in a location (nginx refuses most of them here too)"
                    },
                ));
            }
            if self.check(c, ctx)?.is_none() {
                continue;
            }
            match c.name.as_str() {
                "return"
                | "rewrite"
                | "break"
                | "set"
                | "rewrite_log"
                | "uninitialized_variable_warn" => rewrite_ds.push(c),
                // The table allows it only in a location's `if`. The implicit location
                // has no pattern of its own: the URI passes as it is.
                "proxy_pass" => {
                    super::once(&mut proxy, self.proxy_pass(c, LocationKind::Regex, "")?, c)?;
                    proxy_directive = Some(c);
                }
                "uwsgi_pass" => {
                    super::once(&mut proxy, self.uwsgi_pass(c, LocationKind::Regex, "")?, c)?;
                }
                _ => self.setting(&mut own, c)?,
            }
        }
        let location = match level {
            Level::Server => None,
            Level::Location { merged, action } => {
                // nginx's if block inherits the location's root or alias (as any
                // nested level does); its try_files does not carry over.
                let settings = own.over(merged);
                settings.charset.check(&d.span)?;
                if let Some((pp, pd)) = proxy.as_mut().zip(proxy_directive) {
                    if pp.scheme == "https" {
                        pp.tls =
                            Some(self.upstream_tls(&settings.proxy_ssl, &pp.proxy_host, pd)?);
                    } else if pp.scheme == "suwsgi" {
                        pp.tls =
                            Some(self.upstream_tls(&settings.uwsgi_ssl, &pp.proxy_host, pd)?);
                    }
                }
                let action = match proxy {
                    Some(p) => Action::Proxy(p),
                    None => (*action).clone(),
                };
                // Its rewrite directives run inline, in the location's list.
                Some(settings.finish(action, Vec::new(), &self.env.prefix))
            }
        };
        Ok(IfBlock {
            condition,
            ops: self.rewrite_ops(&rewrite_ds, &Level::Server)?,
            location,
        })
    }

    /// `map SOURCE $name { KEY VALUE; ... }` at http level.
    pub(super) fn map_block(&mut self, d: &Directive) -> Result<MapConf> {
        let name = declared_name(d, d.arg(1))?;
        let mut map = MapConf {
            name: name.to_owned(),
            source: templ(d, d.arg(0), &self.names)?,
            hostnames: false,
            volatile: false,
            exact: HashMap::new(),
            wildcards: Vec::new(),
            regexes: Vec::new(),
            default: Template::default(),
        };
        let mut default_set = false;
        for line in d.block.as_deref().unwrap_or_default() {
            let key = line.name.as_str();
            let bad = || {
                ConfigError::hinted(
                    &line.span,
                    "invalid number of the map parameters",
                    "each line of a map is KEY VALUE; (or hostnames; volatile; include FILE;)",
                )
            };
            if line.block.is_some() {
                return Err(bad());
            }
            match (key, line.args.len()) {
                ("hostnames", 0) => {
                    map.hostnames = true;
                    continue;
                }
                ("volatile", 0) => {
                    map.volatile = true;
                    continue;
                }
                (_, 1) => {}
                _ => return Err(bad()),
            }
            let value = templ(line, line.arg(0), &self.names)?;
            if key == "default" {
                if default_set {
                    return Err(ConfigError::at(
                        &line.span,
                        "duplicate default map parameter",
                    ));
                }
                default_set = true;
                map.default = value;
            } else if let Some(re) = key.strip_prefix('~') {
                let (re, caseless) = match re.strip_prefix('*') {
                    Some(r) => (r, true),
                    None => (re, false),
                };
                let regex = compile_regex(line, re, caseless)?;
                map.regexes.push(MapRegex {
                    named_captures: self.names.named_captures(&regex),
                    regex,
                    value,
                });
            } else {
                // A leading backslash lets a key start with `~` or be `default`.
                let key = key.strip_prefix('\\').unwrap_or(key);
                if map.hostnames
                    && (key.starts_with('.') || key.starts_with('*') || key.ends_with('*'))
                {
                    let pattern = super::server::server_name(line, key)?;
                    map.wildcards.push((pattern, value));
                    continue;
                }
                let key = key.to_ascii_lowercase();
                if map.exact.contains_key(&key) {
                    self.warn(line, format!("conflicting parameter \"{key}\""));
                    continue;
                }
                map.exact.insert(key, value);
            }
        }
        Ok(map)
    }
}

/// The name (without `$`) of the variable a `map`, `geo` or `split_clients` block
/// declares; built-in names cannot be declared, as in nginx.
pub(super) fn declared_name<'a>(d: &Directive, text: &'a str) -> Result<&'a str> {
    let name = match text.strip_prefix('$') {
        Some(name) if !name.is_empty() => name,
        _ => {
            return Err(ConfigError::at(
                &d.span,
                format!("invalid variable name \"{text}\""),
            ))
        }
    };
    if template::var(name).is_some() {
        return Err(ConfigError::at(
            &d.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    Ok(name)
}

/// `return CODE [TEXT]`, `return URL` (a 302), as nginx reads them.
pub(super) fn return_op(d: &Directive, names: &VarNames) -> Result<RewriteOp> {
    let a0 = d.arg(0);
    let is_url =
        |s: &str| s.starts_with("http://") || s.starts_with("https://") || s.starts_with("$scheme");
    if !a0.is_empty() && a0.bytes().all(|b| b.is_ascii_digit()) {
        let code: u16 = a0
            .parse()
            .ok()
            .filter(|c| *c <= 999)
            .ok_or_else(|| ConfigError::at(&d.span, format!("invalid return code \"{a0}\"")))?;
        let text = match d.args.get(1) {
            Some(t) => Some(templ(d, &t.value, names)?),
            None => None,
        };
        return Ok(RewriteOp::Return { code, text });
    }
    if d.args.len() == 1 && is_url(a0) {
        return Ok(RewriteOp::Return {
            code: 302,
            text: Some(templ(d, a0, names)?),
        });
    }
    Err(ConfigError::at(
        &d.span,
        format!("invalid return code \"{a0}\""),
    ))
}

/// Why an `if` condition does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(super) struct ConditionError {
    /// nginx's message.
    pub(super) message: String,
    /// How to fix it.
    pub(super) hint: Option<String>,
}

fn cond_err(message: String, hint: Option<&str>) -> ConditionError {
    ConditionError {
        message,
        hint: hint.map(str::to_owned),
    }
}

/// The arguments of `if` (`(`, `)` glued or apart, as the lexer left them) as a
/// condition, following `ngx_http_rewrite_if_condition`.
pub(super) fn parse_condition(
    args: &[&str],
    names: &VarNames,
) -> std::result::Result<Condition, ConditionError> {
    const PARENS: &str = "write the condition in parentheses: if ($var = value) { ... }";
    let mut words: Vec<&str> = args.to_vec();
    let first = words.first().copied().unwrap_or("");
    let Some(first_rest) = first.strip_prefix('(') else {
        return Err(cond_err(
            format!("invalid condition \"{first}\""),
            Some(PARENS),
        ));
    };
    if first_rest.is_empty() {
        words.remove(0);
    } else {
        words[0] = first_rest;
    }
    let last = words.last().copied().unwrap_or("");
    let Some(last_rest) = last.strip_suffix(')') else {
        return Err(cond_err(
            format!("invalid condition \"{last}\""),
            Some(PARENS),
        ));
    };
    let n = words.len();
    if last_rest.is_empty() {
        words.pop();
    } else {
        words[n - 1] = last_rest;
    }
    let templ = |s: &str| {
        template::parse_with(s, &|n| names.lookup(n)).map_err(|e| {
            let (m, h) = e.message(s);
            ConditionError {
                message: m,
                hint: h,
            }
        })
    };
    match words.as_slice() {
        [var] if var.len() > 1 && var.starts_with('$') => Ok(Condition::Value(templ(var)?)),
        [var, op, value] if var.len() > 1 && var.starts_with('$') => {
            let left = templ(var)?;
            match *op {
                "=" | "!=" => Ok(Condition::Equals {
                    left,
                    right: templ(value)?,
                    negate: *op == "!=",
                }),
                "~" | "~*" | "!~" | "!~*" => {
                    let regex = RegexBuilder::new(&super::values::pcre(value))
                        .case_insensitive(op.ends_with('*'))
                        .build()
                        .map_err(|e| {
                            cond_err(
                                format!("invalid regex \"{value}\": {e}"),
                                Some("ferrolb's regular expressions are PCRE's without look-around and backreferences"),
                            )
                        })?;
                    Ok(Condition::Matches {
                        left,
                        named_captures: names.named_captures(&regex),
                        regex,
                        negate: op.starts_with('!'),
                    })
                }
                other => Err(cond_err(
                    format!("unexpected \"{other}\" in condition"),
                    Some("the operators are =, !=, ~, ~*, !~, !~*"),
                )),
            }
        }
        [op, path]
            if matches!(op.len(), 2 | 3) && (op.starts_with('-') || op.starts_with("!-")) =>
        {
            let negate = op.starts_with('!');
            let test = match op.trim_start_matches('!') {
                "-f" => FileTest::File,
                "-d" => FileTest::Dir,
                "-e" => FileTest::Exists,
                "-x" => FileTest::Executable,
                _ => {
                    return Err(cond_err(
                        format!("invalid condition \"{op}\""),
                        Some("the file tests are -f, -d, -e, -x and !-f, !-d, !-e, !-x"),
                    ))
                }
            };
            Ok(Condition::File {
                path: templ(path)?,
                test,
                negate,
            })
        }
        [first, ..] => Err(cond_err(
            format!("invalid condition \"{first}\""),
            Some(PARENS),
        )),
        [] => Err(cond_err(
            "invalid condition \"()\"".to_owned(),
            Some(PARENS),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> VarNames {
        let mut n = VarNames::default();
        n.declare_user("mine");
        n.maps.push("is_bot".to_owned());
        n
    }

    fn cond(args: &[&str]) -> std::result::Result<Condition, ConditionError> {
        parse_condition(args, &names())
    }

    #[test]
    fn conditions_as_nginx_splits_them() {
        // certbot: `if ($host = www.example.com) {`
        let c = cond(&["($host", "=", "www.example.com)"]).expect("parses");
        assert!(
            matches!(&c, Condition::Equals { left, right, negate: false }
                if left.parts == [TemplatePart::Var(Var::Host)] && *right == Template::literal("www.example.com"))
        );
        // Spaced parentheses, and `!=`.
        let c = cond(&["(", "$request_method", "!=", "GET", ")"]).expect("parses");
        assert!(matches!(c, Condition::Equals { negate: true, .. }));
        // A bare variable.
        let c = cond(&["($is_bot)"]).expect("parses");
        assert!(matches!(&c, Condition::Value(t) if t.parts == [TemplatePart::Var(Var::Map(0))]));
        // A quoted regex: the lexer leaves `)` as its own word.
        let c = cond(&["($http_user_agent", "~*", "(?<bot>bot|crawl)", ")"]).expect("parses");
        match c {
            Condition::Matches { regex, negate, .. } => {
                assert!(!negate);
                assert!(regex.is_match("GoogleBOT/2.1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cond(&["($uri", "!~*", "^/a)"]).expect("parses"),
            Condition::Matches { negate: true, .. }
        ));
        // File tests.
        for (op, test, negate) in [
            ("-f", FileTest::File, false),
            ("!-f", FileTest::File, true),
            ("-d", FileTest::Dir, false),
            ("!-d", FileTest::Dir, true),
            ("-e", FileTest::Exists, false),
            ("!-e", FileTest::Exists, true),
            ("-x", FileTest::Executable, false),
            ("!-x", FileTest::Executable, true),
        ] {
            let c = cond(&[&format!("({op}"), "$request_filename)"]);
            assert!(
                matches!(&c, Ok(Condition::File { test: t, negate: n, .. }) if *t == test && *n == negate),
                "{op}: {c:?}"
            );
        }
    }

    #[test]
    fn condition_errors_are_nginxs() {
        let msg = |args: &[&str]| cond(args).map(|_| ()).unwrap_err().message;
        assert_eq!(msg(&["$host", "=", "x)"]), "invalid condition \"$host\"");
        assert_eq!(msg(&["($host", "=", "x"]), "invalid condition \"x\"");
        assert_eq!(
            msg(&["($host", "==", "x)"]),
            "unexpected \"==\" in condition"
        );
        assert_eq!(msg(&["(-q", "/x)"]), "invalid condition \"-q\"");
        assert_eq!(msg(&["(host)"]), "invalid condition \"host\"");
        assert_eq!(msg(&["($nope)"]), "unknown \"nope\" variable");
        assert!(msg(&["($uri", "~", "(a)\\1)"]).starts_with("invalid regex"));
    }

    #[test]
    fn declared_names() {
        let text = "http { map $http_user_agent $is_bot { default 0; ~(?<agent>bot) 1; }
            server { server_name ~^(?P<sub>.+)\\.example\\.com$; set $mine 1; set $host x;
            location ~ ^/u/(?<user>[a-z]+)$ { if ($uri ~ (?<tail>.*)) { set $inner 2; } } } }";
        let mut p = crate::config::parser::Parser::new(
            std::path::Path::new("."),
            std::path::Path::new("t.conf"),
        );
        let ds = p
            .parse_text(std::path::Path::new("t.conf"), text.to_owned())
            .expect("parses");
        let n = collect_names(&ds);
        assert_eq!(n.maps, ["is_bot"]);
        assert_eq!(n.user, ["agent", "sub", "mine", "user", "tail", "inner"]);
        assert_eq!(n.lookup("is_bot"), Some(Var::Map(0)));
        assert_eq!(n.lookup("host"), None);
    }
}
