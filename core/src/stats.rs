//! Figures about the core, for status pages and metrics.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobView, QueueName};
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

impl StateCounts {
    /// All the jobs counted, in every state.
    pub fn total(&self) -> u64 {
        self.pending + self.in_flight + self.completed + self.dead + self.cancelled
    }
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

/// What the unfinished jobs still make and free before each is final, if
/// nothing new is asked ([`crate::Core::drain`]): an upper bound on their
/// log records, and the payload bytes they let go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drain {
    /// The most log records they can still make.
    pub records: u64,
    /// The payload bytes they hold and let go once final (the jobs with
    /// unlimited attempts keep theirs: they may never be final).
    pub payload_bytes_freed: u64,
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
    /// External leases: counters since start and gauges.
    pub leases: LeaseCounters,
}

/// External leases, counted by this process since it started (leases are
/// not durable state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounters {
    /// Leases granted (their dispatch durable).
    pub granted: u64,
    /// Heartbeats that renewed a lease.
    pub renewed: u64,
    /// Leases that expired (their attempt failed as timed out).
    pub expired: u64,
    /// Requests refused because their lease was not current.
    pub lost: u64,
    /// Lease requests waiting for jobs now.
    pub waiting: u64,
    /// Current leases now.
    pub active: u64,
}

/// One named queue's figures, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue.
    pub name: QueueName,
    /// Pending jobs (ready, scheduled, or about to be dispatched).
    pub pending: u64,
    /// Pending jobs that could run now.
    pub ready: u64,
    /// Pending jobs waiting for their `run_at`.
    pub scheduled: u64,
    /// Jobs in flight.
    pub in_flight: u64,
    /// Completed jobs held.
    pub completed: u64,
    /// Dead jobs held.
    pub dead: u64,
    /// Cancelled jobs held.
    pub cancelled: u64,
    /// While paused: when the pause ends (`u64::MAX`: until resumed).
    pub paused_until: Option<UnixMillis>,
}

/// One current external lease, for views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The lease's id.
    pub lease_id: crate::protocol::LeaseId,
    /// The job leased.
    pub id: JobId,
    /// Its queue.
    pub queue: QueueName,
    /// The attempt the lease runs.
    pub attempt: u32,
    /// Who holds it, as the worker said.
    pub holder: String,
    /// Its deadline (renewed by heartbeats).
    pub lease_until: UnixMillis,
    /// When it was granted.
    pub started_at: UnixMillis,
}

/// The current external leases, by id, at most [`LEASE_LIST_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseList {
    /// The leases with the lowest ids.
    pub leases: Vec<LeaseView>,
    /// How many leases are current in all.
    pub total: u64,
}

/// How many leases a [`LeaseList`] shows at most.
pub const LEASE_LIST_MAX: usize = 1_000;

/// One page of a job listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPage {
    /// Jobs in order of their numbers.
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; `None` once nothing is left.
    pub next: Option<u64>,
}

/// What a rebuild found in flight: attempts whose start the log holds
/// (they count: the first step fails them as interrupted) and attempts
/// handed out ahead of a worker that never logged a start (given back
/// uncounted; their jobs are then never dispatched ahead until their next
/// counted attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// Attempts that count.
    pub charged: u64,
    /// Attempts given back.
    pub released: u64,
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
    /// Every queue that holds jobs or is paused, by name.
    pub queues: Vec<QueueStatus>,
    /// The core's clock (latest time seen).
    pub now: UnixMillis,
}

/// How many entries the status lists hold at most.
pub const STATUS_LIST_MAX: usize = 20;
