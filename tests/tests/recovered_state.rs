//! Snapshots of the recovered status for named crash scenarios.
//!
//! Each scenario drives the real engine (real files, `FileDisk`) in-process
//! on a temp dir; a crash drops the engine's runtime without any shutdown,
//! so exactly what reached the files survives (as after `kill -9`). The
//! snapshot is what `beaver status --data-dir --json` reports: what a
//! restart would recover, in the published status schema. Volatile fields
//! (times, LSNs, sizes, paths) are redacted; every scenario then restarts
//! the engine for real and checks the restart agrees.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beaver_cli::offline::inspect_data_dir;
use beaver_cli::schema::StatusDoc;
use beaver_core::{JobId, JobSpec, Payload};
use beaver_io::FileDisk;
use beaver_runtime::{Engine, EngineConfig, ExecutorConfig, NoObserver, SystemClock};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: dir.to_path_buf(),
        segment_bytes: 64 << 10,
        // Snapshots only when a scenario asks for one.
        snapshot_wal_bytes: 1 << 40,
        snapshot_interval_ms: 0,
        shutdown_grace_ms: 2_000,
        ..EngineConfig::default()
    };
    c.queue.workers = 2;
    c.queue.prefetch = 3;
    c
}

fn start(rt: &Runtime, dir: &Path, executor: ExecutorConfig) -> Engine {
    rt.block_on(beaver_runtime::start(
        config(dir),
        FileDisk::new(),
        executor.build().unwrap(),
        SystemClock::new(),
        NoObserver,
        beaver_io::entropy_seed(),
    ))
    .unwrap()
}

fn job(id: &str, payload: &str, delay_ms: u64) -> JobSpec {
    let mut j = JobSpec::new(Payload::from_json(payload.as_bytes()).unwrap())
        .with_id(JobId::from_client(id).unwrap());
    j.delay_ms = delay_ms;
    j
}

/// Kills the engine: its runtime stops without any shutdown. The runtime
/// goes first, and is waited for (its tasks dropped), because dropping the
/// last client into a still-running engine would start a graceful stop.
fn crash(rt: Runtime, engine: Engine) {
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(engine);
}

/// Waits (at most 30 s) until `ok(status)`.
fn wait_for(
    rt: &Runtime,
    e: &Engine,
    what: &str,
    ok: impl Fn(&beaver_runtime::EngineStatus) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = rt.block_on(e.client.status()).unwrap();
        if ok(&st) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            st.queue.stats.jobs
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn offline(dir: &Path) -> StatusDoc {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(inspect_data_dir(dir, beaver_core::Config::default()))
        .unwrap()
}

/// Digits in free text (offsets, LSNs, byte counts) vary between runs.
fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

fn snapshot(name: &str, mut doc: StatusDoc) {
    if let Some(d) = doc.data_dir.as_mut() {
        d.problems = d.problems.iter().map(|p| scrub(p)).collect();
        for f in &mut d.snapshot_files {
            f.file = scrub(&f.file);
            f.problem = f.problem.as_deref().map(scrub);
        }
    }
    insta::assert_json_snapshot!(name, doc, {
        ".now_ms" => "[time]",
        ".wal.bytes" => "[bytes]",
        ".wal.segments" => "[count]",
        ".wal.last_lsn" => "[lsn]",
        ".snapshot.lsn" => redact("[lsn]"),
        ".snapshot.written_at_ms" => redact("[time]"),
        ".snapshot.age_ms" => redact("[ms]"),
        ".in_flight[].lease_until_ms" => "[time]",
        ".newest_dead[].finished_at_ms" => redact("[time]"),
        ".data_dir.path" => "[dir]",
        ".data_dir.log_lsns" => redact("[lsns]"),
        ".data_dir.watermark" => "[lsn]",
        ".data_dir.replay_records" => "[count]",
        ".data_dir.snapshot_files[].lsn" => "[lsn]",
    });
}

/// Redacts a value but keeps `null` visible: whether a snapshot exists is
/// part of what the scenario shows.
fn redact(label: &'static str) -> insta::internals::Redaction {
    insta::dynamic_redaction(move |value, _| match value {
        insta::internals::Content::None => value,
        _ => label.into(),
    })
}

const HOUR_MS: u64 = 3_600_000;

/// Enqueues 120 jobs of 1 KB payloads (30 requests of 4), delayed an hour
/// so they stay pending: about 4 segments of log with [`config`].
fn fill(rt: &Runtime, e: &Engine, prefix: &str) {
    let payload = format!("\"{}\"", "p".repeat(1_000));
    for i in 0..30 {
        let jobs = (0..4)
            .map(|k| job(&format!("{prefix}-{i}-{k}"), &payload, HOUR_MS))
            .collect();
        rt.block_on(e.client.enqueue(jobs)).unwrap();
    }
}

/// Asks for a snapshot and waits until it is over: it is a compaction (a
/// checkpoint and a snapshot at it, twice if that lets more of the log
/// go), and the segments it lets go are deleted.
fn snap(rt: &Runtime, e: &Engine) {
    let before = rt.block_on(e.client.status()).unwrap().engine.compactions;
    let lsn = rt.block_on(e.client.snapshot()).unwrap();
    wait_for(rt, e, "the compaction", |s| {
        s.engine.compactions > before && s.engine.snapshot_lsn >= lsn
    });
}

/// Starts on `dir`, checks what its recovery found, and stops gracefully.
fn restart_finds(dir: &Path, jobs: u64, replayed_records: u64) {
    let rt = runtime();
    let e = start(&rt, dir, ExecutorConfig::Noop);
    assert_eq!(e.recovery.jobs, jobs);
    assert_eq!(e.recovery.replayed_records, replayed_records);
    e.handle.shutdown();
    rt.block_on(e.handle.wait()).unwrap();
}

#[test]
fn clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    let done: Vec<_> = (0..8).map(|i| job(&format!("done-{i}"), "{}", 0)).collect();
    rt.block_on(e.client.enqueue(done)).unwrap();
    wait_for(&rt, &e, "8 completed", |s| {
        s.queue.stats.jobs.completed == 8
    });
    let later: Vec<_> = (0..3)
        .map(|i| job(&format!("later-{i}"), r#"{"at":"noon"}"#, HOUR_MS))
        .collect();
    rt.block_on(e.client.enqueue(later)).unwrap();
    rt.block_on(e.client.cancel(JobId::from_client("later-2").unwrap()))
        .unwrap();
    e.handle.shutdown();
    rt.block_on(e.handle.wait()).unwrap();
    let doc = offline(dir.path());
    assert_eq!(
        doc.snapshot.lsn,
        Some(doc.wal.last_lsn),
        "a clean stop snapshots everything"
    );
    snapshot("clean_restart", doc);
    // A real restart agrees.
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    assert_eq!(e.recovery.jobs, 11);
    assert_eq!(e.recovery.replayed_records, 0);
}

#[test]
fn crash_with_jobs_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    // Attempts that run for an hour: they are in flight when the crash comes.
    let slow = ExecutorConfig::demo(HOUR_MS, HOUR_MS, 0.0).unwrap();
    let e = start(&rt, dir.path(), slow.clone());
    let jobs: Vec<_> = (0..4).map(|i| job(&format!("slow-{i}"), "{}", 0)).collect();
    rt.block_on(e.client.enqueue(jobs)).unwrap();
    rt.block_on(e.client.enqueue(vec![job("waiting", "{}", HOUR_MS)]))
        .unwrap();
    wait_for(&rt, &e, "4 in flight", |s| {
        s.queue.stats.jobs.in_flight == 4
    });
    crash(rt, e);
    let doc = offline(dir.path());
    assert_eq!(doc.in_flight.len(), 4);
    snapshot("crash_with_jobs_in_flight", doc);
    // The restart fails the lost attempts (they count) and retries them.
    let rt = runtime();
    let e = start(&rt, dir.path(), slow);
    assert_eq!(e.recovery.jobs, 5);
    let j = rt
        .block_on(e.client.get(JobId::from_client("slow-0").unwrap()))
        .unwrap()
        .unwrap();
    assert_eq!(j.attempt, 1, "{j:?}");
    wait_for(&rt, &e, "a second attempt", |s| {
        s.queue.stats.totals.dispatched >= 1
    });
    crash(rt, e);
}

#[test]
fn crash_after_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    for i in 0..5 {
        rt.block_on(
            e.client
                .enqueue(vec![job(&format!("acked-{i}"), r#"[1,2,3]"#, HOUR_MS)]),
        )
        .unwrap();
    }
    crash(rt, e);
    // A write the crash tore: garbage right after the last batch, as a
    // half-written batch that was never acknowledged leaves it.
    let ins = {
        let r = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        r.block_on(beaver_io::inspect(
            &FileDisk::new(),
            &dir.path().join("wal"),
            0,
        ))
        .unwrap()
    };
    let (seg, end) = ins
        .segments
        .iter()
        .rev()
        .find_map(|s| s.batches.last().map(|b| (s.path.clone(), b.offset + b.len)))
        .unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0xA5; 700], end).unwrap();
    }
    let doc = offline(dir.path());
    assert_eq!(doc.data_dir.as_ref().unwrap().log_end, "torn");
    assert_eq!(doc.data_dir.as_ref().unwrap().torn_bytes, 700);
    snapshot("crash_after_a_torn_write", doc);
    // The restart discards the torn tail and keeps every acknowledged job.
    let rt = runtime();
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    assert_eq!(e.recovery.jobs, 5);
    assert_eq!(e.recovery.torn_bytes, 700);
    e.handle.shutdown();
    rt.block_on(e.handle.wait()).unwrap();
    assert_eq!(offline(dir.path()).data_dir.unwrap().log_end, "clean");
}

#[test]
fn crash_between_snapshot_and_segment_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let rt = runtime();
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    fill(&rt, &e, "a");
    snap(&rt, &e);
    fill(&rt, &e, "b");
    // A snapshot is a compaction: checkpoint, snapshot, twice; each
    // round deletes what the older kept snapshot covers. Keep the log as
    // it is before the last one, to put back what it deletes.
    let segments_before: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    assert!(
        segments_before.len() >= 3,
        "the scenario needs several segments"
    );
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = segments_before
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    snap(&rt, &e);
    crash(rt, e);
    // The crash came after the newest snapshot was durable but before
    // the segments the older one covers were deleted: put back those
    // that went (the log stays one run of segments: deletion goes oldest
    // first, and every one deleted is put back).
    let mut restored = 0;
    for (p, bytes) in saved {
        if !p.exists() {
            std::fs::write(&p, bytes).unwrap();
            restored += 1;
        }
    }
    eprintln!("restored {restored} deleted segments");
    let doc = offline(dir.path());
    let d = doc.data_dir.as_ref().unwrap();
    assert_eq!(d.snapshot_files.len(), 2);
    assert!(
        d.log_lsns.unwrap().0 <= d.snapshot_files[1].lsn,
        "old segments are present"
    );
    assert_eq!(
        d.replay_records, 0,
        "the newest snapshot covers the whole log"
    );
    snapshot("crash_between_snapshot_and_segment_deletion", doc);
    restart_finds(dir.path(), 240, 0);
}

#[test]
fn status_of_a_data_dir_whose_covered_segments_were_removed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let first_segment = wal.join("wal-00000000000000000001.seg");
    let rt = runtime();
    let e = start(&rt, dir.path(), ExecutorConfig::Noop);
    for round in ["a", "b", "c"] {
        fill(&rt, &e, round);
        snap(&rt, &e);
    }
    // The older of the two kept snapshots covers the first segments: they go.
    let deadline = Instant::now() + Duration::from_secs(30);
    while first_segment.exists() {
        assert!(
            Instant::now() < deadline,
            "covered segments were not removed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And a log to replay after the newest snapshot.
    fill(&rt, &e, "d");
    crash(rt, e);

    let doc = offline(dir.path());
    let d = doc.data_dir.as_ref().unwrap();
    assert!(d.would_start, "{:?}", d.problems);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.log_end, "clean");
    assert!(d.log_lsns.unwrap().0 > 1, "the log's start was removed");
    assert_eq!(d.replay_records, 30, "fill d's records after the snapshot");
    assert_eq!(doc.jobs.pending, 480);
    restart_finds(dir.path(), 480, 30);
}

/// Saves the empty state's snapshot under `lsn`'s name; returns its path.
fn save_empty_snapshot(rt: &Runtime, dir: &Path, lsn: u64) -> PathBuf {
    let body = beaver_core::codec::encode_queue_snapshot(&beaver_core::Core::new(
        beaver_core::Config::default(),
    ));
    rt.block_on(async {
        let mut store = beaver_io::SnapshotStore::open(FileDisk::new(), &dir.join("snapshots"))
            .await
            .unwrap();
        store.save(lsn, &body).await.unwrap().path
    })
}

/// Offline status finds exactly one problem, containing `offline_says`, and
/// a restart is refused with an error containing `engine_says`.
fn refused_both_ways(rt: &Runtime, dir: &Path, offline_says: &str, engine_says: &str) {
    let doc = offline(dir);
    let d = doc.data_dir.as_ref().unwrap();
    assert!(!d.would_start);
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
    assert!(d.problems[0].contains(offline_says), "{:?}", d.problems);
    let started = rt.block_on(beaver_runtime::start(
        config(dir),
        FileDisk::new(),
        ExecutorConfig::Noop.build().unwrap(),
        SystemClock::new(),
        NoObserver,
        1,
    ));
    let err = started.err().expect("the engine refuses the snapshot");
    assert!(err.to_string().contains(engine_says), "{err}");
}

#[test]
fn a_snapshot_holding_another_lsn_than_its_name_refuses_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    // Checksum valid, named for LSN 10, holding the empty state at LSN 0.
    save_empty_snapshot(&rt, dir.path(), 10);
    refused_both_ways(
        &rt,
        dir.path(),
        "holds LSN 0 while named for LSN 10; a restart refuses to start",
        "named for LSN 10 but holds LSN 0",
    );
}

#[test]
fn a_snapshot_of_another_format_version_refuses_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let path = save_empty_snapshot(&rt, dir.path(), 0);
    // A well-formed file of the next version: its checksum made to match.
    let mut bytes = std::fs::read(&path).unwrap();
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) + 1;
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let end = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    refused_both_ways(
        &rt,
        dir.path(),
        &format!(
            "format version {version}, but this beaver reads version {}: upgrade beaver; a restart refuses to start",
            version - 1
        ),
        "upgrade",
    );
}
