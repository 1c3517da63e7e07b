//! The crate's layering, checked from the `crate::` paths of non-test code under
//! `src/`, with the same rules as the project's `layers.py`: no dependency cycle among
//! top-level modules, and none of these reaches (directly or through others) a module
//! above it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// (module, modules it must never reach, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "config",
        &[
            "http1",
            "upstream",
            "balance",
            "health",
            "proxy",
            "server",
            "admin",
            "supervise",
        ],
        "config knows no runtime",
    ),
    (
        "http1",
        &[
            "config",
            "upstream",
            "balance",
            "health",
            "proxy",
            "server",
            "admin",
            "supervise",
        ],
        "the codec knows no config or peers",
    ),
    (
        "upstream",
        &["balance", "health", "proxy", "server", "admin", "supervise"],
        "upstream is peer state",
    ),
    (
        "balance",
        &["health", "proxy", "server", "admin", "supervise"],
        "selection is pure over peer state",
    ),
    (
        "health",
        &["proxy", "server", "admin", "supervise"],
        "health checks use the transport, not the server",
    ),
    (
        "proxy",
        &["server", "admin", "supervise"],
        "the forward path knows no listener or admin",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text without `#[cfg(test)] mod x { ... }` blocks and `//` comments.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let block = after.find('{');
        let semi = after.find(';');
        match (block, semi) {
            (Some(b), Some(s)) if s < b => rest = &after[s + 1..],
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (j, ch) in after[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => rest = &after["#[cfg(test)]".len()..],
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module names a `crate::` path names (`crate::a::X`, `crate::{a, b::Y}`).
fn named_modules(after: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(group) = after.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 1;
        let mut start = true;
        for (i, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => start = true,
                c if start && depth == 1 && !c.is_whitespace() => {
                    names.push(ident(&group[i..]));
                    start = false;
                }
                _ => {}
            }
        }
        names
    } else {
        vec![ident(after)]
    }
}

#[test]
fn modules_form_layers_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top: BTreeSet<String> = fs::read_dir(&src)
        .expect("src")
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.trim_end_matches(".rs").to_owned()
        })
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let module = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .unwrap_or_default();
        // Test-only files (`tests.rs`, `*/tests/*.rs`) are not the crate's code.
        if rel
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n == "testing.rs")
            || rel.components().any(|c| c.as_os_str() == "tests")
        {
            continue;
        }
        let text = non_test_code(&fs::read_to_string(f).expect("read"));
        for (i, _) in text.match_indices("crate::") {
            for name in named_modules(&text[i + "crate::".len()..]) {
                if name != module && top.contains(&name) {
                    deps.entry(module.clone()).or_default().insert(name);
                }
            }
        }
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for d in deps.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    };
    let mut problems = Vec::new();
    for m in deps.keys() {
        if reach(m).contains(m) {
            problems.push(format!("{m} is in a dependency cycle"));
        }
    }
    for (m, banned, why) in RULES {
        let bad: Vec<_> = reach(m)
            .into_iter()
            .filter(|d| banned.contains(&d.as_str()))
            .collect();
        if !bad.is_empty() {
            problems.push(format!("{m} reaches {} ({why})", bad.join(", ")));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}\nmodule graph: {deps:#?}",
        problems.join("\n")
    );
}
