//! Proposals: records handed to the log and not yet durable, and the
//! replies that wait for them.
//!
//! Every record gets the next LSN (dense, increasing); the durable state
//! changes only when `Durable` covers it (see `durability`). A reply that
//! confirms a change waits here until the change's record is applied.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::Core;
use crate::job::JobId;
use crate::protocol::{Effect, Enqueued, LeaseId, Outcome, Rejection, Reply, RequestId};
use crate::record::{Lsn, Op, Record};
use crate::time::UnixMillis;

/// Why a record is in flight: decides what happens if its append fails.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Origin {
    /// A client request; it is answered with the error.
    Client,
    /// A pool dispatch; the job goes back to ready.
    Dispatch,
    /// A lease's dispatch; the job goes back to ready.
    Lease,
    /// The end of an external lease (complete, fail, given back); the
    /// lease is current again.
    LeaseEnd(LeaseId),
    /// An executor's outcome; it is proposed again later.
    Outcome(Outcome),
    /// The start of an attempt dispatched ahead; proposed again later.
    Start,
    /// A lease expiry; it is detected again later.
    Expiry,
    /// An attempt interrupted by a restart; proposed again later.
    Orphan,
    /// Retention; it is proposed again later.
    Purge,
}

/// A reply held until the log is durable up to its LSN.
#[derive(Debug)]
pub(super) struct Waiting {
    pub req: RequestId,
    pub answer: Answer,
}

/// What a held reply will say once its records are durable.
#[derive(Debug)]
pub(super) enum Answer {
    Enqueued(Vec<Enqueued>),
    Cancelled,
    Requeued(u64),
    /// The lease dispatches' LSNs: each is its lease's id.
    Leased(Vec<Lsn>),
    Completed,
    Failed,
    Paused,
    /// How many jobs the purge cancelled (filled in when it applies).
    Purged(u64),
    Checkpoint(Lsn),
    Released,
    Buried,
    Deleted,
    Kicked,
    /// A dead job requeued for a lease by id: once durable, the job is
    /// leased to `holder` (answered as [`Answer::Leased`] then).
    Revived {
        id: JobId,
        holder: Arc<str>,
    },
}

impl Answer {
    /// The reply once everything it waited for is durable (a lease grant
    /// is answered by `Core::answer`).
    fn confirmed(self) -> Reply {
        match self {
            Answer::Enqueued(a) => Reply::Enqueued(Ok(a)),
            Answer::Cancelled => Reply::Cancelled(Ok(())),
            Answer::Requeued(n) => Reply::Requeued(Ok(n)),
            Answer::Leased(_) => Reply::Leased(Ok(Vec::new())),
            Answer::Completed => Reply::Completed(Ok(())),
            Answer::Failed => Reply::Failed(Ok(())),
            Answer::Paused => Reply::Paused(Ok(())),
            Answer::Purged(n) => Reply::Purged(Ok(n)),
            Answer::Checkpoint(lsn) => Reply::Checkpoint(Ok(lsn)),
            Answer::Released => Reply::Released(Ok(())),
            Answer::Buried => Reply::Buried(Ok(())),
            Answer::Deleted => Reply::Deleted(Ok(())),
            Answer::Kicked => Reply::Kicked(Ok(())),
            // Never confirmed as it is: `Core::release` leases the job (it
            // waits for a record proposed just before, never applied yet).
            Answer::Revived { .. } => Reply::Leased(Ok(Vec::new())),
        }
    }

    /// The reply when the log refused a record it waited for.
    fn refused(self, rejection: Rejection) -> Reply {
        match self {
            Answer::Enqueued(_) => Reply::Enqueued(Err(rejection)),
            Answer::Cancelled => Reply::Cancelled(Err(rejection)),
            Answer::Requeued(_) => Reply::Requeued(Err(rejection)),
            Answer::Leased(_) => Reply::Leased(Err(rejection)),
            Answer::Completed => Reply::Completed(Err(rejection)),
            Answer::Failed => Reply::Failed(Err(rejection)),
            Answer::Paused => Reply::Paused(Err(rejection)),
            Answer::Purged(_) => Reply::Purged(Err(rejection)),
            Answer::Checkpoint(_) => Reply::Checkpoint(Err(rejection)),
            Answer::Released => Reply::Released(Err(rejection)),
            Answer::Buried => Reply::Buried(Err(rejection)),
            Answer::Deleted => Reply::Deleted(Err(rejection)),
            Answer::Kicked => Reply::Kicked(Err(rejection)),
            Answer::Revived { .. } => Reply::Leased(Err(rejection)),
        }
    }
}

/// The records in flight between the core and the log.
pub(super) struct Proposals {
    /// The LSN the next proposed record gets.
    pub next_lsn: Lsn,
    /// Proposed records not yet durable, in LSN order.
    pub unapplied: VecDeque<(Arc<Record>, Origin)>,
    /// Replies released once the applied LSN reaches the key.
    pub waiting: BTreeMap<Lsn, Vec<Waiting>>,
}

impl Proposals {
    pub(super) fn new() -> Proposals {
        Proposals {
            next_lsn: 1,
            unapplied: VecDeque::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// The oldest unapplied record, if `Durable { upto }` covers it.
    pub(super) fn pop_durable(&mut self, upto: Lsn) -> Option<Arc<Record>> {
        match self.unapplied.front() {
            Some((record, _)) if record.lsn <= upto => self.unapplied.pop_front().map(|(r, _)| r),
            _ => None,
        }
    }

    /// The newest unapplied record, if it is at or after `from_lsn`.
    pub(super) fn pop_refused(&mut self, from_lsn: Lsn) -> Option<(Arc<Record>, Origin)> {
        match self.unapplied.back() {
            Some((record, _)) if record.lsn >= from_lsn => self.unapplied.pop_back(),
            _ => None,
        }
    }

    /// The replies whose records are applied (up to `applied`), in order
    /// (taken out of the map whole: no copy into a list of their own).
    pub(super) fn take_released(&mut self, applied: Lsn) -> impl Iterator<Item = Waiting> + use<> {
        // The usual cases without splitting the map: every reply released
        // (one request at a time) or none.
        let done = match (
            self.waiting.first_key_value(),
            self.waiting.last_key_value(),
        ) {
            (Some((first, _)), _) if *first > applied => BTreeMap::new(),
            (_, Some((last, _))) if *last <= applied => std::mem::take(&mut self.waiting),
            _ => {
                let later = self.waiting.split_off(&(applied + 1));
                std::mem::replace(&mut self.waiting, later)
            }
        };
        done.into_values().flatten()
    }

    /// The replies waiting for a record from `from_lsn` on, in order.
    pub(super) fn take_refused(&mut self, from_lsn: Lsn) -> impl Iterator<Item = Waiting> + use<> {
        self.waiting.split_off(&from_lsn).into_values().flatten()
    }

    /// Tells the replies waiting for the queue purge at `lsn` how many
    /// jobs it cancelled.
    pub(super) fn count_purged(&mut self, lsn: Lsn, cancelled: u64) {
        for w in self.waiting.get_mut(&lsn).into_iter().flatten() {
            if let Answer::Purged(n) = &mut w.answer {
                *n = cancelled;
            }
        }
    }
}

impl Core {
    /// Hands `op` to the log as the next record; returns its LSN.
    pub(super) fn propose(&mut self, op: Op, origin: Origin, out: &mut Vec<Effect>) -> Lsn {
        debug_assert!(
            op.encoded_bytes_max() <= self.config.limits.record_bytes_max,
            "a proposed {} record may not fit the log",
            op.name()
        );
        let p = &mut self.proposals;
        let lsn = p.next_lsn;
        p.next_lsn += 1;
        let record = Arc::new(Record {
            lsn,
            at: self.state.now,
            op,
        });
        out.push(Effect::Append(Arc::clone(&record)));
        p.unapplied.push_back((record, origin));
        lsn
    }

    /// Replies with `answer` once LSN `lsn` is applied: at once if it is.
    pub(super) fn wait(&mut self, lsn: Lsn, req: RequestId, answer: Answer, out: &mut Vec<Effect>) {
        if lsn <= self.state.applied_lsn {
            let now = self.answer(answer, None);
            reply(out, req, now);
        } else {
            self.proposals
                .waiting
                .entry(lsn)
                .or_default()
                .push(Waiting { req, answer });
        }
    }

    /// Sends every reply whose records are applied.
    pub(super) fn release(&mut self, out: &mut Vec<Effect>) {
        for w in self.proposals.take_released(self.state.applied_lsn) {
            if let Answer::Revived { id, holder } = w.answer {
                #[cfg(feature = "mutants")]
                if self.planted(crate::mutants::Mutant::RevivedJobDispatchedFirst) {
                    self.revived_late.push((w.req, id, holder));
                    continue;
                }
                self.lease_revived(w.req, &id, &holder, out);
                continue;
            }
            let answer = self.answer(w.answer, None);
            reply(out, w.req, answer);
        }
    }

    /// Answers every reply waiting for a record from `from_lsn` on with
    /// the log's error.
    pub(super) fn refuse_from(&mut self, from_lsn: Lsn, error: &str, out: &mut Vec<Effect>) {
        for w in self.proposals.take_refused(from_lsn) {
            let rejection = Rejection::Storage {
                reason: error.to_owned(),
            };
            let answer = self.answer(w.answer, Some(rejection));
            reply(out, w.req, answer);
        }
    }

    /// The reply an answer gives now, confirmed or (with a rejection)
    /// refused. A lease grant delivers the leases whose dispatches are
    /// durable (their clocks start now), even when the log refused the
    /// others: those jobs are leased, and only the refused ones are not.
    fn answer(&mut self, answer: Answer, refused: Option<Rejection>) -> Reply {
        match (answer, refused) {
            (Answer::Leased(lsns), refused) => {
                let jobs = self.deliver(&lsns);
                match refused {
                    Some(rejection) if jobs.is_empty() => Reply::Leased(Err(rejection)),
                    _ => Reply::Leased(Ok(jobs)),
                }
            }
            (answer, None) => answer.confirmed(),
            (answer, Some(rejection)) => answer.refused(rejection),
        }
    }

    /// Whether internal proposals wait after a refused append.
    pub(super) fn paused(&self) -> bool {
        self.state.now < self.paused_until
    }

    /// When internal proposals may resume (now, unless paused).
    pub(super) fn resume_at(&self) -> UnixMillis {
        self.paused_until.max(self.state.now)
    }
}

/// Answers `req` now.
pub(super) fn reply(out: &mut Vec<Effect>, req: RequestId, reply: Reply) {
    out.push(Effect::Reply { req, reply });
}
