//! An attempt counts only if it started, through the real engine: an
//! abrupt stop fails the attempts that were running and gives back those
//! handed out ahead of a free worker, uncounted.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::path::Path;
use std::time::Duration;

use beaver_core::{Interrupted, JobId, JobSpec, JobState, Payload};
use beaver_io::FileDisk;
use beaver_runtime::executor::{ExecExecutor, NoopExecutor};
use beaver_runtime::{
    AnyExecutor, Client, Engine, EngineConfig, Executor, NoObserver, SystemClock,
};

/// One worker, two attempts handed out ahead of it.
fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        ..EngineConfig::default()
    };
    c.queue.workers = 1;
    c.queue.prefetch = 2;
    c.queue.hash_seed = 5;
    c
}

async fn start<E: Executor>(dir: &Path, executor: E) -> Engine {
    let disk = FileDisk::new();
    let seed = beaver_io::entropy_seed();
    beaver_runtime::start(
        config(dir),
        disk,
        executor,
        SystemClock::new(),
        NoObserver,
        seed,
    )
    .await
    .unwrap()
}

fn job(id: &str) -> JobSpec {
    let mut j =
        JobSpec::new(Payload::from_json(b"1").unwrap()).with_id(JobId::from_client(id).unwrap());
    j.max_attempts = Some(1);
    j
}

/// Polls until `done` holds, at most `secs` seconds.
async fn wait_until(
    client: &Client,
    secs: u64,
    done: impl Fn(&beaver_runtime::EngineStatus) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let st = client.status().await.unwrap();
        if done(&st) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; last {:?}",
            st.queue.stats
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn an_abrupt_stop_counts_the_running_attempt_and_gives_back_those_handed_out_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sleeper = AnyExecutor::Exec(ExecExecutor::new("sleep 30").unwrap());
        let e = start(dir.path(), sleeper).await;
        e.client
            .enqueue(vec![job("runs"), job("waits-1"), job("waits-2")])
            .await
            .unwrap();
        wait_until(&e.client, 10, |s| {
            s.engine.running == 1 && s.queue.stats.jobs.in_flight == 3
        })
        .await;
        // Never shut down gracefully: like `kill -9`, keeping the page cache.
        std::mem::forget(e);
    });
    rt.shutdown_background();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = start(dir.path(), NoopExecutor).await;
        let found = Interrupted {
            charged: 1,
            released: 2,
        };
        assert_eq!(e.recovery.interrupted, found);
        wait_until(&e.client, 10, |s| {
            s.queue.stats.jobs.completed + s.queue.stats.jobs.dead == 3
        })
        .await;
        let state = async |id: &str| {
            let j = e
                .client
                .get(JobId::parse(id).unwrap())
                .await
                .unwrap()
                .unwrap();
            (j.state, j.attempt)
        };
        assert_eq!(
            state("runs").await,
            (JobState::Dead, 1),
            "its only attempt ran when the server died: it counted"
        );
        for id in ["waits-1", "waits-2"] {
            assert_eq!(
                state(id).await,
                (JobState::Completed, 1),
                "{id} never started before the crash: that attempt did not count"
            );
        }
        e.handle.shutdown();
        e.handle.wait().await.unwrap();
    });
}
