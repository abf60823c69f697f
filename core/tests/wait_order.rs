//! Lease requests in beanstalkd's order (`WaitOrder::Beanstalk`,
//! `core/src/machine/rotation.rs`), against a reference model of how
//! beanstalkd 1.12 hands jobs to waiting connections: random waits,
//! puts (some delayed, several of them due in the same millisecond),
//! withdrawals and tubes made again, over three queues and five
//! connections; every job must go to the connection the model names.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use std::cmp::Reverse;
use std::collections::BTreeSet;

use beaver_core::testing::{Driver, queue_name};
use beaver_core::{Effect, JobSpec, Rejection, Reply, WaitOrder};
use common::*;
use proptest::prelude::*;

const QUEUES: [&str; 3] = ["q0", "q1", "q2"];
const CONNS: usize = 5;
/// A wait no case outlives (within `lease_wait_max_ms`).
const WAIT_MS: u64 = 250_000;
/// A lease no case outlives (the model has no TTR).
const LEASE_MS: u64 = 3_600_000;
/// Delayed jobs come due on multiples of this (a case of 60 actions
/// moves the clock by less between two, and by less than `WAIT_MS` in all).
const DUE_EVERY_MS: u64 = 2_000;

/// The time delayed jobs put at `now` come due: a multiple of
/// [`DUE_EVERY_MS`] at least half of it away, so the clock only reaches it
/// through [`Action::Advance`].
fn due_after(now: u64) -> u64 {
    ((now + DUE_EVERY_MS / 2) / DUE_EVERY_MS + 1) * DUE_EVERY_MS
}

#[derive(Debug, Clone)]
enum Action {
    /// `reserve` watching the queues whose bit is set in `watch` (at least
    /// one), in beanstalkd's order.
    Reserve { conn: usize, watch: u8 },
    /// A job put into `queue` with `priority`.
    Put { queue: usize, priority: i32 },
    /// A job put into `queue` with `priority` and a delay: it comes due
    /// with every other job delayed since the last advance, in the same
    /// millisecond ([`due_after`]).
    PutLater { queue: usize, priority: i32 },
    /// The clock moves to when the delayed jobs come due.
    Advance,
    /// A waiting connection stops waiting (timed out, or gone).
    Leave { conn: usize },
    /// The tube is dropped and made again (only when nobody waits on it).
    Remake { queue: usize },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..CONNS, 1u8..8).prop_map(|(conn, watch)| Action::Reserve { conn, watch }),
        4 => (0..QUEUES.len(), prop::sample::select(vec![0, 1, 5]))
            .prop_map(|(queue, priority)| Action::Put { queue, priority }),
        2 => (0..QUEUES.len(), prop::sample::select(vec![0, 1, 5]))
            .prop_map(|(queue, priority)| Action::PutLater { queue, priority }),
        1 => Just(Action::Advance),
        1 => (0..CONNS).prop_map(|conn| Action::Leave { conn }),
        1 => (0..QUEUES.len()).prop_map(|queue| Action::Remake { queue }),
    ]
}

/// beanstalkd's side: per tube, the waiting connections (an array whose
/// taken or removed member is replaced by the last) and a cursor; ready
/// jobs by (priority, number).
#[derive(Default)]
struct Model {
    rings: [Vec<usize>; 3],
    cursors: [usize; 3],
    ready: [BTreeSet<(Reverse<i32>, u64)>; 3],
    /// Delayed jobs: (due, number, queue, priority).
    delayed: BTreeSet<(u64, u64, usize, i32)>,
    /// Each connection's watched queues while it waits.
    waiting: [Option<Vec<usize>>; CONNS],
}

impl Model {
    /// The best ready job of `queues` (taken), as `reserve` finds it:
    /// beanstalkd appends the connection to each watched tube's set and
    /// takes it from the set of the job's tube, where it was alone.
    fn take_best(&mut self, queues: &[usize]) -> Option<u64> {
        let (key, q) = queues
            .iter()
            .filter_map(|&q| self.ready[q].first().map(|&k| (k, q)))
            .min()?;
        self.ready[q].remove(&key);
        assert!(
            self.rings[q].is_empty(),
            "a tube with a job has nobody waiting"
        );
        self.cursors[q] = 1;
        Some(key.1)
    }

    fn remove_waiting(&mut self, conn: usize) {
        for q in self.waiting[conn].take().unwrap_or_default() {
            if let Some(at) = self.rings[q].iter().position(|&c| c == conn) {
                self.rings[q].swap_remove(at);
            }
        }
    }

    /// beanstalkd's tick at `now`: each delayed job due is made ready in
    /// turn (due first, then lowest number: deadline order), and each
    /// `enqueue_job` runs `process_queue` before the next.
    fn tick(&mut self, now: u64) -> Vec<(usize, u64)> {
        let mut given = Vec::new();
        while let Some(&(due, job, q, priority)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.ready[q].insert((Reverse(priority), job));
            given.extend(self.process_queue());
        }
        given
    }

    /// beanstalkd's `process_queue`: `(connection, job)` handed out.
    fn process_queue(&mut self) -> Vec<(usize, u64)> {
        let mut given = Vec::new();
        loop {
            let best = (0..QUEUES.len())
                .filter(|&q| !self.rings[q].is_empty())
                .filter_map(|q| self.ready[q].first().map(|&k| (k, q)))
                .min();
            let Some((key, q)) = best else {
                return given;
            };
            self.ready[q].remove(&key);
            let ring = &mut self.rings[q];
            let at = self.cursors[q] % ring.len();
            let conn = ring.swap_remove(at);
            self.cursors[q] = at + 1;
            self.remove_waiting(conn);
            given.push((conn, key.1));
        }
    }
}

/// The core's side.
struct Side {
    d: Driver,
    now: u64,
    req: u64,
    /// The request each connection waits with.
    asked: [Option<u64>; CONNS],
    lives: [u64; 3],
    jobs: u64,
}

impl Side {
    fn step(&mut self) -> &mut Driver {
        self.now += 1;
        self.d.at(self.now)
    }

    /// `(connection, job number)` of every job handed out by `out` and
    /// the syncs it leads to.
    fn handed_out(&mut self, mut out: Vec<Effect>) -> BTreeSet<(usize, u64)> {
        let mut given = BTreeSet::new();
        loop {
            for e in &out {
                let Effect::Reply { req, reply } = e else {
                    continue;
                };
                let Reply::Leased(r) = reply else {
                    continue;
                };
                let jobs = r.as_ref().unwrap();
                let conn = self.asked.iter().position(|&a| a == Some(req.0)).unwrap();
                self.asked[conn] = None;
                for j in jobs {
                    let n: u64 = j.job.id.as_str()[1..].parse().unwrap();
                    given.insert((conn, n));
                }
            }
            out = self.step().sync_all();
            if out.is_empty() {
                return given;
            }
        }
    }
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let mut m = Model::default();
    let mut s = Side {
        d: Driver::new(no_workers()),
        now: 0,
        req: 0,
        asked: [None; CONNS],
        lives: [0; 3],
        jobs: 0,
    };
    for (n, a) in actions.iter().enumerate() {
        let (want, out): (BTreeSet<(usize, u64)>, Vec<Effect>) = match *a {
            Action::Reserve { conn, watch } => {
                if m.waiting[conn].is_some() {
                    continue;
                }
                let queues: Vec<usize> = (0..3).filter(|q| watch & (1 << q) != 0).collect();
                let mut want = BTreeSet::new();
                match m.take_best(&queues) {
                    Some(job) => {
                        want.insert((conn, job));
                    }
                    None => {
                        for &q in &queues {
                            m.rings[q].push(conn);
                        }
                        m.waiting[conn] = Some(queues.clone());
                    }
                }
                s.req += 1;
                s.asked[conn] = Some(s.req);
                let names: Vec<&str> = queues.iter().map(|&q| QUEUES[q]).collect();
                let lives = queues.iter().map(|&q| s.lives[q]).collect();
                let req = s.req;
                let order = WaitOrder::Beanstalk { lives };
                let holder = format!("c{conn}");
                let out = s
                    .step()
                    .lease_in_order(req, &names, 1, Some(WAIT_MS), &holder, order);
                (want, out)
            }
            Action::Put { queue, priority } => {
                s.jobs += 1;
                m.ready[queue].insert((Reverse(priority), s.jobs));
                let want = m.process_queue().into_iter().collect();
                let mut job = JobSpec::new(payload("1")).with_id(id(&format!("j{}", s.jobs)));
                job.queue = Some(queue_name(QUEUES[queue]));
                job.priority = priority;
                job.timeout_ms = Some(LEASE_MS);
                s.req += 1;
                let req = s.req;
                s.step().enqueue(req, vec![job]);
                (want, s.step().sync_all())
            }
            Action::PutLater { queue, priority } => {
                s.jobs += 1;
                let now = s.now + 1;
                let due = due_after(now);
                m.delayed.insert((due, s.jobs, queue, priority));
                let mut job = JobSpec::new(payload("1")).with_id(id(&format!("j{}", s.jobs)));
                job.queue = Some(queue_name(QUEUES[queue]));
                job.priority = priority;
                job.timeout_ms = Some(LEASE_MS);
                // The core ends a span a millisecond past the reading plus
                // its length (`span_end`): this one ends at `due`.
                job.delay_ms = due - now - 1;
                s.req += 1;
                let req = s.req;
                s.step().enqueue(req, vec![job]);
                (BTreeSet::new(), s.step().sync_all())
            }
            Action::Advance => {
                let Some(&(due, ..)) = m.delayed.first() else {
                    continue;
                };
                let want = m.tick(due).into_iter().collect();
                s.now = due;
                (want, s.d.at(due).tick())
            }
            Action::Leave { conn } => {
                let Some(req) = s.asked[conn] else { continue };
                m.remove_waiting(conn);
                s.asked[conn] = None;
                (BTreeSet::new(), s.step().withdraw(req))
            }
            Action::Remake { queue } => {
                if !m.rings[queue].is_empty() {
                    continue;
                }
                m.cursors[queue] = 0;
                s.lives[queue] += 1;
                continue;
            }
        };
        let got = s.handed_out(out);
        prop_assert_eq!(&got, &want, "action {} {:?}", n, a);
    }
    s.d.core().check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_job_goes_to_the_connection_beanstalkd_would_give_it(
        actions in prop::collection::vec(action(), 1..60)
    ) {
        run(&actions)?;
    }
}

/// Two connections wait; the first job goes to the first, and once the
/// first waits again the cursor (now 1) gives the next job to it, not to
/// the one that waited longer (beanstalkd's order, not first come).
#[test]
fn the_cursor_passes_over_the_connection_that_waited_longest() {
    let actions = [
        Action::Reserve { conn: 0, watch: 1 },
        Action::Reserve { conn: 1, watch: 1 },
        Action::Put {
            queue: 0,
            priority: 0,
        },
        Action::Reserve { conn: 0, watch: 1 },
        Action::Put {
            queue: 0,
            priority: 0,
        },
    ];
    run(&actions).unwrap();
    let mut m = Model::default();
    m.rings[0] = vec![0, 1];
    m.waiting[0] = Some(vec![0]);
    m.waiting[1] = Some(vec![0]);
    m.ready[0].insert((Reverse(0), 1));
    assert_eq!(m.process_queue(), [(0, 1)]);
    m.rings[0].push(0);
    m.waiting[0] = Some(vec![0]);
    m.ready[0].insert((Reverse(0), 2));
    assert_eq!(
        m.process_queue(),
        [(0, 2)],
        "the model agrees with beanstalkd"
    );
}

/// A request may not ask for more than one job in beanstalkd's order, and
/// must name one life per queue.
#[test]
fn beanstalkd_order_takes_one_job_and_a_life_per_queue() {
    let refused_field = |out: &[Effect]| match only_reply(out) {
        Reply::Leased(Err(Rejection::Invalid { field, .. })) => field.clone(),
        other => panic!("expected a refusal: {other:?}"),
    };
    let mut d = Driver::new(no_workers());
    let order = WaitOrder::Beanstalk { lives: vec![0] };
    let out = d.at(1).lease_in_order(1, &["q0"], 2, None, "w", order);
    assert_eq!(refused_field(&out), "max");
    let order = WaitOrder::Beanstalk { lives: vec![] };
    let out = d.at(2).lease_in_order(2, &["q0"], 1, None, "w", order);
    assert_eq!(refused_field(&out), "order");
    let order = WaitOrder::Beanstalk { lives: vec![0] };
    let out = d.at(3).lease_in_order(3, &["q0"], 1, None, "w", order);
    assert_eq!(only_reply(&out), &Reply::Leased(Ok(Vec::new())));
}

/// A queue named twice is waited on once: one job hands it out, and the
/// waiting requests' invariants hold throughout.
#[test]
fn a_queue_named_twice_is_waited_on_once() {
    let mut d = Driver::new(no_workers());
    let order = WaitOrder::Beanstalk { lives: vec![0, 0] };
    let out = d
        .at(1)
        .lease_in_order(1, &["q0", "q0"], 1, Some(WAIT_MS), "w", order);
    assert!(out.is_empty(), "it waits: {out:?}");
    d.core().check_invariants().unwrap();
    let mut job = JobSpec::new(payload("1")).with_id(id("j1"));
    job.queue = Some(queue_name("q0"));
    d.at(2).enqueue(2, vec![job]);
    d.at(3).sync_all();
    let out = d.at(4).sync_all();
    let Reply::Leased(Ok(jobs)) = only_reply(&out) else {
        panic!("expected the lease: {out:?}")
    };
    assert_eq!(jobs.len(), 1);
    d.core().check_invariants().unwrap();
}
