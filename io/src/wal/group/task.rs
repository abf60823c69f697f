//! The WAL task: takes the proposer's records, writes and syncs them (one
//! fdatasync in flight, the next batches written meanwhile), and keeps the
//! log's periodic work: the next segment prepared ahead of need, free
//! space checked against the reserve, covered segments deleted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use crate::disk::Disk;
use crate::error::Error;
use crate::wal::group::log::Log;
use crate::wal::group::{CommitEvent, CommitHooks, LogEntry, ToWal, send};
use crate::wal::writer::{DeleteJob, PrepareOutcome, SyncOutcome};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Messages taken from the proposer per wake-up.
const RECV_MAX: usize = 256;

/// The WAL task of a [`crate::wal::GroupCommit`]; run it with
/// [`WalTask::run`].
pub struct WalTask<D: Disk, R: LogEntry, H: CommitHooks> {
    log: Arc<Mutex<Log<D, H>>>,
    hooks: Arc<H>,
    rx: mpsc::Receiver<ToWal<R>>,
    events: mpsc::Sender<CommitEvent>,
    space_check_interval_ms: u64,
}

impl<D: Disk, R: LogEntry, H: CommitHooks> std::fmt::Debug for WalTask<D, R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalTask").finish_non_exhaustive()
    }
}

/// A sync running: its outcome, when it began, how many records it covers.
type InFlight = (Boxed<SyncOutcome>, Instant, u64);

/// What one turn of the loop decided.
enum Turn {
    /// Report, keep house, go on.
    Go,
    /// The proposer is gone and the sync in flight was reported: stop.
    End,
}

/// The loop's state between turns.
struct Running<D: Disk, R> {
    sync: Option<InFlight>,
    prepare: Option<Boxed<PrepareOutcome<D::File>>>,
    /// No preparation starts before this (after one failed).
    prepare_after: Instant,
    inbox: Vec<ToWal<R>>,
    out: Vec<CommitEvent>,
    /// The disk is in the space reserve (as last reported).
    pressure: bool,
    space_check: Instant,
    space_every: Duration,
    /// The log's own use of the disk changed (a segment allocated or
    /// deleted): check the reserve at the end of this turn, not at the next
    /// tick, so new jobs are refused (or accepted again) at once.
    space_changed: bool,
}

impl<D: Disk, R: LogEntry, H: CommitHooks> WalTask<D, R, H> {
    pub(crate) fn new(
        log: Arc<Mutex<Log<D, H>>>,
        hooks: Arc<H>,
        rx: mpsc::Receiver<ToWal<R>>,
        events: mpsc::Sender<CommitEvent>,
        space_check_interval_ms: u64,
    ) -> Self {
        WalTask {
            log,
            hooks,
            rx,
            events,
            space_check_interval_ms,
        }
    }

    /// Runs until the proposer is gone (after reporting the sync in
    /// flight) or a write or sync fails (reported as
    /// [`CommitEvent::Fatal`]).
    pub async fn run(mut self) {
        let mut t = Running {
            sync: None,
            prepare: None,
            prepare_after: Instant::now(),
            inbox: Vec::with_capacity(RECV_MAX),
            out: Vec::new(),
            pressure: false,
            space_check: Instant::now(),
            space_every: Duration::from_millis(self.space_check_interval_ms.max(1)),
            space_changed: false,
        };
        loop {
            if let Err(e) = self.begin_work(&mut t).await {
                return self.fatal(e).await;
            }
            let turn = tokio::select! {
                biased;
                outcome = sync_done(&mut t.sync), if t.sync.is_some() => self.synced(&mut t, outcome).await,
                outcome = poll_opt(&mut t.prepare), if t.prepare.is_some() => self.prepared(&mut t, outcome).await,
                // Wakes an idle log for its periodic work: the space check
                // (a full disk must be noticed freed even when nothing is
                // written), a postponed preparation, the snapshot timer.
                _ = tokio::time::sleep_until(t.space_check + t.space_every) => Ok(Turn::Go),
                n = self.rx.recv_many(&mut t.inbox, RECV_MAX) => self.take(&mut t, n).await,
            };
            match turn {
                Ok(Turn::Go) => {}
                Ok(Turn::End) => return,
                Err(e) => return self.fatal(e).await,
            }
            if !self.keep_house(&mut t).await {
                return;
            }
        }
    }

    /// Starts the next segment's preparation and a sync of what was
    /// written, where none runs.
    async fn begin_work(&self, t: &mut Running<D, R>) -> Result<(), Error> {
        let begun = {
            let mut log = self.log.lock().await;
            if t.prepare.is_none() && t.prepare_after <= Instant::now() {
                if let Some(job) = log.wal.begin_prepare() {
                    t.prepare = Some(Box::pin(job.run()));
                }
            }
            if t.sync.is_none() && log.wal.written_lsn() > log.wal.durable_lsn() {
                log.begin_sync()?
            } else {
                None
            }
        };
        if let Some((job, records)) = begun {
            t.sync = Some((Box::pin(job.run()), Instant::now(), records));
        }
        Ok(())
    }

    async fn synced(&self, t: &mut Running<D, R>, outcome: SyncOutcome) -> Result<Turn, Error> {
        let Some((_, began, records)) = t.sync.take() else {
            return Ok(Turn::Go);
        };
        self.log
            .lock()
            .await
            .synced(outcome, began, records, &mut t.out)?;
        Ok(Turn::Go)
    }

    async fn prepared(
        &self,
        t: &mut Running<D, R>,
        outcome: PrepareOutcome<D::File>,
    ) -> Result<Turn, Error> {
        t.prepare = None;
        let mut log = self.log.lock().await;
        if let Err(e) = log.wal.finish_prepare(outcome).await {
            if log.wal.is_stopped() {
                return Err(e);
            }
            // Not fatal: rotation will prepare inline (and report no space there).
            // Wait before the next try, or a full disk makes this a hot loop.
            t.prepare_after = Instant::now() + t.space_every;
            warn!(error = %e, "could not prepare the next WAL segment ahead of need");
        } else {
            t.space_changed = true;
        }
        Ok(Turn::Go)
    }

    /// Takes `n` messages from the proposer (0: it is gone).
    async fn take(&self, t: &mut Running<D, R>, n: usize) -> Result<Turn, Error> {
        if n == 0 {
            // The proposer is gone: finish the sync in flight and stop.
            if let Some((fut, began, records)) = t.sync.take() {
                let outcome = fut.await;
                let _ = self
                    .log
                    .lock()
                    .await
                    .synced(outcome, began, records, &mut t.out);
                self.report(&mut t.out).await;
            }
            return Ok(Turn::End);
        }
        let mut log = self.log.lock().await;
        let mut records: Vec<R> = Vec::new();
        let mut deletions = Vec::new();
        for msg in t.inbox.drain(..) {
            match msg {
                ToWal::Records(rs) => {
                    log.taken += 1;
                    records.extend(rs);
                }
                ToWal::DeleteThrough(lsn, done) => {
                    deletions.push((lsn, log.wal.begin_delete_through(lsn)?, done));
                }
                ToWal::Wake => t.space_changed = true,
            }
        }
        log.write(&records, &mut t.out).await?;
        if !deletions.is_empty() {
            // Before the deleter is answered: it then learns what is left.
            let closed = log.wal.closed_segments_last_lsn().unwrap_or(0);
            self.hooks.closed_through(closed);
        }
        // File removals and their directory fsync need nothing of the log:
        // the proposer may commit in place meanwhile.
        drop(log);
        for (lsn, job, done) in deletions {
            if let Some(job) = job {
                delete(lsn, job).await;
                t.space_changed = true;
            }
            let _ = done.send(());
        }
        Ok(Turn::Go)
    }

    /// After each turn: reports, the housekeeping's reports, the space
    /// check when due. `false` once the proposer is gone.
    async fn keep_house(&self, t: &mut Running<D, R>) -> bool {
        // The durability report first, then the housekeeping's.
        if !self.report(&mut t.out).await {
            return false;
        }
        self.log.lock().await.housekeeping(&mut t.out);
        if !self.report(&mut t.out).await {
            return false;
        }
        if t.space_changed || t.space_check.elapsed() >= t.space_every {
            t.space_changed = false;
            t.space_check = Instant::now();
            let estimate = self.hooks.snapshot_bytes();
            let status = self.log.lock().await.wal.space_status(estimate).await;
            if let Ok(s) = &status {
                self.hooks.space_checked(s.free_bytes);
            }
            match status {
                Ok(s) if s.pressure != t.pressure => {
                    t.pressure = s.pressure;
                    warn!(
                        free_bytes = s.free_bytes,
                        reserve_bytes = s.reserve_bytes,
                        full = t.pressure,
                        "disk space reserve"
                    );
                    let _ = send(&self.events, CommitEvent::DiskFull(t.pressure)).await;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "could not read free disk space"),
            }
        }
        true
    }

    /// Sends the proposer these events; `false` once it is gone.
    async fn report(&self, out: &mut Vec<CommitEvent>) -> bool {
        for ev in out.drain(..) {
            if send(&self.events, ev).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn fatal(self, e: Error) {
        error!(error = %e, "storage failed: fail-stop");
        let _ = send(&self.events, CommitEvent::Fatal(e)).await;
    }
}

/// Deletes covered segments; a failure is logged (the files stay, and
/// recovery keeps reading them), never fatal.
async fn delete<D: Disk>(lsn: u64, job: DeleteJob<D>) {
    match job.run().await {
        Ok(n) => debug!(
            segments = n,
            upto_lsn = lsn,
            "deleted WAL segments covered by the older snapshot"
        ),
        Err(e) => warn!(error = %e, "could not delete covered WAL segments"),
    }
}

async fn sync_done(sync: &mut Option<InFlight>) -> SyncOutcome {
    match sync {
        Some((f, _, _)) => f.await,
        None => std::future::pending().await,
    }
}

async fn poll_opt<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
