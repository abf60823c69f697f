//! Property tests: random input sequences against an obviously correct
//! reference model, with random crashes.
//!
//! The model is a naive fold of the durable records over a `BTreeMap`. The
//! core runs in the shared test driver (`beaver_core::testing::Driver`).
//! After every step: the core's invariants hold (cheaply; in full every 16
//! steps and at the end), every record round-trips through the codec and
//! fits the log, aborts only end expired or cancelled attempts (the driver
//! checks these), the core agrees with the model on every job, replies and
//! executions follow durability, and at every crash the state recovered
//! from the durable log (with and without a snapshot, and the way
//! production rebuilds) equals what the core had applied.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use beaver_core::testing::{self, Driver};
use beaver_core::{
    Config, Core, Effect, Execution, JobId, JobSpec, JobState, Limits, NewJob, Op, Outcome,
    Payload, Record, Reply, RequestId, RequeueTarget, Retention, RetryPolicy, codec,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct MJob {
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    priority: i32,
    queue: String,
    payload: Option<Vec<u8>>,
    last_error: Option<String>,
    run_at: u64,
}

/// The reference: the durable records folded the simplest way.
#[derive(Debug, Default)]
struct Model {
    jobs: BTreeMap<String, MJob>,
    remembered: BTreeSet<String>,
    /// Every id ever durably enqueued.
    ever: BTreeSet<String>,
    applied: u64,
}

impl Model {
    fn apply(&mut self, r: &Record) {
        assert_eq!(r.lsn, self.applied + 1, "records apply in LSN order");
        self.applied = r.lsn;
        let job = |m: &mut Model, id: &JobId| {
            m.jobs
                .get_mut(id.as_str())
                .expect("record names a known job")
                .clone()
        };
        match &r.op {
            Op::Enqueue { jobs } => jobs.iter().for_each(|j| self.enqueue(j)),
            Op::Dispatch { id, attempt, .. } => {
                let mut j = job(self, id);
                assert_eq!(j.state, JobState::Pending);
                assert_eq!(*attempt, j.attempt + 1);
                assert!(
                    *attempt <= j.max_attempts,
                    "never more attempts than allowed"
                );
                j.state = JobState::InFlight;
                j.attempt = *attempt;
                self.jobs.insert(id.to_string(), j);
            }
            Op::Complete { id, attempt } => {
                let mut j = job(self, id);
                assert_eq!((j.state, j.attempt), (JobState::InFlight, *attempt));
                j.state = JobState::Completed;
                j.payload = None;
                self.jobs.insert(id.to_string(), j);
            }
            Op::Fail {
                id,
                attempt,
                error,
                retry_at,
            } => {
                let mut j = job(self, id);
                assert_eq!((j.state, j.attempt), (JobState::InFlight, *attempt));
                j.last_error = Some(error.clone());
                self.fail(id, j, *retry_at);
            }
            Op::Release { id, attempt } => {
                let mut j = job(self, id);
                assert_eq!((j.state, j.attempt), (JobState::InFlight, *attempt));
                j.state = JobState::Pending;
                j.attempt -= 1;
                self.jobs.insert(id.to_string(), j);
            }
            Op::Cancel { id } => {
                let j = job(self, id);
                self.cancel(id, j);
            }
            Op::Requeue { ids } => {
                for id in ids {
                    let mut j = job(self, id);
                    assert_eq!(j.state, JobState::Dead, "only dead jobs are requeued");
                    j.state = JobState::Pending;
                    j.attempt = 0;
                    j.run_at = r.at;
                    self.jobs.insert(id.to_string(), j);
                }
            }
            Op::Purge { jobs, forget } => self.purge(jobs, forget),
        }
    }

    fn enqueue(&mut self, j: &NewJob) {
        assert!(!self.jobs.contains_key(j.id.as_str()) && !self.remembered.contains(j.id.as_str()));
        self.ever.insert(j.id.to_string());
        self.jobs.insert(
            j.id.to_string(),
            MJob {
                state: JobState::Pending,
                attempt: 0,
                max_attempts: j.max_attempts,
                priority: j.priority,
                queue: j.queue.to_string(),
                payload: Some(j.payload.as_bytes().to_vec()),
                last_error: None,
                run_at: j.run_at,
            },
        );
    }

    /// Job `id` (`j`, its failed attempt checked) retries or is dead.
    fn fail(&mut self, id: &JobId, mut j: MJob, retry_at: Option<u64>) {
        match retry_at {
            Some(t) => {
                assert!(
                    j.attempt < j.max_attempts,
                    "a retry is proposed only with attempts left"
                );
                j.state = JobState::Pending;
                j.run_at = t;
            }
            None => {
                assert_eq!(
                    j.attempt, j.max_attempts,
                    "dead only when attempts are used up"
                );
                j.state = JobState::Dead;
            }
        }
        self.jobs.insert(id.to_string(), j);
    }

    fn cancel(&mut self, id: &JobId, mut j: MJob) {
        match j.state {
            JobState::Pending => {}
            // Its attempt was handed out and never started (the driver
            // checks that when the core takes it back).
            JobState::InFlight => j.attempt -= 1,
            s => {
                panic!("cancel of a job {s:?}: only pending or waiting jobs are cancelled")
            }
        }
        j.state = JobState::Cancelled;
        j.payload = None;
        self.jobs.insert(id.to_string(), j);
    }

    fn purge(&mut self, jobs: &[JobId], forget: &[JobId]) {
        for id in jobs {
            let j = self.jobs.remove(id.as_str()).expect("purged job exists");
            assert!(j.state.is_final(), "only final jobs are purged");
            self.remembered.insert(id.to_string());
        }
        for id in forget {
            assert!(
                self.remembered.remove(id.as_str()),
                "only remembered ids are forgotten"
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Action {
    Enqueue(Vec<(Option<u8>, i32, u64, u32)>),
    Sync(u8),
    FailAppend(u8),
    Finish(u8, u8),
    Start(u8),
    Advance(u16),
    ClockBack(u16),
    Cancel(u8),
    Requeue(Option<u8>),
    DiskFull(bool),
    Crash(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => prop::collection::vec((prop::option::weighted(0.8, 0u8..12), 0i32..3, prop_oneof![3 => Just(0u64), 1 => 0u64..3_000], 1u32..4), 1..4)
            .prop_map(Action::Enqueue),
        5 => any::<u8>().prop_map(Action::Sync),
        1 => any::<u8>().prop_map(Action::FailAppend),
        4 => (any::<u8>(), 0u8..4).prop_map(|(i, o)| Action::Finish(i, o)),
        3 => any::<u8>().prop_map(Action::Start),
        3 => any::<u16>().prop_map(Action::Advance),
        1 => any::<u16>().prop_map(Action::ClockBack),
        1 => (0u8..12).prop_map(Action::Cancel),
        1 => prop::option::of(0u8..12).prop_map(Action::Requeue),
        1 => any::<bool>().prop_map(Action::DiskFull),
        1 => any::<u8>().prop_map(Action::Crash),
    ]
}

/// The log's capacity for one record, and how many ids a record may name.
#[derive(Debug, Clone, Copy)]
struct RecordLimits {
    bytes_max: u64,
    ids_max: u64,
}

fn record_limits() -> impl Strategy<Value = RecordLimits> {
    let bytes_max = prop_oneof![Just(u64::MAX), 130u64..400];
    (bytes_max, prop_oneof![Just(3u64), Just(1_000)])
        .prop_map(|(bytes_max, ids_max)| RecordLimits { bytes_max, ids_max })
}

const UNLIMITED: RecordLimits = RecordLimits {
    bytes_max: u64::MAX,
    ids_max: 3,
};

fn config(workers: u32, prefetch: u32, records: RecordLimits) -> Config {
    Config {
        workers,
        prefetch,
        default_max_attempts: 2,
        default_timeout_ms: 500,
        lease_slack_ms: 100,
        retry: RetryPolicy {
            base_ms: 200,
            max_ms: 1_000,
        },
        retention: Retention {
            finished_age_ms: 5_000,
            finished_count_max: 4,
        },
        dedup: beaver_core::Dedup {
            window_ms: 8_000,
            ids_max: 5,
        },
        limits: Limits {
            pending_jobs_max: 20,
            ids_per_record_max: records.ids_max,
            record_bytes_max: records.bytes_max,
            ..Limits::default()
        },
        hash_seed: 7,
    }
}

struct Harness {
    /// The core with its log and workers; it checks every record's codec
    /// round trip and size, every abort, and the invariants every 16 steps.
    d: Driver,
    config: Config,
    model: Model,
    next_req: u64,
    /// Enqueue requests in flight: req -> ids.
    asked: BTreeMap<u64, ()>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        let mut d = Driver::new(config.clone()).check_in_full_every(16);
        d.at(1_000);
        Harness {
            d,
            config,
            model: Model::default(),
            next_req: 1,
            asked: BTreeMap::new(),
        }
    }

    /// Checks one step's effects against the model, then every job.
    fn check(&mut self, out: Vec<Effect>) {
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
                }
                Effect::Append(_) | Effect::Abort { .. } => {}
            }
        }
        self.compare();
    }

    fn check_reply(&mut self, req: RequestId, reply: Reply) {
        match reply {
            Reply::Enqueued(Ok(ids)) => {
                assert!(self.asked.remove(&req.0).is_some(), "one reply per request");
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
            Reply::Enqueued(Err(_)) => {
                assert!(self.asked.remove(&req.0).is_some(), "one reply per request");
            }
            Reply::Cancelled(Ok(())) => {}
            _ => {}
        }
    }

    /// The core agrees with the model on every job.
    fn compare(&self) {
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
    }

    /// Syncs the first `n` unsynced records: the model applies them, then
    /// the core learns they are durable.
    fn sync(&mut self, n: usize) {
        let n = n.min(self.d.unsynced().len());
        if n == 0 {
            return;
        }
        let synced: Vec<Arc<Record>> = self.d.unsynced()[..n].to_vec();
        for r in &synced {
            self.model.apply(r);
        }
        let out = self.d.sync(n);
        self.check(out);
    }

    fn crash(&mut self, cut: u8) {
        let applied = self.d.core().snapshot();
        // What the log holds: everything synced. (Unsynced records are lost.)
        let log = self.d.log().to_vec();
        let plain = Core::recover(self.config.clone(), None, log.clone()).unwrap();
        assert_eq!(
            plain.snapshot(),
            applied,
            "recovered state equals the applied state"
        );
        // The same with a snapshot taken at a random durable point, replaying overlapping records.
        let k = if log.is_empty() {
            0
        } else {
            cut as usize % (log.len() + 1)
        };
        let partial = Core::recover(self.config.clone(), None, log[..k].iter().cloned()).unwrap();
        let snap = codec::decode_snapshot(&codec::encode_snapshot(&partial.snapshot())).unwrap();
        let encoded = check_snapshot_encodings(&partial, cut);
        let streamed =
            Core::recover_encoded(self.config.clone(), &encoded, log.iter().cloned()).unwrap();
        assert_eq!(
            streamed.snapshot(),
            applied,
            "the streaming snapshot decoder agrees"
        );
        let recovered = Core::recover(self.config.clone(), Some(snap), log.clone()).unwrap();
        assert_eq!(
            recovered.snapshot(),
            applied,
            "snapshot + overlapping log equals the applied state"
        );
        recovered.check_invariants().unwrap();
        // As production rebuilds at start-up: the encoded snapshot, the
        // records after it one by one, then the ids indexed.
        let production = testing::rebuild(self.config.clone(), Some(&encoded), &log).unwrap();
        assert_eq!(
            production.snapshot(),
            applied,
            "the production rebuild equals the applied state"
        );
        // Streamed as the server's replay does, the enqueued ids left to be
        // indexed (no `finish_rebuild`): it holds and finds the same jobs,
        // and on every third crash it carries on as the queue (its first
        // step indexes them).
        let mut rebuilt = Core::new(self.config.clone());
        for r in log {
            rebuilt.apply_owned(r).unwrap();
        }
        assert_eq!(
            rebuilt.snapshot(),
            applied,
            "a streamed rebuild equals the applied state"
        );
        rebuilt.check_invariants().unwrap();
        self.d
            .restart(if cut % 3 == 0 { rebuilt } else { recovered });
        self.asked.clear();
    }

    fn run(&mut self, action: Action) {
        let d = &mut self.d;
        let out = match action {
            Action::Enqueue(jobs) => {
                let specs = jobs
                    .into_iter()
                    .map(|(id, priority, delay_ms, attempts)| JobSpec {
                        id: id.map(|i| JobId::parse(&format!("j{i}")).unwrap()),
                        queue: None,
                        payload: Payload::from_json(format!("{priority}").as_bytes()).unwrap(),
                        priority,
                        max_attempts: Some(attempts),
                        timeout_ms: None,
                        delay_ms,
                    })
                    .collect();
                let req = self.next_req;
                self.next_req += 1;
                self.asked.insert(req, ());
                d.enqueue(req, specs)
            }
            Action::Sync(n) => return self.sync(n as usize % 4 + 1),
            Action::FailAppend(n) => return self.fail_append(n),
            Action::Finish(i, o) => {
                let Some(x) = pick(d.executions(), i) else {
                    return;
                };
                let outcome = match o {
                    0 => Outcome::Succeeded,
                    1 => Outcome::Failed(format!("boom{}", "!".repeat(150))),
                    2 => Outcome::TimedOut,
                    _ => Outcome::NotStarted,
                };
                d.outcome(x.id.as_str(), x.attempt, outcome)
            }
            Action::Start(i) => {
                let Some(x) = pick(d.executions(), i) else {
                    return;
                };
                d.started(x.id.as_str(), x.attempt)
            }
            Action::Advance(ms) => {
                let now = d.now() + u64::from(ms) % 3_000;
                d.at(now).tick()
            }
            Action::ClockBack(ms) => {
                let saved = d.now();
                let out = d.at(saved.saturating_sub(u64::from(ms))).tick();
                d.at(saved);
                out
            }
            Action::Cancel(i) => d.cancel(u64::MAX - 1, &format!("j{i}")),
            Action::Requeue(target) => {
                let target = match target {
                    Some(i) => RequeueTarget::One(JobId::parse(&format!("j{i}")).unwrap()),
                    None => RequeueTarget::AllDead,
                };
                d.requeue(u64::MAX, target)
            }
            Action::DiskFull(b) => d.disk_full(b),
            Action::Crash(cut) => return self.crash(cut),
        };
        self.check(out);
    }

    /// Syncs some unsynced records, then the log refuses the rest.
    fn fail_append(&mut self, n: u8) {
        if self.d.unsynced().is_empty() {
            return;
        }
        let keep = n as usize % self.d.unsynced().len();
        self.sync(keep);
        if let Some(first) = self.d.unsynced().first() {
            let from_lsn = first.lsn;
            let out = self.d.append_failed(from_lsn, "no space");
            self.check(out);
        }
    }

    /// After the script: sync everything and let time pass; every job must
    /// reach a final state (liveness).
    fn drain(&mut self) {
        let out = self.d.disk_full(false);
        self.check(out);
        for _ in 0..400 {
            self.sync(usize::MAX);
            if let Some(x) = self.d.executions().first().cloned() {
                let out = self.d.outcome(x.id.as_str(), x.attempt, Outcome::Succeeded);
                self.check(out);
                continue;
            }
            let all_final = self.model.jobs.values().all(|j| j.state.is_final());
            if all_final && self.d.unsynced().is_empty() {
                break;
            }
            let now = self.d.now();
            let next = self
                .d
                .core()
                .next_deadline()
                .unwrap_or(now + 1_000)
                .max(now + 1);
            let out = self.d.at(next).tick();
            self.check(out);
        }
        self.d.core().check_invariants().unwrap();
        let stuck: Vec<_> = self
            .model
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final())
            .collect();
        assert!(stuck.is_empty(), "jobs never finished: {stuck:?}");
    }
}

/// Encoding a core's snapshot gives the same bytes whole, from the core, and
/// piece by piece (as snapshots are written, at a piece size from `cut`);
/// returns them.
fn check_snapshot_encodings(core: &Core, cut: u8) -> Vec<u8> {
    let encoded = codec::encode_snapshot(&core.snapshot());
    assert_eq!(
        codec::encode_queue_snapshot(core),
        encoded,
        "encoding from the queue and from its snapshot differ"
    );
    let piece = 1 + cut as usize % 97;
    let mut encoder = codec::SnapshotEncoder::new(core);
    let (mut pieces, mut buf) = (Vec::new(), Vec::new());
    loop {
        buf.clear();
        let more = encoder.fill(&mut buf, piece);
        pieces.extend_from_slice(&buf);
        if !more {
            break;
        }
        assert!(buf.len() >= piece, "a piece before the last is short");
    }
    buf.clear();
    assert!(
        !encoder.fill(&mut buf, piece) && buf.is_empty(),
        "a finished encoder appends nothing"
    );
    assert_eq!(pieces, encoded, "the pieces differ from the whole encoding");
    encoded
}

/// The `i`-th (modulo) attempt handed out, if any.
fn pick(executions: &[Execution], i: u8) -> Option<Execution> {
    match executions.len() {
        0 => None,
        n => Some(executions[i as usize % n].clone()),
    }
}

fn run_case(workers: u32, prefetch: u32, records: RecordLimits, actions: Vec<Action>) {
    let mut h = Harness::new(config(workers, prefetch, records));
    for a in actions {
        h.run(a);
    }
    h.d.core().check_invariants().unwrap();
    h.crash(3);
    h.drain();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6_000, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn core_agrees_with_the_model_across_crashes(
        workers in 1u32..3,
        prefetch in 0u32..3,
        records in record_limits(),
        actions in prop::collection::vec(action(), 1..40),
    ) {
        run_case(workers, prefetch, records, actions);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    #[test]
    fn long_runs_agree_with_the_model(actions in prop::collection::vec(action(), 40..120)) {
        run_case(2, 2, UNLIMITED, actions);
    }
}
