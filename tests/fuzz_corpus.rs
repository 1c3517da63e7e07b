//! Replays the fuzzers' committed inputs (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the same invariant checks the fuzz targets run,
//! on the stable toolchain and without a fuzzer, so CI keeps every finding fixed.

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/checks.rs"]
mod checks;

/// Runs `check` on every file of the target's corpus and regressions; fails naming
/// each input that breaks an invariant. A target with an empty corpus fails too: a
/// missing directory must not pass silently.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        inputs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "only {} inputs for {target} under fuzz/corpus and fuzz/regressions",
        inputs.len()
    );
    // Panics are the checks' findings, collected below; keep their messages out of the
    // way of the summary.
    let mut failed = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).expect("read a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs break an invariant:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

#[test]
fn request_head_corpus() {
    replay("request_head", checks::request_head);
}

#[test]
fn response_head_corpus() {
    replay("response_head", checks::response_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", checks::chunked);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn uri_corpus() {
    replay("uri", checks::uri);
}
