//! Running unattended: a volume too small for the log is refused at
//! start-up, a failed start leaves nothing behind, and the small things an
//! operator reads (status, logs, metrics, errors) say what is true.

use std::time::Duration;

use crate::common::*;

/// `beaver run` on the scratch dir with `args`, expected to fail at once:
/// (exit code, stderr).
fn refused(s: &Scratch, data_dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let (code, _, err) = run_cmd_within(
        beaver()
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(s.config())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .args(args),
        Duration::from_secs(20),
    );
    assert_ne!(code, 0, "{err}");
    (code, err)
}

#[test]
fn a_volume_too_small_for_the_log_is_refused_with_what_it_needs() {
    let s = Scratch::new("");
    let mnt = s.dir.path().join("small");
    std::fs::create_dir(&mnt).expect("mount point");
    // A 20 MiB tmpfs in a mount namespace of the test's own (root, or a
    // user namespace mapping this user to root), gone when beaver exits.
    let run = |extra: &str| {
        let script = format!(
            "mount -t tmpfs -o size=20m tmpfs \"$1\" && exec \"$2\" run --data-dir \"$1/data\" --listen 127.0.0.1:0 --metrics-listen off --handler noop {extra}"
        );
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--map-root-user", "--mount", "sh", "-c", &script, "sh"])
            .arg(&mnt)
            .arg(BIN);
        run_cmd_within(&mut cmd, Duration::from_secs(20))
    };
    let (code, _, err) = run("");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("the volume is too small for beaver's log: it needs 128.0 MiB"),
        "{err}"
    );
    assert!(
        err.contains("segment_bytes = 4194304"),
        "names the setting: {err}"
    );
    // With segments that fit, it starts: it serves until told to stop.
    let cfg = s.dir.path().join("small.toml");
    std::fs::write(&cfg, "[engine]\nsegment_bytes = 4194304\n").expect("config");
    let mut cmd = std::process::Command::new("unshare");
    let script = "mount -t tmpfs -o size=20m tmpfs \"$1\" && exec \"$2\" run --data-dir \"$1/data\" --listen 127.0.0.1:0 --metrics-listen off --handler noop --config \"$3\"";
    cmd.args(["--map-root-user", "--mount", "sh", "-c", script, "sh"])
        .arg(&mnt)
        .arg(BIN)
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("unshare");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    let _ = std::io::BufRead::read_line(&mut out, &mut first);
    // The addresses come after the signal handlers are in place.
    let mut rest = String::new();
    while !rest.contains("metrics  ") {
        let mut line = String::new();
        match std::io::BufRead::read_line(&mut out, &mut line) {
            Ok(n) if n > 0 => rest.push_str(&line),
            _ => break,
        }
    }
    // SAFETY: kill(2) on the child this test spawned, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_within(
        &mut child,
        Duration::from_secs(20),
        "beaver on a 20 MiB volume",
    );
    assert!(first.contains("recovered 0 jobs"), "it started: {first:?}");
    assert!(status.success(), "{status:?}");
}

#[test]
fn status_counts_only_the_log_segments_that_exist() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let r = post(&p, "/v1/jobs", r#"{"payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let files = || std::fs::read_dir(s.data().join("wal")).map_or(0, |d| d.count()) as u64;
    // The next segment is prepared in the background: wait for it.
    let agree = wait_for(Duration::from_secs(10), || {
        let st = p.status();
        st.wal.segments == files() && st.wal.segments == 2
    });
    assert!(
        agree,
        "status says {} segments, the wal dir holds {} files",
        p.status().wal.segments,
        files()
    );
}

#[test]
fn a_failed_start_leaves_no_data_dir_behind() {
    let s = Scratch::new("");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let (code, _, err) = run_cmd_within(
        beaver().arg("run").arg("--data-dir").arg(s.data()).args([
            "--listen",
            &addr,
            "--metrics-listen",
            "off",
            "--handler",
            "noop",
        ]),
        Duration::from_secs(20),
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(
        !s.data().exists(),
        "the data dir it created is removed: {err}"
    );
    drop(busy);
}

#[test]
fn a_data_dir_that_cannot_be_created_or_written_is_named_not_its_lock() {
    let s = Scratch::new("");
    for (dir, says) in [
        (
            "/sys/beaver-test-data",
            "cannot create the data dir /sys/beaver-test-data",
        ),
        (
            "/sys/kernel",
            "cannot create files in the data dir /sys/kernel",
        ),
    ] {
        let (_, err) = refused(&s, std::path::Path::new(dir), &["--handler", "noop"]);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("LOCK"), "{err}");
    }
}

#[test]
fn status_of_a_regular_file_says_it_is_a_file() {
    let s = Scratch::new("");
    let file = s.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    let (code, _, err) = run_cmd(beaver().arg("status").arg("--data-dir").arg(&file));
    assert_ne!(code, 0);
    assert!(err.contains("is a file, not a data dir"), "{err}");
    assert!(!err.contains("there is no data dir"), "{err}");
}

#[test]
fn the_metrics_listener_points_a_lost_request_at_the_api() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let metrics = p.metrics.trim_end_matches("/metrics").to_string();
    let r = beaver_cli::client::Server::new(&metrics, None)
        .expect("url")
        .get("/v1/status")
        .expect("request");
    assert_eq!(r.status, 404);
    let msg = r.error_message();
    assert!(msg.contains("metrics listener"), "{msg}");
    assert!(
        msg.contains(&p.api),
        "names the API's address {}: {msg}",
        p.api
    );
}

#[test]
fn enqueue_splits_a_batch_the_server_finds_too_large() {
    let s = Scratch::new("[http]\nbody_bytes_max = 4096\n");
    let p = Proc::start(&s, &["--handler", "noop", "--workers", "0"]);
    let file = s.dir.path().join("jobs.ndjson");
    let lines: String = (0..100)
        .map(|i| {
            format!(
                "{{\"id\":\"big-{i}\",\"payload\":\"{}\"}}\n",
                "x".repeat(100)
            )
        })
        .collect();
    std::fs::write(&file, lines).expect("jobs");
    let (code, out, err) = run_cmd(
        beaver()
            .arg("enqueue")
            .arg("--file")
            .arg(&file)
            .args(["--server", &p.api]),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 100, "{out}");
    assert!(err.contains("enqueued 100 jobs"), "{err}");
    assert!(
        !err.contains("WARN") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_eq!(p.status().jobs.pending, 100);
}

#[test]
fn the_start_up_log_and_messages_read_as_text() {
    let s = Scratch::new(FAST_CONFIG);
    let mut p = Proc::start(&s, &["--handler", "demo", "--demo-ms", "1-2"]);
    let log = p.wait_log("serving", Duration::from_secs(10));
    let starting = log
        .lines()
        .find(|l| l.contains("starting"))
        .unwrap_or_default();
    assert!(
        starting.contains("executor=demo (1-2 ms per attempt, failure rate 0.1)"),
        "{starting}"
    );
    assert!(!starting.contains("DemoConfig {"), "{starting}");
    let serving = log
        .lines()
        .find(|l| l.contains("serving"))
        .unwrap_or_default();
    assert!(serving.contains("metrics=http://127.0.0.1:"), "{serving}");
    assert!(!serving.contains("Some("), "{serving}");
    let r = post(&p, "/v1/jobs", r#"{"id":"one","payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    p.wait_idle(Duration::from_secs(10));
    assert!(p.sigterm(Duration::from_secs(20)).success());
    let p = Proc::start(&s, &["--handler", "noop"]);
    let said = p.stdout_lines().join("\n");
    assert!(said.contains("recovered 1 job in"), "{said}");
    let (_, out, _) = run_cmd(beaver().arg("status").args(["--server", &p.api]));
    assert!(out.contains("found 1 job,"), "{out}");
}

#[test]
fn status_shows_attempts_waiting_for_a_worker_apart_from_running_ones() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(
        &s,
        &[
            "--handler",
            "demo",
            "--demo-ms",
            "5000-5000",
            "--demo-failure-rate",
            "0",
            "--workers",
            "1",
        ],
    );
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"payload":1},{"payload":2},{"payload":3}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_for(Duration::from_secs(10), || {
        let st = p.status();
        st.jobs.in_flight == 3 && st.running == Some(1)
    }));
    let (_, out, err) = run_cmd(beaver().arg("status").args(["--server", &p.api]));
    assert!(
        out.contains("in flight 3 (1 running, 2 waiting for a free worker)"),
        "{out}{err}"
    );
}

#[test]
fn every_job_duration_series_exists_from_the_start() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let metrics = p.metrics.trim_end_matches("/metrics").to_string();
    let r = beaver_cli::client::Server::new(&metrics, None)
        .expect("url")
        .get("/metrics")
        .expect("scrape");
    let text = r.text();
    for outcome in ["succeeded", "failed", "timed_out", "not_started"] {
        let series = format!("beaver_job_duration_seconds_count{{outcome=\"{outcome}\"}} 0");
        assert!(
            text.contains(&series),
            "no {series} before any attempt:\n{text}"
        );
    }
}
