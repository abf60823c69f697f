//! Finding the first ready, delayed or buried job of a tube, as the
//! `peek-*` commands and `kick` need, by bounded scans of the client's job
//! listing (jobs in order of their numbers).

use beaver_core::protocol::LIST_JOBS_MAX;
use beaver_core::{JobState, JobView};

use super::tubes::queue_of;
use super::{Shared, now_ms};
use crate::beanstalk::{Command, TubeName};

/// The most jobs one peek or kick looks at: beyond it, the first of those
/// seen is taken (a bound on the work of one command).
const SCAN_JOBS_MAX: usize = 100_000;

/// Every job of `tube` in `state` (up to [`SCAN_JOBS_MAX`] looked at).
pub async fn jobs_in(shared: &Shared, tube: &TubeName, state: JobState) -> Vec<JobView> {
    let queue = queue_of(tube);
    let mut found = Vec::new();
    let mut after = None;
    let mut seen = 0;
    while seen < SCAN_JOBS_MAX {
        let page = shared
            .client
            .list_jobs(Some(queue.clone()), Some(state), after, LIST_JOBS_MAX)
            .await;
        let Ok(page) = page else { break };
        seen += page.jobs.len().max(1);
        found.extend(page.jobs);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    found
}

/// The job `peek-ready`, `peek-delayed` or `peek-buried` shows: the ready
/// job that runs first (lowest beanstalkd priority, then oldest), the
/// delayed job due first, the buried job buried first.
pub async fn first(shared: &Shared, tube: &TubeName, cmd: &Command) -> Option<JobView> {
    let now = now_ms();
    match cmd {
        Command::PeekReady => jobs_in(shared, tube, JobState::Pending)
            .await
            .into_iter()
            .filter(|j| j.run_at <= now)
            .min_by_key(|j| (std::cmp::Reverse(j.priority), j.seq)),
        Command::PeekDelayed => jobs_in(shared, tube, JobState::Pending)
            .await
            .into_iter()
            .filter(|j| j.run_at > now)
            .min_by_key(|j| (j.run_at, j.seq)),
        Command::PeekBuried => buried(shared, tube, 1).await.into_iter().next(),
        _ => None,
    }
}

/// Up to `max` delayed jobs of `tube`, due first first.
pub async fn delayed(shared: &Shared, tube: &TubeName, max: usize) -> Vec<JobView> {
    let now = now_ms();
    let mut jobs: Vec<JobView> = jobs_in(shared, tube, JobState::Pending)
        .await
        .into_iter()
        .filter(|j| j.run_at > now)
        .collect();
    jobs.sort_by_key(|j| (j.run_at, j.seq));
    jobs.truncate(max);
    jobs
}

/// Up to `max` buried jobs of `tube`, buried first first.
pub async fn buried(shared: &Shared, tube: &TubeName, max: usize) -> Vec<JobView> {
    let mut jobs = jobs_in(shared, tube, JobState::Dead).await;
    jobs.sort_by_key(|j| (j.finished_at, shared.counters(j.seq).buried_order, j.seq));
    jobs.truncate(max);
    jobs
}
