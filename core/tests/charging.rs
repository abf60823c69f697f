//! Charging (`core/src/machine/charging.rs`): an attempt counts only if
//! it started; recovery gives back uncounted the attempts handed out ahead
//! that never logged a start, and their jobs are never dispatched ahead
//! again until their next counted attempt.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, Effect, Interrupted, JobSpec, JobState, Op, Outcome};
use common::*;

/// One worker, `prefetch` attempts ahead of it.
fn config_ahead(prefetch: u32) -> Config {
    Config {
        prefetch,
        ..config()
    }
}

/// Jobs `ids` enqueued at t=10 with two attempts ahead allowed; their
/// dispatches durable at t=12: the first runs on the worker (counted at
/// dispatch), the next two wait, handed out ahead.
fn handed_out(ids: &[&str]) -> Driver {
    let mut d = Driver::new(config_ahead(2));
    d.at(10).enqueue(1, ids.iter().map(|i| spec(i)).collect());
    d.at(11).durable(1);
    d.at(12).sync_all();
    d
}

fn interrupted(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    let text = "interrupted: beaver stopped while this attempt ran";
    fail(lsn, at, i, attempt, text, Some(at + backoff(i, attempt)))
}

fn release(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    append(lsn, at, Op::Release { id: id(i), attempt })
}

fn job(d: &Driver, i: &str) -> (JobState, u32) {
    let j = d.core().job(i).unwrap();
    (j.state, j.attempt)
}

#[test]
fn a_free_worker_s_attempt_counts_at_dispatch_and_one_handed_out_ahead_does_not() {
    let mut d = Driver::new(config_ahead(2));
    d.at(10).enqueue(1, vec![spec("a"), spec("b"), spec("c")]);
    assert_eq!(
        d.at(11).durable(1),
        vec![
            ok(1, &[("a", false), ("b", false), ("c", false)]),
            dispatch(2, 11, "a", 1),
            dispatch_ahead(3, 11, "b", 1),
            dispatch_ahead(4, 11, "c", 1),
        ]
    );
}

#[test]
fn an_attempt_handed_out_ahead_logs_its_start_when_it_starts() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    assert_eq!(d.at(14).started("b", 1), vec![start(5, 14, "b", 1)]);
}

#[test]
fn an_attempt_counted_at_dispatch_logs_no_start() {
    let mut d = handed_out(&["a"]);
    assert_eq!(d.at(13).started("a", 1), vec![]);
}

#[test]
fn the_attempt_runs_without_waiting_for_its_start_record() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.at(14).started("b", 1);
    // Its outcome arrives before the start record is durable: the
    // complete follows it in the log.
    assert_eq!(
        d.at(15).outcome("b", 1, Outcome::Succeeded),
        vec![complete(6, 15, "b", 1)]
    );
    d.sync_all();
    assert_eq!(job(&d, "b"), (JobState::Completed, 1));
}

#[test]
fn a_restart_fails_a_counted_attempt_and_gives_back_one_that_never_started() {
    let mut d = handed_out(&["a", "b"]);
    d.crash();
    let found = Interrupted {
        charged: 1,
        released: 1,
    };
    assert_eq!(d.core().interrupted(), found);
    assert_eq!(
        d.at(20).tick(),
        vec![interrupted(4, 20, "a", 1), release(5, 20, "b", 1)]
    );
    // `b` is pending again, its attempt not counted; the worker is free,
    // so its next attempt counts at dispatch.
    assert_eq!(d.at(21).sync_all(), vec![dispatch(6, 21, "b", 1)]);
}

#[test]
fn a_restart_counts_an_attempt_handed_out_ahead_once_its_start_is_durable() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.at(14).started("b", 1);
    d.sync_all();
    d.crash();
    assert_eq!(d.at(20).tick(), vec![interrupted(6, 20, "b", 1)]);
}

#[test]
fn a_restart_gives_back_an_attempt_whose_start_record_was_not_durable() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.sync_all();
    d.at(14).started("b", 1);
    d.crash(); // the start record is lost
    assert_eq!(d.at(20).tick(), vec![release(5, 20, "b", 1)]);
}

/// `b` and `c`, handed out ahead and never started, given back by a
/// restart (durably at t=21): both suspect; `a` completed before.
fn two_suspects() -> Driver {
    let mut d = handed_out(&["a", "b", "c"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.sync_all();
    d.crash();
    assert_eq!(
        d.at(20).tick(),
        vec![release(6, 20, "b", 1), release(7, 20, "c", 1)]
    );
    d
}

#[test]
fn a_suspect_job_is_not_handed_out_ahead_of_a_free_worker() {
    let mut d = two_suspects();
    assert_eq!(
        d.at(21).sync_all(),
        vec![dispatch(8, 21, "b", 1)],
        "the free worker's attempt only: `c` waits"
    );
}

/// Giving back is proposed again when the log refused it; a job given
/// back a second time is still suspect.
#[test]
fn a_job_given_back_again_after_a_refused_append_is_still_suspect() {
    let mut d = handed_out(&["a", "b", "c"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.sync_all();
    d.crash();
    d.at(20).tick();
    assert_eq!(d.at(21).append_failed(6, "no space"), vec![]);
    assert_eq!(
        d.at(1_021).tick(),
        vec![release(6, 1_021, "c", 1), release(7, 1_021, "b", 1)]
    );
    assert_eq!(
        d.at(1_022).sync_all(),
        vec![dispatch(8, 1_022, "b", 1)],
        "the free worker's attempt only: `c` waits"
    );
}

#[test]
fn a_suspect_job_gets_the_next_free_worker_and_its_dispatch_counts_it() {
    let mut d = two_suspects();
    d.at(21).sync_all();
    d.at(22).sync_all();
    d.at(23).started("b", 1);
    assert_eq!(
        d.at(24).outcome("b", 1, Outcome::Succeeded),
        vec![complete(9, 24, "b", 1), dispatch(10, 24, "c", 1)]
    );
}

#[test]
fn a_job_counted_again_is_no_longer_suspect() {
    let mut d = two_suspects();
    d.at(21).sync_all();
    d.at(22).sync_all();
    d.at(23).started("b", 1);
    d.at(24).outcome("b", 1, Outcome::Succeeded);
    d.at(25).sync_all();
    d.at(26).started("c", 1);
    // `e` takes the worker next; `c` fails and is retried while `e` holds it.
    d.enqueue(2, vec![spec("e")]);
    d.sync_all();
    d.sync_all();
    d.at(27).outcome("c", 1, Outcome::Failed("boom".into()));
    d.sync_all();
    let retry_at = 27 + backoff("c", 1);
    assert_eq!(
        d.at(retry_at).tick(),
        vec![dispatch_ahead(14, retry_at, "c", 2)],
        "handed out ahead like any job"
    );
}

#[test]
fn a_start_record_the_log_refused_is_proposed_again() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.at(14).started("b", 1);
    assert_eq!(d.at(15).append_failed(5, "no space"), vec![]);
    assert_eq!(
        d.core().next_deadline(),
        Some(1_015),
        "after the pause that follows a refused append"
    );
    // Proposed again first; its lease (110 ms from t=14) is over by now,
    // so the attempt then fails, after its start.
    let expired = "lease expired: no outcome within 110 ms";
    assert_eq!(
        d.at(1_015).tick(),
        vec![
            start(5, 1_015, "b", 1),
            abort("b", 1),
            fail(6, 1_015, "b", 1, expired, Some(1_015 + backoff("b", 1))),
        ]
    );
}

#[test]
fn a_start_record_refused_before_the_attempt_ended_is_not_proposed_again() {
    let mut d = handed_out(&["a", "b"]);
    d.at(13).outcome("a", 1, Outcome::Succeeded);
    d.at(14).started("b", 1);
    d.at(15).append_failed(5, "no space");
    assert_eq!(
        d.at(16).outcome("b", 1, Outcome::Succeeded),
        vec![complete(5, 16, "b", 1)]
    );
    assert_eq!(d.at(1_016).tick(), vec![], "the attempt is over");
}

#[test]
fn a_job_that_kills_the_server_whenever_it_starts_ends_dead() {
    // Two attempts each; `killer` is handed out ahead among other jobs.
    let mut d = Driver::new(config_ahead(2));
    let mut jobs: Vec<JobSpec> = (0..4).map(|i| spec(&format!("f{i}"))).collect();
    jobs.insert(2, spec("killer"));
    d.at(10).enqueue(1, jobs);
    let mut crashes = 0;
    for _ in 0..500 {
        if d.core().job("killer").is_some_and(|j| j.state.is_final()) {
            break;
        }
        if !d.unsynced().is_empty() {
            d.sync_all();
        } else if let Some(x) = d.executions().first().cloned() {
            let now = d.now() + 1;
            d.at(now).started(x.id.as_str(), x.attempt);
            if x.id.as_str() == "killer" {
                d.crash();
                crashes += 1;
            } else {
                d.outcome(x.id.as_str(), x.attempt, Outcome::Succeeded);
            }
        } else if d.step_to_deadline().is_none() {
            break;
        }
    }
    assert_eq!(job(&d, "killer"), (JobState::Dead, 2));
    assert!(
        (2..=4).contains(&crashes),
        "counted at least every second crash: {crashes} crashes for 2 attempts"
    );
}
