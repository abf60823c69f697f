//! Data written in format version 1 still reads and applies to the same
//! state: a whole log (a small history with every kind of record, assigned
//! `~N` ids, an old client id of digits only and attempts in flight at its
//! end) and a snapshot taken half-way through it, both written by the
//! version-1 build, rebuild to the job views recorded beside them.
//!
//! The golden files were written once, with `BEAVER_BLESS=1`, by the
//! version 1 build (commit "Golden files of format version 1"), from this
//! history: jobs `mail`, two unnamed (`~2`, `~4`), `7` (a client id of
//! digits only) and `later` (queue `emails`, priority 5, delayed a minute)
//! at t=1,000; `~4` cancelled; `~2` failing once, `7` failing until dead,
//! `mail` completing; the snapshot taken; `7` requeued; then `x1`, `x2`,
//! one unnamed (`~8`) and `10`, with `7` started and `x1` dispatched ahead
//! of the busy worker when the log ends.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use beaver_core::testing::{Driver, rebuild};
use beaver_core::{Config, Core, Interrupted, JobSpec, Op, Record, Retention, codec};
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

#[test]
fn a_version_1_snapshot_fed_byte_by_byte_restores_as_it_does_whole() {
    let snapshot = read_golden("history-v1-snapshot.bin");
    let whole = Core::recover_encoded(history_config(), &snapshot, []).unwrap();
    let mut feed = Core::recover_in_pieces(history_config(), 0);
    for byte in snapshot.chunks(1) {
        feed.feed(byte).unwrap();
    }
    let fed = feed.finish().unwrap();
    fed.check_invariants().unwrap();
    assert_eq!(fed.snapshot(), whole.snapshot());
}

#[test]
fn version_1_attempts_in_flight_count_as_they_did() {
    // Version 1 counted every attempt at dispatch: both attempts in flight
    // at the end of the history (one started, one dispatched ahead of the
    // busy worker) fail as interrupted; neither is given back.
    let log = unframe(&read_golden("history-v1-log.bin"));
    let mut d = Driver::with_core(rebuild(history_config(), None, &log).unwrap());
    assert_eq!(
        d.core().interrupted(),
        Interrupted {
            charged: 2,
            released: 0
        }
    );
    let out = d.at(5_000).tick();
    let failed: Vec<(String, u32, bool)> = appended(&out)
        .iter()
        .filter_map(|r| match &r.op {
            Op::Fail {
                id, attempt, error, ..
            } => Some((id.to_string(), *attempt, error.starts_with("interrupted"))),
            _ => None,
        })
        .collect();
    let interrupted = |id: &str| (id.to_owned(), 1, true);
    assert_eq!(failed, [interrupted("7"), interrupted("x1")]);
}

#[test]
fn the_next_job_of_a_version_1_log_gets_the_prefix_when_an_old_id_spells_its_number() {
    // Client id `10` (digits only, allowed in version 1) spells the number
    // the next job gets, so that job is `~10`; the one after it is `11`.
    let log = unframe(&read_golden("history-v1-log.bin"));
    let mut d = Driver::with_core(rebuild(history_config(), None, &log).unwrap());
    let unnamed = || JobSpec::new(payload("1"));
    d.at(5_000).enqueue(90, vec![unnamed(), unnamed()]);
    d.sync(1);
    let job = |id: &str| d.core().job(id).map(|j| j.seq);
    assert_eq!(
        (job("10"), job("~10"), job("11")),
        (Some(9), Some(10), Some(11))
    );
}
