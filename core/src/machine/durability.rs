//! Durability: `Durable` applies the records it covers (the only way the
//! live durable state changes), `AppendFailed` takes proposals back, and
//! `Checkpoint` logs a record that only takes the log to a newer LSN (an
//! idle server's snapshot at it then covers the whole log, so the log can
//! be freed).

use std::sync::Arc;

use super::Core;
use super::proposals::{Answer, Origin};
use crate::job::{JobId, JobState};
use crate::protocol::{Effect, Outcome, RequestId};
use crate::record::{Lsn, Op, Record};
use crate::state::Applied;
use crate::table::Holder;

/// How long internal proposals pause after the log refused an append, so a
/// failing disk is not hammered.
const APPEND_RETRY_MS: u64 = 1_000;

impl Core {
    /// Applies every unapplied record up to `upto`, in LSN order, then
    /// sends the replies they held.
    pub(super) fn on_durable(&mut self, upto: Lsn, out: &mut Vec<Effect>) {
        while let Some(record) = self.proposals.pop_durable(upto) {
            self.apply_live(record, out);
        }
        let applied = self.state.applied_lsn;
        self.purging.retain(|&lsn, _| lsn > applied);
        self.release(out);
    }

    /// Applies one durable record the core proposed; a durable dispatch
    /// becomes an execution.
    fn apply_live(&mut self, record: Arc<Record>, out: &mut Vec<Effect>) {
        if let Op::Enqueue { jobs } = &record.op {
            self.enqueuing.applied(jobs);
        }
        // The log has usually dropped its reference by now: then the
        // record's jobs move into the table instead of being copied.
        let (applied, record) = match Arc::try_unwrap(record) {
            Ok(owned) if matches!(owned.op, Op::Enqueue { .. }) => {
                (self.state.apply_owned(owned, false), None)
            }
            Ok(owned) => (self.state.apply(&owned), Some(Arc::new(owned))),
            Err(shared) => (self.state.apply(&shared), Some(shared)),
        };
        match applied {
            Ok(Applied::Changed) => {}
            Ok(Applied::Skipped) => return,
            Err(e) => panic!("beaver-core bug: a record it proposed does not apply: {e}"),
        }
        let Some(record) = record else { return };
        match &record.op {
            Op::Dispatch { id, attempt, .. } => self.dispatched(record.lsn, id, *attempt, out),
            Op::Complete { id, .. }
            | Op::Fail { id, .. }
            | Op::Release { id, .. }
            | Op::Return { id, .. }
            | Op::Bury { id, .. } => {
                self.lease_ended(record.lsn, id);
            }
            Op::Purge { .. } => self.purge_in_flight = false,
            Op::PurgeQueue { .. } => {
                let cancelled = self.state.last_queue_purge;
                self.proposals.count_purged(record.lsn, cancelled);
            }
            _ => {}
        }
    }

    /// Logs a record that changes nothing; answers its LSN once durable.
    pub(super) fn on_checkpoint(&mut self, req: RequestId, out: &mut Vec<Effect>) {
        let lsn = self.propose(Op::Checkpoint, Origin::Client, out);
        self.wait(lsn, req, Answer::Checkpoint(lsn), out);
    }

    /// Takes back every proposal from `from_lsn` on (the log will never
    /// hold them), answers their clients with `error`, and reissues LSNs
    /// from `from_lsn`. A report about nothing of ours is stale and ignored.
    pub(super) fn on_append_failed(&mut self, from_lsn: Lsn, error: &str, out: &mut Vec<Effect>) {
        if from_lsn <= self.state.applied_lsn || from_lsn >= self.proposals.next_lsn {
            return; // nothing of ours is at or after that LSN: a stale report
        }
        self.paused_until = self.state.now.saturating_add(APPEND_RETRY_MS);
        while let Some((record, origin)) = self.proposals.pop_refused(from_lsn) {
            self.undo(&record, origin);
        }
        self.proposals.next_lsn = from_lsn;
        self.refuse_from(from_lsn, error, out);
    }

    /// Releases the reservations of a record that will never be applied;
    /// internal work it carried is owed again.
    fn undo(&mut self, record: &Record, origin: Origin) {
        match &record.op {
            Op::Enqueue { jobs } => self.enqueuing.undone(jobs),
            Op::Dispatch { id, .. } => self.undo_dispatch(record.lsn, id),
            Op::Complete { id, attempt }
            | Op::Fail { id, attempt, .. }
            | Op::Release { id, attempt }
            | Op::Return { id, attempt, .. }
            | Op::Bury { id, attempt, .. } => {
                self.unreserve(id);
                match origin {
                    Origin::Outcome(o) => self.deferred.push((id.clone(), *attempt, o)),
                    Origin::Orphan => self.orphans.push(id.clone()),
                    Origin::LeaseEnd(lease) => self.external.end_refused(lease, record.lsn),
                    Origin::Expiry => self.unowned_possible = true,
                    _ => {}
                }
            }
            Op::Cancel { id } => {
                self.unreserve(id);
                // A cancel taken back from a worker's queue: the attempt is
                // given back instead, once the log takes records again.
                if let Some(slot) = self.state.table.slot_of(id.as_str()) {
                    let e = self.state.table.get(slot);
                    if e.state == JobState::InFlight && !e.holder.holds() {
                        self.deferred
                            .push((id.clone(), e.attempt, Outcome::NotStarted));
                    }
                }
            }
            Op::Requeue { ids } => ids.iter().for_each(|id| self.unreserve(id)),
            Op::DeleteDead { id } | Op::Kick { id } => self.unreserve(id),
            Op::Purge { jobs, .. } => {
                jobs.iter().for_each(|id| self.unreserve(id));
                self.purge_in_flight = false;
            }
            Op::Start { id, attempt } => self.starts_owed.push((id.clone(), *attempt)),
            Op::PurgeQueue { .. } => {
                self.purging.remove(&record.lsn);
            }
            Op::PauseQueue { .. } | Op::Checkpoint => {}
        }
    }

    /// A dispatch will never be applied: its job is ready again.
    fn undo_dispatch(&mut self, lsn: Lsn, id: &JobId) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let holder = self.state.table.get(slot).holder;
        self.state.reindex(slot, |e| {
            e.reserved = false;
            e.holder = Holder::None;
        });
        match holder {
            Holder::Pool => self.attempts_held -= 1,
            Holder::Lease => self.external.dispatch_refused(lsn),
            Holder::None => {}
        }
    }

    /// Clears the reservation of job `id`, if it is still known.
    fn unreserve(&mut self, id: &JobId) {
        if let Some(slot) = self.state.table.slot_of(id.as_str()) {
            self.state.reindex(slot, |e| e.reserved = false);
        }
    }
}
