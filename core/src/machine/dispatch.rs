//! Dispatch: the built-in pool's attempts. Ready jobs of the queues the
//! pool serves get attempts, round-robin over those queues (highest
//! priority, then oldest, within one): first while a worker is free (the
//! attempt starts the moment its dispatch is durable, so the dispatch
//! record counts it), then, after the waiting lease requests are served,
//! ahead of free workers up to workers + prefetch (such an attempt counts
//! once its start is logged, see `charging`). A dispatch record is proposed
//! first; the execution follows once it is durable (see `durability`).
//!
//! A paused queue, or one whose purge is on its way to the log, hands out
//! nothing. A *suspect* job (one recovery gave back uncounted) is never
//! dispatched ahead: it waits at the head of its queue for a free worker.

use super::Core;
use super::proposals::Origin;
use crate::job::{JobId, Payload};
use crate::protocol::{Effect, Execution};
use crate::record::{Lsn, Op};
use crate::table::{Entry, Holder};

impl Core {
    /// Proposes the pool's dispatches and serves waiting lease requests
    /// while there is room and a ready job.
    pub(super) fn dispatch(&mut self, out: &mut Vec<Effect>) {
        if self.stopping || self.paused() {
            return;
        }
        self.resolve_pool();
        let workers = u64::from(self.config.workers);
        self.pool_round(workers, true, out);
        self.serve_waiters(out);
        self.pool_round(self.capacity(), false, out);
    }

    /// Resolves the names of the queues the pool serves to indexes, once
    /// per new queue (queues are only ever added).
    fn resolve_pool(&mut self) {
        let queues = &self.state.queues;
        if self.pool_for == queues.len() {
            return;
        }
        self.pool_for = queues.len();
        self.pool = match (&self.config.pool_queues, self.config.workers) {
            (_, 0) => Vec::new(),
            (None, _) => (0..queues.len() as u32).collect(),
            (Some(names), _) => {
                let ix = &self.state.queue_ix;
                names.iter().filter_map(|n| ix.get(n).copied()).collect()
            }
        };
        self.pool.sort_unstable();
        self.pool.dedup();
    }

    /// Dispatches to the pool, round-robin, until it holds `until`
    /// attempts or no served queue has a job to give; `started`: the
    /// attempts start at once (a worker is free for each).
    fn pool_round(&mut self, until: u64, started: bool, out: &mut Vec<Effect>) {
        let n = self.pool.len();
        let mut idle = 0;
        while self.attempts_held < until && idle < n {
            let q = self.pool[self.cursor % n];
            self.cursor = (self.cursor + 1) % n;
            let Some(slot) = self.next_for_pool(q, started) else {
                idle += 1;
                continue;
            };
            idle = 0;
            self.propose_dispatch(slot, started, out);
        }
    }

    /// The ready job queue `q` gives the pool next, if any.
    fn next_for_pool(&self, q: u32, started: bool) -> Option<u32> {
        if !self.hands_out(q) {
            return None;
        }
        let &(_, _, slot) = self.state.queues[q as usize].ready.first()?;
        let suspect = self.state.table.get(slot).suspect;
        #[cfg(feature = "mutants")]
        let suspect = self.suspect_waits(suspect);
        // A suspect at the head waits for a free worker, and the jobs
        // behind it with it: the order stays priority, then age.
        (started || !suspect).then_some(slot)
    }

    /// Takes the ready job in `slot` for its next attempt on the pool.
    fn propose_dispatch(&mut self, slot: u32, started: bool, out: &mut Vec<Effect>) {
        self.state.reindex(slot, |e| {
            e.reserved = true;
            e.holder = Holder::Pool;
        });
        self.attempts_held += 1;
        let e = self.state.table.get(slot);
        let op = Op::Dispatch {
            id: e.id.clone(),
            attempt: e.attempt + 1,
            lease_until: self.lease_until(e.timeout_ms),
            started,
        };
        #[cfg(feature = "mutants")]
        self.execute_at_once(e, &op, out);
        self.propose(op, Origin::Dispatch, out);
    }

    /// The dispatch (at `lsn`) of attempt `attempt` of `id` is durable: a
    /// pool attempt runs, if the pool still holds it; an external one is
    /// granted to its lease.
    pub(super) fn dispatched(&mut self, lsn: Lsn, id: &JobId, attempt: u32, out: &mut Vec<Effect>) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        match e.holder {
            Holder::Lease => self.lease_granted(lsn, slot),
            Holder::Pool => {
                #[cfg(feature = "mutants")]
                if self.planted(crate::mutants::Mutant::DispatchBeforeDurable) {
                    return; // it already ran at proposal
                }
                out.push(Effect::Execute(execution(id, attempt, e)));
            }
            Holder::None => {}
        }
    }
}

/// The execution of attempt `attempt` of job `e`.
pub(super) fn execution(id: &JobId, attempt: u32, e: &Entry) -> Execution {
    Execution {
        id: id.clone(),
        attempt,
        payload: payload_of(e),
        timeout_ms: e.timeout_ms,
    }
}

/// The payload of job `e`, which is pending or in flight.
pub(super) fn payload_of(e: &Entry) -> Payload {
    // Unreachable in practice: a dispatched job is pending, and pending jobs
    // keep their payload. `null` keeps the executor's contract (valid JSON).
    e.payload
        .clone()
        .unwrap_or_else(|| match Payload::from_json(b"null") {
            Ok(p) => p,
            Err(_) => unreachable!("null is valid JSON"),
        })
}
