//! beaver-io: storage.
//!
//! - [`Disk`]/[`DiskFile`]: the file-system operations storage needs, with
//!   [`FileDisk`] (real files, Linux; absent under `cfg(madsim)`) and
//!   [`SimDisk`] (in memory, seeded faults: torn and reordered writes, lost
//!   directory entries, EIO, ENOSPC, bit rot, latency).
//! - [`Wal`]: the write-ahead log (segments, batches, group commit,
//!   recovery, inspection).
//! - [`SnapshotStore`]: checksummed snapshot files, newest two kept.
//!
//! Every error names the file and the operation ([`Error`]).
//! Durability is promised on Linux (fdatasync) only.

pub mod disk;
pub mod error;
#[cfg(not(madsim))]
pub mod file_disk;
pub mod le;
pub mod planted;
#[cfg(not(madsim))]
pub mod probe;
pub mod rng;
pub mod sim_disk;
pub mod snapshot;
pub mod space;
pub mod wal;

pub use disk::{Disk, DiskFile};
pub use error::{Error, Op, Result};
#[cfg(not(madsim))]
pub use file_disk::{FileDisk, RealFile};
pub use planted::Planted;
pub use rng::{DetRng, entropy_seed};
pub use sim_disk::{SimDisk, SimDiskConfig, SimDiskStats, SimFile};
pub use snapshot::{LoadedSnapshot, SavedSnapshot, SnapshotSink, SnapshotStore};
pub use wal::format::{
    MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, record_bytes_max, segment_bytes_problem,
};
pub use wal::{
    AppendStats, Appender, BatchInfo, CommitEvent, CommitHooks, CommitSettings, FILL_AHEAD_BYTES,
    GroupCommit, Inspection, LogEnd, LogEntry, Proposer, Recovered, SegmentDeleter, SpaceStatus,
    Wal, WalOptions, WalTask, inspect,
};

/// Runtimes for the unit tests: one current-thread runtime per call.
#[cfg(test)]
pub(crate) mod test_runtime {
    use std::future::Future;

    /// Runs `f` to its end on a fresh runtime with the real clock.
    pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
        runtime(false).block_on(f)
    }

    /// Runs `f` to its end on a fresh runtime whose clock is paused (it
    /// jumps to the next timer whenever every task waits).
    pub(crate) fn block_on_paused<F: Future>(f: F) -> F::Output {
        runtime(true).block_on(f)
    }

    fn runtime(paused: bool) -> tokio::runtime::Runtime {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all().start_paused(paused);
        builder.build().expect("a test runtime")
    }
}
