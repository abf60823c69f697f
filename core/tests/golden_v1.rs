//! Data written in format version 1 still reads and applies to the same
//! state: a whole log (a small history with every kind of record, assigned
//! `~N` ids, an old client id of digits only and attempts in flight at its
//! end) and a snapshot taken half-way through it, both written by the
//! version-1 build, rebuild to the job views recorded beside them.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::{Driver, rebuild};
use beaver_core::{Config, Core, JobSpec, Outcome, Record, RequeueTarget, Retention, codec};
use common::*;

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn read_golden(name: &str) -> Vec<u8> {
    std::fs::read(golden_path(name)).unwrap_or_else(|e| panic!("golden file {name} missing: {e}"))
}

/// The records of a framed log file (each a little-endian u32 length,
/// then an encoded record).
fn unframe(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(codec::decode_record(&bytes[4..4 + len]).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}

/// The configuration the history ran with (one worker, one prefetched
/// attempt, at most two finished jobs kept).
fn history_config() -> Config {
    Config {
        prefetch: 1,
        retention: Retention {
            finished_age_ms: 1_000_000,
            finished_count_max: 2,
        },
        ..config()
    }
}

/// What a rebuild holds, as JSON: every job's view in acceptance order,
/// the counts per state and the remembered ids' count.
fn state_json(core: &Core) -> serde_json::Value {
    let snapshot = core.snapshot();
    let jobs: Vec<_> = snapshot
        .jobs
        .iter()
        .map(|j| core.job(j.id.as_str()).unwrap())
        .collect();
    let stats = core.stats();
    serde_json::json!({
        "jobs": jobs,
        "counts": stats.jobs,
        "remembered_ids": stats.remembered_ids,
        "next_seq": snapshot.next_seq,
        "applied_lsn": core.applied_lsn(),
    })
}

fn expected_state() -> serde_json::Value {
    serde_json::from_slice(&read_golden("history-v1-state.json")).unwrap()
}

#[test]
fn a_version_1_log_rebuilds_to_the_state_it_was_written_with() {
    let log = unframe(&read_golden("history-v1-log.bin"));
    let core = rebuild(history_config(), None, &log).unwrap();
    core.check_invariants().unwrap();
    assert_eq!(state_json(&core), expected_state());
}

#[test]
fn a_version_1_snapshot_and_the_log_after_it_rebuild_to_the_same_state() {
    let log = unframe(&read_golden("history-v1-log.bin"));
    let snapshot = read_golden("history-v1-snapshot.bin");
    let core = rebuild(history_config(), Some(&snapshot), &log).unwrap();
    core.check_invariants().unwrap();
    assert!(
        core.applied_lsn()
            > Core::recover_encoded(history_config(), &snapshot, [])
                .unwrap()
                .applied_lsn(),
        "the snapshot is taken half-way, so records after it apply"
    );
    assert_eq!(state_json(&core), expected_state());
    let decoded = codec::decode_snapshot(&snapshot).unwrap();
    let by_record = Core::recover(history_config(), Some(decoded), log).unwrap();
    assert_eq!(state_json(&by_record), expected_state());
}

/// Writes the golden files of this history (run once, by the version-1
/// build, with `BEAVER_BLESS=1`; never again: they are what version 1
/// wrote).
#[test]
fn write_the_version_1_history_once() {
    if std::env::var_os("BEAVER_BLESS").is_none() || golden_path("history-v1-log.bin").exists() {
        return;
    }
    let mut d = Driver::new(history_config());
    let later = JobSpec {
        queue: Some(beaver_core::QueueName::parse("emails").unwrap()),
        priority: 5,
        delay_ms: 60_000,
        ..spec("later")
    };
    let unnamed = || JobSpec::new(payload("{\"n\":1}"));
    // `mail` succeeds; `~2` fails once then succeeds; `7` (a client id of
    // digits only, allowed then) fails until dead and is requeued; `~4`
    // is cancelled while pending.
    d.at(1_000).enqueue(
        1,
        vec![spec("mail"), unnamed(), spec("7"), unnamed(), later],
    );
    d.sync_all();
    d.cancel(2, "~4");
    d.sync_all();
    let work = |x: &beaver_core::Execution| match (x.id.as_str(), x.attempt) {
        ("7", _) => Some(Outcome::Failed("exit status 1".into())),
        ("~2", 1) => Some(Outcome::Failed("boom".into())),
        _ => Some(Outcome::Succeeded),
    };
    // Retries until `7` is dead, well before `later` is due.
    d.drive_until_quiet(work);
    while d.core().next_deadline().is_some_and(|t| t < 30_000) {
        d.step_to_deadline();
        d.drive_until_quiet(work);
    }
    d.take_snapshot();
    let snapshot = codec::encode_queue_snapshot(d.core());
    d.requeue(3, RequeueTarget::AllDead);
    d.sync_all();
    // Four more (`10` another client id of digits only, the number the
    // next job will get), two attempts in flight at the end: one started,
    // one dispatched ahead of the busy worker.
    d.enqueue(4, vec![spec("x1"), spec("x2"), unnamed(), spec("10")]);
    for _ in 0..4 {
        d.sync_all();
    }
    let started = d.executions()[0].clone();
    d.started(started.id.as_str(), started.attempt);
    d.sync_all();
    let mut framed = Vec::new();
    for r in d.log() {
        let bytes = codec::encode_record(r);
        framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        framed.extend_from_slice(&bytes);
    }
    let core = rebuild(history_config(), None, d.log()).unwrap();
    let state = serde_json::to_vec_pretty(&state_json(&core)).unwrap();
    std::fs::write(golden_path("history-v1-log.bin"), framed).unwrap();
    std::fs::write(golden_path("history-v1-snapshot.bin"), snapshot).unwrap();
    std::fs::write(golden_path("history-v1-state.json"), state).unwrap();
}
