//! The handler contract, against the real binary: the handler is the
//! direct child (a `kill -9` of the server leaves none running), SIGTERM
//! then SIGKILL after the kill grace, `BEAVER_QUEUE`, output in the log,
//! and a missing command refused at start-up.

use std::time::{Duration, Instant};

use beaver_cli::schema::JobDoc;

use crate::common::*;

fn job(p: &Proc, id: &str) -> JobDoc {
    let r = p.server().get(&format!("/v1/jobs/{id}")).expect("job");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("job json")
}

/// Writes the handler script `name` into `dir` (`{d}` in `body` stands
/// for `dir`) and returns what `--exec` takes to run it.
fn handler_script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    script(&path, &body.replace("{d}", &dir.display().to_string()));
    path.display().to_string()
}

fn nanos(path: &std::path::Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kills whatever of `pids` is still alive (by pid) and names them.
fn reap_survivors(pids: &[i32]) -> Vec<i32> {
    let survivors: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &survivors {
        // SAFETY: kill(2) has no memory arguments; the pid is one the test
        // read from a handler it started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    survivors
}

#[test]
fn a_kill_9_of_the_server_leaves_no_handler_running() {
    let s = Scratch::new(FAST_CONFIG);
    let dir = s.dir.path();
    // No grandchild: the script becomes the program it `exec`s.
    let exec = handler_script(
        dir,
        "handler.sh",
        "echo $$ > {d}/$BEAVER_JOB_ID.tmp && mv {d}/$BEAVER_JOB_ID.tmp {d}/$BEAVER_JOB_ID.pid\nexec sleep 300",
    );
    let mut p = Proc::start(&s, &["--exec", &exec, "--workers", "2"]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"id":"a","payload":1},{"id":"b","payload":2}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let pid_files = [dir.join("a.pid"), dir.join("b.pid")];
    assert!(
        wait_for(Duration::from_secs(20), || pid_files
            .iter()
            .all(|f| f.exists())),
        "the handlers did not start"
    );
    let pids: Vec<i32> = pid_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
        .collect();
    assert_eq!(pids.len(), 2);
    p.kill9();
    let gone = wait_for(Duration::from_secs(5), || pids.iter().all(|&p| !alive(p)));
    let survivors = reap_survivors(&pids);
    assert!(
        gone && survivors.is_empty(),
        "handlers {survivors:?} outlived the server's kill -9"
    );
}

#[test]
fn a_timed_out_handler_gets_sigterm_then_sigkill_after_the_kill_grace() {
    let s = Scratch::new(FAST_CONFIG);
    let dir = s.dir.path();
    // Notes when it starts and when SIGTERM comes, and ticks until killed.
    let exec = handler_script(
        dir,
        "stubborn.sh",
        "trap 'date +%s%N > {d}/term' TERM\ndate +%s%N > {d}/start\nwhile :; do date +%s%N > {d}/tick.tmp; mv {d}/tick.tmp {d}/tick; sleep 0.05; done",
    );
    let p = Proc::start(&s, &["--exec", &exec, "--kill-grace", "1500ms"]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"{"id":"slow","payload":1,"timeout_ms":500,"max_attempts":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_for(Duration::from_secs(20), || job(&p, "slow").state == "dead"),
        "the job did not time out"
    );
    let j = job(&p, "slow");
    let err = j.last_error.unwrap_or_default();
    assert!(err.contains("timed out"), "{err}");
    let ms = |a: u128, b: u128| (b.saturating_sub(a) / 1_000_000) as u64;
    let start = nanos(&dir.join("start")).expect("the handler started");
    let term = nanos(&dir.join("term")).expect("the handler got SIGTERM");
    // Let any last tick land, then read the last one.
    std::thread::sleep(Duration::from_millis(300));
    let tick = nanos(&dir.join("tick")).expect("the handler ticked");
    // The script starts a moment after the attempt (on a loaded machine,
    // a few hundred ms), and its clock starts with it.
    assert!(
        (100..3_000).contains(&ms(start, term)),
        "SIGTERM {} ms after the start; the timeout is 500 ms",
        ms(start, term)
    );
    assert!(
        (1_000..4_000).contains(&ms(term, tick)),
        "the handler ran {} ms after SIGTERM; the kill grace is 1500 ms",
        ms(term, tick)
    );
    let log = p.log_text();
    assert!(log.contains("kill grace 1500 ms"), "{log}");
}

#[test]
fn the_shutdown_grace_ends_with_sigterm_then_the_kill_grace() {
    let s = Scratch::new("[engine]\nshutdown_grace_ms = 300\nsegment_bytes = 1048576\n");
    let dir = s.dir.path();
    let exec = handler_script(
        dir,
        "stubborn.sh",
        "trap 'echo \"cleaning up $BEAVER_JOB_ID\"; date +%s%N > {d}/term' TERM\necho $$ > {d}/pid.tmp; mv {d}/pid.tmp {d}/pid\nwhile :; do sleep 0.05; done",
    );
    let mut p = Proc::start(&s, &["--exec", &exec, "--kill-grace", "1s"]);
    let r = post(&p, "/v1/jobs", r#"{"id":"long","payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let pid_file = dir.join("pid");
    assert!(wait_for(Duration::from_secs(20), || pid_file.exists()));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    let asked = Instant::now();
    let status = p.sigterm(Duration::from_secs(30));
    let took = asked.elapsed();
    let survivors = reap_survivors(&[pid]);
    assert!(status.success(), "{status:?}");
    assert!(survivors.is_empty(), "the handler outlived the server");
    assert!(dir.join("term").exists(), "the handler got no SIGTERM");
    assert!(
        took >= Duration::from_millis(1_200),
        "the server exited {took:?} after SIGTERM: before the kill grace ended"
    );
    let log = p.log_text();
    assert!(
        log.contains("cleaning up long"),
        "what the handler said while stopping is in the log:\n{log}"
    );
}

#[test]
fn the_handler_sees_its_queue_and_no_other_beaver_variable() {
    let s = Scratch::new(FAST_CONFIG);
    let dir = s.dir.path();
    let exec = format!("env > {}/env.$BEAVER_JOB_ID", dir.display());
    let p = Proc::start_with_env(&s, &["--exec", &exec], &[("BEAVER_DEMO_MS", "1-2")]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"{"id":"e1","queue":"emails","payload":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let out = dir.join("env.e1");
    assert!(wait_for(Duration::from_secs(20), || job(&p, "e1").state
        == "completed"));
    let env = std::fs::read_to_string(&out).expect("the handler wrote its environment");
    let mut beaver: Vec<&str> = env.lines().filter(|l| l.starts_with("BEAVER_")).collect();
    beaver.sort_unstable();
    assert_eq!(
        beaver,
        [
            "BEAVER_ATTEMPT=1",
            "BEAVER_JOB_ID=e1",
            "BEAVER_QUEUE=emails"
        ]
    );
}

#[test]
fn the_handlers_output_is_in_the_servers_log_with_the_job_id() {
    let s = Scratch::new(FAST_CONFIG);
    let exec = "echo \"to stdout from $BEAVER_JOB_ID\"; echo \"to stderr from $BEAVER_JOB_ID\" >&2; exit 4";
    let p = Proc::start(&s, &["--exec", exec]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"{"id":"talky","payload":1,"max_attempts":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let log = p.wait_log("to stderr from talky", Duration::from_secs(20));
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
            .to_string()
    };
    for (needle, stream) in [
        ("to stdout from talky", "stdout"),
        ("to stderr from talky", "stderr"),
    ] {
        let l = line(needle);
        assert!(
            l.contains("beaver::handler") && l.contains("job=talky") && l.contains("attempt=1"),
            "{l}"
        );
        assert!(l.contains(&format!("stream=\"{stream}\"")), "{l}");
    }
    assert!(wait_for(Duration::from_secs(10), || job(&p, "talky").state == "dead"));
    let err = job(&p, "talky").last_error.unwrap_or_default();
    assert_eq!(err, "exit status 4: to stderr from talky");
}

#[test]
fn a_missing_command_is_refused_at_start_up() {
    let s = Scratch::new(FAST_CONFIG);
    for (exec, says) in [
        ("./no-such-handler.sh", "does not exist"),
        (
            "no-such-beaver-handler --x | jq .",
            "neither a program on PATH",
        ),
        ("echo (", "not valid shell"),
    ] {
        let (code, _, err) = run_cmd_within(
            beaver()
                .arg("run")
                .arg("--data-dir")
                .arg(s.data())
                .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
                .args(["--exec", exec]),
            Duration::from_secs(20),
        );
        assert_ne!(code, 0, "{exec}: {err}");
        assert!(err.contains(says), "{exec}: {err}");
        assert!(!s.data().exists(), "{exec}: nothing is created");
    }
}

/// The `THP_enabled` line of process `pid`'s status (kernels since 6.x
/// print it), if any.
fn thp_line(pid: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn the_server_turns_huge_pages_off_for_itself_and_not_for_its_handlers() {
    let s = Scratch::new(FAST_CONFIG);
    let dir = s.dir.path();
    let exec = handler_script(
        dir,
        "handler.sh",
        "grep THP_enabled /proc/self/status > {d}/thp.tmp; mv {d}/thp.tmp {d}/thp",
    );
    let p = Proc::start(&s, &["--exec", &exec, "--workers", "1"]);
    let server = thp_line(&p.pid.to_string());
    let r = post(&p, "/v1/jobs", r#"[{"id":"a","payload":1}]"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let out = dir.join("thp");
    assert!(
        wait_for(Duration::from_secs(20), || out.exists()),
        "the handler never ran: {}",
        p.log_text()
    );
    let seen = std::fs::read_to_string(&out).expect("handler's output");
    let seen = seen.split_whitespace().collect::<Vec<_>>().join(" ");
    // A process of this system that asked nothing: this test's own.
    match (server, thp_line("self")) {
        (Some(server), Some(default)) => {
            assert_eq!(server, "THP_enabled: 0");
            assert_eq!(seen, default, "the handler keeps the system's setting");
        }
        (server, default) => {
            assert_eq!(
                (server, default),
                (None, None),
                "the kernel prints it for all or none"
            );
            assert_eq!(seen, "", "no THP_enabled line on this kernel");
        }
    }
}

/// `beaver run` raises its own soft open-file limit to the hard one (a
/// descriptor per connection), and its handlers start with the limit it
/// was started with: a program written for 1,024 descriptors (`select(2)`)
/// is not handed more.
#[test]
fn handlers_start_with_the_open_file_limit_the_server_was_given() {
    let hard = beaver_runtime::executor::open_files::limits()
        .map_or(0, |l| l.rlim_max)
        .min(4_096);
    if hard <= 200 {
        eprintln!("SKIPPED: the hard open-file limit here ({hard}) leaves nothing to raise");
        return;
    }
    let s = Scratch::new(FAST_CONFIG);
    let dir = s.dir.path();
    let exec = handler_script(
        dir,
        "handler.sh",
        "ulimit -n > {d}/$BEAVER_JOB_ID.tmp && mv {d}/$BEAVER_JOB_ID.tmp {d}/$BEAVER_JOB_ID.nofile",
    );
    let limit = libc::rlimit {
        rlim_cur: 200,
        rlim_max: hard,
    };
    let p = Proc::start_with_open_files(&s, &["--exec", &exec], limit);
    let r = post(&p, "/v1/jobs", r#"{"id":"n","payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = dir.join("n.nofile");
    assert!(
        wait_for(Duration::from_secs(20), || seen.exists()),
        "the handler did not run; log:\n{}",
        p.log_text()
    );
    let handlers = std::fs::read_to_string(&seen).unwrap_or_default();
    assert_eq!(handlers.trim(), "200", "the handler's limit");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid)).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    assert_eq!(
        line.split_whitespace().nth(3),
        Some(hard.to_string().as_str()),
        "the server's own: {line}"
    );
}
