//! A connection's reservations: the jobs one protocol connection (a
//! beanstalkd client, or the simulator's stand-in for one) holds through
//! external leases, and the rule that a closed connection gives every one
//! of them back at once.
//!
//! The protocol server keeps one [`Session`] per connection and the
//! simulator drives the same type through the same [`Client`], so "a
//! closed connection's reservations are released" has one implementation,
//! the one both run. Replies, counters and framing stay with the protocol.

use std::collections::BTreeMap;
use std::time::Duration;

use beaver_core::{JobId, LeaseId, LeasedJob, QueueName, Rejection, UnixMillis, WaitOrder};

use crate::client::Client;

/// How long [`Session::close`] keeps asking again, in all, when the
/// engine refuses give-backs for a reason that may pass: too many requests
/// waiting ([`Rejection::Busy`]) or a log write that failed, such as a
/// full disk ([`Rejection::Storage`]). Past it the job waits for its lease
/// to expire, as it would have without a close.
pub const CLOSE_RETRY_FOR: Duration = Duration::from_secs(60);
/// The first wait between two tries of one give-back; it doubles up to
/// [`CLOSE_RETRY_WAIT_MAX`].
const CLOSE_RETRY_WAIT_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between two tries of one give-back.
const CLOSE_RETRY_WAIT_MAX: Duration = Duration::from_secs(1);

/// One job a session holds: its lease, the lease's deadline and the
/// job's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The lease (one attempt of the job).
    pub lease: LeaseId,
    /// Report by then, or renew ([`Session::touch`]).
    pub lease_until: UnixMillis,
    /// The job's timeout: a renewal sets the deadline to then plus this.
    pub timeout_ms: u64,
    /// The queue the job was leased from (a job's queue never changes).
    pub queue: QueueName,
}

/// What [`Session::close`] did with one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned {
    /// The job's number.
    pub job: u64,
    /// The lease given back.
    pub lease: LeaseId,
    /// The engine's answer: `Ok` once the job is durably pending again.
    pub result: Result<(), Rejection>,
}

/// The reservations of one connection, by job number.
///
/// Guarantees: it holds exactly the leases it took ([`Session::reserve`],
/// [`Session::reserve_job`]) that are still current as far as the
/// engine's answers tell: not ended ([`Session::end`]) nor refused as no
/// longer current; [`Session::close`] asks the engine to
/// give each of them back at once, priority kept, with no delay, so no
/// job of a closed connection waits for its lease to expire.
#[derive(Debug)]
pub struct Session {
    client: Client,
    holder: String,
    held: BTreeMap<u64, Reservation>,
}

impl Session {
    /// A session with no reservation, whose leases name `holder` (shown
    /// in the engine's lease listing).
    pub fn new(client: Client, holder: impl Into<String>) -> Session {
        Session {
            client,
            holder: holder.into(),
            held: BTreeMap::new(),
        }
    }

    /// The holder its leases name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How many jobs it holds.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether it holds no job.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Its reservation of job number `job`, if it holds it.
    pub fn get(&self, job: u64) -> Option<&Reservation> {
        self.held.get(&job)
    }

    /// Every reservation it holds, by job number.
    pub fn reservations(&self) -> impl Iterator<Item = (u64, &Reservation)> + '_ {
        self.held.iter().map(|(&job, r)| (job, r))
    }

    /// Leases one ready job of `queues` as beanstalkd's `reserve` does
    /// (the best of them; waiting, in beanstalkd's order, `lives[i]` the
    /// life of `queues[i]`: see [`WaitOrder::Beanstalk`]), waiting up to
    /// `wait` for one (`None`: answer at once), and holds it. `Ok(None)`
    /// when none came. Resolves once the dispatch is durable; dropping the
    /// future while it waits takes no job.
    pub async fn reserve(
        &mut self,
        queues: Vec<QueueName>,
        lives: Vec<u64>,
        wait: Option<Duration>,
    ) -> Result<Option<LeasedJob>, Rejection> {
        let order = WaitOrder::Beanstalk { lives };
        let c = &self.client;
        let jobs = c
            .lease_in_order(queues, 1, wait, &self.holder, order)
            .await?;
        let leased = jobs.into_iter().next();
        if let Some(j) = &leased {
            self.hold(j);
        }
        Ok(leased)
    }

    /// Leases the pending job `id` (ready or scheduled) and holds it;
    /// resolves once the dispatch is durable.
    pub async fn reserve_job(&mut self, id: JobId) -> Result<LeasedJob, Rejection> {
        let leased = self.client.lease_job(id, &self.holder).await?;
        self.hold(&leased);
        Ok(leased)
    }

    fn hold(&mut self, j: &LeasedJob) {
        let r = Reservation {
            lease: j.lease_id,
            lease_until: j.lease_until,
            timeout_ms: j.job.timeout_ms,
            queue: j.job.queue.clone(),
        };
        self.held.insert(j.job.seq, r);
    }

    /// Ends the lease of job number `job` as `how` says; `None` if it is
    /// not held. `before(lease)` is called just before the engine is asked
    /// (so a caller can note the end before another connection may reserve
    /// the job). Once answered, the job is no longer held, unless the
    /// refusal leaves the lease current and may pass (see [`keeps_lease`]):
    /// then it still is, so a retry or the close gives it back.
    pub async fn end(
        &mut self,
        job: u64,
        how: Finish,
        before: impl FnOnce(LeaseId),
    ) -> Option<Result<(), Rejection>> {
        let lease = self.held.get(&job)?.lease;
        before(lease);
        let c = &self.client;
        let r = match how {
            Finish::Complete => c.complete(lease).await,
            Finish::Release { priority, delay_ms } => c.release(lease, priority, delay_ms).await,
            Finish::Bury { priority } => c.bury(lease, priority).await,
        };
        if !r.as_ref().is_err_and(keeps_lease) {
            self.held.remove(&job);
        }
        Some(r)
    }

    /// Renews the lease of job number `job` by the job's timeout; `None`
    /// if it is not held. A refused renewal drops the reservation, unless
    /// the refusal leaves the lease current (see [`keeps_lease`]).
    pub async fn touch(&mut self, job: u64) -> Option<Result<UnixMillis, Rejection>> {
        let lease = self.held.get(&job)?.lease;
        let r = self.client.heartbeat(lease, None).await;
        match &r {
            Ok(until) => {
                if let Some(h) = self.held.get_mut(&job) {
                    h.lease_until = *until;
                }
            }
            Err(e) if keeps_lease(e) => {}
            Err(_) => {
                self.held.remove(&job);
            }
        }
        Some(r)
    }

    /// The planted bug `reservations-kept-on-close` (named by the node's
    /// configuration): a closing session forgets its reservations instead
    /// of giving them back. Always false without the `mutants` feature.
    fn planted_keeps_reservations(&self) -> bool {
        #[cfg(feature = "mutants")]
        return self
            .client
            .planted()
            .is(beaver_core::mutants::Mutant::ReservationsKeptOnClose);
        #[cfg(not(feature = "mutants"))]
        false
    }

    /// Closes the session: every job it holds is given back at once, in
    /// the order it reserved them (as beanstalkd: a waiting reserve takes
    /// the first to go back), priority kept, no delay, the attempt not
    /// counted; `before_each(job, reservation)` is called just before
    /// each is asked (so a caller can note the end before another
    /// connection may reserve the job). Each answer is returned; a refusal
    /// that may pass is asked again until [`CLOSE_RETRY_FOR`] after the
    /// close began. Resolves once every give-back was answered.
    pub async fn close(self, mut before_each: impl FnMut(u64, &Reservation)) -> Vec<Returned> {
        if self.planted_keeps_reservations() {
            return Vec::new();
        }
        let give_up = tokio::time::Instant::now() + CLOSE_RETRY_FOR;
        // A lease's id is its dispatch's LSN: the order of reservation.
        let mut held: Vec<(&u64, &Reservation)> = self.held.iter().collect();
        held.sort_unstable_by_key(|(_, r)| r.lease);
        let mut out = Vec::with_capacity(held.len());
        for (&job, r) in held {
            before_each(job, r);
            out.push(Returned {
                job,
                lease: r.lease,
                result: give_back(&self.client, r.lease, give_up).await,
            });
        }
        out
    }
}

/// Releases `lease` at once with its priority kept, asking again until
/// `give_up` while the refusal may pass.
async fn give_back(
    client: &Client,
    lease: LeaseId,
    give_up: tokio::time::Instant,
) -> Result<(), Rejection> {
    let mut wait = CLOSE_RETRY_WAIT_FIRST;
    loop {
        let r = client.release(lease, None, 0).await;
        let may_pass = r
            .as_ref()
            .is_err_and(|e| keeps_lease(e) && !matches!(e, Rejection::Stopping));
        if !may_pass || tokio::time::Instant::now() + wait > give_up {
            return r;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(CLOSE_RETRY_WAIT_MAX);
    }
}

/// How [`Session::end`] ends a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Completes the job (beanstalkd's `delete` of a reserved job).
    Complete,
    /// Gives the attempt back (beanstalkd's `release`): pending again after
    /// `delay_ms`, with `priority` if given, the attempt not counted.
    Release {
        /// The job's priority from now on; `None` keeps it.
        priority: Option<i32>,
        /// Not ready again before this many milliseconds.
        delay_ms: u64,
    },
    /// Sets the job aside (beanstalkd's `bury`): dead, with `priority` if
    /// given, until kicked.
    Bury {
        /// The job's priority from now on; `None` keeps it.
        priority: Option<i32>,
    },
}

/// Whether a lease is still current after the engine refused its end (or
/// renewal) with `e`: it refused without ending it, because too many
/// requests wait ([`Rejection::Busy`]), a log write failed, such as on a
/// full disk ([`Rejection::Storage`]), or it is stopping. Any other
/// refusal says the lease is no longer current.
pub fn keeps_lease(e: &Rejection) -> bool {
    matches!(
        e,
        Rejection::Busy { .. } | Rejection::Storage { .. } | Rejection::Stopping
    )
}
