//! The write-ahead log: byte-oriented records `(lsn, body)` in preallocated,
//! salted segments, written in checksummed, chained batches (one batch per
//! group commit), recovered with the torn-tail-versus-corruption rule.
//!
//! - [`format`](mod@format): the on-disk framing.
//! - [`segment`]: segment file names.
//! - [`writer`]: [`Wal`]: open/recover, write, sync, rotate, delete.
//! - [`group`]: [`GroupCommit`] and its [`WalTask`]: the one group-commit
//!   path (hand-over, in-place commit of a lone client, sync hand-off),
//!   and [`Appender`], its proposer for benchmarks and tests.
//! - [`inspect`](mod@inspect): read-only inspection.
//! - `rewrite`: recovery's crash-safe rewrite of the unvouched tail.

pub mod format;
pub mod group;
pub mod inspect;
mod rewrite;
mod scan;
pub mod segment;
pub mod writer;

pub use group::{
    AppendStats, Appender, CommitEvent, CommitHooks, CommitSettings, GroupCommit, LogEntry,
    LoneClient, NoHooks, Proposer, SegmentDeleter, WalTask,
};
pub use inspect::{BatchReport, Inspection, LogEnd, SegmentReport, inspect, read_records};
pub use writer::{
    BatchInfo, DEFAULT_SEGMENT_BYTES, DeleteJob, FILL_AHEAD_BYTES, PrepareJob, PrepareOutcome,
    Recovered, SpaceStatus, SyncJob, SyncOutcome, Wal, WalOptions,
};
