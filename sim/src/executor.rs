//! A seeded executor: each attempt succeeds, fails or hangs past its
//! timeout, as drawn from (seed, job, attempt), and takes a drawn time.
//!
//! At the start of every attempt it checks the execution oracles: the
//! attempt's dispatch record is durable (the model, folded to the durable
//! LSN, shows the job in flight at this attempt), no attempt runs twice,
//! and no job runs more attempts than it is allowed.
//!
//! One job of a run may be a *crasher*: the moment an attempt of it
//! starts, its node dies (killed from within, so nothing more of that
//! incarnation runs) and the harness is told, to crash and restart it.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use beaver_core::{Execution, JobState, Outcome};
use beaver_runtime::Executor;

use crate::world::Shared;

/// The simulator's executor.
#[derive(Debug, Clone)]
pub struct SimExecutor {
    /// Observations and oracles.
    pub world: Shared,
    /// The run's seed.
    pub seed: u64,
    /// Weights of success, failure, hang.
    pub outcomes: [u32; 3],
    /// The job that kills the server when it starts, if the run has one.
    pub crasher: Option<Crasher>,
}

/// A job that kills its node when an attempt of it starts.
#[derive(Debug, Clone)]
pub struct Crasher {
    /// The job's id.
    pub id: String,
    /// The node the engine runs on.
    pub node: madsim::task::NodeId,
    /// Tells the harness which incarnation died.
    pub died: tokio::sync::mpsc::UnboundedSender<u32>,
    /// The engine's incarnation.
    pub incarnation: u32,
}

fn draw(seed: u64, id: &str, attempt: u32, salt: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (seed, id, attempt, salt).hash(&mut h);
    h.finish()
}

impl SimExecutor {
    fn check(&self, x: &Execution) {
        let mut w = self.world.lock();
        let id = x.id.as_str();
        w.log(format!("exec  {id} attempt {}", x.attempt));
        let generation = w.model.generations.get(id).copied().unwrap_or(0);
        let key = (id.to_owned(), generation, x.attempt);
        let seen = w.executions.entry(key).or_default();
        *seen += 1;
        let twice = *seen > 1;
        match w.model.jobs.get(id) {
            Some(j) if j.state == JobState::InFlight && j.attempt == x.attempt => {
                if x.attempt > j.max_attempts {
                    let max = j.max_attempts;
                    w.violate(format!("job {id} runs attempt {} of {max}", x.attempt));
                }
            }
            other => {
                let had = other.map(|j| format!("{:?} at attempt {}", j.state, j.attempt));
                w.violate(format!(
                    "job {id} attempt {} started, but its dispatch is not durable (the durable state has {})",
                    x.attempt,
                    had.unwrap_or_else(|| "no such job".into())
                ));
            }
        }
        if twice {
            w.violate(format!("job {id} attempt {} ran twice", x.attempt));
        }
    }
}

impl Executor for SimExecutor {
    fn execute(&self, x: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        let me = self.clone();
        async move {
            me.check(&x);
            if let Some(c) = me.crasher.as_ref().filter(|c| c.id == x.id.as_str()) {
                me.world.lock().log(format!(
                    "crasher {} attempt {} kills the server as it starts",
                    c.id, x.attempt
                ));
                madsim::runtime::Handle::current().kill(c.node);
                let _ = c.died.send(c.incarnation);
                std::future::pending::<()>().await;
            }
            let [s, f, h] = me.outcomes;
            let total = u64::from(s + f + h).max(1);
            let pick = draw(me.seed, x.id.as_str(), x.attempt, 1) % total;
            let timeout = x.timeout_ms.max(1);
            let took = draw(me.seed, x.id.as_str(), x.attempt, 2) % (timeout * 9 / 10).max(1);
            let outcome = if pick < u64::from(s) {
                tokio::time::sleep(Duration::from_millis(took)).await;
                Outcome::Succeeded
            } else if pick < u64::from(s + f) {
                tokio::time::sleep(Duration::from_millis(took)).await;
                Outcome::Failed(format!("simulated failure of attempt {}", x.attempt))
            } else {
                // Hangs: the executor enforces the timeout itself.
                tokio::time::sleep(Duration::from_millis(timeout)).await;
                me.world.lock().mark("job: timed out");
                Outcome::TimedOut
            };
            let mut w = me.world.lock();
            w.log(format!(
                "done  {} attempt {}: {outcome:?}",
                x.id.as_str(),
                x.attempt
            ));
            outcome
        }
    }
}
