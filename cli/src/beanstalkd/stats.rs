//! The `stats-job`, `stats-tube`, `stats` and `list-tubes` documents, with
//! beaver's true values where it has them (see the README for the keys it
//! reports as 0).

use beaver_core::{JobState, JobView, QueueStatus};

use super::{Shared, now_ms};
use crate::beanstalk::stats::{self as doc, JobCounts, JobStats, ServerStats, TubeStats};
use crate::beanstalk::{Reply, TubeName};

/// `OK` and the `stats-job` document of a live job.
pub fn job_yaml(shared: &Shared, j: &JobView) -> Vec<u8> {
    let now = now_ms();
    let (state, time_left_ms) = match j.state {
        JobState::InFlight => (
            doc::JobState::Reserved,
            j.lease_until.unwrap_or(now).saturating_sub(now),
        ),
        JobState::Dead => (doc::JobState::Buried, 0),
        _ if j.run_at > now => (doc::JobState::Delayed, j.run_at - now),
        _ => (doc::JobState::Ready, 0),
    };
    let c = shared.counters(j.seq);
    let Ok(tube) = TubeName::new(j.queue.as_str().as_bytes()).ok_or(()) else {
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
        time_left_s: time_left_ms / 1_000,
        file: 0,
        reserves: c.reserves,
        timeouts: c.timeouts,
        releases: c.releases,
        buries: c.buries,
        kicks: c.kicks,
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
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

/// `OK` and the `stats-tube` document; `NOT_FOUND` for a tube no job or
/// pause ever named.
pub async fn tube_yaml(shared: &Shared, tube: &TubeName) -> Vec<u8> {
    let Ok(status) = shared.client.status().await else {
        return Reply::InternalError.to_bytes();
    };
    let q = status
        .queue
        .queues
        .iter()
        .find(|q| q.name.as_str() == tube.as_str());
    let Some(q) = q else {
        return match tube.as_str() == "default" {
            true => Reply::Ok(&empty_tube(tube)).to_bytes(),
            false => Reply::NotFound.to_bytes(),
        };
    };
    let now = status.queue.now;
    let pause_left_ms = q.paused_until.map_or(0, |u| u.saturating_sub(now));
    let stats = TubeStats {
        name: tube,
        jobs: counts_of(q),
        total_jobs: q.pending + q.in_flight + q.completed + q.dead + q.cancelled,
        current_using: 0,
        current_watching: 0,
        current_waiting: 0,
        cmd_delete: 0,
        cmd_pause_tube: shared.pauses_of(tube),
        pause_s: 0,
        pause_time_left_s: pause_left_ms / 1_000,
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
}

fn empty_tube(tube: &TubeName) -> Vec<u8> {
    TubeStats {
        name: tube,
        jobs: JobCounts::default(),
        total_jobs: 0,
        current_using: 0,
        current_watching: 0,
        current_waiting: 0,
        cmd_delete: 0,
        cmd_pause_tube: 0,
        pause_s: 0,
        pause_time_left_s: 0,
    }
    .to_yaml()
}

/// `OK` and the `stats` document.
pub async fn server_yaml(shared: &Shared) -> Vec<u8> {
    let Ok(status) = shared.client.status().await else {
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
    let totals = &status.queue.stats.totals;
    let stats = ServerStats {
        jobs,
        cmd: shared.command_counts(),
        job_timeouts: 0,
        total_jobs: totals.enqueued,
        max_job_size: u64::from(shared.job_bytes_max),
        current_tubes: status.queue.queues.len().max(1) as u64,
        current_connections: shared.connections(),
        current_producers: 0,
        current_workers: 0,
        current_waiting: 0,
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
        binlog_max_size: 0,
        draining: shared.draining(),
        id: &shared.instance_id,
        hostname: "localhost",
        os: std::env::consts::OS,
        platform: std::env::consts::ARCH,
    };
    Reply::Ok(&stats.to_yaml()).to_bytes()
}

/// `OK` and the list of tubes: `default` and every queue.
pub async fn list_tubes(shared: &Shared) -> Vec<u8> {
    let Ok(status) = shared.client.status().await else {
        return Reply::InternalError.to_bytes();
    };
    let mut tubes = vec![TubeName::default_tube()];
    for q in &status.queue.queues {
        if let Some(t) = TubeName::new(q.name.as_str().as_bytes()) {
            if !tubes.contains(&t) {
                tubes.push(t);
            }
        }
    }
    Reply::Ok(&doc::tube_list_yaml(&tubes)).to_bytes()
}
