//! The `exec` executor against real processes: exit codes, the stderr tail,
//! timeouts and process groups, large payloads, dropping the future.
#![cfg(all(target_os = "linux", not(madsim)))]

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::time::{Duration, Instant};

use beaver_core::{Execution, JobId, Outcome, Payload};
use beaver_runtime::executor::{ExecExecutor, Executor, STDERR_TAIL_BYTES};

/// No test here should come near this; it turns a hang into a failure.
const TEST_BOUND: Duration = Duration::from_secs(20);

fn execution(payload: &[u8], timeout_ms: u64) -> Execution {
    Execution {
        id: JobId::parse("job-7").expect("valid id"),
        attempt: 2,
        payload: Payload::from_json(payload).expect("valid JSON"),
        timeout_ms,
    }
}

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, fut)
        .await
        .expect("the attempt hung")
}

async fn run(command: &str, exec: Execution) -> Outcome {
    let executor = ExecExecutor::new(command).expect("valid command");
    bounded(executor.execute(exec)).await
}

async fn run_small(command: &str) -> Outcome {
    run(command, execution(b"{}", 10_000)).await
}

/// A JSON string of exactly `bytes` bytes.
fn big_payload(bytes: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(bytes);
    p.push(b'"');
    p.extend((0..bytes - 2).map(|i| b'a' + (i % 26) as u8));
    p.push(b'"');
    p
}

/// The process's state letter from /proc, or `None` once it is reaped.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the parenthesised command name.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until `pid` is dead (a zombie counts: it runs no more) or reaped.
async fn wait_dead(pid: u32) -> bool {
    wait_until(|| matches!(proc_state(pid), None | Some('Z'))).await
}

/// Waits until `pid` is reaped: no zombie left behind.
async fn wait_reaped(pid: u32) -> bool {
    wait_until(|| proc_state(pid).is_none()).await
}

async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn exit_zero_succeeds() {
    assert_eq!(run_small("exit 0").await, Outcome::Succeeded);
}

#[tokio::test]
async fn nonzero_exit_fails_with_code_and_stderr() {
    let outcome = run_small("echo first >&2; echo 'it broke' >&2; exit 3").await;
    assert_eq!(
        outcome,
        Outcome::Failed("exit status 3: first\nit broke".into())
    );
}

#[tokio::test]
async fn nonzero_exit_without_stderr_names_the_code() {
    assert_eq!(
        run_small("exit 42").await,
        Outcome::Failed("exit status 42".into())
    );
}

#[tokio::test]
async fn a_signal_death_names_the_signal() {
    let outcome = run_small("echo dying >&2; kill -TERM $$").await;
    assert_eq!(
        outcome,
        Outcome::Failed("killed by signal 15 (SIGTERM): dying".into())
    );
}

#[tokio::test]
async fn a_missing_command_fails_with_the_shell_message() {
    let Outcome::Failed(error) = run_small("/nonexistent/beaver-test-tool").await else {
        panic!("a missing command must fail");
    };
    assert!(error.starts_with("exit status 127: "), "{error}");
    assert!(error.contains("/nonexistent/beaver-test-tool"), "{error}");
}

#[tokio::test]
async fn only_the_last_4_kib_of_a_big_stderr_are_kept() {
    // `seq` writes about 1.3 MiB of numbered lines: the tail is easy to check.
    let outcome = run_small("seq 1 200000 >&2; exit 1").await;
    let written: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    let tail = written[written.len() - STDERR_TAIL_BYTES..].trim_end();
    assert_eq!(outcome, Outcome::Failed(format!("exit status 1: {tail}")));
    assert_eq!(STDERR_TAIL_BYTES, 4096);
}

#[tokio::test]
async fn stdout_is_discarded_without_blocking() {
    assert_eq!(run_small("seq 1 1000000").await, Outcome::Succeeded);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group_and_reaps_the_shell() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bg, sh) = (dir.path().join("bg"), dir.path().join("sh"));
    let command = format!(
        "sleep 30 & echo $! > {bg}; echo $$ > {sh}; sleep 30",
        bg = bg.display(),
        sh = sh.display()
    );
    let start = Instant::now();
    let outcome = run(&command, execution(b"{}", 300)).await;
    let elapsed = start.elapsed();
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(
        elapsed >= Duration::from_millis(300),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}"
    );

    let sh = read_pid(&sh).expect("the shell wrote its pid");
    assert!(
        wait_reaped(sh).await,
        "the timed-out shell {sh} was not reaped"
    );
    let bg = read_pid(&bg).expect("the shell wrote its background pid");
    assert!(
        wait_dead(bg).await,
        "the background child {bg} survived the timeout"
    );
}

#[tokio::test]
async fn background_children_die_when_the_shell_exits() {
    // The background `sleep` also holds stderr open: the attempt must not wait
    // for it.
    let dir = tempfile::tempdir().expect("temp dir");
    let bg = dir.path().join("bg");
    let command = format!(
        "sleep 30 & echo $! > {}; echo bye >&2; exit 5",
        bg.display()
    );
    let start = Instant::now();
    let outcome = run_small(&command).await;
    assert_eq!(outcome, Outcome::Failed("exit status 5: bye".into()));
    assert!(start.elapsed() < Duration::from_secs(5));
    let bg = read_pid(&bg).expect("the shell wrote its background pid");
    assert!(
        wait_dead(bg).await,
        "the background child {bg} outlived the attempt"
    );
}

#[tokio::test]
async fn a_zero_timeout_times_out_at_once() {
    let start = Instant::now();
    assert_eq!(run("sleep 5", execution(b"{}", 0)).await, Outcome::TimedOut);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_big_payload_to_a_child_that_ignores_stdin_does_not_deadlock() {
    let payload = big_payload(10 * 1024 * 1024);
    assert_eq!(
        run("exit 0", execution(&payload, 10_000)).await,
        Outcome::Succeeded
    );
    // Alive for a while but never reading: the writer blocks until exit.
    assert_eq!(
        run("sleep 0.2", execution(&payload, 10_000)).await,
        Outcome::Succeeded
    );
    // Not reading and failing loudly: the stderr tail still arrives.
    let outcome = run("echo nope >&2; exit 2", execution(&payload, 10_000)).await;
    assert_eq!(outcome, Outcome::Failed("exit status 2: nope".into()));
}

#[tokio::test]
async fn a_big_payload_reaches_a_child_that_reads_it() {
    let payload = big_payload(10 * 1024 * 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("payload.json");
    // Fills the stderr pipe before it reads stdin: only a parent that reads
    // stderr while it writes stdin gets through.
    let command = format!("seq 1 100000 >&2; cat > {}", out.display());
    let outcome = run(&command, execution(&payload, 10_000)).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let received = std::fs::read(&out).expect("the child wrote the payload");
    assert!(
        received == payload,
        "got {} bytes of {}",
        received.len(),
        payload.len()
    );
}

#[tokio::test]
async fn the_job_id_and_attempt_are_in_the_environment() {
    let outcome = run_small(r#"echo "$BEAVER_JOB_ID/$BEAVER_ATTEMPT" >&2; exit 1"#).await;
    assert_eq!(outcome, Outcome::Failed("exit status 1: job-7/2".into()));
}

#[tokio::test]
async fn dropping_the_future_kills_the_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bg, sh) = (dir.path().join("bg"), dir.path().join("sh"));
    let command = format!(
        "sleep 30 & echo $! > {bg}.tmp; mv {bg}.tmp {bg}; echo $$ > {sh}.tmp; mv {sh}.tmp {sh}; sleep 30",
        bg = bg.display(),
        sh = sh.display()
    );
    let executor = ExecExecutor::new(command).expect("valid command");
    {
        let mut attempt = pin!(executor.execute(execution(b"{}", 60_000)));
        let started = bounded(async {
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut attempt => panic!("the attempt ended early: {outcome:?}"),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {
                        if bg.exists() && sh.exists() {
                            break true;
                        }
                    }
                }
            }
        });
        assert!(started.await);
    } // the attempt is dropped here
    let sh = read_pid(&sh).expect("the shell wrote its pid");
    let bg = read_pid(&bg).expect("the shell wrote its background pid");
    assert!(wait_dead(sh).await, "the shell {sh} survived the drop");
    assert!(
        wait_dead(bg).await,
        "the background child {bg} survived the drop"
    );
    assert!(
        wait_reaped(sh).await,
        "the dropped shell {sh} was never reaped"
    );
}

#[tokio::test]
async fn many_attempts_run_side_by_side() {
    let executor =
        ExecExecutor::new("echo \"$BEAVER_ATTEMPT\" >&2; exit 1").expect("valid command");
    let attempts = (1..=16u32).map(|attempt| {
        let mut exec = execution(b"[1,2,3]", 10_000);
        exec.attempt = attempt;
        tokio::spawn(executor.execute(exec))
    });
    let attempts: Vec<_> = attempts.collect();
    for (attempt, handle) in (1..=16u32).zip(attempts) {
        let outcome = bounded(handle).await.expect("the task panicked");
        assert_eq!(
            outcome,
            Outcome::Failed(format!("exit status 1: {attempt}"))
        );
    }
}

/// A handler that notes SIGTERM in `term` (and keeps running), and its pid
/// in `pid`: only SIGKILL stops it.
fn stubborn(dir: &Path) -> String {
    format!(
        "trap 'echo term >> {t}' TERM; echo $$ > {p}.tmp; mv {p}.tmp {p}; while :; do sleep 0.05; done",
        t = dir.join("term").display(),
        p = dir.join("pid").display()
    )
}

#[tokio::test]
async fn a_timeout_sends_sigterm_then_sigkill_after_the_kill_grace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let grace = Duration::from_millis(800);
    let executor = ExecExecutor::new(stubborn(dir.path()))
        .expect("valid command")
        .with_kill_grace(grace);
    let start = Instant::now();
    let outcome = bounded(executor.execute(execution(b"{}", 300))).await;
    let elapsed = start.elapsed();
    assert_eq!(outcome, Outcome::TimedOut);
    let term = std::fs::read_to_string(dir.path().join("term")).unwrap_or_default();
    assert!(
        term.starts_with("term"),
        "the handler saw no SIGTERM: {term:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) + grace,
        "SIGKILL came before the grace ended: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}"
    );
    let pid = read_pid(&dir.path().join("pid")).expect("the handler wrote its pid");
    assert!(wait_reaped(pid).await, "the handler {pid} survived");
}

#[tokio::test]
async fn a_handler_that_ends_on_sigterm_is_not_kept_waiting_for_the_grace() {
    let executor = ExecExecutor::new("sleep 30")
        .expect("valid command")
        .with_kill_grace(Duration::from_secs(10));
    let start = Instant::now();
    let outcome = bounded(executor.execute(execution(b"{}", 200))).await;
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn dropping_the_future_sends_sigterm_then_sigkill_after_the_kill_grace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    // Notes when SIGTERM comes and ticks until killed.
    let command = format!(
        "trap 'date +%s%N > {d}/term' TERM; echo $$ > {d}/pid.tmp; mv {d}/pid.tmp {d}/pid; while :; do date +%s%N > {d}/tick.tmp; mv {d}/tick.tmp {d}/tick; sleep 0.05; done"
    );
    let pid_file = dir.path().join("pid");
    let grace = Duration::from_millis(800);
    let executor = ExecExecutor::new(command)
        .expect("valid command")
        .with_kill_grace(grace);
    {
        let mut attempt = pin!(executor.execute(execution(b"{}", 60_000)));
        bounded(async {
            while !pid_file.exists() {
                tokio::select! {
                    biased;
                    outcome = &mut attempt => panic!("the attempt ended early: {outcome:?}"),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        })
        .await;
    } // dropped: SIGTERM now, SIGKILL after the grace
    let pid = read_pid(&pid_file).expect("the handler wrote its pid");
    assert!(
        wait_reaped(pid).await,
        "the handler {pid} survived the grace"
    );
    let nanos = |name: &str| -> Option<u128> {
        std::fs::read_to_string(dir.path().join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let term = nanos("term").expect("the handler saw SIGTERM");
    let tick = nanos("tick").expect("the handler ticked");
    let ran_on = Duration::from_nanos(u64::try_from(tick.saturating_sub(term)).unwrap_or(0));
    assert!(
        ran_on >= grace - Duration::from_millis(300),
        "the handler ran {ran_on:?} after SIGTERM; the kill grace is {grace:?}"
    );
}

#[tokio::test]
async fn a_simple_command_is_the_direct_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("handler.sh");
    let out = dir.path().join("ppid");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho $PPID > {}\n", out.display()),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&script).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod");
    let executor = ExecExecutor::new(script.display().to_string()).expect("valid command");
    assert!(executor.execs_directly());
    assert_eq!(
        bounded(executor.execute(execution(b"{}", 10_000))).await,
        Outcome::Succeeded
    );
    assert_eq!(
        read_pid(&out),
        Some(std::process::id()),
        "its parent is beaver"
    );
}
