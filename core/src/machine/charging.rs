//! Charging: an attempt counts against a job's attempts only if it started.
//!
//! A dispatch record says whether its attempt starts the moment it is
//! durable (a free pool worker, or an external worker, takes it): then the
//! record itself counts it. An attempt handed out ahead of a free worker
//! counts once a start record for it is durable: `Started` proposes one,
//! and the attempt does not wait for it (it rides the next group commit).
//!
//! After a crash, recovery sorts the in-flight jobs by what the log says:
//! an attempt whose start is logged was interrupted (it fails, and counts);
//! one whose start is not was handed out ahead and may never have run: it
//! is given back uncounted, and its job is *suspect* until its next counted
//! attempt. A suspect job is never dispatched ahead (see `dispatch`): it
//! waits for a free worker, so its next attempt is counted by its dispatch
//! record before it runs. A job that kills the server when it starts is
//! therefore counted at least every second crash and ends dead instead of
//! looping.

use super::Core;
use super::proposals::Origin;
use crate::job::JobState;
use crate::protocol::Effect;
use crate::record::Op;
use crate::stats::Interrupted;

impl Core {
    /// The pool attempt in `slot` began: unless its dispatch counted it,
    /// its start is logged (the attempt runs meanwhile).
    pub(super) fn log_start(&mut self, slot: u32, out: &mut Vec<Effect>) {
        let e = self.state.table.get(slot);
        if e.started {
            return;
        }
        let op = Op::Start {
            id: e.id.clone(),
            attempt: e.attempt,
        };
        self.propose(op, Origin::Start, out);
    }

    /// Proposes again the start records the log refused, for attempts
    /// still running on the pool without an outcome on its way.
    pub(super) fn resume_starts(&mut self, out: &mut Vec<Effect>) {
        for (id, attempt) in std::mem::take(&mut self.starts_owed) {
            let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                continue;
            };
            // A started pool lease is the running attempt's, with no
            // outcome on its way (`check_pool_leases`).
            if self.leases.started_attempt(slot) == Some(attempt) {
                self.log_start(slot, out);
            }
        }
    }

    /// Ends every attempt a restart interrupted: one whose start is logged
    /// fails (it counts, so a job that crashes the server ends dead); one
    /// whose start is not is given back uncounted, its job suspect.
    pub(super) fn resume_orphans(&mut self, out: &mut Vec<Effect>) {
        for id in std::mem::take(&mut self.orphans) {
            let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                continue;
            };
            let e = self.state.table.get(slot);
            if e.state != JobState::InFlight || e.reserved || e.holder.holds() {
                continue;
            }
            let op = match e.started {
                true => {
                    let text = "interrupted: beaver stopped while this attempt ran";
                    let op = self.fail_op(e, e.attempt, text);
                    #[cfg(feature = "mutants")]
                    let op = self.uncounted(
                        crate::mutants::Mutant::ForgetOrphanAttempt,
                        e,
                        e.attempt,
                        op,
                    );
                    op
                }
                false => Op::Release {
                    id: e.id.clone(),
                    attempt: e.attempt,
                },
            };
            let suspect = !e.started;
            let e = self.state.table.get_mut(slot);
            e.reserved = true;
            e.suspect |= suspect;
            self.propose(op, Origin::Orphan, out);
        }
    }

    /// What a rebuild found in flight, sorted by whether the attempt
    /// counts (meaningful before the first step, which ends them all).
    pub fn interrupted(&self) -> Interrupted {
        let s = &self.state;
        let mut found = Interrupted::default();
        for &(_, _, slot) in s.leases.iter() {
            let e = s.table.get(slot);
            if e.holder.holds() {
                continue;
            }
            match e.started {
                true => found.charged += 1,
                false => found.released += 1,
            }
        }
        found
    }
}
