//! The published JSON schema: one shape for a job and one for status, used
//! by the HTTP API, `--json` output and the snapshot tests alike.
//!
//! Rules: every document carries `schema_version`; times are unix
//! milliseconds in fields ending `_ms` / `_at_ms`; a field that does not
//! apply is `null`, never left out, so scripts can rely on the keys. New
//! fields may be added in a minor release; a field is never renamed or
//! removed without bumping [`SCHEMA_VERSION`].

use beaver_core::{JobView, Status};
use beaver_runtime::{EngineStatus, RecoveryReport};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

mod workers;
pub use workers::*;

/// The version of the documents below.
pub const SCHEMA_VERSION: u32 = 1;

/// One job (`GET /v1/jobs/{id}`, `beaver job ID --json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct JobDoc {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The id.
    pub id: String,
    /// The queue.
    pub queue: String,
    /// `pending`, `in_flight`, `completed`, `dead` or `cancelled`.
    pub state: String,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Limit on one attempt.
    pub timeout_ms: u64,
    /// When the job was accepted.
    pub created_at_ms: u64,
    /// When it may next run (meaningful while pending).
    pub run_at_ms: u64,
    /// The lease deadline while in flight.
    pub lease_until_ms: Option<u64>,
    /// When it reached a final state.
    pub finished_at_ms: Option<u64>,
    /// The latest failed attempt's error.
    pub last_error: Option<String>,
    /// The payload, as sent; `null` once completed or cancelled (released),
    /// and in lists.
    pub payload: Option<Box<RawValue>>,
}

impl JobDoc {
    /// The document for a job; `with_payload` includes its payload.
    pub fn new(j: &JobView, with_payload: bool) -> JobDoc {
        let payload = if with_payload {
            j.payload.as_ref().and_then(|p| {
                // The payload was validated as JSON when it was accepted.
                let text = String::from_utf8(p.as_bytes().to_vec()).ok()?;
                RawValue::from_string(text).ok()
            })
        } else {
            None
        };
        JobDoc {
            schema_version: SCHEMA_VERSION,
            id: j.id.to_string(),
            queue: j.queue.to_string(),
            state: j.state.as_str().into(),
            priority: j.priority,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            timeout_ms: j.timeout_ms,
            created_at_ms: j.created_at,
            run_at_ms: j.run_at,
            lease_until_ms: j.lease_until,
            finished_at_ms: j.finished_at,
            last_error: j.last_error.clone(),
            payload,
        }
    }
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting to run (ready or scheduled).
    pub pending: u64,
    /// Leased to a worker.
    pub in_flight: u64,
    /// Finished successfully.
    pub completed: u64,
    /// Out of attempts.
    pub dead: u64,
    /// Cancelled while pending.
    pub cancelled: u64,
}

impl JobCounts {
    /// All jobs held.
    pub fn total(&self) -> u64 {
        self.pending + self.in_flight + self.completed + self.dead + self.cancelled
    }
}

/// Counters since the server started (applied, durable transitions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalsDoc {
    /// Jobs accepted.
    pub enqueued: u64,
    /// Attempts started.
    pub dispatched: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Attempts failed (errors, timeouts, lost leases, restarts).
    pub failed: u64,
    /// Jobs that went dead.
    pub dead: u64,
    /// Finished jobs purged by retention.
    pub purged: u64,
    /// Remembered ids forgotten early to respect the cap.
    pub dedup_early_expiries: u64,
}

/// A job in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    /// The job.
    pub id: String,
    /// Its attempt.
    pub attempt: u32,
    /// When its lease expires; `null` while it waits for a free worker
    /// (its lease starts when it does).
    pub lease_until_ms: Option<u64>,
}

/// A dead job in the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadDoc {
    /// The job.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Attempts used.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it died.
    pub finished_at_ms: Option<u64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// The write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalDoc {
    /// Bytes of segment files on disk (preallocated size).
    pub bytes: u64,
    /// Segment files on disk.
    pub segments: u64,
    /// The highest LSN known durable (server) or valid in the log (data dir).
    pub last_lsn: u64,
}

/// The newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDoc {
    /// The LSN it covers (`null`: none).
    pub lsn: Option<u64>,
    /// When its file was written (`null`: none).
    pub written_at_ms: Option<u64>,
    /// How long ago that was.
    pub age_ms: Option<u64>,
}

/// The last start-up recovery of a live server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryDoc {
    /// How long it took.
    pub duration_ms: u64,
    /// The snapshot it started from.
    pub snapshot_lsn: Option<u64>,
    /// WAL records replayed after it.
    pub replayed_records: u64,
    /// Torn WAL tail discarded.
    pub torn_bytes_discarded: u64,
    /// Jobs found.
    pub jobs: u64,
}

impl From<&RecoveryReport> for RecoveryDoc {
    fn from(r: &RecoveryReport) -> Self {
        RecoveryDoc {
            duration_ms: r.duration_ms,
            snapshot_lsn: r.snapshot_lsn,
            replayed_records: r.replayed_records,
            torn_bytes_discarded: r.torn_bytes,
            jobs: r.jobs,
        }
    }
}

/// One snapshot file found in a stopped server's data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFileDoc {
    /// The file name.
    pub file: String,
    /// The LSN its name gives.
    pub lsn: u64,
    /// Why it does not validate (`null`: it does).
    pub problem: Option<String>,
}

/// What `status --data-dir` found in a stopped server's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirDoc {
    /// The data dir.
    pub path: String,
    /// Whether a restart would start (false: corruption or an unreadable file).
    pub would_start: bool,
    /// `clean`, `torn` (an unacknowledged tail a restart discards) or `corrupt`.
    pub log_end: String,
    /// Bytes of torn tail a restart would discard.
    pub torn_bytes: u64,
    /// LSNs the log holds (first, last), `null` when empty.
    pub log_lsns: Option<(u64, u64)>,
    /// The highest LSN the log vouches was acknowledged.
    pub watermark: u64,
    /// Records after the snapshot a restart would replay.
    pub replay_records: u64,
    /// Snapshot files, newest first.
    pub snapshot_files: Vec<SnapshotFileDoc>,
    /// Every problem found, each saying what a restart would do about it.
    pub problems: Vec<String>,
}

/// The status document (`GET /v1/status`, `beaver status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `server` (a live server answered) or `data_dir` (files read).
    pub source: String,
    /// The queue's clock: the latest time it has seen.
    pub now_ms: u64,
    /// Jobs per state.
    pub jobs: JobCounts,
    /// Pending jobs that could run now.
    pub ready: u64,
    /// Pending jobs waiting for their time.
    pub scheduled: u64,
    /// Payload bytes of pending and in-flight jobs.
    pub pending_payload_bytes: u64,
    /// Ids of purged jobs remembered for deduplication.
    pub remembered_ids: u64,
    /// Whether new jobs are refused because the disk is in its reserve.
    pub disk_full: bool,
    /// Counters since start (`null` for a data dir).
    pub totals: Option<TotalsDoc>,
    /// In-flight jobs, soonest deadline first (at most 20).
    pub in_flight: Vec<LeaseDoc>,
    /// Dead jobs, newest first (at most 20).
    pub newest_dead: Vec<DeadDoc>,
    /// The write-ahead log.
    pub wal: WalDoc,
    /// The newest snapshot.
    pub snapshot: SnapshotDoc,
    /// The last recovery (`null` for a data dir).
    pub recovery: Option<RecoveryDoc>,
    /// The worker pool's size (`null` for a data dir).
    pub workers: Option<u32>,
    /// Attempts running now (`null` for a data dir).
    pub running: Option<u64>,
    /// What the files hold (`null` for a live server).
    pub data_dir: Option<DataDirDoc>,
    /// Every queue that holds jobs or is paused, by name.
    pub queues: Vec<QueueDoc>,
    /// External lease figures since start (`null` for a data dir: leases
    /// live in memory only).
    pub leases: Option<LeaseFiguresDoc>,
}

impl StatusDoc {
    /// The queue part of a status document; the caller fills in the rest.
    pub fn from_queue(source: &str, q: &Status, wal: WalDoc, snapshot: SnapshotDoc) -> StatusDoc {
        let s = &q.stats;
        StatusDoc {
            schema_version: SCHEMA_VERSION,
            source: source.into(),
            now_ms: q.now,
            jobs: JobCounts {
                pending: s.jobs.pending,
                in_flight: s.jobs.in_flight,
                completed: s.jobs.completed,
                dead: s.jobs.dead,
                cancelled: s.jobs.cancelled,
            },
            ready: s.ready,
            scheduled: s.scheduled,
            pending_payload_bytes: s.pending_payload_bytes,
            remembered_ids: s.remembered_ids,
            disk_full: s.disk_full,
            totals: None,
            in_flight: q
                .in_flight
                .iter()
                .map(|l| LeaseDoc {
                    id: l.id.to_string(),
                    attempt: l.attempt,
                    lease_until_ms: l.lease_until,
                })
                .collect(),
            newest_dead: q
                .newest_dead
                .iter()
                .map(|j| DeadDoc {
                    id: j.id.to_string(),
                    queue: j.queue.to_string(),
                    attempt: j.attempt,
                    max_attempts: j.max_attempts,
                    finished_at_ms: j.finished_at,
                    last_error: j.last_error.clone(),
                })
                .collect(),
            wal,
            snapshot,
            recovery: None,
            workers: None,
            running: None,
            data_dir: None,
            queues: q.queues.iter().map(QueueDoc::from).collect(),
            leases: None,
        }
    }

    /// A live server's status document.
    pub fn from_engine(
        st: &EngineStatus,
        recovery: &RecoveryReport,
        snapshot_written_at_ms: Option<u64>,
    ) -> StatusDoc {
        let e = &st.engine;
        let snap_lsn = (e.snapshot_lsn > 0).then_some(e.snapshot_lsn);
        let written = if e.snapshot_at_ms > 0 {
            Some(e.snapshot_at_ms)
        } else {
            snapshot_written_at_ms.filter(|_| snap_lsn.is_some())
        };
        let now = st.queue.now;
        let mut doc = StatusDoc::from_queue(
            "server",
            &st.queue,
            WalDoc {
                bytes: e.wal_bytes,
                segments: e.wal_segments,
                last_lsn: e.durable_lsn,
            },
            SnapshotDoc {
                lsn: snap_lsn,
                written_at_ms: written,
                age_ms: written.map(|w| now.saturating_sub(w)),
            },
        );
        let t = &st.queue.stats.totals;
        doc.totals = Some(TotalsDoc {
            enqueued: t.enqueued,
            dispatched: t.dispatched,
            completed: t.completed,
            failed: t.failed,
            dead: t.dead,
            purged: t.purged,
            dedup_early_expiries: t.dedup_early_expiries,
        });
        doc.recovery = Some(RecoveryDoc::from(recovery));
        doc.workers = Some(e.workers);
        doc.running = Some(e.running);
        doc.leases = Some(LeaseFiguresDoc::from(&st.queue.stats.leases));
        doc
    }
}

/// The answer to an enqueue (`POST /v1/jobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueuedDoc {
    /// One entry per job, in request order.
    pub jobs: Vec<EnqueuedJob>,
}

/// One job's answer to an enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueuedJob {
    /// The id (assigned if none was given).
    pub id: String,
    /// Whether the id was already known, so nothing was added.
    pub duplicate: bool,
}

/// Every error the API answers with: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDoc {
    /// The error.
    pub error: ErrorBody,
}

/// The body of an [`ErrorDoc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid`, `too_large`, `busy`, `not_found`, `conflict`, `storage`,
    /// `stopping`, `unauthorized`, `timeout` or `method_not_allowed`.
    pub kind: String,
    /// What is wrong and what to do.
    pub message: String,
    /// The job's index in the batch, when one job is at fault.
    pub index: Option<usize>,
    /// The offending field, when one field is at fault.
    pub field: Option<String>,
    /// When to retry (503 only).
    pub retry_after_ms: Option<u64>,
}
