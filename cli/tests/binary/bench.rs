//! `beaver bench` works end to end on a small run: it starts its own
//! servers, drives them, prints its lines and table, and leaves nothing
//! behind. No timing is asserted: speed is the benchmark's to measure.

use std::time::Duration;

use crate::common::{beaver, run_cmd_within};

/// Runs `beaver bench ARGS` (killed by PID after `within`); (exit code, stdout, stderr).
fn bench(args: &[&str], within: Duration) -> (i32, String, String) {
    run_cmd_within(beaver().arg("bench").args(args), within)
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

#[test]
fn a_quick_wb1_runs_against_both_servers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = bench(
        &["--quick", "--only", "Wb1", "--dir", d],
        Duration::from_secs(240),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    if !std::path::Path::new("/usr/bin/beanstalkd").exists() {
        // Skipped, and saying so (loudly: nothing was compared).
        assert!(
            out.contains("Wb1       SKIPPED: /usr/bin/beanstalkd"),
            "{out}"
        );
        let msg = "SKIPPED a_quick_wb1_runs_against_both_servers: beanstalkd is not installed (apt-get install beanstalkd)";
        assert!(std::env::var_os("CI").is_none(), "{msg}; CI must run it");
        eprintln!("{msg}");
        return;
    }
    for name in ["Wb1 beanstalkd ", "Wb1 beaver "] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains("2000 jobs") && l.contains("p99")),
            "no {name}line:\n{out}"
        );
    }
    assert!(
        out.contains("| Wb1 beanstalkd | puts, 1 connection | 2000 jobs |"),
        "{out}"
    );
    // beaver's row carries the target and the ratio, met or not.
    assert!(
        out.lines().any(
            |l| l.starts_with("| Wb1 beaver | puts, 1 connection | 2000 jobs |")
                && l.contains(">= 1.0x beanstalkd: ")
        ),
        "{out}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
