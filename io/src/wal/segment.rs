//! Segment files: naming and the segment list of a WAL directory.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::{Error, Result};

/// The largest sequence number a segment file may carry. beaver numbers
/// segments from 1 up, one per segment, so a larger number is damaged or
/// foreign; refusing it keeps "the next segment's number" from overflowing
/// (and a wrapped number from sorting before the log).
pub const MAX_SEGMENT_SEQ: u64 = u64::MAX / 2;

/// The file name of segment `seq`: `wal-<seq:020>.seg`.
///
/// Segments are named by sequence number, not first LSN, because a segment
/// is created and preallocated before the LSN it will start at is known.
pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.seg")
}

/// The sequence number in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of `dir`, as `(seq, path)` sorted by sequence number; a
/// segment numbered above [`MAX_SEGMENT_SEQ`] is an error naming it.
pub(crate) async fn list_segments<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs: Vec<(u64, PathBuf)> = disk
        .list(dir)
        .await?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|s| (s, dir.join(n))))
        .collect();
    segs.sort();
    if let Some((seq, path)) = segs.last().filter(|(seq, _)| *seq > MAX_SEGMENT_SEQ) {
        return Err(Error::Corruption {
            path: path.clone(),
            offset: 0,
            detail: format!(
                "the segment's sequence number {seq} is beyond any beaver writes ({MAX_SEGMENT_SEQ} at most): it is damaged or not beaver's; move it out of the WAL directory only if its records are not needed"
            ),
        });
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_disk::{SimDisk, SimDiskConfig};

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(7), "wal-00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("wal-7.seg"), None);
        assert_eq!(parse_segment_name("snap-00000000000000000007.snap"), None);
    }

    use crate::test_runtime::block_on;

    #[test]
    fn segments_are_listed_in_order_up_to_the_largest_sequence_number() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let dir = Path::new("/w");
            disk.create_dir_all(dir)
                .await
                .expect("create the directory");
            for name in [
                segment_name(2),
                segment_name(MAX_SEGMENT_SEQ),
                "x.snap".into(),
                segment_name(1),
            ] {
                disk.create(&dir.join(name)).await.expect("create a file");
            }
            let listed = list_segments(&disk, dir).await.expect("list");
            let seqs: Vec<u64> = listed.iter().map(|(seq, _)| *seq).collect();
            assert_eq!(seqs, [1, 2, MAX_SEGMENT_SEQ]);
            assert_eq!(listed[2].1, dir.join(segment_name(MAX_SEGMENT_SEQ)));
            let beyond = dir.join(segment_name(MAX_SEGMENT_SEQ + 1));
            disk.create(&beyond).await.expect("create a file");
            match list_segments(&disk, dir).await {
                Err(Error::Corruption {
                    path,
                    offset: 0,
                    detail,
                }) => {
                    assert_eq!(path, beyond);
                    assert!(detail.contains("beyond any beaver writes"), "{detail}");
                }
                other => panic!("expected corruption, got {other:?}"),
            }
        });
    }
}
