//! One seed: start the engine on a node, drive it, inject faults, crash and
//! restart it, then let it converge without faults and check the end state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beaver_core::{
    JobId, JobSpec, JobState, JobView, Payload, QueueName, Rejection, RequeueTarget, Retention,
};
use beaver_io::{DetRng, Disk, LogEnd, SimDisk, SimDiskConfig, inspect};
use beaver_runtime::{Client, EngineError, SystemClock};
use madsim::runtime::{Handle, NodeHandle};
use tokio::sync::{mpsc, oneshot};

use crate::executor::{Crasher, SimExecutor};
use crate::external::{ExtRun, server_ip};
use crate::model::MJob;
use crate::plan::{FaultKind, Plan};
use crate::sessions::SessionRun;
use crate::tap::TapDisk;
use crate::world::{Marks, Shared, SimObserver, World};

mod squeeze;

/// The end check's reads of one job until the engine and the model agree
/// (see `Sim::engine_and_model`), and the wait between them: a core turn
/// is well within it.
const AGREE_TRIES: u32 = 10;
const AGREE_WAIT: Duration = Duration::from_millis(10);

/// Whether the engine's view of a job and the model's agree: both absent,
/// or the same state at the same attempt.
fn agree(got: Option<&JobView>, model: Option<&MJob>) -> bool {
    match (got, model) {
        (Some(g), Some(m)) => g.state == m.state && g.attempt == m.attempt,
        (None, None) => true,
        _ => false,
    }
}

/// What one seed's run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// The first broken oracle.
    pub violation: Option<String>,
    /// Coverage marks.
    pub marks: Marks,
    /// Hash of the trace.
    pub trace_hash: u64,
    /// The trace, if asked for.
    pub trace: Option<Vec<String>>,
}

/// Runs `seed` in a fresh madsim runtime on the current thread (call it on
/// a fresh thread: std `HashMap` order is seeded per runtime).
pub fn run_seed(seed: u64, keep_trace: bool) -> RunResult {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(async move {
        let world = World::shared();
        let plan = Plan::new(seed);
        let sim = Sim::new(plan, world.clone());
        sim.run().await;
        let w = world.lock();
        RunResult {
            seed,
            violation: w.violation.clone(),
            marks: w.marks.clone(),
            trace_hash: w.trace_hash(),
            trace: keep_trace.then(|| w.trace.clone()),
        }
    })
}

/// The engine slot clients take their handle from (None while down).
pub(crate) type Slot = Arc<Mutex<Option<Client>>>;

pub(crate) fn slot_get(slot: &Slot) -> Option<Client> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn slot_set(slot: &Slot, c: Option<Client>) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = c;
}

/// What a node reports to the harness.
enum NodeEvent {
    /// The engine of incarnation `n` stopped (cleanly or by a fail-stop).
    Stopped(u32, Result<(), String>),
}

/// A pending corruption the next recovery must refuse.
#[derive(Debug, Clone)]
enum Corruption {
    Flip {
        path: PathBuf,
        offset: u64,
        bit: u8,
    },
    Lost {
        path: PathBuf,
        offset: u64,
        bytes: Vec<u8>,
    },
}

struct Sim {
    plan: Plan,
    world: Shared,
    disk: SimDisk,
    rng: DetRng,
    slot: Slot,
    node: Option<NodeHandle>,
    incarnation: u32,
    events_tx: mpsc::UnboundedSender<NodeEvent>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    /// Incarnations the crasher job killed (see `executor`).
    died_tx: mpsc::UnboundedSender<u32>,
    died: mpsc::UnboundedReceiver<u32>,
    /// How many times the crasher job killed the server.
    crasher_kills: u64,
    /// The engine of the current incarnation has stopped.
    stopped: bool,
    /// EIOs injected when the current incarnation started.
    eio_at_start: u64,
    corruption: Option<Corruption>,
    enospc_until: Option<tokio::time::Instant>,
    /// The external workers, while the chaos task does not hold them.
    ext: Option<ExtRun>,
    /// The convergence phase's squeezed disk, if the plan has one.
    squeezed: Option<squeeze::Squeezed>,
    /// The beanstalk-style connections, if the plan has them.
    sessions: Option<SessionRun>,
}

impl Sim {
    fn new(plan: Plan, world: Shared) -> Sim {
        let disk = SimDisk::new(plan.seed ^ 0xd15c, plan.faults.disk.clone());
        let (events_tx, events) = mpsc::unbounded_channel();
        let (died_tx, died) = mpsc::unbounded_channel();
        Sim {
            died_tx,
            died,
            crasher_kills: 0,
            rng: DetRng::new(plan.seed ^ 0xfa17),
            plan,
            world,
            disk,
            slot: Arc::new(Mutex::new(None)),
            node: None,
            incarnation: 0,
            events_tx,
            events,
            stopped: true,
            eio_at_start: 0,
            corruption: None,
            enospc_until: None,
            ext: None,
            squeezed: None,
            sessions: None,
        }
    }

    fn log(&self, line: impl Into<String>) {
        self.world.lock().log(line);
    }

    fn mark(&self, name: &'static str) {
        self.world.lock().mark(name);
    }

    fn violated(&self) -> bool {
        self.world.lock().violation.is_some()
    }

    fn violate(&self, what: impl Into<String>) {
        self.world.lock().violate(what);
    }

    async fn run(mut self) {
        let p = &self.plan;
        self.log(format!(
            "plan: seed {} workers {} prefetch {} attempts {} timeout {} ms segment {} B snapshot every {} B / {} ms; {} clients x {} ops; {} fault rounds, weights {:?}; disk {:?}",
            p.seed,
            p.engine.queue.workers,
            p.engine.queue.prefetch,
            p.engine.queue.default_max_attempts,
            p.engine.queue.default_timeout_ms,
            p.engine.segment_bytes,
            p.engine.snapshot_wal_bytes,
            p.engine.snapshot_interval_ms,
            p.workload.clients,
            p.workload.ops,
            p.faults.rounds,
            p.faults.weights,
            p.faults.disk,
        ));
        if !p.faults.disk.read_latency_mean.is_zero() || !p.faults.disk.sync_latency_mean.is_zero()
        {
            self.mark("fault: slow disk");
        }
        self.restart(false).await;
        let mut clients = Vec::new();
        for c in 0..self.plan.workload.clients {
            let w = WorkloadClient {
                client: c,
                plan: self.plan.clone(),
                world: self.world.clone(),
                slot: self.slot.clone(),
                rng: DetRng::new(self.plan.seed ^ (0xc11e_0000 + u64::from(c))),
            };
            clients.push(tokio::spawn(w.run()));
        }
        self.sessions = self.plan.sessions.clone().map(|p| {
            self.log(format!("plan: beanstalk-style connections {p:?}"));
            self.mark("bs: a seed with connections");
            // The default retention (a week, 100,000 jobs) never purges in a run.
            let purges_dead = self.plan.engine.queue.retention != Retention::default();
            SessionRun::start(
                self.plan.seed,
                p,
                self.world.clone(),
                self.slot.clone(),
                purges_dead,
            )
        });
        let done = Arc::new(AtomicBool::new(false));
        let chaos = self.plan.external.clone().map(|p| {
            let ext = ExtRun::start(self.plan.seed, p, self.world.clone());
            tokio::spawn(ext.chaos(self.slot.clone(), done.clone()))
        });
        self.faults().await;
        for c in clients {
            let _ = c.await;
        }
        done.store(true, Ordering::Relaxed);
        if let Some(chaos) = chaos {
            self.ext = chaos.await.ok();
        }
        if !self.violated() {
            self.converge().await;
        }
        self.stop_sessions().await;
        if let Some(ext) = self.ext.as_mut() {
            ext.stop();
        }
        if let Some(n) = self.node.take() {
            Handle::current().kill(n.id());
        }
        if self.disk.stats().reads_split > 0 {
            self.mark("fault: reads split at a page boundary (racing writes)");
        }
    }

    /// The fault rounds, while the clients work.
    async fn faults(&mut self) {
        let rounds = self.plan.faults.rounds;
        let mut round = 0;
        while round < rounds && !self.violated() {
            let gap = self.rng.exponential(self.plan.faults.gap_ms_mean);
            let sleep = tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64));
            tokio::select! {
                biased;
                Some(ev) = self.events.recv() => {
                    self.on_event(ev).await;
                    continue;
                }
                Some(n) = self.died.recv() => {
                    self.on_crasher(n).await;
                    continue;
                }
                _ = sleep => {}
            }
            if let Some(t) = self.enospc_until {
                if tokio::time::Instant::now() >= t {
                    self.disk.set_capacity(u64::MAX);
                    self.enospc_until = None;
                    self.log("fault: disk space freed");
                }
            }
            round += 1;
            let Some(kind) = self.plan.faults.pick(&mut self.rng) else {
                continue;
            };
            match kind {
                FaultKind::Kill => {
                    self.crash(false).await;
                    self.restart(true).await;
                }
                FaultKind::PowerLoss => {
                    self.crash(true).await;
                    self.restart(true).await;
                }
                FaultKind::EioBurst => {
                    let n = 1 + self.rng.below(2) as u32;
                    self.log(format!("fault: the next {n} fsyncs fail with EIO"));
                    self.disk.fail_next_syncs(n);
                }
                FaultKind::DiskFull => {
                    let used = self.disk.used_bytes();
                    let room = self.rng.below(3 * self.plan.engine.segment_bytes);
                    self.log(format!("fault: disk full at {} bytes", used + room));
                    self.mark("fault: ENOSPC episode");
                    self.disk.set_capacity(used + room);
                    let ms = 50 + self.rng.below(1_000);
                    self.enospc_until =
                        Some(tokio::time::Instant::now() + Duration::from_millis(ms));
                }
                FaultKind::WalCorruption => {
                    let power = self.rng.chance(0.5);
                    self.crash(power).await;
                    self.corrupt_wal().await;
                    self.restart(true).await;
                }
                FaultKind::SnapshotRot => {
                    let power = self.rng.chance(0.5);
                    self.crash(power).await;
                    self.rot_snapshot().await;
                    self.restart(true).await;
                }
            }
        }
        // Drain what happened during the last round.
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev).await;
        }
        while let Ok(n) = self.died.try_recv() {
            self.on_crasher(n).await;
        }
    }

    /// The crasher job killed incarnation `n` as an attempt of it started:
    /// the harness crashes the disk with it and restarts. The job must be
    /// counted at least every second time (more often with other restarts
    /// in between, which may forget that it is suspect), so it ends dead
    /// instead of killing the server for ever.
    async fn on_crasher(&mut self, n: u32) {
        if n != self.incarnation || self.violated() {
            return;
        }
        self.crasher_kills += 1;
        self.mark("fault: a job killed the server as it started");
        let power = self.rng.chance(0.3);
        self.crash(power).await;
        self.restart(true).await;
        let Some(id) = self.plan.workload.crasher.clone() else {
            return;
        };
        let mut w = self.world.lock();
        let Some(max_attempts) = w.model.jobs.get(&id).map(|j| j.max_attempts) else {
            return;
        };
        let generations = u64::from(w.model.generations.get(&id).copied().unwrap_or(1));
        let others = u64::from(self.incarnation) - 1 - self.crasher_kills;
        let bound = (2 * u64::from(max_attempts) + 1) * generations + others;
        if self.crasher_kills > bound {
            w.violate(format!(
                "job {id} killed the server {} times: more than {bound} ({} attempts, {generations} generations, {others} other restarts), so its attempts were not counted at least every second crash",
                self.crasher_kills, max_attempts
            ));
        }
    }

    async fn on_event(&mut self, ev: NodeEvent) {
        let NodeEvent::Stopped(n, result) = ev;
        if n != self.incarnation {
            return; // an older incarnation, already replaced
        }
        self.stopped = true;
        slot_set(&self.slot, None);
        match result {
            Ok(()) => self.log("engine stopped cleanly"),
            Err(e) => {
                self.log(format!("engine fail-stop: {e}"));
                if self.disk.stats().eio_injected > self.eio_at_start {
                    self.mark("fail-stop: after fsync EIO");
                    self.crash(false).await;
                    self.restart(true).await;
                } else {
                    self.violate(format!("unexpected fail-stop: {e}"));
                }
            }
        }
    }

    /// Kills the node at this instant; the disk sees a process crash or a power loss.
    async fn crash(&mut self, power: bool) {
        if let Some(n) = self.node.take() {
            Handle::current().kill(n.id());
        }
        slot_set(&self.slot, None);
        self.stopped = true;
        {
            let mut w = self.world.lock();
            if !w.dirty_wal.is_empty() {
                w.mark("crash: mid group commit (unsynced WAL bytes)");
            }
            if !w.fresh_segments.is_empty() {
                w.mark("crash: mid segment rotation (new segment unsynced)");
            }
            w.dirty_wal.clear();
            w.fresh_segments.clear();
        }
        let snap_dir = self.plan.engine.snapshot_dir();
        if let Ok(names) = self.disk.list(&snap_dir).await {
            if names.iter().any(|n| n.ends_with(".tmp")) {
                self.mark("crash: mid snapshot write");
            }
        }
        self.log_wal("before the crash").await;
        let before = self.disk.stats();
        if power {
            self.disk.power_loss();
            let after = self.disk.stats();
            let mut w = self.world.lock();
            w.log("fault: POWER LOSS");
            w.mark("fault: power loss");
            let d = |a: u64, b: u64| a > b;
            if d(after.files_torn_prefix, before.files_torn_prefix) {
                w.mark("fault: power loss kept a torn prefix");
            }
            if d(after.files_reordered, before.files_reordered) {
                w.mark("fault: power loss kept reordered sectors");
            }
            if d(after.files_unsynced_dropped, before.files_unsynced_dropped) {
                w.mark("fault: power loss dropped unsynced data");
            }
            if d(after.torn_sectors_garbage, before.torn_sectors_garbage) {
                w.mark("fault: torn sector with garbage");
            }
            if d(after.torn_sectors_zeroed, before.torn_sectors_zeroed) {
                w.mark("fault: torn sector with zeros");
            }
            if d(after.dir_entries_lost, before.dir_entries_lost) {
                w.mark("fault: unsynced directory entry lost");
            }
        } else {
            self.disk.crash_process();
            let mut w = self.world.lock();
            w.log("fault: PROCESS KILL");
            w.mark("fault: process kill");
        }
    }

    /// With `BEAVER_SIM_TRACE`, logs what the WAL holds (read-only).
    async fn log_wal(&self, when: &str) {
        if std::env::var_os("BEAVER_SIM_TRACE").is_none() {
            return;
        }
        let dir = self.plan.engine.wal_dir();
        // Without latency or split reads the read takes no simulated time
        // and draws no random number, so tracing does not change the run.
        let cfg = self.disk.config();
        self.disk.set_config(SimDiskConfig {
            read_latency_mean: Duration::ZERO,
            split_reads: false,
            ..cfg.clone()
        });
        let ins = inspect(&self.disk, &dir, 0).await;
        self.disk.set_config(cfg);
        if let Ok(ins) = ins {
            let mut w = self.world.lock();
            w.log(format!(
                "wal {when}: LSNs {:?}..={:?}, watermark {}, end {:?}",
                ins.first_lsn, ins.last_lsn, ins.watermark, ins.end
            ));
            for s in &ins.segments {
                let b: Vec<String> = s
                    .batches
                    .iter()
                    .map(|b| {
                        format!(
                            "{}@{}:{}-{} w{}{}",
                            b.len,
                            b.offset,
                            b.first_lsn,
                            b.last_lsn,
                            b.watermark,
                            if b.in_log { "" } else { " (beyond)" }
                        )
                    })
                    .collect();
                w.log(format!(
                    "   {} size {} header {:?}/{:?}: {}",
                    s.path.display(),
                    s.size,
                    s.header_first_lsn,
                    s.header_problem,
                    b.join(", ")
                ));
            }
        }
    }

    /// Starts a new incarnation and waits for its recovery; handles the
    /// expected start failures (EIO, injected corruption) by restarting.
    async fn restart(&mut self, after_crash: bool) {
        // Recovery fdatasyncs every segment it replays, so with a random
        // fsync EIO rate p and N segments a start fails by design with
        // probability 1 - (1 - p)^N: seed 11305 (p = 0.01, 4 KiB segments,
        // no snapshot yet, ~65 fsyncs per recovery) failed 8 starts in a
        // row, each an expected fail-stop. So after `ATTEMPTS` the disk
        // stops injecting EIO and the harness stops killing recoveries (the
        // faults stop, as in the convergence phase), and the engine must
        // then start within `QUIET_ATTEMPTS` (one may still refuse injected
        // corruption, which is then repaired). The rate comes back once it runs.
        const ATTEMPTS: u32 = 8;
        const QUIET_ATTEMPTS: u32 = 2;
        let mut paused_eio = None;
        for attempt in 0..ATTEMPTS + QUIET_ATTEMPTS {
            if self.violated() {
                return;
            }
            if attempt == ATTEMPTS {
                let mut cfg = self.disk.config();
                self.log(format!(
                    "fault: random fsync EIO ({}) and kills paused: {ATTEMPTS} starts failed",
                    cfg.eio_probability
                ));
                paused_eio = Some(cfg.eio_probability);
                cfg.eio_probability = 0.0;
                self.disk.set_config(cfg);
                self.disk.fail_next_syncs(0);
            }
            if self.enospc_until.take().is_some() {
                self.disk.set_capacity(u64::MAX);
            }
            self.incarnation += 1;
            let n = self.incarnation;
            self.eio_at_start = self.disk.stats().eio_injected;
            let kill_early = after_crash
                && self.rng.chance(self.plan.faults.kill_in_recovery)
                && attempt < ATTEMPTS;
            let kill_after = Duration::from_micros(self.rng.below(3_000));
            let (tx, rx) = oneshot::channel();
            let handle = Handle::current();
            let mut node = handle.create_node().name(format!("beaver-{n}"));
            if self.plan.external.is_some() {
                node = node.ip(server_ip(n));
            }
            let node = node.build();
            let shim = self
                .plan
                .external
                .as_ref()
                .map(|_| (self.slot.clone(), self.world.clone(), server_ip(n)));
            #[cfg_attr(not(feature = "mutants"), allow(unused_mut))]
            let mut cfg = self.plan.engine.clone();
            // The node's configuration names the planted bug (if any).
            #[cfg(feature = "mutants")]
            {
                cfg.queue.planted = crate::suite::active_mutant();
            }
            let disk = TapDisk {
                inner: self.disk.clone(),
                world: self.world.clone(),
                #[cfg(feature = "mutants")]
                planted: crate::suite::active_mutant(),
            };
            let crasher = self.plan.workload.crasher.clone().map(|id| Crasher {
                id,
                node: node.id(),
                died: self.died_tx.clone(),
                incarnation: n,
            });
            let exec = SimExecutor {
                world: self.world.clone(),
                seed: self.plan.seed,
                outcomes: self.plan.workload.outcomes,
                crasher,
            };
            let observer = SimObserver(self.world.clone());
            let salt = self.rng.next_u64();
            let events = self.events_tx.clone();
            node.spawn(async move {
                match beaver_runtime::start(cfg, disk, exec, SystemClock::new(), observer, salt)
                    .await
                {
                    Ok(engine) => {
                        if let Some((slot, world, ip)) = shim {
                            tokio::spawn(crate::external::serve(slot, world, ip));
                        }
                        let _ = tx.send(Ok(engine.client));
                        let r = engine.handle.wait().await.map_err(|e| e.to_string());
                        let _ = events.send(NodeEvent::Stopped(n, r));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            self.node = Some(node);
            self.log_wal("at start").await;
            self.log(format!("start incarnation {n}"));
            let started = if kill_early {
                tokio::select! {
                    biased;
                    r = rx => Some(r),
                    _ = tokio::time::sleep(kill_after) => None,
                }
            } else {
                Some(rx.await)
            };
            let Some(started) = started else {
                self.mark("crash: during recovery");
                // With corruption pending, the batch whose watermark vouches
                // for it may sit unsynced: a power loss could erase the only
                // evidence, making the damage a torn tail (not injectable).
                let power = self.rng.chance(0.3) && self.corruption.is_none();
                self.crash(power).await;
                continue;
            };
            match started {
                Ok(Ok(client)) => {
                    if let Some(p) = paused_eio {
                        let mut cfg = self.disk.config();
                        cfg.eio_probability = p;
                        self.disk.set_config(cfg);
                        self.log("fault: random fsync EIO resumes");
                    }
                    self.recovered(&client).await;
                    self.world.lock().engine_starts += 1;
                    slot_set(&self.slot, Some(client));
                    self.stopped = false;
                    return;
                }
                Ok(Err(e)) => {
                    if !self.start_failed(e).await {
                        return;
                    }
                }
                Err(_) => {
                    self.violate("the node died during start without a result");
                    return;
                }
            }
        }
        self.violate(format!(
            "the engine did not start after {} attempts (the last {QUIET_ATTEMPTS} without random EIO or kills)",
            ATTEMPTS + QUIET_ATTEMPTS
        ));
    }

    /// An expected start failure: repair or crash, then the caller retries.
    /// Returns false (and records a violation) for an unexpected one.
    async fn start_failed(&mut self, e: EngineError) -> bool {
        let text = e.to_string();
        self.log(format!("start failed: {text}"));
        let corrupt = matches!(&e, EngineError::Storage(s) if s.is_corruption());
        if corrupt && self.corruption.is_some() {
            self.mark("recovery: refused corrupt vouched bytes (fail-stop)");
            self.repair().await;
            self.crash(false).await;
            return true;
        }
        if self.disk.stats().eio_injected > self.eio_at_start {
            self.mark("recovery: fsync EIO during recovery (fail-stop)");
            self.crash(false).await;
            return true;
        }
        self.violate(format!("unexpected start failure: {text}"));
        false
    }

    /// After a start: the harness's own recovery check, the snapshots
    /// recovery set aside, the engine's status against the model (what
    /// recovery found was checked as it ended, by [`World::recovery_ended`]).
    async fn recovered(&mut self, client: &Client) {
        if !self.check_recovery() {
            return;
        }
        let snap_dir = self.plan.engine.snapshot_dir();
        if let Ok(names) = self.disk.list(&snap_dir).await {
            let broken = names.iter().filter(|n| n.ends_with(".broken")).count() as u64;
            let mut w = self.world.lock();
            if broken > w.broken_snapshots {
                w.broken_snapshots = broken;
                w.mark("recovery: snapshot fallback (.broken)");
            }
        }
        self.compare_status(client, true).await;
    }

    /// The synchronous part of [`Sim::recovered`]; false on a violation.
    /// What recovery found was checked against the model as it ended, by
    /// [`World::recovery_ended`]; what is left is the harness's own state.
    fn check_recovery(&mut self) -> bool {
        let pending = self.corruption.take();
        let mut w = self.world.lock();
        if let Some(c) = pending {
            w.violate(format!(
                "recovery succeeded although bytes a later watermark vouches for were corrupted ({c:?})"
            ));
            return false;
        }
        w.violation.is_none()
    }

    /// Compares the engine's durable figures with the model, when they are
    /// at the same LSN (the engine may have moved on meanwhile).
    async fn compare_status(&self, client: &Client, at_recovery: bool) {
        let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), client.status()).await else {
            return;
        };
        let mut w = self.world.lock();
        if st.queue.stats.applied_lsn != w.model.applied {
            return;
        }
        w.mark(if at_recovery {
            "check: recovered state equals the model"
        } else {
            "check: engine state equals the model"
        });
        let (mc, ec) = (w.model.counts(), st.queue.stats.jobs);
        let (mr, er) = (
            w.model.remembered.len() as u64,
            st.queue.stats.remembered_ids,
        );
        let (mb, eb) = (
            w.model.pending_payload_bytes(),
            st.queue.stats.pending_payload_bytes,
        );
        if mc != ec || mr != er || mb != eb {
            let lsn = w.model.applied;
            w.violate(format!(
                "at LSN {lsn} the engine's durable state differs from the model: engine {ec:?}, {er} remembered, {eb} payload bytes; model {mc:?}, {mr} remembered, {mb} payload bytes"
            ));
        }
    }

    /// Corrupts bytes of the WAL that a later watermark vouches for (the
    /// engine is down); the next recovery must refuse to start.
    async fn corrupt_wal(&mut self) {
        let dir = self.plan.engine.wal_dir();
        let Ok(ins) = inspect(&self.disk, &dir, 0).await else {
            return;
        };
        if !matches!(ins.end, LogEnd::Clean | LogEnd::Torn { .. }) {
            return;
        }
        let w = ins.watermark;
        // Bytes recovery needs: records the newest snapshot does not hold.
        let snap_dir = self.plan.engine.snapshot_dir();
        let snapshot_lsn = self
            .disk
            .list(&snap_dir)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|n| {
                n.strip_prefix("snap-")?
                    .strip_suffix(".snap")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let mut candidates = Vec::new();
        for s in &ins.segments {
            for b in &s.batches {
                if b.in_log && b.last_lsn <= w && b.last_lsn > snapshot_lsn {
                    candidates.push((s.path.clone(), b.offset, b.len));
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        let (path, offset, len) =
            candidates[self.rng.below(candidates.len() as u64) as usize].clone();
        let Some(durable) = self.disk.durable_contents(&path) else {
            return;
        };
        if self.rng.chance(0.7) {
            // Bit rot in the batch header or body (not the zero padding).
            let body = durable
                .get(offset as usize + 40..offset as usize + 44)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
            let at = offset + self.rng.below(64 + body);
            let bit = self.rng.below(8) as u8;
            if self.disk.flip_bit(&path, at, bit).is_ok() {
                self.log(format!(
                    "fault: BIT ROT at {} offset {at} bit {bit} (LSNs up to {w} vouched for)",
                    path.display()
                ));
                self.mark("fault: bit rot in vouched WAL bytes");
                self.corruption = Some(Corruption::Flip {
                    path,
                    offset: at,
                    bit,
                });
            }
        } else {
            let end = ((offset + len) as usize).min(durable.len());
            let bytes = durable[offset as usize..end].to_vec();
            if self.disk.lose_write(&path, offset, len).is_ok() {
                self.log(format!(
                    "fault: LOST WRITE at {} offset {offset} ({len} bytes, vouched for)",
                    path.display()
                ));
                self.mark("fault: lost write of vouched WAL bytes");
                self.corruption = Some(Corruption::Lost {
                    path,
                    offset,
                    bytes,
                });
            }
        }
    }

    /// Undoes an injected corruption (an operator restoring from a replica),
    /// so the run can go on after the expected refusal.
    async fn repair(&mut self) {
        let Some(c) = self.corruption.take() else {
            return;
        };
        self.log(format!("repair: {c:?}"));
        match c {
            Corruption::Flip { path, offset, bit } => {
                let _ = self.disk.flip_bit(&path, offset, bit);
            }
            Corruption::Lost {
                path,
                offset,
                bytes,
            } => {
                // Straight to the platter, outside the fault model. Through
                // `write_at` + `sync_data` the repair could draw an injected
                // EIO (e.g. one armed for the engine and never consumed, seed
                // 8653): the restored sector then sits in the page cache only,
                // the next power loss brings the zeros back under a watermark
                // that vouches for them, and the engine's correct refusal
                // would count as an unexpected fail-stop.
                if self.disk.restore_write(&path, offset, &bytes).is_err() {
                    self.violate(format!(
                        "harness: could not undo the lost write at {} offset {offset}",
                        path.display()
                    ));
                }
            }
        }
    }

    /// Bit rot in the newest snapshot: recovery must fall back, not stop.
    async fn rot_snapshot(&mut self) {
        let dir = self.plan.engine.snapshot_dir();
        let Ok(names) = self.disk.list(&dir).await else {
            return;
        };
        let snaps: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("snap-") && n.ends_with(".snap"))
            .collect();
        let Some(newest) = snaps.iter().max() else {
            return;
        };
        // One corrupt snapshot is within the design (the older one plus the
        // log); rot only when that fallback exists.
        if snaps.len() < 2 {
            let whole_log = inspect(&self.disk, &self.plan.engine.wal_dir(), 0)
                .await
                .is_ok_and(|i| i.first_lsn == Some(1));
            if !whole_log {
                return;
            }
        }
        let path = dir.join(newest);
        let Some(bytes) = self.disk.durable_contents(&path) else {
            return;
        };
        if bytes.len() < 40 {
            return;
        }
        // Fields matter more than bulk: often the header, often its length.
        let at = match self.rng.below(4) {
            0 => 24 + self.rng.below(8),
            1 => self.rng.below(32),
            _ => self.rng.below(bytes.len() as u64),
        };
        let bit = self.rng.below(8) as u8;
        if self.disk.flip_bit(&path, at, bit).is_ok() {
            self.log(format!(
                "fault: BIT ROT in snapshot {} offset {at} bit {bit}",
                path.display()
            ));
            self.mark("fault: bit rot in the newest snapshot");
        }
    }

    /// Faults stop; every job must reach a final state in bounded time.
    async fn converge(&mut self) {
        self.log("faults stop: convergence phase");
        let mut quiet = self.plan.faults.disk.clone();
        quiet.eio_probability = 0.0;
        quiet.capacity_bytes = u64::MAX;
        self.disk.set_config(quiet);
        self.disk.fail_next_syncs(0);
        self.enospc_until = None;
        while let Ok(ev) = self.events.try_recv() {
            self.on_event(ev).await;
        }
        if self.stopped && !self.violated() {
            self.crash(false).await;
            self.restart(true).await;
        }
        let q = &self.plan.engine.queue;
        let submitted = self.world.lock().submitted.len() as u64;
        let mut per_attempt = q.default_timeout_ms.max(300) + q.lease_slack_ms + q.retry.max_ms;
        let mut parallel = q.workers;
        if let Some(ext) = &self.plan.external {
            // External workers may serve queues alone, one job per permit.
            per_attempt += ext.overhead_ms();
            parallel = parallel.min(ext.capacity());
        }
        let bound_ms =
            10_000 + submitted * 4 * per_attempt / u64::from(parallel.max(1)) + 4 * per_attempt;
        self.squeeze_begin();
        if let Some(s) = &self.sessions {
            s.settle();
        }
        if !self.settle(bound_ms).await {
            return;
        }
        if self.plan.squeeze.is_some() {
            // The probe's job must finish too.
            if !self.squeeze_check().await || !self.settle(bound_ms).await {
                return;
            }
        }
        // The connections close (holding nothing now) and let go of
        // their client handles, so the clean stop below can happen; then
        // the checks start from a settled engine again (retention may
        // have purged meanwhile).
        if self.sessions.is_some() && (!self.stop_sessions().await || !self.settle(bound_ms).await)
        {
            return;
        }
        let Some(client) = slot_get(&self.slot) else {
            return;
        };
        self.compare_status(&client, false).await;
        self.final_checks(&client).await;
        if self.violated() {
            return;
        }
        // A clean stop and one more recovery must give the same state.
        slot_set(&self.slot, None);
        drop(client);
        match tokio::time::timeout(Duration::from_secs(60), self.events.recv()).await {
            Ok(Some(NodeEvent::Stopped(_, Ok(())))) => self.log("engine stopped cleanly"),
            other => {
                let r = match other {
                    Ok(Some(NodeEvent::Stopped(_, r))) => format!("{r:?}"),
                    _ => "no stop".into(),
                };
                self.violate(format!("graceful stop failed: {r}"));
                return;
            }
        }
        self.crash(false).await;
        self.restart(false).await;
        let applied = self.world.lock().model.applied;
        if let Some(client) = slot_get(&self.slot) {
            if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), client.status()).await
            {
                if st.queue.stats.applied_lsn < applied {
                    self.violate("the clean restart lost records");
                }
            }
        }
    }

    /// Stops the beanstalk-style connections, if any; false (a
    /// violation) if they did not stop.
    async fn stop_sessions(&mut self) -> bool {
        let Some(mut s) = self.sessions.take() else {
            return true;
        };
        if !s.stop().await {
            self.violate("harness: the beanstalk-style connections did not stop");
            return false;
        }
        true
    }

    /// Waits (at most `bound_ms`) until every job is final and the log
    /// is applied as the model folded it; false after a violation.
    async fn settle(&mut self, bound_ms: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(bound_ms);
        loop {
            if self.violated() {
                return false;
            }
            if let Ok(n) = self.died.try_recv() {
                self.on_crasher(n).await;
                continue;
            }
            if let Ok(ev) = self.events.try_recv() {
                // A fail-stop from an EIO injected before the faults
                // stopped restarts the node; any other stop is a violation.
                let NodeEvent::Stopped(n, r) = &ev;
                if *n == self.incarnation && r.is_ok() {
                    self.violate("the engine stopped by itself in the convergence phase");
                    return false;
                }
                self.on_event(ev).await;
                continue;
            }
            let Some(client) = slot_get(&self.slot) else {
                self.violate("no engine in the convergence phase");
                return false;
            };
            if let Some(ext) = self.ext.as_mut() {
                ext.settle(&self.slot).await;
            }
            if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(5), client.status()).await
            {
                let s = &st.queue.stats;
                self.squeeze_seen(&st);
                let model_at = self.world.lock().model.applied;
                if s.jobs.pending == 0
                    && s.jobs.in_flight == 0
                    && s.proposed_lsn == s.applied_lsn
                    && model_at == s.applied_lsn
                {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.violate(format!(
                    "liveness: jobs still unfinished {bound_ms} ms after the faults stopped"
                ));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The engine's view of job `id` and the model's, read until they agree
    /// (at most [`AGREE_TRIES`] reads, [`AGREE_WAIT`] apart). The model
    /// folds a record as soon as it is durable, a moment before the core
    /// applies it, and retention goes on purging after the run settled, so
    /// one read may find the model a record ahead of the engine. `None`
    /// (a violation recorded) when the engine does not answer.
    async fn engine_and_model(
        &self,
        client: &Client,
        id: &str,
        jid: JobId,
    ) -> Option<(Option<JobView>, Option<MJob>)> {
        let mut tries = 0;
        loop {
            tries += 1;
            let ask = client.get(jid.clone());
            let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(5), ask).await else {
                self.violate(format!("get {id} failed at the end"));
                return None;
            };
            let model = self.world.lock().model.jobs.get(id).cloned();
            if agree(got.as_ref(), model.as_ref()) || tries >= AGREE_TRIES {
                return Some((got, model));
            }
            tokio::time::sleep(AGREE_WAIT).await;
        }
    }

    /// Every acknowledged job is final (or purged); cancellations held; the
    /// engine's view of every job equals the model's.
    async fn final_checks(&self, client: &Client) {
        let (acked, cancelled, submitted) = {
            let w = self.world.lock();
            (w.acked.clone(), w.cancel_acked.clone(), w.submitted.clone())
        };
        for id in &submitted {
            let Ok(jid) = JobId::from_client(id) else {
                continue;
            };
            let Some((got, model)) = self.engine_and_model(client, id, jid).await else {
                return;
            };
            let mut w = self.world.lock();
            let purged = w.model.purged.contains(id.as_str());
            if !agree(got.as_ref(), model.as_ref()) {
                w.violate(format!(
                    "job {id}: the engine has {:?}, the model {:?} (purged {purged})",
                    got.as_ref().map(|g| (g.state, g.attempt)),
                    model.as_ref().map(|m| (m.state, m.attempt))
                ));
                return;
            }
            if acked.contains(id) {
                match &model {
                    Some(m) if m.state.is_final() => {}
                    None if purged => {}
                    _ => {
                        w.violate(format!(
                            "acknowledged job {id} did not end final: {model:?}"
                        ));
                        return;
                    }
                }
            }
            let generation = w.model.generations.get(id.as_str()).copied().unwrap_or(0);
            if cancelled.get(id) == Some(&generation) {
                match &model {
                    Some(m) if m.state == JobState::Cancelled => {}
                    None if purged => {}
                    _ => {
                        w.violate(format!("job {id}: cancel was acknowledged, now {model:?}"));
                        return;
                    }
                }
            }
            let crasher = self.plan.workload.crasher.as_deref() == Some(id.as_str());
            if let Some(m) = &model {
                if crasher && m.state == JobState::Dead {
                    w.mark("job: a job that killed the server as it started ended dead");
                }
                match m.state {
                    JobState::Dead => w.mark("job: dead"),
                    JobState::Cancelled => w.mark("job: cancelled"),
                    JobState::Completed => w.mark("job: completed"),
                    _ => {}
                }
            }
        }
        let w = self.world.lock();
        if !w.model.purged.is_empty() {
            drop(w);
            self.mark("job: purged by retention");
        }
    }
}

/// One client of the workload ([`crate::plan::Workload`] says what all
/// of them do).
struct WorkloadClient {
    client: u32,
    plan: Plan,
    world: Shared,
    slot: Slot,
    rng: DetRng,
}

impl WorkloadClient {
    async fn run(mut self) {
        let wl = self.plan.workload.clone();
        let mut next = 0u32;
        let mut mine: Vec<(String, JobSpec)> = Vec::new();
        for _ in 0..wl.ops {
            let gap = self.rng.exponential(wl.op_gap_ms_mean);
            tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64)).await;
            if self.world.lock().violation.is_some() {
                return;
            }
            let client = loop {
                if let Some(c) = slot_get(&self.slot) {
                    break c;
                }
                if self.world.lock().violation.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let roll = self.rng.unit();
            let c = self.client;
            if roll < wl.cancel && !mine.is_empty() {
                let id = mine[self.rng.below(mine.len() as u64) as usize].0.clone();
                let Ok(jid) = JobId::from_client(&id) else {
                    continue;
                };
                let r = tokio::time::timeout(Duration::from_secs(10), client.cancel(jid)).await;
                let mut w = self.world.lock();
                w.log(format!("c{c} cancel {id} -> {r:?}"));
                if let Ok(Ok(())) = r {
                    let generation = w.model.generations.get(&id).copied().unwrap_or(0);
                    w.cancel_acked.insert(id, generation);
                    w.mark("client: cancel acknowledged");
                }
            } else if roll < wl.cancel + wl.requeue {
                let target = if self.rng.chance(0.5) || mine.is_empty() {
                    RequeueTarget::AllDead
                } else {
                    let id = &mine[self.rng.below(mine.len() as u64) as usize].0;
                    match JobId::from_client(id) {
                        Ok(j) => RequeueTarget::One(j),
                        Err(_) => continue,
                    }
                };
                if target == RequeueTarget::AllDead {
                    // Before it is sent: it may requeue a connection's buried job.
                    self.world.lock().sessions.requeues_of_all_dead += 1;
                }
                let r = tokio::time::timeout(Duration::from_secs(10), client.requeue(target)).await;
                let mut w = self.world.lock();
                w.log(format!("c{c} requeue -> {r:?}"));
                if let Ok(Ok(n)) = r {
                    if n > 0 {
                        w.mark("client: requeue of dead jobs acknowledged");
                    }
                }
            } else if roll < wl.cancel + wl.requeue + wl.status {
                let _ = tokio::time::timeout(Duration::from_secs(10), client.status()).await;
            } else {
                let n = 1 + self.rng.below(u64::from(wl.batch_max)) as usize;
                let mut batch = Vec::with_capacity(n);
                for _ in 0..n {
                    if !mine.is_empty() && self.rng.chance(wl.dup) {
                        let k = self.rng.below(mine.len() as u64) as usize;
                        batch.push(mine[k].clone());
                    } else {
                        let id = format!("c{c}-{next}");
                        next += 1;
                        let spec = self.spec(&id);
                        mine.push((id.clone(), spec.clone()));
                        batch.push((id, spec));
                    }
                }
                let ids: Vec<String> = batch.iter().map(|b| b.0.clone()).collect();
                self.world.lock().submitted.extend(ids.iter().cloned());
                let specs: Vec<JobSpec> = batch.into_iter().map(|b| b.1).collect();
                let r = tokio::time::timeout(Duration::from_secs(10), client.enqueue(specs)).await;
                let mut w = self.world.lock();
                match &r {
                    Ok(Ok(answers)) => {
                        w.log(format!("c{c} enqueue {ids:?} -> ok"));
                        for a in answers {
                            if a.duplicate {
                                w.mark("client: duplicate enqueue acknowledged");
                            }
                            w.acked.insert(a.id.to_string());
                        }
                    }
                    Ok(Err(e)) => {
                        w.log(format!("c{c} enqueue {ids:?} -> {e}"));
                        match e {
                            Rejection::Busy { reason, .. } if reason.contains("disk") => {
                                w.mark("rejection: disk full (ENOSPC reserve)")
                            }
                            Rejection::Storage { reason } if reason.contains("cannot fit") => w
                                .violate(format!(
                                    "the core proposed a record the log cannot hold: {reason}"
                                )),
                            Rejection::Storage { .. } => w.mark("rejection: storage refused"),
                            Rejection::TooLarge { reason, .. }
                                if reason.contains("segment_bytes") =>
                            {
                                w.mark("rejection: too large for a log segment")
                            }
                            _ => {}
                        }
                    }
                    Err(_) => w.log(format!("c{c} enqueue {ids:?} -> no answer")),
                }
            }
        }
    }

    fn spec(&mut self, id: &str) -> JobSpec {
        // Now and then a payload larger than the smallest log segments.
        let pad = if self.rng.chance(0.01) {
            2_000 + self.rng.below(7_000)
        } else {
            self.rng.below(120)
        };
        let pad = "x".repeat(pad as usize);
        let payload =
            Payload::from_json(format!("{{\"id\":\"{id}\",\"pad\":\"{pad}\"}}").as_bytes())
                .unwrap_or_else(|_| unreachable_payload());
        let mut spec = JobSpec::new(payload);
        spec.id = JobId::from_client(id).ok();
        spec.priority = self.rng.below(3) as i32;
        if self.rng.chance(0.5) {
            spec.max_attempts = Some(1 + self.rng.below(3) as u32);
        }
        if self.rng.chance(0.3) {
            spec.timeout_ms = Some(20 + self.rng.below(200));
        }
        if self.rng.chance(0.2) {
            spec.delay_ms = self.rng.below(300);
        }
        if self.rng.chance(0.3) {
            spec.queue = QueueName::parse(if self.rng.chance(0.5) { "q1" } else { "q2" }).ok();
        }
        spec
    }
}

fn unreachable_payload() -> Payload {
    match Payload::from_json(b"null") {
        Ok(p) => p,
        Err(_) => unreachable!("null is valid JSON"),
    }
}

/// Where the engine keeps its data in the simulation.
pub fn data_dir() -> &'static Path {
    Path::new("/beaver")
}
