//! The one error type of configuration loading. Every variant that points into a file
//! displays as `FILE:LINE: message`, like compilers and nginx itself (nginx puts the
//! place last; ferrolb puts it first so editors can jump to it).

use std::path::PathBuf;

use super::types::Span;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read (the main file; a missing `include` is [`ConfigError::At`]).
    #[error("{}: cannot read configuration file: {source}\n  hint: give the file with -c FILE (relative to the prefix, -p), or try \"ferrolb demo\"", path.display())]
    Io {
        /// The file as named.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file ended while blocks were still open; `open` lists them innermost first as
    /// `(directive name, line)`.
    #[error("{span}: unexpected end of file{}: blocks still open: {}", mid_directive_note(.directive), open_list(.open))]
    UnexpectedEof {
        /// Where the file ended (nginx counts the line after a final newline).
        span: Span,
        /// The directive cut short by the end of file, if any.
        directive: Option<String>,
        /// The blocks still open, innermost first.
        open: Vec<(String, u32)>,
    },
    /// Any other problem at a place in a file.
    #[error("{span}: {message}{}", hint_suffix(.hint))]
    At {
        /// Where.
        span: Span,
        /// What, in nginx's words where nginx has them.
        message: String,
        /// How to fix it, when we can tell.
        hint: Option<String>,
    },
}

impl ConfigError {
    /// An error at `span` without a hint.
    pub fn at(span: &Span, message: impl Into<String>) -> Self {
        ConfigError::At {
            span: span.clone(),
            message: message.into(),
            hint: None,
        }
    }

    /// An error at `span` with a hint, printed on its own line after the message.
    pub fn hinted(span: &Span, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError::At {
            span: span.clone(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Where the error is, if it points into a file.
    pub fn span(&self) -> Option<&Span> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::UnexpectedEof { span, .. } | ConfigError::At { span, .. } => Some(span),
        }
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n  hint: {h}"),
        None => String::new(),
    }
}

fn mid_directive_note(directive: &Option<String>) -> String {
    match directive {
        Some(d) => format!(", directive \"{d}\" is not terminated by \";\""),
        None => String::new(),
    }
}

fn open_list(open: &[(String, u32)]) -> String {
    open.iter()
        .map(|(name, line)| format!("{name} (line {line})"))
        .collect::<Vec<_>>()
        .join(", ")
}
