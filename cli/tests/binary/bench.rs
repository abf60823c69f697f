//! `beaver bench` works end to end on a small run: it starts its own
//! servers, drives them, prints its lines and table, and leaves nothing
//! behind. No timing is asserted: speed is the benchmark's to measure.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::beaver;

/// Runs `beaver bench ARGS` (killed by PID after `within`); (exit code, stdout, stderr).
fn bench(args: &[&str], within: Duration) -> (i32, String, String) {
    let mut child = beaver()
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run beaver bench");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            // Its servers die with it (they get SIGKILL when it ends).
            let _ = child.kill();
            let _ = child.wait();
            panic!("beaver bench did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

#[test]
fn a_quick_bench_runs_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = bench(
        &["--quick", "--only", "W1,W2", "--dir", d],
        Duration::from_secs(240),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for name in ["W1 ", "W2 "] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains("jobs")),
            "no {name}line:\n{out}"
        );
    }
    assert!(
        out.contains("| W1 | 1-job enqueues, 1 client | 2000 jobs |"),
        "{out}"
    );
    assert!(
        out.contains("| W2 | 1-job enqueues, 32 clients | 10000 jobs |"),
        "{out}"
    );
    assert!(out.contains("No disk probe (W5)"), "{out}");
    // The temp data dirs are gone.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_unknown_workload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = bench(&["--only", "W9", "--dir", d], Duration::from_secs(60));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("W9") && err.contains("W2b"), "{err}");
}
