//! Planted bugs of the core (see [`crate::mutants`]); compiled only with
//! the `mutants` feature.

use crate::mutants::{Mutant, active};
use crate::protocol::Effect;
use crate::record::Op;
use crate::table::Entry;

/// With `m` active, the attempt is given back instead of counted.
pub(super) fn uncounted(m: Mutant, e: &Entry, attempt: u32, op: Op) -> Op {
    match active(m) {
        true => Op::Release {
            id: e.id.clone(),
            attempt,
        },
        false => op,
    }
}

/// With `DispatchBeforeDurable` active, the attempt starts at proposal.
pub(super) fn execute_at_once(e: &Entry, op: &Op, out: &mut Vec<Effect>) {
    if let (true, Op::Dispatch { id, attempt, .. }) = (active(Mutant::DispatchBeforeDurable), op) {
        out.push(Effect::Execute(super::dispatch::execution(id, *attempt, e)));
    }
}

/// With `SuspectDispatchedAhead` active, a suspect job is dispatched ahead
/// of a free worker like any other (it would never count if it kills the
/// server when it starts).
pub(super) fn suspect_waits(suspect: bool) -> bool {
    suspect && !active(Mutant::SuspectDispatchedAhead)
}
