//! What users and peers send beaver, parsed and checked before anything
//! acts on it: beanstalkd's wire protocol ([`beanstalk`]), the HTTP API's
//! job bodies ([`parse`]), the settings file and its flags ([`settings`])
//! and where the protocol is served ([`listen`]).
//!
//! Pure code: no socket, no clock, no task. Every function here takes
//! bytes or text from outside and returns a value or an error that says
//! what is wrong; each is a fuzz target's subject (`fuzz/`), which is why
//! they live in a crate of their own, apart from the HTTP server and the
//! command line that the fuzzers need not build.

pub mod beanstalk;
pub mod listen;
pub mod parse;
pub mod settings;
