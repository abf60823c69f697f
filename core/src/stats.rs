//! Figures about the core, for status pages and metrics.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobView};
use crate::record::Lsn;
use crate::time::UnixMillis;

/// How many jobs are in each state (durable state only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Pending (ready or scheduled).
    pub pending: u64,
    /// In flight.
    pub in_flight: u64,
    /// Completed and not yet purged.
    pub completed: u64,
    /// Dead and not yet purged.
    pub dead: u64,
    /// Cancelled and not yet purged.
    pub cancelled: u64,
}

/// Counters that only grow while the process runs (for Prometheus counters).
/// They count applied (durable) transitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Jobs accepted.
    pub enqueued: u64,
    /// Attempts started (dispatch records applied).
    pub dispatched: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Attempts failed (including timeouts, lost leases and restarts).
    pub failed: u64,
    /// Jobs that went dead.
    pub dead: u64,
    /// Jobs purged by retention.
    pub purged: u64,
    /// Remembered ids forgotten before their window ended, to respect the cap.
    pub dedup_early_expiries: u64,
}

/// A light summary of the core, cheap to compute at every step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Jobs per state.
    pub jobs: StateCounts,
    /// Pending jobs that could run now.
    pub ready: u64,
    /// Pending jobs waiting for their `run_at`.
    pub scheduled: u64,
    /// Payload bytes of pending and in-flight jobs.
    pub pending_payload_bytes: u64,
    /// Ids of purged jobs still remembered for deduplication.
    pub remembered_ids: u64,
    /// The highest LSN applied (durable).
    pub applied_lsn: Lsn,
    /// The highest LSN proposed.
    pub proposed_lsn: Lsn,
    /// Whether new enqueues are refused because the disk is in its reserve.
    pub disk_full: bool,
    /// Counters since start.
    pub totals: Totals,
}

/// A leased job, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job in flight.
    pub id: JobId,
    /// Its current attempt.
    pub attempt: u32,
    /// When the lease expires; `None` while the attempt waits for a worker.
    pub lease_until: Option<UnixMillis>,
}

/// The full status: figures, the soonest-expiring leases, the newest dead jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The figures, as [`crate::Core::stats`] gives them.
    pub stats: Stats,
    /// In-flight jobs, soonest deadline first (at most [`STATUS_LIST_MAX`]).
    pub in_flight: Vec<Lease>,
    /// Dead jobs, newest first (at most [`STATUS_LIST_MAX`]).
    pub newest_dead: Vec<JobView>,
    /// The core's clock (latest time seen).
    pub now: UnixMillis,
}

/// How many entries the status lists hold at most.
pub const STATUS_LIST_MAX: usize = 20;
