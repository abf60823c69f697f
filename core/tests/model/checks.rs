//! The checks after every step: each effect against the model, then every
//! job (see the crate docs of `model.rs` for the list).

use beaver_core::{Effect, JobState, LeasedJob, Op, Record, Reply, RequestId};

use super::fold::{End, INTERRUPTED};
use super::{Asked, Harness};

impl Harness {
    /// Checks one step's effects against the model, then every job.
    pub(super) fn check(&mut self, out: Vec<Effect>) {
        let pool = self.pool_dispatches(&out);
        let mut nth = 0;
        for e in out {
            match e {
                Effect::Reply { req, reply } => self.check_reply(req, reply),
                Effect::Execute(x) => {
                    let j = &self.model.jobs[x.id.as_str()];
                    assert_eq!(
                        (j.state, j.attempt),
                        (JobState::InFlight, x.attempt),
                        "execute follows a durable dispatch"
                    );
                    assert_eq!(j.queue, "default", "the pool runs only its queue");
                }
                Effect::Append(r) => {
                    if let Some(held) = pool.get(nth).filter(|_| self.is_pool_dispatch(&r)) {
                        self.check_worker_rule(&r, *held);
                        nth += 1;
                    }
                    self.check_append(&r);
                }
                Effect::Abort { .. } => {}
            }
        }
        self.compare();
    }

    fn is_pool_dispatch(&self, r: &Record) -> bool {
        match &r.op {
            Op::Dispatch { id, .. } => self.model.jobs[id.as_str()].queue == "default",
            _ => false,
        }
    }

    /// For each pool dispatch proposed in this step, in order: how many
    /// attempts the pool held just before it. (All it held after the step,
    /// handed out or proposed, less those proposed from it on: nothing in
    /// a step lowers the count after its dispatches.)
    fn pool_dispatches(&self, out: &[Effect]) -> Vec<u64> {
        let proposed = out
            .iter()
            .filter(|e| matches!(e, Effect::Append(r) if self.is_pool_dispatch(r)))
            .count() as u64;
        let unsynced = self
            .d
            .unsynced()
            .iter()
            .filter(|r| self.is_pool_dispatch(r))
            .count() as u64;
        let after = self.d.executions().len() as u64 + unsynced;
        (0..proposed).map(|k| after - (proposed - k)).collect()
    }

    /// A pool attempt counts at dispatch exactly when a worker is free for
    /// it; one handed out ahead is never a suspect job's.
    fn check_worker_rule(&self, r: &Record, held: u64) {
        let Op::Dispatch { id, started, .. } = &r.op else {
            return;
        };
        let free = held < u64::from(self.config.workers);
        assert_eq!(
            *started, free,
            "dispatch of {id} with {held} attempts held by {} workers",
            self.config.workers
        );
        assert!(
            *started || !self.model.suspect.contains(id.as_str()),
            "suspect job {id} dispatched ahead of a free worker"
        );
    }

    /// A pause of `ms` asked at `now` (the step's `out`) ends no sooner
    /// than `ms` after the true time `now` stands for (up to a millisecond
    /// past the reading), and at most a millisecond later than that.
    pub(super) fn check_pause_end(out: &[Effect], now: u64, ms: u64) {
        for e in out {
            if let Effect::Append(r) = e {
                if let Op::PauseQueue { until, .. } = &r.op {
                    assert_eq!(*until, now + ms + 1, "a pause of {ms} ms asked at {now}");
                }
            }
        }
    }

    /// What a proposed record may be, given the durable state.
    fn check_append(&self, r: &Record) {
        match &r.op {
            Op::Dispatch { id, started, .. } => {
                let j = &self.model.jobs[id.as_str()];
                assert_eq!(j.state, JobState::Pending, "dispatch of {id}");
                assert!(
                    !self.model.is_paused(&j.queue, r.at),
                    "{id} handed out of paused queue {}",
                    j.queue
                );
                if j.queue == "ext" {
                    assert!(*started, "a lease counts its attempt at dispatch");
                }
            }
            Op::Start { id, attempt } => {
                let j = &self.model.jobs[id.as_str()];
                assert!(
                    self.reported.contains(&(id.to_string(), *attempt)),
                    "start of {id} attempt {attempt}, never reported started"
                );
                assert!(!j.started, "{id}'s attempt counted already");
            }
            _ => {}
        }
    }

    /// The first step after a restart: each attempt in flight whose start
    /// is logged fails as interrupted, each other one is given back.
    pub(super) fn check_first_step(&self, out: &[Effect]) {
        let mut charged = Vec::new();
        let mut released = Vec::new();
        for e in out {
            let Effect::Append(r) = e else { continue };
            match &r.op {
                Op::Fail { id, error, .. } if error == INTERRUPTED => charged.push(id.to_string()),
                Op::Release { id, .. } => released.push(id.to_string()),
                _ => {}
            }
        }
        let in_flight = |started: bool| -> Vec<String> {
            let jobs = self.model.jobs.iter();
            jobs.filter(|(_, j)| j.state == JobState::InFlight && j.started == started)
                .map(|(id, _)| id.clone())
                .collect()
        };
        charged.sort();
        released.sort();
        assert_eq!(charged, in_flight(true), "attempts that started count");
        assert_eq!(
            released,
            in_flight(false),
            "attempts that did not are given back"
        );
    }

    fn check_reply(&mut self, req: RequestId, reply: Reply) {
        let Some(asked) = self.asked.remove(&req.0) else {
            return; // a request whose reply is not checked
        };
        match (asked, reply) {
            (Asked::Enqueue, Reply::Enqueued(Ok(ids))) => {
                for e in ids {
                    let id = e.id.as_str();
                    if e.duplicate {
                        // Its window may have closed while the reply waited.
                        assert!(
                            self.model.ever.contains(id),
                            "duplicate {id} was never enqueued"
                        );
                    } else {
                        assert!(
                            self.model.jobs.contains_key(id),
                            "acknowledged job {id} is not durable"
                        );
                    }
                }
            }
            (Asked::Cancel(id), Reply::Cancelled(Ok(()))) => {
                let state = self.model.jobs.get(&id).map(|j| j.state);
                // A cancel of a job cancelled already is answered once what
                // was proposed before it is durable: retention may have
                // purged the job by then (the cancel came first).
                let purged_since = state.is_none() && self.model.ever.contains(&id);
                assert!(
                    state == Some(JobState::Cancelled) || purged_since,
                    "cancelled {id}: the model has it {state:?}"
                );
            }
            (Asked::Lease, Reply::Leased(result)) => {
                self.waiting.retain(|&w| w != req.0);
                for job in result.unwrap_or_default() {
                    self.check_granted(&job);
                }
            }
            (asked, reply) => self.check_lease_reply(asked, reply),
        }
    }

    /// A job handed to an external worker is in flight on the attempt its
    /// lease names, dispatched by the record whose LSN is the lease's id.
    fn check_granted(&mut self, job: &LeasedJob) {
        let id = job.job.id.to_string();
        let j = &self.model.jobs[&id];
        assert_eq!(
            (j.state, j.attempt, j.dispatch_lsn, j.queue.as_str()),
            (JobState::InFlight, job.job.attempt, job.lease_id, "ext"),
            "lease {} of {id}",
            job.lease_id
        );
        self.granted.push((job.lease_id, id, job.job.attempt));
    }

    /// What a worker's request answered `Ok` did: to the very attempt its
    /// lease handed out, never to another.
    fn check_lease_reply(&mut self, asked: Asked, reply: Reply) {
        let ended = |m: &super::Model, lease: u64| m.ended_by.get(&lease).copied();
        match (asked, reply) {
            (Asked::Complete(lease), Reply::Completed(Ok(()))) => {
                assert_eq!(
                    ended(&self.model, lease),
                    Some(End::Completed),
                    "lease {lease}"
                );
            }
            (Asked::Fail(lease), Reply::Failed(Ok(()))) => {
                assert_eq!(
                    ended(&self.model, lease),
                    Some(End::Failed),
                    "lease {lease}"
                );
            }
            (Asked::Heartbeat(lease), Reply::Heartbeat(Ok(_))) => {
                let current = self
                    .model
                    .jobs
                    .values()
                    .any(|j| j.state == JobState::InFlight && j.dispatch_lsn == lease);
                assert!(current, "lease {lease} renewed but its attempt is over");
            }
            (Asked::Purge(lsn), Reply::Purged(Ok(n))) => {
                // No record (0 at once) for a queue no job names.
                let cancelled = self.model.purged.get(&lsn).copied().unwrap_or(0);
                assert_eq!(cancelled, n, "purge at {lsn}");
            }
            (Asked::Checkpoint, Reply::Checkpoint(Ok(lsn))) => {
                assert!(
                    lsn <= self.model.applied,
                    "checkpoint {lsn} answered before durable"
                );
            }
            (_, Reply::Enqueued(Err(_)) | Reply::Cancelled(Err(_)))
            | (_, Reply::Completed(Err(_)) | Reply::Failed(Err(_)) | Reply::Heartbeat(Err(_)))
            | (_, Reply::Paused(_) | Reply::Purged(Err(_)) | Reply::Checkpoint(Err(_))) => {}
            (asked, reply) => panic!("{asked:?} answered {reply:?}"),
        }
    }

    /// The core agrees with the model on every job, and its leases on
    /// what each holds.
    pub(super) fn compare(&self) {
        let q = self.d.core();
        assert_eq!(q.applied_lsn(), self.model.applied);
        let st = q.stats();
        assert_eq!(
            st.jobs.pending
                + st.jobs.in_flight
                + st.jobs.completed
                + st.jobs.dead
                + st.jobs.cancelled,
            self.model.jobs.len() as u64
        );
        assert_eq!(st.remembered_ids, self.model.remembered.len() as u64);
        for (id, m) in &self.model.jobs {
            let v = q.job(id).unwrap_or_else(|| panic!("core lost job {id}"));
            assert_eq!(v.state, m.state, "job {id}");
            assert_eq!(v.attempt, m.attempt, "job {id}");
            assert_eq!(v.max_attempts, m.max_attempts);
            assert_eq!(v.priority, m.priority);
            assert_eq!(v.queue.as_str(), m.queue);
            assert_eq!(
                v.payload.as_ref().map(|p| p.as_bytes().to_vec()),
                m.payload,
                "job {id}"
            );
            assert_eq!(v.last_error, m.last_error, "job {id}");
            if m.state == JobState::Pending {
                assert_eq!(v.run_at, m.run_at, "job {id}");
            }
        }
        for l in q.list_leases().leases {
            let m = &self.model.jobs[l.id.as_str()];
            assert_eq!(
                (m.state, m.attempt, m.dispatch_lsn),
                (JobState::InFlight, l.attempt, l.lease_id),
                "lease {} of {}",
                l.lease_id,
                l.id
            );
        }
    }
}
