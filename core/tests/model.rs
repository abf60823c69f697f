//! Property tests: random input sequences against an obviously correct
//! reference model, with random crashes.
//!
//! The model (`model/fold.rs`) is a naive fold of the durable records over
//! a `BTreeMap`. The core runs in the shared test driver
//! (`beaver_core::testing::Driver`), with the built-in pool serving queue
//! `default` and external workers leasing from queue `ext`. After every
//! step (`model/checks.rs`): the core's invariants hold (cheaply; in full
//! every 16 steps and at the end), every record round-trips through the
//! codec and fits the log, aborts only end expired or cancelled attempts
//! (the driver checks these), the core agrees with the model on every job,
//! replies and executions follow durability, nothing is handed out of a
//! paused queue, and at every crash the state recovered from the durable
//! log (with and without a snapshot, and the way production rebuilds)
//! equals what the core had applied.
//!
//! Charging: a pool attempt is counted at dispatch exactly when a worker
//! is free for it, and otherwise only once the driver reported it started;
//! a restart fails (counts) exactly the attempts whose start is logged and
//! gives back the others; a job given back that way is never dispatched
//! ahead of a free worker until its next counted attempt.
//!
//! Fencing: an external worker's complete, fail or heartbeat answered `Ok`
//! acted on the very attempt its lease handed out (the model knows each
//! attempt by its dispatch's LSN, which is the lease id): a completion
//! from a stale lease is never applied.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

#[path = "model/checks.rs"]
mod checks;
#[path = "model/fold.rs"]
mod fold;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use beaver_core::testing::{self, Driver};
use beaver_core::{
    Config, Core, Effect, Execution, JobId, JobSpec, JobState, Limits, Outcome, Payload, QueueName,
    QueuePause, Record, RequeueTarget, Retention, Retry, RetryPolicy, WaitOrder, codec,
};
use fold::{GIVE_UP, Model};
use proptest::prelude::*;

/// A job to enqueue: id (`j<n>`, or none), priority, delay, attempts,
/// and whether it goes to the external workers' queue.
type NewSpec = (Option<u8>, i32, u64, u32, bool);

#[derive(Debug, Clone)]
enum Action {
    Enqueue(Vec<NewSpec>),
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
    /// Up to `max` jobs of `ext` (and of an unknown queue), waiting this
    /// long if given.
    Lease(u8, Option<u16>),
    Heartbeat(u8, Option<u16>),
    Complete(u8),
    FailLease(u8, u8),
    ReturnLease(u8),
    Withdraw(u8),
    /// Pause `ext` or `default`: resume, for ever, or for a while.
    Pause(bool, u8),
    PurgeQueue(bool),
    Checkpoint,
}

fn new_spec() -> impl Strategy<Value = NewSpec> {
    let delay = prop_oneof![3 => Just(0u64), 1 => 0u64..3_000];
    let id = prop::option::weighted(0.8, 0u8..12);
    (id, 0i32..3, delay, 1u32..4, prop::bool::weighted(0.3))
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => prop::collection::vec(new_spec(), 1..4).prop_map(Action::Enqueue),
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
        2 => (1u8..4, prop::option::of(any::<u16>())).prop_map(|(m, w)| Action::Lease(m, w)),
        1 => (any::<u8>(), prop::option::of(any::<u16>())).prop_map(|(i, e)| Action::Heartbeat(i, e)),
        2 => any::<u8>().prop_map(Action::Complete),
        1 => (any::<u8>(), 0u8..3).prop_map(|(i, r)| Action::FailLease(i, r)),
        1 => any::<u8>().prop_map(Action::ReturnLease),
        1 => any::<u8>().prop_map(Action::Withdraw),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(e, u)| Action::Pause(e, u)),
        1 => any::<bool>().prop_map(Action::PurgeQueue),
        1 => Just(Action::Checkpoint),
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
        pool_queues: Some(vec![QueueName::default()]),
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
        #[cfg(feature = "mutants")]
        planted: planted(),
    }
}

/// The planted bug named by `BEAVER_MUTANT`, for checking that these
/// properties catch it (`cargo test -p beaver-core --features
/// testing,mutants --test model`).
#[cfg(feature = "mutants")]
fn planted() -> Option<beaver_core::mutants::Mutant> {
    let name = std::env::var("BEAVER_MUTANT").ok()?;
    beaver_core::mutants::Mutant::from_name(&name)
}

/// What a request in flight asked, to check its reply.
#[derive(Debug, Clone)]
enum Asked {
    Enqueue,
    Cancel(String),
    Lease,
    Heartbeat(u64),
    Complete(u64),
    Fail(u64),
    Pause,
    /// The LSN of its queue purge record.
    Purge(u64),
    Checkpoint,
}

struct Harness {
    /// The core with its log and workers; it checks every record's codec
    /// round trip and size, every abort, and the invariants every 16 steps.
    d: Driver,
    config: Config,
    model: Model,
    next_req: u64,
    /// Requests in flight.
    asked: BTreeMap<u64, Asked>,
    /// Leases ever granted: (lease id, job id, attempt).
    granted: Vec<(u64, String, u32)>,
    /// Lease requests that may be waiting for jobs.
    waiting: Vec<u64>,
    /// Pool attempts reported started since the last restart.
    reported: BTreeSet<(String, u32)>,
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
            granted: Vec::new(),
            waiting: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    /// A new request id, remembered with what it asks.
    fn ask(&mut self, asked: Asked) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.asked.insert(req, asked);
        req
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
        let fed = recover_fed_in_pieces(&self.config, &encoded, cut, &log);
        assert_eq!(
            fed.snapshot(),
            applied,
            "the snapshot fed in pieces restores the same state"
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
        self.restarted();
    }

    /// After a restart: nothing of the last life is owed, and the first
    /// step ends every interrupted attempt as the log says (see
    /// `checks::check_first_step`).
    fn restarted(&mut self) {
        self.asked.clear();
        self.waiting.clear();
        self.reported.clear();
        self.model.restart();
        let out = self.d.tick();
        self.check_first_step(&out);
        self.check(out);
    }

    fn run(&mut self, action: Action) {
        let out = match action {
            Action::Enqueue(jobs) => self.enqueue(jobs),
            Action::Sync(n) => return self.sync(n as usize % 4 + 1),
            Action::FailAppend(n) => return self.fail_append(n),
            Action::Finish(i, o) => {
                let Some(x) = pick(self.d.executions(), i) else {
                    return;
                };
                let outcome = match o {
                    0 => Outcome::Succeeded,
                    1 => Outcome::Failed(format!("boom{}", "!".repeat(150))),
                    2 => Outcome::TimedOut,
                    _ => Outcome::NotStarted,
                };
                self.d.outcome(x.id.as_str(), x.attempt, outcome)
            }
            Action::Start(i) => {
                let Some(x) = pick(self.d.executions(), i) else {
                    return;
                };
                self.reported.insert((x.id.to_string(), x.attempt));
                self.d.started(x.id.as_str(), x.attempt)
            }
            Action::Advance(ms) => {
                let now = self.d.now() + u64::from(ms) % 3_000;
                self.d.at(now).tick()
            }
            Action::ClockBack(ms) => {
                let saved = self.d.now();
                let out = self.d.at(saved.saturating_sub(u64::from(ms))).tick();
                self.d.at(saved);
                out
            }
            Action::Cancel(i) => {
                let req = self.ask(Asked::Cancel(format!("j{i}")));
                self.d.cancel(req, &format!("j{i}"))
            }
            Action::Requeue(target) => {
                let target = match target {
                    Some(i) => RequeueTarget::One(JobId::parse(&format!("j{i}")).unwrap()),
                    None => RequeueTarget::AllDead,
                };
                self.d.requeue(u64::MAX, target)
            }
            Action::DiskFull(b) => self.d.disk_full(b),
            Action::Crash(cut) => return self.crash(cut),
            other => self.run_external(other),
        };
        self.check(out);
    }

    fn enqueue(&mut self, jobs: Vec<NewSpec>) -> Vec<Effect> {
        let specs = jobs
            .into_iter()
            .map(|(id, priority, delay_ms, attempts, ext)| JobSpec {
                id: id.map(|i| JobId::parse(&format!("j{i}")).unwrap()),
                queue: ext.then(|| QueueName::parse("ext").unwrap()),
                payload: Payload::from_json(format!("{priority}").as_bytes()).unwrap(),
                priority,
                max_attempts: Some(attempts),
                timeout_ms: None,
                delay_ms,
            })
            .collect();
        let req = self.ask(Asked::Enqueue);
        self.d.enqueue(req, specs)
    }

    /// The actions of external workers and queue controls.
    fn run_external(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Lease(max, wait) => {
                let req = self.ask(Asked::Lease);
                self.waiting.push(req);
                let wait_ms = wait.map(|w| u64::from(w) % 3_000);
                let queues = ["ext", "nowhere"];
                // Some one-job requests wait in beanstalkd's order, beside
                // the first-come ones.
                let order = if max == 1 && wait.is_some_and(|w| w & 1 == 1) {
                    WaitOrder::Beanstalk { lives: vec![0, 0] }
                } else {
                    WaitOrder::FirstCome
                };
                self.d
                    .lease_in_order(req, &queues, u32::from(max), wait_ms, "w", order)
            }
            Action::Heartbeat(i, extend) => {
                let lease = self.pick_lease(i);
                let req = self.ask(Asked::Heartbeat(lease));
                let extend_ms = extend.map(|e| 1 + u64::from(e) % 2_000);
                self.d.heartbeat(req, lease, extend_ms)
            }
            Action::Complete(i) => {
                let lease = self.pick_lease(i);
                let req = self.ask(Asked::Complete(lease));
                self.d.complete(req, lease)
            }
            Action::FailLease(i, r) => {
                let lease = self.pick_lease(i);
                let req = self.ask(Asked::Fail(lease));
                let (error, retry) = match r {
                    0 => ("worker failed", Retry::Policy),
                    1 => ("try again soon", Retry::InMs(50)),
                    _ => (GIVE_UP, Retry::GiveUp),
                };
                self.d.fail(req, lease, error, retry)
            }
            Action::ReturnLease(i) => {
                let lease = self.pick_lease(i);
                self.d.return_leases(&[lease])
            }
            Action::Withdraw(i) => match self.waiting.len() {
                0 => Vec::new(),
                n => {
                    let req = self.waiting.remove(i as usize % n);
                    self.asked.remove(&req);
                    self.d.withdraw(req)
                }
            },
            other => self.run_control(other),
        }
    }

    fn run_control(&mut self, action: Action) -> Vec<Effect> {
        let now = self.d.now();
        let queue = |ext| if ext { "ext" } else { "default" };
        match action {
            Action::Pause(ext, n) => {
                let pause = match n % 4 {
                    0 => QueuePause::Resume,
                    1 => QueuePause::UntilResumed,
                    _ => QueuePause::ForMs(u64::from(n) * 20),
                };
                let req = self.ask(Asked::Pause);
                let out = self.d.pause_queue(req, queue(ext), pause);
                if let QueuePause::ForMs(ms) = pause {
                    Self::check_pause_end(&out, now, ms);
                }
                out
            }
            Action::PurgeQueue(ext) => {
                let lsn = self.d.core().next_lsn();
                let req = self.ask(Asked::Purge(lsn));
                self.d.purge_queue(req, queue(ext))
            }
            Action::Checkpoint => {
                let req = self.ask(Asked::Checkpoint);
                self.d.checkpoint(req)
            }
            other => unreachable!("not a control: {other:?}"),
        }
    }

    /// A lease granted before (maybe long over), or one never granted.
    fn pick_lease(&self, i: u8) -> u64 {
        match self.granted.len() {
            n if n > 0 && i % 8 != 7 => self.granted[i as usize % n].0,
            _ => 1_000_000 + u64::from(i),
        }
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

    /// After the script: resume every queue, sync everything, run the
    /// pool's attempts, lease and complete the external jobs, and let time
    /// pass; every job must reach a final state (liveness).
    fn drain(&mut self) {
        let out = self.d.disk_full(false);
        self.check(out);
        for queue in ["default", "ext"] {
            let req = self.ask(Asked::Pause);
            let out = self.d.pause_queue(req, queue, QueuePause::Resume);
            self.check(out);
        }
        for _ in 0..600 {
            self.sync(usize::MAX);
            if self.drain_once() {
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

    /// One unit of the drain's work: a pool attempt succeeds, or a current
    /// lease completes, or the external jobs ready are leased; `false` if
    /// there was none.
    fn drain_once(&mut self) -> bool {
        if let Some(x) = self.d.executions().first().cloned() {
            let out = self.d.outcome(x.id.as_str(), x.attempt, Outcome::Succeeded);
            self.check(out);
            return true;
        }
        let current = self
            .d
            .core()
            .list_leases()
            .leases
            .first()
            .map(|l| l.lease_id);
        if let Some(lease) = current {
            let req = self.ask(Asked::Complete(lease));
            let out = self.d.complete(req, lease);
            self.check(out);
            return true;
        }
        let now = self.d.now();
        let ready = self
            .model
            .jobs
            .values()
            .any(|j| j.queue == "ext" && j.state == JobState::Pending && j.run_at <= now);
        if ready && self.d.unsynced().is_empty() {
            let req = self.ask(Asked::Lease);
            let out = self.d.lease(req, &["ext"], 3, None, "drain");
            let leased = out.iter().any(|e| matches!(e, Effect::Append(_)));
            self.check(out);
            return leased;
        }
        false
    }
}

/// Rebuilds from `encoded` fed in pieces (as a snapshot build reads its
/// file) of 1 to 61 bytes, drawn from `cut`, so that every kind of part
/// is cut somewhere; then the records.
fn recover_fed_in_pieces(config: &Config, encoded: &[u8], cut: u8, log: &[Record]) -> Core {
    let len = if cut % 2 == 0 { encoded.len() } else { 0 };
    let mut feed = Core::recover_in_pieces(config.clone(), len);
    let mut size = 1 + cut as usize % 13;
    let mut rest = encoded;
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(size.min(rest.len()));
        feed.feed(piece).unwrap();
        rest = after;
        size = 1 + (size * 7 + cut as usize) % 61;
    }
    let mut core = feed.finish().unwrap();
    for r in log {
        core.apply_owned(r.clone()).unwrap();
    }
    core.finish_rebuild();
    core
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
    assert_eq!(
        codec::queue_snapshot_len(core),
        encoded.len() as u64,
        "the snapshot's length computed without encoding"
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
