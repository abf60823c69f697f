//! The durable state: exactly the fold of the durable log.
//!
//! [`State::apply`] (in `apply`) is the only place it changes; `restore`
//! fills a fresh state from a snapshot. Everything here depends
//! only on records, never on configuration or a clock; the one exception,
//! `now`, decides only whether a pending job sits in the ready or the
//! scheduled index, which is not part of the durable state.

mod apply;
mod restore;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) use restore::Restorer;

use crate::job::{JobState, QueueName};
use crate::record::Lsn;
use crate::remembered::Remembered;
use crate::sorted_set::SortedSet;
use crate::stats::{StateCounts, Totals};
use crate::table::{Entry, Place, Table};
use crate::time::UnixMillis;

/// Key of a ready job: highest priority first, then oldest first.
pub(crate) type ReadyKey = (Reverse<i32>, u64, u32);
/// Key of a timed index: `(time, seq, slot)`.
pub(crate) type TimedKey = (UnixMillis, u64, u32);

/// One named queue: its ready jobs, its figures and its pause.
#[derive(Clone)]
pub(crate) struct QueueSlot {
    pub name: QueueName,
    pub ready: SortedSet<ReadyKey>,
    /// Its jobs per state.
    pub counts: StateCounts,
    /// Its pending jobs filed in the (shared) scheduled index.
    pub scheduled: u64,
    /// Durable: it hands out nothing while the time is below this (0: not
    /// paused; `u64::MAX`: until resumed).
    pub paused_until: UnixMillis,
}

impl QueueSlot {
    /// Whether the queue hands out nothing at `now`.
    pub(crate) fn is_paused(&self, now: UnixMillis) -> bool {
        now < self.paused_until
    }
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
    /// The planted bug of the simulator's own test, from [`crate::Config`].
    #[cfg(feature = "mutants")]
    pub planted: Option<crate::mutants::Mutant>,
    pub table: Table,
    pub queues: Vec<QueueSlot>,
    pub queue_ix: BTreeMap<QueueName, u32>,
    pub scheduled: SortedSet<TimedKey>,
    pub leases: SortedSet<TimedKey>,
    pub finished: SortedSet<TimedKey>,
    pub dead: SortedSet<TimedKey>,
    pub remembered: Remembered,
    /// Every job by its number (`(seq, slot)`), for lookups by number and
    /// listings in acceptance order.
    pub by_seq: SortedSet<(u64, u32)>,
    /// `(paused_until, queue)` of every paused queue, for the next deadline.
    pub pauses: BTreeSet<(UnixMillis, u32)>,
    /// Numbers at or above `next_seq` that an id of digits only already
    /// spells (a client gave it before such ids were refused): the job that
    /// gets such a number is assigned `~N` instead. Not durable: derived
    /// from the jobs and remembered ids; entries below `next_seq` are
    /// dropped as it passes them.
    pub digit_ids: BTreeSet<u64>,
    /// How many jobs the last queue purge applied cancelled.
    pub last_queue_purge: u64,
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
            #[cfg(feature = "mutants")]
            planted: None,
            table: Table::new(seed),
            queues: Vec::new(),
            queue_ix: BTreeMap::new(),
            scheduled: SortedSet::new(),
            leases: SortedSet::new(),
            finished: SortedSet::new(),
            dead: SortedSet::new(),
            remembered: Remembered::new(seed.rotate_left(17)),
            by_seq: SortedSet::new(),
            pauses: BTreeSet::new(),
            digit_ids: BTreeSet::new(),
            last_queue_purge: 0,
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
        while self.advance_one(now).is_some() {}
    }

    /// Advances the indexing clock and moves the first due scheduled job
    /// (due first, then lowest number) to ready; its slot, or `None` if
    /// none is due.
    pub(crate) fn advance_one(&mut self, now: UnixMillis) -> Option<u32> {
        self.now = self.now.max(now);
        match self.scheduled.first() {
            Some(&(run_at, _, slot)) if run_at <= self.now => {
                self.reindex(slot, |_| {});
                Some(slot)
            }
            _ => None,
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
            counts: StateCounts::default(),
            scheduled: 0,
            paused_until: 0,
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
            Place::Scheduled => {
                self.queues[e.queue as usize].scheduled -= 1;
                self.scheduled.remove(&(e.run_at, seq, slot))
            }
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
                self.queues[e.queue as usize].scheduled += 1;
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

    /// Takes the job out of its index, changes what a snapshot does not
    /// hold of it (its reservation, its holder), and files it again.
    pub(crate) fn reindex(&mut self, slot: u32, change: impl FnOnce(&mut Entry)) {
        self.unplace(slot);
        change(self.table.get_mut(slot));
        self.place(slot);
    }

    /// [`State::reindex`] for a change of what a snapshot holds of the job
    /// (see [`crate::table::Table::edit`]).
    fn rewrite(&mut self, slot: u32, change: impl FnOnce(&mut Entry)) {
        self.unplace(slot);
        self.table.edit(slot, change);
        self.place(slot);
    }

    /// Counts one job of `queue` more (`up`) or less in state `s`, in the
    /// whole and in its queue.
    fn count(&mut self, queue: u32, s: JobState, up: bool) {
        for counts in [&mut self.counts, &mut self.queues[queue as usize].counts] {
            let n = match s {
                JobState::Pending => &mut counts.pending,
                JobState::InFlight => &mut counts.in_flight,
                JobState::Completed => &mut counts.completed,
                JobState::Dead => &mut counts.dead,
                JobState::Cancelled => &mut counts.cancelled,
            };
            match up {
                true => *n += 1,
                false => *n -= 1,
            }
        }
    }

    /// Notes that an id spells `number`, if that number is still to be
    /// assigned (see `digit_ids`).
    pub(crate) fn note_digit_id(&mut self, number: Option<u64>) {
        if let Some(n) = number.filter(|&n| n >= self.next_seq) {
            self.digit_ids.insert(n);
        }
    }

    /// Moves a job to `to` (with `change` for the other fields), keeping
    /// counts, payload bytes and indexes in step. Clears its reservation:
    /// the record that was proposed about it is now applied.
    fn transition(&mut self, slot: u32, to: JobState, change: impl FnOnce(&mut Entry)) {
        let (from, queue) = (self.table.get(slot).state, self.table.get(slot).queue);
        self.count(queue, from, false);
        self.count(queue, to, true);
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
        self.rewrite(slot, |e| {
            e.state = to;
            e.reserved = false;
            e.started = false;
            e.suspect &= !to.is_final();
            change(e);
        });
    }

    /// Indexes the ids of jobs a replay inserted (see [`State::apply_owned`]).
    pub(crate) fn index_deferred(&mut self) {
        self.table.index_deferred();
    }
}
