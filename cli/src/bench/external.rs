//! The external-worker workloads: jobs leased and completed over HTTP by
//! workers in this process (keep-alive connections, one request in flight
//! each), against a `beaver run --workers 0` that runs nothing itself.
//!
//! - W3x: 100,000 jobs enqueued first, then drained by 8 workers, each
//!   leasing up to 100 with a long poll and completing them in one batch;
//!   timed from the first lease sent to the last completion answered (a
//!   completion is answered once its record is durable).
//! - W3x1: one worker leasing one job and completing it, again and again:
//!   the latency of one job's lease plus completion.
//! - W2x: W2 alone, then W2 on another fresh server while 8 workers drain
//!   what it enqueues: leasing must not slow enqueueing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::conn::{Conn, request};
use super::load::{Load, drive};
use super::probe::dir_bytes;
use super::report::Row;
use super::workloads::{CONCURRENT_CLIENTS, Ctx, batch_pool, bench_cpu_secs, cores, single_pool};

/// External workers of W3x and W2x.
const WORKERS: usize = 8;
/// Jobs one lease request asks for (the server's default limit).
const LEASE_MAX: usize = 100;
/// The longest one drain may take.
const DRAIN_WITHIN: Duration = Duration::from_secs(300);
/// Busy answers (503) one worker may retry.
const BUSY_RETRIES_MAX: u32 = 10_000;

#[derive(Deserialize)]
struct Grants {
    leases: Vec<Granted>,
}

#[derive(Deserialize)]
struct Granted {
    lease_id: String,
}

#[derive(Deserialize)]
struct Items {
    results: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    ok: bool,
}

/// What the drain workers share.
struct Drain {
    /// Jobs completed (answered ok) so far.
    completed: AtomicU64,
    /// Stop once this many are completed.
    target: u64,
    /// Stop now (W2x: the enqueues are done).
    stop: AtomicBool,
    /// A lease request's wait.
    wait_ms: u64,
}

/// One POST, retrying 503 answers (2 ms apart, bounded); the body of a
/// 200 answer, parsed.
async fn call<T: for<'de> Deserialize<'de>>(
    conn: &mut Conn,
    req: &[u8],
    busy: &mut u32,
) -> Result<T, String> {
    loop {
        let a = conn
            .call(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        match a.status {
            200 => {
                return serde_json::from_slice(a.body)
                    .map_err(|e| format!("unreadable answer: {e}"));
            }
            503 if *busy < BUSY_RETRIES_MAX => *busy += 1,
            s => {
                return Err(format!(
                    "answered {s}: {}",
                    String::from_utf8_lossy(a.body).trim()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One worker: lease up to [`LEASE_MAX`], complete them in one batch,
/// until the drain's target or stop; the instant of its last completion.
async fn drain_worker(addr: SocketAddr, d: Arc<Drain>) -> Result<Option<Instant>, String> {
    let mut conn = Conn::new(addr);
    conn.open()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let lease = format!(
        r#"{{"queue":"default","max":{LEASE_MAX},"wait_ms":{}}}"#,
        d.wait_ms
    );
    let lease = request(
        "POST",
        "/v1/leases",
        Some(("application/json", lease.as_bytes())),
    );
    let (mut busy, mut last) = (0, None);
    let deadline = Instant::now() + DRAIN_WITHIN;
    while d.completed.load(Relaxed) < d.target && !d.stop.load(Relaxed) {
        if Instant::now() > deadline {
            return Err(format!("the drain did not finish within {DRAIN_WITHIN:?}"));
        }
        let grants: Grants = call(&mut conn, &lease, &mut busy).await?;
        if grants.leases.is_empty() {
            continue;
        }
        let ids: Vec<&str> = grants.leases.iter().map(|g| g.lease_id.as_str()).collect();
        let body = serde_json::json!({ "leases": ids }).to_string();
        let complete = request(
            "POST",
            "/v1/leases/complete",
            Some(("application/json", body.as_bytes())),
        );
        let items: Items = call(&mut conn, &complete, &mut busy).await?;
        if items.results.len() != ids.len() || items.results.iter().any(|i| !i.ok) {
            return Err("a completion of a current lease was refused".into());
        }
        d.completed.fetch_add(ids.len() as u64, Relaxed);
        last = Some(Instant::now());
    }
    Ok(last)
}

/// Starts [`WORKERS`] drain workers.
fn spawn_drain(
    ctx: &Ctx,
    addr: SocketAddr,
    d: &Arc<Drain>,
) -> Vec<tokio::task::JoinHandle<Result<Option<Instant>, String>>> {
    (0..WORKERS)
        .map(|_| ctx.rt.spawn(drain_worker(addr, d.clone())))
        .collect()
}

/// Waits for the drain workers; the last completion's instant.
fn join_drain(
    ctx: &Ctx,
    tasks: Vec<tokio::task::JoinHandle<Result<Option<Instant>, String>>>,
) -> Result<Option<Instant>, String> {
    ctx.rt.block_on(async {
        let mut last: Option<Instant> = None;
        for t in tasks {
            let l = t
                .await
                .map_err(|e| format!("a drain worker failed: {e}"))??;
            last = last.max(l);
        }
        Ok(last)
    })
}

/// Enqueues `jobs` jobs (batches of 100, 8 clients); the load.
fn fill(ctx: &Ctx, api: SocketAddr, jobs: u64) -> Result<Load, String> {
    let requests = (jobs / 100).max(1);
    ctx.rt.block_on(drive(
        api,
        8,
        requests,
        Arc::new(batch_pool()),
        DRAIN_WITHIN,
    ))
}

/// W3x: the drain of 100,000 jobs by 8 external workers.
pub fn w3x(ctx: &mut Ctx) -> Result<Row, String> {
    let mut s = ctx.server("w3x", 0)?;
    let jobs = (ctx.n(100_000) / 100).max(1) * 100;
    eprintln!(
        "== W3x: enqueue {jobs} jobs, then 8 external workers drain them (server pid {})",
        s.pid
    );
    let filled = fill(ctx, s.ports.api, jobs)?;
    let before = s.fsyncs()?;
    let cpu_before = (s.cpu_secs(), bench_cpu_secs());
    let d = Arc::new(Drain {
        completed: AtomicU64::new(0),
        target: jobs,
        stop: AtomicBool::new(false),
        wait_ms: 1_000,
    });
    let t = Instant::now();
    let tasks = spawn_drain(ctx, s.ports.api, &d);
    let last = join_drain(ctx, tasks)?.ok_or("W3x: nothing was completed")?;
    let secs = last.duration_since(t).as_secs_f64();
    let st = s.status()?;
    let completed = st.totals.map_or(0, |t| t.completed);
    if completed != jobs || st.jobs.completed != jobs {
        return Err(format!(
            "W3x: the server counts {completed} completed of {jobs}: {:?}",
            st.jobs
        ));
    }
    let row = Row {
        name: "W3x".into(),
        what: format!(
            "{jobs} jobs drained by 8 external workers (lease 100 with a long poll, complete in batches)"
        ),
        unit: "jobs",
        count: jobs,
        secs,
        latency_ms: None,
        fsyncs: Some(s.fsyncs()? - before),
        cores: cores(s.cpu_secs(), cpu_before, secs),
        rss_peak: s.memory().map(|m| m.0),
        data_bytes: Some(dir_bytes(&s.data_dir)),
        note: format!(
            "first lease to last completion answered; enqueued before in {:.2} s",
            filled.secs
        ),
    };
    s.stop()?;
    Ok(row)
}

/// W3x1: one worker, one job at a time: lease 1, complete it.
pub fn w3x1(ctx: &mut Ctx) -> Result<Row, String> {
    let mut s = ctx.server("w3x1", 0)?;
    let jobs = (ctx.n(10_000) / 100).max(1) * 100;
    eprintln!(
        "== W3x1: enqueue {jobs} jobs, then 1 worker leases and completes one at a time (server pid {})",
        s.pid
    );
    fill(ctx, s.ports.api, jobs)?;
    let before = s.fsyncs()?;
    let cpu_before = (s.cpu_secs(), bench_cpu_secs());
    let addr = s.ports.api;
    let (secs, latency_ns) = ctx.rt.block_on(one_at_a_time(addr, jobs))?;
    let load = Load {
        requests: jobs,
        secs,
        latency_ns,
        busy: 0,
    };
    let row = Row {
        name: "W3x1".into(),
        what: "1 worker: lease 1 job, complete it; latency of the two".into(),
        unit: "jobs",
        count: jobs,
        secs,
        latency_ms: load.latency_ms(),
        fsyncs: Some(s.fsyncs()? - before),
        cores: cores(s.cpu_secs(), cpu_before, secs),
        rss_peak: s.memory().map(|m| m.0),
        data_bytes: Some(dir_bytes(&s.data_dir)),
        note: String::new(),
    };
    s.stop()?;
    Ok(row)
}

/// Leases and completes `jobs` jobs one by one; (seconds, sorted
/// latencies in ns).
async fn one_at_a_time(addr: SocketAddr, jobs: u64) -> Result<(f64, Vec<u64>), String> {
    let mut conn = Conn::new(addr);
    conn.open()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let lease = request(
        "POST",
        "/v1/leases",
        Some((
            "application/json",
            br#"{"queue":"default","max":1,"wait_ms":1000}"#,
        )),
    );
    let mut busy = 0;
    let mut latency = Vec::with_capacity(usize::try_from(jobs).unwrap_or(0));
    let t0 = Instant::now();
    let deadline = t0 + DRAIN_WITHIN;
    while (latency.len() as u64) < jobs {
        if Instant::now() > deadline {
            return Err(format!("W3x1 did not finish within {DRAIN_WITHIN:?}"));
        }
        let t = Instant::now();
        let grants: Grants = call(&mut conn, &lease, &mut busy).await?;
        let Some(g) = grants.leases.first() else {
            return Err("W3x1: a lease came back empty with jobs left".into());
        };
        let path = format!("/v1/leases/{}/complete", g.lease_id);
        let complete = request("POST", &path, Some(("application/json", b"{}")));
        let _: serde_json::Value = call(&mut conn, &complete, &mut busy).await?;
        latency.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let secs = t0.elapsed().as_secs_f64();
    latency.sort_unstable();
    Ok((secs, latency))
}

/// W2x: W2 alone on a fresh server, then W2 on another while 8 external
/// workers drain what it enqueues.
pub fn w2x(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = ctx.n(100_000);
    let mut alone = ctx.server("w2x-alone", 0)?;
    let (a, _) = ctx.measure(
        &alone,
        "W2x alone",
        "as W2: 1-job enqueues, 32 clients".into(),
        CONCURRENT_CLIENTS,
        n,
        single_pool(),
        1,
    )?;
    alone.stop()?;
    let mut s = ctx.server("w2x-drain", 0)?;
    let d = Arc::new(Drain {
        completed: AtomicU64::new(0),
        target: u64::MAX,
        stop: AtomicBool::new(false),
        wait_ms: 100,
    });
    let tasks = spawn_drain(ctx, s.ports.api, &d);
    let measured = ctx.measure(
        &s,
        "W2x+drain",
        "as W2, while 8 external workers lease and complete".into(),
        CONCURRENT_CLIENTS,
        n,
        single_pool(),
        1,
    );
    d.stop.store(true, Relaxed);
    let drained = join_drain(ctx, tasks);
    let (mut b, _) = measured?;
    drained?;
    b.note = format!(
        "{} jobs completed by the workers during the enqueues; {:.0}% of W2x alone{}",
        d.completed.load(Relaxed),
        100.0 * b.rate() / a.rate().max(1e-9),
        if b.note.is_empty() {
            String::new()
        } else {
            format!("; {}", b.note)
        }
    );
    s.stop()?;
    Ok(vec![a, b])
}
