//! Leases (`core/src/machine/leases.rs`): a lease counts from `Started`;
//! when it expires the attempt is aborted and fails.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Outcome, UnixMillis};
use common::*;

/// The lease of `a`'s attempt as the status page and the job's view show it.
fn lease(d: &Driver) -> (Option<UnixMillis>, Option<Option<UnixMillis>>) {
    let st = d.core().status();
    assert_eq!(st.in_flight.len(), 1);
    let view = d.core().job("a").map(|j| j.lease_until);
    (st.in_flight[0].lease_until, view)
}

/// `a` attempt 1 handed out, waiting for a worker until t=50,000.
fn waiting_long() -> Driver {
    let mut d = with_one_job();
    assert_eq!(d.at(12).durable(2), vec![execute("a", 1)]);
    d
}

#[test]
fn an_attempt_waiting_for_a_worker_has_no_deadline() {
    let mut d = waiting_long();
    // Dispatched ahead of a free worker: it may wait any time.
    assert_eq!(d.at(50_000).tick(), vec![]);
    assert_eq!(d.core().next_deadline(), None);
    assert_eq!(lease(&d), (None, Some(None)));
}

#[test]
fn a_start_reported_for_another_attempt_is_stale() {
    let mut d = waiting_long();
    d.at(50_000).started("a", 2);
    assert_eq!(lease(&d), (None, Some(None)));
}

#[test]
fn the_lease_counts_from_the_start() {
    let mut d = waiting_long();
    d.at(50_000).started("a", 1);
    assert_eq!(lease(&d), (Some(50_110), Some(Some(50_110))));
}

#[test]
fn a_second_start_does_not_move_the_deadline() {
    let mut d = waiting_long();
    d.at(50_000).started("a", 1);
    d.at(50_100).started("a", 1);
    assert_eq!(d.core().next_deadline(), Some(50_110));
    assert_eq!(d.at(50_109).tick(), vec![]);
    let retry_at = 50_110 + backoff("a", 1);
    let expired = "lease expired: no outcome within 110 ms";
    assert_eq!(
        d.at(50_110).tick(),
        vec![
            abort("a", 1),
            fail(3, 50_110, "a", 1, expired, Some(retry_at))
        ]
    );
}

/// `a` attempt 1 started at t=12 and its lease expired at t=122.
fn expired() -> Driver {
    let mut d = with_one_attempt();
    d.at(12).started("a", 1);
    d.at(122).tick();
    d
}

#[test]
fn an_expired_lease_aborts_the_attempt_and_fails_it() {
    let mut d = with_one_attempt();
    // The lease counts from the start, not from the dispatch.
    assert_eq!(d.core().next_deadline(), None);
    d.at(12).started("a", 1);
    assert_eq!(d.core().next_deadline(), Some(122));
    assert_eq!(d.at(121).tick(), vec![]);
    let expired = "lease expired: no outcome within 110 ms";
    assert_eq!(
        d.at(122).tick(),
        vec![
            abort("a", 1),
            fail(3, 122, "a", 1, expired, Some(122 + backoff("a", 1))),
        ]
    );
}

#[test]
fn the_late_outcome_of_an_aborted_attempt_is_ignored() {
    let mut d = expired();
    assert_eq!(d.at(122).outcome("a", 1, Outcome::Succeeded), vec![]);
}

/// Once the log takes records again, an expiry it refused is proposed
/// again: the attempt is held by nobody now, so nothing is aborted.
#[test]
fn an_expiry_the_log_refused_is_proposed_again() {
    let mut d = waiting_long();
    d.at(50_000).started("a", 1);
    d.at(50_110).tick();
    assert_eq!(d.at(50_111).append_failed(3, "no space"), vec![]);
    assert_eq!(d.core().next_deadline(), Some(51_111), "after the pause");
    let expired = "lease expired: no outcome within 110 ms";
    let retry_at = 51_111 + backoff("a", 1);
    assert_eq!(
        d.at(51_111).tick(),
        vec![fail(3, 51_111, "a", 1, expired, Some(retry_at))]
    );
}
