//! A connection's session ([`beaver_runtime::Session`]) on `SimDisk`
//! under plain tokio: what it holds, how one reservation ends, and that a
//! closed session's jobs are ready again at once, priority kept, long
//! before their lease would expire.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::time::Duration;

use beaver_core::{JobId, JobSpec, JobState, Payload, QueueName, Rejection};
use beaver_io::{SimDisk, SimDiskConfig};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{Client, Engine, EngineConfig, Finish, NoObserver, Session, SystemClock};

/// No built-in workers; jobs of an hour (a lease that expired would
/// not explain anything these tests see).
async fn start() -> Engine {
    let mut c = EngineConfig {
        data_dir: "/data".into(),
        segment_bytes: 256 << 10,
        ..EngineConfig::default()
    };
    c.queue.workers = 0;
    c.queue.default_timeout_ms = 3_600_000;
    c.queue.hash_seed = 5;
    let disk = SimDisk::new(1, SimDiskConfig::default());
    let clock = SystemClock::new();
    beaver_runtime::start(c, disk, NoopExecutor, clock, NoObserver, 2)
        .await
        .unwrap()
}

fn job(id: &str, priority: i32) -> JobSpec {
    let mut j =
        JobSpec::new(Payload::from_json(b"{}").unwrap()).with_id(JobId::from_client(id).unwrap());
    j.queue = Some(QueueName::parse("tube").unwrap());
    j.priority = priority;
    j
}

fn tube() -> Vec<QueueName> {
    vec![QueueName::parse("tube").unwrap()]
}

async fn view(c: &Client, id: &str) -> beaver_core::JobView {
    c.get(JobId::parse(id).unwrap()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_closed_sessions_jobs_are_ready_again_at_once_with_their_priority() {
    let e = start().await;
    let c = &e.client;
    c.enqueue(vec![job("a", 7), job("b", 3)]).await.unwrap();
    let mut s = Session::new(c.clone(), "conn 1");
    let a = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    let b = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    assert_eq!((a.job.id.as_str(), b.job.id.as_str()), ("a", "b"));
    assert_eq!(s.len(), 2);
    assert_eq!(s.get(a.job.seq).unwrap().lease, a.lease_id);
    let listed = c.list_leases().await.unwrap();
    assert!(listed.leases.iter().all(|l| l.holder == "conn 1"));
    assert_eq!(listed.total, 2);

    let mut noted = Vec::new();
    let returned = s.close(|job, r| noted.push((job, r.lease))).await;
    assert_eq!(
        noted,
        vec![(a.job.seq, a.lease_id), (b.job.seq, b.lease_id)]
    );
    assert!(returned.iter().all(|r| r.result.is_ok()), "{returned:?}");
    assert_eq!(c.list_leases().await.unwrap().total, 0);
    for (id, priority) in [("a", 7), ("b", 3)] {
        let j = view(c, id).await;
        assert_eq!(
            (j.state, j.priority, j.attempt),
            (JobState::Pending, priority, 0)
        );
    }
    // Ready now, not an hour from now: another session gets them at
    // once, the higher priority first.
    let mut other = Session::new(c.clone(), "conn 2");
    let again = other.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    assert_eq!(again.job.id.as_str(), "a");
}

#[tokio::test]
async fn an_ended_reservation_is_no_longer_held_or_given_back_on_close() {
    let e = start().await;
    let c = &e.client;
    c.enqueue(vec![job("a", 0), job("b", 0), job("c", 0)])
        .await
        .unwrap();
    let mut s = Session::new(c.clone(), "conn 1");
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(
            s.reserve(tube(), vec![0], None)
                .await
                .unwrap()
                .unwrap()
                .job
                .seq,
        );
    }
    let before = s.get(seqs[2]).unwrap().lease_until;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let touched = s.touch(seqs[2]).await.unwrap().unwrap();
    assert!(touched >= before);
    assert_eq!(s.get(seqs[2]).unwrap().lease_until, touched);
    assert!(s.touch(999).await.is_none());

    let mut asked = None;
    let done = s.end(seqs[0], Finish::Complete, |l| asked = Some(l)).await;
    assert_eq!(done, Some(Ok(())));
    assert!(asked.is_some());
    let bury = Finish::Bury { priority: Some(9) };
    s.end(seqs[1], bury, |_| {}).await.unwrap().unwrap();
    assert!(s.end(seqs[0], Finish::Complete, |_| {}).await.is_none());
    assert_eq!(s.len(), 1);
    let returned = s.close(|_, _| {}).await;
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].job, seqs[2]);
    assert_eq!(view(c, "a").await.state, JobState::Completed);
    let b = view(c, "b").await;
    assert_eq!((b.state, b.priority), (JobState::Dead, 9));
    assert_eq!(view(c, "c").await.state, JobState::Pending);
}

#[tokio::test]
async fn a_reservation_released_with_a_delay_waits_and_reserve_job_takes_one_by_id() {
    let e = start().await;
    let c = &e.client;
    c.enqueue(vec![job("a", 0), job("b", 0)]).await.unwrap();
    let mut s = Session::new(c.clone(), "conn 1");
    let a = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    let release = Finish::Release {
        priority: Some(4),
        delay_ms: 60_000,
    };
    s.end(a.job.seq, release, |_| {}).await.unwrap().unwrap();
    let j = view(c, "a").await;
    assert_eq!((j.state, j.priority), (JobState::Pending, 4));
    // Only "b" is ready; "a" waits for its delay unless taken by id.
    let b = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    assert_eq!(b.job.id.as_str(), "b");
    assert!(s.reserve(tube(), vec![0], None).await.unwrap().is_none());
    let again = s.reserve_job(JobId::parse("a").unwrap()).await.unwrap();
    assert_eq!(again.job.id.as_str(), "a");
    assert_eq!(s.len(), 2);
}

#[tokio::test]
async fn an_end_refused_as_no_longer_current_drops_the_reservation_and_a_stopped_engine_keeps_it() {
    let e = start().await;
    let c = &e.client;
    c.enqueue(vec![job("a", 0), job("b", 0)]).await.unwrap();
    let mut s = Session::new(c.clone(), "conn 1");
    let a = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    let b = s.reserve(tube(), vec![0], None).await.unwrap().unwrap();
    // Someone else (an operator through the HTTP API) ends the lease.
    c.complete(a.lease_id).await.unwrap();
    let r = s
        .end(a.job.seq, Finish::Bury { priority: None }, |_| {})
        .await;
    assert!(matches!(r, Some(Err(Rejection::LeaseLost { .. }))), "{r:?}");
    assert!(s.get(a.job.seq).is_none());
    // An engine that stopped ended nothing: the reservation stays held.
    e.handle.shutdown();
    let _ = e.handle.wait().await;
    let r = s.end(b.job.seq, Finish::Complete, |_| {}).await;
    assert!(matches!(r, Some(Err(Rejection::Stopping))), "{r:?}");
    assert!(s.get(b.job.seq).is_some());
    let returned = s.close(|_, _| {}).await;
    assert_eq!(returned.len(), 1);
    assert!(returned[0].result.is_err());
}
