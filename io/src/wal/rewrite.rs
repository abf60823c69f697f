//! Recovery's rewrite of the log's unvouched tail, safe against a crash in
//! the middle of it.
//!
//! Recovery rewrites, in place, the bytes no watermark vouches for, so that
//! pages a failed fsync marked clean become durable. Some of those bytes
//! may already be durable (a batch acknowledged after its own sync, with no
//! later batch to carry its watermark), and an in-place write interrupted
//! by a power loss can tear a sector that held them. So the bytes first go
//! to a side file in the WAL directory, synced; only then are they written
//! in place and synced; then the side file is removed. A start that finds
//! a complete side file writes its bytes in place again before it reads
//! the log (repairing any torn sector); a side file that does not validate
//! was never complete, so no in-place write had begun: it is removed.

use std::path::{Path, PathBuf};

use tracing::warn;

use crate::disk::{Disk, DiskFile};
use crate::error::Result;
use crate::wal::segment::parse_segment_name;

/// The side file's name in the WAL directory.
pub(crate) const SIDE_FILE: &str = "rewrite.pending";
const MAGIC: &[u8; 8] = b"BVRWRT01";

/// Bytes to write at `offset` of the segment `path` (in the WAL directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub path: PathBuf,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

fn encode(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for p in pieces {
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&(p.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&p.bytes);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The pieces a side file holds, or `None` if it is not complete and valid.
fn decode(dir: &Path, b: &[u8]) -> Option<Vec<Piece>> {
    let (content, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32fast::hash(content) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut rest = content.strip_prefix(MAGIC.as_slice())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let mut pieces = Vec::new();
    for _ in 0..count {
        let name_len = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(name_len)?).ok()?;
        // Only ever a segment of this directory.
        parse_segment_name(name)?;
        let offset = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let len = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
        let bytes = take(len)?.to_vec();
        pieces.push(Piece {
            path: dir.join(name),
            offset,
            bytes,
        });
    }
    Some(pieces)
}

/// Writes every piece in place and syncs each file it touched.
async fn write_in_place<D: Disk>(disk: &D, pieces: &[Piece]) -> Result<()> {
    for p in pieces {
        let f = disk.open(&p.path).await?;
        f.write_at(p.offset, &p.bytes).await?;
        f.sync_data().await?;
    }
    Ok(())
}

async fn side_file_exists<D: Disk>(disk: &D, dir: &Path) -> Result<bool> {
    Ok(disk.list(dir).await?.iter().any(|n| n == SIDE_FILE))
}

/// At start, before the log is read: finishes an interrupted rewrite (or
/// discards a side file that was never complete).
pub(crate) async fn finish_interrupted<D: Disk>(disk: &D, dir: &Path) -> Result<()> {
    if !side_file_exists(disk, dir).await? {
        return Ok(());
    }
    let path = dir.join(SIDE_FILE);
    let f = disk.open(&path).await?;
    let size = f.size().await?;
    let bytes = crate::disk::read_whole(&f, size, Vec::new()).await?;
    match decode(dir, &bytes) {
        Some(pieces) => {
            // Complete as read, but maybe only in the page cache: an fsync
            // EIO marks pages clean without writing them. It must be
            // durable before a byte is written in place, or a power loss
            // in the middle could leave torn segments and a side file that
            // no longer validates.
            f.write_at(0, &bytes).await?;
            f.sync_data().await?;
            warn!(
                pieces = pieces.len(),
                file = %path.display(),
                "WAL recovery: finishing the rewrite of the unvouched tail a crash interrupted"
            );
            // Segments outlive the side file, so all should be there; one
            // that is not has nothing left to repair (and must not stop
            // every start from here on).
            let names = disk.list(dir).await?;
            let (there, gone): (Vec<_>, Vec<_>) = pieces.into_iter().partition(|p| {
                p.path
                    .file_name()
                    .is_some_and(|n| names.iter().any(|m| m.as_str() == n))
            });
            for p in &gone {
                warn!(file = %p.path.display(), "WAL recovery: the rewrite names a segment that is gone; skipped");
            }
            write_in_place(disk, &there).await?;
        }
        None => warn!(
            file = %path.display(),
            "WAL recovery: discarding an incomplete rewrite file (nothing had been rewritten)"
        ),
    }
    disk.remove(&path).await?;
    disk.sync_dir(dir).await
}

/// Rewrites `pieces` in place, durably, through the side file.
pub(crate) async fn rewrite<D: Disk>(disk: &D, dir: &Path, pieces: &[Piece]) -> Result<()> {
    if pieces.is_empty() {
        return Ok(());
    }
    let path = dir.join(SIDE_FILE);
    let side = disk.create(&path).await?;
    side.write_at(0, &encode(pieces)).await?;
    side.sync_data().await?;
    disk.sync_dir(dir).await?;
    write_in_place(disk, pieces).await?;
    disk.remove(&path).await?;
    disk.sync_dir(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimDisk, SimDiskConfig};

    use crate::test_runtime::block_on_paused as block_on;

    /// A segment whose first 1 KiB was torn to zeros by an interrupted
    /// in-place rewrite, and the side file that rewrite had made durable.
    async fn torn_segment(disk: &SimDisk, complete_side_file: bool) -> (PathBuf, Vec<u8>) {
        let dir = Path::new("/w");
        disk.create_dir_all(dir).await.unwrap();
        let seg = dir.join("wal-00000000000000000003.seg");
        let good: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
        let f = disk.create(&seg).await.unwrap();
        f.write_at(0, &good).await.unwrap();
        f.sync_data().await.unwrap();
        let mut side = encode(&[Piece {
            path: seg.clone(),
            offset: 0,
            bytes: good[..1024].to_vec(),
        }]);
        if !complete_side_file {
            side.truncate(side.len() - 3);
        }
        let s = disk.create(&dir.join(SIDE_FILE)).await.unwrap();
        s.write_at(0, &side).await.unwrap();
        s.sync_data().await.unwrap();
        disk.sync_dir(dir).await.unwrap();
        if complete_side_file {
            f.write_at(0, &[0u8; 1024]).await.unwrap();
            f.sync_data().await.unwrap();
        }
        (seg, good)
    }

    async fn contents(disk: &SimDisk, path: &Path) -> Vec<u8> {
        let f = disk.open(path).await.unwrap();
        let n = f.size().await.unwrap() as usize;
        f.read_at(0, vec![0u8; n]).await.unwrap()
    }

    #[test]
    fn a_complete_side_file_repairs_the_torn_bytes_and_goes() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let (seg, good) = torn_segment(&disk, true).await;
            finish_interrupted(&disk, Path::new("/w")).await.unwrap();
            assert_eq!(contents(&disk, &seg).await, good);
            assert_eq!(disk.list(Path::new("/w")).await.unwrap().len(), 1);
            // Durable: a power loss now changes nothing.
            disk.power_loss();
            assert_eq!(contents(&disk, &seg).await, good);
        });
    }

    #[test]
    fn a_side_file_naming_a_removed_segment_does_not_stop_the_start() {
        block_on(async {
            let disk = SimDisk::new(3, SimDiskConfig::default());
            let (seg, _) = torn_segment(&disk, true).await;
            disk.remove(&seg).await.unwrap();
            finish_interrupted(&disk, Path::new("/w")).await.unwrap();
            assert!(disk.list(Path::new("/w")).await.unwrap().is_empty());
        });
    }

    #[test]
    fn an_incomplete_side_file_is_discarded_and_nothing_is_written() {
        block_on(async {
            let disk = SimDisk::new(2, SimDiskConfig::default());
            let (seg, good) = torn_segment(&disk, false).await;
            finish_interrupted(&disk, Path::new("/w")).await.unwrap();
            assert_eq!(contents(&disk, &seg).await, good);
            let names = disk.list(Path::new("/w")).await.unwrap();
            assert_eq!(names, vec!["wal-00000000000000000003.seg".to_string()]);
        });
    }

    /// The side file complete in the page cache but not on the disk (as
    /// an fsync EIO leaves it), the segment intact: a power loss at any
    /// instant of finishing it (an in-place write can tear a sector into
    /// garbage) must leave a start that finds the segment intact.
    #[test]
    fn a_side_file_complete_only_in_the_page_cache_is_made_durable_before_use() {
        let mut interrupted = 0;
        for cut_us in (0..3_000).step_by(25) {
            block_on(async {
                let cfg = SimDiskConfig {
                    write_latency_mean: std::time::Duration::from_micros(100),
                    sync_latency_mean: std::time::Duration::from_micros(400),
                    torn_prefix: true,
                    reorder_sectors: true,
                    garbage_in_torn_sectors: true,
                    ..SimDiskConfig::default()
                };
                let disk = SimDisk::new(cut_us, cfg);
                let dir = Path::new("/w");
                let (seg, good) = torn_segment(&disk, false).await;
                let side = disk.open(&dir.join(SIDE_FILE)).await.unwrap();
                let whole = encode(&[Piece {
                    path: seg.clone(),
                    offset: 0,
                    bytes: good[..1024].to_vec(),
                }]);
                side.write_at(0, &whole).await.unwrap(); // never synced
                let cut = std::time::Duration::from_micros(cut_us);
                let finish = finish_interrupted(&disk, dir);
                if tokio::time::timeout(cut, finish).await.is_err() {
                    interrupted += 1;
                }
                disk.crash_process();
                disk.power_loss();
                finish_interrupted(&disk, dir).await.unwrap();
                let now = contents(&disk, &seg).await;
                assert!(now == good, "cut at {cut_us} µs: the segment was damaged");
            });
        }
        assert!(interrupted > 20, "interrupted only {interrupted} times");
    }

    fn pieces() -> Vec<Piece> {
        vec![
            Piece {
                path: PathBuf::from("/w/wal-00000000000000000003.seg"),
                offset: 512,
                bytes: vec![7; 600],
            },
            Piece {
                path: PathBuf::from("/w/wal-00000000000000000004.seg"),
                offset: 0,
                bytes: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn round_trips_and_refuses_every_truncation_and_flip() {
        let enc = encode(&pieces());
        assert_eq!(decode(Path::new("/w"), &enc), Some(pieces()));
        for cut in 0..enc.len() {
            assert_eq!(decode(Path::new("/w"), &enc[..cut]), None, "cut at {cut}");
        }
        for at in [0, 9, 20, enc.len() / 2, enc.len() - 1] {
            let mut bad = enc.clone();
            bad[at] ^= 0x40;
            assert_eq!(decode(Path::new("/w"), &bad), None, "flip at {at}");
        }
    }
}
