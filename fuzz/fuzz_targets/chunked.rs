#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolb_fuzz::checks::chunked(data));
