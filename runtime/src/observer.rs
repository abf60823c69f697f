//! Hooks through which the engine reports timings, for metrics.

use beaver_core::Outcome;

use crate::engine::RecoveryReport;

/// Receives the engine's measurements. Every method has a no-op default;
/// implement the ones you export. Called from the engine's tasks: keep
/// them cheap and non-blocking.
pub trait Observer: Send + Sync + 'static {
    /// Recovery finished, took `secs` and found `report` (`last_lsn`: the
    /// log holds nothing after it). Called once per start, before any of
    /// the engine's tasks runs, so before any [`Observer::durable`] report
    /// of the records it writes next (which continue from `last_lsn + 1`).
    fn recovered(&self, _secs: f64, _report: &RecoveryReport) {}
    /// One fdatasync (a group commit) took `secs` and made `records` durable.
    fn fsync(&self, _secs: f64, _records: u64) {}
    /// Every record up to LSN `upto` is durable (reported right after the
    /// sync returned, before the core learns it).
    fn durable(&self, _upto: u64) {}
    /// The last fdatasync was the core task's own commit of a lone client's
    /// records (reported after [`Observer::fsync`] and [`Observer::durable`]).
    fn lone_commit(&self) {}
    /// `bytes` were written to the WAL.
    fn wal_written(&self, _bytes: u64) {}
    /// An attempt ran for `secs` and ended with `outcome`.
    fn attempt_finished(&self, _secs: f64, _outcome: &Outcome) {}
    /// A snapshot covering `lsn` was written (`bytes` long, built in `secs`).
    fn snapshot_written(&self, _lsn: u64, _bytes: u64, _secs: f64) {}
    /// A snapshot could not be built or written (the log keeps everything
    /// and a later one is tried); `input_corrupt`: the build found what it
    /// folds corrupt (the log, or a snapshot file whose checksum held but
    /// whose body does not decode).
    fn snapshot_failed(&self, _error: &str, _input_corrupt: bool) {}
    /// The core's full invariant check failed (`what`: the first broken
    /// one). Run only in the simulator, where the cores are small, at some
    /// of the segment closes where the disk reserve is measured from the
    /// core's kept figures.
    fn core_invariants_broken(&self, _what: &str) {}
}

/// Measures nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
