//! Outcomes: how an attempt ended becomes a complete, fail or release
//! record. Only the current attempt of a pool job counts: an outcome of an
//! aborted or older attempt is stale and changes nothing.

use super::Core;
use super::proposals::Origin;
use crate::job::{JobId, JobState};
use crate::protocol::{Effect, Outcome};
use crate::record::Op;
use crate::record_size;
use crate::retry::backoff_ms;
use crate::table::{Entry, Holder};

impl Core {
    /// Ends a held attempt and proposes its outcome's record.
    pub(super) fn on_outcome(
        &mut self,
        id: JobId,
        attempt: u32,
        outcome: Outcome,
        out: &mut Vec<Effect>,
    ) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        if !(e.holder == Holder::Pool && e.state == JobState::InFlight && e.attempt == attempt) {
            return; // stale: the lease expired, or the attempt is an old one
        }
        self.state.table.get_mut(slot).holder = Holder::None;
        self.attempts_held -= 1;
        self.leases.end(slot);
        if self.state.table.get(slot).reserved {
            return;
        }
        self.propose_outcome(slot, attempt, outcome, Origin::Outcome, out);
    }

    /// Proposes the record for `outcome` of the attempt in `slot` and
    /// reserves the job until it is durable.
    pub(super) fn propose_outcome(
        &mut self,
        slot: u32,
        attempt: u32,
        outcome: Outcome,
        origin: impl FnOnce(Outcome) -> Origin,
        out: &mut Vec<Effect>,
    ) {
        let e = self.state.table.get(slot);
        let id = e.id.clone();
        let op = match &outcome {
            Outcome::Succeeded => Op::Complete { id, attempt },
            Outcome::NotStarted => Op::Release { id, attempt },
            Outcome::Failed(text) => self.fail_op(e, attempt, text),
            Outcome::TimedOut => {
                self.fail_op(e, attempt, &format!("timed out after {} ms", e.timeout_ms))
            }
        };
        #[cfg(feature = "mutants")]
        let op = self.uncounted_timeout(&outcome, e, attempt, op);
        self.state.table.get_mut(slot).reserved = true;
        self.propose(op, origin(outcome), out);
    }

    /// The fail record of attempt `attempt` of `e`: a retry after backoff
    /// while attempts are left, else dead. The error keeps its tail, cut to
    /// what the limits and the record allow.
    pub(super) fn fail_op(&self, e: &Entry, attempt: u32, error: &str) -> Op {
        let retry_at = (attempt < e.max_attempts).then(|| {
            self.state
                .now
                .saturating_add(backoff_ms(&self.config.retry, &e.id, attempt))
        });
        let l = &self.config.limits;
        let room = l
            .record_bytes_max
            .saturating_sub(record_size::fail(e.id.as_str().len()));
        Op::Fail {
            id: e.id.clone(),
            attempt,
            error: truncate_tail(error, l.error_bytes_max.min(room) as usize),
            retry_at,
        }
    }
}

/// Keeps the last `max` bytes of `text`, on a character boundary.
fn truncate_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::truncate_tail;

    /// The tail is cut on a character boundary: a cut inside a character
    /// keeps none of it.
    #[test]
    fn an_error_is_cut_to_its_tail_on_a_character_boundary() {
        assert_eq!(truncate_tail("abc", 3), "abc");
        assert_eq!(truncate_tail("abc", 2), "bc");
        // "é" is two bytes: the last 3 of "aébc" start inside it.
        assert_eq!(truncate_tail("aébc", 3), "bc");
        assert_eq!(truncate_tail("aébc", 4), "ébc");
        assert_eq!(truncate_tail("€", 2), "");
    }
}
