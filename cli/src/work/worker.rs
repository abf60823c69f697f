//! The worker's tasks: the leaser (one long poll at a time, for as many
//! jobs as there are free slots) and the manager (owns every lease: starts
//! the commands, renews, reports, stops what it lost, handles signals).
//! Each job's command runs in a task of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beaver_core::{Execution, JobId, Outcome, Payload, QueueName};
use beaver_runtime::Executor as _;
use beaver_runtime::executor::{ExecExecutor, kill_running_attempts};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::api::{Api, CallError, Grant, ItemResult, Target};
use super::backoff::{Backoff, Jitter};
use super::buffer::{Pending, Report, Results};
use super::events::{Event, Lease};
use super::schedule::LeaseClock;

/// How long the last try to fail the killed jobs' leases may take after a
/// second signal.
const LAST_REPORT_WITHIN: Duration = Duration::from_secs(1);
/// The longest the manager sleeps when nothing is due.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// What the worker needs to run.
pub struct Config {
    /// The server.
    pub target: Target,
    /// Its URL, for messages.
    pub url: String,
    /// The queues served.
    pub queues: Vec<String>,
    /// Jobs run at once, at most.
    pub concurrency: usize,
    /// What runs each job.
    pub exec: ExecExecutor,
    /// Print events as JSON lines.
    pub json: bool,
    /// This worker's name for the server.
    pub name: String,
    /// A lease request's wait.
    pub wait_ms: u64,
}

/// What the leaser sends the manager.
enum FromLeaser {
    /// Leases granted by an answer received at this instant.
    Granted(Instant, Vec<Grant>),
    /// The server refused the worker for good.
    Fatal(String),
}

/// Where one lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its command runs.
    Running,
    /// Its command ended; the result waits in the buffer.
    Reporting,
    /// Lost: its command is being stopped; nothing will be reported.
    Stopping,
}

/// One lease the worker holds (a slot of the concurrency).
struct Held {
    id: String,
    queue: String,
    attempt: u32,
    timeout: Duration,
    clock: LeaseClock,
    stage: Stage,
    /// Dropping it stops the command.
    stop: Option<oneshot::Sender<()>>,
}

struct Manager {
    cfg: Arc<Config>,
    api: Api,
    held: HashMap<String, Held>,
    results: Results,
    slots: Arc<Semaphore>,
    done_tx: mpsc::Sender<(String, Option<Outcome>)>,
    backoff: Backoff,
    jitter: Jitter,
    /// When the next report (or heartbeat after a failure) may be sent.
    retry_at: Instant,
    fatal: Option<String>,
}

/// Runs until stopped; see the module docs of `work`.
pub async fn run(cfg: Config) -> Result<(), String> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("no SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("no SIGINT handler: {e}"))?;
    let cfg = Arc::new(cfg);
    Event::Started {
        server: &cfg.url,
        queues: &cfg.queues,
        concurrency: cfg.concurrency,
    }
    .emit(cfg.json);
    let slots = Arc::new(Semaphore::new(cfg.concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (grant_tx, mut grant_rx) = mpsc::channel(4);
    let (done_tx, mut done_rx) = mpsc::channel(cfg.concurrency);
    let leaser = tokio::spawn(leaser(cfg.clone(), slots.clone(), grant_tx, stop_rx));
    let mut m = Manager {
        api: Api::new(cfg.target.clone()),
        results: Results::new(cfg.concurrency),
        held: HashMap::new(),
        slots,
        done_tx,
        backoff: Backoff::default(),
        jitter: Jitter::new(seed()),
        retry_at: Instant::now(),
        fatal: None,
        cfg,
    };
    let (mut stopping, mut leaser_open) = (false, true);
    loop {
        if stopping && m.held.is_empty() && !leaser_open {
            break;
        }
        let wake = m.next_wake();
        tokio::select! {
            biased;
            _ = term.recv() => if m.on_signal(&mut stopping, &stop_tx) {
                m.kill_all().await;
                break;
            },
            _ = int.recv() => if m.on_signal(&mut stopping, &stop_tx) {
                m.kill_all().await;
                break;
            },
            Some((lease, outcome)) = done_rx.recv() => m.on_done(&lease, outcome),
            msg = grant_rx.recv(), if leaser_open => match msg {
                Some(FromLeaser::Granted(at, grants)) => m.on_grants(at, grants),
                Some(FromLeaser::Fatal(why)) => {
                    m.fatal = Some(why);
                    m.stop(&mut stopping, &stop_tx);
                }
                None => leaser_open = false,
            },
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        m.tend().await;
    }
    leaser.abort();
    Event::Stopped.emit(m.cfg.json);
    match m.fatal {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// A seed for the jitter, different per process.
fn seed() -> u64 {
    u64::from(std::process::id()) << 32 ^ super::events::now_ms()
}

impl Manager {
    /// The first signal stops leasing; a second kills the jobs and asks
    /// the caller to exit (`true`).
    fn on_signal(&mut self, stopping: &mut bool, stop_tx: &watch::Sender<bool>) -> bool {
        if !*stopping {
            self.stop(stopping, stop_tx);
            return false;
        }
        true
    }

    fn stop(&mut self, stopping: &mut bool, stop_tx: &watch::Sender<bool>) {
        *stopping = true;
        let _ = stop_tx.send(true);
        Event::Stopping {
            running: self.held.len(),
        }
        .emit(self.cfg.json);
    }

    /// The soonest instant something is due.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + IDLE_WAKE;
        for h in self.held.values() {
            if h.stage != Stage::Stopping {
                wake = wake.min(h.clock.next_beat).min(h.clock.ends);
            }
        }
        if !self.results.is_empty() {
            wake = wake.min(self.retry_at);
        }
        wake.max(now)
    }

    /// Starts the command of every lease granted.
    fn on_grants(&mut self, at: Instant, grants: Vec<Grant>) {
        for g in grants {
            if self.held.contains_key(&g.lease_id) {
                // A server bug; the slot is held by the first one.
                tracing::warn!(
                    lease = g.lease_id,
                    "the server granted a lease held already"
                );
                continue;
            }
            let timeout = Duration::from_millis(g.job.timeout_ms);
            let held = Held {
                id: g.job.id.clone(),
                queue: g.job.queue.clone(),
                attempt: g.job.attempt,
                timeout,
                clock: LeaseClock::granted(at, timeout),
                stage: Stage::Running,
                stop: None,
            };
            Event::Leased(&lease_of(&g.lease_id, &held)).emit(self.cfg.json);
            let lease_id = g.lease_id.clone();
            self.held.insert(lease_id.clone(), held);
            match execution(&g) {
                Ok((exec, queue)) => self.start(lease_id, exec, queue),
                Err(why) => self.on_done(&lease_id, Some(Outcome::Failed(why))),
            }
        }
    }

    /// Runs one command in a task of its own; it reports to `done_tx`.
    fn start(&mut self, lease_id: String, exec: Execution, queue: QueueName) {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        if let Some(h) = self.held.get_mut(&lease_id) {
            h.stop = Some(stop_tx);
        }
        let run = self.cfg.exec.execute_in(exec, Some(queue));
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            // Dropping the attempt's future stops its process group.
            let outcome = tokio::select! {
                biased;
                _ = stop_rx => None,
                o = run => Some(o),
            };
            let _ = done.send((lease_id, outcome)).await;
        });
    }

    /// A command ended (`None`: it was stopped).
    fn on_done(&mut self, lease_id: &str, outcome: Option<Outcome>) {
        let Some(h) = self.held.get_mut(lease_id) else {
            return;
        };
        let report = match (h.stage, outcome) {
            (Stage::Running, Some(Outcome::Succeeded)) => Report::Complete,
            (Stage::Running, Some(Outcome::Failed(e))) => Report::Fail(e),
            (Stage::Running, Some(Outcome::TimedOut)) => Report::Fail(format!(
                "timed out after {} ms: its process group was killed",
                h.timeout.as_millis()
            )),
            (Stage::Running, Some(Outcome::NotStarted)) => {
                Report::Fail("the command was not started".into())
            }
            _ => {
                self.release(lease_id);
                return;
            }
        };
        h.stage = Stage::Reporting;
        h.stop = None;
        let pending = Pending {
            lease_id: lease_id.to_string(),
            report,
            drop_at: h.clock.ends,
        };
        if self.results.push(pending).is_err() {
            // One result per slot: the buffer has room for every slot.
            tracing::error!(lease = lease_id, "no room to keep a result; dropped");
            self.release(lease_id);
        }
    }

    /// The lease is over for this worker: its slot is free again.
    fn release(&mut self, lease_id: &str) {
        if self.held.remove(lease_id).is_some() {
            self.slots.add_permits(1);
        }
    }

    /// The lease is lost: stop its command (its slot frees once it has
    /// stopped), or drop its result.
    fn lose(&mut self, lease_id: &str, why: &str) {
        let Some(h) = self.held.get_mut(lease_id) else {
            return;
        };
        Event::Lost(&lease_of(lease_id, h), why).emit(self.cfg.json);
        match h.stage {
            Stage::Running => {
                h.stage = Stage::Stopping;
                h.stop = None;
            }
            Stage::Reporting => {
                self.results.remove(lease_id);
                self.release(lease_id);
            }
            Stage::Stopping => {}
        }
    }

    /// Everything due now: leases ended by the worker's clock, reports,
    /// heartbeats.
    async fn tend(&mut self) {
        let now = Instant::now();
        let ended: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.stage == Stage::Running && h.clock.ended(now))
            .map(|(l, _)| l.clone())
            .collect();
        for l in ended {
            self.lose(&l, "no renewal reached the server before the lease ended");
        }
        for p in self.results.take_ended(now) {
            if let Some(h) = self.held.get(&p.lease_id) {
                let why = "the lease ended before its result could be reported";
                Event::Lost(&lease_of(&p.lease_id, h), why).emit(self.cfg.json);
            }
            self.release(&p.lease_id);
        }
        if now < self.retry_at {
            return;
        }
        // Bounded: each round sends one batch, or ends the reporting.
        for _ in 0..self.cfg.concurrency.div_ceil(super::buffer::BATCH_MAX) + 1 {
            if !self.report_once().await {
                break;
            }
        }
        if Instant::now() >= self.retry_at {
            self.heartbeat().await;
        }
    }

    /// Sends one batch of results; `false` when none was left or the
    /// server could not be reached.
    async fn report_once(&mut self) -> bool {
        let completions = self.results.completions();
        if !completions.is_empty() {
            let answer = self.api.complete(&completions).await;
            return self.on_answer(&completions, answer);
        }
        let failures = self.results.failures();
        if failures.is_empty() {
            return false;
        }
        let leases: Vec<String> = failures.iter().map(|(l, _)| l.clone()).collect();
        let answer = self.api.fail(&failures).await;
        self.on_answer(&leases, answer)
    }

    /// Applies the server's answer to a batch of reports.
    fn on_answer(&mut self, leases: &[String], answer: Result<Vec<ItemResult>, CallError>) -> bool {
        let items = match answer {
            Ok(items) => items,
            Err(e) => {
                let lost = matches!(e, CallError::LeaseLost(_));
                let refused = matches!(e, CallError::Refused(..));
                self.unreachable_or(&e);
                if lost || refused {
                    // The whole request was refused: no retry can help.
                    for l in leases {
                        self.refused(l, &e.to_string());
                    }
                    return true;
                }
                return false;
            }
        };
        self.reachable();
        for (l, r) in leases.iter().zip(items) {
            let Some(p) = self.results.remove(l) else {
                continue;
            };
            match r {
                ItemResult::Ok => {
                    if let Some(h) = self.held.get(l) {
                        let lease = lease_of(l, h);
                        match &p.report {
                            Report::Complete => Event::Completed(&lease).emit(self.cfg.json),
                            Report::Fail(e) => Event::Failed(&lease, e).emit(self.cfg.json),
                        }
                    }
                    self.release(l);
                }
                ItemResult::Lost(why) => {
                    self.results.push(p).ok();
                    self.lose(l, &format!("the server refused the report: {why}"));
                }
                ItemResult::Refused(why) => {
                    self.results.push(p).ok();
                    self.refused(l, &why);
                }
            }
        }
        true
    }

    fn refused(&mut self, lease_id: &str, why: &str) {
        if let Some(h) = self.held.get(lease_id) {
            Event::Refused(&lease_of(lease_id, h), why).emit(self.cfg.json);
        }
        self.results.remove(lease_id);
        self.release(lease_id);
    }

    /// Renews every lease whose heartbeat is due (one batch).
    async fn heartbeat(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.stage != Stage::Stopping && h.clock.beat_due(now))
            .map(|(l, _)| l.clone())
            .take(super::buffer::BATCH_MAX)
            .collect();
        if due.is_empty() {
            return;
        }
        let sent = Instant::now();
        match self.api.heartbeat(&due).await {
            Ok(items) => {
                self.reachable();
                for (l, r) in due.iter().zip(items) {
                    match r {
                        ItemResult::Ok => self.renewed(l, sent),
                        ItemResult::Lost(why) => self.lose(l, &format!("heartbeat refused: {why}")),
                        ItemResult::Refused(why) => {
                            tracing::warn!(lease = l, error = why, "heartbeat refused");
                            self.retry_beat(l, now);
                        }
                    }
                }
            }
            Err(e) => {
                self.unreachable_or(&e);
                for l in &due {
                    self.retry_beat(l, now);
                }
            }
        }
    }

    fn renewed(&mut self, lease_id: &str, sent: Instant) {
        if let Some(h) = self.held.get_mut(lease_id) {
            h.clock = LeaseClock::granted(sent, h.timeout);
            self.results.renew(lease_id, h.clock.ends);
        }
    }

    fn retry_beat(&mut self, lease_id: &str, now: Instant) {
        let wait = self.retry_at.saturating_duration_since(now);
        if let Some(h) = self.held.get_mut(lease_id) {
            h.clock.beat_failed(now, wait);
        }
    }

    fn reachable(&mut self) {
        if self.backoff.failures() > 0 {
            Event::Reachable.emit(self.cfg.json);
        }
        self.backoff.succeed();
        self.retry_at = Instant::now();
    }

    /// Backs off after an unreachable server (other errors are not the
    /// network's: no backoff).
    fn unreachable_or(&mut self, e: &CallError) {
        if let CallError::Unreachable(m) = e {
            let wait = self.backoff.fail(self.jitter.next_u64());
            self.retry_at = Instant::now() + wait;
            Event::Unreachable {
                error: m,
                retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            }
            .emit(self.cfg.json);
        }
    }

    /// The second signal: kill every command at once, tell the server
    /// once (briefly) that their attempts failed, and give up the rest.
    async fn kill_all(&mut self) {
        let running: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.stage == Stage::Running)
            .map(|(l, _)| l.clone())
            .collect();
        Event::Killed {
            running: running.len(),
        }
        .emit(self.cfg.json);
        kill_running_attempts();
        let why = "the worker was stopped at once (a second signal)".to_string();
        let items: Vec<(String, String)> =
            running.iter().map(|l| (l.clone(), why.clone())).collect();
        for chunk in items.chunks(super::buffer::BATCH_MAX) {
            let _ = tokio::time::timeout(LAST_REPORT_WITHIN, self.api.fail(chunk)).await;
        }
        self.held.clear();
    }
}

/// The job of a grant as the executor takes it; `Err` if the server sent
/// something unusable (the attempt then fails with that reason).
fn execution(g: &Grant) -> Result<(Execution, QueueName), String> {
    let bad = |what: &str, e: String| format!("the server sent an unusable {what}: {e}");
    let id = JobId::parse(&g.job.id).map_err(|e| bad("job id", e))?;
    let queue = QueueName::parse(&g.job.queue).map_err(|e| bad("queue name", e))?;
    let bytes = g
        .job
        .payload
        .as_ref()
        .map_or("null", |p| p.get())
        .as_bytes();
    let payload = Payload::from_json(bytes).map_err(|e| bad("payload", e))?;
    let exec = Execution {
        id,
        attempt: g.job.attempt,
        payload,
        timeout_ms: g.job.timeout_ms,
    };
    Ok((exec, queue))
}

fn lease_of<'a>(lease_id: &'a str, h: &'a Held) -> Lease<'a> {
    Lease {
        lease_id,
        id: &h.id,
        queue: &h.queue,
        attempt: h.attempt,
    }
}

/// Leases as many jobs as there are free slots, one long poll at a time,
/// until told to stop (a request in flight is then dropped, closing its
/// connection, so the server withdraws it).
async fn leaser(
    cfg: Arc<Config>,
    slots: Arc<Semaphore>,
    tx: mpsc::Sender<FromLeaser>,
    mut stop: watch::Receiver<bool>,
) {
    let mut api = Api::new(cfg.target.clone());
    let mut backoff = Backoff::default();
    let mut jitter = Jitter::new(seed().rotate_left(17));
    while !*stop.borrow() {
        let first = tokio::select! {
            biased;
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => p,
        };
        let Ok(first) = first else { break };
        first.forget();
        let mut n = 1;
        while n < super::buffer::BATCH_MAX && slots.try_acquire().map(|p| p.forget()).is_ok() {
            n += 1;
        }
        let answer = tokio::select! {
            biased;
            _ = stop.changed() => { slots.add_permits(n); break }
            a = api.lease(&cfg.queues, n, cfg.wait_ms, &cfg.name) => a,
        };
        let wait = match answer {
            Ok(mut grants) => {
                // A long poll waits before the server grants anything:
                // its leases start at the answer, not at the send.
                let received = Instant::now();
                backoff.succeed();
                if grants.len() > n {
                    tracing::warn!(
                        asked = n,
                        got = grants.len(),
                        "the server granted more leases than asked; the rest expire"
                    );
                    grants.truncate(n);
                }
                slots.add_permits(n - grants.len());
                if !grants.is_empty()
                    && tx
                        .send(FromLeaser::Granted(received, grants))
                        .await
                        .is_err()
                {
                    break;
                }
                continue;
            }
            Err(CallError::Unreachable(m)) => {
                slots.add_permits(n);
                let wait = backoff.fail(jitter.next_u64());
                Event::Unreachable {
                    error: &m,
                    retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                }
                .emit(cfg.json);
                wait
            }
            Err(e) => {
                let _ = tx
                    .send(FromLeaser::Fatal(format!(
                        "the server refused to lease: {e}"
                    )))
                    .await;
                break;
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
