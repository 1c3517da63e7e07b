//! Active health checks: `match` blocks (http level) and the `health_check` lines
//! of proxying locations that may name them.

use std::sync::Arc;
use std::time::Duration;

use super::address::parse_port;
use super::values::parse_time;
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::*;

impl Validator<'_> {
    /// A `match NAME { }` block.
    pub(super) fn match_block(&mut self, d: &Directive) -> Result<()> {
        let name = d.arg(0).to_owned();
        let mut conditions = Vec::new();
        for c in d.block.as_deref().unwrap_or_default() {
            if c.block.is_some() {
                return Err(ConfigError::at(
                    &c.span,
                    format!("directive \"{}\" is not terminated by \";\"", c.name),
                ));
            }
            conditions.push(match c.name.as_str() {
                "status" => match_status(c)?,
                "header" => match_header(c)?,
                "body" => match_body(c)?,
                other => {
                    return Err(ConfigError::hinted(
                        &c.span,
                        format!("unknown directive \"{other}\" in \"match\""),
                        "a match block takes \"status\", \"header\" and \"body\" lines",
                    ))
                }
            });
        }
        let m = Arc::new(MatchConf {
            name: name.clone(),
            conditions,
        });
        if self.matches.insert(name.clone(), m).is_some() {
            return Err(ConfigError::at(
                &d.span,
                format!("duplicate match \"{name}\""),
            ));
        }
        Ok(())
    }

    /// `health_check [interval=5s] [jitter=0] [fails=1] [passes=1] [uri=/] [port=N]
    /// [match=NAME] [timeout=5s] [mandatory]` in a location proxying with `pp`.
    pub(super) fn health_check(
        &mut self,
        c: &Directive,
        pp: &ProxyPass,
    ) -> Result<HealthCheckConf> {
        let mut hc = HealthCheckConf {
            upstream: pp.upstream,
            interval: Duration::from_secs(5),
            jitter: Duration::ZERO,
            fails: 1,
            passes: 1,
            uri: "/".to_owned(),
            port: None,
            matcher: None,
            timeout: Duration::from_secs(5),
            mandatory: false,
            host: pp.proxy_host.clone(),
            tls: pp.tls.clone(),
            span: c.span.clone(),
        };
        for a in &c.args {
            let p = a.value.as_str();
            let bad = || ConfigError::at(&c.span, format!("invalid parameter \"{p}\""));
            let count = |v: &str| -> Result<u32> {
                v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(bad)
            };
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key {
                "interval" => {
                    hc.interval = parse_time(value).filter(|d| !d.is_zero()).ok_or_else(bad)?
                }
                "jitter" => hc.jitter = parse_time(value).ok_or_else(bad)?,
                "timeout" => {
                    hc.timeout = parse_time(value).filter(|d| !d.is_zero()).ok_or_else(bad)?
                }
                "fails" => hc.fails = count(value)?,
                "passes" => hc.passes = count(value)?,
                "uri" if value.starts_with('/') => hc.uri = value.to_owned(),
                "port" => hc.port = Some(parse_port(value).ok_or_else(bad)?),
                "match" => {
                    hc.matcher = Some(self.matches.get(value).cloned().ok_or_else(|| {
                        ConfigError::hinted(
                            &c.span,
                            format!("match \"{value}\" not found"),
                            "declare it with \"match NAME { ... }\" in the http block",
                        )
                    })?)
                }
                "mandatory" if value.is_empty() => hc.mandatory = true,
                "persistent" if value.is_empty() => {}
                _ => return Err(bad()),
            }
        }
        Ok(hc)
    }
}

/// `status [!] CODE|FROM-TO ...` in a `match` block.
fn match_status(c: &Directive) -> Result<MatchCond> {
    let mut args = c.args.iter().map(|a| a.value.as_str()).peekable();
    let negate = args.next_if_eq(&"!").is_some();
    let bad = |v: &str| ConfigError::at(&c.span, format!("invalid status \"{v}\" in \"match\""));
    let code = |v: &str| -> Result<u16> {
        v.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| bad(v))
    };
    let mut ranges = Vec::new();
    for v in args {
        let r = match v.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(v)?, code(v)?),
        };
        if r.0 > r.1 {
            return Err(bad(v));
        }
        ranges.push(r);
    }
    if ranges.is_empty() {
        return Err(ConfigError::at(
            &c.span,
            "invalid number of arguments in \"status\" directive",
        ));
    }
    Ok(MatchCond::Status { negate, ranges })
}

/// `header [!] Name [= v | != v | ~ re | !~ re]` in a `match` block.
fn match_header(c: &Directive) -> Result<MatchCond> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let re = |v: &str| {
        regex::Regex::new(v)
            .map_err(|e| ConfigError::at(&c.span, format!("invalid regex \"{v}\": {e}")))
    };
    let (name, test, negate) = match args.as_slice() {
        ["!", name] => (*name, HeaderTest::Present, true),
        [name] => (*name, HeaderTest::Present, false),
        [name, "=", v] => (*name, HeaderTest::Equals((*v).to_owned()), false),
        [name, "!=", v] => (*name, HeaderTest::Equals((*v).to_owned()), true),
        [name, "~", v] => (*name, HeaderTest::Matches(re(v)?), false),
        [name, "!~", v] => (*name, HeaderTest::Matches(re(v)?), true),
        _ => {
            return Err(ConfigError::hinted(
                &c.span,
                "invalid \"header\" condition in \"match\"",
                "use: header Name; header ! Name; header Name = value; header Name ~ regex (or != / !~)",
            ))
        }
    };
    Ok(MatchCond::Header {
        name: name.to_owned(),
        test,
        negate,
    })
}

/// `body ~ re` / `body !~ re` in a `match` block.
fn match_body(c: &Directive) -> Result<MatchCond> {
    let args: Vec<&str> = c.args.iter().map(|a| a.value.as_str()).collect();
    let (negate, pattern) = match args.as_slice() {
        ["~", p] => (false, *p),
        ["!~", p] => (true, *p),
        _ => {
            return Err(ConfigError::hinted(
                &c.span,
                "invalid \"body\" condition in \"match\"",
                "use: body ~ \"regex\"; or body !~ \"regex\";",
            ))
        }
    };
    let regex = regex::Regex::new(pattern)
        .map_err(|e| ConfigError::at(&c.span, format!("invalid regex \"{pattern}\": {e}")))?;
    Ok(MatchCond::Body { negate, regex })
}
