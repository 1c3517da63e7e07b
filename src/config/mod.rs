//! nginx-syntax configuration: lexer and parser to a directive tree with spans, then
//! validation into the typed [`Config`].

pub mod error;
pub mod lexer;
pub mod parser;
pub mod types;

pub use error::ConfigError;
pub use types::*;
