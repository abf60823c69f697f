//! The on-disk encodings: round trips, hostile bytes, and golden files of
//! every released format version.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use beaver_core::codec::{self, DecodeError};
use beaver_core::{
    Config, Core, Input, JobId, JobSpec, JobState, NewJob, Op, Payload, QueueName, Record,
    RequestId, Snapshot, SnapshotJob,
};
use proptest::prelude::*;

fn id(s: &str) -> JobId {
    JobId::parse(s).unwrap()
}

/// One record of every type version 1 had, as this build reads them.
fn every_record_v1() -> Vec<Record> {
    let job = NewJob {
        id: id("order-1"),
        queue: QueueName::parse("emails").unwrap(),
        payload: Payload::from_json(br#"{"to":"ada@example.com"}"#).unwrap(),
        priority: -3,
        max_attempts: 5,
        timeout_ms: 30_000,
        run_at: 1_700_000_000_500,
    };
    let ops = vec![
        Op::Enqueue { jobs: vec![job] },
        Op::Dispatch {
            id: id("order-1"),
            attempt: 1,
            lease_until: 1_700_000_035_000,
            // Version 1 counted every attempt at dispatch.
            started: true,
        },
        Op::Fail {
            id: id("order-1"),
            attempt: 1,
            error: "exit status 3: smtp down".into(),
            retry_at: Some(1_700_000_001_000),
        },
        Op::Fail {
            id: id("order-1"),
            attempt: 5,
            error: "timed out after 30000 ms".into(),
            retry_at: None,
        },
        Op::Complete {
            id: id("order-1"),
            attempt: 2,
        },
        Op::Release {
            id: id("order-1"),
            attempt: 3,
        },
        Op::Cancel { id: id("~17") },
        Op::Requeue {
            ids: vec![id("a"), id("b")],
        },
        Op::Purge {
            jobs: vec![id("a")],
            forget: vec![id("old")],
        },
    ];
    numbered(ops)
}

/// Records with LSNs from 1 and times a millisecond apart.
fn numbered(ops: Vec<Op>) -> Vec<Record> {
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| Record {
            lsn: i as u64 + 1,
            at: 1_700_000_000_000 + i as u64,
            op,
        })
        .collect()
}

/// One record of every type: the golden set of this version (2).
fn every_record() -> Vec<Record> {
    let mut ops: Vec<Op> = every_record_v1().into_iter().map(|r| r.op).collect();
    ops.extend([
        Op::Dispatch {
            id: id("order-2"),
            attempt: 1,
            lease_until: 1_700_000_036_000,
            started: false,
        },
        Op::Start {
            id: id("order-2"),
            attempt: 1,
        },
        Op::PauseQueue {
            queue: QueueName::parse("emails").unwrap(),
            until: u64::MAX,
        },
        Op::PauseQueue {
            queue: QueueName::default(),
            until: 1_700_000_060_000,
        },
        Op::PurgeQueue {
            queue: QueueName::parse("emails").unwrap(),
        },
        Op::Checkpoint,
        Op::Return {
            id: id("order-2"),
            attempt: 1,
            priority: i32::MAX - 7,
            run_at: 1_700_000_070_000,
        },
        Op::Bury {
            id: id("order-2"),
            attempt: 1,
            priority: i32::MIN,
        },
        Op::DeleteDead { id: id("order-2") },
        Op::Kick { id: id("order-3") },
    ]);
    numbered(ops)
}

/// The snapshot of the version 1 golden file, as this build reads it.
fn golden_snapshot_v1() -> Snapshot {
    Snapshot {
        lsn: 42,
        log_time: 1_700_000_000_042,
        next_seq: 3,
        queues: vec![QueueName::default(), QueueName::parse("q2").unwrap()],
        jobs: vec![
            SnapshotJob {
                seq: 1,
                id: id("order-1"),
                queue: 0,
                state: JobState::Dead,
                payload: Some(Payload::from_json(b"[1,2,3]").unwrap()),
                priority: 0,
                attempt: 3,
                max_attempts: 3,
                timeout_ms: 1_000,
                created_at: 1_700_000_000_000,
                run_at: 1_700_000_000_000,
                state_at: 1_700_000_000_040,
                last_error: Some("boom".into()),
                started: false,
            },
            SnapshotJob {
                seq: 2,
                id: id("~2"),
                queue: 1,
                state: JobState::InFlight,
                payload: Some(Payload::from_json(b"null").unwrap()),
                priority: 9,
                attempt: 1,
                max_attempts: 1,
                timeout_ms: 5,
                created_at: 1_700_000_000_001,
                run_at: 1_700_000_000_001,
                state_at: 1_700_000_000_100,
                last_error: None,
                // Version 1 counted every attempt in flight.
                started: true,
            },
        ],
        remembered: vec![(1_700_000_000_010, id("gone"))],
        paused: vec![],
    }
}

/// The golden snapshot of this version (2): an attempt in flight that did
/// not start, and paused queues.
fn golden_snapshot() -> Snapshot {
    let mut snap = golden_snapshot_v1();
    snap.jobs[1].started = false;
    snap.paused = vec![
        (QueueName::parse("paused-for-ever").unwrap(), u64::MAX),
        (QueueName::parse("q2").unwrap(), 1_700_000_060_000),
    ];
    snap
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares with the committed golden file; `BEAVER_BLESS=1` writes it (only
/// ever for a new format version: old ones must never change).
fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden_path(name);
    if std::env::var_os("BEAVER_BLESS").is_some() && !path.exists() {
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} missing ({e}); run with BEAVER_BLESS=1 once",
            path.display()
        )
    })
}

fn frame(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

fn unframe(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(&bytes[4..4 + len]);
        bytes = &bytes[4 + len..];
    }
    out
}

#[test]
fn golden_records_v1_still_decode_with_every_dispatch_counted() {
    let file = golden_path("records-v1.bin");
    let file = std::fs::read(&file).unwrap();
    let framed = unframe(&file);
    assert!(framed.iter().all(|r| r[0] == 1), "written in version 1");
    let decoded: Vec<Record> = framed
        .into_iter()
        .map(|b| codec::decode_record(b).unwrap())
        .collect();
    assert_eq!(decoded, every_record_v1());
}

#[test]
fn golden_records_v2_decode_and_encode_identically() {
    let records = every_record();
    let encoded: Vec<Vec<u8>> = records.iter().map(codec::encode_record).collect();
    assert!(
        encoded.iter().all(|r| r[0] == 2),
        "this build writes version 2"
    );
    let file = golden("records-v2.bin", &frame(&encoded));
    let decoded: Vec<Record> = unframe(&file)
        .into_iter()
        .map(|b| codec::decode_record(b).unwrap())
        .collect();
    assert_eq!(
        decoded, records,
        "version 2 records decode to the same values"
    );
    assert_eq!(
        frame(&encoded),
        file,
        "this build writes version 2 byte for byte"
    );
}

#[test]
fn a_logged_record_must_name_the_lsn_of_its_frame() {
    for r in every_record() {
        let bytes = codec::encode_record(&r);
        assert_eq!(codec::decode_logged_record(r.lsn, &bytes).unwrap(), r);
        let e = codec::decode_logged_record(r.lsn + 1, &bytes).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "the frame says LSN {}, the record {}",
                r.lsn + 1,
                r.lsn
            )),
            "{e}"
        );
    }
    assert_eq!(
        codec::decode_logged_record(1, &[]),
        Err(codec::DecodeError::Empty)
    );
}

#[test]
fn golden_snapshot_v1_still_decodes_with_its_attempts_in_flight_counted() {
    let file = std::fs::read(golden_path("snapshot-v1.bin")).unwrap();
    assert_eq!(file[0], 1, "written in version 1");
    assert_eq!(codec::decode_snapshot(&file).unwrap(), golden_snapshot_v1());
    // The streaming decoder, which start-up uses, reads it the same way.
    let q = Core::recover_encoded(Config::default(), &file, []).unwrap();
    q.check_invariants().unwrap();
    assert_eq!(q.snapshot(), golden_snapshot_v1());
}

#[test]
fn golden_snapshot_v2_decodes_and_encodes_identically() {
    let snap = golden_snapshot();
    let file = golden("snapshot-v2.bin", &codec::encode_snapshot(&snap));
    assert_eq!(file[0], 2, "this build writes version 2");
    assert_eq!(codec::decode_snapshot(&file).unwrap(), snap);
    assert_eq!(codec::encode_snapshot(&snap), file);
}

#[test]
fn a_newer_version_is_refused_naming_both_versions() {
    let mut bytes = codec::encode_record(&every_record()[0]);
    bytes[0] = 9;
    let e = codec::decode_record(&bytes).unwrap_err();
    assert_eq!(
        e,
        DecodeError::NewerVersion {
            found: 9,
            supported: 2
        }
    );
    assert!(
        e.to_string().contains("version 9") && e.to_string().contains("up to 2"),
        "{e}"
    );
    let mut snap = codec::encode_snapshot(&golden_snapshot());
    snap[0] = 3;
    assert!(matches!(
        codec::decode_snapshot(&snap),
        Err(DecodeError::NewerVersion {
            found: 3,
            supported: 2
        })
    ));
    assert!(matches!(
        Core::recover_encoded(Config::default(), &snap, []),
        Err(beaver_core::RecoverError::Snapshot(
            DecodeError::NewerVersion { found: 3, .. }
        ))
    ));
    assert_eq!(codec::decode_record(&[]), Err(DecodeError::Empty));
    assert_eq!(
        codec::decode_record(&[0]),
        Err(DecodeError::UnknownVersion(0))
    );
}

/// Checks that `snap` is refused, encoded and as it is, and returns the
/// encoded one's refusal as text.
fn refusal(snap: Snapshot, what: &str) -> String {
    let bytes = codec::encode_snapshot(&snap);
    let e = Core::recover_encoded(Config::default(), &bytes, [])
        .err()
        .unwrap_or_else(|| panic!("{what}: restored"));
    assert!(
        Core::recover(Config::default(), Some(snap), []).is_err(),
        "{what}: restored as it is"
    );
    e.to_string()
}

#[test]
fn a_snapshot_naming_one_id_twice_is_refused_not_restored() {
    let mut snap = golden_snapshot();
    snap.jobs[1].id = snap.jobs[0].id.clone();
    let e = refusal(snap, "one id twice");
    assert!(e.contains("appears twice"), "{e}");
}

#[test]
fn a_snapshot_remembering_a_live_id_or_one_id_twice_is_refused() {
    let live = golden_snapshot().jobs[0].id.clone();
    let gone = golden_snapshot().remembered[0].clone();
    for (what, extra) in [("live", (1, live)), ("twice", gone)] {
        let mut snap = golden_snapshot();
        snap.remembered.push(extra);
        let e = refusal(snap, what);
        assert!(e.contains("both remembered and live"), "{what}: {e}");
    }
}

/// Found by the `snapshot` fuzz target: the check compared (number, slot)
/// pairs, and two jobs of one number are two pairs.
#[test]
fn a_snapshot_giving_two_jobs_one_number_is_refused_not_restored() {
    let mut snap = golden_snapshot();
    snap.jobs[1].seq = snap.jobs[0].seq;
    let e = refusal(snap, "one number twice");
    assert!(e.contains("one sequence number"), "{e}");
}

#[test]
fn a_snapshot_that_would_overflow_a_counter_is_refused_not_restored() {
    // Each would panic (debug) or wrap (release) on the next record: a job
    // in flight on attempt 0 released, the LSN or sequence number after
    // the last one.
    let mut attempt_zero = golden_snapshot();
    attempt_zero.jobs[1].attempt = 0;
    let mut last_lsn = golden_snapshot();
    last_lsn.lsn = u64::MAX;
    let mut last_seq = golden_snapshot();
    last_seq.next_seq = u64::MAX;
    for (what, snap) in [
        ("attempt", attempt_zero),
        ("LSN", last_lsn),
        ("sequence number", last_seq),
    ] {
        let e = refusal(snap, what);
        assert!(e.contains("impossible"), "{what}: {e}");
    }
}

#[test]
fn counters_up_to_half_their_range_restore_and_one_more_is_refused() {
    // Restoring leaves room for every LSN and sequence number to come:
    // up to u64::MAX / 2 is taken, one more is refused.
    let half = u64::MAX / 2;
    for (what, set) in [
        (
            "LSN",
            (|s: &mut Snapshot, n| s.lsn = n) as fn(&mut Snapshot, u64),
        ),
        ("sequence number", |s: &mut Snapshot, n| s.next_seq = n),
    ] {
        let mut at = golden_snapshot();
        set(&mut at, half);
        let bytes = codec::encode_snapshot(&at);
        let q = Core::recover_encoded(Config::default(), &bytes, [])
            .unwrap_or_else(|e| panic!("{what} {half}: {e}"));
        assert_eq!(q.snapshot(), at, "{what}");
        let mut past = golden_snapshot();
        set(&mut past, half + 1);
        let bytes = codec::encode_snapshot(&past);
        let e = Core::recover_encoded(Config::default(), &bytes, [])
            .err()
            .unwrap_or_else(|| panic!("{what} {}: restored", half + 1));
        assert!(e.to_string().contains("impossible"), "{what}: {e}");
    }
}

#[test]
fn the_streaming_decoder_restores_the_golden_snapshot() {
    let snap = golden_snapshot();
    let bytes = codec::encode_snapshot(&snap);
    let q = Core::recover_encoded(Config::default(), &bytes, []).unwrap();
    q.check_invariants().unwrap();
    assert_eq!(q.snapshot(), snap);
    // Encoding straight from the queue gives the golden bytes too.
    assert_eq!(codec::encode_queue_snapshot(&q), bytes);
}

/// The core `bytes` give fed in pieces of `size` bytes.
fn fed_in_pieces(bytes: &[u8], size: usize) -> Result<Core, beaver_core::RecoverError> {
    let mut feed = Core::recover_in_pieces(Config::default(), bytes.len());
    for piece in bytes.chunks(size) {
        feed.feed(piece)?;
    }
    feed.finish()
}

#[test]
fn the_golden_snapshot_fed_in_pieces_of_any_size_restores_the_same_state() {
    let snap = golden_snapshot();
    assert!(!snap.remembered.is_empty() && !snap.paused.is_empty() && snap.jobs.len() > 1);
    let bytes = codec::encode_snapshot(&snap);
    for size in 1..=bytes.len() {
        let q = fed_in_pieces(&bytes, size).unwrap_or_else(|e| panic!("pieces of {size}: {e}"));
        q.check_invariants().unwrap();
        assert_eq!(q.snapshot(), snap, "pieces of {size}");
    }
}

#[test]
fn a_snapshot_fed_in_pieces_is_refused_as_it_is_whole() {
    let bytes = codec::encode_snapshot(&golden_snapshot());
    for cut in 0..bytes.len() {
        let short = &bytes[..cut];
        assert!(Core::recover_encoded(Config::default(), short, []).is_err());
        let e = fed_in_pieces(short, 3)
            .err()
            .expect("a cut snapshot is refused");
        let expected = match cut {
            0 => "no bytes to decode",
            _ => "the snapshot ends early",
        };
        assert!(e.to_string().contains(expected), "cut at {cut}: {e}");
    }
    let mut long = bytes.clone();
    long.push(0);
    let e = fed_in_pieces(&long, 5)
        .err()
        .expect("a trailing byte is refused");
    assert!(e.to_string().contains("after the snapshot"), "{e}");
    let mut newer = bytes;
    newer[0] = codec::SNAPSHOT_FORMAT_VERSION + 1;
    assert!(matches!(
        fed_in_pieces(&newer, 2).err(),
        Some(beaver_core::RecoverError::Snapshot(
            DecodeError::NewerVersion { .. }
        ))
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = codec::encode_record(&every_record()[1]);
    bytes.push(0);
    assert!(matches!(
        codec::decode_record(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn a_live_queue_snapshot_round_trips() {
    let mut q = Core::new(Config::default());
    let mut out = Vec::new();
    let jobs = (0..50)
        .map(|i| JobSpec::new(Payload::from_json(format!("{i}").as_bytes()).unwrap()))
        .collect();
    q.step(
        1,
        Input::Enqueue {
            req: RequestId(1),
            jobs,
        },
        &mut out,
    );
    q.step(2, Input::Durable { upto: 1 }, &mut out);
    q.step(
        3,
        Input::Durable {
            upto: q.next_lsn() - 1,
        },
        &mut out,
    );
    let snap = q.snapshot();
    assert_eq!(snap.jobs.len(), 50);
    assert_eq!(
        codec::decode_snapshot(&codec::encode_snapshot(&snap)).unwrap(),
        snap
    );
    assert_eq!(
        codec::encode_queue_snapshot(&q),
        codec::encode_snapshot(&snap)
    );
    assert_eq!(
        codec::queue_snapshot_len(&q),
        codec::encode_snapshot(&snap).len() as u64
    );
    // In pieces: asked for at least one byte, each fill adds one piece
    // (the head, a job, the tail), and the pieces make the whole.
    let mut encoder = codec::SnapshotEncoder::new(&q);
    let mut pieces = Vec::new();
    loop {
        let mut piece = Vec::new();
        let more = encoder.fill(&mut piece, 1);
        pieces.push(piece);
        if !more {
            break;
        }
    }
    assert_eq!(pieces.len(), 52, "the head, 50 jobs, the tail");
    assert_eq!(pieces.concat(), codec::encode_snapshot(&snap));
    // Asked for exactly the head's length, it stops there.
    let mut head = Vec::new();
    assert!(codec::SnapshotEncoder::new(&q).fill(&mut head, pieces[0].len()));
    assert_eq!(head, pieces[0]);
}

#[test]
fn a_record_encoded_into_a_buffer_follows_what_it_held() {
    for r in every_record() {
        let mut out = vec![0xEE];
        codec::encode_record_into(&r, &mut out);
        assert_eq!(out[0], 0xEE);
        assert_eq!(out[1..], codec::encode_record(&r)[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = codec::decode_record(&bytes);
        let _ = codec::decode_snapshot(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(which in 0usize..15, pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut bytes = codec::encode_record(&every_record()[which]);
        let p = pos % bytes.len();
        bytes[p] = val;
        let _ = codec::decode_record(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = codec::decode_record(&bytes);
    }

    #[test]
    fn mutated_snapshots_never_panic(v1 in any::<bool>(), pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        let mut bytes = match v1 {
            true => std::fs::read(golden_path("snapshot-v1.bin")).unwrap(),
            false => codec::encode_snapshot(&golden_snapshot()),
        };
        let p = pos % bytes.len();
        bytes[p] = val;
        let _ = codec::decode_snapshot(&bytes);
        if let Ok(q) = Core::recover_encoded(Config::default(), &bytes, []) {
            q.check_invariants().unwrap();
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = codec::decode_snapshot(&bytes);
        let _ = Core::recover_encoded(Config::default(), &bytes, []);
    }
}

fn arb_id() -> impl Strategy<Value = JobId> {
    "[a-z0-9~]{1,128}".prop_map(|s| id(&s))
}

fn arb_op() -> impl Strategy<Value = Op> {
    let job = (
        arb_id(),
        "[a-z]{1,64}",
        0usize..20_000,
        any::<i32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, queue, len, priority, max_attempts, timeout_ms, run_at)| NewJob {
                id,
                queue: QueueName::parse(&queue).unwrap(),
                payload: Payload::from_json(format!("\"{}\"", "x".repeat(len)).as_bytes()).unwrap(),
                priority,
                max_attempts,
                timeout_ms,
                run_at,
            },
        );
    let ids = || prop::collection::vec(arb_id(), 0..200);
    prop_oneof![
        prop::collection::vec(job, 0..8).prop_map(|jobs| Op::Enqueue { jobs }),
        (arb_id(), any::<u32>(), any::<u64>(), any::<bool>()).prop_map(
            |(id, attempt, lease_until, started)| Op::Dispatch {
                id,
                attempt,
                lease_until,
                started,
            }
        ),
        (arb_id(), any::<u32>()).prop_map(|(id, attempt)| Op::Start { id, attempt }),
        ("[a-z]{1,64}", any::<u64>()).prop_map(|(q, until)| Op::PauseQueue {
            queue: QueueName::parse(&q).unwrap(),
            until
        }),
        "[a-z]{1,64}".prop_map(|q| Op::PurgeQueue {
            queue: QueueName::parse(&q).unwrap()
        }),
        Just(Op::Checkpoint),
        (arb_id(), any::<u32>(), any::<i32>(), any::<u64>()).prop_map(
            |(id, attempt, priority, run_at)| Op::Return {
                id,
                attempt,
                priority,
                run_at,
            }
        ),
        (arb_id(), any::<u32>(), any::<i32>()).prop_map(|(id, attempt, priority)| Op::Bury {
            id,
            attempt,
            priority,
        }),
        arb_id().prop_map(|id| Op::DeleteDead { id }),
        arb_id().prop_map(|id| Op::Kick { id }),
        (arb_id(), any::<u32>()).prop_map(|(id, attempt)| Op::Complete { id, attempt }),
        (arb_id(), any::<u32>()).prop_map(|(id, attempt)| Op::Release { id, attempt }),
        arb_id().prop_map(|id| Op::Cancel { id }),
        (arb_id(), any::<u32>(), ".{0,5000}", any::<Option<u64>>()).prop_map(
            |(id, attempt, error, retry_at)| Op::Fail {
                id,
                attempt,
                error,
                retry_at
            }
        ),
        ids().prop_map(|ids| Op::Requeue { ids }),
        (ids(), ids()).prop_map(|(jobs, forget)| Op::Purge { jobs, forget }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// What the core sizes its records by is never less than their encoding.
    #[test]
    fn no_record_encodes_longer_than_its_bound(op in arb_op(), lsn in any::<u64>(), at in any::<u64>()) {
        let bound = op.encoded_bytes_max();
        let len = codec::encode_record(&Record { lsn, at, op }).len() as u64;
        prop_assert!(len <= bound, "{len} > {bound}");
    }
}

/// Every op with each integer, id, name and length prefix at its widest
/// (the largest LSN and time, attempt and priority at their widest
/// encodings, 128-byte ids, 64-byte queue names, 20,000-byte payloads and
/// errors, 1,000-id lists) encodes within its bound: the property test
/// above draws such extremes together only by chance.
#[test]
fn every_op_at_its_widest_fits_its_bound() {
    let long_id = || id(&"j".repeat(128));
    let queue = || QueueName::parse(&"q".repeat(64)).unwrap();
    let text = "e".repeat(20_000);
    let job = NewJob {
        id: long_id(),
        queue: queue(),
        payload: Payload::from_json(format!("\"{text}\"").as_bytes()).unwrap(),
        priority: i32::MIN,
        max_attempts: u32::MAX,
        timeout_ms: u64::MAX,
        run_at: u64::MAX,
    };
    let (attempt, priority, t) = (u32::MAX, i32::MIN, u64::MAX);
    let ids = || vec![long_id(); 1_000];
    let ops = [
        Op::Enqueue { jobs: vec![job; 8] },
        Op::Dispatch {
            id: long_id(),
            attempt,
            lease_until: t,
            started: true,
        },
        Op::Complete {
            id: long_id(),
            attempt,
        },
        Op::Fail {
            id: long_id(),
            attempt,
            error: text.clone(),
            retry_at: Some(t),
        },
        Op::Release {
            id: long_id(),
            attempt,
        },
        Op::Cancel { id: long_id() },
        Op::Requeue { ids: ids() },
        // One id: the list's own head counts, not the ids' slack.
        Op::Requeue {
            ids: vec![long_id()],
        },
        Op::Purge {
            jobs: ids(),
            forget: ids(),
        },
        Op::Start {
            id: long_id(),
            attempt,
        },
        Op::PauseQueue {
            queue: queue(),
            until: t,
        },
        Op::PurgeQueue { queue: queue() },
        Op::Checkpoint,
        Op::Return {
            id: long_id(),
            attempt,
            priority,
            run_at: t,
        },
        Op::Bury {
            id: long_id(),
            attempt,
            priority,
        },
        Op::DeleteDead { id: long_id() },
        Op::Kick { id: long_id() },
    ];
    for op in ops {
        let bound = op.encoded_bytes_max();
        let name = op.name();
        let len = codec::encode_record(&Record { lsn: t, at: t, op }).len() as u64;
        assert!(
            len <= bound,
            "a {name} record of {len} bytes, over its bound {bound}"
        );
    }
}
