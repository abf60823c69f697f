#![no_main]
//! See `beaver_fuzz::beanstalk::check_binlog` for the input layout and what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| beaver_fuzz::beanstalk::check_binlog(data));
