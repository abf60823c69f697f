//! Property tests: random input sequences against an obviously correct
//! reference model, with random crashes.
//!
//! The model is a naive fold of the durable records over a `BTreeMap`. After
//! every step: the core's invariants hold (cheaply; in full every 16 steps
//! and at the end), the core agrees with the model on every job, replies and
//! executions follow durability, and at every crash the state recovered from
//! the durable log (with and without a snapshot) equals what the core had
//! applied.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use beaver_core::{
    Config, Core, Effect, Input, JobId, JobSpec, JobState, Limits, Op, Outcome, Payload, Record,
    Reply, RequestId, RequeueTarget, Retention, RetryPolicy, codec,
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
            Op::Enqueue { jobs } => {
                for j in jobs {
                    assert!(
                        !self.jobs.contains_key(j.id.as_str())
                            && !self.remembered.contains(j.id.as_str())
                    );
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
            }
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
                match retry_at {
                    Some(t) => {
                        assert!(
                            *attempt < j.max_attempts,
                            "a retry is proposed only with attempts left"
                        );
                        j.state = JobState::Pending;
                        j.run_at = *t;
                    }
                    None => {
                        assert_eq!(
                            *attempt, j.max_attempts,
                            "dead only when attempts are used up"
                        );
                        j.state = JobState::Dead;
                    }
                }
                self.jobs.insert(id.to_string(), j);
            }
            Op::Release { id, attempt } => {
                let mut j = job(self, id);
                assert_eq!((j.state, j.attempt), (JobState::InFlight, *attempt));
                j.state = JobState::Pending;
                j.attempt -= 1;
                self.jobs.insert(id.to_string(), j);
            }
            Op::Cancel { id } => {
                let mut j = job(self, id);
                match j.state {
                    JobState::Pending => {}
                    // Its attempt was handed out and never started (the
                    // harness checks that when the core takes it back).
                    JobState::InFlight => j.attempt -= 1,
                    s => {
                        panic!("cancel of a job {s:?}: only pending or waiting jobs are cancelled")
                    }
                }
                j.state = JobState::Cancelled;
                j.payload = None;
                self.jobs.insert(id.to_string(), j);
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
            Op::Purge { jobs, forget } => {
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
    q: Core,
    config: Config,
    now: u64,
    /// The durable log (what a crash keeps).
    durable: Vec<Record>,
    /// Appended, not yet synced.
    unsynced: Vec<Arc<Record>>,
    model: Model,
    /// Executions handed out and not finished: (id, attempt).
    running: Vec<(JobId, u32)>,
    /// Those of them reported started, with the core's time then.
    started: BTreeMap<(JobId, u32), u64>,
    /// The latest time given to the core (it never goes back).
    high: u64,
    next_req: u64,
    /// Enqueue requests in flight: req -> ids.
    asked: BTreeMap<u64, ()>,
    steps: u64,
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness {
            q: Core::new(config.clone()),
            config,
            now: 1_000,
            durable: Vec::new(),
            unsynced: Vec::new(),
            model: Model::default(),
            running: Vec::new(),
            started: BTreeMap::new(),
            high: 0,
            next_req: 1,
            asked: BTreeMap::new(),
            steps: 0,
        }
    }

    fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.high = self.high.max(self.now);
        self.q.step(self.now, input, &mut out);
        self.steps += 1;
        let cancelled: Vec<JobId> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Append(r) => match &r.op {
                    Op::Cancel { id } => Some(id.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for e in out {
            match e {
                Effect::Append(r) => {
                    let bytes = codec::encode_record(&r);
                    assert!(
                        bytes.len() as u64 <= self.config.limits.record_bytes_max,
                        "a {}-byte record over the log's {} bytes: {r:?}",
                        bytes.len(),
                        self.config.limits.record_bytes_max
                    );
                    assert_eq!(
                        codec::decode_record(&bytes).unwrap(),
                        *r,
                        "record codec round trip"
                    );
                    self.unsynced.push(r);
                }
                Effect::Reply { req, reply } => self.check_reply(req, reply),
                Effect::Execute(x) => {
                    let j = &self.model.jobs[x.id.as_str()];
                    assert_eq!(
                        (j.state, j.attempt),
                        (JobState::InFlight, x.attempt),
                        "execute follows a durable dispatch"
                    );
                    self.running.push((x.id, x.attempt));
                }
                Effect::Abort { id, attempt } => {
                    // A started attempt is aborted when its lease, counted
                    // from its start, expires; one waiting for a worker
                    // only when it is cancelled.
                    let began = self.started.remove(&(id.clone(), attempt));
                    let lease = self.config.default_timeout_ms + self.config.lease_slack_ms;
                    match began {
                        Some(t) => assert!(
                            self.high >= t + lease,
                            "lease of {id} attempt {attempt} started at {t} expired at {}",
                            self.high
                        ),
                        None => assert!(
                            cancelled.contains(&id),
                            "attempt {attempt} of {id} aborted before it started, not cancelled"
                        ),
                    }
                    self.running.retain(|r| *r != (id.clone(), attempt))
                }
            }
        }
        self.compare();
        if self.steps % 16 == 0 {
            self.q.check_invariants().unwrap();
        }
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
        assert_eq!(self.q.applied_lsn(), self.model.applied);
        let st = self.q.stats();
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
            let v = self
                .q
                .job(id)
                .unwrap_or_else(|| panic!("core lost job {id}"));
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

    fn sync(&mut self, n: usize) {
        let n = n.min(self.unsynced.len());
        if n == 0 {
            return;
        }
        let synced: Vec<Arc<Record>> = self.unsynced.drain(..n).collect();
        let upto = synced[n - 1].lsn;
        for r in synced {
            self.model.apply(&r);
            self.durable.push((*r).clone());
        }
        self.step(Input::Durable { upto });
    }

    fn crash(&mut self, cut: u8) {
        let applied = self.q.snapshot();
        // What the log holds: everything synced. (Unsynced records are lost.)
        let log = self.durable.clone();
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
        let encoded = codec::encode_snapshot(&partial.snapshot());
        assert_eq!(
            codec::encode_queue_snapshot(&partial),
            encoded,
            "encoding from the queue and from its snapshot differ"
        );
        // Piece by piece (as snapshots are written), at a random piece size.
        let piece = 1 + cut as usize % 97;
        let mut encoder = codec::SnapshotEncoder::new(&partial);
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
        let streamed =
            Core::recover_encoded(self.config.clone(), &encoded, log.iter().cloned()).unwrap();
        assert_eq!(
            streamed.snapshot(),
            applied,
            "the streaming snapshot decoder agrees"
        );
        let recovered = Core::recover(self.config.clone(), Some(snap), log).unwrap();
        assert_eq!(
            recovered.snapshot(),
            applied,
            "snapshot + overlapping log equals the applied state"
        );
        recovered.check_invariants().unwrap();
        // Streamed as the server's replay does, the enqueued ids left to be
        // indexed (no `finish_rebuild`): it holds and finds the same jobs,
        // and on every third crash it carries on as the queue (its first
        // step indexes them).
        let mut rebuilt = Core::new(self.config.clone());
        for r in self.durable.iter().cloned() {
            rebuilt.apply_owned(r).unwrap();
        }
        assert_eq!(
            rebuilt.snapshot(),
            applied,
            "a streamed rebuild equals the applied state"
        );
        rebuilt.check_invariants().unwrap();
        self.q = if cut % 3 == 0 { rebuilt } else { recovered };
        self.unsynced.clear();
        self.running.clear();
        self.started.clear();
        self.asked.clear();
    }

    fn run(&mut self, action: Action) {
        match action {
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
                self.step(Input::Enqueue {
                    req: RequestId(req),
                    jobs: specs,
                });
            }
            Action::Sync(n) => self.sync(n as usize % 4 + 1),
            Action::FailAppend(n) => {
                if !self.unsynced.is_empty() {
                    let keep = n as usize % self.unsynced.len();
                    self.sync(keep);
                    if let Some(first) = self.unsynced.first() {
                        let from_lsn = first.lsn;
                        self.unsynced.clear();
                        self.step(Input::AppendFailed {
                            from_lsn,
                            error: "no space".into(),
                        });
                    }
                }
            }
            Action::Finish(i, o) => {
                if !self.running.is_empty() {
                    let (id, attempt) = self.running.remove(i as usize % self.running.len());
                    self.started.remove(&(id.clone(), attempt));
                    let outcome = match o {
                        0 => Outcome::Succeeded,
                        1 => Outcome::Failed(format!("boom{}", "!".repeat(150))),
                        2 => Outcome::TimedOut,
                        _ => Outcome::NotStarted,
                    };
                    self.step(Input::Outcome {
                        id,
                        attempt,
                        outcome,
                    });
                }
            }
            Action::Start(i) => {
                if !self.running.is_empty() {
                    let (id, attempt) = self.running[i as usize % self.running.len()].clone();
                    let high = self.high.max(self.now);
                    self.started.entry((id.clone(), attempt)).or_insert(high);
                    self.step(Input::Started { id, attempt });
                }
            }
            Action::Advance(ms) => {
                self.now += u64::from(ms) % 3_000;
                self.step(Input::Tick);
            }
            Action::ClockBack(ms) => {
                let saved = self.now;
                self.now = self.now.saturating_sub(u64::from(ms));
                self.step(Input::Tick);
                self.now = saved;
            }
            Action::Cancel(i) => {
                let req = RequestId(u64::MAX - 1);
                self.step(Input::Cancel {
                    req,
                    id: JobId::parse(&format!("j{i}")).unwrap(),
                });
            }
            Action::Requeue(target) => {
                let target = match target {
                    Some(i) => RequeueTarget::One(JobId::parse(&format!("j{i}")).unwrap()),
                    None => RequeueTarget::AllDead,
                };
                self.step(Input::Requeue {
                    req: RequestId(u64::MAX),
                    target,
                });
            }
            Action::DiskFull(b) => self.step(Input::DiskFull(b)),
            Action::Crash(cut) => self.crash(cut),
        }
    }

    /// After the script: sync everything and let time pass; every job must
    /// reach a final state (liveness).
    fn drain(&mut self) {
        self.step(Input::DiskFull(false));
        for _ in 0..400 {
            self.sync(usize::MAX);
            if let Some((id, attempt)) = self.running.first().cloned() {
                self.running.remove(0);
                self.started.remove(&(id.clone(), attempt));
                self.step(Input::Outcome {
                    id,
                    attempt,
                    outcome: Outcome::Succeeded,
                });
                continue;
            }
            let all_final = self.model.jobs.values().all(|j| j.state.is_final());
            if all_final && self.unsynced.is_empty() {
                break;
            }
            self.now = self
                .q
                .next_deadline()
                .unwrap_or(self.now + 1_000)
                .max(self.now + 1);
            self.step(Input::Tick);
        }
        self.q.check_invariants().unwrap();
        let stuck: Vec<_> = self
            .model
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final())
            .collect();
        assert!(stuck.is_empty(), "jobs never finished: {stuck:?}");
    }
}

fn run_case(workers: u32, prefetch: u32, records: RecordLimits, actions: Vec<Action>) {
    let mut h = Harness::new(config(workers, prefetch, records));
    for a in actions {
        h.run(a);
    }
    h.q.check_invariants().unwrap();
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
