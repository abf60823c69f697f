//! The scan shared by recovery and inspection: reads every segment,
//! follows the checksum chain, looks past its end for valid batches (to
//! learn the highest watermark) and classifies the end as clean, torn or
//! corrupt. It only reads.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskFile, read_whole};
use crate::error::{Error, Result};
use crate::wal::format::{
    BATCH_HEADER_LEN, BatchProblem, FORMAT_VERSION, HeaderProblem, MAX_SEGMENT_BYTES, SECTOR,
    SEGMENT_HEADER_LEN, SegmentHeader, batch_salt, decode_batch,
};
use crate::wal::inspect::{BatchReport, Inspection, LogEnd, SegmentReport};
use crate::wal::segment::list_segments;
#[cfg(feature = "mutants")]
use beaver_core::mutants::{Mutant::*, active as mutant};

/// A segment that holds part of the valid log.
#[derive(Debug, Clone)]
pub(crate) struct ChainSegment {
    pub seq: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// LSN of the last valid record in it (None: header only).
    pub last_lsn: Option<u64>,
    /// Where the next batch would go.
    pub end_offset: u64,
    /// The file's length.
    pub size: u64,
}

/// A byte range to zero (the torn window).
#[derive(Debug, Clone)]
pub(crate) struct ZeroRange {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

pub(crate) struct ScanOutcome {
    pub report: Inspection,
    /// Byte ranges of the valid log not vouched for by the watermark: they
    /// may sit in the page cache only (even as pages an EIO marked clean),
    /// so recovery rewrites them before syncing.
    pub unvouched: Vec<ZeroRange>,
    pub chain: Vec<ChainSegment>,
    /// Every segment file and whether it is part of the chain.
    pub files: Vec<(u64, PathBuf)>,
    pub last_crc: u32,
    pub torn: Vec<ZeroRange>,
    pub torn_bytes: u64,
}

struct Break {
    seg: usize,
    path: PathBuf,
    /// Where the torn window would start (0 when the segment's header
    /// went out with the invalid batch).
    offset: u64,
    /// Where the invalid bytes are.
    bad_at: u64,
    reason: String,
}

/// Offset one past the last non-zero byte.
fn nonzero_end(buf: &[u8]) -> u64 {
    // Whole zero blocks are skipped with an OR-reduction the compiler
    // vectorises: a preallocated segment is mostly zeros.
    const BLOCK: usize = 4096;
    let mut end = buf.len();
    while end >= BLOCK && buf[end - BLOCK..end].iter().fold(0u8, |a, &b| a | b) == 0 {
        end -= BLOCK;
    }
    buf[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p as u64 + 1)
}

/// Looks for valid batches at sector boundaries from `from` on: of `salt`,
/// or of any salt (each batch's own) when the segment's is unknown.
fn sweep(buf: &[u8], salt: Option<u64>, from: u64, out: &mut Vec<BatchReport>) {
    let mut at = from.div_ceil(SECTOR) * SECTOR;
    while at + BATCH_HEADER_LEN as u64 <= buf.len() as u64 {
        let rest = &buf[at as usize..];
        if rest[..4].iter().all(|&b| b == 0) {
            at += SECTOR;
            continue;
        }
        let salt = salt.unwrap_or_else(|| batch_salt(rest));
        match decode_batch(rest, salt, None, u64::MAX, |_, _| {}) {
            Ok(h) => {
                out.push(BatchReport {
                    offset: at,
                    len: h.framed_len(),
                    first_lsn: h.first_lsn,
                    last_lsn: h.last_lsn,
                    watermark: h.watermark,
                    in_log: false,
                });
                at += h.framed_len();
            }
            Err(_) => at += SECTOR,
        }
    }
}

/// Scans the WAL in `dir`. Records of the valid log with an LSN above
/// `after_lsn` go to `each` in order, each only after its batch verified.
/// With `keep_batches`, every batch is listed in the report (inspection).
pub(crate) async fn scan<D: Disk>(
    disk: &D,
    dir: &Path,
    after_lsn: u64,
    keep_batches: bool,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<ScanOutcome> {
    let files = list_segments(disk, dir).await?;
    let mut segments = Vec::with_capacity(files.len());
    let mut chain: Vec<ChainSegment> = Vec::new();
    let mut last: Option<(u64, u32)> = None; // (lsn, crc) of the last valid batch
    let mut first_lsn: Option<u64> = None;
    let mut brk: Option<Break> = None;
    // A batch-level stop inside a chained segment: the end of the log, unless
    // the next segment continues the chain (the writer rotated).
    let mut soft: Option<Break> = None;
    let mut watermark = 0u64;
    let mut watermark_at: Option<(PathBuf, u64)> = None;
    let mut sizes = Vec::with_capacity(files.len());
    let mut unvouched: Vec<(ZeroRange, u64)> = Vec::new(); // (range, last LSN)
    let mut buf: Vec<u8> = Vec::new();

    for (i, (seq, path)) in files.iter().enumerate() {
        let file = disk.open(path).await?;
        let size = file.size().await?;
        if size > MAX_SEGMENT_BYTES {
            return Err(Error::Corruption {
                path: path.clone(),
                offset: MAX_SEGMENT_BYTES,
                detail: format!(
                    "the segment is {size} bytes, more than any WAL segment ({MAX_SEGMENT_BYTES} at most): it is damaged or not beaver's; move it out of the WAL directory only if its records are not needed"
                ),
            });
        }
        buf = read_whole(&file, size, std::mem::take(&mut buf)).await?;
        sizes.push(nonzero_end(&buf));
        let header = SegmentHeader::decode(&buf);
        if let Err(HeaderProblem::Version(found)) = header {
            // A newer beaver wrote it: reading on would treat its records
            // as a torn tail and zero them.
            return Err(Error::Version {
                path: path.clone(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        // A segment of nothing but zeros holds no record: a preparation
        // abandoned before use (its removal may not have survived a power
        // loss), possibly numbered below the segments in use. It neither
        // ends nor breaks the chain; a zeroed segment the log needed still
        // breaks it at the next segment, whose header names the previous
        // batch's checksum.
        let never_used = sizes[i] == 0;
        let mut rep = SegmentReport {
            path: path.clone(),
            seq: *seq,
            size,
            header_first_lsn: header.as_ref().ok().map(|h| h.first_lsn),
            header_problem: header.as_ref().err().map(|p| p.to_string()),
            batches: Vec::new(),
        };
        let mut found: Vec<BatchReport> = Vec::new();
        // The previous segment's stop, while this one has shown no batch.
        let mut carried: Option<Break> = None;

        if brk.is_none() && !never_used {
            let continues = match (&header, last) {
                (Ok(h), _) if h.seq != *seq => Err("header names another sequence number".into()),
                (Ok(_), None) => Ok(()),
                (Ok(h), Some((lsn, crc))) if h.first_lsn == lsn + 1 && h.prev_chain == crc => {
                    Ok(())
                }
                (Ok(_), Some(_)) => Err("segment header does not continue the chain".to_string()),
                (Err(p), _) => Err(format!("segment header invalid: {p}")),
            };
            match continues {
                Ok(()) => {
                    carried = soft.take();
                }
                Err(why) => {
                    brk = Some(match soft.take() {
                        // The previous segment ended cleanly (only zeros
                        // after its last batch): the problem is this segment.
                        Some(s) if sizes[s.seg] <= s.offset => Break {
                            seg: i,
                            path: path.clone(),
                            offset: 0,
                            bad_at: 0,
                            reason: why,
                        },
                        Some(mut s) => {
                            s.reason =
                                format!("{}; next segment {}: {why}", s.reason, path.display());
                            s
                        }
                        None => Break {
                            seg: i,
                            path: path.clone(),
                            offset: 0,
                            bad_at: 0,
                            reason: why,
                        },
                    });
                }
            }
        }
        if brk.is_some() {
            // With its header invalid, the segment's batches are still
            // looked for (each carries its salt under its own checksum):
            // a later one's watermark tells a damaged header of an
            // acknowledged segment from a torn first write.
            sweep(
                &buf,
                header.as_ref().ok().map(|h| h.salt),
                SEGMENT_HEADER_LEN,
                &mut found,
            );
        } else if let Ok(h) = header {
            let mut off = SEGMENT_HEADER_LEN;
            let mut seg_last = None;
            loop {
                let expect = match last {
                    Some((l, c)) => (l + 1, c),
                    None => (h.first_lsn, h.prev_chain),
                };
                // A file cut short inside the padding of its last batch
                // leaves nothing here: the log ends.
                let res = decode_batch(
                    buf.get(off as usize..).unwrap_or_default(),
                    h.salt,
                    Some(expect),
                    after_lsn,
                    &mut each,
                );
                let why = match res {
                    Ok(b) => {
                        found.push(BatchReport {
                            offset: off,
                            len: b.framed_len(),
                            first_lsn: b.first_lsn,
                            last_lsn: b.last_lsn,
                            watermark: b.watermark,
                            in_log: true,
                        });
                        if b.watermark >= watermark {
                            watermark = b.watermark;
                            watermark_at = Some((path.clone(), off));
                        }
                        first_lsn.get_or_insert(b.first_lsn);
                        if b.last_lsn > watermark {
                            // The segment header went out with the first batch.
                            let start = if off == SEGMENT_HEADER_LEN { 0 } else { off };
                            unvouched.push((
                                ZeroRange {
                                    path: path.clone(),
                                    start,
                                    end: off + b.framed_len(),
                                },
                                b.last_lsn,
                            ));
                        }
                        last = Some((b.last_lsn, b.crc));
                        seg_last = Some(b.last_lsn);
                        off += b.framed_len();
                        continue;
                    }
                    // A file cut inside a batch: once a segment's length is
                    // not durable (an fsync EIO may leave its preallocation
                    // in the page cache only), a power loss can shorten it
                    // anywhere past its last synced byte. Beyond the
                    // watermark that is a torn write like any other; a cut
                    // inside vouched bytes is corruption (decided below).
                    #[cfg(feature = "mutants")]
                    Err(BatchProblem::CutShort) if mutant(TrustPreallocatedLength) => {
                        return Err(Error::Corruption {
                            path: path.clone(),
                            offset: off,
                            detail: format!(
                                "the file ends at byte {size}, inside the batch at offset {off}: it was cut short"
                            ),
                        });
                    }
                    Err(BatchProblem::CutShort) => format!(
                        "the file ends at byte {size}, inside the batch at offset {off}: it was cut short"
                    ),
                    Err(r) => r.to_string(),
                };
                // A header whose first batch is invalid is part of the torn
                // window too (header and first batch are written together).
                let at = if seg_last.is_none() { 0 } else { off };
                soft = Some(match carried.take() {
                    // A header and no batch, after a segment with bytes
                    // past its last batch: the window starts there, so
                    // that recovery zeroes those bytes too.
                    Some(mut s) if seg_last.is_none() && sizes[s.seg] > s.offset => {
                        s.reason = format!("{}; next segment {}: {why}", s.reason, path.display());
                        s
                    }
                    _ => Break {
                        seg: i,
                        path: path.clone(),
                        offset: at,
                        bad_at: off,
                        reason: why,
                    },
                });
                break;
            }
            if seg_last.is_some() {
                chain.push(ChainSegment {
                    seq: *seq,
                    path: path.clone(),
                    header: h,
                    last_lsn: seg_last,
                    end_offset: off,
                    size,
                });
            }
            sweep(&buf, Some(h.salt), off, &mut found);
        }
        // Valid batches past the end of the log still vouch for LSNs.
        for b in found.iter().filter(|b| !b.in_log) {
            if b.watermark >= watermark {
                watermark = b.watermark;
                watermark_at = Some((path.clone(), b.offset));
            }
        }
        if keep_batches {
            rep.batches = found;
        }
        segments.push(rep);
    }
    if brk.is_none() {
        brk = soft.take();
    }

    let last_lsn = last.map(|(l, _)| l);
    let mut torn = Vec::new();
    let mut torn_bytes = 0u64;
    let mut end = match &brk {
        None => LogEnd::Clean,
        Some(b) => {
            for (j, (_, path)) in files.iter().enumerate().skip(b.seg) {
                let start = if j == b.seg { b.offset } else { 0 };
                if sizes[j] > start {
                    torn_bytes += sizes[j] - start;
                    torn.push(ZeroRange {
                        path: path.clone(),
                        start,
                        end: sizes[j],
                    });
                }
            }
            #[cfg(feature = "mutants")]
            let watermark = if mutant(TruncateVouchedCorruption) {
                0
            } else {
                watermark
            };
            if watermark > last_lsn.unwrap_or(0) {
                let (wp, wo) = watermark_at
                    .clone()
                    .unwrap_or_else(|| (b.path.clone(), b.offset));
                LogEnd::Corrupt {
                    path: b.path.clone(),
                    offset: b.bad_at,
                    detail: format!(
                        "{}; the valid log ends at LSN {} but LSNs up to {watermark} were acknowledged (watermark of the batch at {} offset {wo})",
                        b.reason,
                        last_lsn.unwrap_or(0),
                        wp.display()
                    ),
                }
            } else if torn_bytes == 0 {
                LogEnd::Clean
            } else {
                LogEnd::Torn {
                    path: b.path.clone(),
                    offset: b.offset,
                    bytes: torn_bytes,
                    reason: b.reason.clone(),
                }
            }
        }
    };
    // The valid log must reach back to the snapshot: a gap means lost records.
    if let (Some(first), Some(seg)) = (first_lsn, chain.first()) {
        if first > after_lsn + 1 && !matches!(end, LogEnd::Corrupt { .. }) {
            end = LogEnd::Corrupt {
                path: seg.path.clone(),
                offset: 0,
                detail: format!(
                    "the log starts at LSN {first} but the snapshot covers only up to LSN {after_lsn}: records are missing"
                ),
            };
        }
    }
    if !matches!(end, LogEnd::Torn { .. }) {
        torn.clear();
        torn_bytes = 0;
    }
    unvouched.retain(|(_, l)| *l > watermark);
    Ok(ScanOutcome {
        unvouched: unvouched.into_iter().map(|(r, _)| r).collect(),
        report: Inspection {
            segments,
            first_lsn,
            last_lsn,
            watermark,
            end,
        },
        chain,
        files,
        last_crc: last.map_or(0, |(_, c)| c),
        torn,
        torn_bytes,
    })
}
