//! Client requests that change jobs: `Cancel` and `Requeue`. Each is
//! answered once its records are durable, or at once when refused. A job
//! is named by its id, or (an id of digits only) by its number.

use super::Core;
use super::proposals::{Answer, Origin, reply};
use crate::job::{JobId, JobState};
use crate::protocol::{Effect, Rejection, Reply, RequestId, RequeueTarget};
use crate::record::Op;
use crate::record_size;
use crate::table::Holder;

impl Core {
    /// Cancels a pending job, or one whose attempt waits for a worker (the
    /// attempt is taken back and does not count). Cancelling a cancelled
    /// job succeeds; anything else is a conflict. The job is found by id,
    /// else by number.
    pub(super) fn on_cancel(&mut self, req: RequestId, id: JobId, out: &mut Vec<Effect>) {
        let Some(slot) = self.find(id.as_str()) else {
            return reply(out, req, Reply::Cancelled(Err(Rejection::NotFound { id })));
        };
        let e = self.state.table.get(slot);
        let id = e.id.clone();
        let conflict = |reason: String| Reply::Cancelled(Err(Rejection::Conflict { reason }));
        match e.state {
            JobState::Cancelled => reply(out, req, Reply::Cancelled(Ok(()))),
            _ if e.reserved => reply(
                out,
                req,
                conflict(format!("job {id} is changing right now; retry")),
            ),
            // Its queue's purge, on its way to the log, cancels it.
            JobState::Pending if self.purge_of(e.queue).is_some() => {
                if let Some(lsn) = self.purge_of(e.queue) {
                    self.wait(lsn, req, Answer::Cancelled, out);
                }
            }
            JobState::Pending => {
                self.state.reindex(slot, |e| e.reserved = true);
                let lsn = self.propose(Op::Cancel { id }, Origin::Client, out);
                self.wait(lsn, req, Answer::Cancelled, out);
            }
            // Handed out ahead but waiting for a worker: it never started,
            // so it is taken back and cancelled (its attempt does not count).
            JobState::InFlight if e.holder == Holder::Pool && !self.leases.has_started(slot) => {
                let attempt = e.attempt;
                self.state.reindex(slot, |e| {
                    e.reserved = true;
                    e.holder = Holder::None;
                });
                self.attempts_held -= 1;
                out.push(Effect::Abort {
                    id: id.clone(),
                    attempt,
                });
                let lsn = self.propose(Op::Cancel { id }, Origin::Client, out);
                self.wait(lsn, req, Answer::Cancelled, out);
            }
            JobState::InFlight => reply(
                out,
                req,
                conflict(format!(
                    "job {id} is running (attempt {}); only pending jobs can be cancelled",
                    e.attempt
                )),
            ),
            s => reply(
                out,
                req,
                conflict(format!("job {id} is already {}", s.as_str())),
            ),
        }
    }

    /// Deletes a waiting job, pending or dead (beanstalkd's `delete` of a
    /// ready, delayed or buried job): it is cancelled, once durable. One in
    /// flight or changing right now is a conflict (its holder ends it);
    /// one already final is not found, as if it were gone.
    pub(super) fn on_delete(&mut self, req: RequestId, id: JobId, out: &mut Vec<Effect>) {
        let found = self.find(id.as_str()).filter(|&s| {
            !self.state.table.get(s).state.is_final()
                || self.state.table.get(s).state == JobState::Dead
        });
        let Some(slot) = found else {
            return reply(out, req, Reply::Deleted(Err(Rejection::NotFound { id })));
        };
        let e = self.state.table.get(slot);
        let id = e.id.clone();
        let op = match e.state {
            _ if e.reserved || self.purge_of(e.queue).is_some() => None,
            JobState::Pending => Some(Op::Cancel { id: id.clone() }),
            JobState::Dead => Some(Op::DeleteDead { id: id.clone() }),
            _ => None,
        };
        let Some(op) = op else {
            let reason = format!("job {id} is {} or changing right now", e.state.as_str());
            return reply(
                out,
                req,
                Reply::Deleted(Err(Rejection::Conflict { reason })),
            );
        };
        self.state.reindex(slot, |e| e.reserved = true);
        let lsn = self.propose(op, Origin::Client, out);
        self.wait(lsn, req, Answer::Deleted, out);
    }

    /// Requeues dead jobs in as many records as their ids need; the reply
    /// counts them all once the last record is durable.
    pub(super) fn on_requeue(
        &mut self,
        req: RequestId,
        target: RequeueTarget,
        out: &mut Vec<Effect>,
    ) {
        let slots = match self.requeue_slots(target) {
            Ok(slots) => slots,
            Err(rejection) => return reply(out, req, Reply::Requeued(Err(rejection))),
        };
        let count = slots.len() as u64;
        let l = &self.config.limits;
        let (per_record, bytes_max) = (l.ids_per_record_max.max(1) as usize, l.record_bytes_max);
        let mut lsn = 0;
        let mut ids = Vec::new();
        let mut bytes = record_size::ID_LISTS;
        for slot in slots {
            let id = self.state.table.get(slot).id.clone();
            let adds = record_size::listed_id(id.as_str().len());
            if !ids.is_empty() && (ids.len() >= per_record || bytes + adds > bytes_max) {
                let ids = std::mem::take(&mut ids);
                lsn = self.propose(Op::Requeue { ids }, Origin::Client, out);
                bytes = record_size::ID_LISTS;
            }
            self.state.reindex(slot, |e| e.reserved = true);
            bytes += adds;
            ids.push(id);
        }
        if !ids.is_empty() {
            lsn = self.propose(Op::Requeue { ids }, Origin::Client, out);
        }
        self.wait(lsn, req, Answer::Requeued(count), out);
    }

    /// The dead jobs a requeue names, none of them changing right now.
    fn requeue_slots(&self, target: RequeueTarget) -> Result<Vec<u32>, Rejection> {
        let s = &self.state;
        let id = match target {
            RequeueTarget::AllDead => {
                return Ok(s
                    .dead
                    .iter()
                    .map(|k| k.2)
                    .filter(|&slot| !s.table.get(slot).reserved)
                    .collect());
            }
            RequeueTarget::One(id) => id,
        };
        let Some(slot) = self.find(id.as_str()) else {
            return Err(Rejection::NotFound { id });
        };
        let id = &s.table.get(slot).id;
        let e = s.table.get(slot);
        if e.reserved {
            let reason = format!("job {id} is changing right now; retry");
            return Err(Rejection::Conflict { reason });
        }
        if e.state != JobState::Dead {
            let reason = format!(
                "job {id} is {}; only dead jobs can be requeued",
                e.state.as_str()
            );
            return Err(Rejection::Conflict { reason });
        }
        Ok(vec![slot])
    }
}
