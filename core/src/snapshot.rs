//! Snapshots: the durable state at one LSN, in canonical form.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, JobState, Payload, QueueName};
use crate::record::Lsn;
use crate::state::State;
use crate::table::{Entry, Place};
use crate::time::UnixMillis;

/// The durable state at `lsn`.
///
/// Guarantees: canonical — two queues with the same durable state give
/// equal snapshots (jobs in acceptance order, remembered ids in purge
/// order), so snapshots can be compared to check recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every record up to and including this LSN is folded in.
    pub lsn: Lsn,
    /// The latest record time folded in.
    pub log_time: UnixMillis,
    /// The sequence number the next accepted job gets.
    pub next_seq: u64,
    /// The queues jobs name (by index), sorted by name.
    pub queues: Vec<QueueName>,
    /// Every job, in acceptance order.
    pub jobs: Vec<SnapshotJob>,
    /// Ids of purged jobs still remembered, oldest first, with purge time.
    pub remembered: Vec<(UnixMillis, JobId)>,
}

/// One job in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotJob {
    /// Acceptance order.
    pub seq: u64,
    /// Id.
    pub id: JobId,
    /// Queue, as an index into [`Snapshot::queues`].
    pub queue: u32,
    /// State.
    pub state: JobState,
    /// Payload (dropped once completed or cancelled).
    pub payload: Option<Payload>,
    /// Priority.
    pub priority: i32,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Limit on one attempt.
    pub timeout_ms: u64,
    /// Accepted at.
    pub created_at: UnixMillis,
    /// Runnable from.
    pub run_at: UnixMillis,
    /// Lease deadline (in flight) or finish time (final); 0 otherwise.
    pub state_at: UnixMillis,
    /// Latest error.
    pub last_error: Option<String>,
}

impl Snapshot {
    pub(crate) fn of(state: &State) -> Snapshot {
        // Canonical queue numbering: the names jobs use, sorted.
        let mut used = vec![false; state.queues.len()];
        for (_, e) in state.table.iter() {
            used[e.queue as usize] = true;
        }
        let mut names: Vec<(&QueueName, usize)> = state
            .queues
            .iter()
            .enumerate()
            .filter(|(i, _)| used[*i])
            .map(|(i, q)| (&q.name, i))
            .collect();
        names.sort_unstable();
        let mut renumber = vec![0u32; state.queues.len()];
        for (new, &(_, old)) in names.iter().enumerate() {
            renumber[old] = new as u32;
        }
        let mut jobs: Vec<SnapshotJob> = state
            .table
            .iter()
            .map(|(_, e)| SnapshotJob {
                seq: e.seq,
                id: e.id.clone(),
                queue: renumber[e.queue as usize],
                state: e.state,
                payload: e.payload.clone(),
                priority: e.priority,
                attempt: e.attempt,
                max_attempts: e.max_attempts,
                timeout_ms: e.timeout_ms,
                created_at: e.created_at,
                run_at: e.run_at,
                state_at: e.state_at,
                last_error: e.last_error.as_deref().map(str::to_owned),
            })
            .collect();
        jobs.sort_unstable_by_key(|j| j.seq);
        Snapshot {
            lsn: state.applied_lsn,
            log_time: state.log_time,
            next_seq: state.next_seq,
            queues: names.into_iter().map(|(n, _)| n.clone()).collect(),
            jobs,
            remembered: state
                .remembered
                .iter()
                .map(|(t, id)| (t, id.clone()))
                .collect(),
        }
    }

    /// Restores into a fresh state. Fails (changing nothing of use) if a
    /// job names a queue the snapshot does not list.
    pub(crate) fn restore_into(self, state: &mut State) -> Result<(), String> {
        if let Some(j) = self
            .jobs
            .iter()
            .find(|j| j.queue as usize >= self.queues.len())
        {
            return Err(format!(
                "job {} names queue #{} of {}",
                j.id,
                j.queue,
                self.queues.len()
            ));
        }
        state.applied_lsn = self.lsn;
        state.log_time = self.log_time;
        state.now = state.now.max(self.log_time);
        state.next_seq = self.next_seq;
        let queues: Vec<u32> = self.queues.iter().map(|q| state.queue_index(q)).collect();
        let entries = self.jobs.into_iter().map(|j| Entry {
            id: j.id,
            payload: j.payload,
            last_error: j.last_error.map(String::into_boxed_str),
            seq: j.seq,
            created_at: j.created_at,
            run_at: j.run_at,
            state_at: j.state_at,
            timeout_ms: j.timeout_ms,
            priority: j.priority,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            queue: queues[j.queue as usize],
            state: j.state,
            place: Place::Nowhere,
            reserved: false,
            running: false,
        });
        state.restore_entries(entries);
        for (t, id) in self.remembered {
            state.remembered.insert(t, id);
        }
        Ok(())
    }
}
