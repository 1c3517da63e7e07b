//! Static files as nginx serves them: `root`/`alias`, `try_files`, `index` and
//! `autoindex` decide what a URI names ([`resolve`]); [`send_file`] answers with it:
//! `Content-Type` from `types`, `Last-Modified` and `ETag` with 304 and 412 (nginx's
//! not-modified filter), `Range` and `If-Range` with 206 and 416 (single and multipart,
//! as nginx's range filter), `expires`, `HEAD`. Files are read in 64 KiB pieces and
//! never held whole in memory.
//!
//! Paths: the URI is already decoded and normalised (no `..` above the root, no NUL;
//! see [`super::uri`]), so the file is always under the document root; with
//! `disable_symlinks on` no component of the path may be a symbolic link.

use crate::http1::dates::http_date;
use crate::http1::dates::{now_secs, parse_http_date};
use crate::proxy::expires::fields as expires_fields;
use std::fs::{File, Metadata};
use std::io::{Read, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::charset::Recoder;
use crate::config::charset::{CharsetConf, Recoding};
use crate::config::{Expires, FilesConf, IfModifiedSince, Level, TryFallback};
use crate::http1::{respond, Method, RequestHead};
use crate::net::buffers::{Buf, BODY_BUF};
use crate::net::io;
use crate::net::pace::Pace;
use crate::net::Stream;
use crate::vars::{append_fields, last_chunk, trailer_expected, AddedField, RequestVars};

/// What a URI names in a location, after `try_files` and `index`.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file to send.
    File(PathBuf, Metadata),
    /// An internal redirect to this URI (an index file exists; a `try_files` fallback);
    /// the location is looked up again.
    Redirect(String),
    /// The named location (`try_files ... @name`).
    Named(String),
    /// A directory asked for without its slash: 301 to the URI with one; `Some` is
    /// the URI a `try_files` directory entry made (nginx's tried name without its
    /// slash), `None` the request's.
    AddSlash(Option<String>),
    /// A directory listing (`autoindex on`).
    Listing(PathBuf),
    /// Answer with this status (403, 404, `try_files ... =CODE`).
    Status(u16),
}

/// The file a URI names: `root` plus the URI, or `alias` plus the URI after the
/// location's prefix, or a regex location's `alias` alone; `None` when a value with
/// variables would leave its directory (see [`FilesConf::file_for`]).
pub fn map_path(files: &FilesConf, uri: &str, vars: &RequestVars<'_>) -> Option<PathBuf> {
    files.file_for(uri, &|t| vars.evaluated(t))
}

/// Decides what `uri` names in a location with `files`: `try_files` first, then the
/// URI itself (index files for a directory URI, a regular file otherwise).
/// `log` reports `open()` failures as nginx's error log does.
pub fn resolve(
    files: &FilesConf,
    uri: &str,
    vars: &RequestVars<'_>,
    log: &mut dyn FnMut(Level, String),
) -> Resolved {
    if let Some(tf) = &files.try_files {
        let mut value = Vec::new();
        for t in &tf.files {
            value.clear();
            vars.eval(&t.name, &mut value);
            let Ok(candidate) = std::str::from_utf8(&value) else {
                continue;
            };
            // nginx tries the path as a URI of this location; a trailing `/` written in
            // the configuration asks for a directory.
            let dir = t.dir && candidate.ends_with('/');
            let path = files.try_file_for(candidate, &|t| vars.evaluated(t));
            let Some(path) = path else {
                continue;
            };
            match checked_meta(files, &path) {
                Ok(m) if dir && m.is_dir() => {
                    // nginx tests the name without its slash and makes it the URI: a
                    // directory there is asked for without a slash (301), unless the
                    // entry ended in two.
                    let named = &candidate[..candidate.len() - 1];
                    if named.ends_with('/') {
                        return directory(files, named, &path, vars, log);
                    }
                    return Resolved::AddSlash(Some(named.to_owned()));
                }
                Ok(m) if !dir && m.is_file() => return Resolved::File(path, m),
                _ => {}
            }
        }
        return match &tf.fallback {
            TryFallback::Status(code) => Resolved::Status(*code),
            TryFallback::Named(name) => Resolved::Named(name.clone()),
            TryFallback::Uri(t) => {
                value.clear();
                vars.eval(t, &mut value);
                Resolved::Redirect(String::from_utf8_lossy(&value).into_owned())
            }
        };
    }
    let Some(path) = map_path(files, uri, vars) else {
        return Resolved::Status(404);
    };
    if uri.ends_with('/') {
        return directory(files, uri, &path, vars, log);
    }
    match checked_meta(files, &path) {
        Ok(m) if m.is_dir() => Resolved::AddSlash(None),
        Ok(m) if m.is_file() => Resolved::File(path, m),
        Ok(_) => Resolved::Status(404),
        Err(e) => not_opened(files, &path, &e, log),
    }
}

/// A URI ending in `/`: its first existing index file (an internal redirect), else a
/// listing with `autoindex on`, else 403 (or 404 when the directory does not exist).
fn directory(
    files: &FilesConf,
    uri: &str,
    path: &Path,
    vars: &RequestVars<'_>,
    log: &mut dyn FnMut(Level, String),
) -> Resolved {
    let count = files.index.len();
    let mut value = Vec::new();
    for (i, t) in files.index.iter().enumerate() {
        value.clear();
        vars.eval(t, &mut value);
        let name = String::from_utf8_lossy(&value);
        if name.starts_with('/') {
            // An absolute last entry is nginx's unconditional fallback.
            if i + 1 == count {
                return Resolved::Redirect(name.into_owned());
            }
            continue;
        }
        if name.is_empty() {
            continue;
        }
        let candidate = format!("{uri}{name}");
        let file = if files.alias_names_file() {
            // The alias names the directory: the index file is in it, as nginx.
            let mut p = path.as_os_str().to_owned();
            p.push(name.as_ref());
            Some(PathBuf::from(p))
        } else {
            map_path(files, &candidate, vars)
        };
        if file.is_some_and(|f| checked_meta(files, &f).is_ok_and(|m| m.is_file())) {
            return Resolved::Redirect(candidate);
        }
    }
    match checked_meta(files, path) {
        Ok(m) if m.is_dir() && files.autoindex => Resolved::Listing(path.to_path_buf()),
        Ok(m) if m.is_dir() => {
            log(Level::Error, forbidden_directory(path));
            Resolved::Status(403)
        }
        Ok(_) => Resolved::Status(404),
        Err(e) => not_opened(files, path, &e, log),
    }
}

/// nginx's error-log line for a directory it neither indexes nor lists.
pub fn forbidden_directory(path: &Path) -> String {
    format!("directory index of \"{}\" is forbidden", path.display())
}

/// 404 for a missing file (logged unless `log_not_found off`), 403 when access is
/// refused (always logged), as nginx.
fn not_opened(
    files: &FilesConf,
    path: &Path,
    e: &std::io::Error,
    log: &mut dyn FnMut(Level, String),
) -> Resolved {
    let status = match e.kind() {
        std::io::ErrorKind::PermissionDenied => 403,
        _ if e.raw_os_error() == Some(nix::libc::ELOOP) => 403,
        _ => 404,
    };
    if status == 403 || files.log_not_found {
        log(
            Level::Error,
            format!(
                "open() \"{}\" failed ({})",
                path.display(),
                crate::log::os_error_text(e)
            ),
        );
    }
    Resolved::Status(status)
}

/// `stat` of the path, refusing symbolic links anywhere in it under `disable_symlinks
/// on` (as `ELOOP`, which nginx reports then too).
fn checked_meta(files: &FilesConf, path: &Path) -> std::io::Result<Metadata> {
    if files.disable_symlinks {
        let mut so_far = PathBuf::new();
        for c in path.components() {
            so_far.push(c);
            if std::fs::symlink_metadata(&so_far)?.file_type().is_symlink() {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ELOOP));
            }
        }
    }
    std::fs::metadata(path)
}

/// The response head fields that describe a file, and the request's conditions.
struct FileFacts<'m> {
    size: u64,
    mtime: i64,
    etag: Option<String>,
    content_type: String,
    /// The charset filter's recoding of the body.
    recoding: Option<Recoding<'m>>,
}

impl<'m> FileFacts<'m> {
    fn new(r: &FileRequest<'m>, path: &Path, m: &Metadata) -> FileFacts<'m> {
        let files = r.files;
        let mtime = m.mtime();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let content_type = files
            .types
            .of(&name)
            .unwrap_or(&files.default_type)
            .to_owned();
        let charset = super::charset::decide(
            r.charset,
            r.charset_names,
            &super::charset::Facts {
                status: r.status.unwrap_or(200),
                content_type: Some(content_type.as_bytes()),
                encoded: r.gzipped.is_some(),
                accel_charset: None,
            },
        );
        FileFacts {
            size: m.len(),
            mtime,
            // nginx's ETag: hex modification time and hex size.
            etag: files.etag.then(|| format!("\"{:x}-{:x}\"", mtime, m.len())),
            content_type: charset.content_type.unwrap_or(content_type),
            recoding: charset.recoding,
        }
    }
}

/// Whether an `If-None-Match`/`If-Match` list names `etag` (`*` names any).
fn etag_listed(list: &[u8], etag: &str, weak: bool) -> bool {
    let list = String::from_utf8_lossy(list);
    list.split(',').map(str::trim).any(|t| {
        if t == "*" {
            return true;
        }
        let t = if weak {
            t.strip_prefix("W/").unwrap_or(t)
        } else {
            t
        };
        t == etag
    })
}

/// What the not-modified filter decides: 304, 412, or go on.
fn precondition(
    req: &RequestHead,
    buf: &[u8],
    files: &FilesConf,
    f: &FileFacts<'_>,
) -> Option<u16> {
    if let Some(v) = req.header_value(buf, "if-unmodified-since") {
        if parse_http_date(v).is_none_or(|t| f.mtime > t) {
            return Some(412);
        }
    }
    if let Some(v) = req.header_value(buf, "if-match") {
        if !f.etag.as_deref().is_some_and(|e| etag_listed(v, e, false)) {
            return Some(412);
        }
    }
    if let Some(v) = req.header_value(buf, "if-none-match") {
        if f.etag.as_deref().is_some_and(|e| etag_listed(v, e, true)) {
            return Some(304);
        }
        return None;
    }
    if let Some(v) = req.header_value(buf, "if-modified-since") {
        let t = parse_http_date(v)?;
        let not_modified = match files.if_modified_since {
            IfModifiedSince::Off => false,
            IfModifiedSince::Exact => t == f.mtime,
            IfModifiedSince::Before => f.mtime <= t,
        };
        if not_modified {
            return Some(304);
        }
    }
    None
}

/// The byte ranges a `Range` header asks for, as nginx's range filter reads it:
/// `Ok(None)` to send the whole file, `Err(())` for 416.
#[allow(clippy::result_unit_err)]
pub fn parse_ranges(v: &[u8], size: u64) -> Result<Option<Vec<(u64, u64)>>, ()> {
    let Some(spec) = v.strip_prefix(b"bytes=") else {
        return Ok(None);
    };
    let spec = std::str::from_utf8(spec).map_err(|_| ())?;
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for part in spec.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').ok_or(())?;
        let (a, b) = (a.trim(), b.trim());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let (start, end) = if a.is_empty() {
            // Suffix: the last N bytes.
            if !digits(b) {
                return Err(());
            }
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                continue;
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        } else {
            if !digits(a) || !(b.is_empty() || digits(b)) {
                return Err(());
            }
            let start: u64 = a.parse().map_err(|_| ())?;
            let end: u64 = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse::<u64>()
                    .map_err(|_| ())?
                    .min(size.saturating_sub(1))
            };
            if !b.is_empty() && b.parse::<u64>().map_err(|_| ())? < start {
                return Err(());
            }
            if start >= size {
                continue;
            }
            (start, end)
        };
        if size == 0 {
            continue;
        }
        total = total.saturating_add(end - start + 1);
        out.push((start, end));
    }
    if out.is_empty() {
        return Err(());
    }
    // nginx sends the whole file when the ranges add up to more than it.
    if total > size {
        return Ok(None);
    }
    Ok(Some(out))
}

/// How a file response ended, for the access log and the connection loop.
#[derive(Debug, Clone)]
pub struct Sent {
    /// `$gzip_ratio` of a body compressed on the fly.
    pub gzip_ratio: Option<String>,
    /// The status sent.
    pub status: u16,
    /// Bytes of the head.
    pub head_bytes: u64,
    /// Bytes of the body.
    pub body_bytes: u64,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// The head sent (status line and fields), for `$sent_http_NAME`: always for the
    /// small pages, for a file only when [`FileRequest::keep_head`] asks.
    pub head: Vec<u8>,
}

/// Everything [`send_file`] needs besides the file.
pub struct FileRequest<'a> {
    /// The request.
    pub head: &'a RequestHead,
    /// Its buffer.
    pub buf: &'a [u8],
    /// The location's file settings.
    pub files: &'a FilesConf,
    /// `expires` for this response, its variable (if any) evaluated.
    pub expires: Option<Expires>,
    /// The location's `add_header` lines, evaluated for the request.
    pub add_header: &'a [AddedField<'a>],
    /// The location's `add_trailer` lines, evaluated for the request: the body then
    /// goes chunked to an HTTP/1.1 client, ending with them.
    pub add_trailer: &'a [AddedField<'a>],
    /// Whether the connection may stay open as far as the request goes.
    pub keep_alive: bool,
    /// `keepalive_timeout`'s second value (`Keep-Alive: timeout=N`).
    pub keepalive_header: Option<std::time::Duration>,
    /// `chunked_transfer_encoding`: a body of unknown length (compressed on the fly,
    /// or one an `add_trailer` ends) may go chunked to an HTTP/1.1 client.
    pub chunked_transfer_encoding: bool,
    /// `send_timeout`: how long one write to the client may stall.
    pub send_timeout: std::time::Duration,
    /// `limit_rate` and `limit_rate_after` (0: no limit).
    pub limit_rate: (u64, u64),
    /// The status of an error page served from this file (nginx's `err_status`):
    /// `If-None-Match`, `If-Modified-Since` and `Range` then apply only to 200.
    pub status: Option<u16>,
    /// The file's gzipped copy sent in its place (`gzip_static`): opened instead,
    /// described by the metadata given, typed by the file's own name, sent with
    /// `Content-Encoding: gzip`.
    pub gzipped: Option<&'a Path>,
    /// `Vary: Accept-Encoding` (`gzip_vary` where a gzipped copy exists).
    pub vary: bool,
    /// Keep a copy of the head sent ([`Sent::head`]): the access log wants it.
    pub keep_head: bool,
    /// Dynamic gzip (`gzip on`): the settings and the request's part of the verdict.
    pub gzip: Option<(&'a crate::config::GzipConf, super::gzip_ok::ClientGzip)>,
    /// The location's charset settings.
    pub charset: &'a CharsetConf,
    /// Its `charset` and `source_charset` for this request.
    pub(super) charset_names: &'a super::charset::Names,
}

/// The gzipped copy of `path` that `gzip_static` sends for this request, and whether
/// the response varies by `Accept-Encoding`, as nginx's gzip_static module decides.
pub fn precompressed(
    files: &FilesConf,
    gzip: &crate::config::GzipConf,
    client_ok: impl FnOnce() -> bool,
    path: &Path,
) -> (Option<(PathBuf, Metadata)>, bool) {
    use crate::config::GzipStatic;
    let ok = match files.gzip_static {
        GzipStatic::Off => return (None, false),
        GzipStatic::On => client_ok(),
        GzipStatic::Always => true,
    };
    if !ok && !gzip.vary {
        return (None, false);
    }
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    match checked_meta(files, &gz) {
        Ok(m) if m.is_file() && ok => (Some((gz, m)), gzip.vary),
        Ok(m) if m.is_file() => (None, gzip.vary),
        _ => (None, false),
    }
}

/// Answers a GET or HEAD for a regular file; `Err` with the status when the file
/// cannot be opened (nothing was written: the caller answers, maybe with its own page).
pub async fn send_file(
    stream: &mut Stream,
    r: &FileRequest<'_>,
    path: &Path,
    meta: &Metadata,
) -> Result<Sent, u16> {
    let facts = FileFacts::new(r, path, meta);
    let http10 = r.head.minor_version == 0;
    let head_only = r.head.method == Method::Head;
    let keep = r.keep_alive;
    let mut out = Buf::head();

    // nginx's not-modified and range filters look at the status the page goes with.
    let plain = r.status.is_none_or(|s| s == 200);
    if let Some(status) = precondition(r.head, r.buf, r.files, &facts).filter(|_| plain) {
        if status == 412 {
            return Ok(send_status(stream, r.head, 412, keep, r.send_timeout).await);
        }
        respond::write_status_line_with(&mut out, 304, keep, http10, r.keepalive_header);
        let _ = write!(out, "Last-Modified: {}\r\n", http_date(facts.mtime));
        if let Some(e) = &facts.etag {
            let _ = write!(out, "ETag: {e}\r\n");
        }
        extra_headers(&mut out, r, 304, facts.mtime, false);
        out.extend_from_slice(b"\r\n");
        let ok = io::write_all(stream, &out, r.send_timeout).await.is_ok();
        return Ok(Sent {
            gzip_ratio: None,
            status: 304,
            head_bytes: out.len() as u64,
            body_bytes: 0,
            keep_alive: keep && ok,
            head: kept_head(r, &out),
        });
    }

    let gzip = gzip_verdict(r, &facts);
    let mut ranges = None;
    // nginx 1.22 serves a gzipped copy whole, without Accept-Ranges; a body compressed
    // on the fly has no length, so ranges do not apply either.
    // A recoding that may change the length drops it, and ranges with it (nginx's
    // charset filter clears `Content-Length`).
    let resized = facts.recoding.is_some_and(|c| c.changes_length());
    let ranges_allowed = plain && r.gzipped.is_none() && !gzip.compress && !resized;
    // `max_ranges 0`: the range filter stands aside (no `Accept-Ranges` either).
    let ranges_off = r.files.max_ranges == Some(0);
    let ranges_allowed = ranges_allowed && !ranges_off;
    if let Some(v) = r
        .head
        .header_value(r.buf, "range")
        .filter(|_| ranges_allowed)
    {
        let if_range_ok = match r.head.header_value(r.buf, "if-range") {
            None => true,
            Some(ir) => {
                let (mtime, etag) = range_validators(r, &facts);
                if ir.starts_with(b"\"") || ir.starts_with(b"W/") {
                    etag.is_some_and(|e| ir == e.as_slice())
                } else {
                    mtime.is_some() && parse_http_date(ir) == mtime
                }
            }
        };
        if if_range_ok {
            match parse_ranges(v, facts.size) {
                // More ranges than `max_ranges`: the whole file.
                Ok(Some(rs)) if r.files.max_ranges.is_some_and(|m| rs.len() > m as usize) => {}
                Ok(rs) => ranges = rs,
                Err(()) => {
                    let mut out = Buf::head();
                    let page = respond::error_body(416);
                    respond::write_status_line_with(
                        &mut out,
                        416,
                        keep,
                        http10,
                        r.keepalive_header,
                    );
                    let _ = write!(
                        out,
                        "Content-Type: text/html\r\nContent-Length: {}\r\nContent-Range: bytes */{}\r\n\r\n",
                        page.len(),
                        facts.size
                    );
                    let head_bytes = out.len() as u64;
                    let head = kept_head(r, &out);
                    if !head_only {
                        out.extend_from_slice(page.as_bytes());
                    }
                    let ok = io::write_all(stream, &out, r.send_timeout).await.is_ok();
                    return Ok(Sent {
                        gzip_ratio: None,
                        status: 416,
                        head_bytes,
                        body_bytes: out.len() as u64 - head_bytes,
                        keep_alive: keep && ok,
                        head,
                    });
                }
            }
        }
    }

    let mut file = match File::open(r.gzipped.unwrap_or(path)) {
        Ok(f) => f,
        Err(e) => {
            let status = if e.kind() == std::io::ErrorKind::PermissionDenied {
                403
            } else {
                404
            };
            crate::log::emit(
                Level::Error,
                None,
                format_args!(
                    "open() \"{}\" failed ({})",
                    path.display(),
                    crate::log::os_error_text(&e)
                ),
            );
            return Err(status);
        }
    };

    let status = match (r.status, &ranges) {
        (Some(s), _) => s,
        (None, Some(_)) => 206,
        (None, None) => 200,
    };
    if gzip.compress || resized {
        let how = Unsized {
            status,
            gzip: gzip.compress,
            vary: gzip.vary,
        };
        return Ok(send_unsized(stream, r, path, file, &facts, how).await);
    }
    respond::write_status_line_with(&mut out, status, keep, http10, r.keepalive_header);
    // nginx's boundary: a process-wide counter, 20 digits.
    static BOUNDARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let boundary = format!(
        "{:020}",
        BOUNDARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let parts: Vec<(u64, u64, Vec<u8>)> = match &ranges {
        Some(rs) if rs.len() > 1 => rs
            .iter()
            .map(|&(a, b)| {
                let mut h = Vec::new();
                let _ = write!(
                    h,
                    "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                    facts.content_type, facts.size
                );
                (a, b, h)
            })
            .collect(),
        Some(rs) => rs.iter().map(|&(a, b)| (a, b, Vec::new())).collect(),
        None => vec![(0, facts.size.saturating_sub(1), Vec::new())],
    };
    let multipart = parts.len() > 1;
    let trailer = format!("\r\n--{boundary}--\r\n");
    let body_len: u64 = if facts.size == 0 {
        0
    } else {
        parts
            .iter()
            .map(|(a, b, h)| b - a + 1 + h.len() as u64)
            .sum::<u64>()
            + if multipart { trailer.len() as u64 } else { 0 }
    };
    if multipart {
        let _ = write!(
            out,
            "Content-Type: multipart/byteranges; boundary={boundary}\r\n"
        );
    } else {
        let _ = write!(out, "Content-Type: {}\r\n", facts.content_type);
    }
    let trailer_applies = respond::add_header_applies(status);
    // `add_trailer`: chunked, to end with the trailer (an HTTP/1.1 GET only).
    let chunked = !http10
        && r.chunked_transfer_encoding
        && !head_only
        && trailer_expected(r.add_trailer, trailer_applies);
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else {
        let _ = write!(out, "Content-Length: {body_len}\r\n");
    }
    let _ = write!(out, "Last-Modified: {}\r\n", http_date(facts.mtime));
    if let Some(e) = &facts.etag {
        let _ = write!(out, "ETag: {e}\r\n");
    }
    if let (Some(rs), false) = (&ranges, multipart) {
        let (a, b) = rs[0];
        let _ = write!(out, "Content-Range: bytes {a}-{b}/{}\r\n", facts.size);
    } else if ranges.is_none() && r.gzipped.is_none() && !ranges_off {
        out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    }
    extra_headers(&mut out, r, status, facts.mtime, gzip.vary);
    out.extend_from_slice(b"\r\n");
    let head_bytes = out.len() as u64;
    let head = kept_head(r, &out);
    if chunked {
        // An empty file has no part to send.
        let parts = if facts.size == 0 { &[][..] } else { &parts[..] };
        let end = multipart.then_some(trailer.as_str());
        let sent = send_chunked(stream, r, path, file, out, parts, end, status, keep).await;
        return Ok(Sent { head, ..sent });
    }

    if head_only || facts.size == 0 {
        let ok = io::write_all(stream, &out, r.send_timeout).await.is_ok();
        return Ok(Sent {
            gzip_ratio: None,
            status,
            head_bytes,
            body_bytes: 0,
            keep_alive: keep && ok,
            head,
        });
    }
    // The head goes out with the first piece of the body.
    let mut pending: Option<Buf> = Some(out);
    let mut pace = Pace::new(r.limit_rate.0, r.limit_rate.1);
    let mut sent = 0u64;
    let mut chunk = Buf::body();
    let mut recoder = facts.recoding.map(Recoder::new);
    let mut recoded = Vec::new();
    for (a, b, part_head) in &parts {
        if !part_head.is_empty() {
            if write_piece(stream, &mut pending, part_head, r.send_timeout, &mut pace)
                .await
                .is_err()
            {
                return Ok(broken(status, head_bytes, sent, head));
            }
            sent += part_head.len() as u64;
        }
        if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(*a)).is_err() {
            return Ok(broken(status, head_bytes, sent, head));
        }
        let mut left = b - a + 1;
        while left > 0 {
            let Some(n) = read_piece(&mut file, &mut chunk, left, path) else {
                return Ok(broken(status, head_bytes, sent, head));
            };
            let piece = match &mut recoder {
                // Byte for byte: offsets and lengths stay.
                Some(rc) => {
                    recoded.clear();
                    rc.piece(&chunk[..n], &mut recoded);
                    &recoded[..]
                }
                None => &chunk[..n],
            };
            if write_piece(stream, &mut pending, piece, r.send_timeout, &mut pace)
                .await
                .is_err()
            {
                return Ok(broken(status, head_bytes, sent, head));
            }
            sent += n as u64;
            left -= n as u64;
        }
    }
    if multipart {
        if write_piece(
            stream,
            &mut pending,
            trailer.as_bytes(),
            r.send_timeout,
            &mut pace,
        )
        .await
        .is_err()
        {
            return Ok(broken(status, head_bytes, sent, head));
        }
        sent += trailer.len() as u64;
    }
    Ok(Sent {
        gzip_ratio: None,
        status,
        head_bytes,
        body_bytes: sent,
        keep_alive: keep,
        head,
    })
}

/// nginx's gzip filter on a file response.
fn gzip_verdict(r: &FileRequest<'_>, facts: &FileFacts<'_>) -> super::gzip::Verdict {
    let Some((conf, client)) = r.gzip else {
        return super::gzip::Verdict::default();
    };
    let candidate = super::gzip::Candidate {
        status: r.status.unwrap_or(200),
        header_only: false,
        content_encoding: r.gzipped.map(|_| &b"gzip"[..]),
        content_length: (!facts.recoding.is_some_and(|c| c.changes_length())).then_some(facts.size),
        content_type: Some(facts.content_type.as_bytes()),
    };
    let response = super::gzip_ok::ResponseFacts {
        cache_control: None,
        // The `expires` directive's field, already set when nginx's gzip filter asks.
        expires: r.expires.map(|e| match e {
            Expires::Epoch => true,
            Expires::After(s) => s < 0,
            Expires::Modified(s) => facts.mtime + s < now_secs(),
            Expires::Max | Expires::Daily(_) => false,
        }),
        last_modified: true,
        etag: facts.etag.is_some(),
    };
    super::gzip::verdict(conf, &candidate, || client.allows(conf, &response))
}

/// How [`send_unsized`] sends a file.
struct Unsized {
    status: u16,
    /// Compressed on the fly (`gzip on`).
    gzip: bool,
    /// `Vary: Accept-Encoding`.
    vary: bool,
}

/// A whole file compressed on the fly or recoded to or from utf-8: no length, chunked
/// for an HTTP/1.1 client and ended by closing for an HTTP/1.0 one; no
/// `Accept-Ranges`; a weak `ETag` when compressed.
async fn send_unsized(
    stream: &mut Stream,
    r: &FileRequest<'_>,
    path: &Path,
    mut file: File,
    facts: &FileFacts<'_>,
    how: Unsized,
) -> Sent {
    let Unsized { status, gzip, vary } = how;
    let mut encoder = match r.gzip {
        Some((conf, _)) if gzip => Some(super::gzip::GzipEncoder::new(conf.level)),
        _ => None,
    };
    let mut recoder = facts.recoding.map(Recoder::new);
    let mut recoded = Vec::new();
    let http10 = r.head.minor_version == 0;
    // Without chunks (HTTP/1.0, `chunked_transfer_encoding off`) the close ends it.
    let close_delimited = http10 || !r.chunked_transfer_encoding;
    let head_only = r.head.method == Method::Head;
    // Without a length, an HTTP/1.0 client knows the end of the body by the close; a
    // HEAD's answer has none to end.
    let keep = r.keep_alive && (!close_delimited || head_only);
    let mut out = Buf::head();
    respond::write_status_line_with(&mut out, status, keep, http10, r.keepalive_header);
    let _ = write!(
        out,
        "Content-Type: {}\r\nLast-Modified: {}\r\n",
        facts.content_type,
        http_date(facts.mtime)
    );
    if !close_delimited && !head_only {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    let etag = match &facts.etag {
        Some(e) if gzip => super::gzip::weak_etag(e.as_bytes()),
        Some(e) => Some(e.as_bytes().to_vec()),
        None => None,
    };
    if let Some(e) = etag {
        out.extend_from_slice(b"ETag: ");
        out.extend_from_slice(&e);
        out.extend_from_slice(b"\r\n");
    }
    extra_headers(&mut out, r, status, facts.mtime, vary);
    if gzip {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let head_bytes = out.len() as u64;
    let head = kept_head(r, &out);
    if head_only {
        let ok = io::write_all(stream, &out, r.send_timeout).await.is_ok();
        return Sent {
            gzip_ratio: None,
            status,
            head_bytes,
            body_bytes: 0,
            keep_alive: keep && ok,
            head,
        };
    }
    // `add_trailer`'s fields end the chunked body, read after the head.
    let applies = respond::add_header_applies(status);
    let trailer_head =
        (!close_delimited && trailer_expected(r.add_trailer, applies)).then(|| out.to_vec());
    let mut pending = Some(out);
    let mut pace = Pace::new(r.limit_rate.0, r.limit_rate.1);
    let mut sent = 0u64;
    let mut left = facts.size;
    let mut chunk = Buf::body();
    let mut framed = Vec::new();
    loop {
        let done = left == 0;
        let mut piece: &[u8] = &[];
        if !done {
            let Some(n) = read_piece(&mut file, &mut chunk, left, path) else {
                return broken(status, head_bytes, sent, head);
            };
            left -= n as u64;
            piece = &chunk[..n];
            if let Some(rc) = &mut recoder {
                recoded.clear();
                rc.piece(piece, &mut recoded);
                piece = &recoded;
            }
        }
        let compressed = match &mut encoder {
            Some(e) if done => e.finish(),
            Some(e) => e.piece(piece, false),
            None => Ok(piece),
        };
        let Ok(compressed) = compressed else {
            return broken(status, head_bytes, sent, head);
        };
        framed.clear();
        if !compressed.is_empty() || done {
            if close_delimited {
                framed.extend_from_slice(compressed);
            } else {
                if !compressed.is_empty() {
                    crate::http1::write_chunk_header(&mut framed, compressed.len());
                    framed.extend_from_slice(compressed);
                    framed.extend_from_slice(b"\r\n");
                }
                if done {
                    match &trailer_head {
                        Some(h) => framed.extend_from_slice(&last_chunk(r.add_trailer, applies, h)),
                        None => framed.extend_from_slice(b"0\r\n\r\n"),
                    }
                }
            }
        }
        if !framed.is_empty() {
            if write_piece(stream, &mut pending, &framed, r.send_timeout, &mut pace)
                .await
                .is_err()
            {
                return broken(status, head_bytes, sent, head);
            }
            sent += framed.len() as u64;
        }
        if done {
            break;
        }
    }
    Sent {
        gzip_ratio: encoder.and_then(|e| e.ratio()),
        status,
        head_bytes,
        body_bytes: sent,
        keep_alive: keep,
        head,
    }
}

/// The body of a file chunked, to end with the `add_trailer` fields (read after
/// `out`, the head, which goes out with the first chunk). Rare: a write per piece.
#[allow(clippy::too_many_arguments)]
async fn send_chunked(
    stream: &mut Stream,
    r: &FileRequest<'_>,
    path: &Path,
    mut file: File,
    out: Buf,
    parts: &[(u64, u64, Vec<u8>)],
    multipart_end: Option<&str>,
    status: u16,
    keep: bool,
) -> Sent {
    let head_bytes = out.len() as u64;
    let head = out.to_vec();
    let mut pending: Option<Buf> = Some(out);
    let mut pace = Pace::new(r.limit_rate.0, r.limit_rate.1);
    let mut sent = 0u64;
    let mut chunk = Buf::body();
    let mut framed = Vec::new();
    for (a, b, part_head) in parts {
        if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(*a)).is_err() {
            return broken(status, head_bytes, sent, Vec::new());
        }
        let mut left = (b + 1).saturating_sub(*a);
        let mut first = Some(&part_head[..]);
        while left > 0 || first.is_some_and(|h| !h.is_empty()) {
            let n = if left > 0 {
                match read_piece(&mut file, &mut chunk, left, path) {
                    Some(n) => n,
                    None => return broken(status, head_bytes, sent, Vec::new()),
                }
            } else {
                0
            };
            left -= n as u64;
            let before = first.take().unwrap_or_default();
            framed.clear();
            crate::http1::write_chunk_header(&mut framed, before.len() + n);
            framed.extend_from_slice(before);
            framed.extend_from_slice(&chunk[..n]);
            framed.extend_from_slice(b"\r\n");
            if write_piece(stream, &mut pending, &framed, r.send_timeout, &mut pace)
                .await
                .is_err()
            {
                return broken(status, head_bytes, sent, Vec::new());
            }
            sent += framed.len() as u64;
        }
    }
    framed.clear();
    if let Some(end) = multipart_end {
        crate::http1::write_chunk_header(&mut framed, end.len());
        framed.extend_from_slice(end.as_bytes());
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(&last_chunk(
        r.add_trailer,
        respond::add_header_applies(status),
        &head,
    ));
    if write_piece(stream, &mut pending, &framed, r.send_timeout, &mut pace)
        .await
        .is_err()
    {
        return broken(status, head_bytes, sent, Vec::new());
    }
    sent += framed.len() as u64;
    Sent {
        gzip_ratio: None,
        status,
        head_bytes,
        body_bytes: sent,
        keep_alive: keep,
        head: Vec::new(),
    }
}

/// Reads the next piece of a file being sent (at most `left` bytes, 64 KiB) into
/// `chunk`; `None` when the file ended early or failed (logged as nginx does).
fn read_piece(file: &mut File, chunk: &mut Buf, left: u64, path: &Path) -> Option<usize> {
    chunk.clear();
    let want = left.min(BODY_BUF as u64) as usize;
    chunk.resize(want, 0);
    // A read from the page cache: nginx reads files on its event loop too.
    match file.read(&mut chunk[..want]) {
        Ok(0) | Err(_) => {
            crate::log::emit(
                Level::Crit,
                None,
                format_args!("\"{}\" was truncated while being sent", path.display()),
            );
            None
        }
        Ok(n) => Some(n),
    }
}

/// A response cut short: the connection closes.
fn broken(status: u16, head_bytes: u64, body_bytes: u64, head: Vec<u8>) -> Sent {
    Sent {
        gzip_ratio: None,
        status,
        head_bytes,
        body_bytes,
        keep_alive: false,
        head,
    }
}

/// A copy of the head in `out` when the request asks for it.
fn kept_head(r: &FileRequest<'_>, out: &[u8]) -> Vec<u8> {
    if r.keep_head {
        out.to_vec()
    } else {
        Vec::new()
    }
}

/// Writes `data`, after the pending head if there is one, in one `writev`.
async fn write_piece(
    stream: &mut Stream,
    pending: &mut Option<Buf>,
    data: &[u8],
    limit: std::time::Duration,
    pace: &mut Option<Pace>,
) -> Result<(), crate::net::io::IoFailure> {
    if let Some(pace) = pace {
        let head = pending.take();
        let head = head.as_deref().map_or(&[][..], |h| &h[..]);
        return crate::net::pace::write_parts(stream, &[head, data], Some(pace), limit).await;
    }
    match pending.take() {
        Some(head) => {
            let mut slices = [std::io::IoSlice::new(&head), std::io::IoSlice::new(data)];
            io::write_all_vectored(stream, &mut slices, limit).await
        }
        None => io::write_all(stream, data, limit).await,
    }
}

/// The `Last-Modified` time and `ETag` `If-Range` is compared with: the file's, as
/// `add_header` leaves them (nginx's headers filter runs before its range filter, so
/// `add_header Last-Modified ...` sets the time compared, an empty value none).
fn range_validators(r: &FileRequest<'_>, facts: &FileFacts<'_>) -> (Option<i64>, Option<Vec<u8>>) {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nLast-Modified: {}\r\n",
        http_date(facts.mtime)
    );
    if let Some(e) = &facts.etag {
        head.push_str(&format!("ETag: {e}\r\n"));
    }
    let mut head = head.into_bytes();
    append_fields(&mut head, 0, r.add_header, true);
    let field = |name: &str| {
        let mut v = Vec::new();
        crate::vars::sent_field(&head, name, &mut v).then_some(v)
    };
    let mtime = field("last-modified").and_then(|v| parse_http_date(&v));
    (mtime, field("etag"))
}

/// `expires` and `add_header` fields for a response of `status`.
fn extra_headers(out: &mut Vec<u8>, r: &FileRequest<'_>, status: u16, mtime: i64, vary: bool) {
    if r.vary || vary {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if r.gzipped.is_some() {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    added_fields(out, (r.expires, r.add_header), status, Some(mtime));
}

/// The location's `expires` fields and `add_header` lines for a response of `status`
/// (about a file modified at `mtime`, if it is one) onto the head begun at `out[0]`,
/// as nginx's headers filter adds them: all on the statuses `add_header` applies to,
/// `always` lines on any.
pub fn added_fields(
    out: &mut Vec<u8>,
    (expires, add_header): (Option<Expires>, &[AddedField<'_>]),
    status: u16,
    mtime: Option<i64>,
) {
    let applies = respond::add_header_applies(status);
    if applies {
        if let Some(e) = expires {
            let (expires, cache_control) = expires_fields(e, now_secs(), mtime);
            let _ = write!(
                out,
                "Expires: {expires}\r\nCache-Control: {cache_control}\r\n"
            );
        }
    }
    append_fields(out, 0, add_header, applies);
}

/// Answers with ferrolb's error page for `status`.
pub async fn send_status(
    stream: &mut Stream,
    head: &RequestHead,
    status: u16,
    keep: bool,
    limit: std::time::Duration,
) -> Sent {
    let mut out = Buf::head();
    let head_only = head.method == Method::Head;
    respond::error_page(&mut out, status, keep, head.minor_version == 0, head_only);
    let body = if head_only {
        0
    } else {
        respond::error_body(status).len() as u64
    };
    let ok = io::write_all(stream, &out, limit).await.is_ok();
    let head_bytes = out.len() - body as usize;
    Sent {
        gzip_ratio: None,
        status,
        head_bytes: head_bytes as u64,
        body_bytes: body,
        keep_alive: keep && ok,
        head: out[..head_bytes].to_vec(),
    }
}

/// A 301 to `location` (a directory asked for without its slash).
pub async fn send_redirect(
    stream: &mut Stream,
    head: &RequestHead,
    location: &str,
    keep: bool,
    limit: std::time::Duration,
) -> Sent {
    let page = respond::error_body(301);
    send_page(
        stream,
        head,
        (301, "text/html"),
        &|out: &mut Vec<u8>| {
            let _ = write!(out, "Location: {location}\r\n");
        },
        page.as_bytes(),
        keep,
        limit,
    )
    .await
}

/// Sends `page` as a response of `status` and `content_type`, `fields` adding header
/// lines (each ending in CRLF) to the head begun at `out[0]`; a HEAD request gets the
/// head only.
async fn send_page(
    stream: &mut Stream,
    head: &RequestHead,
    (status, content_type): (u16, &str),
    fields: &(dyn Fn(&mut Vec<u8>) + Sync),
    page: &[u8],
    keep: bool,
    limit: std::time::Duration,
) -> Sent {
    let mut out = Buf::head();
    respond::write_status_line(&mut out, status, keep, head.minor_version == 0);
    let _ = write!(
        out,
        "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
        page.len()
    );
    fields(&mut out);
    out.extend_from_slice(b"\r\n");
    let head_bytes = out.len() as u64;
    let sent_head = out.to_vec();
    if head.method != Method::Head {
        out.extend_from_slice(page);
    }
    let ok = io::write_all(stream, &out, limit).await.is_ok();
    Sent {
        gzip_ratio: None,
        status,
        head_bytes,
        body_bytes: out.len() as u64 - head_bytes,
        keep_alive: keep && ok,
        head: sent_head,
    }
}

/// The location's parts of a listing's response: its `expires` and `add_header`
/// fields (see [`added_fields`]) and dynamic gzip (`gzip on`).
pub struct ListingResponse<'a> {
    /// The location's `expires`.
    pub expires: Option<Expires>,
    /// The location's `add_header` lines.
    pub add_header: &'a [AddedField<'a>],
    /// The gzip settings and the request's part of the verdict, with `gzip on`.
    pub gzip: Option<(&'a crate::config::GzipConf, super::gzip_ok::ClientGzip)>,
    /// The `charset` named for this request (`None` for `off`).
    pub charset: Option<&'a str>,
}

/// Sends `dir`'s listing (`autoindex on`) as `files` has it written; `uri` is the
/// request's decoded path, `args` its query. A listing that cannot be made is left to
/// the caller: its status, and the error-log line nginx writes for it.
pub async fn send_listing(
    stream: &mut Stream,
    head: &RequestHead,
    (files, response): (&FilesConf, &ListingResponse<'_>),
    dir: &Path,
    (uri, args): (&str, &[u8]),
    keep: bool,
    limit: std::time::Duration,
) -> Result<Sent, (u16, Level, String)> {
    use super::autoindex::{listing, ListingError};
    let charset = response.charset;
    let page = match listing(&files.listing, dir, uri, args, charset) {
        Ok(page) => page,
        Err(e) => {
            let status = e.status();
            return Err(match e {
                ListingError::BadCallback(text) => (status, Level::Info, text),
                ListingError::Io(io_err) => (
                    status,
                    if status == 500 {
                        Level::Crit
                    } else {
                        Level::Error
                    },
                    format!(
                        "opendir() \"{}\" failed ({})",
                        dir.display(),
                        crate::log::os_error_text(&io_err)
                    ),
                ),
            });
        }
    };
    let mut extra = Vec::new();
    let mut body = page.body;
    let mut ratio = None;
    if let Some((conf, client)) = response.gzip {
        let verdict = listing_gzip_verdict(conf, client, &page.content_type, response.expires);
        if verdict.vary {
            extra.extend_from_slice(b"Vary: Accept-Encoding\r\n");
        }
        if verdict.compress {
            let mut encoder = super::gzip::GzipEncoder::new(conf.level);
            let mut packed = encoder
                .piece(&body, false)
                .map(<[u8]>::to_vec)
                .map_err(|e| (500, Level::Crit, e.to_string()))?;
            let last = encoder
                .finish()
                .map_err(|e| (500, Level::Crit, e.to_string()))?;
            packed.extend_from_slice(last);
            ratio = encoder.ratio();
            body = packed;
            extra.extend_from_slice(b"Content-Encoding: gzip\r\n");
        }
    }
    // nginx's autoindex sets no Last-Modified: `expires modified` counts from now.
    let fields = |out: &mut Vec<u8>| {
        out.extend_from_slice(&extra);
        added_fields(out, (response.expires, response.add_header), 200, None);
    };
    let mut sent = send_page(
        stream,
        head,
        (200, &page.content_type),
        &fields,
        &body,
        keep,
        limit,
    )
    .await;
    sent.gzip_ratio = ratio;
    Ok(sent)
}

/// nginx's gzip filter on a listing: no length, no Last-Modified, no ETag.
fn listing_gzip_verdict(
    conf: &crate::config::GzipConf,
    client: super::gzip_ok::ClientGzip,
    content_type: &str,
    expires: Option<Expires>,
) -> super::gzip::Verdict {
    let candidate = super::gzip::Candidate {
        status: 200,
        header_only: false,
        content_encoding: None,
        content_length: None,
        content_type: Some(content_type.as_bytes()),
    };
    let response = super::gzip_ok::ResponseFacts {
        cache_control: None,
        // Without a modification time `expires modified` counts from now.
        expires: expires.map(|e| match e {
            Expires::Epoch => true,
            Expires::After(s) | Expires::Modified(s) => s < 0,
            Expires::Max | Expires::Daily(_) => false,
        }),
        last_modified: false,
        etag: false,
    };
    super::gzip::verdict(conf, &candidate, || client.allows(conf, &response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DocRoot;

    #[test]
    fn ranges_as_nginx_reads_them() {
        assert_eq!(parse_ranges(b"bytes=0-9", 100), Ok(Some(vec![(0, 9)])));
        assert_eq!(parse_ranges(b"bytes=90-", 100), Ok(Some(vec![(90, 99)])));
        assert_eq!(parse_ranges(b"bytes=-10", 100), Ok(Some(vec![(90, 99)])));
        assert_eq!(parse_ranges(b"bytes=95-200", 100), Ok(Some(vec![(95, 99)])));
        assert_eq!(
            parse_ranges(b"bytes=0-1, 5-6", 100),
            Ok(Some(vec![(0, 1), (5, 6)]))
        );
        assert_eq!(parse_ranges(b"bytes=100-", 100), Err(()));
        assert_eq!(parse_ranges(b"bytes=5-1", 100), Err(()));
        assert_eq!(parse_ranges(b"bytes=x-1", 100), Err(()));
        // More bytes than the file: the whole file.
        assert_eq!(parse_ranges(b"bytes=0-99,0-99", 100), Ok(None));
        // Not a byte range: ignored.
        assert_eq!(parse_ranges(b"items=0-1", 100), Ok(None));
    }

    #[test]
    fn dates_and_etags() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:10 GMT"), Some(10));
        assert_eq!(
            parse_http_date(b"Thursday, 01-Jan-70 00:00:10 GMT"),
            Some(10)
        );
        assert_eq!(parse_http_date(b"Thu Jan  1 00:00:10 1970"), Some(10));
        assert!(etag_listed(b"\"a\", W/\"b\"", "\"b\"", true));
        assert!(!etag_listed(b"W/\"b\"", "\"b\"", false));
        assert!(etag_listed(b"*", "\"x\"", false));
    }

    #[test]
    fn paths_stay_under_the_root() {
        let files = FilesConf {
            doc: DocRoot::Alias {
                path: "/srv/static/".into(),
                location: "/static/".into(),
            },
            index: vec![crate::config::Template::literal("index.html")],
            try_files: None,
            types: Default::default(),
            default_type: "text/plain".into(),
            etag: true,
            if_modified_since: IfModifiedSince::Exact,
            log_not_found: true,
            autoindex: false,
            listing: Default::default(),
            expires: None,
            disable_symlinks: false,
            max_ranges: None,
            gzip_static: Default::default(),
        };
        let no_vars = |_: &crate::config::Template| Vec::new();
        assert_eq!(
            files.file_for("/static/css/a.css", &no_vars),
            Some(PathBuf::from("/srv/static/css/a.css"))
        );
        let root = FilesConf {
            doc: DocRoot::Root("/srv/www".into()),
            ..files
        };
        assert_eq!(
            root.file_for("/a/b", &no_vars),
            Some(PathBuf::from("/srv/www/a/b"))
        );
    }
}
