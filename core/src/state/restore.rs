//! Restoring a snapshot into a fresh state: every job checked, each
//! ordered index built in bulk at the end.

use std::cmp::Reverse;

use super::{ReadyKey, State, TimedKey};
use crate::job::{JobId, JobState, QueueName};
use crate::record::Lsn;
use crate::table::{Entry, Holder, Place};
use crate::time::UnixMillis;

impl State {
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
        self.note_digit_id(id.number());
        self.remembered.insert(purged_at, id);
        Ok(())
    }

    /// Restores a queue's pause from a snapshot (after the jobs).
    pub(crate) fn restore_pause(
        &mut self,
        queue: &QueueName,
        until: UnixMillis,
    ) -> Result<(), String> {
        let q = self.queue_index(queue);
        if until == 0 || self.queues[q as usize].paused_until != 0 {
            return Err(format!("queue {queue} is paused until 0, or twice"));
        }
        self.queues[q as usize].paused_until = until;
        self.pauses.insert((until, q));
        Ok(())
    }

    /// Restores a snapshot's fields before its jobs into this fresh state;
    /// returns the state's index of each of the snapshot's queue numbers.
    pub(crate) fn restore_head(
        &mut self,
        lsn: Lsn,
        log_time: UnixMillis,
        next_seq: u64,
        queues: &[QueueName],
    ) -> Vec<u32> {
        self.applied_lsn = lsn;
        self.log_time = log_time;
        self.now = self.now.max(log_time);
        self.next_seq = next_seq;
        queues.iter().map(|q| self.queue_index(q)).collect()
    }

    /// Starts filling this fresh state from a snapshot (its queues known:
    /// jobs name no queue added after this).
    pub(crate) fn restorer(&mut self, capacity: usize) -> Restorer {
        assert_eq!(self.table.len(), 0, "restore goes into a fresh state");
        self.table.reserve(capacity);
        Restorer {
            ready: vec![Vec::new(); self.queues.len()],
            keys: Vec::with_capacity(capacity),
            by_seq: Vec::with_capacity(capacity),
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
/// Each call takes the state it fills (the one that made it), so that a
/// restore can be carried across calls (a snapshot fed in pieces).
pub(crate) struct Restorer {
    /// `(id hash, slot)` of every job, indexed in bulk at the end.
    keys: Vec<(u32, u32)>,
    /// `(seq, slot)` of every job, indexed in bulk at the end.
    by_seq: Vec<(u64, u32)>,
    ready: Vec<Vec<ReadyKey>>,
    scheduled: Vec<TimedKey>,
    leases: Vec<TimedKey>,
    finished: Vec<TimedKey>,
    dead: Vec<TimedKey>,
}

impl Restorer {
    pub(crate) fn push(&mut self, s: &mut State, entry: Entry) -> Result<(), String> {
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
            || (entry.started && entry.state != JobState::InFlight)
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
        let number = entry.id.number();
        let (slot, hash) = s.table.push_unindexed(Entry {
            place,
            reserved: false,
            holder: Holder::None,
            suspect: false,
            ..entry
        });
        self.keys.push((hash, slot));
        self.by_seq.push((seq, slot));
        s.note_digit_id(number);
        s.count(queue, state, true);
        if place == Place::Scheduled {
            s.queues[queue as usize].scheduled += 1;
        }
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
    pub(crate) fn finish(self, s: &mut State) -> Result<(), String> {
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
        // The index holds (number, slot) pairs: two jobs with one number
        // are two pairs, so the numbers themselves are compared.
        let mut numbers: Vec<u64> = self.by_seq.iter().map(|&(seq, _)| seq).collect();
        numbers.sort_unstable();
        if numbers.windows(2).any(|w| w[0] == w[1]) {
            return Err("two jobs have one sequence number".into());
        }
        s.by_seq = self.by_seq.into_iter().collect();
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
