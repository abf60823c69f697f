//! The `exec` executor: `/bin/sh -c CMD` per attempt, in a process group of
//! its own that never outlives the attempt by more than the kill grace.
//!
//! Linux only and never under madsim: `tokio::process` does real I/O there.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use beaver_core::{Execution, Outcome, QueueName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;

use super::Executor;

mod command;
mod group;
mod output;
mod tail;
pub use command::check_runnable;
use group::ProcessGroup;
pub use group::{attempts_stopped, kill_running_attempts};
pub use output::{
    OUTPUT_LINE_BYTES_MAX, OUTPUT_LINES_BURST, OUTPUT_LINES_PER_SEC, OUTPUT_LINES_PER_SEC_TOTAL,
    OUTPUT_LOG_TARGET,
};
use output::{OutputLog, Stream};
use tail::Tail;

/// How many bytes of the end of a failed attempt's stderr its error keeps.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// The kill grace when none is configured: how long a handler has between
/// `SIGTERM` and `SIGKILL`. Shorter than the core's default lease slack
/// (5 s), so a timed-out handler is killed before its lease ends.
pub const DEFAULT_KILL_GRACE_MS: u64 = 3_000;

/// Variables with this prefix are beaver's own (the API token among them):
/// none reaches a job except the three set per attempt.
const ENV_PREFIX: &[u8] = b"BEAVER_";

/// How long to keep reading the output once the attempt's process group is
/// killed. Only a process that escaped the group (its own `setsid`) can hold
/// a pipe open longer, and it must not hold the attempt's outcome hostage.
const OUTPUT_DRAIN_GRACE_MS: u64 = 200;

/// The shell every command runs in.
const SHELL: &str = "/bin/sh";

/// Runs each attempt as `/bin/sh -c COMMAND`.
///
/// Guarantees, per attempt:
/// - a simple command naming a program (plain words, no shell syntax) is
///   run as `exec COMMAND`, so the program replaces the shell and is this
///   process's direct child; anything else runs under the shell as written;
/// - the direct child starts in a new session (so a new process group,
///   which it leads) and gets `SIGKILL` if the thread that spawned it dies,
///   which in a tokio runtime means when the server dies (worker threads
///   live as long as the runtime); processes it starts do not, unless they
///   set that up themselves;
/// - its environment is the server's minus every `BEAVER_*` variable, plus
///   `BEAVER_JOB_ID`, `BEAVER_ATTEMPT` and (when the engine names it)
///   `BEAVER_QUEUE`; its working directory is the server's;
/// - the payload's JSON bytes are written to its stdin, concurrently with
///   reading its output, and stdin is then closed; a child that does not
///   read its stdin cannot stall the attempt (the write error is ignored);
/// - its stdout and stderr lines go to the server's log (see
///   [`OUTPUT_LOG_TARGET`] for the bounds); of stderr the last
///   [`STDERR_TAIL_BYTES`] bytes are also kept for the attempt's error;
/// - exit status 0 is [`Outcome::Succeeded`]; anything else is
///   [`Outcome::Failed`] with `exit status N` or `killed by signal N (SIGX)`,
///   followed by `: ` and the stderr tail if there is one;
/// - past `timeout_ms` (counted from the first poll, spawning included) the
///   whole process group gets `SIGTERM`, and `SIGKILL` once the kill grace
///   has passed (or at once when the direct child exits); the outcome is
///   [`Outcome::TimedOut`] however the child ends after `SIGTERM`; a child
///   that has exited by the time the timer fires keeps its outcome;
/// - dropping the future (the lease ended, the shutdown grace ended) stops
///   the group the same way: `SIGTERM` unless already sent, `SIGKILL` at the
///   end of the kill grace, by a task of its own; [`attempts_stopped`]
///   waits for those;
/// - when the direct child exits, every process left in its group gets
///   `SIGKILL` at once, background children included; processes that left
///   the group themselves are not tracked;
/// - the child is reaped, at once when the future completes, by the
///   stopping task after the future is dropped;
/// - a shell that cannot be started gives [`Outcome::Failed`], never a panic.
#[derive(Debug, Clone)]
pub struct ExecExecutor {
    command: Arc<str>,
    /// What `sh -c` runs: the command, or `exec` and the command.
    shell_text: Arc<str>,
    kill_grace: Duration,
}

impl ExecExecutor {
    /// An executor for `command` with the default kill grace; the same
    /// checks as [`super::ExecutorConfig::exec`] (not whether the program
    /// exists: see [`check_runnable`]).
    pub fn new(command: impl Into<String>) -> Result<ExecExecutor, String> {
        let command = command.into();
        super::check_command(&command)?;
        Ok(ExecExecutor {
            shell_text: command::shell_text(&command).into(),
            command: command.into(),
            kill_grace: Duration::from_millis(DEFAULT_KILL_GRACE_MS),
        })
    }

    /// The same executor with another time between `SIGTERM` and `SIGKILL`
    /// (zero: `SIGKILL` at once).
    pub fn with_kill_grace(mut self, grace: Duration) -> ExecExecutor {
        self.kill_grace = grace;
        self
    }

    /// The shell command each attempt runs, as configured.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether the command is run as `exec COMMAND` (its program is then the
    /// direct child).
    pub fn execs_directly(&self) -> bool {
        *self.shell_text != *self.command
    }

    /// The time between `SIGTERM` and `SIGKILL`.
    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }
}

impl Executor for ExecExecutor {
    fn execute(&self, exec: Execution) -> impl Future<Output = Outcome> + Send + 'static {
        self.execute_in(exec, None)
    }

    fn wants_queue(&self) -> bool {
        true
    }

    fn execute_in(
        &self,
        exec: Execution,
        queue: Option<QueueName>,
    ) -> impl Future<Output = Outcome> + Send + 'static {
        let this = self.clone();
        async move { run(&this, exec, queue).await }
    }
}

/// What happened while an attempt ran.
enum Event {
    Exited(io::Result<ExitStatus>),
    Deadline,
    GraceOver,
    Fed,
}

/// How the wait for the child ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    TimedOut,
}

async fn run(exe: &ExecExecutor, exec: Execution, queue: Option<QueueName>) -> Outcome {
    // The clock starts before the spawn: starting the shell counts too.
    let deadline = tokio::time::sleep(Duration::from_millis(exec.timeout_ms));
    let (mut group, killed) = match spawn(exe, &exec, queue.as_ref()) {
        Ok(spawned) => spawned,
        Err(e) => return Outcome::Failed(format!("could not start `{SHELL} -c` for the job: {e}")),
    };
    let stdin = group.child().stdin.take();
    let (stdout, stderr) = (group.child().stdout.take(), group.child().stderr.take());
    // The output is read by a task of its own, which outlives this future
    // if it is dropped: a handler stopped with SIGTERM can still log while
    // it cleans up (and a write to a closed pipe would kill it).
    let log = OutputLog::new(exec.id.clone(), exec.attempt, queue);
    let output = tokio::spawn(drain_until_killed(stdout, stderr, log, killed));
    let ended = {
        let feed = pin!(feed_stdin(stdin, exec.payload.as_bytes()));
        let ended = supervise(&mut group, deadline, feed).await;
        // No await since the wait returned: the group id cannot have been
        // reused yet (see `ProcessGroup::kill`).
        group.kill();
        ended
    };
    let tail = match output.await {
        Ok(tail) => tail,
        Err(_) => Tail::new(STDERR_TAIL_BYTES),
    };
    match ended {
        Ended::TimedOut => {
            // Reap the killed child; SIGKILL cannot be caught, so this is quick.
            let _ = group.child().wait().await;
            Outcome::TimedOut
        }
        Ended::Exited(Err(e)) => {
            Outcome::Failed(format!("could not wait for the job's process: {e}"))
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

/// Feeds stdin until the child exits, or until the timeout and the kill
/// grace after it have passed.
async fn supervise(
    group: &mut ProcessGroup,
    deadline: tokio::time::Sleep,
    mut feed: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let mut deadline = pin!(deadline);
    let mut last_call = pin!(tokio::time::sleep(Duration::ZERO));
    let mut fed = false;
    let (mut terminated, mut killed) = (false, false);
    loop {
        let event = tokio::select! {
            biased;
            status = group.child().wait() => Event::Exited(status),
            () = &mut deadline, if !terminated => Event::Deadline,
            () = &mut last_call, if terminated && !killed => Event::GraceOver,
            () = &mut feed, if !fed => Event::Fed,
        };
        match event {
            Event::Exited(_) if terminated => return Ended::TimedOut,
            Event::Exited(status) => return Ended::Exited(status),
            Event::Deadline => {
                terminated = true;
                let at = group.terminate();
                last_call.as_mut().reset(at);
            }
            Event::GraceOver => {
                // The wait above returns once the child dies.
                killed = true;
                group.kill();
            }
            Event::Fed => fed = true,
        }
    }
}

/// Starts the shell in its own session with the attempt's environment;
/// the receiver resolves once its group got `SIGKILL`.
fn spawn(
    exe: &ExecExecutor,
    exec: &Execution,
    queue: Option<&QueueName>,
) -> io::Result<(ProcessGroup, oneshot::Receiver<()>)> {
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(&*exe.shell_text);
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.env("BEAVER_JOB_ID", exec.id.as_str())
        .env("BEAVER_ATTEMPT", exec.attempt.to_string());
    if let Some(q) = queue {
        cmd.env("BEAVER_QUEUE", q.as_str());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    let open_files = super::open_files::for_handlers();
    // SAFETY: `pre_exec` requires a closure that is safe to run in the forked
    // child before exec; `enter_own_session` makes only async-signal-safe
    // system calls and neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || enter_own_session(parent, open_files));
    }
    let child = cmd.spawn()?;
    let pgid = child
        .id()
        .and_then(|pid| libc::pid_t::try_from(pid).ok())
        .ok_or_else(|| io::Error::other("the spawned shell has no process id"))?;
    Ok(ProcessGroup::new(child, pgid, exe.kill_grace))
}

/// Runs in the child between fork and exec: only async-signal-safe calls.
/// `open_files`: the open-file limits to give the handler back (the
/// server's own were raised: [`super::open_files::raise`]).
fn enter_own_session(parent: libc::pid_t, open_files: Option<libc::rlimit>) -> io::Result<()> {
    // SAFETY: setsid, prctl(PR_SET_PDEATHSIG, PR_SET_THP_DISABLE), getppid
    // and setrlimit are plain system calls, async-signal-safe; setrlimit
    // only reads the struct on this stack.
    unsafe {
        // A new session makes the child a process-group leader with
        // pgid == pid, so one kill(-pgid) reaches everything it starts.
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        // The server turns transparent huge pages off for itself
        // (`beaver_cli::pages`); a handler gets the system's setting. Kept
        // when the kernel refuses: only slower.
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
        // Lowering the soft limit back needs no privilege; kept when the
        // kernel refuses: the handler then has more, never fewer.
        if let Some(lim) = open_files {
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        // Kept across execve (beaver never runs set-user-ID programs
        // itself), so it reaches the program an `exec` hands over to.
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

/// Writes the payload to the child's stdin, then closes it.
async fn feed_stdin(stdin: Option<ChildStdin>, payload: &[u8]) {
    let Some(mut stdin) = stdin else { return };
    // A child may exit or close stdin without reading it all; the write then
    // fails with EPIPE. That is not the attempt's error: its exit status is.
    let _ = stdin.write_all(payload).await;
}

/// Reads the output to its end, or until [`OUTPUT_DRAIN_GRACE_MS`] after
/// the group got `SIGKILL` (only a process that left the group can hold a
/// pipe open longer), and returns stderr's tail.
async fn drain_until_killed(
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    mut log: OutputLog,
    mut killed: oneshot::Receiver<()>,
) -> Tail {
    let mut tail = Tail::new(STDERR_TAIL_BYTES);
    {
        let mut drain = pin!(drain_output(stdout, stderr, &mut tail, &mut log));
        tokio::select! {
            biased;
            () = &mut drain => {}
            _ = &mut killed => {
                let grace = Duration::from_millis(OUTPUT_DRAIN_GRACE_MS);
                let _ = tokio::time::timeout(grace, drain).await;
            }
        }
    }
    drop(log);
    tail
}

/// Reads stdout and stderr to their ends, logging their lines and keeping
/// stderr's tail.
async fn drain_output(
    mut stdout: Option<ChildStdout>,
    mut stderr: Option<ChildStderr>,
    tail: &mut Tail,
    log: &mut OutputLog,
) {
    let mut out_buf = vec![0; 16 * 1024];
    let mut err_buf = vec![0; 16 * 1024];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            biased;
            n = read_some(&mut stderr, &mut err_buf) => match n {
                Some(n) => {
                    tail.push(&err_buf[..n]);
                    log.push(Stream::Stderr, &err_buf[..n]);
                }
                None => stderr = None,
            },
            n = read_some(&mut stdout, &mut out_buf) => match n {
                Some(n) => log.push(Stream::Stdout, &out_buf[..n]),
                None => stdout = None,
            },
        }
    }
}

/// One read from `pipe`: `Some(bytes read)`, or `None` at its end (or on an
/// error); pending forever once the pipe is gone.
async fn read_some(pipe: &mut Option<impl AsyncRead + Unpin>, buf: &mut [u8]) -> Option<usize> {
    let Some(p) = pipe else {
        return std::future::pending().await;
    };
    loop {
        match p.read(buf).await {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
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
