//! Reads (`core/src/machine/views.rs`): answered at once, from the
//! durable state.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::{Driver, queue_name};
use beaver_core::{Effect, JobSpec, JobState, Outcome, QueuePause, Rejection, Reply, RequestId};
use common::*;

#[test]
fn a_get_answers_at_once_with_the_durable_job() {
    let mut d = with_one_job();
    let out = d.at(12).get(5, "a");
    let [
        Effect::Reply {
            req: RequestId(5),
            reply: Reply::Job(Some(job)),
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(job.state, JobState::Pending);
}

#[test]
fn a_status_answers_at_once_with_durable_and_proposed_figures() {
    let mut d = with_one_job();
    let out = d.at(12).status(6);
    let [
        Effect::Reply {
            reply: Reply::Status(st),
            ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(st.stats.jobs.pending, 1);
    assert_eq!(st.stats.proposed_lsn, 2);
}

#[test]
fn a_list_of_dead_jobs_answers_at_once() {
    let mut d = with_one_job();
    assert_eq!(
        d.at(12).list_dead(7, 5),
        vec![reply(7, Reply::Dead(vec![]))]
    );
}

/// No workers; jobs `j1`..`j5` (numbers 1 to 5; `j2` and `j4` in queue
/// `other`) durable at t=11, `j3` cancelled durably at t=13.
fn five_jobs() -> Driver {
    let mut d = Driver::new(no_workers());
    let jobs = (1..=5)
        .map(|i| JobSpec {
            queue: (i % 2 == 0).then(|| queue_name("other")),
            ..spec(&format!("j{i}"))
        })
        .collect();
    d.at(10).enqueue(1, jobs);
    d.at(11).durable(1);
    d.at(12).cancel(2, "j3");
    d.at(13).durable(2);
    d
}

/// The ids and `next` cursor of the one job page in `out`.
fn page(out: &[Effect]) -> (Vec<String>, Option<u64>) {
    match out {
        [
            Effect::Reply {
                reply: Reply::Jobs(Ok(p)),
                ..
            },
        ] => (p.jobs.iter().map(|j| j.id.to_string()).collect(), p.next),
        other => panic!("expected a page: {other:?}"),
    }
}

#[test]
fn jobs_are_listed_by_number_a_page_at_a_time() {
    let mut d = five_jobs();
    let (ids, next) = page(&d.at(14).list_jobs(7, (None, None), None, 2));
    assert_eq!((ids, next), (vec!["j1".into(), "j2".into()], Some(2)));
    let (ids, next) = page(&d.list_jobs(8, (None, None), next, 2));
    assert_eq!((ids, next), (vec!["j3".into(), "j4".into()], Some(4)));
    let (ids, next) = page(&d.list_jobs(9, (None, None), next, 2));
    assert_eq!((ids, next), (vec!["j5".into()], None));
}

#[test]
fn a_job_listing_keeps_to_its_queue_and_state() {
    let mut d = five_jobs();
    let other = page(&d.at(14).list_jobs(7, (Some("other"), None), None, 10));
    assert_eq!(other, (vec!["j2".into(), "j4".into()], None));
    let pending = (Some("default"), Some(JobState::Pending));
    assert_eq!(
        page(&d.list_jobs(8, pending, None, 10)),
        (vec!["j1".into(), "j5".into()], None)
    );
    assert_eq!(
        page(&d.list_jobs(9, (Some("nowhere"), None), None, 10)),
        (vec![], None)
    );
}

#[test]
fn a_job_listing_asking_for_no_job_or_too_many_is_refused() {
    let mut d = five_jobs();
    for limit in [0, 1_001] {
        let out = d.at(14).list_jobs(7, (None, None), None, limit);
        assert!(
            matches!(&out[..], [Effect::Reply { reply: Reply::Jobs(Err(Rejection::Invalid { field, reason, .. })), .. }]
                if field == "limit" && reason.contains("must be 1 to 1000")),
            "{out:?}"
        );
    }
}

#[test]
fn a_job_listing_looks_at_a_bounded_number_of_jobs_per_call() {
    let mut d = Driver::new(no_workers());
    let many = || (0..5_003).map(|_| JobSpec::new(payload("1"))).collect();
    d.at(10).enqueue(1, many());
    d.enqueue(2, many());
    d.at(11).sync_all();
    let only_last = (None, Some(JobState::Pending));
    let out = d.list_jobs(3, only_last, Some(1), 1);
    assert_eq!(page(&out), (vec!["2".into()], Some(2)));
    let (ids, next) = page(
        &d.at(14)
            .list_jobs(4, (Some("default"), None), Some(2), 1_000),
    );
    assert_eq!((ids.len(), next), (1_000, Some(1_002)));
    let cancelled = (None, Some(JobState::Cancelled));
    assert_eq!(
        page(&d.list_jobs(5, cancelled, None, 1_000)),
        (vec![], Some(10_000)),
        "nothing matched among the 10,000 looked at: go on after the last"
    );
}

#[test]
fn a_job_is_found_by_its_number_when_no_job_has_that_id() {
    let mut d = five_jobs();
    let out = d.at(14).get(7, "4");
    let [
        Effect::Reply {
            reply: Reply::Job(Some(job)),
            ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!((job.id.as_str(), job.seq), ("j4", 4));
    assert_eq!(d.core().job_by_number(4).unwrap().id.as_str(), "j4");
    assert_eq!(d.get(8, "6"), vec![reply(8, Reply::Job(None))]);
    assert_eq!(
        d.get(9, "04"),
        vec![reply(9, Reply::Job(None))],
        "not a number's canonical form"
    );
}

#[test]
fn a_job_is_cancelled_by_its_number() {
    let mut d = five_jobs();
    let cancel = append(3, 14, beaver_core::Op::Cancel { id: id("j5") });
    assert_eq!(d.at(14).cancel(7, "5"), vec![cancel]);
}

#[test]
fn the_exact_id_wins_over_a_number() {
    // Job 1's id is `2` (an old client's id), job 2's is `b`.
    let mut core = beaver_core::Core::new(no_workers());
    let old = beaver_core::Record {
        lsn: 1,
        at: 10,
        op: beaver_core::Op::Enqueue {
            jobs: vec![new_job("2", 10), new_job("b", 10)],
        },
    };
    core.apply_owned(old).unwrap();
    let mut d = Driver::with_core(core);
    let out = d.at(11).get(7, "2");
    let [
        Effect::Reply {
            reply: Reply::Job(Some(job)),
            ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!((job.id.as_str(), job.seq), ("2", 1));
}

#[test]
fn the_status_shows_each_queue_s_figures() {
    let mut d = five_jobs();
    d.at(14).pause_queue(3, "paused", QueuePause::UntilResumed);
    d.at(15).durable(3);
    let st = d.core().status();
    let rows: Vec<(&str, u64, u64, u64, Option<u64>)> = st
        .queues
        .iter()
        .map(|q| {
            (
                q.name.as_str(),
                q.pending,
                q.ready,
                q.cancelled,
                q.paused_until,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("default", 2, 2, 1, None),
            ("other", 2, 2, 0, None),
            ("paused", 0, 0, 0, Some(u64::MAX))
        ]
    );
}

#[test]
fn a_queue_whose_jobs_are_all_in_flight_or_all_completed_is_in_the_status() {
    let mut d = Driver::new(config());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.sync_all();
    d.sync_all(); // its dispatch
    let rows = |d: &Driver| -> Vec<(String, u64, u64)> {
        let st = d.core().status();
        st.queues
            .iter()
            .map(|q| (q.name.as_str().to_owned(), q.in_flight, q.completed))
            .collect()
    };
    assert_eq!(rows(&d), [("default".to_owned(), 1, 0)]);
    d.at(11).outcome("a", 1, Outcome::Succeeded);
    d.sync_all();
    assert_eq!(rows(&d), [("default".to_owned(), 0, 1)]);
}

#[test]
fn a_queue_of_one_pending_and_one_cancelled_job_is_in_the_status() {
    let mut d = Driver::new(no_workers());
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.sync_all();
    d.cancel(2, "b");
    d.sync_all();
    let st = d.core().status();
    let q = st.queues.first().expect("listed: its counts are summed");
    assert_eq!((q.pending, q.cancelled), (1, 1));
}

#[test]
fn a_queue_of_one_pending_and_one_buried_job_is_in_the_status() {
    let mut d = Driver::new(no_workers());
    d.at(10).enqueue(1, vec![spec("a"), spec("b")]);
    d.sync_all();
    d.lease(2, &["default"], 1, None, "w");
    d.sync_all();
    // The lease is named by its dispatch record, LSN 2.
    d.bury(3, 2, None);
    d.sync_all();
    let st = d.core().status();
    let q = st.queues.first().expect("listed: its counts are summed");
    assert_eq!((q.pending, q.dead), (1, 1));
}
