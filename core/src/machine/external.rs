//! External workers: `Lease` hands ready jobs to a worker outside the
//! process, one attempt each, under a lease whose id is the LSN of the
//! attempt's dispatch record. The dispatch counts the attempt (the worker
//! has it the moment the reply goes out) and is durable before the reply.
//!
//! A lease's deadline is the time its worker is told (the reply, once
//! every dispatch of the request is durable) plus the job's timeout
//! (heartbeats move it, see `fencing`); it expires at the deadline plus the
//! lease slack, a grace for the network. Leases live in memory
//! only: after a restart every earlier lease id is unknown, and its job's
//! attempt was interrupted like any other.
//!
//! A request that finds nothing ready may wait, first come first served
//! (or, asked so, in beanstalkd's order: see `rotation`, served after the
//! first-come ones): as jobs become ready they go to the waiting requests
//! before the pool dispatches ahead of its free workers (see `dispatch`);
//! at its `wait_until` a request still waiting is answered with no jobs.
//! Everything here is bounded: requests waiting, jobs per request, queues
//! per request, holder text, ended leases remembered (see `fencing`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::Core;
use super::proposals::{Answer, Origin, reply};
use super::rotation::Rings;
use crate::job::QueueName;
use crate::protocol::{
    Effect, HOLDER_BYTES_MAX, Input, LEASE_QUEUES_MAX, LeaseId, LeasedJob, Rejection, Reply,
    RequestId, WaitOrder,
};
use crate::record::{Lsn, Op};
use crate::stats::{LEASE_LIST_MAX, LeaseCounters, LeaseList, LeaseView};
use crate::table::Holder;
use crate::time::UnixMillis;

/// How a lease ended, remembered so a retry is answered as the first was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Completed,
    Failed,
    Expired,
    Returned,
    Released,
    Buried,
}

/// A current lease.
pub(super) struct Held {
    pub slot: u32,
    pub attempt: u32,
    pub holder: Arc<str>,
    pub started_at: UnixMillis,
    pub lease_until: UnixMillis,
    /// `lease_until` plus the lease slack.
    pub expiry: UnixMillis,
    /// Its end (and that record's LSN), on its way to the log.
    pub ending: Option<(End, Lsn)>,
}

/// A lease request waiting for jobs.
struct Waiter {
    req: RequestId,
    queues: Vec<QueueName>,
    max: u32,
    wait_until: UnixMillis,
    holder: Arc<str>,
    /// In beanstalkd's order: it is in the ring of each of its queues.
    rotating: bool,
}

/// External leases and lease requests.
pub(super) struct External {
    /// Current leases by id.
    pub current: BTreeMap<LeaseId, Held>,
    /// The lease of each job (by slot) that has one.
    pub by_slot: HashMap<u32, LeaseId, FixedState>,
    /// `(expiry, lease)` of current leases with no end on its way.
    pub expiries: BTreeSet<(UnixMillis, LeaseId)>,
    /// Ended leases, oldest first, and how each ended (`fencing`).
    pub ended: HashMap<LeaseId, End, FixedState>,
    pub ended_order: VecDeque<LeaseId>,
    /// Lease requests waiting for jobs, first come first served.
    waiters: VecDeque<Waiter>,
    /// `(wait_until, req)` of every waiting request.
    waiter_deadlines: BTreeSet<(UnixMillis, RequestId)>,
    /// How many waiting requests name each queue.
    waited: BTreeMap<QueueName, usize>,
    /// The waiting requests in beanstalkd's order, per queue.
    rings: Rings,
    /// Waiting requests served first come first served.
    first_come: usize,
    /// The holders of lease dispatches on their way to the log, by LSN.
    proposed: HashMap<Lsn, Arc<str>, FixedState>,
    /// Leases granted (their dispatch durable) whose request has not been
    /// answered yet, with their job's slot and holder: a lease's clock
    /// starts when its worker is told.
    granted: HashMap<LeaseId, (u32, Arc<str>), FixedState>,
    pub counters: LeaseCounters,
}

impl External {
    pub(super) fn new(seed: u64) -> External {
        let hasher = || FixedState::with_seed(seed ^ 0x2545_f491);
        External {
            current: BTreeMap::new(),
            by_slot: HashMap::with_hasher(hasher()),
            expiries: BTreeSet::new(),
            ended: HashMap::with_hasher(hasher()),
            ended_order: VecDeque::new(),
            waiters: VecDeque::new(),
            waiter_deadlines: BTreeSet::new(),
            waited: BTreeMap::new(),
            rings: Rings::default(),
            first_come: 0,
            proposed: HashMap::with_hasher(hasher()),
            granted: HashMap::with_hasher(hasher()),
            counters: LeaseCounters::default(),
        }
    }

    /// Attempts held through leases: current ones, granted ones not yet
    /// told, and lease dispatches on their way to the log.
    pub(super) fn held_count(&self) -> u64 {
        (self.current.len() + self.granted.len() + self.proposed.len()) as u64
    }

    /// The deadline of the lease on the job in `slot`.
    pub(super) fn deadline_of(&self, slot: u32) -> Option<UnixMillis> {
        let lease = self.by_slot.get(&slot)?;
        self.current.get(lease).map(|h| h.lease_until)
    }

    /// The soonest expiry of a current lease.
    pub(super) fn first_expiry(&self) -> Option<UnixMillis> {
        self.expiries.first().map(|&(t, _)| t)
    }

    /// The soonest end of a request's wait.
    pub(super) fn first_wait_end(&self) -> Option<UnixMillis> {
        self.waiter_deadlines.first().map(|&(t, _)| t)
    }

    /// Forgets the waiting request `req`, if it waits (its client is gone).
    pub(super) fn withdraw(&mut self, req: RequestId) {
        if let Some(i) = self.waiters.iter().position(|w| w.req == req) {
            self.take_waiter(i);
        }
    }

    /// Removes the `i`-th waiting request.
    fn take_waiter(&mut self, i: usize) -> Option<Waiter> {
        let w = self.waiters.remove(i)?;
        self.waiter_deadlines.remove(&(w.wait_until, w.req));
        if !w.rotating {
            self.first_come -= 1;
        }
        for q in &w.queues {
            if w.rotating {
                self.rings.leave(q, w.req);
            }
            if let Some(n) = self.waited.get_mut(q) {
                *n -= 1;
                if *n == 0 {
                    self.waited.remove(q);
                }
            }
        }
        self.counters.waiting = self.waiters.len() as u64;
        Some(w)
    }

    /// `lives`: for a request in beanstalkd's order, its queues' lives.
    fn push_waiter(&mut self, w: Waiter, lives: &[u64]) {
        for (q, &life) in w.queues.iter().zip(lives) {
            self.rings.join(q, life, w.req);
        }
        if !w.rotating {
            self.first_come += 1;
        }
        self.waiter_deadlines.insert((w.wait_until, w.req));
        for q in &w.queues {
            *self.waited.entry(q.clone()).or_default() += 1;
        }
        self.waiters.push_back(w);
        self.counters.waiting = self.waiters.len() as u64;
    }

    /// Every request waiting in beanstalkd's order is in the ring of each
    /// of its queues and every ring member waits; the first-come count is
    /// right.
    pub(super) fn check_waiters(&self) -> Result<(), String> {
        let first_come = self.waiters.iter().filter(|w| !w.rotating).count();
        if first_come != self.first_come {
            return Err(format!(
                "{first_come} first-come waiters, counted {}",
                self.first_come
            ));
        }
        let mut memberships = 0;
        for w in self.waiters.iter().filter(|w| w.rotating) {
            for q in &w.queues {
                if !self.rings.holds(q, w.req) {
                    return Err(format!("waiting request {:?} is not in {q}'s ring", w.req));
                }
                memberships += 1;
            }
        }
        if memberships != self.rings.members() {
            return Err(format!(
                "{} ring members, {memberships} waiting",
                self.rings.members()
            ));
        }
        Ok(())
    }

    /// A lease dispatch at `lsn` will never be applied.
    pub(super) fn dispatch_refused(&mut self, lsn: Lsn) {
        self.proposed.remove(&lsn);
    }
}

impl Core {
    /// Hands up to `max` ready jobs of `queues` to an external worker,
    /// or waits for some, or answers with none (`order` says which jobs
    /// and in which turn).
    pub(super) fn on_lease(
        &mut self,
        req: RequestId,
        (queues, max, order): (Vec<QueueName>, u32, WaitOrder),
        wait_ms: Option<u64>,
        holder: &str,
        out: &mut Vec<Effect>,
    ) {
        let wait_ms = wait_ms.unwrap_or(0);
        if let Err(rejection) = self.check_lease(&queues, max, wait_ms, holder, &order) {
            return reply(out, req, Reply::Leased(Err(rejection)));
        }
        let holder: Arc<str> = holder.into();
        let (queues, lives) = match order {
            WaitOrder::FirstCome => (queues, Vec::new()),
            WaitOrder::Beanstalk { lives } => distinct(queues, lives),
        };
        let rotating = !lives.is_empty();
        let slots = if rotating {
            let best = self.pick_best(&queues);
            if let Some((_, i)) = best {
                self.external.rings.served_at_once(&queues[i], lives[i]);
            }
            best.map(|(slot, _)| slot).into_iter().collect()
        } else {
            self.pick_ready(&queues, max)
        };
        if !slots.is_empty() {
            return self.grant(req, slots, &holder, out);
        }
        match wait_ms {
            0 => reply(out, req, Reply::Leased(Ok(Vec::new()))),
            ms => {
                let w = Waiter {
                    req,
                    queues,
                    max,
                    wait_until: self.span_end(ms),
                    holder,
                    rotating,
                };
                self.external.push_waiter(w, &lives);
            }
        }
    }

    /// Why a lease request is refused, if it is.
    fn check_lease(
        &self,
        queues: &[QueueName],
        max: u32,
        wait_ms: u64,
        holder: &str,
        order: &WaitOrder,
    ) -> Result<(), Rejection> {
        let l = &self.config.limits;
        let invalid = |field: &str, reason: String| Rejection::Invalid {
            index: None,
            field: field.into(),
            reason,
        };
        if self.stopping {
            return Err(Rejection::Stopping);
        }
        if queues.is_empty() || queues.len() > LEASE_QUEUES_MAX {
            let reason = format!("name 1 to {LEASE_QUEUES_MAX} queues, got {}", queues.len());
            return Err(invalid("queues", reason));
        }
        if max == 0 || max > l.lease_batch_max {
            let reason = format!("must be 1 to {}, got {max}", l.lease_batch_max);
            return Err(invalid("max", reason));
        }
        if let WaitOrder::Beanstalk { lives } = order {
            if max != 1 {
                return Err(invalid(
                    "max",
                    format!("must be 1 in beanstalkd's order, got {max}"),
                ));
            }
            if lives.len() != queues.len() {
                let reason = format!(
                    "name one life per queue: {} for {} queues",
                    lives.len(),
                    queues.len()
                );
                return Err(invalid("order", reason));
            }
        }
        check_holder(holder)?;
        if wait_ms > l.lease_wait_max_ms {
            let reason = format!(
                "is {wait_ms} ms; the limit is {} ms: wait less, and ask again if nothing came",
                l.lease_wait_max_ms
            );
            return Err(invalid("wait_ms", reason));
        }
        if wait_ms > 0 && self.external.waiters.len() as u64 >= l.lease_waiters_max {
            return Err(Rejection::Busy {
                reason: format!(
                    "{} lease requests are waiting for jobs already, the limit",
                    self.external.waiters.len()
                ),
                retry_after_ms: 1_000,
            });
        }
        Ok(())
    }

    /// Up to `max` ready jobs of `queues`, round-robin over them (highest
    /// priority, then oldest, within one), each reserved as it is taken.
    fn pick_ready(&mut self, queues: &[QueueName], max: u32) -> Vec<u32> {
        let mut ixs: Vec<u32> = Vec::with_capacity(queues.len());
        for ix in queues.iter().filter_map(|q| self.state.queue_ix.get(q)) {
            if !ixs.contains(ix) {
                ixs.push(*ix);
            }
        }
        let mut slots = Vec::new();
        let mut idle = 0;
        let mut i = 0;
        while slots.len() < max as usize && idle < ixs.len() {
            let q = ixs[i % ixs.len()];
            i += 1;
            let head = self.state.queues[q as usize].ready.first();
            let Some(&(_, _, slot)) = head.filter(|_| self.hands_out(q)) else {
                idle += 1;
                continue;
            };
            idle = 0;
            self.reserve_for_lease(slot);
            slots.push(slot);
        }
        slots
    }

    /// The ready job beanstalkd's `reserve` takes of `queues` (highest
    /// priority, then lowest number, over all of them), reserved, and the
    /// place of its queue in `queues`.
    fn pick_best(&mut self, queues: &[QueueName]) -> Option<(u32, usize)> {
        let (key, i) = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| self.ready_head(q).map(|k| (k, i)))
            .min()?;
        let slot = key.2;
        self.reserve_for_lease(slot);
        Some((slot, i))
    }

    /// Reserves the job in `slot` for a lease about to be granted, so
    /// nothing else takes it meanwhile.
    pub(super) fn reserve_for_lease(&mut self, slot: u32) {
        self.state.reindex(slot, |e| {
            e.reserved = true;
            e.holder = Holder::Lease;
        });
    }

    /// The first ready job of `queue`, if it hands out jobs now.
    fn ready_head(&self, queue: &QueueName) -> Option<crate::state::ReadyKey> {
        let ix = *self.state.queue_ix.get(queue)?;
        if !self.hands_out(ix) {
            return None;
        }
        self.state.queues[ix as usize].ready.first().copied()
    }

    /// Proposes a dispatch (that counts the attempt) for each reserved job
    /// in `slots`; the request is answered once the last is durable.
    pub(super) fn grant(
        &mut self,
        req: RequestId,
        slots: Vec<u32>,
        holder: &Arc<str>,
        out: &mut Vec<Effect>,
    ) {
        let mut lsns = Vec::with_capacity(slots.len());
        #[cfg(feature = "mutants")]
        let mut granted = Vec::new();
        for slot in slots {
            let e = self.state.table.get(slot);
            let op = Op::Dispatch {
                id: e.id.clone(),
                attempt: e.attempt + 1,
                lease_until: self.lease_until(e.timeout_ms),
                started: true,
            };
            let lsn = self.propose(op, Origin::Lease, out);
            self.external.proposed.insert(lsn, Arc::clone(holder));
            lsns.push(lsn);
            #[cfg(feature = "mutants")]
            granted.push((lsn, slot));
        }
        #[cfg(feature = "mutants")]
        if self.lease_at_once(req, &granted, out) {
            return;
        }
        if let Some(&last) = lsns.last() {
            self.wait(last, req, Answer::Leased(lsns), out);
        }
    }

    /// Serves the waiting requests, first come first served, while a
    /// queue one of them names has a job to give; then those in
    /// beanstalkd's order.
    pub(super) fn serve_waiters(&mut self, out: &mut Vec<Effect>) {
        let mut i = 0;
        while i < self.external.waiters.len()
            && self.external.first_come > 0
            && self.a_waited_queue_is_ready()
        {
            let w = &self.external.waiters[i];
            if w.rotating {
                i += 1;
                continue;
            }
            let (queues, max) = (w.queues.clone(), w.max);
            let slots = self.pick_ready(&queues, max);
            if slots.is_empty() {
                i += 1;
                continue;
            }
            if let Some(w) = self.external.take_waiter(i) {
                self.grant(w.req, slots, &w.holder, out);
            }
        }
        self.serve_rotating_waiters(out);
    }

    /// Advances the clock to `now` before `input` is taken. While only
    /// requests in beanstalkd's order wait (no first-come request, no
    /// pool), each job that comes due is made ready and offered to them
    /// before the next, as beanstalkd's tick enqueues its delayed jobs one
    /// at a time, each enqueue serving the waiting: a job due first goes
    /// to the next waiting connection even when a better one comes due in
    /// the same millisecond. Not before a refused append is taken: its
    /// records are proposed again first.
    pub(super) fn advance(&mut self, now: UnixMillis, input: &Input, out: &mut Vec<Effect>) {
        let one_by_one = !self.external.waiters.is_empty()
            && self.external.first_come == 0
            && self.config.workers == 0
            && !matches!(input, Input::AppendFailed { .. });
        if !one_by_one {
            return self.state.advance(now);
        }
        while let Some(slot) = self.state.advance_one(now) {
            if self.external.waiters.is_empty() {
                // Nobody left to offer the rest to.
                return self.state.advance(now);
            }
            let queue = self.state.table.get(slot).queue as usize;
            let waited = self
                .external
                .rings
                .has_members(&self.state.queues[queue].name);
            if waited && !self.stopping && !self.paused() {
                self.serve_rotating_waiters(out);
            }
        }
    }

    /// Serves the requests waiting in beanstalkd's order, as its
    /// `process_queue` does: while a queue somebody waits on has a ready
    /// job, the best such job (highest priority, then lowest number) goes
    /// to the member at its queue's cursor.
    fn serve_rotating_waiters(&mut self, out: &mut Vec<Effect>) {
        while let Some((queue, slot)) = self.best_waited_job() {
            let Some(req) = self.external.rings.take(&queue) else {
                return;
            };
            let Some(i) = self.external.waiters.iter().position(|w| w.req == req) else {
                return;
            };
            let Some(w) = self.external.take_waiter(i) else {
                return;
            };
            self.reserve_for_lease(slot);
            self.grant(w.req, vec![slot], &w.holder, out);
        }
    }

    /// The best ready job of the queues somebody waits on in beanstalkd's
    /// order, and its queue.
    fn best_waited_job(&self) -> Option<(QueueName, u32)> {
        let rings = &self.external.rings;
        self.external
            .waited
            .keys()
            .filter(|q| rings.has_members(q))
            .filter_map(|q| self.ready_head(q).map(|k| (k, q)))
            .min()
            .map(|(k, q)| (q.clone(), k.2))
    }

    /// Whether a queue some request waits for has a job to give.
    fn a_waited_queue_is_ready(&self) -> bool {
        self.external.waited.keys().any(|q| {
            self.state.queue_ix.get(q).is_some_and(|&ix| {
                self.hands_out(ix) && self.state.queues[ix as usize].ready.len() > 0
            })
        })
    }

    /// Answers the requests whose wait is over with no jobs.
    pub(super) fn answer_due_waiters(&mut self, out: &mut Vec<Effect>) {
        let now = self.state.now;
        while let Some(&(t, req)) = self.external.waiter_deadlines.first() {
            if t > now {
                break;
            }
            self.external.withdraw(req);
            reply(out, req, Reply::Leased(Ok(Vec::new())));
        }
    }

    /// Graceful shutdown: nothing more is dispatched or leased; waiting
    /// lease requests are told so.
    pub(super) fn on_stop_dispatching(&mut self, out: &mut Vec<Effect>) {
        self.stopping = true;
        while let Some(w) = self.external.take_waiter(0) {
            reply(out, w.req, Reply::Leased(Err(Rejection::Stopping)));
        }
    }

    /// The lease dispatch at `lsn` of the job in `slot` is durable: the
    /// lease is granted, and delivered with its request's answer.
    pub(super) fn lease_granted(&mut self, lsn: Lsn, slot: u32) {
        #[cfg(feature = "mutants")]
        if self.leased_already(lsn) {
            return;
        }
        let x = &mut self.external;
        let holder = x.proposed.remove(&lsn).unwrap_or_else(|| "".into());
        x.granted.insert(lsn, (slot, holder));
        x.counters.granted += 1;
    }

    /// Delivers the granted leases among `lsns` to their worker: each is
    /// current from now, its deadline when its job's timeout is surely over.
    pub(super) fn deliver(&mut self, lsns: &[Lsn]) -> Vec<LeasedJob> {
        let now = self.state.now;
        let mut jobs = Vec::with_capacity(lsns.len());
        for &lsn in lsns {
            let Some((slot, holder)) = self.external.granted.remove(&lsn) else {
                continue;
            };
            let e = self.state.table.get(slot);
            let lease_until = self.span_end(e.timeout_ms);
            let expiry = lease_until.saturating_add(self.config.lease_slack_ms);
            let x = &mut self.external;
            let held = Held {
                slot,
                attempt: e.attempt,
                holder,
                started_at: now,
                lease_until,
                expiry,
                ending: None,
            };
            x.current.insert(lsn, held);
            x.by_slot.insert(slot, lsn);
            x.expiries.insert((expiry, lsn));
            x.counters.active = x.current.len() as u64;
            #[cfg(feature = "mutants")]
            self.delivered(lsn, slot);
            jobs.push(LeasedJob {
                job: self.view(slot),
                lease_id: lsn,
                lease_until,
            });
        }
        jobs
    }

    /// The current external leases, by id, at most [`LEASE_LIST_MAX`].
    pub fn list_leases(&self) -> LeaseList {
        let leases = self
            .external
            .current
            .iter()
            .take(LEASE_LIST_MAX)
            .map(|(&lease_id, h)| {
                let e = self.state.table.get(h.slot);
                LeaseView {
                    lease_id,
                    id: e.id.clone(),
                    queue: self.state.queues[e.queue as usize].name.clone(),
                    attempt: h.attempt,
                    holder: h.holder.to_string(),
                    lease_until: h.lease_until,
                    started_at: h.started_at,
                }
            })
            .collect();
        LeaseList {
            leases,
            total: self.external.current.len() as u64,
        }
    }
}

/// Refuses a lease's holder text longer than [`HOLDER_BYTES_MAX`] bytes or
/// holding control characters.
pub(super) fn check_holder(holder: &str) -> Result<(), Rejection> {
    if holder.len() > HOLDER_BYTES_MAX || holder.chars().any(char::is_control) {
        return Err(Rejection::Invalid {
            index: None,
            field: "holder".into(),
            reason: format!(
                "must be at most {HOLDER_BYTES_MAX} bytes without control characters, got {} bytes",
                holder.len()
            ),
        });
    }
    Ok(())
}

/// `queues` and their `lives` without a queue named twice (its first
/// mention kept).
fn distinct(queues: Vec<QueueName>, lives: Vec<u64>) -> (Vec<QueueName>, Vec<u64>) {
    let named_twice = |(i, q): (usize, &QueueName)| queues[..i].contains(q);
    if !queues.iter().enumerate().any(named_twice) {
        return (queues, lives);
    }
    let mut kept: (Vec<QueueName>, Vec<u64>) = (Vec::new(), Vec::new());
    for (q, life) in queues.into_iter().zip(lives) {
        if !kept.0.contains(&q) {
            kept.0.push(q);
            kept.1.push(life);
        }
    }
    kept
}
