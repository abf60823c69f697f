//! Acknowledged enqueues per second through the in-process client (no
//! HTTP), beside a disk probe from the same run.
//!
//! Run: `cargo bench -p beaver-runtime --bench ack_rate` (release). The
//! probe is a 100-byte write + fdatasync into a preallocated file, one
//! thread: the most a single synchronous client could get. Every enqueue is
//! acknowledged only after its fdatasync. `BEAVER_BENCH_DIR` sets the
//! directory (default: the current one).

use std::time::{Duration, Instant};

use beaver_core::{JobSpec, Payload};
use beaver_io::FileDisk;
use beaver_io::probe::{Prepared, disk_probe};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{EngineConfig, NoObserver, SystemClock};

fn main() {
    let base = std::env::var_os("BEAVER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // No time bound: 3,000 syncs, even in the disk's slow state.
    let p = disk_probe(dir.path(), 3_000, Duration::MAX, Prepared::Written)
        .expect("disk probe")
        .rate();
    println!("disk probe          {p:.0} fdatasyncs/s (100-byte write + fdatasync, one thread)");
    rt.block_on(async {
        let mut config = EngineConfig { data_dir: dir.path().join("data"), ..EngineConfig::default() };
        config.queue.workers = 0;
        let e = beaver_runtime::start(config, FileDisk::new(), NoopExecutor, SystemClock::new(), NoObserver, 1)
            .await
            .expect("engine");
        let payload = Payload::from_json(format!("\"{}\"", "p".repeat(98)).as_bytes()).expect("JSON");
        for (clients, per_client) in [(1usize, 10_000usize), (32, 2_000)] {
            let before = e.client.status().await.expect("status").engine.fsyncs;
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let client = e.client.clone();
                let payload = payload.clone();
                tasks.push(tokio::spawn(async move {
                    let mut worst = Duration::ZERO;
                    let mut lat = Vec::with_capacity(per_client);
                    for _ in 0..per_client {
                        let t = Instant::now();
                        client.enqueue(vec![JobSpec::new(payload.clone())]).await.expect("enqueue");
                        let d = t.elapsed();
                        worst = worst.max(d);
                        lat.push(d);
                    }
                    lat
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.expect("client"));
            }
            let secs = t.elapsed().as_secs_f64();
            lat.sort();
            let n = lat.len();
            let fsyncs = e.client.status().await.expect("status").engine.fsyncs - before;
            println!(
                "{clients:>2} client(s)        {n} acks in {secs:.2} s = {:.0}/s ({:.0}% of probe), p50 {:.3} ms, p99 {:.3} ms, {:.1} records per fsync",
                n as f64 / secs,
                100.0 * n as f64 / secs / p,
                lat[n / 2].as_secs_f64() * 1e3,
                lat[n * 99 / 100].as_secs_f64() * 1e3,
                n as f64 / fsyncs.max(1) as f64
            );
        }
        e.handle.shutdown();
        e.handle.wait().await.expect("stop");
    });
}
