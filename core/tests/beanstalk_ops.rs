//! What beanstalkd's protocol needs of the core (`fencing.rs`,
//! `requests.rs`): a lease given back with a new priority and delay
//! (not charged), a lease's job buried (dead, no failure), a waiting job
//! (pending or dead) deleted or kicked by id, and one job leased by id.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, JobSpec, JobState, Op, Rejection, Reply, RequeueTarget};
use common::*;

/// No built-in workers; `a` leased at t=12 by `w1` (lease 2, durable at
/// t=13: deadline 113, expiry 123).
fn leased_a() -> Driver {
    let mut d = Driver::new(no_workers());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.at(11).durable(1);
    d.at(12).lease(2, &["default"], 1, None, "w1");
    d.at(13).durable(2);
    d
}

/// [`leased_a`], then `a` buried by its lease (record 3, durable at t=21).
fn buried_a() -> Driver {
    let mut d = leased_a();
    d.at(20).bury(3, 2, None);
    d.at(21).durable(3);
    d
}

fn job(d: &mut Driver, i: &str) -> beaver_core::JobView {
    match &d.get(99, i)[..] {
        [
            beaver_core::Effect::Reply {
                reply: Reply::Job(Some(j)),
                ..
            },
        ] => j.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_release_gives_the_attempt_back_with_a_new_priority_and_delay_once_durable() {
    let mut d = leased_a();
    let out = d.at(20).release(3, 2, Some(7), 500);
    assert_eq!(
        out,
        vec![append(
            3,
            20,
            Op::Return {
                id: id("a"),
                attempt: 1,
                priority: 7,
                // 500 ms after a reading of 20: surely passed at 521.
                run_at: 521,
            }
        )]
    );
    assert_eq!(d.at(21).durable(3), vec![reply(3, Reply::Released(Ok(())))]);
    let a = job(&mut d, "a");
    assert_eq!(
        (a.state, a.attempt, a.priority, a.run_at, a.last_error),
        (JobState::Pending, 0, 7, 521, None),
        "not charged: no attempt counted, no error"
    );
    assert_eq!(d.core().stats().totals.failed, 0);
}

#[test]
fn a_release_without_a_priority_keeps_the_jobs_and_a_retry_is_answered_alike() {
    let mut d = leased_a();
    d.at(20).release(3, 2, None, 0);
    d.at(21).durable(3);
    assert_eq!(job(&mut d, "a").priority, 0);
    assert_eq!(
        d.release(4, 2, None, 0),
        vec![reply(4, Reply::Released(Ok(())))]
    );
    assert_eq!(
        d.release(5, 2, Some(1), 0),
        vec![reply(5, Reply::Released(Ok(())))],
        "the lease ended as released: a retry is answered alike, changing nothing"
    );
    assert_eq!(job(&mut d, "a").priority, 0);
}

#[test]
fn a_release_of_a_lost_lease_or_with_too_long_a_delay_changes_nothing() {
    let mut d = leased_a();
    assert_eq!(
        d.at(20).release(3, 77, None, 0),
        vec![reply(
            3,
            Reply::Released(Err(Rejection::LeaseLost { lease: 77 }))
        )]
    );
    let max = d.core().config().limits.delay_ms_max;
    let out = d.release(4, 2, None, max + 1);
    assert!(
        matches!(&out[..], [beaver_core::Effect::Reply { reply: Reply::Released(Err(Rejection::Invalid { field, .. })), .. }] if field == "delay_ms"),
        "{out:?}"
    );
    assert_eq!(job(&mut d, "a").state, JobState::InFlight);
    let out = d.release(5, 2, None, max);
    assert!(
        matches!(&out[..], [beaver_core::Effect::Append(r)] if r.op.name() == "return"),
        "a delay of exactly the limit is taken: {out:?}"
    );
}

#[test]
fn a_bury_makes_the_job_dead_with_a_new_priority_and_no_failure() {
    let mut d = leased_a();
    assert_eq!(
        d.at(20).bury(3, 2, Some(-5)),
        vec![append(
            3,
            20,
            Op::Bury {
                id: id("a"),
                attempt: 1,
                priority: -5,
            }
        )]
    );
    assert_eq!(d.at(21).durable(3), vec![reply(3, Reply::Buried(Ok(())))]);
    let a = job(&mut d, "a");
    assert_eq!(
        (a.state, a.priority, a.last_error),
        (JobState::Dead, -5, None)
    );
    let totals = d.core().stats().totals;
    assert_eq!((totals.failed, totals.dead), (0, 1), "dead, not failed");
    assert_eq!(
        d.complete(4, 2),
        vec![reply(
            4,
            Reply::Completed(Err(Rejection::LeaseLost { lease: 2 }))
        )],
        "the lease is over"
    );
    // Kicked: requeued, ready again.
    d.at(30).requeue(5, RequeueTarget::One(id("a")));
    d.at(31).durable(4);
    assert_eq!(job(&mut d, "a").state, JobState::Pending);
}

#[test]
fn a_delete_cancels_a_pending_or_a_dead_job_once_durable() {
    let mut d = leased_a();
    d.at(14).enqueue(3, vec![spec("b")]);
    d.at(15).durable(3);
    assert_eq!(
        d.at(16).delete(4, "b"),
        vec![append(4, 16, Op::Cancel { id: id("b") })]
    );
    let again = d.delete(40, "b");
    assert!(
        matches!(
            only_reply(&again),
            Reply::Deleted(Err(Rejection::Conflict { .. }))
        ),
        "a delete on its way to the log is not made twice: {again:?}"
    );
    assert_eq!(d.at(17).durable(4), vec![reply(4, Reply::Deleted(Ok(())))]);
    d.at(20).bury(5, 2, None);
    d.at(21).durable(5);
    assert_eq!(
        d.at(22).delete(6, "a"),
        vec![append(6, 22, Op::DeleteDead { id: id("a") })]
    );
    assert_eq!(d.at(23).durable(6), vec![reply(6, Reply::Deleted(Ok(())))]);
    let a = job(&mut d, "a");
    assert_eq!((a.state, a.payload), (JobState::Cancelled, None));
}

#[test]
fn a_delete_of_a_job_in_flight_final_or_unknown_changes_nothing() {
    let mut d = leased_a();
    let out = d.at(20).delete(3, "a");
    assert!(
        matches!(
            only_reply(&out),
            Reply::Deleted(Err(Rejection::Conflict { .. }))
        ),
        "{out:?}"
    );
    assert_eq!(
        d.delete(4, "nope"),
        vec![reply(
            4,
            Reply::Deleted(Err(Rejection::NotFound { id: id("nope") }))
        )]
    );
    d.complete(5, 2);
    d.at(21).durable(3);
    assert_eq!(
        d.delete(6, "a"),
        vec![reply(
            6,
            Reply::Deleted(Err(Rejection::NotFound { id: id("a") }))
        )],
        "a completed job is gone, as far as a delete goes"
    );
}

#[test]
fn a_kick_makes_a_scheduled_job_ready_now_and_requeues_a_dead_one() {
    let mut d = leased_a();
    let later = JobSpec {
        delay_ms: 10_000,
        ..spec("b")
    };
    d.at(14).enqueue(3, vec![later]);
    d.at(15).durable(3);
    assert_eq!(
        d.at(16).kick(4, "b"),
        vec![append(4, 16, Op::Kick { id: id("b") })]
    );
    let again = d.kick(40, "b");
    assert!(
        matches!(
            only_reply(&again),
            Reply::Kicked(Err(Rejection::Conflict { .. }))
        ),
        "a kick on its way to the log is not made twice: {again:?}"
    );
    assert_eq!(d.at(17).durable(4), vec![reply(4, Reply::Kicked(Ok(())))]);
    assert_eq!(job(&mut d, "b").run_at, 16, "ready from the kick on");
    d.at(20).bury(5, 2, None);
    d.at(21).durable(5);
    assert_eq!(
        d.at(22).kick(6, "a"),
        vec![append(6, 22, Op::Requeue { ids: vec![id("a")] })]
    );
    d.at(23).durable(6);
    assert_eq!(job(&mut d, "a").state, JobState::Pending);
}

#[test]
fn a_delayed_job_whose_time_has_come_is_ready_and_its_kick_a_conflict() {
    let mut d = Driver::new(no_workers());
    let later = JobSpec {
        delay_ms: 10,
        ..spec("b")
    };
    d.at(10).enqueue(1, vec![later]);
    d.at(11).durable(1);
    // 10 ms after a reading of 10: surely passed at 21.
    assert_eq!(job(&mut d, "b").run_at, 21);
    let out = d.at(21).kick(2, "b");
    assert!(
        matches!(
            only_reply(&out),
            Reply::Kicked(Err(Rejection::Conflict { .. }))
        ),
        "due at 21, ready at 21: {out:?}"
    );
}

#[test]
fn a_dead_job_is_kicked_at_once_after_its_queues_purge_is_durable() {
    let mut d = buried_a();
    d.purge_queue(4, "default");
    assert_eq!(d.at(22).durable(4), vec![reply(4, Reply::Purged(Ok(0)))]);
    assert_eq!(
        d.kick(5, "a"),
        vec![append(5, 22, Op::Requeue { ids: vec![id("a")] })],
        "the purge is over: nothing of it is left to wait for"
    );
}

#[test]
fn a_kick_of_a_ready_or_running_job_is_a_conflict() {
    let mut d = leased_a();
    d.at(14).enqueue(3, vec![spec("b")]);
    d.at(15).durable(3);
    for (req, i) in [(4, "b"), (5, "a")] {
        let out = d.kick(req, i);
        assert!(
            matches!(
                only_reply(&out),
                Reply::Kicked(Err(Rejection::Conflict { .. }))
            ),
            "{i}: {out:?}"
        );
    }
}

#[test]
fn a_lease_of_one_job_by_id_takes_that_job_ready_or_scheduled() {
    let mut d = Driver::new(no_workers());
    let later = JobSpec {
        delay_ms: 10_000,
        ..spec("b")
    };
    d.at(10).enqueue(1, vec![spec("a"), later]);
    d.at(11).durable(1);
    assert_eq!(
        d.at(12).lease_job(2, "b", "w1"),
        vec![dispatch(2, 12, "b", 1)]
    );
    let out = d.at(13).durable(2);
    let [
        beaver_core::Effect::Reply {
            reply: Reply::Leased(Ok(jobs)),
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((jobs.len(), jobs[0].lease_id), (1, 2));
    assert_eq!(jobs[0].job.id, id("b"));
    let again = d.lease_job(3, "b", "w2");
    assert!(
        matches!(
            only_reply(&again),
            Reply::Leased(Err(Rejection::Conflict { .. }))
        ),
        "{again:?}"
    );
    let (longest, too_long) = ("w".repeat(128), "w".repeat(129));
    let refused = d.lease_job(5, "a", &too_long);
    assert!(
        matches!(
            &refused[..],
            [beaver_core::Effect::Reply {
                reply: Reply::Leased(Err(Rejection::Invalid { field, .. })),
                ..
            }] if field == "holder"
        ),
        "{refused:?}"
    );
    assert_eq!(
        d.lease_job(6, "a", &longest),
        vec![dispatch(3, 13, "a", 1)],
        "a holder of 128 bytes is taken"
    );
    assert_eq!(
        d.lease_job(4, "nope", "w2"),
        vec![reply(
            4,
            Reply::Leased(Err(Rejection::NotFound { id: id("nope") }))
        )]
    );
}

/// beanstalkd's `reserve-job` of a buried job: requeued, then leased to
/// the one who named it in the step its requeue is durable, even with a
/// lease waiting on its queue (which dispatch would otherwise serve).
#[test]
fn a_lease_by_id_of_a_dead_job_requeues_it_and_no_waiter_takes_it() {
    let mut d = leased_a();
    d.at(20).bury(3, 2, Some(7));
    d.at(21).durable(3);
    assert!(
        d.at(22)
            .lease(4, &["default"], 1, Some(77), "w2")
            .is_empty()
    );
    assert_eq!(
        d.at(23).lease_job(5, "a", "w3"),
        vec![append(4, 23, Op::Requeue { ids: vec![id("a")] })]
    );
    let again = d.lease_job(6, "a", "w4");
    assert!(
        matches!(
            only_reply(&again),
            Reply::Leased(Err(Rejection::Conflict { .. }))
        ),
        "a job on its way back is not leased twice: {again:?}"
    );
    assert_eq!(
        d.at(24).durable(4),
        vec![dispatch(5, 24, "a", 1)],
        "leased to w3 at once; the waiting w2 gets nothing"
    );
    let out = d.at(25).durable(5);
    let [
        beaver_core::Effect::Reply {
            req,
            reply: Reply::Leased(Ok(jobs)),
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((req.0, jobs.len(), jobs[0].lease_id), (5, 1, 5));
    assert_eq!((jobs[0].job.id.clone(), jobs[0].job.priority), (id("a"), 7));
    let a = job(&mut d, "a");
    assert_eq!((a.state, a.attempt), (JobState::InFlight, 1));
    assert_eq!(
        d.at(100).tick(),
        vec![reply(4, Reply::Leased(Ok(Vec::new())))],
        "the waiter's wait ends with nothing"
    );
}

/// A requeue for a lease by id that the log refuses answers the lease
/// with the log's error and leaves the job dead, free for the next try.
#[test]
fn a_refused_requeue_for_a_lease_by_id_refuses_the_lease() {
    let mut d = buried_a();
    d.at(22).lease_job(4, "a", "w3");
    let out = d.append_failed(4, "disk full");
    assert!(
        matches!(
            only_reply(&out),
            Reply::Leased(Err(Rejection::Storage { .. }))
        ),
        "{out:?}"
    );
    assert_eq!(job(&mut d, "a").state, JobState::Dead);
    assert_eq!(
        d.at(1_100).lease_job(5, "a", "w3"),
        vec![append(4, 1_100, Op::Requeue { ids: vec![id("a")] })],
        "tried again once the log takes records"
    );
}

/// Each op a beanstalk connection makes of a job with the longest id fits
/// the smallest record limit (the core asserts each record's bound against
/// the limit in debug builds, as the tests run).
#[test]
fn the_longest_id_fits_every_beanstalk_op_in_the_smallest_record() {
    let mut limits = beaver_core::Limits {
        record_bytes_max: beaver_core::record_size::RECORD_BYTES_MIN,
        ..beaver_core::Limits::default()
    };
    limits.error_bytes_max = limits.error_bytes_max.min(1_024);
    let mut d = Driver::new(Config {
        workers: 0,
        limits,
        ..config()
    });
    let long = "l".repeat(beaver_core::job::JOB_ID_BYTES_MAX);
    d.at(10).enqueue(1, vec![spec(&long)]);
    d.sync_all();
    d.at(12).lease(2, &["default"], 1, None, "w1");
    d.sync_all();
    d.at(13).bury(3, 2, Some(7));
    d.sync_all();
    d.at(14).kick(4, &long);
    d.sync_all();
    d.at(15).lease(5, &["default"], 1, None, "w1");
    d.sync_all();
    // Leases are named by their dispatch record: LSN 5 (after the
    // enqueue, the first dispatch, the bury and the kick).
    d.at(16).release(6, 5, Some(1), 0);
    d.sync_all();
    d.at(17).delete(7, &long);
    d.sync_all();
    assert_eq!(job(&mut d, &long).state, JobState::Cancelled);
    // A delayed job kicked, then buried and deleted: LSNs 8 (enqueue), 9
    // (kick), 10 (dispatch: the lease), 11 (bury), 12 (delete).
    let other = "m".repeat(beaver_core::job::JOB_ID_BYTES_MAX);
    let later = JobSpec {
        delay_ms: 10_000,
        ..spec(&other)
    };
    d.at(18).enqueue(8, vec![later]);
    d.sync_all();
    d.at(19).kick(9, &other);
    d.sync_all();
    d.at(20).lease(10, &["default"], 1, None, "w1");
    d.sync_all();
    d.at(21).bury(11, 10, None);
    d.sync_all();
    d.at(22).delete(12, &other);
    d.sync_all();
    let names: Vec<&str> = d.log().iter().map(|r| r.op.name()).collect();
    assert_eq!(
        names[7..],
        ["enqueue", "kick", "dispatch", "bury", "delete_dead"],
        "{names:?}"
    );
}
