//! The core: the durable state plus the proposals in flight.
//!
//! One module per concern, each an `impl Core` block beside the data it
//! owns (openraft's engine handlers are the model):
//!
//! | module | concern |
//! | --- | --- |
//! | `proposals` | records proposed and not yet durable; replies held until they are |
//! | `durability` | `Durable` applies records, `AppendFailed` takes proposals back |
//! | `admission` | `Enqueue`: limits, deduplication, the enqueue record |
//! | `requests` | `Cancel` and `Requeue` |
//! | `dispatch` | proposing attempts for ready jobs, up to workers + prefetch |
//! | `leases` | `Started` starts a lease; expiry aborts and fails the attempt |
//! | `outcomes` | `Outcome` becomes a complete, fail or release record |
//! | `housekeeping` | the time-driven pass: orphans, deferred outcomes, leases, purge, dispatch |
//! | `retention` | purge records for finished jobs and remembered ids |
//! | `recovery` | rebuilding a core from a snapshot and the log |
//! | `views` | read-only answers: jobs, stats, status, the next deadline |
//!
//! [`Core::step`] below routes each input to its handler, then runs the
//! housekeeping pass.

mod admission;
mod dispatch;
mod durability;
mod housekeeping;
mod leases;
mod outcomes;
#[cfg(feature = "mutants")]
mod planted;
mod proposals;
mod recovery;
mod requests;
mod retention;
mod views;

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::config::Config;
use crate::job::{JobId, QueueName};
use crate::protocol::{Effect, Input, Outcome, Reply};
use crate::record::{Lsn, Record};
use crate::state::State;
use crate::time::UnixMillis;

use admission::Enqueuing;
use leases::Leases;
use proposals::Proposals;
pub use recovery::RecoverError;

/// The job queue's state machine: inputs in, effects out. See the crate
/// docs for the driver contract.
///
/// Getters take `&self` and change nothing; [`Core::step`] is the one
/// driving method; recovery builds a `Core` from the log (see
/// [`Core::recover_encoded`]).
pub struct Core {
    config: Config,
    /// The durable state: exactly the fold of the durable log.
    state: State,
    /// Records proposed and not yet durable, and the replies they hold.
    proposals: Proposals,
    /// What unapplied enqueue records reserve (`admission`).
    enqueuing: Enqueuing,
    /// Attempts this process holds: their dispatch was proposed and no
    /// outcome has arrived (the jobs whose `held` flag is set). At most
    /// workers + prefetch.
    attempts_held: u64,
    /// Deadlines of held attempts that started (`leases`).
    leases: Leases,
    /// In-flight jobs found at recovery: their attempt was interrupted.
    orphans: Vec<JobId>,
    /// Set by recovery: the first step collects the orphans.
    find_orphans: bool,
    /// Outcomes whose record could not be appended; proposed again later.
    deferred: Vec<(JobId, u32, Outcome)>,
    /// Internal proposals (and dispatch) wait until then after the log
    /// refused an append, so a failing disk is not hammered.
    paused_until: UnixMillis,
    /// A purge record is proposed and not yet durable (`retention`).
    purge_in_flight: bool,
    /// The disk is in its reserve: new jobs are refused.
    disk_full: bool,
    /// Graceful shutdown: nothing more is dispatched or enqueued.
    stopping: bool,
    /// Round-robin position over the named queues for dispatch.
    cursor: usize,
    steps: u64,
    /// Shared so that jobs naming no queue do not allocate a name each.
    default_queue: QueueName,
}

impl Core {
    /// An empty core: no jobs, LSN 1 next.
    pub fn new(config: Config) -> Core {
        let seed = config.hash_seed;
        Core {
            config,
            state: State::new(seed),
            proposals: Proposals::new(),
            enqueuing: Enqueuing::new(seed),
            attempts_held: 0,
            leases: Leases::new(seed),
            orphans: Vec::new(),
            find_orphans: false,
            deferred: Vec::new(),
            paused_until: 0,
            purge_in_flight: false,
            disk_full: false,
            stopping: false,
            cursor: 0,
            steps: 0,
            default_queue: QueueName::default(),
        }
    }

    /// Handles one input at time `now` (wall-clock milliseconds; clamped so
    /// it never goes backwards) and appends the effects to carry out, in
    /// order, to `out`.
    pub fn step(&mut self, now: UnixMillis, input: Input, out: &mut Vec<Effect>) {
        if self.find_orphans {
            self.state.index_deferred();
            self.collect_orphans();
        }
        self.state.advance(now);
        match input {
            Input::Enqueue { req, jobs } => self.on_enqueue(req, jobs, out),
            Input::Cancel { req, id } => self.on_cancel(req, id, out),
            Input::Requeue { req, target } => self.on_requeue(req, target, out),
            Input::Get { req, id } => out.push(Effect::Reply {
                req,
                reply: Reply::Job(self.job(id.as_str())),
            }),
            Input::ListDead { req, limit } => out.push(Effect::Reply {
                req,
                reply: Reply::Dead(self.dead_jobs(limit)),
            }),
            Input::Status { req } => out.push(Effect::Reply {
                req,
                reply: Reply::Status(Box::new(self.status())),
            }),
            Input::Durable { upto } => self.on_durable(upto, out),
            Input::AppendFailed { from_lsn, error } => self.on_append_failed(from_lsn, &error, out),
            Input::Outcome {
                id,
                attempt,
                outcome,
            } => self.on_outcome(id, attempt, outcome, out),
            Input::Started { id, attempt } => self.on_started(&id, attempt),
            Input::Tick => {}
            Input::DiskFull(full) => self.disk_full = full,
            Input::StopDispatching => self.stopping = true,
        }
        self.housekeeping(out);
        self.steps += 1;
        if cfg!(debug_assertions) {
            self.check_cheap();
        }
    }

    /// Checks every invariant of the core in full (O(jobs)); `Err` names
    /// the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check_full(self)
    }

    /// The O(1) checks run after every step in debug builds.
    fn check_cheap(&self) {
        let c = &self.state.counts;
        let total = c.pending + c.in_flight + c.completed + c.dead + c.cancelled;
        assert_eq!(
            total,
            self.state.table.len() as u64,
            "state counts do not add up to the job count"
        );
        assert_eq!(
            self.proposals.next_lsn,
            self.state.applied_lsn + 1 + self.proposals.unapplied.len() as u64,
            "proposed LSNs are not dense"
        );
        assert!(
            self.attempts_held <= self.capacity(),
            "more attempts held ({}) than workers + prefetch",
            self.attempts_held
        );
    }

    /// How many attempts this process may hold at once.
    fn capacity(&self) -> u64 {
        u64::from(self.config.workers) + u64::from(self.config.prefetch)
    }

    pub(crate) fn parts(&self) -> CoreParts<'_> {
        CoreParts {
            state: &self.state,
            unapplied: self.unapplied().collect(),
            enqueuing: self.enqueuing.ids(),
            attempts_held: self.attempts_held,
            waiting_max: self.proposals.waiting.keys().next_back().copied(),
            next_lsn: self.proposals.next_lsn,
        }
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }
}

/// Borrowed internals for the invariant checker.
pub(crate) struct CoreParts<'a> {
    pub state: &'a State,
    pub unapplied: Vec<&'a Record>,
    pub enqueuing: &'a HashMap<JobId, Lsn, FixedState>,
    pub attempts_held: u64,
    pub waiting_max: Option<Lsn>,
    pub next_lsn: Lsn,
}
