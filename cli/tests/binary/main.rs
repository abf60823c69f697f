//! Tests of the real `beaver` binary: the HTTP contract, the token rule,
//! the data-dir lock, SIGTERM, metrics, the README's quickstart, the
//! handler contract, running unattended (small volumes, failed starts),
//! `kill -9` cycles under concurrent clients, a small `beaver bench`, the
//! dashboard's files, `beaver work` against a real server, and
//! `beaver run --beanstalk-listen`.
//!
//! They live in the `beaver` package (not `beaver-tests`) because only a
//! binary's own package gets `CARGO_BIN_EXE_beaver`, which makes cargo build
//! the binary before the tests. Every server binds 127.0.0.1 port 0 and is
//! stopped by its PID.
#![allow(clippy::unwrap_used)]

mod api;
mod beanstalk_listen;
mod bench;
mod common;
mod contrib;
mod handler;
mod kill9;
#[path = "../support/open_files.rs"]
mod open_files;
mod openapi;
mod python_worker;
mod quickstart;
mod ui;
mod unattended;
mod work;
mod workers;
