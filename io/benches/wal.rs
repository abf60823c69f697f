//! WAL benchmark on the real disk: `cargo bench -p beaver-io`.
//!
//! Prints, from one run: a disk probe (100-byte write + fdatasync into a
//! preallocated file, one thread), appends/s and fsyncs/s through the
//! production group-commit path ([`beaver_io::GroupCommit`], driven by
//! [`Appender`]'s proposer) with 1, 8, 64 and 512 concurrent appenders of
//! 100-byte records, and replay
//! speed of a 1,000,000-record log. Writes into a temp dir under
//! `$BEAVER_BENCH_DIR` (default: the current directory).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: fail loudly

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beaver_io::probe::{Prepared, disk_probe};
use beaver_io::{Appender, Disk, FileDisk, Wal, WalOptions};

const RECORD: usize = 100;
const RUN: Duration = Duration::from_secs(3);

fn base_dir() -> PathBuf {
    std::env::var_os("BEAVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The disk probe, on a file allocated as WAL segments are (fallocate):
/// as many syncs as fit 64 MiB, for at most [`RUN`].
fn probe(dir: &Path) -> f64 {
    disk_probe(dir, (64 << 20) / RECORD as u64, RUN, Prepared::Allocated)
        .expect("disk probe")
        .rate()
}

fn opts() -> WalOptions {
    WalOptions {
        salt_seed: beaver_io::entropy_seed(),
        ..WalOptions::default()
    }
}

/// Appenders through the production commit path, laid out as the engine
/// lays it out: the proposer (the core task's part: LSNs, lone-client
/// in-place commits, hand-overs) and the appenders share one runtime
/// thread, as the core task and the HTTP handlers do; the WAL task runs on
/// a thread of its own with a current-thread runtime, and the WAL on a
/// `dedicated` disk handle (fdatasync inline, no pool hops). One appender
/// is a lone client: its records are committed in place.
async fn appenders(dir: &Path, n: usize) -> (f64, f64, f64) {
    let (wal, _) = Wal::open(FileDisk::new().dedicated(), dir, opts(), 0, |_, _| {})
        .await
        .unwrap();
    let (appender, proposer, wal_task) = Appender::start(wal, 4096);
    let wal_thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(wal_task)
    });
    let proposer = tokio::spawn(proposer);
    // Warm up: the first segment's preparation is not what we measure.
    appender.append(vec![1; RECORD]).await.unwrap();
    let before = appender.stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let ap = appender.clone();
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                ap.append(vec![42; RECORD]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let after = appender.stats();
    drop(appender);
    proposer.await.unwrap().unwrap();
    wal_thread.join().unwrap();
    let records = (after.records - before.records) as f64;
    let syncs = (after.syncs - before.syncs) as f64;
    (records / secs, syncs / secs, records / syncs.max(1.0))
}

/// One task calling `Wal::append` (write + fdatasync) in a loop: the WAL's
/// own cost per record without the group-commit task's channel hops.
async fn direct(dir: &Path) -> f64 {
    let (mut wal, _) = Wal::open(FileDisk::new().dedicated(), dir, opts(), 0, |_, _| {})
        .await
        .unwrap();
    let body = [5u8; RECORD];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        let lsn = wal.next_lsn();
        wal.append(&[(lsn, &body[..])]).await.unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn replay(dir: &Path) -> (f64, f64) {
    const N: u64 = 1_000_000;
    let (mut wal, _) = Wal::open(FileDisk::new(), dir, opts(), 0, |_, _| {})
        .await
        .unwrap();
    let body = [9u8; RECORD];
    let build = Instant::now();
    let mut lsn = 1;
    while lsn <= N {
        let recs: Vec<(u64, &[u8])> = (lsn..(lsn + 1000).min(N + 1))
            .map(|l| (l, &body[..]))
            .collect();
        wal.write_batch(&recs).await.unwrap();
        lsn += recs.len() as u64;
        // Sync as group commit would, so watermarks follow the log.
        if lsn % 20_000 == 1 {
            wal.sync().await.unwrap();
        }
    }
    wal.sync().await.unwrap();
    let build_secs = build.elapsed().as_secs_f64();
    drop(wal);
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    let (_, rec) = Wal::open(FileDisk::new(), dir, opts(), 0, |_, b| {
        count += 1;
        bytes += b.len();
    })
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((count, rec.last_lsn, bytes), (N, N, N as usize * RECORD));
    (N as f64 / secs, build_secs)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then
    // only check that the benchmark builds and exits.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base = base_dir();
    let tmp = tempfile::Builder::new()
        .prefix("beaver-bench-")
        .tempdir_in(&base)
        .expect("temp dir under $BEAVER_BENCH_DIR or the current directory");
    println!("beaver-io WAL benchmark in {}", tmp.path().display());
    let probe_ops = probe(tmp.path());
    println!("disk probe: {probe_ops:>10.0} write+fdatasync/s (100 B, one thread)");

    // One worker thread: the engine's runtime on this 2-CPU machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let direct_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut one = 0.0;
    let mut sixty_four = 0.0;
    for n in [1usize, 8, 64, 512] {
        let dir = tmp.path().join(format!("wal-{n}"));
        let (aps, fps, per) = rt.block_on(appenders(&dir, n));
        println!(
            "{n:>4} appenders: {aps:>10.0} appends/s {fps:>8.0} fsyncs/s {per:>7.1} records/fsync"
        );
        if n == 1 {
            one = aps;
        }
        if n == 64 {
            sixty_four = per;
        }
    }
    let d = direct_rt.block_on(direct(&tmp.path().join("direct")));
    println!("   1 direct Wal::append loop: {d:>10.0} appends/s");
    let (rps, build) = rt.block_on(replay(&tmp.path().join("replay")));
    println!("replay: {rps:>10.0} records/s (1,000,000 x 100 B; log written in {build:.2} s)");
    println!("targets:");
    println!(
        "  1 appender vs probe: {:.1}% of probe (target >= 85%)",
        100.0 * one / probe_ops
    );
    println!("  64 appenders: {sixty_four:.1} records/fsync (target >= 32)");
    println!("  replay: {rps:.0} records/s (target >= 2,000,000)");
}
