//! The `demo` executor: simulated work whose duration and result are a pure
//! function of the job id and attempt number.
//!
//! No RNG state is kept: the same (id, attempt) always draws the same duration
//! and the same success or failure, in every run, build and simulator seed,
//! so a reference model can predict it with [`DemoExecutor::plan`].

use std::future::Future;
use std::time::Duration;

use beaver_core::{Execution, JobId, Outcome};

use super::Executor;

/// The longest simulated attempt accepted, in milliseconds (one hour).
pub const DEMO_DURATION_MS_MAX: u64 = 60 * 60 * 1000;

/// The error text of every simulated failure.
pub const DEMO_FAILURE: &str = "demo: simulated failure";

/// How the demo executor behaves: attempts take between `duration_ms_min`
/// and `duration_ms_max` (inclusive) and fail with probability `failure_rate`.
///
/// Guarantees (checked by [`DemoConfig::new`]): `min <= max <=`
/// [`DEMO_DURATION_MS_MAX`] and `0.0 <= failure_rate <= 1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoConfig {
    duration_ms_min: u64,
    duration_ms_max: u64,
    failure_rate: f64,
}

impl DemoConfig {
    /// Validates a configuration; the error says which bound is wrong.
    pub fn new(
        duration_ms_min: u64,
        duration_ms_max: u64,
        failure_rate: f64,
    ) -> Result<DemoConfig, String> {
        if duration_ms_min > duration_ms_max {
            return Err(format!(
                "the shortest demo duration ({duration_ms_min} ms) exceeds the longest ({duration_ms_max} ms)"
            ));
        }
        if duration_ms_max > DEMO_DURATION_MS_MAX {
            return Err(format!(
                "the longest demo duration is {duration_ms_max} ms; the limit is {DEMO_DURATION_MS_MAX} ms"
            ));
        }
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(format!(
                "the demo failure rate is {failure_rate}; give a number from 0.0 to 1.0"
            ));
        }
        Ok(DemoConfig {
            duration_ms_min,
            duration_ms_max,
            failure_rate,
        })
    }

    /// The shortest simulated attempt, in milliseconds.
    pub fn duration_ms_min(&self) -> u64 {
        self.duration_ms_min
    }

    /// The longest simulated attempt, in milliseconds.
    pub fn duration_ms_max(&self) -> u64 {
        self.duration_ms_max
    }

    /// The probability that an attempt fails, from 0.0 (never) to 1.0 (always).
    pub fn failure_rate(&self) -> f64 {
        self.failure_rate
    }
}

impl Default for DemoConfig {
    /// 10 to 100 ms per attempt, one attempt in ten fails.
    fn default() -> Self {
        DemoConfig {
            duration_ms_min: 10,
            duration_ms_max: 100,
            failure_rate: 0.1,
        }
    }
}

/// What the demo executor will do with one attempt, before any timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoPlan {
    /// How long the simulated work takes, within the configured range.
    pub duration_ms: u64,
    /// Whether the work fails once done.
    pub fails: bool,
}

impl DemoPlan {
    /// The time the attempt takes and its outcome under `timeout_ms`: work
    /// longer than the timeout ends at the timeout as [`Outcome::TimedOut`].
    pub fn run_within(&self, timeout_ms: u64) -> (u64, Outcome) {
        if self.duration_ms > timeout_ms {
            (timeout_ms, Outcome::TimedOut)
        } else if self.fails {
            (self.duration_ms, Outcome::Failed(DEMO_FAILURE.into()))
        } else {
            (self.duration_ms, Outcome::Succeeded)
        }
    }
}

/// Simulated work: sleeps with `tokio::time::sleep` (simulated time under
/// madsim) for the planned duration, then succeeds or fails with
/// [`DEMO_FAILURE`]; past `timeout_ms` it returns [`Outcome::TimedOut`] at the
/// timeout.
///
/// Guarantees: the outcome and the time taken depend only on the
/// configuration, the job id, the attempt and the timeout (see
/// [`DemoExecutor::plan`] and [`DemoPlan::run_within`]); no threads, no
/// state, dropping the future simply stops the sleep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoExecutor {
    config: DemoConfig,
}

impl DemoExecutor {
    /// A demo executor with this configuration.
    pub fn new(config: DemoConfig) -> DemoExecutor {
        DemoExecutor { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    /// What attempt `attempt` of job `id` will do: a pure function, stable
    /// across runs and platforms.
    pub fn plan(&self, id: &JobId, attempt: u32) -> DemoPlan {
        let seed = mix(fnv1a(id.as_str().as_bytes()) ^ mix(u64::from(attempt)));
        let span_ms = self.config.duration_ms_max - self.config.duration_ms_min;
        let duration_ms = self.config.duration_ms_min + mix(seed) % (span_ms + 1);
        // 53 random bits as a float in [0, 1): rate 0.0 never fails, 1.0 always does.
        let draw = (mix(seed ^ 0x5bd1_e995) >> 11) as f64 / (1u64 << 53) as f64;
        DemoPlan {
            duration_ms,
            fails: draw < self.config.failure_rate,
        }
    }
}

impl Executor for DemoExecutor {
    fn execute(&self, exec: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        let (elapsed_ms, outcome) = self
            .plan(&exec.id, exec.attempt)
            .run_within(exec.timeout_ms);
        async move {
            tokio::time::sleep(Duration::from_millis(elapsed_ms)).await;
            outcome
        }
    }
}

/// FNV-1a: a fixed, documented hash (std's hashers may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads every input bit over the whole output.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        JobId::parse(s).expect("valid id")
    }

    #[test]
    fn plans_are_pinned() {
        // Pins the derivation: a change here changes every demo run and sim seed.
        let demo = DemoExecutor::new(DemoConfig::new(0, 1000, 0.5).expect("valid"));
        let plans: Vec<DemoPlan> = (1..=3).map(|a| demo.plan(&id("job-1"), a)).collect();
        assert_eq!(plans, PINNED.to_vec());
    }

    const PINNED: [DemoPlan; 3] = [
        DemoPlan {
            duration_ms: 283,
            fails: true,
        },
        DemoPlan {
            duration_ms: 806,
            fails: true,
        },
        DemoPlan {
            duration_ms: 676,
            fails: false,
        },
    ];

    #[test]
    fn attempts_and_ids_draw_differently() {
        let demo = DemoExecutor::new(DemoConfig::new(0, 1_000_000, 0.5).expect("valid"));
        let mut durations: Vec<u64> = (1..=50)
            .map(|a| demo.plan(&id("a"), a).duration_ms)
            .collect();
        durations.extend((0..50).map(|i| demo.plan(&id(&format!("job-{i}")), 1).duration_ms));
        durations.sort_unstable();
        durations.dedup();
        assert!(
            durations.len() > 95,
            "only {} distinct durations",
            durations.len()
        );
    }

    #[test]
    fn failure_rate_is_roughly_honoured() {
        let demo = DemoExecutor::new(DemoConfig::new(0, 0, 0.25).expect("valid"));
        let fails = (0..4000)
            .filter(|i| demo.plan(&id(&format!("j{i}")), 1).fails)
            .count();
        assert!(
            (800..1200).contains(&fails),
            "{fails} of 4000 failed at rate 0.25"
        );
    }

    #[test]
    fn run_within_cuts_at_the_timeout() {
        let plan = DemoPlan {
            duration_ms: 50,
            fails: true,
        };
        assert_eq!(plan.run_within(49), (49, Outcome::TimedOut));
        assert_eq!(
            plan.run_within(50),
            (50, Outcome::Failed(DEMO_FAILURE.into()))
        );
        let plan = DemoPlan {
            duration_ms: 50,
            fails: false,
        };
        assert_eq!(plan.run_within(1000), (50, Outcome::Succeeded));
    }

    #[test]
    fn config_bounds() {
        assert!(DemoConfig::new(0, DEMO_DURATION_MS_MAX, 1.0).is_ok());
        assert!(DemoConfig::new(0, DEMO_DURATION_MS_MAX + 1, 0.0).is_err());
        assert!(DemoConfig::new(0, 1, -0.1).is_err());
        assert!(DemoConfig::new(0, 1, f64::INFINITY).is_err());
        let d = DemoConfig::default();
        assert_eq!(
            DemoConfig::new(d.duration_ms_min(), d.duration_ms_max(), d.failure_rate()),
            Ok(d)
        );
    }
}
