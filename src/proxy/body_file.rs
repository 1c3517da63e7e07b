//! The named temporary files request bodies are written to under
//! `client_body_temp_path`, as nginx names them: ten digits, made with `O_EXCL`.
//! The name is `$request_body_file`. Unless `client_body_in_file_only` keeps it, the
//! file is unlinked as soon as it is open (nginx's non-persistent temporary file);
//! `clean` removes it when the request is done, `on` leaves it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::BodyInFileOnly;

/// The number the next file name is tried with; starts at a random point so workers
/// and restarts rarely collide (a collision just tries the next number).
static NEXT_NUMBER: AtomicU32 = AtomicU32::new(0);

/// A request body's file, open for reading and writing.
#[derive(Debug)]
pub(super) struct BodyFile {
    file: File,
    path: PathBuf,
    /// Remove the file when the request is done (`client_body_in_file_only clean`).
    remove_when_done: bool,
}

impl BodyFile {
    /// Makes a new file in `dir` (created if missing), mode 0600.
    pub(super) fn create(dir: &Path, keep: BodyInFileOnly) -> io::Result<BodyFile> {
        std::fs::create_dir_all(dir)?;
        let _ = NEXT_NUMBER.compare_exchange(
            0,
            rand::random::<u32>() % 1_000_000_000 + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        loop {
            let n = NEXT_NUMBER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{n:010}"));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match opened {
                Ok(file) => {
                    if keep == BodyInFileOnly::Off {
                        std::fs::remove_file(&path)?;
                    }
                    return Ok(BodyFile {
                        file,
                        path,
                        remove_when_done: keep == BodyInFileOnly::Clean,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The file's name (`$request_body_file`).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads at `offset` without moving the file position (each attempt starts at 0).
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

impl io::Write for BodyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        if self.remove_when_done {
            // Already gone (removed by hand) is fine: nothing to clean.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
