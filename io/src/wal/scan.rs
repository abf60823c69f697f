//! The scan shared by recovery and inspection: reads every segment,
//! follows the checksum chain, looks past its end for valid batches (to
//! learn the highest watermark) and classifies the end as clean, torn or
//! corrupt. It only reads.

use std::path::{Path, PathBuf};

use crate::Planted;
use crate::disk::{Disk, DiskFile, read_whole};
use crate::error::{Error, Result};
use crate::wal::format::{
    BATCH_HEADER_LEN, BatchHeader, BatchProblem, FORMAT_VERSION, HeaderProblem, MAX_SEGMENT_BYTES,
    SECTOR, SEGMENT_HEADER_LEN, SegmentHeader, batch_salt, decode_batch,
};
use crate::wal::inspect::{BatchReport, Inspection, LogEnd, SegmentReport};
use crate::wal::segment::list_segments;
#[cfg(feature = "mutants")]
use beaver_planted::Mutant::*;

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
/// `planted`: the planted bug recovery runs with (none for inspection).
pub(crate) async fn scan<D: Disk>(
    disk: &D,
    dir: &Path,
    after_lsn: u64,
    keep_batches: bool,
    planted: Planted,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<ScanOutcome> {
    let files = list_segments(disk, dir).await?;
    let mut scanner = Scanner::new(after_lsn, keep_batches, planted, files.len());
    let mut buf: Vec<u8> = Vec::new();
    for (i, (seq, path)) in files.iter().enumerate() {
        let size;
        (size, buf) = load(disk, path, std::mem::take(&mut buf)).await?;
        scanner.segment(i, *seq, path, &buf, size, &mut each)?;
    }
    Ok(scanner.finish(files))
}

/// Reads a whole segment file into `buf` (reused); refuses one longer than
/// any segment.
async fn load<D: Disk>(disk: &D, path: &Path, buf: Vec<u8>) -> Result<(u64, Vec<u8>)> {
    let file = disk.open(path).await?;
    let size = file.size().await?;
    if size > MAX_SEGMENT_BYTES {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: MAX_SEGMENT_BYTES,
            detail: format!(
                "the segment is {size} bytes, more than any WAL segment ({MAX_SEGMENT_BYTES} at most): it is damaged or not beaver's; move it out of the WAL directory only if its records are not needed"
            ),
        });
    }
    Ok((size, read_whole(&file, size, buf).await?))
}

/// What the scan has learned so far, segment by segment.
struct Scanner {
    after_lsn: u64,
    /// The planted bug recovery runs with (read only by its hooks).
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    planted: Planted,
    keep_batches: bool,
    segments: Vec<SegmentReport>,
    chain: Vec<ChainSegment>,
    /// (lsn, crc) of the last valid batch of the log.
    last: Option<(u64, u32)>,
    first_lsn: Option<u64>,
    /// Where the log breaks for good.
    brk: Option<Break>,
    /// A batch-level stop inside a chained segment: the end of the log, unless
    /// the next segment continues the chain (the writer rotated).
    soft: Option<Break>,
    /// The previous segment's stop, while the segment being read has shown
    /// no batch.
    carried: Option<Break>,
    watermark: u64,
    watermark_at: Option<(PathBuf, u64)>,
    /// Each segment's length up to its last non-zero byte.
    sizes: Vec<u64>,
    /// Byte ranges of the log and the last LSN in each.
    unvouched: Vec<(ZeroRange, u64)>,
}

impl Scanner {
    fn new(after_lsn: u64, keep_batches: bool, planted: Planted, files: usize) -> Scanner {
        Scanner {
            after_lsn,
            planted,
            keep_batches,
            segments: Vec::with_capacity(files),
            chain: Vec::new(),
            last: None,
            first_lsn: None,
            brk: None,
            soft: None,
            carried: None,
            watermark: 0,
            watermark_at: None,
            sizes: Vec::with_capacity(files),
            unvouched: Vec::new(),
        }
    }

    /// Takes in segment `i` (`buf`, `size` bytes long).
    fn segment(
        &mut self,
        i: usize,
        seq: u64,
        path: &Path,
        buf: &[u8],
        size: u64,
        each: &mut impl FnMut(u64, &[u8]),
    ) -> Result<()> {
        self.sizes.push(nonzero_end(buf));
        let header = SegmentHeader::decode(buf);
        if let Err(HeaderProblem::Version(found)) = header {
            // A newer beaver wrote it: reading on would treat its records
            // as a torn tail and zero them.
            return Err(Error::Version {
                path: path.to_path_buf(),
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
        let never_used = self.sizes[i] == 0;
        let mut rep = SegmentReport {
            path: path.to_path_buf(),
            seq,
            size,
            header_first_lsn: header.as_ref().ok().map(|h| h.first_lsn),
            header_problem: header.as_ref().err().map(|p| p.to_string()),
            batches: Vec::new(),
        };
        let mut found: Vec<BatchReport> = Vec::new();
        self.carried = None;
        if self.brk.is_none() && !never_used {
            self.check_chain(i, seq, path, &header);
        }
        if self.brk.is_some() {
            // With its header invalid, the segment's batches are still
            // looked for (each carries its salt under its own checksum):
            // a later one's watermark tells a damaged header of an
            // acknowledged segment from a torn first write.
            let salt = header.as_ref().ok().map(|h| h.salt);
            sweep(buf, salt, SEGMENT_HEADER_LEN, &mut found);
        } else if let Ok(h) = header {
            self.follow_chain(i, seq, path, buf, size, h, &mut found, each)?;
        }
        // Valid batches past the end of the log still vouch for LSNs.
        for b in found.iter().filter(|b| !b.in_log) {
            self.vouched(b.watermark, path, b.offset);
        }
        if self.keep_batches {
            rep.batches = found;
        }
        self.segments.push(rep);
        Ok(())
    }

    /// Whether segment `i`'s header continues the chain; if not, the log
    /// breaks here, or where the previous segment stopped.
    fn check_chain(
        &mut self,
        i: usize,
        seq: u64,
        path: &Path,
        header: &std::result::Result<SegmentHeader, HeaderProblem>,
    ) {
        let continues = match (header, self.last) {
            (Ok(h), _) if h.seq != seq => Err("header names another sequence number".into()),
            // The first segment of the log must reach back to the
            // snapshot. One that starts later follows records that are not
            // on the disk: never made durable (a power loss kept a later
            // segment's pages but not an earlier one's), unless a watermark
            // vouches for them (decided where the end is classified).
            (Ok(h), None) if h.first_lsn > self.after_lsn.saturating_add(1) => Err(format!(
                "the log starts at LSN {} but the snapshot covers only up to LSN {}: the records between are not on the disk",
                h.first_lsn, self.after_lsn
            )),
            (Ok(_), None) => Ok(()),
            (Ok(h), Some((lsn, crc))) if h.first_lsn == lsn + 1 && h.prev_chain == crc => Ok(()),
            (Ok(_), Some(_)) => Err("segment header does not continue the chain".to_string()),
            (Err(p), _) => Err(format!("segment header invalid: {p}")),
        };
        let why = match continues {
            Ok(()) => {
                self.carried = self.soft.take();
                return;
            }
            Err(why) => why,
        };
        let here = |why| Break {
            seg: i,
            path: path.to_path_buf(),
            offset: 0,
            bad_at: 0,
            reason: why,
        };
        self.brk = Some(match self.soft.take() {
            // The previous segment ended cleanly (only zeros after its
            // last batch): the problem is this segment.
            Some(s) if self.sizes[s.seg] <= s.offset => here(why),
            Some(mut s) => {
                s.reason = format!("{}; next segment {}: {why}", s.reason, path.display());
                s
            }
            None => here(why),
        });
    }

    /// Follows the chain of batches through segment `i`, whose header `h`
    /// continues the log, up to its first invalid batch; then looks past it.
    #[allow(clippy::too_many_arguments)] // one segment's whole context
    fn follow_chain(
        &mut self,
        i: usize,
        seq: u64,
        path: &Path,
        buf: &[u8],
        size: u64,
        h: SegmentHeader,
        found: &mut Vec<BatchReport>,
        each: &mut impl FnMut(u64, &[u8]),
    ) -> Result<()> {
        let mut off = SEGMENT_HEADER_LEN;
        let mut seg_last = None;
        loop {
            let expect = match self.last {
                Some((l, c)) => (l + 1, c),
                None => (h.first_lsn, h.prev_chain),
            };
            // A file cut short inside the padding of its last batch
            // leaves nothing here: the log ends.
            let at = buf.get(off as usize..).unwrap_or_default();
            match decode_batch(at, h.salt, Some(expect), self.replay_after(), &mut *each) {
                Ok(b) => {
                    self.in_log(path, off, &b, found);
                    seg_last = Some(b.last_lsn);
                    off += b.framed_len();
                }
                Err(problem) => {
                    self.planted_refuses_cut(&problem, path, size, off)?;
                    let reason = match problem {
                        BatchProblem::CutShort => cut_short(size, off),
                        r => r.to_string(),
                    };
                    self.soft = Some(self.stop(i, path, seg_last.is_none(), off, reason));
                    break;
                }
            }
        }
        if seg_last.is_some() {
            self.chain.push(ChainSegment {
                seq,
                path: path.to_path_buf(),
                header: h,
                last_lsn: seg_last,
                end_offset: off,
                size,
            });
        }
        sweep(buf, Some(h.salt), off, found);
        Ok(())
    }

    /// Records above this LSN are handed out: the snapshot's LSN, or with
    /// the planted bug `non-idempotent-replay`, 0 (the whole log again).
    fn replay_after(&self) -> u64 {
        #[cfg(feature = "mutants")]
        if self.planted.is(NonIdempotentReplay) {
            return 0;
        }
        self.after_lsn
    }

    /// The planted bug `trust-preallocated-length`: any segment cut inside
    /// a batch is refused as corrupt. Nothing without it.
    fn planted_refuses_cut(
        &self,
        _problem: &BatchProblem,
        _path: &Path,
        _size: u64,
        _off: u64,
    ) -> Result<()> {
        #[cfg(feature = "mutants")]
        if matches!(_problem, BatchProblem::CutShort) && self.planted.is(TrustPreallocatedLength) {
            return Err(Error::Corruption {
                path: _path.to_path_buf(),
                offset: _off,
                detail: cut_short(_size, _off),
            });
        }
        Ok(())
    }

    /// The highest watermark found, or with the planted bug
    /// `truncate-vouched-corruption`, 0 (so corruption reads as torn).
    fn vouched_watermark(&self) -> u64 {
        #[cfg(feature = "mutants")]
        if self.planted.is(TruncateVouchedCorruption) {
            return 0;
        }
        self.watermark
    }

    /// Where the log stops at the invalid batch at `off` of segment `i`
    /// (`no_batch`: the segment showed none before it).
    fn stop(&mut self, i: usize, path: &Path, no_batch: bool, off: u64, why: String) -> Break {
        match self.carried.take() {
            // A header and no batch, after a segment with bytes past its
            // last batch: the window starts there, so that recovery zeroes
            // those bytes too.
            Some(mut s) if no_batch && self.sizes[s.seg] > s.offset => {
                s.reason = format!("{}; next segment {}: {why}", s.reason, path.display());
                s
            }
            // A header whose first batch is invalid is part of the torn
            // window too (header and first batch are written together).
            _ => Break {
                seg: i,
                path: path.to_path_buf(),
                offset: if no_batch { 0 } else { off },
                bad_at: off,
                reason: why,
            },
        }
    }

    /// Takes in a valid batch of the log at `off`.
    fn in_log(&mut self, path: &Path, off: u64, b: &BatchHeader, found: &mut Vec<BatchReport>) {
        found.push(BatchReport {
            offset: off,
            len: b.framed_len(),
            first_lsn: b.first_lsn,
            last_lsn: b.last_lsn,
            watermark: b.watermark,
            in_log: true,
        });
        self.vouched(b.watermark, path, off);
        self.first_lsn.get_or_insert(b.first_lsn);
        if b.last_lsn > self.watermark {
            // The segment header went out with the first batch.
            let start = if off == SEGMENT_HEADER_LEN { 0 } else { off };
            self.unvouched.push((
                ZeroRange {
                    path: path.to_path_buf(),
                    start,
                    end: off + b.framed_len(),
                },
                b.last_lsn,
            ));
        }
        self.last = Some((b.last_lsn, b.crc));
    }

    /// A valid batch at `offset` of `path` carries `watermark`.
    fn vouched(&mut self, watermark: u64, path: &Path, offset: u64) {
        if watermark >= self.watermark {
            self.watermark = watermark;
            self.watermark_at = Some((path.to_path_buf(), offset));
        }
    }

    /// Classifies the end of the log and lists what recovery must zero and
    /// rewrite.
    fn finish(mut self, files: Vec<(u64, PathBuf)>) -> ScanOutcome {
        let brk = self.brk.take().or_else(|| self.soft.take());
        let last_lsn = self.last.map(|(l, _)| l);
        let (mut torn, mut torn_bytes) = match &brk {
            None => (Vec::new(), 0),
            Some(b) => torn_window(&files, &self.sizes, b),
        };
        let end = match &brk {
            None => LogEnd::Clean,
            Some(b) => self.end_at(b, last_lsn, torn_bytes),
        };
        if !matches!(end, LogEnd::Torn { .. }) {
            torn.clear();
            torn_bytes = 0;
        }
        let watermark = self.watermark;
        self.unvouched.retain(|(_, l)| *l > watermark);
        ScanOutcome {
            unvouched: self.unvouched.into_iter().map(|(r, _)| r).collect(),
            report: Inspection {
                segments: self.segments,
                first_lsn: self.first_lsn,
                last_lsn,
                watermark,
                end,
            },
            chain: self.chain,
            files,
            last_crc: self.last.map_or(0, |(_, c)| c),
            torn,
            torn_bytes,
        }
    }

    /// How a log that breaks at `b` ends: corrupt if a watermark vouches
    /// for LSNs beyond its valid end, else torn (or clean: only zeros).
    fn end_at(&self, b: &Break, last_lsn: Option<u64>, torn_bytes: u64) -> LogEnd {
        let watermark = self.vouched_watermark();
        // What the snapshot holds is part of the valid state too.
        let valid_end = last_lsn.unwrap_or(0).max(self.after_lsn);
        if watermark > valid_end {
            let (wp, wo) = self
                .watermark_at
                .clone()
                .unwrap_or_else(|| (b.path.clone(), b.offset));
            LogEnd::Corrupt {
                path: b.path.clone(),
                offset: b.bad_at,
                detail: format!(
                    "{}; the valid log ends at LSN {valid_end} but LSNs up to {watermark} were acknowledged (watermark of the batch at {} offset {wo})",
                    b.reason,
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
}

/// A file cut inside a batch: once a segment's length is not durable (an
/// fsync EIO may leave its preallocation in the page cache only), a power
/// loss can shorten it anywhere past its last synced byte. Beyond the
/// watermark that is a torn write like any other; a cut inside vouched
/// bytes is corruption (decided where the end is classified).
fn cut_short(size: u64, off: u64) -> String {
    format!("the file ends at byte {size}, inside the batch at offset {off}: it was cut short")
}

/// The torn window of a log that breaks at `b`: the non-zero bytes from
/// there to the end of the last segment, and their count.
fn torn_window(files: &[(u64, PathBuf)], sizes: &[u64], b: &Break) -> (Vec<ZeroRange>, u64) {
    let mut torn = Vec::new();
    let mut torn_bytes = 0u64;
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
    (torn, torn_bytes)
}

#[cfg(test)]
mod tests {
    use super::nonzero_end;

    /// Whole zero blocks are skipped by a fold of each block: it must see
    /// any non-zero byte, the block's first too (mutation testing found
    /// both unchecked).
    #[test]
    fn nonzero_end_finds_the_last_non_zero_byte_in_any_block() {
        const BLOCK: usize = 4096;
        let mut b = vec![0u8; 3 * BLOCK];
        assert_eq!(nonzero_end(&b), 0);
        // Two equal bytes: their XOR is zero, their OR is not.
        b[2 * BLOCK + 10] = 1;
        b[2 * BLOCK + 20] = 1;
        assert_eq!(nonzero_end(&b), (2 * BLOCK + 21) as u64);
        let mut one_block = vec![0u8; BLOCK];
        one_block[0] = 9;
        assert_eq!(nonzero_end(&one_block), 1);
        let mut short = vec![0u8; 100];
        short[41] = 3;
        assert_eq!(nonzero_end(&short), 42);
    }
}
