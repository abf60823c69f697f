//! The HTTP contract, the token rule, the lock, SIGTERM and metrics,
//! against the real binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const LIMITS: &str = r#"
[http]
body_bytes_max = 65536
[engine.queue.limits]
payload_bytes_max = 1024
"#;

#[test]
fn bad_requests_get_their_status_and_change_nothing() {
    let s = Scratch::new(&format!("{FAST_CONFIG}{LIMITS}"));
    let p = Proc::start(&s, &["--handler", "noop"]);
    type Case<'a> = (
        &'a str,
        &'a str,
        u16,
        &'a str,
        Option<usize>,
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        ("malformed json", "{", 400, "invalid", None, Some("body")),
        ("not an object", "42", 400, "invalid", None, Some("body")),
        ("empty array", "[]", 400, "invalid", None, Some("body")),
        (
            "wrong type",
            r#"{"payload": 1, "max_attempts": "3"}"#,
            400,
            "invalid",
            Some(0),
            Some("max_attempts"),
        ),
        (
            "negative delay",
            r#"[{"payload": 1}, {"payload": 2, "delay_ms": -5}]"#,
            400,
            "invalid",
            Some(1),
            Some("delay_ms"),
        ),
        (
            "negative attempts",
            r#"{"payload": 1, "max_attempts": -1}"#,
            400,
            "invalid",
            Some(0),
            Some("max_attempts"),
        ),
        (
            "fractional priority",
            r#"{"payload": 1, "priority": 1.5}"#,
            400,
            "invalid",
            Some(0),
            Some("priority"),
        ),
        (
            "unknown field",
            r#"{"payload": 1, "colour": "red"}"#,
            400,
            "invalid",
            Some(0),
            Some("colour"),
        ),
        (
            "no payload",
            r#"{"id": "a"}"#,
            400,
            "invalid",
            Some(0),
            Some("payload"),
        ),
        (
            "reserved id",
            r#"{"payload": 1, "id": "~1"}"#,
            400,
            "invalid",
            Some(0),
            Some("id"),
        ),
        (
            "id of digits only",
            r#"{"payload": 1, "id": "17"}"#,
            400,
            "invalid",
            Some(0),
            Some("id"),
        ),
        (
            "id with a space",
            r#"{"payload": 1, "id": "a b"}"#,
            400,
            "invalid",
            Some(0),
            Some("id"),
        ),
        (
            "bad queue",
            r#"{"payload": 1, "queue": "a/b"}"#,
            400,
            "invalid",
            Some(0),
            Some("queue"),
        ),
    ];
    for (name, body, status, kind, index, field) in cases {
        let r = post(&p, "/v1/jobs", body);
        assert_eq!(r.status, *status, "{name}: {}", r.text());
        let (k, i, f) = error_of(&r);
        assert_eq!(
            (k.as_str(), i, f.as_deref()),
            (*kind, *index, *field),
            "{name}: {}",
            r.text()
        );
    }
    // Over the body limit, and over the payload limit (the core's 413).
    let big = format!(r#"{{"payload": "{}"}}"#, "x".repeat(70_000));
    let r = post(&p, "/v1/jobs", &big);
    assert_eq!(
        (r.status, error_of(&r).0.as_str()),
        (413, "too_large"),
        "{}",
        r.text()
    );
    let payload = format!(
        r#"[{{"payload": 1}}, {{"payload": "{}"}}]"#,
        "x".repeat(2_000)
    );
    let r = post(&p, "/v1/jobs", &payload);
    assert_eq!(r.status, 413, "{}", r.text());
    // Routes and methods.
    let srv = p.server();
    let r = srv.get("/v2/nothing").expect("get");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "not_found"));
    let r = srv.request("DELETE", "/v1/jobs", None).expect("delete");
    assert_eq!(
        (r.status, error_of(&r).0.as_str()),
        (405, "method_not_allowed")
    );
    let r = srv.get("/v1/jobs/unknown-job").expect("get");
    assert_eq!((r.status, error_of(&r).0.as_str()), (404, "not_found"));
    let r = srv.get("/v1/dead?limit=-1").expect("get");
    assert_eq!((r.status, error_of(&r).2.as_deref()), (400, Some("limit")));
    let r = post(&p, "/v1/jobs/unknown-job/cancel", "");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains(r#"no job with id \"unknown-job\""#),
        "{}",
        r.text()
    );
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"id": "dup", "payload": 1}, {"id": "dup", "payload": 2}]"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains(r#"id \"dup\" appears twice in the batch"#),
        "{}",
        r.text()
    );
    // Garbage that is not HTTP at all, and a connection that sends half a
    // request and goes away: the server answers or drops them, and lives.
    for junk in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"POST /v1/jobs HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"pay",
    ] {
        let mut c = TcpStream::connect(p.api.trim_start_matches("http://")).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.write_all(junk).expect("write");
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // Nothing of any of that was applied.
    let st = p.status();
    assert_eq!(st.jobs.total(), 0, "{st:?}");
    assert_eq!(st.totals.map(|t| t.enqueued), Some(0));
    // The good path, and idempotence by id.
    let r = post(
        &p,
        "/v1/jobs",
        r#"{"id": "job-1", "payload": {"to": "ada"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text().trim(),
        r#"{"jobs":[{"id":"job-1","duplicate":false}]}"#
    );
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"id": "job-1", "payload": 1}, {"payload": 2}]"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["jobs"][0]["duplicate"], true, "{v}");
    assert_eq!(v["jobs"][1]["duplicate"], false, "{v}");
    let r = p.server().get("/v1/jobs/job-1").expect("get");
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    for key in [
        "id",
        "queue",
        "state",
        "attempt",
        "max_attempts",
        "last_error",
        "created_at_ms",
        "schema_version",
    ] {
        assert!(j.get(key).is_some(), "{key} missing from {j}");
    }
    // NDJSON bodies.
    let r = p
        .server()
        .request(
            "POST",
            "/v1/jobs",
            Some((
                "application/x-ndjson",
                b"{\"payload\":1}\n\n{\"payload\":2}\n",
            )),
        )
        .expect("ndjson");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(p.wait_idle(Duration::from_secs(30)).jobs.completed, 4);
}

#[test]
fn a_job_is_found_cancelled_and_requeued_by_its_number() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--workers", "0"]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"id": "mail", "payload": 1}, {"payload": 2}]"#,
    );
    assert_eq!(
        r.text().trim(),
        r#"{"jobs":[{"id":"mail","duplicate":false},{"id":"2","duplicate":false}]}"#,
        "an assigned id is the job's number"
    );
    let srv = p.server();
    let id_of = |path: &str| {
        let r = srv.get(path).expect("get");
        let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        (r.status, j["id"].as_str().map(str::to_owned))
    };
    assert_eq!(id_of("/v1/jobs/1"), (200, Some("mail".into())), "by number");
    assert_eq!(id_of("/v1/jobs/2"), (200, Some("2".into())), "by id");
    assert_eq!(id_of("/v1/jobs/3").0, 404);
    assert_eq!(id_of("/v1/jobs/01").0, 404, "not a number's usual spelling");
    let r = post(&p, "/v1/jobs/1/cancel", "");
    assert_eq!(
        (r.status, r.text().trim()),
        (200, r#"{"id":"mail","state":"cancelled"}"#),
        "the answer names the job's id"
    );
    let r = post(&p, "/v1/jobs/2/requeue", "");
    assert_eq!(
        (r.status, error_of(&r).0.as_str()),
        (409, "conflict"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("only dead jobs"), "{}", r.text());
}

#[test]
fn off_loopback_needs_a_token_and_a_token_is_checked() {
    // Refused before binding anything.
    let s = Scratch::new(FAST_CONFIG);
    let (code, _, err) = run_cmd(
        beaver()
            .args([
                "run",
                "--listen",
                "0.0.0.0:0",
                "--metrics-listen",
                "off",
                "--data-dir",
            ])
            .arg(s.data()),
    );
    assert_ne!(code, 0);
    assert!(err.contains("token"), "{err}");
    assert!(
        !s.data().exists(),
        "nothing may be created when start-up is refused"
    );

    let p = Proc::start(&s, &["--handler", "noop", "--token", "s3cret-t0ken"]);
    let anon = p.server();
    let r = anon.get("/v1/status").expect("get");
    assert_eq!((r.status, error_of(&r).0.as_str()), (401, "unauthorized"));
    assert!(r.text().contains("needs a token"), "{}", r.text());
    let wrong = beaver_cli::client::Server::new(&p.api, Some("s3cret-t0kem".into())).expect("url");
    let r = wrong.get("/v1/status").expect("get");
    assert_eq!(r.status, 401);
    assert!(
        r.text().contains("not this server's"),
        "a wrong token is told apart from none: {}",
        r.text()
    );
    let right = beaver_cli::client::Server::new(&p.api, Some("s3cret-t0ken".into())).expect("url");
    assert_eq!(right.get("/v1/status").expect("get").status, 200);
    let m =
        beaver_cli::client::Server::new(p.metrics.trim_end_matches("/metrics"), None).expect("url");
    assert_eq!(m.get("/metrics").expect("get").status, 401);
    // The client commands take the token from the environment.
    let (code, out, err) = run_cmd(
        beaver()
            .args(["status", "--json", "--server", &p.api])
            .env("BEAVER_TOKEN", "s3cret-t0ken"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"schema_version\": 1"), "{out}");
}

#[test]
fn threads_sets_the_runtime_threads_and_is_checked() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--threads", "3"]);
    let r = post(&p, "/v1/jobs", r#"{"id":"t-1","payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    // Plain text in a log file: no colour codes.
    assert!(p.log_text().contains(" threads=3 "), "{}", p.log_text());
    assert!(!p.log_text().contains('\x1b'), "{}", p.log_text());
    drop(p);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default = beaver_cli::settings::default_threads(cpus);
    let p = Proc::start(&s, &["--handler", "noop"]);
    assert!(
        p.log_text().contains(&format!(" threads={default} ")),
        "{}",
        p.log_text()
    );
    drop(p);
    let (code, _, err) = run_cmd(
        beaver()
            .env("BEAVER_THREADS", "0")
            .args(["run", "--listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .arg("--data-dir")
            .arg(s.data()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("threads is 0; give 1 to 1024"), "{err}");
}

#[test]
fn the_data_dir_lock_names_its_holder() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let (code, _, err) = run_cmd(
        beaver()
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--data-dir",
            ])
            .arg(s.data()),
    );
    assert_ne!(code, 0);
    assert!(err.contains(&format!("process {}", p.pid)), "{err}");
    let (code, _, err) = run_cmd(beaver().args(["status", "--data-dir"]).arg(s.data()));
    assert_ne!(code, 0);
    assert!(
        err.contains("in use by a running beaver") && err.contains("--server"),
        "{err}"
    );
}

#[test]
fn sigterm_loses_nothing_and_exits_0() {
    let s = Scratch::new(FAST_CONFIG);
    let mut p = Proc::start(
        &s,
        &[
            "--handler",
            "demo",
            "--demo-ms",
            "20-60",
            "--demo-failure-rate",
            "0",
            "--workers",
            "4",
        ],
    );
    let jobs: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"id":"t-{i}","payload":{i}}}"#))
        .collect();
    let r = post(&p, "/v1/jobs", &format!("[{}]", jobs.join(",")));
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    let st = p.sigterm(Duration::from_secs(30));
    assert!(st.success(), "exit status {st:?}; log:\n{}", p.log_text());
    let log = p.log_text();
    assert!(
        log.contains("shutting down") && log.contains("stopped cleanly"),
        "{log}"
    );
    // What a restart would recover: all 300, and a clean log.
    let (code, out, err) = run_cmd(
        beaver()
            .args(["status", "--json", "--data-dir"])
            .arg(s.data()),
    );
    assert_eq!(code, 0, "{err}");
    let doc: beaver_cli::schema::StatusDoc = serde_json::from_str(&out).expect("json");
    assert_eq!(doc.jobs.total(), 300, "{out}");
    assert_eq!(
        doc.data_dir.as_ref().map(|d| d.log_end.as_str()),
        Some("clean")
    );
    let p = Proc::start(&s, &["--handler", "noop"]);
    let done = p.wait_idle(Duration::from_secs(30));
    assert_eq!(done.jobs.completed, 300, "{:?}", done.jobs);
    assert_eq!(done.recovery.map(|r| r.jobs), Some(300));
}

/// Pids of the processes whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn a_second_signal_kills_the_processes_an_attempt_started() {
    // A command whose shell forks its work: only the shell would die with
    // the server (its parent-death signal), not the `sleep` it started.
    let secs = format!("{}.25", 1_000 + std::process::id() % 100_000);
    let command = format!("sleep {secs}; true");
    let s = Scratch::new("[engine]\nshutdown_grace_ms = 120000\n");
    let mut p = Proc::start(&s, &["--exec", &command]);
    let r = post(&p, "/v1/jobs", r#"{"id":"forks","payload":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids_running(&["sleep", &secs]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the attempt's sleep never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGINT);
    let st = p.exit_status(Duration::from_secs(10));
    assert_eq!(st.code(), Some(beaver_cli::server::EXIT_SECOND_SIGNAL));
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left = pids_running(&["sleep", &secs]);
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for pid in &left {
        // SAFETY: kill has no memory arguments; the pid is our own sleep.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "the attempt's sleep outlived the server: {left:?}"
    );
}

#[test]
fn a_second_signal_cuts_the_grace_period_short_and_loses_nothing() {
    let s = Scratch::new("[engine]\nshutdown_grace_ms = 120000\n");
    let mut p = Proc::start(&s, &["--handler", "demo", "--demo-ms", "100000-100000"]);
    let r = post(
        &p,
        "/v1/jobs",
        r#"[{"id":"slow-1","payload":1},{"id":"slow-2","payload":2}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.status().jobs.in_flight == 0 {
        assert!(Instant::now() < deadline, "no attempt started");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.signal(libc::SIGINT);
    // The first signal waits for the running attempt (up to 120 s)...
    std::thread::sleep(Duration::from_millis(500));
    p.signal(libc::SIGINT);
    // ...the second stops at once.
    let st = p.exit_status(Duration::from_secs(10));
    assert_eq!(
        st.code(),
        Some(beaver_cli::server::EXIT_SECOND_SIGNAL),
        "{}",
        p.log_text()
    );
    assert!(p.log_text().contains("a second signal"), "{}", p.log_text());
    let p = Proc::start(&s, &["--handler", "noop"]);
    let done = p.wait_idle(Duration::from_secs(30));
    assert_eq!(
        done.jobs.completed, 2,
        "both jobs ran after the restart: {:?}",
        done.jobs
    );
}

#[test]
fn a_segment_smaller_than_the_largest_batch_is_named_at_start_up() {
    const WARNING: &str = "smaller than the largest batch the limits allow";
    // 1 MiB segments, batches of up to 16 MiB.
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    assert!(p.log_text().contains(WARNING), "{}", p.log_text());
    drop(p);
    let s = Scratch::new(
        "[engine.queue.limits]\nbatch_bytes_max = 262144\nbatch_jobs_max = 100\n[engine]\nsegment_bytes = 1048576\n",
    );
    let p = Proc::start(&s, &["--handler", "noop"]);
    assert!(!p.log_text().contains(WARNING), "{}", p.log_text());
}

#[test]
fn metrics_have_their_names_and_types() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(
        &s,
        &[
            "--handler",
            "demo",
            "--demo-ms",
            "1-5",
            "--demo-failure-rate",
            "0.5",
        ],
    );
    let jobs: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"payload":{i},"max_attempts":2}}"#))
        .collect();
    assert_eq!(
        post(&p, "/v1/jobs", &format!("[{}]", jobs.join(","))).status,
        200
    );
    p.wait_idle(Duration::from_secs(30));
    let m =
        beaver_cli::client::Server::new(p.metrics.trim_end_matches("/metrics"), None).expect("url");
    let r = m.get("/metrics").expect("scrape");
    assert_eq!(r.status, 200);
    let text = r.text();
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let want = [
        ("beaver_jobs_enqueued_total", "counter"),
        ("beaver_jobs_dispatched_total", "counter"),
        ("beaver_jobs_completed_total", "counter"),
        ("beaver_jobs_failed_total", "counter"),
        ("beaver_jobs_dead_total", "counter"),
        ("beaver_job_duration_seconds", "histogram"),
        ("beaver_recovery_duration_seconds", "gauge"),
        ("beaver_queue_depth", "gauge"),
        ("beaver_jobs_in_flight", "gauge"),
        ("beaver_worker_pool_size", "gauge"),
        ("beaver_wal_fsync_duration_seconds", "histogram"),
        ("beaver_wal_group_commit_records", "histogram"),
        ("beaver_wal_bytes", "gauge"),
    ];
    for (name, ty) in want {
        assert_eq!(types.get(name), Some(&ty), "{name} in\n{text}");
    }
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("beaver_jobs_enqueued_total"), 50.0);
    assert_eq!(value("beaver_worker_pool_size"), 8.0);
    assert_eq!(
        value("beaver_jobs_completed_total") + value("beaver_jobs_dead_total"),
        50.0
    );
    assert!(value("beaver_wal_fsync_duration_seconds_count") >= 1.0);
    assert!(value("beaver_wal_bytes") > 0.0);
}

#[test]
fn client_commands_work_and_fail_clearly() {
    // Options are checked before anything is sent.
    let (code, _, err) = run_cmd(beaver().args([
        "enqueue",
        "--payload",
        "1",
        "--batch",
        "0",
        "--server",
        "http://127.0.0.1:9",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--batch") && err.contains("1..=10000"),
        "{err}"
    );
    // No server: say so and suggest --data-dir.
    let (code, _, err) = run_cmd(beaver().args(["status", "--server", "http://127.0.0.1:9"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("no beaver server answering") && err.contains("--data-dir"),
        "{err}"
    );

    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(
        &s,
        &[
            "--handler",
            "demo",
            "--demo-ms",
            "1-2",
            "--demo-failure-rate",
            "0",
        ],
    );
    // A file with a bad line: named, and nothing enqueued.
    let file = s.dir.path().join("jobs.ndjson");
    std::fs::write(
        &file,
        "{\"payload\":1}\n{\"payload\":2}\n\n{\"payload\":3,\"max_attempts\":-2}\n",
    )
    .expect("write");
    let (code, _, err) = run_cmd(
        beaver()
            .args(["enqueue", "--server", &p.api, "--file"])
            .arg(&file),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("line 4") && err.contains("max_attempts"),
        "{err}"
    );
    assert_eq!(p.status().jobs.total(), 0);
    // A JSON array across many batches, with ids: printed, duplicates marked.
    let arr: Vec<String> = (0..120)
        .map(|i| format!("  {{\"id\": \"f-{i}\", \"payload\": {{\"n\": {i}}}}}"))
        .collect();
    std::fs::write(&file, format!("[\n{}\n]\n", arr.join(",\n"))).expect("write");
    let (code, out, err) = run_cmd(
        beaver()
            .args(["enqueue", "--batch", "50", "--server", &p.api, "--file"])
            .arg(&file),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 120, "{out}");
    assert!(err.contains("enqueued 120 jobs (0 duplicates)"), "{err}");
    let (code, out, _) = run_cmd(beaver().args([
        "enqueue",
        "--json",
        "--server",
        &p.api,
        "--payload",
        "{}",
        "--id",
        "f-7",
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("\"duplicate\": true"), "{out}");
    // A server-side refusal names the line: batch 2's second job.
    std::fs::write(
        &file,
        "{\"payload\":1}\n{\"payload\":2}\n{\"payload\":3,\"max_attempts\":100000}\n",
    )
    .expect("write");
    let (code, _, err) = run_cmd(
        beaver()
            .args(["enqueue", "--batch", "2", "--server", &p.api, "--file"])
            .arg(&file),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("line 3") && err.contains("2 jobs before"),
        "{err}"
    );
    p.wait_idle(Duration::from_secs(30));
    let (code, out, err) = run_cmd(beaver().args(["job", "f-3", "--server", &p.api]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("completed") && !out.contains("{\"n\": 3}"),
        "{out}"
    );
    let (code, _, err) = run_cmd(beaver().args(["cancel", "f-3", "--server", &p.api]));
    assert_ne!(code, 0);
    assert!(err.contains("409"), "{err}");
    let (code, out, err) = run_cmd(beaver().args(["requeue", "--all-dead", "--server", &p.api]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "requeued 0 jobs");
    let (code, out, err) = run_cmd(beaver().args(["status", "--server", &p.api]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("completed 122"), "{out}");
}

#[test]
fn idle_connections_are_closed_so_they_cannot_hold_every_slot() {
    let s = Scratch::new(&format!(
        "{FAST_CONFIG}[http]\nconnections_max = 2\nidle_timeout_ms = 200\n"
    ));
    let mut p = Proc::start(&s, &["--workers", "0"]);
    let addr = p.api.trim_start_matches("http://").trim_end_matches('/');
    // Two connections that send nothing take both slots.
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let r = p.server().get("/v1/ping").expect("ping");
    assert_eq!(r.status, 503, "{}", r.text());
    // Within 1-2 idle periods the server closes them (bounded wait: 10 s).
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert_eq!(c.read(&mut byte).expect("closed, not timed out"), 0);
    }
    let r = p.server().get("/v1/ping").expect("ping");
    assert_eq!(r.status, 200, "{}", r.text());
    p.sigterm(Duration::from_secs(30));
}

/// A burst of clients connecting while the server cannot accept (stopped
/// with SIGSTOP, as a paused or busy process is) waits in the backlog of
/// 1,024, as beanstalkd's does: 300 connections to the API and 300 to the
/// metrics listener all complete at once, none dropped to retry a second
/// later, and the server answers once it runs again.
#[test]
fn a_burst_of_connections_waits_in_the_backlog() {
    const BURST: usize = 300;
    // The kernel caps every backlog at net.core.somaxconn (128 before
    // Linux 5.4): there, no server can hold the burst.
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    if cap.trim().parse::<usize>().unwrap_or(128) <= BURST {
        let said = format!(
            "SKIPPED a_burst_of_connections_waits_in_the_backlog: somaxconn {}",
            cap.trim()
        );
        let _ = writeln!(std::io::stderr(), "{said}");
        return;
    }
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let metrics = p
        .metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    p.signal(libc::SIGSTOP);
    for addr in [p.api.trim_start_matches("http://"), metrics] {
        let addr: std::net::SocketAddr = addr.parse().expect("an address");
        // One listener's burst at a time: this process's descriptors are
        // limited too (often to 1,024).
        let mut held = Vec::new();
        for _ in 0..BURST {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
        if held.len() < BURST {
            p.signal(libc::SIGCONT);
            panic!("{addr}: {} of {BURST} connections held", held.len());
        }
    }
    p.signal(libc::SIGCONT);
    assert_eq!(p.status().jobs.total(), 0);
}
