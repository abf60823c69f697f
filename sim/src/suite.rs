//! Ranges of seeds: parallel runs (each seed in a fresh runtime on a fresh
//! thread), the coverage table, the determinism sample and the planted bugs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::run::{RunResult, run_seed};
use crate::world::Marks;

/// Every fault class and recovery branch the default range must hit.
pub const REQUIRED_MARKS: &[&str] = &[
    "fault: process kill",
    "fault: power loss",
    "fault: power loss kept a torn prefix",
    "fault: power loss kept reordered sectors",
    "fault: power loss dropped unsynced data",
    "fault: torn sector with garbage",
    "fault: torn sector with zeros",
    "fault: unsynced directory entry lost",
    "fault: ENOSPC episode",
    "fault: bit rot in vouched WAL bytes",
    "fault: lost write of vouched WAL bytes",
    "fault: bit rot in the newest snapshot",
    "fault: slow disk",
    "fault: reads split at a page boundary (racing writes)",
    "crash: mid group commit (unsynced WAL bytes)",
    "crash: mid segment rotation (new segment unsynced)",
    "crash: mid snapshot write",
    "crash: during recovery",
    "recovery: torn tail discarded",
    "recovery: from a snapshot",
    "recovery: snapshot fallback (.broken)",
    "recovery: attempts interrupted by the crash",
    "recovery: attempts given back uncounted (never started)",
    "fault: a job killed the server as it started",
    "job: a job that killed the server as it started ended dead",
    "recovery: refused corrupt vouched bytes (fail-stop)",
    "fail-stop: after fsync EIO",
    "rejection: disk full (ENOSPC reserve)",
    "rejection: too large for a log segment",
    "check: recovered state equals the model",
    "check: engine state equals the model",
    "snapshot: written",
    "wal: segment deleted",
    "wal: a lone client's commit made by the core task",
    "job: timed out",
    "job: dead",
    "job: cancelled",
    "job: purged by retention",
    "client: duplicate enqueue acknowledged",
    "client: requeue of dead jobs acknowledged",
    "liveness: disk freed itself after a full phase",
    // External workers (see `external`).
    "ext: lease granted",
    "ext: batch lease (several jobs)",
    "ext: long-poll lease answered with jobs",
    "ext: heartbeat renewed",
    "ext: completed by a worker",
    "ext: failed by a worker",
    "ext: retried completion acknowledged",
    "ext: lease expired",
    "ext: stale heartbeat refused (lease_lost)",
    "ext: stale completion refused (lease_lost)",
    "ext: worker partitioned from the server",
    "ext: partition healed, late completion refused",
    "ext: worker died holding a lease",
    "ext: worker node killed",
    "ext: queue paused",
    "ext: queue paused for a while",
    "ext: a lease waited out a timed pause",
    "ext: queue resumed",
    "ext: queue purged",
    // Beanstalk-style connections (see `sessions`).
    "bs: reserved",
    "bs: deleted a reserved job",
    "bs: released",
    "bs: buried",
    "bs: reserved a buried job by id",
    "bs: touched",
    "bs: a job another connection held was reserved again",
    "bs: closed holding jobs, each ready again at once",
    "bs: server gone while a connection held reservations",
    "bs: reserved a job once its delay was over",
];

/// Seeds that once found a bug (outside the default range, or kept as
/// the case of one): every run of the suite (and of the planted bugs)
/// replays them first. Faults added to the plan later are not drawn for
/// them (see [`crate::plan::DRAWN_BEFORE_READ_FAULTS`]), so each replays
/// the schedule that found its bug.
pub const REGRESSION_SEEDS: &[u64] = &[
    // An fsync EIO lost a segment's preallocated length, then a power loss
    // cut the file inside an unacknowledged batch: start-up refused.
    54366,
    // A squeezed disk with no snapshot yet (so the reserve's snapshot share
    // was 0) and 4 KiB segments: the drain's records, a sector each, took
    // the room the compaction's snapshots needed. Kept first although it is
    // in the default range, as the case of the reserve growing with the
    // jobs held (issue 21.2).
    2587,
    // A squeezed seed without size or time snapshots: the disk was seen
    // full, then a crasher restarted the engine, which found its disk out
    // of the reserve and owed no compaction; the log grew. The oracle
    // only asks the engine that saw its disk full to shrink the log.
    73175,
    // A retention purge was durable (the model folds it then) but not yet
    // applied by the core when the end check read the job: the model was a
    // record ahead. The end check now reads until the two agree.
    61005613,
    // Two connections each remembered burying one job (requeued between
    // the buries); the first one's reserve-job took it, and the second's
    // was refused as a conflict: the reserve-job oracle excuses a job
    // another connection reserved by id since its bury.
    1754761,
];

thread_local! {
    static MUTANT: std::cell::Cell<Option<MutantName>> = const { std::cell::Cell::new(None) };
}

#[cfg(feature = "mutants")]
type MutantName = beaver_core::mutants::Mutant;
#[cfg(not(feature = "mutants"))]
type MutantName = ();

/// The planted bug the current seed runs with (set by the suite per thread).
#[cfg(feature = "mutants")]
pub fn active_mutant() -> Option<beaver_core::mutants::Mutant> {
    MUTANT.with(|m| m.get())
}

/// A seed that runs longer than this (wall clock) is stuck: a task that
/// never yields stops simulated time. The process exits with the seed.
const SEED_WALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs one seed on a fresh thread, with `mutant` planted.
pub fn run_fresh(seed: u64, keep_trace: bool, mutant: Option<MutantName>) -> RunResult {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        MUTANT.with(|m| m.set(mutant));
        let r = run_seed(seed, keep_trace);
        let _ = tx.send(());
        r
    });
    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(SEED_WALL_LIMIT) {
        println!(
            "beaver-sim: seed {seed} is stuck (no progress in {} s: a task never yields)",
            SEED_WALL_LIMIT.as_secs()
        );
        println!("replay with: BEAVER_SEED={seed} BEAVER_SIM_TRACE=live cargo sim");
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
    match h.join() {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".into());
            RunResult {
                seed,
                violation: Some(format!("panic: {msg}")),
                marks: Marks::new(),
                trace_hash: 0,
                trace: None,
            }
        }
    }
}

/// The replay command for a seed.
pub fn replay_command(seed: u64, mutant: Option<&str>) -> String {
    match mutant {
        Some(m) => format!(
            "BEAVER_SEED={seed} BEAVER_MUTANT={m} BEAVER_SIM_TRACE=1 cargo sim --features mutants"
        ),
        None => format!("BEAVER_SEED={seed} BEAVER_SIM_TRACE=1 cargo sim"),
    }
}

/// Runs seeds `start..start+count` on `threads` threads; stops at the first
/// failure when `stop_early`. Returns the results in seed order.
pub fn run_range(
    start: u64,
    count: u64,
    threads: usize,
    mutant: Option<MutantName>,
    stop_early: bool,
) -> Vec<RunResult> {
    let next = Arc::new(AtomicU64::new(start));
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for _ in 0..threads.max(1) {
        let (next, stop, out) = (next.clone(), stop.clone(), out.clone());
        hs.push(std::thread::spawn(move || {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    return;
                }
                let r = run_fresh(seed, false, mutant);
                if r.violation.is_some() && stop_early {
                    stop.store(true, Ordering::Relaxed);
                }
                out.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    let mut v = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
    v.sort_by_key(|r| r.seed);
    v
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// The default range (`BEAVER_SIM_START`, `BEAVER_SIM_SEEDS` override it).
pub fn default_range() -> (u64, u64) {
    (
        env_u64("BEAVER_SIM_START").unwrap_or(0),
        env_u64("BEAVER_SIM_SEEDS").unwrap_or(20_000),
    )
}

fn threads() -> usize {
    env_u64("BEAVER_SIM_THREADS")
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The exploration range, if asked for: `BEAVER_SIM_EXPLORE=N` seeds from
/// a random start (`BEAVER_SIM_EXPLORE_START` fixes it), so that every run
/// meets schedules no run met before; the fixed range stays the baseline
/// of coverage and determinism.
pub fn explore_range() -> Option<(u64, u64)> {
    let count = env_u64("BEAVER_SIM_EXPLORE").filter(|&n| n > 0)?;
    let start = env_u64("BEAVER_SIM_EXPLORE_START").unwrap_or_else(random_start);
    Some((start, count))
}

/// A start far beyond the fixed range, a multiple of 1,000 (easy to read
/// back). From the OS's entropy: under madsim the process's clock and
/// random sources are the simulation's, a file read is not.
fn random_start() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    let r = u64::from_le_bytes(b) ^ u64::from(std::process::id()).rotate_left(32);
    1_000_000 + (r % 1_000_000_000) * 1_000
}

/// Runs a range with no planted bug; prints the seeds per second and, for
/// the first failure, its replay command. Returns the results, or `None`
/// after a failure.
fn run_checked(what: &str, start: u64, count: u64, t: usize) -> Option<Vec<RunResult>> {
    println!(
        "beaver-sim: {what}: seeds {start}..{} on {t} threads",
        start + count
    );
    // A long sweep wants every failure, not the first.
    let keep_going = std::env::var_os("BEAVER_SIM_KEEP_GOING").is_some();
    let began = Instant::now();
    let results = run_range(start, count, t, None, !keep_going);
    let secs = began.elapsed().as_secs_f64();
    println!(
        "beaver-sim: {what}: {} seeds in {secs:.1} s ({:.1} seeds/s)",
        results.len(),
        results.len() as f64 / secs.max(1e-9)
    );
    let bad: Vec<&RunResult> = results.iter().filter(|r| r.violation.is_some()).collect();
    for r in &bad {
        println!(
            "beaver-sim: seed {} FAILED: {}",
            r.seed,
            r.violation.as_deref().unwrap_or("")
        );
        println!("replay with: {}", replay_command(r.seed, None));
    }
    if !bad.is_empty() {
        println!("{} passed, {} failed", results.len() - bad.len(), bad.len());
        return None;
    }
    Some(results)
}

/// Replays every [`REGRESSION_SEEDS`] seed; false (after printing the
/// replay command) if one fails.
fn regressions() -> bool {
    for &seed in REGRESSION_SEEDS {
        let r = run_fresh(seed, false, None);
        if let Some(v) = &r.violation {
            println!("beaver-sim: regression seed {seed} FAILED: {v}");
            println!("replay with: {}", replay_command(seed, None));
            println!("0 passed, 1 failed");
            return false;
        }
    }
    println!(
        "beaver-sim: {} regression seeds passed",
        REGRESSION_SEEDS.len()
    );
    true
}

/// Replays one seed (`BEAVER_SEED`), printing its trace with `BEAVER_SIM_TRACE=1`.
pub fn replay(seed: u64, mutant: Option<MutantName>, mutant_name: Option<&str>) -> bool {
    let r = run_fresh(seed, true, mutant);
    if std::env::var_os("BEAVER_SIM_TRACE").is_some() {
        for line in r.trace.iter().flatten() {
            println!("{line}");
        }
    }
    match &r.violation {
        None => {
            println!("seed {seed}: ok (trace hash {:016x})", r.trace_hash);
            true
        }
        Some(v) => {
            println!("seed {seed}: FAILED: {v}");
            println!("replay: {}", replay_command(seed, mutant_name));
            false
        }
    }
}

/// The default suite: the seed range, the coverage table, the determinism
/// sample. Returns false on any failure.
pub fn seeds() -> bool {
    let (start, count) = default_range();
    let t = threads();
    if !regressions() {
        return false;
    }
    let Some(results) = run_checked("fixed range", start, count, t) else {
        return false;
    };
    let ran = results.len();
    let mut marks: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for r in &results {
        for (k, v) in &r.marks {
            let e = marks.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    println!("{:<55} {:>9} {:>7}", "coverage mark", "hits", "seeds");
    let mut missing = Vec::new();
    for name in REQUIRED_MARKS {
        if !marks.contains_key(name) {
            missing.push(*name);
        }
    }
    for (k, (hits, seeds)) in &marks {
        println!("{k:<55} {hits:>9} {seeds:>7}");
    }
    for m in &missing {
        println!("{m:<55} {:>9} {:>7}   <- NEVER HIT", 0, 0);
    }
    // Determinism: a sample of seeds runs again; the traces must match.
    let sample: Vec<&RunResult> = results.iter().step_by(100.max(ran / 20)).collect();
    let mut nondet = Vec::new();
    for r in &sample {
        let again = run_fresh(r.seed, false, None);
        if again.trace_hash != r.trace_hash {
            nondet.push(r.seed);
        }
    }
    println!(
        "beaver-sim: determinism: {} seeds run twice, {} differed",
        sample.len(),
        nondet.len()
    );
    let mut ok = true;
    if !missing.is_empty() {
        println!("beaver-sim: FAILED: coverage marks never hit: {missing:?}");
        ok = false;
    }
    if let Some(s) = nondet.first() {
        println!(
            "beaver-sim: FAILED: seed {s} is not deterministic (trace hashes differ); replay: {}",
            replay_command(*s, None)
        );
        ok = false;
    }
    let mut total = ran;
    if ok {
        if let Some((start, count)) = explore_range() {
            match run_checked("exploration (random start)", start, count, t) {
                Some(more) => total += more.len(),
                None => return false,
            }
        }
    }
    if ok {
        println!("{total} passed, 0 failed");
    } else {
        println!("{total} passed, 1 failed");
    }
    ok
}

/// Every planted bug (or only `only`) must be caught within the
/// regression seeds and the default range (tried in that order); prints
/// the seeds each took.
#[cfg(feature = "mutants")]
pub fn mutants(only: Option<beaver_core::mutants::Mutant>) -> bool {
    use beaver_core::mutants::Mutant;
    let (start, count) = default_range();
    let began = Instant::now();
    let all = Mutant::ALL
        .into_iter()
        .filter(|m| only.is_none_or(|o| o == *m));
    let todo = Arc::new(Mutex::new(all.collect::<Vec<_>>()));
    let found = Arc::new(Mutex::new(BTreeMap::new()));
    let mut hs = Vec::new();
    for _ in 0..threads() {
        let (todo, found) = (todo.clone(), found.clone());
        hs.push(std::thread::spawn(move || {
            loop {
                let m = {
                    let mut t = todo.lock().unwrap_or_else(|p| p.into_inner());
                    if t.is_empty() {
                        return;
                    }
                    t.remove(0)
                };
                let mut caught = None;
                let seeds = REGRESSION_SEEDS.iter().copied().chain(start..start + count);
                for (took, seed) in seeds.enumerate() {
                    let r = run_fresh(seed, false, Some(m));
                    if let Some(v) = r.violation {
                        caught = Some((seed, took as u64 + 1, v));
                        break;
                    }
                }
                found
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(m, caught);
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    let found = std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
    let mut ok = true;
    let (mut passed, mut failed) = (0, 0);
    println!(
        "{:<38} {:>6} {:>6}  first violation",
        "planted bug", "seeds", "seed"
    );
    for (m, c) in &found {
        match c {
            Some((seed, took, v)) => {
                passed += 1;
                let v: String = v.chars().take(110).collect();
                println!("{:<38} {took:>6} {seed:>6}  {v}", m.name());
            }
            None => {
                failed += 1;
                ok = false;
                println!(
                    "{:<38} NOT CAUGHT in the regression seeds and seeds {start}..{}",
                    m.name(),
                    start + count
                );
            }
        }
    }
    println!(
        "beaver-sim: planted bugs checked in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    ok
}
