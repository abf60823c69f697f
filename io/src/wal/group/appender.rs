//! Many concurrent appenders over the group commit, for benchmarks and
//! tests: a small proposer task plays the engine's core task (it assigns
//! LSNs, hands rounds over or commits a lone appender's in place, answers
//! each append once durable), so what they measure and check is the path
//! production runs.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::sync::{mpsc, oneshot};

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::wal::group::{
    CommitEvent, CommitHooks, CommitSettings, GroupCommit, LogEntry, Proposer,
};
use crate::wal::writer::Wal;

/// Appends taken from the channel per turn (as the engine's core task).
const RECV_MAX: usize = 256;
/// Reports taken per turn (as the engine's core task).
const REPORTS_PER_TURN: usize = 64;

/// Counters of an [`Appender`]'s group commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Records made durable.
    pub records: u64,
    /// fdatasyncs that made records durable.
    pub syncs: u64,
    /// Of `syncs`, the proposer's own (a lone appender's in-place commit).
    pub in_place: u64,
    /// Appends refused (no space, too large).
    pub refused: u64,
}

/// A handle to append records through a group commit. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Append>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

/// The proposer task of an [`Appender`]: resolves to `Err` with the fatal
/// error if the WAL stopped, to `Ok` once every appender is dropped and
/// every append answered.
pub type AppenderTask = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// The WAL task of an [`Appender`]'s group commit.
pub type AppenderWalTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

struct Append {
    body: Vec<u8>,
    reply: oneshot::Sender<Result<u64>>,
}

/// A record body with its LSN.
struct Body {
    lsn: u64,
    bytes: Vec<u8>,
}

impl LogEntry for Body {
    fn lsn(&self) -> u64 {
        self.lsn
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
    }
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    syncs: AtomicU64,
    in_place: AtomicU64,
    refused: AtomicU64,
}

impl CommitHooks for Counters {
    fn synced(&self, _upto: u64, records: u64, _secs: f64) {
        self.syncs.fetch_add(1, Relaxed);
        self.records.fetch_add(records, Relaxed);
    }

    fn committed_in_place(&self) {
        self.in_place.fetch_add(1, Relaxed);
    }
}

impl Appender {
    /// Starts a group commit on `wal` for appenders that may have `depth`
    /// appends waiting. Spawn the proposer task where the engine runs its
    /// core task and the WAL task where it runs its WAL task (a thread of
    /// its own, the WAL on a [`Disk::dedicated`] handle), or both on one
    /// runtime.
    pub fn start<D: Disk>(wal: Wal<D>, depth: usize) -> (Appender, AppenderTask, AppenderWalTask) {
        let counters = Arc::new(Counters::default());
        let next_lsn = wal.next_lsn();
        let (commit, wal_task) =
            GroupCommit::new(wal, CommitSettings::default(), Arc::clone(&counters));
        let (tx, rx) = mpsc::channel(depth.max(1));
        let front = Front::new(rx, next_lsn, Arc::clone(&counters));
        let appender = Appender { tx, counters };
        (
            appender,
            Box::pin(run(commit, front)),
            Box::pin(wal_task.run()),
        )
    }

    /// Appends `body` and resolves to its LSN once it is durable. An error
    /// means the record is not in the log (or, for [`Error::Stopped`], that
    /// the WAL stopped and nothing more is acknowledged).
    pub async fn append(&self, body: Vec<u8>) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        let ended = || Error::Stopped {
            cause: "the appender task has ended".into(),
        };
        self.tx
            .send(Append { body, reply })
            .await
            .map_err(|_| ended())?;
        rx.await.map_err(|_| ended())?
    }

    /// The counters so far.
    pub fn stats(&self) -> AppendStats {
        let c = &self.counters;
        AppendStats {
            records: c.records.load(Relaxed),
            syncs: c.syncs.load(Relaxed),
            in_place: c.in_place.load(Relaxed),
            refused: c.refused.load(Relaxed),
        }
    }
}

/// The proposer's state: appends proposed and waiting to be durable.
struct Front {
    rx: mpsc::Receiver<Append>,
    next_lsn: u64,
    proposed: Vec<Body>,
    /// Proposed, waiting for durability: (lsn, reply), ascending.
    waiting: VecDeque<(u64, oneshot::Sender<Result<u64>>)>,
    /// Appends taken this turn.
    round: u32,
    counters: Arc<Counters>,
}

/// The proposer's loop, in the shape of the engine's core task: reports
/// first, then appends; each turn's records committed at its end.
async fn run<D: Disk>(mut commit: GroupCommit<D, Body, Counters>, mut front: Front) -> Result<()> {
    let mut reports = Vec::with_capacity(REPORTS_PER_TURN);
    let mut batch = Vec::with_capacity(RECV_MAX);
    let mut open = true;
    while open || !front.waiting.is_empty() {
        let turn = tokio::select! {
            biased;
            n = commit.reports(&mut reports, REPORTS_PER_TURN) => {
                if n == 0 {
                    Err(Error::Stopped { cause: "the WAL task has ended".into() })
                } else {
                    commit.deliver(&mut reports, &mut front)
                }
            }
            n = front.rx.recv_many(&mut batch, RECV_MAX), if open => {
                open = n > 0;
                for a in batch.drain(..) {
                    front.propose(a);
                }
                Ok(())
            }
        };
        let round = std::mem::take(&mut front.round);
        let committed = match turn {
            Ok(()) => commit.commit(round, &mut front).await,
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            front.fail_all(&e).await;
            return Err(e);
        }
    }
    Ok(())
}

impl Front {
    /// A proposer with nothing proposed, taking appends from `rx`.
    fn new(rx: mpsc::Receiver<Append>, next_lsn: u64, counters: Arc<Counters>) -> Front {
        Front {
            rx,
            next_lsn,
            proposed: Vec::new(),
            waiting: VecDeque::new(),
            round: 0,
            counters,
        }
    }

    fn propose(&mut self, a: Append) {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.proposed.push(Body { lsn, bytes: a.body });
        self.waiting.push_back((lsn, a.reply));
        self.round += 1;
    }

    /// Answers every append, waiting or still queued, with `e`.
    async fn fail_all(&mut self, e: &Error) {
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(e.clone_lossy()));
        }
        self.rx.close();
        while let Some(a) = self.rx.recv().await {
            let _ = a.reply.send(Err(e.clone_lossy()));
        }
    }
}

impl Proposer<Body> for Front {
    type Error = Error;

    fn take_proposed(&mut self) -> Vec<Body> {
        std::mem::take(&mut self.proposed)
    }

    fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    fn others_waiting(&self) -> bool {
        !self.rx.is_empty()
    }

    fn report(&mut self, event: CommitEvent) -> Result<()> {
        match event {
            CommitEvent::Durable(upto) => {
                while let Some((lsn, _)) = self.waiting.front() {
                    if *lsn > upto {
                        break;
                    }
                    if let Some((lsn, reply)) = self.waiting.pop_front() {
                        let _ = reply.send(Ok(lsn));
                    }
                }
            }
            CommitEvent::AppendFailed { from_lsn, error } => {
                // Every append from `from_lsn` on failed, including those
                // handed over after it (the WAL task drops them); their
                // LSNs go to the next appends.
                while self.waiting.back().is_some_and(|(lsn, _)| *lsn >= from_lsn) {
                    if let Some((_, reply)) = self.waiting.pop_back() {
                        self.counters.refused.fetch_add(1, Relaxed);
                        let _ = reply.send(Err(error.clone_lossy()));
                    }
                }
                self.proposed.retain(|b| b.lsn < from_lsn);
                self.next_lsn = from_lsn;
            }
            CommitEvent::Fatal(e) => return Err(e),
            CommitEvent::DiskFull(_) | CommitEvent::SnapshotDue(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proposer with nothing proposed, whose appends come from the
    /// returned sender.
    fn front(next_lsn: u64) -> (mpsc::Sender<Append>, Front) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Front::new(rx, next_lsn, Arc::default()))
    }

    fn append(body: &[u8]) -> (Append, oneshot::Receiver<Result<u64>>) {
        let (reply, rx) = oneshot::channel();
        let a = Append {
            body: body.to_vec(),
            reply,
        };
        (a, rx)
    }

    #[test]
    fn others_waiting_says_whether_an_append_is_queued() {
        let (tx, front) = front(1);
        assert!(!front.others_waiting());
        let (a, _rx) = append(b"a");
        tx.try_send(a)
            .map_err(|_| "send")
            .expect("room in the channel");
        assert!(front.others_waiting());
    }

    #[test]
    fn a_failed_append_drops_the_proposed_records_from_its_lsn_on() {
        let (_tx, mut front) = front(5);
        let mut replies = Vec::new();
        for body in [b"a", b"b", b"c"] {
            let (a, rx) = append(body);
            front.propose(a);
            replies.push(rx);
        }
        let failed = CommitEvent::AppendFailed {
            from_lsn: 6,
            error: Error::Stopped {
                cause: "test".into(),
            },
        };
        front.report(failed).expect("not fatal");
        let kept: Vec<u64> = front.proposed.iter().map(|b| b.lsn).collect();
        assert_eq!(kept, [5], "LSN 5 stays proposed; 6 and 7 failed");
        assert_eq!(front.next_lsn(), 6, "the next append takes LSN 6 again");
        assert!(matches!(replies[2].try_recv(), Ok(Err(_))));
        assert!(matches!(replies[1].try_recv(), Ok(Err(_))));
        assert!(replies[0].try_recv().is_err(), "LSN 5 is still waiting");
        assert_eq!(front.counters.refused.load(Relaxed), 2);
    }
}
