//! `GroupCommit`: a ready-made WAL task serving many concurrent appenders.
//!
//! It shows the [`Wal`] driver contract in full and is what the benchmark
//! measures. Appenders send bodies; the task assigns LSNs, writes one batch
//! per wake-up, keeps at most one fdatasync in flight, and answers each
//! appender only after a sync covering its record returned.
//!
//! An append that finds the task idle (nothing queued, written or being
//! synced) writes and syncs its record itself, on its own thread, as the
//! leader of a group of one: a lone appender pays no hand-off to the task
//! and back. The task takes over as soon as appends overlap.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::wal::format::framed_batch_len;
use crate::wal::writer::{PrepareOutcome, SyncOutcome, Wal};

/// Counters of a [`GroupCommit`] task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Records made durable.
    pub records: u64,
    /// Batches written.
    pub batches: u64,
    /// fdatasyncs completed.
    pub syncs: u64,
    /// Appends refused (no space, too large).
    pub refused: u64,
    /// Of `records`, those an appender wrote and synced itself because the
    /// task was idle (each one batch and one sync of its own).
    pub inline: u64,
}

struct Request {
    body: Vec<u8>,
    reply: oneshot::Sender<Result<u64>>,
}

/// What the task and the appenders share.
struct Shared<D: Disk> {
    /// The WAL: held by the task while it has anything queued, written or
    /// in flight; free (for an inline append) only when the task is idle.
    /// `None` once the task has ended or an inline append stopped the WAL.
    wal: Arc<tokio::sync::Mutex<Option<Wal<D>>>>,
    /// The fatal error an inline append met, for the task to report.
    fatal: Mutex<Option<Error>>,
    /// Wakes the idle task when an inline append stopped the WAL.
    stopped: tokio::sync::Notify,
    stats: Mutex<GroupCommitStats>,
}

/// A handle to submit records to a [`GroupCommit`] task. Cheap to clone.
pub struct Appender<D: Disk> {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared<D>>,
}

impl<D: Disk> Clone for Appender<D> {
    fn clone(&self) -> Self {
        Appender {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D: Disk> std::fmt::Debug for Appender<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

impl<D: Disk> Appender<D> {
    /// Appends `body` and resolves to its LSN once it is durable. An error
    /// means the record is not in the log (or, for [`Error::Stopped`], that
    /// the WAL stopped and nothing more is acknowledged).
    ///
    /// If the task is idle, the write and the fdatasync run here (inline on
    /// this thread when the WAL's disk handle is `dedicated`).
    pub async fn append(&self, body: Vec<u8>) -> Result<u64> {
        if let Some(wal) = self.idle_wal() {
            return self.append_inline(wal, body).await;
        }
        let (reply, rx) = oneshot::channel();
        let stopped = || Error::Stopped {
            cause: "the group-commit task has ended".into(),
        };
        self.tx
            .send(Request { body, reply })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The WAL, if the task is idle (nothing queued, written or in flight)
    /// and has not ended.
    fn idle_wal(&self) -> Option<WalGuard<D>> {
        if self.tx.capacity() != self.tx.max_capacity() {
            return None;
        }
        let guard = Arc::clone(&self.shared.wal).try_lock_owned().ok()?;
        guard.is_some().then_some(guard)
    }

    /// Writes and syncs `body` as a group of one, here. If this append is
    /// dropped halfway, the rest of the work continues in a task of its
    /// own: a sync cut off halfway would leave the WAL believing one is
    /// still in flight.
    async fn append_inline(&self, mut wal: WalGuard<D>, body: Vec<u8>) -> Result<u64> {
        let shared = Arc::clone(&self.shared);
        RunToEnd(Some(Box::pin(async move {
            let Some(w) = wal.as_mut() else {
                return Err(Error::Stopped {
                    cause: "the group-commit task has ended".into(),
                });
            };
            let lsn = w.next_lsn();
            match w.append(&[(lsn, &body)]).await {
                Ok(_) => {
                    bump(&shared.stats, |s| {
                        s.records += 1;
                        s.batches += 1;
                        s.syncs += 1;
                        s.inline += 1;
                    });
                    Ok(lsn)
                }
                Err(e) if w.is_stopped() => {
                    // Fail-stop: the task answers what it holds and ends.
                    if let Ok(mut f) = shared.fatal.lock() {
                        *f = Some(e.clone_lossy());
                    }
                    *wal = None;
                    shared.stopped.notify_one();
                    Err(e)
                }
                Err(e) => {
                    bump(&shared.stats, |s| s.refused += 1);
                    Err(e)
                }
            }
        })))
        .await
    }

    /// The task's counters so far.
    pub fn stats(&self) -> GroupCommitStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

/// A future that, if dropped before it finished, finishes in a task of its
/// own (when a runtime is there to run it).
struct RunToEnd<F: Future + Send + 'static>(Option<Pin<Box<F>>>)
where
    F::Output: Send + 'static;

impl<F: Future + Send + 'static> Future for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let Some(f) = self.0.as_mut() else {
            return std::task::Poll::Pending; // polled after it finished
        };
        let out = f.as_mut().poll(cx);
        if out.is_ready() {
            self.0 = None;
        }
        out
    }
}

impl<F: Future + Send + 'static> Drop for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            drop(rt.spawn(f));
        }
    }
}

/// Spawns WAL tasks. See [`GroupCommit::spawn`].
#[derive(Debug)]
pub struct GroupCommit;

type SyncFut = Pin<Box<dyn Future<Output = SyncOutcome> + Send>>;
type PrepFut<F> = Pin<Box<dyn Future<Output = PrepareOutcome<F>> + Send>>;

async fn poll_opt<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Bytes written per batch at most (also bounded by the segment).
const BATCH_BYTES_MAX: u64 = 1 << 20;
/// While a sync is in flight, write early only once this much is queued.
const PIPELINE_BYTES_MIN: u64 = 256 << 10;
/// Requests taken from the channel per wake-up.
const RECV_MAX: usize = 4096;

impl GroupCommit {
    /// Spawns the task owning `wal`. It ends when every [`Appender`] is
    /// dropped (after syncing what was written) or when the WAL stops, and
    /// returns the WAL (or the fatal error).
    pub fn spawn<D: Disk>(
        wal: Wal<D>,
        queue_depth: usize,
    ) -> (Appender<D>, tokio::task::JoinHandle<Result<Wal<D>>>) {
        let (tx, rx) = mpsc::channel(queue_depth.max(1));
        let shared = Arc::new(Shared {
            wal: Arc::new(tokio::sync::Mutex::new(Some(wal))),
            fatal: Mutex::new(None),
            stopped: tokio::sync::Notify::new(),
            stats: Mutex::new(GroupCommitStats::default()),
        });
        let handle = tokio::spawn(run(Arc::clone(&shared), rx));
        (Appender { tx, shared }, handle)
    }
}

fn bump(stats: &Mutex<GroupCommitStats>, f: impl FnOnce(&mut GroupCommitStats)) {
    if let Ok(mut s) = stats.lock() {
        f(&mut s);
    }
}

type WalGuard<D> = tokio::sync::OwnedMutexGuard<Option<Wal<D>>>;

/// The error an inline append stopped the WAL with (or a generic one).
fn fatal_of<D: Disk>(shared: &Shared<D>) -> Error {
    shared
        .fatal
        .lock()
        .ok()
        .and_then(|f| f.as_ref().map(Error::clone_lossy))
        .unwrap_or_else(|| Error::Stopped {
            cause: "the WAL stopped during an inline append".into(),
        })
}

async fn run<D: Disk>(shared: Arc<Shared<D>>, mut rx: mpsc::Receiver<Request>) -> Result<Wal<D>> {
    let stats = &shared.stats;
    let mut queue: Vec<Request> = Vec::new();
    let mut queued_bytes = 0u64;
    // Written, waiting for durability: (lsn, reply), ascending.
    let mut waiting: std::collections::VecDeque<(u64, oneshot::Sender<Result<u64>>)> =
        std::collections::VecDeque::new();
    let mut sync: Option<SyncFut> = None;
    let mut prep: Option<PrepFut<D::File>> = None;
    let mut prep_retry_at: Option<tokio::time::Instant> = None;
    let mut closed = false;
    let mut incoming = Vec::new();
    // Held while anything is queued, written or in flight.
    let mut guard: Option<WalGuard<D>> = None;

    loop {
        let idle = queue.is_empty() && waiting.is_empty() && sync.is_none() && prep.is_none();
        if idle && !closed {
            // Let an uncontended append commit inline meanwhile.
            guard = None;
            tokio::select! {
                biased;
                _ = shared.stopped.notified() => {}
                n = rx.recv_many(&mut incoming, RECV_MAX) => {
                    if n == 0 {
                        closed = true;
                    }
                    for r in incoming.drain(..) {
                        queued_bytes += r.body.len() as u64;
                        queue.push(r);
                    }
                }
                _ = tokio::time::sleep_until(prep_retry_at.unwrap_or_else(tokio::time::Instant::now)), if prep_retry_at.is_some() => {
                    prep_retry_at = None;
                }
            }
        }
        if guard.is_none() {
            guard = Some(Arc::clone(&shared.wal).lock_owned().await);
        }
        let Some(g) = guard.as_mut() else { continue };
        let Some(wal) = g.as_mut() else {
            // An inline append stopped the WAL.
            let e = fatal_of(&shared);
            fail_all(&e, &mut waiting, &mut queue, &mut rx).await;
            return Err(e);
        };
        let max_batch = wal.max_batch_bytes().min(BATCH_BYTES_MAX);
        // 1. Write what is queued: now if the disk is idle, early if a lot is waiting.
        if !queue.is_empty() && (sync.is_none() || queued_bytes >= PIPELINE_BYTES_MIN) {
            write_queued(wal, &mut queue, &mut waiting, max_batch, stats).await?;
            queued_bytes = 0;
        }
        // 2. One sync in flight at most.
        if sync.is_none() {
            if let Some(job) = wal.begin_sync()? {
                sync = Some(Box::pin(job.run()));
            }
        }
        // 3. Keep the next segment ready, off the write path.
        if prep.is_none() && prep_retry_at.is_none_or(|t| tokio::time::Instant::now() >= t) {
            if let Some(job) = wal.begin_prepare() {
                prep = Some(Box::pin(job.run()));
            }
        }
        if closed && queue.is_empty() && sync.is_none() {
            debug_assert!(waiting.is_empty());
            if let Some(job) = prep.take() {
                // Install (or discard) the preparation, so its file is not left half-made.
                let out = job.await;
                if let Err(e) = wal.finish_prepare(out).await {
                    tracing::warn!(error = %e, "could not prepare the next WAL segment");
                }
            }
            return match g.take() {
                Some(wal) => Ok(wal),
                None => Err(fatal_of(&shared)),
            };
        }
        if queue.is_empty() && waiting.is_empty() && sync.is_none() && prep.is_none() {
            continue; // idle: release the WAL and wait for requests
        }
        tokio::select! {
            biased;
            out = poll_opt(&mut sync), if sync.is_some() => {
                sync = None;
                let durable = match wal.complete_sync(out) {
                    Ok(d) => d,
                    Err(e) => {
                        fail_all(&e, &mut waiting, &mut queue, &mut rx).await;
                        return Err(e);
                    }
                };
                let mut n = 0;
                while waiting.front().is_some_and(|(l, _)| *l <= durable) {
                    if let Some((lsn, reply)) = waiting.pop_front() {
                        let _ = reply.send(Ok(lsn));
                        n += 1;
                    }
                }
                bump(stats, |s| { s.syncs += 1; s.records += n; });
                // Let the appenders just answered submit again, so that the
                // next batch carries them too (bigger groups per fsync).
                tokio::task::yield_now().await;
                while let Ok(r) = rx.try_recv() {
                    queued_bytes += r.body.len() as u64;
                    queue.push(r);
                }
            }
            out = poll_opt(&mut prep), if prep.is_some() => {
                prep = None;
                match wal.finish_prepare(out).await {
                    Ok(()) => prep_retry_at = None,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prepare the next WAL segment");
                        prep_retry_at = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                    }
                }
            }
            n = rx.recv_many(&mut incoming, RECV_MAX), if !closed => {
                if n == 0 {
                    closed = true;
                }
                for r in incoming.drain(..) {
                    queued_bytes += r.body.len() as u64;
                    queue.push(r);
                }
            }
        }
    }
}

/// Writes the queue as batches of at most `max_batch` bytes.
async fn write_queued<D: Disk>(
    wal: &mut Wal<D>,
    queue: &mut Vec<Request>,
    waiting: &mut std::collections::VecDeque<(u64, oneshot::Sender<Result<u64>>)>,
    max_batch: u64,
    stats: &Mutex<GroupCommitStats>,
) -> Result<()> {
    let mut reqs = std::mem::take(queue).into_iter().peekable();
    let mut batch: Vec<Request> = Vec::new();
    while reqs.peek().is_some() {
        batch.clear();
        while let Some(r) = reqs.peek() {
            let with = framed_batch_len(batch.iter().chain([r]).map(|x| x.body.len()));
            if !batch.is_empty() && with > max_batch {
                break;
            }
            if let Some(r) = reqs.next() {
                batch.push(r);
            }
        }
        let first = wal.next_lsn();
        let records: Vec<(u64, &[u8])> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| (first + i as u64, r.body.as_slice()))
            .collect();
        match wal.write_batch(&records).await {
            Ok(_) => {
                for (i, r) in batch.drain(..).enumerate() {
                    waiting.push_back((first + i as u64, r.reply));
                }
                bump(stats, |s| s.batches += 1);
            }
            Err(e) if !wal.is_stopped() => {
                // Refused, nothing written (no space, too large): answer
                // these appenders; the LSNs are reissued to the next ones.
                bump(stats, |s| s.refused += batch.len() as u64);
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(e.clone_lossy()));
                }
            }
            Err(e) => {
                for r in batch.drain(..).chain(reqs.by_ref()) {
                    let _ = r.reply.send(Err(e.clone_lossy()));
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn fail_all(
    e: &Error,
    waiting: &mut std::collections::VecDeque<(u64, oneshot::Sender<Result<u64>>)>,
    queue: &mut Vec<Request>,
    rx: &mut mpsc::Receiver<Request>,
) {
    for (_, reply) in waiting.drain(..) {
        let _ = reply.send(Err(e.clone_lossy()));
    }
    for r in queue.drain(..) {
        let _ = r.reply.send(Err(e.clone_lossy()));
    }
    rx.close();
    while let Some(r) = rx.recv().await {
        let _ = r.reply.send(Err(e.clone_lossy()));
    }
}
