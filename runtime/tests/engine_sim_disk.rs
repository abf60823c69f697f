//! The engine on `SimDisk` (in memory, under plain tokio): behaviour that
//! needs a disk the test controls.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::time::Duration;

use beaver_core::{JobSpec, Payload, Rejection};
use beaver_io::{SimDisk, SimDiskConfig};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{EngineConfig, NoObserver, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_jobs_and_accepts_them_again_once_space_is_freed_while_idle() {
    let disk = SimDisk::new(
        7,
        SimDiskConfig {
            capacity_bytes: 2 << 20,
            ..SimDiskConfig::default()
        },
    );
    let mut config = EngineConfig {
        data_dir: "/data".into(),
        segment_bytes: 128 << 10,
        ..EngineConfig::default()
    };
    config.queue.workers = 0;
    config.space_check_interval_ms = 20;
    config.snapshot_wal_bytes = u64::MAX;
    let e = beaver_runtime::start(
        config,
        disk.clone(),
        NoopExecutor,
        SystemClock::new(),
        NoObserver,
        3,
    )
    .await
    .unwrap();
    let payload = Payload::from_json(format!("\"{}\"", "x".repeat(4_000)).as_bytes()).unwrap();
    let mut refused = None;
    for _ in 0..2_000 {
        match e.client.enqueue(vec![JobSpec::new(payload.clone())]).await {
            Ok(_) => {}
            Err(r) => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("the disk filled up");
    assert!(
        matches!(&refused, Rejection::Busy { reason, .. } | Rejection::Storage { reason } if reason.contains("full") || reason.contains("space")),
        "{refused:?}"
    );
    let accepted_before = e.client.status().await.unwrap().queue.stats.jobs.pending;
    // The log is idle now: nothing is written. Free space; the engine must notice by itself.
    tokio::time::sleep(Duration::from_millis(100)).await;
    disk.set_capacity(64 << 20);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match e.client.enqueue(vec![JobSpec::new(payload.clone())]).await {
            Ok(_) => break,
            Err(r) => assert!(
                tokio::time::Instant::now() < deadline,
                "still refused after space was freed: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = e.client.status().await.unwrap();
    assert_eq!(
        st.queue.stats.jobs.pending,
        accepted_before + 1,
        "nothing acknowledged was lost meanwhile"
    );
    assert!(!st.queue.stats.disk_full);
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// An engine on a fresh in-memory disk whose WAL segments hold 4 KiB.
async fn small_segments<E: beaver_runtime::Executor>(
    executor: E,
    workers: u32,
) -> beaver_runtime::Engine {
    let mut config = EngineConfig {
        data_dir: "/data".into(),
        segment_bytes: 4_096,
        ..EngineConfig::default()
    };
    config.queue.workers = workers;
    config.queue.retry.base_ms = 1;
    config.queue.retry.max_ms = 1;
    config.snapshot_wal_bytes = u64::MAX;
    let disk = SimDisk::new(7, SimDiskConfig::default());
    beaver_runtime::start(config, disk, executor, SystemClock::new(), NoObserver, 3)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_no_log_segment_can_hold_is_too_large_and_spares_the_requests_beside_it() {
    let e = small_segments(NoopExecutor, 0).await;
    let big = Payload::from_json(format!("\"{}\"", "x".repeat(5_000)).as_bytes()).unwrap();
    let small = Payload::from_json(b"1").unwrap();
    for _ in 0..3 {
        // Sent together, so the small ones may share the big one's write.
        let big_one = e.client.enqueue(vec![JobSpec::new(big.clone())]);
        let smalls = futures_join(&e.client, &small, 8);
        let (big_one, smalls) = tokio::join!(big_one, smalls);
        match big_one {
            Err(Rejection::TooLarge { reason, .. }) => assert!(
                reason.contains("segment_bytes") && reason.contains("split"),
                "the refusal says what to change: {reason}"
            ),
            other => {
                panic!("a record larger than a segment must be refused as too large, got {other:?}")
            }
        }
        for r in smalls {
            r.expect("requests beside the refused one are acknowledged");
        }
    }
    let st = e.client.status().await.unwrap();
    assert_eq!(
        st.queue.stats.jobs.pending, 24,
        "every small job, no big one"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// Sends `n` single-job enqueues of `payload` at once; their answers in order.
async fn futures_join(
    client: &beaver_runtime::Client,
    payload: &Payload,
    n: usize,
) -> Vec<Result<Vec<beaver_core::Enqueued>, Rejection>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (c, p) = (client.clone(), payload.clone());
        set.spawn(async move { c.enqueue(vec![JobSpec::new(p)]).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// Fails every attempt with an error text of about this many bytes.
struct Fails(usize);

impl beaver_runtime::Executor for Fails {
    fn execute(
        &self,
        _: beaver_core::Execution,
    ) -> impl std::future::Future<Output = beaver_core::Outcome> + Send + 'static {
        let text = format!("start{}end", "e".repeat(self.0));
        async move { beaver_core::Outcome::Failed(text) }
    }
}

/// Waits until `n` jobs are dead.
async fn until_dead(e: &beaver_runtime::Engine, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = e.client.status().await.unwrap();
        if st.queue.stats.jobs.dead == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_longer_than_a_log_segment_is_cut_to_fit_and_the_job_goes_on() {
    let e = small_segments(Fails(10_000), 1).await;
    let mut spec = JobSpec::new(Payload::from_json(b"1").unwrap());
    spec.max_attempts = Some(2);
    let id = e.client.enqueue(vec![spec]).await.unwrap()[0].id.clone();
    until_dead(&e, 1).await;
    let view = e.client.get(id).await.unwrap().unwrap();
    assert_eq!(view.attempt, 2, "both failures were logged");
    let error = view.last_error.unwrap();
    assert!(
        error.ends_with("end") && error.len() < 4_096,
        "the error's tail is kept: {} bytes",
        error.len()
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeueing_more_dead_jobs_than_a_log_segment_can_name_splits_the_record() {
    let e = small_segments(Fails(10), 1).await;
    let jobs: Vec<JobSpec> = (0..40)
        .map(|i| {
            let mut spec = JobSpec::new(Payload::from_json(b"1").unwrap())
                .with_id(beaver_core::JobId::from_client(&format!("j{i:0>119}")).unwrap());
            spec.max_attempts = Some(1);
            spec
        })
        .collect();
    for chunk in jobs.chunks(10) {
        e.client.enqueue(chunk.to_vec()).await.unwrap();
    }
    until_dead(&e, 40).await;
    let n = e
        .client
        .requeue(beaver_core::RequeueTarget::AllDead)
        .await
        .expect("40 ids of 120 bytes are more than one 4 KiB segment holds, in one request");
    assert_eq!(n, 40);
    until_dead(&e, 40).await;
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

/// Records what the engine tells its observer, in order.
#[derive(Default, Clone)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<(&'static str, u64)>>>);

impl beaver_runtime::Observer for Heard {
    fn recovered(&self, _secs: f64, report: &beaver_runtime::RecoveryReport) {
        self.0.lock().unwrap().push(("recovered", report.last_lsn));
    }

    fn durable(&self, upto: u64) {
        self.0.lock().unwrap().push(("durable", upto));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_learns_where_recovery_ended_before_any_new_record_is_durable() {
    let disk = SimDisk::new(11, SimDiskConfig::default());
    let mut config = EngineConfig {
        data_dir: "/data".into(),
        ..EngineConfig::default()
    };
    config.queue.workers = 0;
    let start = |config: EngineConfig, heard: Heard| {
        beaver_runtime::start(
            config,
            disk.clone(),
            NoopExecutor,
            SystemClock::new(),
            heard,
            5,
        )
    };
    let first = start(config.clone(), Heard::default()).await.unwrap();
    for _ in 0..3 {
        let job = JobSpec::new(Payload::from_json(b"1").unwrap());
        first.client.enqueue(vec![job]).await.unwrap();
    }
    first.handle.shutdown();
    first.handle.wait().await.unwrap();
    // The second start dispatches the three jobs at once: new records.
    config.queue.workers = 2;
    let heard = Heard::default();
    let second = start(config, heard.clone()).await.unwrap();
    let last = second.recovery.last_lsn;
    assert!(last >= 3, "the three enqueues were recovered: {last}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !heard
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|&(k, l)| k == "durable" && l > last)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new record became durable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events = heard.0.lock().unwrap().clone();
    let at = events.iter().position(|&(k, _)| k == "recovered");
    assert_eq!(
        at.map(|i| events[i]),
        Some(("recovered", last)),
        "{events:?}"
    );
    let at = at.unwrap_or(usize::MAX);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, &(k, l))| k != "durable" || l <= last || i > at),
        "a new record was reported durable before recovery's end: {events:?}"
    );
    second.handle.shutdown();
    second.handle.wait().await.unwrap();
}
