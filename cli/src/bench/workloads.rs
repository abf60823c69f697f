//! The benchmark's workloads. Each starts its own server (so its peak RSS
//! and data dir are its own), except that one backlog of 1,000,000 jobs
//! serves W2b, W4 and the snapshot case.
//!
//! W0-W2b and W4 run with `--workers 0`: jobs are taken and kept, none
//! dispatched, so enqueue figures are enqueue alone. W3 runs 8 workers
//! (dispatch-ahead at the default prefetch of 8) while it enqueues.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::request;
use super::load::{Load, Text, drive};
use super::probe::{dir_bytes, disk_probe, disk_probe_spinning};
use super::report::Row;
use super::server::{ServerProc, status_at};

/// The longest one workload's requests may take.
const LOAD_WITHIN: Duration = Duration::from_secs(300);
/// The longest a wait on the server (recovery, a drain, a snapshot) may take.
const WAIT_WITHIN: Duration = Duration::from_secs(300);
/// Distinct prebuilt requests per workload (cycled through).
const POOL_SINGLE: usize = 4_096;
const POOL_BATCH: usize = 256;
const BATCH_JOBS: usize = 100;
/// Clients of W0 and W2 (and the snapshot case, which is W2 again).
pub const CONCURRENT_CLIENTS: usize = 32;

/// What the workloads share.
pub struct Ctx {
    /// The clients' runtime.
    pub rt: tokio::runtime::Runtime,
    /// The temp dir holding every data dir.
    pub root: PathBuf,
    /// Counts are divided by this (10 for `--quick`).
    pub scale: u64,
    /// Data dirs made so far.
    pub dirs: u32,
}

impl Ctx {
    pub(super) fn n(&self, full: u64) -> u64 {
        (full / self.scale).max(1)
    }

    fn data_dir(&mut self, name: &str) -> PathBuf {
        self.dirs += 1;
        self.root.join(format!("{}-{name}", self.dirs))
    }

    pub(super) fn server(&mut self, name: &str, workers: u32) -> Result<ServerProc, String> {
        let dir = self.data_dir(name);
        ServerProc::start(&dir, workers)
    }

    /// Runs `requests` requests from `clients` clients against `server`
    /// and makes its row (`jobs_per_request`: 0 for requests that carry
    /// no job).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn measure(
        &self,
        server: &ServerProc,
        name: &str,
        what: String,
        clients: usize,
        requests: u64,
        pool: Vec<Vec<u8>>,
        jobs_per_request: u64,
    ) -> Result<(Row, Load), String> {
        eprintln!("== {name}: {what} (server pid {})", server.pid);
        let before = server.fsyncs()?;
        let cpu_before = (server.cpu_secs(), bench_cpu_secs());
        let load = self.rt.block_on(drive(
            server.ports.api,
            clients,
            requests,
            Arc::new(pool),
            LOAD_WITHIN,
        ))?;
        let cores = cores(server.cpu_secs(), cpu_before, load.secs);
        let after = server.fsyncs()?;
        let row = Row {
            name: name.into(),
            what,
            unit: if jobs_per_request == 0 {
                "reqs"
            } else {
                "jobs"
            },
            count: load.requests * jobs_per_request.max(1),
            secs: load.secs,
            latency_ms: load.latency_ms(),
            fsyncs: Some(after - before),
            cores,
            rss_peak: server.memory().map(|m| m.0),
            data_bytes: Some(dir_bytes(&server.data_dir)),
            note: if load.busy > 0 {
                format!("{} answers 503 busy, retried", load.busy)
            } else {
                String::new()
            },
        };
        Ok((row, load))
    }
}

/// CPU seconds of this (the benchmark's) process.
pub(super) fn bench_cpu_secs() -> Option<f64> {
    super::server::cpu_secs("/proc/self/stat")
}

/// (server, benchmark) cores busy since `before`, over `secs` of wall
/// time; `server_now`: the server's CPU seconds now.
pub(super) fn cores(
    server_now: Option<f64>,
    before: (Option<f64>, Option<f64>),
    secs: f64,
) -> Option<(f64, f64)> {
    let s = server_now? - before.0?;
    let b = bench_cpu_secs()? - before.1?;
    Some((s / secs.max(1e-9), b / secs.max(1e-9)))
}

pub(super) fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

/// Prebuilt single-job enqueues.
pub(super) fn single_pool() -> Vec<Vec<u8>> {
    let mut t = Text::new(seed());
    (0..POOL_SINGLE)
        .map(|_| {
            request(
                "POST",
                "/v1/jobs",
                Some(("application/json", t.job().as_bytes())),
            )
        })
        .collect()
}

/// Prebuilt enqueues of [`BATCH_JOBS`] jobs each.
pub(super) fn batch_pool() -> Vec<Vec<u8>> {
    let mut t = Text::new(seed());
    (0..POOL_BATCH)
        .map(|_| {
            let jobs: Vec<String> = (0..BATCH_JOBS).map(|_| t.job()).collect();
            let body = format!("[{}]", jobs.join(","));
            request(
                "POST",
                "/v1/jobs",
                Some(("application/json", body.as_bytes())),
            )
        })
        .collect()
}

/// W5: the disk probe, in the directory the data dirs live in.
pub fn w5(ctx: &Ctx, name: &str) -> Result<Row, String> {
    eprintln!("== {name}: disk probe");
    let p = disk_probe(&ctx.root, ctx.n(3_000).max(300), Duration::from_secs(10))?;
    let mut what = "100-byte write + fdatasync, preallocated file, 1 thread".to_string();
    if let Some(us) = p.cpu_us_per_sync() {
        what.push_str(&format!(" (its CPU: {us:.0} µs per sync)"));
    }
    Ok(Row {
        name: name.into(),
        what,
        unit: "syncs",
        count: p.syncs,
        secs: p.secs,
        ..Row::default()
    })
}

/// W5 again, beside a thread spinning on the probe's CPU (information, not a target).
pub fn w5_spinning(ctx: &Ctx) -> Result<Row, String> {
    eprintln!("== W5 spin: disk probe beside a spinning thread");
    let p = disk_probe_spinning(&ctx.root, ctx.n(3_000).max(300), Duration::from_secs(10))?;
    Ok(Row {
        name: "W5 spin".into(),
        what: "as W5, a thread spinning on the same CPU (the CPU never idles)".into(),
        unit: "syncs",
        count: p.syncs,
        secs: p.secs,
        ..Row::default()
    })
}

/// W0: the HTTP floor (`GET /v1/ping`: no core, no disk), 32 clients; then
/// `W0 1`, the same route from 1 client: one client's round trip when the
/// client and the server run on different CPUs.
pub fn w0(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let mut s = ctx.server("w0", 0)?;
    let pool = vec![request("GET", "/v1/ping", None)];
    let (many, _) = ctx.measure(
        &s,
        "W0",
        "GET /v1/ping, 32 clients".into(),
        CONCURRENT_CLIENTS,
        ctx.n(100_000),
        pool.clone(),
        0,
    )?;
    let (one, _) = ctx.measure(
        &s,
        "W0 1",
        "GET /v1/ping, 1 client".into(),
        1,
        ctx.n(20_000),
        pool,
        0,
    )?;
    s.stop()?;
    Ok(vec![many, one])
}

/// W1: single-job enqueues, 1 client, each waiting for its ack.
pub fn w1(ctx: &mut Ctx) -> Result<Row, String> {
    let mut s = ctx.server("w1", 0)?;
    let n = ctx.n(20_000);
    let (row, _) = ctx.measure(
        &s,
        "W1",
        "1-job enqueues, 1 client".into(),
        1,
        n,
        single_pool(),
        1,
    )?;
    s.stop()?;
    Ok(row)
}

/// W2: single-job enqueues, 32 clients.
pub fn w2(ctx: &mut Ctx) -> Result<Row, String> {
    let mut s = ctx.server("w2", 0)?;
    let n = ctx.n(100_000);
    let (row, _) = ctx.measure(
        &s,
        "W2",
        "1-job enqueues, 32 clients".into(),
        CONCURRENT_CLIENTS,
        n,
        single_pool(),
        1,
    )?;
    s.stop()?;
    Ok(row)
}

/// W2b: 1,000,000 jobs in batches of 100, 8 clients. The server is kept
/// (with its backlog) for W4 and the snapshot case.
pub fn w2b(ctx: &mut Ctx) -> Result<(Row, ServerProc), String> {
    let s = ctx.server("w2b", 0)?;
    let requests = ctx.n(1_000_000) / BATCH_JOBS as u64;
    let (row, _) = ctx.measure(
        &s,
        "W2b",
        format!("{BATCH_JOBS}-job enqueues, 8 clients"),
        8,
        requests.max(1),
        batch_pool(),
        BATCH_JOBS as u64,
    )?;
    Ok((row, s))
}

/// W4: SIGKILL the server holding the backlog, restart it on the same data
/// dir and ports, and time from the spawn to the first `/v1/status` that
/// answers with every job. Returns the restarted server.
///
/// `name` and `what` label the row: `W4` restarts from what W2b left (its
/// log, a snapshot maybe still being built when killed), `W4+snap` from
/// the snapshot the snapshot case wrote (and the log after it).
pub fn w4(mut big: ServerProc, name: &str, what: &str) -> Result<(Row, ServerProc), String> {
    let expected = big.status()?.jobs.pending;
    eprintln!("== {name}: kill -9 with {expected} pending jobs, restart");
    big.kill();
    let (dir, ports) = (big.data_dir.clone(), big.ports);
    drop(big);
    let mut s = ServerProc::spawn(&dir, 0, ports)?;
    eprintln!("== {name}: restarted (server pid {})", s.pid);
    let st = loop {
        if let Some(st) = s.try_status()? {
            break st;
        }
        if s.spawned.elapsed() > WAIT_WITHIN {
            return Err(format!(
                "the restarted server did not answer within {WAIT_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let secs = s.spawned.elapsed().as_secs_f64();
    let server_cores = s.cpu_secs().map(|c| c / secs.max(1e-9));
    if st.jobs.pending != expected {
        return Err(format!(
            "the restarted server holds {} pending jobs; {expected} were acknowledged",
            st.jobs.pending
        ));
    }
    s.wait_serving()?;
    let mem = s.memory();
    let rec = st.recovery.as_ref();
    let row = Row {
        name: name.into(),
        what: what.into(),
        unit: "jobs",
        count: expected,
        secs,
        latency_ms: None,
        fsyncs: None,
        cores: server_cores.map(|c| (c, 0.0)),
        rss_peak: mem.map(|m| m.0),
        data_bytes: Some(dir_bytes(&dir)),
        note: format!(
            "server's own recovery {} ms, {} records replayed, snapshot LSN {}; RSS now {} MiB",
            rec.map_or(0, |r| r.duration_ms),
            rec.map_or(0, |r| r.replayed_records),
            rec.and_then(|r| r.snapshot_lsn).unwrap_or(0),
            mem.map_or(0, |m| m.1 >> 20)
        ),
    };
    Ok((row, s))
}

/// The snapshot case: W2 against the server holding the backlog, first
/// alone (`W2@1M`), then right after asking it for a snapshot (`W2+snap`).
pub fn snap(ctx: &Ctx, big: &ServerProc) -> Result<Vec<Row>, String> {
    let n = ctx.n(100_000);
    let (base, _) = ctx.measure(
        big,
        "W2@1M",
        "as W2, on the server holding the backlog".into(),
        CONCURRENT_CLIENTS,
        n,
        single_pool(),
        1,
    )?;
    let jobs = big.status()?.jobs.pending;
    let started = big
        .client()?
        .post_json("/v1/admin/snapshot", b"")
        .map_err(|e| format!("POST /v1/admin/snapshot: {e}"))?;
    let asked = Instant::now();
    if started.status != 200 {
        return Err(format!(
            "POST /v1/admin/snapshot: {} {}",
            started.status,
            started.text()
        ));
    }
    let lsn = serde_json::from_slice::<serde_json::Value>(&started.body)
        .ok()
        .and_then(|v| v["lsn"].as_u64())
        .ok_or_else(|| format!("POST /v1/admin/snapshot: no lsn in {}", started.text()))?;
    let api = big.ports.api;
    let watcher = std::thread::spawn(move || snapshot_written(api, lsn, asked));
    let (mut row, _) = ctx.measure(
        big,
        "W2+snap",
        format!("as W2@1M, while a snapshot of {jobs} jobs is built"),
        CONCURRENT_CLIENTS,
        n,
        single_pool(),
        1,
    )?;
    let written = watcher
        .join()
        .map_err(|_| "the snapshot watcher panicked".to_string())??;
    row.note = format!(
        "snapshot written {written:.2} s after it was asked for; this W2 took {:.2} s{}",
        row.secs,
        if row.note.is_empty() {
            String::new()
        } else {
            format!("; {}", row.note)
        }
    );
    Ok(vec![base, row])
}

/// Polls (every 20 ms, bounded) until the snapshot covering `lsn` is
/// written; seconds since `asked`.
fn snapshot_written(api: SocketAddr, lsn: u64, asked: Instant) -> Result<f64, String> {
    loop {
        let st = status_at(api)?;
        if st.snapshot.lsn.is_some_and(|l| l >= lsn) {
            return Ok(asked.elapsed().as_secs_f64());
        }
        if asked.elapsed() > WAIT_WITHIN {
            return Err(format!(
                "the snapshot to LSN {lsn} was not written within {WAIT_WITHIN:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// W3: 100,000 jobs enqueued (batches of 100, 8 clients) into a server
/// running 8 `noop` workers; time from the first enqueue until status
/// counts every job completed (durable: the core counts a completion once
/// its record is).
pub fn w3(ctx: &mut Ctx) -> Result<Row, String> {
    let mut s = ctx.server("w3", 8)?;
    let n = ctx.n(100_000);
    let requests = (n / BATCH_JOBS as u64).max(1);
    let jobs = requests * BATCH_JOBS as u64;
    let before = s.fsyncs()?;
    let cpu_before = (s.cpu_secs(), bench_cpu_secs());
    let (mut row, load) = ctx.measure(
        &s,
        "W3",
        format!("{jobs} jobs (100 per request, 8 clients) run by 8 noop workers"),
        8,
        requests,
        batch_pool(),
        BATCH_JOBS as u64,
    )?;
    let enqueued = Instant::now();
    loop {
        let st = s.status()?;
        if st.totals.is_some_and(|t| t.completed >= jobs) {
            break;
        }
        if enqueued.elapsed() > WAIT_WITHIN {
            return Err(format!(
                "W3: not every job completed within {WAIT_WITHIN:?} of the last enqueue: {:?}",
                st.jobs
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    row.secs = load.secs + enqueued.elapsed().as_secs_f64();
    row.cores = cores(s.cpu_secs(), cpu_before, row.secs);
    // Dispatch and completion records count too.
    row.fsyncs = Some(s.fsyncs()? - before);
    row.note = format!(
        "enqueued in {:.2} s, all completed at {:.2} s; latency is of the enqueues",
        load.secs, row.secs
    );
    row.rss_peak = s.memory().map(|m| m.0);
    s.stop()?;
    Ok(row)
}
