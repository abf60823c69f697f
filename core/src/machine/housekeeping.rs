//! Housekeeping: the pass that runs after every input. It first proposes
//! the work the core owes (unless the log refused an append a moment
//! ago), then dispatches, then answers the lease requests whose wait is
//! over with nothing.
//!
//! Known outcomes go first: a lease must not expire on a job whose outcome
//! is only waiting to be logged again.

use super::Core;
use super::proposals::Origin;
use crate::job::JobState;
use crate::protocol::Effect;

impl Core {
    /// Proposes what is owed and due, in a fixed order, then dispatches.
    pub(super) fn housekeeping(&mut self, out: &mut Vec<Effect>) {
        if !self.paused() {
            self.resume_orphans(out);
            self.resume_deferred(out);
            self.resume_starts(out);
            self.expire_leases(out);
            self.purge(out);
        }
        self.dispatch(out);
        #[cfg(feature = "mutants")]
        for (req, id, holder) in std::mem::take(&mut self.revived_late) {
            self.lease_revived(req, &id, &holder, out);
        }
        self.answer_due_waiters(out);
    }

    /// In-flight jobs found at recovery lost their attempt with the
    /// process (the first step after a rebuild finds them).
    pub(super) fn collect_orphans(&mut self) {
        self.find_orphans = false;
        let s = &self.state;
        self.orphans = s
            .leases
            .iter()
            .map(|&(_, _, slot)| s.table.get(slot))
            .filter(|e| !e.holder.holds())
            .map(|e| e.id.clone())
            .collect();
    }

    /// Proposes again the outcomes whose records the log refused.
    fn resume_deferred(&mut self, out: &mut Vec<Effect>) {
        for (id, attempt, outcome) in std::mem::take(&mut self.deferred) {
            let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                continue;
            };
            let e = self.state.table.get(slot);
            if e.state != JobState::InFlight || e.attempt != attempt || e.reserved {
                continue;
            }
            self.propose_outcome(slot, attempt, outcome, Origin::Outcome, out);
        }
    }
}
