//! The in-process client: the one way in for HTTP, CLI and simulator alike.

use std::sync::Arc;

use beaver_core::{Enqueued, JobId, JobSpec, JobView, Rejection, Reply, RequeueTarget};
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
    /// Not a queue operation: asks the engine to snapshot now; answered
    /// with the LSN the snapshot will cover (or busy, when builds wait).
    Snapshot(oneshot::Sender<Result<u64, Rejection>>),
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
}

impl Client {
    pub(crate) fn new(tx: mpsc::Sender<Request>, figures: Arc<Figures>, workers: u32) -> Client {
        Client {
            tx,
            figures,
            workers,
        }
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
        if beaver_core::mutants::active(beaver_core::mutants::Mutant::ClientResolvesEarly) {
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
    /// task); returns the LSN it will cover. The snapshot is written in the
    /// background: watch `status().engine.snapshot_lsn`. [`Rejection::Busy`]
    /// when builds already wait for their turn.
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

/// The planted bug [`beaver_core::mutants::Mutant::ClientResolvesEarly`].
#[cfg(feature = "mutants")]
impl Client {
    fn enqueue_resolving_early(&self, jobs: Vec<JobSpec>) -> Result<Vec<Enqueued>, Rejection> {
        let answers = jobs
            .iter()
            .map(|j| Enqueued {
                id: j.id.clone().unwrap_or_else(|| JobId::assigned(0)),
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
