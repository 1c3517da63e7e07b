//! `open_log_file_cache`: the files of access logs whose paths have variables, kept
//! open between lines as nginx keeps them (per worker process there; one cache shared
//! by every worker thread here).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::OpenLogFileCacheConf;

/// What the cache knows of one path.
#[derive(Debug)]
struct Entry {
    /// The open file, once the path was written `min_uses` times.
    file: Option<Arc<File>>,
    /// Lines written to the path while it was known.
    uses: u32,
    /// Last write.
    used: Instant,
    /// When `file` was opened (for `valid=`).
    opened: Instant,
}

/// One `open_log_file_cache` line's cache.
#[derive(Debug)]
pub struct LogFileCache {
    conf: OpenLogFileCacheConf,
    entries: Mutex<lru::LruCache<PathBuf, Entry>>,
}

impl LogFileCache {
    /// An empty cache.
    pub fn new(conf: OpenLogFileCacheConf) -> Self {
        LogFileCache {
            conf,
            entries: Mutex::new(lru::LruCache::unbounded()),
        }
    }

    /// Appends `line` to `path`: through the kept file when there is one still
    /// `valid`, else opened now (and kept once the path has `min_uses` lines). As in
    /// nginx, paths not written for `inactive` are forgotten, and past `max` paths the
    /// least recently written is.
    pub fn append(&self, path: &Path, line: &[u8]) {
        let now = Instant::now();
        let c = &self.conf;
        let cached = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            while entries
                .peek_lru()
                .is_some_and(|(_, e)| now.duration_since(e.used) >= c.inactive)
            {
                entries.pop_lru();
            }
            match entries.get_mut(path) {
                Some(e) => {
                    e.uses += 1;
                    e.used = now;
                    if now.duration_since(e.opened) >= c.valid {
                        e.file = None;
                    }
                    e.file.clone()
                }
                None => None,
            }
        };
        let file = match cached {
            Some(f) => f,
            None => {
                // As nginx, a path whose file cannot be opened is not remembered.
                let Some(f) = super::writer::open_for_line(path) else {
                    return;
                };
                let f = Arc::new(f);
                let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                match entries.get_mut(path) {
                    Some(e) => {
                        if e.uses >= c.min_uses {
                            e.file = Some(Arc::clone(&f));
                            e.opened = now;
                        }
                    }
                    None => {
                        if entries.len() >= c.max {
                            entries.pop_lru();
                        }
                        let keep = c.min_uses <= 1;
                        entries.put(
                            path.to_path_buf(),
                            Entry {
                                file: keep.then(|| Arc::clone(&f)),
                                uses: 1,
                                used: now,
                                opened: now,
                            },
                        );
                    }
                }
                f
            }
        };
        if let Err(e) = (&*file).write_all(line) {
            crate::crit!(
                "write() to \"{}\" failed ({})",
                path.display(),
                crate::log::os_error_text(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// nginx-tests' access_log.t: max=3 min_uses=2, then the directory moves away;
    /// only files kept open still get lines.
    #[test]
    fn kept_files_survive_a_moved_directory_as_in_nginx() {
        let base = std::env::temp_dir().join(format!("ferrolb-lfc-{}", std::process::id()));
        let dir = base.join("dir");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let cache = LogFileCache::new(OpenLogFileCacheConf {
            max: 3,
            inactive: Duration::from_secs(20),
            min_uses: 2,
            valid: Duration::from_secs(60),
        });
        let write = |name: &str| cache.append(&dir.join(name), b"/\n");
        for name in ["lru", "lru", "once", "first", "first", "second", "second"] {
            write(name);
        }
        let moved = base.join("moved");
        std::fs::rename(&dir, &moved).expect("rename");
        for name in ["lru", "once", "first", "second"] {
            write(name);
        }
        let count = |name: &str| {
            std::fs::read(moved.join(name))
                .expect("read")
                .iter()
                .filter(|&&b| b == b'/')
                .count()
        };
        assert_eq!(
            [count("lru"), count("once"), count("first"), count("second")],
            [2, 1, 3, 3]
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
