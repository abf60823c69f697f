//! The in-process client: the one way in for HTTP, CLI and simulator alike.

use std::sync::Arc;

use std::time::Duration;

use beaver_core::{
    Enqueued, JobId, JobPage, JobSpec, JobState, JobView, LeaseId, LeaseList, LeasedJob, Lsn,
    QueueName, QueuePause, Rejection, Reply, RequeueTarget, Retry, UnixMillis, WaitOrder,
};
use tokio::sync::{mpsc, oneshot};

use crate::figures::{EngineStatus, Figures};

/// What a request asks of the core.
#[derive(Debug)]
pub(crate) enum Ask {
    Enqueue(Vec<JobSpec>),
    Get(JobId),
    Status,
    Cancel(JobId),
    Requeue(RequeueTarget),
    ListDead(usize),
    Lease(LeaseAsk),
    Heartbeat(LeaseId, Option<u64>),
    Complete(LeaseId),
    Fail(LeaseId, String, Retry),
    Pause(QueueName, QueuePause),
    Purge(QueueName),
    ListJobs(JobFilter),
    ListLeases,
    Checkpoint,
    Release(LeaseId, Option<i32>, u64),
    Bury(LeaseId, Option<i32>),
    Delete(JobId),
    Kick(JobId),
    LeaseJob(JobId, String),
    /// Not a queue operation: asks the engine to compact its log now
    /// (checkpoint, snapshot); answered with the durable LSN it will cover.
    Snapshot(oneshot::Sender<Result<u64, Rejection>>),
}

/// A lease request, its wait still relative (the core task's clock turns
/// it into a deadline).
#[derive(Debug)]
pub(crate) struct LeaseAsk {
    pub queues: Vec<QueueName>,
    pub max: u32,
    pub wait: Option<Duration>,
    pub holder: String,
    pub order: WaitOrder,
}

/// Which jobs a listing shows.
#[derive(Debug)]
pub(crate) struct JobFilter {
    pub queue: Option<QueueName>,
    pub state: Option<JobState>,
    pub after: Option<u64>,
    pub limit: usize,
}

/// A request and where its reply goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub ask: Ask,
    pub reply: oneshot::Sender<Reply>,
}

/// A handle to a running engine. Cheap to clone.
///
/// Guarantees: every future resolves only from the core's reply, so an
/// `Ok` from [`Client::enqueue`] means the jobs are durable. When too many
/// requests wait, the answer is [`Rejection::Busy`] at once; once the engine
/// stopped, [`Rejection::Stopping`].
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Request>,
    figures: Arc<Figures>,
    workers: u32,
    /// The planted bug the node runs with (the simulator's own test).
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    planted: beaver_io::Planted,
}

impl Client {
    pub(crate) fn new(
        tx: mpsc::Sender<Request>,
        figures: Arc<Figures>,
        workers: u32,
        planted: beaver_io::Planted,
    ) -> Client {
        Client {
            tx,
            figures,
            workers,
            planted,
        }
    }

    /// The planted bug the node runs with (the simulator's own test).
    #[cfg(feature = "mutants")]
    pub(crate) fn planted(&self) -> beaver_io::Planted {
        self.planted
    }

    fn send(&self, ask: Ask) -> Result<oneshot::Receiver<Reply>, Rejection> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Request { ask, reply }) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Rejection::Busy {
                reason: "too many requests are waiting for the queue".into(),
                retry_after_ms: 100,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Rejection::Stopping),
        }
    }

    async fn ask(&self, ask: Ask) -> Result<Reply, Rejection> {
        self.send(ask)?.await.map_err(|_| Rejection::Stopping)
    }

    /// Enqueues jobs, all or nothing; resolves once they are durable.
    pub async fn enqueue(&self, jobs: Vec<JobSpec>) -> Result<Vec<Enqueued>, Rejection> {
        #[cfg(feature = "mutants")]
        if self
            .planted
            .is(beaver_core::mutants::Mutant::ClientResolvesEarly)
        {
            return self.enqueue_resolving_early(jobs);
        }
        match self.ask(Ask::Enqueue(jobs)).await? {
            Reply::Enqueued(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// One job's durable state (`None`: unknown or purged).
    pub async fn get(&self, id: JobId) -> Result<Option<JobView>, Rejection> {
        match self.ask(Ask::Get(id)).await? {
            Reply::Job(j) => Ok(j),
            other => Err(unexpected(other)),
        }
    }

    /// The queue's status and the engine's figures.
    pub async fn status(&self) -> Result<EngineStatus, Rejection> {
        match self.ask(Ask::Status).await? {
            Reply::Status(s) => Ok(EngineStatus {
                queue: *s,
                engine: self.figures.engine(self.workers),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels a pending job; resolves once the cancellation is durable.
    pub async fn cancel(&self, id: JobId) -> Result<(), Rejection> {
        match self.ask(Ask::Cancel(id)).await? {
            Reply::Cancelled(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Requeues dead jobs; returns how many, once durable.
    pub async fn requeue(&self, target: RequeueTarget) -> Result<u64, Rejection> {
        match self.ask(Ask::Requeue(target)).await? {
            Reply::Requeued(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Asks for a snapshot of the durable state now (built off the core's
    /// task) that frees what it can of the log: the engine logs a
    /// checkpoint and snapshots at it, twice if that lets more segments go
    /// (a segment is deleted only once the older of the two kept
    /// snapshots covers it). Returns the durable LSN now: the snapshots
    /// cover it and more. They are written in the background: watch
    /// `status().engine.snapshot_lsn` pass the returned LSN.
    pub async fn snapshot(&self) -> Result<u64, Rejection> {
        let (tx, rx) = oneshot::channel();
        let _unused = self.send(Ask::Snapshot(tx))?;
        rx.await.map_err(|_| Rejection::Stopping)?
    }

    /// Dead jobs, newest first.
    pub async fn list_dead(&self, limit: usize) -> Result<Vec<JobView>, Rejection> {
        match self.ask(Ask::ListDead(limit)).await? {
            Reply::Dead(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }
}

/// External workers: leases, their renewals and ends.
impl Client {
    /// Leases up to `max` ready jobs of `queues` to `holder`, waiting up to
    /// `wait` for some to be ready (`None`: answer at once). Resolves once
    /// their dispatch records are durable; an empty list when none came.
    /// Dropping the future while it waits takes no job.
    pub async fn lease(
        &self,
        queues: Vec<QueueName>,
        max: u32,
        wait: Option<Duration>,
        holder: &str,
    ) -> Result<Vec<LeasedJob>, Rejection> {
        self.lease_in_order(queues, max, wait, holder, WaitOrder::FirstCome)
            .await
    }

    /// [`Client::lease`] with the jobs picked, and the wait served, as
    /// `order` says.
    pub async fn lease_in_order(
        &self,
        queues: Vec<QueueName>,
        max: u32,
        wait: Option<Duration>,
        holder: &str,
        order: WaitOrder,
    ) -> Result<Vec<LeasedJob>, Rejection> {
        let ask = LeaseAsk {
            queues,
            max,
            wait,
            holder: holder.to_owned(),
            order,
        };
        match self.ask(Ask::Lease(ask)).await? {
            Reply::Leased(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Renews a lease by `extend_ms` from now (`None`: the job's timeout);
    /// returns the new deadline. [`Rejection::LeaseLost`] if not current.
    pub async fn heartbeat(
        &self,
        lease: LeaseId,
        extend_ms: Option<u64>,
    ) -> Result<UnixMillis, Rejection> {
        match self.ask(Ask::Heartbeat(lease, extend_ms)).await? {
            Reply::Heartbeat(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Completes a lease's job; resolves once durable. A retry of a
    /// completion that took effect is answered alike and changes nothing.
    pub async fn complete(&self, lease: LeaseId) -> Result<(), Rejection> {
        match self.ask(Ask::Complete(lease)).await? {
            Reply::Completed(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Fails a lease's attempt; resolves once durable. Retried like
    /// [`Client::complete`].
    pub async fn fail(&self, lease: LeaseId, error: String, retry: Retry) -> Result<(), Rejection> {
        match self.ask(Ask::Fail(lease, error, retry)).await? {
            Reply::Failed(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Gives a lease's attempt back: the job is pending again after
    /// `delay_ms` (with `priority` if given), the attempt not counted and
    /// no failure recorded; resolves once durable. Retried like
    /// [`Client::complete`].
    pub async fn release(
        &self,
        lease: LeaseId,
        priority: Option<i32>,
        delay_ms: u64,
    ) -> Result<(), Rejection> {
        match self.ask(Ask::Release(lease, priority, delay_ms)).await? {
            Reply::Released(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Sets a lease's job aside: dead (with `priority` if given) until
    /// requeued, no failure recorded; resolves once durable.
    pub async fn bury(&self, lease: LeaseId, priority: Option<i32>) -> Result<(), Rejection> {
        match self.ask(Ask::Bury(lease, priority)).await? {
            Reply::Buried(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a job that waits (pending or dead): it is cancelled;
    /// resolves once durable. A job in flight is a conflict.
    pub async fn delete(&self, id: JobId) -> Result<(), Rejection> {
        match self.ask(Ask::Delete(id)).await? {
            Reply::Deleted(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Kicks a waiting job: a dead one is requeued, a scheduled one is
    /// ready now; resolves once durable.
    pub async fn kick(&self, id: JobId) -> Result<(), Rejection> {
        match self.ask(Ask::Kick(id)).await? {
            Reply::Kicked(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Leases the pending job `id` (ready or scheduled) to `holder`;
    /// resolves with it once its dispatch is durable.
    pub async fn lease_job(&self, id: JobId, holder: &str) -> Result<LeasedJob, Rejection> {
        match self.ask(Ask::LeaseJob(id, holder.to_owned())).await? {
            Reply::Leased(Ok(mut jobs)) if jobs.len() == 1 => Ok(jobs.remove(0)),
            Reply::Leased(Err(r)) => Err(r),
            other => Err(unexpected(other)),
        }
    }

    /// The current external leases (the lowest ids, and how many in all).
    pub async fn list_leases(&self) -> Result<LeaseList, Rejection> {
        match self.ask(Ask::ListLeases).await? {
            Reply::Leases(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }
}

/// Queue controls and listings.
impl Client {
    /// Pauses or resumes a queue; resolves once durable.
    pub async fn pause_queue(&self, queue: QueueName, pause: QueuePause) -> Result<(), Rejection> {
        match self.ask(Ask::Pause(queue, pause)).await? {
            Reply::Paused(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Cancels every pending job of a queue; returns how many, once durable.
    pub async fn purge_queue(&self, queue: QueueName) -> Result<u64, Rejection> {
        match self.ask(Ask::Purge(queue)).await? {
            Reply::Purged(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// One page of jobs in order of their numbers, of one queue and one
    /// state if given, numbered above `after`; at most `limit` (1 to
    /// [`beaver_core::protocol::LIST_JOBS_MAX`]).
    pub async fn list_jobs(
        &self,
        queue: Option<QueueName>,
        state: Option<JobState>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<JobPage, Rejection> {
        let filter = JobFilter {
            queue,
            state,
            after,
            limit,
        };
        match self.ask(Ask::ListJobs(filter)).await? {
            Reply::Jobs(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Logs a record that changes nothing; returns its LSN once durable (a
    /// snapshot at that LSN covers the whole log).
    pub async fn checkpoint(&self) -> Result<Lsn, Rejection> {
        match self.ask(Ask::Checkpoint).await? {
            Reply::Checkpoint(r) => r,
            other => Err(unexpected(other)),
        }
    }
}

/// The planted bug [`beaver_core::mutants::Mutant::ClientResolvesEarly`].
#[cfg(feature = "mutants")]
impl Client {
    fn enqueue_resolving_early(&self, jobs: Vec<JobSpec>) -> Result<Vec<Enqueued>, Rejection> {
        let answers = jobs
            .iter()
            .map(|j| Enqueued {
                id: j.id.clone().unwrap_or_else(|| JobId::assigned(0, false)),
                duplicate: false,
            })
            .collect();
        let (reply, _ignored) = oneshot::channel();
        match self.tx.try_send(Request {
            ask: Ask::Enqueue(jobs),
            reply,
        }) {
            Ok(()) => Ok(answers),
            Err(_) => Err(Rejection::Stopping),
        }
    }
}

fn unexpected(reply: Reply) -> Rejection {
    Rejection::Storage {
        reason: format!("internal error: unexpected reply {reply:?}"),
    }
}
