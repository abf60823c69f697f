//! Retention (`core/src/machine/retention.rs`): finished jobs are purged
//! by age and count, their ids remembered for deduplication for a window
//! and under a cap.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, Effect, Op, Retention};
use common::*;

fn purge(lsn: u64, at: u64, jobs: &[&str], forget: &[&str]) -> Effect {
    let ids = |ids: &[&str]| ids.iter().map(|i| id(i)).collect();
    let (jobs, forget) = (ids(jobs), ids(forget));
    append(lsn, at, Op::Purge { jobs, forget })
}

/// Finished jobs kept 1,000 ms, at most one; no workers. `a` and `b`
/// durable at t=11, `a` cancelled durably at t=13 (its record's time 12).
fn a_cancelled() -> Driver {
    let mut d = Driver::new(Config {
        retention: Retention {
            finished_age_ms: 1_000,
            finished_count_max: 1,
        },
        workers: 0,
        ..config()
    });
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.at(11).durable(1);
    d.at(12).cancel(2, "a");
    d.at(13).durable(2);
    d
}

/// [`a_cancelled`], then `b` cancelled at t=14 and `a` purged durably at t=16.
fn a_purged_b_cancelled() -> Driver {
    let mut d = a_cancelled();
    d.at(14).cancel(3, "b");
    d.at(15).durable(3);
    d.at(16).durable(4);
    d
}

#[test]
fn a_finished_job_is_due_for_purge_its_age_after_it_finished() {
    let d = a_cancelled();
    assert_eq!(
        d.core().next_deadline(),
        Some(12 + 1_000),
        "finished at the cancel record's time"
    );
}

#[test]
fn over_the_count_the_oldest_finished_job_is_purged_at_once() {
    let mut d = a_cancelled();
    d.at(14).cancel(3, "b");
    let out = d.at(15).durable(3);
    // Two finished, one allowed: the older is purged at once.
    assert_eq!(out[1], purge(4, 15, &["a"], &[]));
}

#[test]
fn purged_ids_still_deduplicate() {
    let mut d = a_purged_b_cancelled();
    assert_eq!(d.core().job("a"), None);
    assert_eq!(
        d.at(17).enqueue(4, vec![spec("a")]),
        vec![ok(4, &[("a", true)])],
        "purged ids still deduplicate"
    );
}

#[test]
fn a_finished_job_is_purged_once_its_age_is_reached() {
    let mut d = a_purged_b_cancelled();
    assert_eq!(d.at(15 + 1_000).tick(), vec![purge(5, 1_015, &["b"], &[])]);
    d.at(1_016).durable(5);
    assert_eq!(d.core().stats().remembered_ids, 2);
}

/// Finished jobs purged at once; purged ids remembered 5,000 ms, at most
/// one; no workers. `a` and `b` durable at t=10, `a` cancelled at t=10.
fn remembering_one() -> (Driver, Vec<Effect>) {
    let mut c = no_workers();
    c.retention = Retention {
        finished_age_ms: 0,
        finished_count_max: 10,
    };
    c.dedup.window_ms = 5_000;
    c.dedup.ids_max = 1;
    let mut d = Driver::new(c);
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.durable(1);
    d.cancel(2, "a");
    let out = d.durable(2);
    (d, out)
}

/// [`remembering_one`], `a` purged, then `b` cancelled at t=11 and purged
/// durably (forgetting `a`).
fn a_forgotten_b_remembered() -> Driver {
    let (mut d, _) = remembering_one();
    d.durable(3);
    d.at(11).cancel(3, "b");
    d.durable(4);
    d.durable(5);
    d
}

#[test]
fn with_no_retention_age_a_finished_job_is_purged_at_once() {
    let (_, out) = remembering_one();
    assert_eq!(out[1], purge(3, 10, &["a"], &[]));
}

#[test]
fn the_cap_on_remembered_ids_forgets_the_oldest_early_and_counts_it() {
    let (mut d, _) = remembering_one();
    d.durable(3);
    d.at(11).cancel(3, "b");
    let out = d.durable(4);
    assert_eq!(
        out[1],
        purge(5, 11, &["b"], &["a"]),
        "the cap forgets `a` early"
    );
    d.durable(5);
    assert_eq!(d.core().stats().totals.dedup_early_expiries, 1);
}

/// At the cap is not over it: the one remembered id waits for its window
/// (a deadline of now would have a driver tick in a loop, forgetting nothing).
#[test]
fn remembered_ids_at_the_cap_wait_for_their_window() {
    let d = a_forgotten_b_remembered();
    assert_eq!(d.core().stats().remembered_ids, 1);
    assert_eq!(d.core().next_deadline(), Some(11 + 5_000));
}

#[test]
fn the_cap_forgets_only_as_many_ids_as_pass_it() {
    let mut c = no_workers();
    c.retention.finished_age_ms = 0;
    c.dedup.window_ms = 5_000;
    c.dedup.ids_max = 2;
    let mut d = Driver::new(c);
    d.at(10).enqueue(1, vec![spec("a"), spec("b"), spec("c")]);
    d.durable(1);
    d.cancel(2, "a");
    d.cancel(3, "b");
    d.sync_all();
    d.sync_all();
    assert_eq!(d.core().stats().remembered_ids, 2, "a and b: at the cap");
    d.at(11).cancel(4, "c");
    let out = d.sync_all();
    assert!(out.contains(&purge(6, 11, &["c"], &["a"])), "{out:?}");
    d.sync_all();
    let st = d.core().stats();
    assert_eq!((st.remembered_ids, st.totals.dedup_early_expiries), (2, 1));
}

#[test]
fn a_remembered_id_is_forgotten_after_the_window() {
    let mut d = a_forgotten_b_remembered();
    assert_eq!(d.at(5_011).tick(), vec![purge(6, 5_011, &[], &["b"])]);
}

#[test]
fn a_forgotten_id_is_new_again() {
    let mut d = a_forgotten_b_remembered();
    d.at(5_011).tick();
    d.durable(6);
    assert_eq!(
        d.at(5_012).enqueue(4, vec![spec("b")]).len(),
        1,
        "a forgotten id is new again"
    );
}
