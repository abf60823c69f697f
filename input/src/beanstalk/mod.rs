//! beanstalkd's text protocol, as Debian's beanstalkd 1.12 speaks it: pure
//! code, no socket, no clock.
//!
//! Three pieces, each checked byte for byte against the real server (see
//! `cli/tests/beanstalk/` in the `beaver` crate):
//!
//! - [`Framer`] turns the bytes a connection sends into [`Frame`]s: a
//!   well-formed [`Command`] (a `put` arrives with its whole body), or the
//!   error line beanstalkd would answer ([`Refusal`]). It holds at most
//!   [`LINE_BYTES_MAX`] bytes of a command line and `job_bytes_max + 2`
//!   bytes of a job body, whatever the peer sends.
//! - [`Reply`] is everything the server may answer, encoded exactly as
//!   beanstalkd writes it.
//! - [`stats`] formats the YAML documents of `stats`, `stats-job`,
//!   `stats-tube` and the `list-tubes*` commands with beanstalkd's keys in
//!   beanstalkd's order.
//!
//! # Driving a connection
//!
//! 1. Read bytes from the socket into a buffer you own.
//! 2. Call [`Framer::push`] with the unconsumed part of that buffer; it
//!    returns how many bytes it took and at most one frame. When it returns
//!    no frame it has taken every byte given (keeping what it needs), so
//!    go back to step 1.
//! 3. Execute a [`Frame::Command`] and write its reply; write
//!    [`Refusal::reply`] for a [`Frame::Refused`]. Replies go out in the
//!    order the frames came: beanstalkd answers one command at a time, so
//!    stop pushing while a `reserve` waits for a job.
//! 4. On [`Command::Quit`] close the connection without a reply.
//!
//! ```
//! use beaver_input::beanstalk::{Command, Frame, Framer, Reply, JOB_BYTES_MAX_DEFAULT};
//!
//! let mut framer = Framer::new(JOB_BYTES_MAX_DEFAULT);
//! let mut input: &[u8] = b"put 0 0 60 5\r\nhello\r\nbogus\r\n";
//! let mut out = Vec::new();
//! while !input.is_empty() {
//!     let (used, frame) = framer.push(input);
//!     input = &input[used..];
//!     match frame {
//!         Some(Frame::Command(Command::Put { body, .. })) => {
//!             assert_eq!(body, b"hello");
//!             Reply::Inserted(1).encode(&mut out);
//!         }
//!         Some(Frame::Refused(r)) => r.reply().encode(&mut out),
//!         Some(Frame::Command(other)) => unreachable!("{other:?}"),
//!         None => {}
//!     }
//! }
//! assert_eq!(out, b"INSERTED 1\r\nUNKNOWN_COMMAND\r\n");
//! ```

pub mod binlog;
mod command;
mod framer;
mod limits;
mod name;
mod reply;
mod scan;
pub mod stats;
#[cfg(test)]
mod tests;

pub use command::{Command, Verb};
pub use framer::{Frame, Framer, ProtocolError, Refusal};
pub use limits::ServeLimits;
pub use name::TubeName;
pub use reply::Reply;

/// The longest command line beanstalkd accepts, its CRLF included. A longer
/// line is answered `BAD_FORMAT` once its end arrives, and its bytes are
/// dropped as they come (see [`Framer`]).
pub const LINE_BYTES_MAX: usize = 224;

/// The longest tube name, in bytes.
pub const TUBE_NAME_BYTES_MAX: usize = 200;

/// The default largest job body (beanstalkd's `-z`), in bytes.
pub const JOB_BYTES_MAX_DEFAULT: u32 = 65_535;

/// The largest `-z` beanstalkd 1.12 accepts (1 GiB); [`Framer::new`] clamps
/// to it.
pub const JOB_BYTES_MAX_LIMIT: u32 = 1 << 30;

/// Jobs with a priority below this count as urgent (`current-jobs-urgent`).
pub const URGENT_PRIORITY: u32 = 1024;
