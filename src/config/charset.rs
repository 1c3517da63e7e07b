//! The charset module's settings (nginx's `ngx_http_charset_filter_module`):
//! `charset`, `source_charset`, `override_charset`, `charset_types`, and the
//! `charset_map` tables of the http level.

use std::collections::HashMap;
use std::sync::Arc;

use super::types::{GzipTypes, Template};

/// nginx's default `charset_types`.
pub const DEFAULT_CHARSET_TYPES: [&str; 6] = [
    "text/html",
    "text/xml",
    "text/plain",
    "text/vnd.wap.wml",
    "application/javascript",
    "application/rss+xml",
];

/// A location's charset settings.
#[derive(Debug, Clone)]
pub struct CharsetConf {
    /// `charset`: the charset the response is sent in and named in its
    /// `Content-Type`; may be a variable. `None` (the default) is `off`.
    pub charset: Option<Template>,
    /// `source_charset`: the charset the response is in; may be a variable. `None`
    /// (the default) is `off`.
    pub source: Option<Template>,
    /// `override_charset`: a proxied response's own charset is recoded too. Default off.
    pub override_charset: bool,
    /// `charset_types`: the MIME types `charset` applies to; default
    /// [`DEFAULT_CHARSET_TYPES`] (the list type is shared with `gzip_types`).
    pub types: GzipTypes,
    /// Every charset the configuration names and the `charset_map` tables.
    pub maps: Arc<CharsetMaps>,
}

impl Default for CharsetConf {
    fn default() -> Self {
        CharsetConf {
            charset: None,
            source: None,
            override_charset: false,
            types: GzipTypes::List(
                DEFAULT_CHARSET_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
            ),
            maps: Arc::default(),
        }
    }
}

/// The charsets nginx knows by name (those of `charset`, `source_charset` and
/// `charset_map`; a name that is none of them cannot be recoded from or to) and the
/// tables between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CharsetMaps {
    /// Known names, compared without case.
    pub names: Vec<String>,
    /// One per `charset_map` block.
    pub maps: Vec<CharsetMap>,
}

/// One `charset_map FROM TO { ... }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharsetMap {
    /// The first charset (single-byte).
    pub from: String,
    /// The second charset (single-byte, or `utf-8`).
    pub to: String,
    /// The recoding both ways.
    pub table: MapTable,
}

/// The recoding of a `charset_map` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapTable {
    /// Between two single-byte charsets: bytes 0-127 stay, the others not in the map
    /// become `?`.
    Bytes {
        /// From the first charset to the second.
        forward: Box<[u8; 256]>,
        /// From the second to the first.
        backward: Box<[u8; 256]>,
    },
    /// Between a single-byte charset and utf-8.
    Utf8 {
        /// The utf-8 bytes of each byte of the first charset (`?` for one not in the
        /// map above 127).
        forward: Vec<Vec<u8>>,
        /// The byte of each mapped code point (below U+10000); others are written as
        /// `&#N;`.
        backward: HashMap<u32, u8>,
    },
}

/// How a response body is recoded.
#[derive(Debug, Clone, Copy)]
pub enum Recoding<'m> {
    /// Byte for byte: the length stays.
    Bytes(&'m [u8; 256]),
    /// Single-byte to utf-8.
    ToUtf8(&'m [Vec<u8>]),
    /// utf-8 to single-byte.
    FromUtf8(&'m HashMap<u32, u8>),
}

impl CharsetMaps {
    /// The known charset called `name` (nginx compares without case), as first named.
    pub fn known(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .map(String::as_str)
    }

    /// Adds `name` to the known charsets.
    pub fn add_name(&mut self, name: &str) {
        if self.known(name).is_none() {
            self.names.push(name.to_owned());
        }
    }

    /// The recoding from charset `src` to `dst` (both known), if a map joins them.
    pub fn recoding(&self, src: &str, dst: &str) -> Option<Recoding<'_>> {
        self.maps.iter().find_map(|m| {
            let forward = m.from.eq_ignore_ascii_case(src) && m.to.eq_ignore_ascii_case(dst);
            let backward = m.from.eq_ignore_ascii_case(dst) && m.to.eq_ignore_ascii_case(src);
            match (&m.table, forward, backward) {
                (MapTable::Bytes { forward: t, .. }, true, _) => Some(Recoding::Bytes(t)),
                (MapTable::Bytes { backward: t, .. }, _, true) => Some(Recoding::Bytes(t)),
                (MapTable::Utf8 { forward: t, .. }, true, _) => Some(Recoding::ToUtf8(t)),
                (MapTable::Utf8 { backward: t, .. }, _, true) => Some(Recoding::FromUtf8(t)),
                _ => None,
            }
        })
    }
}

impl Recoding<'_> {
    /// Whether the recoded body may differ in length (nginx then drops
    /// `Content-Length`, and with it ranges).
    pub fn changes_length(&self) -> bool {
        !matches!(self, Recoding::Bytes(_))
    }
}
