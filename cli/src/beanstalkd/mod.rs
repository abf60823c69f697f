//! `beaver beanstalkd`: beanstalkd's protocol served on beaver's queue.
//!
//! Tubes are queues, job ids are job numbers, a reservation is an external
//! lease held by its connection (released when the connection closes),
//! `bury` makes a job dead and `kick` requeues it. Every reply that
//! reports a change is sent only once the change is durable. The pure
//! protocol (framing, parsing, replies, documents) is
//! [`crate::beanstalk`]; this module is the glue to the runtime. Started
//! on a `-b` dir that holds beanstalkd's own log, it takes beanstalkd's
//! jobs over before it serves (`takeover.rs`).

mod activation;
mod body;
mod conn;
mod listen;
mod peek;
mod stats;
mod takeover;
mod tubes;
mod user;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beaver_core::UNLIMITED_ATTEMPTS;
use beaver_runtime::{Client, EngineConfig, SystemClock};
use foldhash::fast::FixedState;
use tokio::signal::unix::{SignalKind, signal};

use crate::beanstalk::stats::CommandCounts;
use crate::beanstalk::{TubeName, Verb};

pub use beaver_input::beanstalk::ServeLimits;
pub use beaver_input::listen::{Listen, check_loopback};
pub use conn::{RESERVED_PER_CONNECTION_MAX, WATCHED_MAX};
pub use listen::{Listener, serve};

/// The most connections served at once; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 1_024;
/// A connection that sends nothing for this long (and waits for no
/// reserve) is closed; its silence counts only from when its last
/// reservation ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3_600);
/// The most jobs whose `stats-job` counters are kept (in memory only).
pub const COUNTED_JOBS_MAX: usize = 1_000_000;
/// The largest `-z`: a job of that size, escaped as a JSON string at
/// worst, still fits the largest log segment (1 GiB, less 1 MiB of room).
pub const JOB_BYTES_MAX: u32 = (((1 << 30) - (1 << 20) - 64) / 6) as u32;
/// The size of the log's segment files (`binlog-max-size` in `stats`)
/// when the largest job fits.
pub const BINLOG_MAX_SIZE: u64 = 10 << 20;

/// What `beaver beanstalkd` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: Listen,
    /// The data dir; `None`: a temporary one, removed at exit.
    pub data_dir: Option<PathBuf>,
    /// The largest job body (`-z`).
    pub job_bytes_max: u32,
    /// The log's segment size (`-s`, rounded up and raised as
    /// [`segment_bytes`] says).
    pub segment_bytes: u64,
    /// The user to become once listening (`-u`).
    pub user: Option<String>,
    /// Say where it serves once listening (`-V`).
    pub verbose: bool,
    /// Serve on an address other than loopback (`--allow-remote`).
    pub allow_remote: bool,
}

/// The log's segment size for `asked` bytes (`-s`; beanstalkd's binlog
/// size, 10 MiB when not given) and jobs of up to `job_bytes_max` bytes:
/// rounded up to a multiple of 4,096 bytes as beanstalkd does, and raised
/// to what the largest job needs (a record never spans two segments).
pub fn segment_bytes(asked: Option<u64>, job_bytes_max: u32) -> u64 {
    let mib = 1 << 20;
    let needed = (body::payload_bytes_max(job_bytes_max) + mib).div_ceil(mib) * mib;
    asked
        .unwrap_or(BINLOG_MAX_SIZE)
        .div_ceil(4_096)
        .saturating_mul(4_096)
        .max(needed)
}

/// A job's `stats-job` counters (kept in memory: a restart resets them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Times it was reserved.
    pub reserves: u64,
    /// Times its reservation ran past its TTR.
    pub timeouts: u64,
    /// Times it was released.
    pub releases: u64,
    /// Times it was buried.
    pub buries: u64,
    /// Times it was kicked.
    pub kicks: u64,
    /// The place of its latest bury among this process's buries (0: none):
    /// buried jobs are FIFO, and two buries in one millisecond share
    /// their `finished_at`.
    pub buried_order: u64,
    /// The delay of its last put or release, in seconds.
    pub delay_s: u64,
    /// The lease of its latest reservation while no release, bury,
    /// delete or close ended it: found set at the next reserve, it
    /// timed out.
    pub open_lease: Option<u64>,
}

/// Why [`Shared::put_job`] put nothing.
#[derive(Debug)]
enum PutFailed {
    /// The body could not be kept as a payload.
    Body(String),
    /// The engine refused the job.
    Refused(beaver_core::Rejection),
    /// The engine gave the job no job number (never for a job put
    /// without an id).
    NoNumber,
}

impl std::fmt::Display for PutFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PutFailed::Body(e) => write!(f, "{e}"),
            PutFailed::Refused(e) => write!(f, "{e}"),
            PutFailed::NoNumber => write!(f, "no job number given"),
        }
    }
}

/// What every connection shares.
pub struct Shared {
    client: Client,
    job_bytes_max: u32,
    segment_bytes: u64,
    idle_timeout: Duration,
    lease_wait_max: Duration,
    put_attempts: u32,
    ttr_ms_max: u64,
    draining: AtomicBool,
    /// Keyed by job number (given by the server, never by a client): a
    /// fixed, fast hash.
    counters: Mutex<HashMap<u64, Counters, FixedState>>,
    /// Buries so far (see [`Counters::buried_order`]).
    buries: AtomicU64,
    cmd: Mutex<CommandCounts>,
    tubes: Mutex<tubes::Tubes>,
    producers: AtomicU64,
    workers: AtomicU64,
    started: Instant,
    instance_id: String,
    connections: AtomicU64,
    total_connections: AtomicU64,
}

impl Shared {
    /// The shared state of a server whose connections use `client`.
    pub fn new(client: Client, limits: ServeLimits) -> Shared {
        Shared {
            client,
            job_bytes_max: limits.job_bytes_max,
            segment_bytes: limits.segment_bytes,
            idle_timeout: IDLE_TIMEOUT,
            lease_wait_max: limits.lease_wait_max,
            put_attempts: limits.put_attempts,
            ttr_ms_max: limits.ttr_ms_max,
            draining: AtomicBool::new(false),
            counters: Mutex::new(HashMap::with_hasher(FixedState::default())),
            buries: AtomicU64::new(0),
            cmd: Mutex::new(CommandCounts::default()),
            tubes: Mutex::new(tubes::Tubes::new()),
            producers: AtomicU64::new(0),
            workers: AtomicU64::new(0),
            started: Instant::now(),
            instance_id: format!("{:016x}", beaver_io::entropy_seed()),
            connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn count(&self, verb: Verb) {
        if let Ok(mut c) = self.cmd.lock() {
            c.bump(verb);
        }
    }

    fn command_counts(&self) -> CommandCounts {
        self.cmd.lock().map(|c| *c).unwrap_or_default()
    }

    /// Drops those of `names` that no connection uses, watches or waits
    /// on and that hold no job, at once, as beanstalkd frees a tube when
    /// its last reference goes (made again later, it is listed last).
    async fn drop_idle_tubes(&self, names: &[TubeName]) {
        let idle = |t: &TubeName| {
            *t != TubeName::default_tube()
                && self.tubes.lock().is_ok_and(|all| {
                    let f = all.get(t);
                    f.using == 0 && f.watching == 0 && f.waiting == 0
                })
        };
        let candidates: Vec<&TubeName> = names.iter().filter(|t| idle(t)).collect();
        if candidates.is_empty() {
            return;
        }
        let Ok(status) = self.client.status().await else {
            return;
        };
        let holds_jobs = |t: &TubeName| {
            let q = tubes::queue_of(t);
            status
                .queue
                .queues
                .iter()
                .any(|s| s.name == q && stats::has_jobs(s))
        };
        if let Ok(mut all) = self.tubes.lock() {
            // Only the candidates may go; prune checks them idle again
            // under the lock (another connection may have come).
            all.prune(|t| !candidates.contains(&t) || holds_jobs(t));
        }
    }

    /// Which life of its name each of `tubes` is (see
    /// [`tubes::TubeFigures::life`]), under one lock.
    fn lives_of(&self, tubes: &[TubeName]) -> Vec<u64> {
        match self.tubes.lock() {
            Ok(all) => tubes.iter().map(|t| all.get(t).life).collect(),
            Err(_) => vec![0; tubes.len()],
        }
    }

    /// Changes a tube's figures (creating the tube); `false` when no more
    /// tubes fit.
    fn tube(&self, tube: &TubeName, change: impl FnOnce(&mut tubes::TubeFigures)) -> bool {
        let Ok(mut all) = self.tubes.lock() else {
            return false;
        };
        match all.touch(tube) {
            Some(f) => {
                change(f);
                true
            }
            None => false,
        }
    }

    /// A tube's figures.
    fn tube_figures(&self, tube: &TubeName) -> tubes::TubeFigures {
        self.tubes.lock().map(|t| t.get(tube)).unwrap_or_default()
    }

    /// The tube a queue is: a known tube that maps onto it, else the
    /// queue's own name.
    fn tube_of(&self, queue: &beaver_core::QueueName) -> Option<TubeName> {
        let known = self
            .tubes
            .lock()
            .ok()
            .and_then(|t| t.find(|n| tubes::queue_of(n) == *queue));
        known.or_else(|| TubeName::new(queue.as_str().as_bytes()))
    }

    /// Puts one job into `tube`'s queue, as `put` and a takeover do: the
    /// body kept as its payload, beanstalkd's priority, the TTR at least
    /// a second (as beanstalkd runs a TTR of 0) and at most the limit,
    /// the configured attempts. Counted in the tube's total once durable.
    /// Its job number.
    async fn put_job(
        &self,
        tube: &TubeName,
        body: &[u8],
        pri: u32,
        delay_ms: u64,
        ttr_ms: u64,
    ) -> Result<u64, PutFailed> {
        let payload = body::to_payload(body).map_err(PutFailed::Body)?;
        let spec = beaver_core::JobSpec {
            id: None,
            queue: Some(tubes::queue_of(tube)),
            payload,
            priority: beaver_core::priority_from_beanstalk(pri),
            max_attempts: Some(self.put_attempts),
            timeout_ms: Some(ttr_ms.max(1_000).min(self.ttr_ms_max)),
            delay_ms,
        };
        let done = self
            .client
            .enqueue(vec![spec])
            .await
            .map_err(PutFailed::Refused)?;
        let number = done.first().and_then(|e| e.id.assigned_number());
        let number = number.ok_or(PutFailed::NoNumber)?;
        self.tube(tube, |f| f.total_jobs += 1);
        Ok(number)
    }

    /// The place of a bury made now among this process's buries (see
    /// [`Counters::buried_order`]).
    fn next_bury_order(&self) -> u64 {
        self.buries.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn bump(&self, id: u64, change: impl FnOnce(&mut Counters)) {
        let Ok(mut all) = self.counters.lock() else {
            return;
        };
        if all.len() >= COUNTED_JOBS_MAX && !all.contains_key(&id) {
            return; // counters of jobs beyond the bound read as 0
        }
        change(all.entry(id).or_default());
    }

    fn counters(&self, id: u64) -> Counters {
        self.counters
            .lock()
            .map(|all| all.get(&id).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn forget(&self, id: u64) {
        if let Ok(mut all) = self.counters.lock() {
            all.remove(&id);
        }
    }

    /// Whether a tube exists (see [`stats::live_tubes`]).
    async fn tube_exists(&self, tube: &TubeName) -> bool {
        stats::live_tubes(self)
            .await
            .is_some_and(|(names, _)| names.contains(tube))
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn total_connections(&self) -> u64 {
        self.total_connections.load(Ordering::Relaxed)
    }
}

/// The engine's clock in Unix milliseconds: the engine runs on
/// [`SystemClock::process`], so deadlines it sets compare with this exactly
/// (the wall clock itself may differ from it by a millisecond, or by a
/// step).
fn now_ms() -> u64 {
    use beaver_runtime::Clock as _;
    SystemClock::process().now_ms()
}

/// The engine's configuration for beanstalkd: no built-in workers (every
/// job waits for a connection's reserve), payloads as large as `-z`
/// bodies become, leases that end at their TTR.
fn engine_config(data_dir: PathBuf, job_bytes_max: u32, segment_bytes: u64) -> EngineConfig {
    let mut e = EngineConfig {
        data_dir,
        segment_bytes,
        ..EngineConfig::default()
    };
    let payload_max = body::payload_bytes_max(job_bytes_max);
    let q = &mut e.queue;
    q.workers = 0;
    q.lease_slack_ms = 0;
    // A job whose TTR runs out is ready again at once, as in beanstalkd.
    q.retry = beaver_core::RetryPolicy {
        base_ms: 0,
        max_ms: 0,
    };
    // beanstalkd's TTR and delays are u32 seconds.
    let seconds_max = u64::from(u32::MAX) * 1_000;
    q.limits.timeout_ms_max = q.limits.timeout_ms_max.max(seconds_max);
    q.limits.delay_ms_max = q.limits.delay_ms_max.max(seconds_max);
    q.limits.lease_extend_max_ms = q.limits.lease_extend_max_ms.max(seconds_max);
    // A reserve waits as long as it asks (without a timeout: for ever, in
    // waits this long), keeping its place in the waiting order.
    q.limits.lease_wait_max_ms = q.limits.lease_wait_max_ms.max(seconds_max);
    // A put is one job.
    q.limits.payload_bytes_max = payload_max;
    q.limits.batch_jobs_max = 1;
    q.limits.batch_bytes_max = payload_max;
    e
}

/// The connections served at once: [`CONNECTIONS_MAX`], or fewer if the
/// open-file limit `open_files` has no room for them beside what the
/// engine needs; then it says so.
fn connections_max(open_files: u64) -> usize {
    let n = crate::listening::connections_within(open_files, CONNECTIONS_MAX);
    if n < CONNECTIONS_MAX {
        eprintln!(
            "beaver beanstalkd: the open-file limit ({open_files}) leaves room for {n} connections at once, not {CONNECTIONS_MAX}; more wait to be accepted (raise it: ulimit -n, or LimitNOFILE= in a systemd unit)"
        );
    }
    n
}

/// Runs the server until SIGTERM or SIGINT (SIGUSR1: drain mode).
pub async fn run(opts: Options) -> Result<(), String> {
    // Before anything listens: no other program is started, so nothing
    // inherits the raised limit.
    let open_files = crate::listening::raise_open_files();
    // Bound first, then `-u`, then the data dir: as that user.
    let listener = match activation::passed_listener()? {
        Some(passed) => {
            let l = Listener::passed(passed, opts.allow_remote)?;
            eprintln!(
                "beaver beanstalkd: serving on the socket the service manager passed ({}); -l and -p are not used",
                l.address()
            );
            l
        }
        None => Listener::bind(&opts.listen).await?,
    };
    if opts.verbose {
        eprintln!(
            "beaver beanstalkd: pid {}, listening on {}",
            std::process::id(),
            listener.address()
        );
    }
    if let Some(name) = &opts.user {
        user::become_user(name)?;
    }
    let temp = match &opts.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("beaver-beanstalkd-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary data dir: {e}"))?,
        ),
    };
    let data_dir = match (&opts.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return Err("no data dir".into()),
    };
    let old_log = takeover::read_log(&data_dir, opts.job_bytes_max)?;
    if let Some(old) = &old_log {
        eprintln!(
            "beaver beanstalkd: {} holds beanstalkd's log: taking over its {} jobs before serving",
            data_dir.display(),
            old.len()
        );
    }
    let _lock = crate::lock::lock_exclusive(&data_dir).map_err(|e| e.naming("-b"))?;
    let config = engine_config(data_dir.clone(), opts.job_bytes_max, opts.segment_bytes);
    let limits = ServeLimits {
        job_bytes_max: opts.job_bytes_max,
        segment_bytes: config.segment_bytes,
        lease_wait_max: Duration::from_millis(config.queue.limits.lease_wait_max_ms),
        put_attempts: UNLIMITED_ATTEMPTS,
        ttr_ms_max: u64::from(u32::MAX) * 1_000,
    };
    let engine = beaver_runtime::start(
        config,
        beaver_io::FileDisk::new(),
        beaver_runtime::AnyExecutor::Noop(beaver_runtime::executor::NoopExecutor),
        SystemClock::process(),
        beaver_runtime::NoObserver,
        beaver_io::entropy_seed(),
    )
    .await
    .map_err(|e| format!("cannot start on {}: {e}", data_dir.display()))?;
    match &temp {
        Some(_) => eprintln!(
            "beaver beanstalkd: no -b given: jobs are kept in the temporary {} and removed at exit",
            data_dir.display()
        ),
        None => eprintln!("beaver beanstalkd: jobs are kept in {}", data_dir.display()),
    }
    let shared = Arc::new(Shared::new(engine.client.clone(), limits));
    // A takeover that fails stops the engine as a stop after serving does.
    let served = match takeover::take_over(old_log, &data_dir, &shared, now_ms()).await {
        Ok(taken) => {
            if let Some(t) = taken {
                eprintln!(
                    "beaver beanstalkd: took over the jobs of beanstalkd's log: {} ({} ready, {} delayed, {} buried); its files are in {}",
                    t.ready + t.delayed + t.buried,
                    t.ready,
                    t.delayed,
                    t.buried,
                    data_dir.join(takeover::TAKEN_OVER).display()
                );
            }
            serve_until_stopped(
                listener,
                shared,
                connections_max(open_files),
                &engine.handle,
            )
            .await
        }
        Err(e) => Err(e),
    };
    engine.handle.shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(5), engine.handle.wait()).await;
    drop(temp);
    served?;
    match stopped {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Ok(()), // everything acknowledged is durable already
    }
}

/// How often serving looks whether the engine stopped on its own.
const ENGINE_WATCH: Duration = Duration::from_millis(200);

/// Serves until SIGTERM or SIGINT, or until the engine stops on its own (a
/// fail-stop: the caller then exits with the engine's error, so that a
/// supervisor restarts the server and recovery reads what is on disk,
/// instead of a server that answers every change `DRAINING` forever).
/// SIGUSR1 turns drain mode on. The listener is closed (a Unix socket
/// removed) when this returns.
async fn serve_until_stopped(
    listener: Listener,
    shared: Arc<Shared>,
    connections_max: usize,
    engine: &beaver_runtime::EngineHandle,
) -> Result<(), String> {
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("signal handler: {e}"));
    let (mut term, mut int, mut usr1) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::user_defined1())?,
    );
    let drain = shared.clone();
    let drainer = tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            drain.draining.store(true, Ordering::Relaxed);
        }
    });
    let stop = async move {
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                () = tokio::time::sleep(ENGINE_WATCH) => {
                    if engine.is_finished() {
                        return;
                    }
                }
            }
        }
    };
    listen::serve(listener, shared, connections_max, stop).await;
    drainer.abort();
    Ok(())
}

/// `-l ADDR` with `-p PORT`: an IP address, or a host name resolved as
/// beanstalkd does (its first address, `localhost` 127.0.0.1 here).
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs as _;
    let first = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            format!("-l {host}: not an IP address, and the name does not resolve ({e}); give an IP address such as 127.0.0.1")
        })?
        .next();
    first.ok_or_else(|| {
        format!("-l {host}: the name resolves to no address; give an IP address such as 127.0.0.1")
    })
}

/// `beaver beanstalkd`'s command line: beanstalkd's own options.
#[derive(Debug, Clone, clap::Args)]
pub struct BeanstalkdArgs {
    /// Listen on this IP address, or `unix:PATH` for a Unix socket
    /// (default 127.0.0.1; another than loopback needs --allow-remote). A
    /// socket systemd passes (LISTEN_FDS) takes the place of -l and -p
    #[arg(short = 'l', value_name = "ADDR", default_value = "127.0.0.1")]
    pub listen: String,
    /// Listen on this TCP port
    #[arg(short = 'p', value_name = "PORT", default_value_t = 11300)]
    pub port: u16,
    /// Keep jobs in this data dir (durable across restarts); without it,
    /// a temporary dir removed at exit
    #[arg(short = 'b', value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The largest job body, in bytes
    #[arg(short = 'z', value_name = "BYTES", default_value_t = crate::beanstalk::JOB_BYTES_MAX_DEFAULT)]
    pub job_bytes_max: u32,
    /// Accepted for compatibility and moot: beaver fdatasyncs every change
    /// before it replies, whatever this says
    #[arg(short = 'f', value_name = "MS")]
    pub fsync_ms: Option<u64>,
    /// Accepted for compatibility and moot: beaver never skips an
    /// fdatasync
    #[arg(short = 'F')]
    pub never_fsync: bool,
    /// The size of each log segment file, in bytes (default 10,485,760;
    /// rounded up to a multiple of 4,096 and raised to what the largest
    /// job needs)
    #[arg(short = 's', value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// Become this user and its groups once listening, before the data
    /// dir is opened (another user than the running one needs root)
    #[arg(short = 'u', value_name = "USER")]
    pub user: Option<String>,
    /// More log lines, as beanstalkd's -V: -V says where it serves and
    /// its engine's news, -VV and -VVV more
    #[arg(short = 'V', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the version (beanstalkd's -v)
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: (),
    /// Allow an address other than loopback: the protocol has no
    /// authentication, so anyone who reaches the port can read and delete
    /// every job
    #[arg(long)]
    pub allow_remote: bool,
}

impl BeanstalkdArgs {
    /// The options, or why they are refused.
    pub fn options(&self) -> Result<Options, String> {
        let limit = JOB_BYTES_MAX;
        if self.job_bytes_max == 0 || self.job_bytes_max > limit {
            return Err(format!(
                "-z must be 1 to {limit}, got {}",
                self.job_bytes_max
            ));
        }
        let listen = match self.listen.strip_prefix("unix:") {
            Some(path) => Listen::Unix(PathBuf::from(path)),
            None => match resolve(&self.listen, self.port).and_then(|addr| {
                check_loopback(addr.ip(), self.allow_remote, "-l", "--allow-remote")?;
                Ok(addr)
            }) {
                Ok(addr) => Listen::Tcp(addr),
                // A passed socket takes -l's place, as in beanstalkd: an -l
                // it would refuse does not matter (and is never bound).
                Err(_) if activation::socket_passed() => {
                    Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], self.port)))
                }
                Err(e) => return Err(e),
            },
        };
        let max = beaver_io::MAX_SEGMENT_BYTES;
        if let Some(s) = self.segment_bytes.filter(|&s| s == 0 || s > max) {
            return Err(format!("-s must be 1 to {max} bytes, got {s}"));
        }
        Ok(Options {
            listen,
            data_dir: self.data_dir.clone(),
            job_bytes_max: self.job_bytes_max,
            segment_bytes: segment_bytes(self.segment_bytes, self.job_bytes_max),
            user: self.user.clone(),
            verbose: self.verbose > 0,
            allow_remote: self.allow_remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l_takes_an_ip_address_or_a_host_name_as_beanstalkd_does() {
        let ip = resolve("127.0.0.1", 11300).expect("an IP address");
        assert_eq!(ip, SocketAddr::from(([127, 0, 0, 1], 11300)));
        let named = resolve("localhost", 7).expect("localhost resolves");
        assert!(named.ip().is_loopback() && named.port() == 7, "{named}");
        let e = resolve("", 7).unwrap_err();
        assert!(e.contains("give an IP address such as 127.0.0.1"), "{e}");
    }

    /// The engine behind the protocol makes a job whose TTR ran out ready
    /// at once, and takes waits, TTRs and delays as long as beanstalkd's
    /// u32 seconds.
    #[test]
    fn the_engine_retries_at_once_and_takes_beanstalkd_long_times() {
        let e = engine_config(PathBuf::from("d"), 65_535, 10 << 20);
        let q = &e.queue;
        let id = beaver_core::JobId::from_client("job-7").expect("a job id");
        for attempt in 1..=3 {
            assert_eq!(beaver_core::retry::backoff_ms(&q.retry, &id, attempt), 0);
        }
        let seconds_max = u64::from(u32::MAX) * 1_000;
        for (what, ms) in [
            ("wait", q.limits.lease_wait_max_ms),
            ("ttr", q.limits.timeout_ms_max),
            ("delay", q.limits.delay_ms_max),
            ("touch", q.limits.lease_extend_max_ms),
        ] {
            assert!(ms >= seconds_max, "{what}: {ms}");
        }
        assert_eq!(q.workers, 0);
    }
}
