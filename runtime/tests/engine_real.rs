//! The engine on the real disk (temp dirs): jobs complete, restarts lose
//! nothing, abrupt stops retry in-flight attempts, failures back off and
//! die with their stderr, timeouts kill and retry, snapshots compact.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::path::Path;
use std::time::Duration;

use beaver_core::{JobId, JobSpec, JobState, Payload, Rejection, RequeueTarget, RetryPolicy};
use beaver_io::FileDisk;
use beaver_runtime::executor::{DemoConfig, ExecExecutor, NoopExecutor};
use beaver_runtime::{
    AnyExecutor, Client, Engine, EngineConfig, Executor, NoObserver, SystemClock,
};

fn config(dir: &Path, workers: u32) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        ..EngineConfig::default()
    };
    c.queue.workers = workers;
    c.queue.prefetch = workers;
    c.queue.retry = RetryPolicy {
        base_ms: 20,
        max_ms: 100,
    };
    c.queue.hash_seed = 99;
    c
}

async fn start<E: Executor>(config: EngineConfig, executor: E) -> Engine {
    beaver_runtime::start(
        config,
        FileDisk::new(),
        executor,
        SystemClock::new(),
        NoObserver,
        beaver_io::entropy_seed(),
    )
    .await
    .unwrap()
}

fn job(id: &str, payload: &str) -> JobSpec {
    JobSpec::new(Payload::from_json(payload.as_bytes()).unwrap())
        .with_id(JobId::from_client(id).unwrap())
}

/// Enqueues `batches` requests of `per` jobs with ids `{prefix}{b}-{i}`.
async fn enqueue_batches(client: &Client, prefix: &str, batches: u32, per: u32, payload: &str) {
    for b in 0..batches {
        let jobs: Vec<JobSpec> = (0..per)
            .map(|i| job(&format!("{prefix}{b}-{i}"), payload))
            .collect();
        client.enqueue(jobs).await.unwrap();
    }
}

/// `clients` concurrent clients, each enqueuing `each` single jobs one at a
/// time (ids `crowd{client}-...`).
async fn crowd(client: &Client, clients: u32, each: u32) {
    let tasks: Vec<_> = (0..clients)
        .map(|t| {
            let c = client.clone();
            tokio::spawn(async move {
                enqueue_batches(&c, &format!("crowd{t}-"), each, 1, "2").await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Polls until `done` holds for the status, at most `secs` seconds.
async fn wait_until(
    client: &Client,
    secs: u64,
    done: impl Fn(&beaver_runtime::EngineStatus) -> bool,
) -> beaver_runtime::EngineStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let st = client.status().await.unwrap();
        if done(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; last status {:?}; engine {:?}",
            st.queue.stats,
            st.engine
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_jobs_complete_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(config(dir.path(), 8), NoopExecutor).await;
    let mut ids = Vec::new();
    for batch in 0..50 {
        let jobs: Vec<JobSpec> = (0..100)
            .map(|i| job(&format!("j{batch}-{i}"), "{\"n\":1}"))
            .collect();
        let acked = e.client.enqueue(jobs).await.unwrap();
        assert!(acked.iter().all(|a| !a.duplicate));
        ids.extend(acked.into_iter().map(|a| a.id));
    }
    let st = wait_until(&e.client, 30, |s| s.queue.stats.jobs.completed == 5_000).await;
    assert_eq!(
        st.queue.stats.jobs.pending + st.queue.stats.jobs.in_flight,
        0
    );
    assert!(st.engine.fsyncs > 0);
    e.handle.shutdown();
    e.handle.wait().await.unwrap();

    let e = start(config(dir.path(), 8), NoopExecutor).await;
    assert_eq!(e.recovery.jobs, 5_000, "every acknowledged job is back");
    assert!(
        e.recovery.snapshot_lsn.is_some(),
        "graceful shutdown wrote a snapshot"
    );
    assert_eq!(
        e.recovery.replayed_records, 0,
        "the snapshot covers the whole log"
    );
    for id in ids.iter().step_by(97) {
        assert_eq!(
            e.client.get(id.clone()).await.unwrap().unwrap().state,
            JobState::Completed
        );
    }
    // Enqueueing the same ids again adds nothing.
    let again = e
        .client
        .enqueue(vec![job("j0-0", "1"), job("fresh", "2")])
        .await
        .unwrap();
    assert_eq!((again[0].duplicate, again[1].duplicate), (true, false));
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_jobs_all_finish_completed_or_dead() {
    let dir = tempfile::tempdir().unwrap();
    let demo = AnyExecutor::Demo(beaver_runtime::executor::DemoExecutor::new(
        DemoConfig::new(1, 5, 0.3).unwrap(),
    ));
    let e = start(config(dir.path(), 8), demo).await;
    let jobs: Vec<JobSpec> = (0..500).map(|i| job(&format!("d{i}"), "{}")).collect();
    e.client.enqueue(jobs).await.unwrap();
    let st = wait_until(&e.client, 30, |s| {
        s.queue.stats.jobs.completed + s.queue.stats.jobs.dead == 500
    })
    .await;
    assert!(st.queue.stats.jobs.completed > 300, "{:?}", st.queue.stats);
    assert!(
        st.queue.stats.totals.failed > 0,
        "a 30% failure rate retried some jobs"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// A runtime like the server's (two workers), for tests that drop one.
fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An abrupt stop: the runtime that ran the engine is dropped with its tasks
/// (nothing is flushed or snapshotted), like `kill -9` but keeping the page cache.
fn run_then_drop(dir: &Path, workers: u32, executor: AnyExecutor, f: impl AsyncFnOnce(&Client)) {
    let rt = two_worker_runtime();
    rt.block_on(async {
        let e = start(config(dir, workers), executor).await;
        f(&e.client).await;
        // Never shut down gracefully: neither through the handle nor by
        // dropping the last client (which stops the engine gracefully, and
        // under load could give dispatched attempts back before the runtime
        // is dropped).
        std::mem::forget(e);
    });
    rt.shutdown_background();
}

/// A lone client's acknowledgements are committed by the core task itself
/// (no hand-off to the WAL task), each after its own fdatasync; concurrent
/// clients then go back to the WAL task's group commit; a crash loses none
/// of either.
#[test]
fn a_lone_clients_commits_are_made_in_place_and_survive_a_crash_like_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    run_then_drop(dir.path(), 0, AnyExecutor::Noop(NoopExecutor), async |c| {
        enqueue_batches(c, "lone", 50, 1, "1").await;
        let st = c.status().await.unwrap();
        assert_eq!(st.engine.durable_lsn, 50, "one record per job");
        assert!(
            st.engine.fsyncs >= 50,
            "each ack waited for its own fdatasync: {:?}",
            st.engine
        );
        assert!(
            st.engine.lone_commits >= 48,
            "a lone client's records are committed by the core task: {:?}",
            st.engine
        );
        crowd(c, 16, 20).await;
        let st = c.status().await.unwrap();
        assert_eq!(st.queue.stats.jobs.pending, 50 + 16 * 20);
        assert_eq!(st.engine.durable_lsn, 50 + 16 * 20);
    });
    let rt = two_worker_runtime();
    rt.block_on(async {
        let e = start(config(dir.path(), 0), NoopExecutor).await;
        assert_eq!(
            e.recovery.jobs,
            50 + 16 * 20,
            "every acknowledged job is back"
        );
        assert_eq!(e.recovery.replayed_records, 50 + 16 * 20);
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
    });
}

/// Concurrent clients on a runtime with one thread are not taken for a
/// lone client, although a commit made in place blocks that thread (why
/// `beaver_io::LoneClient` yields before it commits).
#[test]
fn concurrent_clients_on_one_thread_are_not_committed_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = start(config(dir.path(), 0), NoopExecutor).await;
        let c = e.client.clone();
        // A lone client first, so that commits are being made in place
        // when the crowd arrives.
        enqueue_batches(&c, "lone", 20, 1, "1").await;
        let before = c.status().await.unwrap().engine;
        assert!(before.lone_commits >= 18, "{before:?}");
        crowd(&c, 32, 40).await;
        let after = c.status().await.unwrap().engine;
        let lone = after.lone_commits - before.lone_commits;
        let fsyncs = after.fsyncs - before.fsyncs;
        assert!(
            lone <= 8,
            "32 clients, 1,280 acks: {lone} commits made in place of {fsyncs} fsyncs"
        );
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
    });
}

/// Jobs enqueued without ids (assigned ones) and replayed after a crash
/// are indexed when the replay ends: each is found by its id, they all
/// run, and a client's id among them is still refused twice.
#[test]
fn replayed_jobs_with_assigned_ids_are_found_run_and_deduplicated_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ids.clone();
    run_then_drop(
        dir.path(),
        0,
        AnyExecutor::Noop(NoopExecutor),
        async move |c| {
            for b in 0..30 {
                let mut jobs: Vec<JobSpec> = (0..100)
                    .map(|_| JobSpec::new(Payload::from_json(b"1").unwrap()))
                    .collect();
                if b == 17 {
                    jobs.push(job("mine", "2"));
                }
                let acked = c.enqueue(jobs).await.unwrap();
                seen.lock().unwrap().extend(acked.into_iter().map(|a| a.id));
            }
        },
    );
    let ids = ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 3_001);
    assert!(ids.iter().filter(|i| i.is_assigned()).count() == 3_000);
    let rt = two_worker_runtime();
    rt.block_on(async {
        let e = start(config(dir.path(), 0), NoopExecutor).await;
        assert_eq!((e.recovery.jobs, e.recovery.replayed_records), (3_001, 30));
        for id in ids.iter().step_by(7) {
            let j = e.client.get(id.clone()).await.unwrap();
            assert_eq!(j.map(|j| j.state), Some(JobState::Pending), "{id}");
        }
        let again = e.client.enqueue(vec![job("mine", "3")]).await.unwrap();
        assert!(again[0].duplicate, "a replayed client id is known");
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
        // And they run: dispatch and completion look each one up by id.
        let e = start(config(dir.path(), 8), NoopExecutor).await;
        wait_until(&e.client, 30, |s| s.queue.stats.jobs.completed == 3_001).await;
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
    });
}

#[test]
fn in_flight_jobs_at_an_abrupt_stop_are_retried_with_the_attempt_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = AnyExecutor::Exec(ExecExecutor::new("sleep 30").unwrap());
    run_then_drop(dir.path(), 2, sleeper, async |c| {
        let mut one = job("once", "1");
        one.max_attempts = Some(1);
        let mut two = job("twice", "2");
        two.max_attempts = Some(2);
        c.enqueue(vec![one, two]).await.unwrap();
        wait_until(c, 10, |s| s.engine.running == 2).await;
    });
    let rt = two_worker_runtime();
    rt.block_on(async {
        let e = start(config(dir.path(), 2), NoopExecutor).await;
        assert_eq!(e.recovery.jobs, 2);
        let st = wait_until(&e.client, 10, |s| {
            s.queue.stats.jobs.completed + s.queue.stats.jobs.dead == 2
        })
        .await;
        let once = e
            .client
            .get(JobId::parse("once").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (once.state, once.attempt),
            (JobState::Dead, 1),
            "its only attempt was used up by the crash"
        );
        assert!(once.last_error.unwrap().contains("interrupted"));
        let twice = e
            .client
            .get(JobId::parse("twice").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (twice.state, twice.attempt),
            (JobState::Completed, 2),
            "the interrupted attempt counted"
        );
        assert_eq!(st.queue.stats.totals.failed, 2);
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_backs_off_then_dies_with_its_stderr_and_can_be_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let failing = AnyExecutor::Exec(
        ExecExecutor::new("echo \"no route to $BEAVER_JOB_ID\" >&2; exit 3").unwrap(),
    );
    let e = start(config(dir.path(), 2), failing).await;
    let mut spec = job("mail-1", "{}");
    spec.max_attempts = Some(3);
    e.client.enqueue(vec![spec]).await.unwrap();
    wait_until(&e.client, 10, |s| s.queue.stats.jobs.dead == 1).await;
    let j = e
        .client
        .get(JobId::parse("mail-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.attempt, 3);
    let err = j.last_error.unwrap();
    assert!(
        err.contains("exit status 3") && err.contains("no route to mail-1"),
        "{err}"
    );
    let dead = e.client.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(e.client.requeue(RequeueTarget::AllDead).await.unwrap(), 1);
    wait_until(&e.client, 10, |s| {
        s.queue.stats.jobs.dead == 1 && s.queue.stats.totals.failed == 6
    })
    .await;
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_killed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let slow = AnyExecutor::Exec(ExecExecutor::new("sleep 20").unwrap());
    let e = start(config(dir.path(), 2), slow).await;
    let mut spec = job("slow", "{}");
    spec.max_attempts = Some(2);
    spec.timeout_ms = Some(150);
    e.client.enqueue(vec![spec]).await.unwrap();
    wait_until(&e.client, 10, |s| s.queue.stats.jobs.dead == 1).await;
    let j = e
        .client
        .get(JobId::parse("slow").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.attempt, 2);
    assert!(j.last_error.unwrap().contains("timed out after 150 ms"));
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_payload_reaches_the_command_without_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.json");
    let cmd = format!("cat > {}", out.display());
    let e = start(
        config(&dir.path().join("data"), 1),
        AnyExecutor::Exec(ExecExecutor::new(cmd).unwrap()),
    )
    .await;
    let big = format!("\"{}\"", "x".repeat(900_000));
    e.client.enqueue(vec![job("big", &big)]).await.unwrap();
    wait_until(&e.client, 20, |s| s.queue.stats.jobs.completed == 1).await;
    assert_eq!(std::fs::read(&out).unwrap(), big.as_bytes());
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 4);
    c.segment_bytes = 64 << 10;
    // Two snapshots need two thresholds' worth of log. The 4,040 records
    // come to 350-430 KB as usually batched, but about 220 KB unpadded:
    // at 128 KiB a busy machine's bigger batches could fall short of two
    // (seen once in CI), at 64 KiB they cannot.
    c.snapshot_wal_bytes = 64 << 10;
    let e = start(c.clone(), NoopExecutor).await;
    enqueue_batches(&e.client, "s", 40, 50, "[1,2,3]").await;
    let st = wait_until(&e.client, 30, |s| {
        s.queue.stats.jobs.completed == 2_000 && s.engine.snapshots >= 2
    })
    .await;
    assert!(st.engine.snapshot_lsn > 0);
    // Stop abruptly-ish: no graceful snapshot would cover everything; restart uses snapshot + log.
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
    let wal_files = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(
        wal_files < 20,
        "covered segments were deleted ({wal_files} left)"
    );
    let e = start(c, NoopExecutor).await;
    assert_eq!(e.recovery.jobs, 2_000);
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_abandons_a_paced_snapshot_build_for_its_own_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 0);
    c.snapshot_wal_bytes = u64::MAX;
    c.snapshot_interval_ms = 0;
    // At 1%, each 2 ms of the build's work is followed by 198 ms of sleep.
    c.snapshot_pace_percent = 1;
    let e = start(c.clone(), NoopExecutor).await;
    enqueue_batches(&e.client, "p", 20, 1_000, "{\"n\":1}").await;
    let lsn = e.client.snapshot().await.unwrap();
    // More records after the build's cut: the shutdown snapshot will need
    // to cover them.
    e.client
        .enqueue(vec![job("after-the-cut", "{\"n\":2}")])
        .await
        .unwrap();
    // The build is under way, in its first rests: folding 20,000 jobs is
    // tens of milliseconds of work, so paced it would take seconds more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = std::time::Instant::now();
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the shutdown waited {took:?} for the paced build"
    );
    // The build was abandoned (it would have written a snapshot of its
    // own); the shutdown snapshot covers every record.
    let snapshots: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let e = start(c, NoopExecutor).await;
    assert_eq!(e.recovery.jobs, 20_001);
    assert!(e.recovery.snapshot_lsn.is_some_and(|l| l > lsn));
    assert_eq!(e.recovery.replayed_records, 0);
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// Starts an engine on a fresh data dir with `bend` applied to its
/// configuration; checks it is refused as a configuration error before the
/// data dir is created, and returns why.
async fn refused_config(bend: impl FnOnce(&mut EngineConfig)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut c = config(&data, 1);
    bend(&mut c);
    let refused = beaver_runtime::start(
        c,
        FileDisk::new(),
        NoopExecutor,
        SystemClock::new(),
        NoObserver,
        1,
    )
    .await;
    let Err(beaver_runtime::EngineError::Config(why)) = refused else {
        panic!("not refused as a configuration error");
    };
    assert!(!data.exists(), "the data dir was created");
    why
}

#[tokio::test]
async fn a_snapshot_pace_outside_1_to_100_is_refused_before_touching_the_data_dir() {
    for bad in [0u8, 101, 255] {
        let why = refused_config(|c| c.snapshot_pace_percent = bad).await;
        assert!(
            why.contains(&format!("snapshot_pace_percent is {bad}")) && why.contains("1 to 100"),
            "{why}"
        );
    }
}

#[tokio::test]
async fn a_limit_of_zero_or_a_segment_size_out_of_range_is_refused_before_touching_the_data_dir() {
    type Bend = fn(&mut EngineConfig);
    let cases: [(Bend, &str); 4] = [
        (
            |c| c.queue.limits.payload_bytes_max = 0,
            "payload_bytes_max is 0",
        ),
        (|c| c.queue.limits.batch_jobs_max = 0, "batch_jobs_max is 0"),
        (|c| c.queue.limits.attempts_max = 0, "attempts_max is 0"),
        (|c| c.segment_bytes = 100, "segment_bytes is 100"),
    ];
    for (bend, said) in cases {
        let why = refused_config(bend).await;
        assert!(why.contains(said), "{why}");
    }
}

// Current-thread on purpose: the 200 client tasks all run before the core
// task they woke, so the one-slot request queue is full for 199 of them.
#[tokio::test]
async fn too_many_waiting_requests_are_told_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.requests_waiting_max = 1;
    let e = start(c, NoopExecutor).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let client = e.client.clone();
            tokio::spawn(async move { client.enqueue(vec![job(&format!("b{i}"), "1")]).await })
        })
        .collect();
    let mut busy = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => {}
            Err(Rejection::Busy { .. }) => busy += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        busy, 199,
        "a bounded request queue refuses instead of growing"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// `running` counts attempts holding a worker, not those dispatched ahead
/// and waiting for one: with one worker and three jobs dispatched, one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_counts_attempts_holding_a_worker_not_those_dispatched_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.queue.prefetch = 4;
    let sleeper = AnyExecutor::Exec(ExecExecutor::new("sleep 0.3").unwrap());
    let e = start(c, sleeper).await;
    enqueue_batches(&e.client, "w", 1, 3, "1").await;
    let st = wait_until(&e.client, 10, |s| {
        s.queue.stats.jobs.in_flight == 3 && s.engine.running == 1
    })
    .await;
    assert_eq!(st.engine.workers, 1);
    let done = wait_until(&e.client, 10, |s| s.queue.stats.jobs.completed == 3).await;
    assert_eq!(done.engine.running, 0, "every attempt gave its worker back");
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_client_stops_the_engine_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(
        config(dir.path(), 2),
        AnyExecutor::Exec(ExecExecutor::new("sleep 0.3").unwrap()),
    )
    .await;
    e.client.enqueue(vec![job("last", "1")]).await.unwrap();
    wait_until(&e.client, 10, |s| s.engine.running == 1).await;
    drop(e.client);
    // The running attempt finishes, then the engine snapshots and stops.
    tokio::time::timeout(Duration::from_secs(10), e.handle.wait())
        .await
        .unwrap()
        .unwrap();
    let e = start(config(dir.path(), 2), NoopExecutor).await;
    let j = e
        .client
        .get(JobId::parse("last").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Completed, 1));
    assert_eq!(
        e.recovery.replayed_records, 0,
        "the shutdown snapshot covers the log"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// Runs every attempt for `ms` milliseconds and records the order in which
/// attempts begin.
#[derive(Clone)]
struct Recorder {
    started: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ms: u64,
}

impl Executor for Recorder {
    fn execute(
        &self,
        exec: beaver_core::Execution,
    ) -> impl Future<Output = beaver_core::Outcome> + Send + 'static {
        let (started, ms) = (self.started.clone(), self.ms);
        async move {
            started.lock().unwrap().push(exec.id.to_string());
            tokio::time::sleep(Duration::from_millis(ms)).await;
            beaver_core::Outcome::Succeeded
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_handed_out_ahead_start_in_dispatch_order_and_their_lease_counts_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.queue.prefetch = 8;
    // Each attempt takes 150 ms of its 300 ms timeout (+ 100 ms slack):
    // the fifth waits 600 ms for the worker, longer than a whole lease.
    c.queue.default_timeout_ms = 300;
    c.queue.lease_slack_ms = 100;
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = Recorder {
        started: started.clone(),
        ms: 150,
    };
    let e = start(c, recorder).await;
    let priorities = [0, 5, -1, -100, 3, 0];
    let jobs = priorities
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let mut j = job(&format!("p{i}"), "1");
            j.priority = p;
            j
        })
        .collect();
    e.client.enqueue(jobs).await.unwrap();
    let waiting = wait_until(&e.client, 10, |s| s.queue.stats.jobs.in_flight == 6).await;
    assert_eq!(
        waiting
            .queue
            .in_flight
            .iter()
            .filter(|l| l.lease_until.is_none())
            .count(),
        5,
        "one attempt runs and has a deadline; those waiting for the worker have none: {:?}",
        waiting.queue.in_flight
    );
    let done = wait_until(&e.client, 20, |s| {
        let j = &s.queue.stats.jobs;
        j.completed + j.dead + j.pending == 6 && j.in_flight == 0
    })
    .await;
    assert_eq!(done.queue.stats.jobs.completed, 6, "no lease expired");
    for i in 0..priorities.len() {
        let job = e.client.get(JobId::from_client(&format!("p{i}")).unwrap());
        assert_eq!(job.await.unwrap().unwrap().attempt, 1, "p{i} ran once");
    }
    // Higher priority first, then the order of the batch.
    assert_eq!(
        *started.lock().unwrap(),
        ["p1", "p4", "p0", "p5", "p2", "p3"]
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_a_worker_can_be_cancelled_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.queue.prefetch = 4;
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = Recorder {
        started: started.clone(),
        ms: 300,
    };
    let e = start(c, recorder).await;
    e.client
        .enqueue(vec![job("c1", "1"), job("c2", "1"), job("c3", "1")])
        .await
        .unwrap();
    wait_until(&e.client, 10, |s| s.queue.stats.jobs.in_flight == 3).await;
    let running = e.client.cancel(JobId::from_client("c1").unwrap()).await;
    assert!(
        matches!(&running, Err(Rejection::Conflict { reason }) if reason.contains("running")),
        "{running:?}"
    );
    e.client
        .cancel(JobId::from_client("c3").unwrap())
        .await
        .unwrap();
    let done = wait_until(&e.client, 10, |s| s.queue.stats.jobs.completed == 2).await;
    assert_eq!(done.queue.stats.jobs.cancelled, 1);
    let c3 = e.client.get(JobId::from_client("c3").unwrap()).await;
    let c3 = c3.unwrap().unwrap();
    assert_eq!((c3.state, c3.attempt), (JobState::Cancelled, 0));
    assert_eq!(*started.lock().unwrap(), ["c1", "c2"], "c3 never started");
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// A lease request whose client went away takes nothing the next request
/// makes ready, even within the periodic sweep's interval: the job goes to
/// the next lease request at once (beanstalkd's reserve after a reserving
/// connection closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_after_a_waiting_lease_request_left_goes_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(config(dir.path(), 0), NoopExecutor).await;
    let queue = beaver_core::QueueName::parse("default").unwrap();
    for round in 0..20 {
        let waiting = e.client.clone();
        let q = vec![queue.clone()];
        let gone = tokio::spawn(async move {
            waiting
                .lease(q, 1, Some(Duration::from_secs(60)), "gone")
                .await
        });
        wait_until(&e.client, 10, |st| st.queue.stats.leases.waiting == 1).await;
        gone.abort();
        assert!(gone.await.is_err(), "the waiting request was cancelled");
        e.client
            .enqueue(vec![job(&format!("after-{round}"), "1")])
            .await
            .unwrap();
        let got = e.client.lease(vec![queue.clone()], 1, None, "next").await;
        let got = got.unwrap();
        assert_eq!(
            got.len(),
            1,
            "round {round}: the job went to the gone request"
        );
        e.client.complete(got[0].lease_id).await.unwrap();
    }
}
