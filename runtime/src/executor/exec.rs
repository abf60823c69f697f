//! The `exec` executor: `/bin/sh -c CMD` per attempt, in a process group of
//! its own that never outlives the attempt.
//!
//! Linux only and never under madsim: `tokio::process` does real I/O there.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beaver_core::{Execution, Outcome};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};

use super::Executor;

mod tail;
use tail::Tail;

/// How many bytes of the end of a failed attempt's stderr its error keeps.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// Variables with this prefix are beaver's own (the API token among them):
/// none reaches a job except the two set per attempt.
const ENV_PREFIX: &[u8] = b"BEAVER_";

/// How long to keep reading stderr once the attempt's process group is
/// killed. Only a process that escaped the group (its own `setsid`) can hold
/// the pipe open longer, and it must not hold the attempt's outcome hostage.
const STDERR_DRAIN_GRACE_MS: u64 = 200;

/// The shell every command runs in.
const SHELL: &str = "/bin/sh";

/// The process groups of the attempts under way in this process.
static LIVE_GROUPS: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());

fn live_groups() -> std::sync::MutexGuard<'static, BTreeSet<libc::pid_t>> {
    // The set stays consistent even if a holder panicked (one insert or
    // remove at a time).
    LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `SIGKILL` to the whole process group of every attempt under way,
/// background children included, and returns how many groups there were.
/// For a process about to exit at once (a second shutdown signal): the
/// shells would die with it (their parent-death signal), the processes they
/// started would not.
pub fn kill_running_attempts() -> usize {
    let groups = live_groups();
    groups.iter().for_each(|&pgid| kill_group(pgid));
    groups.len()
}

/// Sends `SIGKILL` to every process in the group `pgid`.
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill has no memory arguments; a negative pid addresses the
    // process group. ESRCH (group already empty) is fine.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Runs each attempt as `/bin/sh -c COMMAND`.
///
/// Guarantees, per attempt:
/// - the shell starts in a new session (so a new process group, led by the
///   shell) and gets `SIGKILL` if the thread that spawned it dies, which in a
///   tokio runtime means when the server dies (worker threads live as long as
///   the runtime);
/// - its environment is the server's minus every `BEAVER_*` variable, plus
///   `BEAVER_JOB_ID` and `BEAVER_ATTEMPT`;
/// - the payload's JSON bytes are written to its stdin, concurrently with
///   reading its stderr, and stdin is then closed; a child that does not read
///   its stdin cannot stall the attempt (the write error is ignored);
/// - stdout goes to `/dev/null`; of stderr only the last
///   [`STDERR_TAIL_BYTES`] bytes are kept, however much is written;
/// - exit status 0 is [`Outcome::Succeeded`]; anything else is
///   [`Outcome::Failed`] with `exit status N` or `killed by signal N (SIGX)`,
///   followed by `: ` and the stderr tail if there is one;
/// - past `timeout_ms` (counted from the first poll, spawning included) the
///   whole process group is killed and the outcome is [`Outcome::TimedOut`];
///   a shell that has exited by the time the timer fires keeps its outcome;
/// - when the attempt ends for any reason (exit, timeout, or the future being
///   dropped) every process left in its group gets `SIGKILL`, background
///   children included; processes that left the group themselves are not
///   tracked;
/// - the shell is reaped: at once when the future completes, by tokio's orphan
///   reaper soon after the future is dropped;
/// - a shell that cannot be started gives [`Outcome::Failed`], never a panic.
#[derive(Debug, Clone)]
pub struct ExecExecutor {
    command: Arc<str>,
}

impl ExecExecutor {
    /// An executor for `command`; the same checks as
    /// [`super::ExecutorConfig::exec`].
    pub fn new(command: impl Into<String>) -> Result<ExecExecutor, String> {
        let command = command.into();
        super::check_command(&command)?;
        Ok(ExecExecutor {
            command: command.into(),
        })
    }

    /// The shell command each attempt runs.
    pub fn command(&self) -> &str {
        &self.command
    }
}

impl Executor for ExecExecutor {
    fn execute(&self, exec: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        let command = Arc::clone(&self.command);
        async move { run(&command, exec).await }
    }
}

/// How the wait for the shell ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    TimedOut,
}

async fn run(command: &str, exec: Execution) -> Outcome {
    // The clock starts before the spawn: starting the shell counts too.
    let deadline = tokio::time::sleep(Duration::from_millis(exec.timeout_ms));
    let mut group = match spawn(command, &exec) {
        Ok(group) => group,
        Err(e) => return Outcome::Failed(format!("could not start `{SHELL} -c` for the job: {e}")),
    };
    let stdin = group.child.stdin.take();
    let stderr = group.child.stderr.take();
    let mut tail = Tail::new(STDERR_TAIL_BYTES);

    let ended = {
        let feed = feed_stdin(stdin, exec.payload.as_bytes());
        let drain = drain_stderr(stderr, &mut tail);
        tokio::pin!(deadline, feed, drain);
        let (mut fed, mut drained) = (false, false);
        let ended = loop {
            tokio::select! {
                biased;
                status = group.child.wait() => break Ended::Exited(status),
                () = &mut deadline => break Ended::TimedOut,
                () = &mut feed, if !fed => fed = true,
                () = &mut drain, if !drained => drained = true,
            }
        };
        // No await since the wait returned: the group id cannot have been
        // reused yet (see `ProcessGroup::kill`).
        group.kill();
        if !drained && matches!(ended, Ended::Exited(_)) {
            let grace = Duration::from_millis(STDERR_DRAIN_GRACE_MS);
            let _ = tokio::time::timeout(grace, &mut drain).await;
        }
        ended
    };

    match ended {
        Ended::TimedOut => {
            // Reap the killed shell; SIGKILL cannot be caught, so this is quick.
            let _ = group.child.wait().await;
            Outcome::TimedOut
        }
        Ended::Exited(Err(e)) => {
            Outcome::Failed(format!("could not wait for the job's shell: {e}"))
        }
        Ended::Exited(Ok(status)) if status.success() => Outcome::Succeeded,
        Ended::Exited(Ok(status)) => {
            let tail = tail.into_text();
            let how = describe(status);
            Outcome::Failed(if tail.is_empty() {
                how
            } else {
                format!("{how}: {tail}")
            })
        }
    }
}

/// Starts the shell in its own session with the attempt's environment.
fn spawn(command: &str, exec: &Execution) -> io::Result<ProcessGroup> {
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(command);
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.env("BEAVER_JOB_ID", exec.id.as_str())
        .env("BEAVER_ATTEMPT", exec.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: `pre_exec` requires a closure that is safe to run in the forked
    // child before exec; `enter_own_session` makes only async-signal-safe
    // system calls and neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || enter_own_session(parent));
    }
    let child = cmd.spawn()?;
    let pgid = child
        .id()
        .and_then(|pid| libc::pid_t::try_from(pid).ok())
        .ok_or_else(|| io::Error::other("the spawned shell has no process id"))?;
    live_groups().insert(pgid);
    Ok(ProcessGroup {
        child,
        pgid,
        live: true,
    })
}

/// Runs in the child between fork and exec: only async-signal-safe calls.
fn enter_own_session(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: setsid, prctl(PR_SET_PDEATHSIG) and getppid are plain system
    // calls without pointer arguments, async-signal-safe.
    unsafe {
        // A new session makes the shell a process-group leader with
        // pgid == pid, so one kill(-pgid) reaches everything it starts.
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
        // The server may have died before the prctl: then the signal will
        // never come, so do not start at all.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// The attempt's shell and its process group; dropping it kills the group.
struct ProcessGroup {
    /// Dropped only after `Drop::drop` killed the group, so tokio's orphan
    /// reaper (which takes an unreaped child on drop) gets a dying shell.
    child: Child,
    pgid: libc::pid_t,
    /// Whether the group may still hold processes we must kill.
    live: bool,
}

impl ProcessGroup {
    /// Sends `SIGKILL` to every process in the group, once.
    ///
    /// Called either before the shell is reaped (its pid, which is the group
    /// id, cannot be reused while it is a zombie) or in the same poll right
    /// after reaping it: the id could then be reused only if the kernel
    /// cycled through the whole pid space and the new process made itself a
    /// group leader within those microseconds.
    fn kill(&mut self) {
        if std::mem::take(&mut self.live) {
            live_groups().remove(&self.pgid);
            kill_group(self.pgid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the payload to the child's stdin, then closes it.
async fn feed_stdin(stdin: Option<ChildStdin>, payload: &[u8]) {
    let Some(mut stdin) = stdin else { return };
    // A child may exit or close stdin without reading it all; the write then
    // fails with EPIPE. That is not the attempt's error: its exit status is.
    let _ = stdin.write_all(payload).await;
}

/// Reads stderr to its end, keeping the tail.
async fn drain_stderr(stderr: Option<ChildStderr>, tail: &mut Tail) {
    let Some(mut stderr) = stderr else { return };
    let mut chunk = vec![0; 16 * 1024];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => tail.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// `exit status N` or `killed by signal N (SIGX)`.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(signal) = status.signal() {
        match signal_name(signal) {
            Some(name) => format!("killed by signal {signal} ({name})"),
            None => format!("killed by signal {signal}"),
        }
    } else {
        status.to_string()
    }
}

fn signal_name(signal: libc::c_int) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_described() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(describe(ExitStatus::from_raw(40)), "killed by signal 40");
    }
}
