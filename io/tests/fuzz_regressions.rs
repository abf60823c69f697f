//! Inputs the fuzz targets found (`fuzz/`, docs/fuzzing.md), each of which
//! once crashed or broke a checked property, kept as ordinary tests.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use std::path::Path;

use beaver_io::wal::inspect;
use beaver_io::wal::segment::{MAX_SEGMENT_SEQ, segment_name};
use beaver_io::{Disk, DiskFile, Error, SimDisk, SimDiskConfig};
use common::{DIR, opts, recover, rt, write};

/// Found by `wal_scan`: recovery computed the next segment's number as the
/// largest one found plus one, which overflowed (a panic in debug builds;
/// in release a segment numbered 0, which sorts before the whole log).
#[test]
fn a_segment_numbered_beyond_any_beaver_writes_is_refused_naming_it() {
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let (mut wal, _) = recover(&disk, dir, opts(4096, 1), 0).await.unwrap();
        write(&mut wal, 2, 10).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        for seq in [MAX_SEGMENT_SEQ + 1, u64::MAX] {
            let stray = dir.join(segment_name(seq));
            let f = disk.create(&stray).await.unwrap();
            f.write_at(0, &[0u8; 512]).await.unwrap();
            for result in [
                inspect(&disk, dir, 0).await.map(|_| ()),
                recover(&disk, dir, opts(4096, 2), 0).await.map(|_| ()),
            ] {
                match result {
                    Err(Error::Corruption { path, detail, .. }) => {
                        assert_eq!(path, stray);
                        assert!(detail.contains("beyond any beaver writes"), "{detail}");
                    }
                    other => panic!("seq {seq}: {other:?}"),
                }
            }
            disk.remove(&stray).await.unwrap();
        }
        // Without the stray file the log is whole again.
        let (_, got) = recover(&disk, dir, opts(4096, 3), 0).await.unwrap();
        assert_eq!(got.len(), 2);
    });
}

/// Found by `wal_scan`: a segment whose header continues the chain but
/// which holds no batch (its first write torn after the header) became the
/// start of the torn window, so recovery left the bytes after the previous
/// segment's last batch alone, and the next inspection (and recovery)
/// found them as a torn tail of their own.
#[test]
fn recovery_zeroes_bytes_past_the_log_before_a_header_only_segment() {
    use beaver_io::wal::format::{SegmentHeader, encode_batch};
    use beaver_io::wal::{LogEnd, inspect};
    rt().block_on(async {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let dir = Path::new(DIR);
        disk.create_dir_all(dir).await.unwrap();
        let mut first = Vec::new();
        SegmentHeader {
            salt: 5,
            seq: 1,
            first_lsn: 1,
            prev_chain: 0,
        }
        .encode(&mut first);
        let crc = encode_batch(
            &mut first,
            5,
            0,
            0,
            &[(1, b"a".as_slice()), (2, b"b".as_slice())],
        );
        first.resize(4096, 0);
        first[4000..4010].fill(0xa5); // past the log: never acknowledged
        let mut second = Vec::new();
        SegmentHeader {
            salt: 6,
            seq: 2,
            first_lsn: 3,
            prev_chain: crc,
        }
        .encode(&mut second);
        second.resize(4096, 0);
        for (seq, bytes) in [(1, &first), (2, &second)] {
            let f = disk.create(&dir.join(segment_name(seq))).await.unwrap();
            f.write_at(0, bytes).await.unwrap();
            f.sync_data().await.unwrap();
        }
        disk.sync_dir(dir).await.unwrap();
        match inspect(&disk, dir, 0).await.unwrap().end {
            LogEnd::Torn { path, offset, .. } => {
                assert_eq!((path, offset), (dir.join(segment_name(1)), 1024));
            }
            other => panic!("{other:?}"),
        }
        let (_, got) = recover(&disk, dir, opts(4096, 2), 0).await.unwrap();
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
        let after = inspect(&disk, dir, 0).await.unwrap();
        assert_eq!(after.end, LogEnd::Clean);
        assert_eq!(after.last_lsn, Some(2));
    });
}
