//! The documents of external workers and queue controls (issue 23):
//! leases, their batches, queues and job listings. Same rules as the rest
//! of the schema; lease ids are decimal strings, because they are u64
//! LSNs that JavaScript numbers cannot hold.

use beaver_core::{LeaseCounters, LeaseView, QueueStatus};
use serde::{Deserialize, Serialize};

use super::{ErrorBody, JobDoc};

/// One job handed to a worker by `POST /v1/leases`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeasedDoc {
    /// Name it in heartbeats, completes and fails.
    pub lease_id: String,
    /// Report (or heartbeat) by then, or the attempt fails as timed out.
    pub lease_until_ms: u64,
    /// The job, in flight on this attempt, with its payload.
    pub job: JobDoc,
}

/// The answer to `POST /v1/leases`: every job in it is leased and its
/// dispatch durable; empty when nothing was ready within `wait_ms`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeasesDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The leases, at most `max`.
    pub leases: Vec<LeasedDoc>,
}

/// The answer to a heartbeat: the lease's new deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The lease.
    pub lease_id: String,
    /// Its new deadline.
    pub lease_until_ms: u64,
}

/// The answer to a complete or a fail: its record is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEndedDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The lease.
    pub lease_id: String,
    /// `completed` or `failed`.
    pub state: String,
}

/// One item's answer in a batch heartbeat, complete or fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResultDoc {
    /// The lease, as named in the request.
    pub lease_id: String,
    /// Whether it took effect (a complete or fail: durable).
    pub ok: bool,
    /// A heartbeat's new deadline (`null` otherwise or on error).
    pub lease_until_ms: Option<u64>,
    /// Why not, when `ok` is false (`lease_lost`, `stopping`, `busy`...).
    pub error: Option<ErrorBody>,
}

/// The answer to a batch: one result per item, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The results.
    pub results: Vec<BatchResultDoc>,
}

/// A current lease in `GET /v1/leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseViewDoc {
    /// The lease.
    pub lease_id: String,
    /// The job leased.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// The attempt the lease runs.
    pub attempt: u32,
    /// The worker, as it named itself.
    pub worker: String,
    /// The deadline (heartbeats move it).
    pub lease_until_ms: u64,
    /// When the lease was granted.
    pub started_at_ms: u64,
}

impl From<&LeaseView> for LeaseViewDoc {
    fn from(l: &LeaseView) -> Self {
        LeaseViewDoc {
            lease_id: l.lease_id.to_string(),
            id: l.id.to_string(),
            queue: l.queue.to_string(),
            attempt: l.attempt,
            worker: l.holder.clone(),
            lease_until_ms: l.lease_until,
            started_at_ms: l.started_at,
        }
    }
}

/// `GET /v1/leases`: the current leases with the lowest ids (at most
/// 1,000) and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseListDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Current leases in all.
    pub total: u64,
    /// The leases shown.
    pub leases: Vec<LeaseViewDoc>,
}

/// One queue's figures (`GET /v1/queues`, and `queues` in the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDoc {
    /// The queue.
    pub name: String,
    /// Pending jobs (ready or scheduled).
    pub pending: u64,
    /// Pending jobs that could run now.
    pub ready: u64,
    /// Pending jobs waiting for their time.
    pub scheduled: u64,
    /// Jobs in flight (the pool's and leased ones).
    pub in_flight: u64,
    /// Completed jobs held.
    pub completed: u64,
    /// Dead jobs held.
    pub dead: u64,
    /// Cancelled jobs held.
    pub cancelled: u64,
    /// Whether it hands out nothing now.
    pub paused: bool,
    /// When its pause ends; `null` when not paused or paused until resumed.
    pub paused_until_ms: Option<u64>,
}

impl From<&QueueStatus> for QueueDoc {
    fn from(q: &QueueStatus) -> Self {
        QueueDoc {
            name: q.name.to_string(),
            pending: q.pending,
            ready: q.ready,
            scheduled: q.scheduled,
            in_flight: q.in_flight,
            completed: q.completed,
            dead: q.dead,
            cancelled: q.cancelled,
            paused: q.paused_until.is_some(),
            paused_until_ms: q.paused_until.filter(|&t| t != u64::MAX),
        }
    }
}

/// `GET /v1/queues`: every queue that holds jobs or is paused, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueListDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The queues.
    pub queues: Vec<QueueDoc>,
}

/// The answer to a pause or a resume: durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePauseDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The queue.
    pub queue: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// When the pause ends; `null` when not paused or paused until resumed.
    pub paused_until_ms: Option<u64>,
}

/// The answer to a purge: durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePurgedDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The queue.
    pub queue: String,
    /// Pending jobs cancelled.
    pub cancelled: u64,
}

/// `GET /v1/queues/{name}/jobs`: one page, in order of the jobs' numbers.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobListDoc {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The jobs, without payloads.
    pub jobs: Vec<JobDoc>,
    /// Pass as `after` for the next page; `null` once nothing is left.
    pub next: Option<u64>,
}

/// External lease figures since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFiguresDoc {
    /// Leases granted (their dispatch durable).
    pub granted: u64,
    /// Heartbeats that renewed a lease.
    pub renewed: u64,
    /// Leases that expired (their attempt failed as timed out).
    pub expired: u64,
    /// Requests refused as `lease_lost`.
    pub refused_lost: u64,
    /// Lease requests waiting for jobs now.
    pub requests_waiting: u64,
    /// Current leases now.
    pub active: u64,
}

impl From<&LeaseCounters> for LeaseFiguresDoc {
    fn from(c: &LeaseCounters) -> Self {
        LeaseFiguresDoc {
            granted: c.granted,
            renewed: c.renewed,
            expired: c.expired,
            refused_lost: c.lost,
            requests_waiting: c.waiting,
            active: c.active,
        }
    }
}
