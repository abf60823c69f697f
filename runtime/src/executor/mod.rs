//! Executors: what runs one attempt of a job.
//!
//! The runtime hands every [`Execution`] the core emits to an [`Executor`] and
//! feeds the [`Outcome`] back to the core as `Input::Outcome`. Three exist:
//!
//! - [`ExecExecutor`] (Linux, real builds only): `/bin/sh -c CMD` per attempt.
//! - [`DemoExecutor`]: simulated work with a duration and failure rate derived
//!   from the job id and attempt, so it behaves the same under madsim.
//! - [`NoopExecutor`]: succeeds at once, for benchmarks.
//!
//! [`ExecutorConfig`] names one of them (what `beaver run` flags select) and
//! [`ExecutorConfig::build`] turns it into an [`AnyExecutor`].

use std::future::Future;

use beaver_core::{Execution, Outcome, QueueName};

mod demo;
#[cfg(all(target_os = "linux", not(madsim)))]
mod exec;
mod noop;
#[cfg(all(target_os = "linux", not(madsim)))]
pub mod open_files;

pub use demo::{DEMO_DURATION_MS_MAX, DEMO_FAILURE, DemoConfig, DemoExecutor, DemoPlan};
#[cfg(all(target_os = "linux", not(madsim)))]
pub use exec::{
    DEFAULT_KILL_GRACE_MS, ExecExecutor, OUTPUT_LINE_BYTES_MAX, OUTPUT_LINES_BURST,
    OUTPUT_LINES_PER_SEC, OUTPUT_LINES_PER_SEC_TOTAL, OUTPUT_LOG_TARGET, STDERR_TAIL_BYTES,
    attempts_stopped, check_runnable, kill_running_attempts,
};
pub use noop::NoopExecutor;

/// The longest command the `exec` executor accepts, in bytes. Linux refuses a
/// single argument above 128 KiB; commands are meant to be short.
pub const COMMAND_BYTES_MAX: usize = 64 * 1024;

/// Runs one attempt of a job.
///
/// Contract for every implementation:
/// - the attempt starts when the returned future is first polled, not when
///   `execute` is called;
/// - the future resolves within about `exec.timeout_ms` of its first poll:
///   an attempt still running then is stopped and gives
///   [`Outcome::TimedOut`] (the executor enforces the timeout itself; the
///   caller need not wrap it);
/// - dropping the future stops the attempt (for `exec`: its whole process
///   group is killed), so the runtime aborts an attempt by dropping it;
/// - it never panics on the job's behalf: whatever goes wrong with the job
///   becomes [`Outcome::Failed`].
///
/// The lease is the core's business: it counts from the attempt's start
/// (the runtime reports `Input::Started` when a worker takes it), and when
/// it expires the core emits `Effect::Abort` and the runtime drops the future.
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt; see the trait docs for what is guaranteed.
    fn execute(&self, exec: Execution) -> impl Future<Output = Outcome> + Send + 'static;

    /// Whether [`Executor::execute_in`] uses the job's queue: the engine
    /// looks it up only for executors that do.
    fn wants_queue(&self) -> bool {
        false
    }

    /// Runs one attempt of a job of `queue` (`None` when the caller did not
    /// look it up), with the guarantees of [`Executor::execute`]; the engine
    /// calls this one. By default the queue is not used.
    fn execute_in(
        &self,
        exec: Execution,
        queue: Option<QueueName>,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let _ = queue;
        self.execute(exec)
    }
}

/// Which executor to run, as chosen on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorConfig {
    /// Run `/bin/sh -c command` per attempt (Linux, real builds only).
    Exec {
        /// The shell command, 1 to [`COMMAND_BYTES_MAX`] bytes, no NUL byte.
        command: String,
        /// Time between `SIGTERM` and `SIGKILL` when an attempt is stopped.
        kill_grace_ms: u64,
    },
    /// Simulated work.
    Demo(DemoConfig),
    /// Succeed at once.
    Noop,
}

impl ExecutorConfig {
    /// An `exec` configuration; refuses an empty or blank command, one longer
    /// than [`COMMAND_BYTES_MAX`] bytes, or one containing a NUL byte.
    pub fn exec(command: impl Into<String>) -> Result<ExecutorConfig, String> {
        let command = command.into();
        check_command(&command)?;
        Ok(ExecutorConfig::Exec {
            command,
            kill_grace_ms: DEFAULT_KILL_GRACE_MS,
        })
    }

    /// The same configuration with another kill grace (only `exec` has one).
    pub fn with_kill_grace_ms(mut self, ms: u64) -> ExecutorConfig {
        if let ExecutorConfig::Exec { kill_grace_ms, .. } = &mut self {
            *kill_grace_ms = ms;
        }
        self
    }

    /// The kill grace of an `exec` configuration; `None` for the others.
    pub fn kill_grace_ms(&self) -> Option<u64> {
        match self {
            ExecutorConfig::Exec { kill_grace_ms, .. } => Some(*kill_grace_ms),
            _ => None,
        }
    }

    /// A `demo` configuration: attempts take `duration_ms_min..=duration_ms_max`
    /// and fail with probability `failure_rate`; see [`DemoConfig::new`].
    pub fn demo(
        duration_ms_min: u64,
        duration_ms_max: u64,
        failure_rate: f64,
    ) -> Result<ExecutorConfig, String> {
        DemoConfig::new(duration_ms_min, duration_ms_max, failure_rate).map(ExecutorConfig::Demo)
    }

    /// Builds the executor. Fails (with a message for the operator) only for
    /// `exec`: where processes cannot be run (off Linux, or under madsim),
    /// or when the command cannot run at all ([`check_runnable`]: a syntax
    /// error, or a program that does not exist or is not executable).
    pub fn build(&self) -> Result<AnyExecutor, String> {
        match self {
            #[cfg(all(target_os = "linux", not(madsim)))]
            ExecutorConfig::Exec {
                command,
                kill_grace_ms,
            } => {
                check_runnable(command)?;
                let grace = std::time::Duration::from_millis(*kill_grace_ms);
                ExecExecutor::new(command.clone())
                    .map(|e| AnyExecutor::Exec(e.with_kill_grace(grace)))
            }
            #[cfg(not(all(target_os = "linux", not(madsim))))]
            ExecutorConfig::Exec { .. } => Err(
                "the exec executor runs only on Linux outside the simulator; use demo or noop"
                    .into(),
            ),
            ExecutorConfig::Demo(config) => Ok(AnyExecutor::Demo(DemoExecutor::new(*config))),
            ExecutorConfig::Noop => Ok(AnyExecutor::Noop(NoopExecutor)),
        }
    }
}

/// The default kill grace where the `exec` executor does not exist.
#[cfg(not(all(target_os = "linux", not(madsim))))]
pub const DEFAULT_KILL_GRACE_MS: u64 = 3_000;

impl std::fmt::Display for ExecutorConfig {
    /// How the start-up log names it: `exec `CMD` (kill grace 3000 ms)`,
    /// `demo (20-200 ms per attempt, failure rate 0.1)` or `noop`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorConfig::Exec {
                command,
                kill_grace_ms,
            } => write!(f, "exec `{command}` (kill grace {kill_grace_ms} ms)"),
            ExecutorConfig::Demo(d) => write!(
                f,
                "demo ({}-{} ms per attempt, failure rate {})",
                d.duration_ms_min(),
                d.duration_ms_max(),
                d.failure_rate()
            ),
            ExecutorConfig::Noop => f.write_str("noop"),
        }
    }
}

/// Checks a command for [`ExecutorConfig::exec`] and [`ExecExecutor::new`].
#[cfg_attr(not(all(target_os = "linux", not(madsim))), allow(dead_code))]
fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("the command is empty; give a shell command such as `./handle-job.sh`".into());
    }
    if command.len() > COMMAND_BYTES_MAX {
        return Err(format!(
            "the command is {} bytes long; the limit is {COMMAND_BYTES_MAX}; put it in a script",
            command.len()
        ));
    }
    if command.contains('\0') {
        return Err("the command contains a NUL byte, which no process argument can hold".into());
    }
    Ok(())
}

/// One of the executors, chosen at run time by [`ExecutorConfig::build`].
///
/// It is an [`Executor`] itself, with exactly the guarantees of the variant it
/// holds, and adds no allocation per attempt.
#[derive(Debug, Clone)]
pub enum AnyExecutor {
    /// See [`ExecExecutor`].
    #[cfg(all(target_os = "linux", not(madsim)))]
    Exec(ExecExecutor),
    /// See [`DemoExecutor`].
    Demo(DemoExecutor),
    /// See [`NoopExecutor`].
    Noop(NoopExecutor),
}

impl Executor for AnyExecutor {
    fn execute(&self, exec: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        self.execute_in(exec, None)
    }

    fn wants_queue(&self) -> bool {
        match self {
            #[cfg(all(target_os = "linux", not(madsim)))]
            AnyExecutor::Exec(e) => e.wants_queue(),
            AnyExecutor::Demo(_) | AnyExecutor::Noop(_) => false,
        }
    }

    fn execute_in(
        &self,
        exec: Execution,
        queue: Option<QueueName>,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        #[cfg(not(all(target_os = "linux", not(madsim))))]
        let _ = &queue;
        // Each variant's future is inert until polled, so creating the chosen
        // one here and awaiting it below starts nothing early.
        let attempt = match self {
            #[cfg(all(target_os = "linux", not(madsim)))]
            AnyExecutor::Exec(e) => Attempt::Exec(e.execute_in(exec, queue)),
            AnyExecutor::Demo(e) => Attempt::Demo(e.execute(exec)),
            AnyExecutor::Noop(e) => Attempt::Noop(e.execute(exec)),
        };
        async move {
            match attempt {
                #[cfg(all(target_os = "linux", not(madsim)))]
                Attempt::Exec(f) => f.await,
                Attempt::Demo(f) => f.await,
                Attempt::Noop(f) => f.await,
            }
        }
    }
}

/// The future of whichever executor [`AnyExecutor`] holds.
enum Attempt<#[cfg(all(target_os = "linux", not(madsim)))] E, D, N> {
    #[cfg(all(target_os = "linux", not(madsim)))]
    Exec(E),
    Demo(D),
    Noop(N),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_config_refuses_bad_commands() {
        assert!(ExecutorConfig::exec("").is_err());
        assert!(ExecutorConfig::exec("  \n").is_err());
        assert!(ExecutorConfig::exec("echo\0hi").is_err());
        assert!(ExecutorConfig::exec("x".repeat(COMMAND_BYTES_MAX + 1)).is_err());
        assert_eq!(
            ExecutorConfig::exec("true"),
            Ok(ExecutorConfig::Exec {
                command: "true".into(),
                kill_grace_ms: DEFAULT_KILL_GRACE_MS,
            })
        );
    }

    #[test]
    fn demo_config_is_validated() {
        assert!(ExecutorConfig::demo(10, 5, 0.0).is_err());
        assert!(ExecutorConfig::demo(0, 5, 1.5).is_err());
        assert!(ExecutorConfig::demo(0, 5, f64::NAN).is_err());
        assert!(ExecutorConfig::demo(0, 5, 0.5).is_ok());
    }

    #[test]
    fn every_config_builds() {
        assert!(matches!(
            ExecutorConfig::Noop.build(),
            Ok(AnyExecutor::Noop(_))
        ));
        let demo = ExecutorConfig::demo(1, 2, 0.0).expect("valid");
        assert!(matches!(demo.build(), Ok(AnyExecutor::Demo(_))));
        let exec = ExecutorConfig::exec("true").expect("valid").build();
        if cfg!(all(target_os = "linux", not(madsim))) {
            assert!(exec.is_ok());
        } else {
            assert!(exec.is_err());
        }
    }
}
