//! The reference: the durable records folded the simplest way, over a
//! `BTreeMap`, with the rules the core must keep asserted as they apply.

use std::collections::{BTreeMap, BTreeSet};

use beaver_core::{JobId, JobState, NewJob, Op, Record};

/// The error text the harness gives a failing external attempt that gives
/// up: the only way a job may die with attempts left.
pub const GIVE_UP: &str = "give up";

/// The error text of an attempt a restart interrupted.
pub const INTERRUPTED: &str = "interrupted: beaver stopped while this attempt ran";

#[derive(Debug, Clone)]
pub struct MJob {
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: i32,
    pub queue: String,
    pub payload: Option<Vec<u8>>,
    pub last_error: Option<String>,
    pub run_at: u64,
    /// In flight: its attempt's start is logged (it counts).
    pub started: bool,
    /// In flight: the LSN of its attempt's dispatch (a lease's id).
    pub dispatch_lsn: u64,
}

/// How an attempt ended, by the LSN of its dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Completed,
    Failed,
    Released,
}

#[derive(Debug, Default)]
pub struct Model {
    pub jobs: BTreeMap<String, MJob>,
    pub remembered: BTreeSet<String>,
    /// Every id ever durably enqueued.
    pub ever: BTreeSet<String>,
    pub applied: u64,
    /// Paused queues and the end of their pause.
    pub paused: BTreeMap<String, u64>,
    /// Jobs a restart gave back uncounted, until their next counted attempt.
    pub suspect: BTreeSet<String>,
    /// How each attempt ended, by its dispatch's LSN.
    pub ended_by: BTreeMap<u64, End>,
    /// How many jobs each queue purge cancelled, by its LSN.
    pub purged: BTreeMap<u64, u64>,
}

impl Model {
    fn job(&self, id: &JobId) -> MJob {
        self.jobs
            .get(id.as_str())
            .expect("record names a known job")
            .clone()
    }

    /// The job in flight on `attempt`.
    fn in_flight(&self, id: &JobId, attempt: u32) -> MJob {
        let j = self.job(id);
        assert_eq!(
            (j.state, j.attempt),
            (JobState::InFlight, attempt),
            "job {id}"
        );
        j
    }

    fn put(&mut self, id: &JobId, j: MJob) {
        if j.state.is_final() {
            self.suspect.remove(id.as_str());
        }
        self.jobs.insert(id.to_string(), j);
    }

    pub fn apply(&mut self, r: &Record) {
        assert_eq!(r.lsn, self.applied + 1, "records apply in LSN order");
        self.applied = r.lsn;
        match &r.op {
            Op::Enqueue { jobs } => jobs.iter().for_each(|j| self.enqueue(j)),
            Op::Dispatch {
                id,
                attempt,
                started,
                ..
            } => self.dispatch(r.lsn, id, *attempt, *started),
            Op::Start { id, attempt } => {
                let mut j = self.in_flight(id, *attempt);
                assert!(!j.started, "a start logged twice for {id}");
                j.started = true;
                self.suspect.remove(id.as_str());
                self.put(id, j);
            }
            Op::Complete { id, attempt } => {
                let mut j = self.in_flight(id, *attempt);
                self.ended_by.insert(j.dispatch_lsn, End::Completed);
                j.state = JobState::Completed;
                j.payload = None;
                self.put(id, j);
            }
            Op::Fail {
                id,
                attempt,
                error,
                retry_at,
            } => {
                let mut j = self.in_flight(id, *attempt);
                if error == INTERRUPTED {
                    assert!(j.started, "an attempt that never started is counted: {id}");
                }
                self.ended_by.insert(j.dispatch_lsn, End::Failed);
                j.last_error = Some(error.clone());
                self.fail(id, j, *retry_at);
            }
            Op::Release { id, attempt } => {
                let mut j = self.in_flight(id, *attempt);
                self.ended_by.insert(j.dispatch_lsn, End::Released);
                j.state = JobState::Pending;
                j.attempt -= 1;
                self.put(id, j);
            }
            Op::Cancel { id } => {
                let j = self.job(id);
                self.cancel(id, j);
            }
            Op::Requeue { ids } => self.requeue(ids, r.at),
            Op::Purge { jobs, forget } => self.purge(jobs, forget),
            Op::PauseQueue { queue, until } => {
                self.paused.insert(queue.to_string(), *until);
            }
            Op::PurgeQueue { queue } => self.purge_queue(r.lsn, queue.as_str()),
            Op::Checkpoint => {}
            Op::Return {
                id,
                attempt,
                priority,
                run_at,
            } => {
                let mut j = self.in_flight(id, *attempt);
                self.ended_by.insert(j.dispatch_lsn, End::Released);
                j.state = JobState::Pending;
                j.attempt -= 1;
                j.priority = *priority;
                j.run_at = *run_at;
                self.put(id, j);
            }
            Op::Bury {
                id,
                attempt,
                priority,
            } => {
                let mut j = self.in_flight(id, *attempt);
                self.ended_by.insert(j.dispatch_lsn, End::Released);
                j.state = JobState::Dead;
                j.priority = *priority;
                self.put(id, j);
            }
            Op::Kick { id } => {
                let mut j = self.job(id);
                assert_eq!(j.state, JobState::Pending, "kick of {id}");
                j.run_at = j.run_at.min(r.at);
                self.put(id, j);
            }
            Op::DeleteDead { id } => {
                let mut j = self.job(id);
                assert_eq!(j.state, JobState::Dead, "delete_dead of {id}");
                j.state = JobState::Cancelled;
                j.payload = None;
                self.put(id, j);
            }
        }
    }

    fn enqueue(&mut self, j: &NewJob) {
        assert!(!self.jobs.contains_key(j.id.as_str()) && !self.remembered.contains(j.id.as_str()));
        self.ever.insert(j.id.to_string());
        self.jobs.insert(
            j.id.to_string(),
            MJob {
                state: JobState::Pending,
                attempt: 0,
                max_attempts: j.max_attempts,
                priority: j.priority,
                queue: j.queue.to_string(),
                payload: Some(j.payload.as_bytes().to_vec()),
                last_error: None,
                run_at: j.run_at,
                started: false,
                dispatch_lsn: 0,
            },
        );
    }

    fn dispatch(&mut self, lsn: u64, id: &JobId, attempt: u32, started: bool) {
        let mut j = self.job(id);
        assert_eq!(j.state, JobState::Pending);
        assert_eq!(attempt, j.attempt + 1);
        assert!(
            attempt <= j.max_attempts,
            "never more attempts than allowed"
        );
        if started {
            self.suspect.remove(id.as_str());
        }
        j.state = JobState::InFlight;
        j.attempt = attempt;
        j.started = started;
        j.dispatch_lsn = lsn;
        self.put(id, j);
    }

    /// Job `id` (`j`, its failed attempt checked) retries or is dead.
    fn fail(&mut self, id: &JobId, mut j: MJob, retry_at: Option<u64>) {
        match retry_at {
            Some(t) => {
                assert!(
                    j.attempt < j.max_attempts,
                    "a retry is proposed only with attempts left"
                );
                j.state = JobState::Pending;
                j.run_at = t;
            }
            None => {
                assert!(
                    j.attempt == j.max_attempts || j.last_error.as_deref() == Some(GIVE_UP),
                    "dead only when attempts are used up, or a worker gave up"
                );
                j.state = JobState::Dead;
            }
        }
        self.put(id, j);
    }

    fn cancel(&mut self, id: &JobId, mut j: MJob) {
        match j.state {
            JobState::Pending => {}
            // Its attempt was handed out and never started (the driver
            // checks that when the core takes it back).
            JobState::InFlight => j.attempt -= 1,
            s => {
                panic!("cancel of a job {s:?}: only pending or waiting jobs are cancelled")
            }
        }
        j.state = JobState::Cancelled;
        j.payload = None;
        self.put(id, j);
    }

    fn requeue(&mut self, ids: &[JobId], at: u64) {
        for id in ids {
            let mut j = self.job(id);
            assert_eq!(j.state, JobState::Dead, "only dead jobs are requeued");
            j.state = JobState::Pending;
            j.attempt = 0;
            j.run_at = at;
            self.put(id, j);
        }
    }

    fn purge(&mut self, jobs: &[JobId], forget: &[JobId]) {
        for id in jobs {
            let j = self.jobs.remove(id.as_str()).expect("purged job exists");
            assert!(j.state.is_final(), "only final jobs are purged");
            self.remembered.insert(id.to_string());
        }
        for id in forget {
            assert!(
                self.remembered.remove(id.as_str()),
                "only remembered ids are forgotten"
            );
        }
    }

    fn purge_queue(&mut self, lsn: u64, queue: &str) {
        let mut cancelled = 0;
        for (id, j) in self.jobs.iter_mut() {
            if j.queue == queue && j.state == JobState::Pending {
                j.state = JobState::Cancelled;
                j.payload = None;
                self.suspect.remove(id);
                cancelled += 1;
            }
        }
        self.purged.insert(lsn, cancelled);
    }

    /// Whether `queue` hands out nothing at `now`.
    pub fn is_paused(&self, queue: &str, now: u64) -> bool {
        self.paused.get(queue).is_some_and(|&until| now < until)
    }

    /// A restart: only the jobs in flight whose start is not logged are
    /// suspect now (the flag is not durable).
    pub fn restart(&mut self) {
        self.suspect = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::InFlight && !j.started)
            .map(|(id, _)| id.clone())
            .collect();
    }
}
