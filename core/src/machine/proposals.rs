//! Proposals: records handed to the log and not yet durable, and the
//! replies that wait for them.
//!
//! Every record gets the next LSN (dense, increasing); the durable state
//! changes only when `Durable` covers it (see `durability`). A reply that
//! confirms a change waits here until the change's record is applied.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::Core;
use crate::protocol::{Effect, Enqueued, Outcome, Rejection, Reply, RequestId};
use crate::record::{Lsn, Op, Record};
use crate::time::UnixMillis;

/// Why a record is in flight: decides what happens if its append fails.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Origin {
    /// A client request; it is answered with the error.
    Client,
    /// A dispatch; the job goes back to ready.
    Dispatch,
    /// An executor's outcome; it is proposed again later.
    Outcome(Outcome),
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
    req: RequestId,
    answer: Answer,
}

/// What a held reply will say once its records are durable.
#[derive(Debug)]
pub(super) enum Answer {
    Enqueued(Vec<Enqueued>),
    Cancelled,
    Requeued(u64),
}

impl Answer {
    /// The reply once everything it waited for is durable.
    fn confirmed(self) -> Reply {
        match self {
            Answer::Enqueued(a) => Reply::Enqueued(Ok(a)),
            Answer::Cancelled => Reply::Cancelled(Ok(())),
            Answer::Requeued(n) => Reply::Requeued(Ok(n)),
        }
    }

    /// The reply when the log refused a record it waited for.
    fn refused(self, rejection: Rejection) -> Reply {
        match self {
            Answer::Enqueued(_) => Reply::Enqueued(Err(rejection)),
            Answer::Cancelled => Reply::Cancelled(Err(rejection)),
            Answer::Requeued(_) => Reply::Requeued(Err(rejection)),
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

    /// Sends every reply whose records are applied (up to `applied`).
    pub(super) fn release(&mut self, applied: Lsn, out: &mut Vec<Effect>) {
        let later = self.waiting.split_off(&(applied + 1));
        for (_, ws) in std::mem::replace(&mut self.waiting, later) {
            for w in ws {
                reply(out, w.req, w.answer.confirmed());
            }
        }
    }

    /// Answers every reply waiting for a record from `from_lsn` on with
    /// the log's error.
    pub(super) fn refuse_from(&mut self, from_lsn: Lsn, error: &str, out: &mut Vec<Effect>) {
        for (_, ws) in self.waiting.split_off(&from_lsn) {
            for w in ws {
                let rejection = Rejection::Storage {
                    reason: error.to_owned(),
                };
                reply(out, w.req, w.answer.refused(rejection));
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
            reply(out, req, answer.confirmed());
        } else {
            self.proposals
                .waiting
                .entry(lsn)
                .or_default()
                .push(Waiting { req, answer });
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
