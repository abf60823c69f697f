//! Client requests that change jobs (`core/src/machine/requests.rs`):
//! cancel and requeue, answered once durable or refused at once.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, Effect, JobState, Op, Outcome, Rejection, Reply, RequeueTarget};
use common::*;

/// `a` and `b` durable at t=11; `a`'s dispatch (LSN 2) is not yet durable.
fn a_dispatched_b_pending() -> Driver {
    let mut d = Driver::new(config());
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.at(11).durable(1);
    d
}

#[test]
fn cancelling_a_pending_job_is_acknowledged_once_durable() {
    let mut d = a_dispatched_b_pending();
    assert_eq!(
        d.at(12).cancel(2, "b"),
        vec![append(3, 12, Op::Cancel { id: id("b") })]
    );
    assert_eq!(
        d.at(13).durable(3),
        vec![execute("a", 1), reply(2, Reply::Cancelled(Ok(())))]
    );
    assert_eq!(d.core().job("b").unwrap().state, JobState::Cancelled);
}

#[test]
fn cancelling_twice_is_fine() {
    let mut d = a_dispatched_b_pending();
    d.at(12).cancel(2, "b");
    d.at(13).durable(3);
    assert_eq!(
        d.at(14).cancel(3, "b"),
        vec![reply(3, Reply::Cancelled(Ok(())))],
        "cancelling twice is fine"
    );
}

#[test]
fn cancelling_a_running_job_is_a_conflict() {
    let mut d = a_dispatched_b_pending();
    d.at(13).durable(2);
    d.at(14).started("a", 1);
    let out = d.cancel(4, "a");
    assert!(
        matches!(&out[..], [Effect::Reply { reply: Reply::Cancelled(Err(Rejection::Conflict { reason })), .. }] if reason.contains("running")),
        "{out:?}"
    );
}

#[test]
fn cancelling_an_unknown_job_is_not_found() {
    let mut d = a_dispatched_b_pending();
    assert_eq!(
        d.at(14).cancel(5, "zz"),
        vec![reply(
            5,
            Reply::Cancelled(Err(Rejection::NotFound { id: id("zz") }))
        )]
    );
}

#[test]
fn an_attempt_waiting_for_a_worker_is_taken_back_when_its_job_is_cancelled() {
    let mut d = with_one_job();
    assert_eq!(d.at(12).durable(2), vec![execute("a", 1)]);
    assert_eq!(
        d.at(13).cancel(2, "a"),
        vec![abort("a", 1), append(3, 13, Op::Cancel { id: id("a") })],
        "taken back from the worker's queue, the cancel logged"
    );
    assert_eq!(
        d.at(14).durable(3),
        vec![reply(2, Reply::Cancelled(Ok(())))]
    );
    let a = d.core().job("a").unwrap();
    assert_eq!(
        (a.state, a.attempt),
        (JobState::Cancelled, 0),
        "the attempt never ran"
    );
    d.core().check_invariants().unwrap();
}

#[test]
fn a_start_reported_for_an_attempt_taken_back_is_stale() {
    let mut d = with_one_attempt();
    d.at(13).cancel(2, "a");
    // No lease, nothing to run.
    d.started("a", 1);
    assert_eq!(d.core().next_deadline(), None);
}

/// One attempt per job: `a` is dead; returns the driver at t=14.
fn a_dead() -> Driver {
    let mut d = Driver::new(Config {
        default_max_attempts: 1,
        ..config()
    });
    d.at(10).enqueue(1, vec![spec("a")]);
    d.at(11).durable(1);
    d.at(12).durable(2);
    d.at(13).outcome("a", 1, Outcome::Failed("x".into()));
    d.at(14).durable(3);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Dead);
    d
}

#[test]
fn requeue_one_dead_job_keeps_its_payload() {
    let mut d = a_dead();
    assert_eq!(
        d.at(15).requeue(9, RequeueTarget::One(id("a"))),
        vec![append(4, 15, Op::Requeue { ids: vec![id("a")] })]
    );
    assert_eq!(
        d.at(16).durable(4),
        vec![reply(9, Reply::Requeued(Ok(1))), dispatch(5, 16, "a", 1)]
    );
    let job = d.core().job("a").unwrap();
    assert_eq!(
        (job.state, job.attempt, job.payload),
        (JobState::Pending, 0, Some(payload("1")))
    );
}

/// One attempt per job, two workers: `a` and `b` dead, `c` in flight
/// (durable at t=14).
fn two_dead_one_running() -> Driver {
    let mut d = Driver::new(Config {
        default_max_attempts: 1,
        workers: 2,
        ..config()
    });
    d.at(10).enqueue(1, vec![spec("a"), spec("b"), spec("c")]);
    d.at(11).durable(1);
    d.at(12).durable(3);
    for j in ["a", "b"] {
        d.at(13).outcome(j, 1, Outcome::Failed("x".into()));
    }
    d.at(14).durable(6);
    d
}

#[test]
fn requeue_of_a_live_job_is_a_conflict() {
    let mut d = two_dead_one_running();
    let out = d.at(15).requeue(7, RequeueTarget::One(id("c")));
    let Effect::Reply {
        reply: Reply::Requeued(Err(Rejection::Conflict { reason })),
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(reason.contains("only dead jobs"), "{reason}");
}

#[test]
fn requeue_of_all_dead_jobs_answers_how_many() {
    let mut d = two_dead_one_running();
    let out = d.at(15).requeue(8, RequeueTarget::AllDead);
    assert_eq!(out.len(), 1);
    let Effect::Append(r) = &out[0] else { panic!() };
    let Op::Requeue { ids } = &r.op else { panic!() };
    assert_eq!(ids.len(), 2);
    let out = d.at(16).durable(r.lsn);
    assert_eq!(out[0], reply(8, Reply::Requeued(Ok(2))));
}
