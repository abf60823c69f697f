//! The `stats-job`, `stats-tube`, `stats` and `list-tubes` documents, with
//! beaver's true values where it has them (see the README for the keys it
//! reports as 0).

use beaver_core::{JobState, JobView, QueueStatus};

use super::tubes::queue_of;
use super::{Shared, now_ms};
use crate::beanstalk::stats::{self as doc, JobCounts, JobStats, ServerStats, TubeStats};
use crate::beanstalk::{Reply, TubeName};

/// `OK` and the `stats-job` document of a live job.
pub fn job_yaml(shared: &Shared, j: &JobView) -> Vec<u8> {
    let now = now_ms();
    let (state, time_left_ms) = match j.state {
        JobState::InFlight => (
            doc::JobState::Reserved,
            j.lease_until.map_or(0, |u| u.saturating_sub(now)),
        ),
        JobState::Dead => (doc::JobState::Buried, 0),
        _ if j.run_at > now => (doc::JobState::Delayed, j.run_at - now),
        _ => (doc::JobState::Ready, 0),
    };
    let c = shared.counters(j.seq);
    let Some(tube) = shared.tube_of(&j.queue) else {
        return Reply::InternalError.to_bytes();
    };
    let stats = JobStats {
        id: j.seq,
        tube: &tube,
        state,
        pri: beaver_core::priority_to_beanstalk(j.priority),
        age_s: now.saturating_sub(j.created_at) / 1_000,
        delay_s: c.delay_s,
        ttr_s: j.timeout_ms / 1_000,
        time_left_s: seconds_left(time_left_ms),
        file: 0,
        reserves: c.reserves,
        // A reservation no command ended whose job is no longer reserved
        // ran past its TTR (counted into `c` at the job's next reserve).
        timeouts: c.timeouts + u64::from(c.open_lease.is_some() && j.state != JobState::InFlight),
        releases: c.releases,
        buries: c.buries,
        kicks: c.kicks,
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
}

/// The whole seconds beanstalkd shows for a span that ends `left_ms` after
/// the engine's clock reading: its nanosecond clock finds a span of 3 s
/// begun within this millisecond 2.999... s from its end, and shows 2.
/// The engine's deadlines are a millisecond past the span's true end
/// ([`beaver_core::span_end`]), and its reading up to one behind the true
/// time: what is surely left is `left_ms - 2`.
fn seconds_left(left_ms: u64) -> u64 {
    left_ms.saturating_sub(2) / 1_000
}

fn counts_of(q: &QueueStatus) -> JobCounts {
    JobCounts {
        urgent: 0,
        ready: q.ready,
        reserved: q.in_flight,
        delayed: q.scheduled,
        buried: q.dead,
    }
}

/// Whether a queue holds jobs beanstalkd would count (not deleted ones).
pub(super) fn has_jobs(q: &QueueStatus) -> bool {
    q.pending + q.in_flight + q.dead > 0
}

/// The tubes that exist (in beanstalkd's order) and the queues' status:
/// tubes a connection uses or watches, and those holding jobs.
pub async fn live_tubes(shared: &Shared) -> Option<(Vec<TubeName>, beaver_runtime::EngineStatus)> {
    let status = shared.client.status().await.ok()?;
    let queues = &status.queue.queues;
    let find = |t: &TubeName| {
        let q = queue_of(t);
        queues.iter().find(|s| s.name == q)
    };
    let mut names = {
        let mut tubes = shared.tubes.lock().ok()?;
        tubes.prune(|t| find(t).is_some_and(has_jobs));
        tubes.names()
    };
    for q in queues.iter().filter(|q| has_jobs(q)) {
        if let Some(t) = shared.tube_of(&q.name) {
            if !names.contains(&t) {
                names.push(t);
            }
        }
    }
    Some((names, status))
}

/// How many ready jobs of `tube` are urgent (a bounded scan).
async fn urgent(shared: &Shared, tube: &TubeName) -> u64 {
    let now = now_ms();
    let urgent_min = beaver_core::priority_from_beanstalk(crate::beanstalk::URGENT_PRIORITY - 1);
    super::peek::jobs_in(shared, tube, JobState::Pending)
        .await
        .iter()
        .filter(|j| j.run_at <= now && j.priority >= urgent_min)
        .count() as u64
}

/// `OK` and the `stats-tube` document; `NOT_FOUND` for a tube that does
/// not exist.
pub async fn tube_yaml(shared: &Shared, tube: &TubeName) -> Vec<u8> {
    let Some((names, status)) = live_tubes(shared).await else {
        return Reply::InternalError.to_bytes();
    };
    if !names.contains(tube) {
        return Reply::NotFound.to_bytes();
    }
    let queue = queue_of(tube);
    let q = status.queue.queues.iter().find(|q| q.name == queue);
    let mut jobs = q.map(counts_of).unwrap_or_default();
    if jobs.ready > 0 {
        jobs.urgent = urgent(shared, tube).await;
    }
    let now = status.queue.now;
    let pause_left_ms = q
        .and_then(|q| q.paused_until)
        .map_or(0, |u| u.saturating_sub(now));
    let f = shared.tube_figures(tube);
    let stats = TubeStats {
        name: tube,
        jobs,
        total_jobs: f.total_jobs,
        current_using: f.using,
        current_watching: f.watching,
        current_waiting: f.waiting,
        cmd_delete: f.cmd_delete,
        cmd_pause_tube: f.cmd_pause,
        pause_s: if pause_left_ms > 0 { f.pause_s } else { 0 },
        pause_time_left_s: seconds_left(pause_left_ms).min(f.pause_s),
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
}

/// `OK` and the `stats` document.
pub async fn server_yaml(shared: &Shared) -> Vec<u8> {
    let Some((names, status)) = live_tubes(shared).await else {
        return Reply::InternalError.to_bytes();
    };
    let mut jobs = JobCounts::default();
    for q in &status.queue.queues {
        let c = counts_of(q);
        jobs.ready += c.ready;
        jobs.reserved += c.reserved;
        jobs.delayed += c.delayed;
        jobs.buried += c.buried;
    }
    if jobs.ready > 0 {
        for t in &names {
            jobs.urgent += urgent(shared, t).await;
        }
    }
    let waiting = names.iter().map(|t| shared.tube_figures(t).waiting).max();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let stats = ServerStats {
        jobs,
        cmd: shared.command_counts(),
        // A reservation is a lease: one that expired ran past its TTR
        // (beside `beaver run`, HTTP leases that expired count too).
        job_timeouts: status.queue.stats.leases.expired,
        total_jobs: status.queue.stats.totals.enqueued,
        max_job_size: u64::from(shared.job_bytes_max),
        current_tubes: names.len() as u64,
        current_connections: shared.connections(),
        current_producers: shared.producers.load(relaxed),
        current_workers: shared.workers.load(relaxed),
        current_waiting: waiting.unwrap_or(0),
        total_connections: shared.total_connections(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION"),
        rusage_utime_us: 0,
        rusage_stime_us: 0,
        uptime_s: shared.started.elapsed().as_secs(),
        binlog_oldest_index: 0,
        binlog_current_index: 0,
        binlog_records_migrated: 0,
        binlog_records_written: 0,
        binlog_max_size: shared.segment_bytes,
        draining: shared.draining(),
        id: &shared.instance_id,
        hostname: "localhost",
        os: std::env::consts::OS,
        platform: std::env::consts::ARCH,
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
}

/// `OK` and the list of tubes that exist.
pub async fn list_tubes(shared: &Shared) -> Vec<u8> {
    match live_tubes(shared).await {
        Some((names, _)) => Reply::Ok(&doc::tube_list_yaml(&names)).to_bytes(),
        None => Reply::InternalError.to_bytes(),
    }
}
