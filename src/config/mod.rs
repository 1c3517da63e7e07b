//! nginx-syntax configuration: lexer and parser to a directive tree with spans, then
//! validation into the typed [`Config`].

pub mod types;

pub use types::*;
