//! The drain forecast (`Core::drain`): the most log records the unfinished
//! jobs can still make before each is final, and the payload bytes they let
//! go. The runtime sizes its disk reserve with it, so a job with unlimited
//! attempts (beanstalkd's) must count for a bounded number of records.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::stats::Drain;
use beaver_core::testing::Driver;
use beaver_core::{Config, JobSpec, UNLIMITED_ATTEMPTS};
use common::*;

/// No pool worker (nothing is dispatched on its own), and jobs may ask for
/// unlimited attempts.
fn config_without_workers() -> Config {
    let mut c = config();
    c.workers = 0;
    c.limits.attempts_max = UNLIMITED_ATTEMPTS;
    c
}

fn job(i: &str, body: &str, attempts: u32) -> JobSpec {
    let mut s = JobSpec::new(payload(body)).with_id(id(i));
    s.max_attempts = Some(attempts);
    s
}

fn with_jobs(jobs: Vec<JobSpec>) -> Driver {
    let mut d = Driver::new(config_without_workers());
    d.at(10).enqueue(1, jobs);
    d.sync_all();
    d
}

#[test]
fn a_job_counts_three_records_per_attempt_left_and_frees_its_payload() {
    let d = with_jobs(vec![job("a", "\"12345\"", 5)]);
    let expected = Drain {
        records: 15,
        payload_bytes_freed: 7,
    };
    assert_eq!(d.core().drain(), expected);
}

#[test]
fn a_job_with_unlimited_attempts_counts_one_attempt_and_keeps_its_payload() {
    let d = with_jobs(vec![
        job("forever", "\"12345\"", UNLIMITED_ATTEMPTS),
        job("twice", "[1]", 2),
    ]);
    let expected = Drain {
        records: 3 + 6,
        payload_bytes_freed: 3,
    };
    assert_eq!(d.core().drain(), expected);
}

#[test]
fn final_jobs_count_for_nothing() {
    let mut d = with_jobs(vec![job("a", "1", 3), job("b", "1", UNLIMITED_ATTEMPTS)]);
    d.at(20).delete(2, "a");
    d.delete(3, "b");
    d.sync_all();
    assert_eq!(d.core().drain(), Drain::default());
}
