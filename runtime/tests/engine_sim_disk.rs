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
