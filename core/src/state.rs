//! The durable state: exactly the fold of the durable log.
//!
//! [`State::apply`] is the only place it changes. Everything here depends
//! only on records, never on configuration or a clock; the one exception,
//! `now`, decides only whether a pending job sits in the ready or the
//! scheduled index, which is not part of the durable state.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::job::{ASSIGNED_ID_PREFIX, JobId, JobState, NewJob, QueueName};
use crate::record::{Lsn, Op, Record};
use crate::remembered::Remembered;
use crate::sorted_set::SortedSet;
use crate::stats::{StateCounts, Totals};
use crate::table::{Entry, Place, Table};
use crate::time::UnixMillis;

/// Key of a ready job: highest priority first, then oldest first.
pub(crate) type ReadyKey = (Reverse<i32>, u64, u32);
/// Key of a timed index: `(time, seq, slot)`.
pub(crate) type TimedKey = (UnixMillis, u64, u32);

/// One queue's ready jobs.
#[derive(Clone)]
pub(crate) struct QueueSlot {
    pub name: QueueName,
    pub ready: SortedSet<ReadyKey>,
}

/// Why a record could not be applied: the log does not fit the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    /// The record's LSN.
    pub lsn: Lsn,
    /// What did not fit.
    pub reason: String,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} cannot be applied: {}", self.lsn, self.reason)
    }
}

impl std::error::Error for ApplyError {}

/// What applying one record did, for the driver of effects.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The record was at or below the applied LSN: nothing changed.
    Skipped,
    /// The record changed the state.
    Changed,
}

#[derive(Clone)]
pub(crate) struct State {
    pub table: Table,
    pub queues: Vec<QueueSlot>,
    pub queue_ix: BTreeMap<QueueName, u32>,
    pub scheduled: SortedSet<TimedKey>,
    pub leases: SortedSet<TimedKey>,
    pub finished: SortedSet<TimedKey>,
    pub dead: SortedSet<TimedKey>,
    pub remembered: Remembered,
    /// Sequence number the next accepted job gets (from 1).
    pub next_seq: u64,
    pub applied_lsn: Lsn,
    /// The latest record time applied (records' times clamped non-decreasing).
    pub log_time: UnixMillis,
    /// The latest time seen from records or the driver; decides ready vs scheduled.
    pub now: UnixMillis,
    pub counts: StateCounts,
    pub pending_payload_bytes: u64,
    pub totals: Totals,
}

impl State {
    pub(crate) fn new(seed: u64) -> State {
        State {
            table: Table::new(seed),
            queues: Vec::new(),
            queue_ix: BTreeMap::new(),
            scheduled: SortedSet::new(),
            leases: SortedSet::new(),
            finished: SortedSet::new(),
            dead: SortedSet::new(),
            remembered: Remembered::new(seed.rotate_left(17)),
            next_seq: 1,
            applied_lsn: 0,
            log_time: 0,
            now: 0,
            counts: StateCounts::default(),
            pending_payload_bytes: 0,
            totals: Totals::default(),
        }
    }

    /// Advances the indexing clock and moves due scheduled jobs to ready.
    pub(crate) fn advance(&mut self, now: UnixMillis) {
        self.now = self.now.max(now);
        while let Some(&(run_at, _, slot)) = self.scheduled.first() {
            if run_at > self.now {
                break;
            }
            self.reindex(slot, |_| {});
        }
    }

    pub(crate) fn queue_index(&mut self, name: &QueueName) -> u32 {
        if let Some(&ix) = self.queue_ix.get(name) {
            return ix;
        }
        let ix = self.queues.len() as u32;
        self.queues.push(QueueSlot {
            name: name.clone(),
            ready: SortedSet::new(),
        });
        self.queue_ix.insert(name.clone(), ix);
        ix
    }

    fn desired_place(&self, e: &Entry) -> Place {
        match e.state {
            JobState::Pending if e.reserved => Place::Nowhere,
            JobState::Pending if e.run_at <= self.now => Place::Ready,
            JobState::Pending => Place::Scheduled,
            JobState::InFlight => Place::Leased,
            _ => Place::Finished,
        }
    }

    fn unplace(&mut self, slot: u32) {
        let e = self.table.get(slot);
        let (seq, place) = (e.seq, e.place);
        let removed = match place {
            Place::Nowhere => true,
            Place::Ready => {
                self.queues[e.queue as usize]
                    .ready
                    .remove(&(Reverse(e.priority), seq, slot))
            }
            Place::Scheduled => self.scheduled.remove(&(e.run_at, seq, slot)),
            Place::Leased => self.leases.remove(&(e.state_at, seq, slot)),
            Place::Finished => {
                if e.state == JobState::Dead {
                    self.dead.remove(&(e.state_at, seq, slot));
                }
                self.finished.remove(&(e.state_at, seq, slot))
            }
        };
        assert!(removed, "job {} was not in its index {place:?}", e.id);
        self.table.get_mut(slot).place = Place::Nowhere;
    }

    fn place(&mut self, slot: u32) {
        let place = self.desired_place(self.table.get(slot));
        let e = self.table.get(slot);
        let seq = e.seq;
        match place {
            Place::Nowhere => {}
            Place::Ready => {
                self.queues[e.queue as usize]
                    .ready
                    .insert((Reverse(e.priority), seq, slot));
            }
            Place::Scheduled => {
                self.scheduled.insert((e.run_at, seq, slot));
            }
            Place::Leased => {
                self.leases.insert((e.state_at, seq, slot));
            }
            Place::Finished => {
                if e.state == JobState::Dead {
                    self.dead.insert((e.state_at, seq, slot));
                }
                self.finished.insert((e.state_at, seq, slot));
            }
        }
        self.table.get_mut(slot).place = place;
    }

    /// Takes the job out of its index, changes it, and files it again.
    pub(crate) fn reindex(&mut self, slot: u32, change: impl FnOnce(&mut Entry)) {
        self.unplace(slot);
        change(self.table.get_mut(slot));
        self.place(slot);
    }

    fn count_mut(&mut self, s: JobState) -> &mut u64 {
        match s {
            JobState::Pending => &mut self.counts.pending,
            JobState::InFlight => &mut self.counts.in_flight,
            JobState::Completed => &mut self.counts.completed,
            JobState::Dead => &mut self.counts.dead,
            JobState::Cancelled => &mut self.counts.cancelled,
        }
    }

    /// Moves a job to `to` (with `change` for the other fields), keeping
    /// counts, payload bytes and indexes in step. Clears its reservation:
    /// the record that was proposed about it is now applied.
    fn transition(&mut self, slot: u32, to: JobState, change: impl FnOnce(&mut Entry)) {
        let from = self.table.get(slot).state;
        *self.count_mut(from) -= 1;
        *self.count_mut(to) += 1;
        let active = |s: JobState| matches!(s, JobState::Pending | JobState::InFlight);
        let bytes = self
            .table
            .get(slot)
            .payload
            .as_ref()
            .map_or(0, |p| p.len() as u64);
        if active(from) && !active(to) {
            self.pending_payload_bytes -= bytes;
        } else if !active(from) && active(to) {
            self.pending_payload_bytes += bytes;
        }
        self.reindex(slot, |e| {
            e.state = to;
            e.reserved = false;
            change(e);
        });
    }

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
        // A record that names one job checks everything in its own arm
        // before it changes anything (one id lookup, not two); records that
        // name several jobs are checked whole first, so none applies half.
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
            } => {
                let slot = self.slot_in(lsn, id, JobState::Pending)?;
                let (have, max) = (
                    self.table.get(slot).attempt,
                    self.table.get(slot).max_attempts,
                );
                if *attempt != have + 1 || *attempt > max {
                    return Err(ApplyError {
                        lsn,
                        reason: format!(
                            "job {id} has used {have} attempts of {max}; dispatch names attempt {attempt}"
                        ),
                    });
                }
                self.totals.dispatched += 1;
                self.transition(slot, JobState::InFlight, |e| {
                    e.attempt = *attempt;
                    e.state_at = *lease_until;
                });
            }
            Op::Complete { id, attempt } => {
                let slot = self.slot_in_attempt(lsn, id, *attempt)?;
                self.totals.completed += 1;
                self.transition(slot, JobState::Completed, |e| e.state_at = at);
                self.table.get_mut(slot).payload = None;
            }
            Op::Fail {
                id,
                attempt,
                error,
                retry_at,
            } => {
                let slot = self.slot_in_attempt(lsn, id, *attempt)?;
                let max = self.table.get(slot).max_attempts;
                if retry_at.is_some() && *attempt >= max {
                    return Err(ApplyError {
                        lsn,
                        reason: format!("job {id} used all {max} attempts; a retry is impossible"),
                    });
                }
                self.totals.failed += 1;
                let error = Some(error.as_str().into());
                match retry_at {
                    Some(t) => self.transition(slot, JobState::Pending, |e| {
                        e.run_at = *t;
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
            }
            Op::Release { id, attempt } => {
                let slot = self.slot_in_attempt(lsn, id, *attempt)?;
                self.transition(slot, JobState::Pending, |e| {
                    e.attempt -= 1;
                    e.state_at = 0;
                });
            }
            Op::Cancel { id } => {
                // In flight: an attempt handed out that never started; it
                // does not count.
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
            }
            Op::Requeue { ids } => {
                for id in ids {
                    let slot = self.slot_in(lsn, id, JobState::Dead)?;
                    self.transition(slot, JobState::Pending, |e| {
                        e.attempt = 0;
                        e.run_at = at;
                        e.state_at = 0;
                    });
                }
            }
            Op::Purge { jobs, forget } => {
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
            }
        }
        self.stamp(at);
        self.applied_lsn = lsn;
        Ok(Applied::Changed)
    }

    /// [`State::apply`] for a record the caller owns: an enqueue's jobs are
    /// moved into the table instead of copied. With `defer_index` (a
    /// rebuild), their ids are indexed later, all at once (see
    /// [`Table::index_deferred`]; any other record, a removal or
    /// [`State::index_deferred`] does it).
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

    /// A record's time, clamped to never go back (against earlier records).
    fn stamp(&mut self, at: UnixMillis) -> UnixMillis {
        let at = at.max(self.log_time);
        self.log_time = at;
        self.now = self.now.max(at);
        at
    }

    /// Checks everything that could make `apply` fail half-way, so a
    /// failing record changes nothing.
    fn validate(&self, record: &Record) -> Result<(), ApplyError> {
        let lsn = record.lsn;
        let err = |reason: String| Err(ApplyError { lsn, reason });
        match &record.op {
            Op::Enqueue { jobs } => {
                let mut seen = BTreeSet::new();
                for (seq, job) in (self.next_seq..).zip(jobs) {
                    let id = job.id.as_str();
                    // An assigned id is unique by construction: it must be
                    // `~` followed by the job's own sequence number, which
                    // only grows. (Checked without a lookup.)
                    if let Some(n) = id.strip_prefix(ASSIGNED_ID_PREFIX) {
                        if n.starts_with('0') || n.parse::<u64>() != Ok(seq) {
                            return err(format!(
                                "assigned id {id} does not match its sequence number {seq}"
                            ));
                        }
                    } else if self.table.slot_of(id).is_some()
                        || self.remembered.contains(id)
                        || (jobs.len() > 1 && !seen.insert(id))
                    {
                        return err(format!("job {id} is enqueued twice"));
                    }
                    if job.max_attempts == 0 {
                        return err(format!("job {id} has max_attempts 0"));
                    }
                }
            }
            // Single-job records are checked in their own arm of `apply`.
            Op::Dispatch { .. }
            | Op::Complete { .. }
            | Op::Fail { .. }
            | Op::Release { .. }
            | Op::Cancel { .. } => {}
            Op::Requeue { ids } => {
                let mut seen = BTreeSet::new();
                for id in ids {
                    self.slot_in(lsn, id, JobState::Dead)?;
                    if !seen.insert(id) {
                        return err(format!("job {id} is requeued twice in one record"));
                    }
                }
            }
            Op::Purge { jobs, forget } => {
                let mut seen = BTreeSet::new();
                for id in jobs {
                    let Some(slot) = self.table.slot_of(id.as_str()) else {
                        return err(format!("purged job {id} is unknown"));
                    };
                    if !self.table.get(slot).state.is_final() || !seen.insert(id) {
                        return err(format!(
                            "job {id} cannot be purged: not final, or named twice"
                        ));
                    }
                }
                let mut seen = BTreeSet::new();
                for id in forget {
                    if !self.remembered.contains(id.as_str()) || !seen.insert(id) {
                        return err(format!("id {id} is not remembered, or named twice"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Indexes the ids of jobs a replay inserted (see [`State::apply_owned`]).
    pub(crate) fn index_deferred(&mut self) {
        self.table.index_deferred();
    }

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
            running: false,
        };
        let slot = if defer_index {
            self.table.insert_deferred(entry)
        } else {
            self.table.insert(entry)
        };
        self.place(slot);
    }

    /// Remembers a purged id restored from a snapshot (after the jobs).
    pub(crate) fn restore_remembered(
        &mut self,
        purged_at: UnixMillis,
        id: JobId,
    ) -> Result<(), String> {
        if self.table.slot_of(id.as_str()).is_some() || self.remembered.contains(id.as_str()) {
            return Err(format!(
                "id {id} is both remembered and live, or remembered twice"
            ));
        }
        self.remembered.insert(purged_at, id);
        Ok(())
    }

    /// Starts filling this fresh state from a snapshot.
    pub(crate) fn restorer(&mut self, capacity: usize) -> Restorer<'_> {
        assert_eq!(self.table.len(), 0, "restore goes into a fresh state");
        self.table.reserve(capacity);
        Restorer {
            ready: vec![Vec::new(); self.queues.len()],
            keys: Vec::with_capacity(capacity),
            state: self,
            scheduled: Vec::new(),
            leases: Vec::new(),
            finished: Vec::new(),
            dead: Vec::new(),
        }
    }
}

/// Fills a fresh state with a snapshot's jobs, one at a time as they are
/// decoded, and builds each ordered index in bulk at the end from sorted
/// keys (much faster than a million single inserts). Refuses jobs that
/// would break the state's invariants, whatever bytes produced them.
pub(crate) struct Restorer<'a> {
    state: &'a mut State,
    /// `(id hash, slot)` of every job, indexed in bulk at the end.
    keys: Vec<(u32, u32)>,
    ready: Vec<Vec<ReadyKey>>,
    scheduled: Vec<TimedKey>,
    leases: Vec<TimedKey>,
    finished: Vec<TimedKey>,
    dead: Vec<TimedKey>,
}

impl Restorer<'_> {
    /// Makes room for `additional` more jobs.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.state.table.reserve(additional);
        self.keys.reserve(additional);
    }

    pub(crate) fn push(&mut self, entry: Entry) -> Result<(), String> {
        let s = &mut *self.state;
        let id = &entry.id;
        if entry.queue as usize >= self.ready.len() {
            return Err(format!(
                "job {id} names queue #{} of {}",
                entry.queue,
                self.ready.len()
            ));
        }
        if entry.seq == 0
            || entry.seq >= s.next_seq
            || entry.attempt > entry.max_attempts
            || entry.max_attempts == 0
            || (entry.state == JobState::InFlight && entry.attempt == 0)
        {
            return Err(format!(
                "job {id} has an impossible sequence number or attempt count"
            ));
        }
        let active = matches!(entry.state, JobState::Pending | JobState::InFlight);
        if active && entry.payload.is_none() {
            return Err(format!(
                "job {id} is {} without a payload",
                entry.state.as_str()
            ));
        }
        let bytes = entry.payload.as_ref().map_or(0, |p| p.len() as u64);
        let place = s.desired_place(&entry);
        let (seq, state_at, state) = (entry.seq, entry.state_at, entry.state);
        let (queue, priority, run_at) = (entry.queue, entry.priority, entry.run_at);
        let (slot, hash) = s.table.push_unindexed(Entry {
            place,
            reserved: false,
            running: false,
            ..entry
        });
        self.keys.push((hash, slot));
        *s.count_mut(state) += 1;
        if active {
            s.pending_payload_bytes += bytes;
        }
        match place {
            Place::Nowhere => {}
            Place::Ready => self.ready[queue as usize].push((Reverse(priority), seq, slot)),
            Place::Scheduled => self.scheduled.push((run_at, seq, slot)),
            Place::Leased => self.leases.push((state_at, seq, slot)),
            Place::Finished => {
                if state == JobState::Dead {
                    self.dead.push((state_at, seq, slot));
                }
                self.finished.push((state_at, seq, slot));
            }
        }
        Ok(())
    }

    /// Builds the indexes; then the state is whole.
    pub(crate) fn finish(self) -> Result<(), String> {
        let s = self.state;
        // Room for every LSN and job sequence number still to come.
        if s.applied_lsn > u64::MAX / 2 || s.next_seq > u64::MAX / 2 {
            return Err(format!(
                "impossible LSN {} or next sequence number {}",
                s.applied_lsn, s.next_seq
            ));
        }
        s.table
            .index_bulk(self.keys)
            .map_err(|id| format!("job {id} appears twice"))?;
        for (q, keys) in s.queues.iter_mut().zip(self.ready) {
            q.ready = keys.into_iter().collect();
        }
        s.scheduled = self.scheduled.into_iter().collect();
        s.leases = self.leases.into_iter().collect();
        s.finished = self.finished.into_iter().collect();
        s.dead = self.dead.into_iter().collect();
        Ok(())
    }
}
