//! Admission: an `Enqueue` is checked against every limit, resolved into
//! new jobs and duplicates, and proposed as one enqueue record. A rejected
//! batch leaves no trace.

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::FixedState;

use super::Core;
use super::proposals::{Answer, Origin, reply};
use crate::job::{JobId, JobSpec, NewJob, QueueName};
use crate::protocol::{Effect, Enqueued, Rejection, Reply, RequestId};
use crate::record::{Lsn, Op};
use crate::record_size;

/// What unapplied enqueue records reserve, so nothing is admitted twice and
/// the limits count jobs on their way to the log.
pub(super) struct Enqueuing {
    /// Client ids in unapplied enqueue records, with their record's LSN.
    /// (Assigned ids cannot be submitted again, so they need no entry.)
    ids: HashMap<JobId, Lsn, FixedState>,
    /// Jobs in unapplied enqueue records.
    jobs: u64,
    /// Payload bytes in unapplied enqueue records.
    bytes: u64,
    /// The sequence number the next admitted job will get when applied.
    next_seq: u64,
}

impl Enqueuing {
    pub(super) fn new(seed: u64) -> Enqueuing {
        Enqueuing {
            ids: HashMap::with_hasher(FixedState::with_seed(seed ^ 0x9e37_79b9)),
            jobs: 0,
            bytes: 0,
            next_seq: 1,
        }
    }

    /// Client ids being enqueued, with their record's LSN.
    pub(super) fn ids(&self) -> &HashMap<JobId, Lsn, FixedState> {
        &self.ids
    }

    /// Sequence numbers continue after those of the recovered jobs.
    pub(super) fn restart_at(&mut self, next_seq: u64) {
        self.next_seq = next_seq;
    }

    /// The enqueue record of `new` was applied: its reservations end.
    pub(super) fn applied(&mut self, new: &[NewJob]) {
        for j in new {
            if !j.id.is_assigned() {
                self.ids.remove(&j.id);
            }
            self.jobs -= 1;
            self.bytes -= j.payload.len() as u64;
        }
    }

    /// The enqueue record of `new` will never be applied: its reservations
    /// end and its sequence numbers are given back.
    pub(super) fn undone(&mut self, new: &[NewJob]) {
        self.applied(new);
        self.next_seq -= new.len() as u64;
    }
}

/// A batch that passed admission.
struct Admitted {
    /// Jobs to enqueue, every default resolved.
    new: Vec<NewJob>,
    /// One answer per job of the request, in its order.
    answers: Vec<Enqueued>,
    /// The newest unapplied record holding one of the batch's duplicates
    /// (0 if none): the reply waits for it.
    depends_on: Lsn,
}

/// A batch being resolved, with the figures its limits are checked on.
struct Batch<'a> {
    admitted: Admitted,
    /// Client ids seen so far, with their index.
    ids: HashMap<&'a str, usize, FixedState>,
    /// Queues the batch names that do not exist yet.
    new_queues: BTreeSet<QueueName>,
    payload_bytes: u64,
    /// The enqueue record's size bound so far.
    record_bytes: u64,
    /// The sequence number of the next new job.
    seq: u64,
}

impl Core {
    /// Admits a batch and proposes its new jobs; the reply waits until they
    /// (and any original its duplicates name) are durable.
    pub(super) fn on_enqueue(
        &mut self,
        req: RequestId,
        specs: Vec<JobSpec>,
        out: &mut Vec<Effect>,
    ) {
        let Admitted {
            new,
            answers,
            depends_on,
        } = match self.admit(&specs) {
            Ok(admitted) => admitted,
            Err(rejection) => return reply(out, req, Reply::Enqueued(Err(rejection))),
        };
        let mut lsn = depends_on;
        if !new.is_empty() {
            let count = new.len() as u64;
            let bytes: u64 = new.iter().map(|j| j.payload.len() as u64).sum();
            let ids: Vec<JobId> = new
                .iter()
                .filter(|j| !j.id.is_assigned())
                .map(|j| j.id.clone())
                .collect();
            let own = self.propose(Op::Enqueue { jobs: new }, Origin::Client, out);
            let e = &mut self.enqueuing;
            for id in ids {
                e.ids.insert(id, own);
            }
            e.jobs += count;
            e.bytes += bytes;
            e.next_seq += count;
            lsn = lsn.max(own);
        }
        self.wait(lsn, req, Answer::Enqueued(answers), out);
    }

    /// Validates a batch and resolves it into new jobs and duplicates.
    /// Changes nothing. Checks run in a fixed order, and the first that
    /// fails is the answer.
    fn admit(&self, specs: &[JobSpec]) -> Result<Admitted, Rejection> {
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
        let mut batch = Batch {
            admitted: Admitted {
                new: Vec::new(),
                answers: Vec::with_capacity(specs.len()),
                depends_on: 0,
            },
            ids: HashMap::with_hasher(FixedState::with_seed(1)),
            new_queues: BTreeSet::new(),
            payload_bytes: 0,
            record_bytes: record_size::ENQUEUE,
            seq: self.enqueuing.next_seq,
        };
        for (i, spec) in specs.iter().enumerate() {
            self.admit_job(i, spec, &mut batch)?;
        }
        self.check_batch_size(&batch)?;
        if !batch.admitted.new.is_empty() {
            self.check_room(&batch)?;
        }
        Ok(batch.admitted)
    }

    /// Resolves the `i`-th job of a batch into a new job or a duplicate.
    fn admit_job<'a>(
        &self,
        i: usize,
        spec: &'a JobSpec,
        b: &mut Batch<'a>,
    ) -> Result<(), Rejection> {
        let (max_attempts, timeout_ms) = self.check_job(i, spec)?;
        b.payload_bytes += spec.payload.len() as u64;
        let queue = spec
            .queue
            .clone()
            .unwrap_or_else(|| self.default_queue.clone());
        if !self.state.queue_ix.contains_key(&queue) {
            b.new_queues.insert(queue.clone());
        }
        if let Some(id) = &spec.id {
            if self.is_duplicate(i, id, b)? {
                return Ok(());
            }
        }
        let id = match &spec.id {
            Some(id) => id.clone(),
            // The number itself, unless an old client id spells it.
            None => JobId::assigned(b.seq, self.state.digit_ids.contains(&b.seq)),
        };
        b.seq += 1;
        b.record_bytes +=
            record_size::new_job(id.as_str().len(), queue.as_str().len(), spec.payload.len());
        b.admitted.answers.push(Enqueued {
            id: id.clone(),
            duplicate: false,
        });
        b.admitted.new.push(NewJob {
            id,
            queue,
            payload: spec.payload.clone(),
            priority: spec.priority,
            max_attempts,
            timeout_ms,
            run_at: self.span_end(spec.delay_ms),
        });
        Ok(())
    }

    /// Checks one job's own fields; returns its attempts and timeout with
    /// the defaults resolved.
    fn check_job(&self, i: usize, spec: &JobSpec) -> Result<(u32, u64), Rejection> {
        let l = &self.config.limits;
        let invalid = |field: &str, reason: String| Rejection::Invalid {
            index: Some(i),
            field: field.into(),
            reason,
        };
        // An id of an assigned form would collide with the numbers the
        // core assigns (the HTTP layer refuses them already; this is the
        // core's own guard).
        if let Some(Err(reason)) = spec.id.as_ref().map(|id| JobId::from_client(id.as_str())) {
            return Err(invalid("id", reason));
        }
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
        let max_attempts = spec
            .max_attempts
            .unwrap_or(self.config.default_max_attempts);
        // A job that is never given up is not a count `attempts_max`
        // bounds: in-process callers ask for it (beanstalk puts); the
        // HTTP API refuses it before it gets here.
        let unlimited = max_attempts == crate::UNLIMITED_ATTEMPTS;
        if max_attempts == 0 || (max_attempts > l.attempts_max && !unlimited) {
            let reason = format!("must be 1 to {}, got {max_attempts}", l.attempts_max);
            return Err(invalid("max_attempts", reason));
        }
        let timeout_ms = spec.timeout_ms.unwrap_or(self.config.default_timeout_ms);
        if timeout_ms == 0 || timeout_ms > l.timeout_ms_max {
            let reason = format!("must be 1 to {}, got {timeout_ms}", l.timeout_ms_max);
            return Err(invalid("timeout_ms", reason));
        }
        if spec.delay_ms > l.delay_ms_max {
            let reason = format!("must be at most {}, got {}", l.delay_ms_max, spec.delay_ms);
            return Err(invalid("delay_ms", reason));
        }
        Ok((max_attempts, timeout_ms))
    }

    /// Whether client id `id` (the `i`-th job's) is known or being
    /// enqueued; a duplicate is answered as such and adds nothing. An id
    /// given twice in one batch is refused.
    fn is_duplicate<'a>(
        &self,
        i: usize,
        id: &'a JobId,
        b: &mut Batch<'a>,
    ) -> Result<bool, Rejection> {
        if let Some(first) = b.ids.insert(id.as_str(), i) {
            return Err(Rejection::Invalid {
                index: Some(i),
                field: "id".into(),
                reason: format!(
                    "id {:?} appears twice in the batch (jobs {first} and {i})",
                    id.as_str()
                ),
            });
        }
        let known = self.state.table.slot_of(id.as_str()).is_some()
            || self.state.remembered.contains(id.as_str());
        if !known {
            // Not durable yet: the reply waits for the original's record.
            let Some(&lsn) = self.enqueuing.ids.get(id) else {
                return Ok(false);
            };
            b.admitted.depends_on = b.admitted.depends_on.max(lsn);
        }
        b.admitted.answers.push(Enqueued {
            id: id.clone(),
            duplicate: true,
        });
        Ok(true)
    }

    /// The whole batch fits one request and one log record.
    fn check_batch_size(&self, b: &Batch<'_>) -> Result<(), Rejection> {
        let l = &self.config.limits;
        if b.payload_bytes > l.batch_bytes_max {
            return Err(Rejection::TooLarge {
                index: None,
                reason: format!(
                    "the batch's payloads total {} bytes; the limit is {}",
                    b.payload_bytes, l.batch_bytes_max
                ),
            });
        }
        if b.record_bytes > l.record_bytes_max {
            return Err(Rejection::TooLarge {
                index: None,
                reason: format!(
                    "these jobs would make a log record of up to {} bytes, over the {} bytes a log segment holds (engine.segment_bytes): split the batch or shrink the payloads, or raise segment_bytes",
                    b.record_bytes, l.record_bytes_max
                ),
            });
        }
        Ok(())
    }

    /// There is room for the batch's new jobs: disk, queues, unfinished
    /// jobs and their payload bytes (those on their way to the log count).
    fn check_room(&self, b: &Batch<'_>) -> Result<(), Rejection> {
        let l = &self.config.limits;
        let new = &b.admitted.new;
        if self.disk_full {
            return Err(Rejection::Busy {
                reason: "the disk is full: new jobs are refused until space is freed".into(),
                retry_after_ms: 5_000,
            });
        }
        if (self.state.queues.len() + b.new_queues.len()) as u64 > l.queues_max {
            return Err(Rejection::Busy {
                reason: format!(
                    "the number of queues would exceed the limit of {}",
                    l.queues_max
                ),
                retry_after_ms: 60_000,
            });
        }
        let jobs = self.state.counts.pending + self.state.counts.in_flight + self.enqueuing.jobs;
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
        let bytes = self.state.pending_payload_bytes + self.enqueuing.bytes;
        if bytes + new_bytes > l.pending_payload_bytes_max {
            return Err(Rejection::Busy {
                reason: format!(
                    "unfinished jobs hold {bytes} payload bytes; the limit is {}",
                    l.pending_payload_bytes_max
                ),
                retry_after_ms: 1_000,
            });
        }
        Ok(())
    }
}
