//! Queue controls (`core/src/machine/queue_controls.rs`): pausing a queue
//! and purging its pending jobs, each a durable record.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::{Driver, queue_name};
use beaver_core::{
    Config, Core, Effect, JobSpec, JobState, Limits, Op, QueuePause, Rejection, Reply, Snapshot,
};
use common::*;

fn pause(lsn: u64, at: u64, queue: &str, until: u64) -> Effect {
    let queue = queue_name(queue);
    append(lsn, at, Op::PauseQueue { queue, until })
}

fn purge_queue(lsn: u64, at: u64, queue: &str) -> Effect {
    let queue = queue_name(queue);
    append(lsn, at, Op::PurgeQueue { queue })
}

/// No workers; `a` and `b` (delayed a minute) durable at t=11.
fn two_pending() -> Driver {
    let mut d = Driver::new(no_workers());
    let later = JobSpec {
        delay_ms: 60_000,
        ..spec("b")
    };
    d.at(10).enqueue(1, vec![spec("a"), later]);
    d.at(11).durable(1);
    d
}

/// One worker; the default queue paused until resumed (durable at t=11),
/// then `a` enqueued and durable at t=13.
fn paused_with_a() -> Driver {
    let mut d = Driver::new(config());
    d.at(10).pause_queue(1, "default", QueuePause::UntilResumed);
    d.at(11).durable(1);
    d.at(12).enqueue(2, vec![spec("a")]);
    d.at(13).durable(2);
    d
}

#[test]
fn a_pause_is_answered_once_durable() {
    let mut d = Driver::new(config());
    assert_eq!(
        d.at(10).pause_queue(1, "default", QueuePause::UntilResumed),
        vec![pause(1, 10, "default", u64::MAX)]
    );
    assert_eq!(d.at(11).durable(1), vec![reply(1, Reply::Paused(Ok(())))]);
}

#[test]
fn a_paused_queue_hands_nothing_to_the_pool() {
    let d = paused_with_a();
    assert_eq!(d.core().job("a").unwrap().state, JobState::Pending);
    assert_eq!(d.core().next_deadline(), None, "paused until resumed");
}

#[test]
fn a_resumed_queue_hands_out_again() {
    let mut d = paused_with_a();
    d.at(14).pause_queue(3, "default", QueuePause::Resume);
    assert_eq!(
        d.at(15).durable(3),
        vec![reply(3, Reply::Paused(Ok(()))), dispatch(4, 15, "a", 1)]
    );
}

#[test]
fn a_pause_until_a_time_ends_by_itself() {
    let mut d = Driver::new(config());
    d.at(10).pause_queue(1, "default", QueuePause::ForMs(489));
    d.at(11).durable(1);
    d.at(12).enqueue(2, vec![spec("a")]);
    d.at(13).durable(2);
    assert_eq!(d.core().next_deadline(), Some(500));
    assert_eq!(d.at(500).tick(), vec![dispatch(3, 500, "a", 1)]);
}

#[test]
fn pausing_a_queue_no_job_named_creates_it_within_the_queue_limit() {
    let mut d = Driver::new(Config {
        limits: Limits {
            queues_max: 1,
            ..Limits::default()
        },
        ..config()
    });
    d.at(10).pause_queue(1, "first", QueuePause::UntilResumed);
    d.at(11).durable(1);
    let out = d.pause_queue(2, "second", QueuePause::UntilResumed);
    assert!(
        matches!(&out[..], [Effect::Reply { reply: Reply::Paused(Err(Rejection::Busy { reason, .. })), .. }]
            if reason.contains("queue second does not exist and the number of queues is at its limit of 1")),
        "{out:?}"
    );
}

#[test]
fn an_empty_queue_is_listed_while_paused_and_not_after() {
    let mut d = Driver::new(config());
    d.at(10).pause_queue(1, "idle", QueuePause::ForMs(9));
    d.at(11).durable(1);
    let names = |d: &Driver| -> Vec<String> {
        d.core()
            .status()
            .queues
            .iter()
            .map(|q| q.name.as_str().to_owned())
            .collect()
    };
    assert_eq!(names(&d), ["idle"]);
    d.at(20).tick();
    assert_eq!(names(&d), Vec::<String>::new(), "no jobs, no pause");
}

#[test]
fn a_pause_survives_a_restart_from_the_log_and_from_a_snapshot() {
    let mut d = paused_with_a();
    d.crash();
    assert_eq!(d.at(20).tick(), vec![], "from the log");
    d.take_snapshot();
    d.crash();
    assert_eq!(d.at(21).tick(), vec![], "from the snapshot");
    let st = d.core().status();
    assert_eq!(st.queues[0].paused_until, Some(u64::MAX));
}

#[test]
fn a_snapshot_pausing_a_queue_until_zero_or_twice_is_refused() {
    let d = paused_with_a();
    let good = d.core().snapshot();
    assert_eq!(good.paused, [(queue_name("default"), u64::MAX)]);
    let until_zero = Snapshot {
        paused: vec![(queue_name("default"), 0)],
        ..good.clone()
    };
    let twice = Snapshot {
        paused: vec![
            (queue_name("default"), 5_000),
            (queue_name("default"), u64::MAX),
        ],
        ..good.clone()
    };
    for bad in [until_zero, twice] {
        let Err(e) = Core::recover(config(), Some(bad), []) else {
            panic!("a snapshot with a pause until 0, or paused twice, was taken in");
        };
        assert!(
            e.reason
                .contains("queue default is paused until 0, or twice"),
            "{e}"
        );
    }
    assert!(Core::recover(config(), Some(good), []).is_ok());
}

#[test]
fn a_purge_cancels_every_pending_job_of_its_queue_and_counts_them() {
    let mut d = two_pending();
    assert_eq!(
        d.at(12).purge_queue(2, "default"),
        vec![purge_queue(2, 12, "default")]
    );
    assert_eq!(d.at(13).durable(2), vec![reply(2, Reply::Purged(Ok(2)))]);
    for id in ["a", "b"] {
        let j = d.core().job(id).unwrap();
        assert_eq!((j.state, j.payload), (JobState::Cancelled, None), "{id}");
    }
}

#[test]
fn a_job_that_lands_while_its_queues_purge_is_on_its_way_is_not_deleted_twice() {
    let mut d = Driver::new(no_workers());
    d.at(9).enqueue(1, vec![spec("z")]);
    d.durable(1);
    d.at(10).enqueue(2, vec![spec("a")]);
    d.purge_queue(3, "default");
    d.at(11).durable(2);
    let out = d.delete(4, "a");
    assert!(
        matches!(
            only_reply(&out),
            Reply::Deleted(Err(Rejection::Conflict { .. }))
        ),
        "the purge on its way cancels it; no second record: {out:?}"
    );
    assert_eq!(d.at(12).durable(3), vec![reply(3, Reply::Purged(Ok(2)))]);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Cancelled);
}

#[test]
fn a_purge_leaves_other_queues_and_jobs_in_flight_alone() {
    let mut d = Driver::new(config());
    let other = JobSpec {
        queue: Some(queue_name("other")),
        ..spec("o")
    };
    d.at(10)
        .enqueue(1, vec![spec("running"), spec("waiting"), other]);
    d.at(11).sync_all();
    d.sync_all();
    d.at(12).purge_queue(2, "default");
    assert_eq!(d.at(13).sync_all(), vec![reply(2, Reply::Purged(Ok(1)))]);
    let state = |id| d.core().job(id).unwrap().state;
    assert_eq!(
        (state("running"), state("waiting"), state("o")),
        (JobState::InFlight, JobState::Cancelled, JobState::Pending)
    );
}

#[test]
fn a_purge_of_a_queue_no_job_names_cancels_nothing_at_once() {
    let mut d = two_pending();
    assert_eq!(
        d.at(12).purge_queue(2, "nowhere"),
        vec![reply(2, Reply::Purged(Ok(0)))]
    );
}

#[test]
fn nothing_of_a_queue_is_handed_out_while_its_purge_is_on_its_way() {
    let mut d = two_pending();
    d.at(12).purge_queue(2, "default");
    // A job enqueued before the purge applies would be cancelled by it:
    // not leased meanwhile.
    assert_eq!(
        d.lease(3, &["default"], 1, None, "w"),
        vec![reply(3, Reply::Leased(Ok(vec![])))]
    );
}

#[test]
fn a_cancel_of_a_job_the_purge_will_cancel_waits_for_the_purge() {
    let mut d = two_pending();
    d.at(12).purge_queue(2, "default");
    assert_eq!(d.cancel(3, "a"), vec![], "no record of its own");
    assert_eq!(
        d.at(13).durable(2),
        vec![
            reply(2, Reply::Purged(Ok(2))),
            reply(3, Reply::Cancelled(Ok(())))
        ]
    );
}

#[test]
fn a_purge_the_log_refused_is_answered_with_the_error_and_the_queue_hands_out_again() {
    let mut d = two_pending();
    d.at(12).purge_queue(2, "default");
    let refused = Rejection::Storage {
        reason: "no space".into(),
    };
    assert_eq!(
        d.at(13).append_failed(2, "no space"),
        vec![reply(2, Reply::Purged(Err(refused)))]
    );
    assert_eq!(
        d.lease(3, &["default"], 1, None, "w"),
        vec![dispatch(2, 13, "a", 1)]
    );
}

#[test]
fn a_purge_applies_the_same_in_a_rebuild() {
    let mut d = two_pending();
    d.at(12).purge_queue(2, "default");
    d.at(13).durable(2);
    let applied = d.core().snapshot();
    d.crash();
    assert_eq!(d.core().snapshot(), applied);
}
