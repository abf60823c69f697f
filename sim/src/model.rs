//! The reference model: the durable records folded the simplest way.
//!
//! The same idea as the core's property-test model, but every broken rule is
//! returned as a violation (the simulator reports it with the seed) instead
//! of a panic.

use std::collections::{BTreeMap, BTreeSet};

use beaver_core::{JobState, Op, Record, StateCounts};

/// One job as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MJob {
    /// Lifecycle state.
    pub state: JobState,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Payload bytes while the payload is kept.
    pub payload: Option<usize>,
    /// Its queue.
    pub queue: String,
    /// In flight: its attempt's start is logged (it counts if a crash
    /// interrupts it).
    pub started: bool,
}

/// The error text of an attempt a restart interrupted (it counts).
pub const INTERRUPTED: &str = "interrupted: beaver stopped while this attempt ran";

/// The fold of the durable log.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Jobs not purged.
    pub jobs: BTreeMap<String, MJob>,
    /// Ids of purged jobs still remembered.
    pub remembered: BTreeSet<String>,
    /// Every id ever purged.
    pub purged: BTreeSet<String>,
    /// How often each id was enqueued or requeued (its attempts start
    /// again each time): executions are unique per (id, generation, attempt).
    pub generations: BTreeMap<String, u32>,
    /// The last LSN folded in.
    pub applied: u64,
    /// Jobs the last recovery gave back uncounted (in flight, start not
    /// logged), until their next counted attempt: never dispatched ahead.
    pub suspect: BTreeSet<String>,
}

impl Model {
    /// Folds one record; `Err` names the rule the log broke.
    pub fn apply(&mut self, r: &Record) -> Result<(), String> {
        if r.lsn != self.applied + 1 {
            return Err(format!(
                "the durable log jumps from LSN {} to {}",
                self.applied, r.lsn
            ));
        }
        self.applied = r.lsn;
        let lsn = r.lsn;
        match &r.op {
            Op::Enqueue { jobs } => {
                for j in jobs {
                    let id = j.id.as_str();
                    if self.jobs.contains_key(id) || self.remembered.contains(id) {
                        return Err(format!("LSN {lsn}: job {id} enqueued twice"));
                    }
                    *self.generations.entry(id.to_owned()).or_default() += 1;
                    self.jobs.insert(
                        id.to_owned(),
                        MJob {
                            state: JobState::Pending,
                            attempt: 0,
                            max_attempts: j.max_attempts,
                            payload: Some(j.payload.len()),
                            queue: j.queue.to_string(),
                            started: false,
                        },
                    );
                }
            }
            Op::Dispatch {
                id,
                attempt,
                started,
                ..
            } => {
                let suspect = self.suspect.contains(id.as_str());
                if suspect && !*started {
                    return Err(format!(
                        "LSN {lsn}: job {id}, whose last attempt recovery gave back uncounted, is dispatched ahead of a free worker (uncounted again: a job that kills the server when it starts would loop)"
                    ));
                }
                if *started {
                    self.suspect.remove(id.as_str());
                }
                let j = self.job(lsn, id.as_str())?;
                if j.state != JobState::Pending || *attempt != j.attempt + 1 {
                    return Err(format!(
                        "LSN {lsn}: dispatch of {id} attempt {attempt} but it is {:?} at attempt {}",
                        j.state, j.attempt
                    ));
                }
                if *attempt > j.max_attempts {
                    return Err(format!(
                        "LSN {lsn}: job {id} dispatched for attempt {attempt} of {}",
                        j.max_attempts
                    ));
                }
                j.state = JobState::InFlight;
                j.attempt = *attempt;
                j.started = *started;
            }
            Op::Start { id, attempt } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                if j.started {
                    return Err(format!(
                        "LSN {lsn}: start of {id} attempt {attempt}, counted already"
                    ));
                }
                j.started = true;
                self.suspect.remove(id.as_str());
            }
            Op::Complete { id, attempt } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                j.state = JobState::Completed;
                j.payload = None;
            }
            Op::Fail {
                id,
                attempt,
                retry_at,
                error,
            } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                if error == INTERRUPTED && !j.started {
                    return Err(format!(
                        "LSN {lsn}: job {id} attempt {attempt} counted as interrupted, but its start was never logged"
                    ));
                }
                // An external worker may give up: dead now, attempts left.
                let gave_up = error.ends_with(crate::external::GIVE_UP);
                match retry_at {
                    Some(_) if gave_up => {
                        return Err(format!(
                            "LSN {lsn}: job {id} retried after its worker gave up on attempt {attempt}"
                        ));
                    }
                    Some(_) if *attempt >= j.max_attempts => {
                        return Err(format!(
                            "LSN {lsn}: job {id} retried after attempt {attempt} of {}",
                            j.max_attempts
                        ));
                    }
                    Some(_) => j.state = JobState::Pending,
                    None if *attempt != j.max_attempts && !gave_up => {
                        return Err(format!(
                            "LSN {lsn}: job {id} dead after attempt {attempt} of {}",
                            j.max_attempts
                        ));
                    }
                    None => j.state = JobState::Dead,
                }
            }
            Op::Release { id, attempt } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                j.state = JobState::Pending;
                j.attempt -= 1;
            }
            Op::Cancel { id } => {
                let j = self.job(lsn, id.as_str())?;
                match j.state {
                    JobState::Pending => {}
                    // Handed out ahead, never started: the attempt is undone.
                    JobState::InFlight => j.attempt -= 1,
                    s => return Err(format!("LSN {lsn}: cancel of {id} while {s:?}")),
                }
                j.state = JobState::Cancelled;
                j.payload = None;
            }
            Op::Requeue { ids } => {
                for id in ids {
                    let j = self.job(lsn, id.as_str())?;
                    if j.state != JobState::Dead {
                        return Err(format!("LSN {lsn}: requeue of {id} while {:?}", j.state));
                    }
                    j.state = JobState::Pending;
                    j.attempt = 0;
                    *self.generations.entry(id.to_string()).or_default() += 1;
                }
            }
            Op::PauseQueue { .. } | Op::Checkpoint => {}
            Op::Return { id, attempt, .. } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                j.state = JobState::Pending;
                j.attempt -= 1;
            }
            Op::Bury { id, attempt, .. } => {
                let j = self.in_flight(lsn, id.as_str(), *attempt)?;
                j.state = JobState::Dead;
            }
            Op::Kick { id } => {
                let j = self.job(lsn, id.as_str())?;
                if j.state != JobState::Pending {
                    return Err(format!("LSN {lsn}: kick of {id} while {:?}", j.state));
                }
            }
            Op::DeleteDead { id } => {
                let j = self.job(lsn, id.as_str())?;
                if j.state != JobState::Dead {
                    return Err(format!("LSN {lsn}: delete of {id} while {:?}", j.state));
                }
                j.state = JobState::Cancelled;
                j.payload = None;
            }
            Op::PurgeQueue { queue } => {
                for (id, j) in self.jobs.iter_mut() {
                    if j.queue == queue.as_str() && j.state == JobState::Pending {
                        j.state = JobState::Cancelled;
                        j.payload = None;
                        self.suspect.remove(id);
                    }
                }
            }
            Op::Purge { jobs, forget } => {
                for id in jobs {
                    let Some(j) = self.jobs.remove(id.as_str()) else {
                        return Err(format!("LSN {lsn}: purge of unknown job {id}"));
                    };
                    if !j.state.is_final() {
                        return Err(format!("LSN {lsn}: purge of {id} while {:?}", j.state));
                    }
                    self.remembered.insert(id.to_string());
                    self.purged.insert(id.to_string());
                }
                for id in forget {
                    if !self.remembered.remove(id.as_str()) {
                        return Err(format!("LSN {lsn}: forgets {id}, which is not remembered"));
                    }
                }
            }
        }
        if !self.suspect.is_empty() {
            let jobs = &self.jobs;
            self.suspect
                .retain(|id| jobs.get(id).is_some_and(|j| !j.state.is_final()));
        }
        Ok(())
    }

    /// A recovery at the LSN folded so far: the jobs in flight whose
    /// start is not logged are given back uncounted, and are suspect until
    /// their next counted attempt (the mark is not durable: a recovery
    /// forgets the earlier ones).
    pub fn recovered(&mut self) -> u64 {
        self.suspect = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::InFlight && !j.started)
            .map(|(id, _)| id.clone())
            .collect();
        self.suspect.len() as u64
    }

    fn job(&mut self, lsn: u64, id: &str) -> Result<&mut MJob, String> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| format!("LSN {lsn}: record names unknown job {id}"))
    }

    fn in_flight(&mut self, lsn: u64, id: &str, attempt: u32) -> Result<&mut MJob, String> {
        let j = self.job(lsn, id)?;
        if j.state != JobState::InFlight || j.attempt != attempt {
            return Err(format!(
                "LSN {lsn}: outcome of {id} attempt {attempt} but it is {:?} at attempt {}",
                j.state, j.attempt
            ));
        }
        Ok(j)
    }

    /// Jobs per state.
    pub fn counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for j in self.jobs.values() {
            match j.state {
                JobState::Pending => c.pending += 1,
                JobState::InFlight => c.in_flight += 1,
                JobState::Completed => c.completed += 1,
                JobState::Dead => c.dead += 1,
                JobState::Cancelled => c.cancelled += 1,
            }
        }
        c
    }

    /// Payload bytes of pending and in-flight jobs.
    pub fn pending_payload_bytes(&self) -> u64 {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Pending | JobState::InFlight))
            .map(|j| j.payload.unwrap_or(0) as u64)
            .sum()
    }
}
