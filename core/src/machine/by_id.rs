//! Requests that name one waiting job by id, as beanstalkd's `kick-job`
//! and `reserve-job` do: make it ready now, or lease exactly that job.

use std::sync::Arc;

use super::Core;
use super::proposals::{Answer, Origin, reply};
use crate::job::{JobId, JobState};
use crate::protocol::{Effect, Rejection, Reply, RequestId};
use crate::record::Op;

impl Core {
    /// Kicks a waiting job: a dead one is requeued, a scheduled one is
    /// ready from now; answered once durable. A ready, running or
    /// changing job is a conflict; an unknown or final one is not found.
    pub(super) fn on_kick(&mut self, req: RequestId, id: JobId, out: &mut Vec<Effect>) {
        let Some(slot) = self.find(id.as_str()) else {
            return reply(out, req, Reply::Kicked(Err(Rejection::NotFound { id })));
        };
        let e = self.state.table.get(slot);
        let id = e.id.clone();
        let scheduled = e.state == JobState::Pending && e.run_at > self.state.now;
        let op = match e.state {
            _ if e.reserved || self.purge_of(e.queue).is_some() => None,
            JobState::Dead => Some(Op::Requeue {
                ids: vec![id.clone()],
            }),
            JobState::Pending if scheduled => Some(Op::Kick { id: id.clone() }),
            _ => None,
        };
        let Some(op) = op else {
            let reason = format!("job {id} is not delayed or dead, or is changing right now");
            return reply(out, req, Reply::Kicked(Err(Rejection::Conflict { reason })));
        };
        self.state.reindex(slot, |e| e.reserved = true);
        let lsn = self.propose(op, Origin::Client, out);
        self.wait(lsn, req, Answer::Kicked, out);
    }

    /// Leases one job by id to `holder` (its queue's pause does not apply:
    /// the job is named); answered like [`Core::on_lease`], with that one
    /// job, once its dispatch is durable. A pending job (ready or
    /// scheduled) is leased at once; a dead one is requeued first and
    /// leased in the step its requeue becomes durable, before dispatch
    /// could offer it to anyone waiting (see [`Core::lease_revived`]).
    pub(super) fn on_lease_job(
        &mut self,
        req: RequestId,
        id: JobId,
        holder: &str,
        out: &mut Vec<Effect>,
    ) {
        let refused = |r: Rejection| Reply::Leased(Err(r));
        if self.stopping {
            return reply(out, req, refused(Rejection::Stopping));
        }
        if let Err(rejection) = super::external::check_holder(holder) {
            return reply(out, req, refused(rejection));
        }
        let Some(slot) = self.find(id.as_str()) else {
            return reply(out, req, refused(Rejection::NotFound { id }));
        };
        let e = self.state.table.get(slot);
        if e.state == JobState::Dead && !e.reserved && self.purge_of(e.queue).is_none() {
            let id = e.id.clone();
            self.state.reindex(slot, |e| e.reserved = true);
            let op = Op::Requeue {
                ids: vec![id.clone()],
            };
            let lsn = self.propose(op, Origin::Client, out);
            let holder = holder.into();
            return self.wait(lsn, req, Answer::Revived { id, holder }, out);
        }
        self.lease_by_id(req, slot, &holder.into(), out);
    }

    /// The requeue of dead job `id` for `holder` (from
    /// [`Core::on_lease_job`]) is durable: leases the job to `holder` now.
    /// Called while the requeue's replies are released, before this step
    /// dispatches, so no waiting lease can take the job first.
    pub(super) fn lease_revived(
        &mut self,
        req: RequestId,
        id: &JobId,
        holder: &Arc<str>,
        out: &mut Vec<Effect>,
    ) {
        if self.stopping {
            return reply(out, req, Reply::Leased(Err(Rejection::Stopping)));
        }
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            let id = id.clone();
            return reply(out, req, Reply::Leased(Err(Rejection::NotFound { id })));
        };
        self.lease_by_id(req, slot, holder, out);
    }

    /// Leases job `slot` to `holder` if it is pending and free; a conflict
    /// otherwise.
    fn lease_by_id(&mut self, req: RequestId, slot: u32, holder: &Arc<str>, out: &mut Vec<Effect>) {
        let e = self.state.table.get(slot);
        let free = e.state == JobState::Pending && !e.reserved && e.attempt < e.max_attempts;
        if !free || self.purge_of(e.queue).is_some() {
            let reason = format!("job {} is not pending, or is changing right now", e.id);
            let rejection = Rejection::Conflict { reason };
            return reply(out, req, Reply::Leased(Err(rejection)));
        }
        self.reserve_for_lease(slot);
        self.grant(req, vec![slot], holder, out);
    }
}
