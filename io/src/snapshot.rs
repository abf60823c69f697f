//! Snapshot files: the caller's opaque bytes plus the LSN they cover.
//!
//! ```text
//! snap-<lsn:020>.snap = magic "BVRSNAPS" | version u32 | reserved u32 | lsn u64
//!                     | body_len u64 | body | crc32(everything before) u32
//! ```
//! Written temp -> fsync -> rename -> fsync directory; the newest two are
//! kept. Loading takes the newest that validates; a corrupt one is renamed
//! aside to `<name>.broken` (and logged) and the older one is used. A
//! snapshot is loaded whole (start-up) or in pieces, each handed on as it
//! is read (a snapshot build: the file is never whole in memory).

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
/// The most [`SnapshotStore::load_in_pieces`] reads at once by default.
pub const LOAD_PIECE_BYTES: usize = 1 << 20;

/// Where [`SnapshotStore::load_in_pieces`] hands a snapshot's body.
pub trait SnapshotSink {
    /// A snapshot's body of `body_len` bytes begins: forget any pieces of
    /// an earlier one (it was found corrupt at its end).
    fn begin(&mut self, body_len: u64);
    /// The next piece of the body. `false`: send no more of this one (the
    /// rest is still read, to tell a damaged file from a bad body).
    fn piece(&mut self, piece: &[u8]) -> bool;
}

/// What reading a snapshot file in pieces gathers beside the body it
/// hands out: the checksum of everything between header and trailer,
/// and the trailer.
struct FileInPieces {
    size: u64,
    body: std::ops::Range<u64>,
    /// The planted bug the store runs with (read only by its hook).
    #[cfg_attr(not(feature = "mutants"), allow(dead_code))]
    planted: Planted,
    sinking: bool,
    room_crc: crc32fast::Hasher,
    trailer: [u8; TRAILER_LEN],
}

impl FileInPieces {
    fn new(size: u64, body: std::ops::Range<u64>, planted: Planted) -> FileInPieces {
        FileInPieces {
            size,
            body,
            planted,
            sinking: true,
            room_crc: crc32fast::Hasher::new(),
            trailer: [0; TRAILER_LEN],
        }
    }

    /// Takes the file's bytes `piece`, read at offset `at`.
    fn take<S: SnapshotSink>(&mut self, at: u64, piece: &[u8], sink: &mut S) {
        let trailer_at = self.size - TRAILER_LEN as u64;
        if let Some(room) = part(at, piece, HEADER_LEN as u64..trailer_at) {
            self.room_crc.update(room);
        }
        if let Some(body) = part(at, piece, self.body.clone()) {
            #[cfg(feature = "mutants")]
            let body = self.planted_cut(at, piece, body);
            self.sinking = self.sinking && sink.piece(body);
        }
        if let Some(t) = part(at, piece, trailer_at..self.size) {
            let from = at.max(trailer_at) - trailer_at;
            self.trailer[from as usize..from as usize + t.len()].copy_from_slice(t);
        }
    }
}

#[cfg(feature = "mutants")]
impl FileInPieces {
    /// The planted bug `SnapshotPieceCutShort`: a piece of the body that
    /// the read cut before the body's end loses its last byte.
    fn planted_cut<'a>(&self, at: u64, piece: &[u8], body: &'a [u8]) -> &'a [u8] {
        let cut_inside = at + (piece.len() as u64) < self.body.end;
        match self.planted.is(SnapshotPieceCutShort) && cut_inside {
            true => &body[..body.len() - 1],
            false => body,
        }
    }
}

/// The bytes of `piece` (read at offset `at`) that fall in `range` of the
/// file, if any.
fn part(at: u64, piece: &[u8], range: std::ops::Range<u64>) -> Option<&[u8]> {
    let lo = range.start.max(at);
    let hi = range.end.min(at + piece.len() as u64);
    (lo < hi).then(|| &piece[(lo - at) as usize..(hi - at) as usize])
}

/// `buf`, its length set to `len`, for the next read into it.
fn reuse(mut buf: Vec<u8>, len: usize) -> Vec<u8> {
    buf.resize(len, 0);
    buf
}

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
/// [`SnapshotStore::load`] or [`SnapshotStore::load_in_pieces`] validated
/// (magic, version, length, checksum), both by the same checks.
#[derive(Debug)]
pub struct SnapshotStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    /// LSNs of the snapshot files present, ascending.
    kept: Vec<u64>,
    planted: Planted,
    /// The most [`SnapshotStore::load_in_pieces`] reads at once.
    piece_bytes: usize,
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
    (header, trailer_of(&header, body_crc, planted))
}

/// The trailer that goes with `header` and a body whose own checksum is
/// `body_crc`: the checksum of header and body.
fn trailer_of(
    header: &[u8; HEADER_LEN],
    body_crc: &crc32fast::Hasher,
    planted: Planted,
) -> [u8; TRAILER_LEN] {
    #[cfg(feature = "mutants")]
    if planted.is(LengthOutsideChecksum) {
        return planted::crc_without_length(header, body_crc).to_le_bytes();
    }
    let _ = planted;
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.combine(body_crc);
    crc.finalize().to_le_bytes()
}

/// Why a snapshot file is invalid, with the version found if it is a
/// well-formed file of another format version.
type Invalid = (&'static str, Option<u32>);

fn decode_snapshot(b: &[u8], planted: Planted) -> std::result::Result<(u64, &[u8]), Invalid> {
    let (Some(header), Some((room, trailer))) = (
        b.first_chunk::<HEADER_LEN>(),
        b.get(HEADER_LEN..)
            .and_then(|rest| rest.split_last_chunk::<TRAILER_LEN>()),
    ) else {
        return Err(("shorter than a snapshot header", None));
    };
    let body = check_header(header, b.len() as u64, planted)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(room);
    let lsn = check_trailer(header, &crc, trailer, planted)?;
    Ok((lsn, &b[body.start as usize..body.end as usize]))
}

/// Checks a snapshot file's header against the file's length (`file_len`
/// bytes); returns where the body sits in the file. The checksum (the
/// trailer's) decides the rest: [`check_trailer`].
fn check_header(
    header: &[u8; HEADER_LEN],
    file_len: u64,
    planted: Planted,
) -> std::result::Result<std::ops::Range<u64>, Invalid> {
    if file_len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(("shorter than a snapshot header", None));
    }
    if &header[..8] != MAGIC {
        return Err(("bad magic", None));
    }
    let body_len = header_word(header, 24);
    let room = file_len - (HEADER_LEN + TRAILER_LEN) as u64;
    let _ = planted;
    #[cfg(feature = "mutants")]
    if planted.is(LengthOutsideChecksum) {
        // The planted bug trusts the unchecked length to bound the body.
        if body_len > room {
            return Err(("length exceeds the file", None));
        }
        return Ok(HEADER_LEN as u64..HEADER_LEN as u64 + body_len);
    }
    // Bound the length by the file before using it; then the checksum decides.
    if body_len != room {
        return Err(("length does not match the file size", None));
    }
    Ok(HEADER_LEN as u64..HEADER_LEN as u64 + body_len)
}

/// Checks the trailer against the header and the checksum of every byte
/// between them (`room_crc`), then the version and the LSN; returns the LSN.
fn check_trailer(
    header: &[u8; HEADER_LEN],
    room_crc: &crc32fast::Hasher,
    trailer: &[u8; TRAILER_LEN],
    planted: Planted,
) -> std::result::Result<u64, Invalid> {
    if trailer_of(header, room_crc, planted) != *trailer {
        return Err(("checksum mismatch", None));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&header[8..12]);
    let version = u32::from_le_bytes(v);
    if version != SNAPSHOT_VERSION {
        return Err(("unsupported version", Some(version)));
    }
    let lsn = header_word(header, 16);
    if lsn > crate::wal::format::MAX_LSN {
        return Err(("names an impossible LSN", None));
    }
    Ok(lsn)
}

/// The little-endian `u64` at `at` in a header.
fn header_word(header: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(a)
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
            piece_bytes: LOAD_PIECE_BYTES,
        })
    }

    /// The same store, running with the planted bug `planted` (the
    /// simulator's own test; a no-op without the `mutants` feature).
    pub fn with_planted(mut self, planted: Planted) -> Self {
        self.planted = planted;
        self
    }

    /// Reads at most `bytes` (at least 1) at once in
    /// [`SnapshotStore::load_in_pieces`] (default [`LOAD_PIECE_BYTES`]).
    pub fn with_piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes.max(1);
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
                res => self.set_aside(lsn, path, res.map(|(l, _)| l)).await?,
            }
        }
        Ok(None)
    }

    /// [`SnapshotStore::load`], the body handed to `sink` in pieces as it
    /// is read (one piece held at once, [`LOAD_PIECE_BYTES`] unless
    /// [`SnapshotStore::with_piece_bytes`] says otherwise; never the whole
    /// file). The checksum is known only at the end: a file found corrupt
    /// then is set aside as `load` sets it aside, and `sink` begins again
    /// with the older one ([`SnapshotSink::begin`]). `Ok(Some(lsn))`: the
    /// snapshot covering `lsn` validated and `sink` has its whole body
    /// (unless it refused a piece: see [`SnapshotSink::piece`]).
    pub async fn load_in_pieces<S: SnapshotSink>(&mut self, sink: &mut S) -> Result<Option<u64>> {
        while let Some(&lsn) = self.kept.last() {
            let path = self.dir.join(snapshot_name(lsn));
            match self.read_in_pieces(&path, sink).await? {
                Ok(l) if l == lsn => return Ok(Some(lsn)),
                res => self.set_aside(lsn, path, res).await?,
            }
        }
        Ok(None)
    }

    /// Reads the snapshot file at `path` in pieces into `sink`, checking it
    /// as [`decode_snapshot`] does; `Ok(Err)`: it is invalid.
    async fn read_in_pieces<S: SnapshotSink>(
        &self,
        path: &Path,
        sink: &mut S,
    ) -> Result<std::result::Result<u64, Invalid>> {
        let f = self.disk.open(path).await?;
        let size = f.size().await?;
        let piece_len = |at: u64| (size - at).min(self.piece_bytes as u64) as usize;
        // The first read holds the whole header, whatever the piece size.
        let first = piece_len(0).max(HEADER_LEN.min(size as usize));
        let mut buf = f.read_at(0, vec![0; first]).await?;
        let Some(header) = buf.first_chunk::<HEADER_LEN>().copied() else {
            return Ok(Err(("shorter than a snapshot header", None)));
        };
        let body = match check_header(&header, size, self.planted) {
            Ok(body) => body,
            Err(invalid) => return Ok(Err(invalid)),
        };
        sink.begin(body.end - body.start);
        let mut file = FileInPieces::new(size, body, self.planted);
        let mut at = 0;
        loop {
            file.take(at, &buf, sink);
            at += buf.len() as u64;
            if at >= size {
                break;
            }
            buf = f.read_at(at, reuse(buf, piece_len(at))).await?;
            if buf.is_empty() {
                return Ok(Err(("shorter than its length said when read", None)));
            }
        }
        Ok(check_trailer(
            &header,
            &file.room_crc,
            &file.trailer,
            self.planted,
        ))
    }

    /// Renames the invalid snapshot covering `lsn` aside, unless it is of
    /// another format version (an error: a restart refuses to start).
    async fn set_aside(
        &mut self,
        lsn: u64,
        path: PathBuf,
        found: std::result::Result<u64, Invalid>,
    ) -> Result<()> {
        let why = match found {
            Err((_, Some(found))) => {
                return Err(Error::Version {
                    path,
                    found,
                    supported: SNAPSHOT_VERSION,
                });
            }
            Err((w, None)) => w,
            Ok(_) => "LSN in the file differs from its name",
        };
        let broken = self.dir.join(format!("{}.broken", snapshot_name(lsn)));
        warn!(file = %path.display(), reason = why, "snapshot is corrupt; renamed aside, falling back to the older one");
        self.disk.rename(&path, &broken).await?;
        self.disk.sync_dir(&self.dir).await?;
        self.kept.pop();
        Ok(())
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
    pub(super) fn crc_without_length(header: &[u8], body_crc: &crc32fast::Hasher) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&header[..24]);
        h.combine(body_crc);
        h.finalize()
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
