//! nginx's autoindex module: a directory's listing as HTML, XML, JSON or JSONP
//! (`autoindex_format`), laid out byte for byte as nginx writes it.
//!
//! Entries: every name not starting with `.`; a symbolic link is listed as what it
//! points to, a broken one as itself; directories first, then by byte order.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::config::{ListingConf, ListingFormat};
use crate::http1::dates::http_date;
use crate::http1::escape::escape_uri_component;

/// Names longer than this (in characters with `charset utf-8`, else in bytes) are
/// cut in the HTML listing.
const NAME_LEN: usize = 50;

/// A longest `callback` argument nginx accepts.
const CALLBACK_MAX: usize = 128;

/// What a listed name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    File,
    /// A device, socket, pipe or broken symbolic link.
    Other,
}

/// One listed name.
#[derive(Debug)]
struct Entry {
    name: Vec<u8>,
    kind: Kind,
    mtime: i64,
    size: u64,
}

/// A listing ready to send.
#[derive(Debug)]
pub(super) struct Listing {
    /// The `Content-Type` field's value.
    pub(super) content_type: String,
    pub(super) body: Vec<u8>,
}

/// Why a listing could not be made; each maps to nginx's status.
#[derive(Debug)]
pub(super) enum ListingError {
    /// A `callback` argument that is too long or has a character nginx refuses: 400.
    BadCallback(String),
    /// The directory could not be opened or read.
    Io(io::Error),
}

impl ListingError {
    /// nginx's status for the error: 400 for a bad callback, 404 for a directory that
    /// is gone, 403 for one that cannot be read, else 500.
    pub(super) fn status(&self) -> u16 {
        match self {
            ListingError::BadCallback(_) => 400,
            ListingError::Io(e) => match e.kind() {
                io::ErrorKind::NotFound
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::InvalidFilename => 404,
                io::ErrorKind::PermissionDenied => 403,
                _ => 500,
            },
        }
    }
}

/// The `callback` argument of a JSONP listing: `None` when absent or empty (nginx
/// then answers plain JSON); an error when longer than 128 bytes or holding anything
/// but letters, digits, `_` and `.`.
fn jsonp_callback(args: &[u8]) -> Result<Option<&[u8]>, ListingError> {
    let Some(cb) = crate::vars::arg_value(args, "callback").filter(|cb| !cb.is_empty()) else {
        return Ok(None);
    };
    let valid = |&b: &u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    if cb.len() > CALLBACK_MAX || !cb.iter().all(valid) {
        let what = if cb.len() > CALLBACK_MAX {
            "too long"
        } else {
            "invalid"
        };
        return Err(ListingError::BadCallback(format!(
            "client sent {what} callback name: \"{}\"",
            String::from_utf8_lossy(cb)
        )));
    }
    Ok(Some(cb))
}

/// The listing of `dir`, requested as `uri` (its decoded path, shown in the HTML
/// title) with query `args` (read for a JSONP `callback`); `charset` is the
/// location's `charset`.
pub(super) fn listing(
    conf: &ListingConf,
    dir: &Path,
    uri: &str,
    args: &[u8],
    charset: Option<&str>,
) -> Result<Listing, ListingError> {
    let callback = match conf.format {
        ListingFormat::Jsonp => jsonp_callback(args)?,
        _ => None,
    };
    let entries = read_entries(dir).map_err(ListingError::Io)?;
    let with_charset = |t: &str| match charset {
        Some(cs) => format!("{t}; charset={cs}"),
        None => t.to_owned(),
    };
    Ok(match (conf.format, callback) {
        (ListingFormat::Html, _) => {
            let utf8 = charset.is_some_and(|cs| cs.eq_ignore_ascii_case("utf-8"));
            Listing {
                content_type: with_charset("text/html"),
                body: html(conf, uri, &entries, utf8),
            }
        }
        (ListingFormat::Xml, _) => Listing {
            content_type: "text/xml; charset=utf-8".to_owned(),
            body: xml(&entries),
        },
        (ListingFormat::Json | ListingFormat::Jsonp, None) => Listing {
            content_type: "application/json".to_owned(),
            body: json(&entries, None),
        },
        (_, Some(cb)) => Listing {
            // application/javascript is one of nginx's default `charset_types`.
            content_type: with_charset("application/javascript"),
            body: json(&entries, Some(cb)),
        },
    })
}

/// The entries of `dir`, sorted as nginx sorts them. A name that cannot be looked
/// at for want of permission is left out, as nginx does.
fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().as_bytes().to_vec();
        if name.starts_with(b".") {
            continue;
        }
        let path = e.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            // A broken link or a loop: listed as the link itself.
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.raw_os_error() == Some(nix::libc::ELOOP) =>
            {
                std::fs::symlink_metadata(&path)?
            }
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => continue,
            Err(err) => return Err(err),
        };
        let kind = if meta.is_dir() {
            Kind::Directory
        } else if meta.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        entries.push(Entry {
            name,
            kind,
            mtime: meta.mtime(),
            size: meta.len(),
        });
    }
    entries.sort_by(|a, b| {
        let dir = |e: &Entry| e.kind != Kind::Directory;
        dir(a).cmp(&dir(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(entries)
}

/// Appends `s` with `<`, `>`, `&` and `"` as entities (nginx's `ngx_escape_html`).
fn escape_html(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            _ => out.push(b),
        }
    }
}

/// Appends `s` as the inside of a JSON string (nginx's `ngx_escape_json`): `"` and
/// `\` escaped, control bytes as `\n`-style or `\u00XX` escapes, the rest as is.
fn escape_json(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
}

fn utc(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default()
}

/// The offset of local time from UTC now, in seconds (nginx shifts every listed
/// time by the current offset with `autoindex_localtime on`).
fn local_offset() -> i64 {
    i64::from(chrono::Local::now().offset().local_minus_utc())
}

/// nginx's HTML listing: a `<pre>` block with one line per entry, the name cut and
/// padded to 50 columns, the time and the size.
fn html(conf: &ListingConf, uri: &str, entries: &[Entry], utf8: bool) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut out = Vec::with_capacity(256 + entries.len() * 160);
    out.extend_from_slice(b"<html>\r\n<head><title>Index of ");
    escape_html(uri.as_bytes(), &mut out);
    out.extend_from_slice(b"</title></head>\r\n<body>\r\n<h1>Index of ");
    escape_html(uri.as_bytes(), &mut out);
    out.extend_from_slice(b"</h1><hr><pre><a href=\"../\">../</a>\r\n");
    let shift = if conf.localtime { local_offset() } else { 0 };
    for e in entries {
        let is_dir = e.kind == Kind::Directory;
        out.extend_from_slice(b"<a href=\"");
        escape_uri_component(&e.name, &mut out);
        if is_dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        // Width in characters only when the page is UTF-8 and the name valid UTF-8.
        let text = if utf8 {
            std::str::from_utf8(&e.name).ok()
        } else {
            None
        };
        let mut len = text.map_or(e.name.len(), |t| t.chars().count());
        let keep = if len > NAME_LEN { NAME_LEN - 3 } else { len };
        let cut = text.map_or(keep, |t| {
            t.char_indices().nth(keep).map_or(t.len(), |(i, _)| i)
        });
        escape_html(&e.name[..cut], &mut out);
        if len > NAME_LEN {
            out.extend_from_slice(b"..&gt;</a>");
        } else {
            if is_dir && len < NAME_LEN {
                out.push(b'/');
                len += 1;
            }
            out.extend_from_slice(b"</a>");
            out.resize(out.len() + (NAME_LEN - len), b' ');
        }
        let t = utc(e.mtime + shift);
        out.extend_from_slice(
            format!(
                " {:02}-{}-{} {:02}:{:02} ",
                t.day(),
                MONTHS[t.month0() as usize],
                t.year(),
                t.hour(),
                t.minute()
            )
            .as_bytes(),
        );
        let size = match (is_dir, conf.exact_size) {
            (true, true) => format!("{:>19}", "-"),
            (true, false) => format!("{:>7}", "-"),
            (false, true) => format!("{:>19}", e.size),
            (false, false) => rounded_size(e.size),
        };
        out.extend_from_slice(size.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"</pre><hr></body>\r\n</html>\r\n");
    out
}

/// A size as `autoindex_exact_size off` shows it: bytes up to 9999, else K, M or G
/// rounded half up, right-aligned in 7 columns.
fn rounded_size(size: u64) -> String {
    const K: u64 = 1024;
    let scaled = |unit: u64| size / unit + u64::from(size % unit >= unit / 2);
    if size >= K * K * K {
        format!("{:>6}G", scaled(K * K * K))
    } else if size >= K * K {
        format!("{:>6}M", scaled(K * K))
    } else if size > 9999 {
        format!("{:>6}K", scaled(K))
    } else {
        format!(" {size:>6}")
    }
}

/// nginx's XML listing: `<directory>`, `<file>` or `<other>` elements with the
/// modification time in UTC and a file's size.
fn xml(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 96);
    out.extend_from_slice(b"<?xml version=\"1.0\"?>\r\n<list>\r\n");
    for e in entries {
        let tag = kind_name(e.kind);
        let t = utc(e.mtime);
        out.extend_from_slice(
            format!(
                "<{tag} mtime=\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z\"",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
            .as_bytes(),
        );
        if e.kind == Kind::File {
            out.extend_from_slice(format!(" size=\"{}\"", e.size).as_bytes());
        }
        out.push(b'>');
        escape_html(&e.name, &mut out);
        out.extend_from_slice(format!("</{tag}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"</list>\r\n");
    out
}

/// nginx's JSON listing, wrapped in a call of `callback` for JSONP.
fn json(entries: &[Entry], callback: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 96);
    if let Some(cb) = callback {
        out.extend_from_slice(b"/* callback */\r\n");
        out.extend_from_slice(cb);
        out.push(b'(');
    }
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"\r\n{ \"name\":\"");
        escape_json(&e.name, &mut out);
        out.extend_from_slice(
            format!(
                "\", \"type\":\"{}\", \"mtime\":\"{}\"",
                kind_name(e.kind),
                http_date(e.mtime)
            )
            .as_bytes(),
        );
        if e.kind == Kind::File {
            // nginx writes the size as a number, closing the mtime string first.
            out.extend_from_slice(format!(", \"size\":{}", e.size).as_bytes());
        }
        out.extend_from_slice(b" }");
    }
    out.extend_from_slice(b"\r\n]");
    if callback.is_some() {
        out.extend_from_slice(b");");
    }
    out
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Directory => "directory",
        Kind::File => "file",
        Kind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_as_nginx() {
        assert_eq!(rounded_size(0), "      0");
        assert_eq!(rounded_size(9999), "   9999");
        assert_eq!(rounded_size(10000), "    10K");
        assert_eq!(rounded_size(10240 + 511), "    10K");
        assert_eq!(rounded_size(10240 + 512), "    11K");
        assert_eq!(rounded_size(1024 * 1024), "     1M");
        assert_eq!(rounded_size(1024 * 1024 * 3 / 2), "     2M");
        assert_eq!(rounded_size(5 * 1024 * 1024 * 1024), "     5G");
    }

    #[test]
    fn callbacks_as_nginx_checks_them() {
        assert_eq!(
            jsonp_callback(b"callback=foo.bar_1").ok(),
            Some(Some(&b"foo.bar_1"[..]))
        );
        assert_eq!(jsonp_callback(b"callback=").ok(), Some(None));
        assert_eq!(jsonp_callback(b"x=1").ok(), Some(None));
        assert!(jsonp_callback(b"callback=a(b)").is_err());
        assert!(jsonp_callback(format!("callback={}", "a".repeat(129)).as_bytes()).is_err());
        assert!(jsonp_callback(format!("callback={}", "a".repeat(128)).as_bytes()).is_ok());
    }

    #[test]
    fn json_escapes_as_nginx() {
        let mut out = Vec::new();
        escape_json(b"a\"b\\c\n\x01<>", &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\n\\u0001<>");
    }
}
