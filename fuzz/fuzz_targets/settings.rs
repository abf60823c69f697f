#![no_main]
//! See `beaver_fuzz::settings::check_settings` for the input layout and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| beaver_fuzz::settings::check_settings(data));
