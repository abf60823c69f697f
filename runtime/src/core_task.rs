//! The core task: owns the [`Core`], takes requests in batches, steps the
//! core and carries out its effects; each turn's records go to the group
//! commit, which reports back when they are durable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use beaver_core::{
    Core, Effect, Execution, Input, JobId, LeaseId, Outcome, Reply, RequestId, codec,
};
use beaver_io::{CommitEvent, Disk, GroupCommit, Proposer};
use foldhash::fast::FixedState;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::{Ask, Request};
use crate::clock::Clock;
use crate::commit::{Hooks, Logged};
use crate::compaction::{Compaction, Next};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::executor::Executor;
use crate::figures::Figures;
use crate::observer::Observer;
use crate::reserve;
use crate::snapshotter::ToSnapshotter;

/// Requests taken per turn, at most.
const REQUESTS_PER_TURN: usize = 256;
/// Reports of the log taken per turn, at most.
const REPORTS_PER_TURN: usize = 64;
/// Attempts' ends taken per turn, at most.
const OUTCOMES_PER_TURN: usize = 64;
/// Pieces a snapshot is measured in (see `Driver::compaction_fits`).
const SNAPSHOT_PIECE_BYTES: usize = 64 << 10;
/// Room counted beside a snapshot's body: its file's header and trailer,
/// and a block's rounding.
const SNAPSHOT_SLACK_BYTES: u64 = 4 << 10;
/// How often waiting lease requests are checked for clients gone away.
const WITHDRAW_SWEEP: std::time::Duration = std::time::Duration::from_millis(100);

/// One attempt's end, from an execution task.
pub(crate) struct Done {
    id: JobId,
    attempt: u32,
    outcome: Outcome,
    secs: f64,
}

/// The core task: the group commit's proposer ([`Driver`]) and its handle
/// on the group commit.
pub(crate) struct CoreTask<D: Disk, E: Executor, C: Clock, O: Observer> {
    pub commit: GroupCommit<D, Logged, Hooks<O>>,
    pub core: Driver<E, C, O>,
}

/// The core and everything its effects touch.
pub(crate) struct Driver<E: Executor, C: Clock, O: Observer> {
    pub queue: Core,
    pub clock: Arc<C>,
    pub executor: Arc<E>,
    pub observer: Arc<O>,
    pub figures: Arc<Figures>,
    pub requests: mpsc::Receiver<Request>,
    pub snap_tx: mpsc::Sender<ToSnapshotter>,
    /// Tells a snapshot build under way that the engine is stopping.
    pub engine_stopping: Arc<AtomicBool>,
    pub stop: watch::Receiver<bool>,
    pub outcome_tx: mpsc::Sender<Done>,
    pub outcomes: mpsc::Receiver<Done>,
    pub config: EngineConfig,
    /// Workers not running an attempt.
    pub free_workers: usize,
    /// Attempts handed out ahead of a free worker, in the order the core
    /// gave them: each starts when a worker frees up, oldest first.
    waiting: VecDeque<Execution>,
    /// Shutting down: attempts not started go back to the queue.
    give_back: bool,
    stopping: bool,
    /// Clients may still ask (some client handle is alive).
    requests_open: bool,
    /// When running attempts are stopped, once shutting down.
    grace_until: Option<Instant>,
    /// Keyed by a number this task assigns in order: a fixed, fast hash.
    pending: HashMap<RequestId, oneshot::Sender<Reply>, FixedState>,
    /// The pending requests that are lease requests (they may wait long:
    /// each sweep withdraws those whose client went away).
    leasing: HashSet<RequestId, FixedState>,
    /// Leases whose reply found its client gone: given back after the step.
    undelivered: Vec<LeaseId>,
    /// When [`Driver::withdraw_gone`] runs next while leases wait (a time,
    /// not a timer per turn, so a busy engine still sweeps).
    next_sweep: Instant,
    /// Attempts running on a worker.
    running: HashMap<(JobId, u32), JoinHandle<()>>,
    next_req: u64,
    /// Requests taken since the last commit.
    round_requests: u32,
    out: Vec<Effect>,
    /// Records proposed since the last commit.
    appends: Vec<Logged>,
    /// The disk is in its space reserve (as the WAL task last reported).
    disk_full: bool,
    /// The disk was in its reserve since the log last had nothing to
    /// free: the drain's share of the reserve may have let the disk out
    /// of it, but the log the full phase left is still to be freed.
    was_full: bool,
    /// The engine's own work toward space (see `compaction.rs`).
    compaction: Compaction,
    /// When the queue's share of the reserve was last measured (see
    /// `reserve.rs`): the closed LSN, the disk's state, the applied LSN
    /// and the time then; `None` before the first.
    measured: Option<(u64, bool, u64, Instant)>,
    /// Segment closes this core task has seen (the simulator checks the
    /// whole core at some of them).
    #[cfg(madsim)]
    closes_seen: u64,
}

impl<E: Executor, C: Clock, O: Observer> Driver<E, C, O> {
    /// A driver with nothing running, nothing asked.
    #[allow(clippy::too_many_arguments)] // the channels and shared state it is wired to
    pub(crate) fn new(
        queue: Core,
        clock: Arc<C>,
        executor: Arc<E>,
        observer: Arc<O>,
        figures: Arc<Figures>,
        requests: mpsc::Receiver<Request>,
        snap_tx: mpsc::Sender<ToSnapshotter>,
        engine_stopping: Arc<AtomicBool>,
        stop: watch::Receiver<bool>,
        (outcome_tx, outcomes): (mpsc::Sender<Done>, mpsc::Receiver<Done>),
        config: EngineConfig,
    ) -> Self {
        let retry_min = std::time::Duration::from_millis(config.space_check_interval_ms);
        Driver {
            free_workers: config.queue.workers as usize,
            queue,
            clock,
            executor,
            observer,
            figures,
            requests,
            snap_tx,
            engine_stopping,
            stop,
            outcome_tx,
            outcomes,
            config,
            waiting: VecDeque::new(),
            give_back: false,
            stopping: false,
            requests_open: true,
            grace_until: None,
            pending: HashMap::with_hasher(FixedState::default()),
            leasing: HashSet::with_hasher(FixedState::default()),
            undelivered: Vec::new(),
            next_sweep: Instant::now(),
            running: HashMap::new(),
            next_req: 0,
            round_requests: 0,
            out: Vec::with_capacity(256),
            appends: Vec::new(),
            disk_full: false,
            was_full: false,
            compaction: Compaction::new(retry_min),
            measured: None,
            #[cfg(madsim)]
            closes_seen: 0,
        }
    }
}

impl<D: Disk, E: Executor, C: Clock, O: Observer> CoreTask<D, E, C, O> {
    /// Runs until a graceful stop ends (`Ok`) or the engine fails.
    pub(crate) async fn run(mut self) -> Result<(), EngineError> {
        let mut reports = Vec::with_capacity(REPORTS_PER_TURN);
        let mut batch = Vec::with_capacity(REQUESTS_PER_TURN);
        let mut done = Vec::with_capacity(OUTCOMES_PER_TURN);
        loop {
            if self.core.stopping && self.core.drained() {
                return self.finish().await;
            }
            let deadline = self
                .core
                .queue
                .next_deadline()
                .map(|ms| self.core.clock.instant_at(ms));
            let unsynced = self.core.queue.next_lsn() - 1 - self.core.queue.applied_lsn();
            let accept =
                unsynced < self.core.config.unsynced_records_max && self.core.requests_open;
            let grace_until = self.core.grace_until;
            let sweep_at = (!self.core.leasing.is_empty()).then_some(self.core.next_sweep);
            let compact_at = self.core.compaction.wake_at(self.core.pressure());
            let building = self.core.compaction.building();
            let turn = tokio::select! {
                biased;
                n = self.commit.reports(&mut reports, REPORTS_PER_TURN) => {
                    if n == 0 {
                        Err(EngineError::TaskFailed("the WAL task ended without reporting why".into()))
                    } else {
                        self.commit.deliver(&mut reports, &mut self.core)
                    }
                }
                n = self.core.outcomes.recv_many(&mut done, OUTCOMES_PER_TURN) => {
                    self.core.attempts_ended(done.drain(..).take(n));
                    Ok(())
                }
                n = self.core.requests.recv_many(&mut batch, REQUESTS_PER_TURN), if accept => {
                    self.core.take_requests(batch.drain(..), n);
                    Ok(())
                }
                _ = self.core.stop.changed(), if !self.core.stopping => {
                    self.core.begin_stop();
                    Ok(())
                }
                _ = sleep_until_opt(grace_until), if grace_until.is_some() => {
                    self.core.grace_over();
                    Ok(())
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    self.core.step(Input::Tick);
                    Ok(())
                }
                _ = sleep_until_opt(sweep_at), if sweep_at.is_some() => {
                    self.core.withdraw_gone();
                    Ok(())
                }
                ok = self.core.compaction.built(), if building => {
                    self.core.compaction_round_ended(ok);
                    Ok(())
                }
                _ = sleep_until_opt(compact_at), if compact_at.is_some() => Ok(()),
            };
            if turn.is_ok() {
                self.core.measure_reserve_if_due();
                self.core.compact_if_due();
            }
            let compactions = self.core.compaction.ended();
            self.core.figures.compactions.store(compactions, Relaxed);
            let committed = match turn {
                Ok(()) => self.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                return self.core.fail(e);
            }
        }
    }

    /// Makes this turn's records durable (see [`GroupCommit::commit`]).
    async fn flush(&mut self) -> Result<(), EngineError> {
        let requests = std::mem::take(&mut self.core.round_requests);
        self.commit.commit(requests, &mut self.core).await
    }

    /// Graceful end: write a snapshot of the (fully durable) state, stop.
    async fn finish(mut self) -> Result<(), EngineError> {
        self.flush().await?;
        let lsn = self.core.queue.applied_lsn();
        let st = self.core.queue.stats();
        if lsn > 0 && !self.core.figures.snapshot_covers(lsn) {
            self.core.save_snapshot(lsn).await;
        }
        info!(
            lsn,
            pending = st.jobs.pending,
            completed = st.jobs.completed,
            dead = st.jobs.dead,
            "stopped cleanly"
        );
        Ok(())
    }
}

impl<E: Executor, C: Clock, O: Observer> Proposer<Logged> for Driver<E, C, O> {
    type Error = EngineError;

    fn take_proposed(&mut self) -> Vec<Logged> {
        std::mem::take(&mut self.appends)
    }

    fn next_lsn(&self) -> u64 {
        self.queue.next_lsn()
    }

    fn others_waiting(&self) -> bool {
        !self.requests.is_empty()
    }

    fn report(&mut self, event: CommitEvent) -> Result<(), EngineError> {
        match event {
            CommitEvent::Durable(upto) => self.step(Input::Durable { upto }),
            CommitEvent::AppendFailed { from_lsn, error } => self.step(Input::AppendFailed {
                from_lsn,
                error: error.to_string(),
            }),
            CommitEvent::DiskFull(full) => {
                self.disk_full = full;
                self.was_full |= full;
                self.step(Input::DiskFull(full));
            }
            CommitEvent::SnapshotDue(upto) => {
                self.ask_snapshot(upto);
            }
            CommitEvent::Fatal(e) => return Err(EngineError::Storage(e)),
        }
        Ok(())
    }
}

impl<E: Executor, C: Clock, O: Observer> Driver<E, C, O> {
    /// Takes the `n` requests of one turn (0: every client is gone, so
    /// nobody can ask anything more: stop gracefully).
    fn take_requests(&mut self, batch: impl Iterator<Item = Request>, n: usize) {
        if n == 0 {
            self.requests_open = false;
            if !self.stopping {
                self.begin_stop();
            }
        }
        // A waiting lease request whose client left before these requests
        // came must take nothing they make ready: withdrawn first, not at
        // the next sweep (a job put right after a reserving connection
        // closed goes to the next reserve, as in beanstalkd).
        if !self.leasing.is_empty() {
            self.withdraw_gone();
        }
        for r in batch {
            self.request(r);
        }
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
            Ask::Lease(a) => {
                if self.leasing.is_empty() {
                    self.next_sweep = Instant::now() + WITHDRAW_SWEEP;
                }
                self.leasing.insert(req);
                Input::Lease {
                    req,
                    queues: a.queues,
                    max: a.max,
                    wait_ms: a.wait.map(millis),
                    holder: a.holder,
                    order: a.order,
                }
            }
            Ask::Heartbeat(lease, extend_ms) => Input::Heartbeat {
                req,
                lease,
                extend_ms,
            },
            Ask::Complete(lease) => Input::Complete { req, lease },
            Ask::Fail(lease, error, retry) => Input::Fail {
                req,
                lease,
                error,
                retry,
            },
            Ask::Pause(queue, pause) => Input::PauseQueue { req, queue, pause },
            Ask::Purge(queue) => Input::PurgeQueue { req, queue },
            Ask::ListJobs(f) => Input::ListJobs {
                req,
                queue: f.queue,
                state: f.state,
                after: f.after,
                limit: f.limit,
            },
            Ask::ListLeases => Input::ListLeases { req },
            Ask::Checkpoint => Input::Checkpoint { req },
            Ask::Release(lease, priority, delay_ms) => Input::Release {
                req,
                lease,
                priority,
                delay_ms,
            },
            Ask::Bury(lease, priority) => Input::Bury {
                req,
                lease,
                priority,
            },
            Ask::Delete(id) => Input::Delete { req, id },
            Ask::Kick(id) => Input::Kick { req, id },
            // Answered at once or once durable, never waiting: nothing
            // to withdraw, and an undelivered answer is given back.
            Ask::LeaseJob(id, holder) => Input::LeaseJob { req, id, holder },
            Ask::Snapshot(lsn) => {
                // A compaction: a checkpoint and a snapshot at it (twice if
                // that frees more), so the log shrinks even when idle.
                self.compaction.ask();
                let _ = lsn.send(Ok(self.queue.applied_lsn()));
                return;
            }
        };
        self.next_req += 1;
        self.round_requests += 1;
        self.pending.insert(req, r.reply);
        self.step(input);
    }

    /// Whether the disk is (or was, since the log last had nothing to
    /// free) in its reserve and a closed segment holds records the older
    /// kept snapshot does not cover.
    fn pressure(&self) -> bool {
        #[cfg(feature = "mutants")]
        if self.config.queue.planted == Some(beaver_core::mutants::Mutant::NoCompactionOnPressure) {
            return false;
        }
        (self.disk_full || self.was_full) && self.figures.log_to_free()
    }

    /// Measures the queue's share of the disk reserve (see `reserve.rs`)
    /// when the log closed a segment or the disk entered or left its
    /// reserve since the last time, or, in the reserve, when records were
    /// applied and a space check interval has passed.
    fn measure_reserve_if_due(&mut self) {
        let closed = self.figures.closed_lsn.load(Relaxed);
        let applied = self.queue.applied_lsn();
        let every = std::time::Duration::from_millis(self.config.space_check_interval_ms);
        let segment_closed = self.measured.is_none_or(|(c, ..)| c != closed);
        let due = match self.measured {
            None => true,
            Some((_, full, a, at)) => {
                segment_closed
                    || full != self.disk_full
                    || (self.disk_full && a != applied && at.elapsed() >= every)
            }
        };
        #[cfg(madsim)]
        if segment_closed {
            self.closes_seen += 1;
            if check_at_close(self.closes_seen) {
                self.check_core_in_simulation();
            }
        }
        if due {
            reserve::measure(&self.queue, self.config.segment_bytes, &self.figures);
            self.measured = Some((closed, self.disk_full, applied, Instant::now()));
        }
    }

    /// The simulator's check of the whole core, the figures the reserve is
    /// measured from among them (a pass over every job, at some segment
    /// closes: see [`check_at_close`]).
    #[cfg(madsim)]
    fn check_core_in_simulation(&self) {
        if let Err(what) = self.queue.check_invariants() {
            self.observer.core_invariants_broken(&what);
        }
    }

    /// Begins a compaction if one is due (see [`Compaction::due`]).
    fn compact_if_due(&mut self) {
        if !self.disk_full && !self.figures.log_to_free() {
            self.was_full = false;
        }
        if !self.stopping && self.compaction.due(self.pressure(), Instant::now()) {
            self.compaction_round(true);
        }
    }

    /// Whether a compaction round under pressure would free space: the
    /// snapshots of the state now that the compaction still has to write
    /// (two for its `first` round: the second needs its room before the
    /// first's older snapshot goes) fit in the free space, and two of them
    /// take less than the closed segments they let go. Otherwise (the jobs
    /// still hold their payloads) it would only fill the disk further; it
    /// waits for the state to shrink. The log's own records meanwhile go
    /// to the segment prepared ahead. Measures the snapshot by encoding it
    /// (without keeping the bytes): the compaction's backoff bounds how
    /// often.
    fn compaction_fits(&self, first: bool) -> bool {
        let free = self.figures.free_bytes.load(Relaxed);
        let closed =
            (self.figures.wal_bytes.load(Relaxed)).saturating_sub(2 * self.config.segment_bytes);
        let to_write = if first { 2 } else { 1 };
        let fits = |bytes: u64| {
            (bytes.saturating_add(SNAPSHOT_SLACK_BYTES)).saturating_mul(to_write) <= free
                && 2 * bytes < closed
        };
        let mut encoder = codec::SnapshotEncoder::new(&self.queue);
        let (mut bytes, mut piece) = (0u64, Vec::with_capacity(SNAPSHOT_PIECE_BYTES));
        loop {
            piece.clear();
            let more = encoder.fill(&mut piece, SNAPSHOT_PIECE_BYTES);
            bytes += piece.len() as u64;
            if !more || !fits(bytes) {
                return fits(bytes);
            }
        }
    }

    /// A compaction round (the `first` of one): a checkpoint, whose reply
    /// asks for the snapshot.
    fn compaction_round(&mut self, first: bool) {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        let applied = self.queue.applied_lsn();
        self.compaction.checkpointing(req, first, applied);
        if !self.compaction.by_person() && !self.compaction_fits(first) {
            return self.compaction.failed(applied);
        }
        self.step(Input::Checkpoint { req });
    }

    /// The compaction's checkpoint was answered: snapshot at its LSN.
    fn compaction_checkpointed(&mut self, reply: Reply) {
        let Reply::Checkpoint(Ok(lsn)) = reply else {
            warn!(
                ?reply,
                "the log refused a checkpoint; compaction tried again later"
            );
            return self.compaction.failed(self.queue.applied_lsn());
        };
        let (done, built) = oneshot::channel();
        let ask = ToSnapshotter::Build {
            upto: lsn,
            done: Some(done),
        };
        if self.stopping || self.snap_tx.try_send(ask).is_err() {
            return self.compaction.failed(lsn);
        }
        self.compaction.snapshotting(built);
    }

    /// A compaction's snapshot ended; another round follows if a closed
    /// segment is still not covered.
    fn compaction_round_ended(&mut self, ok: bool) {
        let more = self.figures.log_to_free();
        if !ok {
            warn!("a compaction's snapshot was not written; tried again later");
        }
        let applied = self.queue.applied_lsn();
        if let Next::Checkpoint = self.compaction.round_ended(ok, more, applied) {
            if !self.stopping {
                self.compaction_round(false);
            }
        }
    }

    /// Asks the snapshot task for a build up to `upto`; `false` if too many
    /// builds wait already (they merge into one at the newest LSN asked, so
    /// a later ask comes soon enough).
    fn ask_snapshot(&self, upto: u64) -> bool {
        match self
            .snap_tx
            .try_send(ToSnapshotter::Build { upto, done: None })
        {
            Ok(()) | Err(TrySendError::Closed(_)) => true,
            Err(TrySendError::Full(_)) => {
                warn!(
                    upto,
                    "snapshot builds are already waiting; this one is not asked for"
                );
                false
            }
        }
    }

    /// Withdraws the waiting lease requests whose client went away, so
    /// they take no job.
    fn withdraw_gone(&mut self) {
        self.next_sweep = Instant::now() + WITHDRAW_SWEEP;
        let gone: Vec<RequestId> = self
            .leasing
            .iter()
            .filter(|r| self.pending.get(r).is_none_or(|tx| tx.is_closed()))
            .copied()
            .collect();
        for req in gone {
            self.leasing.remove(&req);
            self.pending.remove(&req);
            self.step(Input::Withdraw { req });
        }
    }

    /// Takes attempts' ends.
    fn attempts_ended(&mut self, done: impl Iterator<Item = Done>) {
        for d in done {
            if self.running.remove(&(d.id.clone(), d.attempt)).is_some() {
                self.free_workers += 1;
                self.observer.attempt_finished(d.secs, &d.outcome);
                self.step(Input::Outcome {
                    id: d.id,
                    attempt: d.attempt,
                    outcome: d.outcome,
                });
            }
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
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
        self.grace_until =
            Some(Instant::now() + std::time::Duration::from_millis(self.config.shutdown_grace_ms));
    }

    fn grace_over(&mut self) {
        self.grace_until = None;
        warn!(
            running = self.running.len(),
            "grace period over: stopping the attempts still running (they will retry after restart)"
        );
        for (_, h) in self.running.drain() {
            h.abort();
        }
    }

    /// Nothing runs and everything proposed is durable.
    fn drained(&self) -> bool {
        self.running.is_empty()
            && self.waiting.is_empty()
            && self.queue.next_lsn() == self.queue.applied_lsn() + 1
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
                Effect::Append(r) => self.appends.push(Logged(r)),
                Effect::Reply { req, reply } => self.answer(req, reply),
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
        if !self.undelivered.is_empty() {
            let leases = std::mem::take(&mut self.undelivered);
            self.step_core(Input::ReturnLeases { leases });
        }
    }

    /// Sends a reply; leases its client is no longer there for are given
    /// back (no worker saw them, so they do not count).
    fn answer(&mut self, req: RequestId, reply: Reply) {
        if self.compaction.is_checkpoint(req) {
            return self.compaction_checkpointed(reply);
        }
        self.leasing.remove(&req);
        let Some(tx) = self.pending.remove(&req) else {
            return;
        };
        if let Err(Reply::Leased(Ok(jobs))) = tx.send(reply) {
            self.undelivered.extend(jobs.iter().map(|j| j.lease_id));
        }
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
            let done = Done {
                id,
                attempt: n,
                outcome,
                secs,
            };
            // Waits only when the channel is full (see `OUTCOMES_MAX`).
            if let Err(TrySendError::Full(done)) = tx.try_send(done) {
                let _ = tx.send(done).await;
            }
        });
        self.running.insert(key, handle);
    }

    /// Hands the core's own state at `lsn` to the snapshot task, which
    /// encodes it piece by piece as it writes (never whole in memory), and
    /// waits for it (a failure is logged: the log keeps everything). The
    /// engine is stopping: the core is not stepped again.
    async fn save_snapshot(&mut self, lsn: u64) {
        let empty = Core::new(self.queue.config().clone());
        let core = Box::new(std::mem::replace(&mut self.queue, empty));
        let (done, wait) = oneshot::channel();
        let save = ToSnapshotter::Save { lsn, core, done };
        if self.snap_tx.send(save).await.is_ok() {
            match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "could not write the shutdown snapshot; the log keeps everything")
                }
                Err(_) => warn!("the snapshot task ended before the shutdown snapshot"),
            }
        }
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

/// Whether the simulator checks the whole core at the `n`th segment close
/// of this process (from 1): at the 1st, 2nd and 4th, then every 4th. A
/// check passes over every job, and checking at every close took a fifth
/// of the simulator's time; a figure that drifts stays wrong until the
/// process ends, so a later check still sees a drift made between two,
/// and a short process life (a crash comes soon) is still checked early.
#[cfg(madsim)]
fn check_at_close(n: u64) -> bool {
    n <= 2 || n % 4 == 0
}

/// A duration in whole milliseconds, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
