//! beaver-core: the pure, deterministic state machine of the beaver job queue.
//!
//! No I/O, no clock, no randomness, no async, no threads: the caller hands
//! the [`Core`] inputs and the current time, and carries out the effects
//! it returns. The real runtime and the simulator drive the very same code.
//!
//! # The rule: propose, then apply on durable
//!
//! An input produces [`Record`]s (in [`Effect::Append`], with dense LSNs the
//! core assigns) and *reservations* (an id being enqueued, a job picked for
//! dispatch) so nothing is proposed twice. The durable state changes only
//! when [`Input::Durable`] covers a record — through the same apply that
//! [`Core::recover`] folds with. Replies and executions are effects of
//! that apply, so they always follow durability: an acknowledged job is on
//! disk, and a job runs only after its dispatch record is.
//!
//! # The driver contract
//!
//! 1. Recover: `Core::recover(config, snapshot, records_after_snapshot)`.
//! 2. For every event, call [`Core::step`] with the wall-clock time in
//!    milliseconds and the [`Input`]; the core clamps time so it never goes
//!    backwards.
//! 3. Carry out the effects in order: append records to the log; send
//!    replies; start executions; abort the attempts it names.
//! 4. When the log has synced records up to LSN `n`, step
//!    [`Input::Durable`]`{ upto: n }`. Never report an LSN durable before
//!    its own sync returned.
//! 5. If the log refuses records from LSN `n` on (nothing of them was
//!    written), step [`Input::AppendFailed`]`{ from_lsn: n, .. }`: the core
//!    releases their reservations, answers their clients, and reissues LSNs
//!    from `n`.
//! 6. When an attempt ends, step [`Input::Outcome`].
//! 7. Step [`Input::Tick`] no later than [`Core::next_deadline`].
//!
//! ```
//! use beaver_core::{Config, Effect, Input, JobSpec, Payload, Core, Reply, RequestId};
//!
//! let mut q = Core::new(Config::default());
//! let mut out = Vec::new();
//! let job = JobSpec::new(Payload::from_json(br#"{"to":"ada"}"#).unwrap());
//! q.step(1_000, Input::Enqueue { req: RequestId(1), jobs: vec![job] }, &mut out);
//! // Nothing is acknowledged yet: only a record to append.
//! assert!(matches!(out.as_slice(), [Effect::Append(_)]));
//! out.clear();
//! // The log synced LSN 1: the reply, then a dispatch record, follow.
//! q.step(1_001, Input::Durable { upto: 1 }, &mut out);
//! assert!(matches!(&out[0], Effect::Reply { req: RequestId(1), reply: Reply::Enqueued(Ok(_)) }));
//! assert!(matches!(&out[1], Effect::Append(r) if r.op.name() == "dispatch"));
//! ```
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
mod index;
mod invariants;
pub mod job;
mod machine;
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod protocol;
pub mod record;
pub mod record_size;
mod remembered;
pub mod retry;
pub mod snapshot;
mod sorted_set;
mod state;
pub mod stats;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use codec::{DecodeError, decode_record, decode_snapshot, encode_record, encode_snapshot};
pub use config::{Config, Dedup, Limits, Retention, RetryPolicy};
pub use job::{JobId, JobSpec, JobState, JobView, NewJob, Payload, QueueName};
pub use machine::{Core, RecoverError};
pub use protocol::{
    Effect, Enqueued, Execution, Input, Outcome, Rejection, Reply, RequestId, RequeueTarget,
};
pub use record::{Lsn, Op, Record};
pub use snapshot::{Snapshot, SnapshotJob};
pub use state::ApplyError;
pub use stats::{Lease, StateCounts, Stats, Status, Totals};
pub use time::{MonotonicNow, UnixMillis};
