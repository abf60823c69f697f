//! The core's vocabulary with its driver: inputs in, effects out, replies.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobSpec, JobView, Payload};
use crate::record::{Lsn, Record};
use crate::stats::Status;

/// Identifies a request so its [`Reply`] can be routed back. Chosen by the
/// driver; the core only echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Something that happened, handed to [`crate::Core::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A client asks to enqueue jobs, all or nothing.
    Enqueue {
        /// Echoed in the reply.
        req: RequestId,
        /// The jobs.
        jobs: Vec<JobSpec>,
    },
    /// A client asks to cancel a pending job.
    Cancel {
        /// Echoed in the reply.
        req: RequestId,
        /// The job.
        id: JobId,
    },
    /// A client asks to requeue dead jobs.
    Requeue {
        /// Echoed in the reply.
        req: RequestId,
        /// Which jobs.
        target: RequeueTarget,
    },
    /// A client reads one job.
    Get {
        /// Echoed in the reply.
        req: RequestId,
        /// The job.
        id: JobId,
    },
    /// A client lists dead jobs, newest first.
    ListDead {
        /// Echoed in the reply.
        req: RequestId,
        /// At most this many.
        limit: usize,
    },
    /// A client reads the queue's status.
    Status {
        /// Echoed in the reply.
        req: RequestId,
    },
    /// Every record with an LSN `<= upto` is durable.
    Durable {
        /// The highest durable LSN.
        upto: Lsn,
    },
    /// Records from `from_lsn` on were not written and never will be.
    AppendFailed {
        /// The first record that failed.
        from_lsn: Lsn,
        /// Why, for the affected clients.
        error: String,
    },
    /// An attempt finished.
    Outcome {
        /// The job.
        id: JobId,
        /// The attempt, as given in [`Effect::Execute`].
        attempt: u32,
        /// How it went.
        outcome: Outcome,
    },
    /// An attempt from [`Effect::Execute`] began running on a worker. Its
    /// lease (the job's timeout plus the lease slack) counts from this
    /// step: an attempt handed out ahead of a free worker waits without a
    /// deadline, so a queue of attempts behind slow ones never expires.
    Started {
        /// The job.
        id: JobId,
        /// The attempt, as given in [`Effect::Execute`].
        attempt: u32,
    },
    /// Time passed; nothing else happened.
    Tick,
    /// Whether the disk is in its space reserve: while `true` new enqueues
    /// are refused, every other transition still goes on.
    DiskFull(bool),
    /// Stop starting jobs (graceful shutdown); running ones may finish.
    StopDispatching,
}

/// Which dead jobs a requeue targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequeueTarget {
    /// One job by id.
    One(JobId),
    /// Every dead job.
    AllDead,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It succeeded.
    Succeeded,
    /// It failed with this error text.
    Failed(String),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It was never started (the runtime is shutting down).
    NotStarted,
}

/// One attempt to run, handed to an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The job.
    pub id: JobId,
    /// The attempt number (1 for the first).
    pub attempt: u32,
    /// The payload.
    pub payload: Payload,
    /// How long the attempt may run.
    pub timeout_ms: u64,
}

/// Something the driver must do, in the order given.
///
/// Every effect may be carried out at once: the core itself holds back
/// replies and executions until the records they depend on are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append this record to the log; report [`Input::Durable`] once synced.
    Append(Arc<Record>),
    /// Answer a request.
    Reply {
        /// The request.
        req: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Run one attempt of a job (its dispatch record is durable), in the
    /// order given, when a worker is free; report [`Input::Started`] when
    /// it begins and [`Input::Outcome`] when it ends.
    Execute(Execution),
    /// Stop the attempt if it still runs: its lease expired.
    Abort {
        /// The job.
        id: JobId,
        /// The attempt.
        attempt: u32,
    },
}

/// One job's answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id (assigned if the client gave none).
    pub id: JobId,
    /// Whether the id was already known, so nothing was added.
    pub duplicate: bool,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// For [`Input::Enqueue`]: sent only once every job in it is durable.
    Enqueued(Result<Vec<Enqueued>, Rejection>),
    /// For [`Input::Cancel`]: sent once the cancellation is durable.
    Cancelled(Result<(), Rejection>),
    /// For [`Input::Requeue`]: how many jobs went back to pending, once durable.
    Requeued(Result<u64, Rejection>),
    /// For [`Input::Get`]: the job's durable state, or `None` if unknown or purged.
    Job(Option<JobView>),
    /// For [`Input::ListDead`]: dead jobs, newest first.
    Dead(Vec<JobView>),
    /// For [`Input::Status`].
    Status(Box<Status>),
}

/// Why a request was refused. Nothing of a refused request was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The request is malformed; `index` is the job's position in a batch.
    Invalid {
        /// The job's index in the batch, if the fault is a job's.
        index: Option<usize>,
        /// The offending field.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A size limit was exceeded (payload or batch).
    TooLarge {
        /// The job's index in the batch, if the fault is a job's.
        index: Option<usize>,
        /// Which limit, and the figures.
        reason: String,
    },
    /// A capacity limit is reached; try again later.
    Busy {
        /// Which limit.
        reason: String,
        /// A hint for when to retry.
        retry_after_ms: u64,
    },
    /// No such job.
    NotFound {
        /// The id looked for.
        id: JobId,
    },
    /// The job is not in a state that allows this.
    Conflict {
        /// What state it is in and why that forbids the request.
        reason: String,
    },
    /// The log could not take the request; it may be retried.
    Storage {
        /// The storage error.
        reason: String,
    },
    /// The queue is shutting down.
    Stopping,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Invalid {
                index: Some(i),
                field,
                reason,
            } => {
                write!(f, "job {i}: field `{field}`: {reason}")
            }
            Rejection::Invalid {
                index: None,
                field,
                reason,
            } => write!(f, "`{field}`: {reason}"),
            Rejection::TooLarge {
                index: Some(i),
                reason,
            } => write!(f, "job {i}: {reason}"),
            Rejection::TooLarge {
                index: None,
                reason,
            } => f.write_str(reason),
            Rejection::Busy {
                reason,
                retry_after_ms,
            } => {
                write!(f, "{reason}; retry in {retry_after_ms} ms")
            }
            Rejection::NotFound { id } => write!(f, "no job with id {:?}", id.as_str()),
            Rejection::Conflict { reason } => f.write_str(reason),
            Rejection::Storage { reason } => {
                write!(
                    f,
                    "the log could not record this ({reason}); nothing was applied, retry"
                )
            }
            Rejection::Stopping => {
                f.write_str("beaver is shutting down; retry against the restarted server")
            }
        }
    }
}

impl std::error::Error for Rejection {}
