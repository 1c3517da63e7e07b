//! nginx-syntax configuration: lexer and parser to a directive tree with spans, then
//! validation into the typed [`Config`].

pub mod types;

pub use types::*;

// ---------------------------------------------------------------------------------------
// STUB (h-cli): placeholder for the config loader API so the CLI builds before the
// loader lands. The lead replaces everything from here to the end of the file.
// ---------------------------------------------------------------------------------------

use std::path::{Path, PathBuf};

/// How to load a configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The prefix relative paths are resolved against (`-p`).
    pub prefix: PathBuf,
    /// Extra global directives (`-g`).
    pub globals: Option<String>,
    /// Configuration text to use instead of reading the file (the path then only
    /// names it in messages).
    pub text: Option<String>,
    /// Whether the process runs as root (changes the default `listen`).
    pub is_root: bool,
}

/// A configuration that could not be loaded; displays as `file:line: message`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
}

/// Loads and validates the configuration at `path`. STUB: always fails.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let _ = (path, opts);
    Err(ConfigError {
        message: "config loader not merged yet".to_owned(),
    })
}

/// The configuration text with every included file, for `-T`. STUB: always fails.
pub fn dump(path: &Path, opts: &LoadOptions) -> Result<String, ConfigError> {
    let _ = (path, opts);
    Err(ConfigError {
        message: "config loader not merged yet".to_owned(),
    })
}
