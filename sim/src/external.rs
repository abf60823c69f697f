//! External workers as simulated nodes, and their oracles.
//!
//! Some seeds ([`ExtPlan`]) run worker nodes that reach the engine over
//! madsim's simulated network, so partitions mean what they mean in
//! production: requests and replies are lost while a worker is cut off.
//! The engine's node runs a small request/response shim ([`serve`]) that
//! answers each request through the in-process client; a worker leases
//! (with or without a long-poll wait, several queues, batches), heartbeats,
//! completes, fails (retry in N, by policy, or give up), stalls past its
//! lease, or dies holding it. A chaos task partitions and crashes workers
//! and pauses, resumes and purges queues, until the faults stop.
//!
//! Oracles, checked as the shim answers (the model is folded to the durable
//! LSN, see `world`): a lease is answered only once its dispatch is durable
//! and no attempt is handed out twice; a renewal only of an attempt that has
//! not ended; an acknowledged complete or fail is the durable outcome of the
//! lease's own attempt; after a `lease_lost` refusal, the refused outcome
//! never becomes durable. A worker that stalled past its lease's expiry must
//! be refused. Liveness is the harness's convergence check.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use beaver_core::{Config, JobState, LeasedJob, Op, QueueName, Record, Rejection, Retry};
use beaver_io::DetRng;
use beaver_runtime::QueuePause;
use madsim::net::{Endpoint, NetSim};
use madsim::runtime::{Handle, NodeHandle};
use tokio::sync::{Semaphore, mpsc};

use crate::run::{Slot, slot_get};
use crate::world::{Shared, World};

const SERVER_PORT: u16 = 7_000;
/// The tag requests travel under; replies use the tag the request names.
const TAG_REQUEST: u64 = 0;
/// Bounds: lease requests per worker incarnation, tries of one complete
/// or fail, chaos rounds.
const LEASE_CALLS_MAX: u32 = 50_000;
const END_TRIES_MAX: u32 = 8;
const CHAOS_ROUNDS_MAX: u32 = 200;

/// How a worker's error text ends when it gives up (dead now): the
/// model allows a job dead before its last attempt only then.
pub const GIVE_UP: &str = "(gives up)";

/// The queues the simulated workload uses.
const QUEUES: [&str; 3] = ["default", "q1", "q2"];

/// What a seed decides about external workers.
#[derive(Debug, Clone)]
pub struct ExtPlan {
    /// Worker nodes.
    pub workers: u32,
    /// Jobs one worker holds at once.
    pub concurrency: u32,
    /// The queues they lease from (every queue the pool does not serve).
    pub queues: Vec<String>,
    /// Most jobs per lease request.
    pub batch_max: u32,
    /// Long-poll wait of a lease request (0: answered at once).
    pub wait_ms: u64,
    /// Outcome weights: complete, fail and retry, fail and give up, stall
    /// past the lease, die holding it.
    pub outcomes: [u32; 5],
    /// Chance a job works past its timeout, renewing with heartbeats.
    pub long_work: f64,
    /// Mean simulated time between chaos rounds.
    pub chaos_gap_ms: f64,
    /// Chaos weights: partition a worker, crash a worker, pause or resume
    /// a queue, purge a queue.
    pub chaos: [u32; 4],
    /// The engine's lease slack (a stalled worker waits past it).
    pub slack_ms: u64,
}

fn pick<T: Copy>(rng: &mut DetRng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

impl ExtPlan {
    /// Draws a plan, and which queues the built-in pool serves.
    pub fn draw(r: &mut DetRng, q: &mut Config) -> ExtPlan {
        let served: &[&str] = pick(r, &[&QUEUES[..], &["default"][..], &[][..]]);
        let name = |s: &&str| QueueName::parse(s).ok();
        q.pool_queues = match served.len() {
            3 => None,
            _ => Some(served.iter().filter_map(name).collect()),
        };
        let external: Vec<String> = QUEUES
            .iter()
            .filter(|s| served.len() == 3 || !served.contains(s))
            .map(|s| (*s).to_owned())
            .collect();
        ExtPlan {
            workers: 1 + r.below(3) as u32,
            concurrency: pick(r, &[1, 2, 4]),
            queues: external,
            batch_max: pick(r, &[1, 3, 10]),
            wait_ms: pick(r, &[0, 30, 300]),
            outcomes: [
                pick(r, &[10, 20]),
                pick(r, &[0, 2, 5]),
                pick(r, &[0, 1]),
                pick(r, &[0, 1, 3]),
                pick(r, &[0, 1]),
            ],
            long_work: pick(r, &[0.0, 0.1, 0.3]),
            chaos_gap_ms: pick(r, &[50.0, 200.0]),
            chaos: [
                pick(r, &[0, 2, 4]),
                pick(r, &[0, 1, 2]),
                pick(r, &[0, 1, 2]),
                pick(r, &[0, 1]),
            ],
            slack_ms: q.lease_slack_ms,
        }
    }
}

/// How an attempt ended, as the durable log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A complete record.
    Completed,
    /// A fail record, with its error text.
    Failed(String),
}

/// A job's attempt: (id, generation, attempt).
type Key = (String, u32, u32);

/// What the external-worker oracles remember of a run.
#[derive(Debug, Default)]
pub struct ExtWorld {
    /// The run has external workers (the rest is kept only then).
    pub enabled: bool,
    /// Where the engine's current incarnation listens.
    pub server: Option<SocketAddr>,
    /// Leases handed out, with their attempt.
    pub leases: BTreeMap<u64, Key>,
    /// The durable outcome of each attempt.
    pub outcomes: BTreeMap<Key, Ended>,
    /// Attempts whose completion was refused as lost before any completion
    /// of them was durable: none may become durable later.
    pub refused_completions: BTreeSet<Key>,
    /// Error texts of failures refused as lost (each names its lease).
    pub refused_failures: BTreeSet<String>,
    /// Queues paused for a while, by acknowledged request: when it was
    /// acknowledged, and the soonest its pause may end (the request's
    /// sending plus its length). A pause or resume sent since drops the
    /// entry: it may apply, or not.
    pub timed_pauses: BTreeMap<String, (tokio::time::Instant, tokio::time::Instant)>,
}

/// A record of the durable log, folded: remembers outcomes and checks
/// that no refused outcome takes effect.
pub fn folded(w: &mut World, r: &Record) {
    if !w.ext.enabled {
        return;
    }
    let (id, attempt, ended) = match &r.op {
        Op::Complete { id, attempt } => (id, *attempt, Ended::Completed),
        Op::Fail {
            id, attempt, error, ..
        } => (id, *attempt, Ended::Failed(error.to_string())),
        _ => return,
    };
    let generation = w.model.generations.get(id.as_str()).copied().unwrap_or(0);
    let key = (id.to_string(), generation, attempt);
    let refused = match &ended {
        Ended::Completed => w.ext.refused_completions.contains(&key),
        Ended::Failed(e) => {
            if e.starts_with("lease ") && e.contains("expired") {
                w.mark("ext: lease expired");
            }
            w.ext.refused_failures.contains(e)
        }
    };
    if refused {
        w.violate(format!(
            "LSN {}: {ended:?} of {id} attempt {attempt} is durable, but it was refused as lease_lost",
            r.lsn
        ));
    }
    w.ext.outcomes.insert(key, ended);
}

/// A request from a worker.
#[derive(Debug)]
enum Req {
    Lease {
        queues: Vec<QueueName>,
        max: u32,
        wait_ms: u64,
        holder: String,
    },
    Heartbeat(u64),
    Complete(u64),
    Fail {
        lease: u64,
        error: String,
        retry: Retry,
    },
}

/// A request and the tag its reply goes under.
#[derive(Debug)]
struct Envelope {
    reply_tag: u64,
    req: Req,
}

/// The engine's reply.
#[derive(Debug)]
enum Resp {
    Leased(Result<Vec<LeasedJob>, Rejection>),
    Renewed(Result<u64, Rejection>),
    Ended(Result<(), Rejection>),
}

/// The address of the engine's incarnation `n` (madsim never gives a
/// killed node's address to a new node, so each has its own).
pub fn server_ip(n: u32) -> IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 1 + a, b, c))
}

fn worker_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + n as u8))
}

/// The engine node's shim: answers workers' requests through the client
/// of the current incarnation (none yet: the request is dropped, the
/// worker times out and asks again).
pub async fn serve(slot: Slot, world: Shared, ip: IpAddr) {
    let addr = SocketAddr::new(ip, SERVER_PORT);
    world.lock().ext.server = Some(addr);
    let ep = match Endpoint::bind(addr).await {
        Ok(ep) => Arc::new(ep),
        Err(e) => {
            return world
                .lock()
                .violate(format!("harness: shim bind failed: {e}"));
        }
    };
    while let Ok((msg, from)) = ep.recv_from_raw(TAG_REQUEST).await {
        let Ok(env) = msg.downcast::<Envelope>() else {
            continue;
        };
        let Some(client) = slot_get(&slot) else {
            continue;
        };
        let (world, ep) = (world.clone(), ep.clone());
        tokio::spawn(async move {
            let resp = answer(&client, &world, env.req).await;
            drop(client);
            let _ = ep.send_to_raw(from, env.reply_tag, Box::new(resp)).await;
        });
    }
}

async fn answer(client: &beaver_runtime::Client, world: &Shared, req: Req) -> Resp {
    match req {
        Req::Lease {
            queues,
            max,
            wait_ms,
            holder,
        } => {
            let wait = (wait_ms > 0).then(|| Duration::from_millis(wait_ms));
            let asked = tokio::time::Instant::now();
            let r = client.lease(queues, max, wait, &holder).await;
            leased(&mut world.lock(), &r, wait_ms, asked);
            Resp::Leased(r)
        }
        Req::Heartbeat(lease) => {
            let r = client.heartbeat(lease, None).await;
            renewed(&mut world.lock(), lease, &r);
            Resp::Renewed(r)
        }
        Req::Complete(lease) => {
            let r = client.complete(lease).await;
            ended(&mut world.lock(), lease, Ended::Completed, &r);
            Resp::Ended(r)
        }
        Req::Fail {
            lease,
            error,
            retry,
        } => {
            let r = client.fail(lease, error.clone(), retry).await;
            ended(&mut world.lock(), lease, Ended::Failed(error), &r);
            Resp::Ended(r)
        }
    }
}

/// `Err` if `j` came out of a queue paused for a while, by a pause
/// acknowledged before the lease was `asked`, before that pause has
/// lasted (counted from the pause request's sending).
fn outside_timed_pause(
    w: &mut World,
    j: &LeasedJob,
    asked: tokio::time::Instant,
) -> Result<(), String> {
    let queue = j.job.queue.as_str();
    let Some(&(acked, not_before)) = w.ext.timed_pauses.get(queue) else {
        return Ok(());
    };
    if acked > asked || asked >= not_before {
        return Ok(());
    }
    w.mark("ext: a lease waited out a timed pause");
    let now = tokio::time::Instant::now();
    if now < not_before {
        return Err(format!(
            "lease {} of {} answered {:?} before the pause of queue {queue} was over",
            j.lease_id,
            j.job.id,
            not_before - now
        ));
    }
    Ok(())
}

/// A lease answered: each attempt's dispatch is durable, no attempt is
/// handed out twice (to a worker or to the pool), and none of a queue
/// whose timed pause was acknowledged before the request was `asked`
/// comes before that pause has lasted.
fn leased(
    w: &mut World,
    r: &Result<Vec<LeasedJob>, Rejection>,
    wait_ms: u64,
    asked: tokio::time::Instant,
) {
    let Ok(jobs) = r else { return };
    if jobs.is_empty() {
        return;
    }
    w.mark("ext: lease granted");
    if jobs.len() > 1 {
        w.mark("ext: batch lease (several jobs)");
    }
    if wait_ms > 0 {
        w.mark("ext: long-poll lease answered with jobs");
    }
    for j in jobs {
        if let Err(broken) = outside_timed_pause(w, j, asked) {
            return w.violate(broken);
        }
        let (id, attempt) = (j.job.id.as_str(), j.job.attempt);
        let generation = w.model.generations.get(id).copied().unwrap_or(0);
        let key = (id.to_owned(), generation, attempt);
        w.log(format!(
            "ext lease {} -> {id} attempt {attempt}",
            j.lease_id
        ));
        match w.model.jobs.get(id) {
            Some(m) if m.state == JobState::InFlight && m.attempt == attempt => {}
            other => {
                let had = other.map(|m| (m.state, m.attempt));
                return w.violate(format!(
                    "lease {} of {id} attempt {attempt} answered, but its dispatch is not durable (the durable state has {had:?})",
                    j.lease_id
                ));
            }
        }
        let seen = w.executions.entry(key.clone()).or_default();
        *seen += 1;
        if *seen > 1 {
            return w.violate(format!("{id} attempt {attempt} handed out twice"));
        }
        w.ext.leases.insert(j.lease_id, key);
    }
}

/// A heartbeat answered: a renewal only of an attempt that has not ended.
fn renewed(w: &mut World, lease: u64, r: &Result<u64, Rejection>) {
    match r {
        Ok(_) => {
            let Some(key) = w.ext.leases.get(&lease).cloned() else {
                return w.violate(format!("heartbeat renewed lease {lease}, never handed out"));
            };
            let (id, generation, attempt) = &key;
            let live = w.model.generations.get(id) == Some(generation)
                && w.model
                    .jobs
                    .get(id)
                    .is_some_and(|m| m.state == JobState::InFlight && m.attempt == *attempt)
                && !w.ext.outcomes.contains_key(&key);
            if !live {
                return w.violate(format!(
                    "heartbeat renewed lease {lease}, but {id} attempt {attempt} ended (durable state {:?})",
                    w.model.jobs.get(id).map(|m| (m.state, m.attempt))
                ));
            }
            w.mark("ext: heartbeat renewed");
        }
        Err(Rejection::LeaseLost { .. }) => w.mark("ext: stale heartbeat refused (lease_lost)"),
        Err(_) => {}
    }
}

/// A complete or fail answered: acknowledged only as the durable outcome
/// of the lease's own attempt; refused, never to take effect.
fn ended(w: &mut World, lease: u64, how: Ended, r: &Result<(), Rejection>) {
    let Some(key) = w.ext.leases.get(&lease).cloned() else {
        if r.is_ok() {
            w.violate(format!(
                "{how:?} of lease {lease}, never handed out, acknowledged"
            ));
        }
        return;
    };
    let durable = w.ext.outcomes.get(&key).cloned();
    match r {
        Ok(()) if durable.as_ref() == Some(&how) => w.mark(match how {
            Ended::Completed => "ext: completed by a worker",
            Ended::Failed(_) => "ext: failed by a worker",
        }),
        Ok(()) => w.violate(format!(
            "{how:?} of lease {lease} ({} attempt {}) acknowledged, but the durable outcome of that attempt is {durable:?}",
            key.0, key.2
        )),
        Err(Rejection::LeaseLost { .. }) => {
            w.mark("ext: stale completion refused (lease_lost)");
            if durable.as_ref() != Some(&how) {
                match how {
                    Ended::Completed => w.ext.refused_completions.insert(key),
                    Ended::Failed(e) => w.ext.refused_failures.insert(e),
                };
            }
        }
        Err(_) => {}
    }
}

/// The simulated wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a worker node shares with the harness (survives its restarts).
#[derive(Clone)]
struct WorkerCtx {
    n: u32,
    seed: u64,
    plan: ExtPlan,
    world: Shared,
    /// The faults stopped: no more stalls or deaths.
    quiet: Arc<AtomicBool>,
    /// The run is over: stop leasing.
    stop: Arc<AtomicBool>,
    /// Incarnations of this worker so far.
    incarnation: Arc<AtomicU32>,
    /// Partitions of this worker so far (a late completion after one).
    partitions: Arc<AtomicU64>,
    /// Tells the chaos task that this worker dies now.
    die: mpsc::UnboundedSender<u32>,
}

/// One incarnation of a worker.
struct Worker {
    ctx: WorkerCtx,
    name: String,
    ep: Endpoint,
    tags: AtomicU64,
}

impl Worker {
    async fn call(&self, req: Req, wait: Duration) -> Option<Resp> {
        let reply_tag = self.tags.fetch_add(1, Ordering::Relaxed);
        let env: Box<dyn Any + Send + Sync> = Box::new(Envelope { reply_tag, req });
        let server = self.ctx.world.lock().ext.server?;
        self.ep.send_to_raw(server, TAG_REQUEST, env).await.ok()?;
        let (msg, _) = tokio::time::timeout(wait, self.ep.recv_from_raw(reply_tag))
            .await
            .ok()?
            .ok()?;
        msg.downcast::<Resp>().ok().map(|b| *b)
    }

    fn log(&self, line: String) {
        self.ctx.world.lock().log(format!("{} {line}", self.name));
    }
}

async fn worker_main(ctx: WorkerCtx) {
    let inc = ctx.incarnation.fetch_add(1, Ordering::Relaxed) + 1;
    let Ok(ep) = Endpoint::bind(SocketAddr::new(worker_ip(ctx.n), 1)).await else {
        return ctx.world.lock().violate("harness: worker bind failed");
    };
    let mut rng = DetRng::new(ctx.seed ^ 0xe47e_0000 ^ (u64::from(ctx.n) << 40) ^ u64::from(inc));
    let plan = ctx.plan.clone();
    let me = Arc::new(Worker {
        name: format!("w{}.{inc}", ctx.n),
        ctx,
        ep,
        tags: AtomicU64::new(1),
    });
    let queues: Vec<QueueName> = plan
        .queues
        .iter()
        .filter_map(|q| QueueName::parse(q).ok())
        .collect();
    // One permit per job held: a lease asks for no more than are free.
    let room = Arc::new(Semaphore::new(plan.concurrency as usize));
    for _ in 0..LEASE_CALLS_MAX {
        let Ok(first) = room.clone().acquire_owned().await else {
            return;
        };
        if me.ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let free = 1 + room.available_permits() as u32;
        let req = Req::Lease {
            queues: queues.clone(),
            max: plan.batch_max.min(free),
            wait_ms: plan.wait_ms,
            holder: me.name.clone(),
        };
        let wait = Duration::from_millis(plan.wait_ms + 300);
        match me.call(req, wait).await {
            Some(Resp::Leased(Ok(jobs))) if !jobs.is_empty() => {
                let mut permit = Some(first);
                for job in jobs {
                    let held = match permit.take() {
                        Some(p) => Some(p),
                        None => room.clone().try_acquire_owned().ok(),
                    };
                    let (w, r) = (me.clone(), DetRng::new(rng.next_u64()));
                    tokio::spawn(async move {
                        work(&w, job, r).await;
                        drop(held);
                    });
                }
            }
            Some(_) => {
                drop(first);
                tokio::time::sleep(Duration::from_millis(5 + rng.below(30))).await;
            }
            None => {
                drop(first);
                tokio::time::sleep(Duration::from_millis(20 + rng.below(100))).await;
            }
        }
    }
}

/// What a worker does with one leased job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plot {
    Complete,
    Fail,
    GiveUp,
    Stall,
    Die,
}

fn plot(w: &Worker, rng: &mut DetRng) -> Plot {
    let mut o = w.ctx.plan.outcomes;
    if w.ctx.quiet.load(Ordering::Relaxed) {
        (o[3], o[4]) = (0, 0);
    }
    let total = u64::from(o.iter().sum::<u32>()).max(1);
    let mut x = rng.below(total) as u32;
    for (i, p) in [
        Plot::Complete,
        Plot::Fail,
        Plot::GiveUp,
        Plot::Stall,
        Plot::Die,
    ]
    .into_iter()
    .enumerate()
    {
        if x < o[i] {
            return p;
        }
        x -= o[i];
    }
    Plot::Complete
}

async fn work(w: &Worker, job: LeasedJob, mut rng: DetRng) {
    let lease = job.lease_id;
    let timeout = job.job.timeout_ms.max(1);
    let plot = plot(w, &mut rng);
    let partitions = w.ctx.partitions.load(Ordering::Relaxed);
    match plot {
        Plot::Die => {
            w.log(format!("dies holding lease {lease}"));
            w.ctx.world.lock().mark("ext: worker died holding a lease");
            let _ = w.ctx.die.send(w.ctx.n);
            return std::future::pending().await;
        }
        Plot::Stall => return stall(w, &job, &mut rng).await,
        _ => {}
    }
    if rng.chance(w.ctx.plan.long_work) {
        // Works past the timeout, renewing a third of the way in each time.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis((timeout / 3).max(1))).await;
            match w
                .call(Req::Heartbeat(lease), Duration::from_millis(200))
                .await
            {
                Some(Resp::Renewed(Err(Rejection::LeaseLost { .. }))) => break,
                _ => continue,
            }
        }
    } else {
        let took = rng.below((timeout * 7 / 10).max(1));
        tokio::time::sleep(Duration::from_millis(took)).await;
    }
    let req = match plot {
        Plot::Complete => Req::Complete(lease),
        _ => Req::Fail {
            lease,
            error: match plot {
                Plot::GiveUp => format!("{} lease {lease}: simulated failure {GIVE_UP}", w.name),
                _ => format!("{} lease {lease}: simulated failure", w.name),
            },
            retry: match (plot, rng.below(2)) {
                (Plot::GiveUp, _) => Retry::GiveUp,
                (_, 0) => Retry::Policy,
                _ => Retry::InMs(rng.below(200)),
            },
        },
    };
    let r = end(w, req, &mut rng).await;
    let cut = w.ctx.partitions.load(Ordering::Relaxed) != partitions;
    if cut && matches!(r, Some(Err(Rejection::LeaseLost { .. }))) {
        w.ctx
            .world
            .lock()
            .mark("ext: partition healed, late completion refused");
    }
}

/// Sends a complete or fail until it is answered (bounded); a retry
/// names the same lease.
async fn end(w: &Worker, req: Req, rng: &mut DetRng) -> Option<Result<(), Rejection>> {
    let mut req = req;
    for tried in 0..END_TRIES_MAX {
        let again = match &req {
            Req::Complete(l) => Req::Complete(*l),
            Req::Fail {
                lease,
                error,
                retry,
            } => Req::Fail {
                lease: *lease,
                error: error.clone(),
                retry: *retry,
            },
            _ => return None,
        };
        if let Some(Resp::Ended(r)) = w.call(req, Duration::from_millis(300)).await {
            w.log(format!("end -> {r:?} (try {})", tried + 1));
            if tried > 0 && r.is_ok() {
                w.ctx
                    .world
                    .lock()
                    .mark("ext: retried completion acknowledged");
            }
            return Some(r);
        }
        req = again;
        tokio::time::sleep(Duration::from_millis(20 + rng.below(200))).await;
    }
    None
}

/// Stalls past the lease's expiry (a long pause), then renews and
/// completes it: both must be refused.
async fn stall(w: &Worker, job: &LeasedJob, rng: &mut DetRng) {
    let lease = job.lease_id;
    let expiry = job.lease_until + w.ctx.plan.slack_ms;
    let past = 5 + rng.below(3 * job.job.timeout_ms + 300);
    let until = expiry + past;
    w.log(format!(
        "stalls past lease {lease} (expiry {expiry}) until {until}"
    ));
    tokio::time::sleep(Duration::from_millis(until.saturating_sub(now_ms()))).await;
    let hb = w
        .call(Req::Heartbeat(lease), Duration::from_millis(300))
        .await;
    if let Some(Resp::Renewed(Ok(_))) = hb {
        w.ctx.world.lock().violate(format!(
            "{} renewed lease {lease} {past} ms after its expiry",
            w.name
        ));
        return;
    }
    if let Some(Ok(())) = end(w, Req::Complete(lease), rng).await {
        w.ctx.world.lock().violate(format!(
            "{} completed lease {lease} {past} ms after its expiry",
            w.name
        ));
    }
}

impl ExtPlan {
    /// Jobs the workers run at once (the liveness bound's parallelism).
    pub fn capacity(&self) -> u32 {
        self.workers * self.concurrency
    }

    /// A lease's overhead beyond its job's time: the long-poll wait and
    /// the round trips (a reply lost in a partition waits this long).
    pub fn overhead_ms(&self) -> u64 {
        self.wait_ms + 300
    }
}

/// The external workers of a run, and the chaos done to them.
pub struct ExtRun {
    plan: ExtPlan,
    world: Shared,
    nodes: Vec<NodeHandle>,
    ctxs: Vec<WorkerCtx>,
    quiet: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    died: mpsc::UnboundedReceiver<u32>,
    /// Workers down, and when each comes back.
    down: BTreeMap<u32, tokio::time::Instant>,
    /// Workers cut off, and when each is healed.
    cut: BTreeMap<u32, tokio::time::Instant>,
    /// Queues paused until resumed.
    paused: BTreeSet<String>,
    rng: DetRng,
}

impl ExtRun {
    /// Starts the worker nodes.
    pub fn start(seed: u64, plan: ExtPlan, world: Shared) -> ExtRun {
        world.lock().ext.enabled = true;
        let (die, died) = mpsc::unbounded_channel();
        let (quiet, stop) = (Arc::default(), Arc::<AtomicBool>::default());
        let mut nodes = Vec::new();
        let mut ctxs = Vec::new();
        for n in 0..plan.workers {
            let ctx = WorkerCtx {
                n,
                seed,
                plan: plan.clone(),
                world: world.clone(),
                quiet: Arc::clone(&quiet),
                stop: Arc::clone(&stop),
                incarnation: Arc::default(),
                partitions: Arc::default(),
                die: die.clone(),
            };
            let c = ctx.clone();
            let node = Handle::current()
                .create_node()
                .name(format!("worker-{n}"))
                .ip(worker_ip(n))
                .init(move || worker_main(c.clone()))
                .build();
            nodes.push(node);
            ctxs.push(ctx);
        }
        ExtRun {
            rng: DetRng::new(seed ^ 0xc4a0_5000),
            plan,
            world,
            nodes,
            ctxs,
            quiet,
            stop,
            died,
            down: BTreeMap::new(),
            cut: BTreeMap::new(),
            paused: BTreeSet::new(),
        }
    }

    /// Chaos rounds until `done` (the clients finished); returns itself.
    pub async fn chaos(mut self, slot: Slot, done: Arc<AtomicBool>) -> ExtRun {
        for _ in 0..CHAOS_ROUNDS_MAX {
            if done.load(Ordering::Relaxed) || self.world.lock().violation.is_some() {
                break;
            }
            let gap = self.rng.exponential(self.plan.chaos_gap_ms);
            let sleep = tokio::time::sleep(Duration::from_micros((gap * 1000.0) as u64));
            tokio::select! {
                biased;
                Some(n) = self.died.recv() => {
                    self.kill(n);
                    continue;
                }
                _ = sleep => {}
            }
            self.heal(false);
            self.round(&slot).await;
        }
        self
    }

    fn kill(&mut self, n: u32) {
        let Some(node) = self.nodes.get(n as usize) else {
            return;
        };
        Handle::current().kill(node.id());
        let back = tokio::time::Instant::now() + Duration::from_millis(20 + self.rng.below(500));
        self.down.insert(n, back);
        self.world.lock().log(format!("ext: worker {n} killed"));
    }

    /// Restarts workers and heals partitions whose time came (all, with `all`).
    fn heal(&mut self, all: bool) {
        let now = tokio::time::Instant::now();
        let due = |t: &tokio::time::Instant| all || *t <= now;
        let back: Vec<u32> = self
            .down
            .iter()
            .filter(|e| due(e.1))
            .map(|e| *e.0)
            .collect();
        for n in back {
            self.down.remove(&n);
            Handle::current().restart(self.nodes[n as usize].id());
            self.world.lock().log(format!("ext: worker {n} restarted"));
        }
        let healed: Vec<u32> = self.cut.iter().filter(|e| due(e.1)).map(|e| *e.0).collect();
        for n in healed {
            self.cut.remove(&n);
            NetSim::current().unclog_node(self.nodes[n as usize].id());
            self.world
                .lock()
                .log(format!("ext: worker {n} partition healed"));
        }
    }

    async fn round(&mut self, slot: &Slot) {
        let w = self.plan.chaos;
        let total: u32 = w.iter().sum();
        if total == 0 {
            return;
        }
        let mut x = self.rng.below(u64::from(total)) as u32;
        let mut kind = 0;
        while x >= w[kind] {
            x -= w[kind];
            kind += 1;
        }
        let n = self.rng.below(u64::from(self.plan.workers)) as u32;
        let q = QUEUES[self.rng.below(QUEUES.len() as u64) as usize];
        match kind {
            0 if !self.cut.contains_key(&n) && !self.down.contains_key(&n) => {
                let ms = 50 + self.rng.below(1_500);
                NetSim::current().clog_node(self.nodes[n as usize].id());
                self.ctxs[n as usize]
                    .partitions
                    .fetch_add(1, Ordering::Relaxed);
                self.cut
                    .insert(n, tokio::time::Instant::now() + Duration::from_millis(ms));
                let mut w = self.world.lock();
                w.log(format!("ext: worker {n} partitioned for {ms} ms"));
                w.mark("ext: worker partitioned from the server");
            }
            1 if !self.down.contains_key(&n) => {
                self.world.lock().mark("ext: worker node killed");
                self.kill(n);
            }
            2 => self.pause_or_resume(slot, q).await,
            3 => self.purge(slot, q).await,
            _ => {}
        }
    }

    async fn pause_or_resume(&mut self, slot: &Slot, q: &str) {
        let (Some(client), Ok(name)) = (slot_get(slot), QueueName::parse(q)) else {
            return;
        };
        let resume = self.paused.contains(q);
        let pause = match (resume, self.rng.below(2)) {
            (true, _) => QueuePause::Resume,
            (false, 0) => QueuePause::UntilResumed,
            _ => QueuePause::ForMs(20 + self.rng.below(500)),
        };
        if pause == QueuePause::UntilResumed {
            // Even a pause not acknowledged (the engine crashed) may be
            // durable: resuming is harmless, forgetting it is not.
            self.paused.insert(q.to_owned());
        }
        // Whatever pause the queue had may now change, or not.
        self.world.lock().ext.timed_pauses.remove(q);
        let sent = tokio::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), client.pause_queue(name, pause)).await;
        let mut w = self.world.lock();
        w.log(format!("ext: {pause:?} queue {q} -> {r:?}"));
        if let Ok(Ok(())) = r {
            match pause {
                QueuePause::Resume => {
                    self.paused.remove(q);
                    w.mark("ext: queue resumed");
                }
                QueuePause::UntilResumed => w.mark("ext: queue paused"),
                QueuePause::ForMs(ms) => {
                    let not_before = sent + Duration::from_millis(ms);
                    let acked = tokio::time::Instant::now();
                    w.ext.timed_pauses.insert(q.to_owned(), (acked, not_before));
                    w.mark("ext: queue paused for a while");
                }
            }
        }
    }

    async fn purge(&mut self, slot: &Slot, q: &str) {
        let (Some(client), Ok(name)) = (slot_get(slot), QueueName::parse(q)) else {
            return;
        };
        let r = tokio::time::timeout(Duration::from_secs(5), client.purge_queue(name)).await;
        let mut w = self.world.lock();
        w.log(format!("ext: purge queue {q} -> {r:?}"));
        if let Ok(Ok(n)) = r {
            if n > 0 {
                w.mark("ext: queue purged");
            }
        }
    }

    /// The faults have stopped: workers come back and are reachable, no
    /// more stalls or deaths, and each queue paused until resumed is
    /// resumed (one try per call: the convergence loop calls it until the
    /// run converges, handling engine restarts in between).
    pub async fn settle(&mut self, slot: &Slot) {
        self.quiet.store(true, Ordering::Relaxed);
        while let Ok(n) = self.died.try_recv() {
            self.kill(n);
        }
        self.heal(true);
        let queues: Vec<String> = self.paused.iter().cloned().collect();
        for q in queues {
            self.pause_or_resume(slot, &q).await;
        }
    }

    /// Stops the workers (no more lease requests) and kills their nodes.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for n in &self.nodes {
            Handle::current().kill(n.id());
        }
    }
}
