//! Outcomes (`core/src/machine/outcomes.rs`): how an attempt ended
//! becomes a complete, fail or release record.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{JobState, Outcome};
use common::*;

#[test]
fn success_completes_the_job() {
    let mut d = with_one_attempt();
    assert_eq!(
        d.at(20).outcome("a", 1, Outcome::Succeeded),
        vec![complete(3, 20, "a", 1)]
    );
    assert_eq!(d.at(21).durable(3), vec![]);
    let job = d.core().job("a").unwrap();
    assert_eq!(
        (job.state, job.finished_at, job.payload),
        (JobState::Completed, Some(20), None)
    );
    let totals = d.core().stats().totals;
    assert_eq!((totals.completed, totals.dead), (1, 0), "counted once");
}

/// `a` failed its first attempt at t=20 ("boom"); returns the driver and
/// the time of the retry.
fn failed_once() -> (Driver, u64) {
    let mut d = with_one_attempt();
    d.at(20).outcome("a", 1, Outcome::Failed("boom".into()));
    d.at(21).durable(3);
    (d, 20 + backoff("a", 1))
}

#[test]
fn a_failed_attempt_retries_after_its_backoff() {
    let mut d = with_one_attempt();
    let out = d.at(20).outcome("a", 1, Outcome::Failed("boom".into()));
    let backoff = backoff("a", 1);
    assert!((500..=1_000).contains(&backoff));
    let retry_at = 20 + backoff;
    assert_eq!(out, vec![fail(3, 20, "a", 1, "boom", Some(retry_at))]);
    assert_eq!(d.at(21).durable(3), vec![], "not ready before its backoff");
    assert_eq!(d.core().next_deadline(), Some(retry_at));
    assert_eq!(d.at(retry_at).tick(), vec![dispatch(4, retry_at, "a", 2)]);
}

#[test]
fn a_failed_last_attempt_makes_the_job_dead() {
    let (mut d, retry_at) = failed_once();
    d.at(retry_at).tick();
    d.durable(4);
    assert_eq!(
        d.at(retry_at + 5)
            .outcome("a", 2, Outcome::Failed("again".into())),
        vec![fail(5, retry_at + 5, "a", 2, "again", None)]
    );
    d.at(retry_at + 6).durable(5);
    let job = d.core().job("a").unwrap();
    assert_eq!(
        (job.state, job.attempt, job.last_error.as_deref()),
        (JobState::Dead, 2, Some("again"))
    );
    assert_eq!(d.core().dead_jobs(10).len(), 1);
    let totals = d.core().stats().totals;
    assert_eq!(
        (totals.dispatched, totals.failed, totals.dead),
        (2, 2, 1),
        "each counted"
    );
}

#[test]
fn timeout_is_a_failed_attempt() {
    let mut d = with_one_attempt();
    let retry_at = 50 + backoff("a", 1);
    assert_eq!(
        d.at(50).outcome("a", 1, Outcome::TimedOut),
        vec![fail(
            3,
            50,
            "a",
            1,
            "timed out after 100 ms",
            Some(retry_at)
        )]
    );
}

#[test]
fn an_outcome_of_another_attempt_changes_nothing() {
    let mut d = with_one_attempt();
    assert_eq!(d.at(20).outcome("a", 2, Outcome::Succeeded), vec![]);
    assert_eq!(d.core().job("a").unwrap().state, JobState::InFlight);
}

#[test]
fn clock_going_back_is_clamped_and_reorders_nothing() {
    let mut d = with_one_attempt();
    assert_eq!(
        d.at(5).outcome("a", 1, Outcome::Succeeded),
        vec![complete(3, 12, "a", 1)],
        "time 5 is read as 12"
    );
    assert_eq!(d.core().now(), 12);
}

#[test]
fn an_attempt_whose_outcome_is_on_its_way_does_not_expire_at_its_deadline() {
    let mut d = with_one_attempt();
    d.at(13).started("a", 1);
    d.at(20).outcome("a", 1, Outcome::Succeeded);
    // The lease (110 ms from its start) ends long before the record is
    // durable.
    assert_eq!(d.at(1_000).tick(), vec![], "no abort, no failure");
    d.durable(3);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Completed);
}
