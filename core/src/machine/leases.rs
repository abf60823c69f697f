//! Leases: how long a pool attempt may run before the core gives up on it.
//! (External leases are in `external` and `fencing`.)
//!
//! A pool attempt's lease counts from `Started` (the job's timeout plus
//! the lease slack), not from its dispatch: an attempt handed out ahead of
//! a free worker waits without a deadline. Leases are not state: an
//! attempt ends with its process, so no record carries them; after a
//! restart an in-flight job's recorded `lease_until` is only a fallback
//! (see `orphans` in `housekeeping`). An expired lease aborts the attempt
//! and proposes a fail record for it.

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::FixedState;

use super::Core;
use super::proposals::Origin;
use crate::job::{JobId, JobState};
use crate::protocol::Effect;
use crate::table::Holder;
use crate::time::UnixMillis;

/// The started leases of pool attempts.
pub(super) struct Leases {
    /// slot -> (attempt, deadline).
    started: HashMap<u32, (u32, UnixMillis), FixedState>,
    /// The same, ordered by deadline.
    by_deadline: BTreeSet<(UnixMillis, u32)>,
}

impl Leases {
    pub(super) fn new(seed: u64) -> Leases {
        Leases {
            started: HashMap::with_hasher(FixedState::with_seed(seed ^ 0x5851_f42d)),
            by_deadline: BTreeSet::new(),
        }
    }

    /// Whether the attempt in `slot` reported its start.
    pub(super) fn has_started(&self, slot: u32) -> bool {
        self.started.contains_key(&slot)
    }

    /// The attempt in `slot` whose start began a lease, if any (always
    /// the job's current attempt, held by the pool: `check_pool_leases`).
    pub(super) fn started_attempt(&self, slot: u32) -> Option<u32> {
        self.started.get(&slot).map(|&(attempt, _)| attempt)
    }

    /// Forgets the started lease in `slot`, if any.
    pub(super) fn end(&mut self, slot: u32) {
        if let Some((_, t)) = self.started.remove(&slot) {
            self.by_deadline.remove(&(t, slot));
        }
    }
}

impl Core {
    /// The started pool leases' invariant, for the checker: each belongs to
    /// the current attempt of an in-flight job the pool holds, with no
    /// change on its way, and is listed once by its deadline.
    pub(crate) fn check_pool_leases(&self) -> Result<(), String> {
        let l = &self.leases;
        if l.by_deadline.len() != l.started.len() {
            return Err(format!(
                "{} started pool leases, {} listed by deadline",
                l.started.len(),
                l.by_deadline.len()
            ));
        }
        for (&slot, &(attempt, until)) in &l.started {
            let e = self.state.table.get(slot);
            let live = e.holder == Holder::Pool
                && e.state == JobState::InFlight
                && e.attempt == attempt
                && !e.reserved;
            if !live || !l.by_deadline.contains(&(until, slot)) {
                return Err(format!(
                    "pool lease of job {} attempt {attempt} until {until} is stale or unlisted",
                    e.id
                ));
            }
        }
        Ok(())
    }

    /// Starts the lease of a pool attempt (and logs its start if its
    /// dispatch did not count it, see `charging`); a stale or repeated
    /// report changes nothing (the first start counts).
    pub(super) fn on_started(&mut self, id: &JobId, attempt: u32, out: &mut Vec<Effect>) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        if !(e.holder == Holder::Pool && e.state == JobState::InFlight && e.attempt == attempt)
            || self.leases.has_started(slot)
        {
            return; // stale, or reported twice: the first start counts
        }
        let until = self.lease_until(e.timeout_ms);
        self.leases.started.insert(slot, (attempt, until));
        self.leases.by_deadline.insert((until, slot));
        self.log_start(slot, out);
    }

    /// When a lease taken now on an attempt of `timeout_ms` expires.
    pub(super) fn lease_until(&self, timeout_ms: u64) -> UnixMillis {
        self.state
            .now
            .saturating_add(timeout_ms)
            .saturating_add(self.config.lease_slack_ms)
    }

    /// The lease deadline of the attempt in `slot`: set once it started,
    /// `None` while it waits for a worker or is not in flight. An external
    /// lease shows its deadline (renewed by heartbeats); an in-flight
    /// attempt nobody in this process holds keeps its recorded deadline.
    pub(super) fn lease_of(&self, slot: u32) -> Option<UnixMillis> {
        let e = self.state.table.get(slot);
        if e.state != JobState::InFlight {
            return None;
        }
        match e.holder {
            Holder::None => Some(e.state_at),
            Holder::Lease => self.external.deadline_of(slot),
            Holder::Pool => self
                .leases
                .started
                .get(&slot)
                .filter(|(attempt, _)| *attempt == e.attempt)
                .map(|&(_, t)| t),
        }
    }

    /// The soonest deadline of an in-flight attempt nobody in this process
    /// holds (none should be left once the orphans are resumed), found by
    /// a scan only while one may exist.
    fn first_unowned_lease(&self) -> Option<(UnixMillis, u32)> {
        if !self.unowned_possible {
            return None;
        }
        let s = &self.state;
        s.leases
            .iter()
            .find(|&&(_, _, slot)| {
                let e = s.table.get(slot);
                !e.reserved && !e.holder.holds()
            })
            .map(|&(t, _, slot)| (t, slot))
    }

    /// The soonest deadline of a lease that can expire (pool or external).
    pub(super) fn first_expirable_lease(&self) -> Option<UnixMillis> {
        let unowned = self.first_unowned_lease().map(|(t, _)| t);
        // Every started pool lease is live (`check_pool_leases`).
        let live = self.leases.by_deadline.first().map(|&(t, _)| t);
        [unowned, live, self.external.first_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Aborts every pool attempt whose lease is due and proposes its
    /// failure; then the same for unowned and external leases.
    pub(super) fn expire_leases(&mut self, out: &mut Vec<Effect>) {
        let now = self.state.now;
        let mut expired = Vec::new();
        while let Some((t, slot)) = self.first_unowned_lease() {
            if t > now {
                break;
            }
            // Reserved by its expiry below, so the next scan passes it.
            expired.push(slot);
            self.state.table.get_mut(slot).reserved = true;
        }
        if self.first_unowned_lease().is_none() {
            self.unowned_possible = false;
        }
        let due: Vec<(UnixMillis, u32)> = self
            .leases
            .by_deadline
            .iter()
            .take_while(|k| k.0 <= now)
            .copied()
            .collect();
        for (_, slot) in due {
            self.leases.end(slot);
            expired.push(slot);
        }
        for slot in expired {
            self.expire(slot, out);
        }
        self.expire_external(out);
    }

    /// The lease of the attempt in `slot` expired: a pool attempt is
    /// aborted; either way the attempt fails.
    fn expire(&mut self, slot: u32, out: &mut Vec<Effect>) {
        let e = self.state.table.get(slot);
        let (id, attempt, holder) = (e.id.clone(), e.attempt, e.holder);
        let text = format!(
            "lease expired: no outcome within {} ms",
            e.timeout_ms + self.config.lease_slack_ms
        );
        if holder == Holder::Pool {
            self.state.table.get_mut(slot).holder = Holder::None;
            self.attempts_held -= 1;
            out.push(Effect::Abort { id, attempt });
        }
        let op = self.fail_op(self.state.table.get(slot), attempt, &text);
        self.state.table.get_mut(slot).reserved = true;
        self.propose(op, Origin::Expiry, out);
    }
}

#[cfg(test)]
mod tests {
    use crate::job::JobState;
    use crate::table::Holder;

    /// A started pool lease of a job the pool does not hold, or one missing
    /// from the deadline order, breaks the invariant.
    #[test]
    fn a_stale_or_unlisted_pool_lease_is_reported() {
        let mut q = crate::invariants::tests::one_pending();
        q.check_pool_leases().expect("no leases");
        // The job's own attempt (0: never dispatched), so only its state
        // and holder make the lease stale.
        q.leases.started.insert(0, (0, 500));
        let e = q.check_pool_leases().expect_err("unlisted");
        assert!(e.contains("listed by deadline"), "{e}");
        q.leases.by_deadline.insert((500, 0));
        let e = q.check_pool_leases().expect_err("a pending job");
        assert!(e.contains("stale or unlisted"), "{e}");
        // In flight at that attempt: live only while the pool holds it.
        q.state.table.get_mut(0).state = JobState::InFlight;
        for (holder, live) in [(Holder::Lease, false), (Holder::Pool, true)] {
            q.state.table.get_mut(0).holder = holder;
            assert_eq!(q.check_pool_leases().is_ok(), live, "{holder:?}");
        }
    }
}
