//! Working toward space: the engine frees its own log when the disk is in
//! its reserve, and when a person asks for a snapshot.
//!
//! A WAL segment is deleted only when the *older* of the two kept
//! snapshots covers it, and a snapshot can only be at a durable LSN. On a
//! log that went quiet, the newest snapshot is already at the last LSN: a
//! second snapshot would be at the same LSN, cover nothing more, and the
//! segments between the older snapshot and the end would stay for good.
//! So a compaction is rounds of *checkpoint, then snapshot at the
//! checkpoint's LSN*: after two, the older kept snapshot is at the first
//! checkpoint, which is past every segment closed before the compaction
//! began, and they are all deleted. A second round runs only if something
//! is still left to free.
//!
//! Under pressure a compaction starts whenever a closed segment holds
//! records the older snapshot does not cover; one that fails (a snapshot
//! that does not fit yet, while the jobs still hold their payloads) is
//! tried again after a backoff. The backoff doubles (up to [`RETRY_MAX`])
//! only while nothing else is logged between tries: while jobs finish,
//! the state shrinks and the next try may fit, so it stays at its minimum.

use std::time::Duration;

use beaver_core::RequestId;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Rounds of checkpoint and snapshot in one compaction, at most.
const ROUNDS_MAX: u8 = 2;
/// The longest wait before a failed compaction is tried again.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where a compaction is.
enum Stage {
    Idle,
    /// Waiting for the reply to this checkpoint request.
    Checkpoint(RequestId),
    /// Waiting for the snapshot at the checkpoint (and the deletion it allows).
    Snapshot(oneshot::Receiver<bool>),
}

/// The state of the engine's compactions (one at a time).
pub(crate) struct Compaction {
    stage: Stage,
    /// Rounds begun in the compaction under way.
    rounds: u8,
    /// A person asked for a snapshot: a compaction runs (at least one
    /// round) even without pressure.
    asked: bool,
    /// The compaction under way is a person's: it runs whatever it frees.
    by_person: bool,
    /// After a failure: no new compaction under pressure before this.
    retry_at: Option<Instant>,
    /// The wait after the next failure.
    backoff: Duration,
    backoff_min: Duration,
    /// The applied LSN when the compaction under way began.
    began_lsn: u64,
    /// The applied LSN when the last compaction failed.
    failed_lsn: u64,
    /// Compactions ended (done or given up) since start.
    ended: u64,
}

/// What the core task does next for the compaction.
pub(crate) enum Next {
    /// Log a checkpoint (a new round).
    Checkpoint,
    /// Nothing: the compaction ended, or waits.
    Wait,
}

impl Compaction {
    /// No compaction under way; failures back off from `backoff_min`.
    pub(crate) fn new(backoff_min: Duration) -> Compaction {
        let backoff_min = backoff_min.clamp(Duration::from_millis(10), RETRY_MAX);
        Compaction {
            stage: Stage::Idle,
            rounds: 0,
            asked: false,
            by_person: false,
            retry_at: None,
            backoff: backoff_min,
            backoff_min,
            began_lsn: 0,
            failed_lsn: 0,
            ended: 0,
        }
    }

    /// Compactions ended since start, done or given up (a person's ask
    /// that came while one was under way is one more after it).
    pub(crate) fn ended(&self) -> u64 {
        self.ended
    }

    /// A person asked for a snapshot: one compaction runs as soon as none
    /// is under way.
    pub(crate) fn ask(&mut self) {
        self.asked = true;
    }

    /// Whether a compaction should begin now: none is under way, and a
    /// person asked, or the log has something to free while the disk is
    /// in its reserve (`pressure`) and no failure's backoff holds it back.
    pub(crate) fn due(&self, pressure: bool, now: Instant) -> bool {
        matches!(self.stage, Stage::Idle)
            && (self.asked || (pressure && self.retry_at.is_none_or(|at| now >= at)))
    }

    /// When a compaction held back by a failure may begin (to wake an idle
    /// engine for it); `None` if nothing waits for a time.
    pub(crate) fn wake_at(&self, pressure: bool) -> Option<Instant> {
        match (&self.stage, self.retry_at) {
            (Stage::Idle, Some(at)) if pressure => Some(at),
            _ => None,
        }
    }

    /// A round begins with checkpoint request `req`: the compaction's
    /// first if `first` (begun at applied LSN `applied`), else the next.
    pub(crate) fn checkpointing(&mut self, req: RequestId, first: bool, applied: u64) {
        if first {
            self.rounds = 0;
            self.by_person = std::mem::take(&mut self.asked);
            self.began_lsn = applied;
        }
        self.rounds += 1;
        self.stage = Stage::Checkpoint(req);
    }

    /// Whether the compaction under way (or last) was a person's ask.
    pub(crate) fn by_person(&self) -> bool {
        self.by_person
    }

    /// Whether `req` is the compaction's checkpoint.
    pub(crate) fn is_checkpoint(&self, req: RequestId) -> bool {
        matches!(self.stage, Stage::Checkpoint(r) if r == req)
    }

    /// The checkpoint is durable; its snapshot was asked for.
    pub(crate) fn snapshotting(&mut self, built: oneshot::Receiver<bool>) {
        self.stage = Stage::Snapshot(built);
    }

    /// Whether a snapshot of the compaction is being built.
    pub(crate) fn building(&self) -> bool {
        matches!(self.stage, Stage::Snapshot(_))
    }

    /// Resolves when the snapshot being built is written (`true`, and the
    /// segments it lets go are deleted) or not (`false`). Cancel-safe.
    pub(crate) async fn built(&mut self) -> bool {
        match &mut self.stage {
            Stage::Snapshot(rx) => rx.await.unwrap_or(false),
            _ => std::future::pending().await,
        }
    }

    /// The round's snapshot ended (`ok`); `more`: a closed segment is still
    /// not covered. Says whether another round follows.
    pub(crate) fn round_ended(&mut self, ok: bool, more: bool, applied: u64) -> Next {
        self.stage = Stage::Idle;
        if !ok {
            self.failed(applied);
            return Next::Wait;
        }
        self.retry_at = None;
        self.backoff = self.backoff_min;
        if more && self.rounds < ROUNDS_MAX {
            Next::Checkpoint
        } else {
            self.ended += 1;
            Next::Wait
        }
    }

    /// The compaction could not go on (its checkpoint or snapshot was
    /// refused) at applied LSN `applied`: the next waits for the backoff,
    /// which starts again from its minimum if other records were logged
    /// since the last failure, and doubles for the failure after.
    pub(crate) fn failed(&mut self, applied: u64) {
        self.stage = Stage::Idle;
        self.ended += 1;
        if self.began_lsn > self.failed_lsn {
            self.backoff = self.backoff_min;
        }
        self.failed_lsn = applied;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn two_rounds_at_most_and_failures_back_off() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut c = Compaction::new(Duration::from_millis(100));
            let now = Instant::now();
            assert!(!c.due(false, now), "no pressure, not asked");
            assert!(c.due(true, now));
            c.checkpointing(RequestId(1), true, 10);
            assert!(!c.due(true, now), "one at a time");
            assert!(c.is_checkpoint(RequestId(1)) && !c.is_checkpoint(RequestId(2)));
            let (_tx, rx) = oneshot::channel();
            c.snapshotting(rx);
            assert!(matches!(c.round_ended(true, true, 11), Next::Checkpoint));
            c.checkpointing(RequestId(2), false, 11);
            assert!(
                matches!(c.round_ended(true, true, 12), Next::Wait),
                "two rounds at most"
            );
            c.checkpointing(RequestId(3), true, 12);
            assert!(matches!(c.round_ended(false, true, 13), Next::Wait));
            assert!(!c.due(true, Instant::now()), "held back after a failure");
            let at = c.wake_at(true).expect("a retry time");
            assert!(at >= now + Duration::from_millis(100));
            assert!(c.due(true, at));
            // Nothing else logged since: the backoff doubles.
            c.checkpointing(RequestId(4), true, 13);
            let t = Instant::now();
            c.failed(14);
            let later = c.wake_at(true).expect("a retry time");
            assert!(later >= t + Duration::from_millis(200));
            // Jobs finished meanwhile: back to the minimum.
            c.checkpointing(RequestId(5), true, 30);
            let t = Instant::now();
            c.failed(31);
            let soon = c.wake_at(true).expect("a retry time");
            let wait = soon - t;
            assert!(wait >= Duration::from_millis(100) && wait < Duration::from_millis(200));
            c.ask();
            assert!(c.due(false, Instant::now()), "a person's ask runs at once");
        });
    }
}
