//! `ferrolb_admin`: where the admin API listens, and its optional token.

use std::net::SocketAddr;

use super::values::invalid_value;
use super::Result;
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::AdminConf;

/// `ferrolb_admin ADDR [token=SECRET]`.
pub(super) fn admin_conf(d: &Directive) -> Result<AdminConf> {
    let addr: SocketAddr = d.arg(0).parse().map_err(|_| {
        invalid_value(
            d,
            d.arg(0),
            Some("use an IP address and port, e.g. 127.0.0.1:9090"),
        )
    })?;
    let token = match d.args.get(1).map(|a| a.value.as_str()) {
        None => None,
        Some(t) => match t.strip_prefix("token=") {
            Some(v) if !v.is_empty() => Some(v.to_owned()),
            _ => {
                return Err(ConfigError::at(
                    &d.span,
                    format!("invalid parameter \"{t}\""),
                ))
            }
        },
    };
    Ok(AdminConf {
        addr,
        token,
        span: d.span.clone(),
    })
}
