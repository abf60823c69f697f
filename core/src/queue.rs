//! The queue: the durable state plus the proposals in flight.
//!
//! Inputs produce records (with dense LSNs) and *reservations* so nothing is
//! proposed twice; the durable state changes only when `Durable` covers a
//! record; replies and executions are effects of that.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::config::Config;
use crate::job::{JobId, JobSpec, JobState, JobView, NewJob, QueueName};
#[cfg(feature = "mutants")]
use crate::mutants::Mutant;
use crate::protocol::{
    Effect, Enqueued, Execution, Input, Outcome, Rejection, Reply, RequestId, RequeueTarget,
};
use crate::record::{Lsn, Op, Record};
use crate::record_size;
use crate::retry::backoff_ms;
use crate::state::{Applied, ApplyError, State};
use crate::stats::{Lease, STATUS_LIST_MAX, Stats, Status};
use crate::table::Entry;
use crate::time::UnixMillis;

/// How long internal proposals pause after the log refused an append, so a
/// failing disk is not hammered.
const APPEND_RETRY_MS: u64 = 1_000;

/// Why a record is in flight: decides what happens if its append fails.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// A client request; it is answered with the error.
    Client,
    /// A dispatch; the job goes back to ready.
    Dispatch,
    /// An executor's outcome; it is proposed again later.
    Outcome(Outcome),
    /// A lease expiry; it is detected again later.
    Expiry,
    /// An attempt interrupted by a restart; proposed again later.
    Orphan,
    /// Retention; it is proposed again later.
    Purge,
}

/// A reply held until the log is durable up to its LSN.
#[derive(Debug)]
struct Waiting {
    req: RequestId,
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    Enqueued(Vec<Enqueued>),
    Cancelled,
    Requeued(u64),
}

/// The job queue's state machine. See the crate docs for the driver contract.
pub struct Core {
    config: Config,
    state: State,
    /// The LSN the next proposed record gets.
    next_lsn: Lsn,
    /// Proposed records not yet durable, in LSN order.
    unapplied: VecDeque<(Arc<Record>, Origin)>,
    /// Ids in unapplied enqueue records, with their record's LSN.
    enqueuing: HashMap<JobId, Lsn, FixedState>,
    /// Jobs and payload bytes in unapplied enqueue records.
    enqueuing_jobs: u64,
    enqueuing_bytes: u64,
    /// Sequence number the next proposed job will get when applied.
    next_seq_proposed: u64,
    /// Replies released once the applied LSN reaches the key.
    waiting: BTreeMap<Lsn, Vec<Waiting>>,
    /// Jobs this process dispatched whose outcome has not arrived.
    running: u64,
    /// The leases of running attempts that started (`Input::Started`):
    /// slot -> (attempt, deadline), and the same ordered by deadline. Not
    /// state: an attempt ends with its process, so no record carries them.
    started: HashMap<u32, (u32, UnixMillis), FixedState>,
    live_leases: BTreeSet<(UnixMillis, u32)>,
    /// In-flight jobs found at recovery: their attempt was interrupted.
    orphans: Vec<JobId>,
    /// Outcomes whose record could not be appended; proposed again later.
    deferred: Vec<(JobId, u32, Outcome)>,
    /// Internal proposals wait until then after a failed append.
    retry_at: UnixMillis,
    purge_in_flight: bool,
    disk_full: bool,
    stopping: bool,
    /// Round-robin position over queues for dispatch.
    cursor: usize,
    steps: u64,
    /// Shared so that jobs naming no queue do not allocate a name each.
    default_queue: QueueName,
    /// Set by recovery: the first step collects the orphans.
    find_orphans: bool,
}

impl Core {
    /// An empty queue.
    pub fn new(config: Config) -> Core {
        let seed = config.hash_seed;
        Core {
            config,
            state: State::new(seed),
            next_lsn: 1,
            unapplied: VecDeque::new(),
            enqueuing: HashMap::with_hasher(FixedState::with_seed(seed ^ 0x9e37_79b9)),
            enqueuing_jobs: 0,
            enqueuing_bytes: 0,
            next_seq_proposed: 1,
            waiting: BTreeMap::new(),
            running: 0,
            started: HashMap::with_hasher(FixedState::with_seed(seed ^ 0x5851_f42d)),
            live_leases: BTreeSet::new(),
            orphans: Vec::new(),
            deferred: Vec::new(),
            retry_at: 0,
            purge_in_flight: false,
            disk_full: false,
            stopping: false,
            cursor: 0,
            steps: 0,
            default_queue: QueueName::default(),
            find_orphans: false,
        }
    }

    /// Rebuilds a queue from an optional snapshot and the records after it:
    /// a pure fold. Records at or below the snapshot's LSN are skipped, so
    /// replaying overlapping input changes nothing. Jobs found in flight
    /// lost their attempt with the process: the first `step` fails them
    /// (the attempt counts) so they retry or go dead.
    pub fn recover(
        config: Config,
        snapshot: Option<crate::snapshot::Snapshot>,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Core, ApplyError> {
        let mut q = Core::new(config);
        if let Some(s) = snapshot {
            let lsn = s.lsn;
            s.restore_into(&mut q.state)
                .map_err(|reason| ApplyError { lsn, reason })?;
        }
        for r in records {
            q.state.apply_owned(r, true)?;
        }
        q.state.index_deferred();
        q.after_restore();
        Ok(q)
    }

    /// [`Core::recover`] from an encoded snapshot (as
    /// [`crate::codec::encode_snapshot`] wrote it), decoding it straight into
    /// the queue: the fast path for start-up.
    pub fn recover_encoded(
        config: Config,
        snapshot: &[u8],
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Core, RecoverError> {
        let mut q = Core::new(config);
        let body = crate::codec::snapshot_body(snapshot).map_err(RecoverError::Snapshot)?;
        crate::snapshot::restore_encoded(&mut q.state, body)
            .map_err(|e| RecoverError::Snapshot(crate::codec::DecodeError::Malformed(e)))?;
        for r in records {
            q.state.apply_owned(r, true).map_err(RecoverError::Apply)?;
        }
        q.state.index_deferred();
        q.after_restore();
        Ok(q)
    }

    /// Applies one durable record to a queue being rebuilt (the same
    /// function the live queue applies with); its jobs move into the queue.
    /// For recovery drivers that stream records; call before the first
    /// `step`, then [`Core::finish_rebuild`].
    pub fn apply_owned(&mut self, record: Record) -> Result<(), ApplyError> {
        assert!(
            self.unapplied.is_empty(),
            "apply is for rebuilding; a live queue applies on Durable"
        );
        self.state.apply_owned(record, true)?;
        self.after_restore();
        Ok(())
    }

    /// Ends a rebuild by [`Core::apply_owned`]: indexes the ids of the
    /// jobs it enqueued, which it leaves to one pass at the end (a restart
    /// replaying a million enqueued jobs then takes about a third less
    /// time). Optional: the queue answers the same without it (slower), and
    /// its first `step` does it.
    pub fn finish_rebuild(&mut self) {
        self.state.index_deferred();
    }

    /// Jobs a rebuild enqueued whose ids are not indexed yet (each found by
    /// a scan meanwhile); 0 after [`Core::finish_rebuild`] or any `step`.
    pub fn ids_awaiting_index(&self) -> usize {
        self.state.table.deferred_len()
    }

    fn after_restore(&mut self) {
        self.next_lsn = self.state.applied_lsn + 1;
        self.next_seq_proposed = self.state.next_seq;
        self.find_orphans = true;
    }

    /// In-flight jobs found at recovery lost their attempt with the process.
    fn collect_orphans(&mut self) {
        self.find_orphans = false;
        let s = &self.state;
        self.orphans = s
            .leases
            .iter()
            .map(|&(_, _, slot)| s.table.get(slot))
            .filter(|e| !e.running)
            .map(|e| e.id.clone())
            .collect();
    }

    // ----- getters -----

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The highest applied (durable) LSN.
    pub fn applied_lsn(&self) -> Lsn {
        self.state.applied_lsn
    }

    /// The LSN the next proposed record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The latest time the core has seen.
    pub fn now(&self) -> UnixMillis {
        self.state.now
    }

    /// One job's durable state.
    pub fn job(&self, id: &str) -> Option<JobView> {
        self.state.table.slot_of(id).map(|s| self.view(s))
    }

    /// Figures about the queue.
    pub fn stats(&self) -> Stats {
        let s = &self.state;
        Stats {
            jobs: s.counts,
            ready: s.queues.iter().map(|q| q.ready.len() as u64).sum(),
            scheduled: s.scheduled.len() as u64,
            pending_payload_bytes: s.pending_payload_bytes,
            remembered_ids: s.remembered.len() as u64,
            applied_lsn: s.applied_lsn,
            proposed_lsn: self.next_lsn - 1,
            disk_full: self.disk_full,
            totals: s.totals,
        }
    }

    /// The full status (stats plus leases and newest dead jobs).
    pub fn status(&self) -> Status {
        let s = &self.state;
        Status {
            stats: self.stats(),
            in_flight: self.leases_soonest_first(),
            newest_dead: self.dead_jobs(STATUS_LIST_MAX),
            now: s.now,
        }
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

    /// Dead jobs, newest first.
    pub fn dead_jobs(&self, limit: usize) -> Vec<JobView> {
        let s = &self.state;
        s.dead
            .iter()
            .rev()
            .take(limit)
            .map(|&(_, _, slot)| self.view(slot))
            .collect()
    }

    /// When the driver must call `step` (with [`Input::Tick`]) at the
    /// latest, if nothing else happens; `None` if only inputs matter.
    pub fn next_deadline(&self) -> Option<UnixMillis> {
        let s = &self.state;
        let mut next: Option<UnixMillis> = None;
        let mut at = |t: UnixMillis| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(&(t, _, _)) = s.scheduled.first() {
            at(t);
        }
        let internal_at = self.retry_at.max(s.now);
        if let Some(t) = self.first_expirable_lease() {
            at(t.max(internal_at));
        }
        if self.find_orphans || !self.orphans.is_empty() || !self.deferred.is_empty() {
            at(internal_at);
        }
        if let Some(t) = self.purge_due_at() {
            at(t.max(internal_at));
        }
        next
    }

    fn first_expirable_lease(&self) -> Option<UnixMillis> {
        let s = &self.state;
        // A lease this process does not run (none should be left once the
        // orphans are resumed) keeps its recorded deadline.
        let unowned = s
            .leases
            .iter()
            .find(|&&(_, _, slot)| {
                let e = s.table.get(slot);
                !e.reserved && !e.running
            })
            .map(|&(t, _, _)| t);
        let live = self
            .live_leases
            .iter()
            .find(|&&(t, slot)| self.lease_is_live(t, slot))
            .map(|&(t, _)| t);
        match (unowned, live) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The live lease deadline of the attempt in `slot`: set once it
    /// started, `None` while it waits for a worker or is not in flight.
    fn lease_of(&self, slot: u32) -> Option<UnixMillis> {
        let e = self.state.table.get(slot);
        if e.state != JobState::InFlight {
            return None;
        }
        if !e.running {
            return Some(e.state_at);
        }
        self.started
            .get(&slot)
            .filter(|(attempt, _)| *attempt == e.attempt)
            .map(|&(_, t)| t)
    }

    /// Whether the started lease `(until, slot)` still belongs to a
    /// running, unreserved attempt.
    fn lease_is_live(&self, until: UnixMillis, slot: u32) -> bool {
        let e = self.state.table.get(slot);
        e.running && !e.reserved && self.lease_of(slot) == Some(until)
    }

    /// When a lease taken now on an attempt of `timeout_ms` expires.
    fn lease_until(&self, timeout_ms: u64) -> UnixMillis {
        self.state
            .now
            .saturating_add(timeout_ms)
            .saturating_add(self.config.lease_slack_ms)
    }

    /// Forgets the started lease in `slot`, if any.
    fn end_lease(&mut self, slot: u32) {
        if let Some((_, t)) = self.started.remove(&slot) {
            self.live_leases.remove(&(t, slot));
        }
    }

    /// When retention next wants a purge record (`None` while one is in flight).
    fn purge_due_at(&self) -> Option<UnixMillis> {
        if self.purge_in_flight {
            return None;
        }
        let s = &self.state;
        let r = &self.config.retention;
        let d = &self.config.dedup;
        let mut due: Option<UnixMillis> = None;
        let mut at = |t: UnixMillis| due = Some(due.map_or(t, |n| n.min(t)));
        if let Some(&(t, _, _)) = s
            .finished
            .iter()
            .find(|&&(_, _, slot)| !s.table.get(slot).reserved)
        {
            let over = (s.finished.len() as u64) > r.finished_count_max;
            at(if over {
                s.now
            } else {
                t.saturating_add(r.finished_age_ms)
            });
        }
        if let Some(t) = s.remembered.oldest_at() {
            let over = (s.remembered.len() as u64) > d.ids_max;
            at(if over {
                s.now
            } else {
                t.saturating_add(d.window_ms)
            });
        }
        due
    }

    fn view(&self, slot: u32) -> JobView {
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

    // ----- the driving method -----

    /// Handles one input at time `now` (wall-clock milliseconds; clamped so
    /// it never goes backwards) and appends the effects to carry out, in
    /// order, to `out`.
    pub fn step(&mut self, now: UnixMillis, input: Input, out: &mut Vec<Effect>) {
        if self.find_orphans {
            self.state.index_deferred();
            self.collect_orphans();
        }
        self.state.advance(now);
        match input {
            Input::Enqueue { req, jobs } => self.on_enqueue(req, jobs, out),
            Input::Cancel { req, id } => self.on_cancel(req, id, out),
            Input::Requeue { req, target } => self.on_requeue(req, target, out),
            Input::Get { req, id } => out.push(Effect::Reply {
                req,
                reply: Reply::Job(self.job(id.as_str())),
            }),
            Input::ListDead { req, limit } => out.push(Effect::Reply {
                req,
                reply: Reply::Dead(self.dead_jobs(limit)),
            }),
            Input::Status { req } => out.push(Effect::Reply {
                req,
                reply: Reply::Status(Box::new(self.status())),
            }),
            Input::Durable { upto } => self.on_durable(upto, out),
            Input::AppendFailed { from_lsn, error } => self.on_append_failed(from_lsn, &error, out),
            Input::Outcome {
                id,
                attempt,
                outcome,
            } => self.on_outcome(id, attempt, outcome, out),
            Input::Started { id, attempt } => self.on_started(&id, attempt),
            Input::Tick => {}
            Input::DiskFull(full) => self.disk_full = full,
            Input::StopDispatching => self.stopping = true,
        }
        self.housekeeping(out);
        self.steps += 1;
        if cfg!(debug_assertions) {
            self.check_cheap();
        }
    }

    fn propose(&mut self, op: Op, origin: Origin, out: &mut Vec<Effect>) -> Lsn {
        debug_assert!(
            op.encoded_bytes_max() <= self.config.limits.record_bytes_max,
            "a proposed {} record may not fit the log",
            op.name()
        );
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let record = Arc::new(Record {
            lsn,
            at: self.state.now,
            op,
        });
        out.push(Effect::Append(Arc::clone(&record)));
        self.unapplied.push_back((record, origin));
        lsn
    }

    fn reply(out: &mut Vec<Effect>, req: RequestId, reply: Reply) {
        out.push(Effect::Reply { req, reply });
    }

    fn wait(&mut self, lsn: Lsn, req: RequestId, answer: Answer, out: &mut Vec<Effect>) {
        if lsn <= self.state.applied_lsn {
            Self::reply(out, req, finish(answer));
        } else {
            self.waiting
                .entry(lsn)
                .or_default()
                .push(Waiting { req, answer });
        }
    }

    // ----- client requests -----

    fn on_enqueue(&mut self, req: RequestId, specs: Vec<JobSpec>, out: &mut Vec<Effect>) {
        match self.admit(specs) {
            Err(rejection) => Self::reply(out, req, Reply::Enqueued(Err(rejection))),
            Ok(Admitted {
                new,
                answers,
                depends_on,
            }) => {
                let mut lsn = depends_on;
                if !new.is_empty() {
                    let count = new.len() as u64;
                    let bytes: u64 = new.iter().map(|j| j.payload.len() as u64).sum();
                    // Assigned ids cannot be submitted again, so only
                    // client ids need tracking for deduplication.
                    let ids: Vec<JobId> = new
                        .iter()
                        .filter(|j| !j.id.is_assigned())
                        .map(|j| j.id.clone())
                        .collect();
                    let own = self.propose(Op::Enqueue { jobs: new }, Origin::Client, out);
                    for id in ids {
                        self.enqueuing.insert(id, own);
                    }
                    self.enqueuing_jobs += count;
                    self.enqueuing_bytes += bytes;
                    self.next_seq_proposed += count;
                    lsn = lsn.max(own);
                }
                self.wait(lsn, req, Answer::Enqueued(answers), out);
            }
        }
    }

    /// Validates a batch and resolves it into new jobs and duplicates.
    /// Changes nothing: a rejected batch leaves no trace.
    fn admit(&self, specs: Vec<JobSpec>) -> Result<Admitted, Rejection> {
        let l = &self.config.limits;
        if self.stopping {
            return Err(Rejection::Stopping);
        }
        if specs.is_empty() {
            return Err(Rejection::Invalid {
                index: None,
                field: "jobs".into(),
                reason: "the batch is empty; send at least one job".into(),
            });
        }
        if specs.len() as u64 > l.batch_jobs_max {
            return Err(Rejection::TooLarge {
                index: None,
                reason: format!(
                    "the batch has {} jobs; the limit is {}: split it",
                    specs.len(),
                    l.batch_jobs_max
                ),
            });
        }
        let now = self.state.now;
        let mut batch_bytes = 0u64;
        let mut new_queues = BTreeSet::new();
        let mut in_batch: HashMap<&str, usize, FixedState> =
            HashMap::with_hasher(FixedState::with_seed(1));
        let mut answers = Vec::with_capacity(specs.len());
        let mut new = Vec::new();
        let mut depends_on = 0;
        let mut record_bytes = record_size::ENQUEUE;
        let mut seq = self.next_seq_proposed;
        let invalid = |index: usize, field: &str, reason: String| Rejection::Invalid {
            index: Some(index),
            field: field.into(),
            reason,
        };
        for (i, spec) in specs.iter().enumerate() {
            let bytes = spec.payload.len() as u64;
            if bytes > l.payload_bytes_max {
                return Err(Rejection::TooLarge {
                    index: Some(i),
                    reason: format!(
                        "the payload is {bytes} bytes; the limit is {}",
                        l.payload_bytes_max
                    ),
                });
            }
            batch_bytes += bytes;
            let max_attempts = spec
                .max_attempts
                .unwrap_or(self.config.default_max_attempts);
            if max_attempts == 0 || max_attempts > l.attempts_max {
                return Err(invalid(
                    i,
                    "max_attempts",
                    format!("must be 1 to {}, got {max_attempts}", l.attempts_max),
                ));
            }
            let timeout_ms = spec.timeout_ms.unwrap_or(self.config.default_timeout_ms);
            if timeout_ms == 0 || timeout_ms > l.timeout_ms_max {
                return Err(invalid(
                    i,
                    "timeout_ms",
                    format!("must be 1 to {}, got {timeout_ms}", l.timeout_ms_max),
                ));
            }
            if spec.delay_ms > l.delay_ms_max {
                return Err(invalid(
                    i,
                    "delay_ms",
                    format!("must be at most {}, got {}", l.delay_ms_max, spec.delay_ms),
                ));
            }
            let queue = spec
                .queue
                .clone()
                .unwrap_or_else(|| self.default_queue.clone());
            if !self.state.queue_ix.contains_key(&queue) {
                new_queues.insert(queue.clone());
            }
            if let Some(id) = &spec.id {
                if let Some(first) = in_batch.insert(id.as_str(), i) {
                    return Err(invalid(
                        i,
                        "id",
                        format!(
                            "id {:?} appears twice in the batch (jobs {first} and {i})",
                            id.as_str()
                        ),
                    ));
                }
                let known = self.state.table.slot_of(id.as_str()).is_some()
                    || self.state.remembered.contains(id.as_str());
                if known {
                    answers.push(Enqueued {
                        id: id.clone(),
                        duplicate: true,
                    });
                    continue;
                }
                if let Some(&lsn) = self.enqueuing.get(id) {
                    depends_on = depends_on.max(lsn);
                    answers.push(Enqueued {
                        id: id.clone(),
                        duplicate: true,
                    });
                    continue;
                }
            }
            let id = match &spec.id {
                Some(id) => id.clone(),
                None => JobId::assigned(seq),
            };
            seq += 1;
            record_bytes +=
                record_size::new_job(id.as_str().len(), queue.as_str().len(), spec.payload.len());
            answers.push(Enqueued {
                id: id.clone(),
                duplicate: false,
            });
            new.push(NewJob {
                id,
                queue,
                payload: spec.payload.clone(),
                priority: spec.priority,
                max_attempts,
                timeout_ms,
                run_at: now.saturating_add(spec.delay_ms),
            });
        }
        if batch_bytes > l.batch_bytes_max {
            return Err(Rejection::TooLarge {
                index: None,
                reason: format!(
                    "the batch's payloads total {batch_bytes} bytes; the limit is {}",
                    l.batch_bytes_max
                ),
            });
        }
        if record_bytes > l.record_bytes_max {
            return Err(Rejection::TooLarge {
                index: None,
                reason: format!(
                    "these jobs would make a log record of up to {record_bytes} bytes, over the {} bytes a log segment holds (engine.segment_bytes): split the batch or shrink the payloads, or raise segment_bytes",
                    l.record_bytes_max
                ),
            });
        }
        if !new.is_empty() {
            if self.disk_full {
                return Err(Rejection::Busy {
                    reason: "the disk is full: new jobs are refused until space is freed".into(),
                    retry_after_ms: 5_000,
                });
            }
            if (self.state.queues.len() + new_queues.len()) as u64 > l.queues_max {
                return Err(Rejection::Busy {
                    reason: format!(
                        "the number of queues would exceed the limit of {}",
                        l.queues_max
                    ),
                    retry_after_ms: 60_000,
                });
            }
            let jobs =
                self.state.counts.pending + self.state.counts.in_flight + self.enqueuing_jobs;
            if jobs + new.len() as u64 > l.pending_jobs_max {
                return Err(Rejection::Busy {
                    reason: format!(
                        "the queue holds {jobs} unfinished jobs; the limit is {}",
                        l.pending_jobs_max
                    ),
                    retry_after_ms: 1_000,
                });
            }
            let new_bytes: u64 = new.iter().map(|j| j.payload.len() as u64).sum();
            let bytes = self.state.pending_payload_bytes + self.enqueuing_bytes;
            if bytes + new_bytes > l.pending_payload_bytes_max {
                return Err(Rejection::Busy {
                    reason: format!(
                        "unfinished jobs hold {bytes} payload bytes; the limit is {}",
                        l.pending_payload_bytes_max
                    ),
                    retry_after_ms: 1_000,
                });
            }
        }
        Ok(Admitted {
            new,
            answers,
            depends_on,
        })
    }

    fn on_cancel(&mut self, req: RequestId, id: JobId, out: &mut Vec<Effect>) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return Self::reply(out, req, Reply::Cancelled(Err(Rejection::NotFound { id })));
        };
        let e = self.state.table.get(slot);
        let conflict = |reason: String| Reply::Cancelled(Err(Rejection::Conflict { reason }));
        match e.state {
            JobState::Cancelled => Self::reply(out, req, Reply::Cancelled(Ok(()))),
            _ if e.reserved => Self::reply(
                out,
                req,
                conflict(format!("job {id} is changing right now; retry")),
            ),
            JobState::Pending => {
                self.state.reindex(slot, |e| e.reserved = true);
                let lsn = self.propose(Op::Cancel { id }, Origin::Client, out);
                self.wait(lsn, req, Answer::Cancelled, out);
            }
            // Handed out ahead but waiting for a worker: it never started,
            // so it is taken back and cancelled (its attempt does not count).
            JobState::InFlight if e.running && !self.started.contains_key(&slot) => {
                let attempt = e.attempt;
                self.state.reindex(slot, |e| {
                    e.reserved = true;
                    e.running = false;
                });
                self.running -= 1;
                out.push(Effect::Abort {
                    id: id.clone(),
                    attempt,
                });
                let lsn = self.propose(Op::Cancel { id }, Origin::Client, out);
                self.wait(lsn, req, Answer::Cancelled, out);
            }
            JobState::InFlight => Self::reply(
                out,
                req,
                conflict(format!(
                    "job {id} is running (attempt {}); only pending jobs can be cancelled",
                    e.attempt
                )),
            ),
            s => Self::reply(
                out,
                req,
                conflict(format!("job {id} is already {}", s.as_str())),
            ),
        }
    }

    fn on_requeue(&mut self, req: RequestId, target: RequeueTarget, out: &mut Vec<Effect>) {
        let slots: Vec<u32> = match target {
            RequeueTarget::One(id) => {
                let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                    return Self::reply(out, req, Reply::Requeued(Err(Rejection::NotFound { id })));
                };
                let e = self.state.table.get(slot);
                if e.state != JobState::Dead || e.reserved {
                    let reason = if e.reserved {
                        format!("job {id} is changing right now; retry")
                    } else {
                        format!(
                            "job {id} is {}; only dead jobs can be requeued",
                            e.state.as_str()
                        )
                    };
                    return Self::reply(
                        out,
                        req,
                        Reply::Requeued(Err(Rejection::Conflict { reason })),
                    );
                }
                vec![slot]
            }
            RequeueTarget::AllDead => {
                let s = &self.state;
                s.dead
                    .iter()
                    .map(|k| k.2)
                    .filter(|&slot| !s.table.get(slot).reserved)
                    .collect()
            }
        };
        let count = slots.len() as u64;
        let l = &self.config.limits;
        let (per_record, bytes_max) = (l.ids_per_record_max.max(1) as usize, l.record_bytes_max);
        let mut lsn = 0;
        let mut ids = Vec::new();
        let mut bytes = record_size::ID_LISTS;
        for slot in slots {
            let id = self.state.table.get(slot).id.clone();
            let adds = record_size::listed_id(id.as_str().len());
            if !ids.is_empty() && (ids.len() >= per_record || bytes + adds > bytes_max) {
                let ids = std::mem::take(&mut ids);
                lsn = self.propose(Op::Requeue { ids }, Origin::Client, out);
                bytes = record_size::ID_LISTS;
            }
            self.state.reindex(slot, |e| e.reserved = true);
            bytes += adds;
            ids.push(id);
        }
        if !ids.is_empty() {
            lsn = self.propose(Op::Requeue { ids }, Origin::Client, out);
        }
        self.wait(lsn, req, Answer::Requeued(count), out);
    }

    // ----- durability -----

    fn on_durable(&mut self, upto: Lsn, out: &mut Vec<Effect>) {
        while let Some((record, _)) = self.unapplied.front() {
            if record.lsn > upto {
                break;
            }
            let Some((record, _)) = self.unapplied.pop_front() else {
                break;
            };
            self.apply_live(record, out);
        }
        let applied = self.state.applied_lsn;
        let later = self.waiting.split_off(&(applied + 1));
        for (_, ws) in std::mem::replace(&mut self.waiting, later) {
            for w in ws {
                Self::reply(out, w.req, finish(w.answer));
            }
        }
    }

    fn apply_live(&mut self, record: Arc<Record>, out: &mut Vec<Effect>) {
        if let Op::Enqueue { jobs } = &record.op {
            for j in jobs {
                if !j.id.is_assigned() {
                    self.enqueuing.remove(&j.id);
                }
                self.enqueuing_jobs -= 1;
                self.enqueuing_bytes -= j.payload.len() as u64;
            }
        }
        // The log has usually dropped its reference by now: then the
        // record's jobs move into the table instead of being copied.
        let (applied, record) = match Arc::try_unwrap(record) {
            Ok(owned) if matches!(owned.op, Op::Enqueue { .. }) => {
                (self.state.apply_owned(owned, false), None)
            }
            Ok(owned) => (self.state.apply(&owned), Some(Arc::new(owned))),
            Err(shared) => (self.state.apply(&shared), Some(shared)),
        };
        match applied {
            Ok(Applied::Changed) => {}
            Ok(Applied::Skipped) => return,
            Err(e) => panic!("beaver-core bug: a record it proposed does not apply: {e}"),
        }
        let Some(record) = record else { return };
        match &record.op {
            Op::Enqueue { .. } => {}
            Op::Dispatch { id, attempt, .. } => {
                if let Some(slot) = self.state.table.slot_of(id.as_str()) {
                    let e = self.state.table.get(slot);
                    #[cfg(feature = "mutants")]
                    if crate::mutants::active(Mutant::DispatchBeforeDurable) {
                        return; // it already ran at proposal
                    }
                    if e.running {
                        out.push(Effect::Execute(Execution {
                            id: id.clone(),
                            attempt: *attempt,
                            payload: e.payload.clone().unwrap_or_else(empty_payload),
                            timeout_ms: e.timeout_ms,
                        }));
                    }
                }
            }
            Op::Purge { .. } => self.purge_in_flight = false,
            _ => {}
        }
    }

    fn on_append_failed(&mut self, from_lsn: Lsn, error: &str, out: &mut Vec<Effect>) {
        if from_lsn <= self.state.applied_lsn || from_lsn >= self.next_lsn {
            return; // nothing of ours is at or after that LSN: a stale report
        }
        self.retry_at = self.state.now.saturating_add(APPEND_RETRY_MS);
        while let Some((record, _)) = self.unapplied.back() {
            if record.lsn < from_lsn {
                break;
            }
            let Some((record, origin)) = self.unapplied.pop_back() else {
                break;
            };
            self.undo(&record, origin);
        }
        self.next_lsn = from_lsn;
        for (_, ws) in self.waiting.split_off(&from_lsn) {
            for w in ws {
                let rejection = Rejection::Storage {
                    reason: error.to_owned(),
                };
                let reply = match w.answer {
                    Answer::Enqueued(_) => Reply::Enqueued(Err(rejection)),
                    Answer::Cancelled => Reply::Cancelled(Err(rejection)),
                    Answer::Requeued(_) => Reply::Requeued(Err(rejection)),
                };
                Self::reply(out, w.req, reply);
            }
        }
    }

    /// Releases the reservations of a record that will never be applied.
    fn undo(&mut self, record: &Record, origin: Origin) {
        let unreserve = |q: &mut Core, id: &JobId| {
            if let Some(slot) = q.state.table.slot_of(id.as_str()) {
                q.state.reindex(slot, |e| e.reserved = false);
            }
        };
        match &record.op {
            Op::Enqueue { jobs } => {
                for j in jobs {
                    if !j.id.is_assigned() {
                        self.enqueuing.remove(&j.id);
                    }
                    self.enqueuing_jobs -= 1;
                    self.enqueuing_bytes -= j.payload.len() as u64;
                    self.next_seq_proposed -= 1;
                }
            }
            Op::Dispatch { id, .. } => {
                if let Some(slot) = self.state.table.slot_of(id.as_str()) {
                    self.state.reindex(slot, |e| {
                        e.reserved = false;
                        e.running = false;
                    });
                    self.running -= 1;
                }
            }
            Op::Complete { id, attempt }
            | Op::Fail { id, attempt, .. }
            | Op::Release { id, attempt } => {
                unreserve(self, id);
                match origin {
                    Origin::Outcome(o) => self.deferred.push((id.clone(), *attempt, o)),
                    Origin::Orphan => self.orphans.push(id.clone()),
                    _ => {}
                }
            }
            Op::Cancel { id } => {
                unreserve(self, id);
                // A cancel taken back from a worker's queue: the attempt is
                // given back instead, once the log takes records again.
                if let Some(slot) = self.state.table.slot_of(id.as_str()) {
                    let e = self.state.table.get(slot);
                    if e.state == JobState::InFlight && !e.running {
                        self.deferred
                            .push((id.clone(), e.attempt, Outcome::NotStarted));
                    }
                }
            }
            Op::Requeue { ids } => ids.iter().for_each(|id| unreserve(self, id)),
            Op::Purge { jobs, .. } => {
                jobs.iter().for_each(|id| unreserve(self, id));
                self.purge_in_flight = false;
            }
        }
    }

    // ----- executions -----

    fn on_outcome(&mut self, id: JobId, attempt: u32, outcome: Outcome, out: &mut Vec<Effect>) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        if !(e.running && e.state == JobState::InFlight && e.attempt == attempt) {
            return; // stale: the lease expired, or the attempt is an old one
        }
        self.state.table.get_mut(slot).running = false;
        self.running -= 1;
        self.end_lease(slot);
        if self.state.table.get(slot).reserved {
            return;
        }
        self.propose_outcome(slot, attempt, outcome, Origin::Outcome, out);
    }

    fn on_started(&mut self, id: &JobId, attempt: u32) {
        let Some(slot) = self.state.table.slot_of(id.as_str()) else {
            return;
        };
        let e = self.state.table.get(slot);
        if !(e.running && e.state == JobState::InFlight && e.attempt == attempt)
            || self.started.contains_key(&slot)
        {
            return; // stale, or reported twice: the first start counts
        }
        let until = self.lease_until(e.timeout_ms);
        self.started.insert(slot, (attempt, until));
        self.live_leases.insert((until, slot));
    }

    fn propose_outcome(
        &mut self,
        slot: u32,
        attempt: u32,
        outcome: Outcome,
        origin: impl FnOnce(Outcome) -> Origin,
        out: &mut Vec<Effect>,
    ) {
        let e = self.state.table.get(slot);
        let id = e.id.clone();
        let op = match &outcome {
            Outcome::Succeeded => Op::Complete { id, attempt },
            Outcome::NotStarted => Op::Release { id, attempt },
            Outcome::Failed(text) => self.fail_op(e, attempt, text),
            Outcome::TimedOut => {
                self.fail_op(e, attempt, &format!("timed out after {} ms", e.timeout_ms))
            }
        };
        #[cfg(feature = "mutants")]
        let op = match outcome {
            Outcome::TimedOut => planted::uncounted(Mutant::TimeoutNotCounted, e, attempt, op),
            _ => op,
        };
        self.state.table.get_mut(slot).reserved = true;
        self.propose(op, origin(outcome), out);
    }

    fn fail_op(&self, e: &Entry, attempt: u32, error: &str) -> Op {
        let retry_at = (attempt < e.max_attempts).then(|| {
            self.state
                .now
                .saturating_add(backoff_ms(&self.config.retry, &e.id, attempt))
        });
        let l = &self.config.limits;
        let room = l
            .record_bytes_max
            .saturating_sub(record_size::fail(e.id.as_str().len()));
        Op::Fail {
            id: e.id.clone(),
            attempt,
            error: truncate_tail(error, l.error_bytes_max.min(room) as usize),
            retry_at,
        }
    }

    // ----- time-driven work -----

    fn housekeeping(&mut self, out: &mut Vec<Effect>) {
        if self.state.now >= self.retry_at {
            // Known outcomes first: a lease must not expire on a job whose
            // outcome is only waiting to be logged again.
            self.resume_orphans(out);
            self.resume_deferred(out);
            self.expire_leases(out);
            self.purge(out);
        }
        self.dispatch(out);
    }

    fn expire_leases(&mut self, out: &mut Vec<Effect>) {
        let now = self.state.now;
        let mut expired: Vec<u32> = self
            .state
            .leases
            .iter()
            .take_while(|k| k.0 <= now)
            .map(|k| k.2)
            .filter(|&slot| {
                let e = self.state.table.get(slot);
                !e.reserved && !e.running
            })
            .collect();
        let due: Vec<(UnixMillis, u32)> = self
            .live_leases
            .iter()
            .take_while(|k| k.0 <= now)
            .copied()
            .collect();
        for (t, slot) in due {
            if self.lease_is_live(t, slot) {
                expired.push(slot);
                self.started.remove(&slot);
            }
            self.live_leases.remove(&(t, slot));
        }
        for slot in expired {
            let e = self.state.table.get(slot);
            let (id, attempt, running) = (e.id.clone(), e.attempt, e.running);
            let text = format!(
                "lease expired: no outcome within {} ms",
                e.timeout_ms + self.config.lease_slack_ms
            );
            if running {
                self.state.table.get_mut(slot).running = false;
                self.running -= 1;
                out.push(Effect::Abort { id, attempt });
            }
            let op = self.fail_op(self.state.table.get(slot), attempt, &text);
            self.state.table.get_mut(slot).reserved = true;
            self.propose(op, Origin::Expiry, out);
        }
    }

    fn resume_orphans(&mut self, out: &mut Vec<Effect>) {
        for id in std::mem::take(&mut self.orphans) {
            let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                continue;
            };
            let e = self.state.table.get(slot);
            if e.state != JobState::InFlight || e.reserved || e.running {
                continue;
            }
            let op = self.fail_op(
                e,
                e.attempt,
                "interrupted: beaver stopped while this attempt ran",
            );
            #[cfg(feature = "mutants")]
            let op = planted::uncounted(Mutant::ForgetOrphanAttempt, e, e.attempt, op);
            self.state.table.get_mut(slot).reserved = true;
            self.propose(op, Origin::Orphan, out);
        }
    }

    fn resume_deferred(&mut self, out: &mut Vec<Effect>) {
        for (id, attempt, outcome) in std::mem::take(&mut self.deferred) {
            let Some(slot) = self.state.table.slot_of(id.as_str()) else {
                continue;
            };
            let e = self.state.table.get(slot);
            if e.state != JobState::InFlight || e.attempt != attempt || e.reserved {
                continue;
            }
            self.propose_outcome(slot, attempt, outcome, Origin::Outcome, out);
        }
    }

    fn purge(&mut self, out: &mut Vec<Effect>) {
        let Some(due) = self.purge_due_at() else {
            return;
        };
        let now = self.state.now;
        if due > now {
            return;
        }
        let s = &self.state;
        let r = &self.config.retention;
        let d = &self.config.dedup;
        let per_record = self.config.limits.ids_per_record_max.max(1) as usize;
        let bytes_max = self.config.limits.record_bytes_max;
        let mut bytes = record_size::ID_LISTS;
        let mut excess = (s.finished.len() as u64).saturating_sub(r.finished_count_max);
        let mut jobs = Vec::new();
        for &(t, _, slot) in &s.finished {
            if jobs.len() >= per_record {
                break;
            }
            let e = s.table.get(slot);
            if e.reserved {
                continue;
            }
            let adds = record_size::listed_id(e.id.as_str().len());
            if !jobs.is_empty() && bytes + adds > bytes_max {
                break;
            }
            let aged = t.saturating_add(r.finished_age_ms) <= now;
            if !aged && excess == 0 {
                break;
            }
            excess = excess.saturating_sub(1);
            bytes += adds;
            jobs.push(slot);
        }
        let mut forget = Vec::new();
        let mut early = 0u64;
        let mut remembered_after = s.remembered.len() as u64 + jobs.len() as u64;
        for (t, id) in s.remembered.iter() {
            let adds = record_size::listed_id(id.as_str().len());
            let full = bytes + adds > bytes_max && !(jobs.is_empty() && forget.is_empty());
            if forget.len() >= per_record || full {
                break;
            }
            let aged = t.saturating_add(d.window_ms) <= now;
            let over = remembered_after > d.ids_max;
            if !aged && !over {
                break;
            }
            if !aged {
                early += 1;
            }
            remembered_after -= 1;
            bytes += adds;
            forget.push(id.clone());
        }
        if jobs.is_empty() && forget.is_empty() {
            return;
        }
        let jobs = jobs
            .into_iter()
            .map(|slot| {
                self.state.table.get_mut(slot).reserved = true;
                self.state.table.get(slot).id.clone()
            })
            .collect();
        self.state.totals.dedup_early_expiries += early;
        self.purge_in_flight = true;
        self.propose(Op::Purge { jobs, forget }, Origin::Purge, out);
    }

    fn dispatch(&mut self, out: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        let capacity = u64::from(self.config.workers) + u64::from(self.config.prefetch);
        let n = self.state.queues.len();
        if self.config.workers == 0 || n == 0 || self.state.now < self.retry_at {
            return;
        }
        let mut idle = 0;
        while self.running < capacity && idle < n {
            let qi = self.cursor % n;
            self.cursor = (self.cursor + 1) % n;
            let Some(&(_, _, slot)) = self.state.queues[qi].ready.first() else {
                idle += 1;
                continue;
            };
            idle = 0;
            self.state.reindex(slot, |e| {
                e.reserved = true;
                e.running = true;
            });
            self.running += 1;
            let e = self.state.table.get(slot);
            let op = Op::Dispatch {
                id: e.id.clone(),
                attempt: e.attempt + 1,
                lease_until: self.lease_until(e.timeout_ms),
            };
            #[cfg(feature = "mutants")]
            planted::execute_at_once(e, &op, out);
            self.propose(op, Origin::Dispatch, out);
        }
    }

    // ----- checks -----

    /// Checks every invariant of the queue in full (O(jobs)); `Err` names
    /// the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check_full(self)
    }

    /// The O(1) checks run after every step in debug builds.
    fn check_cheap(&self) {
        let c = &self.state.counts;
        let total = c.pending + c.in_flight + c.completed + c.dead + c.cancelled;
        assert_eq!(
            total,
            self.state.table.len() as u64,
            "state counts do not add up to the job count"
        );
        assert_eq!(
            self.next_lsn,
            self.state.applied_lsn + 1 + self.unapplied.len() as u64,
            "proposed LSNs are not dense"
        );
        let capacity = u64::from(self.config.workers) + u64::from(self.config.prefetch);
        assert!(
            self.running <= capacity,
            "more jobs running ({}) than workers + prefetch",
            self.running
        );
    }

    pub(crate) fn parts(&self) -> QueueParts<'_> {
        QueueParts {
            state: &self.state,
            unapplied: self.unapplied.iter().map(|(r, _)| r.as_ref()).collect(),
            enqueuing: &self.enqueuing,
            running: self.running,
            waiting_max: self.waiting.keys().next_back().copied(),
            next_lsn: self.next_lsn,
        }
    }

    /// The durable state as a snapshot (canonical: jobs in acceptance order).
    pub fn snapshot(&self) -> crate::snapshot::Snapshot {
        crate::snapshot::Snapshot::of(&self.state)
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// Proposed records not yet durable, oldest first.
    pub fn unapplied(&self) -> impl Iterator<Item = &Record> {
        self.unapplied.iter().map(|(r, _)| r.as_ref())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

/// Why a queue could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverError {
    /// The snapshot's bytes do not decode into a valid state.
    Snapshot(crate::codec::DecodeError),
    /// A record does not apply.
    Apply(ApplyError),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RecoverError::Apply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RecoverError {}

/// Borrowed internals for the invariant checker.
pub(crate) struct QueueParts<'a> {
    pub state: &'a State,
    pub unapplied: Vec<&'a Record>,
    pub enqueuing: &'a HashMap<JobId, Lsn, FixedState>,
    pub running: u64,
    pub waiting_max: Option<Lsn>,
    pub next_lsn: Lsn,
}

struct Admitted {
    new: Vec<NewJob>,
    answers: Vec<Enqueued>,
    depends_on: Lsn,
}

fn finish(answer: Answer) -> Reply {
    match answer {
        Answer::Enqueued(a) => Reply::Enqueued(Ok(a)),
        Answer::Cancelled => Reply::Cancelled(Ok(())),
        Answer::Requeued(n) => Reply::Requeued(Ok(n)),
    }
}

fn empty_payload() -> crate::job::Payload {
    // Unreachable in practice: a dispatched job is pending, and pending jobs
    // keep their payload. `null` keeps the executor's contract (valid JSON).
    match crate::job::Payload::from_json(b"null") {
        Ok(p) => p,
        Err(_) => unreachable!("null is valid JSON"),
    }
}

/// Planted bugs of the core (see [`crate::mutants`]).
#[cfg(feature = "mutants")]
mod planted {
    use super::*;

    /// With `m` active, the attempt is given back instead of counted.
    pub(super) fn uncounted(m: Mutant, e: &Entry, attempt: u32, op: Op) -> Op {
        match crate::mutants::active(m) {
            true => Op::Release {
                id: e.id.clone(),
                attempt,
            },
            false => op,
        }
    }

    /// With `DispatchBeforeDurable` active, the attempt starts at proposal.
    pub(super) fn execute_at_once(e: &Entry, op: &Op, out: &mut Vec<Effect>) {
        if let (true, Op::Dispatch { id, attempt, .. }) =
            (crate::mutants::active(Mutant::DispatchBeforeDurable), op)
        {
            out.push(Effect::Execute(Execution {
                id: id.clone(),
                attempt: *attempt,
                payload: e.payload.clone().unwrap_or_else(empty_payload),
                timeout_ms: e.timeout_ms,
            }));
        }
    }
}

/// Keeps the last `max` bytes of `text`, on a character boundary.
pub(crate) fn truncate_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}
