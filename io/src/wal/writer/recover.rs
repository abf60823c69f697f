//! [`Wal::open`]: recovery, in the order its guarantees need: read and
//! check the log, discard the torn window, make what was read durable,
//! reopen the segments for appending.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::{Active, Closed, Recovered, Wal, WalOptions};
use crate::Planted;
use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};
use crate::rng::DetRng;
use crate::wal::LogEnd;
use crate::wal::format::{MAX_LSN, segment_bytes_problem};
use crate::wal::rewrite::{self, Piece};
use crate::wal::scan::{self, ScanOutcome};
#[cfg(feature = "mutants")]
use beaver_planted::Mutant::*;

/// A blank segment kept for the next rotation: sequence number, path, file.
type NextSegment<F> = (u64, PathBuf, F);

impl<D: Disk> Wal<D> {
    /// Recovers the WAL in `dir` (creating the directory if needed) and
    /// returns it ready to append.
    ///
    /// Records of the valid log with an LSN above `after_lsn` (the
    /// snapshot's) are passed to `each` in LSN order, without a copy. On
    /// `Err`, discard whatever `each` received. On `Ok`:
    /// - every record `each` received is durable (recovery fdatasyncs every
    ///   segment it read and fsyncs the directory before returning);
    /// - the torn window (everything after the first invalid batch beyond
    ///   the newest watermark) has been discarded, zeroed and logged;
    /// - an invalid byte holding an LSN at or below the newest watermark is
    ///   reported as [`Error::Corruption`] naming file and offset, never skipped.
    pub async fn open(
        disk: D,
        dir: &Path,
        opts: WalOptions,
        after_lsn: u64,
        mut each: impl FnMut(u64, &[u8]),
    ) -> Result<(Wal<D>, Recovered)> {
        check_arguments(&opts, after_lsn)?;
        disk.create_dir_all(dir).await?;
        // A rewrite of the unvouched tail that a crash interrupted is
        // finished first: the log is read as it was meant to be.
        rewrite::finish_interrupted(&disk, dir).await?;
        let mut records = 0u64;
        let scan = scan::scan(&disk, dir, after_lsn, false, opts.planted, |lsn, body| {
            records += 1;
            each(lsn, body)
        })
        .await?;
        let last_lsn = valid_end(&scan, after_lsn)?;
        discard_torn_window(&disk, &scan).await?;
        rewrite_unvouched(&disk, dir, &scan, opts.planted).await?;
        let (mut active, closed) = reopen_chain(&disk, &scan, opts.planted).await?;
        let active_seq = active.as_ref().map(|a| a.seq);
        let (mut next, max_seq) = keep_one_blank(&disk, &scan, active_seq, &opts).await?;
        disk.sync_dir(dir).await?;
        // Blank start: the prepared segment becomes the active one.
        if active.is_none() {
            if let Some((seq, path, file)) = next.take() {
                active = Some(Active::blank(seq, path, file, opts.segment_bytes));
            }
        }
        let next_lsn = last_lsn.max(after_lsn) + 1;
        let mixed = opts.salt_seed ^ u64::from(scan.last_crc).rotate_left(32) ^ next_lsn;
        let info = Recovered {
            last_lsn,
            records,
            torn_bytes: scan.torn_bytes,
            segments: scan.chain.len(),
        };
        debug!(?info, "WAL recovered");
        let wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            opts,
            salts: DetRng::new(mixed),
            active,
            next,
            closed,
            next_seq: max_seq + 1,
            preparing: false,
            next_lsn,
            written_lsn: last_lsn,
            durable_lsn: last_lsn,
            prev_crc: scan.last_crc,
            active_dirty: false,
            rotated_dirty: Vec::new(),
            sync_in_flight: false,
            failed: None,
            buf: Vec::new(),
        };
        Ok((wal, info))
    }
}

fn check_arguments(opts: &WalOptions, after_lsn: u64) -> Result<()> {
    if let Some(why) = segment_bytes_problem(opts.segment_bytes) {
        return Err(Error::Usage(why));
    }
    if after_lsn > MAX_LSN {
        return Err(Error::Usage(format!(
            "the log is needed after LSN {after_lsn}, beyond the largest LSN {MAX_LSN}"
        )));
    }
    Ok(())
}

/// The last LSN of the valid log (0: empty); refuses a corrupt log and one
/// that ends before the snapshot.
fn valid_end(scan: &ScanOutcome, after_lsn: u64) -> Result<u64> {
    if let LogEnd::Corrupt {
        path,
        offset,
        detail,
    } = &scan.report.end
    {
        return Err(Error::Corruption {
            path: path.clone(),
            offset: *offset,
            detail: detail.clone(),
        });
    }
    let last_lsn = scan.report.last_lsn.unwrap_or(0);
    if last_lsn > 0 && after_lsn > last_lsn {
        return Err(Error::Usage(format!(
            "the snapshot covers LSN {after_lsn} but the log ends at LSN {last_lsn}"
        )));
    }
    Ok(last_lsn)
}

/// Discards the torn window: zeroes it so that nothing in it can ever
/// validate later, and makes the zeros durable.
async fn discard_torn_window<D: Disk>(disk: &D, scan: &ScanOutcome) -> Result<()> {
    if scan.torn_bytes == 0 {
        return Ok(());
    }
    if let LogEnd::Torn {
        path,
        offset,
        reason,
        ..
    } = &scan.report.end
    {
        warn!(
            bytes = scan.torn_bytes,
            file = %path.display(),
            offset,
            reason = reason.as_str(),
            "WAL recovery: discarding the torn window of the last crash"
        );
    }
    let zeros = vec![0u8; 1 << 20];
    for r in &scan.torn {
        let f = disk.open(&r.path).await?;
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(zeros.len() as u64);
            f.write_at(at, &zeros[..n as usize]).await?;
            at += n;
        }
        f.sync_data().await?;
    }
    Ok(())
}

/// Makes what was read durable, first the bytes no watermark vouches for:
/// after a process crash the page cache may hold bytes that never reached
/// the disk, some of them in pages that a failed fsync marked clean (a
/// plain fdatasync would skip those). So they are rewritten, then synced.
/// Some of them may be durable already, and a torn in-place write must not
/// lose them: the rewrite goes through a side file.
async fn rewrite_unvouched<D: Disk>(
    disk: &D,
    dir: &Path,
    scan: &ScanOutcome,
    planted: Planted,
) -> Result<()> {
    let unvouched = match skips_recovery_sync(planted) {
        true => &[][..],
        false => &scan.unvouched[..],
    };
    let mut pieces = Vec::with_capacity(unvouched.len());
    for r in unvouched {
        let f = disk.open(&r.path).await?;
        let bytes = f
            .read_at(r.start, vec![0u8; (r.end - r.start) as usize])
            .await?;
        pieces.push(Piece {
            path: r.path.clone(),
            offset: r.start,
            bytes,
        });
    }
    rewrite::rewrite(disk, dir, &pieces).await
}

/// Syncs every segment of the valid log and reopens them: the last as the
/// active segment (its length made durable), the others closed.
async fn reopen_chain<D: Disk>(
    disk: &D,
    scan: &ScanOutcome,
    planted: Planted,
) -> Result<(Option<Active<D::File>>, Vec<Closed>)> {
    let mut active = None;
    let mut closed = Vec::new();
    for (i, seg) in scan.chain.iter().enumerate() {
        let f = disk.open(&seg.path).await?;
        if !skips_recovery_sync(planted) {
            f.sync_data().await?;
        }
        if i + 1 == scan.chain.len() {
            make_length_durable(&f, seg.size, planted).await?;
            active = Some(Active {
                seq: seg.seq,
                path: seg.path.clone(),
                file: f,
                salt: seg.header.salt,
                started: true,
                offset: seg.end_offset,
                end: seg.size,
                first_lsn: seg.header.first_lsn,
                last_lsn: seg.last_lsn,
                // Unknown: filled again from the log's end on.
                filled: 0,
            });
        } else {
            closed.push(Closed {
                seq: seg.seq,
                path: seg.path.clone(),
                last_lsn: seg.last_lsn.unwrap_or(0),
            });
        }
    }
    Ok((active, closed))
}

/// Segments beyond the log are blank (or were just zeroed): keeps the first
/// whole one as the prepared next segment and removes the others, and
/// never-used ones numbered below the active segment. Returns the kept one
/// and the highest sequence number seen. The caller fsyncs the directory.
async fn keep_one_blank<D: Disk>(
    disk: &D,
    scan: &ScanOutcome,
    active_seq: Option<u64>,
    opts: &WalOptions,
) -> Result<(Option<NextSegment<D::File>>, u64)> {
    let mut next = None;
    let mut max_seq = active_seq.unwrap_or(0);
    for (seq, path) in &scan.files {
        max_seq = max_seq.max(*seq);
        if active_seq.is_some_and(|a| *seq <= a) {
            if !scan.chain.iter().any(|c| c.seq == *seq) {
                // A never-used segment numbered below the active one
                // (see scan): rotation must never pick it.
                disk.remove(path).await?;
            }
            continue;
        }
        let f = disk.open(path).await?;
        if next.is_none() && f.size().await? == opts.segment_bytes {
            // Its preparation may have been cut short by the crash
            // before it synced: the length read here may be the page
            // cache's only.
            make_length_durable(&f, opts.segment_bytes, opts.planted).await?;
            next = Some((*seq, path.clone(), f));
        } else {
            disk.remove(path).await?;
        }
    }
    Ok((next, max_seq))
}

/// Makes a recovered segment's length durable. The log's rules assume a
/// segment keeps its preallocated length (appends never extend it), but
/// a length recovery only read may sit in the page cache: a preparation
/// a crash interrupted before its sync, or an fsync EIO that marked the
/// allocation clean without writing it. A power loss would then shorten
/// the file under batches written later. Setting the same length again
/// dirties the inode, and the fsync writes it.
async fn make_length_durable<F: DiskFile>(f: &F, len: u64, planted: Planted) -> Result<()> {
    if trusts_preallocated_length(planted) {
        return Ok(());
    }
    f.set_len(len).await?;
    f.sync_all().await
}

/// The planted bug `serve-before-recovery-sync`: recovery serves what it
/// read without rewriting and syncing it. Always false without it.
fn skips_recovery_sync(planted: Planted) -> bool {
    #[cfg(feature = "mutants")]
    return planted.is(ServeBeforeRecoverySync);
    #[cfg(not(feature = "mutants"))]
    {
        let _ = planted;
        false
    }
}

/// The planted bug `trust-preallocated-length`: a recovered segment's
/// length is not made durable. Always false without it.
fn trusts_preallocated_length(planted: Planted) -> bool {
    #[cfg(feature = "mutants")]
    return planted.is(TrustPreallocatedLength);
    #[cfg(not(feature = "mutants"))]
    {
        let _ = planted;
        false
    }
}
