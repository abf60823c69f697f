//! Group commit: the one path by which records become durable, in
//! production, in the benchmarks and in the tests alike.
//!
//! One task proposes records (the engine's core task; [`Appender`] plays
//! that part for benchmarks and tests) and holds the [`GroupCommit`]; the
//! [`WalTask`], on a thread of its own in production, owns the log's
//! writing. Together they keep [`Wal`]'s group-commit contract:
//!
//! 1. The proposer hands over each round of records, LSNs dense and
//!    increasing ([`GroupCommit::commit`]).
//! 2. The WAL task encodes what it took, cuts it into batches that fit a
//!    segment, writes them (one write each) and keeps one fdatasync in
//!    flight; the next batches are written while it runs (pipelining).
//! 3. When a sync returns, the WAL task reports [`CommitEvent::Durable`]:
//!    only now may the proposer acknowledge the records up to it.
//!
//! A lone client's records take a shorter way: the proposer writes and
//! syncs them itself when the log is idle ([`LoneClient`] says when and
//! why). Both ways share the one [`Wal`] under one lock, so order and the
//! rule that nothing is acknowledged before its own fdatasync hold
//! whichever task writes.
//!
//! Failure rules are [`Wal`]'s: a failed write or sync stops the WAL (never
//! retried) and is reported as [`CommitEvent::Fatal`]; a batch the WAL
//! refuses (no space, too large) is reported as
//! [`CommitEvent::AppendFailed`], and the proposer reissues its LSNs.

mod appender;
mod committer;
mod log;
mod lone;
mod task;

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::disk::Disk;
use crate::error::Error;
use crate::wal::writer::Wal;

pub use appender::{AppendStats, Appender, AppenderTask, AppenderWalTask};
pub use committer::{GroupCommit, Proposer, SegmentDeleter};
pub use lone::LoneClient;
pub use task::WalTask;

/// A record the group commit can log: its LSN, and its body's encoding.
/// Encoding happens on the WAL task, off the proposer's thread.
pub trait LogEntry: Send + Sync + 'static {
    /// The record's LSN.
    fn lsn(&self) -> u64;
    /// Appends the record's body to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
}

/// What the group commit reports to its proposer, in the order it happened.
#[derive(Debug)]
pub enum CommitEvent {
    /// Every LSN up to this one is durable (its own fdatasync returned).
    Durable(u64),
    /// Records from this LSN on were not written (no space, too large):
    /// the proposer answers their requests with `error` and reissues the LSNs.
    AppendFailed {
        /// The first LSN not written.
        from_lsn: u64,
        /// Why ([`Error::NoSpace`], [`Error::RecordTooLarge`]), for the
        /// requests' answers.
        error: Error,
    },
    /// The disk entered (`true`) or left the space reserve of two segments
    /// and one snapshot.
    DiskFull(bool),
    /// A write or sync failed: the WAL stopped (fail-stop); nothing more
    /// will be reported durable.
    Fatal(Error),
    /// Enough log was written since the last snapshot (or enough time
    /// passed while it grew): snapshot up to this durable LSN.
    SnapshotDue(u64),
}

/// Measurements and inputs from outside the log. Every method has a
/// default; they are called on the task that does the work (the WAL task,
/// or the proposer for its in-place commits): keep them cheap.
pub trait CommitHooks: Send + Sync + 'static {
    /// `bytes` of batches were written (not yet durable).
    fn written(&self, _bytes: u64) {}
    /// A sync that took `secs` made `records` more records durable, up to
    /// LSN `upto`; reported before the proposer learns it.
    fn synced(&self, _upto: u64, _records: u64, _secs: f64) {}
    /// The last sync was the proposer's own, for a lone client (reported
    /// after [`CommitHooks::synced`]).
    fn committed_in_place(&self) {}
    /// The log holds `count` segment files of `bytes` each.
    fn segments(&self, _count: u64, _bytes: u64) {}
    /// The last LSN of the newest closed segment (0: none is closed): a
    /// snapshot must cover it before every closed segment can be deleted.
    fn closed_through(&self, _lsn: u64) {}
    /// The space check found `free_bytes` free on the log's volume.
    fn space_checked(&self, _free_bytes: u64) {}
    /// The size of the next snapshot, as estimated: part of the space
    /// reserve.
    fn snapshot_bytes(&self) -> u64 {
        0
    }
}

/// Measures nothing; reserves no snapshot space.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl CommitHooks for NoHooks {}

/// When the group commit asks for a snapshot and checks free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitSettings {
    /// Ask for a snapshot once this many bytes were written since the last.
    pub snapshot_wal_bytes: u64,
    /// Ask for a snapshot at least this often while the log grows (0: never
    /// by time).
    pub snapshot_interval_ms: u64,
    /// How often free space is checked against the reserve.
    pub space_check_interval_ms: u64,
}

impl Default for CommitSettings {
    /// Never asks for a snapshot; checks space every second.
    fn default() -> Self {
        CommitSettings {
            snapshot_wal_bytes: u64::MAX,
            snapshot_interval_ms: 0,
            space_check_interval_ms: 1_000,
        }
    }
}

/// Messages to the WAL task that it has not taken yet, at most. The
/// proposer hands over at most one round of records per turn of its loop
/// and the WAL task takes up to 256 per wake-up, so this is reached only
/// when the disk stalls; then the proposer waits for the WAL task (and
/// clients wait in the proposer's own bounded queue), instead of records
/// piling up in memory.
pub const HANDOVER_MAX: usize = 1024;

/// Reports the proposer has not taken yet, at most. The WAL task makes at
/// most three per round of records it takes (durable, refused, snapshot
/// due) and one per space check, and the proposer takes up to 64 before
/// anything else on each turn, so in practice a handful wait. Past it the
/// WAL task waits for the proposer; it never holds the log's lock while
/// it waits, so the proposer's own commits go on.
pub const REPORTS_MAX: usize = 1024;

/// Sends `value`, waiting for room only when the channel is full: the
/// common case costs what an unbounded send did (no await, no cooperative
/// scheduling budget spent). `Err` once the receiver is gone.
pub(crate) async fn send<T>(tx: &mpsc::Sender<T>, value: T) -> Result<(), ()> {
    match tx.try_send(value) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(value)) => tx.send(value).await.map_err(|_| ()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// What the WAL task is asked to do.
pub(crate) enum ToWal<R> {
    /// Records to write, LSNs dense and increasing.
    Records(Vec<R>),
    /// Delete segments the given LSN covers entirely (the older kept
    /// snapshot's); answer when done.
    DeleteThrough(u64, oneshot::Sender<()>),
    /// The proposer's own commit moved to a new segment: prepare the next,
    /// and check the space reserve now (the log's use of the disk changed).
    Wake,
}

impl<D: Disk, R: LogEntry, H: CommitHooks> GroupCommit<D, R, H> {
    /// Splits `wal` into the proposer's handle and the WAL task; spawn
    /// [`WalTask::run`] where its blocking calls hurt nobody (production: a
    /// thread of its own, with a [`Disk::dedicated`] handle). The task ends
    /// when the handle (and every [`SegmentDeleter`]) is dropped, after the
    /// sync in flight, or at a fatal error, which it reports first.
    pub fn new(
        wal: Wal<D>,
        settings: CommitSettings,
        hooks: Arc<H>,
    ) -> (GroupCommit<D, R, H>, WalTask<D, R, H>) {
        let (to_wal, from_proposer) = mpsc::channel(HANDOVER_MAX);
        let (to_proposer, reports) = mpsc::channel(REPORTS_MAX);
        let log = Arc::new(Mutex::new(log::Log::new(wal, Arc::clone(&hooks), settings)));
        let task = WalTask::new(
            Arc::clone(&log),
            hooks,
            from_proposer,
            to_proposer,
            settings.space_check_interval_ms,
        );
        (GroupCommit::from_parts(log, to_wal, reports), task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hooks_reserve_no_snapshot_space() {
        assert_eq!(NoHooks.snapshot_bytes(), 0);
    }
}
