//! `beaver bench`: the performance benchmark. It starts real `beaver run`
//! child processes (this executable, `noop` handler, a temp data dir,
//! 127.0.0.1 ports it picks), drives their HTTP API from keep-alive clients
//! on loopback (one request in flight each), and prints one line per
//! workload and a table for the README with the targets and whether each
//! was met. The Wb workloads drive `beaver beanstalkd` and Debian's
//! `beanstalkd` with the same beanstalk client instead.
//!
//! Every figure stands beside the disk probe (W5) of the same run, taken
//! first and last: the disk's fdatasync rate swings by more than 10x, and
//! below [`probe::FAST_DISK_SYNCS_PER_SEC`] the run says its figures do not
//! count. Timing is only ever reported, never asserted.

mod beanstalk;
mod bs_conn;
pub(crate) mod conn;
mod external;
mod load;
mod probe;
mod report;
mod server;
mod workloads;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

pub use report::Row;

/// A beanstalkd workload: its rows (beanstalkd's, then beaver's).
type BsWorkload = fn(&mut workloads::Ctx) -> Result<Vec<Row>, String>;

/// The workloads, in the order they run (W5 runs first and again last).
pub const WORKLOADS: [&str; 15] = [
    "W5", "W0", "W1", "W2", "W2b", "W4", "snap", "W3", "W3x", "W3x1", "W2x", "Wb1", "Wb2", "Wb3",
    "Wbmem",
];

/// The flags of `beaver bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where the temp data dirs go (on the disk to measure); removed at the end
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Run only these workloads (comma-separated): W0, W1, W2, W2b, W3, W3x, W3x1, W2x, W4, W5, snap, Wb1, Wb2, Wb3, Wbmem
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Counts scaled down 10x: a smoke run (figures are not comparable with the targets)
    #[arg(long)]
    pub quick: bool,
    /// Threads of the benchmark's own client runtime
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub client_threads: usize,
}

/// Runs the selected workloads and prints their figures; `Err` if a
/// workload could not run (a server that would not start, an answer that
/// was not 200). Missed targets are reported, not errors.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let selected = select(&args.only)?;
    let root = tempfile::Builder::new()
        .prefix("beaver-bench-")
        .tempdir_in(&args.dir)
        .map_err(|e| format!("cannot create a temp dir in {}: {e}", args.dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.clamp(1, 64))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let mut ctx = workloads::Ctx {
        rt,
        root: root.path().to_path_buf(),
        scale: if args.quick { 10 } else { 1 },
        dirs: 0,
    };
    let t = Instant::now();
    println!(
        "beaver bench {}: {} build, {} CPUs, temp data dirs under {}{}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "DEBUG (figures mean nothing)"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        root.path().display(),
        if args.quick {
            "; --quick: counts / 10, not comparable with the targets"
        } else {
            ""
        }
    );
    println!("{}", report::HEADER);
    let mut rows: Vec<Row> = Vec::new();
    let mut emit = |r: Row| {
        println!("{}", r.line());
        rows.push(r);
    };
    let on = |w: &str| selected.contains(w);

    if on("W5") {
        emit(workloads::w5(&ctx, "W5")?);
        emit(workloads::w5_spinning(&ctx)?);
    }
    if on("W0") {
        for r in workloads::w0(&mut ctx)? {
            emit(r);
        }
    }
    if on("W1") {
        emit(workloads::w1(&mut ctx)?);
    }
    if on("W2") {
        emit(workloads::w2(&mut ctx)?);
    }
    if on("W2b") || on("W4") || on("snap") {
        // One backlog of 1,000,000 jobs serves W2b (filling it), W4
        // (recovering it) and the snapshot case (snapshotting it).
        let (row, mut big) = workloads::w2b(&mut ctx)?;
        if on("W2b") {
            emit(row);
        }
        if on("W4") {
            let (row, restarted) =
                workloads::w4(big, "W4", "kill -9, restart: spawn to full /v1/status")?;
            emit(row);
            big = restarted;
        }
        if on("snap") {
            for r in workloads::snap(&ctx, &big)? {
                emit(r);
            }
            // A server that has run a while restarts from a snapshot.
            let (row, restarted) = workloads::w4(
                big,
                "W4+snap",
                "as W4, from the snapshot just written and the log after it",
            )?;
            emit(row);
            big = restarted;
        }
        drop(big);
    }
    if on("W3") {
        emit(workloads::w3(&mut ctx)?);
    }
    if on("W3x") {
        emit(external::w3x(&mut ctx)?);
    }
    if on("W3x1") {
        emit(external::w3x1(&mut ctx)?);
    }
    if on("W2x") {
        for r in external::w2x(&mut ctx)? {
            emit(r);
        }
    }
    let beanstalk: [(&str, BsWorkload); 4] = [
        ("Wb1", beanstalk::wb1),
        ("Wb2", beanstalk::wb2),
        ("Wb3", beanstalk::wb3),
        ("Wbmem", beanstalk::wbmem),
    ];
    for (name, workload) in beanstalk {
        if on(name) {
            for r in workload(&mut ctx)? {
                emit(r);
            }
        }
    }
    if on("W5") {
        emit(workloads::w5(&ctx, "W5 again")?);
    }
    println!("(whole run: {:.0} s)", t.elapsed().as_secs_f64());
    println!();
    print!("{}", report::table(&rows, args.quick));
    Ok(())
}

fn select(only: &[String]) -> Result<BTreeSet<&'static str>, String> {
    if only.is_empty() {
        return Ok(WORKLOADS.into_iter().collect());
    }
    only.iter()
        .map(|w| {
            WORKLOADS
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(w.trim()))
                .ok_or_else(|| {
                    format!(
                        "--only {w}: no such workload; give some of {}",
                        WORKLOADS.join(",")
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn selections() {
        assert_eq!(select(&[]).unwrap().len(), WORKLOADS.len());
        let s = select(&["w1".into(), "W2B".into()]).unwrap();
        assert!(s.contains("W1") && s.contains("W2b") && !s.contains("W2"));
        assert!(select(&["W9".into()]).is_err());
    }
}
