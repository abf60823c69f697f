//! Recovery (`core/src/machine/recovery.rs`): a rebuilt core equals the
//! one that applied the same records; interrupted attempts count; records
//! that do not fit the state are refused.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::Driver;
use beaver_core::{Core, JobId, JobState, NewJob, Op, Outcome, Record};
use common::*;

fn enqueue_record(lsn: u64, jobs: Vec<NewJob>) -> Record {
    Record {
        lsn,
        at: 10,
        op: Op::Enqueue { jobs },
    }
}

/// Two enqueue records of 300 jobs each, every id assigned.
fn six_hundred_assigned() -> Vec<Record> {
    let assigned = |seq: u64| NewJob {
        id: JobId::assigned(seq, false),
        ..new_job("x", 10)
    };
    vec![
        enqueue_record(1, (1..=300).map(assigned).collect()),
        enqueue_record(2, (301..=600).map(assigned).collect()),
    ]
}

/// A core rebuilt from `log` record by record, as the server's replay does.
fn rebuilt(log: &[Record]) -> Core {
    let mut q = Core::new(config());
    for r in log {
        q.apply_owned(r.clone()).unwrap();
    }
    q
}

#[test]
fn a_rebuild_finds_its_ids_before_indexing_them_at_its_end() {
    let log = six_hundred_assigned();
    let mut q = rebuilt(&log);
    assert_eq!(
        q.ids_awaiting_index(),
        600,
        "assigned ids wait for one pass"
    );
    assert_eq!(q.job("457").map(|j| j.state), Some(JobState::Pending));
    assert!(q.job("601").is_none());
    q.check_invariants().unwrap();
    q.finish_rebuild();
    assert_eq!(q.ids_awaiting_index(), 0);
    assert_eq!(q.job("457").map(|j| j.state), Some(JobState::Pending));
    assert_eq!(
        q.snapshot(),
        Core::recover(config(), None, log.clone())
            .unwrap()
            .snapshot()
    );
}

#[test]
fn without_finish_rebuild_the_first_step_indexes_the_ids() {
    let mut d = Driver::with_core(rebuilt(&six_hundred_assigned()));
    d.at(20).tick();
    assert_eq!(d.core().ids_awaiting_index(), 0);
    d.core().check_invariants().unwrap();
}

#[test]
fn a_record_naming_a_client_id_indexes_what_waits_and_refuses_a_duplicate() {
    let mut q = rebuilt(&six_hundred_assigned());
    q.apply_owned(enqueue_record(3, vec![new_job("mine", 10)]))
        .unwrap();
    assert_eq!(q.ids_awaiting_index(), 1, "only the new record's job waits");
    let mut dup = new_job("mine", 10);
    dup.id = id("mine");
    let e = q.apply_owned(enqueue_record(4, vec![dup])).unwrap_err();
    assert!(e.reason.contains("job mine is enqueued twice"), "{e}");
    q.check_invariants().unwrap();
}

/// Found by the `record` fuzz target: an id of digits only is an assigned id
/// at its own sequence number, and the same spelling later in the record is
/// a client's id; the two must not both be taken in.
#[test]
fn a_record_naming_a_digit_id_twice_is_refused() {
    let jobs = vec![
        new_job("order-1", 10),
        new_job("2", 10),
        new_job("report:7", 10),
        new_job("2", 10),
    ];
    let Err(e) = Core::recover(config(), None, vec![enqueue_record(1, jobs)]) else {
        panic!("a record naming job 2 twice was taken in");
    };
    assert!(e.reason.contains("job 2 is enqueued twice"), "{e}");
    let mut q = Core::new(config());
    let jobs = vec![new_job("1", 10), new_job("1", 10)];
    let e = q.apply_owned(enqueue_record(1, jobs)).unwrap_err();
    assert!(e.reason.contains("job 1 is enqueued twice"), "{e}");
    q.check_invariants().unwrap();
    assert!(
        q.job("1").is_none(),
        "nothing of the refused record is applied"
    );
}

/// A client's id (not of digits, so not an assigned id anywhere) named
/// twice by one enqueue record: only the record's own list of ids can tell.
#[test]
fn a_record_naming_a_client_id_twice_is_refused() {
    let mut q = Core::new(config());
    let jobs = vec![new_job("a", 10), new_job("b", 10), new_job("a", 10)];
    let e = q.apply_owned(enqueue_record(1, jobs)).unwrap_err();
    assert!(e.reason.contains("job a is enqueued twice"), "{e}");
    q.check_invariants().unwrap();
    assert!(
        q.job("a").is_none() && q.job("b").is_none(),
        "nothing of the refused record is applied"
    );
}

/// The log of [`with_one_attempt`]: `a` enqueued, then dispatched.
fn one_attempt_log() -> Vec<Record> {
    vec![
        enqueue_record(1, vec![new_job("a", 10)]),
        Record {
            lsn: 2,
            at: 11,
            op: Op::Dispatch {
                id: id("a"),
                attempt: 1,
                lease_until: 121,
                started: true,
            },
        },
    ]
}

/// [`one_attempt_log`], then `a`'s attempt failing for good: `a` is dead.
fn a_dead_log() -> Vec<Record> {
    let mut log = one_attempt_log();
    let op = Op::Fail {
        id: id("a"),
        attempt: 1,
        error: "x".into(),
        retry_at: None,
    };
    log.push(Record { lsn: 3, at: 12, op });
    log
}

#[test]
fn a_requeue_record_naming_a_dead_job_twice_is_refused_and_changes_nothing() {
    let mut q = Core::recover(config(), None, a_dead_log()).unwrap();
    let ids = vec![id("a"), id("a")];
    let e = q
        .apply_owned(Record {
            lsn: 4,
            at: 13,
            op: Op::Requeue { ids },
        })
        .unwrap_err();
    assert!(e.reason.contains("job a is requeued twice"), "{e}");
    assert_eq!(q.job("a").map(|j| j.state), Some(JobState::Dead));
    q.check_invariants().unwrap();
}

#[test]
fn a_purge_record_naming_a_dead_job_twice_or_a_live_one_is_refused() {
    let mut q = Core::recover(config(), None, a_dead_log()).unwrap();
    let op = Op::Purge {
        jobs: vec![id("a"), id("a")],
        forget: vec![],
    };
    let e = q.apply_owned(Record { lsn: 4, at: 13, op }).unwrap_err();
    assert!(e.reason.contains("not final, or named twice"), "{e}");
    assert_eq!(q.job("a").map(|j| j.state), Some(JobState::Dead));
    let mut q = Core::recover(config(), None, one_attempt_log()).unwrap();
    let op = Op::Purge {
        jobs: vec![id("a")],
        forget: vec![],
    };
    let e = q.apply_owned(Record { lsn: 3, at: 13, op }).unwrap_err();
    assert!(e.reason.contains("not final, or named twice"), "{e}");
    q.check_invariants().unwrap();
}

#[test]
fn a_purge_record_forgetting_an_id_not_remembered_is_refused() {
    let mut q = Core::new(config());
    let op = Op::Purge {
        jobs: vec![],
        forget: vec![id("never")],
    };
    let e = q.apply_owned(Record { lsn: 1, at: 10, op }).unwrap_err();
    assert!(e.reason.contains("id never is not remembered"), "{e}");
    assert_eq!(
        q.applied_lsn(),
        0,
        "nothing of the refused record is applied"
    );
}

fn interrupted() -> beaver_core::Effect {
    let text = "interrupted: beaver stopped while this attempt ran";
    fail(3, 30, "a", 1, text, Some(30 + backoff("a", 1)))
}

#[test]
fn recovery_gives_exactly_the_applied_state() {
    let d = with_one_attempt();
    assert_eq!(d.log(), one_attempt_log());
    let r = Core::recover(config(), None, one_attempt_log()).unwrap();
    assert_eq!(
        r.snapshot(),
        d.core().snapshot(),
        "recovery gives exactly the applied state"
    );
}

#[test]
fn recovery_fails_interrupted_attempts_so_they_count() {
    let r = Core::recover(config(), None, one_attempt_log()).unwrap();
    let mut d = Driver::with_core(r);
    assert_eq!(d.at(30).tick(), vec![interrupted()]);
}

#[test]
fn a_crash_loses_what_was_not_synced_and_interrupts_attempts() {
    let mut d = with_one_attempt();
    d.at(20).started("a", 1);
    d.enqueue(2, vec![spec("b")]);
    d.crash();
    assert_eq!(d.core().job("b"), None, "its enqueue was never durable");
    assert_eq!(d.at(30).tick(), vec![interrupted()]);
}

/// The error of recovering `a`'s enqueue followed by `op` (LSN 2).
fn refusal(op: Op) -> String {
    let bad = Record { lsn: 2, at: 11, op };
    let log = [enqueue_record(1, vec![new_job("a", 10)]), bad];
    Core::recover(config(), None, log)
        .err()
        .expect("refused")
        .to_string()
}

#[test]
fn a_dispatch_naming_the_wrong_attempt_is_refused() {
    let e = refusal(Op::Dispatch {
        id: id("a"),
        attempt: 2,
        lease_until: 99,
        started: true,
    });
    assert!(e.contains("dispatch names attempt 2"), "{e}");
}

#[test]
fn an_outcome_of_a_pending_job_is_refused() {
    let e = refusal(Op::Complete {
        id: id("a"),
        attempt: 1,
    });
    assert!(e.contains("expected in_flight"), "{e}");
}

#[test]
fn a_record_naming_an_unknown_job_is_refused() {
    let e = refusal(Op::Dispatch {
        id: id("zz"),
        attempt: 1,
        lease_until: 99,
        started: true,
    });
    assert!(e.contains("unknown"), "{e}");
}

#[test]
fn a_requeue_of_a_live_job_is_refused() {
    let e = refusal(Op::Requeue { ids: vec![id("a")] });
    assert!(e.contains("expected dead"), "{e}");
}

#[test]
fn a_retry_after_the_last_allowed_attempt_is_refused() {
    let record = |lsn, at, op| Record { lsn, at, op };
    let dispatch = |attempt| Op::Dispatch {
        id: id("a"),
        attempt,
        lease_until: 99,
        started: true,
    };
    let fail = |attempt, error: &str, retry_at| Op::Fail {
        id: id("a"),
        attempt,
        error: error.into(),
        retry_at: Some(retry_at),
    };
    let log = [
        enqueue_record(1, vec![new_job("a", 10)]),
        record(2, 11, dispatch(1)),
        record(3, 12, fail(1, "x", 20)),
        record(4, 20, dispatch(2)),
        record(5, 21, fail(2, "y", 30)),
    ];
    let e = Core::recover(config(), None, log).err().expect("refused");
    assert!(e.to_string().contains("a retry is impossible"), "{e}");
}

#[test]
fn a_crash_recovers_the_snapshot_and_the_synced_records_after_it() {
    let mut d = with_one_attempt();
    d.take_snapshot();
    d.at(20).outcome("a", 1, Outcome::Succeeded);
    d.sync_all();
    let applied = d.core().snapshot();
    d.crash();
    assert_eq!(d.core().snapshot(), applied);
    assert_eq!(d.core().job("a").unwrap().state, JobState::Completed);
}
