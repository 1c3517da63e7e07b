//! `geo [$address] $name { ... }` as `ngx_http_geo_module.c` reads it: networks
//! (longest prefix wins) or, after `ranges`, IPv4 ranges; `default`, `delete`,
//! `proxy`, `proxy_recursive`, `volatile`, and `include` (spliced by the parser).

use super::rewrite::declared_name;
use super::{Result, Validator};
use crate::config::error::ConfigError;
use crate::config::geo::{self, Cidr, PrefixTable, RangeTable};
use crate::config::parser::Directive;
use crate::config::types::*;

/// nginx's hint for a line it cannot read.
const LINE_HINT: &str = "each line of a geo block is NETWORK VALUE; (or default VALUE; delete NETWORK; proxy NETWORK; ranges; proxy_recursive; volatile; include FILE;)";

/// `ngx_http_geo_cidr_value`: a network, or `255.255.255.255` (which nginx's address
/// parser cannot read, being its error value).
fn network(v: &mut Validator<'_>, line: &Directive, text: &str) -> Result<Cidr> {
    if text == "255.255.255.255" {
        return Ok(Cidr::V4 {
            addr: geo::INADDR_NONE,
            len: 32,
        });
    }
    let Some((net, host_bits)) = geo::parse_cidr(text) else {
        return Err(ConfigError::hinted(
            &line.span,
            format!("invalid network \"{text}\""),
            "an address (10.1.2.3, 2001:db8::1) or a network (10.0.0.0/8, 2001:db8::/32)",
        ));
    };
    if host_bits {
        v.warn(line, format!("low address bits of {text} are meaningless"));
    }
    Ok(net)
}

/// `START-END` of a `ranges` line, both IPv4 addresses.
fn range(line: &Directive, text: &str) -> Result<(u32, u32)> {
    let parsed = text.split_once('-').and_then(|(s, e)| {
        let (s, e) = (geo::parse_ipv4(s)?, geo::parse_ipv4(e)?);
        (s <= e).then_some((s, e))
    });
    parsed.ok_or_else(|| {
        ConfigError::hinted(
            &line.span,
            format!("invalid range \"{text}\""),
            "a range is FIRST-LAST, two IPv4 addresses (10.0.0.1-10.0.0.9)",
        )
    })
}

/// The dotted form of an IPv4 address.
fn dotted(a: u32) -> std::net::Ipv4Addr {
    a.into()
}

impl Validator<'_> {
    /// `geo [$address] $name { ... }` at http level.
    pub(super) fn geo_block(&mut self, d: &Directive) -> Result<GeoConf> {
        let (source, name) = match d.args.len() {
            2 => {
                if !d.arg(0).starts_with('$') {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("invalid variable name \"{}\"", d.arg(0)),
                    ));
                }
                let source = super::values::templ(d, d.arg(0), &self.names)?;
                (Some(source), declared_name(d, d.arg(1))?)
            }
            _ => (None, declared_name(d, d.arg(0))?),
        };
        let mut proxies = Vec::new();
        let mut proxy_recursive = false;
        let mut volatile = false;
        let mut ranges: Option<(RangeTable<String>, Option<String>)> = None;
        let mut nets = PrefixTable::default();
        let mut has_nets = false;
        for line in d.block.as_deref().unwrap_or_default() {
            let key = line.name.as_str();
            if line.block.is_some() {
                return Err(ConfigError::hinted(
                    &line.span,
                    "invalid number of the geo parameters",
                    LINE_HINT,
                ));
            }
            if line.args.is_empty() {
                match key {
                    "ranges" if has_nets => return Err(ConfigError::at(
                        &line.span,
                        "the \"ranges\" directive must be the first directive inside \"geo\" block",
                    )),
                    "ranges" => {
                        ranges.get_or_insert_with(Default::default);
                        continue;
                    }
                    "proxy_recursive" => {
                        proxy_recursive = true;
                        continue;
                    }
                    "volatile" => {
                        volatile = true;
                        continue;
                    }
                    _ => {}
                }
            }
            if line.args.len() != 1 {
                return Err(ConfigError::hinted(
                    &line.span,
                    "invalid number of the geo parameters",
                    LINE_HINT,
                ));
            }
            let arg = line.arg(0);
            if key == "proxy" {
                proxies.push(network(self, line, arg)?);
                continue;
            }
            match &mut ranges {
                Some((table, default)) => self.range_line(line, table, default)?,
                None => {
                    has_nets = true;
                    self.network_line(line, &mut nets)?;
                }
            }
        }
        let table = match ranges {
            Some((ranges, default)) => GeoTable::Ranges {
                ranges,
                default: default.unwrap_or_default(),
            },
            None => {
                // Without `default`, an address in no network gets the empty value.
                for any in [Cidr::V4 { addr: 0, len: 0 }, Cidr::V6 { addr: 0, len: 0 }] {
                    if nets.get(any).is_none() {
                        nets.insert(any, String::new());
                    }
                }
                GeoTable::Cidr(nets)
            }
        };
        Ok(GeoConf {
            name: name.to_owned(),
            source,
            proxies,
            proxy_recursive,
            volatile,
            table,
        })
    }

    /// One line of a `geo` block without `ranges`.
    fn network_line(&mut self, line: &Directive, nets: &mut PrefixTable<String>) -> Result<()> {
        let (key, value) = (line.name.as_str(), line.arg(0));
        if key == "delete" {
            let net = network(self, line, value)?;
            if nets.remove(net).is_none() {
                self.warn(line, format!("no network \"{value}\" to delete"));
            }
            return Ok(());
        }
        let targets = if key == "default" {
            vec![Cidr::V4 { addr: 0, len: 0 }, Cidr::V6 { addr: 0, len: 0 }]
        } else {
            vec![network(self, line, key)?]
        };
        for net in targets {
            if let Some(old) = nets.insert(net, value.to_owned()) {
                self.warn(
                    line,
                    format!(
                        "duplicate network \"{key}\", value: \"{value}\", old value: \"{old}\""
                    ),
                );
            }
        }
        Ok(())
    }

    /// One line of a `geo` block after `ranges`.
    fn range_line(
        &mut self,
        line: &Directive,
        table: &mut RangeTable<String>,
        default: &mut Option<String>,
    ) -> Result<()> {
        let (key, value) = (line.name.as_str(), line.arg(0));
        match key {
            "default" => {
                if let Some(old) = default.replace(value.to_owned()) {
                    self.warn(
                        line,
                        format!(
                            "duplicate default geo range value: \"{value}\", old value: \"{old}\""
                        ),
                    );
                }
            }
            "delete" => {
                let (start, end) = range(line, value)?;
                if !table.delete(start, end) {
                    self.warn(line, format!("no address range \"{value}\" to delete"));
                }
            }
            _ => {
                let (start, end) = range(line, key)?;
                match table.add(start, end, value.to_owned()) {
                    Ok(None) => {}
                    Ok(Some(old)) => self.warn(
                        line,
                        format!(
                            "duplicate range \"{key}\", value: \"{value}\", old value: \"{old}\""
                        ),
                    ),
                    Err(o) => {
                        return Err(ConfigError::hinted(
                            &line.span,
                            format!(
                                "range \"{key}\" overlaps \"{}-{}\"",
                                dotted(o.start),
                                dotted(o.end)
                            ),
                            "a range may lie inside another one but not overlap it partly",
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
