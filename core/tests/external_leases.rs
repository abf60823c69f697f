//! External leases (`core/src/machine/external.rs`, `fencing.rs`): jobs
//! handed to workers outside the process, fenced by lease id, with waiting
//! requests, renewal, idempotent ends and expiry.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{
    Config, Effect, JobSpec, JobState, Limits, Op, Outcome, QueueName, QueuePause, Rejection,
    Reply, RequestId, Retry,
};
use common::*;

/// No built-in workers: every job waits for an external one. Jobs run
/// 100 ms (10 ms of slack), two attempts.
fn external() -> Config {
    no_workers()
}

/// `ids` enqueued at t=10, durable at t=11, nobody working on them.
fn ready(ids: &[&str]) -> Driver {
    let mut d = Driver::new(external());
    d.at(10).enqueue(1, ids.iter().map(|i| spec(i)).collect());
    d.at(11).durable(1);
    d
}

/// `a` leased at t=12 by `w1` (lease 2, durable at t=13: its 100 ms surely
/// over at 114, the deadline; expiry 124, after 10 ms of slack).
fn leased_a() -> Driver {
    let mut d = ready(&["a"]);
    d.at(12).lease(2, &["default"], 1, None, "w1");
    d.at(13).durable(2);
    d
}

/// The lease dispatch of attempt `attempt` of `i` proposed at `at`.
fn lease_dispatch(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    dispatch(lsn, at, i, attempt)
}

/// The jobs (id, attempt, lease id, deadline) of the one lease reply in `out`.
fn granted(out: &[Effect]) -> Vec<(String, u32, u64, u64)> {
    let leased: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Reply {
                reply: Reply::Leased(Ok(jobs)),
                ..
            } => Some(jobs.clone()),
            _ => None,
        })
        .collect();
    let [jobs] = leased.as_slice() else {
        panic!("expected one lease reply: {out:?}")
    };
    jobs.iter()
        .map(|j| {
            assert_eq!(j.job.state, JobState::InFlight);
            assert_eq!(j.job.lease_until, Some(j.lease_until));
            let id = j.job.id.to_string();
            (id, j.job.attempt, j.lease_id, j.lease_until)
        })
        .collect()
}

fn lost(lease: u64) -> Rejection {
    Rejection::LeaseLost { lease }
}

fn invalid(field: &str, out: &[Effect]) -> String {
    match out {
        [
            Effect::Reply {
                reply:
                    Reply::Leased(Err(Rejection::Invalid {
                        field: f, reason, ..
                    })),
                ..
            },
        ] if f == field => reason.clone(),
        other => panic!("expected `{field}` refused: {other:?}"),
    }
}

#[test]
fn a_lease_proposes_a_counted_dispatch_for_each_job_it_takes() {
    let mut d = ready(&["a", "b", "c"]);
    assert_eq!(
        d.at(12).lease(2, &["default"], 2, None, "w1"),
        vec![lease_dispatch(2, 12, "a", 1), lease_dispatch(3, 12, "b", 1)]
    );
}

#[test]
fn a_lease_is_answered_once_its_dispatches_are_durable() {
    let mut d = ready(&["a", "b"]);
    d.at(12).lease(2, &["default"], 2, None, "w1");
    assert_eq!(d.at(13).durable(2), vec![], "waits for the last dispatch");
    assert_eq!(
        granted(&d.at(14).durable(3)),
        [("a".into(), 1, 2, 115), ("b".into(), 1, 3, 115)],
        "each lease's id is its dispatch's LSN; its deadline counts from the reply"
    );
    assert_eq!(d.core().stats().leases.granted, 2, "each lease counted");
}

#[test]
fn a_lease_takes_jobs_round_robin_over_its_queues_highest_priority_first() {
    let mut d = Driver::new(external());
    let job = |i: &str, q: &str, priority| JobSpec {
        queue: Some(QueueName::parse(q).unwrap()),
        priority,
        ..spec(i)
    };
    let jobs = vec![
        job("x1", "x", 0),
        job("x2", "x", 9),
        job("y1", "y", 0),
        job("y2", "y", 0),
    ];
    d.at(10).enqueue(1, jobs);
    d.durable(1);
    let out = d.at(12).lease(2, &["x", "y", "nowhere"], 3, None, "w1");
    let ids: Vec<String> = appended(&out)
        .iter()
        .map(|r| match &r.op {
            Op::Dispatch { id, .. } => id.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["x2", "y1", "x1"]);
}

#[test]
fn a_lease_with_nothing_ready_and_no_wait_gets_nothing_at_once() {
    let mut d = ready(&[]);
    assert_eq!(
        d.at(12).lease(2, &["default"], 5, None, "w1"),
        vec![reply(2, Reply::Leased(Ok(vec![])))]
    );
}

#[test]
fn a_lease_that_waits_no_time_gets_nothing_at_once() {
    let mut d = ready(&[]);
    assert_eq!(
        d.at(12).lease(2, &["default"], 5, Some(0), "w1"),
        vec![reply(2, Reply::Leased(Ok(vec![])))]
    );
    assert_eq!(d.core().stats().leases.waiting, 0, "nothing left waiting");
}

#[test]
fn a_waiting_lease_gets_a_job_as_soon_as_one_is_ready() {
    let mut d = ready(&[]);
    assert_eq!(
        d.at(12).lease(2, &["default"], 5, Some(5_000), "w1"),
        vec![]
    );
    assert_eq!(d.core().next_deadline(), Some(12 + 5_000 + 1));
    d.at(13).enqueue(3, vec![spec("a")]);
    assert_eq!(
        d.at(14).durable(1),
        vec![ok(3, &[("a", false)]), lease_dispatch(2, 14, "a", 1)]
    );
    assert_eq!(granted(&d.at(15).durable(2)), [("a".into(), 1, 2, 116)]);
}

#[test]
fn waiting_leases_are_served_first_come_first_served() {
    let mut d = ready(&[]);
    d.at(12).lease(2, &["default"], 1, Some(5_000), "first");
    d.lease(3, &["default"], 1, Some(5_000), "second");
    d.at(13).enqueue(4, vec![spec("a")]);
    d.at(14).durable(1);
    let out = d.at(15).durable(2);
    assert!(
        matches!(
            &out[..],
            [Effect::Reply {
                req: RequestId(2),
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(d.core().list_leases().leases[0].holder, "first");
    assert_eq!(d.core().stats().leases.waiting, 1, "the second still waits");
}

#[test]
fn a_job_goes_to_the_first_waiting_lease_that_names_its_queue() {
    let mut d = ready(&[]);
    d.at(12).lease(2, &["x"], 1, Some(5_000), "on x");
    d.lease(3, &["default"], 1, Some(5_000), "on default");
    d.at(13).enqueue(4, vec![spec("a")]);
    assert_eq!(
        d.at(14).durable(1),
        vec![ok(4, &[("a", false)]), lease_dispatch(2, 14, "a", 1)],
        "the lease on x is passed over"
    );
    d.at(15).durable(2);
    assert_eq!(d.core().list_leases().leases[0].holder, "on default");
    assert_eq!(d.core().stats().leases.waiting, 1, "the lease on x waits");
}

#[test]
fn a_waiting_lease_gets_nothing_once_its_wait_is_surely_over() {
    let mut d = ready(&[]);
    d.at(12).lease(2, &["default"], 1, Some(5_000), "w1");
    assert_eq!(
        d.at(12 + 5_000).tick(),
        vec![],
        "the reading may be up to 1 ms late"
    );
    assert_eq!(
        d.at(12 + 5_001).tick(),
        vec![reply(2, Reply::Leased(Ok(vec![])))]
    );
    assert_eq!(d.core().next_deadline(), None);
}

#[test]
fn waiting_leases_are_served_before_the_pool_hands_out_ahead() {
    let mut d = Driver::new(Config {
        prefetch: 2,
        ..config()
    });
    d.at(10).enqueue(1, vec![spec("running")]);
    d.at(11).sync_all();
    d.sync_all(); // `running` holds the worker
    d.lease(2, &["default"], 1, Some(5_000), "w1");
    d.at(12).enqueue(3, vec![spec("a"), spec("b")]);
    assert_eq!(
        d.at(13).durable(3),
        vec![
            ok(3, &[("a", false), ("b", false)]),
            lease_dispatch(4, 13, "a", 1),
            dispatch_ahead(5, 13, "b", 1),
        ]
    );
}

#[test]
fn a_withdrawn_lease_request_is_forgotten() {
    let mut d = ready(&[]);
    d.at(12).lease(2, &["default"], 1, Some(5_000), "w1");
    assert_eq!(d.withdraw(2), vec![]);
    assert_eq!(d.core().stats().leases.waiting, 0);
    d.at(13).enqueue(3, vec![spec("a")]);
    assert_eq!(d.at(14).durable(1), vec![ok(3, &[("a", false)])]);
}

#[test]
fn a_lease_past_the_waiting_limit_is_busy() {
    let mut d = Driver::new(Config {
        limits: Limits {
            lease_waiters_max: 1,
            ..Limits::default()
        },
        ..external()
    });
    d.at(12).lease(2, &["default"], 1, Some(5_000), "w1");
    let out = d.lease(3, &["default"], 1, Some(5_000), "w2");
    assert!(
        matches!(&out[..], [Effect::Reply { reply: Reply::Leased(Err(Rejection::Busy { reason, .. })), .. }]
            if reason.contains("1 lease requests are waiting")),
        "{out:?}"
    );
    assert_eq!(
        d.lease(4, &["default"], 1, None, "w3"),
        vec![reply(4, Reply::Leased(Ok(vec![])))],
        "one that does not wait is answered"
    );
}

#[test]
fn a_lease_naming_no_queue_or_too_many_is_refused() {
    let mut d = ready(&[]);
    let reason = invalid("queues", &d.at(12).lease(2, &[], 1, None, "w"));
    assert!(reason.contains("name 1 to 16 queues, got 0"), "{reason}");
    let many: Vec<String> = (0..17).map(|i| format!("q{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let reason = invalid("queues", &d.lease(3, &many, 1, None, "w"));
    assert!(reason.contains("got 17"), "{reason}");
    assert_eq!(
        d.lease(4, &many[..16], 1, None, "w"),
        vec![reply(4, Reply::Leased(Ok(vec![])))],
        "16 queues are taken"
    );
}

#[test]
fn a_lease_asking_for_no_job_or_more_than_the_batch_limit_is_refused() {
    let mut d = ready(&[]);
    let reason = invalid("max", &d.at(12).lease(2, &["default"], 0, None, "w"));
    assert!(reason.contains("must be 1 to 100, got 0"), "{reason}");
    let reason = invalid("max", &d.lease(3, &["default"], 101, None, "w"));
    assert!(reason.contains("got 101"), "{reason}");
    assert_eq!(
        d.lease(4, &["default"], 100, None, "w"),
        vec![reply(4, Reply::Leased(Ok(vec![])))],
        "the limit itself is taken"
    );
}

#[test]
fn a_lease_with_a_holder_too_long_or_with_control_characters_is_refused() {
    let mut d = ready(&[]);
    let long = "w".repeat(129);
    let reason = invalid("holder", &d.at(12).lease(2, &["default"], 1, None, &long));
    assert!(reason.contains("at most 128 bytes"), "{reason}");
    invalid("holder", &d.lease(3, &["default"], 1, None, "w\n1"));
    let longest = "w".repeat(128);
    assert_eq!(
        d.lease(4, &["default"], 1, None, &longest),
        vec![reply(4, Reply::Leased(Ok(vec![])))],
        "128 bytes are taken"
    );
}

#[test]
fn a_lease_waiting_longer_than_the_limit_is_refused() {
    let mut d = ready(&[]);
    let out = d.at(12).lease(2, &["default"], 1, Some(300_001), "w");
    let reason = invalid("wait_ms", &out);
    assert!(
        reason.contains("is 300001 ms; the limit is 300000 ms"),
        "{reason}"
    );
}

#[test]
fn a_lease_may_wait_exactly_the_limit() {
    let mut d = ready(&[]);
    assert_eq!(
        d.at(12).lease(2, &["default"], 1, Some(300_000), "w"),
        vec![],
        "it waits"
    );
    assert_eq!(d.core().stats().leases.waiting, 1);
    assert_eq!(
        d.core().next_deadline(),
        Some(12 + 300_000 + 1),
        "a millisecond past the reading plus the wait: never early"
    );
}

#[test]
fn a_paused_queue_hands_nothing_to_a_lease() {
    let mut d = ready(&["a"]);
    d.at(12).pause_queue(2, "default", QueuePause::UntilResumed);
    d.durable(2);
    assert_eq!(
        d.lease(3, &["default"], 1, None, "w"),
        vec![reply(3, Reply::Leased(Ok(vec![])))]
    );
}

#[test]
fn stopping_answers_waiting_leases_and_refuses_new_ones() {
    let mut d = ready(&[]);
    d.at(12).lease(2, &["default"], 1, Some(5_000), "w1");
    assert_eq!(
        d.stop_dispatching(),
        vec![reply(2, Reply::Leased(Err(Rejection::Stopping)))]
    );
    assert_eq!(
        d.lease(3, &["default"], 1, None, "w2"),
        vec![reply(3, Reply::Leased(Err(Rejection::Stopping)))]
    );
}

#[test]
fn a_heartbeat_moves_the_deadline_and_logs_nothing() {
    let mut d = leased_a();
    assert_eq!(
        d.at(50).heartbeat(3, 2, Some(1_000)),
        vec![reply(3, Reply::Heartbeat(Ok(1_051)))]
    );
    assert_eq!(d.core().next_deadline(), Some(1_061), "plus the slack");
    assert_eq!(d.core().job("a").unwrap().lease_until, Some(1_051));
    assert_eq!(
        d.heartbeat(4, 2, None),
        vec![reply(4, Reply::Heartbeat(Ok(151)))],
        "the job's timeout by default"
    );
    assert_eq!(d.core().stats().leases.renewed, 2, "each heartbeat counted");
}

#[test]
fn a_heartbeat_at_the_expiry_itself_is_too_late() {
    let mut d = leased_a();
    d.at(50).heartbeat(3, 2, Some(1_000));
    assert_eq!(d.core().next_deadline(), Some(1_061));
    let out = d.at(1_061).heartbeat(4, 2, None);
    assert_eq!(
        out[0],
        reply(4, Reply::Heartbeat(Err(Rejection::LeaseLost { lease: 2 }))),
        "then the lease expires: {out:?}"
    );
}

#[test]
fn a_heartbeat_within_the_slack_after_the_deadline_still_renews() {
    let mut d = leased_a();
    assert_eq!(
        d.at(120).heartbeat(3, 2, None),
        vec![reply(3, Reply::Heartbeat(Ok(221)))]
    );
}

#[test]
fn a_heartbeat_extending_beyond_the_limit_is_refused() {
    let mut d = leased_a();
    let out = d.at(50).heartbeat(3, 2, Some(24 * 3_600_000 + 1));
    assert!(
        matches!(&out[..], [Effect::Reply { reply: Reply::Heartbeat(Err(Rejection::Invalid { field, .. })), .. }] if field == "extend_ms"),
        "{out:?}"
    );
    assert_eq!(
        d.heartbeat(4, 2, Some(24 * 3_600_000)),
        vec![reply(4, Reply::Heartbeat(Ok(50 + 24 * 3_600_000 + 1)))],
        "exactly the limit is taken"
    );
}

#[test]
fn a_complete_at_the_instant_of_expiry_is_lease_lost() {
    let mut d = leased_a();
    assert_eq!(d.core().next_deadline(), Some(124));
    let out = d.at(124).complete(3, 2);
    assert_eq!(
        out[..1],
        [reply(3, Reply::Completed(Err(lost(2))))],
        "refused before the step's housekeeping fails the attempt: {out:?}"
    );
    assert!(
        matches!(&out[1..], [Effect::Append(r)] if r.op.name() == "fail"),
        "{out:?}"
    );
}

#[test]
fn a_heartbeat_on_a_lease_that_is_not_current_is_lease_lost() {
    let mut d = leased_a();
    assert_eq!(
        d.at(50).heartbeat(3, 99, None),
        vec![reply(3, Reply::Heartbeat(Err(lost(99))))]
    );
    assert_eq!(d.core().stats().leases.lost, 1);
}

#[test]
fn a_complete_is_answered_once_durable_and_the_job_completes() {
    let mut d = leased_a();
    assert_eq!(d.at(50).complete(3, 2), vec![complete(3, 50, "a", 1)]);
    assert_eq!(
        d.at(51).durable(3),
        vec![reply(3, Reply::Completed(Ok(())))]
    );
    assert_eq!(d.core().job("a").unwrap().state, JobState::Completed);
    assert_eq!(d.core().list_leases().total, 0);
}

#[test]
fn a_complete_retried_while_its_record_is_on_its_way_waits_for_the_same_record() {
    let mut d = leased_a();
    d.at(50).complete(3, 2);
    assert_eq!(d.complete(4, 2), vec![], "no second record");
    assert_eq!(
        d.at(51).durable(3),
        vec![
            reply(3, Reply::Completed(Ok(()))),
            reply(4, Reply::Completed(Ok(())))
        ]
    );
}

#[test]
fn a_complete_retried_after_it_applied_is_answered_again_and_changes_nothing() {
    let mut d = leased_a();
    d.at(50).complete(3, 2);
    d.at(51).durable(3);
    assert_eq!(
        d.at(52).complete(4, 2),
        vec![reply(4, Reply::Completed(Ok(())))]
    );
}

#[test]
fn a_fail_of_a_completed_lease_is_lease_lost() {
    let mut d = leased_a();
    d.at(50).complete(3, 2);
    assert_eq!(
        d.fail(4, 2, "boom", Retry::Policy),
        vec![reply(4, Reply::Failed(Err(lost(2))))],
        "also while the complete is on its way"
    );
    d.at(51).durable(3);
    assert_eq!(
        d.fail(5, 2, "boom", Retry::Policy),
        vec![reply(5, Reply::Failed(Err(lost(2))))]
    );
    assert_eq!(d.core().stats().leases.lost, 2, "each refusal counted");
}

#[test]
fn a_fail_retries_after_the_backoff_while_attempts_are_left() {
    let mut d = leased_a();
    assert_eq!(
        d.at(50).fail(3, 2, "boom", Retry::Policy),
        vec![fail(3, 50, "a", 1, "boom", Some(50 + backoff("a", 1)))]
    );
    assert_eq!(d.at(51).durable(3), vec![reply(3, Reply::Failed(Ok(())))]);
}

#[test]
fn a_fail_retries_when_the_worker_says() {
    let mut d = leased_a();
    assert_eq!(
        d.at(50).fail(3, 2, "later", Retry::InMs(7)),
        vec![fail(3, 50, "a", 1, "later", Some(58))]
    );
}

#[test]
fn a_fail_that_gives_up_makes_the_job_dead_with_attempts_left() {
    let mut d = leased_a();
    assert_eq!(
        d.at(50).fail(3, 2, "bad input", Retry::GiveUp),
        vec![fail(3, 50, "a", 1, "bad input", None)]
    );
    d.at(51).durable(3);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Dead);
}

#[test]
fn a_fail_retrying_later_than_the_delay_limit_is_refused() {
    let mut d = leased_a();
    let max = d.core().config().limits.delay_ms_max;
    for ms in [u64::MAX, max + 1] {
        let out = d.at(50).fail(3, 2, "x", Retry::InMs(ms));
        assert!(
            matches!(&out[..], [Effect::Reply { reply: Reply::Failed(Err(Rejection::Invalid { field, .. })), .. }] if field == "retry_in_ms"),
            "{out:?}"
        );
    }
    let out = d.fail(4, 2, "x", Retry::InMs(max));
    assert!(
        matches!(&out[..], [Effect::Append(r)] if r.op.name() == "fail"),
        "a retry exactly at the limit is taken: {out:?}"
    );
}

#[test]
fn an_expired_lease_fails_its_attempt_without_an_abort() {
    let mut d = leased_a();
    assert_eq!(d.core().next_deadline(), Some(124));
    let text =
        "lease 2 expired: no heartbeat, complete or fail by its deadline (plus 10 ms of slack)";
    assert_eq!(
        d.at(124).tick(),
        vec![fail(3, 124, "a", 1, text, Some(124 + backoff("a", 1)))]
    );
    assert_eq!(d.core().stats().leases.expired, 1);
}

#[test]
fn a_complete_after_the_lease_expired_is_lease_lost_and_changes_nothing() {
    let mut d = leased_a();
    d.at(124).tick();
    assert_eq!(
        d.at(125).complete(3, 2),
        vec![reply(3, Reply::Completed(Err(lost(2))))]
    );
    d.sync_all();
    assert_eq!(d.core().job("a").unwrap().state, JobState::Pending);
}

#[test]
fn a_restart_loses_every_lease_and_counts_their_attempts() {
    let mut d = leased_a();
    d.crash();
    let text = "interrupted: beaver stopped while this attempt ran";
    assert_eq!(
        d.at(50).tick(),
        vec![fail(3, 50, "a", 1, text, Some(50 + backoff("a", 1)))]
    );
    assert_eq!(
        d.complete(4, 2),
        vec![reply(4, Reply::Completed(Err(lost(2))))]
    );
}

#[test]
fn leases_given_back_are_released_uncounted() {
    let mut d = leased_a();
    let release = append(
        3,
        50,
        Op::Release {
            id: id("a"),
            attempt: 1,
        },
    );
    assert_eq!(d.at(50).return_leases(&[2, 77]), vec![release]);
    d.at(51).durable(3);
    let a = d.core().job("a").unwrap();
    assert_eq!((a.state, a.attempt), (JobState::Pending, 0));
    assert_eq!(
        d.complete(4, 2),
        vec![reply(4, Reply::Completed(Err(lost(2))))]
    );
}

#[test]
fn a_lease_whose_dispatches_the_log_refused_is_answered_with_the_error() {
    let mut d = ready(&["a"]);
    d.at(12).lease(2, &["default"], 1, None, "w1");
    let refused = Rejection::Storage {
        reason: "no space".into(),
    };
    assert_eq!(
        d.at(13).append_failed(2, "no space"),
        vec![reply(2, Reply::Leased(Err(refused)))]
    );
    assert_eq!(d.core().job("a").unwrap().state, JobState::Pending);
    assert_eq!(d.core().stats().leases.active, 0);
}

#[test]
fn a_lease_whose_last_dispatch_the_log_refused_gets_the_jobs_already_durable() {
    let mut d = ready(&["a", "b"]);
    d.at(12).lease(2, &["default"], 2, None, "w1");
    d.at(13).durable(2);
    assert_eq!(
        granted(&d.at(14).append_failed(3, "no space")),
        [("a".into(), 1, 2, 115)]
    );
}

#[test]
fn a_complete_the_log_refused_leaves_the_lease_current() {
    let mut d = leased_a();
    d.at(50).complete(3, 2);
    let refused = Rejection::Storage {
        reason: "no space".into(),
    };
    assert_eq!(
        d.at(51).append_failed(3, "no space"),
        vec![reply(3, Reply::Completed(Err(refused)))]
    );
    assert_eq!(d.at(52).complete(4, 2), vec![complete(3, 52, "a", 1)]);
}

#[test]
fn ended_leases_are_remembered_up_to_their_limit_and_the_oldest_forgotten() {
    let mut d = Driver::new(Config {
        limits: Limits {
            lease_ended_max: 1,
            ..Limits::default()
        },
        ..external()
    });
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.sync_all();
    d.at(12).lease(2, &["default"], 2, None, "w1");
    d.sync_all();
    d.at(13).complete(3, 2);
    d.complete(4, 3);
    d.sync_all();
    assert_eq!(
        d.complete(5, 3),
        vec![reply(5, Reply::Completed(Ok(())))],
        "the newest end is remembered"
    );
    assert_eq!(
        d.complete(6, 2),
        vec![reply(6, Reply::Completed(Err(lost(2))))],
        "the oldest was forgotten"
    );
}

#[test]
fn an_outcome_or_a_cancel_cannot_end_a_leased_attempt() {
    let mut d = leased_a();
    assert_eq!(d.at(50).outcome("a", 1, Outcome::Succeeded), vec![]);
    let out = d.cancel(3, "a");
    assert!(
        matches!(
            only_reply(&out),
            Reply::Cancelled(Err(Rejection::Conflict { .. }))
        ),
        "{out:?}"
    );
}

#[test]
fn the_pool_serves_only_its_queues_and_leases_take_the_others() {
    let mut d = Driver::new(Config {
        pool_queues: Some(vec![QueueName::parse("pool").unwrap()]),
        ..config()
    });
    let job = |i: &str, q: &str| JobSpec {
        queue: Some(QueueName::parse(q).unwrap()),
        ..spec(i)
    };
    d.at(10)
        .enqueue(1, vec![job("p", "pool"), job("e", "elsewhere")]);
    assert_eq!(
        d.at(11).durable(1),
        vec![
            ok(1, &[("p", false), ("e", false)]),
            dispatch(2, 11, "p", 1)
        ]
    );
    assert_eq!(
        d.lease(2, &["elsewhere"], 5, None, "w"),
        vec![lease_dispatch(3, 11, "e", 1)]
    );
}

#[test]
fn the_current_leases_are_listed_by_id() {
    let mut d = ready(&["a", "b"]);
    d.at(12).lease(2, &["default"], 1, None, "w1");
    d.lease(3, &["default"], 1, None, "w2");
    d.at(13).sync_all();
    let list = d.core().list_leases();
    let rows: Vec<(u64, &str, &str, u64, u64)> = list
        .leases
        .iter()
        .map(|l| {
            (
                l.lease_id,
                l.id.as_str(),
                l.holder.as_str(),
                l.lease_until,
                l.started_at,
            )
        })
        .collect();
    assert_eq!(rows, [(2, "a", "w1", 114, 13), (3, "b", "w2", 114, 13)]);
    assert_eq!(list.total, 2);
    let out = d.list_leases(9);
    assert_eq!(out, vec![reply(9, Reply::Leases(list))]);
}
