//! Logging directives: `error_log` (main level), `access_log` (any level) and
//! `log_format` (http level; `access_log` may only name a format declared before it).

use std::sync::Arc;

use super::rewrite::VarNames;
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::template;
use crate::config::types::*;

/// `log_format NAME [escape=default|json|none] STRING ...;`.
pub(super) fn log_format(d: &Directive, names: &VarNames) -> Result<LogFormat> {
    let name = d.arg(0).to_owned();
    let mut rest = &d.args[1..];
    let mut escape = LogEscape::Default;
    if let Some(e) = rest.first().and_then(|a| a.value.strip_prefix("escape=")) {
        escape = match e {
            "default" => LogEscape::Default,
            "json" => LogEscape::Json,
            "none" => LogEscape::None,
            other => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("unknown log format escaping \"{other}\""),
                ))
            }
        };
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(ConfigError::at(
            &d.span,
            "invalid number of arguments in \"log_format\" directive",
        ));
    }
    // nginx concatenates the strings as written, with nothing between them.
    let text: String = rest.iter().map(|a| a.value.as_str()).collect();
    // `$sent_http_NAME` exists for log lines only: the response is sent by then.
    let template = template::parse_with(&text, &|n| {
        names.lookup(n).or_else(|| {
            let field = n.strip_prefix("sent_http_").filter(|f| !f.is_empty())?;
            Some(Var::SentHttp(field.to_ascii_lowercase().replace('_', "-")))
        })
    })
    .map_err(|e| {
        let (msg, hint) = e.message(&text);
        match hint {
            Some(h) => ConfigError::hinted(&d.span, msg, h),
            None => ConfigError::at(&d.span, msg),
        }
    })?;
    let uses_upstream = template.uses_upstream();
    let parts = template.parts;
    Ok(LogFormat {
        name,
        escape,
        parts,
        uses_upstream,
    })
}

impl Validator<'_> {
    /// `error_log FILE|stderr [LEVEL]` at main level.
    pub(super) fn error_log(&mut self, d: &Directive) -> Result<ErrorLogConf> {
        let target = match d.arg(0) {
            "stderr" => LogTarget::Stderr,
            "/dev/null" => LogTarget::Off,
            s if s.starts_with("syslog:") || s.starts_with("memory:") => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("error log \"{s}\" is not supported: use a file or stderr"),
                ))
            }
            s => {
                if s == "off" {
                    self.warn(d, "\"error_log off\" writes to a file named \"off\", as in nginx; use /dev/null to disable the log".to_owned());
                }
                LogTarget::File(self.env.prefix.join(s))
            }
        };
        let level = match d.args.get(1).map(|a| a.value.as_str()) {
            None => Level::Error,
            Some(l) => match l {
                "emerg" => Level::Emerg,
                "alert" => Level::Alert,
                "crit" => Level::Crit,
                "error" => Level::Error,
                "warn" => Level::Warn,
                "notice" => Level::Notice,
                "info" => Level::Info,
                "debug" => Level::Debug,
                other => {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!("invalid log level \"{other}\""),
                        "levels are debug, info, notice, warn, error, crit, alert, emerg",
                    ))
                }
            },
        };
        Ok(ErrorLogConf { target, level })
    }

    /// `access_log off | PATH [FORMAT [params...]]`; the format must be declared above.
    pub(super) fn access_log(&mut self, d: &Directive) -> Result<AccessLogConf> {
        let path = d.arg(0);
        if path == "off" {
            if d.args.len() > 1 {
                return Err(ConfigError::at(
                    &d.span,
                    "invalid number of arguments in \"access_log\" directive",
                ));
            }
            return Ok(AccessLogConf::Off);
        }
        if path.starts_with("syslog:") {
            return Err(ConfigError::at(
                &d.span,
                "syslog access logs are not supported: use a file",
            ));
        }
        if path.contains('$') {
            return Err(ConfigError::at(
                &d.span,
                "variables in \"access_log\" paths are not supported",
            ));
        }
        let format = match d.args.get(1).map(|a| a.value.as_str()) {
            None | Some("combined") => None,
            Some(name) => match self.log_formats.get(name) {
                Some(f) => Some(Arc::clone(f)),
                None => {
                    return Err(ConfigError::hinted(
                        &d.span,
                        format!("unknown log format \"{name}\""),
                        "declare it with \"log_format\" before this line, or use \"combined\"",
                    ))
                }
            },
        };
        if d.args.len() > 2 {
            self.warn(d, "\"access_log\" parameters after the format (buffer=, flush=, gzip, if=) are ignored".to_owned());
        }
        if path == "/dev/null" {
            return Ok(AccessLogConf::Off);
        }
        let path = self.env.prefix.join(path);
        Ok(match format {
            None => AccessLogConf::Combined(path),
            Some(format) => AccessLogConf::Format { path, format },
        })
    }
}
