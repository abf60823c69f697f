//! beaver-tests: cross-crate tests (filled in by the command work).
