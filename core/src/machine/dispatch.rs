//! Dispatch: ready jobs get attempts, round-robin over the named queues
//! (highest priority, then oldest, within one), while this process holds
//! fewer than workers + prefetch attempts. A dispatch record is proposed
//! first; the execution follows once it is durable (see `durability`), so a
//! job that crashes the server still uses up its attempts.

use super::Core;
use super::proposals::Origin;
use crate::job::{JobId, Payload};
use crate::protocol::{Effect, Execution};
use crate::record::Op;
use crate::table::Entry;

impl Core {
    /// Proposes dispatch records while there is room and a ready job.
    pub(super) fn dispatch(&mut self, out: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        let capacity = self.capacity();
        let n = self.state.queues.len();
        if self.config.workers == 0 || n == 0 || self.paused() {
            return;
        }
        let mut idle = 0;
        while self.attempts_held < capacity && idle < n {
            let qi = self.cursor % n;
            self.cursor = (self.cursor + 1) % n;
            let Some(&(_, _, slot)) = self.state.queues[qi].ready.first() else {
                idle += 1;
                continue;
            };
            idle = 0;
            self.propose_dispatch(slot, out);
        }
    }

    /// Takes the ready job in `slot` for its next attempt.
    fn propose_dispatch(&mut self, slot: u32, out: &mut Vec<Effect>) {
        self.state.reindex(slot, |e| {
            e.reserved = true;
            e.held = true;
        });
        self.attempts_held += 1;
        let e = self.state.table.get(slot);
        let op = Op::Dispatch {
            id: e.id.clone(),
            attempt: e.attempt + 1,
            lease_until: self.lease_until(e.timeout_ms),
        };
        #[cfg(feature = "mutants")]
        super::planted::execute_at_once(e, &op, out);
        self.propose(op, Origin::Dispatch, out);
    }

    /// The dispatch of attempt `attempt` of `id` is durable: the attempt
    /// runs, if this process still holds it.
    pub(super) fn execute(&self, id: &JobId, attempt: u32, out: &mut Vec<Effect>) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::DispatchBeforeDurable) {
            return; // it already ran at proposal
        }
        if e.held {
            out.push(Effect::Execute(execution(id, attempt, e)));
        }
    }
}

/// The execution of attempt `attempt` of job `e`.
pub(super) fn execution(id: &JobId, attempt: u32, e: &Entry) -> Execution {
    Execution {
        id: id.clone(),
        attempt,
        payload: e.payload.clone().unwrap_or_else(empty_payload),
        timeout_ms: e.timeout_ms,
    }
}

fn empty_payload() -> Payload {
    // Unreachable in practice: a dispatched job is pending, and pending jobs
    // keep their payload. `null` keeps the executor's contract (valid JSON).
    match Payload::from_json(b"null") {
        Ok(p) => p,
        Err(_) => unreachable!("null is valid JSON"),
    }
}
