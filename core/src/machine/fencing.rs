//! Fencing: what an external worker may do with its lease. `Heartbeat`,
//! `Complete` and `Fail` act only on a lease that is current and live (not
//! past its expiry); anything else is `LeaseLost` and changes nothing, so
//! a worker whose lease expired (and whose job another worker may now
//! run) can never complete or fail the job's newer attempt.
//!
//! Retries are idempotent: a complete (or fail) retried while its record
//! is on its way to the log waits for the same record; one retried after
//! it applied is answered as the first was, from a bounded memory of
//! recently ended leases (`limits.lease_ended_max`, oldest forgotten
//! first; a retry of a forgotten one is `LeaseLost`, and changes nothing).
//!
//! An expired lease ends its attempt as timed out: it fails and counts.
//! There is nothing to abort: the worker is not this process's.

use super::Core;
use super::external::End;
use super::proposals::{Answer, Origin, reply};
use crate::protocol::{Effect, LeaseId, Rejection, Reply, RequestId, Retry};
use crate::record::{Lsn, Op};
use crate::retry::backoff_ms;
use crate::table::Holder;

/// What ends a lease at a worker's request.
enum Ending<'a> {
    Complete,
    Fail {
        error: &'a str,
        retry: Retry,
    },
    Return {
        priority: Option<i32>,
        delay_ms: u64,
    },
    Bury {
        priority: Option<i32>,
    },
}

impl Ending<'_> {
    fn end(&self) -> End {
        match self {
            Ending::Complete => End::Completed,
            Ending::Fail { .. } => End::Failed,
            Ending::Return { .. } => End::Released,
            Ending::Bury { .. } => End::Buried,
        }
    }

    fn answer(&self) -> Answer {
        match self {
            Ending::Complete => Answer::Completed,
            Ending::Fail { .. } => Answer::Failed,
            Ending::Return { .. } => Answer::Released,
            Ending::Bury { .. } => Answer::Buried,
        }
    }

    fn reply(&self, result: Result<(), Rejection>) -> Reply {
        match self {
            Ending::Complete => Reply::Completed(result),
            Ending::Fail { .. } => Reply::Failed(result),
            Ending::Return { .. } => Reply::Released(result),
            Ending::Bury { .. } => Reply::Buried(result),
        }
    }
}

impl Core {
    /// Renews a current, live lease: its deadline becomes now plus
    /// `extend_ms` (or the job's timeout). Nothing is logged.
    pub(super) fn on_heartbeat(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        extend_ms: Option<u64>,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.limits.lease_extend_max_ms;
        if let Some(ms) = extend_ms.filter(|&ms| ms == 0 || ms > max) {
            let rejection = Rejection::Invalid {
                index: None,
                field: "extend_ms".into(),
                reason: format!("must be 1 to {max}, got {ms}"),
            };
            return reply(out, req, Reply::Heartbeat(Err(rejection)));
        }
        #[cfg(feature = "mutants")]
        let lease = self.refenced(crate::mutants::Mutant::HeartbeatIgnoresAttempt, lease);
        let Some(slot) = self.live_slot(lease) else {
            return self.lost(req, lease, Reply::Heartbeat, out);
        };
        let slack = self.config.lease_slack_ms;
        let timeout_ms = self.state.table.get(slot).timeout_ms;
        // The end is computed before the entry is borrowed: `span_end`
        // reads the core (its planted-bug hook).
        let lease_until = self.span_end(extend_ms.unwrap_or(timeout_ms));
        let x = &mut self.external;
        let Some(h) = x.current.get_mut(&lease) else {
            return self.lost(req, lease, Reply::Heartbeat, out);
        };
        x.expiries.remove(&(h.expiry, lease));
        h.lease_until = lease_until;
        h.expiry = h.lease_until.saturating_add(slack);
        x.expiries.insert((h.expiry, lease));
        x.counters.renewed += 1;
        reply(out, req, Reply::Heartbeat(Ok(h.lease_until)));
    }

    /// Completes the job of a current, live lease, once durable.
    pub(super) fn on_complete(&mut self, req: RequestId, lease: LeaseId, out: &mut Vec<Effect>) {
        self.end_lease(req, lease, Ending::Complete, out);
    }

    /// Fails the attempt of a current, live lease, once durable; the job
    /// retries as `retry` says while attempts are left, else is dead.
    pub(super) fn on_fail(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        error: &str,
        retry: Retry,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.limits.delay_ms_max;
        if let Retry::InMs(ms) = retry {
            if ms > max {
                let rejection = Rejection::Invalid {
                    index: None,
                    field: "retry_in_ms".into(),
                    reason: format!("must be at most {max}, got {ms}"),
                };
                return reply(out, req, Reply::Failed(Err(rejection)));
            }
        }
        self.end_lease(req, lease, Ending::Fail { error, retry }, out);
    }

    /// Gives the attempt of a current, live lease back, once durable: the
    /// job is pending again (after `delay_ms`, with `priority` if given)
    /// and the attempt does not count.
    pub(super) fn on_release(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        priority: Option<i32>,
        delay_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.limits.delay_ms_max;
        if delay_ms > max {
            let rejection = Rejection::Invalid {
                index: None,
                field: "delay_ms".into(),
                reason: format!("must be at most {max}, got {delay_ms}"),
            };
            return reply(out, req, Reply::Released(Err(rejection)));
        }
        self.end_lease(req, lease, Ending::Return { priority, delay_ms }, out);
    }

    /// Sets the job of a current, live lease aside (dead, with `priority`
    /// if given; no failure counted), once durable.
    pub(super) fn on_bury(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        priority: Option<i32>,
        out: &mut Vec<Effect>,
    ) {
        self.end_lease(req, lease, Ending::Bury { priority }, out);
    }

    /// Whether `lease` is current, with no end on its way, and not past
    /// its expiry.
    pub(super) fn is_live(&self, lease: LeaseId) -> bool {
        self.live_slot(lease).is_some()
    }

    /// The job slot of `lease` if it is live (see [`Core::is_live`]).
    fn live_slot(&self, lease: LeaseId) -> Option<u32> {
        let h = self.external.current.get(&lease)?;
        (h.ending.is_none() && self.state.now < h.expiry).then_some(h.slot)
    }

    /// Refuses a request naming a lease that is not current.
    fn lost(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        answer: impl FnOnce(Result<u64, Rejection>) -> Reply,
        out: &mut Vec<Effect>,
    ) {
        self.external.counters.lost += 1;
        reply(out, req, answer(Err(Rejection::LeaseLost { lease })));
    }

    /// Ends a lease as `how` says, or answers a retry of an end already
    /// made, or refuses.
    fn end_lease(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        how: Ending<'_>,
        out: &mut Vec<Effect>,
    ) {
        #[cfg(feature = "mutants")]
        let lease = self.refenced(crate::mutants::Mutant::StaleLeaseCompletes, lease);
        let end = how.end();
        let ending = self.external.current.get(&lease).map(|h| h.ending);
        match ending {
            // A retry while the first is on its way: the same record answers.
            Some(Some((e, lsn))) if e == end => return self.wait(lsn, req, how.answer(), out),
            Some(None) if self.is_live(lease) => return self.propose_end(req, lease, &how, out),
            None if self.external.ended.get(&lease) == Some(&end) => {
                return reply(out, req, how.reply(Ok(())));
            }
            _ => {}
        }
        self.external.counters.lost += 1;
        let lost = Err(Rejection::LeaseLost { lease });
        reply(out, req, how.reply(lost));
    }

    /// Proposes the record that ends the live `lease` as `how` says.
    fn propose_end(
        &mut self,
        req: RequestId,
        lease: LeaseId,
        how: &Ending<'_>,
        out: &mut Vec<Effect>,
    ) {
        let Some(h) = self.external.current.get(&lease) else {
            return;
        };
        let (slot, attempt, expiry) = (h.slot, h.attempt, h.expiry);
        let e = self.state.table.get(slot);
        let op = match how {
            Ending::Complete => Op::Complete {
                id: e.id.clone(),
                attempt,
            },
            Ending::Fail { error, retry } => {
                let mut op = self.fail_op(e, attempt, error);
                if let Op::Fail { retry_at, .. } = &mut op {
                    let now = self.state.now;
                    *retry_at = match retry {
                        _ if attempt >= e.max_attempts => None,
                        Retry::Policy => {
                            Some(now.saturating_add(backoff_ms(&self.config.retry, &e.id, attempt)))
                        }
                        Retry::InMs(ms) => Some(self.span_end(*ms)),
                        Retry::GiveUp => None,
                    };
                }
                op
            }
            Ending::Return { priority, delay_ms } => Op::Return {
                id: e.id.clone(),
                attempt,
                priority: priority.unwrap_or(e.priority),
                run_at: self.span_end(*delay_ms),
            },
            Ending::Bury { priority } => Op::Bury {
                id: e.id.clone(),
                attempt,
                priority: priority.unwrap_or(e.priority),
            },
        };
        self.state.table.get_mut(slot).reserved = true;
        let lsn = self.propose(op, Origin::LeaseEnd(lease), out);
        let x = &mut self.external;
        x.expiries.remove(&(expiry, lease));
        if let Some(h) = x.current.get_mut(&lease) {
            h.ending = Some((how.end(), lsn));
        }
        self.wait(lsn, req, how.answer(), out);
    }

    /// Gives back leases whose request could not be answered: each live
    /// one ends, its job pending again, the attempt not counted.
    pub(super) fn on_return_leases(&mut self, leases: &[LeaseId], out: &mut Vec<Effect>) {
        for &lease in leases {
            if !self.is_live(lease) {
                continue;
            }
            let Some(h) = self.external.current.get(&lease) else {
                continue;
            };
            let (slot, attempt, expiry) = (h.slot, h.attempt, h.expiry);
            let id = self.state.table.get(slot).id.clone();
            self.state.table.get_mut(slot).reserved = true;
            let lsn = self.propose(Op::Release { id, attempt }, Origin::LeaseEnd(lease), out);
            let x = &mut self.external;
            x.expiries.remove(&(expiry, lease));
            if let Some(h) = x.current.get_mut(&lease) {
                h.ending = Some((End::Returned, lsn));
            }
        }
    }

    /// A complete, fail or release record of job `id` applied at `lsn`: if
    /// it ends the job's lease, the lease is over and remembered.
    pub(super) fn lease_ended(&mut self, lsn: Lsn, id: &crate::job::JobId) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        if self.state.table.get(slot).holder != Holder::Lease {
            return;
        }
        let x = &mut self.external;
        let Some(&lease) = x.by_slot.get(&slot) else {
            return;
        };
        let Some((end, _)) = x
            .current
            .get(&lease)
            .and_then(|h| h.ending)
            .filter(|e| e.1 == lsn)
        else {
            return;
        };
        self.end_current(lease, end);
    }

    /// `lease` is over, as `end`: its job is held by nobody, and the end is
    /// remembered for retries.
    fn end_current(&mut self, lease: LeaseId, end: End) {
        let x = &mut self.external;
        let Some(h) = x.current.remove(&lease) else {
            return;
        };
        x.by_slot.remove(&h.slot);
        x.expiries.remove(&(h.expiry, lease));
        x.counters.active = x.current.len() as u64;
        let cap = self.config.limits.lease_ended_max.max(1) as usize;
        while x.ended_order.len() >= cap {
            if let Some(old) = x.ended_order.pop_front() {
                x.ended.remove(&old);
            }
        }
        x.ended.insert(lease, end);
        x.ended_order.push_back(lease);
        self.state.table.get_mut(h.slot).holder = Holder::None;
    }

    /// Ends every external lease past its expiry: its attempt fails as
    /// timed out (and counts).
    pub(super) fn expire_external(&mut self, out: &mut Vec<Effect>) {
        let now = self.state.now;
        while let Some(&(expiry, lease)) = self.external.expiries.first() {
            if expiry > now {
                break;
            }
            let Some(slot) = self.external.current.get(&lease).map(|h| h.slot) else {
                self.external.expiries.remove(&(expiry, lease));
                continue;
            };
            self.end_current(lease, End::Expired);
            self.external.counters.expired += 1;
            let e = self.state.table.get(slot);
            let text = format!(
                "lease {lease} expired: no heartbeat, complete or fail by its deadline (plus {} ms of slack)",
                self.config.lease_slack_ms
            );
            let op = self.fail_op(e, e.attempt, &text);
            self.state.table.get_mut(slot).reserved = true;
            self.propose(op, Origin::Expiry, out);
        }
    }
}

impl super::external::External {
    /// The end of `lease` proposed at `lsn` will never be applied: the
    /// lease is current again (and may expire).
    pub(super) fn end_refused(&mut self, lease: LeaseId, lsn: Lsn) {
        if let Some(h) = self.current.get_mut(&lease) {
            if h.ending.is_some_and(|(_, l)| l == lsn) {
                h.ending = None;
                self.expiries.insert((h.expiry, lease));
            }
        }
    }
}
