#![no_main]
//! See `beaver_fuzz::codec::check_snapshot` for the input layout and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| beaver_fuzz::codec::check_snapshot(data));
