//! Upper bounds on a record's encoded size, so that the core never proposes
//! a record the log cannot hold.
//!
//! The engine sets [`Limits::record_bytes_max`](crate::Limits) from its log
//! segment size; the core sizes what it proposes to fit: an enqueue that
//! cannot is refused as too large, an error text is cut, a requeue or purge
//! is split across records.

use crate::config::Limits;
use crate::job::{JOB_ID_BYTES_MAX, QUEUE_NAME_BYTES_MAX};
use crate::record::Op;

/// The most bytes an integer, a length prefix or an enum tag takes.
const INT: u64 = 10;

/// A record's version byte, LSN, time and its op's tag.
const RECORD: u64 = 1 + 3 * INT;

/// The smallest `record_bytes_max` the core is built for: every fixed-size
/// record (dispatch, start, complete, release, cancel, the queue controls)
/// with the longest id or queue name fits in
/// it many times over, and a fail record still keeps over 1 KiB of error.
pub const RECORD_BYTES_MIN: u64 = 2_048;

/// An enqueue record before its jobs.
pub(crate) const ENQUEUE: u64 = RECORD + INT;

/// What one job adds to an enqueue record.
pub(crate) fn new_job(id: usize, queue: usize, payload: usize) -> u64 {
    // id, queue and payload, each with its length; priority, max_attempts,
    // timeout_ms and run_at.
    (id + queue + payload) as u64 + 3 * INT + 4 * INT
}

/// The longest enqueue record `limits` let one request make: at most
/// `batch_jobs_max` jobs with the longest ids and queue names, holding
/// `batch_bytes_max` payload bytes in all (each at most `payload_bytes_max`).
/// The engine compares it with its segment size to warn at start-up that
/// some batches the limits allow will be refused as too large.
pub fn enqueue_bytes_max(limits: &Limits) -> u64 {
    let jobs = limits.batch_jobs_max;
    let payloads = limits
        .batch_bytes_max
        .min(jobs.saturating_mul(limits.payload_bytes_max));
    let per_job = new_job(JOB_ID_BYTES_MAX, QUEUE_NAME_BYTES_MAX, 0);
    ENQUEUE
        .saturating_add(jobs.saturating_mul(per_job))
        .saturating_add(payloads)
}

/// A requeue or purge record before its ids.
pub(crate) const ID_LISTS: u64 = RECORD + 2 * INT;

/// What one id adds to a list of ids.
pub(crate) fn listed_id(id: usize) -> u64 {
    id as u64 + INT
}

/// A fail record of a job with this id's length and an empty error text.
pub(crate) fn fail(id: usize) -> u64 {
    // attempt, the error's length, retry_at's tag and value.
    RECORD + listed_id(id) + 3 * INT + 1
}

impl Op {
    /// An upper bound on the length of [`encode_record`](crate::encode_record)
    /// for any record carrying this op.
    pub fn encoded_bytes_max(&self) -> u64 {
        let ids =
            |ids: &[crate::JobId]| ids.iter().map(|i| listed_id(i.as_str().len())).sum::<u64>();
        match self {
            Op::Enqueue { jobs } => {
                ENQUEUE
                    + jobs
                        .iter()
                        .map(|j| {
                            new_job(j.id.as_str().len(), j.queue.as_str().len(), j.payload.len())
                        })
                        .sum::<u64>()
            }
            // attempt, lease_until, and `started`'s one byte.
            Op::Dispatch { id, .. } => RECORD + listed_id(id.as_str().len()) + 2 * INT + 1,
            Op::Complete { id, .. } | Op::Release { id, .. } | Op::Start { id, .. } => {
                RECORD + listed_id(id.as_str().len()) + INT
            }
            Op::Cancel { id } => RECORD + listed_id(id.as_str().len()),
            Op::Fail { id, error, .. } => fail(id.as_str().len()) + error.len() as u64,
            Op::Requeue { ids: list } => ID_LISTS + ids(list),
            Op::Purge { jobs, forget } => ID_LISTS + ids(jobs) + ids(forget),
            Op::PauseQueue { queue, .. } => RECORD + listed_id(queue.as_str().len()) + INT,
            Op::PurgeQueue { queue } => RECORD + listed_id(queue.as_str().len()),
            Op::Checkpoint => RECORD,
            // attempt, priority and run_at.
            Op::Return { id, .. } => RECORD + listed_id(id.as_str().len()) + 3 * INT,
            Op::Bury { id, .. } => RECORD + listed_id(id.as_str().len()) + 2 * INT,
            Op::DeleteDead { id } | Op::Kick { id } => RECORD + listed_id(id.as_str().len()),
        }
    }
}
