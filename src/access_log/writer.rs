//! Access logs: files shared per path, written in batches by a background thread per
//! file, and nginx's `combined` format.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

use arc_swap::ArcSwap;

use crate::config::Level;
use crate::log::{open_append, with_time, LogError};
use crate::net::ClientAddr;

/// Bytes of lines that may wait for the writer thread. Past this the disk is not
/// keeping up; new lines are dropped and counted rather than stall request handling.
const QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// One open access log file. Every location that logs to the same path shares one
/// (see [`AccessLogs::open`]) so reopening touches each file once.
///
/// Lines go into an in-memory queue; a background thread writes everything queued
/// with one `write(2)` per batch as soon as it is woken (so lines reach the file within
/// milliseconds, far inside the 100 ms a batch may wait), and [`AccessLogs::flush_all`]
/// writes what is left at exit. Dropping the last handle lets the thread write what
/// is queued and end.
#[derive(Debug)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    file: ArcSwap<File>,
    queue: Mutex<Queue>,
    /// Signalled when the queue goes from empty to non-empty, or on close.
    wake: Condvar,
    /// Held while a batch is written (so batches stay in order); holds the spare
    /// buffer batches are swapped into, so steady-state logging does not allocate.
    io: Mutex<Vec<u8>>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
    /// Whether a writer thread runs; without one (it could not be started) lines are
    /// written by the caller.
    background: bool,
}

#[derive(Debug, Default)]
struct Queue {
    buf: Vec<u8>,
    closed: bool,
}

/// Locks ignoring poison: a panic elsewhere leaves a byte buffer that is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Writes everything queued with one write.
    fn write_pending(&self) {
        let mut batch = lock(&self.io);
        {
            let mut q = lock(&self.queue);
            if q.buf.is_empty() {
                return;
            }
            std::mem::swap(&mut q.buf, &mut *batch);
        }
        let file = self.file.load();
        if let Err(e) = (&**file).write_all(&batch) {
            crate::crit!(
                "write() to \"{}\" failed ({})",
                self.path.display(),
                crate::log::os_error_text(&e)
            );
        }
        batch.clear();
        // A burst should not pin a large buffer for the rest of the process.
        if batch.capacity() > QUEUE_LIMIT {
            *batch = Vec::new();
        }
        drop(batch);
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            crate::log::emit(
                Level::Error,
                None,
                format_args!(
                    "{dropped} access log lines to \"{}\" dropped: the disk is not keeping up",
                    self.path.display()
                ),
            );
        }
    }

    /// The writer thread: waits for lines, writes them, ends once closed and drained.
    fn run(&self) {
        loop {
            {
                let mut q = lock(&self.queue);
                while q.buf.is_empty() && !q.closed {
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.buf.is_empty() {
                    return;
                }
            }
            self.write_pending();
        }
    }
}

impl AccessLog {
    /// Opens (creating it and its missing parent directories) `path` for appending and
    /// starts its writer thread. Most callers want the shared [`AccessLogs::open`].
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let mut shared = Arc::new(Shared {
            path: path.to_path_buf(),
            file: ArcSwap::from_pointee(file),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            background: true,
        });
        let worker = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || worker.run());
        if spawned.is_err() {
            // Out of threads: log synchronously rather than not at all. The clone moved
            // into the failed spawn is gone, so the Arc is unique again.
            if let Some(s) = Arc::get_mut(&mut shared) {
                s.background = false;
            }
        }
        Ok(AccessLog { shared })
    }

    /// The path the log was opened with.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queues one complete line (the caller includes the trailing `\n`); lines are
    /// never split or interleaved. Never waits on the disk: when the queue is full the
    /// line is dropped and counted, and the count goes to the error log.
    pub fn write_line(&self, line: &[u8]) {
        let s = &*self.shared;
        let was_empty = {
            let mut q = lock(&s.queue);
            if q.buf.len() + line.len() > QUEUE_LIMIT {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let was_empty = q.buf.is_empty();
            q.buf.extend_from_slice(line);
            was_empty
        };
        if !s.background {
            s.write_pending();
        } else if was_empty {
            // Only the first line of a batch wakes the writer; the rest ride along.
            s.wake.notify_one();
        }
    }

    /// Writes queued lines now, on the caller's thread.
    pub fn flush(&self) {
        self.shared.write_pending();
    }

    /// Opens the path again and switches to the new file (after log rotation). Lines
    /// queued before the call go to the old file, as nginx flushes its buffers before
    /// reopening. On error the old file stays.
    pub fn reopen(&self) -> Result<(), LogError> {
        self.shared.write_pending();
        let file = open_append(&self.shared.path)?;
        self.shared.file.store(Arc::new(file));
        Ok(())
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // The writer writes what is queued, then ends; not joined, so the thread that
        // drops the last configuration using this file never waits on the disk.
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
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

    /// Writes every queued line of every live access log (before exit).
    pub fn flush_all() {
        for log in Self::live() {
            log.flush();
        }
    }

    fn live() -> Vec<Arc<AccessLog>> {
        let map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter_map(Weak::upgrade).collect()
    }

    /// Reopens every live access log (`-s reopen`). Tries all of them and returns the
    /// first error.
    pub fn reopen_all() -> Result<(), LogError> {
        let logs = Self::live();
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
    pub remote_addr: ClientAddr,
    /// `$remote_user`: the user name of an `Authorization: Basic` header, `None` when
    /// there is none.
    pub remote_user: Option<&'a [u8]>,
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
/// "$http_referer" "$http_user_agent"`.
pub fn format_combined(out: &mut Vec<u8>, f: &CombinedFields<'_>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{} - ", f.remote_addr);
    escape_or_dash(out, f.remote_user);
    out.extend_from_slice(b" [");
    with_time(|_, local| out.extend_from_slice(local));
    out.extend_from_slice(b"] \"");
    super::format::escape_default(out, f.request);
    let _ = write!(out, "\" {:03} {} \"", f.status, f.body_bytes_sent);
    escape_or_dash(out, f.referer);
    out.extend_from_slice(b"\" \"");
    escape_or_dash(out, f.user_agent);
    out.extend_from_slice(b"\"\n");
}

fn escape_or_dash(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => super::format::escape_default(out, v),
        None => out.push(b'-'),
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
            remote_addr: ClientAddr::Inet("127.0.0.1:1".parse().expect("ip")),
            remote_user: None,
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
            remote_addr: ClientAddr::Inet("[::1]:1".parse().expect("ip")),
            remote_user: Some(b"al\"ice"),
            request: b"GET /\"a\\b\x01\xff HTTP/1.1",
            status: 400,
            body_bytes_sent: 0,
            referer: Some(b"\x7f"),
            user_agent: None,
        });
        let (rest, _) = strip_time(&l);
        assert_eq!(
            rest,
            "::1 - al\\x22ice [] \"GET /\\x22a\\x5Cb\\x01\\xFF HTTP/1.1\" 400 0 \"\\x7F\" \"-\"\n"
        );
    }

    #[test]
    fn background_writer_writes_without_flush() {
        let dir = std::env::temp_dir().join(format!("ferrolb-al-bg-{}", std::process::id()));
        let path = dir.join("access.log");
        let log = AccessLogs::open(&path).expect("open");
        for i in 0..100 {
            log.write_line(format!("line {i}\n").as_bytes());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 100 || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let want: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
        let _ = std::fs::remove_dir_all(&dir);
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
        // Lines are written by the background thread; flushing makes it deterministic.
        b.flush();
        assert_eq!(std::fs::read(&path).expect("read"), b"two\n");
        assert_eq!(
            std::fs::read(dir.join("rotated.log")).expect("read"),
            b"one\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
