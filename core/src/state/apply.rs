//! Applying records: the only way the durable state changes, one function
//! per kind of record.
//!
//! A record that names one job checks everything in its own function
//! before it changes anything (one id lookup, not two); records that name
//! several jobs are checked whole first (`validate`), so none applies half.

use std::collections::BTreeSet;

use super::{Applied, ApplyError, State};
use crate::job::{ASSIGNED_ID_PREFIX, JobId, JobState, NewJob, QueueName};
use crate::record::{Lsn, Op, Record};
use crate::table::{Entry, Holder, Place};
use crate::time::UnixMillis;

impl State {
    /// The planted bug `NonIdempotentReplay`: an old record's LSN taken
    /// as the next one, so that it is applied again.
    #[cfg(feature = "mutants")]
    fn planted_replay_lsn(&self, lsn: Lsn) -> Lsn {
        match self.planted == Some(crate::mutants::Mutant::NonIdempotentReplay) {
            true => lsn.max(self.applied_lsn + 1),
            false => lsn,
        }
    }

    /// Applies one record. Records at or below the applied LSN are skipped
    /// (idempotent replay); a gap or a record that does not fit the state is
    /// an error and changes nothing.
    pub(crate) fn apply(&mut self, record: &Record) -> Result<Applied, ApplyError> {
        let lsn = record.lsn;
        #[cfg(feature = "mutants")]
        let lsn = self.planted_replay_lsn(lsn);
        if lsn <= self.applied_lsn {
            return Ok(Applied::Skipped);
        }
        if lsn != self.applied_lsn + 1 {
            return Err(ApplyError {
                lsn,
                reason: format!("the log jumps from LSN {} to {lsn}", self.applied_lsn),
            });
        }
        // Records other than a replayed enqueue look jobs up by id.
        self.table.index_deferred();
        if matches!(
            record.op,
            Op::Enqueue { .. } | Op::Requeue { .. } | Op::Purge { .. }
        ) {
            self.validate(record)?;
        }
        let at = record.at.max(self.log_time);
        match &record.op {
            Op::Enqueue { jobs } => {
                for job in jobs {
                    self.insert_new(job.clone(), at, false);
                }
            }
            Op::Dispatch {
                id,
                attempt,
                lease_until,
                started,
            } => self.apply_dispatch(lsn, (id, *attempt), *lease_until, *started)?,
            Op::Complete { id, attempt } => self.apply_complete(lsn, id, *attempt, at)?,
            Op::Fail {
                id,
                attempt,
                error,
                retry_at,
            } => self.apply_fail(lsn, (id, *attempt), error, *retry_at, at)?,
            Op::Release { id, attempt } => self.apply_release(lsn, id, *attempt)?,
            Op::Cancel { id } => self.apply_cancel(lsn, id, at)?,
            Op::Requeue { ids } => self.apply_requeue(lsn, ids, at)?,
            Op::Purge { jobs, forget } => self.apply_purge(lsn, jobs, forget, at)?,
            Op::Start { id, attempt } => self.apply_start(lsn, id, *attempt)?,
            Op::PauseQueue { queue, until } => self.apply_pause_queue(queue, *until),
            Op::PurgeQueue { queue } => self.apply_purge_queue(queue, at),
            Op::Checkpoint => {}
            Op::Return {
                id,
                attempt,
                priority,
                run_at,
            } => self.apply_return(lsn, (id, *attempt), *priority, *run_at)?,
            Op::Bury {
                id,
                attempt,
                priority,
            } => self.apply_bury(lsn, (id, *attempt), *priority, at)?,
            Op::DeleteDead { id } => self.apply_delete_dead(lsn, id, at)?,
            Op::Kick { id } => {
                let slot = self.slot_in(lsn, id, JobState::Pending)?;
                self.transition(slot, JobState::Pending, |e| e.run_at = e.run_at.min(at));
            }
        }
        self.stamp(at);
        self.applied_lsn = lsn;
        Ok(Applied::Changed)
    }

    /// [`State::apply`] for a record the caller owns: an enqueue's jobs are
    /// moved into the table instead of copied. With `defer_index` (a
    /// rebuild), their ids are indexed later, all at once (see
    /// [`crate::table::Table::index_deferred`]; any other record, a removal
    /// or [`State::index_deferred`] does it).
    pub(crate) fn apply_owned(
        &mut self,
        record: Record,
        defer_index: bool,
    ) -> Result<Applied, ApplyError> {
        let Op::Enqueue { jobs } = &record.op else {
            return self.apply(&record);
        };
        if record.lsn != self.applied_lsn + 1 {
            return self.apply(&record); // skips an old record or reports the gap
        }
        // Assigned ids need no lookup (an old client id of digits only is
        // looked up, by a scan until indexed: rare, and still correct).
        if self.table.deferred_len() > 0 && !jobs.iter().all(|j| j.id.is_assigned()) {
            // A client's id is checked against every job by a lookup.
            self.table.index_deferred();
        }
        self.validate(&record)?;
        let at = self.stamp(record.at);
        if let Op::Enqueue { jobs } = record.op {
            for job in jobs {
                self.insert_new(job, at, defer_index);
            }
        }
        self.applied_lsn = record.lsn;
        Ok(Applied::Changed)
    }

    /// A pending job starts its next attempt; it counts from now if it
    /// `started`, else once a start record follows.
    fn apply_dispatch(
        &mut self,
        lsn: Lsn,
        (id, attempt): (&JobId, u32),
        lease_until: UnixMillis,
        started: bool,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in(lsn, id, JobState::Pending)?;
        let (have, max) = (
            self.table.get(slot).attempt,
            self.table.get(slot).max_attempts,
        );
        if attempt != have + 1 || attempt > max {
            return Err(ApplyError {
                lsn,
                reason: format!(
                    "job {id} has used {have} attempts of {max}; dispatch names attempt {attempt}"
                ),
            });
        }
        self.totals.dispatched += 1;
        self.transition(slot, JobState::InFlight, |e| {
            e.attempt = attempt;
            e.state_at = lease_until;
            e.started = started;
            e.suspect &= !started;
        });
        Ok(())
    }

    /// An attempt dispatched ahead of a free worker began: it counts.
    fn apply_start(&mut self, lsn: Lsn, id: &JobId, attempt: u32) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        if self.table.get(slot).started {
            return Err(ApplyError {
                lsn,
                reason: format!("job {id} attempt {attempt} is already started"),
            });
        }
        self.table.edit(slot, |e| {
            e.started = true;
            e.suspect = false;
        });
        Ok(())
    }

    /// A queue is paused until `until` (0: resumed).
    fn apply_pause_queue(&mut self, queue: &QueueName, until: UnixMillis) {
        let q = self.queue_index(queue);
        let before = std::mem::replace(&mut self.queues[q as usize].paused_until, until);
        self.pauses.remove(&(before, q));
        if until != 0 {
            self.pauses.insert((until, q));
        }
    }

    /// Every pending job of a queue is cancelled; a queue no job names has
    /// none. Counts them in `last_queue_purge`.
    fn apply_purge_queue(&mut self, queue: &QueueName, at: UnixMillis) {
        self.last_queue_purge = 0;
        let Some(&q) = self.queue_ix.get(queue) else {
            return;
        };
        let slot_q = &self.queues[q as usize];
        let mut slots: Vec<u32> = slot_q.ready.iter().map(|k| k.2).collect();
        slots.extend(
            self.scheduled
                .iter()
                .map(|k| k.2)
                .filter(|&s| self.table.get(s).queue == q),
        );
        if (slots.len() as u64) < slot_q.counts.pending {
            // Pending jobs filed nowhere (a proposal about them in flight):
            // found by a scan, so that a replay without proposals cancels
            // exactly the same jobs.
            slots = self
                .table
                .iter()
                .filter(|(_, e)| e.queue == q && e.state == JobState::Pending)
                .map(|(s, _)| s)
                .collect();
        }
        for &slot in &slots {
            self.transition(slot, JobState::Cancelled, |e| {
                e.state_at = at;
                e.payload = None;
            });
        }
        self.last_queue_purge = slots.len() as u64;
    }

    /// The current attempt succeeded: the job completes and drops its payload.
    fn apply_complete(
        &mut self,
        lsn: Lsn,
        id: &JobId,
        attempt: u32,
        at: UnixMillis,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        self.totals.completed += 1;
        self.transition(slot, JobState::Completed, |e| {
            e.state_at = at;
            e.payload = None;
        });
        Ok(())
    }

    /// The current attempt failed: the job retries at `retry_at`, or is dead.
    fn apply_fail(
        &mut self,
        lsn: Lsn,
        (id, attempt): (&JobId, u32),
        error: &str,
        retry_at: Option<UnixMillis>,
        at: UnixMillis,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        let max = self.table.get(slot).max_attempts;
        if retry_at.is_some() && attempt >= max {
            return Err(ApplyError {
                lsn,
                reason: format!("job {id} used all {max} attempts; a retry is impossible"),
            });
        }
        self.totals.failed += 1;
        let error = Some(error.into());
        match retry_at {
            Some(t) => self.transition(slot, JobState::Pending, |e| {
                e.run_at = t;
                e.state_at = 0;
                e.last_error = error;
            }),
            None => {
                self.totals.dead += 1;
                self.transition(slot, JobState::Dead, |e| {
                    e.state_at = at;
                    e.last_error = error;
                });
            }
        }
        Ok(())
    }

    /// The current attempt never started: the job is pending again and
    /// the attempt does not count.
    fn apply_release(&mut self, lsn: Lsn, id: &JobId, attempt: u32) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        self.transition(slot, JobState::Pending, |e| {
            e.attempt -= 1;
            e.state_at = 0;
        });
        Ok(())
    }

    /// The current attempt is given back with a new priority and run
    /// time: the job is pending again and the attempt does not count.
    fn apply_return(
        &mut self,
        lsn: Lsn,
        (id, attempt): (&JobId, u32),
        priority: i32,
        run_at: UnixMillis,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        self.transition(slot, JobState::Pending, |e| {
            e.attempt -= 1;
            e.state_at = 0;
            e.priority = priority;
            e.run_at = run_at;
        });
        Ok(())
    }

    /// The current attempt's worker sets the job aside: dead, with a new
    /// priority, no failure counted.
    fn apply_bury(
        &mut self,
        lsn: Lsn,
        (id, attempt): (&JobId, u32),
        priority: i32,
        at: UnixMillis,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in_attempt(lsn, id, attempt)?;
        self.totals.dead += 1;
        self.transition(slot, JobState::Dead, |e| {
            e.state_at = at;
            e.priority = priority;
        });
        Ok(())
    }

    /// A dead job is cancelled and drops its payload.
    fn apply_delete_dead(
        &mut self,
        lsn: Lsn,
        id: &JobId,
        at: UnixMillis,
    ) -> Result<(), ApplyError> {
        let slot = self.slot_in(lsn, id, JobState::Dead)?;
        self.transition(slot, JobState::Cancelled, |e| {
            e.state_at = at;
            e.payload = None;
        });
        Ok(())
    }

    /// A pending job is cancelled, or an in-flight one whose attempt was
    /// handed out and never started (that attempt does not count).
    fn apply_cancel(&mut self, lsn: Lsn, id: &JobId, at: UnixMillis) -> Result<(), ApplyError> {
        let slot = self.slot_in(lsn, id, JobState::Pending).or_else(|_| {
            self.slot_in(lsn, id, JobState::InFlight)
                .map_err(|e| ApplyError {
                    reason: format!("{}; a cancel needs pending or in_flight", e.reason),
                    ..e
                })
        })?;
        let handed_out = self.table.get(slot).state == JobState::InFlight;
        self.transition(slot, JobState::Cancelled, |e| {
            e.state_at = at;
            if handed_out {
                e.attempt -= 1;
            }
        });
        #[cfg(feature = "mutants")]
        if self.planted == Some(crate::mutants::Mutant::FootprintMissesAnEdit) {
            self.table.get_mut(slot).payload = None;
            return Ok(());
        }
        self.table.edit(slot, |e| e.payload = None);
        Ok(())
    }

    /// Dead jobs are pending again with a fresh set of attempts.
    fn apply_requeue(&mut self, lsn: Lsn, ids: &[JobId], at: UnixMillis) -> Result<(), ApplyError> {
        for id in ids {
            let slot = self.slot_in(lsn, id, JobState::Dead)?;
            self.transition(slot, JobState::Pending, |e| {
                e.attempt = 0;
                e.run_at = at;
                e.state_at = 0;
            });
        }
        Ok(())
    }

    /// Final jobs are removed (their ids remembered), remembered ids forgotten.
    fn apply_purge(
        &mut self,
        lsn: Lsn,
        jobs: &[JobId],
        forget: &[JobId],
        at: UnixMillis,
    ) -> Result<(), ApplyError> {
        for id in jobs {
            let slot = self.table.slot_of(id.as_str()).ok_or_else(|| ApplyError {
                lsn,
                reason: format!("purged job {id} is unknown"),
            })?;
            self.unplace(slot);
            let e = self.table.remove(slot);
            self.by_seq.remove(&(e.seq, slot));
            self.count(e.queue, e.state, false);
            self.totals.purged += 1;
            self.remembered.insert(at, e.id);
        }
        for id in forget {
            self.remembered.remove(id.as_str());
            if let Some(n) = id.number() {
                // The number is free again (it spells no other id).
                self.digit_ids.remove(&n);
            }
        }
        Ok(())
    }

    /// The slot of job `id`, which must be in state `want`.
    fn slot_in(&self, lsn: Lsn, id: &JobId, want: JobState) -> Result<u32, ApplyError> {
        let slot = self.table.slot_of(id.as_str()).ok_or_else(|| ApplyError {
            lsn,
            reason: format!("job {id} is unknown"),
        })?;
        let state = self.table.get(slot).state;
        if state != want {
            return Err(ApplyError {
                lsn,
                reason: format!("job {id} is {}, expected {}", state.as_str(), want.as_str()),
            });
        }
        Ok(slot)
    }

    /// The slot of job `id`, which must be in flight on attempt `attempt`.
    fn slot_in_attempt(&self, lsn: Lsn, id: &JobId, attempt: u32) -> Result<u32, ApplyError> {
        let slot = self.slot_in(lsn, id, JobState::InFlight)?;
        let have = self.table.get(slot).attempt;
        if have != attempt {
            return Err(ApplyError {
                lsn,
                reason: format!(
                    "job {id} is on attempt {have}, the record names attempt {attempt}"
                ),
            });
        }
        Ok(slot)
    }

    /// A record's time, clamped to never go back (against earlier records).
    fn stamp(&mut self, at: UnixMillis) -> UnixMillis {
        let at = at.max(self.log_time);
        self.log_time = at;
        self.now = self.now.max(at);
        at
    }

    /// Checks everything that could make a record naming several jobs fail
    /// half-way, so a failing record changes nothing. (Single-job records
    /// are checked in their own apply function.)
    fn validate(&self, record: &Record) -> Result<(), ApplyError> {
        let lsn = record.lsn;
        let reason = match &record.op {
            Op::Enqueue { jobs } => self.enqueue_unfit(jobs),
            Op::Requeue { ids } => return self.requeue_unfit(lsn, ids),
            Op::Purge { jobs, forget } => self.purge_unfit(jobs, forget),
            Op::Dispatch { .. }
            | Op::Complete { .. }
            | Op::Fail { .. }
            | Op::Release { .. }
            | Op::Cancel { .. }
            | Op::Start { .. }
            | Op::PauseQueue { .. }
            | Op::PurgeQueue { .. }
            | Op::Checkpoint
            | Op::Return { .. }
            | Op::Bury { .. }
            | Op::DeleteDead { .. }
            | Op::Kick { .. } => None,
        };
        match reason {
            Some(reason) => Err(ApplyError { lsn, reason }),
            None => Ok(()),
        }
    }

    /// Why an enqueue of `jobs` does not fit, if it does not.
    fn enqueue_unfit(&self, jobs: &[NewJob]) -> Option<String> {
        let mut seen = BTreeSet::new();
        for (seq, job) in (self.next_seq..).zip(jobs) {
            let id = job.id.as_str();
            if job.id.assigned_number() == Some(seq) {
                // An assigned id is unique by construction: the job's own
                // sequence number, which only grows, plain or after `~`.
                // Checked without a lookup: only an old client id of
                // digits only can spell it, and `digit_ids` holds those.
                if !id.starts_with(ASSIGNED_ID_PREFIX) && self.digit_ids.contains(&seq) {
                    return Some(format!(
                        "assigned id {id} is another job's id; the job needs ~{seq}"
                    ));
                }
            } else if id.starts_with(ASSIGNED_ID_PREFIX) {
                return Some(format!(
                    "assigned id {id} does not match its sequence number {seq}"
                ));
            } else if self.table.slot_of(id).is_some()
                || self.remembered.contains(id)
                || (jobs.len() > 1 && !seen.insert(id))
                || self.assigned_in_record(jobs, &job.id)
            {
                return Some(format!("job {id} is enqueued twice"));
            }
            if job.max_attempts == 0 {
                return Some(format!("job {id} has max_attempts 0"));
            }
        }
        None
    }

    /// Whether `id` (a client's id) is the assigned id of another job of the
    /// same enqueue record `jobs`: an id of digits only is the assigned id
    /// of the job at that sequence number, and a client's id anywhere else,
    /// so one spelling can be both. Checked without a set: the record's jobs
    /// take sequence numbers from `next_seq` on.
    fn assigned_in_record(&self, jobs: &[NewJob], id: &JobId) -> bool {
        let Some(at) = id.number().and_then(|n| n.checked_sub(self.next_seq)) else {
            return false;
        };
        usize::try_from(at)
            .ok()
            .and_then(|i| jobs.get(i))
            .is_some_and(|other| other.id == *id)
    }

    /// `Err` if a requeue of `ids` does not fit.
    fn requeue_unfit(&self, lsn: Lsn, ids: &[JobId]) -> Result<(), ApplyError> {
        let mut seen = BTreeSet::new();
        for id in ids {
            self.slot_in(lsn, id, JobState::Dead)?;
            if !seen.insert(id) {
                return Err(ApplyError {
                    lsn,
                    reason: format!("job {id} is requeued twice in one record"),
                });
            }
        }
        Ok(())
    }

    /// Why a purge of `jobs` and `forget` does not fit, if it does not.
    fn purge_unfit(&self, jobs: &[JobId], forget: &[JobId]) -> Option<String> {
        let mut seen = BTreeSet::new();
        for id in jobs {
            let Some(slot) = self.table.slot_of(id.as_str()) else {
                return Some(format!("purged job {id} is unknown"));
            };
            if !self.table.get(slot).state.is_final() || !seen.insert(id) {
                return Some(format!(
                    "job {id} cannot be purged: not final, or named twice"
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for id in forget {
            if !self.remembered.contains(id.as_str()) || !seen.insert(id) {
                return Some(format!("id {id} is not remembered, or named twice"));
            }
        }
        None
    }

    /// Adds a new pending job (indexing its id later with `defer_index`).
    fn insert_new(&mut self, job: NewJob, at: UnixMillis, defer_index: bool) {
        let queue = self.queue_index(&job.queue);
        let seq = self.next_seq;
        self.next_seq += 1;
        // (An assigned id's own number is below `next_seq` now: not noted.)
        self.note_digit_id(job.id.number());
        while self.digit_ids.first().is_some_and(|&n| n < self.next_seq) {
            self.digit_ids.pop_first();
        }
        self.count(queue, JobState::Pending, true);
        self.totals.enqueued += 1;
        self.pending_payload_bytes += job.payload.len() as u64;
        let entry = Entry {
            id: job.id,
            payload: Some(job.payload),
            last_error: None,
            seq,
            created_at: at,
            run_at: job.run_at,
            state_at: 0,
            timeout_ms: job.timeout_ms,
            priority: job.priority,
            attempt: 0,
            max_attempts: job.max_attempts,
            queue,
            state: JobState::Pending,
            place: Place::Nowhere,
            reserved: false,
            holder: Holder::None,
            started: false,
            suspect: false,
        };
        let slot = if defer_index {
            self.table.insert_deferred(entry)
        } else {
            self.table.insert(entry)
        };
        self.by_seq.insert((seq, slot));
        self.place(slot);
    }
}
