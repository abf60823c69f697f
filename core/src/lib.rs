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
//! recovery folds the log with. Replies and executions are effects of that
//! apply, so they always follow durability: an acknowledged job is on disk,
//! and a job runs only after its dispatch record is.
//!
//! # The driver contract
//!
//! A driver owns one `Core`, a log (append, then sync), workers and a
//! timer. Getters take `&self` and may be read between steps.
//!
//! 1. **Rebuild before the first step**, from the newest snapshot that
//!    validates and the durable log after it: [`Core::recover_encoded`]
//!    with the snapshot's bytes and no records (no snapshot:
//!    [`Core::new`]); then [`Core::apply_owned`] for each record after the
//!    snapshot's LSN, in LSN order, as the log is read; then
//!    [`Core::finish_rebuild`]. An `Err` means the log does not fit the
//!    state: refuse to start. ([`Core::recover`] does the same in one call
//!    from a decoded [`Snapshot`].) Everything replayed must be durable
//!    before the first step: the core treats it as acknowledged.
//! 2. **Step every event**: [`Core::step`]`(now, input, &mut out)`, with
//!    the wall-clock time in milliseconds (the core clamps it so it never
//!    goes backwards). The inputs a driver must send:
//!    - a client's request: [`Input::Enqueue`], [`Input::Cancel`],
//!      [`Input::Requeue`], [`Input::Get`], [`Input::ListDead`],
//!      [`Input::ListJobs`], [`Input::Status`], [`Input::PauseQueue`],
//!      [`Input::PurgeQueue`], [`Input::Checkpoint`], each with a
//!      [`RequestId`] the reply echoes;
//!    - an external worker's request: [`Input::Lease`] (it may wait for
//!      jobs: its reply can come any step later), [`Input::Heartbeat`],
//!      [`Input::Complete`], [`Input::Fail`], [`Input::ListLeases`]; and
//!      when a client is gone: [`Input::Withdraw`] for its lease request
//!      still waiting, [`Input::ReturnLeases`] for the leases of a
//!      [`Reply::Leased`] that could not be delivered (else they expire,
//!      and their attempts count);
//!    - the log: [`Input::Durable`]`{ upto }` once it synced every record
//!      up to `upto` (never before that sync returned);
//!      [`Input::AppendFailed`]`{ from_lsn }` if it refuses records from
//!      `from_lsn` on (none of them written, none ever will be: the core
//!      answers their clients and reissues LSNs from `from_lsn`);
//!      [`Input::DiskFull`] when the disk enters or leaves its reserve;
//!    - the workers: [`Input::Started`] when an attempt begins (its lease
//!      counts from this step: without it a hung attempt never expires,
//!      and one handed out ahead of a free worker never counts),
//!      [`Input::Outcome`] when it ends;
//!    - the timer: [`Input::Tick`] no later than [`Core::next_deadline`],
//!      read again after every step;
//!    - shutdown: [`Input::StopDispatching`].
//! 3. **Carry out every effect in `out`, in the order given, as soon as it
//!    is read.** None waits for anything: the core held replies and
//!    executions back until what they depend on was durable (see
//!    [`Effect`]).
//!    - [`Effect::Append`]: append the record after those before it; sync;
//!      report `Durable` (or `AppendFailed`).
//!    - [`Effect::Reply`]: answer the request now. (A [`Reply::Leased`]
//!      starts its leases' clocks: deliver it at once.)
//!    - [`Effect::Execute`]: queue the attempt for a worker, start attempts
//!      in the order given, report `Started` when one begins and `Outcome`
//!      when it ends. Start it without waiting for anything `Started`
//!      appends: an attempt handed out ahead logs its start, and the
//!      record rides the next sync.
//!    - [`Effect::Abort`]: stop the attempt, or drop it if it waits for a
//!      worker. Its lease expired or its job was cancelled; the core has
//!      already ended it.
//! 4. **Shut down gracefully**: step `StopDispatching` (waiting lease
//!    requests are answered `Stopping`); give back the attempts waiting
//!    for a worker with [`Outcome::NotStarted`] (they do not count); let
//!    running ones finish and report their outcomes (one still running
//!    after a grace period may be stopped unreported: it counts, failed as
//!    interrupted at the next start; so do external leases still held);
//!    once [`Core::next_lsn`] is [`Core::applied_lsn`]` + 1` every proposal
//!    is durable: snapshot and exit.
//!
//! After a crash nothing is owed: the next start is step 1. What was not
//! synced is lost (no client was told otherwise), and every lease with it.
//! The first step ends each attempt that was in flight as the log says:
//! one whose start is logged (counted at dispatch, or by a start record)
//! fails as interrupted and counts; one handed out ahead that never
//! logged a start is given back uncounted ([`Core::interrupted`] tells
//! how many of each before that step).
//!
//! # A whole driver loop
//!
//! A log and workers in memory (beaver-runtime does the same against a
//! disk and processes): enqueue, durable, execute, started, a lease that
//! expires, a crash, recovery, and the loop that runs the job to its end.
//!
//! ```
//! use std::collections::VecDeque;
//! use beaver_core::*;
//!
//! /// Everything this driver keeps besides the core.
//! #[derive(Default)]
//! struct Io {
//!     log: Vec<Record>,              // synced: survives a crash
//!     unsynced: Vec<Record>,         // appended, not synced: a crash loses it
//!     to_start: VecDeque<Execution>, // attempts waiting for a worker
//!     replies: Vec<(RequestId, Reply)>,
//! }
//!
//! impl Io {
//!     /// Contract steps 2 and 3: step, then carry out each effect in order.
//!     fn step(&mut self, core: &mut Core, now: UnixMillis, input: Input) -> Vec<Effect> {
//!         let mut out = Vec::new();
//!         core.step(now, input, &mut out);
//!         for effect in &out {
//!             match effect {
//!                 Effect::Append(record) => self.unsynced.push(Record::clone(record)),
//!                 Effect::Reply { req, reply } => self.replies.push((*req, reply.clone())),
//!                 Effect::Execute(x) => self.to_start.push_back(x.clone()),
//!                 // Nothing here runs yet: dropping it from the queue is the abort.
//!                 Effect::Abort { id, attempt } => {
//!                     self.to_start.retain(|x| (&x.id, x.attempt) != (id, *attempt))
//!                 }
//!             }
//!         }
//!         out
//!     }
//!
//!     /// The log syncs what was appended; the input that reports it.
//!     fn sync(&mut self) -> Option<Input> {
//!         let upto = self.unsynced.last()?.lsn;
//!         self.log.append(&mut self.unsynced);
//!         Some(Input::Durable { upto })
//!     }
//! }
//!
//! let config = Config { workers: 1, ..Config::default() }; // 30 s timeout, 5 s slack
//! let mut core = Core::new(config.clone()); // step 1, with an empty log
//! let mut io = Io::default();
//! let mail = JobSpec::new(Payload::from_json(br#"{"to":"ada"}"#).unwrap())
//!     .with_id(JobId::parse("mail").unwrap());
//!
//! // Enqueue: a record to append; nothing is acknowledged yet.
//! io.step(&mut core, 1_000, Input::Enqueue { req: RequestId(1), jobs: vec![mail] });
//! assert!(io.replies.is_empty() && core.job("mail").is_none());
//! // Durable: the reply goes out, and a dispatch record is appended.
//! let durable = io.sync().unwrap();
//! io.step(&mut core, 1_001, durable);
//! assert!(matches!(&io.replies[..], [(RequestId(1), Reply::Enqueued(Ok(_)))]));
//! // The dispatch is durable: the attempt may run.
//! let durable = io.sync().unwrap();
//! io.step(&mut core, 1_002, durable);
//! let x = io.to_start.pop_front().unwrap();
//! // Started: a worker runs it, and its lease counts from now...
//! io.step(&mut core, 1_003, Input::Started { id: x.id.clone(), attempt: x.attempt });
//! assert_eq!(core.next_deadline(), Some(1_003 + 30_000 + 5_000));
//! // ...and it hangs. Tick at the deadline: aborted, and a fail record.
//! let out = io.step(&mut core, 36_003, Input::Tick);
//! assert!(matches!(&out[..], [Effect::Abort { attempt: 1, .. }, Effect::Append(_)]));
//! let durable = io.sync().unwrap();
//! io.step(&mut core, 36_004, durable); // pending again, retried after backoff
//! let snapshot = codec::encode_queue_snapshot(&core); // as the runtime writes one
//! let snapshot_lsn = core.applied_lsn();
//!
//! // The retry runs and succeeds, but the process dies before the complete
//! // record is synced.
//! let retry_at = core.next_deadline().unwrap();
//! io.step(&mut core, retry_at, Input::Tick);
//! let durable = io.sync().unwrap();
//! io.step(&mut core, retry_at, durable);
//! let x = io.to_start.pop_front().unwrap();
//! io.step(&mut core, retry_at, Input::Started { id: x.id.clone(), attempt: x.attempt });
//! let ended = Input::Outcome { id: x.id, attempt: x.attempt, outcome: Outcome::Succeeded };
//! io.step(&mut core, retry_at + 1, ended);
//! let mut io = Io { log: std::mem::take(&mut io.log), ..Io::default() }; // crash
//!
//! // Step 1 as production does it: the snapshot, the records after it, finish.
//! let mut core = Core::recover_encoded(config, &snapshot, []).unwrap();
//! for record in io.log.iter().filter(|r| r.lsn > snapshot_lsn) {
//!     core.apply_owned(record.clone()).unwrap();
//! }
//! core.finish_rebuild();
//! let state = |core: &Core| core.job("mail").map(|j| (j.state, j.attempt));
//! assert_eq!(state(&core), Some((JobState::InFlight, 2)), "the success was lost");
//!
//! // The loop: sync, else run what is handed out, else wait for the next
//! // deadline. The first step fails the interrupted attempt (it counts).
//! let mut now = retry_at + 10;
//! for _ in 0..100 {
//!     if state(&core) == Some((JobState::Completed, 3)) {
//!         break;
//!     }
//!     let input = if let Some(durable) = io.sync() {
//!         durable
//!     } else if let Some(x) = io.to_start.pop_front() {
//!         io.step(&mut core, now, Input::Started { id: x.id.clone(), attempt: x.attempt });
//!         Input::Outcome { id: x.id, attempt: x.attempt, outcome: Outcome::Succeeded }
//!     } else {
//!         now = now.max(core.next_deadline().expect("a job not done has a deadline"));
//!         Input::Tick
//!     };
//!     io.step(&mut core, now, input);
//! }
//! assert_eq!(state(&core), Some((JobState::Completed, 3)));
//! ```
//!
//! `beaver_core::testing::Driver` (the `testing` feature) is this loop as
//! the harness the core's tests share.
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
mod footprint;
mod index;
mod invariants;
pub mod job;
mod legacy;
mod machine;
#[cfg(feature = "mutants")]
pub use beaver_planted as mutants;
pub mod protocol;
pub mod record;
pub mod record_size;
mod remembered;
pub mod retry;
pub mod snapshot;
mod snapshot_feed;
mod sorted_set;
mod state;
pub mod stats;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use codec::{DecodeError, decode_record, decode_snapshot, encode_record, encode_snapshot};
pub use config::{Config, Dedup, Limits, Retention, RetryPolicy};
pub use job::{
    JobId, JobSpec, JobState, JobView, NewJob, Payload, QueueName, UNLIMITED_ATTEMPTS,
    priority_from_beanstalk, priority_to_beanstalk,
};
pub use machine::{Core, RecoverError, SnapshotFeed};
pub use protocol::{
    Effect, Enqueued, Execution, Input, LeaseId, LeasedJob, Outcome, QueuePause, Rejection, Reply,
    RequestId, RequeueTarget, Retry, WaitOrder,
};
pub use record::{Lsn, Op, Record};
pub use snapshot::{Snapshot, SnapshotJob};
pub use state::ApplyError;
pub use stats::{
    Interrupted, JobPage, Lease, LeaseCounters, LeaseList, LeaseView, QueueStatus, StateCounts,
    Stats, Status, Totals,
};
pub use time::{MonotonicNow, UnixMillis, span_end};
