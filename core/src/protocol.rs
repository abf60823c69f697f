//! The core's vocabulary with its driver: inputs in, effects out, replies.
//! The crate docs give the contract that ties them together.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobSpec, JobView, Payload};
use crate::record::{Lsn, Record};
use crate::stats::Status;

/// Identifies a request so its [`Reply`] can be routed back. Chosen by the
/// driver; the core only echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Something that happened, handed to [`crate::Core::step`]. The crate
/// docs say when a driver must send each one.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A client asks to enqueue jobs, all or nothing.
    Enqueue {
        /// Echoed in the [`Reply::Enqueued`].
        req: RequestId,
        /// The jobs, at most `limits.batch_jobs_max`; a known id is a
        /// duplicate and adds nothing.
        jobs: Vec<JobSpec>,
    },
    /// A client asks to cancel a pending job (or one whose attempt waits
    /// for a worker).
    Cancel {
        /// Echoed in the [`Reply::Cancelled`].
        req: RequestId,
        /// The job to cancel; an unknown id is answered `NotFound`.
        id: JobId,
    },
    /// A client asks to requeue dead jobs.
    Requeue {
        /// Echoed in the [`Reply::Requeued`].
        req: RequestId,
        /// Which dead jobs.
        target: RequeueTarget,
    },
    /// A client reads one job.
    Get {
        /// Echoed in the [`Reply::Job`].
        req: RequestId,
        /// The job to read.
        id: JobId,
    },
    /// A client lists dead jobs, newest first.
    ListDead {
        /// Echoed in the [`Reply::Dead`].
        req: RequestId,
        /// At most this many.
        limit: usize,
    },
    /// A client reads the core's status.
    Status {
        /// Echoed in the [`Reply::Status`].
        req: RequestId,
    },
    /// Every record with an LSN `<= upto` is durable. Send it only once the
    /// log's own sync of those records returned.
    Durable {
        /// The highest durable LSN.
        upto: Lsn,
    },
    /// Records from `from_lsn` on were not written and never will be. The
    /// core takes them back and proposes again from `from_lsn`.
    AppendFailed {
        /// The first record the log refused.
        from_lsn: Lsn,
        /// Why, for the clients whose requests fail with it.
        error: String,
    },
    /// An attempt from [`Effect::Execute`] ended. An outcome of an attempt
    /// the core already ended (aborted, or an older one) changes nothing.
    Outcome {
        /// The job the attempt belongs to.
        id: JobId,
        /// The attempt, as given in [`Effect::Execute`].
        attempt: u32,
        /// How it went.
        outcome: Outcome,
    },
    /// An attempt from [`Effect::Execute`] began running on a worker. Its
    /// lease (the job's timeout plus the lease slack) counts from this
    /// step: an attempt handed out ahead of a free worker waits without a
    /// deadline, so a queue of attempts behind slow ones never expires. A
    /// driver that never sends it never expires a hung attempt. Reports of
    /// another attempt, or a second report, change nothing.
    Started {
        /// The job the attempt belongs to.
        id: JobId,
        /// The attempt, as given in [`Effect::Execute`].
        attempt: u32,
    },
    /// Time passed; nothing else happened. Send it no later than
    /// [`crate::Core::next_deadline`].
    Tick,
    /// Whether the disk is in its space reserve: while `true` new enqueues
    /// are refused, every other transition still goes on.
    DiskFull(bool),
    /// Stop starting jobs (graceful shutdown): nothing more is dispatched
    /// or enqueued; running attempts may finish.
    StopDispatching,
}

/// Which dead jobs a requeue targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequeueTarget {
    /// One job by id; it must be dead.
    One(JobId),
    /// Every dead job (none is fine: the answer is 0).
    AllDead,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It succeeded: the job completes.
    Succeeded,
    /// It failed with this error text (its tail is kept, bounded): the job
    /// retries after backoff, or is dead once its attempts are used up.
    Failed(String),
    /// It ran past its timeout and was killed: a failed attempt.
    TimedOut,
    /// It was never started (the driver gives it back, e.g. shutting
    /// down): the job is pending again and the attempt does not count.
    NotStarted,
}

/// One attempt to run, handed to an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The job to run.
    pub id: JobId,
    /// The attempt number (1 for the first); name it in
    /// [`Input::Started`] and [`Input::Outcome`].
    pub attempt: u32,
    /// The job's payload, valid JSON.
    pub payload: Payload,
    /// How long the attempt may run; the core's lease is this plus the
    /// lease slack, counted from [`Input::Started`].
    pub timeout_ms: u64,
}

/// Something the driver must do.
///
/// Carry out the effects of a step in the order given, each as soon as it
/// is read: none waits for anything, because the core itself held back
/// replies and executions until the records they depend on were durable.
/// Two orders matter: records reach the log in the order given (their LSN
/// order), and executions start in the order given. A reply may go out
/// before the records appended in the same step reach the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append this record to the log, after every record appended before;
    /// report [`Input::Durable`] once it is synced, or
    /// [`Input::AppendFailed`] if the log refuses it.
    Append(Arc<Record>),
    /// Answer a request now.
    Reply {
        /// The request's id, as the driver gave it.
        req: RequestId,
        /// The answer: for a change, sent only once it is durable.
        reply: Reply,
    },
    /// Run one attempt of a job (its dispatch record is durable), in the
    /// order given, when a worker is free; report [`Input::Started`] when
    /// it begins and [`Input::Outcome`] when it ends.
    Execute(Execution),
    /// End this attempt: stop it if it runs, drop it if it still waits for
    /// a worker. Its lease expired (it fails), or its job was cancelled
    /// while it waited (it never counted). The core has already ended the
    /// attempt: an outcome reported for it changes nothing.
    Abort {
        /// The job the attempt belongs to.
        id: JobId,
        /// The attempt to end.
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

/// The answer to a request. A change is confirmed only once durable; a
/// read answers at once from the durable state.
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
    /// For [`Input::Status`]: figures, in-flight attempts and the newest
    /// dead jobs.
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
    /// The core is shutting down ([`Input::StopDispatching`]).
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
