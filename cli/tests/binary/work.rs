//! `beaver work` against a real `beaver run --workers 0` on 127.0.0.1:
//! outcomes, timeouts, and `kill -9` of the server and of the worker in
//! the middle. Every process is stopped by its PID; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::{FAST_CONFIG, Proc, Scratch, alive, beaver, post, wait_for, wait_within};

/// A running `beaver work --json`.
struct Worker {
    child: Option<Child>,
    /// Its JSON event lines so far.
    events: Arc<Mutex<Vec<Value>>>,
    log: std::path::PathBuf,
}

impl Worker {
    fn start(s: &Scratch, api: &str, concurrency: u32, exec: &str) -> Worker {
        let n = std::fs::read_dir(s.dir.path()).map_or(0, |d| d.count());
        let log = s.dir.path().join(format!("worker-{n}.log"));
        let mut child = beaver()
            .args(["work", "--server", api, "--queue", "default", "--json"])
            .args(["--concurrency", &concurrency.to_string(), "--exec", exec])
            .current_dir(s.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn beaver work");
        let out = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let keep = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                keep.lock().expect("events").push(v);
            }
        });
        Worker {
            child: Some(child),
            events,
            log,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The events named `name` so far.
    fn named(&self, name: &str) -> Vec<Value> {
        let all = self.events.lock().expect("events");
        all.iter().filter(|e| e["event"] == name).cloned().collect()
    }

    /// Waits (at most `within`) until `n` events named `name` were printed.
    fn wait_events(&self, name: &str, n: usize, within: Duration) {
        let seen = wait_for(within, || self.named(name).len() >= n);
        assert!(
            seen,
            "fewer than {n} {name:?} events after {within:?}; the worker's log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn enqueue(p: &Proc, jobs: &[Value]) {
    let r = post(p, "/v1/jobs", &Value::Array(jobs.to_vec()).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
}

fn job(p: &Proc, id: &str) -> Value {
    let r = p.server().get(&format!("/v1/jobs/{id}")).expect("job");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("job json")
}

/// Live `sleep SECS` processes (a worker's own command line holds the
/// text too, but not as these two arguments).
fn sleeping(secs: &str) -> usize {
    let marker = format!("sleep\0{secs}\0");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<i32>()
                .is_ok_and(alive)
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
        .count()
}

#[test]
fn jobs_complete_failures_carry_the_stderr_tail_and_timeouts_kill() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--workers", "0"]);
    let mut jobs: Vec<Value> = (0..5)
        .map(|i| serde_json::json!({"id": format!("ok-{i}"), "payload": {"n": i}}))
        .collect();
    jobs.push(serde_json::json!({"id": "bad", "payload": "fail", "max_attempts": 1}));
    jobs.push(serde_json::json!({"id": "slow", "payload": "sleep", "max_attempts": 1, "timeout_ms": 1000}));
    enqueue(&p, &jobs);
    // `sleep 37.25` marks the process the timeout must kill.
    let script = r#"p=$(cat); case "$p" in *fail*) echo "it went wrong in $BEAVER_QUEUE" >&2; exit 4;; *sleep*) sleep 37.25;; esac; test "$BEAVER_ATTEMPT" = 1 && test -n "$BEAVER_JOB_ID""#;
    let mut w = Worker::start(&s, &p.api, 3, script);
    let st = p.wait_idle(Duration::from_secs(30));
    assert_eq!((st.jobs.completed, st.jobs.dead), (5, 2), "{:?}", st.jobs);
    let bad = job(&p, "bad");
    assert_eq!(bad["state"], "dead");
    assert_eq!(bad["last_error"], "exit status 4: it went wrong in default");
    let slow = job(&p, "slow");
    assert_eq!(slow["state"], "dead");
    assert!(
        slow["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{slow}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || sleeping("37.25") == 0),
        "the timed-out job's process outlived its timeout"
    );
    w.wait_events("completed", 5, Duration::from_secs(5));
    w.wait_events("failed", 2, Duration::from_secs(5));
    w.signal(libc::SIGTERM);
    let mut c = w.child.take().expect("running");
    let status = wait_within(&mut c, Duration::from_secs(15), "beaver work to stop");
    assert!(status.success(), "{status}");
    w.wait_events("stopped", 1, Duration::from_secs(5));
}

#[test]
fn a_server_killed_in_the_middle_loses_nothing_and_completes_nothing_twice() {
    let s = Scratch::new(FAST_CONFIG);
    let mut p = Proc::start(&s, &["--workers", "0"]);
    let jobs: Vec<Value> = (0..40)
        .map(|i| serde_json::json!({"id": format!("k-{i}"), "payload": i}))
        .collect();
    enqueue(&p, &jobs);
    let w = Worker::start(&s, &p.api, 4, "sleep 0.05");
    w.wait_events("completed", 8, Duration::from_secs(30));
    let listen = p.api.trim_start_matches("http://").to_string();
    p.kill9();
    w.wait_events("server_unreachable", 1, Duration::from_secs(20));
    let p = Proc::start_listening(&s, &listen, &["--workers", "0"], &[]);
    let st = p.wait_idle(Duration::from_secs(60));
    assert_eq!(
        (st.jobs.completed, st.jobs.dead, st.jobs.cancelled),
        (40, 0, 0),
        "{:?}",
        st.jobs
    );
    w.wait_events("server_reachable", 1, Duration::from_secs(10));
    let mut reported: Vec<String> = w
        .named("completed")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let n = reported.len();
    reported.sort();
    reported.dedup();
    assert_eq!(reported.len(), n, "a job was reported completed twice");
    for i in 0..40 {
        let j = job(&p, &format!("k-{i}"));
        assert_eq!(j["state"], "completed", "{j}");
        // At most the attempt cut by the restart, then the one that completed.
        assert!(matches!(j["attempt"].as_u64(), Some(1 | 2)), "{j}");
    }
}

#[test]
fn a_worker_killed_in_the_middle_has_its_jobs_run_again_elsewhere_once() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--workers", "0"]);
    let jobs: Vec<Value> = (0..4)
        .map(|i| serde_json::json!({"id": format!("w-{i}"), "payload": i, "timeout_ms": 3000}))
        .collect();
    enqueue(&p, &jobs);
    // `sleep 41.5` marks the first worker's commands.
    let mut first = Worker::start(&s, &p.api, 4, "sleep 41.5");
    first.wait_events("leased", 4, Duration::from_secs(20));
    first.kill9();
    // Their parent-death signal kills the commands with the worker.
    assert!(
        wait_for(Duration::from_secs(10), || sleeping("41.5") == 0),
        "the killed worker's commands outlived it"
    );
    let second = Worker::start(&s, &p.api, 4, "true");
    let st = p.wait_idle(Duration::from_secs(60));
    let views: Vec<Value> = (0..4).map(|i| job(&p, &format!("w-{i}"))).collect();
    assert_eq!((st.jobs.completed, st.jobs.dead), (4, 0), "{views:?}");
    second.wait_events("completed", 4, Duration::from_secs(10));
    assert_eq!(second.named("completed").len(), 4);
    for i in 0..4 {
        let j = job(&p, &format!("w-{i}"));
        assert_eq!(j["state"], "completed", "{j}");
        // The first worker's attempt expired and counts; the second completed.
        assert_eq!(j["attempt"], 2, "{j}");
        assert!(j["last_error"].as_str().is_some(), "{j}");
    }
}
