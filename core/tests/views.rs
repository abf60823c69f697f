//! Reads (`core/src/machine/views.rs`): answered at once, from the
//! durable state.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::{Effect, JobState, Reply, RequestId};
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
