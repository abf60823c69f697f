//! Planted bugs of the core (see [`crate::mutants`]); compiled only with
//! the `mutants` feature. The bug a core runs with is its
//! [`crate::Config::planted`]; each hook below is one named check of it.

use std::collections::{BTreeMap, VecDeque};

use super::Core;
use super::proposals::reply;
use crate::job::JobId;
use crate::mutants::Mutant;
use crate::protocol::{Effect, LeaseId, Reply, RequestId};
use crate::record::{Lsn, Op};
use crate::table::Entry;

/// Leases delivered, and their jobs, kept so the fencing bugs can find a
/// stale lease's job (the core forgets it when the lease ends). At most
/// [`DELIVERED_MAX`], oldest forgotten first.
#[derive(Debug, Default)]
pub(super) struct Delivered {
    jobs: BTreeMap<LeaseId, JobId>,
    order: VecDeque<LeaseId>,
}

const DELIVERED_MAX: usize = 4_096;

impl Core {
    /// Whether `m` is the planted bug of this core.
    pub(super) fn planted(&self, m: Mutant) -> bool {
        self.config.planted == Some(m)
    }

    /// Remembers that `lease` was delivered for the job in `slot` (with a
    /// fencing bug active).
    pub(super) fn delivered(&mut self, lease: LeaseId, slot: u32) {
        if !self.planted(Mutant::StaleLeaseCompletes)
            && !self.planted(Mutant::HeartbeatIgnoresAttempt)
        {
            return;
        }
        let id = self.state.table.get(slot).id.clone();
        let d = &mut self.delivered;
        if d.jobs.insert(lease, id).is_none() {
            d.order.push_back(lease);
        }
        while d.order.len() > DELIVERED_MAX {
            if let Some(old) = d.order.pop_front() {
                d.jobs.remove(&old);
            }
        }
    }

    /// With `m` active and `lease` no longer live: the live lease its job
    /// holds now, if any (the fencing bug); else `lease`.
    pub(super) fn refenced(&self, m: Mutant, lease: LeaseId) -> LeaseId {
        if !self.planted(m) || self.is_live(lease) {
            return lease;
        }
        let Some(id) = self.delivered.jobs.get(&lease) else {
            return lease;
        };
        let current = self
            .state
            .table
            .slot_of(id.as_str())
            .and_then(|slot| self.external.by_slot.get(&slot).copied());
        match current {
            Some(now) if self.is_live(now) => now,
            _ => lease,
        }
    }

    /// With `LeaseBeforeDurable` active, the request is answered now, its
    /// dispatches (`granted`: LSN and slot) not yet durable. True if it was.
    pub(super) fn lease_at_once(
        &mut self,
        req: RequestId,
        granted: &[(Lsn, u32)],
        out: &mut Vec<Effect>,
    ) -> bool {
        if !self.planted(Mutant::LeaseBeforeDurable) {
            return false;
        }
        for &(lsn, slot) in granted {
            self.lease_granted(lsn, slot);
        }
        let lsns: Vec<Lsn> = granted.iter().map(|g| g.0).collect();
        let jobs = self.deliver(&lsns);
        reply(out, req, Reply::Leased(Ok(jobs)));
        true
    }

    /// With `LeaseBeforeDurable` active, a lease delivered at proposal is
    /// not granted again when its dispatch applies.
    pub(super) fn leased_already(&self, lsn: Lsn) -> bool {
        self.planted(Mutant::LeaseBeforeDurable) && self.external.current.contains_key(&lsn)
    }

    /// With `m` active, the attempt is given back instead of counted.
    pub(super) fn uncounted(&self, m: Mutant, e: &Entry, attempt: u32, op: Op) -> Op {
        match self.planted(m) {
            true => Op::Release {
                id: e.id.clone(),
                attempt,
            },
            false => op,
        }
    }

    /// With `TimeoutNotCounted` active, a timed-out attempt is given back
    /// instead of counted.
    pub(super) fn uncounted_timeout(
        &self,
        outcome: &crate::protocol::Outcome,
        e: &Entry,
        attempt: u32,
        op: Op,
    ) -> Op {
        match outcome {
            crate::protocol::Outcome::TimedOut => {
                self.uncounted(Mutant::TimeoutNotCounted, e, attempt, op)
            }
            _ => op,
        }
    }

    /// With `DispatchBeforeDurable` active, the attempt starts at proposal.
    pub(super) fn execute_at_once(&self, e: &Entry, op: &Op, out: &mut Vec<Effect>) {
        if let (true, Op::Dispatch { id, attempt, .. }) =
            (self.planted(Mutant::DispatchBeforeDurable), op)
        {
            out.push(Effect::Execute(super::dispatch::execution(id, *attempt, e)));
        }
    }

    /// With `SuspectDispatchedAhead` active, a suspect job is dispatched ahead
    /// of a free worker like any other (it would never count if it kills the
    /// server when it starts).
    pub(super) fn suspect_waits(&self, suspect: bool) -> bool {
        suspect && !self.planted(Mutant::SuspectDispatchedAhead)
    }
}
