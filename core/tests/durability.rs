//! Durability (`core/src/machine/durability.rs`): what the core does when
//! the log refuses records. (Records applied on `Durable` are in every
//! other file.)

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Effect, JobState, Op, Outcome, Rejection, Reply};
use common::*;

/// Requests 1 and 2 enqueue `a` at t=10: one record (LSN 1), two waiting
/// replies.
fn one_record_two_requests() -> Driver {
    let mut d = Driver::new(config());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.enqueue(2, vec![spec("a")]);
    d
}

#[test]
fn an_append_failure_answers_every_waiting_request_with_the_error() {
    let mut d = one_record_two_requests();
    let err = || {
        Reply::Enqueued(Err(Rejection::Storage {
            reason: "no space left on device".into(),
        }))
    };
    assert_eq!(
        d.at(11).append_failed(1, "no space left on device"),
        vec![reply(1, err()), reply(2, err())]
    );
}

#[test]
fn after_an_append_failure_its_lsns_and_ids_are_free_again() {
    let mut d = one_record_two_requests();
    d.at(11).append_failed(1, "no space left on device");
    // LSN 1 is reissued, and the id is free again.
    assert_eq!(
        d.at(12).enqueue(3, vec![spec("a")]),
        vec![enqueue(1, 12, &["a"])]
    );
}

#[test]
fn append_failure_of_a_dispatch_returns_the_job_to_ready_after_a_pause() {
    let mut d = with_one_job();
    assert_eq!(d.at(12).append_failed(2, "full"), vec![]);
    assert_eq!(
        d.core().next_deadline(),
        None,
        "nothing timed; the next input retries"
    );
    assert_eq!(
        d.at(500).tick(),
        vec![],
        "internal proposals pause after a failed append"
    );
    assert_eq!(d.at(1_012).tick(), vec![dispatch(2, 1_012, "a", 1)]);
}

#[test]
fn append_failure_of_an_outcome_proposes_it_again_later() {
    let mut d = with_one_attempt();
    d.at(20).outcome("a", 1, Outcome::Succeeded);
    assert_eq!(d.at(21).append_failed(3, "full"), vec![]);
    assert_eq!(d.core().next_deadline(), Some(1_021));
    assert_eq!(d.at(1_021).tick(), vec![complete(3, 1_021, "a", 1)]);
}

#[test]
fn a_failure_report_about_no_proposal_of_ours_is_stale_and_changes_nothing() {
    let mut d = with_one_attempt();
    d.at(20).outcome("a", 1, Outcome::Succeeded);
    // LSN 2 is applied already and LSN 4 was never proposed: neither
    // report takes back record 3 or pauses the core.
    assert_eq!(d.at(21).append_failed(2, "stale"), vec![]);
    assert_eq!(d.at(21).append_failed(4, "stale"), vec![]);
    assert_eq!(d.core().next_lsn(), 4, "record 3 still proposed");
    assert_eq!(d.at(22).durable(3), vec![]);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Completed);
    d.at(23).enqueue(2, vec![spec("b")]);
    assert_eq!(
        d.at(24).durable(4),
        vec![ok(2, &[("b", false)]), dispatch(5, 24, "b", 1)],
        "no pause: the next job is dispatched at once"
    );
}

#[test]
fn a_cancel_of_a_pending_job_that_cannot_be_logged_leaves_the_job_pending() {
    let mut d = Driver::new(no_workers());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.at(11).durable(1);
    d.at(12).cancel(2, "a");
    d.append_failed(2, "no space");
    assert_eq!(d.at(2_000).tick(), vec![], "nothing owed");
    let a = d.core().job("a").unwrap();
    assert_eq!((a.state, a.attempt), (JobState::Pending, 0));
    d.cancel(3, "a");
    d.durable(2);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Cancelled);
}

#[test]
fn a_cancel_of_a_waiting_attempt_that_cannot_be_logged_gives_the_attempt_back() {
    let mut d = with_one_attempt();
    d.at(13).cancel(2, "a");
    let out = d.append_failed(3, "no space");
    assert!(
        matches!(
            &out[..],
            [Effect::Reply {
                reply: Reply::Cancelled(Err(_)),
                ..
            }]
        ),
        "{out:?}"
    );
    // Once the log takes records again the attempt is released, uncounted,
    // and the job runs.
    let out = d.at(2_000).tick();
    assert_eq!(
        out.first(),
        Some(&append(
            3,
            2_000,
            Op::Release {
                id: id("a"),
                attempt: 1
            }
        )),
        "{out:?}"
    );
}

#[test]
fn a_checkpoint_logs_a_record_that_changes_nothing_and_answers_its_lsn() {
    let mut d = with_one_attempt();
    let before = d.core().snapshot();
    assert_eq!(d.at(13).checkpoint(9), vec![append(3, 13, Op::Checkpoint)]);
    assert_eq!(
        d.at(14).durable(3),
        vec![reply(9, Reply::Checkpoint(Ok(3)))]
    );
    let after = d.core().snapshot();
    assert_eq!((after.lsn, after.jobs), (3, before.jobs));
}
