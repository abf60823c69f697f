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
