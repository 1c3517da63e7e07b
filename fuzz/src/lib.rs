//! Fuzz targets for ferrolb's parsers. The invariant checks live in `checks.rs`, which
//! `tests/fuzz_corpus.rs` in the main crate includes too, so the corpus replay in CI and
//! the fuzzer check the same things.
pub mod checks;
