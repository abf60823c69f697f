//! The WAL scan on arbitrary segment files: inspection and recovery.
//!
//! Input layout (so that real segments, concatenated, are a valid input and
//! a mutation after them is "a valid prefix with damage after it"):
//!
//! ```text
//! byte 0     the snapshot LSN the log is read after (0..=255)
//! byte 1     bit 0: recover with `Wal::open` as well (and check it)
//! byte 2..   the segment files: a new file starts at every "BVRWALSG"
//!            (the segment magic); bytes before the first one are a file too;
//!            at most FILES_MAX files (the last one takes the rest)
//! ```
//!
//! A file is named by the sequence number its header names when that is
//! above the previous file's, else by the previous one plus one, so files
//! keep their order and real segments keep their names.
//!
//! Checked, beyond "no panic":
//! - every batch inspection reports (in the log or past its end) passes a
//!   checksum verification written here, apart from the WAL's decoder:
//!   header and body checksums, every record's checksum, dense LSNs, the
//!   count, and the fields reported;
//! - the batches in the log form the chain: dense LSNs, each `prev_crc` the
//!   previous batch's checksum, each batch of its segment's salt;
//! - the reported first and last LSN and watermark are those of the batches;
//! - a log that does not end corrupt holds every LSN its watermark vouches for;
//! - recovery refuses exactly the logs inspection calls corrupt; otherwise it
//!   hands out exactly the verified records above the snapshot LSN, in
//!   order, and leaves a log that inspects clean and recovers the same again.

use std::path::{Path, PathBuf};

use beaver_io::le::{u32_at, u64_at};
use beaver_io::wal::segment::segment_name;
use beaver_io::{Disk, DiskFile};
use beaver_io::{Inspection, LogEnd, MIN_SEGMENT_BYTES, SimDisk, SimDiskConfig, Wal, WalOptions};

use crate::block_on;

const SEGMENT_MAGIC: &[u8; 8] = b"BVRWALSG";
const SECTOR: u64 = 512;
const BATCH_HEADER: usize = 64;
const RECORD_HEADER: usize = 17;

/// The WAL directory on the simulated disk.
pub const WAL_DIR: &str = "/data/wal";

/// The most files an input makes. Recovery's work grows with the square
/// of the file count on the simulated disk (each write checks the space
/// all files use, each removal collects every unnamed file), and the
/// fuzzer, rewarded for new paths, grew inputs of hundreds of files: 40%
/// of a 3,275-input corpus held more than 16 and ran at under 1,000
/// inputs a second. No path of the scan or the recovery needs more files
/// than this.
const FILES_MAX: usize = 32;

/// Splits the files part of an input before every segment magic, into at
/// most [`FILES_MAX`] files.
pub fn split_files(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut files = Vec::new();
    while !rest.is_empty() {
        if files.len() == FILES_MAX - 1 {
            files.push(rest);
            break;
        }
        let next = rest
            .windows(SEGMENT_MAGIC.len())
            .skip(1)
            .position(|w| w == SEGMENT_MAGIC)
            .map_or(rest.len(), |p| p + 1);
        files.push(&rest[..next]);
        rest = &rest[next..];
    }
    files
}

/// The sequence numbers the files get (see the module docs); files past
/// the largest sequence number are left out.
fn sequence_numbers(files: &[&[u8]]) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(files.len());
    let mut prev: Option<u64> = None;
    for f in files {
        let named = (f.len() >= 32 && f.starts_with(SEGMENT_MAGIC)).then(|| u64_at(f, 24));
        let seq = match (prev, named) {
            (None, Some(n)) => n,
            (None, None) => 1,
            (Some(p), Some(n)) if n > p => n,
            (Some(p), _) => match p.checked_add(1) {
                Some(s) => s,
                None => break,
            },
        };
        seqs.push(seq);
        prev = Some(seq);
    }
    seqs
}

/// A simulated disk holding `files` as the segments of [`WAL_DIR`], synced.
pub fn disk_with(files: &[&[u8]]) -> (SimDisk, Vec<(PathBuf, Vec<u8>)>) {
    let disk = SimDisk::new(1, SimDiskConfig::default());
    let dir = Path::new(WAL_DIR);
    let mut placed = Vec::new();
    block_on(async {
        disk.create_dir_all(dir).await.expect("mkdir on SimDisk");
        for (f, seq) in files.iter().zip(sequence_numbers(files)) {
            let path = dir.join(segment_name(seq));
            let file = disk.create(&path).await.expect("create on SimDisk");
            file.write_at(0, f).await.expect("write on SimDisk");
            file.sync_data().await.expect("sync on SimDisk");
            placed.push((path, f.to_vec()));
        }
        disk.sync_dir(dir).await.expect("sync_dir on SimDisk");
    });
    (disk, placed)
}

/// A batch verified here: its records' `(lsn, body)` and its header fields.
struct Verified {
    records: Vec<(u64, Vec<u8>)>,
    salt: u64,
    crc: u32,
    prev_crc: u32,
    first_lsn: u64,
    last_lsn: u64,
    watermark: u64,
    framed_len: u64,
}

/// Verifies the batch at `off` of `file` from the format's description
/// alone (io/src/wal/format.rs, module docs), or says why it is invalid.
fn verify_batch(file: &[u8], off: u64) -> Result<Verified, String> {
    let off = usize::try_from(off).map_err(|_| "offset beyond memory")?;
    let h = file
        .get(off..off + BATCH_HEADER)
        .ok_or("header past the file")?;
    if &h[..4] != b"BVRB" {
        return Err("bad magic".into());
    }
    let crc = u32_at(h, 4);
    if crc32fast::hash(&h[8..]) != crc {
        return Err("header checksum".into());
    }
    let (first_lsn, last_lsn, watermark) = (u64_at(h, 16), u64_at(h, 24), u64_at(h, 32));
    let (body_len, count, body_crc) = (u32_at(h, 40) as usize, u32_at(h, 44), u32_at(h, 48));
    let body = file
        .get(off + BATCH_HEADER..off + BATCH_HEADER + body_len)
        .ok_or("body past the file")?;
    if crc32fast::hash(body) != body_crc {
        return Err("body checksum".into());
    }
    let mut records = Vec::new();
    let mut at = 0;
    let mut lsn = first_lsn;
    while at < body.len() {
        let rh = body
            .get(at..at + RECORD_HEADER)
            .ok_or("record header past the body")?;
        let len = u32_at(rh, 8) as usize;
        let data = body
            .get(at + RECORD_HEADER..at + RECORD_HEADER + len)
            .ok_or("record past the body")?;
        if u64_at(rh, 0) != lsn || rh[12] != 1 {
            return Err(format!("record {lsn}: LSN or type"));
        }
        let mut c = crc32fast::Hasher::new();
        c.update(&rh[..13]);
        c.update(data);
        if c.finalize() != u32_at(rh, 13) {
            return Err(format!("record {lsn}: checksum"));
        }
        records.push((lsn, data.to_vec()));
        at += RECORD_HEADER + len;
        lsn = lsn.checked_add(1).ok_or("LSN overflow")?;
    }
    if records.is_empty() || records.len() as u64 != u64::from(count) || lsn - 1 != last_lsn {
        return Err("record count or last LSN".into());
    }
    Ok(Verified {
        records,
        salt: u64_at(h, 8),
        crc,
        prev_crc: u32_at(h, 52),
        first_lsn,
        last_lsn,
        watermark,
        framed_len: (BATCH_HEADER + body_len).div_ceil(SECTOR as usize) as u64 * SECTOR,
    })
}

/// Checks an inspection against the files and returns the records of the
/// log (every in-log batch's, in order), verified here.
fn check_inspection(
    ins: &Inspection,
    files: &[(PathBuf, Vec<u8>)],
    after_lsn: u64,
) -> Vec<(u64, Vec<u8>)> {
    let mut log: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut prev: Option<(u64, u32)> = None;
    let mut watermark = 0u64;
    assert_eq!(
        ins.segments.len(),
        files.len(),
        "one report per segment file"
    );
    for (seg, (path, bytes)) in ins.segments.iter().zip(files) {
        assert_eq!(&seg.path, path);
        assert_eq!(seg.size, bytes.len() as u64);
        let mut last_off = None;
        let mut past_log = false;
        let mut first_in_segment = true;
        for b in &seg.batches {
            assert_eq!(b.offset % SECTOR, 0, "batch off a sector boundary: {b:?}");
            assert!(
                last_off.is_none_or(|o| b.offset > o),
                "batches out of order"
            );
            last_off = Some(b.offset);
            let v = verify_batch(bytes, b.offset).unwrap_or_else(|why| {
                panic!(
                    "{} reported a batch that fails verification ({why}): {b:?}",
                    path.display()
                )
            });
            assert_eq!(
                (b.first_lsn, b.last_lsn, b.watermark, b.len),
                (v.first_lsn, v.last_lsn, v.watermark, v.framed_len),
                "reported fields differ from the batch's"
            );
            watermark = watermark.max(v.watermark);
            if !b.in_log {
                past_log = true;
                continue;
            }
            assert!(
                !past_log,
                "a batch in the log after one past its end: {b:?}"
            );
            // The segment header (checked by hand too): the salt, and where
            // the segment starts in the log and in the chain.
            let header = bytes
                .get(..48)
                .expect("a segment with batches has a header");
            assert_eq!(&header[..8], SEGMENT_MAGIC);
            assert_eq!(crc32fast::hash(&header[..44]), u32_at(header, 44));
            assert_eq!(
                v.salt,
                u64_at(header, 16),
                "an in-log batch of another salt"
            );
            if first_in_segment {
                assert_eq!(
                    v.first_lsn,
                    u64_at(header, 32),
                    "segment header's first LSN"
                );
                let chain = u32_at(header, 40);
                match prev {
                    Some((_, crc)) => assert_eq!(chain, crc, "segment header's chain"),
                    None => assert_eq!(v.prev_crc, chain, "the log's first batch's chain"),
                }
                first_in_segment = false;
            }
            if let Some((last, crc)) = prev {
                assert_eq!(v.first_lsn, last + 1, "LSN gap inside the log");
                assert_eq!(v.prev_crc, crc, "the chain is broken inside the log");
            }
            prev = Some((v.last_lsn, v.crc));
            log.extend(v.records);
        }
    }
    assert_eq!(ins.first_lsn, log.first().map(|r| r.0), "first LSN");
    assert_eq!(ins.last_lsn, log.last().map(|r| r.0), "last LSN");
    assert_eq!(
        ins.watermark, watermark,
        "watermark is the highest of the batches'"
    );
    // The snapshot (LSNs up to `after_lsn`) holds part of the state too.
    if !matches!(ins.end, LogEnd::Corrupt { .. }) {
        assert!(
            ins.watermark <= ins.last_lsn.unwrap_or(0).max(after_lsn),
            "a log not called corrupt lacks LSNs its watermark vouches for: {ins:?}"
        );
    }
    log
}

fn inspect(disk: &SimDisk, after_lsn: u64) -> beaver_io::Result<Inspection> {
    block_on(beaver_io::inspect(disk, Path::new(WAL_DIR), after_lsn))
}

fn recover(disk: &SimDisk, after_lsn: u64) -> beaver_io::Result<Vec<(u64, Vec<u8>)>> {
    let opts = WalOptions {
        segment_bytes: MIN_SEGMENT_BYTES,
        salt_seed: 7,
        ..WalOptions::default()
    };
    let mut got = Vec::new();
    block_on(Wal::open(
        disk.clone(),
        Path::new(WAL_DIR),
        opts,
        after_lsn,
        |lsn, body| got.push((lsn, body.to_vec())),
    ))?;
    Ok(got)
}

/// The current bytes of every segment file left in [`WAL_DIR`].
fn files_now(disk: &SimDisk) -> Vec<(PathBuf, Vec<u8>)> {
    block_on(async {
        let dir = Path::new(WAL_DIR);
        let mut out = Vec::new();
        for name in disk.list(dir).await.expect("list on SimDisk") {
            if beaver_io::wal::segment::parse_segment_name(&name).is_none() {
                continue;
            }
            let path = dir.join(name);
            let f = disk.open(&path).await.expect("open on SimDisk");
            let size = f.size().await.expect("size on SimDisk");
            let bytes = f
                .read_at(0, vec![0; size as usize])
                .await
                .expect("read on SimDisk");
            out.push((path, bytes));
        }
        out
    })
}

/// The fuzz target: see the module docs.
pub fn check_scan(data: &[u8]) {
    let [after, flags, rest @ ..] = data else {
        return;
    };
    let after_lsn = u64::from(*after);
    let files = split_files(rest);
    let (disk, placed) = disk_with(&files);
    let ins = match inspect(&disk, after_lsn) {
        Ok(ins) => ins,
        Err(e) => {
            if flags & 1 == 1 {
                assert!(
                    recover(&disk, after_lsn).is_err(),
                    "inspection refused ({e}), recovery did not"
                );
            }
            return;
        }
    };
    let log = check_inspection(&ins, &placed, after_lsn);
    if flags & 1 == 0 {
        return;
    }
    let expected: Vec<(u64, Vec<u8>)> = log.into_iter().filter(|r| r.0 > after_lsn).collect();
    let corrupt = matches!(ins.end, LogEnd::Corrupt { .. });
    let last = ins.last_lsn.unwrap_or(0);
    match recover(&disk, after_lsn) {
        Err(beaver_io::Error::Corruption { .. }) if corrupt => return,
        Err(beaver_io::Error::Usage(_)) if !corrupt && last > 0 && after_lsn > last => return,
        Err(e) => panic!("recovery failed ({e}) on a log inspected as {:?}", ins.end),
        Ok(_) if corrupt => panic!("recovery accepted a log inspected as {:?}", ins.end),
        Ok(got) => assert_eq!(
            got, expected,
            "recovery handed out other records than the log's"
        ),
    }
    // Recovery discarded the torn window: the log now ends clean, holds
    // the same records, and recovers the same again.
    let again = inspect(&disk, after_lsn).expect("inspecting a recovered log");
    assert!(
        matches!(again.end, LogEnd::Clean),
        "after recovery: {:?}",
        again.end
    );
    let log_again = check_inspection(&again, &files_now(&disk), after_lsn);
    let expected_again: Vec<(u64, Vec<u8>)> =
        log_again.into_iter().filter(|r| r.0 > after_lsn).collect();
    assert_eq!(
        expected_again, expected,
        "recovery changed the log's records"
    );
    let twice = recover(&disk, after_lsn).expect("recovering a recovered log");
    assert_eq!(twice, expected, "a second recovery differs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_splits_before_each_magic_into_at_most_files_max_files() {
        let few = [b"xx".as_slice(), SEGMENT_MAGIC, b"a", SEGMENT_MAGIC].concat();
        let want: Vec<&[u8]> = vec![b"xx", b"BVRWALSGa", b"BVRWALSG"];
        assert_eq!(split_files(&few), want);
        let many = SEGMENT_MAGIC.repeat(FILES_MAX + 8);
        let files = split_files(&many);
        assert_eq!(files.len(), FILES_MAX);
        assert!(files[..FILES_MAX - 1].iter().all(|f| *f == SEGMENT_MAGIC));
        assert_eq!(files[FILES_MAX - 1].len(), 9 * SEGMENT_MAGIC.len());
        assert_eq!(files.concat(), many, "every byte is in one file");
    }
}
