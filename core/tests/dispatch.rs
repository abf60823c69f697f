//! Dispatch (`core/src/machine/dispatch.rs`): which ready job runs next,
//! how far dispatch runs ahead of free workers, and that it stops on a
//! graceful shutdown.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, Core, Effect, JobState, Outcome, Rejection, Reply, RequestId};
use common::*;

#[test]
fn dispatch_runs_ahead_by_prefetch() {
    let mut d = Driver::new(Config {
        prefetch: 2,
        ..config()
    });
    d.at(10)
        .enqueue(1, vec![spec("a"), spec("b"), spec("c"), spec("d")]);
    assert_eq!(
        d.at(11).durable(1),
        vec![
            ok(1, &[("a", false), ("b", false), ("c", false), ("d", false)]),
            dispatch(2, 11, "a", 1),
            dispatch_ahead(3, 11, "b", 1),
            dispatch_ahead(4, 11, "c", 1),
        ],
        "one worker, counted at once, plus two prefetched, counted once started"
    );
}

#[test]
fn a_finished_attempt_makes_room_before_the_prefetched_dispatches_are_durable() {
    let mut d = Driver::new(Config {
        prefetch: 2,
        ..config()
    });
    d.at(10)
        .enqueue(1, vec![spec("a"), spec("b"), spec("c"), spec("d")]);
    d.at(11).durable(1);
    // The worker finishes `a` before `b`'s dispatch is durable: `d` is
    // proposed at once, ahead (`b` gets the worker first).
    d.at(12).durable(2);
    assert_eq!(
        d.at(13).outcome("a", 1, Outcome::Succeeded),
        vec![complete(5, 13, "a", 1), dispatch_ahead(6, 13, "d", 1)]
    );
}

/// A paused core (no workers) with `late` (delayed 100 ms), `low` and
/// `high` (priority 5) durable at t=10.
fn late_low_high() -> Driver {
    let mut d = Driver::new(no_workers());
    let mut late = spec("late");
    late.delay_ms = 100;
    let mut high = spec("high");
    high.priority = 5;
    d.at(10).enqueue(1, vec![late, spec("low"), high]);
    d.durable(1);
    d
}

#[test]
fn delayed_jobs_wait_for_their_run_at() {
    let d = late_low_high();
    // Put at 10 of a clock that reads whole ms rounded down: 100 ms have
    // surely passed at 111, not before.
    assert_eq!(d.core().next_deadline(), Some(111));
}

#[test]
fn the_highest_priority_ready_job_runs_first() {
    let d = late_low_high();
    let with_a_worker = Config {
        workers: 1,
        ..config()
    };
    let recovered = Core::recover(with_a_worker, Some(d.core().snapshot()), []).unwrap();
    let mut d = Driver::with_core(recovered);
    assert_eq!(
        d.at(20).tick(),
        vec![dispatch(2, 20, "high", 1)],
        "higher priority first"
    );
}

#[test]
fn graceful_stop_releases_unstarted_attempts_without_counting_them() {
    let mut d = with_one_attempt();
    assert_eq!(d.at(13).stop_dispatching(), vec![]);
    assert_eq!(
        d.at(14).outcome("a", 1, Outcome::NotStarted),
        vec![append(
            3,
            14,
            beaver_core::Op::Release {
                id: id("a"),
                attempt: 1
            }
        )]
    );
    assert_eq!(d.at(15).durable(3), vec![], "no dispatch while stopping");
    let job = d.core().job("a").unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Pending, 0));
}

#[test]
fn a_stopping_core_refuses_new_jobs() {
    let mut d = with_one_attempt();
    d.at(13).stop_dispatching();
    assert_eq!(
        d.at(16).enqueue(9, vec![spec("z")]),
        vec![Effect::Reply {
            req: RequestId(9),
            reply: Reply::Enqueued(Err(Rejection::Stopping))
        }]
    );
}

#[test]
fn the_pool_takes_its_queues_in_turn() {
    let mut d = Driver::new(Config {
        workers: 2,
        ..config()
    });
    let job = |i: &str, q: &str| beaver_core::JobSpec {
        queue: Some(beaver_core::QueueName::parse(q).unwrap()),
        ..spec(i)
    };
    d.at(10)
        .enqueue(1, vec![job("x1", "x"), job("x2", "x"), job("y1", "y")]);
    let out = d.at(11).durable(1);
    let dispatched: Vec<&str> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Append(r) => match &r.op {
                beaver_core::Op::Dispatch { id, .. } => Some(id.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(dispatched, ["x1", "y1"], "one of each queue, not x's two");
}
