//! Every record the core proposes fits the log's record limit (the driver
//! checks each one): enqueues too large are refused, requeues and purges
//! are split across records.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::record_size::RECORD_BYTES_MIN;
use beaver_core::testing::Driver;
use beaver_core::{
    Config, Effect, JobSpec, Limits, Outcome, QueueName, Record, Rejection, Reply, RequestId,
    RequeueTarget, Retention,
};
use common::*;

/// A log that holds the smallest records allowed; 64 workers, one attempt
/// per job, finished jobs kept 1,000 s, purged ids not remembered.
fn small_log() -> Driver {
    Driver::new(Config {
        workers: 64,
        default_max_attempts: 1,
        retention: Retention {
            finished_age_ms: 1_000_000,
            finished_count_max: 1_000,
        },
        dedup: beaver_core::Dedup {
            window_ms: 1_000_000,
            ids_max: 0,
        },
        limits: Limits {
            record_bytes_max: RECORD_BYTES_MIN,
            ..Limits::default()
        },
        ..config()
    })
}

/// A job whose payload is a string of `n` bytes.
fn big(n: usize) -> JobSpec {
    JobSpec::new(payload(&format!("\"{}\"", "x".repeat(n))))
}

/// Jobs `from..to` with 120-byte ids.
fn long_ids(from: usize, to: usize) -> Vec<JobSpec> {
    (from..to).map(|i| spec(&format!("{i:j>120}"))).collect()
}

fn fail_every_attempt(_: &beaver_core::Execution) -> Option<Outcome> {
    Some(Outcome::Failed("x".into()))
}

/// [`small_log`] holding 41 dead jobs, 40 of them with 120-byte ids.
fn forty_one_dead_jobs() -> Driver {
    let mut d = small_log();
    d.at(10).enqueue(2, vec![big(1_800)]);
    d.drive_until_quiet(fail_every_attempt);
    for (req, from) in (4..).zip((0..40).step_by(8)) {
        d.at(10).enqueue(req, long_ids(from, from + 8));
        d.at(11).drive_until_quiet(fail_every_attempt);
    }
    assert_eq!(d.core().stats().jobs.dead, 41);
    d
}

fn fits(r: &Record) {
    let len = beaver_core::encode_record(r).len() as u64;
    assert!(
        len <= RECORD_BYTES_MIN,
        "a {len}-byte {} record",
        r.op.name()
    );
}

#[test]
fn an_enqueue_too_large_for_a_log_record_is_refused_naming_the_setting() {
    let mut d = small_log();
    let out = d.at(10).enqueue(1, vec![big(1_990)]);
    let [
        Effect::Reply {
            reply: Reply::Enqueued(Err(Rejection::TooLarge { reason, .. })),
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert!(reason.contains("segment_bytes"), "{reason}");
    let out = d.enqueue(2, vec![big(1_800)]);
    assert!(matches!(&out[..], [Effect::Append(_)]), "{out:?}");
    d.drive_until_quiet(fail_every_attempt);
    assert!(
        matches!(&d.enqueue(3, long_ids(0, 20))[..], [Effect::Reply { .. }]),
        "twenty 120-byte ids make a record too large"
    );
}

#[test]
fn requeueing_many_dead_jobs_takes_several_records_and_the_answer_counts_all() {
    let mut d = forty_one_dead_jobs();
    let out = d.at(12).requeue(99, RequeueTarget::AllDead);
    let requeues = appended(&out);
    assert!(requeues.len() > 1, "{} requeue record", requeues.len());
    // Each record but the last is full: one more 120-byte id would not fit.
    let one_more = 120 + 10;
    for r in &requeues[..requeues.len() - 1] {
        let bound = r.op.encoded_bytes_max();
        assert!(
            bound <= RECORD_BYTES_MIN && bound + one_more > RECORD_BYTES_MIN,
            "a requeue record of {bound} bytes at most has room for another id"
        );
    }
    let out = d.durable(requeues.last().unwrap().lsn);
    assert!(
        out.contains(&Effect::Reply {
            req: RequestId(99),
            reply: Reply::Requeued(Ok(41))
        }),
        "{out:?}"
    );
}

#[test]
fn dead_jobs_are_purged_and_forgotten_in_records_that_each_fit() {
    let mut d = forty_one_dead_jobs();
    d.at(1_000_100).tick();
    d.drive_until_quiet(fail_every_attempt);
    assert_eq!(d.core().stats().jobs.dead, 0, "all purged");
    assert_eq!(d.core().stats().remembered_ids, 0, "all forgotten");
    let purges = d.log().iter().filter(|r| r.op.name() == "purge").count();
    assert!(purges > 2, "{purges} purge records");
    d.log().iter().for_each(fits);
}

#[test]
fn a_purge_record_of_finished_jobs_names_as_many_as_fit() {
    let mut d = forty_one_dead_jobs();
    let out = d.at(1_000_100).tick();
    let [Effect::Append(r)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(r.op.name(), "purge");
    let bound = r.op.encoded_bytes_max();
    let one_more = 120 + 10; // a 120-byte id and its length
    assert!(
        bound <= RECORD_BYTES_MIN && bound + one_more > RECORD_BYTES_MIN,
        "a purge record of {bound} bytes at most has room for another id"
    );
}

#[test]
fn remembered_ids_are_forgotten_in_records_that_each_hold_as_many_as_fit() {
    // 40 dead jobs with 120-byte ids, purged at once and remembered for
    // 1,000 ms; then forgotten.
    let mut d = Driver::new(Config {
        workers: 64,
        default_max_attempts: 1,
        retention: Retention {
            finished_age_ms: 0,
            finished_count_max: 1_000,
        },
        dedup: beaver_core::Dedup {
            window_ms: 1_000,
            ids_max: 1_000,
        },
        limits: Limits {
            record_bytes_max: RECORD_BYTES_MIN,
            ..Limits::default()
        },
        ..config()
    });
    for (req, from) in (1..).zip((0..40).step_by(8)) {
        d.at(10).enqueue(req, long_ids(from, from + 8));
        d.at(11).drive_until_quiet(fail_every_attempt);
    }
    assert_eq!(d.core().stats().remembered_ids, 40);
    let out = d.at(2_000).tick();
    let [Effect::Append(r)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let bound = r.op.encoded_bytes_max();
    let one_more = 120 + 10;
    assert!(
        bound <= RECORD_BYTES_MIN && bound + one_more > RECORD_BYTES_MIN,
        "a purge record of {bound} bytes at most forgets too few: {:?}",
        r.op
    );
    d.drive_until_quiet(fail_every_attempt);
    assert_eq!(d.core().stats().remembered_ids, 0, "all forgotten");
    d.log().iter().for_each(fits);
}

/// A record limit that 16 ids of 120 bytes fill exactly, in a purge.
fn sixteen_long_ids_fit_exactly() -> u64 {
    let empty = beaver_core::Op::Purge {
        jobs: Vec::new(),
        forget: Vec::new(),
    };
    empty.encoded_bytes_max() + 16 * (120 + 10)
}

/// 40 dead jobs with 120-byte ids, in a log whose records 16 such ids fill
/// exactly; finished jobs kept `finished_age_ms`, purged ids remembered
/// 1,000 ms.
fn forty_dead_in_an_exact_log(finished_age_ms: u64) -> Driver {
    let mut d = Driver::new(Config {
        workers: 64,
        default_max_attempts: 1,
        retention: Retention {
            finished_age_ms,
            finished_count_max: 1_000,
        },
        dedup: beaver_core::Dedup {
            window_ms: 1_000,
            ids_max: 1_000,
        },
        limits: Limits {
            record_bytes_max: sixteen_long_ids_fit_exactly(),
            ..Limits::default()
        },
        ..config()
    });
    for (req, from) in (1..).zip((0..40).step_by(8)) {
        d.at(10).enqueue(req, long_ids(from, from + 8));
        d.at(11).drive_until_quiet(fail_every_attempt);
    }
    d
}

/// The ids a purge record names: (purged, forgotten).
fn purged(out: &[Effect]) -> (usize, usize) {
    match out {
        [Effect::Append(r)] => match &r.op {
            beaver_core::Op::Purge { jobs, forget } => (jobs.len(), forget.len()),
            other => panic!("expected a purge record: {other:?}"),
        },
        other => panic!("expected one record: {other:?}"),
    }
}

#[test]
fn purge_records_fill_the_limit_to_the_last_byte() {
    let mut d = forty_dead_in_an_exact_log(1_000_000);
    assert_eq!(d.core().stats().jobs.dead, 40);
    assert_eq!(purged(&d.at(1_000_100).tick()), (16, 0), "purged");
    let mut d = forty_dead_in_an_exact_log(0);
    assert_eq!(d.core().stats().remembered_ids, 40);
    assert_eq!(purged(&d.at(2_000).tick()), (0, 16), "forgotten");
}

#[test]
fn requeue_records_fill_the_limit_to_the_last_byte() {
    let mut d = forty_dead_in_an_exact_log(1_000_000);
    let out = d.at(12).requeue(99, RequeueTarget::AllDead);
    let sizes: Vec<usize> = appended(&out)
        .iter()
        .map(|r| match &r.op {
            beaver_core::Op::Requeue { ids } => ids.len(),
            other => panic!("expected requeue records: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, [16, 16, 8]);
}

#[test]
fn a_log_that_holds_enqueue_bytes_max_takes_every_batch_the_limits_allow() {
    let mut limits = Limits {
        batch_jobs_max: 5,
        payload_bytes_max: 300,
        batch_bytes_max: 1_000,
        ..Limits::default()
    };
    limits.record_bytes_max = beaver_core::record_size::enqueue_bytes_max(&limits);
    let mut d = Driver::new(Config { limits, ..config() });
    // The worst batch: most jobs, longest ids and queue names, most bytes.
    let jobs = (0..5)
        .map(|i| {
            let mut j = JobSpec::new(payload(&format!("\"{}\"", "x".repeat(198))))
                .with_id(id(&format!("{i:j>128}")));
            j.queue = Some(QueueName::parse(&format!("{i:q>64}")).unwrap());
            j
        })
        .collect();
    let out = d.at(10).enqueue(1, jobs);
    let [Effect::Append(r)] = &out[..] else {
        panic!("{out:?}")
    };
    let len = beaver_core::encode_record(r).len() as u64;
    assert!(len <= limits.record_bytes_max, "{len}");
}
