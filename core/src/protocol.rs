//! The core's vocabulary with its driver: inputs in, effects out, replies.
//! The crate docs give the contract that ties them together.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobSpec, JobState, JobView, Payload, QueueName};
use crate::record::{Lsn, Record};
use crate::stats::{JobPage, LeaseList, Status};
use crate::time::UnixMillis;

/// A lease's id: the LSN of the dispatch record that handed its attempt
/// to an external worker. Unique forever (LSNs are never reused); leases
/// live in memory only, so after a restart every earlier id is unknown.
pub type LeaseId = u64;

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
        /// The job to cancel, found as [`Input::Get`] finds it; an unknown
        /// one is answered `NotFound`.
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
        /// The job to read: the job with this id, else (an id of digits
        /// only) the job with this number.
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
    /// Stop starting jobs (graceful shutdown): nothing more is dispatched,
    /// enqueued or leased, and waiting lease requests are answered
    /// `Stopping`; running attempts may finish.
    StopDispatching,
    /// An external worker asks for up to `max` ready jobs of `queues`
    /// (highest priority, then oldest, round-robin over the queues named).
    /// Each is handed out by a dispatch record that counts it at once; the
    /// reply comes once they are durable. With nothing ready, it waits
    /// (first come, first served) until jobs are ready or `wait_until`,
    /// then gets what is ready, or an empty list.
    Lease {
        /// Echoed in the [`Reply::Leased`].
        req: RequestId,
        /// 1 to [`LEASE_QUEUES_MAX`] queues; one no job names yet is empty,
        /// a paused one hands out nothing.
        queues: Vec<QueueName>,
        /// 1 to `limits.lease_batch_max` jobs.
        max: u32,
        /// Wait for jobs this many milliseconds at most (up to
        /// `limits.lease_wait_max_ms`), counted from the step that takes
        /// the request and never cut short (the core's `span_end`);
        /// `None` or 0: answer at once.
        wait_ms: Option<u64>,
        /// Who the worker is, echoed in views (at most
        /// [`HOLDER_BYTES_MAX`] bytes, no control characters).
        holder: String,
        /// Which job it takes at once, and its turn while it waits.
        order: WaitOrder,
    },
    /// An external worker renews its lease. Answered at once; nothing is
    /// logged (lease deadlines never are).
    Heartbeat {
        /// Echoed in the [`Reply::Heartbeat`].
        req: RequestId,
        /// The lease, as [`LeasedJob::lease_id`] gave it.
        lease: LeaseId,
        /// The new deadline is now plus this (1 to
        /// `limits.lease_extend_max_ms`); `None`: the job's timeout.
        extend_ms: Option<u64>,
    },
    /// An external worker's attempt succeeded: the job completes. A retry
    /// of a complete that took effect (or is on its way to the log) is
    /// answered the same way and changes nothing more.
    Complete {
        /// Echoed in the [`Reply::Completed`].
        req: RequestId,
        /// The lease.
        lease: LeaseId,
    },
    /// An external worker's attempt failed. Retried like [`Input::Complete`].
    Fail {
        /// Echoed in the [`Reply::Failed`].
        req: RequestId,
        /// The lease.
        lease: LeaseId,
        /// Why (its tail is kept, bounded).
        error: String,
        /// When the job runs again, if its attempts allow.
        retry: Retry,
    },
    /// The client of a waiting [`Input::Lease`] is gone: forget the
    /// request (no reply). One already being served is not affected: give
    /// its leases back with [`Input::ReturnLeases`] if they cannot be
    /// delivered.
    Withdraw {
        /// The lease request.
        req: RequestId,
    },
    /// Leases the driver could not deliver (their request's client was
    /// gone): each current one ends and its job is pending again, the
    /// attempt not counted (no worker ever saw it). No reply.
    ReturnLeases {
        /// The leases.
        leases: Vec<LeaseId>,
    },
    /// A client pauses a queue, or resumes it: while paused it hands out
    /// nothing, to the pool or to leases.
    PauseQueue {
        /// Echoed in the [`Reply::Paused`].
        req: RequestId,
        /// The queue (created if no job named it yet).
        queue: QueueName,
        /// How long, or resume.
        pause: QueuePause,
    },
    /// A client cancels every pending (ready or scheduled) job of a queue.
    PurgeQueue {
        /// Echoed in the [`Reply::Purged`].
        req: RequestId,
        /// The queue.
        queue: QueueName,
    },
    /// A client lists jobs in order of their numbers.
    ListJobs {
        /// Echoed in the [`Reply::Jobs`].
        req: RequestId,
        /// Only this queue's, if given.
        queue: Option<QueueName>,
        /// Only jobs in this state, if given.
        state: Option<JobState>,
        /// Only jobs numbered above this (a [`JobPage::next`] cursor).
        after: Option<u64>,
        /// 1 to [`LIST_JOBS_MAX`] jobs.
        limit: usize,
    },
    /// A client lists the current external leases.
    ListLeases {
        /// Echoed in the [`Reply::Leases`].
        req: RequestId,
    },
    /// Log a record that changes nothing, and answer its LSN once it is
    /// durable: a snapshot at that LSN then covers the whole log.
    Checkpoint {
        /// Echoed in the [`Reply::Checkpoint`].
        req: RequestId,
    },
    /// An external worker gives its attempt back (beanstalkd's `release`):
    /// the job is pending again after `delay_ms`, the attempt not counted
    /// and no failure recorded. Fenced and retried like [`Input::Complete`].
    Release {
        /// Echoed in the [`Reply::Released`].
        req: RequestId,
        /// The lease.
        lease: LeaseId,
        /// The job's priority from now on; `None` keeps it.
        priority: Option<i32>,
        /// Not run again before this many milliseconds (at most
        /// `limits.delay_ms_max`).
        delay_ms: u64,
    },
    /// An external worker sets its job aside (beanstalkd's `bury`): the job
    /// is dead (no failure recorded) until requeued. Fenced and retried
    /// like [`Input::Complete`].
    Bury {
        /// Echoed in the [`Reply::Buried`].
        req: RequestId,
        /// The lease.
        lease: LeaseId,
        /// The job's priority from now on; `None` keeps it.
        priority: Option<i32>,
    },
    /// A client deletes a job that waits: pending (ready or scheduled) or
    /// dead. It is cancelled, once durable. A job in flight, or changing
    /// right now, is a conflict; an unknown or final one is not found.
    Delete {
        /// Echoed in the [`Reply::Deleted`].
        req: RequestId,
        /// The job, found as [`Input::Get`] finds it.
        id: JobId,
    },
    /// A client kicks a waiting job (beanstalkd's `kick-job`): a dead one
    /// is requeued, a scheduled one is ready from now. Anything else is a
    /// conflict; an unknown or final one is not found.
    Kick {
        /// Echoed in the [`Reply::Kicked`].
        req: RequestId,
        /// The job, found as [`Input::Get`] finds it.
        id: JobId,
    },
    /// An external worker asks for one job by id (beanstalkd's
    /// `reserve-job`): leased as [`Input::Lease`] leases, answered with it
    /// once its dispatch is durable. A pending job (ready or scheduled) is
    /// leased at once; a dead one is requeued, then leased in the step its
    /// requeue becomes durable, so no lease waiting on its queue can take
    /// it in between. A job that is running, final or changing is a
    /// conflict.
    LeaseJob {
        /// Echoed in the [`Reply::Leased`].
        req: RequestId,
        /// The job, found as [`Input::Get`] finds it.
        id: JobId,
        /// Who the worker is (as in [`Input::Lease`]).
        holder: String,
    },
}

/// How an [`Input::Lease`] picks its jobs and takes its turn among the
/// requests waiting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WaitOrder {
    /// Round-robin over the queues named, highest priority then oldest
    /// within one; waiting, first come first served (the HTTP API).
    #[default]
    FirstCome,
    /// beanstalkd's `reserve` (one job): the ready job of highest priority,
    /// then lowest number, over every queue named. Waiting, the request
    /// joins each queue's own set of waiting requests; a job that becomes
    /// ready goes to the set member at the queue's rotating cursor, as
    /// beanstalkd 1.12 serves its waiting connections (taken members are
    /// replaced by the set's last; the cursor moves on one per take).
    /// Such requests are served after the first-come ones.
    Beanstalk {
        /// `lives[i]`: which life of `queues[i]` the caller means (the
        /// caller counts them): a queue's cursor starts again at 0 when a
        /// request names a life other than the cursor's, as a beanstalkd
        /// tube dropped and made again does.
        lives: Vec<u64>,
    },
}

/// The most queues one [`Input::Lease`] names.
pub const LEASE_QUEUES_MAX: usize = 16;
/// The longest holder text of a lease, in bytes.
pub const HOLDER_BYTES_MAX: usize = 128;
/// The most jobs one [`Input::ListJobs`] returns.
pub const LIST_JOBS_MAX: usize = 1_000;
/// The most jobs one [`Input::ListJobs`] looks at, matching or not (its
/// page's `next` then says where to go on).
pub const LIST_SCAN_MAX: usize = 10_000;

/// A change to a queue's pause, as a client asks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePause {
    /// Hand out nothing of the queue until it is resumed.
    UntilResumed,
    /// Hand out nothing for at least this many milliseconds from the step
    /// that takes the request (the core's `span_end`), then resume by
    /// itself.
    ForMs(u64),
    /// Resume now.
    Resume,
}

/// When a job whose external attempt failed runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retry {
    /// After the configured backoff, if attempts are left (else dead).
    Policy,
    /// After this many milliseconds (at most `limits.delay_ms_max`), if
    /// attempts are left (else dead).
    InMs(u64),
    /// Never: the job is dead now, whatever attempts are left.
    GiveUp,
}

/// One job handed to an external worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedJob {
    /// The job as it is now: in flight on its new attempt, with its payload.
    pub job: JobView,
    /// The lease: name it in heartbeats, completes and fails.
    pub lease_id: LeaseId,
    /// Report by then (or renew): past it (plus the lease slack) the
    /// attempt fails as timed out and the lease is lost.
    pub lease_until: UnixMillis,
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
    /// For [`Input::Lease`]: the jobs handed out, once durable (maybe none).
    Leased(Result<Vec<LeasedJob>, Rejection>),
    /// For [`Input::Heartbeat`]: the lease's new deadline.
    Heartbeat(Result<UnixMillis, Rejection>),
    /// For [`Input::Complete`]: the completion is durable.
    Completed(Result<(), Rejection>),
    /// For [`Input::Fail`]: the failure is durable.
    Failed(Result<(), Rejection>),
    /// For [`Input::PauseQueue`]: the pause (or resume) is durable.
    Paused(Result<(), Rejection>),
    /// For [`Input::PurgeQueue`]: how many jobs were cancelled, once durable.
    Purged(Result<u64, Rejection>),
    /// For [`Input::ListJobs`]: one page of jobs.
    Jobs(Result<JobPage, Rejection>),
    /// For [`Input::ListLeases`]: the current external leases.
    Leases(LeaseList),
    /// For [`Input::Checkpoint`]: the LSN of the checkpoint, once durable.
    Checkpoint(Result<Lsn, Rejection>),
    /// For [`Input::Release`]: the job is pending again, durably.
    Released(Result<(), Rejection>),
    /// For [`Input::Bury`]: the job is dead, durably.
    Buried(Result<(), Rejection>),
    /// For [`Input::Delete`]: the job is cancelled, durably.
    Deleted(Result<(), Rejection>),
    /// For [`Input::Kick`]: the job is ready (or requeued), durably.
    Kicked(Result<(), Rejection>),
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
    /// The lease is not current: it ended (completed, failed, expired or
    /// given back) or beaver restarted since. Nothing was changed.
    LeaseLost {
        /// The lease named.
        lease: LeaseId,
    },
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
            Rejection::LeaseLost { lease } => write!(
                f,
                "lease {lease} is not current (it ended, expired, or beaver restarted since); nothing was changed: lease the job again to work on it"
            ),
        }
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::Rejection;

    /// Each rejection's text names what was wrong (and, where there is
    /// one, the job and what to do).
    #[test]
    fn a_rejection_reads_as_its_reason() {
        let reason = || "too big".to_owned();
        let cases = [
            (
                Rejection::Invalid {
                    index: Some(2),
                    field: "x".into(),
                    reason: reason(),
                },
                "job 2: field `x`: too big",
            ),
            (
                Rejection::Invalid {
                    index: None,
                    field: "x".into(),
                    reason: reason(),
                },
                "`x`: too big",
            ),
            (
                Rejection::TooLarge {
                    index: Some(1),
                    reason: reason(),
                },
                "job 1: too big",
            ),
            (
                Rejection::Busy {
                    reason: reason(),
                    retry_after_ms: 5,
                },
                "too big; retry in 5 ms",
            ),
            (Rejection::Conflict { reason: reason() }, "too big"),
        ];
        for (rejection, text) in cases {
            assert_eq!(rejection.to_string(), text);
        }
        let lost = Rejection::LeaseLost { lease: 7 }.to_string();
        assert!(lost.starts_with("lease 7 is not current"), "{lost}");
    }
}
