//! WAL benchmark (filled in below).
fn main() {}
