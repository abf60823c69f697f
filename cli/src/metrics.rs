//! Prometheus metrics, prefix `beaver_`, one [`Registry`] per server.
//!
//! Histograms are fed by the engine through [`Observer`]; counters and
//! gauges are read from the engine's status at scrape time, so they cost
//! nothing between scrapes.

use std::sync::{Arc, Mutex};

use beaver_core::Outcome;
use beaver_runtime::{EngineStatus, Observer};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The `outcome` label values of `beaver_job_duration_seconds`.
const OUTCOMES: [&str; 4] = ["succeeded", "failed", "timed_out", "not_started"];

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    job_duration: HistogramVec,
    fsync: Histogram,
    group_commit: Histogram,
    snapshot_duration: Histogram,
    snapshot_failures: IntCounter,
    recovery: Gauge,
    wal_written: IntCounter,
    enqueued: IntCounter,
    dispatched: IntCounter,
    completed: IntCounter,
    failed: IntCounter,
    dead: IntCounter,
    purged: IntCounter,
    dedup_early: IntCounter,
    queue_depth: IntGauge,
    in_flight: IntGauge,
    workers: IntGauge,
    running: IntGauge,
    wal_bytes: IntGauge,
    wal_segments: IntGauge,
    snapshot_lsn: IntGauge,
    jobs_dead: IntGauge,
    jobs_completed: IntGauge,
    disk_full: IntGauge,
    leases: LeaseMetrics,
    /// Serializes scrape-time updates so two scrapes cannot double-count.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Raises a counter to `value` (counters here mirror totals the engine keeps).
fn raise(c: &IntCounter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let secs = prometheus::exponential_buckets(0.000_1, 4.0, 12)?;
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "beaver_job_duration_seconds",
                "How long attempts ran, by outcome (succeeded, failed, timed_out, not_started).",
            )
            .buckets(prometheus::exponential_buckets(0.001, 4.0, 12)?),
            &["outcome"],
        )?;
        r.register(Box::new(job_duration.clone()))?;
        // Every outcome's series exists from the start (at zero), so a rate
        // or an alert over it has data before the first attempt of each kind
        // ends, also after a restart.
        for outcome in OUTCOMES {
            job_duration.with_label_values(&[outcome]);
        }
        Ok(Metrics {
            job_duration,
            fsync: histogram(
                &r,
                "beaver_wal_fsync_duration_seconds",
                "Latency of one WAL group commit's fdatasync.",
                secs.clone(),
            )?,
            group_commit: histogram(
                &r,
                "beaver_wal_group_commit_records",
                "Records made durable by one group commit.",
                prometheus::exponential_buckets(1.0, 2.0, 16)?,
            )?,
            snapshot_duration: histogram(
                &r,
                "beaver_snapshot_duration_seconds",
                "How long building and writing a snapshot took.",
                secs,
            )?,
            snapshot_failures: counter(
                &r,
                "beaver_snapshot_failures_total",
                "Snapshots that could not be built or written (the log keeps everything; a later one is tried).",
            )?,
            recovery: {
                let g = Gauge::new(
                    "beaver_recovery_duration_seconds",
                    "How long start-up recovery took.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            wal_written: counter(
                &r,
                "beaver_wal_written_bytes_total",
                "Bytes written to the WAL since start.",
            )?,
            enqueued: counter(
                &r,
                "beaver_jobs_enqueued_total",
                "Jobs accepted (durable) since start.",
            )?,
            dispatched: counter(
                &r,
                "beaver_jobs_dispatched_total",
                "Attempts started since start.",
            )?,
            completed: counter(
                &r,
                "beaver_jobs_completed_total",
                "Jobs completed since start.",
            )?,
            failed: counter(
                &r,
                "beaver_jobs_failed_total",
                "Attempts failed (errors, timeouts, lost leases, restarts) since start.",
            )?,
            dead: counter(
                &r,
                "beaver_jobs_dead_total",
                "Jobs that ran out of attempts since start.",
            )?,
            purged: counter(
                &r,
                "beaver_jobs_purged_total",
                "Finished jobs purged by retention since start.",
            )?,
            dedup_early: counter(
                &r,
                "beaver_dedup_early_expiries_total",
                "Remembered ids forgotten before their window ended, to respect the cap.",
            )?,
            queue_depth: gauge(
                &r,
                "beaver_queue_depth",
                "Pending jobs (ready or scheduled).",
            )?,
            in_flight: gauge(&r, "beaver_jobs_in_flight", "Jobs leased to a worker.")?,
            workers: gauge(
                &r,
                "beaver_worker_pool_size",
                "Workers (concurrent attempts).",
            )?,
            running: gauge(
                &r,
                "beaver_workers_busy",
                "Attempts holding a worker now (at most the pool size).",
            )?,
            wal_bytes: gauge(
                &r,
                "beaver_wal_bytes",
                "Bytes of WAL segment files on disk.",
            )?,
            wal_segments: gauge(&r, "beaver_wal_segments", "WAL segment files on disk.")?,
            snapshot_lsn: gauge(
                &r,
                "beaver_snapshot_lsn",
                "LSN the newest snapshot covers (0: none).",
            )?,
            jobs_dead: gauge(&r, "beaver_jobs_dead", "Dead jobs held (not yet purged).")?,
            jobs_completed: gauge(
                &r,
                "beaver_jobs_completed",
                "Completed jobs held (not yet purged).",
            )?,
            disk_full: gauge(
                &r,
                "beaver_disk_full",
                "1 while new jobs are refused because the disk is in its reserve.",
            )?,
            leases: LeaseMetrics::new(&r)?,
            registry: r,
            scrape: Mutex::new(()),
        })
    }

    /// Updates the scrape-time figures from `status` and renders the text format.
    pub fn render(&self, status: &EngineStatus) -> String {
        {
            let _guard = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
            let s = &status.queue.stats;
            let t = &s.totals;
            raise(&self.enqueued, t.enqueued);
            raise(&self.dispatched, t.dispatched);
            raise(&self.completed, t.completed);
            raise(&self.failed, t.failed);
            raise(&self.dead, t.dead);
            raise(&self.purged, t.purged);
            raise(&self.dedup_early, t.dedup_early_expiries);
            self.queue_depth.set(as_i64(s.jobs.pending));
            self.in_flight.set(as_i64(s.jobs.in_flight));
            self.jobs_dead.set(as_i64(s.jobs.dead));
            self.jobs_completed.set(as_i64(s.jobs.completed));
            self.disk_full.set(i64::from(s.disk_full));
            let e = &status.engine;
            self.workers.set(i64::from(e.workers));
            self.running.set(as_i64(e.running));
            self.wal_bytes.set(as_i64(e.wal_bytes));
            self.wal_segments.set(as_i64(e.wal_segments));
            self.snapshot_lsn.set(as_i64(e.snapshot_lsn));
            self.leases.update(&status.queue);
        }
        let mut out = Vec::new();
        // Encoding into a Vec fails only for malformed metric families,
        // which the registry refuses at registration.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// External leases and per-queue figures. The per-queue series are those
/// of the queues the status lists (queues holding jobs or paused), at most
/// `limits.queues_max`; a queue that leaves the list leaves the series.
struct LeaseMetrics {
    granted: IntCounter,
    renewed: IntCounter,
    expired: IntCounter,
    lost: IntCounter,
    waiting: IntGauge,
    active: IntGauge,
    queue_pending: IntGaugeVec,
    queue_in_flight: IntGaugeVec,
    queue_paused: IntGaugeVec,
    queues_paused: IntGauge,
}

fn per_queue(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), &["queue"])?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl LeaseMetrics {
    fn new(r: &Registry) -> prometheus::Result<LeaseMetrics> {
        Ok(LeaseMetrics {
            granted: counter(
                r,
                "beaver_leases_granted_total",
                "Leases granted to external workers (their dispatch durable) since start.",
            )?,
            renewed: counter(
                r,
                "beaver_leases_renewed_total",
                "Heartbeats that renewed a lease since start.",
            )?,
            expired: counter(
                r,
                "beaver_leases_expired_total",
                "Leases that expired (their attempt failed as timed out) since start.",
            )?,
            lost: counter(
                r,
                "beaver_leases_lost_total",
                "Heartbeats, completes and fails refused as lease_lost since start.",
            )?,
            waiting: gauge(
                r,
                "beaver_lease_requests_waiting",
                "Lease requests waiting for jobs now.",
            )?,
            active: gauge(r, "beaver_leases_active", "Current external leases.")?,
            queue_pending: per_queue(
                r,
                "beaver_queue_pending_jobs",
                "Pending jobs (ready or scheduled) per queue.",
            )?,
            queue_in_flight: per_queue(
                r,
                "beaver_queue_in_flight_jobs",
                "Jobs in flight per queue (the pool's and leased).",
            )?,
            queue_paused: per_queue(
                r,
                "beaver_queue_paused",
                "1 while the queue is paused (it hands out nothing).",
            )?,
            queues_paused: gauge(r, "beaver_queues_paused", "Queues paused now.")?,
        })
    }

    fn update(&self, q: &beaver_core::Status) {
        let c = &q.stats.leases;
        raise(&self.granted, c.granted);
        raise(&self.renewed, c.renewed);
        raise(&self.expired, c.expired);
        raise(&self.lost, c.lost);
        self.waiting.set(as_i64(c.waiting));
        self.active.set(as_i64(c.active));
        self.queue_pending.reset();
        self.queue_in_flight.reset();
        self.queue_paused.reset();
        let mut paused = 0;
        for s in &q.queues {
            let name = [s.name.as_str()];
            self.queue_pending
                .with_label_values(&name)
                .set(as_i64(s.pending));
            self.queue_in_flight
                .with_label_values(&name)
                .set(as_i64(s.in_flight));
            let p = s.paused_until.is_some();
            paused += i64::from(p);
            self.queue_paused.with_label_values(&name).set(i64::from(p));
        }
        self.queues_paused.set(paused);
    }
}

/// The engine's [`Observer`], feeding a server's [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsObserver(pub Arc<Metrics>);

impl Observer for MetricsObserver {
    fn recovered(&self, secs: f64, _report: &beaver_runtime::RecoveryReport) {
        self.0.recovery.set(secs);
    }

    fn fsync(&self, secs: f64, records: u64) {
        self.0.fsync.observe(secs);
        self.0.group_commit.observe(records as f64);
    }

    fn wal_written(&self, bytes: u64) {
        self.0.wal_written.inc_by(bytes);
    }

    fn attempt_finished(&self, secs: f64, outcome: &Outcome) {
        let label = match outcome {
            Outcome::Succeeded => OUTCOMES[0],
            Outcome::Failed(_) => OUTCOMES[1],
            Outcome::TimedOut => OUTCOMES[2],
            Outcome::NotStarted => OUTCOMES[3],
        };
        self.0
            .job_duration
            .with_label_values(&[label])
            .observe(secs);
    }

    fn snapshot_written(&self, _lsn: u64, _bytes: u64, secs: f64) {
        self.0.snapshot_duration.observe(secs);
    }

    fn snapshot_failed(&self, _error: &str, _input_corrupt: bool) {
        self.0.snapshot_failures.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the counter `name`, as a scrape would see it.
    fn counted(m: &Metrics, name: &str) -> Option<f64> {
        let families = m.registry.gather();
        let family = families.iter().find(|f| f.name() == name)?;
        Some(family.get_metric().first()?.get_counter().get_value())
    }

    #[test]
    fn each_failed_snapshot_is_counted_from_zero() {
        let m = Arc::new(Metrics::new().expect("metrics"));
        assert_eq!(counted(&m, "beaver_snapshot_failures_total"), Some(0.0));
        let observer = MetricsObserver(m.clone());
        observer.snapshot_failed("no space left on device", false);
        observer.snapshot_failed("corruption", true);
        observer.snapshot_written(7, 100, 0.1);
        assert_eq!(counted(&m, "beaver_snapshot_failures_total"), Some(2.0));
    }
}
