//! Read-only inspection of a WAL directory (for `beaver status --data-dir`
//! and the simulator): what is there, what validates, where the log ends.
//!
//! Guarantees: inspection never writes, zeroes, syncs or renames anything,
//! and reports corruption instead of hiding it.

use std::path::{Path, PathBuf};

use crate::Planted;
use crate::disk::Disk;
use crate::error::Result;
use crate::wal::scan::scan;

/// One batch found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Byte offset of the batch header in the segment file.
    pub offset: u64,
    /// Bytes on disk, padding included.
    pub len: u64,
    /// LSN of the first record.
    pub first_lsn: u64,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// The durable watermark the batch carries.
    pub watermark: u64,
    /// True if the batch is part of the valid log (the checksum chain from
    /// the start); false for a valid-looking batch beyond the end (torn window).
    pub in_log: bool,
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Its sequence number (from the name).
    pub seq: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The first LSN its header names, if the header validates.
    pub header_first_lsn: Option<u64>,
    /// Why the header does not validate ("blank" for a preallocated segment never used).
    pub header_problem: Option<String>,
    /// Every checksum-valid batch found, in offset order.
    pub batches: Vec<BatchReport>,
}

/// How the log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// The log ends cleanly (zeros after the last batch).
    Clean,
    /// The log ends in a torn window: `bytes` non-zero bytes from `path` at
    /// `offset` on (this segment and later ones) are vouched for by no
    /// watermark: taken for a write a crash cut off (never acknowledged);
    /// recovery discards and zeroes them.
    Torn {
        /// The segment where the window starts.
        path: PathBuf,
        /// Offset of the first invalid batch.
        offset: u64,
        /// Non-zero bytes in the window.
        bytes: u64,
        /// Why the batch at `offset` is invalid.
        reason: String,
    },
    /// Bytes that acknowledged records need do not validate: recovery refuses.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The offset of the invalid bytes.
        offset: u64,
        /// What is wrong and which watermark vouches for the lost LSNs.
        detail: String,
    },
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The segments, by sequence number.
    pub segments: Vec<SegmentReport>,
    /// LSN of the first record in the valid log (None if it is empty).
    pub first_lsn: Option<u64>,
    /// LSN of the last record in the valid log (None if it is empty).
    pub last_lsn: Option<u64>,
    /// The highest watermark of any valid batch: every LSN up to it was acknowledged.
    pub watermark: u64,
    /// How the log ends.
    pub end: LogEnd,
}

/// Reads the WAL in `dir` without changing anything and reports it, as a
/// restart from the snapshot at `after_lsn` (0: none) would find it: a log
/// that does not reach back to `after_lsn + 1` breaks there, and ends
/// [`LogEnd::Corrupt`] (records are missing) if a watermark vouches for an
/// LSN beyond both the valid log and the snapshot, else [`LogEnd::Torn`];
/// segments a snapshot made unnecessary and removed are no gap.
pub async fn inspect<D: Disk>(disk: &D, dir: &Path, after_lsn: u64) -> Result<Inspection> {
    let s = scan(disk, dir, after_lsn, true, Planted::default(), |_, _| {}).await?;
    Ok(s.report)
}

/// Reads, without changing anything, the records of the valid log with
/// LSNs in `after_lsn + 1 ..= upto_lsn`, in order, and returns how many.
///
/// For folding closed parts of a live log into a snapshot: it may run while
/// the log is appended to, as long as `upto_lsn` is durable. Errors if the
/// log does not hold every LSN of the range, valid, in order.
///
/// What lies past `upto_lsn` is not judged. While the log is appended to,
/// a read of its newest segment races with the writes: the kernel copies
/// a read page by page, so the read may see a later batch and miss an
/// earlier one, which a scan of the whole log takes for acknowledged
/// records gone missing. Every record of the range was durable before the
/// read began, so no such race reaches it. `planted`: the planted bug the
/// caller runs with (none outside the simulator).
pub async fn read_records<D: Disk>(
    disk: &D,
    dir: &Path,
    after_lsn: u64,
    upto_lsn: u64,
    planted: Planted,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<u64> {
    let mut next = after_lsn + 1;
    let s = scan(
        disk,
        dir,
        after_lsn,
        false,
        Planted::default(),
        |lsn, body| {
            if lsn == next && lsn <= upto_lsn {
                each(lsn, body);
                next += 1;
            }
        },
    )
    .await?;
    let whole = next > upto_lsn && !judges_past_the_range(planted);
    if let (
        false,
        LogEnd::Corrupt {
            path,
            offset,
            detail,
        },
    ) = (whole, s.report.end)
    {
        return Err(crate::Error::Corruption {
            path,
            offset,
            detail,
        });
    }
    if next <= upto_lsn {
        return Err(crate::Error::Usage(format!(
            "the log in {} holds LSNs only up to {} of {}..={upto_lsn}",
            dir.display(),
            next - 1,
            after_lsn + 1
        )));
    }
    Ok(upto_lsn - after_lsn)
}

/// The planted bug `judge-log-past-the-range`: a corrupt end of the log
/// fails the read even past the range it hands out. Always false without it.
fn judges_past_the_range(planted: Planted) -> bool {
    #[cfg(feature = "mutants")]
    return planted.is(beaver_planted::Mutant::JudgeLogPastTheRange);
    #[cfg(not(feature = "mutants"))]
    {
        let _ = planted;
        false
    }
}
