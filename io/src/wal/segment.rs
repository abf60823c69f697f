//! Segment files: naming and the segment list of a WAL directory.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::Result;

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

/// The segments of `dir`, as `(seq, path)` sorted by sequence number.
pub(crate) async fn list_segments<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs: Vec<(u64, PathBuf)> = disk
        .list(dir)
        .await?
        .into_iter()
        .filter_map(|n| parse_segment_name(&n).map(|s| (s, dir.join(n))))
        .collect();
    segs.sort();
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(7), "wal-00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("wal-7.seg"), None);
        assert_eq!(parse_segment_name("snap-00000000000000000007.snap"), None);
    }
}
