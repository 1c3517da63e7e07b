//! server

pub mod runtime;
