#![no_main]
//! See `beaver_fuzz::wal::check_scan` for the input layout and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| beaver_fuzz::wal::check_scan(data));
