//! beaver-core: the pure, deterministic state machine of the beaver job queue.
#![forbid(unsafe_code)]

pub mod job;
pub mod protocol;
pub mod record;
pub mod stats;
pub mod time;

pub use job::{JobId, JobSpec, JobState, JobView, NewJob, Payload, QueueName};
pub use protocol::{Effect, Enqueued, Execution, Input, Outcome, Rejection, Reply, RequestId, RequeueTarget};
pub use record::{Lsn, Op, Record};
pub use stats::{Lease, StateCounts, Stats, Status, Totals};
pub use time::{MonotonicNow, UnixMillis};
