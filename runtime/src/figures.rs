//! Figures the engine's tasks publish for status pages and metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Shared counters, updated by the engine's tasks.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub wal_bytes: AtomicU64,
    pub wal_segments: AtomicU64,
    pub durable_lsn: AtomicU64,
    pub fsyncs: AtomicU64,
    pub lone_commits: AtomicU64,
    pub snapshot_lsn: AtomicU64,
    pub snapshot_at_ms: AtomicU64,
    pub snapshots: AtomicU64,
    pub recovery_ms: AtomicU64,
    pub recovered_jobs: AtomicU64,
    pub torn_bytes: AtomicU64,
    pub running: AtomicU64,
    /// The last LSN of the newest closed WAL segment (0: none closed).
    pub closed_lsn: AtomicU64,
    /// The older kept snapshot's LSN: the log is deleted through it.
    pub deletable_lsn: AtomicU64,
    /// Free bytes on the log's volume at the last space check.
    pub free_bytes: AtomicU64,
    /// Compactions ended since start (see `EngineFigures::compactions`).
    pub compactions: AtomicU64,
    /// The reserve's share for the drain's records (see `reserve.rs`).
    pub drain_bytes: AtomicU64,
    /// Two snapshots of the drained state, as last measured.
    pub drained_snapshots_bytes: AtomicU64,
}

impl Figures {
    /// Whether the newest snapshot written (or loaded) covers `lsn`.
    pub(crate) fn snapshot_covers(&self, lsn: u64) -> bool {
        self.snapshot_lsn.load(Relaxed) >= lsn
    }

    /// Whether a closed WAL segment holds records the older kept snapshot
    /// does not cover: only a newer snapshot pair would let it go.
    pub(crate) fn log_to_free(&self) -> bool {
        self.closed_lsn.load(Relaxed) > self.deletable_lsn.load(Relaxed)
    }

    pub(crate) fn engine(&self, workers: u32) -> EngineFigures {
        EngineFigures {
            wal_bytes: self.wal_bytes.load(Relaxed),
            wal_segments: self.wal_segments.load(Relaxed),
            durable_lsn: self.durable_lsn.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            lone_commits: self.lone_commits.load(Relaxed),
            snapshot_lsn: self.snapshot_lsn.load(Relaxed),
            snapshot_at_ms: self.snapshot_at_ms.load(Relaxed),
            snapshots: self.snapshots.load(Relaxed),
            recovery_ms: self.recovery_ms.load(Relaxed),
            recovered_jobs: self.recovered_jobs.load(Relaxed),
            torn_bytes_discarded: self.torn_bytes.load(Relaxed),
            workers,
            running: self.running.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
        }
    }
}

/// The engine's own figures, beside the queue's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineFigures {
    /// Bytes of WAL segment files on disk (preallocated size).
    pub wal_bytes: u64,
    /// WAL segment files on disk.
    pub wal_segments: u64,
    /// The highest LSN known durable.
    pub durable_lsn: u64,
    /// Group commits (fdatasyncs) since start.
    pub fsyncs: u64,
    /// Of those, commits of a lone client's records that the core task made
    /// itself, the log being idle (no hand-off to the WAL task).
    pub lone_commits: u64,
    /// LSN of the newest snapshot (0: none).
    pub snapshot_lsn: u64,
    /// When the newest snapshot was written (0: none this run).
    pub snapshot_at_ms: u64,
    /// Snapshots written since start.
    pub snapshots: u64,
    /// How long start-up recovery took.
    pub recovery_ms: u64,
    /// Jobs found at recovery.
    pub recovered_jobs: u64,
    /// Bytes of torn WAL tail discarded at recovery.
    pub torn_bytes_discarded: u64,
    /// The worker pool's size.
    pub workers: u32,
    /// Attempts running now: holding a worker (at most `workers`; attempts
    /// dispatched ahead and waiting for a worker are not counted).
    pub running: u64,
    /// Compactions ended since start, done or given up: each a checkpoint
    /// and a snapshot at it, twice if that lets more of the log go (asked
    /// by `Client::snapshot`, or the engine's own while the disk is in its
    /// reserve). After an ask, this passing its value from before the ask
    /// (with no other compaction under way) means the log is as small as
    /// that compaction could make it.
    pub compactions: u64,
}

/// Everything `status` reports: the queue's status and the engine's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// The queue.
    pub queue: beaver_core::Status,
    /// The engine.
    pub engine: EngineFigures,
}
