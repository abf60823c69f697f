//! Human-readable output of the status and job documents.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::schema::{JobDoc, StatusDoc};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `1.5 s`, `3 min`, `2 h`...
pub fn span(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        3_600_000..86_400_000 => format!("{:.1} h", ms as f64 / 3.6e6),
        _ => format!("{:.1} days", ms as f64 / 8.64e7),
    }
}

/// `1 job`, `2 jobs`, `0 jobs`: a count with its noun (plural by `s`).
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `512 B`, `64.0 MiB`...
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The status page.
pub fn status(d: &StatusDoc, server: &str) -> String {
    let mut o = String::new();
    let now = now_ms();
    match &d.data_dir {
        Some(dd) => {
            let _ = writeln!(
                o,
                "data dir   {} (stopped server; files read, nothing changed)",
                dd.path
            );
            let verdict = if dd.would_start {
                "a restart would recover the state below"
            } else {
                "a restart would REFUSE TO START (see problems)"
            };
            let _ = writeln!(o, "verdict    {verdict}");
        }
        None => {
            let _ = writeln!(o, "server     {server}");
        }
    }
    let j = &d.jobs;
    let _ = writeln!(
        o,
        "jobs       pending {} (ready {}, scheduled {})  in flight {}{}  completed {}  dead {}  cancelled {}",
        j.pending,
        d.ready,
        d.scheduled,
        j.in_flight,
        in_flight_split(j.in_flight, d.running, d.leases.map_or(0, |l| l.active)),
        j.completed,
        j.dead,
        j.cancelled
    );
    if let (Some(w), Some(r)) = (d.workers, d.running) {
        let _ = writeln!(o, "workers    {w} ({r} running)");
    }
    if let Some(l) = &d.leases {
        let _ = writeln!(
            o,
            "leases     {} active; granted {}, renewed {}, expired {}, refused as lost {}; {} waiting",
            l.active,
            l.granted,
            l.renewed,
            l.expired,
            l.refused_lost,
            count(l.requests_waiting, "request")
        );
    }
    queues(&mut o, d, now);
    if d.disk_full {
        let _ = writeln!(
            o,
            "disk       FULL: new jobs are refused until space frees up"
        );
    }
    let _ = writeln!(
        o,
        "wal        {} segment{}, {}, last LSN {}",
        d.wal.segments,
        if d.wal.segments == 1 { "" } else { "s" },
        bytes(d.wal.bytes),
        d.wal.last_lsn
    );
    match (d.snapshot.lsn, d.snapshot.written_at_ms) {
        (Some(lsn), Some(at)) => {
            let _ = writeln!(
                o,
                "snapshot   LSN {lsn}, written {} ago",
                span(now.saturating_sub(at))
            );
        }
        (Some(lsn), None) => {
            let _ = writeln!(o, "snapshot   LSN {lsn}");
        }
        _ => {
            let _ = writeln!(o, "snapshot   none yet");
        }
    }
    if let Some(r) = &d.recovery {
        let _ = writeln!(
            o,
            "recovery   took {}, found {}, replayed {}, discarded {} torn bytes",
            span(r.duration_ms),
            count(r.jobs, "job"),
            count(r.replayed_records, "record"),
            r.torn_bytes_discarded
        );
    }
    if let Some(dd) = &d.data_dir {
        let _ = writeln!(
            o,
            "log        ends {}; {} records to replay after the snapshot",
            dd.log_end, dd.replay_records
        );
        if !dd.problems.is_empty() {
            let _ = writeln!(o, "problems");
            for p in &dd.problems {
                let _ = writeln!(o, "  - {p}");
            }
        }
    }
    if !d.in_flight.is_empty() {
        let offline = d.data_dir.is_some();
        let _ = writeln!(
            o,
            "in flight  (soonest deadline first{})",
            if offline {
                "; a restart retries them, the attempt counts"
            } else {
                ""
            }
        );
        for l in &d.in_flight {
            let when = match l.lease_until_ms {
                None => "waiting for a free worker".to_owned(),
                Some(t) if t >= now => format!("deadline in {}", span(t - now)),
                Some(t) => format!("deadline passed {} ago", span(now - t)),
            };
            let _ = writeln!(o, "  {}  attempt {}  {when}", l.id, l.attempt);
        }
    }
    if !d.newest_dead.is_empty() {
        let _ = writeln!(
            o,
            "dead       (newest first; `beaver requeue ID` runs one again)"
        );
        for x in &d.newest_dead {
            let err = x.last_error.as_deref().unwrap_or("-");
            let err = err.lines().last().unwrap_or("-");
            let _ = writeln!(
                o,
                "  {}  attempt {}/{}  {err}",
                x.id, x.attempt, x.max_attempts
            );
        }
    }
    o
}

/// One line per queue (only when there is more than the default queue or
/// a queue is paused: a single default queue repeats the jobs line).
fn queues(o: &mut String, d: &StatusDoc, now: u64) {
    let only_default = d.queues.len() == 1 && d.queues[0].name == "default" && !d.queues[0].paused;
    if d.queues.is_empty() || only_default {
        return;
    }
    let width = d.queues.iter().map(|q| q.name.len()).max().unwrap_or(0);
    let _ = writeln!(o, "queues");
    for q in &d.queues {
        let paused = match (q.paused, q.paused_until_ms) {
            (false, _) => String::new(),
            (true, None) => "  PAUSED until resumed".into(),
            (true, Some(t)) => format!("  PAUSED for {}", span(t.saturating_sub(now))),
        };
        let _ = writeln!(
            o,
            "  {:width$}  pending {} (ready {}, scheduled {})  in flight {}  completed {}  dead {}  cancelled {}{paused}",
            q.name, q.pending, q.ready, q.scheduled, q.in_flight, q.completed, q.dead, q.cancelled
        );
    }
}

/// How many of the jobs in flight hold a worker, how many are leased to
/// external workers and how many were handed out ahead and wait for a
/// worker: ` (8 running, 2 leased, 64 waiting for a free worker)`. Empty
/// when none is leased or waiting, or the running count is unknown (a
/// stopped server's files). The counts are read a moment apart, so the
/// waiting one never goes below zero.
pub fn in_flight_split(in_flight: u64, running: Option<u64>, leased: u64) -> String {
    let Some(r) = running else {
        return String::new();
    };
    let waiting = in_flight.saturating_sub(r).saturating_sub(leased);
    if leased == 0 && waiting == 0 {
        return String::new();
    }
    let mut parts = vec![format!("{r} running")];
    if leased > 0 {
        parts.push(format!("{leased} leased"));
    }
    if waiting > 0 {
        parts.push(format!("{waiting} waiting for a free worker"));
    }
    format!(" ({})", parts.join(", "))
}

/// One job.
pub fn job(j: &JobDoc) -> String {
    let mut o = String::new();
    let now = now_ms();
    let _ = writeln!(o, "id           {}", j.id);
    let _ = writeln!(o, "queue        {}", j.queue);
    let _ = writeln!(o, "state        {}", j.state);
    let _ = writeln!(o, "attempt      {} of {}", j.attempt, j.max_attempts);
    let _ = writeln!(o, "priority     {}", j.priority);
    let _ = writeln!(o, "timeout      {}", span(j.timeout_ms));
    let _ = writeln!(
        o,
        "created      {} ago",
        span(now.saturating_sub(j.created_at_ms))
    );
    if j.state == "pending" && j.run_at_ms > now {
        let _ = writeln!(o, "runs in      {}", span(j.run_at_ms - now));
    }
    if let Some(l) = j.lease_until_ms {
        let _ = writeln!(o, "deadline in  {}", span(l.saturating_sub(now)));
    }
    if let Some(f) = j.finished_at_ms {
        let _ = writeln!(o, "finished     {} ago", span(now.saturating_sub(f)));
    }
    if let Some(e) = &j.last_error {
        let _ = writeln!(
            o,
            "last error   {}",
            e.trim_end().replace('\n', "\n             ")
        );
    }
    if let Some(p) = &j.payload {
        let _ = writeln!(o, "payload      {}", p.get());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(0, "job"), "0 jobs");
        assert_eq!(count(1, "job"), "1 job");
        assert_eq!(count(2, "record"), "2 records");
    }

    #[test]
    fn jobs_waiting_for_a_worker_are_shown_apart_from_those_running() {
        assert_eq!(
            in_flight_split(72, Some(8), 0),
            " (8 running, 64 waiting for a free worker)"
        );
        assert_eq!(in_flight_split(8, Some(8), 0), "");
        assert_eq!(in_flight_split(3, Some(5), 0), "", "read a moment apart");
        assert_eq!(in_flight_split(3, None, 0), "");
        assert_eq!(in_flight_split(3, Some(0), 3), " (0 running, 3 leased)");
        assert_eq!(
            in_flight_split(10, Some(2), 3),
            " (2 running, 3 leased, 5 waiting for a free worker)"
        );
    }
}
