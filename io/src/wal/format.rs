//! The WAL's on-disk framing: segment header, batch header, records.
//!
//! ```text
//! segment = header sector (512 bytes) | batch | batch | ... | zeros
//! header  = magic "BVRWALSG" | version u32 | reserved u32 | salt u64 | seq u64
//!         | first_lsn u64 | prev_chain u32 | crc32(bytes 0..44) u32 | zeros
//! batch   = batch header (64) | records | zero padding to a 512-byte boundary
//! bheader = magic "BVRB" | header_crc u32 (bytes 8..64) | salt u64 | first_lsn u64
//!         | last_lsn u64 | watermark u64 | body_len u32 | count u32
//!         | body_crc u32 | prev_crc u32 | reserved u64
//! record  = lsn u64 | len u32 | type u8 | crc32(lsn, len, type, body) u32 | body
//! ```
//! All integers little-endian. A batch is sector-aligned and padded, so a
//! write never rewrites a sector holding an earlier (possibly acknowledged)
//! batch: a torn write can only damage the batch being written.
//!
//! `header_crc` covers `body_crc`, so it checks header and body together;
//! `prev_crc` is the previous batch's `header_crc` (the chain, across
//! segments too). A length is used only after the header checksum has
//! verified it, and is bounded by the bytes left in the file.

use crate::le::{u32_at, u64_at};

/// Sector size: batches start on and are padded to this boundary.
pub const SECTOR: u64 = 512;
/// Bytes reserved for the segment header (one sector).
pub const SEGMENT_HEADER_LEN: u64 = SECTOR;
/// Bytes of a batch header.
pub const BATCH_HEADER_LEN: usize = 64;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 17;
/// The WAL format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The record type of an application record (the only one so far).
pub const RECORD_TYPE_DATA: u8 = 1;
/// The largest segment file there can be: `segment_bytes` may not be set
/// above it, and a longer file in the WAL directory is not a segment.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The LSNs a log may hold end below this, so that "the next LSN" always
/// exists; a header naming one above is damaged.
pub const MAX_LSN: u64 = u64::MAX / 2;

const SEGMENT_MAGIC: &[u8; 8] = b"BVRWALSG";
const BATCH_MAGIC: &[u8; 4] = b"BVRB";
const SEGMENT_FIXED_LEN: usize = 48;

/// The salt a batch header at the start of `b` names (unverified; 0 if
/// `b` is too short to hold one).
pub fn batch_salt(b: &[u8]) -> u64 {
    b.get(8..16).map_or(0, |s| u64_at(s, 0))
}

/// The smallest segment a WAL accepts.
pub const MIN_SEGMENT_BYTES: u64 = 8 * SEGMENT_HEADER_LEN;

/// Why a WAL cannot use segments of `segment_bytes`, if it cannot (the
/// size is outside `MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES`).
pub fn segment_bytes_problem(segment_bytes: u64) -> Option<String> {
    (!(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes)).then(|| {
        format!(
            "segment_bytes is {segment_bytes}: give a WAL segment size from {MIN_SEGMENT_BYTES} to {MAX_SEGMENT_BYTES} bytes"
        )
    })
}

/// The largest record (its encoded body) that a segment of `segment_bytes`
/// can hold; a batch carrying a longer one is refused as too large.
pub const fn record_bytes_max(segment_bytes: u64) -> u64 {
    let room = segment_bytes.saturating_sub(SEGMENT_HEADER_LEN) / SECTOR * SECTOR;
    room.saturating_sub((BATCH_HEADER_LEN + RECORD_HEADER_LEN) as u64)
}

/// Rounds up to the next sector boundary.
pub fn pad_to_sector(n: u64) -> u64 {
    n.div_ceil(SECTOR) * SECTOR
}

/// The bytes a batch of records with these body lengths takes on disk.
pub fn framed_batch_len(body_lens: impl IntoIterator<Item = usize>) -> u64 {
    let body: u64 = body_lens
        .into_iter()
        .map(|l| (RECORD_HEADER_LEN + l) as u64)
        .sum();
    pad_to_sector(BATCH_HEADER_LEN as u64 + body)
}

/// Why [`decode_batch`] refused a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchProblem {
    /// The batch's verified header says it is longer than the rest of the
    /// file: the file was cut short. A torn write does not shorten a
    /// segment whose length is durable, but an fsync EIO can leave the
    /// preallocated length in the page cache only, so a cut past the
    /// watermark is a torn tail and a cut inside vouched bytes corruption.
    CutShort,
    /// Anything else: zeros, torn, corrupt, stale or foreign bytes.
    Invalid(&'static str),
}

impl std::fmt::Display for BatchProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchProblem::CutShort => f.write_str("batch length runs past the end of the file"),
            BatchProblem::Invalid(why) => f.write_str(why),
        }
    }
}

/// A decoded, checksum-verified segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's random salt: every batch in it carries the same.
    pub salt: u64,
    /// The segment's sequence number (also in its file name).
    pub seq: u64,
    /// The LSN of the segment's first record.
    pub first_lsn: u64,
    /// The `header_crc` of the last batch before this segment (0 if none).
    pub prev_chain: u32,
}

/// Why a segment header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// All zeros: a preallocated segment never written.
    Blank,
    /// Anything else: torn, corrupt or foreign.
    Invalid(&'static str),
    /// A valid header of a newer format.
    Version(u32),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Blank => f.write_str("blank"),
            HeaderProblem::Invalid(why) => f.write_str(why),
            HeaderProblem::Version(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

impl SegmentHeader {
    /// Appends the 512-byte encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.salt.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_lsn.to_le_bytes());
        out.extend_from_slice(&self.prev_chain.to_le_bytes());
        let crc = crc32fast::hash(&out[start..start + 44]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(start + SEGMENT_HEADER_LEN as usize, 0);
    }

    /// Decodes and verifies a header from the start of `b`.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        let Some(h) = b.get(..SEGMENT_FIXED_LEN) else {
            return if b.iter().all(|&x| x == 0) {
                Err(HeaderProblem::Blank)
            } else {
                Err(HeaderProblem::Invalid("file shorter than a segment header"))
            };
        };
        if &h[..8] != SEGMENT_MAGIC {
            return if h.iter().all(|&x| x == 0) {
                Err(HeaderProblem::Blank)
            } else {
                Err(HeaderProblem::Invalid("bad segment magic"))
            };
        }
        if crc32fast::hash(&h[..44]) != u32_at(h, 44) {
            return Err(HeaderProblem::Invalid("segment header checksum mismatch"));
        }
        let version = u32_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        let first_lsn = u64_at(h, 32);
        if first_lsn > MAX_LSN {
            return Err(HeaderProblem::Invalid(
                "segment header names an impossible LSN",
            ));
        }
        Ok(SegmentHeader {
            salt: u64_at(h, 16),
            seq: u64_at(h, 24),
            first_lsn,
            prev_chain: u32_at(h, 40),
        })
    }
}

/// A decoded, fully verified batch (header, body and every record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// LSN of the first record.
    pub first_lsn: u64,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// Highest LSN known durable when the batch was written.
    pub watermark: u64,
    /// Bytes of records after the header.
    pub body_len: u32,
    /// Number of records.
    pub count: u32,
    /// The checksum of header and body; the next batch's `prev_crc`.
    pub crc: u32,
    /// The previous batch's `crc`.
    pub prev_crc: u32,
}

impl BatchHeader {
    /// Bytes the batch takes on disk, padding included.
    pub fn framed_len(&self) -> u64 {
        pad_to_sector(BATCH_HEADER_LEN as u64 + u64::from(self.body_len))
    }
}

/// Encodes one batch into `out` (header, records, padding) and returns its crc.
///
/// `records` must be non-empty with dense LSNs; the caller checks.
pub fn encode_batch(
    out: &mut Vec<u8>,
    salt: u64,
    prev_crc: u32,
    watermark: u64,
    records: &[(u64, &[u8])],
) -> u32 {
    let start = out.len();
    out.resize(start + BATCH_HEADER_LEN, 0);
    let body_start = out.len();
    for (lsn, body) in records {
        let rec_start = out.len();
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.push(RECORD_TYPE_DATA);
        let mut h = crc32fast::Hasher::new();
        h.update(&out[rec_start..rec_start + 13]);
        h.update(body);
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(body);
    }
    let body_len = (out.len() - body_start) as u32;
    let body_crc = crc32fast::hash(&out[body_start..]);
    let first = records.first().map_or(0, |r| r.0);
    let last = records.last().map_or(0, |r| r.0);
    {
        let h = &mut out[start..body_start];
        h[..4].copy_from_slice(BATCH_MAGIC);
        h[8..16].copy_from_slice(&salt.to_le_bytes());
        h[16..24].copy_from_slice(&first.to_le_bytes());
        h[24..32].copy_from_slice(&last.to_le_bytes());
        h[32..40].copy_from_slice(&watermark.to_le_bytes());
        h[40..44].copy_from_slice(&body_len.to_le_bytes());
        h[44..48].copy_from_slice(&(records.len() as u32).to_le_bytes());
        h[48..52].copy_from_slice(&body_crc.to_le_bytes());
        h[52..56].copy_from_slice(&prev_crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start + 8..body_start]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let padded = start + pad_to_sector((out.len() - start) as u64) as usize;
    out.resize(padded, 0);
    crc
}

/// Decodes the batch at the start of `b` (the rest of the segment from the
/// batch's offset), verifying everything, and calls `each(lsn, body)` for
/// every record with an LSN above `after_lsn` only once the whole batch has
/// verified. With `chain = Some((first_lsn, prev_crc))` the batch must also
/// continue the chain there. Returns why it is invalid otherwise.
pub fn decode_batch(
    b: &[u8],
    salt: u64,
    chain: Option<(u64, u32)>,
    after_lsn: u64,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<BatchHeader, BatchProblem> {
    let Some(h) = b.get(..BATCH_HEADER_LEN) else {
        return Err(BatchProblem::Invalid("no room for a batch header"));
    };
    if &h[..4] != BATCH_MAGIC {
        return Err(BatchProblem::Invalid(if h.iter().all(|&x| x == 0) {
            "zeros"
        } else {
            "bad batch magic"
        }));
    }
    if crc32fast::hash(&h[8..]) != u32_at(h, 4) {
        return Err(BatchProblem::Invalid("batch header checksum mismatch"));
    }
    // The header is now trusted, but its length still only up to the file's end.
    if u64_at(h, 8) != salt {
        return Err(BatchProblem::Invalid(
            "batch salt differs from the segment's (stale bytes)",
        ));
    }
    let hdr = BatchHeader {
        first_lsn: u64_at(h, 16),
        last_lsn: u64_at(h, 24),
        watermark: u64_at(h, 32),
        body_len: u32_at(h, 40),
        count: u32_at(h, 44),
        crc: u32_at(h, 4),
        prev_crc: u32_at(h, 52),
    };
    if let Some((first, prev)) = chain {
        if hdr.first_lsn != first || hdr.prev_crc != prev {
            return Err(BatchProblem::Invalid("batch does not continue the chain"));
        }
    }
    let body_crc = u32_at(h, 48);
    if hdr.count == 0
        || hdr.last_lsn > MAX_LSN
        || hdr.watermark > MAX_LSN
        || hdr.last_lsn < hdr.first_lsn
        || hdr.last_lsn - hdr.first_lsn != u64::from(hdr.count) - 1
    {
        return Err(BatchProblem::Invalid(
            "batch LSN range does not match its record count",
        ));
    }
    let body_end = BATCH_HEADER_LEN + hdr.body_len as usize;
    let Some(body) = b.get(BATCH_HEADER_LEN..body_end) else {
        return Err(BatchProblem::CutShort);
    };
    if crc32fast::hash(body) != body_crc {
        return Err(BatchProblem::Invalid("batch body checksum mismatch"));
    }
    // Two passes over the records: verify all, then hand them out, so a
    // caller never sees a record of a batch that turns out invalid.
    for pass in 0..2 {
        let mut at = 0usize;
        let mut lsn = hdr.first_lsn;
        while at < body.len() {
            let Some(rh) = body.get(at..at + RECORD_HEADER_LEN) else {
                return Err(BatchProblem::Invalid("record header runs past the batch"));
            };
            let len = u32_at(rh, 8) as usize;
            let Some(data) = body.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len) else {
                return Err(BatchProblem::Invalid("record length runs past the batch"));
            };
            if pass == 0 {
                if u64_at(rh, 0) != lsn || lsn > hdr.last_lsn {
                    return Err(BatchProblem::Invalid("record LSN out of sequence"));
                }
                if rh[12] != RECORD_TYPE_DATA {
                    return Err(BatchProblem::Invalid("unknown record type"));
                }
                let mut c = crc32fast::Hasher::new();
                c.update(&rh[..13]);
                c.update(data);
                if c.finalize() != u32_at(rh, 13) {
                    return Err(BatchProblem::Invalid("record checksum mismatch"));
                }
            } else if lsn > after_lsn {
                each(lsn, data);
            }
            at += RECORD_HEADER_LEN + len;
            lsn += 1;
        }
        if pass == 0 && lsn != hdr.last_lsn + 1 {
            return Err(BatchProblem::Invalid(
                "batch holds fewer records than its header says",
            ));
        }
    }
    Ok(hdr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_record_bytes_max_fits_a_segment_and_one_byte_more_does_not() {
        for segment in [MIN_SEGMENT_BYTES, 4_097, 5_000, 64 << 10, MAX_SEGMENT_BYTES] {
            let max = record_bytes_max(segment);
            let room = segment - SEGMENT_HEADER_LEN;
            assert!(framed_batch_len([max as usize]) <= room, "{segment}");
            assert!(framed_batch_len([max as usize + 1]) > room, "{segment}");
        }
    }

    #[test]
    fn batch_round_trip() {
        let mut out = Vec::new();
        let recs: Vec<(u64, &[u8])> = vec![(5, b"hello"), (6, b""), (7, b"world!")];
        let crc = encode_batch(&mut out, 42, 9, 3, &recs);
        assert_eq!(out.len() as u64 % SECTOR, 0);
        assert_eq!(out.len() as u64, framed_batch_len([5, 0, 6]));
        let mut got = Vec::new();
        let h = decode_batch(&out, 42, Some((5, 9)), 5, |l, b| got.push((l, b.to_vec()))).unwrap();
        assert_eq!(h.crc, crc);
        assert_eq!(
            (h.first_lsn, h.last_lsn, h.watermark, h.prev_crc),
            (5, 7, 3, 9)
        );
        assert_eq!(got, vec![(6, vec![]), (7, b"world!".to_vec())]);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut out = Vec::new();
        let recs: Vec<(u64, &[u8])> = vec![(1, b"abc"), (2, b"defgh")];
        encode_batch(&mut out, 7, 0, 0, &recs);
        let used = BATCH_HEADER_LEN + 2 * RECORD_HEADER_LEN + 8;
        for byte in 0..used {
            for bit in 0..8 {
                let mut b = out.clone();
                b[byte] ^= 1 << bit;
                assert!(
                    decode_batch(&b, 7, None, 0, |_, _| panic!("no record of a bad batch"))
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn other_salt_and_zeros_never_decode() {
        let mut out = Vec::new();
        encode_batch(&mut out, 7, 0, 0, &[(1, b"abc")]);
        assert!(decode_batch(&out, 8, None, 0, |_, _| {}).is_err());
        assert!(decode_batch(&out, 7, Some((2, 0)), 0, |_, _| panic!()).is_err());
        assert_eq!(
            decode_batch(&[0u8; 1024], 7, None, 0, |_, _| {}),
            Err(BatchProblem::Invalid("zeros"))
        );
        let mut trunc = out.clone();
        trunc.truncate(70);
        assert_eq!(
            decode_batch(&trunc, 7, None, 0, |_, _| {}),
            Err(BatchProblem::CutShort)
        );
    }

    #[test]
    fn lsns_with_no_next_lsn_never_decode() {
        // Checksums valid, LSNs impossible: a forged or foreign file must
        // not make "the next LSN" overflow.
        let mut out = Vec::new();
        encode_batch(&mut out, 7, 0, 0, &[(u64::MAX, b"x")]);
        assert!(decode_batch(&out, 7, None, 0, |_, _| panic!()).is_err());
        let mut out = Vec::new();
        encode_batch(&mut out, 7, 0, u64::MAX, &[(1, b"x")]);
        assert!(decode_batch(&out, 7, None, 0, |_, _| panic!()).is_err());
        let mut out = Vec::new();
        SegmentHeader {
            salt: 1,
            seq: 1,
            first_lsn: u64::MAX,
            prev_chain: 0,
        }
        .encode(&mut out);
        assert!(matches!(
            SegmentHeader::decode(&out),
            Err(HeaderProblem::Invalid(_))
        ));
    }

    #[test]
    fn segment_header_round_trip() {
        let h = SegmentHeader {
            salt: 1,
            seq: 2,
            first_lsn: 3,
            prev_chain: 4,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out.len() as u64, SEGMENT_HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&out), Ok(h));
        assert_eq!(
            SegmentHeader::decode(&[0u8; 512]),
            Err(HeaderProblem::Blank)
        );
        out[20] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&out),
            Err(HeaderProblem::Invalid(_))
        ));
    }
}
