//! The proposer's side of the group commit: hand-overs, in-place commits
//! and the reports.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::disk::Disk;
use crate::error::Error;
use crate::wal::group::log::Log;
use crate::wal::group::{CommitEvent, CommitHooks, LogEntry, LoneClient, ToWal, send};

/// The one task that proposes records (the engine's core task): what the
/// group commit asks of it.
pub trait Proposer<R> {
    /// What a report may fail with; a storage error becomes one.
    type Error: From<Error>;
    /// Takes the records proposed since the last call, LSNs dense and
    /// increasing (they may start again at a failed LSN).
    fn take_proposed(&mut self) -> Vec<R>;
    /// The LSN the next proposed record will carry.
    fn next_lsn(&self) -> u64;
    /// Whether a request is waiting to be taken: the proposer is not alone.
    fn others_waiting(&self) -> bool;
    /// Takes one report (in the order they happened).
    fn report(&mut self, event: CommitEvent) -> Result<(), Self::Error>;
}

/// The proposer's handle on the group commit (see the [module
/// docs](crate::wal::group)): it hands rounds of records to the
/// [`crate::wal::WalTask`], or commits a lone client's in place, and
/// delivers the WAL task's reports.
pub struct GroupCommit<D: Disk, R: LogEntry, H: CommitHooks> {
    log: Arc<Mutex<Log<D, H>>>,
    to_wal: mpsc::Sender<ToWal<R>>,
    reports: mpsc::Receiver<CommitEvent>,
    /// Record hand-overs sent to the WAL task.
    sent: u64,
    lone: LoneClient,
}

impl<D: Disk, R: LogEntry, H: CommitHooks> std::fmt::Debug for GroupCommit<D, R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("sent", &self.sent)
            .field("lone", &self.lone)
            .finish_non_exhaustive()
    }
}

impl<D: Disk, R: LogEntry, H: CommitHooks> GroupCommit<D, R, H> {
    pub(crate) fn from_parts(
        log: Arc<Mutex<Log<D, H>>>,
        to_wal: mpsc::Sender<ToWal<R>>,
        reports: mpsc::Receiver<CommitEvent>,
    ) -> Self {
        GroupCommit {
            log,
            to_wal,
            reports,
            sent: 0,
            lone: LoneClient::default(),
        }
    }

    /// Waits for reports of the WAL task and takes up to `max` into `buf`;
    /// 0 once the WAL task has ended (after [`CommitEvent::Fatal`], or
    /// without a word if it panicked). Cancel-safe.
    pub async fn reports(&mut self, buf: &mut Vec<CommitEvent>, max: usize) -> usize {
        self.reports.recv_many(buf, max).await
    }

    /// Hands the reports in `buf` to `proposer`, in order, and learns from
    /// each durability report whether the proposer looks like a lone client.
    pub fn deliver<P: Proposer<R>>(
        &mut self,
        buf: &mut Vec<CommitEvent>,
        proposer: &mut P,
    ) -> Result<(), P::Error> {
        for ev in buf.drain(..) {
            if let CommitEvent::Durable(upto) = ev {
                self.lone.synced(proposer.next_lsn() == upto + 1);
            }
            proposer.report(ev)?;
        }
        Ok(())
    }

    /// Makes the records `proposer` proposed this round (for `requests`
    /// requests) durable: commits them in place when they look like a
    /// lone client's ([`LoneClient`]) and the log is idle; otherwise, and
    /// for records its reports meanwhile produce, hands them to the WAL
    /// task in one message. Their durability is reported either way; an
    /// `Err` is fatal (the WAL stopped, or the proposer failed a report).
    pub async fn commit<P: Proposer<R>>(
        &mut self,
        requests: u32,
        proposer: &mut P,
    ) -> Result<(), P::Error> {
        let records = proposer.take_proposed();
        if records.is_empty() {
            return Ok(());
        }
        self.lone.proposed(requests);
        let rest = if !self.lone.looks_alone(requests) {
            records
        } else {
            tokio::task::yield_now().await;
            if proposer.others_waiting() {
                self.lone.interrupted();
                records
            } else {
                self.commit_in_place(records, proposer).await?
            }
        };
        if !rest.is_empty() {
            self.sent += 1;
            let _ = send(&self.to_wal, ToWal::Records(rest)).await;
        }
        Ok(())
    }

    /// Writes and syncs `records` on this task if the log is idle; returns
    /// what is left to hand over: `records` if the log was busy, else what
    /// the reports of this commit made the proposer propose.
    async fn commit_in_place<P: Proposer<R>>(
        &mut self,
        records: Vec<R>,
        proposer: &mut P,
    ) -> Result<Vec<R>, P::Error> {
        let log = Arc::clone(&self.log);
        // The WAL task holds the lock only for one operation at a time, never
        // while waiting for the proposer: waiting here costs what handing the
        // records over would (it would do that operation first).
        let mut log = log.lock().await;
        let Some(first) = records.first() else {
            return Ok(records);
        };
        if !log.idle_for(self.sent, first.lsn()) {
            return Ok(records);
        }
        let closed_before = log.wal.closed_segment_count();
        let mut events = Vec::new();
        log.write(&records, &mut events).await?;
        for ev in events.drain(..) {
            proposer.report(ev)?;
        }
        if log.sync_now(&mut events).await? {
            log.hooks.committed_in_place();
        }
        log.housekeeping(&mut events);
        // A new segment (the prepared one, or one made inline): the WAL task
        // prepares the next and checks the reserve before more enqueues go
        // in, not at its next tick.
        let rotated = log.wal.closed_segment_count() != closed_before;
        drop(log);
        if rotated {
            let _ = send(&self.to_wal, ToWal::Wake).await;
        }
        self.lone.committed_in_place(proposer.others_waiting());
        for ev in events {
            proposer.report(ev)?;
        }
        Ok(proposer.take_proposed())
    }

    /// A handle that asks the WAL task to delete covered segments.
    pub fn deleter(&self) -> SegmentDeleter<R> {
        SegmentDeleter {
            to_wal: self.to_wal.clone(),
        }
    }
}

/// Asks the WAL task to delete the segments a snapshot covers (between its
/// other work, so the log's state stays the WAL task's). Cheap to clone;
/// the WAL task runs until every handle is dropped.
pub struct SegmentDeleter<R> {
    to_wal: mpsc::Sender<ToWal<R>>,
}

impl<R> Clone for SegmentDeleter<R> {
    fn clone(&self) -> Self {
        SegmentDeleter {
            to_wal: self.to_wal.clone(),
        }
    }
}

impl<R> std::fmt::Debug for SegmentDeleter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentDeleter").finish_non_exhaustive()
    }
}

impl<R: LogEntry> SegmentDeleter<R> {
    /// Deletes the closed segments whose every record is at or below
    /// `upto_lsn` (pass the older kept snapshot's LSN), then fsyncs the
    /// directory; returns when done, or at once if the WAL task has ended.
    /// A failed deletion is logged, not fatal: the files stay.
    pub async fn delete_through(&self, upto_lsn: u64) {
        let (done, wait) = oneshot::channel();
        if send(&self.to_wal, ToWal::DeleteThrough(upto_lsn, done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}
