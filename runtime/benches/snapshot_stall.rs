//! Does building a snapshot stall the core task?
//!
//! Run: `cargo bench -p beaver-runtime --bench snapshot_stall` (release).
//! Fills a real-disk engine with 1,000,000 pending jobs (100-byte payloads,
//! workers paused), asks for a snapshot, and meanwhile probes the core task
//! with `get` requests back to back, reporting the longest and p99 answer
//! times while the snapshot is built. `BEAVER_BENCH_JOBS` changes the count,
//! `BEAVER_BENCH_DIR` the directory (default: the current one).

use std::time::{Duration, Instant};

use beaver_core::{JobId, JobSpec, Payload};
use beaver_io::FileDisk;
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{EngineConfig, NoObserver, SystemClock};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let n: u64 = std::env::var("BEAVER_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::var_os("BEAVER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        ..EngineConfig::default()
    };
    config.queue.workers = 0;
    config.snapshot_wal_bytes = u64::MAX;
    config.snapshot_interval_ms = 0;
    let e = beaver_runtime::start(
        config,
        FileDisk::new(),
        NoopExecutor,
        SystemClock::new(),
        NoObserver,
        1,
    )
    .await
    .expect("engine starts");
    let payload = Payload::from_json(format!("\"{}\"", "p".repeat(98)).as_bytes()).expect("JSON");
    let t = Instant::now();
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let client = e.client.clone();
        let payload = payload.clone();
        clients.push(tokio::spawn(async move {
            let mut b = c;
            while b * 1_000 < n {
                let jobs = (0..1_000).map(|_| JobSpec::new(payload.clone())).collect();
                client.enqueue(jobs).await.expect("enqueue");
                b += 8;
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    println!(
        "filled              {n} jobs in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let probe_id = JobId::parse("~1").expect("id");
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        let t = Instant::now();
        e.client.get(probe_id.clone()).await.expect("get");
        idle.push(t.elapsed());
    }
    let before = e.client.status().await.expect("status").engine.snapshots;
    let began = Instant::now();
    e.client.snapshot().await.expect("snapshot requested");
    let mut during = Vec::new();
    loop {
        let t = Instant::now();
        e.client.get(probe_id.clone()).await.expect("get");
        during.push(t.elapsed());
        if t.elapsed() > Duration::from_millis(3)
            && std::env::var_os("BEAVER_BENCH_VERBOSE").is_some()
        {
            println!(
                "slow probe {:.1} ms at {:.3} s",
                t.elapsed().as_secs_f64() * 1e3,
                began.elapsed().as_secs_f64()
            );
        }
        if during.len() % 256 == 0
            && e.client.status().await.expect("status").engine.snapshots > before
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "snapshot did not finish"
        );
    }
    let build = began.elapsed().as_secs_f64();
    let report = |name: &str, v: &mut Vec<Duration>| {
        v.sort();
        let p99 = v[v.len() * 99 / 100];
        let max = v[v.len() - 1];
        println!(
            "{name:<19} {} probes: p99 {:.3} ms, max {:.3} ms",
            v.len(),
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    };
    report("probe, idle", &mut idle);
    report("probe, snapshotting", &mut during);
    let st = e.client.status().await.expect("status");
    println!(
        "snapshot            built and saved in {build:.2} s, covering LSN {}",
        st.engine.snapshot_lsn
    );
    e.handle.shutdown();
    e.handle.wait().await.expect("clean stop");
}
