//! The engine's side of [`beaver_io::GroupCommit`]: the core's records as
//! log entries, the engine's figures and observer as the commit's hooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use beaver_core::{Record, codec};
use beaver_io::{CommitHooks, LogEntry};

use crate::figures::Figures;
use crate::observer::Observer;

/// A record the core proposed, as the log writes it (encoded on the WAL
/// task, off the core task).
pub(crate) struct Logged(pub Arc<Record>);

impl LogEntry for Logged {
    fn lsn(&self) -> u64 {
        self.0.lsn
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        codec::encode_record_into(&self.0, out);
    }
}

/// Publishes the commit's measurements in the figures and to the observer.
pub(crate) struct Hooks<O: Observer> {
    pub figures: Arc<Figures>,
    pub observer: Arc<O>,
    /// The newest snapshot's size: the snapshot share of the space reserve.
    pub snapshot_estimate_bytes: Arc<AtomicU64>,
}

impl<O: Observer> CommitHooks for Hooks<O> {
    fn written(&self, bytes: u64) {
        self.observer.wal_written(bytes);
    }

    fn synced(&self, upto: u64, records: u64, secs: f64) {
        self.figures.durable_lsn.store(upto, Relaxed);
        self.figures.fsyncs.fetch_add(1, Relaxed);
        self.observer.fsync(secs, records);
        self.observer.durable(upto);
    }

    fn committed_in_place(&self) {
        self.figures.lone_commits.fetch_add(1, Relaxed);
        self.observer.lone_commit();
    }

    fn segments(&self, count: u64, bytes: u64) {
        self.figures.wal_segments.store(count, Relaxed);
        self.figures.wal_bytes.store(count * bytes, Relaxed);
    }

    fn closed_through(&self, lsn: u64) {
        self.figures.closed_lsn.store(lsn, Relaxed);
    }

    fn space_checked(&self, free_bytes: u64) {
        self.figures.free_bytes.store(free_bytes, Relaxed);
    }

    /// The reserve beyond its segments: the newest snapshot or two of the
    /// drained state, and the drain's records (see `reserve.rs`).
    fn snapshot_bytes(&self) -> u64 {
        crate::reserve::variable_bytes(self.snapshot_estimate_bytes.load(Relaxed), &self.figures)
    }
}
