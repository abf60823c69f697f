//! Jobs with unlimited attempts (beanstalkd's puts) and the disk reserve:
//! such a job counts for one attempt's records, so a queue of them keeps
//! taking jobs while the disk has room. Before, each counted for four
//! billion attempts and the first segment the log closed put the disk in
//! its reserve for good: every put after it was refused.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use beaver_core::{JobSpec, Payload, UNLIMITED_ATTEMPTS};
use beaver_io::{SimDisk, SimDiskConfig};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{EngineConfig, NoObserver, SystemClock};

const SEGMENT_BYTES: u64 = 256 << 10;
const JOBS: u64 = 4_000;

fn config() -> EngineConfig {
    let mut config = EngineConfig {
        data_dir: "/data".into(),
        segment_bytes: SEGMENT_BYTES,
        space_check_interval_ms: 5,
        ..EngineConfig::default()
    };
    config.queue.workers = 0;
    config.queue.limits.attempts_max = UNLIMITED_ATTEMPTS;
    config
}

#[tokio::test]
async fn a_log_of_jobs_with_unlimited_attempts_keeps_taking_jobs() {
    let disk = SimDisk::new(
        7,
        SimDiskConfig {
            capacity_bytes: 64 << 20,
            ..SimDiskConfig::default()
        },
    );
    let e = beaver_runtime::start(
        config(),
        disk,
        NoopExecutor,
        SystemClock::new(),
        NoObserver,
        5,
    )
    .await
    .unwrap();
    let body = Payload::from_text(&"x".repeat(200)).unwrap();
    for n in 0..JOBS {
        let mut job = JobSpec::new(body.clone());
        job.max_attempts = Some(UNLIMITED_ATTEMPTS);
        if let Err(r) = e.client.enqueue(vec![job]).await {
            panic!("job {n} of {JOBS} refused: {r:?}");
        }
    }
    let figures = e.client.status().await.unwrap().engine;
    assert!(
        figures.wal_segments >= 4,
        "the jobs filled too few segments to test the reserve: {figures:?}"
    );
}
