//! Beanstalk-style connections through [`beaver_runtime::Session`], the
//! type the beanstalkd server keeps per connection, and their oracle.
//!
//! Some seeds ([`SessionPlan`]) run a few connection tasks beside the
//! workload. Each puts jobs with a TTR far beyond anything the run needs
//! into a tube (queue) of its own that neither the built-in pool nor the
//! external workers serve, then opens connections one after another: a
//! connection reserves (at once or with a wait), deletes, releases (new
//! priority, maybe a delay), buries and touches its jobs, and sometimes
//! closes while it holds some (a client that disconnects); the server
//! may crash while it holds them. When the faults stop, the connections
//! only reserve and delete, until every job of the tube is done.
//!
//! Oracle, checked as soon as a connection's close returns: no current
//! lease names that connection, and each job it held, unless the server
//! restarted meanwhile or another connection reserved it since, is ready
//! again (pending, due now) with the priority it had: it did not wait for
//! its TTR. A job whose give-back was acknowledged and that nobody took
//! since cannot be anything but pending.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use beaver_core::{
    JobId, JobSpec, JobState, LeaseView, LeasedJob, Payload, QueueName, Rejection,
    UNLIMITED_ATTEMPTS,
};
use beaver_io::DetRng;
use beaver_runtime::{Client, Finish, Returned, Session};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::external::now_ms;
use crate::run::{Slot, slot_get};
use crate::world::Shared;

/// The tube the connections use (a queue nothing else serves).
pub const TUBE: &str = "bs";
/// The TTR of the connections' jobs: beyond any run, so a job that is
/// not given back at a close waits past the convergence bound.
pub const TTR_MS: u64 = 12 * 3_600_000;
/// Bounds: connections per task while the faults last (each does at
/// most [`SessionPlan::ops`] operations), drain steps per task.
const CONNECTIONS_MAX: u32 = 1_000;
const DRAIN_STEPS_MAX: u32 = 200_000;
/// How long one request may take before the connection gives up on it.
const ASK_WAIT: Duration = Duration::from_secs(30);

/// What a seed decides about beanstalk-style connections.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// Connection tasks at once.
    pub tasks: u32,
    /// Jobs each task puts before the faults stop.
    pub puts: u32,
    /// Operations of one connection before it closes (at most).
    pub ops: u32,
    /// Mean simulated time between a connection's operations.
    pub gap_ms_mean: f64,
    /// Weights: put, reserve, delete, release, bury, touch, close.
    pub weights: [u32; 7],
    /// A reserve's wait (0: answered at once).
    pub wait_ms: u64,
    /// The longest delay a release asks for.
    pub delay_ms_max: u64,
}

fn pick<T: Copy>(rng: &mut DetRng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

impl SessionPlan {
    /// Draws a plan.
    pub fn draw(r: &mut DetRng) -> SessionPlan {
        SessionPlan {
            tasks: 1 + r.below(3) as u32,
            puts: pick(r, &[5, 15, 40]),
            ops: pick(r, &[5, 20, 60]),
            gap_ms_mean: pick(r, &[5.0, 30.0, 150.0]),
            weights: [
                pick(r, &[2, 4]),
                pick(r, &[4, 8]),
                pick(r, &[1, 3]),
                pick(r, &[1, 3]),
                pick(r, &[0, 1]),
                pick(r, &[0, 1, 2]),
                pick(r, &[1, 2]),
            ],
            wait_ms: pick(r, &[0, 20, 200]),
            delay_ms_max: pick(r, &[0, 100, 500]),
        }
    }
}

/// What the connections' oracle remembers of a run.
#[derive(Debug, Default)]
pub struct SessionWorld {
    /// The holder of each job's latest reservation, by job id.
    pub last_holder: BTreeMap<String, String>,
    /// Requests to requeue every dead job sent so far (by the workload's
    /// clients): one may requeue a job a connection buried.
    pub requeues_of_all_dead: u64,
    /// `reserve-job`s sent so far, by job id: a connection may reserve a
    /// job it buried long ago, which another connection buried since.
    pub reserve_jobs: BTreeMap<String, u64>,
    /// The earliest simulated time each delayed job may be reserved again:
    /// when its put, or its release that was acknowledged, was sent, plus
    /// the delay. Taken out by its next reservation, which must not come
    /// sooner (a delay never ends early, whatever the clock's rounding).
    pub not_before: BTreeMap<String, Instant>,
}

/// A job a connection buried (acknowledged), with what could revive it
/// that had been sent before its bury was.
#[derive(Debug, Clone)]
struct Buried {
    id: String,
    /// [`SessionWorld::requeues_of_all_dead`] then.
    requeues: u64,
    /// Its count in [`SessionWorld::reserve_jobs`] then.
    reserve_jobs: u64,
}

impl Buried {
    /// Job `id`, about to be buried, with what had been sent by then.
    fn before_bury(id: &str, w: &SessionWorld) -> Buried {
        Buried {
            id: id.to_owned(),
            requeues: w.requeues_of_all_dead,
            reserve_jobs: w.reserve_jobs_of(id),
        }
    }

    /// Whether nothing but the connection's own `reserve-job` (already
    /// counted) could have revived the job since.
    fn untouched(&self, w: &SessionWorld) -> bool {
        w.requeues_of_all_dead == self.requeues
            && w.reserve_jobs_of(&self.id) == self.reserve_jobs + 1
    }
}

impl SessionWorld {
    /// The `reserve-job`s of job `id` sent so far.
    fn reserve_jobs_of(&self, id: &str) -> u64 {
        self.reserve_jobs.get(id).copied().unwrap_or(0)
    }
}

/// Everything one connection task needs (cheap to clone).
#[derive(Clone)]
struct Ctx {
    plan: SessionPlan,
    /// Retention may purge dead jobs (see [`SessionRun::start`]).
    purges_dead: bool,
    world: Shared,
    slot: Slot,
    /// The faults stopped: only reserve and delete.
    quiet: Arc<AtomicBool>,
    /// The run is over: close and stop.
    stop: Arc<AtomicBool>,
}

/// The connection tasks of a run.
pub struct SessionRun {
    ctx: Ctx,
    tasks: Vec<JoinHandle<()>>,
}

impl SessionRun {
    /// Starts the connection tasks.
    /// `purges_dead`: the engine's retention may purge dead jobs during
    /// the run (then a `reserve-job` of a buried job may find it gone).
    pub fn start(
        seed: u64,
        plan: SessionPlan,
        world: Shared,
        slot: Slot,
        purges_dead: bool,
    ) -> SessionRun {
        let ctx = Ctx {
            plan,
            purges_dead,
            world,
            slot,
            quiet: Arc::default(),
            stop: Arc::default(),
        };
        let tasks = (0..ctx.plan.tasks)
            .map(|n| {
                let rng = DetRng::new(seed ^ 0xb5_5e55_0000 ^ u64::from(n));
                tokio::spawn(task(ctx.clone(), n, rng))
            })
            .collect();
        SessionRun { ctx, tasks }
    }

    /// The faults stopped: connections only reserve and delete from now on.
    pub fn settle(&self) {
        self.ctx.quiet.store(true, Ordering::Relaxed);
    }

    /// Stops the tasks (each closes its connection) and waits for them,
    /// so no client handle outlives the run; false if one did not stop.
    pub async fn stop(&mut self) -> bool {
        self.ctx.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It closed (a client disconnect, or it had done its operations).
    Closed,
    /// The server went away under it.
    ServerGone,
    /// The run is over.
    Stop,
}

/// One connection as the harness sees it: the runtime's session, the
/// jobs it holds (id, priority when reserved) and the client it uses.
struct Conn {
    session: Session,
    jobs: BTreeMap<u64, (String, i32)>,
    /// Jobs this connection buried: its next `reserve` is a `reserve-job`
    /// of the newest.
    buried: Vec<Buried>,
    client: Client,
    /// The engine start the client belongs to.
    start: u64,
    name: String,
}

/// Connections one after another until the run stops: at most
/// [`CONNECTIONS_MAX`] while the faults last, then draining ones.
async fn task(ctx: Ctx, n: u32, mut rng: DetRng) {
    let mut put = 0;
    let mut drained = 0;
    let mut opened = 0;
    while drained < DRAIN_STEPS_MAX {
        let quiet = ctx.quiet.load(Ordering::Relaxed);
        if !quiet && opened >= CONNECTIONS_MAX {
            drained += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Some((client, start)) = wait_client(&ctx).await else {
            return;
        };
        opened += 1;
        let name = format!("bs{n}.{opened}");
        let mut conn = Conn {
            session: Session::new(client.clone(), name.clone()),
            jobs: BTreeMap::new(),
            buried: Vec::new(),
            client,
            start,
            name,
        };
        let end = if quiet {
            drain(&ctx, &mut conn, &mut drained).await
        } else {
            drive(&ctx, &mut conn, n, &mut put, &mut rng).await
        };
        close(&ctx, conn, end).await;
        match end {
            End::Stop => return,
            // Until the harness has seen the engine go, the slot may
            // still hand out its client.
            End::ServerGone => tokio::time::sleep(Duration::from_millis(20)).await,
            End::Closed => {}
        }
    }
}

/// The current engine's client and its start number, once there is one;
/// `None` once the run stops.
async fn wait_client(ctx: &Ctx) -> Option<(Client, u64)> {
    loop {
        if ctx.stop.load(Ordering::Relaxed) || ctx.world.lock().violation.is_some() {
            return None;
        }
        if let Some(c) = slot_get(&ctx.slot) {
            return Some((c, ctx.world.lock().engine_starts));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection's operations while faults happen.
async fn drive(ctx: &Ctx, c: &mut Conn, n: u32, put: &mut u32, rng: &mut DetRng) -> End {
    for _ in 0..ctx.plan.ops {
        let gap = rng.exponential(ctx.plan.gap_ms_mean);
        tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64)).await;
        if ctx.stop.load(Ordering::Relaxed) {
            return End::Stop;
        }
        if ctx.quiet.load(Ordering::Relaxed) || ctx.world.lock().violation.is_some() {
            return End::Closed;
        }
        let r = match weighted(rng, &ctx.plan.weights) {
            0 if *put < ctx.plan.puts => {
                *put += 1;
                put_job(ctx, c, format!("b{n}-{put}"), rng).await
            }
            1 => match c.buried.pop() {
                Some(b) => reserve_buried(ctx, c, &b).await,
                None => reserve(ctx, c, ctx.plan.wait_ms).await,
            },
            6 => return End::Closed,
            op @ 2..=5 => match held_job(c, rng) {
                Some(job) => end_one(ctx, c, job, op, rng).await,
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if gone(&r) {
            return End::ServerGone;
        }
    }
    End::Closed
}

/// Once the faults stopped: deletes what it holds, then reserves (with
/// a wait) and deletes until the run stops or the server goes away.
async fn drain(ctx: &Ctx, c: &mut Conn, steps: &mut u32) -> End {
    while *steps < DRAIN_STEPS_MAX {
        *steps += 1;
        if ctx.stop.load(Ordering::Relaxed) || ctx.world.lock().violation.is_some() {
            return End::Stop;
        }
        let r = match c.jobs.keys().next().copied() {
            Some(job) => delete(ctx, c, job).await,
            None => reserve(ctx, c, ctx.plan.wait_ms.max(50)).await,
        };
        if gone(&r) {
            return End::ServerGone;
        }
        if r.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    End::Stop
}

/// Whether a request's answer says the server went away.
fn gone(r: &Result<(), Rejection>) -> bool {
    matches!(r, Err(Rejection::Stopping))
}

fn weighted(rng: &mut DetRng, w: &[u32]) -> usize {
    let total: u32 = w.iter().sum();
    let mut x = rng.below(u64::from(total.max(1))) as u32;
    for (i, &wi) in w.iter().enumerate() {
        if x < wi {
            return i;
        }
        x -= wi;
    }
    w.len()
}

fn held_job(c: &Conn, rng: &mut DetRng) -> Option<u64> {
    let n = c.jobs.len() as u64;
    (n > 0).then(|| c.jobs.keys().nth(rng.below(n) as usize).copied())?
}

/// `put`: one job in the tube, with the long TTR.
async fn put_job(ctx: &Ctx, c: &Conn, id: String, rng: &mut DetRng) -> Result<(), Rejection> {
    let Ok(payload) = Payload::from_json(format!("{{\"bs\":\"{id}\"}}").as_bytes()) else {
        return Ok(());
    };
    let mut spec = JobSpec::new(payload);
    spec.id = JobId::from_client(&id).ok();
    spec.queue = QueueName::parse(TUBE).ok();
    spec.priority = rng.below(4) as i32;
    spec.timeout_ms = Some(TTR_MS);
    // As `beaver beanstalkd` puts them: a job is never given up.
    spec.max_attempts = Some(UNLIMITED_ATTEMPTS);
    if rng.chance(0.2) {
        spec.delay_ms = rng.below(300);
    }
    {
        let mut w = ctx.world.lock();
        w.submitted.insert(id.clone());
        if spec.delay_ms > 0 {
            let due = Instant::now() + Duration::from_millis(spec.delay_ms);
            w.sessions.not_before.insert(id.clone(), due);
        }
    }
    let r = ask(c.client.enqueue(vec![spec])).await;
    let mut w = ctx.world.lock();
    w.log(format!(
        "{} put {id} -> {:?}",
        c.name,
        r.as_ref().map(|_| ())
    ));
    if let Ok(done) = &r {
        w.acked.extend(done.iter().map(|e| e.id.to_string()));
    }
    r.map(|_| ())
}

/// `reserve`: one job of the tube, waiting up to `wait_ms`.
async fn reserve(ctx: &Ctx, c: &mut Conn, wait_ms: u64) -> Result<(), Rejection> {
    let Ok(tube) = QueueName::parse(TUBE) else {
        return Ok(());
    };
    let wait = (wait_ms > 0).then(|| Duration::from_millis(wait_ms));
    let r = ask(c.session.reserve(vec![tube], vec![0], wait)).await;
    if let Ok(Some(j)) = &r {
        held(ctx, c, j);
    }
    r.map(|_| ())
}

/// `reserve-job` of a job this connection buried: kicked and reserved as
/// one request, so no connection waiting on the tube takes it first.
/// Refused as not found or changing, with no retention purging dead jobs
/// and nothing else sent since before its bury that could revive it (see
/// [`Buried::untouched`]), it is a violation (on this engine: a restart
/// closes the connection).
async fn reserve_buried(ctx: &Ctx, c: &mut Conn, b: &Buried) -> Result<(), Rejection> {
    let id = b.id.as_str();
    let Ok(job) = JobId::from_client(id) else {
        return Ok(());
    };
    *ctx.world
        .lock()
        .sessions
        .reserve_jobs
        .entry(b.id.clone())
        .or_default() += 1;
    let r = ask(c.session.reserve_job(job)).await;
    ctx.world.lock().log(format!(
        "{} reserve-job {id} (buried) -> {:?}",
        c.name,
        r.as_ref().map(|j| j.lease_id)
    ));
    match r {
        Ok(j) => {
            // A delayed job may be reserved by id before its delay is over
            // (a requeue may have revived the job, and a connection
            // released it with a delay since).
            ctx.world.lock().sessions.not_before.remove(id);
            held(ctx, c, &j);
            ctx.world.lock().mark("bs: reserved a buried job by id");
            Ok(())
        }
        Err(e @ Rejection::Stopping) => Err(e),
        // The log may still refuse the requeue (a full or failing disk).
        Err(e @ (Rejection::NotFound { .. } | Rejection::Conflict { .. }))
            if !ctx.purges_dead && b.untouched(&ctx.world.lock().sessions) =>
        {
            ctx.world.lock().violate(format!(
                "{}: reserve-job of {id}, which it buried, was refused: {e:?}",
                c.name
            ));
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// Notes a job the connection reserved.
fn held(ctx: &Ctx, c: &mut Conn, j: &LeasedJob) {
    let id = j.job.id.to_string();
    c.jobs.insert(j.job.seq, (id.clone(), j.job.priority));
    let mut w = ctx.world.lock();
    if let Some(due) = w.sessions.not_before.remove(&id) {
        let now = Instant::now();
        if now < due {
            let early = due - now;
            w.violate(format!(
                "{} reserved {id} {early:?} before its delay was over",
                c.name
            ));
        }
        w.mark("bs: reserved a job once its delay was over");
    }
    w.log(format!(
        "{} reserved {id} (#{}) lease {} attempt {}",
        c.name, j.job.seq, j.lease_id, j.job.attempt
    ));
    w.mark("bs: reserved");
    if w.sessions.last_holder.insert(id, c.name.clone()).is_some() {
        w.mark("bs: a job another connection held was reserved again");
    }
}

/// `delete`, `release`, `bury` or `touch` (ops 2 to 5) of a held job.
async fn end_one(
    ctx: &Ctx,
    c: &mut Conn,
    job: u64,
    op: usize,
    rng: &mut DetRng,
) -> Result<(), Rejection> {
    let priority = Some(rng.below(4) as i32);
    let mut delay = None;
    let (what, mark, how) = match op {
        2 => return delete(ctx, c, job).await,
        3 => {
            let delay_ms = rng.below(ctx.plan.delay_ms_max + 1);
            let id = c.jobs.get(&job).map(|(id, _)| id.clone());
            delay = id.filter(|_| delay_ms > 0).map(|id| (id, delay_ms));
            let how = Finish::Release { priority, delay_ms };
            (
                format!("release (delay {delay_ms} ms)"),
                "bs: released",
                how,
            )
        }
        4 => ("bury".to_owned(), "bs: buried", Finish::Bury { priority }),
        _ => {
            let r = ask_opt(c.session.touch(job)).await.map(|_: u64| ());
            return settled(ctx, c, job, "touch", r, "bs: touched");
        }
    };
    let buried = match c.jobs.get(&job) {
        Some((id, _)) if op == 4 => Some(Buried::before_bury(id, &ctx.world.lock().sessions)),
        _ => None,
    };
    let sent = Instant::now();
    let r = ask_opt(c.session.end(job, how, |_| {})).await;
    if let (Ok(()), Some(b)) = (&r, buried) {
        c.buried.push(b);
    }
    if let (Ok(()), Some((id, ms))) = (&r, delay) {
        let due = sent + Duration::from_millis(ms);
        ctx.world.lock().sessions.not_before.insert(id, due);
    }
    settled(ctx, c, job, &what, r, mark)
}

/// `delete` of a held job: its lease completes it.
async fn delete(ctx: &Ctx, c: &mut Conn, job: u64) -> Result<(), Rejection> {
    let r = ask_opt(c.session.end(job, Finish::Complete, |_| {})).await;
    settled(ctx, c, job, "delete", r, "bs: deleted a reserved job")
}

/// Notes an answer; the connection holds the job as long as its session
/// does (a refusal that leaves the lease current keeps it).
fn settled(
    ctx: &Ctx,
    c: &mut Conn,
    job: u64,
    what: &str,
    r: Result<(), Rejection>,
    mark: &'static str,
) -> Result<(), Rejection> {
    if c.session.get(job).is_none() {
        c.jobs.remove(&job);
    }
    note(ctx, c, job, what, &r, mark);
    r
}

fn note(ctx: &Ctx, c: &Conn, job: u64, what: &str, r: &Result<(), Rejection>, mark: &'static str) {
    let mut w = ctx.world.lock();
    w.log(format!("{} {what} #{job} -> {r:?}", c.name));
    if r.is_ok() {
        w.mark(mark);
    }
}

/// A request with a bound: unanswered in [`ASK_WAIT`], the server is
/// taken for gone.
async fn ask<T>(f: impl Future<Output = Result<T, Rejection>>) -> Result<T, Rejection> {
    tokio::time::timeout(ASK_WAIT, f)
        .await
        .unwrap_or(Err(Rejection::Stopping))
}

/// [`ask`] of a request that may not apply (`None`: not held, Ok).
async fn ask_opt<T: Default>(
    f: impl Future<Output = Option<Result<T, Rejection>>>,
) -> Result<T, Rejection> {
    match tokio::time::timeout(ASK_WAIT, f).await {
        Ok(Some(r)) => r,
        Ok(None) => Ok(T::default()),
        Err(_) => Err(Rejection::Stopping),
    }
}

/// Closes the connection through its session, then checks at once that
/// it holds nothing any more and its jobs are ready again.
async fn close(ctx: &Ctx, c: Conn, end: End) {
    let held: Vec<(u64, u64)> = c
        .session
        .reservations()
        .map(|(j, r)| (j, r.lease))
        .collect();
    let (jobs, name, start) = (c.jobs, c.name, c.start);
    // Not cut short: a close left half done would leave jobs held for
    // their TTR. Every give-back is answered, or refused once the engine
    // is gone.
    let returned = c.session.close(|_, _| {}).await;
    drop(c.client);
    {
        let mut w = ctx.world.lock();
        w.log(format!(
            "{name} closed ({end:?}) holding {held:?} -> {returned:?}"
        ));
        if !held.is_empty() && end == End::ServerGone {
            w.mark("bs: server gone while a connection held reservations");
        }
    }
    if held.is_empty() || end == End::Stop {
        return;
    }
    check_closed(ctx, &name, start, &jobs, &returned).await;
}

/// The oracle, right after a close returned (see the module's doc).
async fn check_closed(
    ctx: &Ctx,
    name: &str,
    start: u64,
    jobs: &BTreeMap<u64, (String, i32)>,
    returned: &[Returned],
) {
    let Some(client) = slot_get(&ctx.slot) else {
        return; // down: every lease went with it
    };
    let Ok(Ok(leases)) = tokio::time::timeout(ASK_WAIT, client.list_leases()).await else {
        return;
    };
    if !no_lease_left(ctx, name, &leases.leases, returned) {
        return;
    }
    if ctx.world.lock().engine_starts != start {
        return; // the server restarted: every lease went with it
    }
    for (job, (id, priority)) in jobs {
        let acked = returned.iter().any(|r| r.job == *job && r.result.is_ok());
        if acked {
            check_ready(ctx, &client, name, id, *priority).await;
        }
    }
}

/// No current lease names the closed connection `name`, unless the
/// engine refused to give it back (the job then waits for its TTR);
/// false after a violation.
fn no_lease_left(ctx: &Ctx, name: &str, leases: &[LeaseView], returned: &[Returned]) -> bool {
    let Some(l) = leases.iter().find(|l| l.holder == name) else {
        return true;
    };
    let mut w = ctx.world.lock();
    if returned
        .iter()
        .any(|r| r.lease == l.lease_id && r.result.is_err())
    {
        w.mark("bs: a give-back on close refused (the job waits for its TTR)");
        return true;
    }
    w.violate(format!(
        "connection {name} closed, yet its lease {} of job {} is still current (until {}): a closed connection's reservation was not given back",
        l.lease_id, l.id, l.lease_until
    ));
    false
}

/// A job whose give-back on close was acknowledged: unless another
/// connection reserved it since, it is pending, due now, its priority kept.
async fn check_ready(ctx: &Ctx, client: &Client, name: &str, id: &str, priority: i32) {
    let Ok(jid) = JobId::from_client(id) else {
        return;
    };
    let Ok(Ok(got)) = tokio::time::timeout(ASK_WAIT, client.get(jid)).await else {
        return;
    };
    let now = now_ms();
    let mut w = ctx.world.lock();
    if w.sessions.last_holder.get(id).map(String::as_str) != Some(name) {
        return; // handed to another connection since
    }
    let seen = got.as_ref().map(|j| (j.state, j.run_at, j.priority));
    match seen {
        Some((JobState::Pending, run_at, p)) if run_at <= now && p == priority => {
            w.mark("bs: closed holding jobs, each ready again at once");
        }
        // Taken by a reserve whose answer is still on its way.
        Some((JobState::InFlight, _, _)) => {}
        _ => w.violate(format!(
            "connection {name} closed and its give-back of {id} was acknowledged, but the job is {seen:?} (state, run at, priority) at {now}: not ready at once with priority {priority}"
        )),
    }
}
