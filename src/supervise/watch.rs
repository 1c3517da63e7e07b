//! `--watch PATH...`: polls modification times (no inotify dependency; works on every
//! filesystem, including bind mounts and network shares) and reports a change once
//! the files have been quiet for the debounce time, so saving ten files in an editor
//! or a `git checkout` makes one rolling restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Time between two scans: 500 ms.
pub const POLL: Duration = Duration::from_millis(500);
/// Quiet time after the last change before restarting: 1 s.
pub const DEBOUNCE: Duration = Duration::from_secs(1);
/// Most files watched (a watch on `/` must not scan forever): 20,000.
pub const MAX_FILES: usize = 20_000;

/// Directory names never descended into: version control, caches, dependencies
/// and build output change without the app's source changing.
const SKIP_DIRS: [&str; 8] = [
    ".git",
    ".hg",
    "__pycache__",
    "node_modules",
    "target",
    ".venv",
    "venv",
    ".mypy_cache",
];

/// File name suffixes ignored: bytecode, editor swap and backup files, logs, SQLite
/// databases and journals (a Django dev database changes on every request), and
/// ferrolb's own pid file (written just after the first scan: `--watch .` must not
/// restart everything at start).
const SKIP_SUFFIXES: [&str; 9] = [
    ".pyc", ".swp", ".swx", "~", ".log", "-journal", ".sqlite3", ".tmp", ".pid",
];

/// Path → modification time of every watched file.
pub type Snapshot = BTreeMap<PathBuf, SystemTime>;

/// Scans `roots` (files, or directories recursively).
pub fn scan(roots: &[PathBuf]) -> Snapshot {
    let mut out = Snapshot::new();
    for r in roots {
        visit(r, &mut out);
    }
    out
}

fn skipped_file(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with(".#") || SKIP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn visit(p: &Path, out: &mut Snapshot) {
    if out.len() >= MAX_FILES {
        return;
    }
    let Ok(meta) = std::fs::metadata(p) else {
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(p) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && SKIP_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            visit(&path, out);
        }
    } else if meta.is_file() && !skipped_file(p) {
        if let Ok(m) = meta.modified() {
            out.insert(p.to_owned(), m);
        }
    }
}

/// The first path that differs between two snapshots (changed, added or removed).
pub fn first_change(old: &Snapshot, new: &Snapshot) -> Option<PathBuf> {
    for (p, t) in new {
        if old.get(p) != Some(t) {
            return Some(p.clone());
        }
    }
    old.keys().find(|p| !new.contains_key(*p)).cloned()
}

/// Watches `roots` forever; calls `changed` with a changed path after each debounced
/// burst of changes. Scanning runs on the blocking pool (it is file system I/O).
pub async fn run(roots: Vec<PathBuf>, mut changed: impl FnMut(PathBuf)) {
    let scan_async = |roots: Vec<PathBuf>| async move {
        tokio::task::spawn_blocking(move || scan(&roots))
            .await
            .unwrap_or_default()
    };
    let mut seen = scan_async(roots.clone()).await;
    loop {
        tokio::time::sleep(POLL).await;
        let now = scan_async(roots.clone()).await;
        let Some(first) = first_change(&seen, &now) else {
            continue;
        };
        // Debounce: wait until a scan shows no change for DEBOUNCE.
        let mut latest = now;
        loop {
            tokio::time::sleep(DEBOUNCE).await;
            let again = scan_async(roots.clone()).await;
            if first_change(&latest, &again).is_none() {
                break;
            }
            latest = again;
        }
        seen = latest;
        changed(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_changes_and_skips_noise() {
        let dir = std::env::temp_dir().join(format!("ferrolb-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("views.py"), "a").unwrap();
        std::fs::write(dir.join("__pycache__/views.pyc"), "a").unwrap();
        std::fs::write(dir.join("db.sqlite3"), "a").unwrap();
        let a = scan(std::slice::from_ref(&dir));
        assert_eq!(a.len(), 1, "{a:?}");
        std::fs::write(dir.join("urls.py"), "b").unwrap();
        let b = scan(std::slice::from_ref(&dir));
        assert_eq!(first_change(&a, &b), Some(dir.join("urls.py")));
        assert_eq!(first_change(&b, &b), None);
        assert_eq!(first_change(&b, &a), Some(dir.join("urls.py")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
