//! The `beaver` command's library: the HTTP API, the beanstalkd server,
//! metrics, the data-dir lock, read-only inspection of a stopped server's
//! files, and the client commands. The parsers of what users and peers
//! send (the beanstalkd protocol, job bodies, the settings) live in
//! `beaver-input` and are re-exported here under their old paths.
//!
//! Thin by design: the queue's logic lives in `beaver-core` and the engine
//! in `beaver-runtime`; this crate adapts them to HTTP, files and a
//! terminal. The binary (`src/main.rs`) only parses arguments and calls in.

pub mod allocator;
pub mod beanstalkd;
pub mod bench;
pub mod client;
pub mod commands;
pub mod http;
pub mod human;
pub mod listening;
pub mod lock;
pub mod metrics;
pub mod offline;
pub mod openapi;
pub mod pages;
pub mod rodisk;
pub mod schema;
pub mod server;
pub mod ui;
pub mod work;

pub use beaver_input::{beanstalk, parse, settings};
