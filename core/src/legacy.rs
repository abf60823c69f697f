//! Format version 1, as this build reads it: the records and snapshots
//! version 1 wrote, turned into today's types. (Postcard encodes an enum by
//! its variant's index and a struct by its fields in order, so these
//! mirror version 1's declarations exactly; names do not matter.)
//!
//! What changed in version 2: a dispatch says whether its attempt started
//! at once (version 1 charged every attempt at dispatch, so its dispatches
//! read as started); a snapshot's job says whether its attempt started (an
//! in-flight job of version 1 did), and a snapshot lists paused queues
//! (version 1 had none).

use serde::Deserialize;

use crate::job::{JobId, JobState, NewJob, Payload, QueueName};
use crate::record::{Lsn, Op, Record};
use crate::snapshot::{Snapshot, SnapshotJob};
use crate::time::UnixMillis;

/// A version 1 record.
#[derive(Deserialize)]
pub(crate) struct RecordV1 {
    lsn: Lsn,
    at: UnixMillis,
    op: OpV1,
}

/// Version 1's `Op`, variant for variant.
#[derive(Deserialize)]
enum OpV1 {
    Enqueue {
        jobs: Vec<NewJob>,
    },
    Dispatch {
        id: JobId,
        attempt: u32,
        lease_until: UnixMillis,
    },
    Complete {
        id: JobId,
        attempt: u32,
    },
    Fail {
        id: JobId,
        attempt: u32,
        error: String,
        retry_at: Option<UnixMillis>,
    },
    Release {
        id: JobId,
        attempt: u32,
    },
    Cancel {
        id: JobId,
    },
    Requeue {
        ids: Vec<JobId>,
    },
    Purge {
        jobs: Vec<JobId>,
        forget: Vec<JobId>,
    },
}

impl From<RecordV1> for Record {
    fn from(r: RecordV1) -> Record {
        let op = match r.op {
            OpV1::Enqueue { jobs } => Op::Enqueue { jobs },
            OpV1::Dispatch {
                id,
                attempt,
                lease_until,
            } => Op::Dispatch {
                id,
                attempt,
                lease_until,
                started: true,
            },
            OpV1::Complete { id, attempt } => Op::Complete { id, attempt },
            OpV1::Fail {
                id,
                attempt,
                error,
                retry_at,
            } => Op::Fail {
                id,
                attempt,
                error,
                retry_at,
            },
            OpV1::Release { id, attempt } => Op::Release { id, attempt },
            OpV1::Cancel { id } => Op::Cancel { id },
            OpV1::Requeue { ids } => Op::Requeue { ids },
            OpV1::Purge { jobs, forget } => Op::Purge { jobs, forget },
        };
        Record {
            lsn: r.lsn,
            at: r.at,
            op,
        }
    }
}

/// A version 1 snapshot.
#[derive(Deserialize)]
pub(crate) struct SnapshotV1 {
    lsn: Lsn,
    log_time: UnixMillis,
    next_seq: u64,
    queues: Vec<QueueName>,
    jobs: Vec<SnapshotJobV1>,
    remembered: Vec<(UnixMillis, JobId)>,
}

/// A version 1 snapshot's job.
#[derive(Deserialize)]
pub(crate) struct SnapshotJobV1 {
    seq: u64,
    id: JobId,
    queue: u32,
    state: JobState,
    payload: Option<Payload>,
    priority: i32,
    attempt: u32,
    max_attempts: u32,
    timeout_ms: u64,
    created_at: UnixMillis,
    run_at: UnixMillis,
    state_at: UnixMillis,
    last_error: Option<String>,
}

impl From<SnapshotJobV1> for SnapshotJob {
    fn from(j: SnapshotJobV1) -> SnapshotJob {
        SnapshotJob {
            started: j.state == JobState::InFlight,
            seq: j.seq,
            id: j.id,
            queue: j.queue,
            state: j.state,
            payload: j.payload,
            priority: j.priority,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            timeout_ms: j.timeout_ms,
            created_at: j.created_at,
            run_at: j.run_at,
            state_at: j.state_at,
            last_error: j.last_error,
        }
    }
}

impl From<SnapshotV1> for Snapshot {
    fn from(s: SnapshotV1) -> Snapshot {
        Snapshot {
            lsn: s.lsn,
            log_time: s.log_time,
            next_seq: s.next_seq,
            queues: s.queues,
            jobs: s.jobs.into_iter().map(SnapshotJob::from).collect(),
            remembered: s.remembered,
            paused: Vec::new(),
        }
    }
}
