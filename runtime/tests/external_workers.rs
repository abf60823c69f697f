//! External workers and queue controls through the in-process client, on
//! `SimDisk` under plain tokio: leases, waits, renewals, ends, a waiting
//! request whose client went away, pauses, purges, listings, checkpoints,
//! and the pool serving only its queues.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::time::Duration;

use beaver_core::{JobId, JobSpec, JobState, Payload, QueueName, Rejection, Retry};
use beaver_io::{SimDisk, SimDiskConfig};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{
    Client, Engine, EngineConfig, EngineError, NoObserver, QueuePause, SystemClock,
};

/// No built-in workers unless `workers`; jobs of 10 s.
fn config(workers: u32) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: "/data".into(),
        segment_bytes: 256 << 10,
        ..EngineConfig::default()
    };
    c.queue.workers = workers;
    c.queue.default_timeout_ms = 10_000;
    c.queue.hash_seed = 11;
    c
}

async fn start(config: EngineConfig) -> Result<Engine, EngineError> {
    let disk = SimDisk::new(1, SimDiskConfig::default());
    beaver_runtime::start(
        config,
        disk,
        NoopExecutor,
        SystemClock::new(),
        NoObserver,
        2,
    )
    .await
}

fn job(id: &str, queue: &str) -> JobSpec {
    let mut j =
        JobSpec::new(Payload::from_json(b"{}").unwrap()).with_id(JobId::from_client(id).unwrap());
    j.queue = Some(QueueName::parse(queue).unwrap());
    j
}

fn queues(names: &[&str]) -> Vec<QueueName> {
    names.iter().map(|n| QueueName::parse(n).unwrap()).collect()
}

async fn state(c: &Client, id: &str) -> Option<(JobState, u32)> {
    let j = c.get(JobId::parse(id).unwrap()).await.unwrap()?;
    Some((j.state, j.attempt))
}

#[tokio::test]
async fn a_leased_job_is_renewed_and_completed_and_a_retried_complete_is_answered_alike() {
    let e = start(config(0)).await.unwrap();
    let c = &e.client;
    c.enqueue(vec![job("a", "ext")]).await.unwrap();
    let leased = c
        .lease(queues(&["ext"]), 5, None, "worker-1")
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let lease = leased[0].lease_id;
    assert_eq!((leased[0].job.id.as_str(), leased[0].job.attempt), ("a", 1));
    let renewed = c.heartbeat(lease, Some(60_000)).await.unwrap();
    assert!(renewed > leased[0].lease_until);
    let listed = c.list_leases().await.unwrap();
    assert_eq!(
        (listed.total, listed.leases[0].holder.as_str()),
        (1, "worker-1")
    );
    c.complete(lease).await.unwrap();
    c.complete(lease).await.unwrap();
    assert_eq!(
        c.fail(lease, "late".into(), Retry::Policy).await,
        Err(Rejection::LeaseLost { lease })
    );
    assert_eq!(state(c, "a").await, Some((JobState::Completed, 1)));
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_waiting_lease_gets_the_job_enqueued_after_it() {
    let e = start(config(0)).await.unwrap();
    let c = e.client.clone();
    let waiting = tokio::spawn(async move {
        c.lease(queues(&["ext"]), 1, Some(Duration::from_secs(10)), "w")
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    e.client.enqueue(vec![job("late", "ext")]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got[0].job.id.as_str(), "late");
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_lease_request_whose_client_went_away_takes_no_job() {
    let e = start(config(0)).await.unwrap();
    let c = &e.client;
    // The client gives up long before its wait ends, and drops the future.
    let gone = tokio::time::timeout(
        Duration::from_millis(50),
        c.lease(queues(&["ext"]), 1, Some(Duration::from_secs(60)), "gone"),
    )
    .await;
    assert!(gone.is_err(), "nothing to lease yet");
    // The engine forgets the waiting request (at the latest on its next
    // turn after a short sweep interval).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while c.status().await.unwrap().queue.stats.leases.waiting > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request still waits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.enqueue(vec![job("a", "ext")]).await.unwrap();
    let got = c.lease(queues(&["ext"]), 1, None, "here").await.unwrap();
    assert_eq!(
        (got.len(), got[0].job.attempt),
        (1, 1),
        "the job went to the worker still there, its first attempt"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_paused_queue_hands_out_nothing_until_resumed_and_a_purge_cancels_its_pending_jobs() {
    let e = start(config(1)).await.unwrap();
    let c = &e.client;
    let default = QueueName::default();
    c.pause_queue(default.clone(), QueuePause::UntilResumed)
        .await
        .unwrap();
    c.enqueue(vec![job("p1", "default"), job("p2", "default")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(c, "p1").await, Some((JobState::Pending, 0)), "paused");
    let st = c.status().await.unwrap();
    assert_eq!(st.queue.queues[0].paused_until, Some(u64::MAX));
    assert_eq!(c.purge_queue(default.clone()).await.unwrap(), 2);
    assert_eq!(state(c, "p2").await, Some((JobState::Cancelled, 0)));
    c.pause_queue(default, QueuePause::Resume).await.unwrap();
    c.enqueue(vec![job("p3", "default")]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state(c, "p3").await != Some((JobState::Completed, 1)) {
        assert!(tokio::time::Instant::now() < deadline, "not resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn jobs_are_listed_by_number_a_page_at_a_time() {
    let e = start(config(0)).await.unwrap();
    let c = &e.client;
    let jobs = (0..5).map(|i| job(&format!("j{i}"), "ext")).collect();
    c.enqueue(jobs).await.unwrap();
    let page = c
        .list_jobs(None, Some(JobState::Pending), None, 3)
        .await
        .unwrap();
    let ids: Vec<&str> = page.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!((ids, page.next), (vec!["j0", "j1", "j2"], Some(3)));
    let page = c.list_jobs(None, None, page.next, 3).await.unwrap();
    assert_eq!((page.jobs.len(), page.next), (2, None));
    assert!(matches!(
        c.list_jobs(None, None, None, 0).await,
        Err(Rejection::Invalid { .. })
    ));
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_checkpoint_answers_an_lsn_that_is_durable() {
    let e = start(config(0)).await.unwrap();
    let c = &e.client;
    c.enqueue(vec![job("a", "ext")]).await.unwrap();
    let lsn = c.checkpoint().await.unwrap();
    assert_eq!(lsn, 2, "after the enqueue's record");
    assert!(c.status().await.unwrap().queue.stats.applied_lsn >= lsn);
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn the_pool_serves_only_its_queues() {
    let mut cfg = config(1);
    cfg.queue.pool_queues = Some(queues(&["pool"]));
    let e = start(cfg).await.unwrap();
    let c = &e.client;
    c.enqueue(vec![job("p", "pool"), job("x", "ext")])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state(c, "p").await != Some((JobState::Completed, 1)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never ran p"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        state(c, "x").await,
        Some((JobState::Pending, 0)),
        "left for external workers"
    );
    e.handle.shutdown();
    e.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_lease_limit_of_zero_is_refused_at_start() {
    let mut cfg = config(0);
    cfg.queue.limits.lease_batch_max = 0;
    let e = start(cfg).await.err().expect("refused");
    assert!(e.to_string().contains("lease_batch_max is 0"), "{e}");
}
