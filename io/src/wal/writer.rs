//! The WAL writer: batches, group commit, rotation, deletion, fail-stop.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};
use crate::rng::DetRng;
use crate::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, encode_batch, framed_batch_len};
use crate::wal::segment::segment_name;

mod recover;

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// How a WAL is laid out and salted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of every segment file, preallocated in full. At least 4 KiB.
    pub segment_bytes: u64,
    /// Seed of the per-segment salts. Give every open a different value
    /// (`crate::entropy_seed()` in production, a draw from the simulator's
    /// seeded RNG under simulation), so that bytes of an older incarnation
    /// can never carry a current salt.
    pub salt_seed: u64,
    /// How far ahead of the log's end the writer writes zeros over a
    /// segment's allocated blocks (at most [`FILL_AHEAD_BYTES`]; 0: none).
    /// See `Active::fill` for why.
    pub fill_ahead_bytes: u64,
    /// The planted bug the WAL runs with (none outside the simulator's
    /// own test).
    pub planted: crate::Planted,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            salt_seed: 0,
            fill_ahead_bytes: FILL_AHEAD_BYTES,
            planted: crate::Planted::default(),
        }
    }
}

/// Where a batch went. The batch is written (page cache), not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// LSN of the first record.
    pub first_lsn: u64,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// Sequence number of the segment holding the batch.
    pub segment_seq: u64,
    /// Byte offset of the batch header in that segment.
    pub offset: u64,
    /// Bytes written (header, records, padding; plus the segment header if
    /// the batch opened the segment).
    pub bytes: u64,
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// LSN of the last record in the log (0 if the log is empty).
    pub last_lsn: u64,
    /// Records handed to the callback (those above `after_lsn`).
    pub records: u64,
    /// Bytes of the torn window that were discarded and zeroed.
    pub torn_bytes: u64,
    /// Segment files holding the log.
    pub segments: usize,
}

/// Free space against the reserve (see [`Wal::space_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceStatus {
    /// Bytes free on the file system.
    pub free_bytes: u64,
    /// Two segments plus one snapshot.
    pub reserve_bytes: u64,
    /// `free_bytes < reserve_bytes` (plus a segment when the next one is
    /// due and not begun): refuse new enqueues, keep logging transitions.
    pub pressure: bool,
}

/// A sync to run: fdatasync of every file with unsynced batches. Run it
/// with [`SyncJob::run`] (concurrently with further [`Wal::write_batch`]
/// calls if you like) and hand the outcome to [`Wal::complete_sync`].
#[derive(Debug)]
#[must_use = "a begun sync must be run and completed"]
pub struct SyncJob<F> {
    files: Vec<F>,
    upto: u64,
}

/// The result of a [`SyncJob`], for [`Wal::complete_sync`].
#[derive(Debug)]
pub struct SyncOutcome {
    upto: u64,
    result: Result<()>,
}

impl<F: DiskFile> SyncJob<F> {
    /// The LSN that becomes durable if the sync succeeds.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Runs the fdatasyncs. Never retries a failed one.
    pub async fn run(self) -> SyncOutcome {
        for f in &self.files {
            if let Err(e) = f.sync_data().await {
                return SyncOutcome {
                    upto: self.upto,
                    result: Err(e),
                };
            }
        }
        SyncOutcome {
            upto: self.upto,
            result: Ok(()),
        }
    }
}

/// Deletion of closed segments a snapshot covers, from
/// [`Wal::begin_delete_through`].
#[derive(Debug)]
#[must_use = "the segments are forgotten: run the job to delete their files"]
pub struct DeleteJob<D> {
    disk: D,
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

impl<D: Disk> DeleteJob<D> {
    /// Deletes the files, oldest first, then fsyncs the directory; returns
    /// how many.
    pub async fn run(self) -> Result<usize> {
        for p in &self.paths {
            self.disk.remove(p).await?;
        }
        self.disk.sync_dir(&self.dir).await?;
        Ok(self.paths.len())
    }
}

/// Preparation of the next segment (create, allocate, sync, directory
/// fsync), to run off the write path; hand the outcome to
/// [`Wal::finish_prepare`].
#[derive(Debug)]
#[must_use = "a begun preparation must be run and finished"]
pub struct PrepareJob<D> {
    disk: D,
    dir: PathBuf,
    seq: u64,
    bytes: u64,
}

/// The result of a [`PrepareJob`].
#[derive(Debug)]
pub struct PrepareOutcome<F> {
    seq: u64,
    path: PathBuf,
    result: Result<F>,
}

impl<D: Disk> PrepareJob<D> {
    /// Creates and preallocates the segment file and makes its entry durable.
    pub async fn run(self) -> PrepareOutcome<D::File> {
        let path = self.dir.join(segment_name(self.seq));
        let result = prepare_segment(&self.disk, &self.dir, &path, self.bytes).await;
        PrepareOutcome {
            seq: self.seq,
            path,
            result,
        }
    }
}

async fn prepare_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    path: &Path,
    bytes: u64,
) -> Result<D::File> {
    let made = async {
        let f = disk.create(path).await?;
        f.allocate(bytes).await?;
        f.sync_data().await?;
        disk.sync_dir(dir).await?;
        Ok::<_, Error>(f)
    }
    .await;
    match made {
        Ok(f) => Ok(f),
        Err(e) => {
            // Give back whatever was allocated; the file is blank anyway.
            if disk.remove(path).await.is_ok() {
                let _ = disk.sync_dir(dir).await;
            }
            if e.is_no_space() {
                Err(Error::NoSpace {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                })
            } else {
                Err(e)
            }
        }
    }
}

#[derive(Debug)]
struct Active<F> {
    seq: u64,
    path: PathBuf,
    file: F,
    salt: u64,
    /// The header is on disk (written with the first batch).
    started: bool,
    offset: u64,
    /// The file's length: no batch goes past it, so a write never extends
    /// a segment (and a batch cut off by the end of its file was cut by
    /// something else).
    end: u64,
    first_lsn: u64,
    last_lsn: Option<u64>,
    /// Below this offset the file's blocks are written (the log's bytes or
    /// [`Active::fill`]'s zeros), not merely allocated.
    filled: u64,
}

impl<F> Active<F> {
    /// A prepared segment of `end` bytes about to receive its first batch
    /// (and header).
    fn blank(seq: u64, path: PathBuf, file: F, end: u64) -> Self {
        Active {
            seq,
            path,
            file,
            salt: 0,
            started: false,
            offset: 0,
            end,
            first_lsn: 0,
            last_lsn: None,
            filled: 0,
        }
    }
}

impl<F: DiskFile> Active<F> {
    /// Once a batch has ended past the written blocks, writes zeros over
    /// the next `ahead` bytes after it (at most [`FILL_AHEAD_BYTES`],
    /// never below `offset`, the log's end, and never past `end`); the
    /// sync that makes the batch durable makes them written too.
    ///
    /// Why: a segment is allocated with fallocate, whose blocks stay
    /// unwritten until written, and a write into unwritten blocks changes
    /// the file's extents, which its fdatasync must then write too. Group
    /// commits of a few KiB each met fresh blocks at every sync: on this
    /// project's benchmark disk (ext4), 5.6 KiB (32 puts) + fdatasync took
    /// 300 µs into unwritten blocks and 200 µs into written ones (1.4 KiB:
    /// 230 and 210 µs; 176 bytes, one put: the same). Filled ahead, one
    /// sync in 256 KiB of log pays for the change, and carries the zeros.
    /// Zeros ahead of the log's end are what the segment holds anyway; a
    /// crash that tears them leaves garbage there that the salt and the
    /// checksums never let validate, as with any torn write.
    ///
    /// `from` is the log's end (`offset`); only the planted bug
    /// `fill-over-the-batch` passes where the batch began.
    async fn fill(&mut self, from: u64, ahead: u64) -> Result<()> {
        if self.offset <= self.filled {
            return Ok(());
        }
        let ahead = ahead.min(FILL_AHEAD_BYTES);
        let to = self.offset.saturating_add(ahead).min(self.end);
        if to > from {
            let len = (to - from).min(FILL_AHEAD_BYTES) as usize;
            self.file.write_at(from, &ZEROS[..len]).await?;
        }
        self.filled = to;
        Ok(())
    }
}

/// Where [`Active::fill`] starts after a batch written at `batch_at` that
/// ended at `end`: `end`, or with the planted bug `fill-over-the-batch`,
/// `batch_at`.
fn planted_fill_from(_opts: &WalOptions, _batch_at: u64, end: u64) -> u64 {
    #[cfg(feature = "mutants")]
    if _opts.planted.is(beaver_planted::Mutant::FillOverTheBatch) {
        return _batch_at;
    }
    end
}

/// How far ahead of the log's end the writer writes zeros by default, and
/// at most ([`WalOptions::fill_ahead_bytes`]).
pub const FILL_AHEAD_BYTES: u64 = 256 << 10;

/// The zeros `Active::fill` writes.
static ZEROS: [u8; FILL_AHEAD_BYTES as usize] = [0; FILL_AHEAD_BYTES as usize];

#[derive(Debug, Clone)]
struct Closed {
    seq: u64,
    path: PathBuf,
    last_lsn: u64,
}

/// The write-ahead log.
///
/// # Contract (group commit)
///
/// The caller (one WAL task) repeats:
/// 1. [`Wal::write_batch`] with the records that arrived, LSNs dense from
///    [`Wal::next_lsn`]: encodes one batch and writes it (one write). The
///    records are **not** durable yet.
/// 2. [`Wal::begin_sync`] when no sync is in flight: takes a [`SyncJob`]
///    covering everything written so far. Run it ([`SyncJob::run`]); while it
///    runs, step 1 may go on (pipelining), and those batches wait for the
///    next sync.
/// 3. [`Wal::complete_sync`] with the outcome: returns the new durable LSN.
///    Only now may records up to it be acknowledged.
///
/// At most one sync is in flight. Every batch records the durable LSN
/// known when it was written (the watermark recovery uses to tell a torn
/// tail from corruption). A failed write or sync is fatal: the WAL stops,
/// never retries the sync, reports nothing more durable and refuses every
/// later call with [`Error::Stopped`]; restart and recover.
///
/// Off the write path, the caller should run [`Wal::begin_prepare`] jobs so
/// that rotation finds the next segment ready; if none is ready,
/// `write_batch` prepares one inline. If no segment can be allocated,
/// `write_batch` fails with [`Error::NoSpace`], writes nothing and leaves
/// [`Wal::next_lsn`] unchanged: the caller drops those records, and appends
/// work again once space is freed.
///
/// ```
/// # use beaver_io::{SimDisk, SimDiskConfig, Wal, WalOptions};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let disk = SimDisk::new(1, SimDiskConfig::default());
/// let dir = std::path::Path::new("/data/wal");
/// let opts = WalOptions { segment_bytes: 64 << 10, salt_seed: 7, ..WalOptions::default() };
/// let (mut wal, rec) = Wal::open(disk.clone(), dir, opts.clone(), 0, |_, _| {}).await?;
/// assert_eq!((rec.last_lsn, wal.next_lsn()), (0, 1));
/// wal.write_batch(&[(1, b"a".as_slice()), (2, b"b".as_slice())]).await?;
/// let job = wal.begin_sync()?.expect("something to sync");
/// wal.write_batch(&[(3, b"c".as_slice())]).await?; // pipelined: not covered by `job`
/// let durable = wal.complete_sync(job.run().await)?;
/// assert_eq!(durable, 2); // acknowledge 1 and 2 now; 3 waits for the next sync
/// assert_eq!(wal.sync().await?, 3);
///
/// disk.power_loss();
/// let mut got = Vec::new();
/// let (_wal, rec) = Wal::open(disk, dir, opts, 1, |lsn, body| got.push((lsn, body.to_vec()))).await?;
/// assert_eq!(rec.last_lsn, 3);
/// assert_eq!(got, vec![(2, b"b".to_vec()), (3, b"c".to_vec())]);
/// # Ok::<(), beaver_io::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: WalOptions,
    salts: DetRng,
    active: Option<Active<D::File>>,
    next: Option<(u64, PathBuf, D::File)>,
    closed: Vec<Closed>,
    next_seq: u64,
    preparing: bool,
    next_lsn: u64,
    written_lsn: u64,
    durable_lsn: u64,
    prev_crc: u32,
    active_dirty: bool,
    rotated_dirty: Vec<D::File>,
    sync_in_flight: bool,
    failed: Option<String>,
    buf: Vec<u8>,
}

impl<D: Disk> Wal<D> {
    /// The LSN the next record must carry.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The last LSN written (durable or not).
    pub fn written_lsn(&self) -> u64 {
        self.written_lsn
    }

    /// Every LSN up to this one is durable (a sync covering it returned Ok).
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn
    }

    /// True once a fatal error stopped the WAL.
    pub fn is_stopped(&self) -> bool {
        self.failed.is_some()
    }

    /// True while a [`SyncJob`] is out (begun, not completed).
    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size of every segment file.
    pub fn segment_bytes(&self) -> u64 {
        self.opts.segment_bytes
    }

    /// The largest batch, in framed bytes, that fits in one segment. A batch
    /// larger than this is refused with [`Error::RecordTooLarge`].
    pub fn max_batch_bytes(&self) -> u64 {
        self.opts.segment_bytes - SEGMENT_HEADER_LEN
    }

    fn check_live(&self) -> Result<()> {
        match &self.failed {
            Some(cause) => Err(Error::Stopped {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn stop(&mut self, e: Error) -> Error {
        warn!(error = %e, "WAL stopped (fail-stop)");
        self.failed = Some(e.to_string());
        e
    }

    fn new_salt(&mut self, old: u64) -> u64 {
        loop {
            let s = self.salts.next_u64();
            if s != old && s != 0 {
                return s;
            }
        }
    }

    /// Encodes `records` as one batch and writes it (one write). Not durable
    /// until a sync covering it completes.
    ///
    /// `records` must be non-empty with LSNs dense from [`Wal::next_lsn`].
    /// Rotates to the next segment first when the batch does not fit.
    /// Errors: [`Error::RecordTooLarge`] and [`Error::NoSpace`] write nothing
    /// and are not fatal; a failed write is fatal (the WAL stops).
    pub async fn write_batch(&mut self, records: &[(u64, &[u8])]) -> Result<BatchInfo> {
        self.check_live()?;
        let Some(first) = records.first() else {
            return Err(Error::Usage("empty batch".into()));
        };
        for (i, (lsn, _)) in records.iter().enumerate() {
            if *lsn != self.next_lsn + i as u64 {
                return Err(Error::Usage(format!(
                    "LSNs must be dense from {}: got {lsn} at position {i}",
                    self.next_lsn
                )));
            }
        }
        let framed = framed_batch_len(records.iter().map(|r| r.1.len()));
        if framed > self.max_batch_bytes() {
            return Err(Error::RecordTooLarge {
                len: framed,
                capacity: self.max_batch_bytes(),
            });
        }
        let fits = self
            .active
            .as_ref()
            .is_some_and(|a| !a.started || a.offset + framed <= a.end);
        if !fits {
            self.rotate().await?;
        }
        let watermark = self.durable_lsn;
        let prev_crc = self.prev_crc;
        let fresh_salt = match &self.active {
            Some(a) if !a.started => Some(self.new_salt(a.salt)),
            _ => None,
        };
        let Some(active) = self.active.as_mut() else {
            return Err(Error::Usage("no active segment after rotation".into()));
        };
        self.buf.clear();
        if let Some(salt) = fresh_salt {
            active.salt = salt;
            active.first_lsn = first.0;
            SegmentHeader {
                salt,
                seq: active.seq,
                first_lsn: first.0,
                prev_chain: prev_crc,
            }
            .encode(&mut self.buf);
        }
        let batch_offset = active.offset + self.buf.len() as u64;
        let crc = encode_batch(&mut self.buf, active.salt, prev_crc, watermark, records);
        let write_at = active.offset;
        if let Err(e) = active.file.write_at(write_at, &self.buf).await {
            return Err(self.stop(e));
        }
        let last = self.next_lsn + records.len() as u64 - 1;
        active.started = true;
        active.offset += self.buf.len() as u64;
        let fill_from = planted_fill_from(&self.opts, write_at, active.offset);
        if let Err(e) = active.fill(fill_from, self.opts.fill_ahead_bytes).await {
            return Err(self.stop(e));
        }
        active.last_lsn = Some(last);
        let info = BatchInfo {
            first_lsn: first.0,
            last_lsn: last,
            segment_seq: active.seq,
            offset: batch_offset,
            bytes: self.buf.len() as u64,
        };
        self.active_dirty = true;
        self.prev_crc = crc;
        self.written_lsn = last;
        self.next_lsn = last + 1;
        Ok(info)
    }

    /// Closes the active segment and switches to the prepared one (or
    /// prepares one now).
    async fn rotate(&mut self) -> Result<()> {
        let (seq, path, file) = match self.next.take() {
            Some(n) => n,
            None => {
                let seq = self.next_seq;
                let path = self.dir.join(segment_name(seq));
                let f =
                    prepare_segment(&self.disk, &self.dir, &path, self.opts.segment_bytes).await?;
                self.next_seq += 1;
                (seq, path, f)
            }
        };
        if let Some(old) = self.active.take() {
            if old.started {
                if self.active_dirty {
                    self.rotated_dirty.push(old.file.clone());
                    self.active_dirty = false;
                }
                self.closed.push(Closed {
                    seq: old.seq,
                    path: old.path,
                    last_lsn: old.last_lsn.unwrap_or(0),
                });
            }
        }
        self.active = Some(Active::blank(seq, path, file, self.opts.segment_bytes));
        Ok(())
    }

    /// Starts a sync covering every batch written so far. `Ok(None)` when
    /// nothing is unsynced or a sync is already in flight.
    pub fn begin_sync(&mut self) -> Result<Option<SyncJob<D::File>>> {
        self.check_live()?;
        if self.sync_in_flight || self.written_lsn == self.durable_lsn {
            return Ok(None);
        }
        let mut files = std::mem::take(&mut self.rotated_dirty);
        if self.active_dirty {
            if let Some(a) = &self.active {
                files.push(a.file.clone());
            }
            self.active_dirty = false;
        }
        self.sync_in_flight = true;
        Ok(Some(SyncJob {
            files,
            upto: self.written_lsn,
        }))
    }

    /// Takes the outcome of the [`SyncJob`] from [`Wal::begin_sync`] and
    /// returns the durable LSN. A failed sync is fatal: the WAL stops and
    /// nothing of that sync or after it is ever reported durable.
    pub fn complete_sync(&mut self, outcome: SyncOutcome) -> Result<u64> {
        self.sync_in_flight = false;
        self.check_live()?;
        match outcome.result {
            Ok(()) => {
                let upto = self.planted_durable_upto(outcome.upto);
                self.durable_lsn = self.durable_lsn.max(upto);
                Ok(self.durable_lsn)
            }
            Err(e) => Err(self.stop(e)),
        }
    }

    /// What a successful sync covering `upto` makes durable: `upto`, or
    /// with the planted bug `durable-before-own-sync`, everything written.
    fn planted_durable_upto(&self, upto: u64) -> u64 {
        #[cfg(feature = "mutants")]
        if self
            .opts
            .planted
            .is(beaver_planted::Mutant::DurableBeforeOwnSync)
        {
            return self.written_lsn;
        }
        upto
    }

    /// The planted bug the WAL runs with.
    #[cfg(feature = "mutants")]
    pub(crate) fn planted(&self) -> crate::Planted {
        self.opts.planted
    }

    /// Syncs everything written so far and returns the durable LSN (no
    /// pipelining: begin, run and complete in one call). Waits for nothing
    /// if a sync is already in flight: returns the current durable LSN.
    /// Not cancel-safe: a future dropped while its sync runs leaves that
    /// sync in flight for good; drive it to completion.
    pub async fn sync(&mut self) -> Result<u64> {
        match self.begin_sync()? {
            Some(job) => {
                let outcome = job.run().await;
                self.complete_sync(outcome)
            }
            None => Ok(self.durable_lsn),
        }
    }

    /// Writes one batch and syncs it: the records are durable on `Ok`.
    /// Not cancel-safe (see [`Wal::sync`]).
    pub async fn append(&mut self, records: &[(u64, &[u8])]) -> Result<u64> {
        self.write_batch(records).await?;
        self.sync().await
    }

    /// A job preparing the next segment, if none is ready or being prepared.
    pub fn begin_prepare(&mut self) -> Option<PrepareJob<D>> {
        if self.failed.is_some() || self.preparing || self.next.is_some() {
            return None;
        }
        self.preparing = true;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(PrepareJob {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            seq,
            bytes: self.opts.segment_bytes,
        })
    }

    /// Installs a prepared segment. An allocation failure is reported
    /// ([`Error::NoSpace`] when the disk is full) but is not fatal; the
    /// caller may try again later.
    pub async fn finish_prepare(&mut self, outcome: PrepareOutcome<D::File>) -> Result<()> {
        self.preparing = false;
        let file = outcome.result?;
        let stale =
            self.next.is_some() || self.active.as_ref().is_some_and(|a| a.seq > outcome.seq);
        if stale || self.failed.is_some() {
            // Rotation went ahead inline meanwhile; this file would sort
            // before the active segment. Remove it.
            self.disk.remove(&outcome.path).await?;
            self.disk.sync_dir(&self.dir).await?;
            return Ok(());
        }
        self.next = Some((outcome.seq, outcome.path, file));
        Ok(())
    }

    /// True when the next segment is neither prepared nor being prepared
    /// (and the WAL is live): [`Wal::begin_prepare`] would start one.
    pub fn next_segment_wanted(&self) -> bool {
        self.failed.is_none() && !self.preparing && self.next.is_none()
    }

    /// True when a prepared segment is waiting for the next rotation.
    pub fn next_segment_ready(&self) -> bool {
        self.next.is_some()
    }

    /// Free space against the reserve of two segments plus one snapshot of
    /// `snapshot_bytes` (the caller's estimate). Under pressure, refuse new
    /// enqueues but keep logging transitions and snapshotting.
    ///
    /// A next segment that is due but not begun yet counts as allocated:
    /// pressure means the next allocation *would* eat into the reserve.
    /// Otherwise the moment pressure begins would depend on when the
    /// preparation ahead runs, and a whole segment of enqueues could go
    /// into the reserve that the drain's transitions and the compaction's
    /// snapshots need.
    pub async fn space_status(&self, snapshot_bytes: u64) -> Result<SpaceStatus> {
        let free_bytes = self.disk.free_space(&self.dir).await?;
        let reserve_bytes = self
            .opts
            .segment_bytes
            .saturating_mul(2)
            .saturating_add(snapshot_bytes);
        let owed_bytes = if self.next_segment_wanted() {
            self.opts.segment_bytes
        } else {
            0
        };
        Ok(SpaceStatus {
            free_bytes,
            reserve_bytes,
            pressure: free_bytes < reserve_bytes.saturating_add(owed_bytes),
        })
    }

    /// Deletes the closed segments whose every record has an LSN `<= upto_lsn`
    /// (pass the older kept snapshot's LSN), oldest first, and fsyncs the
    /// directory. The active segment is never deleted. Returns how many.
    pub async fn delete_through(&mut self, upto_lsn: u64) -> Result<usize> {
        match self.begin_delete_through(upto_lsn)? {
            Some(job) => job.run().await,
            None => Ok(0),
        }
    }

    /// As [`Wal::delete_through`] in two steps: the segments are forgotten
    /// here, and the returned job deletes their files and fsyncs the
    /// directory; it needs nothing of the WAL, so writes and syncs may go on
    /// while it runs. `None` when no closed segment is covered.
    pub fn begin_delete_through(&mut self, upto_lsn: u64) -> Result<Option<DeleteJob<D>>> {
        self.check_live()?;
        let n = self
            .closed
            .iter()
            .take_while(|c| c.last_lsn <= upto_lsn)
            .count();
        if n == 0 {
            return Ok(None);
        }
        let paths = self
            .closed
            .drain(..n)
            .map(|c| {
                debug!(
                    segment = c.seq,
                    last_lsn = c.last_lsn,
                    "deleting WAL segment"
                );
                c.path
            })
            .collect();
        Ok(Some(DeleteJob {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            paths,
        }))
    }

    /// How many closed segments there are (without listing them).
    pub fn closed_segment_count(&self) -> usize {
        self.closed.len()
    }

    /// The last LSN of the newest closed segment (`None`: none is closed).
    pub fn closed_segments_last_lsn(&self) -> Option<u64> {
        self.closed.last().map(|c| c.last_lsn)
    }

    /// The sequence numbers and last LSNs of the closed segments, oldest first.
    pub fn closed_segments(&self) -> Vec<(u64, u64)> {
        self.closed.iter().map(|c| (c.seq, c.last_lsn)).collect()
    }

    /// Path of the active segment, if any.
    pub fn active_segment(&self) -> Option<&Path> {
        self.active.as_ref().map(|a| a.path.as_path())
    }
}
