//! The engine: recovery, then one task that owns the core and carries out
//! its effects.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use beaver_core::{
    Core, Effect, Execution, Input, JobId, Outcome, Record, Reply, RequestId, codec,
};
use beaver_io::{Disk, SnapshotStore, Wal, WalOptions};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::{Ask, Client, Request};
use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::executor::Executor;
use crate::figures::Figures;
use crate::observer::Observer;
use crate::replay::{Base, Replay};
use crate::snapshotter::{Snapshotter, ToSnapshotter};
use crate::wal_task::{Log, LogSettings, ToWal, WalEvent, WalTask};

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
            Err(e) => Err(EngineError::Config(format!(
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
    let began = Instant::now();
    let observer = Arc::new(observer);
    let clock = Arc::new(clock);
    let figures = Arc::new(Figures::default());
    disk.create_dir_all(&config.data_dir).await?;
    let mut store = SnapshotStore::open(disk.clone(), &config.snapshot_dir()).await?;
    let loaded = store.load().await?;
    let snapshot_lsn = loaded.as_ref().map(|l| l.lsn);
    // The snapshot is restored on the replay's applying thread while this
    // one reads the log after it (the file's LSN, checked against what it
    // holds, says where the log is needed from).
    let queue_config = config.queue.clone();
    let base: Base = Box::new(move || match loaded {
        Some(l) => {
            let q = Core::recover_encoded(queue_config, l.body(), []).map_err(|e| {
                EngineError::Snapshot {
                    path: l.path.clone(),
                    reason: e.to_string(),
                }
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
        None => Ok(Core::new(queue_config)),
    });
    let after = snapshot_lsn.unwrap_or(0);
    let mut replay = Replay::new(base);
    let opts = WalOptions {
        segment_bytes: config.segment_bytes,
        salt_seed,
    };
    // The WAL gets a handle whose calls block the calling thread instead of
    // hopping to a thread pool: it runs on a thread of its own (see
    // `spawn_io_thread`), except for a lone client's commits, which block the
    // core task's thread for one fdatasync on purpose (`commit_in_place`).
    let (wal, recovered) = Wal::open(
        disk.dedicated(),
        &config.wal_dir(),
        opts,
        after,
        |lsn, body| replay.push(lsn, body),
    )
    .await?;
    let (queue, replayed) = replay.finish().await?;
    let stats = queue.stats();
    let jobs = stats.jobs.pending
        + stats.jobs.in_flight
        + stats.jobs.completed
        + stats.jobs.dead
        + stats.jobs.cancelled;
    let recovery = RecoveryReport {
        duration_ms: began.elapsed().as_millis() as u64,
        snapshot_lsn,
        replayed_records: replayed,
        torn_bytes: recovered.torn_bytes,
        jobs,
        last_lsn: queue.applied_lsn(),
    };
    figures.recovery_ms.store(recovery.duration_ms, Relaxed);
    figures.recovered_jobs.store(jobs, Relaxed);
    figures.torn_bytes.store(recovered.torn_bytes, Relaxed);
    figures.durable_lsn.store(queue.applied_lsn(), Relaxed);
    figures
        .snapshot_lsn
        .store(snapshot_lsn.unwrap_or(0), Relaxed);
    observer.recovered(began.elapsed().as_secs_f64());
    info!(
        recovery_ms = recovery.duration_ms,
        snapshot_lsn = ?snapshot_lsn,
        replayed_records = replayed,
        torn_bytes = recovered.torn_bytes,
        jobs,
        pending = stats.jobs.pending,
        in_flight = stats.jobs.in_flight,
        "recovered"
    );

    let estimate = Arc::new(AtomicU64::new(0));
    let (wal_tx, wal_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let log = Arc::new(Mutex::new(Log::new(
        wal,
        figures.clone(),
        observer.clone(),
        LogSettings {
            snapshot_wal_bytes: config.snapshot_wal_bytes,
            segment_bytes: config.segment_bytes,
            snapshot_interval_ms: config.snapshot_interval_ms,
        },
    )));
    let wal_task = WalTask {
        log: log.clone(),
        rx: wal_rx,
        events: event_tx,
        space_check_interval_ms: config.space_check_interval_ms,
        snapshot_estimate_bytes: estimate.clone(),
    };
    let wal_join = spawn_io_thread("beaver-wal", wal_task.run());
    let (snap_tx, snap_rx) = mpsc::unbounded_channel();
    let engine_stopping = Arc::new(AtomicBool::new(false));
    drop(store);
    let snapshotter = Snapshotter {
        disk: disk.clone(),
        snapshot_dir: config.snapshot_dir(),
        wal_dir: config.wal_dir(),
        config: config.queue.clone(),
        pace_percent: config.snapshot_pace_percent,
        engine_stopping: engine_stopping.clone(),
        rx: snap_rx,
        to_wal: wal_tx.clone(),
        figures: figures.clone(),
        observer: observer.clone(),
        clock: clock.clone(),
        estimate_bytes: estimate,
    };
    let snap_join = tokio::spawn(snapshotter.run());

    let (req_tx, req_rx) = mpsc::channel(config.requests_waiting_max);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let workers = config.queue.workers;
    let core = CoreTask {
        queue,
        clock,
        executor: Arc::new(executor),
        observer,
        figures: figures.clone(),
        requests: req_rx,
        log,
        sent: 0,
        lone_syncs: 0,
        round_requests: 0,
        proposing_requests: 0,
        wal_tx,
        wal_events: event_rx,
        snap_tx,
        engine_stopping,
        stop: stop_rx,
        outcome_tx,
        outcomes: outcome_rx,
        waiting: VecDeque::new(),
        free_workers: workers as usize,
        give_back: false,
        pending: HashMap::new(),
        running: HashMap::new(),
        next_req: 0,
        out: Vec::with_capacity(256),
        appends: Vec::new(),
        config: config.clone(),
    };
    let task = tokio::spawn(async move {
        let result = core.run().await;
        // The core is gone: the WAL task finishes its sync and stops.
        let _ = wal_join.await;
        snap_join.abort();
        result
    });
    Ok(Engine {
        client: Client::new(req_tx, figures, workers),
        handle: EngineHandle {
            stop: stop_tx,
            task,
        },
        recovery,
    })
}

/// An attempt holding a worker, in the `running` figure while it lives.
struct Busy(Arc<Figures>);

impl Busy {
    fn start(figures: &Arc<Figures>) -> Busy {
        figures.running.fetch_add(1, Relaxed);
        Busy(figures.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Relaxed);
    }
}

/// One attempt's end, from an execution task.
struct Done {
    id: JobId,
    attempt: u32,
    outcome: Outcome,
    secs: f64,
}

struct CoreTask<D: Disk, E: Executor, C: Clock, O: Observer> {
    queue: Core,
    clock: Arc<C>,
    executor: Arc<E>,
    observer: Arc<O>,
    figures: Arc<Figures>,
    requests: mpsc::Receiver<Request>,
    /// The log, shared with the WAL task: the core task commits a lone
    /// client's records itself when the log is idle (see `commit_in_place`).
    log: Arc<Mutex<Log<D, O>>>,
    /// `ToWal::Records` messages sent to the WAL task.
    sent: u64,
    /// Consecutive syncs that each carried one request's records, with no
    /// other request arriving while they ran: a lone client's pattern.
    lone_syncs: u32,
    /// Requests taken since the last flush.
    round_requests: u32,
    /// Requests whose records were handed over since the last sync returned.
    proposing_requests: u32,
    wal_tx: mpsc::UnboundedSender<ToWal>,
    wal_events: mpsc::UnboundedReceiver<WalEvent>,
    snap_tx: mpsc::UnboundedSender<ToSnapshotter>,
    /// Tells a snapshot build under way that the engine is stopping.
    engine_stopping: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
    outcome_tx: mpsc::UnboundedSender<Done>,
    outcomes: mpsc::UnboundedReceiver<Done>,
    /// Attempts handed out ahead of a free worker, in the order the core
    /// gave them: each starts when a worker frees up, oldest first.
    waiting: VecDeque<Execution>,
    /// Workers not running an attempt.
    free_workers: usize,
    /// Shutting down: attempts not started go back to the queue.
    give_back: bool,
    pending: HashMap<RequestId, oneshot::Sender<Reply>>,
    /// Attempts running on a worker.
    running: HashMap<(JobId, u32), JoinHandle<()>>,
    next_req: u64,
    out: Vec<Effect>,
    appends: Vec<Arc<Record>>,
    config: EngineConfig,
}

impl<D: Disk, E: Executor, C: Clock, O: Observer> CoreTask<D, E, C, O> {
    async fn run(mut self) -> Result<(), EngineError> {
        let mut batch: Vec<Request> = Vec::with_capacity(256);
        let mut events: Vec<WalEvent> = Vec::with_capacity(64);
        let mut done: Vec<Done> = Vec::with_capacity(64);
        let mut stopping = false;
        let mut requests_open = true;
        let mut grace_until: Option<Instant> = None;
        loop {
            if stopping && self.drained() {
                return self.finish().await;
            }
            let deadline = self
                .queue
                .next_deadline()
                .map(|ms| self.clock.instant_at(ms));
            let unsynced = self.queue.next_lsn() - 1 - self.queue.applied_lsn();
            let accept = unsynced < self.config.unsynced_records_max;
            tokio::select! {
                biased;
                n = self.wal_events.recv_many(&mut events, 64) => {
                    if n == 0 {
                        return self.fail(EngineError::Config("the WAL task ended unexpectedly".into()));
                    }
                    for ev in events.drain(..) {
                        if let WalEvent::Durable(upto) = ev {
                            let alone = self.proposing_requests == 1 && self.queue.next_lsn() == upto + 1;
                            self.lone_syncs = if alone { self.lone_syncs.saturating_add(1) } else { 0 };
                            self.proposing_requests = 0;
                        }
                        if let Err(e) = self.wal_event(ev) {
                            return self.fail(e);
                        }
                    }
                }
                n = self.outcomes.recv_many(&mut done, 64) => {
                    for d in done.drain(..).take(n) {
                        if self.running.remove(&(d.id.clone(), d.attempt)).is_some() {
                            self.free_workers += 1;
                            self.observer.attempt_finished(d.secs, &d.outcome);
                            self.step(Input::Outcome { id: d.id, attempt: d.attempt, outcome: d.outcome });
                        }
                    }
                }
                n = self.requests.recv_many(&mut batch, 256), if accept && requests_open => {
                    if n == 0 {
                        // Every client is gone: nobody can ask anything more; stop gracefully.
                        requests_open = false;
                        if !stopping {
                            self.begin_stop(&mut stopping, &mut grace_until);
                        }
                    }
                    for r in batch.drain(..) {
                        self.request(r);
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    self.begin_stop(&mut stopping, &mut grace_until);
                }
                _ = sleep_until_opt(grace_until), if grace_until.is_some() => {
                    grace_until = None;
                    warn!(running = self.running.len(), "grace period over: stopping the attempts still running (they will retry after restart)");
                    for (_, h) in self.running.drain() {
                        h.abort();
                    }
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => self.step(Input::Tick),
            }
            if let Err(e) = self.flush().await {
                return self.fail(e);
            }
        }
    }

    /// Takes one report of the log's.
    fn wal_event(&mut self, ev: WalEvent) -> Result<(), EngineError> {
        match ev {
            WalEvent::Durable(upto) => self.step(Input::Durable { upto }),
            WalEvent::AppendFailed { from_lsn, error } => {
                self.step(Input::AppendFailed { from_lsn, error })
            }
            WalEvent::DiskFull(full) => self.step(Input::DiskFull(full)),
            WalEvent::SnapshotDue(upto) => {
                let _ = self.snap_tx.send(ToSnapshotter::Build { upto });
            }
            WalEvent::Fatal(e) => return Err(EngineError::Storage(e)),
        }
        Ok(())
    }

    fn begin_stop(&mut self, stopping: &mut bool, grace_until: &mut Option<Instant>) {
        *stopping = true;
        info!(
            running = self.running.len(),
            given_back = self.waiting.len(),
            "shutting down: no new attempts start; attempts handed out but not started are given back, running ones get the grace period"
        );
        self.give_back = true;
        self.step(Input::StopDispatching);
        // A snapshot build under way stops (the shutdown snapshot
        // supersedes it) or, past the log, goes on without pacing: the
        // shutdown snapshot waits for it.
        self.engine_stopping.store(true, Relaxed);
        *grace_until =
            Some(Instant::now() + std::time::Duration::from_millis(self.config.shutdown_grace_ms));
    }

    /// Nothing runs and everything proposed is durable.
    fn drained(&self) -> bool {
        self.running.is_empty()
            && self.waiting.is_empty()
            && self.queue.next_lsn() == self.queue.applied_lsn() + 1
    }

    fn request(&mut self, r: Request) {
        let req = RequestId(self.next_req);
        let input = match r.ask {
            Ask::Enqueue(jobs) => Input::Enqueue { req, jobs },
            Ask::Get(id) => Input::Get { req, id },
            Ask::Status => Input::Status { req },
            Ask::Cancel(id) => Input::Cancel { req, id },
            Ask::Requeue(target) => Input::Requeue { req, target },
            Ask::ListDead(limit) => Input::ListDead { req, limit },
            Ask::Snapshot(lsn) => {
                let upto = self.queue.applied_lsn();
                let _ = self.snap_tx.send(ToSnapshotter::Build { upto });
                let _ = lsn.send(upto);
                return;
            }
        };
        self.next_req += 1;
        self.round_requests += 1;
        self.pending.insert(req, r.reply);
        self.step(input);
    }

    /// Steps the core with `input`, then starts (or, shutting down, gives
    /// back) the attempts waiting for a worker.
    fn step(&mut self, input: Input) {
        self.step_core(input);
        while self.give_back || self.free_workers > 0 {
            let Some(x) = self.waiting.pop_front() else {
                break;
            };
            let (id, attempt) = (x.id.clone(), x.attempt);
            if self.give_back {
                self.step_core(Input::Outcome {
                    id,
                    attempt,
                    outcome: Outcome::NotStarted,
                });
            } else {
                self.free_workers -= 1;
                self.step_core(Input::Started { id, attempt });
                self.start(x);
            }
        }
    }

    fn step_core(&mut self, input: Input) {
        let now = self.clock.now_ms();
        let mut out = std::mem::take(&mut self.out);
        self.queue.step(now, input, &mut out);
        for effect in out.drain(..) {
            match effect {
                Effect::Append(r) => self.appends.push(r),
                Effect::Reply { req, reply } => {
                    if let Some(tx) = self.pending.remove(&req) {
                        let _ = tx.send(reply);
                    }
                }
                Effect::Execute(x) => self.waiting.push_back(x),
                Effect::Abort { id, attempt } => {
                    if let Some(h) = self.running.remove(&(id.clone(), attempt)) {
                        h.abort();
                        self.free_workers += 1;
                    } else {
                        self.waiting
                            .retain(|x| (&x.id, x.attempt) != (&id, attempt));
                    }
                }
            }
        }
        self.out = out;
    }

    /// Makes this round's records durable: the core task commits them
    /// itself when they come from a lone client's one request and the log is
    /// idle; otherwise (and for records that commit produces) they go to the
    /// WAL task in one message.
    async fn flush(&mut self) -> Result<(), EngineError> {
        let requests = std::mem::take(&mut self.round_requests);
        if self.appends.is_empty() {
            return Ok(());
        }
        self.proposing_requests += requests;
        if self.lone_syncs >= 2 && requests == 1 {
            // Let every other ready task run first (and the runtime poll
            // its sockets): a commit made in place blocks this thread, so
            // other clients may not have been able to ask meanwhile, and
            // the next request would look alone again and again.
            tokio::task::yield_now().await;
            if self.requests.is_empty() {
                self.commit_in_place().await?;
            } else {
                self.lone_syncs = 0;
            }
        }
        if !self.appends.is_empty() {
            let records = std::mem::take(&mut self.appends);
            self.sent += 1;
            let _ = self.wal_tx.send(ToWal::Records(records));
        }
        Ok(())
    }

    /// Writes and syncs the pending records on this task, if the log is
    /// idle (see [`Log::idle_for`]): a lone client's acknowledgement then
    /// waits for no thread hand-off. It blocks this task's thread for one
    /// fdatasync, which a lone client waits for anyway; as soon as another
    /// request arrives meanwhile, commits go back to the WAL task, whose
    /// syncs overlap with this task's work.
    async fn commit_in_place(&mut self) -> Result<(), EngineError> {
        let log = self.log.clone();
        // The WAL task holds the lock only for one operation at a time, never
        // while waiting for this task: waiting here costs what handing the
        // records over would (it would do that operation first).
        let mut log = log.lock().await;
        let Some(first) = self.appends.first() else {
            return Ok(());
        };
        if !log.idle_for(self.sent, first.lsn) {
            return Ok(());
        }
        let records = std::mem::take(&mut self.appends);
        let had_next_segment = !log.next_segment_wanted();
        let mut events = Vec::new();
        log.write(&records, &mut events)
            .await
            .map_err(EngineError::Storage)?;
        for ev in events.drain(..) {
            self.wal_event(ev)?;
        }
        let synced = log
            .sync_now(&mut events)
            .await
            .map_err(EngineError::Storage)?;
        if synced {
            self.figures.lone_commits.fetch_add(1, Relaxed);
            self.observer.lone_commit();
        }
        log.housekeeping(&mut events);
        let used_next_segment = had_next_segment && log.next_segment_wanted();
        drop(log);
        if used_next_segment {
            let _ = self.wal_tx.send(ToWal::Wake);
        }
        self.proposing_requests = 0;
        self.lone_syncs = if self.requests.is_empty() {
            self.lone_syncs.saturating_add(1)
        } else {
            0
        };
        for ev in events {
            self.wal_event(ev)?;
        }
        Ok(())
    }

    /// Runs `x` on a free worker (taken by the caller).
    fn start(&mut self, x: Execution) {
        let key = (x.id.clone(), x.attempt);
        // Only executors that hand the queue to the job pay for the lookup.
        let queue = self
            .executor
            .wants_queue()
            .then(|| self.queue.job(x.id.as_str()));
        let attempt = self
            .executor
            .execute_in(x, queue.flatten().map(|j| j.queue));
        let tx = self.outcome_tx.clone();
        let figures = self.figures.clone();
        let (id, n) = key.clone();
        let handle = tokio::spawn(async move {
            // Counted while it runs, until it ends or is aborted; no longer
            // once its end is sent.
            let (outcome, secs) = {
                let _busy = Busy::start(&figures);
                let began = Instant::now();
                let outcome = attempt.await;
                (outcome, began.elapsed().as_secs_f64())
            };
            let _ = tx.send(Done {
                id,
                attempt: n,
                outcome,
                secs,
            });
        });
        self.running.insert(key, handle);
    }

    /// Graceful end: write a snapshot of the (fully durable) state, stop.
    async fn finish(mut self) -> Result<(), EngineError> {
        self.flush().await?;
        let lsn = self.queue.applied_lsn();
        if lsn > 0 && !self.figures.snapshot_covers(lsn) {
            let bytes = codec::encode_queue_snapshot(&self.queue);
            let (done, wait) = oneshot::channel();
            if self
                .snap_tx
                .send(ToSnapshotter::Save { lsn, bytes, done })
                .is_ok()
            {
                match wait.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(error = %e, "could not write the shutdown snapshot; the log keeps everything")
                    }
                    Err(_) => warn!("the snapshot task ended before the shutdown snapshot"),
                }
            }
        }
        let st = self.queue.stats();
        info!(
            lsn,
            pending = st.jobs.pending,
            completed = st.jobs.completed,
            dead = st.jobs.dead,
            "stopped cleanly"
        );
        Ok(())
    }

    /// Fail-stop: answer nothing more, stop every attempt, report.
    fn fail(mut self, e: EngineError) -> Result<(), EngineError> {
        for (_, h) in self.running.drain() {
            h.abort();
        }
        self.waiting.clear();
        self.pending.clear();
        Err(e)
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

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

// The smallest log segment holds the records the core is built for.
const _: () = assert!(
    beaver_io::record_bytes_max(beaver_io::MIN_SEGMENT_BYTES)
        >= beaver_core::record_size::RECORD_BYTES_MIN
);
