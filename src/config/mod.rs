//! nginx-syntax configuration: lexer and parser to a directive tree with spans, then
//! validation into the typed [`Config`].
//!
//! Entry points: [`load`] (for running and `-t`) and [`dump`] (for `-T`).

pub mod acme;
pub mod admission;
pub mod charset;
pub mod directives;
pub mod error;
pub mod geo;
pub mod lexer;
pub mod overlay;
pub mod parser;
pub mod proxy_edits;
pub mod resolve;
pub mod template;
pub mod tls;
pub mod tls_chain;
pub mod types;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use admission::*;
pub use error::ConfigError;
pub use overlay::{AddPeer, Overlay};
pub use resolve::{Resolve, StaticResolver, SystemResolver};
pub use types::*;

/// How to load a configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Relative file names (the config itself, includes, `pid`, logs) resolve against
    /// this. Default: the current directory.
    pub prefix: PathBuf,
    /// `-g 'directives;'`: parsed as main-context directives before the file; a
    /// directive set both here and in the file is a duplicate, as in nginx. Default none.
    pub globals: Option<String>,
    /// Parse this text instead of reading the file (`ferrolb demo`); the path still names
    /// it in messages and anchors includes. Default none.
    pub text: Option<String>,
    /// Running as root: servers without `listen` listen on `*:80`, else `*:8000`.
    /// Default: whether the effective user is root.
    pub is_root: bool,
    /// Looks up the host names of `server` lines, `proxy_pass` and `listen` (IP
    /// literals never reach it). Default: [`SystemResolver`]; tests give a
    /// [`StaticResolver`] so they do not depend on the machine's DNS.
    pub resolver: Arc<dyn Resolve + Send + Sync>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            prefix: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            globals: None,
            text: None,
            is_root: effective_uid_is_root(),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// The owner of `/proc/self` is the effective user; avoids unsafe `geteuid`.
fn effective_uid_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// This machine's host name in lower case, as nginx keeps it (`$hostname`, and
/// `server_name $hostname`); "localhost" when it cannot be read. Read once.
pub fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map_or_else(|| "localhost".to_owned(), |h| h.to_ascii_lowercase())
    })
}

fn parse(
    path: &Path,
    opts: &LoadOptions,
) -> Result<(Vec<parser::Directive>, parser::Parsed), ConfigError> {
    let mut p = parser::Parser::new(&opts.prefix, path);
    let mut all = match &opts.globals {
        Some(g) => p.parse_globals(g)?,
        None => Vec::new(),
    };
    all.extend(p.parse_main(path, opts.text.as_deref())?);
    Ok((all, p.finish()))
}

/// Reads, parses and validates the configuration at `path` (relative to the prefix).
/// Host names are resolved here, once, with `opts.resolver`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
    let (directives, parsed) = parse(path, opts)?;
    let env = validate::Env {
        prefix: opts.prefix.clone(),
        is_root: opts.is_root,
        resolver: Arc::clone(&opts.resolver),
    };
    validate::validate(&directives, &env, parsed.warnings)
}

/// The text `nginx -T` prints: `# configuration file /abs/path:` then the contents and a
/// newline, for the main file and every included file once, in reading order. Only
/// parses (syntax and includes); call [`load`] to validate.
pub fn dump(path: &Path, opts: &LoadOptions) -> Result<String, ConfigError> {
    let (_, parsed) = parse(path, opts)?;
    let mut out = String::new();
    for (file, contents) in &parsed.files {
        let abs = if file.is_absolute() {
            file.clone()
        } else {
            std::env::current_dir().unwrap_or_default().join(file)
        };
        out.push_str(&format!(
            "# configuration file {}:\n{contents}\n",
            abs.display()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
