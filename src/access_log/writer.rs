//! Access logs: files shared per path, written in batches by a background thread per
//! file, and nginx's `combined` format.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::{Level, LogBuffering};
use crate::log::{open_append, with_time, LogError};
use crate::net::ClientAddr;

/// Bytes of lines that may wait for the writer thread. Past this the disk is not
/// keeping up; new lines are dropped and counted rather than stall request handling.
const QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// One open access log file. Every location that logs to the same path (with the
/// same buffering) shares one (see [`AccessLogs::open`]) so reopening touches each
/// file once.
///
/// Unbuffered (the default), as nginx, each line is written by the worker that logs
/// it, one `write(2)` into the page cache. With `buffer=SIZE` lines go into an
/// in-memory queue written by a background thread; as nginx,
/// lines are kept until the next one would not fit in SIZE bytes, until `flush=TIME`
/// has passed since the first of them, or until [`AccessLogs::flush_all`] (reload,
/// stop) or a reopen; with `gzip`, each buffer becomes one gzip member. Dropping the
/// last handle lets the thread write what is queued and end.
#[derive(Debug)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    buffering: LogBuffering,
    file: ArcSwap<File>,
    queue: Mutex<Queue>,
    /// Signalled when there is something for the writer to look at, or on close.
    wake: Condvar,
    /// Held while buffers are written (so they stay in order).
    io: Mutex<()>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
    /// Whether a writer thread runs; without one (it could not be started) lines are
    /// written by the caller.
    background: bool,
}

#[derive(Debug, Default)]
struct Queue {
    /// Lines of the buffer being filled.
    buf: Vec<u8>,
    /// When the first line of `buf` came (for `flush=`).
    since: Option<Instant>,
    /// Buffers ready to be written, oldest first.
    ready: VecDeque<Vec<u8>>,
    /// Bytes in `buf` and `ready`.
    queued: usize,
    closed: bool,
}

impl Queue {
    /// Moves the buffer being filled to the ready ones.
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            let full = std::mem::take(&mut self.buf);
            self.ready.push_back(full);
        }
        self.since = None;
    }
}

/// Locks ignoring poison: a panic elsewhere leaves a byte buffer that is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The most bytes that may wait: the default limit, or two buffers when larger.
    fn queue_limit(&self) -> usize {
        QUEUE_LIMIT.max(self.buffering.size.saturating_mul(2))
    }

    /// Writes every ready buffer, in order, one `write` each (one gzip member each
    /// with `gzip`).
    fn write_ready(&self) {
        let _io = lock(&self.io);
        let batch: Vec<Vec<u8>> = {
            let mut q = lock(&self.queue);
            let batch: Vec<Vec<u8>> = q.ready.drain(..).collect();
            q.queued -= batch.iter().map(Vec::len).sum::<usize>();
            batch
        };
        let file = self.file.load();
        for chunk in batch {
            let out = match self.buffering.gzip {
                Some(level) => match gzip_member(&chunk, level) {
                    Ok(z) => z,
                    Err(e) => {
                        crate::crit!(
                            "gzip of the buffer of \"{}\" failed ({e})",
                            self.path.display()
                        );
                        continue;
                    }
                },
                None => chunk,
            };
            if let Err(e) = (&**file).write_all(&out) {
                crate::crit!(
                    "write() to \"{}\" failed ({})",
                    self.path.display(),
                    crate::log::os_error_text(&e)
                );
            }
        }
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

    /// Writes one line of an unbuffered log now, on the caller's thread.
    fn write_now(&self, line: &[u8]) {
        let _io = lock(&self.io);
        let file = self.file.load();
        if let Err(e) = (&**file).write_all(line) {
            crate::crit!(
                "write() to \"{}\" failed ({})",
                self.path.display(),
                crate::log::os_error_text(&e)
            );
        }
    }

    /// Seals the buffer being filled and writes everything, on the caller's thread.
    fn flush(&self) {
        lock(&self.queue).seal();
        self.write_ready();
    }

    /// The writer thread: waits until a buffer is ready (unbuffered: any line), the
    /// flush time of the one being filled has come, or the log is closed; writes; ends
    /// once closed and drained.
    fn run(&self) {
        loop {
            {
                let mut q = lock(&self.queue);
                loop {
                    if !q.buf.is_empty() {
                        let due = match (self.buffering.flush, q.since) {
                            (Some(flush), Some(since)) => Some(since + flush),
                            _ => None,
                        };
                        if self.buffering.size == 0
                            || q.closed
                            || due.is_some_and(|d| Instant::now() >= d)
                        {
                            q.seal();
                        } else if q.ready.is_empty() {
                            q = match due {
                                Some(d) => {
                                    let wait = d.saturating_duration_since(Instant::now());
                                    self.wake
                                        .wait_timeout(q, wait)
                                        .unwrap_or_else(|p| p.into_inner())
                                        .0
                                }
                                None => self.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
                            };
                            continue;
                        }
                    }
                    if !q.ready.is_empty() {
                        break;
                    }
                    if q.closed {
                        return;
                    }
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            }
            self.write_ready();
        }
    }
}

/// `data` as one gzip member (a complete gzip stream; members one after another are
/// one valid gzip file, as `zcat` reads them).
fn gzip_member(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    z.write_all(data)?;
    z.finish()
}

impl AccessLog {
    /// Opens (creating it and its missing parent directories) `path` for appending and
    /// starts its writer thread. Most callers want the shared [`AccessLogs::open`].
    pub fn open(path: &Path, buffering: LogBuffering) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let mut shared = Arc::new(Shared {
            path: path.to_path_buf(),
            buffering,
            file: ArcSwap::from_pointee(file),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(()),
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
        let size = s.buffering.size;
        if size == 0 {
            // Unbuffered, as nginx: the worker writes the line itself, one write(2) into
            // the page cache. Handing every line to the writer thread cost a futex wake
            // and two context switches per request (26 % of ferrolb's CPU in the
            // benchmark's access-log scenario, against nginx's 10 %).
            s.write_now(line);
            return;
        }
        let wake = {
            let mut q = lock(&s.queue);
            if q.queued + line.len() > s.queue_limit() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.queued += line.len();
            let was_idle = q.buf.is_empty() && q.ready.is_empty();
            // As nginx: a line that does not fit sends the buffer on first.
            let mut sealed = false;
            if !q.buf.is_empty() && q.buf.len() + line.len() > size {
                q.seal();
                sealed = true;
            }
            if q.buf.is_empty() {
                q.since = Some(Instant::now());
            }
            q.buf.extend_from_slice(line);
            if q.buf.len() >= size {
                q.seal();
                sealed = true;
            }
            // The writer must learn of a new flush deadline too.
            sealed || (was_idle && s.buffering.flush.is_some())
        };
        if !s.background {
            s.write_ready();
        } else if wake {
            s.wake.notify_one();
        }
    }

    /// Writes queued lines now (the buffer being filled too), on the caller's thread.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Opens the path again and switches to the new file (after log rotation). Lines
    /// queued before the call go to the old file, as nginx flushes its buffers before
    /// reopening. On error the old file stays.
    pub fn reopen(&self) -> Result<(), LogError> {
        self.shared.flush();
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

/// Appends `line` to `path`, opened for this line alone: an `access_log` whose path
/// has variables, as nginx writes it without `open_log_file_cache`.
pub fn append_line(path: &Path, line: &[u8]) {
    if let Some(mut f) = open_for_line(path) {
        if let Err(e) = f.write_all(line) {
            crate::crit!(
                "write() to \"{}\" failed ({})",
                path.display(),
                crate::log::os_error_text(&e)
            );
        }
    }
}

/// Opens `path` for appending (created, mode 0644; its directory is not), as nginx
/// opens a log path with variables; a failure goes to the error log with nginx's
/// `open() "PATH" failed (2: No such file or directory)`.
pub(super) fn open_for_line(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| {
            crate::crit!(
                "open() \"{}\" failed ({})",
                path.display(),
                crate::log::os_error_text(&e)
            )
        })
        .ok()
}

/// The registry's key: a file and how it is written.
type LogKey = (PathBuf, LogBuffering);

/// The process-wide registry of open access logs, keyed by path and buffering. It
/// holds weak references: a log no configuration uses any more closes when its last
/// user goes.
#[derive(Debug)]
pub struct AccessLogs;

fn registry() -> &'static Mutex<HashMap<LogKey, Weak<AccessLog>>> {
    static REG: OnceLock<Mutex<HashMap<LogKey, Weak<AccessLog>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

impl AccessLogs {
    /// The shared log for `path` written with `buffering`, opened on first use. A
    /// reload that changes a file's buffering gets a writer of its own; the old one
    /// writes what it holds once the old configuration is gone.
    pub fn open(path: &Path, buffering: LogBuffering) -> Result<Arc<AccessLog>, LogError> {
        // A poisoned lock only means another thread panicked mid-insert; the map is
        // still usable.
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        let key = (path.to_path_buf(), buffering);
        if let Some(log) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(log);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let log = Arc::new(AccessLog::open(path, buffering)?);
        map.insert(key, Arc::downgrade(&log));
        Ok(log)
    }

    /// Writes every queued line of every live access log, buffered ones included
    /// (before exit, and on reload, where nginx's old workers write their buffers).
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
    f.remote_addr.push_to(out);
    out.extend_from_slice(b" - ");
    escape_or_dash(out, f.remote_user);
    out.extend_from_slice(b" [");
    with_time(|_, local| out.extend_from_slice(local));
    out.extend_from_slice(b"] \"");
    super::format::escape_default(out, f.request);
    out.extend_from_slice(b"\" ");
    crate::http1::respond::push_status_code(out, f.status);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(f.body_bytes_sent).as_bytes());
    out.extend_from_slice(b" \"");
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
        let log = AccessLogs::open(&path, LogBuffering::default()).expect("open");
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
        let a = AccessLogs::open(&path, LogBuffering::default()).expect("open");
        let b = AccessLogs::open(&path, LogBuffering::default()).expect("open again");
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

    #[test]
    fn buffer_is_written_when_the_next_line_does_not_fit_and_gzip_members_decode() {
        use std::io::Read as _;
        let dir = std::env::temp_dir().join(format!("ferrolb-al-buf-{}", std::process::id()));
        let path = dir.join("buffered.log");
        let buffering = LogBuffering {
            size: 100,
            flush: None,
            gzip: Some(6),
        };
        let log = AccessLog::open(&path, buffering).expect("open");
        let line = [b'x'; 39].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        log.write_line(&line);
        log.write_line(&line);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0);
        // The third does not fit in 100 bytes: the first two go out as one member.
        log.write_line(&line);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::metadata(&path).expect("file").len() == 0 {
            assert!(std::time::Instant::now() < deadline, "no member written");
            std::thread::yield_now();
        }
        let decode = || {
            let raw = std::fs::read(&path).expect("read");
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut text)
                .expect("gzip");
            text
        };
        assert_eq!(decode(), line.repeat(2));
        log.flush();
        assert_eq!(decode(), line.repeat(3));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
