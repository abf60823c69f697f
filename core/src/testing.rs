//! An in-memory driver of the core, for tests (the `testing` feature).
//!
//! [`Driver`] follows the crate docs' contract with a log in memory and
//! workers that report what the test tells them to. The core's own tests,
//! its model property test and the doctests all drive the core through it,
//! so each [`Input`] is built in one place (one helper per input) and every
//! step is checked the same way:
//!
//! - every invariant holds (in full after every step, or every
//!   [`Driver::check_in_full_every`] steps);
//! - every appended record fits the log's record limit and decodes back to
//!   itself;
//! - an [`Effect::Abort`] names an attempt whose lease, counted from its
//!   start, is over, or one taken back by a cancel in the same step.
//!
//! Time is the driver's: [`Driver::at`] sets it, [`Driver::step_to_deadline`]
//! jumps to the core's next deadline. [`Driver::drive_until_quiet`] and
//! [`Driver::run_to_end`] loop, bounded, the way quinn-proto's test `Pair`
//! does.
//!
//! Not for production: a real driver carries effects out against a disk
//! and processes, asynchronously (see beaver-runtime). This one is
//! synchronous and keeps the log in a `Vec`; a crash loses exactly what was
//! not synced.
//!
//! ```
//! use beaver_core::testing::{Driver, job_id};
//! use beaver_core::{Config, Effect, JobSpec, JobState, Op, Outcome, Payload};
//!
//! let mut d = Driver::new(Config { workers: 1, ..Config::default() });
//! let job = |id: &str| JobSpec::new(Payload::from_json(b"{}").unwrap()).with_id(job_id(id));
//! d.at(1_000).enqueue(1, vec![job("mail"), job("hangs")]);
//! // `mail` succeeds; `hangs` starts and never reports an outcome.
//! d.drive_until_quiet(|x| (x.id.as_str() == "mail").then_some(Outcome::Succeeded));
//! let state = |d: &Driver, id| d.core().job(id).map(|j| (j.state, j.attempt));
//! assert_eq!(state(&d, "mail"), Some((JobState::Completed, 1)));
//! assert_eq!(state(&d, "hangs"), Some((JobState::InFlight, 1)));
//! // Its lease (30 s timeout + 5 s slack, from its start) is the next
//! // deadline: the attempt is aborted and a fail record appended...
//! let effects = d.step_to_deadline().unwrap();
//! assert!(matches!(&effects[0], Effect::Abort { attempt: 1, .. }));
//! // ...which a crash loses, unsynced. Recovery finds the attempt
//! // interrupted and fails it (it counts); the retry succeeds.
//! d.crash();
//! assert_eq!(state(&d, "hangs"), Some((JobState::InFlight, 1)));
//! d.run_to_end(|_| Some(Outcome::Succeeded));
//! let completed: Vec<(&str, u32)> = d.log().iter().filter_map(|r| match &r.op {
//!     Op::Complete { id, attempt } => Some((id.as_str(), *attempt)),
//!     _ => None,
//! }).collect();
//! assert_eq!(completed, [("mail", 1), ("hangs", 2)]);
//! // The run ends when nothing is left to do: both purged by retention.
//! assert_eq!(d.core().stats().totals.purged, 2);
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec;
use crate::config::Config;
use crate::job::{JobId, JobSpec, JobState, QueueName};
use crate::machine::{Core, RecoverError};
use crate::protocol::{
    Effect, Execution, Input, LeaseId, Outcome, QueuePause, RequestId, RequeueTarget, Retry,
    WaitOrder,
};
use crate::record::{Lsn, Op, Record};
use crate::time::UnixMillis;

/// Steps one [`Driver::drive_until_quiet`] or [`Driver::run_to_end`] may
/// take before it gives up (a core that never goes quiet is a bug).
pub const DRIVE_STEPS_MAX: u64 = 100_000;

/// A core, its log in memory, and its workers (see the module docs).
pub struct Driver {
    core: Core,
    /// The time the next step is given.
    now: UnixMillis,
    /// The latest time given to the core.
    high: UnixMillis,
    /// Durable records, in LSN order: what a crash keeps.
    log: Vec<Record>,
    /// Appended records not yet synced: what a crash loses.
    unsynced: Vec<Arc<Record>>,
    /// The latest snapshot taken, encoded.
    snapshot: Option<Vec<u8>>,
    /// Attempts handed out ([`Effect::Execute`]) with no outcome yet, in
    /// the order given.
    executions: Vec<Execution>,
    /// Those of them that started, with the time they did.
    started: BTreeMap<(JobId, u32), UnixMillis>,
    steps: u64,
    full_check_every: u64,
}

impl Driver {
    /// A driver of an empty core.
    pub fn new(config: Config) -> Driver {
        let mut d = Driver::with_core(Core::new(config));
        d.snapshot = None;
        d
    }

    /// A driver of `core` (built by a test, e.g. recovered). Its durable
    /// state becomes the driver's snapshot, so a [`Driver::crash`] recovers
    /// it, plus what this driver's log adds.
    pub fn with_core(core: Core) -> Driver {
        let snapshot = codec::encode_queue_snapshot(&core);
        Driver {
            now: core.now(),
            high: core.now(),
            core,
            log: Vec::new(),
            unsynced: Vec::new(),
            snapshot: Some(snapshot),
            executions: Vec::new(),
            started: BTreeMap::new(),
            steps: 0,
            full_check_every: 1,
        }
    }

    /// Checks the invariants in full only every `n` steps (at least 1),
    /// for long runs; the core's cheap checks still run at every step.
    pub fn check_in_full_every(mut self, n: u64) -> Driver {
        self.full_check_every = n.max(1);
        self
    }

    /// The core, to read between steps.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The time the next step will be given.
    pub fn now(&self) -> UnixMillis {
        self.now
    }

    /// Sets the time of the following steps (it may go back: the core
    /// clamps it).
    pub fn at(&mut self, now: UnixMillis) -> &mut Driver {
        self.now = now;
        self
    }

    /// Durable records, in LSN order.
    pub fn log(&self) -> &[Record] {
        &self.log
    }

    /// Appended records not yet synced, in LSN order.
    pub fn unsynced(&self) -> &[Arc<Record>] {
        &self.unsynced
    }

    /// Attempts handed out with no outcome yet, in the order given.
    pub fn executions(&self) -> &[Execution] {
        &self.executions
    }

    /// Steps the core with `input` at the driver's time, carries out the
    /// effects (appends join the unsynced log, executions wait for a
    /// worker, aborts end them), checks the step, and returns the effects.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        self.high = self.high.max(self.now);
        self.core.step(self.now, input, &mut out);
        self.steps += 1;
        self.carry_out(&out);
        if self.steps % self.full_check_every == 0 {
            if let Err(broken) = self.core.check_invariants() {
                panic!("after step {}: {broken}", self.steps);
            }
        }
        out
    }

    fn carry_out(&mut self, out: &[Effect]) {
        let cancelled: Vec<&JobId> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Append(r) => match &r.op {
                    Op::Cancel { id } => Some(id),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for e in out {
            match e {
                Effect::Append(r) => {
                    self.check_record(r);
                    self.unsynced.push(Arc::clone(r));
                }
                Effect::Execute(x) => self.executions.push(x.clone()),
                Effect::Abort { id, attempt } => {
                    self.check_abort(id, *attempt, cancelled.contains(&id));
                    self.executions
                        .retain(|x| (&x.id, x.attempt) != (id, *attempt));
                }
                Effect::Reply { .. } => {}
            }
        }
    }

    /// A record fits the log and survives its encoding.
    fn check_record(&self, r: &Record) {
        let bytes = codec::encode_record(r);
        let max = self.core.config().limits.record_bytes_max;
        assert!(
            bytes.len() as u64 <= max,
            "a {}-byte record over the log's {max} bytes: {r:?}",
            bytes.len(),
        );
        assert_eq!(
            codec::decode_record(&bytes).as_ref(),
            Ok(r),
            "record codec round trip"
        );
    }

    /// A started attempt is aborted only once its lease, counted from its
    /// start, is over; one waiting for a worker only when it is cancelled.
    fn check_abort(&mut self, id: &JobId, attempt: u32, cancelled: bool) {
        let began = self.started.remove(&(id.clone(), attempt));
        let timeout_ms = self
            .executions
            .iter()
            .find(|x| (&x.id, x.attempt) == (id, attempt))
            .map(|x| x.timeout_ms);
        match (began, timeout_ms) {
            (Some(t), Some(timeout_ms)) => {
                let lease = timeout_ms + self.core.config().lease_slack_ms;
                assert!(
                    self.high >= t + lease,
                    "lease of {id} attempt {attempt} started at {t} expired at {}",
                    self.high
                );
            }
            _ => assert!(
                cancelled,
                "attempt {attempt} of {id} aborted before it started, not cancelled"
            ),
        }
    }

    // One helper per input, in the order of `Input`'s variants.

    /// Steps [`Input::Enqueue`].
    pub fn enqueue(&mut self, req: u64, jobs: Vec<JobSpec>) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Enqueue { req, jobs })
    }

    /// Steps [`Input::Cancel`].
    pub fn cancel(&mut self, req: u64, id: &str) -> Vec<Effect> {
        let (req, id) = (RequestId(req), job_id(id));
        self.step(Input::Cancel { req, id })
    }

    /// Steps [`Input::Requeue`].
    pub fn requeue(&mut self, req: u64, target: RequeueTarget) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Requeue { req, target })
    }

    /// Steps [`Input::Get`].
    pub fn get(&mut self, req: u64, id: &str) -> Vec<Effect> {
        let (req, id) = (RequestId(req), job_id(id));
        self.step(Input::Get { req, id })
    }

    /// Steps [`Input::ListDead`].
    pub fn list_dead(&mut self, req: u64, limit: usize) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::ListDead { req, limit })
    }

    /// Steps [`Input::Status`].
    pub fn status(&mut self, req: u64) -> Vec<Effect> {
        self.step(Input::Status {
            req: RequestId(req),
        })
    }

    /// Steps [`Input::Durable`] as the test says, whatever was synced (for
    /// scripted reports; [`Driver::sync`] syncs and reports).
    pub fn durable(&mut self, upto: Lsn) -> Vec<Effect> {
        let synced = self.unsynced.iter().take_while(|r| r.lsn <= upto).count();
        let synced: Vec<Arc<Record>> = self.unsynced.drain(..synced).collect();
        self.log.extend(synced.iter().map(|r| Record::clone(r)));
        self.step(Input::Durable { upto })
    }

    /// Steps [`Input::AppendFailed`]: the unsynced records from `from_lsn`
    /// on were never written.
    pub fn append_failed(&mut self, from_lsn: Lsn, error: &str) -> Vec<Effect> {
        self.unsynced.retain(|r| r.lsn < from_lsn);
        let error = error.to_owned();
        self.step(Input::AppendFailed { from_lsn, error })
    }

    /// Steps [`Input::Outcome`]; the attempt leaves the workers.
    pub fn outcome(&mut self, id: &str, attempt: u32, outcome: Outcome) -> Vec<Effect> {
        let id = job_id(id);
        self.executions
            .retain(|x| (&x.id, x.attempt) != (&id, attempt));
        self.started.remove(&(id.clone(), attempt));
        self.step(Input::Outcome {
            id,
            attempt,
            outcome,
        })
    }

    /// Steps [`Input::Started`]. An attempt handed out is marked started
    /// at the time of its first report (the core counts the first too).
    pub fn started(&mut self, id: &str, attempt: u32) -> Vec<Effect> {
        let id = job_id(id);
        let key = (id.clone(), attempt);
        if self
            .executions
            .iter()
            .any(|x| (&x.id, x.attempt) == (&id, attempt))
        {
            let at = self.high.max(self.now);
            self.started.entry(key).or_insert(at);
        }
        self.step(Input::Started { id, attempt })
    }

    /// Steps [`Input::Tick`].
    pub fn tick(&mut self) -> Vec<Effect> {
        self.step(Input::Tick)
    }

    /// Steps [`Input::DiskFull`].
    pub fn disk_full(&mut self, full: bool) -> Vec<Effect> {
        self.step(Input::DiskFull(full))
    }

    /// Steps [`Input::StopDispatching`].
    pub fn stop_dispatching(&mut self) -> Vec<Effect> {
        self.step(Input::StopDispatching)
    }

    /// Steps [`Input::Lease`] for up to `max` jobs of `queues`, as worker
    /// `holder`, waiting up to `wait_ms` if given.
    pub fn lease(
        &mut self,
        req: u64,
        queues: &[&str],
        max: u32,
        wait_ms: Option<u64>,
        holder: &str,
    ) -> Vec<Effect> {
        self.lease_in_order(req, queues, max, wait_ms, holder, WaitOrder::FirstCome)
    }

    /// [`Driver::lease`] in the order `order` says.
    pub fn lease_in_order(
        &mut self,
        req: u64,
        queues: &[&str],
        max: u32,
        wait_ms: Option<u64>,
        holder: &str,
        order: WaitOrder,
    ) -> Vec<Effect> {
        let queues = queues.iter().map(|q| queue_name(q)).collect();
        self.step(Input::Lease {
            req: RequestId(req),
            queues,
            max,
            wait_ms,
            holder: holder.to_owned(),
            order,
        })
    }

    /// Steps [`Input::Heartbeat`].
    pub fn heartbeat(&mut self, req: u64, lease: LeaseId, extend_ms: Option<u64>) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Heartbeat {
            req,
            lease,
            extend_ms,
        })
    }

    /// Steps [`Input::Complete`].
    pub fn complete(&mut self, req: u64, lease: LeaseId) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Complete { req, lease })
    }

    /// Steps [`Input::Fail`].
    pub fn fail(&mut self, req: u64, lease: LeaseId, error: &str, retry: Retry) -> Vec<Effect> {
        let (req, error) = (RequestId(req), error.to_owned());
        self.step(Input::Fail {
            req,
            lease,
            error,
            retry,
        })
    }

    /// Steps [`Input::Release`].
    pub fn release(
        &mut self,
        req: u64,
        lease: LeaseId,
        priority: Option<i32>,
        delay_ms: u64,
    ) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Release {
            req,
            lease,
            priority,
            delay_ms,
        })
    }

    /// Steps [`Input::Bury`].
    pub fn bury(&mut self, req: u64, lease: LeaseId, priority: Option<i32>) -> Vec<Effect> {
        let req = RequestId(req);
        self.step(Input::Bury {
            req,
            lease,
            priority,
        })
    }

    /// Steps [`Input::Delete`].
    pub fn delete(&mut self, req: u64, id: &str) -> Vec<Effect> {
        let req = RequestId(req);
        let id = job_id(id);
        self.step(Input::Delete { req, id })
    }

    /// Steps [`Input::Kick`].
    pub fn kick(&mut self, req: u64, id: &str) -> Vec<Effect> {
        let (req, id) = (RequestId(req), job_id(id));
        self.step(Input::Kick { req, id })
    }

    /// Steps [`Input::LeaseJob`].
    pub fn lease_job(&mut self, req: u64, id: &str, holder: &str) -> Vec<Effect> {
        let (req, id, holder) = (RequestId(req), job_id(id), holder.to_owned());
        self.step(Input::LeaseJob { req, id, holder })
    }

    /// Steps [`Input::Withdraw`].
    pub fn withdraw(&mut self, req: u64) -> Vec<Effect> {
        self.step(Input::Withdraw {
            req: RequestId(req),
        })
    }

    /// Steps [`Input::ReturnLeases`].
    pub fn return_leases(&mut self, leases: &[LeaseId]) -> Vec<Effect> {
        let leases = leases.to_vec();
        self.step(Input::ReturnLeases { leases })
    }

    /// Steps [`Input::PauseQueue`].
    pub fn pause_queue(&mut self, req: u64, queue: &str, pause: QueuePause) -> Vec<Effect> {
        let (req, queue) = (RequestId(req), queue_name(queue));
        self.step(Input::PauseQueue { req, queue, pause })
    }

    /// Steps [`Input::PurgeQueue`].
    pub fn purge_queue(&mut self, req: u64, queue: &str) -> Vec<Effect> {
        let (req, queue) = (RequestId(req), queue_name(queue));
        self.step(Input::PurgeQueue { req, queue })
    }

    /// Steps [`Input::ListJobs`].
    pub fn list_jobs(
        &mut self,
        req: u64,
        (queue, state): (Option<&str>, Option<JobState>),
        after: Option<u64>,
        limit: usize,
    ) -> Vec<Effect> {
        self.step(Input::ListJobs {
            req: RequestId(req),
            queue: queue.map(queue_name),
            state,
            after,
            limit,
        })
    }

    /// Steps [`Input::ListLeases`].
    pub fn list_leases(&mut self, req: u64) -> Vec<Effect> {
        self.step(Input::ListLeases {
            req: RequestId(req),
        })
    }

    /// Steps [`Input::Checkpoint`].
    pub fn checkpoint(&mut self, req: u64) -> Vec<Effect> {
        self.step(Input::Checkpoint {
            req: RequestId(req),
        })
    }

    // Driving loops.

    /// Syncs the first `n` unsynced records and reports them durable (no
    /// step if there is nothing to sync).
    pub fn sync(&mut self, n: usize) -> Vec<Effect> {
        let n = n.min(self.unsynced.len());
        match n.checked_sub(1).map(|last| self.unsynced[last].lsn) {
            Some(upto) => self.durable(upto),
            None => Vec::new(),
        }
    }

    /// Syncs every unsynced record and reports them durable.
    pub fn sync_all(&mut self) -> Vec<Effect> {
        self.sync(usize::MAX)
    }

    /// Jumps to the core's next deadline (never back) and ticks; `None`
    /// if the core has none.
    pub fn step_to_deadline(&mut self) -> Option<Vec<Effect>> {
        let t = self.core.next_deadline()?;
        self.now = self.now.max(t);
        Some(self.tick())
    }

    /// Syncs and works until nothing is left to do at this time: every
    /// record durable, and every free worker busy or no attempt waiting.
    /// A worker starts an attempt (reporting [`Input::Started`]) and asks
    /// `work` how it ends: `Some(outcome)` is reported at once, `None`
    /// leaves it hanging (until its lease expires). Workers are
    /// `config.workers` at most. Panics after [`DRIVE_STEPS_MAX`] steps.
    pub fn drive_until_quiet(&mut self, mut work: impl FnMut(&Execution) -> Option<Outcome>) {
        for _ in 0..DRIVE_STEPS_MAX {
            if !self.drive_once(&mut work) {
                return;
            }
        }
        panic!("the core is not quiet after {DRIVE_STEPS_MAX} steps");
    }

    /// [`Driver::drive_until_quiet`], then the next deadline, and again,
    /// until the core has no deadline left. Panics after
    /// [`DRIVE_STEPS_MAX`] steps.
    pub fn run_to_end(&mut self, mut work: impl FnMut(&Execution) -> Option<Outcome>) {
        for _ in 0..DRIVE_STEPS_MAX {
            if !self.drive_once(&mut work) && self.step_to_deadline().is_none() {
                return;
            }
        }
        panic!("the core still has deadlines after {DRIVE_STEPS_MAX} steps");
    }

    /// One step of the loops: sync, else start a waiting attempt; `false`
    /// if there was nothing to do.
    fn drive_once(&mut self, work: &mut impl FnMut(&Execution) -> Option<Outcome>) -> bool {
        if !self.unsynced.is_empty() {
            self.sync_all();
            return true;
        }
        let workers = self.core.config().workers as usize;
        let waiting = self
            .executions
            .iter()
            .find(|x| !self.started.contains_key(&(x.id.clone(), x.attempt)))
            .cloned();
        let Some(x) = waiting.filter(|_| self.started.len() < workers) else {
            return false;
        };
        self.started(x.id.as_str(), x.attempt);
        if let Some(outcome) = work(&x) {
            self.outcome(x.id.as_str(), x.attempt, outcome);
        }
        true
    }

    // Crash and restart.

    /// Takes a snapshot of the durable state, as the runtime writes one;
    /// the next [`Driver::crash`] recovers from it.
    pub fn take_snapshot(&mut self) {
        let bytes = codec::encode_queue_snapshot(&self.core);
        assert_eq!(
            codec::queue_snapshot_len(&self.core),
            bytes.len() as u64,
            "the snapshot's length computed without encoding"
        );
        self.snapshot = Some(bytes);
    }

    /// Crashes and recovers the way production does ([`rebuild`]): what
    /// was not synced is lost, and so are the attempts handed out.
    pub fn crash(&mut self) {
        let config = self.core.config().clone();
        match rebuild(config, self.snapshot.as_deref(), &self.log) {
            Ok(core) => self.restart(core),
            Err(e) => panic!("the durable log does not recover: {e}"),
        }
    }

    /// Crashes and goes on with `core` (a test's own rebuild of
    /// [`Driver::log`]): unsynced records and attempts are lost.
    pub fn restart(&mut self, core: Core) {
        self.core = core;
        self.unsynced.clear();
        self.executions.clear();
        self.started.clear();
    }
}

/// Rebuilds a core as production does at start-up: the snapshot's bytes
/// with [`Core::recover_encoded`], each record after the snapshot's LSN
/// with [`Core::apply_owned`], then [`Core::finish_rebuild`].
pub fn rebuild(
    config: Config,
    snapshot: Option<&[u8]>,
    log: &[Record],
) -> Result<Core, RecoverError> {
    let mut core = match snapshot {
        Some(bytes) => Core::recover_encoded(config, bytes, [])?,
        None => Core::new(config),
    };
    let after = core.applied_lsn();
    for r in log.iter().filter(|r| r.lsn > after) {
        core.apply_owned(r.clone()).map_err(RecoverError::Apply)?;
    }
    core.finish_rebuild();
    Ok(core)
}

/// `id` as a job id; panics if it is not one (a test's mistake).
pub fn job_id(id: &str) -> JobId {
    match JobId::parse(id) {
        Ok(id) => id,
        Err(e) => panic!("{id:?} is not a job id: {e}"),
    }
}

/// `name` as a queue name; panics if it is not one (a test's mistake).
pub fn queue_name(name: &str) -> QueueName {
    match QueueName::parse(name) {
        Ok(q) => q,
        Err(e) => panic!("{name:?} is not a queue name: {e}"),
    }
}
