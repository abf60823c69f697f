//! Admission (`core/src/machine/admission.rs`): an enqueue is acknowledged
//! only once durable, deduplicated by id, and refused whole with a reason
//! past any limit. One scenario per test, exact effects.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Config, JobSpec, JobState, Limits, Rejection};
use common::*;

#[test]
fn enqueue_is_acknowledged_only_after_durable_then_dispatched() {
    let mut d = Driver::new(config());
    assert_eq!(
        d.at(10).enqueue(1, vec![spec("a")]),
        vec![enqueue(1, 10, &["a"])]
    );
    assert_eq!(d.core().job("a"), None, "not visible before durable");
    assert_eq!(
        d.at(11).durable(1),
        vec![ok(1, &[("a", false)]), dispatch(2, 11, "a", 1)]
    );
    assert_eq!(d.core().job("a").unwrap().state, JobState::Pending);
    assert_eq!(d.at(12).durable(2), vec![execute("a", 1)]);
    assert_eq!(d.core().job("a").unwrap().state, JobState::InFlight);
}

#[test]
fn each_enqueue_is_acknowledged_when_its_own_record_is_durable() {
    let mut d = Driver::new(no_workers());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.enqueue(2, vec![spec("b")]);
    assert_eq!(
        d.at(11).durable(1),
        vec![ok(1, &[("a", false)])],
        "the second record is not durable yet"
    );
    assert_eq!(d.at(12).durable(2), vec![ok(2, &[("b", false)])]);
}

#[test]
fn duplicate_before_durable_waits_for_the_original() {
    let mut d = Driver::new(config());
    d.at(10).enqueue(1, vec![spec("a")]);
    assert_eq!(
        d.enqueue(2, vec![spec("a")]),
        vec![],
        "no second record, no early reply"
    );
    assert_eq!(
        d.at(11).durable(1),
        vec![
            ok(1, &[("a", false)]),
            ok(2, &[("a", true)]),
            dispatch(2, 11, "a", 1)
        ]
    );
}

#[test]
fn duplicate_after_durable_answers_at_once() {
    let mut d = with_one_job();
    assert_eq!(
        d.at(12).enqueue(2, vec![spec("a")]),
        vec![ok(2, &[("a", true)])]
    );
}

#[test]
fn a_batch_mixing_new_and_known_ids_adds_only_the_new() {
    let mut d = with_one_job();
    let out = d.at(12).enqueue(2, vec![spec("a"), spec("b")]);
    assert_eq!(out, vec![enqueue(3, 12, &["b"])]);
    assert_eq!(
        d.at(13).durable(3),
        vec![execute("a", 1), ok(2, &[("a", true), ("b", false)])]
    );
}

#[test]
fn assigned_ids_are_the_jobs_numbers() {
    let mut d = Driver::new(config());
    d.at(10).enqueue(
        1,
        vec![JobSpec::new(payload("1")), JobSpec::new(payload("2"))],
    );
    let out = d.durable(1);
    assert_eq!(out[0], ok(1, &[("1", false), ("2", false)]));
}

#[test]
fn a_client_id_of_digits_only_or_with_the_reserved_prefix_is_refused() {
    let mut d = Driver::new(config());
    for (i, bad) in ["5", "~5"].into_iter().enumerate() {
        let r = rejection(d.at(10).enqueue(i as u64, vec![spec("ok"), spec(bad)]));
        let Rejection::Invalid {
            index: Some(1),
            field,
            reason,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(field, "id");
        assert!(
            reason.contains("beaver's own job numbers") || reason.contains("reserved"),
            "{reason}"
        );
    }
    assert_eq!(d.core().next_lsn(), 1, "nothing was proposed");
}

/// A driver of a core rebuilt from one old record enqueueing `mail` (job
/// 1) and a job whose client id is `digits` (job 2), allowed before.
fn with_an_old_digit_id(digits: &str) -> Driver {
    let mut log_core = beaver_core::Core::new(config());
    let old = beaver_core::Record {
        lsn: 1,
        at: 10,
        op: beaver_core::Op::Enqueue {
            jobs: vec![new_job("mail", 10), new_job(digits, 10)],
        },
    };
    log_core.apply_owned(old).unwrap();
    log_core.finish_rebuild();
    Driver::with_core(log_core)
}

#[test]
fn a_number_an_old_client_id_spells_is_assigned_with_the_prefix() {
    // `3` was a client's id (allowed before), so job 3 is `~3`.
    let mut d = with_an_old_digit_id("3");
    d.at(11).enqueue(
        1,
        vec![JobSpec::new(payload("1")), JobSpec::new(payload("1"))],
    );
    let out = d.durable(2);
    assert_eq!(out[0], ok(1, &[("~3", false), ("4", false)]));
    assert_eq!(
        d.core().job("3").unwrap().seq,
        2,
        "the old job keeps its id"
    );
    assert_eq!(d.core().job("~3").unwrap().seq, 3);
}

#[test]
fn a_number_an_old_client_id_spells_ahead_of_the_sequence_is_still_prefixed() {
    // `5` was a client's id while the sequence was at 2: job 5, three
    // jobs later, is `~5`.
    let mut d = with_an_old_digit_id("5");
    let four = (0..4).map(|_| JobSpec::new(payload("1"))).collect();
    d.at(11).enqueue(1, four);
    let out = d.durable(2);
    let want = [("3", false), ("4", false), ("~5", false), ("6", false)];
    assert_eq!(out[0], ok(1, &want));
    assert_eq!(
        d.core().job("5").unwrap().seq,
        2,
        "the old job keeps its id"
    );
}

/// A core whose limits are small: 2 unfinished jobs, 8-byte payloads,
/// 3 jobs and 12 bytes per batch.
fn limited() -> Driver {
    let limits = Limits {
        pending_jobs_max: 2,
        payload_bytes_max: 8,
        batch_jobs_max: 3,
        batch_bytes_max: 12,
        pending_payload_bytes_max: 100,
        ..Limits::default()
    };
    Driver::new(Config { limits, ..config() })
}

/// Enqueues `jobs` into `d` and returns the rejection, checking that no
/// rejected batch left a record.
fn refused(d: &mut Driver, jobs: Vec<JobSpec>) -> Rejection {
    let r = rejection(d.at(1).enqueue(1, jobs));
    assert_eq!(d.core().next_lsn(), 1, "no rejected batch left a record");
    r
}

#[test]
fn an_empty_batch_is_invalid() {
    let r = refused(&mut limited(), vec![]);
    assert!(
        matches!(&r, Rejection::Invalid { field, .. } if field == "jobs"),
        "{r:?}"
    );
}

#[test]
fn a_batch_of_more_jobs_than_the_limit_is_too_large() {
    let r = refused(
        &mut limited(),
        vec![spec("a"), spec("b"), spec("c"), spec("d")],
    );
    assert!(
        matches!(&r, Rejection::TooLarge { index: None, reason } if reason.contains("4 jobs")),
        "{r:?}"
    );
}

#[test]
fn a_payload_over_the_limit_is_too_large_and_names_its_job() {
    let big = JobSpec::new(payload("\"123456789\""));
    let r = refused(&mut limited(), vec![spec("a"), big]);
    assert!(
        matches!(&r, Rejection::TooLarge { index: Some(1), reason } if reason.contains("11 bytes")),
        "{r:?}"
    );
}

#[test]
fn a_payload_of_exactly_the_limit_is_taken() {
    let mut d = limited();
    let eight = JobSpec::new(payload("\"123456\""));
    assert_eq!(eight.payload.len(), 8);
    d.at(1).enqueue(1, vec![eight]);
    assert_eq!(d.core().next_lsn(), 2, "taken: one record proposed");
}

#[test]
fn a_batch_of_more_payload_bytes_than_the_limit_is_too_large() {
    let jobs = vec![
        JobSpec::new(payload("1234567")),
        JobSpec::new(payload("1234567")),
    ];
    let r = refused(&mut limited(), jobs);
    assert!(
        matches!(&r, Rejection::TooLarge { index: None, reason } if reason.contains("14 bytes")),
        "{r:?}"
    );
}

#[test]
fn zero_attempts_are_invalid() {
    let job = JobSpec {
        max_attempts: Some(0),
        ..spec("a")
    };
    let r = refused(&mut limited(), vec![job]);
    assert!(
        matches!(&r, Rejection::Invalid { index: Some(0), field, .. } if field == "max_attempts"),
        "{r:?}"
    );
}

#[test]
fn more_attempts_than_the_limit_are_invalid_but_unlimited_ones_are_taken() {
    let attempts = |n: u32| JobSpec {
        max_attempts: Some(n),
        ..spec("a")
    };
    let over = Limits::default().attempts_max + 1;
    let r = refused(&mut limited(), vec![attempts(over)]);
    assert!(
        matches!(&r, Rejection::Invalid { index: Some(0), field, reason }
            if field == "max_attempts" && reason.contains("must be 1 to 100")),
        "{r:?}"
    );
    let r = refused(
        &mut limited(),
        vec![attempts(beaver_core::UNLIMITED_ATTEMPTS - 1)],
    );
    assert!(
        matches!(&r, Rejection::Invalid { field, .. } if field == "max_attempts"),
        "{r:?}"
    );
    let mut d = limited();
    d.at(1)
        .enqueue(1, vec![attempts(beaver_core::UNLIMITED_ATTEMPTS)]);
    d.at(2).durable(1);
    let job = d.core().job("a").expect("taken");
    assert_eq!(job.max_attempts, beaver_core::UNLIMITED_ATTEMPTS);
    let mut d = limited();
    d.at(1).enqueue(1, vec![attempts(over - 1)]);
    d.at(2).durable(1);
    assert_eq!(d.core().job("a").expect("taken").max_attempts, 100);
}

#[test]
fn new_queues_count_with_the_existing_ones_toward_the_queue_limit() {
    let mut d = Driver::new(Config {
        limits: Limits {
            queues_max: 3,
            ..Limits::default()
        },
        ..config()
    });
    let in_queue = |i: &str, q: &str| JobSpec {
        queue: Some(beaver_core::QueueName::parse(q).unwrap()),
        ..spec(i)
    };
    d.at(1).enqueue(1, vec![in_queue("a", "qa")]);
    d.at(2).durable(1);
    assert_eq!(d.core().status().queues.len(), 1, "only qa");
    // One queue there and three new ones pass the limit of 3 (with the
    // two counts multiplied instead, they would not).
    let new = |n: u32| -> Vec<JobSpec> {
        (0..n)
            .map(|i| in_queue(&format!("n{i}"), &format!("new{i}")))
            .collect()
    };
    let before = d.core().next_lsn();
    let r = rejection(d.at(3).enqueue(2, new(3)));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("queue")),
        "{r:?}"
    );
    assert_eq!(d.core().next_lsn(), before, "nothing proposed");
    d.at(4).enqueue(3, new(2));
    assert_eq!(d.core().next_lsn(), before + 1, "two new queues fit");
}

#[test]
fn a_zero_timeout_is_invalid() {
    let job = JobSpec {
        timeout_ms: Some(0),
        ..spec("a")
    };
    let r = refused(&mut limited(), vec![job]);
    assert!(
        matches!(&r, Rejection::Invalid { field, .. } if field == "timeout_ms"),
        "{r:?}"
    );
}

#[test]
fn a_delay_or_timeout_past_its_limit_is_invalid_and_one_at_it_is_taken() {
    let l = Limits::default();
    let (delay_max, timeout_max) = (l.delay_ms_max, l.timeout_ms_max);
    for (field, past) in [
        (
            "delay_ms",
            JobSpec {
                delay_ms: delay_max + 1,
                ..spec("a")
            },
        ),
        (
            "timeout_ms",
            JobSpec {
                timeout_ms: Some(timeout_max + 1),
                ..spec("a")
            },
        ),
    ] {
        let r = refused(&mut limited(), vec![past]);
        assert!(
            matches!(&r, Rejection::Invalid { field: f, .. } if f == field),
            "{r:?}"
        );
    }
    let at = JobSpec {
        delay_ms: delay_max,
        timeout_ms: Some(timeout_max),
        ..spec("a")
    };
    let mut d = limited();
    d.at(1).enqueue(1, vec![at]);
    assert_eq!(d.core().next_lsn(), 2, "taken: one record proposed");
}

#[test]
fn an_id_given_twice_in_one_batch_is_invalid() {
    let r = refused(&mut limited(), vec![spec("a"), spec("a")]);
    assert!(
        matches!(&r, Rejection::Invalid { index: Some(1), field, reason } if field == "id" && reason.contains("twice")),
        "{r:?}"
    );
}

#[test]
fn more_unfinished_jobs_than_the_limit_are_refused_as_busy() {
    let r = refused(&mut limited(), vec![spec("a"), spec("b"), spec("c")]);
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("limit is 2")),
        "{r:?}"
    );
}

/// A core with `limits` and no pool workers (jobs stay where admission
/// put them).
fn without_workers(limits: Limits) -> Driver {
    Driver::new(Config {
        limits,
        ..no_workers()
    })
}

#[test]
fn an_applied_enqueue_counts_toward_the_unfinished_limit_once() {
    let mut d = without_workers(Limits {
        pending_jobs_max: 2,
        ..Limits::default()
    });
    d.at(1).enqueue(1, vec![spec("a")]);
    d.durable(1);
    assert_eq!(d.core().stats().totals.enqueued, 1);
    d.enqueue(2, vec![spec("b")]);
    assert_eq!(d.core().next_lsn(), 3, "a and b: two unfinished, the limit");
}

#[test]
fn an_applied_enqueue_counts_its_payload_bytes_toward_the_limit_once() {
    let mut d = without_workers(Limits {
        pending_payload_bytes_max: 10,
        ..Limits::default()
    });
    let job = |i: &str| JobSpec {
        payload: payload("12345"),
        ..spec(i)
    };
    d.at(1).enqueue(1, vec![job("a")]);
    d.durable(1);
    d.enqueue(2, vec![job("b")]);
    assert_eq!(d.core().next_lsn(), 3, "a and b: 10 bytes, the limit");
}

#[test]
fn payload_bytes_up_to_exactly_the_unfinished_limit_are_taken() {
    let mut d = without_workers(Limits {
        pending_payload_bytes_max: 10,
        ..Limits::default()
    });
    let job = |i: &str, json: &str| JobSpec {
        payload: payload(json),
        ..spec(i)
    };
    d.at(1)
        .enqueue(1, vec![job("a", "12345678"), job("b", "12")]);
    assert_eq!(d.core().next_lsn(), 2, "10 bytes: taken");
    d.durable(1);
    let r = rejection(d.enqueue(2, vec![job("c", "1")]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("10 payload bytes")),
        "{r:?}"
    );
}

#[test]
fn jobs_in_flight_count_toward_the_unfinished_limit() {
    let mut d = limited();
    d.at(1).enqueue(1, vec![spec("a"), spec("b")]);
    d.sync_all();
    d.sync_all();
    assert_eq!(d.core().job("a").map(|j| j.state), Some(JobState::InFlight));
    let r = rejection(d.enqueue(2, vec![spec("c")]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("holds 2 unfinished jobs")),
        "{r:?}"
    );
}

/// No workers; unfinished jobs may hold 10 payload bytes in all.
fn ten_payload_bytes() -> Driver {
    let limits = Limits {
        pending_payload_bytes_max: 10,
        ..Limits::default()
    };
    Driver::new(Config {
        limits,
        ..no_workers()
    })
}

#[test]
fn payload_bytes_on_their_way_to_the_log_count_toward_their_limit() {
    let six_bytes = |i: &str| JobSpec::new(payload("\"abcd\"")).with_id(id(i));
    let mut d = ten_payload_bytes();
    d.at(1).enqueue(1, vec![six_bytes("a")]);
    let r = rejection(d.enqueue(2, vec![six_bytes("b")]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("hold 6 payload bytes")),
        "{r:?}"
    );
    // On an empty queue, one batch over the limit alone.
    let twelve_bytes = JobSpec::new(payload("\"abcdefghij\"")).with_id(id("c"));
    let r = rejection(ten_payload_bytes().at(1).enqueue(1, vec![twelve_bytes]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("hold 0 payload bytes")),
        "{r:?}"
    );
}

#[test]
fn a_full_disk_refuses_new_jobs_until_it_has_room_again() {
    let mut d = limited();
    d.at(1).disk_full(true);
    let r = refused(&mut d, vec![spec("a")]);
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("disk is full")),
        "{r:?}"
    );
    d.disk_full(false);
    assert_eq!(d.enqueue(1, vec![spec("a")]).len(), 1);
}
