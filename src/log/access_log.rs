//! Access logs: files shared per path, one `write(2)` per line, and nginx's `combined`
//! format.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arc_swap::ArcSwap;

use super::{open_append, with_time, LogError};

/// One open access log file. Every location that logs to the same path shares one
/// (see [`AccessLogs::open`]) so reopening touches each file once.
#[derive(Debug)]
pub struct AccessLog {
    path: PathBuf,
    file: ArcSwap<File>,
}

impl AccessLog {
    /// Opens (creating it and its missing parent directories) `path` for appending.
    /// Most callers want the shared [`AccessLogs::open`] instead.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Ok(AccessLog {
            path: path.to_path_buf(),
            file: ArcSwap::from_pointee(open_append(path)?),
        })
    }

    /// The path the log was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one complete line (the caller includes the trailing `\n`) with a single
    /// write, so concurrent writers never interleave. A failed write is reported to the
    /// error log; the request it describes has already been served.
    pub fn write_line(&self, line: &[u8]) {
        let file = self.file.load();
        if let Err(e) = (&**file).write_all(line) {
            crate::crit!(
                "write() to \"{}\" failed ({})",
                self.path.display(),
                super::os_error_text(&e)
            );
        }
    }

    /// Opens the path again and switches to the new file (after log rotation). Lines
    /// being written meanwhile finish in the old file. On error the old file stays.
    pub fn reopen(&self) -> Result<(), LogError> {
        let file = open_append(&self.path)?;
        self.file.store(Arc::new(file));
        Ok(())
    }
}

/// The process-wide registry of open access logs, keyed by path. It holds weak
/// references: a log no configuration uses any more closes when its last user goes.
#[derive(Debug)]
pub struct AccessLogs;

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<AccessLog>>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Weak<AccessLog>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

impl AccessLogs {
    /// The shared log for `path`, opened on first use.
    pub fn open(path: &Path) -> Result<Arc<AccessLog>, LogError> {
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still usable.
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = map.get(path).and_then(Weak::upgrade) {
            return Ok(log);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let log = Arc::new(AccessLog::open(path)?);
        map.insert(path.to_path_buf(), Arc::downgrade(&log));
        Ok(log)
    }

    /// Reopens every live access log (`-s reopen`). Tries all of them and returns the
    /// first error.
    pub fn reopen_all() -> Result<(), LogError> {
        let logs: Vec<Arc<AccessLog>> = {
            let map = registry().lock().unwrap_or_else(|p| p.into_inner());
            map.values().filter_map(Weak::upgrade).collect()
        };
        let mut first = Ok(());
        for log in logs {
            if let Err(e) = log.reopen() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// The values of nginx's `combined` format for one request; the time is taken when
/// formatting.
#[derive(Debug, Clone, Copy)]
pub struct CombinedFields<'a> {
    /// `$remote_addr`.
    pub remote_addr: IpAddr,
    /// `$request`: the request line as received (without CRLF).
    pub request: &'a [u8],
    /// `$status`.
    pub status: u16,
    /// `$body_bytes_sent`: response body bytes, headers excluded.
    pub body_bytes_sent: u64,
    /// `$http_referer`, `None` when absent.
    pub referer: Option<&'a [u8]>,
    /// `$http_user_agent`, `None` when absent.
    pub user_agent: Option<&'a [u8]>,
}

/// Appends one `combined` line, newline included, to `out`:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`. `$remote_user` is always `-` (no auth module).
pub fn format_combined(out: &mut Vec<u8>, f: &CombinedFields<'_>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{} - - [", f.remote_addr);
    with_time(|_, local| out.extend_from_slice(local));
    out.extend_from_slice(b"] \"");
    escape_into(out, f.request);
    let _ = write!(out, "\" {:03} {} \"", f.status, f.body_bytes_sent);
    escape_or_dash(out, f.referer);
    out.extend_from_slice(b"\" \"");
    escape_or_dash(out, f.user_agent);
    out.extend_from_slice(b"\"\n");
}

fn escape_or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => escape_into(out, v),
        None => out.push(b'-'),
    }
}

/// nginx's default access log escaping: `"`, `\`, control bytes and bytes ≥ 0x7f become
/// `\xHH` (uppercase hex), so a line can always be split on quotes and spaces.
fn escape_into(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\' {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: &CombinedFields<'_>) -> String {
        let mut out = Vec::new();
        format_combined(&mut out, f);
        String::from_utf8(out).expect("combined lines are ASCII")
    }

    fn strip_time(l: &str) -> (String, String) {
        let open = l.find('[').expect("[");
        let close = l.find(']').expect("]");
        (
            format!("{}[]{}", &l[..open], &l[close + 1..]),
            l[open + 1..close].to_string(),
        )
    }

    #[test]
    fn combined_plain() {
        let l = line(&CombinedFields {
            remote_addr: "127.0.0.1".parse().expect("ip"),
            request: b"GET /x?a=1 HTTP/1.1",
            status: 200,
            body_bytes_sent: 612,
            referer: None,
            user_agent: Some(b"curl/8.5.0"),
        });
        let (rest, time) = strip_time(&l);
        assert_eq!(
            rest,
            "127.0.0.1 - - [] \"GET /x?a=1 HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\"\n"
        );
        // 25/Nov/2026:16:31:53 +0000
        assert_eq!(time.len(), 26, "{time}");
        assert_eq!(&time[2..3], "/");
        assert_eq!(&time[6..7], "/");
        assert_eq!(&time[11..12], ":");
        assert!(time[21..22] == *"+" || time[21..22] == *"-");
    }

    #[test]
    fn combined_escapes_quotes_backslashes_and_binary() {
        let l = line(&CombinedFields {
            remote_addr: "::1".parse().expect("ip"),
            request: b"GET /\"a\\b\x01\xff HTTP/1.1",
            status: 400,
            body_bytes_sent: 0,
            referer: Some(b"\x7f"),
            user_agent: None,
        });
        let (rest, _) = strip_time(&l);
        assert_eq!(
            rest,
            "::1 - - [] \"GET /\\x22a\\x5Cb\\x01\\xFF HTTP/1.1\" 400 0 \"\\x7F\" \"-\"\n"
        );
    }

    #[test]
    fn shared_per_path_and_reopen() {
        let dir = std::env::temp_dir().join(format!("ferrolb-al-{}", std::process::id()));
        let path = dir.join("sub/access.log");
        let a = AccessLogs::open(&path).expect("open");
        let b = AccessLogs::open(&path).expect("open again");
        assert!(Arc::ptr_eq(&a, &b));
        a.write_line(b"one\n");
        std::fs::rename(&path, dir.join("rotated.log")).expect("rotate");
        AccessLogs::reopen_all().expect("reopen");
        b.write_line(b"two\n");
        assert_eq!(std::fs::read(&path).expect("read"), b"two\n");
        assert_eq!(
            std::fs::read(dir.join("rotated.log")).expect("read"),
            b"one\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
