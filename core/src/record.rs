//! Records: the durable log's entries. Every durable change is one of these.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, NewJob, QueueName};
use crate::time::UnixMillis;

/// A log sequence number. The core assigns them dense and increasing from 1.
pub type Lsn = u64;

/// One entry of the durable log.
///
/// Guarantees: applying a record depends only on the record and the state
/// before it, never on configuration or a clock, so replaying a log gives
/// the same state whatever the configuration of the process replaying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log.
    pub lsn: Lsn,
    /// The (clamped) time at which the record was proposed.
    pub at: UnixMillis,
    /// The change; applying it depends on nothing else.
    pub op: Op,
}

/// A durable change of state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Jobs accepted together (one request, all or nothing).
    Enqueue {
        /// The jobs, every default resolved.
        jobs: Vec<NewJob>,
    },
    /// A pending job is leased to a worker for its `attempt`-th attempt.
    Dispatch {
        /// The job leased; it is pending when the record applies.
        id: JobId,
        /// The attempt number this lease starts (1 for the first).
        attempt: u32,
        /// The lease's deadline had the attempt started at dispatch. The
        /// live lease counts from [`crate::Input::Started`]; after a restart
        /// the attempt is over either way, so only that process needs it.
        lease_until: UnixMillis,
        /// Whether the attempt starts the moment this record is durable (a
        /// free worker or an external worker takes it), so that it counts
        /// even if the process dies before anything else is logged.
        /// `false`: handed out ahead of a free worker; it counts only once
        /// an [`Op::Start`] for it is durable. (Version 1 records, which
        /// have no such field, read as `true`: they were charged at dispatch.)
        started: bool,
    },
    /// The attempt succeeded.
    Complete {
        /// The job completed; in flight on `attempt` when the record applies.
        id: JobId,
        /// The attempt that succeeded.
        attempt: u32,
    },
    /// The attempt failed (error, timeout, lost lease or restart).
    Fail {
        /// The job whose attempt failed; in flight on `attempt` when the
        /// record applies.
        id: JobId,
        /// The attempt that failed.
        attempt: u32,
        /// Why.
        error: String,
        /// When to try again; `None` makes the job dead.
        retry_at: Option<UnixMillis>,
    },
    /// A leased attempt never started (graceful shutdown): the job returns
    /// to pending and the attempt is not counted.
    Release {
        /// The job given back; in flight on `attempt` when the record applies.
        id: JobId,
        /// The attempt given back.
        attempt: u32,
    },
    /// A pending job is cancelled, or an in-flight one whose attempt was
    /// handed out but never started (that attempt does not count).
    Cancel {
        /// The job cancelled; pending or in flight when the record applies.
        id: JobId,
    },
    /// Dead jobs go back to pending with a fresh set of attempts.
    Requeue {
        /// Dead jobs, each named once; all of them apply or none.
        ids: Vec<JobId>,
    },
    /// Finished jobs are removed (their ids kept for deduplication), and
    /// remembered ids are forgotten.
    Purge {
        /// Final jobs to remove.
        jobs: Vec<JobId>,
        /// Remembered ids of purged jobs to forget.
        forget: Vec<JobId>,
    },
    // Variants below are new in format version 2; new ones go at the end.
    /// An attempt dispatched ahead of a free worker began running: from
    /// now on it counts, even if the process dies.
    Start {
        /// The job; in flight on `attempt` when the record applies.
        id: JobId,
        /// The attempt that began.
        attempt: u32,
    },
    /// A queue hands out nothing (to the built-in pool or to leases) until
    /// `until`: `u64::MAX` until resumed, 0 to resume now.
    PauseQueue {
        /// The queue (created if no job named it yet).
        queue: QueueName,
        /// Paused while the time is below this.
        until: UnixMillis,
    },
    /// Every pending job (ready or scheduled) of the queue is cancelled:
    /// final, payload dropped, its id kept like any cancelled job's.
    PurgeQueue {
        /// The queue; one no job names changes nothing.
        queue: QueueName,
    },
    /// Changes nothing: a record that only takes the log to a newer LSN (so
    /// that an idle server can write a snapshot that covers its whole log).
    Checkpoint,
    /// A leased attempt is given back by its worker with a new priority
    /// and run time (beanstalkd's `release`): the job is pending again and
    /// the attempt does not count, so it is no failure.
    Return {
        /// The job given back; in flight on `attempt` when the record applies.
        id: JobId,
        /// The attempt given back.
        attempt: u32,
        /// The job's priority from now on.
        priority: i32,
        /// Not run again before this time.
        run_at: UnixMillis,
    },
    /// A leased attempt's worker sets the job aside (beanstalkd's `bury`):
    /// it is dead with a new priority, no failure counted, until requeued.
    Bury {
        /// The job buried; in flight on `attempt` when the record applies.
        id: JobId,
        /// The attempt that ends.
        attempt: u32,
        /// The job's priority from now on.
        priority: i32,
    },
    /// A dead job is cancelled (beanstalkd's `delete` of a buried job):
    /// final, payload dropped, its id kept like any cancelled job's.
    DeleteDead {
        /// The job; dead when the record applies.
        id: JobId,
    },
    /// A scheduled job is ready from the record's time on (beanstalkd's
    /// `kick` of a delayed job).
    Kick {
        /// The job; pending when the record applies.
        id: JobId,
    },
}

impl Op {
    /// A short name for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Enqueue { .. } => "enqueue",
            Op::Dispatch { .. } => "dispatch",
            Op::Complete { .. } => "complete",
            Op::Fail { .. } => "fail",
            Op::Release { .. } => "release",
            Op::Cancel { .. } => "cancel",
            Op::Requeue { .. } => "requeue",
            Op::Purge { .. } => "purge",
            Op::Start { .. } => "start",
            Op::PauseQueue { .. } => "pause_queue",
            Op::PurgeQueue { .. } => "purge_queue",
            Op::Checkpoint => "checkpoint",
            Op::Return { .. } => "return",
            Op::Bury { .. } => "bury",
            Op::DeleteDead { .. } => "delete_dead",
            Op::Kick { .. } => "kick",
        }
    }
}
