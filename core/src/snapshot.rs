//! Snapshots: the durable state at one LSN, in canonical form.

use serde::{Deserialize, Serialize};

use crate::codec::encode_into;
use crate::job::{JobId, JobState, Payload, QueueName};
use crate::record::Lsn;
use crate::state::State;
use crate::table::{Entry, Holder, Place};
use crate::time::UnixMillis;

/// The durable state at `lsn`.
///
/// Guarantees: canonical — two cores with the same durable state give
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
    /// Paused queues, sorted by name, each with the time its pause ends
    /// (`u64::MAX`: until resumed). New in format version 2.
    pub paused: Vec<(QueueName, UnixMillis)>,
}

/// One job in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotJob {
    /// Acceptance order.
    pub seq: u64,
    /// Id.
    pub id: JobId,
    /// Its named queue, as an index into [`Snapshot::queues`].
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
    /// In flight: its attempt's start is logged, so it counts if the
    /// process dies. New in format version 2 (version 1's in-flight jobs
    /// read as started: every dispatch counted then).
    pub started: bool,
}

/// Canonical queue numbering: the names jobs use, sorted; and for each
/// queue index of the state, its number in that list.
fn canonical_queues(state: &State) -> (Vec<&QueueName>, Vec<u32>) {
    let mut used = vec![false; state.queues.len()];
    for (_, e) in state.table.iter() {
        used[e.queue as usize] = true;
    }
    canonical_queues_of(state, &used)
}

/// [`canonical_queues`] of the queues flagged in `used`.
fn canonical_queues_of<'a>(state: &'a State, used: &[bool]) -> (Vec<&'a QueueName>, Vec<u32>) {
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
    (names.into_iter().map(|(n, _)| n).collect(), renumber)
}

/// The bytes job `e` takes in a snapshot, less its queue number's (which
/// depends on the other queues: see [`encoded_len`]).
pub(crate) fn job_len(e: &Entry) -> u64 {
    encoded_size(&SnapshotJobRef::of(e, 0)).saturating_sub(1)
}

/// How many bytes postcard encodes `value` to (a size only: nothing is
/// written). The types here cannot fail to encode; if one did, the size
/// would read as the largest, never as too small.
fn encoded_size<T: Serialize>(value: &T) -> u64 {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_or(u64::MAX, |n: usize| n as u64)
}

/// The length of the state's snapshot encoding (the pieces of a
/// [`SnapshotRef`] and the version byte: what
/// [`crate::codec::encode_queue_snapshot`] returns), computed without
/// encoding or ordering the jobs and without a pass over them: the jobs'
/// bytes less their queue numbers are kept as they change (the table's
/// [`crate::footprint::Footprint`]), each queue's jobs are given the size
/// of their queue's canonical number, and the remembered ids' bytes are
/// kept too. Linear in the queues and the paused queues only.
pub(crate) fn encoded_len(state: &State) -> u64 {
    let jobs_of_queue: Vec<u64> = state.queues.iter().map(|q| q.counts.total()).collect();
    let used: Vec<bool> = jobs_of_queue.iter().map(|&n| n > 0).collect();
    let (queues, renumber) = canonical_queues_of(state, &used);
    let mut jobs_bytes = state.table.footprint().snapshot_job_bytes;
    for (q, &n) in jobs_of_queue.iter().enumerate() {
        jobs_bytes = jobs_bytes.saturating_add(n.saturating_mul(encoded_size(&renumber[q])));
    }
    let tail = encoded_size(&state.remembered.len())
        .saturating_add(state.remembered.encoded_bytes())
        .saturating_add(encoded_size(&paused_queues(state)));
    1u64.saturating_add(encoded_size(&head(state, &queues, state.table.len())))
        .saturating_add(jobs_bytes)
        .saturating_add(tail)
}

/// The bytes one remembered id takes in a snapshot's tail.
pub(crate) fn remembered_id_len(purged_at: UnixMillis, id: &JobId) -> u64 {
    encoded_size(&(purged_at, id))
}

/// The bytes the remembered ids take in a snapshot's tail, their count's
/// prefix aside: a recount of what [`crate::remembered`] keeps.
pub(crate) fn remembered_len<'a>(ids: impl Iterator<Item = (UnixMillis, &'a JobId)>) -> u64 {
    ids.map(|(t, id)| remembered_id_len(t, id)).sum()
}

/// The snapshot's fields before the jobs, and the jobs' count (postcard
/// encodes a tuple as its fields in order, a sequence as its length and
/// then its elements).
fn head<'a>(
    state: &State,
    queues: &'a [&'a QueueName],
    jobs: usize,
) -> (Lsn, UnixMillis, u64, &'a [&'a QueueName], usize) {
    (
        state.applied_lsn,
        state.log_time,
        state.next_seq,
        queues,
        jobs,
    )
}

/// The snapshot's fields after the jobs: the remembered ids (with their
/// purge times) and the paused queues (with the ends of their pauses).
type Tail<'a> = (
    Vec<(UnixMillis, &'a JobId)>,
    Vec<(&'a QueueName, UnixMillis)>,
);

/// The snapshot's fields after the jobs, as [`Tail`].
fn tail(state: &State) -> Tail<'_> {
    (state.remembered.iter().collect(), paused_queues(state))
}

/// The table's slots in acceptance order.
fn slots_by_seq(state: &State) -> Vec<u32> {
    state.by_seq.iter().map(|&(_, slot)| slot).collect()
}

/// The paused queues, sorted by name, with the ends of their pauses.
fn paused_queues(state: &State) -> Vec<(&QueueName, UnixMillis)> {
    let mut paused: Vec<(&QueueName, UnixMillis)> = state
        .queues
        .iter()
        .filter(|q| q.paused_until != 0)
        .map(|q| (&q.name, q.paused_until))
        .collect();
    paused.sort_unstable();
    paused
}

/// A [`SnapshotJob`] borrowing from the table: serializes to the same bytes.
#[derive(Serialize)]
struct SnapshotJobRef<'a> {
    seq: u64,
    id: &'a JobId,
    queue: u32,
    state: JobState,
    payload: Option<&'a Payload>,
    priority: i32,
    attempt: u32,
    max_attempts: u32,
    timeout_ms: u64,
    created_at: UnixMillis,
    run_at: UnixMillis,
    state_at: UnixMillis,
    last_error: Option<&'a str>,
    started: bool,
}

impl<'a> SnapshotJobRef<'a> {
    fn of(e: &'a Entry, queue: u32) -> Self {
        SnapshotJobRef {
            seq: e.seq,
            id: &e.id,
            queue,
            state: e.state,
            payload: e.payload.as_ref(),
            priority: e.priority,
            attempt: e.attempt,
            max_attempts: e.max_attempts,
            timeout_ms: e.timeout_ms,
            created_at: e.created_at,
            run_at: e.run_at,
            state_at: e.state_at,
            last_error: e.last_error.as_deref(),
            started: e.started,
        }
    }
}

/// A [`Snapshot`] borrowing from the state, encoded piece by piece (the
/// fields before the jobs, each job, the fields after) to the same bytes
/// as the whole [`Snapshot`], without copying a job (for a million jobs,
/// hundreds of MiB less at peak).
pub(crate) struct SnapshotRef<'a> {
    state: &'a State,
    queues: Vec<&'a QueueName>,
    /// Table slots in acceptance order.
    order: Vec<u32>,
    renumber: Vec<u32>,
}

impl<'a> SnapshotRef<'a> {
    pub(crate) fn of(state: &'a State) -> Self {
        let (queues, renumber) = canonical_queues(state);
        SnapshotRef {
            state,
            queues,
            order: slots_by_seq(state),
            renumber,
        }
    }

    /// How many jobs it holds.
    pub(crate) fn job_count(&self) -> usize {
        self.order.len()
    }

    /// Appends the encoding of the fields before the jobs and the jobs'
    /// count (postcard encodes a struct as its fields in order, and a
    /// sequence as its length and then its elements).
    pub(crate) fn encode_head(&self, out: &mut Vec<u8>) {
        encode_into(&head(self.state, &self.queues, self.order.len()), out);
    }

    /// Appends the encoding of the `i`-th job in acceptance order.
    pub(crate) fn encode_job(&self, i: usize, out: &mut Vec<u8>) {
        let e = self.state.table.get(self.order[i]);
        encode_into(&SnapshotJobRef::of(e, self.renumber[e.queue as usize]), out);
    }

    /// Appends the encoding of the fields after the jobs.
    pub(crate) fn encode_tail(&self, out: &mut Vec<u8>) {
        encode_into(&tail(self.state), out);
    }
}

impl Snapshot {
    pub(crate) fn of(state: &State) -> Snapshot {
        let (queues, renumber) = canonical_queues(state);
        let jobs: Vec<SnapshotJob> = slots_by_seq(state)
            .into_iter()
            .map(|slot| {
                let e = state.table.get(slot);
                SnapshotJob {
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
                    started: e.started,
                }
            })
            .collect();
        Snapshot {
            lsn: state.applied_lsn,
            log_time: state.log_time,
            next_seq: state.next_seq,
            queues: queues.into_iter().cloned().collect(),
            jobs,
            remembered: state
                .remembered
                .iter()
                .map(|(t, id)| (t, id.clone()))
                .collect(),
            paused: paused_queues(state)
                .into_iter()
                .map(|(q, t)| (q.clone(), t))
                .collect(),
        }
    }

    /// Restores into a fresh state.
    pub(crate) fn restore_into(self, state: &mut State) -> Result<(), String> {
        let queues = state.restore_head(self.lsn, self.log_time, self.next_seq, &self.queues);
        let mut r = state.restorer(self.jobs.len());
        for j in self.jobs {
            r.push(state, restored_entry(j, &queues)?)?;
        }
        r.finish(state)?;
        for (t, id) in self.remembered {
            state.restore_remembered(t, id)?;
        }
        for (q, until) in &self.paused {
            state.restore_pause(q, *until)?;
        }
        Ok(())
    }
}

/// The table entry of a snapshot's job, its queue number mapped to the
/// state's index (`queues`, by the snapshot's numbers).
pub(crate) fn restored_entry(j: SnapshotJob, queues: &[u32]) -> Result<Entry, String> {
    let queue = queues
        .get(j.queue as usize)
        .copied()
        .ok_or_else(|| format!("job {} names queue #{} of {}", j.id, j.queue, queues.len()))?;
    Ok(Entry {
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
        queue,
        state: j.state,
        place: Place::Nowhere,
        reserved: false,
        holder: Holder::None,
        started: j.started,
        suspect: false,
    })
}
