//! The global error log writing to a file (own process: the log is global state).

use ferrolb::config::{ErrorLogConf, Level, LogTarget};

#[test]
fn file_levels_connection_ids_and_reopen() {
    let dir = std::env::temp_dir().join(format!("ferrolb-el-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("nested/logs/error.log");
    ferrolb::log::init(&ErrorLogConf {
        target: LogTarget::File(path.clone()),
        level: Level::Warn,
    })
    .expect("init creates parents");

    ferrolb::error!("upstream {} failed", "a");
    ferrolb::warn!(conn = 12; "client sent {} bytes", 3);
    ferrolb::notice!("not written at warn");
    ferrolb::log::flush();

    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let pid = std::process::id();
    assert!(
        lines[0].contains(&format!(" [error] {pid}#")),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(": upstream a failed"), "{}", lines[0]);
    assert!(lines[1].contains(" [warn] "), "{}", lines[1]);
    assert!(
        lines[1].ends_with(": *12 client sent 3 bytes"),
        "{}",
        lines[1]
    );

    std::fs::rename(&path, dir.join("old.log")).expect("rotate");
    ferrolb::log::reopen().expect("reopen");
    ferrolb::emerg!("after");
    let text = std::fs::read_to_string(&path).expect("new file");
    assert!(text.ends_with(": after\n"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
