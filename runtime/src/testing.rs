//! Helpers shared by the crate's unit tests.
#![allow(clippy::unwrap_used)]

use beaver_core::codec;
use beaver_core::job::{JobId, NewJob, Payload, QueueName};
use beaver_core::record::{Op, Record};

/// The encoded body of an enqueue record at `lsn` holding `jobs` jobs with
/// ids `j{lsn}-{i}`.
pub(crate) fn enqueue(lsn: u64, jobs: u64) -> Vec<u8> {
    let jobs = (0..jobs)
        .map(|i| NewJob {
            id: JobId::parse(&format!("j{lsn}-{i}")).unwrap(),
            queue: QueueName::parse("default").unwrap(),
            payload: Payload::from_json(b"\"x\"").unwrap(),
            priority: 0,
            max_attempts: 3,
            timeout_ms: 1_000,
            run_at: 0,
        })
        .collect();
    codec::encode_record(&Record {
        lsn,
        at: 0,
        op: Op::Enqueue { jobs },
    })
}
