//! What the harness observes of one run, and the oracles checked as it goes.
//!
//! Shared (behind one mutex) by the harness, the tapped disk, the observer
//! and the executor. It lives outside the simulated node, so it survives
//! kills and restarts, as the disk does.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use beaver_core::{JobState, Record};
use beaver_runtime::{Observer, RecoveryReport};
use tokio::time::Instant;

use crate::model::Model;

/// Coverage marks: how often each fault class and recovery branch was hit.
pub type Marks = BTreeMap<&'static str, u64>;

/// The observations of one run.
#[derive(Debug)]
pub struct World {
    /// When the run began (simulated).
    pub began: Instant,
    /// Readable trace lines (also hashed for the determinism check).
    pub trace: Vec<String>,
    /// Coverage marks.
    pub marks: Marks,
    /// The first broken oracle, if any.
    pub violation: Option<String>,
    /// Every WAL record written, the latest per LSN.
    pub shadow: BTreeMap<u64, Record>,
    /// The shadow log folded up to [`World::durable`].
    pub model: Model,
    /// The highest LSN reported durable (by any incarnation).
    pub durable: u64,
    /// (job, generation, attempt) executions seen.
    pub executions: BTreeMap<(String, u32, u32), u32>,
    /// Every id the workload sent.
    pub submitted: BTreeSet<String>,
    /// Ids an enqueue acknowledged.
    pub acked: BTreeSet<String>,
    /// Ids whose cancellation was acknowledged, with the job's generation
    /// then (a purged id may be enqueued again as a new job).
    pub cancel_acked: BTreeMap<String, u32>,
    /// WAL files written since their last sync (for "crash mid group commit").
    pub dirty_wal: BTreeSet<String>,
    /// Segments whose header was written and not yet synced ("mid rotation").
    pub fresh_segments: BTreeSet<String>,
    /// Print trace lines as they happen (`BEAVER_SIM_TRACE=live`).
    pub live: bool,
    /// Snapshots recovery renamed aside so far.
    pub broken_snapshots: u64,
    /// Per-segment salts, learnt from the headers written.
    pub salts: BTreeMap<String, u64>,
    /// What the external-worker oracles remember.
    pub ext: crate::external::ExtWorld,
    /// Engines started so far (each start hands clients a new handle).
    pub engine_starts: u64,
    /// What the beanstalk-style connections' oracle remembers.
    pub sessions: crate::sessions::SessionWorld,
}

impl World {
    /// A new world for a run starting now.
    pub fn shared() -> Shared {
        Shared(Arc::new(Mutex::new(World {
            began: Instant::now(),
            trace: Vec::new(),
            marks: Marks::new(),
            violation: None,
            shadow: BTreeMap::new(),
            model: Model::default(),
            durable: 0,
            executions: BTreeMap::new(),
            submitted: BTreeSet::new(),
            acked: BTreeSet::new(),
            cancel_acked: BTreeMap::new(),
            dirty_wal: BTreeSet::new(),
            fresh_segments: BTreeSet::new(),
            broken_snapshots: 0,
            live: std::env::var("BEAVER_SIM_TRACE").is_ok_and(|v| v == "live"),
            salts: BTreeMap::new(),
            ext: crate::external::ExtWorld::default(),
            engine_starts: 0,
            sessions: crate::sessions::SessionWorld::default(),
        })))
    }

    /// Adds a trace line stamped with the simulated time.
    pub fn log(&mut self, line: impl Into<String>) {
        let ms = self.began.elapsed().as_millis();
        let line = format!("{ms:>7} ms  {}", line.into());
        if self.live {
            eprintln!("{line}");
        }
        self.trace.push(line);
    }

    /// Counts a coverage mark.
    pub fn mark(&mut self, name: &'static str) {
        *self.marks.entry(name).or_default() += 1;
    }

    /// Records a broken oracle (the first one wins).
    pub fn violate(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.log(format!("VIOLATION: {what}"));
        self.violation.get_or_insert(what);
    }

    /// A start's recovery ended with `report`. Checks that nothing
    /// reported durable was lost, forgets the records written after the
    /// recovered end (they never were durable), folds the model to it and
    /// checks the attempts recovery found in flight against the log.
    ///
    /// Called by the engine before its tasks run ([`Observer::recovered`]),
    /// so before the new incarnation writes or reports anything. Done by
    /// the harness once the start had returned, it raced with the engine's
    /// first commits: with another task order (seed 73175), the new
    /// incarnation's LSNs 277-288 were reported durable first, then counted
    /// as lost and forgotten.
    pub fn recovery_ended(&mut self, report: &RecoveryReport) {
        let last = report.last_lsn;
        self.log(format!(
            "recovered: last LSN {last}, snapshot {:?}, {} replayed, {} torn bytes",
            report.snapshot_lsn, report.replayed_records, report.torn_bytes
        ));
        if last < self.durable {
            let d = self.durable;
            self.violate(format!(
                "recovery lost durable records: it ends at LSN {last} but LSN {d} was reported durable"
            ));
            return;
        }
        self.shadow.retain(|&l, _| l <= last);
        self.durable = last;
        self.fold_to(last);
        if report.torn_bytes > 0 {
            self.mark("recovery: torn tail discarded");
        }
        if report.snapshot_lsn.is_some() {
            self.mark("recovery: from a snapshot");
        }
        if self
            .model
            .jobs
            .values()
            .any(|j| j.state == JobState::InFlight)
        {
            self.mark("recovery: attempts interrupted by the crash");
        }
        let released = self.model.recovered();
        if released > 0 {
            self.mark("recovery: attempts given back uncounted (never started)");
        }
        self.forget_suspect_executions();
        let found = report.interrupted;
        let charged = self.model.counts().in_flight - released;
        if (found.charged, found.released) != (charged, released) {
            self.violate(format!(
                "recovery found {found:?} in flight; the log says {charged} started and {released} never did"
            ));
        }
    }

    /// An attempt given back uncounted may run again under its number (its
    /// start never became durable); any other attempt still runs at most
    /// once.
    fn forget_suspect_executions(&mut self) {
        let again: Vec<(String, u32, u32)> = self
            .model
            .suspect
            .iter()
            .filter_map(|id| {
                let attempt = self.model.jobs.get(id)?.attempt;
                let generation = self.model.generations.get(id).copied().unwrap_or(0);
                Some((id.clone(), generation, attempt))
            })
            .collect();
        for key in again {
            self.executions.remove(&key);
        }
    }

    /// Folds the shadow log into the model up to `upto`.
    pub fn fold_to(&mut self, upto: u64) {
        while self.model.applied < upto && self.violation.is_none() {
            let next = self.model.applied + 1;
            let Some(r) = self.shadow.get(&next).cloned() else {
                self.violate(format!(
                    "LSN {next} is durable but no record with that LSN was ever written"
                ));
                return;
            };
            if let Some(id) = enqueued_unknown(&r, &self.submitted) {
                self.violate(format!(
                    "LSN {next} enqueues job {id}, which no client ever submitted"
                ));
                return;
            }
            match self.model.apply(&r) {
                Ok(()) => crate::external::folded(self, &r),
                Err(e) => self.violate(format!("the durable log breaks a rule: {e}")),
            }
        }
    }

    /// The hash of the trace (the determinism check compares these).
    pub fn trace_hash(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.trace.hash(&mut h);
        h.finish()
    }
}

fn enqueued_unknown(r: &Record, submitted: &BTreeSet<String>) -> Option<String> {
    match &r.op {
        beaver_core::Op::Enqueue { jobs } => jobs
            .iter()
            .find(|j| !submitted.contains(j.id.as_str()))
            .map(|j| j.id.to_string()),
        _ => None,
    }
}

/// The world, shared.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<World>>);

impl Shared {
    /// Locks it (a panic elsewhere does not poison the observations).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The engine's observer: learns each durable LSN and folds the model.
#[derive(Debug, Clone)]
pub struct SimObserver(pub Shared);

impl Observer for SimObserver {
    fn durable(&self, upto: u64) {
        let mut w = self.0.lock();
        if upto > w.durable {
            w.durable = upto;
        }
        w.fold_to(upto);
    }

    fn recovered(&self, _secs: f64, report: &RecoveryReport) {
        self.0.lock().recovery_ended(report);
    }

    fn lone_commit(&self) {
        self.0
            .lock()
            .mark("wal: a lone client's commit made by the core task");
    }

    fn snapshot_written(&self, lsn: u64, _bytes: u64, _secs: f64) {
        let mut w = self.0.lock();
        w.mark("snapshot: written");
        w.log(format!("snapshot written at LSN {lsn}"));
    }

    /// A build folds only durable records, and the harness corrupts the
    /// log only while the engine is down (the next recovery must refuse
    /// it): a build that finds the log corrupt misread a log being
    /// appended to. A snapshot file whose checksum held decodes, unless
    /// the build misread it.
    fn snapshot_failed(&self, error: &str, input_corrupt: bool) {
        let mut w = self.0.lock();
        w.log(format!("snapshot failed: {error}"));
        if input_corrupt {
            w.violate(format!(
                "a snapshot build found what it folds corrupt, though every record was durable and the snapshot validated: {error}"
            ));
        } else {
            w.mark("snapshot: a build or save failed");
        }
    }

    fn core_invariants_broken(&self, what: &str) {
        self.0
            .lock()
            .violate(format!("the core's invariants are broken: {what}"));
    }
}
