#![no_main]
//! See `beaver_fuzz::body::check_body` for the input layout and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| beaver_fuzz::body::check_body(data));
