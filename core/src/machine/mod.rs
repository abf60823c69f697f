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
//! | `dispatch` | the built-in pool's attempts for ready jobs: to free workers, then ahead up to workers + prefetch |
//! | `charging` | an attempt counts only if it started: start records, recovery's charged/released split, suspect jobs |
//! | `leases` | `Started` starts a pool attempt's lease; expiry aborts and fails the attempt |
//! | `external` | `Lease`: attempts handed to external workers, and the requests waiting for jobs |
//! | `fencing` | `Heartbeat`, `Complete`, `Fail`, `ReturnLeases` of external leases; their expiry and retries |
//! | `outcomes` | `Outcome` becomes a complete, fail or release record |
//! | `queue_controls` | `PauseQueue` and `PurgeQueue` |
//! | `housekeeping` | the time-driven pass: owed proposals, expiries, purge, dispatch |
//! | `retention` | purge records for finished jobs and remembered ids |
//! | `recovery` | rebuilding a core from a snapshot and the log |
//! | `views` | read-only answers: jobs, listings, stats, status, the next deadline |
//!
//! [`Core::step`] below routes each input to its handler, then runs the
//! housekeeping pass.

mod admission;
mod by_id;
mod charging;
mod dispatch;
mod durability;
mod external;
mod fencing;
mod housekeeping;
mod leases;
mod outcomes;
#[cfg(feature = "mutants")]
mod planted;
mod proposals;
mod queue_controls;
mod recovery;
mod requests;
mod retention;
mod rotation;
mod views;

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use crate::config::Config;
use crate::job::{JobId, QueueName};
use crate::protocol::{Effect, Input, Outcome, Reply};
use crate::record::{Lsn, Record};
use crate::state::State;
use crate::time::UnixMillis;

use admission::Enqueuing;
use external::External;
use leases::Leases;
use proposals::Proposals;
pub use recovery::{RecoverError, SnapshotFeed};

/// The job queue's state machine: inputs in, effects out. See the crate
/// docs for the driver contract.
///
/// Getters take `&self` and change nothing; [`Core::step`] is the one
/// driving method; recovery builds a `Core` from the log (see
/// [`Core::recover_encoded`]).
pub struct Core {
    /// Leases delivered, for the planted fencing bugs (`planted`).
    #[cfg(feature = "mutants")]
    delivered: planted::Delivered,
    /// Leases by id of revived jobs put off until after dispatch (the
    /// planted bug `RevivedJobDispatchedFirst`).
    #[cfg(feature = "mutants")]
    revived_late: Vec<(crate::protocol::RequestId, JobId, std::sync::Arc<str>)>,
    config: Config,
    /// The durable state: exactly the fold of the durable log.
    state: State,
    /// Records proposed and not yet durable, and the replies they hold.
    proposals: Proposals,
    /// What unapplied enqueue records reserve (`admission`).
    enqueuing: Enqueuing,
    /// Attempts the built-in pool holds: their dispatch was proposed and
    /// no outcome has arrived (the jobs held by `Holder::Pool`). At most
    /// workers + prefetch.
    attempts_held: u64,
    /// Deadlines of pool attempts that started (`leases`).
    leases: Leases,
    /// Attempts held by external workers, and lease requests (`external`).
    external: External,
    /// Queue purges on their way to the log, by LSN, with their queue:
    /// nothing of that queue is handed out meanwhile (`queue_controls`).
    purging: BTreeMap<Lsn, u32>,
    /// In-flight jobs found at recovery: their attempt was interrupted.
    orphans: Vec<JobId>,
    /// Set by recovery: the first step collects the orphans.
    find_orphans: bool,
    /// Set when an in-flight job may be held by nobody (after a rebuild,
    /// or an expiry the log refused): only then are leases scanned for one.
    unowned_possible: bool,
    /// Outcomes whose record could not be appended; proposed again later.
    deferred: Vec<(JobId, u32, Outcome)>,
    /// Start records the log refused; proposed again later (`charging`).
    starts_owed: Vec<(JobId, u32)>,
    /// Internal proposals (and dispatch) wait until then after the log
    /// refused an append, so a failing disk is not hammered.
    paused_until: UnixMillis,
    /// A purge record is proposed and not yet durable (`retention`).
    purge_in_flight: bool,
    /// The disk is in its reserve: new jobs are refused.
    disk_full: bool,
    /// Graceful shutdown: nothing more is dispatched or enqueued.
    stopping: bool,
    /// Round-robin position over the pool's queues for dispatch.
    cursor: usize,
    /// The queues the pool serves, by index (see `dispatch`), resolved for
    /// the first `pool_for` queues of the state.
    pool: Vec<u32>,
    pool_for: usize,
    /// Shared so that jobs naming no queue do not allocate a name each.
    default_queue: QueueName,
}

impl Core {
    /// An empty core: no jobs, LSN 1 next.
    pub fn new(config: Config) -> Core {
        let seed = config.hash_seed;
        #[cfg_attr(not(feature = "mutants"), allow(unused_mut))]
        let mut state = State::new(seed);
        #[cfg(feature = "mutants")]
        {
            state.planted = config.planted;
        }
        Core {
            #[cfg(feature = "mutants")]
            delivered: planted::Delivered::default(),
            #[cfg(feature = "mutants")]
            revived_late: Vec::new(),
            config,
            state,
            proposals: Proposals::new(),
            enqueuing: Enqueuing::new(seed),
            attempts_held: 0,
            leases: Leases::new(seed),
            external: External::new(seed),
            purging: BTreeMap::new(),
            orphans: Vec::new(),
            find_orphans: false,
            unowned_possible: false,
            deferred: Vec::new(),
            starts_owed: Vec::new(),
            paused_until: 0,
            purge_in_flight: false,
            disk_full: false,
            stopping: false,
            cursor: 0,
            pool: Vec::new(),
            pool_for: usize::MAX,
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
        self.advance(now, &input, out);
        self.route(input, out);
        self.housekeeping(out);
        if cfg!(debug_assertions) {
            self.check_cheap();
        }
    }

    /// Hands `input` to its handler.
    fn route(&mut self, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Enqueue { req, jobs } => self.on_enqueue(req, jobs, out),
            Input::Cancel { req, id } => self.on_cancel(req, id, out),
            Input::Requeue { req, target } => self.on_requeue(req, target, out),
            Input::Get { req, id } => out.push(Effect::Reply {
                req,
                reply: Reply::Job(self.find(id.as_str()).map(|slot| self.view(slot))),
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
            Input::Started { id, attempt } => self.on_started(&id, attempt, out),
            Input::Tick => {}
            Input::DiskFull(full) => self.disk_full = full,
            Input::StopDispatching => self.on_stop_dispatching(out),
            Input::Lease {
                req,
                queues,
                max,
                wait_ms,
                holder,
                order,
            } => self.on_lease(req, (queues, max, order), wait_ms, &holder, out),
            Input::Heartbeat {
                req,
                lease,
                extend_ms,
            } => self.on_heartbeat(req, lease, extend_ms, out),
            Input::Complete { req, lease } => self.on_complete(req, lease, out),
            Input::Fail {
                req,
                lease,
                error,
                retry,
            } => self.on_fail(req, lease, &error, retry, out),
            Input::Withdraw { req } => self.external.withdraw(req),
            Input::ReturnLeases { leases } => self.on_return_leases(&leases, out),
            Input::PauseQueue { req, queue, pause } => self.on_pause_queue(req, queue, pause, out),
            Input::PurgeQueue { req, queue } => self.on_purge_queue(req, queue, out),
            Input::ListJobs {
                req,
                queue,
                state,
                after,
                limit,
            } => out.push(Effect::Reply {
                req,
                reply: Reply::Jobs(self.list_jobs(queue.as_ref(), state, after, limit)),
            }),
            Input::ListLeases { req } => out.push(Effect::Reply {
                req,
                reply: Reply::Leases(self.list_leases()),
            }),
            Input::Checkpoint { req } => self.on_checkpoint(req, out),
            Input::Release {
                req,
                lease,
                priority,
                delay_ms,
            } => self.on_release(req, lease, priority, delay_ms, out),
            Input::Bury {
                req,
                lease,
                priority,
            } => self.on_bury(req, lease, priority, out),
            Input::Delete { req, id } => self.on_delete(req, id, out),
            Input::Kick { req, id } => self.on_kick(req, id, out),
            Input::LeaseJob { req, id, holder } => self.on_lease_job(req, id, &holder, out),
        }
    }

    /// Checks every invariant of the core in full (O(jobs)); `Err` names
    /// the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::invariants::check_full(self)?;
        self.external.check_waiters()
    }

    /// The O(1) checks run after every step in debug builds.
    fn check_cheap(&self) {
        assert_eq!(
            self.state.counts.total(),
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

    /// When a span of `ms` that a client names (a delay, a lease), begun
    /// now, is surely over: never early ([`crate::time::span_end`]).
    fn span_end(&self, ms: u64) -> UnixMillis {
        #[cfg(feature = "mutants")]
        if self.planted(crate::mutants::Mutant::SpanEndsEarly) {
            return self.state.now.saturating_add(ms);
        }
        crate::time::span_end(self.state.now, ms)
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
            leases_held: self.external.held_count(),
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
    /// Attempts held by external leases: current ones plus lease
    /// dispatches on their way to the log.
    pub leases_held: u64,
    pub waiting_max: Option<Lsn>,
    pub next_lsn: Lsn,
}

#[cfg(test)]
mod tests {
    /// The public check reports what the full checker finds: a core whose
    /// kept figures disagree with its jobs fails it.
    #[test]
    fn check_invariants_reports_a_broken_core() {
        let mut q = crate::invariants::tests::one_pending();
        assert_eq!(q.check_invariants(), Ok(()));
        q.state.counts.pending += 1;
        let broken = q.check_invariants().expect_err("a miscount");
        assert!(broken.contains("state counts"), "{broken}");
    }
}
