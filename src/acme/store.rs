//! Files under `state_path`: written whole (a temporary file renamed into place), the
//! private ones (account, keys) with mode 0600 from the start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::AcmeError;

/// Writes `data` to `file` readable by its owner only; creates the directory (0700).
pub(super) fn write_private(file: &Path, data: &[u8]) -> Result<(), AcmeError> {
    write(file, data, 0o600)
}

/// Writes `data` to `file` (0644: a certificate chain is public).
pub(super) fn write_public(file: &Path, data: &[u8]) -> Result<(), AcmeError> {
    write(file, data, 0o644)
}

fn write(file: &Path, data: &[u8], mode: u32) -> Result<(), AcmeError> {
    let fail = |e: std::io::Error| AcmeError::State(format!("{}: {e}", file.display()));
    if let Some(dir) = file.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(fail)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
    }
    let tmp = file.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, file).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_in_a_0700_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("state/acme.key");
        write_private(&file, b"secret").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().expect("dir")), 0o700);
        write_private(&file, b"again").expect("rewrite");
        assert_eq!(std::fs::read(&file).expect("read"), b"again");
    }
}
