//! The charset module's directives: `charset`, `source_charset`, `override_charset`,
//! `charset_types` at any level, `charset_map` blocks at the http level.

use std::collections::HashMap;
use std::sync::Arc;

use super::values::{flag, mime_types, templ};
use super::{once, Result, Validator};
use crate::config::charset::{CharsetConf, CharsetMap, CharsetMaps, MapTable};
use crate::config::error::ConfigError;
use crate::config::parser::Directive;
use crate::config::types::{GzipTypes, Span, Template, TemplatePart};

/// The charset settings of one level before merging; `None` means "not set here".
#[derive(Debug, Clone, Default)]
pub(super) struct CharsetPartial {
    /// `Some(None)`: `charset off`.
    charset: Option<Option<Template>>,
    source: Option<Template>,
    override_charset: Option<bool>,
    types: Option<GzipTypes>,
    /// Set at the http level from the whole configuration.
    pub(super) maps: Option<Arc<CharsetMaps>>,
}

impl CharsetPartial {
    /// This level over `parent`.
    pub(super) fn over(&self, parent: &CharsetPartial) -> CharsetPartial {
        CharsetPartial {
            charset: self.charset.clone().or_else(|| parent.charset.clone()),
            source: self.source.clone().or_else(|| parent.source.clone()),
            override_charset: self.override_charset.or(parent.override_charset),
            types: self.types.clone().or_else(|| parent.types.clone()),
            maps: self.maps.clone().or_else(|| parent.maps.clone()),
        }
    }

    /// nginx's load-time check: a level whose `charset` and `source_charset` are both
    /// names (no variables) and differ needs a `charset_map` between them.
    pub(super) fn check(&self, span: &Span) -> Result<()> {
        let (Some(Some(dst)), Some(src)) = (&self.charset, &self.source) else {
            return Ok(());
        };
        let (Some(dst), Some(src)) = (literal(dst), literal(src)) else {
            return Ok(());
        };
        let maps = self.maps.as_deref().cloned().unwrap_or_default();
        if dst.eq_ignore_ascii_case(src) || maps.recoding(src, dst).is_some() {
            return Ok(());
        }
        Err(ConfigError::hinted(
            span,
            format!("no \"charset_map\" between the charsets \"{src}\" and \"{dst}\""),
            "add a charset_map block for them at the http level",
        ))
    }

    /// Fills nginx's defaults in.
    pub(super) fn finish(&self) -> CharsetConf {
        let default = CharsetConf::default();
        CharsetConf {
            charset: self.charset.clone().flatten(),
            source: self.source.clone(),
            override_charset: self.override_charset.unwrap_or(false),
            types: self.types.clone().unwrap_or(default.types),
            maps: self.maps.clone().unwrap_or_default(),
        }
    }
}

/// The text of a template without variables.
fn literal(t: &Template) -> Option<&str> {
    match t.parts.as_slice() {
        [TemplatePart::Literal(s)] => Some(s),
        _ => None,
    }
}

impl Validator<'_> {
    /// Takes a charset directive of any level into `p`; false when `d` is none.
    pub(super) fn charset_setting(&self, p: &mut CharsetPartial, d: &Directive) -> Result<bool> {
        let a0 = d.arg(0);
        match d.name.as_str() {
            "charset" => {
                let v = (a0 != "off").then(|| self.charset_name(d)).transpose()?;
                once(&mut p.charset, v, d)?;
            }
            "source_charset" => once(&mut p.source, self.charset_name(d)?, d)?,
            "override_charset" => once(&mut p.override_charset, flag(d)?, d)?,
            "charset_types" => once(&mut p.types, mime_types(d, None), d)?,
            // Read beforehand from the whole http block (see `charset_maps`).
            "charset_map" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A charset name, or one variable holding it (nginx takes `$name` as a variable
    /// only when it is the whole argument).
    fn charset_name(&self, d: &Directive) -> Result<Template> {
        let a0 = d.arg(0);
        if a0.starts_with('$') {
            templ(d, a0, &self.names)
        } else {
            Ok(Template::literal(a0))
        }
    }
}

/// The charsets the http block names (in `charset`, `source_charset` at any level and
/// in `charset_map`) and its `charset_map` tables, as nginx checks them.
pub(super) fn charset_maps(http: &[Directive]) -> Result<CharsetMaps> {
    let mut maps = CharsetMaps::default();
    collect_names(http, &mut maps);
    for d in http.iter().filter(|d| d.name == "charset_map") {
        let map = charset_map(d)?;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if maps.maps.iter().any(|m| {
            (same(&m.from, &map.from) && same(&m.to, &map.to))
                || (same(&m.from, &map.to) && same(&m.to, &map.from))
        }) {
            return Err(ConfigError::at(
                &d.span,
                format!(
                    "duplicate \"charset_map\" between \"{}\" and \"{}\"",
                    map.from, map.to
                ),
            ));
        }
        maps.add_name(&map.from);
        maps.add_name(&map.to);
        maps.maps.push(map);
    }
    Ok(maps)
}

/// Literal names of `charset` and `source_charset` anywhere below.
fn collect_names(ds: &[Directive], maps: &mut CharsetMaps) {
    for d in ds {
        if matches!(d.name.as_str(), "charset" | "source_charset") {
            let a0 = d.arg(0);
            let off = d.name == "charset" && a0 == "off";
            if !(a0.starts_with('$') || off) {
                maps.add_name(a0);
            }
        }
        if let Some(block) = &d.block {
            collect_names(block, maps);
        }
    }
}

/// One `charset_map FROM TO { XX YY; ... }` block: hexadecimal byte pairs, or a byte
/// and its utf-8 sequence (up to 3 bytes) when `TO` is utf-8.
fn charset_map(d: &Directive) -> Result<CharsetMap> {
    let (from, to) = (d.arg(0), d.arg(1));
    if from.eq_ignore_ascii_case(to) {
        return Err(ConfigError::at(
            &d.span,
            format!("\"charset_map\" between the same charsets \"{from}\" and \"{to}\""),
        ));
    }
    if from.eq_ignore_ascii_case("utf-8") {
        return Err(ConfigError::hinted(
            &d.span,
            "\"charset_map\" from utf-8 is not supported",
            "name the single-byte charset first: charset_map NAME utf-8 { ... }",
        ));
    }
    let entries = d.block.as_deref().unwrap_or_default();
    let invalid =
        |e: &Directive, v: &str| ConfigError::at(&e.span, format!("invalid value \"{v}\""));
    let byte = |e: &Directive, v: &str| {
        // nginx's `ngx_hextoi`: hexadecimal digits only, at most 255.
        u32::from_str_radix(v, 16)
            .ok()
            .filter(|_| v.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| invalid(e, v))
    };
    let pairs = entries.iter().map(|e| {
        if e.args.len() != 1 || e.block.is_some() {
            return Err(ConfigError::at(&e.span, "invalid parameters number"));
        }
        Ok((e, byte(e, &e.name)?, e.arg(0)))
    });
    let table = if to.eq_ignore_ascii_case("utf-8") {
        let mut forward: Vec<Vec<u8>> = (0..=255u8)
            .map(|b| if b < 0x80 { vec![b] } else { b"?".to_vec() })
            .collect();
        let mut backward: HashMap<u32, u8> = (0..0x80u8).map(|b| (u32::from(b), b)).collect();
        for pair in pairs {
            let (e, src, value) = pair?;
            if value.len() / 2 > 3
                || value.len() % 2 != 0
                || value.is_empty()
                || !value.bytes().all(|c| c.is_ascii_hexdigit())
            {
                return Err(invalid(e, value));
            }
            let bytes = (0..value.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&value[i..i + 2], 16).map_err(|_| invalid(e, value)))
                .collect::<Result<Vec<u8>>>()?;
            let point = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.chars().next())
                .filter(|c| c.len_utf8() == bytes.len())
                .ok_or_else(|| invalid(e, value))?;
            backward.insert(u32::from(point), src);
            forward[usize::from(src)] = bytes;
        }
        MapTable::Utf8 { forward, backward }
    } else {
        let mut forward = Box::new([b'?'; 256]);
        let mut backward = Box::new([b'?'; 256]);
        for b in 0..0x80u8 {
            forward[usize::from(b)] = b;
            backward[usize::from(b)] = b;
        }
        for pair in pairs {
            let (e, src, value) = pair?;
            let dst = byte(e, value)?;
            forward[usize::from(src)] = dst;
            backward[usize::from(dst)] = src;
        }
        MapTable::Bytes { forward, backward }
    };
    Ok(CharsetMap {
        from: from.to_owned(),
        to: to.to_owned(),
        table,
    })
}
