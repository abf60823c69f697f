//! One test per fault class of the simulated disk, each asserting the exact
//! outcome of WAL (or snapshot) recovery.
// Test helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use beaver_io::wal::{LogEnd, inspect};
use beaver_io::{Disk, DiskFile, Error, SimDisk, SimDiskConfig, SnapshotStore, Wal};
use common::{DIR, assert_dense, body, opts, recover, rt, write};

const SEG: u64 = 16 << 10;

/// Writes `batches` synced batches of `per` records of `len` bytes.
async fn synced_log(disk: &SimDisk, batches: u64, per: u64, len: usize) -> Wal<SimDisk> {
    let (mut wal, _) = recover(disk, Path::new(DIR), opts(SEG, 1), 0)
        .await
        .unwrap();
    for _ in 0..batches {
        write(&mut wal, per, len).await.unwrap();
        wal.sync().await.unwrap();
    }
    wal
}

#[test]
fn torn_last_batch_is_discarded_and_every_earlier_record_recovers() {
    let mut torn_seen = 0;
    for seed in 0..40 {
        rt().block_on(async {
            let cfg = SimDiskConfig {
                torn_prefix: true,
                garbage_in_torn_sectors: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(seed, cfg);
            let mut wal = synced_log(&disk, 10, 3, 100).await;
            // A four-sector batch, written, never synced.
            write(&mut wal, 16, 100).await.unwrap();
            drop(wal);
            disk.power_loss();
            let (wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
                .await
                .unwrap();
            if wal.next_lsn() == 31 {
                // The batch was torn: discarded whole, everything before intact.
                assert_dense(&got, 1, 30, 100);
                torn_seen += 1;
            } else {
                // It survived whole (the cut fell after it).
                assert_dense(&got, 1, 46, 100);
            }
        });
    }
    assert!(torn_seen > 5, "torn only {torn_seen} times");
}

#[test]
fn valid_batch_after_a_torn_one_is_discarded_without_error() {
    let mut hit = 0;
    for seed in 0..60 {
        rt().block_on(async {
            let cfg = SimDiskConfig {
                reorder_sectors: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(seed, cfg);
            let mut wal = synced_log(&disk, 5, 2, 50).await;
            for _ in 0..3 {
                write(&mut wal, 1, 50).await.unwrap(); // one sector each: 11, 12, 13
            }
            drop(wal);
            disk.power_loss();
            let before = inspect(&disk, Path::new(DIR), 0).await.unwrap();
            let orphan = before
                .segments
                .iter()
                .flat_map(|s| &s.batches)
                .any(|b| !b.in_log);
            let (wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
                .await
                .unwrap();
            let last = wal.next_lsn() - 1;
            assert!((10..=13).contains(&last));
            assert_dense(&got, 1, last, 50);
            if orphan {
                // A batch survived although an earlier one did not: it is
                // discarded (and zeroed), and that is not an error.
                assert!(
                    matches!(before.end, LogEnd::Torn { .. }),
                    "{:?}",
                    before.end
                );
                let after = inspect(&disk, Path::new(DIR), 0).await.unwrap();
                assert_eq!(after.end, LogEnd::Clean);
                assert!(
                    after
                        .segments
                        .iter()
                        .flat_map(|s| &s.batches)
                        .all(|b| b.in_log)
                );
                hit += 1;
            }
        });
    }
    assert!(hit > 3, "reordering left an orphan batch only {hit} times");
}

#[test]
fn bit_flip_at_or_below_the_watermark_is_corruption_with_file_and_offset() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let wal = synced_log(&disk, 3, 2, 40).await; // batches at 512, 1024, 1536
        drop(wal);
        let seg = Path::new(DIR).join("wal-00000000000000000001.seg");
        disk.flip_bit(&seg, 1024 + 70, 3).unwrap();
        let before = disk.durable_contents(&seg).unwrap();
        // Inspection reports it and changes nothing.
        let ins = inspect(&disk, Path::new(DIR), 0).await.unwrap();
        assert!(
            matches!(&ins.end, LogEnd::Corrupt { path, offset: 1024, .. } if *path == seg),
            "{:?}",
            ins.end
        );
        match recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await {
            Err(Error::Corruption {
                path,
                offset,
                detail,
            }) => {
                assert_eq!(path, seg);
                assert_eq!(offset, 1024);
                assert!(detail.contains("acknowledged"), "{detail}");
            }
            other => panic!("expected corruption, got {:?}", other.map(|(_, g)| g.len())),
        }
        assert_eq!(
            disk.durable_contents(&seg).unwrap(),
            before,
            "recovery must not touch a corrupt log"
        );
    });
}

#[test]
fn lost_write_of_an_acknowledged_batch_is_corruption() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        drop(synced_log(&disk, 3, 2, 40).await);
        let seg = Path::new(DIR).join("wal-00000000000000000001.seg");
        disk.lose_write(&seg, 512, 512).unwrap();
        let err = recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err();
        assert!(
            matches!(err, Some(Error::Corruption { offset: 512, .. })),
            "{err:?}"
        );
        assert_eq!(disk.stats().lost_writes, 1);
    });
}

/// Found by the simulator (seed 8653): the harness undid an injected lost
/// write with `write_at` + `sync_data`, and that fsync drew an EIO armed for
/// the engine, so the restored sector stayed in the page cache only; a
/// power loss during the next recovery brought the zeros back under a
/// watermark that vouches for them. The restore is now fault-free: it
/// survives a power loss and leaves an armed EIO for the engine.
#[test]
fn restored_lost_write_is_durable_and_leaves_an_armed_eio_alone() {
    rt().block_on(async {
        let disk = SimDisk::new(8653, SimDiskConfig::power_faults());
        let dir = Path::new(DIR);
        drop(synced_log(&disk, 3, 2, 40).await);
        let seg = Path::new(DIR).join("wal-00000000000000000001.seg");
        let before = disk.durable_contents(&seg).unwrap();
        disk.lose_write(&seg, 512, 512).unwrap();
        let err = recover(&disk, dir, opts(SEG, 2), 0).await.err();
        assert!(
            matches!(err, Some(Error::Corruption { offset: 512, .. })),
            "{err:?}"
        );
        disk.fail_next_syncs(1);
        disk.restore_write(&seg, 512, &before[512..1024]).unwrap();
        assert_eq!(disk.durable_contents(&seg).unwrap(), before);
        assert_eq!(disk.stats().eio_injected, 0, "the restore took no EIO");
        disk.crash_process();
        disk.power_loss();
        assert_eq!(disk.durable_contents(&seg).unwrap(), before);
        // Recovery replays everything again; its own fsync takes the EIO
        // armed before the restore (fail-stop, as the design says).
        let err = recover(&disk, dir, opts(SEG, 3), 0).await.err();
        assert!(
            matches!(&err, Some(Error::Io { .. })) && disk.stats().eio_injected == 1,
            "{err:?}"
        );
        let (_, got) = recover(&disk, dir, opts(SEG, 4), 0).await.unwrap();
        assert_dense(&got, 1, 6, 40);
    });
}

#[test]
fn flipped_header_of_a_vouched_segment_is_corruption_naming_it() {
    rt().block_on(async {
        let disk = SimDisk::new(3, SimDiskConfig::default());
        // 2 KiB batches: a 16 KiB segment holds 7, so 20 batches span 3 segments.
        drop(synced_log(&disk, 20, 1, 1900).await);
        let seg2 = Path::new(DIR).join("wal-00000000000000000002.seg");
        disk.flip_bit(&seg2, 20, 0).unwrap();
        let err = recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err();
        match err {
            Some(Error::Corruption {
                path, offset: 0, ..
            }) => assert_eq!(path, seg2),
            other => panic!("{other:?}"),
        }
    });
}

const SNAP_DIR: &str = "/data/snap";

/// A disk that loses what was not synced at a power loss, with [`SNAP_DIR`].
async fn snapshot_disk(seed: u64) -> SimDisk {
    let disk = SimDisk::new(seed, SimDiskConfig::power_faults());
    disk.create_dir_all(Path::new(SNAP_DIR)).await.unwrap();
    disk
}

#[test]
fn renamed_file_without_directory_fsync_is_gone_after_power_loss() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(5).await, Path::new(SNAP_DIR));
        let tmp = dir.join("x.tmp");
        let f = disk.create(&tmp).await.unwrap();
        f.write_at(0, b"snapshot").await.unwrap();
        f.sync_all().await.unwrap();
        disk.rename(&tmp, &dir.join("x")).await.unwrap();
        disk.power_loss();
        assert!(disk.list(dir).await.unwrap().is_empty());
        assert!(disk.stats().dir_entries_lost >= 1);

        // The store's own write path fsyncs the directory: its snapshot survives.
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        store.save(7, b"state at 7").await.unwrap();
        disk.power_loss();
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        let snap = store.load().await.unwrap().unwrap();
        assert_eq!((snap.lsn, snap.body()), (7, &b"state at 7"[..]));
    });
}

#[test]
fn a_snapshot_saved_in_pieces_is_the_file_of_their_concatenation() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(9).await, Path::new(SNAP_DIR));
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        let pieces: [&[u8]; 4] = [b"first ", b"", b"second ", b"third"];
        let mut next = pieces.iter();
        let mut asked = Vec::new();
        let saved = store
            .save_pieces(12, |piece, at_least| {
                asked.push(at_least);
                piece.extend_from_slice(next.next().unwrap());
                next.len() > 0
            })
            .await
            .unwrap();
        assert_eq!(asked.len(), 4, "one call per piece, none after the last");
        assert!(asked.iter().all(|&n| n > 0));
        disk.power_loss();
        let whole = b"first second third";
        let file = disk.durable_contents(&saved.path).unwrap();
        assert_eq!(file, beaver_io::snapshot::encode_snapshot(12, whole));
        assert_eq!(saved.bytes, file.len() as u64);
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        let snap = store.load().await.unwrap().unwrap();
        assert_eq!((snap.lsn, snap.body()), (12, &whole[..]));
    });
}

/// Collects what [`SnapshotStore::load_in_pieces`] hands out.
#[derive(Default)]
struct Pieces {
    body_len: u64,
    body: Vec<u8>,
    pieces: usize,
    begun: usize,
    refuse_after: Option<usize>,
}

impl beaver_io::SnapshotSink for Pieces {
    fn begin(&mut self, body_len: u64) {
        (self.body_len, self.begun) = (body_len, self.begun + 1);
        self.body.clear();
        self.pieces = 0;
    }
    fn piece(&mut self, piece: &[u8]) -> bool {
        self.body.extend_from_slice(piece);
        self.pieces += 1;
        self.refuse_after != Some(self.pieces)
    }
}

#[test]
fn a_snapshot_loaded_in_pieces_of_any_size_hands_out_its_body_whole() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(11).await, Path::new(SNAP_DIR));
        let body: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        SnapshotStore::open(disk.clone(), dir)
            .await
            .unwrap()
            .save(21, &body)
            .await
            .unwrap();
        let file_len = 32 + body.len() + 4;
        for size in (1..40).chain([file_len - 1, file_len, 1 << 20]) {
            let mut store = SnapshotStore::open(disk.clone(), dir)
                .await
                .unwrap()
                .with_piece_bytes(size);
            let mut sink = Pieces::default();
            assert_eq!(store.load_in_pieces(&mut sink).await.unwrap(), Some(21));
            assert_eq!(sink.body, body, "pieces of {size}");
            assert_eq!((sink.body_len, sink.begun), (body.len() as u64, 1));
            assert!(sink.pieces <= body.len().div_ceil(size) + 1, "{size}");
        }
    });
}

#[test]
fn a_snapshot_found_corrupt_at_its_end_gives_way_to_the_older_one_and_the_sink_begins_again() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(12).await, Path::new(SNAP_DIR));
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        store.save(5, b"older state").await.unwrap();
        let saved = store.save(9, b"newer state, damaged").await.unwrap();
        // A flip in the body: only the trailer's checksum tells.
        let f = disk.open(&saved.path).await.unwrap();
        f.write_at(40, b"X").await.unwrap();
        f.sync_all().await.unwrap();
        let mut store = SnapshotStore::open(disk.clone(), dir)
            .await
            .unwrap()
            .with_piece_bytes(8);
        let mut sink = Pieces::default();
        assert_eq!(store.load_in_pieces(&mut sink).await.unwrap(), Some(5));
        assert_eq!((sink.body.as_slice(), sink.begun), (&b"older state"[..], 2));
        assert_eq!(store.kept(), [5], "the corrupt one is set aside");
        let names = disk.list(dir).await.unwrap();
        assert!(names.iter().any(|n| n.ends_with(".broken")), "{names:?}");
    });
}

#[test]
fn every_flipped_byte_of_a_snapshot_loaded_in_pieces_is_caught() {
    rt().block_on(async {
        let dir = Path::new(SNAP_DIR);
        let file = beaver_io::snapshot::encode_snapshot(6, b"state at six");
        for at in 0..file.len() {
            let disk = snapshot_disk(15).await;
            let mut flipped = file.clone();
            flipped[at] ^= 0x10;
            let path = dir.join(beaver_io::snapshot::snapshot_name(6));
            let f = disk.create(&path).await.unwrap();
            f.write_at(0, &flipped).await.unwrap();
            let mut store = SnapshotStore::open(disk.clone(), dir)
                .await
                .unwrap()
                .with_piece_bytes(1 + at % 7);
            let mut sink = Pieces::default();
            match store.load_in_pieces(&mut sink).await {
                Ok(None) => {}
                other => panic!("a flip at byte {at} was not caught: {other:?}"),
            }
        }
    });
}

#[test]
fn a_sink_that_refuses_a_piece_gets_no_more_and_the_file_is_still_checked() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(13).await, Path::new(SNAP_DIR));
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        store.save(3, b"a body of several pieces").await.unwrap();
        let mut store = store.with_piece_bytes(5);
        let mut sink = Pieces {
            refuse_after: Some(2),
            ..Pieces::default()
        };
        // Valid: loaded, the sink holding what it took before refusing.
        assert_eq!(store.load_in_pieces(&mut sink).await.unwrap(), Some(3));
        assert_eq!(sink.pieces, 2);
        assert_eq!(sink.body, b"a body of several pieces"[..sink.body.len()]);
    });
}

#[test]
fn a_snapshot_of_another_version_loaded_in_pieces_is_an_error_not_a_fallback() {
    rt().block_on(async {
        let (disk, dir) = (snapshot_disk(14).await, Path::new(SNAP_DIR));
        let mut store = SnapshotStore::open(disk.clone(), dir).await.unwrap();
        let saved = store.save(4, b"state").await.unwrap();
        // Version 2 in the header, the checksum made to match.
        let mut file = disk.durable_contents(&saved.path).unwrap();
        file[8] = 2;
        let crc = crc32fast::hash(&file[..file.len() - 4]);
        let n = file.len();
        file[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let f = disk.open(&saved.path).await.unwrap();
        f.write_at(0, &file).await.unwrap();
        f.sync_all().await.unwrap();
        let mut sink = Pieces::default();
        let e = store.load_in_pieces(&mut sink).await.unwrap_err();
        assert!(matches!(e, Error::Version { found: 2, .. }), "{e}");
    });
}

#[test]
fn zeros_and_stale_bytes_of_an_older_salt_never_decode() {
    rt().block_on(async {
        let dir = Path::new(DIR);
        // An old log: 20 one-sector batches, salt from seed 1.
        let old = SimDisk::new(1, SimDiskConfig::default());
        drop(synced_log(&old, 20, 1, 60).await);
        let seg = dir.join("wal-00000000000000000001.seg");
        let stale = old.durable_contents(&seg).unwrap();

        // A new log in the same file: 3 batches, another salt; then the old
        // bytes behind them, as a reused file would hold.
        let disk = SimDisk::new(2, SimDiskConfig::default());
        let (mut wal, got) = recover(&disk, dir, opts(SEG, 99), 0).await.unwrap();
        assert!(got.is_empty());
        // A blank preallocated segment decodes as nothing.
        let ins = inspect(&disk, dir, 0).await.unwrap();
        assert_eq!((ins.last_lsn, &ins.end), (None, &LogEnd::Clean));
        for _ in 0..3 {
            write(&mut wal, 1, 60).await.unwrap();
        }
        wal.sync().await.unwrap();
        drop(wal);
        let f = disk.open(&seg).await.unwrap();
        f.write_at(4 * 512, &stale[4 * 512..21 * 512])
            .await
            .unwrap();
        f.sync_data().await.unwrap();
        drop(f);

        let ins = inspect(&disk, dir, 0).await.unwrap();
        assert_eq!(
            ins.segments[0].batches.len(),
            3,
            "stale batches must not decode"
        );
        let (wal, got) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
        assert_dense(&got, 1, 3, 60);
        assert_eq!(wal.next_lsn(), 4);
        // The stale bytes were zeroed.
        let now = disk.durable_contents(&seg).unwrap();
        assert!(now[4 * 512..21 * 512].iter().all(|&b| b == 0));
    });
}

#[test]
fn after_a_process_kill_recovery_makes_what_it_read_durable() {
    for seed in 0..20 {
        rt().block_on(async {
            let disk = SimDisk::new(seed, SimDiskConfig::power_faults());
            let dir = Path::new(DIR);
            let mut wal = synced_log(&disk, 2, 2, 80).await;
            for _ in 0..4 {
                write(&mut wal, 3, 80).await.unwrap(); // never synced
            }
            drop(wal);
            disk.crash_process(); // page cache survives
            let (wal, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
            assert_dense(&got, 1, 16, 80);
            drop(wal);
            assert_eq!(disk.unsynced_bytes(), 0);
            disk.power_loss(); // right after recovery: nothing it returned may go
            let (_, again) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
            assert_eq!(again, got);
        });
    }
}

#[test]
fn fsync_eio_stops_the_wal() {
    rt().block_on(async {
        let disk = SimDisk::new(9, SimDiskConfig::power_faults());
        let dir = Path::new(DIR);
        let mut wal = synced_log(&disk, 2, 2, 30).await;
        write(&mut wal, 2, 30).await.unwrap();
        disk.fail_next_syncs(1);
        let err = wal.sync().await.unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EIO)),
            "{err}"
        );
        assert!(wal.is_stopped());
        assert_eq!(
            wal.durable_lsn(),
            4,
            "nothing of the failed sync is durable"
        );
        // Every later operation is refused; the sync is never retried.
        assert!(matches!(
            write(&mut wal, 1, 30).await,
            Err(Error::Stopped { .. })
        ));
        assert!(matches!(wal.begin_sync(), Err(Error::Stopped { .. })));
        assert!(matches!(
            wal.delete_through(100).await,
            Err(Error::Stopped { .. })
        ));
        assert_eq!(disk.stats().eio_injected, 1);
        assert_eq!(
            disk.stats().syncs,
            1 + 2,
            "the segment's preallocation + 2 batches, no retry"
        );
        drop(wal);
        // Restart: the log recovers to a prefix containing everything durable.
        disk.power_loss();
        let (_, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
        assert!(got.len() == 4 || got.len() == 6, "{}", got.len());
        assert_dense(&got, 1, got.len() as u64, 30);
    });
}

#[test]
fn enospc_refuses_appends_and_they_work_again_once_space_is_freed() {
    rt().block_on(async {
        let seg = 4096u64;
        let disk = SimDisk::new(4, SimDiskConfig::default());
        disk.set_capacity(3 * seg);
        let dir = Path::new(DIR);
        let (mut wal, _) = recover(&disk, dir, opts(seg, 1), 0).await.unwrap();
        // 1 KiB batches: 3 per segment; the disk holds 3 segments.
        let mut refused_at = None;
        for _ in 0..20 {
            let next = wal.next_lsn();
            match write(&mut wal, 1, 900).await {
                Ok(_) => {
                    wal.sync().await.unwrap();
                }
                Err(e) => {
                    assert!(matches!(e, Error::NoSpace { .. }), "{e}");
                    assert!(e.to_string().contains("wal-"), "names the file: {e}");
                    assert_eq!(wal.next_lsn(), next, "nothing written");
                    refused_at = Some(next);
                    break;
                }
            }
        }
        let refused_at = refused_at.expect("the disk filled up");
        assert_eq!(refused_at, 10);
        assert!(wal.space_status(0).await.unwrap().pressure);
        assert!(disk.stats().enospc >= 1);
        assert!(!wal.is_stopped(), "ENOSPC is not fatal");
        // The log is valid throughout.
        let ins = inspect(&disk, dir, 0).await.unwrap();
        assert_eq!((ins.last_lsn, &ins.end), (Some(9), &LogEnd::Clean));
        // Free space (a snapshot now covers LSN 6): appends work again.
        assert_eq!(wal.delete_through(6).await.unwrap(), 2);
        write(&mut wal, 1, 900).await.unwrap();
        assert_eq!(wal.sync().await.unwrap(), 10);
        drop(wal);
        disk.power_loss();
        let (_, got) = recover(&disk, dir, opts(seg, 2), 6).await.unwrap();
        assert_dense(&got, 7, 10, 900);
    });
}

#[test]
fn latency_is_simulated_time_and_counted() {
    rt().block_on(async {
        let cfg = SimDiskConfig {
            write_latency_mean: Duration::from_micros(50),
            read_latency_mean: Duration::from_micros(20),
            sync_latency_mean: Duration::from_millis(2),
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(1, cfg);
        let start = tokio::time::Instant::now();
        drop(synced_log(&disk, 10, 1, 10).await);
        let took = start.elapsed();
        assert!(took > Duration::from_millis(10), "{took:?}");
        assert!(disk.stats().latency_sleeps >= 20);
    });
}

#[test]
fn handles_from_before_a_crash_cannot_write() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        disk.create_dir_all(Path::new("/d")).await.unwrap();
        let f = disk.create(Path::new("/d/f")).await.unwrap();
        f.write_at(0, b"before").await.unwrap();
        disk.crash_process();
        let e = f.write_at(0, b"late write").await.unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ESTALE))
        );
        let g = disk.open(Path::new("/d/f")).await.unwrap();
        assert_eq!(g.read_at(0, vec![0; 6]).await.unwrap(), b"before");
        assert_eq!(disk.stats().stale_handle_ops, 1);
    });
}

#[test]
fn power_loss_drops_unsynced_bytes_and_counts_it() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default()); // drop-all model only
        let mut wal = synced_log(&disk, 2, 1, 10).await;
        write(&mut wal, 5, 10).await.unwrap();
        drop(wal);
        disk.power_loss();
        let (_, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 2, 10);
        let s = disk.stats();
        assert!(
            s.files_unsynced_dropped >= 1 && s.unsynced_bytes_lost >= 512,
            "{s:?}"
        );
    });
}

#[test]
fn rotation_recovery_and_deletion_only_of_covered_segments() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::power_faults());
        let dir = Path::new(DIR);
        let mut wal = synced_log(&disk, 40, 2, 700).await; // 80 records, 1.5 KiB batches
        let closed = wal.closed_segments();
        assert!(closed.len() >= 3, "{closed:?}");
        // A record bigger than a segment is refused with a clear error.
        let big = vec![0u8; SEG as usize];
        let e = wal.write_batch(&[(81, big.as_slice())]).await.unwrap_err();
        assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
        // Covering half of the second segment deletes only the first.
        let (_, last0) = closed[0];
        let (_, last1) = closed[1];
        assert_eq!(wal.delete_through(last1 - 1).await.unwrap(), 1);
        drop(wal);
        disk.power_loss();
        let (wal, got) = recover(&disk, dir, opts(SEG, 2), last0).await.unwrap();
        assert_dense(&got, last0 + 1, 80, 700);
        assert_eq!(wal.next_lsn(), 81);
        assert_eq!(body(81, 3), b"rec");
    });
}

/// `begin_delete_through` forgets the covered segments at once; their
/// files go when the job runs, and the log writes and syncs in between.
#[test]
fn covered_segments_are_deleted_by_a_job_while_the_log_goes_on() {
    rt().block_on(async {
        let disk = SimDisk::new(3, SimDiskConfig::power_faults());
        let dir = Path::new(DIR);
        let mut wal = synced_log(&disk, 40, 2, 700).await; // 80 records
        let closed = wal.closed_segments();
        assert!(closed.len() >= 3, "{closed:?}");
        let (_, last1) = closed[1];
        let name = |seq: u64| format!("wal-{seq:020}.seg");
        let job = wal
            .begin_delete_through(last1)
            .unwrap()
            .expect("two covered");
        assert_eq!(wal.closed_segments(), closed[2..].to_vec(), "forgotten now");
        for _ in 0..5 {
            write(&mut wal, 2, 700).await.unwrap();
            wal.sync().await.unwrap();
        }
        let listed = disk.list(dir).await.unwrap();
        assert!(
            listed.contains(&name(closed[0].0)) && listed.contains(&name(closed[1].0)),
            "the files stay until the job runs: {listed:?}"
        );
        assert_eq!(job.run().await.unwrap(), 2);
        let listed = disk.list(dir).await.unwrap();
        assert!(
            !listed.contains(&name(closed[0].0)) && !listed.contains(&name(closed[1].0)),
            "{listed:?}"
        );
        assert!(wal.begin_delete_through(last1).unwrap().is_none());
        drop(wal);
        disk.power_loss();
        let (wal, got) = recover(&disk, dir, opts(SEG, 2), last1).await.unwrap();
        assert_dense(&got, last1 + 1, 90, 700);
        assert_eq!(wal.next_lsn(), 91);
    });
}

#[test]
fn pages_an_eio_marked_clean_are_made_durable_by_the_next_recovery() {
    for seed in 0..20 {
        rt().block_on(async {
            let disk = SimDisk::new(seed, SimDiskConfig::power_faults());
            let dir = Path::new(DIR);
            let mut wal = synced_log(&disk, 1, 1, 20).await;
            write(&mut wal, 3, 20).await.unwrap();
            disk.fail_next_syncs(1);
            assert!(wal.sync().await.is_err());
            drop(wal);
            disk.crash_process(); // the page cache still shows the failed batch
            let (wal, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
            assert_dense(&got, 1, 4, 20);
            drop(wal);
            disk.power_loss();
            let (_, again) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
            assert_eq!(
                again, got,
                "recovery returned bytes it had not made durable"
            );
        });
    }
}

/// Found by the simulator (seed 35): a segment prepared ahead of need but
/// abandoned (rotation had already prepared another inline) is removed; if
/// a power loss brings the blank file back, numbered below the segment in
/// use, recovery must neither end the log at it (losing every acknowledged
/// record after it) nor ever rotate into it.
#[test]
fn blank_segment_numbered_below_the_log_is_skipped_and_removed() {
    rt().block_on(async {
        let disk = SimDisk::new(7, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let wal = synced_log(&disk, 3, 2, 50).await;
        let active = wal.active_segment().unwrap().to_path_buf();
        drop(wal);
        // The abandoned preparation: a blank, preallocated, durable file
        // named below the active segment.
        let stale = dir.join(beaver_io::wal::segment::segment_name(0));
        assert!(stale < active);
        let f = disk.create(&stale).await.unwrap();
        f.allocate(SEG).await.unwrap();
        f.sync_data().await.unwrap();
        disk.sync_dir(dir).await.unwrap();
        disk.power_loss();
        let (wal, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
        assert_dense(&got, 1, 6, 50);
        assert_eq!(wal.next_lsn(), 7);
        assert_eq!(wal.active_segment(), Some(active.as_path()));
        assert!(
            !disk
                .list(dir)
                .await
                .unwrap()
                .contains(&beaver_io::wal::segment::segment_name(0))
        );
        assert!(matches!(
            inspect(&disk, dir, 0).await.unwrap().end,
            LogEnd::Clean
        ));
    });
}

/// Two blank, full-length segments above the active one (preparations a
/// crash left behind): recovery keeps the first as the next segment and
/// removes the other, so no stray file holds space for good.
#[test]
fn of_two_blank_segments_above_the_log_recovery_keeps_one() {
    rt().block_on(async {
        let disk = SimDisk::new(7, SimDiskConfig::default());
        let dir = Path::new(DIR);
        drop(log_in_its_first_segment(&disk).await);
        for seq in [2, 3] {
            let f = disk.create(&segment(seq)).await.unwrap();
            f.allocate(4096).await.unwrap();
            f.sync_data().await.unwrap();
        }
        disk.sync_dir(dir).await.unwrap();
        let (wal, got) = recover(&disk, dir, opts(4096, 2), 0).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(wal.next_segment_ready());
        let mut names = disk.list(dir).await.unwrap();
        names.sort();
        let name = |seq| beaver_io::wal::segment::segment_name(seq);
        assert_eq!(names, [name(1), name(2)]);
    });
}

/// A disk whose syncs take milliseconds (so that directory syncs overlap)
/// and whose unsynced directory entries a power loss drops, with [`DIR`].
async fn slow_dir_sync_disk(seed: u64) -> SimDisk {
    let cfg = SimDiskConfig {
        sync_latency_mean: Duration::from_millis(5),
        lose_unsynced_dir_entries: true,
        ..SimDiskConfig::default()
    };
    let disk = SimDisk::new(seed, cfg);
    disk.create_dir_all(Path::new(DIR)).await.unwrap();
    disk
}

/// Starts a directory sync of [`DIR`], runs `other` while it is slow, then
/// cuts the power and lists what the directory durably holds.
async fn names_after_a_slow_sync_beside(
    disk: &SimDisk,
    other: impl std::future::Future<Output = ()>,
) -> Vec<String> {
    let dir = Path::new(DIR);
    let _ = tokio::join!(disk.sync_dir(dir), other);
    disk.power_loss();
    disk.list(dir).await.unwrap()
}

/// Found by the simulator (seed 463): a directory sync that began before a
/// removal and ended after a later directory sync let the file go must not
/// bring back a name without a file (power loss then listed a segment that
/// could not be read).
#[test]
fn overlapping_directory_syncs_never_leave_a_name_without_a_file() {
    for seed in 0..64 {
        rt().block_on(async {
            let (disk, dir) = (slow_dir_sync_disk(seed).await, Path::new(DIR));
            let f = dir.join("a");
            disk.create(&f)
                .await
                .unwrap()
                .write_at(0, b"x")
                .await
                .unwrap();
            disk.sync_dir(dir).await.unwrap();
            let other = async {
                disk.remove(&f).await.unwrap();
                disk.sync_dir(dir).await.unwrap();
            };
            for name in names_after_a_slow_sync_beside(&disk, other).await {
                let file = disk.open(&dir.join(&name)).await.unwrap();
                file.size().await.unwrap();
            }
        });
    }
}

/// Found by the simulator (seed 11626): a directory sync that began before
/// a file was created and ended after a later directory sync made the file
/// durable must not make its name non-durable again (power loss then lost
/// a whole WAL segment holding acknowledged records).
#[test]
fn a_slow_directory_sync_never_undoes_a_later_one() {
    for seed in 0..64 {
        rt().block_on(async {
            let (disk, dir) = (slow_dir_sync_disk(seed).await, Path::new(DIR));
            let f = dir.join("b");
            let other = async {
                let file = disk.create(&f).await.unwrap();
                file.write_at(0, b"y").await.unwrap();
                file.sync_data().await.unwrap();
                disk.sync_dir(dir).await.unwrap();
            };
            assert_eq!(
                names_after_a_slow_sync_beside(&disk, other).await,
                vec!["b".to_string()],
                "seed {seed}"
            );
        });
    }
}

/// The same with a rename (as a snapshot's temp file becomes the
/// snapshot): the slow sync saw the old name; the later one, finished
/// first, made the new name durable, and it stays so.
#[test]
fn a_slow_directory_sync_never_undoes_a_later_rename() {
    for seed in 0..64 {
        rt().block_on(async {
            let (disk, dir) = (slow_dir_sync_disk(seed).await, Path::new(DIR));
            let (tmp, done) = (dir.join("c.tmp"), dir.join("c"));
            let file = disk.create(&tmp).await.unwrap();
            file.write_at(0, b"z").await.unwrap();
            file.sync_data().await.unwrap();
            disk.sync_dir(dir).await.unwrap();
            let other = async {
                disk.rename(&tmp, &done).await.unwrap();
                disk.sync_dir(dir).await.unwrap();
            };
            assert_eq!(
                names_after_a_slow_sync_beside(&disk, other).await,
                vec!["c".to_string()],
                "seed {seed}"
            );
        });
    }
}

/// Found by the simulator (seed 5015): a record acknowledged after its own
/// sync but with no later batch to carry its watermark is "unvouched", and
/// recovery rewrites it in place. If that recovery fails (here: an fsync
/// EIO on an earlier segment) and the power then fails, the pending
/// in-place write must not tear the acknowledged record away.
#[test]
fn a_failed_recovery_then_power_loss_keeps_every_acknowledged_record() {
    for seed in 0..48 {
        rt().block_on(async {
            let cfg = SimDiskConfig {
                torn_prefix: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(seed, cfg);
            let dir = Path::new(DIR);
            // Small segments: the records span two, the last one alone in
            // the newest segment, acknowledged after its own fdatasync.
            let (mut wal, _) = recover(&disk, dir, opts(4096, 1), 0).await.unwrap();
            let mut last = 0;
            for _ in 0..8 {
                last = write(&mut wal, 1, 300).await.unwrap();
                wal.sync().await.unwrap();
            }
            drop(wal);
            disk.crash_process();
            // The first fsync of the next recovery fails: it stops there.
            disk.fail_next_syncs(1);
            assert!(
                recover(&disk, dir, opts(4096, 2), 0).await.is_err(),
                "seed {seed}"
            );
            disk.crash_process();
            disk.power_loss();
            let (_, got) = recover(&disk, dir, opts(4096, 3), 0).await.unwrap();
            assert_dense(&got, 1, last, 300);
        });
    }
}

/// Segment `seq`'s path in [`DIR`].
fn segment(seq: u64) -> std::path::PathBuf {
    Path::new(DIR).join(beaver_io::wal::segment::segment_name(seq))
}

#[test]
fn flipped_header_of_the_newest_segment_is_corruption_when_its_batches_vouch() {
    rt().block_on(async {
        let disk = SimDisk::new(3, SimDiskConfig::default());
        // 7 batches per segment: the third holds LSNs 15-20, and batch 20
        // carries watermark 19. No later segment vouches for it.
        drop(synced_log(&disk, 20, 1, 1900).await);
        let seg3 = segment(3);
        let before = disk.durable_contents(&seg3).unwrap();
        disk.flip_bit(&seg3, 20, 0).unwrap();
        match recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err() {
            Some(Error::Corruption {
                path,
                offset: 0,
                detail,
            }) => {
                assert_eq!(path, seg3);
                assert!(detail.contains("up to 19 were acknowledged"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Refused, not repaired: nothing was zeroed.
        let mut after = disk.durable_contents(&seg3).unwrap();
        after[20] ^= 1;
        assert_eq!(after, before);
    });
}

#[test]
fn a_damaged_header_no_later_batch_vouches_for_is_a_torn_tail() {
    rt().block_on(async {
        let disk = SimDisk::new(4, SimDiskConfig::default());
        // Segment 3's header went out with batch 15 (watermark 14): the
        // same bytes as a write of both that tore, which no acknowledged
        // record before it needs.
        drop(synced_log(&disk, 15, 1, 1900).await);
        disk.flip_bit(&segment(3), 20, 0).unwrap();
        let (wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 14, 1900);
        assert_eq!(wal.next_lsn(), 15);
    });
}

#[test]
fn a_segment_of_a_newer_format_is_refused_and_left_as_it_is() {
    rt().block_on(async {
        let disk = SimDisk::new(5, SimDiskConfig::default());
        drop(synced_log(&disk, 10, 1, 1900).await);
        let seg2 = segment(2);
        let mut header = disk.durable_contents(&seg2).unwrap()[..48].to_vec();
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&header[..44]);
        header[44..48].copy_from_slice(&crc.to_le_bytes());
        disk.restore_write(&seg2, 0, &header).unwrap();
        let before = disk.durable_contents(&seg2).unwrap();
        match recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err() {
            Some(Error::Version {
                path,
                found: 2,
                supported: 1,
            }) => assert_eq!(path, seg2),
            other => panic!("{other:?}"),
        }
        assert_eq!(disk.durable_contents(&seg2).unwrap(), before);
        let ins = inspect(&disk, Path::new(DIR), 0).await;
        assert!(
            matches!(ins, Err(Error::Version { found: 2, .. })),
            "{ins:?}"
        );
    });
}

#[test]
fn a_segment_cut_inside_its_last_batchs_padding_keeps_every_record() {
    rt().block_on(async {
        let disk = SimDisk::new(6, SimDiskConfig::default());
        // One segment: header sector, then two one-sector batches.
        drop(synced_log(&disk, 2, 1, 100).await);
        let seg1 = segment(1);
        let f = disk.open(&seg1).await.unwrap();
        // Cut right after the second batch's records, inside its padding.
        f.set_len(512 + 512 + 64 + 17 + 100).await.unwrap();
        f.sync_all().await.unwrap();
        let (mut wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 2, 100);
        // The log goes on after it.
        write(&mut wal, 1, 100).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        let (_, got) = recover(&disk, Path::new(DIR), opts(SEG, 3), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 3, 100);
    });
}

#[test]
fn inspection_from_a_snapshot_needs_the_log_only_after_it() {
    rt().block_on(async {
        let disk = SimDisk::new(7, SimDiskConfig::default());
        drop(synced_log(&disk, 20, 1, 1900).await);
        // A snapshot at LSN 14 made segments 1 and 2 unnecessary.
        for seq in [1, 2] {
            disk.remove(&segment(seq)).await.unwrap();
        }
        let from_14 = inspect(&disk, Path::new(DIR), 14).await.unwrap();
        assert_eq!(from_14.end, LogEnd::Clean);
        assert_eq!((from_14.first_lsn, from_14.last_lsn), (Some(15), Some(20)));
        // Without the snapshot, LSNs 1-14 are missing.
        let whole = inspect(&disk, Path::new(DIR), 0).await.unwrap();
        assert!(
            matches!(whole.end, LogEnd::Corrupt { .. }),
            "{:?}",
            whole.end
        );
    });
}

/// The batches inspection finds in segment `seq`.
async fn batches_of(disk: &SimDisk, seq: u64) -> Vec<beaver_io::wal::BatchReport> {
    inspect(disk, Path::new(DIR), 0)
        .await
        .unwrap()
        .segments
        .into_iter()
        .find(|s| s.seq == seq)
        .map(|s| s.batches)
        .unwrap_or_default()
}

#[test]
fn a_segment_cut_inside_vouched_bytes_is_corruption_naming_file_and_offset() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        // Twelve 2 KB batches: segment 2's batches vouch for all of segment 1.
        drop(synced_log(&disk, 12, 1, 1900).await);
        let second = batches_of(&disk, 1).await[1].clone();
        let seg1 = segment(1);
        let f = disk.open(&seg1).await.unwrap();
        f.set_len(second.offset + 100).await.unwrap();
        f.sync_all().await.unwrap();
        let refused = recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err();
        let Some(Error::Corruption {
            path,
            offset,
            detail,
        }) = refused
        else {
            panic!("{refused:?}");
        };
        let inspected = inspect(&disk, Path::new(DIR), 0).await.unwrap().end;
        assert_eq!(
            inspected,
            LogEnd::Corrupt {
                path: path.clone(),
                offset,
                detail: detail.clone()
            }
        );
        assert_eq!((path, offset), (seg1, second.offset));
        assert!(detail.contains("cut short"), "{detail}");
        assert!(detail.contains("were acknowledged"), "{detail}");
    });
}

/// A segment whose preallocated length never became durable (an fsync EIO
/// marked the allocation clean) is shortened by a power loss inside the
/// batch being written: that batch was never acknowledged, so it is a torn
/// tail, discarded like any other, and the log goes on from there.
#[test]
fn a_segment_cut_inside_its_unvouched_last_batch_is_a_torn_tail() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        let mut wal = synced_log(&disk, 3, 1, 100).await;
        write(&mut wal, 4, 100).await.unwrap(); // LSNs 4-7, never synced
        drop(wal);
        let fourth = batches_of(&disk, 1).await[3].clone();
        assert_eq!((fourth.first_lsn, fourth.watermark), (4, 3));
        let f = disk.open(&segment(1)).await.unwrap();
        f.set_len(fourth.offset + 200).await.unwrap();
        f.sync_all().await.unwrap();
        match inspect(&disk, Path::new(DIR), 0).await.unwrap().end {
            LogEnd::Torn { offset, reason, .. } => {
                assert_eq!(offset, fourth.offset);
                assert!(reason.contains("cut short"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let (mut wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 3, 100);
        // The log goes on in the shortened segment and survives a power loss.
        write(&mut wal, 2, 100).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        disk.power_loss();
        let (_, got) = recover(&disk, Path::new(DIR), opts(SEG, 3), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 5, 100);
    });
}

/// Found by the simulator (seed 54366): a crash interrupted a segment's
/// preparation before its sync; the next start adopted the segment with
/// its length in the page cache only; the first fdatasync into it failed
/// with EIO (the allocation marked clean, never written); after later
/// batches, a power loss cut the file inside the unsynced last one, and
/// start-up refused to go on. Recovery now makes an adopted segment's
/// length durable, and a cut past the watermark is a torn tail anyway.
#[test]
fn an_interrupted_preparation_then_eio_then_power_loss_still_starts() {
    for seed in 0..24 {
        rt().block_on(async {
            let cfg = SimDiskConfig {
                reorder_sectors: true,
                garbage_in_torn_sectors: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(seed, cfg);
            let dir = Path::new(DIR);
            // A preparation of the first segment, cut short by a crash.
            disk.create_dir_all(dir).await.unwrap();
            let f = disk.create(&segment(1)).await.unwrap();
            f.allocate(SEG).await.unwrap();
            disk.sync_dir(dir).await.unwrap();
            drop(f);
            disk.crash_process();
            let (mut wal, _) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
            write(&mut wal, 1, 100).await.unwrap();
            disk.fail_next_syncs(1);
            assert!(wal.sync().await.is_err(), "seed {seed}");
            drop(wal);
            disk.crash_process();
            let (mut wal, got) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
            assert_dense(&got, 1, 1, 100);
            let mut last = 1;
            for _ in 0..3 {
                last = write(&mut wal, 5, 100).await.unwrap();
                wal.sync().await.unwrap();
            }
            write(&mut wal, 5, 100).await.unwrap(); // in flight at the power loss
            drop(wal);
            disk.power_loss();
            let f = disk.open(&segment(1)).await.unwrap();
            assert_eq!(f.size().await.unwrap(), SEG, "seed {seed}: length lost");
            let (_, got) = recover(&disk, dir, opts(SEG, 4), 0).await.unwrap();
            assert_eq!(got.first().map(|r| r.0), Some(1), "seed {seed}");
            assert!(got.len() as u64 >= last, "seed {seed}");
            assert_dense(&got[..last as usize], 1, last, 100);
        });
    }
}

#[test]
fn after_segment_bytes_grows_a_recovered_segment_is_never_extended() {
    rt().block_on(async {
        let disk = SimDisk::new(9, SimDiskConfig::default());
        drop(synced_log(&disk, 3, 1, 1900).await);
        let (mut wal, _) = recover(&disk, Path::new(DIR), opts(4 * SEG, 2), 0)
            .await
            .unwrap();
        for _ in 0..10 {
            write(&mut wal, 1, 1900).await.unwrap();
            wal.sync().await.unwrap();
        }
        drop(wal);
        // A write past a segment's end could tear into a shorter file,
        // which recovery would rightly call cut short.
        let f = disk.open(&segment(1)).await.unwrap();
        assert_eq!(f.size().await.unwrap(), SEG);
        let (_, got) = recover(&disk, Path::new(DIR), opts(4 * SEG, 3), 0)
            .await
            .unwrap();
        assert_dense(&got, 1, 13, 1900);
    });
}

/// The start-up volume check (`beaver_io::space`) and the running log agree
/// on the reserve, and a volume holding exactly what the check asks for is
/// out of the reserve once both segments are preallocated.
#[test]
fn the_start_up_volume_check_matches_the_logs_reserve() {
    rt().block_on(async {
        let seg = 4096u64;
        let snapshot = 100;
        let disk = SimDisk::new(5, SimDiskConfig::default());
        disk.set_capacity(beaver_io::space::needed_bytes(seg, snapshot));
        let dir = Path::new(DIR);
        let (mut wal, _) = recover(&disk, dir, opts(seg, 1), 0).await.unwrap();
        write(&mut wal, 1, 100).await.unwrap();
        wal.sync().await.unwrap();
        let job = wal.begin_prepare().expect("a next segment is wanted");
        let prepared = job.run().await;
        wal.finish_prepare(prepared).await.unwrap();
        let status = wal.space_status(snapshot).await.unwrap();
        assert_eq!(
            status.reserve_bytes,
            beaver_io::space::reserve_bytes(seg, snapshot)
        );
        assert!(!status.pressure, "{status:?}");
        disk.set_capacity(beaver_io::space::needed_bytes(seg, snapshot) - 1);
        assert!(wal.space_status(snapshot).await.unwrap().pressure);
    });
}

/// Nothing synced, the writes rotated into segment 2, and a power loss kept
/// segment 2's pages but none of segment 1's: the log after the gap follows
/// records that never reached the disk and that no watermark vouches for.
/// It is a torn tail: recovery discards it and starts (CI's prop_wal found
/// a start-up refused with "records are missing").
#[test]
fn a_later_unsynced_segment_kept_by_a_power_loss_is_a_torn_tail() {
    rt().block_on(async {
        let disk = SimDisk::new(5, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let (mut wal, _) = recover(&disk, dir, opts(SEG, 1), 0).await.unwrap();
        let mut first_of_2 = 1;
        while wal.active_segment() != Some(segment(2).as_path()) {
            first_of_2 = write(&mut wal, 1, 1900).await.unwrap();
        }
        write(&mut wal, 2, 1900).await.unwrap();
        drop(wal);
        disk.open(&segment(2))
            .await
            .unwrap()
            .sync_data()
            .await
            .unwrap();
        disk.power_loss();
        let ins = inspect(&disk, dir, 0).await.unwrap();
        let LogEnd::Torn {
            path,
            offset: 0,
            reason,
            ..
        } = &ins.end
        else {
            panic!("{:?}", ins.end);
        };
        assert_eq!(*path, segment(2));
        assert!(
            reason.contains(&format!("the log starts at LSN {first_of_2}")),
            "{reason}"
        );
        let (mut wal, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(wal.next_lsn(), 1);
        write(&mut wal, 3, 100).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        disk.power_loss();
        let (_, got) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
        assert_dense(&got, 1, 3, 100);
    });
}

/// The same gap with a later batch that vouches for the missing records is
/// corruption: acknowledged records are gone.
#[test]
fn a_gap_before_the_log_that_a_watermark_vouches_for_is_corruption() {
    rt().block_on(async {
        let disk = SimDisk::new(6, SimDiskConfig::default());
        drop(synced_log(&disk, 20, 1, 1900).await);
        let size = disk.durable_contents(&segment(1)).unwrap().len();
        let f = disk.open(&segment(1)).await.unwrap();
        f.write_at(0, &vec![0u8; size]).await.unwrap();
        f.sync_data().await.unwrap();
        match recover(&disk, Path::new(DIR), opts(SEG, 2), 0).await.err() {
            Some(Error::Corruption { path, detail, .. }) => {
                assert_eq!(path, segment(2));
                assert!(detail.contains("the log starts at LSN"), "{detail}");
                assert!(detail.contains("were acknowledged"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A damaged log whose every vouched record the snapshot already holds is
/// a torn tail, not corruption: nothing acknowledged is missing from the
/// state (snapshot plus log). The same log restarted from an older
/// snapshot is corruption. (Found by the `wal_scan` fuzz target once the
/// scan counted the snapshot into the valid state.)
#[test]
fn damage_vouched_only_below_the_snapshot_is_a_torn_tail() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        // LSNs 1-3, each synced: the last batch carries watermark 2.
        drop(synced_log(&disk, 3, 1, 100).await);
        disk.flip_bit(&segment(1), 20, 0).unwrap();
        let dir = Path::new(DIR);
        let from_1 = inspect(&disk, dir, 1).await.unwrap();
        assert!(
            matches!(&from_1.end, LogEnd::Corrupt { detail, .. } if detail.contains("up to 2 were acknowledged")),
            "{:?}",
            from_1.end
        );
        let from_2 = inspect(&disk, dir, 2).await.unwrap();
        assert!(
            matches!(from_2.end, LogEnd::Torn { offset: 0, .. }),
            "{:?}",
            from_2.end
        );
        let (wal, got) = recover(&disk, dir, opts(SEG, 2), 2).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(wal.next_lsn(), 3);
    });
}

/// Rewrites segment `seq`'s header (with a valid checksum) through `change`.
async fn rewrite_header(
    disk: &SimDisk,
    seq: u64,
    change: impl FnOnce(&mut beaver_io::wal::format::SegmentHeader),
) {
    use beaver_io::wal::format::SegmentHeader;
    let bytes = disk.durable_contents(&segment(seq)).unwrap();
    let mut h = SegmentHeader::decode(&bytes).unwrap();
    change(&mut h);
    let mut out = Vec::new();
    h.encode(&mut out);
    let f = disk.open(&segment(seq)).await.unwrap();
    f.write_at(0, &out).await.unwrap();
    f.sync_data().await.unwrap();
}

/// A segment header must name its own sequence number and continue the
/// chain in both its fields: the LSN after the previous segment's last and
/// that batch's checksum. Any one wrong breaks the log there (here corruption: later batches vouch for
/// the LSNs after it). Mutation testing found neither checked by a test.
#[test]
fn a_segment_header_off_the_chain_in_either_field_breaks_the_log() {
    type Change = fn(&mut beaver_io::wal::format::SegmentHeader);
    let changes: [(&str, Change); 3] = [
        ("first LSN", |h| h.first_lsn += 1),
        ("previous checksum", |h| h.prev_chain ^= 1),
        ("sequence number", |h| h.seq += 5),
    ];
    for (what, change) in changes {
        rt().block_on(async {
            let disk = SimDisk::new(9, SimDiskConfig::default());
            drop(synced_log(&disk, 20, 1, 1900).await);
            rewrite_header(&disk, 2, change).await;
            let ins = inspect(&disk, Path::new(DIR), 0).await.unwrap();
            match &ins.end {
                LogEnd::Corrupt { detail, .. } => assert!(
                    detail.contains("does not continue the chain")
                        || detail.contains("names another sequence number"),
                    "{what}: {detail}"
                ),
                other => panic!("{what}: {other:?}"),
            }
            assert_eq!(ins.last_lsn, Some(7), "{what}: the log ends with segment 1");
        });
    }
}

/// Offset one past segment `seq`'s last non-zero durable byte.
fn nonzero_len(disk: &SimDisk, seq: u64) -> u64 {
    let c = disk.durable_contents(&segment(seq)).unwrap();
    c.iter().rposition(|&b| b != 0).map_or(0, |p| p as u64 + 1)
}

/// The torn window is reported where it starts and by its exact size: from
/// the segment's start when its first batch tore (header and batch went out
/// together), else from the torn batch. Mutation testing found the size
/// unchecked.
#[test]
fn a_torn_window_is_reported_where_it_starts_with_its_size() {
    // 9 batches of one 1,900-byte record: segment 1 holds 7, segment 2
    // holds LSNs 8 and 9. `tear` picks which of segment 2's batches tears.
    for tear in [0usize, 1] {
        rt().block_on(async {
            let disk = SimDisk::new(10, SimDiskConfig::default());
            drop(synced_log(&disk, 8 + tear as u64, 1, 1900).await);
            let batches = batches_of(&disk, 2).await;
            assert_eq!(batches.len(), tear + 1);
            let off = batches[tear].offset;
            disk.flip_bit(&segment(2), off + 100, 3).unwrap();
            // A stray byte in the padding of segment 1's last batch (outside
            // every checksum): segment 1 now has bytes right up to where its
            // log ends, and the window still starts in segment 2.
            let last = batches_of(&disk, 1).await.pop().unwrap();
            let f = disk.open(&segment(1)).await.unwrap();
            f.write_at(last.offset + last.len - 1, &[0x5a])
                .await
                .unwrap();
            f.sync_data().await.unwrap();
            let start = if tear == 0 { 0 } else { off };
            let expect_bytes = nonzero_len(&disk, 2) - start;
            let ins = inspect(&disk, Path::new(DIR), 0).await.unwrap();
            match &ins.end {
                LogEnd::Torn {
                    path,
                    offset,
                    bytes,
                    ..
                } => {
                    assert_eq!(*path, segment(2), "tear {tear}");
                    assert_eq!((*offset, *bytes), (start, expect_bytes), "tear {tear}");
                }
                other => panic!("tear {tear}: {other:?}"),
            }
        });
    }
}

/// Recovery zeroes the torn window exactly: from the torn batch to the
/// end of the bytes written, and not one byte past the segment's end.
#[test]
fn recovery_zeroes_the_torn_window_and_keeps_the_segments_length() {
    rt().block_on(async {
        let disk = SimDisk::new(10, SimDiskConfig::default());
        // Segment 2 holds LSNs 8 to 14; LSN 14's batch, its last, tears
        // (a window that ends near the segment's end).
        drop(synced_log(&disk, 14, 1, 1900).await);
        let torn = batches_of(&disk, 2).await[6].offset;
        disk.flip_bit(&segment(2), torn + 100, 3).unwrap();
        let (wal, got) = recover(&disk, Path::new(DIR), opts(SEG, 2), 0)
            .await
            .unwrap();
        assert_eq!(got.last().map(|r| r.0), Some(13));
        drop(wal);
        let bytes = disk.durable_contents(&segment(2)).unwrap();
        assert_eq!(bytes.len() as u64, SEG, "the segment keeps its length");
        let torn = usize::try_from(torn).unwrap();
        assert!(
            bytes[torn..].iter().all(|&b| b == 0),
            "zeros from the torn batch on"
        );
        assert!(
            bytes[..torn].iter().any(|&b| b != 0),
            "the batches before stay"
        );
    });
}

/// Bytes past a segment's last batch (stale, never part of the log) are no
/// break when the next segment continues the chain: a batch that tears in
/// that next segment is the start of the torn window, and the valid batches
/// before it in the same segment stay, over a second recovery too.
#[test]
fn stale_bytes_past_a_segment_do_not_move_a_later_torn_window() {
    rt().block_on(async {
        let disk = SimDisk::new(11, SimDiskConfig::default());
        drop(synced_log(&disk, 9, 1, 1900).await);
        let f = disk.open(&segment(1)).await.unwrap();
        f.write_at(SEG - 512, &[0xab; 100]).await.unwrap();
        f.sync_data().await.unwrap();
        let off = batches_of(&disk, 2).await[1].offset;
        disk.flip_bit(&segment(2), off + 100, 3).unwrap();
        let dir = Path::new(DIR);
        let (wal, got) = recover(&disk, dir, opts(SEG, 2), 0).await.unwrap();
        assert_dense(&got, 1, 8, 1900);
        assert_eq!(wal.next_lsn(), 9);
        drop(wal);
        let (_, again) = recover(&disk, dir, opts(SEG, 3), 0).await.unwrap();
        assert_dense(&again, 1, 8, 1900);
    });
}

/// A new log of 4 KiB segments whose first record is written: segment 1
/// is the active one and no next segment is prepared.
async fn log_in_its_first_segment(disk: &SimDisk) -> Wal<SimDisk> {
    let (mut wal, _) = recover(disk, Path::new(DIR), opts(4096, 1), 0)
        .await
        .unwrap();
    write(&mut wal, 1, 900).await.unwrap();
    assert_eq!(wal.active_segment(), Some(segment(1).as_path()));
    assert!(wal.next_segment_wanted() && !wal.next_segment_ready());
    wal
}

/// Writes 900-byte records until the log moves out of segment 1.
async fn rotate_out_of_the_first_segment(wal: &mut Wal<SimDisk>) {
    while wal.active_segment() == Some(segment(1).as_path()) {
        write(wal, 1, 900).await.unwrap();
    }
}

#[test]
fn a_prepared_segment_is_the_next_rotations_and_a_failed_preparation_can_be_retried() {
    rt().block_on(async {
        let disk = SimDisk::new(6, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let mut wal = log_in_its_first_segment(&disk).await;
        // No room for another segment: the preparation fails, not fatally.
        disk.set_capacity(disk.used_bytes());
        let job = wal.begin_prepare().expect("a next segment is wanted");
        assert!(!wal.next_segment_wanted() && wal.begin_prepare().is_none());
        let failed = wal.finish_prepare(job.run().await).await;
        assert!(matches!(&failed, Err(Error::NoSpace { .. })), "{failed:?}");
        assert!(wal.next_segment_wanted() && !wal.is_stopped());
        // With room again, the next try (segment 3) is installed and used.
        disk.set_capacity(u64::MAX);
        let job = wal.begin_prepare().expect("wanted again");
        wal.finish_prepare(job.run().await).await.unwrap();
        assert!(wal.next_segment_ready() && !wal.next_segment_wanted());
        rotate_out_of_the_first_segment(&mut wal).await;
        assert_eq!(wal.active_segment(), Some(segment(3).as_path()));
        assert!(wal.next_segment_wanted());
        let last = wal.next_lsn() - 1;
        wal.sync().await.unwrap();
        drop(wal);
        let (_, got) = recover(&disk, dir, opts(4096, 2), 0).await.unwrap();
        assert_dense(&got, 1, last, 900);
    });
}

#[test]
fn a_segment_prepared_while_rotation_went_ahead_inline_is_removed() {
    rt().block_on(async {
        let disk = SimDisk::new(7, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let mut wal = log_in_its_first_segment(&disk).await;
        let job = wal.begin_prepare().expect("a next segment is wanted"); // segment 2
        rotate_out_of_the_first_segment(&mut wal).await;
        assert_eq!(wal.active_segment(), Some(segment(3).as_path()));
        wal.finish_prepare(job.run().await).await.unwrap();
        assert!(!wal.next_segment_ready());
        let name = |seq| beaver_io::wal::segment::segment_name(seq);
        let listed = disk.list(dir).await.unwrap();
        assert_eq!(listed, [name(1), name(3)]);
    });
}

#[test]
fn a_stopped_wal_removes_the_segment_it_was_preparing_and_prepares_no_more() {
    rt().block_on(async {
        let disk = SimDisk::new(8, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let mut wal = log_in_its_first_segment(&disk).await;
        let job = wal.begin_prepare().expect("a next segment is wanted"); // segment 2
        disk.fail_next_syncs(1);
        assert!(wal.sync().await.is_err());
        assert!(wal.is_stopped());
        wal.finish_prepare(job.run().await).await.unwrap();
        assert!(!wal.next_segment_ready());
        let listed = disk.list(dir).await.unwrap();
        assert_eq!(listed, [beaver_io::wal::segment::segment_name(1)]);
        assert!(wal.begin_prepare().is_none() && !wal.next_segment_wanted());
    });
}

/// A removal counts as a directory change: a directory sync that began
/// before a file was removed and another created must not be taken for as
/// new as the sync that saw the new file (a power loss would lose it).
#[test]
fn a_sync_from_before_a_removal_never_undoes_a_later_one() {
    for seed in 0..64 {
        rt().block_on(async {
            let (disk, dir) = (slow_dir_sync_disk(seed).await, Path::new(DIR));
            disk.create(&dir.join("a")).await.unwrap();
            let slow = disk.sync_dir(dir);
            let other = async {
                disk.remove(&dir.join("a")).await.unwrap();
                let file = disk.create(&dir.join("b")).await.unwrap();
                file.write_at(0, b"y").await.unwrap();
                file.sync_data().await.unwrap();
                disk.sync_dir(dir).await.unwrap();
            };
            let _ = tokio::join!(slow, other);
            disk.power_loss();
            assert_eq!(
                disk.list(dir).await.unwrap(),
                vec!["b".to_string()],
                "seed {seed}"
            );
        });
    }
}
