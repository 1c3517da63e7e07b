//! The error log: a global, swappable sink plus a level check that costs one atomic load;
//! and the error logs of http, server and location levels, which the lines of a
//! request routed there go to instead (nginx's `error_log` in a location).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::{open_append, with_time, LogError};
use crate::config::{ErrorLogConf, Level, LogTarget};

/// Most verbose level currently written, as `Level as u8`. Before [`init`] it is
/// `notice`, as nginx's startup log.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);

/// Whether messages at `warn` and above also go to stderr as `ferrolb: [level] msg` when
/// the sink is a file: nginx does this while starting and testing a configuration so the
/// operator sees problems on the terminal, not only in the file.
static STDERR_MIRROR: AtomicBool = AtomicBool::new(false);

/// The configured sink; `None` until [`init`].
static SINK: ArcSwapOption<Sink> = ArcSwapOption::const_empty();

/// The error logs of http, server and location levels, by destination ([`init_levels`]).
static LEVEL_LOGS: ArcSwapOption<HashMap<LogTarget, Arc<Sink>>> = ArcSwapOption::const_empty();

thread_local! {
    /// Connections of this thread whose current request is routed to a level's own
    /// error log. Few at a time: a list.
    static ROUTED: RefCell<Vec<(u64, Arc<Sink>)>> = const { RefCell::new(Vec::new()) };
}

/// Hands out the small per-thread numbers printed after `pid#`.
static NEXT_THREAD: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static THREAD_NO: u32 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
enum Dest {
    Stderr,
    File { path: PathBuf, file: File },
    Off,
}

#[derive(Debug)]
struct Sink {
    dest: Dest,
    /// The most verbose level it takes.
    level: Level,
}

fn open_dest(target: &LogTarget) -> Result<Dest, LogError> {
    Ok(match target {
        LogTarget::Stderr => Dest::Stderr,
        LogTarget::Off => Dest::Off,
        LogTarget::File(path) => Dest::File {
            path: path.clone(),
            file: open_append(path)?,
        },
    })
}

/// Points the error log at `conf.target` from `conf.level` on. Called at startup and on
/// every reload; threads logging concurrently keep the previous sink until their line
/// is written, then see the new one. On error the previous sink stays in place.
pub fn init(conf: &ErrorLogConf) -> Result<(), LogError> {
    let dest = open_dest(&conf.target)?;
    SINK.store(Some(Arc::new(Sink {
        dest,
        level: conf.level,
    })));
    set_level(conf.level);
    Ok(())
}

/// Opens the error logs of http, server and location levels (`confs`, repeats
/// allowed), keeping those already open for the same destination, and makes their
/// levels count; after [`init`], on every load. On error nothing changes.
pub fn init_levels<'c>(confs: impl IntoIterator<Item = &'c ErrorLogConf>) -> Result<(), LogError> {
    let old = LEVEL_LOGS.load_full();
    let mut logs: HashMap<LogTarget, Arc<Sink>> = HashMap::new();
    for conf in confs {
        if logs.contains_key(&conf.target) {
            continue;
        }
        let reused = old
            .as_deref()
            .and_then(|m| m.get(&conf.target))
            .filter(|s| s.level == conf.level)
            .cloned();
        let sink = match reused {
            Some(s) => s,
            None => Arc::new(Sink {
                dest: open_dest(&conf.target)?,
                level: conf.level,
            }),
        };
        logs.insert(conf.target.clone(), sink);
    }
    let most = logs.values().map(|s| s.level).max();
    if let Some(most) = most {
        MAX_LEVEL.fetch_max(most as u8, Ordering::Relaxed);
    }
    LEVEL_LOGS.store((!logs.is_empty()).then(|| Arc::new(logs)));
    Ok(())
}

/// Ends what [`route_request`] set for a connection's request when dropped (the
/// request finished, or its future was dropped).
#[derive(Debug)]
pub struct RequestLogScope(u64);

impl RequestLogScope {
    /// The scope of connection `conn`'s current request.
    pub fn new(conn: u64) -> Self {
        RequestLogScope(conn)
    }
}

impl Drop for RequestLogScope {
    fn drop(&mut self) {
        let conn = self.0;
        ROUTED.with(|r| {
            let mut r = r.borrow_mut();
            if !r.is_empty() {
                r.retain(|(c, _)| *c != conn);
            }
        });
    }
}

/// Routes the lines of connection `conn`'s request on this thread to a level's error
/// log (`Some`, opened by [`init_levels`]) or back to the main one (`None`).
pub fn route_request(conn: u64, log: Option<&ErrorLogConf>) {
    let sink = log.and_then(|conf| {
        LEVEL_LOGS
            .load()
            .as_deref()
            .and_then(|m| m.get(&conf.target).cloned())
    });
    ROUTED.with(|r| {
        let mut r = r.borrow_mut();
        r.retain(|(c, _)| *c != conn);
        if let Some(sink) = sink {
            r.push((conn, sink));
        }
    });
}

/// Changes the most verbose level written, keeping the destination (before [`init`]:
/// for the stderr startup messages; `-q` uses it to keep only errors).
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Turns on or off copying `warn` and more severe messages to stderr while the log is a
/// file (see nginx's behaviour while starting or testing the configuration).
pub fn set_stderr_mirror(on: bool) {
    STDERR_MIRROR.store(on, Ordering::Relaxed);
}

/// Whether a message at `level` would show on stderr (the log is stderr, not set up
/// yet, or a file mirrored to stderr): callers that must reach the terminal print it
/// themselves otherwise.
pub fn reaches_stderr(level: Level) -> bool {
    if !enabled(level) {
        return false;
    }
    match SINK.load().as_deref() {
        None => true,
        Some(s) if level > s.level => false,
        Some(s) => match s.dest {
            Dest::Stderr => true,
            Dest::Off => false,
            Dest::File { .. } => level <= Level::Warn && STDERR_MIRROR.load(Ordering::Relaxed),
        },
    }
}

/// Whether a message at `level` would be written. The logging macros call this before
/// building their arguments so that disabled levels cost a single atomic load.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one message at `level`, tagged with the connection number `*N` when given.
/// Prefer the macros ([`crate::error!`] and friends).
#[inline]
pub fn emit(level: Level, conn: Option<u64>, args: fmt::Arguments<'_>) {
    if enabled(level) {
        emit_slow(level, conn, args);
    }
}

#[cold]
fn emit_slow(level: Level, conn: Option<u64>, args: fmt::Arguments<'_>) {
    let routed = conn.and_then(|c| {
        ROUTED.with(|r| {
            r.borrow()
                .iter()
                .find(|(id, _)| *id == c)
                .map(|(_, s)| Arc::clone(s))
        })
    });
    if let Some(sink) = routed {
        if level <= sink.level {
            write_to(&sink.dest, level, conn, args);
        }
        return;
    }
    let sink = SINK.load();
    if sink.as_deref().is_some_and(|s| level > s.level) {
        // Enabled for a level's log only.
        return;
    }
    match sink.as_deref() {
        None => write_stderr_startup(level, conn, args),
        Some(s) => write_to(&s.dest, level, conn, args),
    }
}

fn write_to(dest: &Dest, level: Level, conn: Option<u64>, args: fmt::Arguments<'_>) {
    match dest {
        Dest::Off => {}
        Dest::Stderr => {
            let line = format_line(level, conn, args);
            // Nothing sensible to do when stderr itself fails.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Dest::File { file, .. } => {
            let line = format_line(level, conn, args);
            // One write on an O_APPEND file: lines from different threads never mix.
            // A failing error log has nowhere to report to, so the error is dropped.
            let _ = (&*file).write_all(line.as_bytes());
            if level <= Level::Warn && STDERR_MIRROR.load(Ordering::Relaxed) {
                write_stderr_startup(level, conn, args);
            }
        }
    }
}

/// `ferrolb: [emerg] message`, nginx's form for messages before the log is set up.
fn write_stderr_startup(level: Level, conn: Option<u64>, args: fmt::Arguments<'_>) {
    let mut s = String::with_capacity(128);
    let _ = write!(s, "ferrolb: [{}] ", level.as_str());
    if let Some(c) = conn {
        let _ = write!(s, "*{c} ");
    }
    let _ = s.write_fmt(args);
    s.push('\n');
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

/// `2026/11/25 16:31:53 [error] 4242#0: *12 message\n`, formatted with no lock held.
pub(crate) fn format_line(level: Level, conn: Option<u64>, args: fmt::Arguments<'_>) -> String {
    let mut s = String::with_capacity(160);
    with_time(|err_time, _| {
        // The cache holds only ASCII digits, '/', ':' and ' '.
        s.push_str(std::str::from_utf8(err_time).unwrap_or("????/??/?? ??:??:??"));
    });
    let thread = THREAD_NO.with(|n| *n);
    let _ = write!(
        s,
        " [{}] {}#{}: ",
        level.as_str(),
        std::process::id(),
        thread
    );
    if let Some(c) = conn {
        let _ = write!(s, "*{c} ");
    }
    let _ = s.write_fmt(args);
    s.push('\n');
    s
}

/// Pushes buffered data to the file. Lines are written unbuffered, so this only asks
/// the OS to persist them (used before exit).
pub fn flush() {
    if let Some(sink) = SINK.load().as_deref() {
        if let Dest::File { file, .. } = &sink.dest {
            let _ = file.sync_data();
        }
    }
}

/// Reopens the log file by path (`-s reopen`, SIGUSR1) so a rotated file is released
/// and a fresh one created. Keeps the old file when the new one cannot be opened.
pub fn reopen() -> Result<(), LogError> {
    let current = SINK.load_full();
    if let Some(sink) = current {
        if let Some(fresh) = reopened(&sink)? {
            SINK.store(Some(Arc::new(fresh)));
        }
    }
    if let Some(logs) = LEVEL_LOGS.load_full() {
        let mut fresh = HashMap::with_capacity(logs.len());
        for (target, sink) in logs.iter() {
            let sink = match reopened(sink)? {
                Some(s) => Arc::new(s),
                None => Arc::clone(sink),
            };
            fresh.insert(target.clone(), sink);
        }
        LEVEL_LOGS.store(Some(Arc::new(fresh)));
    }
    Ok(())
}

/// A file sink opened again by its path; `None` for other sinks.
fn reopened(sink: &Sink) -> Result<Option<Sink>, LogError> {
    let Dest::File { path, .. } = &sink.dest else {
        return Ok(None);
    };
    Ok(Some(Sink {
        dest: Dest::File {
            path: path.clone(),
            file: open_append(path)?,
        },
        level: sink.level,
    }))
}

#[doc(hidden)]
#[macro_export]
macro_rules! __ferrolb_log {
    ($lvl:expr, conn = $c:expr; $($arg:tt)+) => {
        if $crate::log::enabled($lvl) {
            $crate::log::emit($lvl, ::core::option::Option::Some($c), ::core::format_args!($($arg)+))
        }
    };
    ($lvl:expr, $($arg:tt)+) => {
        if $crate::log::enabled($lvl) {
            $crate::log::emit($lvl, ::core::option::Option::None, ::core::format_args!($($arg)+))
        }
    };
}

/// Logs at `emerg`: `emerg!("text {}", x)` or `emerg!(conn = id; "text {}", x)`.
#[macro_export]
macro_rules! emerg {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Emerg, $($t)+) };
}

/// Logs at `alert`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! alert {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Alert, $($t)+) };
}

/// Logs at `crit`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! crit {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Crit, $($t)+) };
}

/// Logs at `error`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! error {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Error, $($t)+) };
}

/// Logs at `warn`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! warn {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Warn, $($t)+) };
}

/// Logs at `notice`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! notice {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Notice, $($t)+) };
}

/// Logs at `info`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! info {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Info, $($t)+) };
}

/// Logs at `debug`; same forms as [`emerg!`](crate::emerg!).
#[macro_export]
macro_rules! debug {
    ($($t:tt)+) => { $crate::__ferrolb_log!($crate::config::Level::Debug, $($t)+) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_shape(line: &str, level: &str, conn: Option<u64>, msg: &str) {
        // 2026/11/25 16:31:53 [error] 4242#0: *12 message\n
        let b = line.as_bytes();
        assert_eq!(b[4], b'/');
        assert_eq!(b[7], b'/');
        assert_eq!(b[10], b' ');
        assert_eq!(b[13], b':');
        assert_eq!(b[16], b':');
        assert!(b[..19]
            .iter()
            .all(|c| c.is_ascii_digit() || b"/: ".contains(c)));
        let rest = &line[19..];
        let expect_head = format!(" [{level}] {}#", std::process::id());
        assert!(rest.starts_with(&expect_head), "{line:?}");
        let after = &rest[expect_head.len()..];
        let colon = after.find(": ").expect("thread number then colon");
        assert!(after[..colon].chars().all(|c| c.is_ascii_digit()));
        let tail = &after[colon + 2..];
        let expect_tail = match conn {
            Some(c) => format!("*{c} {msg}\n"),
            None => format!("{msg}\n"),
        };
        assert_eq!(tail, expect_tail);
    }

    #[test]
    fn line_format_without_connection() {
        let line = format_line(Level::Error, None, format_args!("upstream {} gone", "a"));
        check_shape(&line, "error", None, "upstream a gone");
    }

    #[test]
    fn line_format_with_connection() {
        let line = format_line(Level::Warn, Some(12), format_args!("x={}", 5));
        check_shape(&line, "warn", Some(12), "x=5");
    }

    #[test]
    fn thread_numbers_differ_between_threads() {
        let here = THREAD_NO.with(|n| *n);
        let there = std::thread::spawn(|| THREAD_NO.with(|n| *n))
            .join()
            .expect("thread");
        assert_ne!(here, there);
    }

    #[test]
    fn levels_compare_by_severity() {
        assert!(Level::Emerg < Level::Error);
        assert!((Level::Emerg as u8) < (Level::Debug as u8));
    }
}
