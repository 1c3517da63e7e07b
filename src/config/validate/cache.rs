//! The proxy cache directives (`proxy_cache_path`, `proxy_cache`, `proxy_cache_*`,
//! `proxy_no_cache`). ferrolb has no cache yet: a configuration that uses them loads,
//! with one warning naming the first of them, and responses pass through uncached
//! (what clients get is unchanged; the backends answer every request). Their
//! arguments are still checked as nginx checks them, and `proxy_cache ZONE` must name
//! a `proxy_cache_path ... keys_zone=ZONE:SIZE`, so a configuration ferrolb loads
//! also loads in nginx.

use super::values::{parse_size, parse_time};
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::Span;

/// The warning, given once per load.
const UNCACHED: &str = "proxy cache directives are accepted, but ferrolb has no cache yet: responses pass through uncached (clients get the same answers; the backends get every request)";

/// The values of `proxy_cache_use_stale`.
const STALE: &[&str] = &[
    "error",
    "timeout",
    "invalid_header",
    "updating",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "off",
];

/// What the cache directives of one configuration declared and used.
#[derive(Debug, Default)]
pub(super) struct CacheDirectives {
    /// `keys_zone` names of `proxy_cache_path` lines.
    zones: Vec<String>,
    /// `proxy_cache NAME` lines (without variables), checked once every zone is known.
    uses: Vec<(String, Span)>,
    /// Whether the warning was given in this load.
    warned: bool,
}

impl Validator<'_> {
    /// Checks one cache directive; warns on the first that would cache.
    pub(super) fn cache_directive(&mut self, d: &Directive) -> Result<()> {
        match d.name.as_str() {
            "proxy_cache_path" => self.cache_path(d)?,
            "proxy_cache" => {
                let v = d.arg(0);
                if v == "off" {
                    return Ok(());
                }
                if !v.contains('$') {
                    self.cache.uses.push((v.to_owned(), d.span.clone()));
                }
            }
            "proxy_cache_valid" => {
                let (time, codes) = d.args.split_last().ok_or_else(|| {
                    ConfigError::at(
                        &d.span,
                        "invalid number of arguments in \"proxy_cache_valid\" directive",
                    )
                })?;
                if parse_time(&time.value).is_none() {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("invalid time value \"{}\"", time.value),
                    ));
                }
                for c in codes {
                    let ok = c.value == "any"
                        || c.value
                            .parse::<u16>()
                            .is_ok_and(|n| (100..=599).contains(&n));
                    if !ok {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid status \"{}\"", c.value),
                        ));
                    }
                }
            }
            "proxy_cache_use_stale" => {
                for a in &d.args {
                    if !STALE.contains(&a.value.as_str()) {
                        return Err(ConfigError::at(
                            &d.span,
                            format!("invalid value \"{}\"", a.value),
                        ));
                    }
                }
            }
            "proxy_cache_lock"
            | "proxy_cache_revalidate"
            | "proxy_cache_background_update"
            | "proxy_cache_convert_head" => {
                super::values::flag(d)?;
            }
            "proxy_cache_lock_timeout" | "proxy_cache_lock_age" => {
                super::values::time(d, d.arg(0))?;
            }
            _ => {}
        }
        if !self.cache.warned {
            self.cache.warned = true;
            self.warn(d, UNCACHED.to_owned());
        }
        Ok(())
    }

    /// After the http block: every `proxy_cache ZONE` names a declared zone.
    pub(super) fn cache_zones_known(&self) -> Result<()> {
        for (name, span) in &self.cache.uses {
            if !self.cache.zones.contains(name) {
                return Err(ConfigError::hinted(
                    span,
                    format!("zero size shared memory zone \"{name}\""),
                    format!(
                        "\"proxy_cache {name}\" needs \"proxy_cache_path PATH keys_zone={name}:10m;\" at http level"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `proxy_cache_path PATH [levels=L] keys_zone=NAME:SIZE [inactive=T] ...`, with
    /// nginx's checks and messages.
    fn cache_path(&mut self, d: &Directive) -> Result<()> {
        let err = |msg: String| ConfigError::at(&d.span, msg);
        let mut zone = None;
        for a in &d.args[1..] {
            let p = a.value.as_str();
            let (key, v) = p.split_once('=').unwrap_or((p, ""));
            let ok = match key {
                "levels" => {
                    if !valid_levels(v) {
                        return Err(err(format!("invalid \"levels\" \"{p}\"")));
                    }
                    true
                }
                "use_temp_path" => {
                    if v != "on" && v != "off" {
                        return Err(err(format!(
                            "invalid use_temp_path value \"{p}\", it must be \"on\" or \"off\""
                        )));
                    }
                    true
                }
                "keys_zone" => {
                    let (name, size) = v
                        .split_once(':')
                        .ok_or_else(|| err(format!("invalid keys zone size \"{p}\"")))?;
                    let size = parse_size(size)
                        .ok_or_else(|| err(format!("invalid keys zone size \"{p}\"")))?;
                    // nginx: two memory pages at least.
                    if size < 8192 {
                        return Err(err(format!("keys zone \"{p}\" is too small")));
                    }
                    zone = Some(name.to_owned());
                    true
                }
                "inactive" | "loader_sleep" | "loader_threshold" | "manager_sleep"
                | "manager_threshold" => parse_time(v).is_some(),
                "max_size" | "min_free" => parse_size(v).is_some(),
                "loader_files" | "manager_files" => {
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
                }
                _ => return Err(err(format!("invalid parameter \"{p}\""))),
            };
            if !ok {
                return Err(err(format!("invalid {key} value \"{p}\"")));
            }
        }
        let Some(zone) = zone else {
            return Err(ConfigError::hinted(
                &d.span,
                format!("\"{}\" must have \"keys_zone\" parameter", d.arg(0)),
                "add keys_zone=NAME:SIZE, e.g. keys_zone=app:10m",
            ));
        };
        if self.cache.zones.contains(&zone) {
            return Err(err(format!("duplicate zone \"{zone}\"")));
        }
        self.cache.zones.push(zone);
        Ok(())
    }
}

/// nginx's `levels=`: one to three levels of 1 or 2 hex digits each, `1:2`.
fn valid_levels(v: &str) -> bool {
    let levels: Vec<&str> = v.split(':').collect();
    !v.is_empty() && levels.len() <= 3 && levels.iter().all(|l| *l == "1" || *l == "2")
}

#[cfg(test)]
mod tests {
    use super::valid_levels;

    #[test]
    fn levels() {
        for ok in ["1", "2", "1:2", "2:2:2", "1:1:1"] {
            assert!(valid_levels(ok), "{ok}");
        }
        for bad in ["", "3", "1:", ":1", "1:2:2:2", "12", "0"] {
            assert!(!valid_levels(bad), "{bad}");
        }
    }
}
