//! The error log in nginx's format (`error_log`, levels, `pid#thread: *conn` lines), and
//! what every log file shares: nginx's OS error text, append-only files, the cached
//! local time. The access log builds on it in [`crate::access_log`].
//!
//! Lines are whole `write(2)`s on files opened with `O_APPEND`, so lines from several
//! threads never interleave and external rotation (`mv` then `-s reopen`) behaves as
//! with nginx.

mod error_log;

pub use error_log::{
    emit, enabled, flush, init, init_levels, reaches_stderr, reopen, route_request, set_level,
    set_stderr_mirror, RequestLogScope,
};

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file (or one of its missing parent directories) could not be created or opened.
    #[error("open() \"{}\" failed ({})", path.display(), os_error_text(source))]
    Open {
        /// The path as resolved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// nginx's way of showing an OS error: `2: No such file or directory`.
pub fn os_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{}: {}", code, nix::errno::Errno::from_raw(code).desc()),
        None => e.to_string(),
    }
}

/// Opens a log file for appending, creating missing parent directories first (nginx
/// refuses to start when `logs/` is missing; creating it is friendlier and harmless).
pub fn open_append(path: &Path) -> Result<File, LogError> {
    let err = |source| LogError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)
}

/// Length of `2026/11/25 16:31:53`.
const ERR_TIME_LEN: usize = 19;
/// Length of `25/Nov/2026:16:31:53 +0000`.
const LOCAL_TIME_LEN: usize = 26;
/// Length of `2026-11-25T16:31:53+00:00`.
const ISO_TIME_LEN: usize = 25;

/// The local time formatted every way the logs need, recomputed at most once per
/// second per thread: formatting through chrono (time zone lookup included) costs far
/// more than a log line.
struct TimeCache {
    second: i64,
    err: [u8; ERR_TIME_LEN],
    local: [u8; LOCAL_TIME_LEN],
    iso: [u8; ISO_TIME_LEN],
}

thread_local! {
    static TIME_CACHE: RefCell<TimeCache> = const { RefCell::new(TimeCache {
        second: i64::MIN,
        err: [b' '; ERR_TIME_LEN],
        local: [b' '; LOCAL_TIME_LEN],
        iso: [b' '; ISO_TIME_LEN],
    }) };
}

/// Copies as much of `s` as fits: years past 9999 get a truncated stamp rather than a
/// panic.
fn fill(dst: &mut [u8], s: &str) {
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Calls `f` with the time cache, refreshed for the current second.
fn with_cache<R>(f: impl FnOnce(&TimeCache) -> R) -> R {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    TIME_CACHE.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.second != now {
            let local = chrono::Local::now();
            fill(&mut c.err, &local.format("%Y/%m/%d %H:%M:%S").to_string());
            fill(
                &mut c.local,
                &local.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            );
            fill(
                &mut c.iso,
                &local.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            );
            c.second = now;
        }
        f(&c)
    })
}

/// Calls `f` with the cached (error-log time, `$time_local`) for the current second.
pub(crate) fn with_time<R>(f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
    with_cache(|c| f(&c.err, &c.local))
}

/// Calls `f` with the cached `$time_iso8601` for the current second.
pub(crate) fn with_iso_time<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    with_cache(|c| f(&c.iso))
}
