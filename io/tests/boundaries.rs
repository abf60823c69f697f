//! The storage's limits and counters at their exact boundaries: each test
//! here was written for a mutant that cargo-mutants found no test noticed
//! (docs/mutation-testing.md).
// Test helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use beaver_io::snapshot::{
    SnapshotFileError, decode_snapshot_file, encode_snapshot, snapshot_name,
};
use beaver_io::wal::format::{
    BatchProblem, HeaderProblem, MAX_LSN, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, SegmentHeader,
    decode_batch, encode_batch, segment_bytes_problem,
};
use beaver_io::wal::{BatchInfo, DEFAULT_SEGMENT_BYTES, read_records};
use beaver_io::{
    Disk, DiskFile, Error, Planted, SimDisk, SimDiskConfig, SnapshotStore, Wal, WalOptions,
    record_bytes_max,
};
use common::{DIR, body, opts, rt, write};

#[test]
fn a_snapshot_file_of_an_empty_body_decodes_and_a_shorter_file_is_damaged() {
    let empty = encode_snapshot(5, b"");
    assert_eq!(decode_snapshot_file(&empty), Ok((5, &b""[..])));
    let one = encode_snapshot(6, b"x");
    assert_eq!(decode_snapshot_file(&one), Ok((6, &b"x"[..])));
    for short in [&empty[..empty.len() - 1], &[1, 2, 3][..], &[][..]] {
        assert!(
            matches!(
                decode_snapshot_file(short),
                Err(SnapshotFileError::Damaged(_))
            ),
            "{short:?}"
        );
    }
}

#[test]
fn a_snapshot_file_may_cover_the_largest_lsn_and_no_more() {
    let last = encode_snapshot(MAX_LSN, b"state");
    assert_eq!(decode_snapshot_file(&last), Ok((MAX_LSN, &b"state"[..])));
    let beyond = encode_snapshot(MAX_LSN + 1, b"state");
    assert!(matches!(
        decode_snapshot_file(&beyond),
        Err(SnapshotFileError::Damaged(_))
    ));
}

const SNAPS: &str = "/data/snapshots";

/// Writes `bytes` as the file `name` in the snapshot directory, synced.
async fn put_file(disk: &SimDisk, name: &str, bytes: &[u8]) {
    disk.create_dir_all(Path::new(SNAPS)).await.unwrap();
    let f = disk.create(&Path::new(SNAPS).join(name)).await.unwrap();
    f.write_at(0, bytes).await.unwrap();
    f.sync_all().await.unwrap();
    disk.sync_dir(Path::new(SNAPS)).await.unwrap();
}

/// The store over the snapshot directory, as a restart opens it.
async fn open_store(disk: &SimDisk) -> SnapshotStore<SimDisk> {
    SnapshotStore::open(disk.clone(), Path::new(SNAPS))
        .await
        .unwrap()
}

/// The snapshot directory's files, sorted.
async fn names(disk: &SimDisk) -> Vec<String> {
    let mut names = disk.list(Path::new(SNAPS)).await.unwrap();
    names.sort();
    names
}

#[test]
fn the_store_names_its_newest_snapshot() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let mut store = open_store(&disk).await;
        assert_eq!(store.newest_lsn(), None);
        store.save(5, b"five").await.unwrap();
        store.save(9, b"nine").await.unwrap();
        assert_eq!(store.newest_lsn(), Some(9));
        assert_eq!(store.older_kept_lsn(), Some(5));
        let reopened = open_store(&disk).await;
        assert_eq!(reopened.newest_lsn(), Some(9));
    });
}

#[test]
fn snapshot_file_errors_say_what_is_wrong_and_what_to_do() {
    assert_eq!(
        SnapshotFileError::Damaged("cut short").to_string(),
        "cut short"
    );
    let newer = SnapshotFileError::Version(9).to_string();
    assert!(
        newer.contains("version 9") && newer.contains("upgrade beaver"),
        "{newer}"
    );
}

/// Six snapshots in the directory (as a crash between a save and its
/// clean-up, repeated, could leave them): the next save keeps two.
#[test]
fn a_save_keeps_the_newest_two_of_however_many_it_found() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        for lsn in 1..=6 {
            put_file(&disk, &snapshot_name(lsn), &encode_snapshot(lsn, b"x")).await;
        }
        let mut store = open_store(&disk).await;
        assert_eq!(store.kept(), &[1, 2, 3, 4, 5, 6]);
        store.save(7, b"seven").await.unwrap();
        assert_eq!(store.kept(), &[6, 7]);
        assert_eq!(names(&disk).await, [snapshot_name(6), snapshot_name(7)]);
    });
}

#[test]
fn a_snapshot_whose_contents_name_another_lsn_is_set_aside() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        put_file(&disk, &snapshot_name(5), &encode_snapshot(5, b"five")).await;
        put_file(&disk, &snapshot_name(9), &encode_snapshot(8, b"eight")).await;
        let mut store = open_store(&disk).await;
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!((loaded.lsn, loaded.body()), (5, &b"five"[..]));
        assert_eq!(
            names(&disk).await,
            [snapshot_name(5), format!("{}.broken", snapshot_name(9))]
        );
    });
}

#[test]
fn a_save_that_fails_leaves_no_temp_file() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let mut store = open_store(&disk).await;
        disk.set_capacity(disk.used_bytes() + 1000);
        let full = store.save(5, &[7; 4000]).await.unwrap_err();
        assert!(full.is_no_space(), "{full}");
        assert_eq!(names(&disk).await, Vec::<String>::new());
        assert_eq!(store.kept(), &[] as &[u64]);
    });
}

#[test]
fn opening_the_store_removes_its_own_temp_files_and_nothing_else() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let snap = snapshot_name(5);
        put_file(&disk, &snap, &encode_snapshot(5, b"five")).await;
        let tmp = format!("{}.tmp", snapshot_name(9));
        let broken = format!("{}.broken", snapshot_name(3));
        for other in [&tmp, &broken, &"notes.tmp".to_string()] {
            put_file(&disk, other, b"x").await;
        }
        let store = open_store(&disk).await;
        assert_eq!(store.kept(), &[5]);
        assert_eq!(names(&disk).await, ["notes.tmp".to_string(), broken, snap]);
    });
}

#[test]
fn segment_sizes_are_accepted_exactly_within_their_bounds() {
    assert_eq!(segment_bytes_problem(MIN_SEGMENT_BYTES), None);
    assert_eq!(segment_bytes_problem(MAX_SEGMENT_BYTES), None);
    for bad in [MIN_SEGMENT_BYTES - 1, MAX_SEGMENT_BYTES + 1, 0] {
        let why = segment_bytes_problem(bad).unwrap();
        assert!(why.contains(&format!("segment_bytes is {bad}")), "{why}");
    }
    rt().block_on(async {
        let disk = SimDisk::new(2, SimDiskConfig::default());
        let refused = Wal::open(disk, Path::new(DIR), opts(100, 1), 0, |_, _| {}).await;
        assert!(
            matches!(&refused, Err(Error::Usage(why)) if why.contains("segment_bytes is 100")),
            "{:?}",
            refused.err()
        );
    });
}

#[test]
fn a_log_may_be_needed_after_the_largest_lsn_and_no_later() {
    rt().block_on(async {
        let dir = Path::new(DIR);
        let disk = SimDisk::new(2, SimDiskConfig::default());
        let beyond = Wal::open(disk, dir, opts(16 << 10, 1), MAX_LSN + 1, |_, _| {}).await;
        assert!(
            matches!(&beyond, Err(Error::Usage(why)) if why.contains("beyond the largest LSN")),
            "{:?}",
            beyond.err()
        );
        let disk = SimDisk::new(2, SimDiskConfig::default());
        let (wal, rec) = Wal::open(disk, dir, opts(16 << 10, 1), MAX_LSN, |_, _| {})
            .await
            .unwrap();
        assert_eq!((rec.records, wal.next_lsn()), (0, MAX_LSN + 1));
    });
}

#[test]
fn recovery_counts_what_it_hands_out_and_accepts_a_snapshot_at_the_logs_end() {
    rt().block_on(async {
        let disk = SimDisk::new(3, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let (mut wal, _) = Wal::open(disk.clone(), dir, opts(16 << 10, 1), 0, |_, _| {})
            .await
            .unwrap();
        write(&mut wal, 5, 40).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        let (_, rec) = Wal::open(disk.clone(), dir, opts(16 << 10, 2), 2, |_, _| {})
            .await
            .unwrap();
        assert_eq!((rec.last_lsn, rec.records), (5, 3));
        // A snapshot that covers the whole log: nothing to replay.
        let mut got = 0;
        let (wal, rec) = Wal::open(disk.clone(), dir, opts(16 << 10, 3), 5, |_, _| got += 1)
            .await
            .unwrap();
        assert_eq!((rec.records, got, wal.next_lsn()), (0, 0, 6));
        drop(wal);
        // One beyond the log's end: records are missing.
        let beyond = Wal::open(disk, dir, opts(16 << 10, 4), 6, |_, _| {}).await;
        assert!(matches!(beyond, Err(Error::Usage(_))), "{:?}", beyond.err());
    });
}

#[test]
fn a_short_segment_header_is_blank_only_if_all_zeros() {
    assert_eq!(SegmentHeader::decode(&[0; 10]), Err(HeaderProblem::Blank));
    assert!(matches!(
        SegmentHeader::decode(&[0, 0, 1]),
        Err(HeaderProblem::Invalid(_))
    ));
}

#[test]
fn a_segment_may_start_at_the_largest_lsn_and_no_later() {
    let header = |first_lsn| {
        let mut out = Vec::new();
        SegmentHeader {
            salt: 7,
            seq: 1,
            first_lsn,
            prev_chain: 0,
        }
        .encode(&mut out);
        SegmentHeader::decode(&out)
    };
    assert_eq!(header(MAX_LSN).map(|h| h.first_lsn), Ok(MAX_LSN));
    assert_eq!(
        header(MAX_LSN + 1),
        Err(HeaderProblem::Invalid(
            "segment header names an impossible LSN"
        ))
    );
}

/// A batch of `n` one-byte records from `first`, with `watermark`.
fn batch(first: u64, n: u64, watermark: u64) -> Vec<u8> {
    let bodies: Vec<(u64, &[u8])> = (first..first + n).map(|l| (l, &b"r"[..])).collect();
    let mut out = Vec::new();
    encode_batch(&mut out, 7, 0, watermark, &bodies);
    out
}

/// Rewrites a batch header's field at `at` (8 bytes) and its checksum.
fn with_field(mut b: Vec<u8>, at: usize, value: u64) -> Vec<u8> {
    b[at..at + 8].copy_from_slice(&value.to_le_bytes());
    let crc = crc32fast::hash(&b[8..64]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn a_batch_may_reach_the_largest_lsn_and_vouch_for_no_more() {
    let last = batch(MAX_LSN, 1, 0);
    assert!(decode_batch(&last, 7, None, 0, |_, _| {}).is_ok());
    let beyond = with_field(batch(1, 1, 0), 32, MAX_LSN + 1); // watermark
    assert!(matches!(
        decode_batch(&beyond, 7, None, 0, |_, _| {}),
        Err(BatchProblem::Invalid(_))
    ));
}

#[test]
fn a_batch_whose_lsn_range_disagrees_with_its_count_is_refused_for_that() {
    let wm_last = batch(1, 1, MAX_LSN);
    assert!(decode_batch(&wm_last, 7, None, 0, |_, _| {}).is_ok());
    let b = with_field(batch(1, 2, 0), 24, 5); // LSNs 1-5, two records
    assert_eq!(
        decode_batch(&b, 7, None, 0, |_, _| {}).err(),
        Some(BatchProblem::Invalid(
            "batch LSN range does not match its record count"
        ))
    );
}

/// The header agrees with its count (LSNs 1 to 3, three records), but the
/// second record names LSN 1 again.
#[test]
fn a_record_out_of_sequence_within_its_batchs_range_is_refused() {
    let mut b = Vec::new();
    encode_batch(&mut b, 7, 0, 0, &[(1, b"a"), (1, b"b"), (3, b"c")]);
    let mut seen = 0;
    let got = decode_batch(&b, 7, None, 0, |_, _| seen += 1);
    assert!(
        matches!(
            got,
            Err(BatchProblem::Invalid("record LSN out of sequence"))
        ),
        "{got:?}"
    );
    assert_eq!(seen, 0, "no record of it handed out");
}

#[test]
fn a_batch_claiming_more_records_than_it_holds_hands_out_none() {
    // Two records, a header claiming three (count and last LSN agree).
    let b = batch(1, 2, 0);
    let mut b = with_field(b, 24, 3); // last LSN
    b[44..48].copy_from_slice(&3u32.to_le_bytes()); // count
    let crc = crc32fast::hash(&b[8..64]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut handed = Vec::new();
    let r = decode_batch(&b, 7, None, 0, |lsn, _| handed.push(lsn));
    assert!(matches!(r, Err(BatchProblem::Invalid(_))), "{r:?}");
    assert!(handed.is_empty(), "records of an invalid batch: {handed:?}");
}

#[test]
fn problems_read_as_what_went_wrong() {
    assert_eq!(
        HeaderProblem::Invalid("file shorter than a segment header").to_string(),
        "file shorter than a segment header"
    );
    let torn = BatchProblem::Invalid("batch LSN range does not match its record count");
    assert!(torn.to_string().contains("record count"), "{torn}");
}

/// A log of LSNs 1 to 12 (three synced batches of four), the WAL closed.
async fn log_of_twelve(disk: &SimDisk) {
    let (mut wal, _) = Wal::open(
        disk.clone(),
        Path::new(DIR),
        opts(16 << 10, 1),
        0,
        |_, _| {},
    )
    .await
    .unwrap();
    for _ in 0..3 {
        write(&mut wal, 4, 40).await.unwrap();
        wal.sync().await.unwrap();
    }
}

/// The records `read_records` hands out for `after..=upto`, and its answer.
async fn read_range(disk: &SimDisk, after: u64, upto: u64) -> (Vec<u64>, Result<u64, Error>) {
    let mut lsns = Vec::new();
    let r = read_records(
        disk,
        Path::new(DIR),
        after,
        upto,
        Planted::default(),
        |lsn, b| {
            assert_eq!(b, body(lsn, 40), "body of LSN {lsn}");
            lsns.push(lsn);
        },
    )
    .await;
    (lsns, r)
}

#[test]
fn read_records_hands_out_exactly_the_range_asked_for() {
    rt().block_on(async {
        let disk = SimDisk::new(4, SimDiskConfig::default());
        log_of_twelve(&disk).await;
        let (lsns, r) = read_range(&disk, 2, 9).await;
        assert_eq!((lsns, r.ok()), ((3..=9).collect(), Some(7)));
        let (lsns, r) = read_range(&disk, 0, 12).await;
        assert_eq!((lsns, r.ok()), ((1..=12).collect(), Some(12)));
        let (lsns, r) = read_range(&disk, 11, 12).await;
        assert_eq!((lsns, r.ok()), (vec![12], Some(1)));
    });
}

#[test]
fn read_records_refuses_a_range_past_the_logs_end_naming_what_it_holds() {
    rt().block_on(async {
        let disk = SimDisk::new(5, SimDiskConfig::default());
        log_of_twelve(&disk).await;
        let (_, r) = read_range(&disk, 5, 13).await;
        match r {
            Err(Error::Usage(why)) => {
                assert!(why.ends_with("holds LSNs only up to 12 of 6..=13"), "{why}")
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    });
}

#[test]
fn read_records_refuses_a_corrupt_log_naming_the_file_and_offset() {
    rt().block_on(async {
        let disk = SimDisk::new(6, SimDiskConfig::default());
        log_of_twelve(&disk).await;
        let seg = Path::new(DIR).join("wal-00000000000000000001.seg");
        disk.flip_bit(&seg, 1024 + 70, 3).unwrap(); // the second batch
        let (_, r) = read_range(&disk, 0, 12).await;
        assert!(
            matches!(&r, Err(Error::Corruption { path, offset: 1024, .. }) if *path == seg),
            "{r:?}"
        );
    });
}

/// What a read racing with the writer of the newest segment can see (a
/// later batch, an earlier one still zeros) is past the range a snapshot
/// build asks for: the range is handed out whole. A range reaching into
/// the gap is still refused.
#[test]
fn read_records_hands_out_a_range_whole_though_the_log_past_it_reads_corrupt() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        log_of_twelve(&disk).await;
        let seg = Path::new(DIR).join("wal-00000000000000000001.seg");
        disk.lose_write(&seg, 1024, 512).unwrap(); // the second batch, LSNs 5-8
        let (lsns, r) = read_range(&disk, 0, 4).await;
        assert_eq!((lsns, r.ok()), ((1..=4).collect(), Some(4)));
        let (lsns, r) = read_range(&disk, 2, 4).await;
        assert_eq!((lsns, r.ok()), (vec![3, 4], Some(2)));
        let (_, r) = read_range(&disk, 0, 5).await;
        assert!(
            matches!(&r, Err(Error::Corruption { path, offset: 1024, .. }) if *path == seg),
            "{r:?}"
        );
    });
}

#[test]
fn the_default_segment_size_is_64_mib_and_valid() {
    assert_eq!(DEFAULT_SEGMENT_BYTES, 64 << 20);
    assert_eq!(segment_bytes_problem(DEFAULT_SEGMENT_BYTES), None);
    assert_eq!(WalOptions::default().segment_bytes, DEFAULT_SEGMENT_BYTES);
}

#[test]
fn a_record_of_the_largest_size_is_written_and_one_byte_more_is_refused() {
    rt().block_on(async {
        let disk = SimDisk::new(7, SimDiskConfig::default());
        let seg = 8192;
        let (mut wal, _) = Wal::open(disk.clone(), Path::new(DIR), opts(seg, 1), 0, |_, _| {})
            .await
            .unwrap();
        assert_eq!(wal.max_batch_bytes(), seg - 512);
        let max = record_bytes_max(seg) as usize;
        let refused = wal.write_batch(&[(1, &vec![7; max + 1])]).await;
        assert!(
            matches!(refused, Err(Error::RecordTooLarge { capacity: 7680, .. })),
            "{refused:?}"
        );
        assert_eq!(wal.append(&[(1, &vec![7; max])]).await.unwrap(), 1);
        // It fills a segment of its own: the next record opens another.
        wal.write_batch(&[(2, b"x")]).await.unwrap();
        assert_eq!(wal.closed_segments(), [(1, 1)]);
        assert_eq!(wal.append(&[(3, b"y")]).await.unwrap(), 3);
    });
}

#[test]
fn a_written_batch_says_where_it_went() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        let (mut wal, _) = Wal::open(disk, Path::new(DIR), opts(16 << 10, 1), 0, |_, _| {})
            .await
            .unwrap();
        let first = wal.write_batch(&[(1, b"a"), (2, b"b")]).await.unwrap();
        let expected = BatchInfo {
            first_lsn: 1,
            last_lsn: 2,
            segment_seq: 1,
            offset: 512, // after the segment header
            bytes: 1024, // the segment header and one sector of batch
        };
        assert_eq!(first, expected);
        let second = wal.write_batch(&[(3, b"c")]).await.unwrap();
        let expected = BatchInfo {
            first_lsn: 3,
            last_lsn: 3,
            segment_seq: 1,
            offset: 1024,
            bytes: 512,
        };
        assert_eq!(second, expected);
    });
}

#[test]
fn one_sync_at_a_time_and_none_without_anything_to_sync() {
    rt().block_on(async {
        let disk = SimDisk::new(9, SimDiskConfig::default());
        let (mut wal, _) = Wal::open(disk, Path::new(DIR), opts(16 << 10, 1), 0, |_, _| {})
            .await
            .unwrap();
        assert!(wal.begin_sync().unwrap().is_none(), "nothing written");
        assert!(!wal.sync_in_flight());
        assert_eq!(wal.closed_segments_last_lsn(), None, "none closed yet");
        write(&mut wal, 2, 10).await.unwrap();
        let job = wal.begin_sync().unwrap().expect("a sync");
        assert_eq!(job.upto(), 2);
        assert!(wal.sync_in_flight());
        write(&mut wal, 1, 10).await.unwrap();
        assert!(wal.begin_sync().unwrap().is_none(), "one in flight");
        assert_eq!(wal.complete_sync(job.run().await).unwrap(), 2);
        assert!(!wal.sync_in_flight());
        assert_eq!(wal.sync().await.unwrap(), 3);
        assert!(wal.begin_sync().unwrap().is_none(), "all durable");
    });
}

#[test]
fn the_log_writes_zeros_once_per_reach_past_its_end_and_never_past_its_segment() {
    const SEGMENT: u64 = 16 << 10;
    // Not a multiple of the batches' 1 KiB, so that a reach meets a
    // segment's end inside it.
    const AHEAD: u64 = 3000;
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let o = WalOptions {
            fill_ahead_bytes: AHEAD,
            ..opts(SEGMENT, 1)
        };
        let (mut wal, _) = Wal::open(disk.clone(), Path::new(DIR), o, 0, |_, _| {})
            .await
            .unwrap();
        // The model: where the segment's written blocks end, and its log.
        let (mut seq, mut end, mut filled) = (0, 0, 0);
        let (mut fills, mut clipped) = (0, 0);
        while wal.closed_segments().len() < 2 {
            let first = wal.next_lsn();
            let bodies: Vec<Vec<u8>> = (first..first + 3).map(|l| body(l, 300)).collect();
            let records: Vec<(u64, &[u8])> =
                (first..).zip(bodies.iter().map(Vec::as_slice)).collect();
            assert_eq!(disk.unsynced_bytes(), 0);
            let info = wal.write_batch(&records).await.unwrap();
            if info.segment_seq != seq {
                (seq, end, filled) = (info.segment_seq, 0, 0);
            }
            end += info.bytes;
            let zeros = if end > filled {
                filled = (end + AHEAD).min(SEGMENT);
                fills += 1;
                if filled - end < AHEAD {
                    clipped += 1;
                }
                filled - end
            } else {
                0
            };
            assert_eq!(
                disk.unsynced_bytes(),
                info.bytes + zeros,
                "batch {first} ends at {end} of segment {seq}"
            );
            wal.sync().await.unwrap();
        }
        assert!(fills >= 6, "{fills} reaches of zeros");
        assert!(clipped >= 2, "{clipped} reaches cut by a segment's end");
    });
}

#[test]
fn a_log_told_to_write_no_zeros_ahead_writes_only_its_batches() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let o = WalOptions {
            fill_ahead_bytes: 0,
            ..opts(16 << 10, 1)
        };
        let (mut wal, _) = Wal::open(disk.clone(), Path::new(DIR), o, 0, |_, _| {})
            .await
            .unwrap();
        for _ in 0..40 {
            let first = wal.next_lsn();
            let one = body(first, 300);
            let info = wal.write_batch(&[(first, &one)]).await.unwrap();
            assert_eq!(disk.unsynced_bytes(), info.bytes);
            wal.sync().await.unwrap();
        }
        assert!(!wal.closed_segments().is_empty());
    });
}
