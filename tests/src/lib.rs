//! beaver-tests: cross-crate tests.
//!
//! - `tests/recovered_state.rs`: insta snapshots of what a restart recovers
//!   (the published status schema, as `beaver status --data-dir --json`
//!   prints it) after named crash scenarios, driven on the real engine and
//!   real files: a clean restart, a crash with jobs in flight, a crash after
//!   a torn write, and a crash between a snapshot and the deletion of the
//!   segments it covers. Review changes with `cargo insta review`.
//!
//! The tests that run the real `beaver` binary (kill -9 cycles, the HTTP
//! contract, SIGTERM, the lock, metrics, the README's quickstart) live in
//! `cli/tests/binary/`, because only the binary's own package gets
//! `CARGO_BIN_EXE_beaver` (which makes cargo build the binary first).
