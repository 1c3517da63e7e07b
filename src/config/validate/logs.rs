//! Logging directives: `error_log` and `access_log` (any level) and
//! `log_format` (http level; `access_log` may only name a format declared before it).

use std::path::PathBuf;
use std::sync::Arc;

use super::rewrite::VarNames;
use super::values::{parse_size, parse_time};
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
    let template = template::parse_with(&text, &|n| names.lookup(n)).map_err(|e| {
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
    /// An `error_log` of a level: the first one is used (nginx writes to every one).
    pub(super) fn first_error_log(
        &mut self,
        slot: &mut Option<ErrorLogConf>,
        d: &Directive,
    ) -> Result<()> {
        let conf = self.error_log(d)?;
        if slot.is_none() {
            *slot = Some(conf);
        } else {
            self.warn(
                d,
                "only the first \"error_log\" of a level is used; nginx would write to every one"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// `error_log FILE|stderr [LEVEL]` at any level.
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

    /// `access_log off | PATH [FORMAT [buffer=SIZE] [gzip[=LEVEL]] [flush=TIME]
    /// [if=COND]]`; the format must be declared above. `None` for `off` and
    /// `/dev/null`.
    pub(super) fn access_log(&mut self, d: &Directive) -> Result<Option<AccessLogTarget>> {
        let path = d.arg(0);
        if path == "off" {
            if let Some(extra) = d.args.get(1) {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{}\"", extra.value),
                ));
            }
            return Ok(None);
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
        let mut buffering = LogBuffering::default();
        let mut condition = None;
        for a in d.args.iter().skip(2) {
            let p = a.value.as_str();
            if let Some(v) = p.strip_prefix("buffer=") {
                buffering.size = parse_size(v)
                    .filter(|&n| n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        ConfigError::at(&d.span, format!("invalid buffer size \"{v}\""))
                    })?;
            } else if let Some(v) = p.strip_prefix("flush=") {
                buffering.flush =
                    Some(parse_time(v).filter(|t| !t.is_zero()).ok_or_else(|| {
                        ConfigError::at(&d.span, format!("invalid flush time \"{v}\""))
                    })?);
            } else if p == "gzip" || p.starts_with("gzip=") {
                if buffering.size == 0 {
                    buffering.size = 64 * 1024;
                }
                buffering.gzip = Some(match p.strip_prefix("gzip=") {
                    None => 1,
                    Some(v) => v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=9).contains(n) && v.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| {
                            ConfigError::at(&d.span, format!("invalid compression level \"{v}\""))
                        })?,
                });
            } else if let Some(v) = p.strip_prefix("if=") {
                condition = Some(Arc::new(self.log_template(d, v)?));
            } else {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{p}\""),
                ));
            }
        }
        if buffering.flush.is_some() && buffering.size == 0 {
            return Err(ConfigError::at(
                &d.span,
                format!("no buffer is defined for access_log \"{path}\""),
            ));
        }
        if let Some(spec) = path.strip_prefix("syslog:") {
            if buffering.size > 0 {
                return Err(ConfigError::at(
                    &d.span,
                    "logs to syslog cannot be buffered",
                ));
            }
            return Ok(Some(AccessLogTarget {
                path: PathBuf::new(),
                path_template: None,
                format,
                condition,
                buffering,
                syslog: Some(self.syslog_target(d, spec)?),
            }));
        }
        if path == "/dev/null" {
            return Ok(None);
        }
        let path = self.env.prefix.join(path);
        if path.as_os_str().as_encoded_bytes().contains(&b'$') {
            if buffering.size > 0 {
                return Err(ConfigError::at(
                    &d.span,
                    "buffered logs cannot have variables in name",
                ));
            }
            let text = path.to_string_lossy().into_owned();
            let template = self.log_template(d, &text)?;
            return Ok(Some(AccessLogTarget {
                path,
                path_template: Some(Arc::new(template)),
                format,
                condition,
                buffering,
                syslog: None,
            }));
        }
        if buffering.size > 0 {
            match self.log_buffering.get(&path) {
                Some(b) if *b != buffering => {
                    return Err(ConfigError::at(
                        &d.span,
                        format!(
                            "access_log \"{}\" already defined with conflicting parameters",
                            d.arg(0)
                        ),
                    ))
                }
                _ => {
                    self.log_buffering.insert(path.clone(), buffering);
                }
            }
        }
        Ok(Some(AccessLogTarget {
            path,
            path_template: None,
            format,
            condition,
            buffering,
            syslog: None,
        }))
    }

    /// The part after `syslog:`, parsed as nginx's `ngx_syslog_parse_args`.
    fn syslog_target(&self, d: &Directive, spec: &str) -> Result<SyslogTarget> {
        const FACILITIES: &[&str] = &[
            "kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp", "clock",
            "authpriv", "ftp", "ntp", "audit", "alert", "cron", "local0", "local1", "local2",
            "local3", "local4", "local5", "local6", "local7",
        ];
        const SEVERITIES: &[&str] = &[
            "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
        ];
        let err = |msg: String| ConfigError::at(&d.span, msg);
        let mut server = None;
        let mut facility = None;
        let mut severity = None;
        let mut tag: Option<String> = None;
        let mut nohostname = false;
        for p in spec.split(',') {
            if let Some(v) = p.strip_prefix("server=") {
                if server.is_some() {
                    return Err(err("duplicate syslog \"server\"".into()));
                }
                server = Some(if let Some(path) = v.strip_prefix("unix:") {
                    Endpoint::Unix(path.into())
                } else {
                    let (host, port) = super::address::parse_host_port(v)
                        .map_err(|_| err(format!("invalid host in syslog server \"{v}\"")))?;
                    let addrs = self
                        .resolve(host, port.unwrap_or(514))
                        .ok_or_else(|| err(format!("host not found in syslog server \"{v}\"")))?;
                    Endpoint::Inet(addrs[0])
                });
            } else if let Some(v) = p.strip_prefix("facility=") {
                if facility.is_some() {
                    return Err(err("duplicate syslog \"facility\"".into()));
                }
                let i = FACILITIES
                    .iter()
                    .position(|f| *f == v)
                    .ok_or_else(|| err(format!("unknown syslog facility \"{v}\"")))?;
                facility = Some(i as u8);
            } else if let Some(v) = p.strip_prefix("severity=") {
                if severity.is_some() {
                    return Err(err("duplicate syslog \"severity\"".into()));
                }
                let i = SEVERITIES
                    .iter()
                    .position(|f| *f == v)
                    .ok_or_else(|| err(format!("unknown syslog severity \"{v}\"")))?;
                severity = Some(i as u8);
            } else if let Some(v) = p.strip_prefix("tag=") {
                if tag.is_some() {
                    return Err(err("duplicate syslog \"tag\"".into()));
                }
                if v.len() > 32 {
                    return Err(err("syslog tag length exceeds 32".into()));
                }
                if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(err(
                        "syslog \"tag\" only allows alphanumeric characters and underscore".into(),
                    ));
                }
                tag = Some(v.to_owned());
            } else if p == "nohostname" {
                nohostname = true;
            } else {
                return Err(err(format!("unknown syslog parameter \"{p}\"")));
            }
        }
        Ok(SyslogTarget {
            server: server.ok_or_else(|| err("no syslog server specified".into()))?,
            facility: facility.unwrap_or(23),
            severity: severity.unwrap_or(6),
            tag: tag.unwrap_or_else(|| "nginx".to_owned()),
            nohostname,
        })
    }

    /// `open_log_file_cache max=N [inactive=T] [min_uses=N] [valid=T] | off`:
    /// `Some(index)` into the caches collected for [`Http::open_log_file_caches`].
    pub(super) fn open_log_file_cache(&mut self, d: &Directive) -> Result<Option<usize>> {
        let mut conf = OpenLogFileCacheConf {
            max: 0,
            inactive: std::time::Duration::from_secs(10),
            min_uses: 1,
            valid: std::time::Duration::from_secs(60),
        };
        let mut off = false;
        for a in &d.args {
            let p = a.value.as_str();
            let failed = || {
                ConfigError::at(
                    &d.span,
                    format!("invalid \"open_log_file_cache\" parameter \"{p}\""),
                )
            };
            let secs =
                |v: &str| parse_time(v).filter(|t| t.subsec_nanos() == 0 && !v.contains("ms"));
            if let Some(v) = p.strip_prefix("max=") {
                conf.max = v.parse().map_err(|_| failed())?;
            } else if let Some(v) = p.strip_prefix("inactive=") {
                conf.inactive = secs(v).ok_or_else(failed)?;
            } else if let Some(v) = p.strip_prefix("min_uses=") {
                conf.min_uses = v.parse().map_err(|_| failed())?;
            } else if let Some(v) = p.strip_prefix("valid=") {
                conf.valid = secs(v).ok_or_else(failed)?;
            } else if p == "off" {
                off = true;
            } else {
                return Err(failed());
            }
        }
        if off {
            return Ok(None);
        }
        if conf.max == 0 {
            return Err(ConfigError::at(
                &d.span,
                "\"open_log_file_cache\" must have \"max\" parameter",
            ));
        }
        self.open_log_file_caches.push(conf);
        Ok(Some(self.open_log_file_caches.len() - 1))
    }

    /// `if=COND`, or a log path with variables, as a format of its own: no escaping,
    /// no `-` for empty values; rendered as lines are, response variables included.
    fn log_template(&self, d: &Directive, text: &str) -> Result<LogFormat> {
        let template = template::parse_with(text, &|n| self.names.lookup(n)).map_err(|e| {
            let (msg, hint) = e.message(text);
            match hint {
                Some(h) => ConfigError::hinted(&d.span, msg, h),
                None => ConfigError::at(&d.span, msg),
            }
        })?;
        Ok(LogFormat {
            name: text.to_owned(),
            escape: LogEscape::None,
            uses_upstream: template.uses_upstream(),
            parts: template.parts,
        })
    }
}
