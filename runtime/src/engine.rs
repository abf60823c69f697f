//! The engine: start-up (validate the configuration, recover, wire the
//! tasks), then one task that owns the core and carries out its effects
//! (`core_task.rs`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use beaver_core::Core;
use beaver_io::{
    CommitSettings, Disk, GroupCommit, LoadedSnapshot, SnapshotStore, Wal, WalOptions,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::Client;
use crate::clock::Clock;
use crate::commit::{Hooks, Logged};
use crate::config::EngineConfig;
use crate::core_task::{CoreTask, Driver};
use crate::error::EngineError;
use crate::executor::Executor;
use crate::figures::Figures;
use crate::observer::Observer;
use crate::replay::{Base, Replay};
use crate::snapshotter::{Snapshotter, ToSnapshotter};

/// Attempts' ends waiting for the core task, at most. Each running attempt
/// sends one, and at most `workers` run (plus ends of attempts aborted
/// before the core took their end); the core takes 64 per turn. An attempt
/// ending past this waits for room, which delays only its report.
pub(crate) const OUTCOMES_MAX: usize = 1024;

/// Snapshot builds asked for and not yet begun, at most. The snapshot task
/// merges those waiting into one build at the newest LSN asked, so more
/// would only take memory; past it an admin request is answered busy, and
/// an ask for log size is dropped (the next comes after another
/// `snapshot_wal_bytes` of log).
pub(crate) const SNAPSHOT_ASKS_MAX: usize = 64;

/// What start-up recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// How long recovery took, from opening the data dir to serving.
    pub duration_ms: u64,
    /// The snapshot it started from.
    pub snapshot_lsn: Option<u64>,
    /// WAL records replayed after the snapshot.
    pub replayed_records: u64,
    /// Torn WAL tail discarded.
    pub torn_bytes: u64,
    /// Jobs the queue holds.
    pub jobs: u64,
    /// The last durable LSN.
    pub last_lsn: u64,
    /// Attempts the crash interrupted: those that started (they count and
    /// fail as interrupted) and those handed out ahead of a worker (given
    /// back uncounted).
    pub interrupted: beaver_core::Interrupted,
}

/// A running engine: its client and its handle.
pub struct Engine {
    /// The in-process client.
    pub client: Client,
    /// Stops and awaits the engine.
    pub handle: EngineHandle,
    /// What recovery found.
    pub recovery: RecoveryReport,
}

/// Controls a running engine.
pub struct EngineHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), EngineError>>,
}

impl EngineHandle {
    /// Starts a graceful shutdown: stop dispatching, let running jobs finish
    /// (up to the grace period), sync, snapshot, stop.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the engine to stop; `Err` if it stopped on a failure
    /// (fail-stop).
    pub async fn wait(self) -> Result<(), EngineError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(EngineError::TaskFailed(format!(
                "the engine task ended abnormally: {e}"
            ))),
        }
    }

    /// Whether the engine has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Recovers the data dir and starts the engine.
///
/// Nothing is served before recovery has made durable everything it read.
/// `salt_seed` salts new WAL segments: give each start a fresh value
/// (`beaver_io::entropy_seed()` in production, a seeded draw in simulation).
pub async fn start<D: Disk, E: Executor, C: Clock, O: Observer>(
    mut config: EngineConfig,
    disk: D,
    executor: E,
    clock: C,
    observer: O,
    salt_seed: u64,
) -> Result<Engine, EngineError> {
    validate(&mut config)?;
    let began = Instant::now();
    let observer = Arc::new(observer);
    let figures = Arc::new(Figures::default());
    let recovered = recover(&config, &disk, salt_seed).await?;
    let recovery = recovered.publish(began, &figures, &*observer);
    let tasks = Tasks {
        config,
        disk,
        executor: Arc::new(executor),
        clock: Arc::new(clock),
        observer,
        figures,
    };
    Ok(tasks.wire(recovered, recovery))
}

/// Refuses a configuration the engine cannot run with, and sets the
/// largest record the core may propose (one log segment's worth).
fn validate(config: &mut EngineConfig) -> Result<(), EngineError> {
    if config.unsynced_records_max == 0 || config.requests_waiting_max == 0 {
        return Err(EngineError::Config(
            "unsynced_records_max and requests_waiting_max must be at least 1".into(),
        ));
    }
    if !(1..=100).contains(&config.snapshot_pace_percent) {
        return Err(EngineError::Config(format!(
            "snapshot_pace_percent is {}: give the share of time a snapshot build may work, from 1 to 100 (100: full speed)",
            config.snapshot_pace_percent
        )));
    }
    let l = &config.queue.limits;
    for (name, value) in [
        ("pending_jobs_max", l.pending_jobs_max),
        ("pending_payload_bytes_max", l.pending_payload_bytes_max),
        ("payload_bytes_max", l.payload_bytes_max),
        ("batch_jobs_max", l.batch_jobs_max),
        ("batch_bytes_max", l.batch_bytes_max),
        ("attempts_max", u64::from(l.attempts_max)),
        ("timeout_ms_max", l.timeout_ms_max),
        ("queues_max", l.queues_max),
        ("ids_per_record_max", l.ids_per_record_max),
    ] {
        if value == 0 {
            return Err(EngineError::Config(format!(
                "the limit {name} is 0, so every enqueue would be refused: give at least 1, or leave it out for its default"
            )));
        }
    }
    for (name, value) in [
        ("lease_batch_max", u64::from(l.lease_batch_max)),
        ("lease_waiters_max", l.lease_waiters_max),
        ("lease_extend_max_ms", l.lease_extend_max_ms),
    ] {
        if value == 0 {
            return Err(EngineError::Config(format!(
                "the limit {name} is 0, so every lease request (or renewal) would be refused: give at least 1, or leave it out for its default"
            )));
        }
    }
    if let Some(why) = beaver_io::segment_bytes_problem(config.segment_bytes) {
        return Err(EngineError::Config(why));
    }
    // Every record the core proposes fits one log segment.
    let record_bytes_max = beaver_io::record_bytes_max(config.segment_bytes);
    config.queue.limits.record_bytes_max = record_bytes_max;
    let largest = beaver_core::record_size::enqueue_bytes_max(&config.queue.limits);
    if largest > record_bytes_max {
        warn!(
            segment_bytes = config.segment_bytes,
            record_bytes_max,
            largest_batch_record = largest,
            "a WAL segment is smaller than the largest batch the limits allow: such batches are refused as too large (413); raise segment_bytes or lower batch_jobs_max / batch_bytes_max"
        );
    }
    Ok(())
}

/// What recovery hands to the running engine.
struct Recovered<D: Disk> {
    queue: Core,
    wal: Wal<D>,
    snapshot_lsn: Option<u64>,
    /// The loaded snapshot's body size: the first estimate of the next
    /// snapshot (the snapshot share of the space reserve).
    snapshot_bytes: u64,
    replayed: u64,
    torn_bytes: u64,
}

/// Loads the newest valid snapshot and replays the log after it; the log
/// comes back ready to append, everything it read made durable.
async fn recover<D: Disk>(
    config: &EngineConfig,
    disk: &D,
    salt_seed: u64,
) -> Result<Recovered<D>, EngineError> {
    disk.create_dir_all(&config.data_dir).await?;
    let mut store = SnapshotStore::open(disk.clone(), &config.snapshot_dir())
        .await?
        .with_planted(config.planted());
    let loaded = store.load().await?;
    let snapshot_lsn = loaded.as_ref().map(|l| l.lsn);
    let snapshot_bytes = loaded.as_ref().map_or(0, |l| l.body().len() as u64);
    let mut replay = Replay::new(snapshot_base(config.queue.clone(), loaded));
    let opts = WalOptions {
        segment_bytes: config.segment_bytes,
        salt_seed,
        fill_ahead_bytes: config.wal_fill_ahead_bytes,
        planted: config.planted(),
    };
    // The WAL gets a handle whose calls block the calling thread instead of
    // hopping to a thread pool: it runs on a thread of its own (see
    // `spawn_io_thread`), except for a lone client's commits, which block the
    // core task's thread for one fdatasync on purpose (`LoneClient`).
    let (wal, found) = Wal::open(
        disk.dedicated(),
        &config.wal_dir(),
        opts,
        snapshot_lsn.unwrap_or(0),
        |lsn, body| replay.push(lsn, body),
    )
    .await?;
    let (queue, replayed) = replay.finish().await?;
    Ok(Recovered {
        queue,
        wal,
        snapshot_lsn,
        snapshot_bytes,
        replayed,
        torn_bytes: found.torn_bytes,
    })
}

/// The queue the log replays onto: the snapshot, restored on the replay's
/// applying thread while this one reads the log after it (the file's LSN,
/// checked against what it holds, says where the log is needed from).
fn snapshot_base(config: beaver_core::Config, loaded: Option<LoadedSnapshot>) -> Base {
    Box::new(move || match loaded {
        Some(l) => {
            let q =
                Core::recover_encoded(config, l.body(), []).map_err(|e| EngineError::Snapshot {
                    path: l.path.clone(),
                    reason: e.to_string(),
                })?;
            if q.applied_lsn() != l.lsn {
                return Err(EngineError::Snapshot {
                    path: l.path,
                    reason: format!(
                        "the file is named for LSN {} but holds LSN {}",
                        l.lsn,
                        q.applied_lsn()
                    ),
                });
            }
            Ok(q)
        }
        None => Ok(Core::new(config)),
    })
}

impl<D: Disk> Recovered<D> {
    /// Reports what recovery found: in the figures, to the observer, in
    /// the log.
    fn publish<O: Observer>(
        &self,
        began: Instant,
        figures: &Figures,
        observer: &O,
    ) -> RecoveryReport {
        let stats = self.queue.stats();
        let jobs = stats.jobs.pending
            + stats.jobs.in_flight
            + stats.jobs.completed
            + stats.jobs.dead
            + stats.jobs.cancelled;
        let recovery = RecoveryReport {
            duration_ms: began.elapsed().as_millis() as u64,
            snapshot_lsn: self.snapshot_lsn,
            replayed_records: self.replayed,
            torn_bytes: self.torn_bytes,
            jobs,
            last_lsn: self.queue.applied_lsn(),
            interrupted: self.queue.interrupted(),
        };
        figures.recovery_ms.store(recovery.duration_ms, Relaxed);
        figures.recovered_jobs.store(jobs, Relaxed);
        figures.torn_bytes.store(self.torn_bytes, Relaxed);
        figures.durable_lsn.store(self.queue.applied_lsn(), Relaxed);
        figures
            .snapshot_lsn
            .store(self.snapshot_lsn.unwrap_or(0), Relaxed);
        observer.recovered(began.elapsed().as_secs_f64(), &recovery);
        info!(
            recovery_ms = recovery.duration_ms,
            snapshot_lsn = self.snapshot_lsn.unwrap_or(0),
            replayed_records = self.replayed,
            torn_bytes = self.torn_bytes,
            jobs,
            pending = stats.jobs.pending,
            in_flight = stats.jobs.in_flight,
            interrupted_started = recovery.interrupted.charged,
            interrupted_not_started = recovery.interrupted.released,
            "recovered"
        );
        recovery
    }
}

/// What the engine's tasks share, before they start.
struct Tasks<D, E, C, O> {
    config: EngineConfig,
    disk: D,
    executor: Arc<E>,
    clock: Arc<C>,
    observer: Arc<O>,
    figures: Arc<Figures>,
}

impl<D: Disk, E: Executor, C: Clock, O: Observer> Tasks<D, E, C, O> {
    /// Starts the WAL task, the snapshot task and the core task, in that
    /// order, and returns the engine that serves through them.
    fn wire(self, recovered: Recovered<D>, recovery: RecoveryReport) -> Engine {
        // Until this run writes a snapshot, the one it started from says
        // how large the next will be.
        let estimate = Arc::new(AtomicU64::new(recovered.snapshot_bytes));
        let hooks = Arc::new(Hooks {
            figures: self.figures.clone(),
            observer: self.observer.clone(),
            snapshot_estimate_bytes: estimate.clone(),
        });
        let settings = CommitSettings {
            snapshot_wal_bytes: self.config.snapshot_wal_bytes,
            snapshot_interval_ms: self.config.snapshot_interval_ms,
            space_check_interval_ms: self.config.space_check_interval_ms,
        };
        // The group commit's own channels are bounded there
        // (`beaver_io::wal::group::{HANDOVER_MAX, REPORTS_MAX}`).
        let (commit, wal_task) = GroupCommit::new(recovered.wal, settings, hooks);
        let wal_join = spawn_io_thread("beaver-wal", wal_task.run());
        let (snap_tx, snap_rx) = mpsc::channel(SNAPSHOT_ASKS_MAX);
        let engine_stopping = Arc::new(AtomicBool::new(false));
        let snapshotter = self.snapshotter(snap_rx, &commit, &engine_stopping, estimate);
        let snap_join = tokio::spawn(snapshotter.run());
        // Requests waiting for the core task, at most the configured
        // `requests_waiting_max`: past it clients are told at once to retry
        // (`Client` never waits for room).
        let (req_tx, req_rx) = mpsc::channel(self.config.requests_waiting_max);
        // A watch holds only the latest value: stop or not.
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = self.config.queue.workers;
        let planted = self.config.planted();
        let figures = self.figures.clone();
        let core = CoreTask {
            commit,
            core: Driver::new(
                recovered.queue,
                self.clock,
                self.executor,
                self.observer,
                self.figures,
                req_rx,
                snap_tx,
                engine_stopping,
                stop_rx,
                mpsc::channel(OUTCOMES_MAX),
                self.config,
            ),
        };
        let task = tokio::spawn(async move {
            let result = core.run().await;
            // The core is gone: the WAL task finishes its sync and stops.
            let _ = wal_join.await;
            snap_join.abort();
            result
        });
        Engine {
            client: Client::new(req_tx, figures, workers, planted),
            handle: EngineHandle {
                stop: stop_tx,
                task,
            },
            recovery,
        }
    }
}

impl<D: Disk, E: Executor, C: Clock, O: Observer> Tasks<D, E, C, O> {
    /// The snapshot task, taking its asks from `rx`.
    fn snapshotter(
        &self,
        rx: mpsc::Receiver<ToSnapshotter>,
        commit: &GroupCommit<D, Logged, Hooks<O>>,
        engine_stopping: &Arc<AtomicBool>,
        estimate_bytes: Arc<AtomicU64>,
    ) -> Snapshotter<D, O, C> {
        Snapshotter {
            disk: self.disk.clone(),
            snapshot_dir: self.config.snapshot_dir(),
            wal_dir: self.config.wal_dir(),
            config: self.config.queue.clone(),
            pace_percent: self.config.snapshot_pace_percent,
            read_piece_bytes: self.config.snapshot_read_piece_bytes,
            engine_stopping: engine_stopping.clone(),
            rx,
            segments: commit.deleter(),
            figures: self.figures.clone(),
            observer: self.observer.clone(),
            clock: self.clock.clone(),
            estimate_bytes,
        }
    }
}

/// Runs an I/O task on a thread of its own with a single-threaded runtime,
/// so that its blocking calls (on a [`Disk::dedicated`] handle) block
/// nothing else; resolves when the task ends. Under madsim, threads are not
/// simulated: it is an ordinary task.
#[cfg(not(madsim))]
fn spawn_io_thread(
    name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> oneshot::Receiver<()> {
    let (done, ended) = oneshot::channel();
    let run = move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(task),
            Err(e) => tracing::error!(error = %e, "cannot start an I/O thread's runtime"),
        }
        let _ = done.send(());
    };
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(run) {
        tracing::error!(error = %e, "cannot start an I/O thread");
    }
    ended
}

#[cfg(madsim)]
fn spawn_io_thread(
    _name: &str,
    task: impl Future<Output = ()> + Send + 'static,
) -> oneshot::Receiver<()> {
    let (done, ended) = oneshot::channel();
    tokio::spawn(async move {
        task.await;
        let _ = done.send(());
    });
    ended
}

// The smallest log segment holds the records the core is built for.
const _: () = assert!(
    beaver_io::record_bytes_max(beaver_io::MIN_SEGMENT_BYTES)
        >= beaver_core::record_size::RECORD_BYTES_MIN
);
