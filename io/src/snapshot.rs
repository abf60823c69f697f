//! Snapshot files: the caller's opaque bytes plus the LSN they cover.
//!
//! ```text
//! snap-<lsn:020>.snap = magic "BVRSNAPS" | version u32 | reserved u32 | lsn u64
//!                     | body_len u64 | body | crc32(everything before) u32
//! ```
//! Written temp -> fsync -> rename -> fsync directory; the newest two are
//! kept. Loading takes the newest that validates; a corrupt one is renamed
//! aside to `<name>.broken` (and logged) and the older one is used.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::Planted;
use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};
#[cfg(feature = "mutants")]
use beaver_planted::Mutant::*;

/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"BVRSNAPS";
const HEADER_LEN: usize = 32;
/// Snapshots are written and synced in slices of this size.
const SAVE_CHUNK_BYTES: usize = 4 << 20;
const TRAILER_LEN: usize = 4;

/// The file name of the snapshot covering `lsn`.
pub fn snapshot_name(lsn: u64) -> String {
    format!("snap-{lsn:020}.snap")
}

fn parse_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

/// A snapshot that validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// Every record with an LSN up to this one is folded into the body.
    pub lsn: u64,
    /// The file's bytes as read, and where the body sits in them.
    bytes: Vec<u8>,
    at: std::ops::Range<usize>,
    /// The file it came from.
    pub path: PathBuf,
}

impl LoadedSnapshot {
    /// The caller's bytes, exactly as saved (read once, never copied).
    pub fn body(&self) -> &[u8] {
        self.bytes.get(self.at.clone()).unwrap_or_default()
    }
}

/// A snapshot [`SnapshotStore::save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSnapshot {
    /// Its file.
    pub path: PathBuf,
    /// The file's size.
    pub bytes: u64,
}

/// The snapshot files of one directory.
///
/// Guarantees: a snapshot returned by [`SnapshotStore::save`] is durable
/// (file and directory entry); a snapshot returned by
/// [`SnapshotStore::load`] validated (magic, version, length, checksum).
#[derive(Debug)]
pub struct SnapshotStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    /// LSNs of the snapshot files present, ascending.
    kept: Vec<u64>,
    planted: Planted,
}

/// Encodes a snapshot file.
pub fn encode_snapshot(lsn: u64, body: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(body);
    let (header, trailer) = frame(lsn, body.len() as u64, &crc, Planted::default());
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out.extend_from_slice(&trailer);
    out
}

/// The header that goes before a body of `body_len` bytes (whose own
/// checksum is `body_crc`) in a snapshot file, and the trailer that goes
/// after it (the checksum of header and body): the file is
/// `header | body | trailer`, so the body can be written first, in pieces.
fn frame(
    lsn: u64,
    body_len: u64,
    body_crc: &crc32fast::Hasher,
    planted: Planted,
) -> ([u8; HEADER_LEN], [u8; TRAILER_LEN]) {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    // Bytes 12..16 are reserved (zero).
    header[16..24].copy_from_slice(&lsn.to_le_bytes());
    header[24..32].copy_from_slice(&body_len.to_le_bytes());
    #[cfg(feature = "mutants")]
    if planted.is(LengthOutsideChecksum) {
        return (
            header,
            planted::crc_without_length(&header, body_crc).to_le_bytes(),
        );
    }
    let _ = planted;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.combine(body_crc);
    (header, crc.finalize().to_le_bytes())
}

/// Why a snapshot file is invalid, with the version found if it is a
/// well-formed file of another format version.
type Invalid = (&'static str, Option<u32>);

fn decode_snapshot(b: &[u8], planted: Planted) -> std::result::Result<(u64, &[u8]), Invalid> {
    if b.len() < HEADER_LEN + TRAILER_LEN {
        return Err(("shorter than a snapshot header", None));
    }
    if &b[..8] != MAGIC {
        return Err(("bad magic", None));
    }
    let word = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let body_len = word(24);
    let _ = planted;
    #[cfg(feature = "mutants")]
    if planted.is(LengthOutsideChecksum) {
        return planted::decode_length_outside_checksum(b, body_len);
    }
    // Bound the length by the file before using it; then the checksum decides.
    if body_len != (b.len() - HEADER_LEN - TRAILER_LEN) as u64 {
        return Err(("length does not match the file size", None));
    }
    let (content, crc) = b.split_at(b.len() - TRAILER_LEN);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32fast::hash(content) != u32::from_le_bytes(c) {
        return Err(("checksum mismatch", None));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[8..12]);
    let version = u32::from_le_bytes(v);
    if version != SNAPSHOT_VERSION {
        return Err(("unsupported version", Some(version)));
    }
    let lsn = word(16);
    if lsn > crate::wal::format::MAX_LSN {
        return Err(("names an impossible LSN", None));
    }
    Ok((lsn, &content[HEADER_LEN..]))
}

/// Why [`decode_snapshot_file`] refused a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFileError {
    /// Damaged, or not a snapshot: a restart sets it aside and uses an
    /// older snapshot.
    Damaged(&'static str),
    /// Written in another format version: a restart refuses to start.
    Version(u32),
}

impl std::fmt::Display for SnapshotFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotFileError::Damaged(why) => f.write_str(why),
            SnapshotFileError::Version(v) => write!(
                f,
                "written in snapshot format version {v}, but this beaver reads version {SNAPSHOT_VERSION}: upgrade beaver"
            ),
        }
    }
}

/// Validates one snapshot file's bytes (magic, length, checksum, version)
/// without touching any file, and returns the LSN it covers and the
/// caller's body. For read-only inspection (`beaver status --data-dir`).
pub fn decode_snapshot_file(bytes: &[u8]) -> std::result::Result<(u64, &[u8]), SnapshotFileError> {
    decode_snapshot(bytes, Planted::default()).map_err(|(why, version)| match version {
        Some(v) => SnapshotFileError::Version(v),
        None => SnapshotFileError::Damaged(why),
    })
}

impl<D: Disk> SnapshotStore<D> {
    /// Opens (creating) the snapshot directory and removes leftover temp files.
    pub async fn open(disk: D, dir: &Path) -> Result<Self> {
        disk.create_dir_all(dir).await?;
        let mut kept = Vec::new();
        let mut removed = false;
        for name in disk.list(dir).await? {
            if let Some(lsn) = parse_name(&name) {
                kept.push(lsn);
            } else if name.starts_with("snap-") && name.ends_with(".tmp") {
                disk.remove(&dir.join(&name)).await?;
                removed = true;
            }
        }
        if removed {
            disk.sync_dir(dir).await?;
        }
        kept.sort_unstable();
        Ok(SnapshotStore {
            disk,
            dir: dir.to_path_buf(),
            kept,
            planted: Planted::default(),
        })
    }

    /// The same store, running with the planted bug `planted` (the
    /// simulator's own test; a no-op without the `mutants` feature).
    pub fn with_planted(mut self, planted: Planted) -> Self {
        self.planted = planted;
        self
    }

    /// Writes a snapshot covering `lsn` durably (temp, fsync, rename,
    /// directory fsync), then deletes all but the newest two.
    pub async fn save(&mut self, lsn: u64, body: &[u8]) -> Result<SavedSnapshot> {
        let mut rest = body;
        self.save_pieces(lsn, |piece, at_least| {
            let (now, later) = rest.split_at(at_least.min(rest.len()));
            piece.extend_from_slice(now);
            rest = later;
            !rest.is_empty()
        })
        .await
    }

    /// As [`SnapshotStore::save`], with the body made piece by piece as it
    /// is written, so that it is never whole in memory: `next_piece` gets
    /// an empty buffer and a size, appends the body's next piece of about
    /// that size, and returns whether more follow. Pieces are synced as
    /// they are written, so the kernel flushes a large snapshot in small
    /// bursts instead of one long one that would compete with the WAL's
    /// fsyncs and the engine's threads.
    ///
    /// A save that fails removes its temporary file (best effort): on a
    /// full disk, a half-written snapshot would otherwise hold the very
    /// space the next try needs.
    pub async fn save_pieces(
        &mut self,
        lsn: u64,
        next_piece: impl FnMut(&mut Vec<u8>, usize) -> bool,
    ) -> Result<SavedSnapshot> {
        let tmp = self.dir.join(format!("{}.tmp", snapshot_name(lsn)));
        let saved = self.write_and_rename(lsn, &tmp, next_piece).await;
        if saved.is_err() && self.disk.remove(&tmp).await.is_ok() {
            let _ = self.disk.sync_dir(&self.dir).await;
        }
        saved
    }

    async fn write_and_rename(
        &mut self,
        lsn: u64,
        tmp: &Path,
        mut next_piece: impl FnMut(&mut Vec<u8>, usize) -> bool,
    ) -> Result<SavedSnapshot> {
        let path = self.dir.join(snapshot_name(lsn));
        let f = self.disk.create(tmp).await?;
        // The body first, after room for the header, which needs its
        // length and checksum.
        let mut at = HEADER_LEN as u64;
        let mut crc = crc32fast::Hasher::new();
        let mut piece = Vec::new();
        loop {
            piece.clear();
            let more = next_piece(&mut piece, SAVE_CHUNK_BYTES);
            if !piece.is_empty() {
                f.write_at(at, &piece).await?;
                crc.update(&piece);
                at += piece.len() as u64;
            }
            if !more {
                break;
            }
            f.sync_data().await?;
        }
        drop(piece);
        let body_len = at - HEADER_LEN as u64;
        let (header, trailer) = frame(lsn, body_len, &crc, self.planted);
        f.write_at(0, &header).await?;
        f.write_at(at, &trailer).await?;
        f.sync_all().await?;
        self.disk.rename(tmp, &path).await?;
        self.disk.sync_dir(&self.dir).await?;
        if let Err(i) = self.kept.binary_search(&lsn) {
            self.kept.insert(i, lsn);
        }
        if self.kept.len() > 2 {
            let old: Vec<u64> = self.kept.drain(..self.kept.len() - 2).collect();
            for l in old {
                self.disk.remove(&self.dir.join(snapshot_name(l))).await?;
            }
            self.disk.sync_dir(&self.dir).await?;
        }
        let bytes = at + TRAILER_LEN as u64;
        info!(lsn, bytes, "snapshot saved");
        Ok(SavedSnapshot { path, bytes })
    }

    /// Loads the newest snapshot that validates. A corrupt one is renamed
    /// aside to `<name>.broken` (logged, directory fsync'd) and the next
    /// older one is tried. `Ok(None)`: no valid snapshot (start from an
    /// empty state and the whole log). A snapshot of a newer format is an
    /// error, not a corruption.
    pub async fn load(&mut self) -> Result<Option<LoadedSnapshot>> {
        while let Some(&lsn) = self.kept.last() {
            let path = self.dir.join(snapshot_name(lsn));
            let f = self.disk.open(&path).await?;
            let size = f.size().await?;
            let bytes = crate::disk::read_whole(&f, size, Vec::new()).await?;
            // Where the body sits in the file's bytes (no borrow kept).
            let decoded = decode_snapshot(&bytes, self.planted).map(|(l, body)| {
                let at = (body.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
                (l, at..at + body.len())
            });
            match decoded {
                Ok((l, at)) if l == lsn => {
                    // The body stays where it was read: no second pass
                    // over a snapshot that may be hundreds of MiB.
                    return Ok(Some(LoadedSnapshot {
                        lsn,
                        bytes,
                        at,
                        path,
                    }));
                }
                Err((_, Some(found))) => {
                    return Err(Error::Version {
                        path,
                        found,
                        supported: SNAPSHOT_VERSION,
                    });
                }
                res => {
                    let why = match res {
                        Err((w, _)) => w,
                        Ok(_) => "LSN in the file differs from its name",
                    };
                    let broken = self.dir.join(format!("{}.broken", snapshot_name(lsn)));
                    warn!(file = %path.display(), reason = why, "snapshot is corrupt; renamed aside, falling back to the older one");
                    self.disk.rename(&path, &broken).await?;
                    self.disk.sync_dir(&self.dir).await?;
                    self.kept.pop();
                }
            }
        }
        Ok(None)
    }

    /// LSN of the newest snapshot file present.
    pub fn newest_lsn(&self) -> Option<u64> {
        self.kept.last().copied()
    }

    /// LSN of the older of the two kept snapshots: WAL segments may be
    /// deleted only up to it. `None` with fewer than two (delete nothing).
    pub fn older_kept_lsn(&self) -> Option<u64> {
        #[cfg(feature = "mutants")]
        if self.planted.is(DeleteSegmentOlderSnapshotNeeds) {
            return self.newest_lsn();
        }
        (self.kept.len() >= 2).then(|| self.kept[self.kept.len() - 2])
    }

    /// LSNs of the snapshot files present, ascending.
    pub fn kept(&self) -> &[u64] {
        &self.kept
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The planted bug [`beaver_planted::Mutant::LengthOutsideChecksum`].
#[cfg(feature = "mutants")]
mod planted {
    use super::{HEADER_LEN, Invalid, TRAILER_LEN};

    pub(super) fn crc_without_length(header: &[u8], body_crc: &crc32fast::Hasher) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&header[..24]);
        h.combine(body_crc);
        h.finalize()
    }

    /// Trusts the unchecked length to bound the body.
    pub(super) fn decode_length_outside_checksum(
        b: &[u8],
        body_len: u64,
    ) -> Result<(u64, &[u8]), Invalid> {
        let room = (b.len() - HEADER_LEN - TRAILER_LEN) as u64;
        if body_len > room {
            return Err(("length exceeds the file", None));
        }
        let (content, crc) = b.split_at(b.len() - TRAILER_LEN);
        let mut c = [0u8; 4];
        c.copy_from_slice(crc);
        let (header, body) = content.split_at(HEADER_LEN);
        let mut body_crc = crc32fast::Hasher::new();
        body_crc.update(body);
        if crc_without_length(header, &body_crc) != u32::from_le_bytes(c) {
            return Err(("checksum mismatch", None));
        }
        let mut l = [0u8; 8];
        l.copy_from_slice(&b[16..24]);
        Ok((
            u64::from_le_bytes(l),
            &content[HEADER_LEN..HEADER_LEN + body_len as usize],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_caught() {
        let b = encode_snapshot(42, b"state");
        assert_eq!(
            decode_snapshot(&b, Planted::default()),
            Ok((42, &b"state"[..]))
        );
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(
                decode_snapshot(&c, Planted::default()).is_err(),
                "flip at {i}"
            );
        }
        assert!(decode_snapshot(&b[..b.len() - 1], Planted::default()).is_err());
        assert_eq!(parse_name(&snapshot_name(9)), Some(9));
        assert_eq!(parse_name("snap-1.snap"), None);
    }
}
