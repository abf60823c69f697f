//! Applying records: the only way the durable state changes, one function
//! per kind of record.
//!
//! A record that names one job checks everything in its own function
//! before it changes anything (one id lookup, not two); records that name
//! several jobs are checked whole first (`validate`), so none applies half.

use std::collections::BTreeSet;

use super::{Applied, ApplyError, State};
use crate::job::{ASSIGNED_ID_PREFIX, JobId, JobState, NewJob};
use crate::record::{Lsn, Op, Record};
use crate::table::{Entry, Place};
use crate::time::UnixMillis;

impl State {
    /// Applies one record. Records at or below the applied LSN are skipped
    /// (idempotent replay); a gap or a record that does not fit the state is
    /// an error and changes nothing.
    pub(crate) fn apply(&mut self, record: &Record) -> Result<Applied, ApplyError> {
        let lsn = record.lsn;
        #[cfg(feature = "mutants")]
        let lsn = match crate::mutants::active(crate::mutants::Mutant::NonIdempotentReplay) {
            true => lsn.max(self.applied_lsn + 1), // applies an old record again
            false => lsn,
        };
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
            } => self.apply_dispatch(lsn, id, *attempt, *lease_until)?,
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

    /// A pending job starts its next attempt.
    fn apply_dispatch(
        &mut self,
        lsn: Lsn,
        id: &JobId,
        attempt: u32,
        lease_until: UnixMillis,
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
        });
        Ok(())
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
        self.transition(slot, JobState::Completed, |e| e.state_at = at);
        self.table.get_mut(slot).payload = None;
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
        self.table.get_mut(slot).payload = None;
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
            *self.count_mut(e.state) -= 1;
            self.totals.purged += 1;
            self.remembered.insert(at, e.id);
        }
        for id in forget {
            self.remembered.remove(id.as_str());
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
            | Op::Cancel { .. } => None,
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
            // An assigned id is unique by construction: it must be
            // `~` followed by the job's own sequence number, which
            // only grows. (Checked without a lookup.)
            if let Some(n) = id.strip_prefix(ASSIGNED_ID_PREFIX) {
                if n.starts_with('0') || n.parse::<u64>() != Ok(seq) {
                    return Some(format!(
                        "assigned id {id} does not match its sequence number {seq}"
                    ));
                }
            } else if self.table.slot_of(id).is_some()
                || self.remembered.contains(id)
                || (jobs.len() > 1 && !seen.insert(id))
            {
                return Some(format!("job {id} is enqueued twice"));
            }
            if job.max_attempts == 0 {
                return Some(format!("job {id} has max_attempts 0"));
            }
        }
        None
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
        self.counts.pending += 1;
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
            held: false,
        };
        let slot = if defer_index {
            self.table.insert_deferred(entry)
        } else {
            self.table.insert(entry)
        };
        self.place(slot);
    }
}
