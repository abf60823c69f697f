//! Read-only views: what a driver or a client may read between steps.
//! Jobs, dead jobs, stats and status show the durable state only (never a
//! job whose enqueue is not durable); the figures about proposals say so.

use super::Core;
use crate::config::Config;
use crate::job::{JobState, JobView, QueueName, canonical_number};
use crate::protocol::{LIST_JOBS_MAX, LIST_SCAN_MAX, Rejection};
use crate::record::{Lsn, Record};
use crate::snapshot::Snapshot;
use crate::stats::{Drain, JobPage, Lease, QueueStatus, STATUS_LIST_MAX, Stats, Status};
use crate::time::UnixMillis;

impl Core {
    /// The configuration the core was built with (it never changes).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The highest applied (durable) LSN.
    pub fn applied_lsn(&self) -> Lsn {
        self.state.applied_lsn
    }

    /// The LSN the next proposed record will get: every LSN below it and
    /// above [`Core::applied_lsn`] is proposed and not yet durable.
    pub fn next_lsn(&self) -> Lsn {
        self.proposals.next_lsn
    }

    /// The latest time the core has seen (never decreases).
    pub fn now(&self) -> UnixMillis {
        self.state.now
    }

    /// One job's durable state; `None` if unknown, not yet durable, or purged.
    pub fn job(&self, id: &str) -> Option<JobView> {
        self.state.table.slot_of(id).map(|s| self.view(s))
    }

    /// The durable state of the job with number `seq` (its `seq`), if held.
    pub fn job_by_number(&self, seq: u64) -> Option<JobView> {
        self.slot_by_number(seq).map(|s| self.view(s))
    }

    fn slot_by_number(&self, seq: u64) -> Option<u32> {
        let &(found, slot) = self.state.by_seq.range_from(&(seq, 0)).next()?;
        (found == seq).then_some(slot)
    }

    /// The job named `id`: the job with that id, else, for an id of digits
    /// only, the job with that number.
    pub(super) fn find(&self, id: &str) -> Option<u32> {
        self.state
            .table
            .slot_of(id)
            .or_else(|| self.slot_by_number(canonical_number(id)?))
    }

    /// Jobs numbered above `after`, in order of their numbers, of `queue`
    /// and in `state` if given: at most `limit` (1 to [`LIST_JOBS_MAX`]),
    /// looking at no more than [`LIST_SCAN_MAX`] jobs per call (`next`
    /// then says where to go on).
    pub fn list_jobs(
        &self,
        queue: Option<&QueueName>,
        state: Option<JobState>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<JobPage, Rejection> {
        if limit == 0 || limit > LIST_JOBS_MAX {
            return Err(Rejection::Invalid {
                index: None,
                field: "limit".into(),
                reason: format!("must be 1 to {LIST_JOBS_MAX}, got {limit}"),
            });
        }
        let s = &self.state;
        let queue = match queue {
            None => None,
            Some(name) => match s.queue_ix.get(name) {
                Some(&q) => Some(q),
                None => return Ok(JobPage::default()),
            },
        };
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut page = JobPage::default();
        let mut rest = s.by_seq.range_from(&(start, 0));
        for (looked, &(seq, slot)) in (&mut rest).enumerate() {
            let e = s.table.get(slot);
            if queue.is_none_or(|q| q == e.queue) && state.is_none_or(|st| st == e.state) {
                page.jobs.push(self.view(slot));
            }
            if page.jobs.len() == limit || looked + 1 == LIST_SCAN_MAX {
                page.next = Some(seq);
                break;
            }
        }
        if page.next.is_some() && rest.next().is_none() {
            page.next = None;
        }
        Ok(page)
    }

    /// What the unfinished jobs still make and free on their way to final,
    /// if nothing new is asked: per attempt left (at least one, for a
    /// cancel or the last outcome) a dispatch, a start and an outcome, and
    /// the payloads they let go. A job with [`crate::UNLIMITED_ATTEMPTS`]
    /// never runs out of attempts, so it has no such bound: it counts for
    /// one attempt (its current or next one) and keeps its payload, and
    /// what its later attempts write is freed by the compactions the
    /// reserve keeps room for. A pure function of the durable state, kept
    /// as jobs change, so constant time: the runtime sizes its disk
    /// reserve with it.
    pub fn drain(&self) -> Drain {
        let f = self.state.table.footprint();
        Drain {
            records: f.drain_records,
            payload_bytes_freed: f.drain_payload_bytes,
        }
    }

    /// Figures about the core, cheap enough for every step.
    pub fn stats(&self) -> Stats {
        let s = &self.state;
        Stats {
            jobs: s.counts,
            ready: s.queues.iter().map(|q| q.ready.len() as u64).sum(),
            scheduled: s.scheduled.len() as u64,
            pending_payload_bytes: s.pending_payload_bytes,
            remembered_ids: s.remembered.len() as u64,
            applied_lsn: s.applied_lsn,
            proposed_lsn: self.proposals.next_lsn - 1,
            disk_full: self.disk_full,
            totals: s.totals,
            leases: self.external.counters,
        }
    }

    /// The full status: stats, the in-flight attempts (soonest deadline
    /// first) and the newest dead jobs, each list at most
    /// [`STATUS_LIST_MAX`] long.
    pub fn status(&self) -> Status {
        Status {
            stats: self.stats(),
            in_flight: self.leases_soonest_first(),
            newest_dead: self.dead_jobs(STATUS_LIST_MAX),
            queues: self.queue_statuses(),
            now: self.state.now,
        }
    }

    /// Every queue that holds jobs or is paused, by name.
    fn queue_statuses(&self) -> Vec<QueueStatus> {
        let now = self.state.now;
        let mut queues: Vec<QueueStatus> = self
            .state
            .queues
            .iter()
            .filter(|q| q.counts.total() > 0 || q.is_paused(now))
            .map(|q| QueueStatus {
                name: q.name.clone(),
                pending: q.counts.pending,
                ready: q.ready.len() as u64,
                scheduled: q.scheduled,
                in_flight: q.counts.in_flight,
                completed: q.counts.completed,
                dead: q.counts.dead,
                cancelled: q.counts.cancelled,
                paused_until: q.is_paused(now).then_some(q.paused_until),
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        queues
    }

    /// Dead jobs, newest first, at most `limit`.
    pub fn dead_jobs(&self, limit: usize) -> Vec<JobView> {
        let s = &self.state;
        s.dead
            .iter()
            .rev()
            .take(limit)
            .map(|&(_, _, slot)| self.view(slot))
            .collect()
    }

    /// When the driver must step (with [`crate::Input::Tick`]) at the
    /// latest, if nothing else happens; `None` if only inputs matter. It
    /// may change with every step: read it again after each.
    pub fn next_deadline(&self) -> Option<UnixMillis> {
        let s = &self.state;
        let mut next: Option<UnixMillis> = None;
        let mut at = |t: UnixMillis| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(&(t, _, _)) = s.scheduled.first() {
            at(t);
        }
        let internal_at = self.resume_at();
        if let Some(t) = self.first_expirable_lease() {
            at(t.max(internal_at));
        }
        let owed = !(self.orphans.is_empty() && self.deferred.is_empty());
        if self.find_orphans || owed || !self.starts_owed.is_empty() {
            at(internal_at);
        }
        if let Some(t) = self.purge_due_at() {
            at(t.max(internal_at));
        }
        if let Some(t) = self.external.first_wait_end() {
            at(t);
        }
        // The end of a pause (one until resumed has none).
        let pause_end = s.pauses.range((s.now.saturating_add(1), 0)..).next();
        if let Some(&(t, _)) = pause_end.filter(|&&(t, _)| t != u64::MAX) {
            at(t.max(internal_at));
        }
        next
    }

    /// The durable state as a snapshot (canonical: jobs in acceptance
    /// order), at LSN [`Core::applied_lsn`].
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(&self.state)
    }

    /// Proposed records not yet durable, oldest first.
    pub fn unapplied(&self) -> impl Iterator<Item = &Record> {
        self.proposals.unapplied.iter().map(|(r, _)| r.as_ref())
    }

    /// The in-flight attempts, soonest deadline first, then those waiting
    /// for a worker (no deadline yet), at most [`STATUS_LIST_MAX`].
    fn leases_soonest_first(&self) -> Vec<Lease> {
        let s = &self.state;
        let mut leases: Vec<(Option<UnixMillis>, u64, Lease)> = s
            .leases
            .iter()
            .map(|&(_, seq, slot)| {
                let e = s.table.get(slot);
                let until = self.lease_of(slot);
                let lease = Lease {
                    id: e.id.clone(),
                    attempt: e.attempt,
                    lease_until: until,
                };
                (until, seq, lease)
            })
            .collect();
        leases.sort_by_key(|(until, seq, _)| (until.is_none(), *until, *seq));
        leases
            .into_iter()
            .take(STATUS_LIST_MAX)
            .map(|(_, _, l)| l)
            .collect()
    }

    pub(super) fn view(&self, slot: u32) -> JobView {
        let e = self.state.table.get(slot);
        JobView {
            id: e.id.clone(),
            queue: self.state.queues[e.queue as usize].name.clone(),
            state: e.state,
            payload: e.payload.clone(),
            priority: e.priority,
            attempt: e.attempt,
            max_attempts: e.max_attempts,
            timeout_ms: e.timeout_ms,
            created_at: e.created_at,
            run_at: e.run_at,
            lease_until: self.lease_of(slot),
            finished_at: e.state.is_final().then_some(e.state_at),
            last_error: e.last_error.as_deref().map(str::to_owned),
            seq: e.seq,
        }
    }
}
