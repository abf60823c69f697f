//! `SimDisk`: an in-memory disk with a seeded fault model.
//!
//! The state lives in an `Arc`, so a simulator keeps it across a node's
//! kill and restart. No threads, no blocking: latency is a
//! `tokio::time::sleep` (simulated time under madsim).
//!
//! The model (docs/simulation.md says how the simulator uses it):
//! - every file has a page-cache view (what reads see) and a durable view;
//!   unsynced operations are kept in order, split into 512-byte sectors;
//! - [`SimDisk::crash_process`]: page cache survives, old handles die;
//! - [`SimDisk::power_loss`]: per file, unsynced data is dropped, or a random
//!   prefix of it survives (torn write), or a random subset of its sectors
//!   (reordering); a torn sector holds garbage or zeros; directory entries
//!   not covered by a directory fsync are lost;
//! - fsync can fail with EIO, after which the pages count as clean (each
//!   unsynced sector may or may not have reached the disk);
//! - writes and allocations fail with ENOSPC beyond the capacity;
//! - bit flips and lost writes can be injected into synced bytes (and a
//!   lost write undone, as an operator restoring from a replica would).
//!
//! Directories themselves are always durable once created (a simplification:
//! beaver creates its directories once, at start-up).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Op, Result};
use crate::rng::DetRng;

/// The sector size of the simulated device: the unit of tearing and reordering.
pub const SECTOR: u64 = 512;

/// Which faults the simulated disk injects, and how often. Every class can be
/// switched off; [`SimDiskConfig::default`] injects none.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDiskConfig {
    /// Total bytes the disk holds; writes and allocations past it fail with ENOSPC.
    pub capacity_bytes: u64,
    /// Mean of the exponential latency of reads (zero: no latency).
    pub read_latency_mean: Duration,
    /// Mean of the exponential latency of writes and other metadata operations.
    pub write_latency_mean: Duration,
    /// Mean of the exponential latency of fsync, fdatasync and directory fsync.
    pub sync_latency_mean: Duration,
    /// Probability that an fsync/fdatasync fails with EIO.
    pub eio_probability: f64,
    /// At power loss, a file's unsynced data may survive as a random prefix.
    pub torn_prefix: bool,
    /// At power loss, a random subset of a file's unsynced sectors may survive.
    pub reorder_sectors: bool,
    /// A torn sector holds random garbage (else zeros).
    pub garbage_in_torn_sectors: bool,
    /// At power loss, directory entries not covered by a directory fsync are lost.
    pub lose_unsynced_dir_entries: bool,
    /// A read of more than one page copies the pages before a random page
    /// boundary, waits, then copies the rest as it is by then: as a
    /// kernel copies a read page by page, a read racing with writes may
    /// see a later write and miss an earlier one.
    pub split_reads: bool,
}

impl Default for SimDiskConfig {
    fn default() -> Self {
        SimDiskConfig {
            capacity_bytes: u64::MAX,
            read_latency_mean: Duration::ZERO,
            write_latency_mean: Duration::ZERO,
            sync_latency_mean: Duration::ZERO,
            eio_probability: 0.0,
            torn_prefix: false,
            reorder_sectors: false,
            garbage_in_torn_sectors: false,
            lose_unsynced_dir_entries: false,
            split_reads: false,
        }
    }
}

impl SimDiskConfig {
    /// Every power-loss fault on (torn prefixes, reordering, garbage, lost
    /// directory entries); no EIO, no latency, unlimited capacity.
    pub fn power_faults() -> Self {
        SimDiskConfig {
            torn_prefix: true,
            reorder_sectors: true,
            garbage_in_torn_sectors: true,
            lose_unsynced_dir_entries: true,
            ..Self::default()
        }
    }
}

/// How often each fault and each modelled event happened (coverage counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Successful writes.
    pub writes: u64,
    /// Successful reads.
    pub reads: u64,
    /// Reads split in two at a page boundary, with a wait between.
    pub reads_split: u64,
    /// Successful fsync/fdatasync calls.
    pub syncs: u64,
    /// Successful directory fsyncs.
    pub dir_syncs: u64,
    /// Process crashes (page cache kept).
    pub process_crashes: u64,
    /// Power losses.
    pub power_losses: u64,
    /// Files whose unsynced data was dropped whole at a power loss.
    pub files_unsynced_dropped: u64,
    /// Files whose unsynced data survived as a random prefix.
    pub files_torn_prefix: u64,
    /// Files whose unsynced sectors survived as a random subset.
    pub files_reordered: u64,
    /// Torn sectors filled with garbage.
    pub torn_sectors_garbage: u64,
    /// Torn sectors filled with zeros.
    pub torn_sectors_zeroed: u64,
    /// Unsynced bytes that did not survive a power loss.
    pub unsynced_bytes_lost: u64,
    /// Directory entries lost at power loss (not covered by a directory fsync).
    pub dir_entries_lost: u64,
    /// fsyncs failed with EIO.
    pub eio_injected: u64,
    /// Operations refused with ENOSPC.
    pub enospc: u64,
    /// Bits flipped in synced data.
    pub bit_flips: u64,
    /// Synced writes lost (range reverted to zeros).
    pub lost_writes: u64,
    /// Operations refused because their handle predates a crash.
    pub stale_handle_ops: u64,
    /// Operations delayed by simulated latency.
    pub latency_sleeps: u64,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see (the page cache).
    data: Vec<u8>,
    /// What survives a power loss.
    durable: Vec<u8>,
    /// Unsynced operations in issue order, with sequence numbers.
    pending: Vec<(u64, PendingOp)>,
    next_seq: u64,
}

fn apply(buf: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            grow_to(buf, end as u64);
            buf[start..end].copy_from_slice(bytes);
        }
        PendingOp::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

impl Inode {
    fn push(&mut self, op: PendingOp) {
        apply(&mut self.data, &op);
        self.pending.push((self.next_seq, op));
        self.next_seq += 1;
    }

    /// Applies (or, with `keep = false`, drops) every pending op with a
    /// sequence number below `upto` to the durable view.
    fn settle(&mut self, upto: u64, mut keep: impl FnMut() -> bool) {
        let n = self.pending.iter().take_while(|(s, _)| *s < upto).count();
        for (_, op) in self.pending.drain(..n) {
            if keep() {
                apply(&mut self.durable, &op);
            }
        }
    }
}

#[derive(Debug)]
struct State {
    rng: DetRng,
    cfg: SimDiskConfig,
    stats: SimDiskStats,
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory changes (creations, renames, removals) so far.
    name_changes: u64,
    /// Per directory, the count of changes its durable entries reflect: a
    /// directory sync never makes an older state durable over a newer one.
    durable_changes: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    fail_next_syncs: u32,
}

/// The in-memory, fault-injecting disk. Clones share the same disk.
///
/// Guarantees: every decision comes from the seed given to [`SimDisk::new`]
/// and the order of operations, so a simulation replays exactly.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// An open file of a [`SimDisk`]. Unusable (ESTALE) after a crash or power loss.
#[derive(Debug, Clone)]
pub struct SimFile {
    disk: SimDisk,
    inode: u64,
    generation: u64,
    path: Arc<PathBuf>,
}

#[derive(Clone, Copy)]
enum Lat {
    Read,
    Write,
    Sync,
}

/// The inode `path` names now (fault injection targets live files).
fn named_inode<'a>(st: &'a mut State, path: &Path) -> Result<&'a mut Inode> {
    let ino = *st
        .names
        .get(path)
        .ok_or_else(|| err(Op::Write, path, libc::ENOENT))?;
    st.inodes
        .get_mut(&ino)
        .ok_or_else(|| err(Op::Write, path, libc::ENOENT))
}

fn err(op: Op, path: &Path, errno: i32) -> Error {
    Error::io(op, path, io::Error::from_raw_os_error(errno))
}

/// Extends `out` with zeros to `end` bytes if it is shorter: a write
/// past a file's end, or a torn sector past the end of what survived.
fn grow_to(out: &mut Vec<u8>, end: u64) {
    if (out.len() as u64) < end {
        out.resize(end as usize, 0);
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new(""))
}

/// The size of the page a read copies at once (see [`SimDiskConfig::split_reads`]).
const PAGE: u64 = 4096;

impl State {
    /// Where a read of `len` bytes at `offset` is split (bytes into the
    /// read), if reads split and it spans a page boundary.
    fn read_cut(&mut self, offset: u64, len: usize) -> Option<usize> {
        if !self.cfg.split_reads || len == 0 {
            return None;
        }
        let end = offset.saturating_add(len as u64);
        let boundaries = (end - 1) / PAGE - offset / PAGE;
        if boundaries == 0 {
            return None;
        }
        let first = (offset / PAGE + 1) * PAGE;
        let at = first + self.rng.below(boundaries) * PAGE;
        self.stats.reads_split += 1;
        usize::try_from(at - offset).ok()
    }

    /// Copies what inode `ino` holds at `offset` into `buf`; returns how
    /// many bytes (fewer only at the end of the file).
    fn copy_out(&self, ino: u64, offset: u64, buf: &mut [u8]) -> usize {
        let data = self.inodes.get(&ino).map_or(&[][..], |n| &n.data[..]);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        n
    }

    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        live.iter()
            .filter_map(|i| self.inodes.get(i))
            .map(|n| n.data.len() as u64)
            .sum()
    }

    fn check_space(&mut self, op: Op, path: &Path, old_len: u64, new_len: u64) -> Result<()> {
        if new_len <= old_len {
            return Ok(());
        }
        let used = self.used_bytes();
        if used.saturating_add(new_len - old_len) > self.cfg.capacity_bytes {
            self.stats.enospc += 1;
            return Err(err(op, path, libc::ENOSPC));
        }
        Ok(())
    }

    fn gc(&mut self) {
        let live: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|i, _| live.contains(i));
    }

    fn fill_torn(&mut self, buf: &mut [u8]) {
        if self.cfg.garbage_in_torn_sectors && self.rng.chance(0.5) {
            self.rng.fill(buf);
            self.stats.torn_sectors_garbage += 1;
        } else {
            buf.fill(0);
            self.stats.torn_sectors_zeroed += 1;
        }
    }

    /// Tears the sector containing `offset` in `buf` (the whole sector, as a
    /// device without sector atomicity would).
    fn tear_sector(&mut self, buf: &mut [u8], offset: u64) {
        let start = (offset / SECTOR * SECTOR) as usize;
        let end = (start + SECTOR as usize).min(buf.len());
        if start < end {
            let mut tmp = buf[start..end].to_vec();
            self.fill_torn(&mut tmp);
            buf[start..end].copy_from_slice(&tmp);
        }
    }

    fn power_loss_file(&mut self, ino: u64) {
        let Some(node) = self.inodes.get_mut(&ino) else {
            return;
        };
        if node.pending.is_empty() {
            node.data = node.durable.clone();
            return;
        }
        let pending = std::mem::take(&mut node.pending);
        let mut out = std::mem::take(&mut node.durable);
        // Split every write into sector pieces: the unit that survives or not.
        let mut pieces: Vec<PendingOp> = Vec::new();
        for (_, op) in pending {
            match op {
                PendingOp::Write { offset, bytes } => {
                    let mut pos = 0usize;
                    while pos < bytes.len() {
                        let off = offset + pos as u64;
                        let room = (SECTOR - off % SECTOR) as usize;
                        let n = room.min(bytes.len() - pos);
                        pieces.push(PendingOp::Write {
                            offset: off,
                            bytes: bytes[pos..pos + n].to_vec(),
                        });
                        pos += n;
                    }
                }
                other => pieces.push(other),
            }
        }
        let total: u64 = pieces
            .iter()
            .map(|p| match p {
                PendingOp::Write { bytes, .. } => bytes.len() as u64,
                PendingOp::SetLen(_) => 0,
            })
            .sum();
        let mut modes = vec![0u8];
        if self.cfg.torn_prefix {
            modes.push(1);
        }
        if self.cfg.reorder_sectors {
            modes.push(2);
        }
        let mode = modes[self.rng.below(modes.len() as u64) as usize];
        let mut kept = 0u64;
        match mode {
            1 => {
                self.stats.files_torn_prefix += 1;
                let cut = self.rng.below(pieces.len() as u64 + 1) as usize;
                for p in &pieces[..cut] {
                    apply(&mut out, p);
                    if let PendingOp::Write { bytes, .. } = p {
                        kept += bytes.len() as u64;
                    }
                }
                if let Some(PendingOp::Write { offset, bytes }) = pieces.get(cut) {
                    if self.rng.chance(0.5) {
                        grow_to(&mut out, *offset + bytes.len() as u64);
                        self.tear_sector(&mut out, *offset);
                    }
                }
            }
            2 => {
                self.stats.files_reordered += 1;
                for p in &pieces {
                    if self.rng.chance(0.5) {
                        apply(&mut out, p);
                        if let PendingOp::Write { bytes, .. } = p {
                            kept += bytes.len() as u64;
                        }
                    } else if let PendingOp::Write { offset, bytes } = p {
                        if self.rng.chance(0.25) {
                            grow_to(&mut out, *offset + bytes.len() as u64);
                            self.tear_sector(&mut out, *offset);
                        }
                    }
                }
            }
            _ => self.stats.files_unsynced_dropped += 1,
        }
        self.stats.unsynced_bytes_lost += total - kept;
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.data = out.clone();
            node.durable = out;
        }
    }
}

impl SimDisk {
    /// An empty disk whose every random choice derives from `seed`.
    pub fn new(seed: u64, cfg: SimDiskConfig) -> Self {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                rng: DetRng::new(seed),
                cfg,
                stats: SimDiskStats::default(),
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                name_changes: 0,
                durable_changes: BTreeMap::new(),
                dirs: BTreeSet::new(),
                fail_next_syncs: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the model consistent enough
        // to inspect: every mutation is applied in one step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The coverage counters so far.
    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats.clone()
    }

    /// The current fault configuration.
    pub fn config(&self) -> SimDiskConfig {
        self.lock().cfg.clone()
    }

    /// Replaces the fault configuration (e.g. to stop faults at the end of a run).
    pub fn set_config(&self, cfg: SimDiskConfig) {
        self.lock().cfg = cfg;
    }

    /// Sets the capacity (ENOSPC beyond it).
    pub fn set_capacity(&self, bytes: u64) {
        self.lock().cfg.capacity_bytes = bytes;
    }

    /// Bytes in use by the files that currently have a name.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// Makes the next `n` fsync/fdatasync calls fail with EIO (after which the
    /// pages they covered count as clean, each sector on disk or not at random).
    pub fn fail_next_syncs(&self, n: u32) {
        self.lock().fail_next_syncs = n;
    }

    /// The process dies: unsynced data stays in the page cache (later reads
    /// see it), every open handle becomes unusable.
    pub fn crash_process(&self) {
        let mut st = self.lock();
        st.generation += 1;
        st.stats.process_crashes += 1;
    }

    /// The power fails: the model of the module docs is applied to every
    /// file, unsynced directory entries are lost (if configured), and every
    /// open handle becomes unusable.
    pub fn power_loss(&self) {
        let mut st = self.lock();
        st.generation += 1;
        st.stats.power_losses += 1;
        let inodes: Vec<u64> = st.inodes.keys().copied().collect();
        for ino in inodes {
            st.power_loss_file(ino);
        }
        if st.cfg.lose_unsynced_dir_entries {
            let lost = st
                .names
                .iter()
                .filter(|(p, i)| st.durable_names.get(*p) != Some(i))
                .count() as u64;
            st.stats.dir_entries_lost += lost;
            st.names = st.durable_names.clone();
        } else {
            st.durable_names = st.names.clone();
        }
        st.gc();
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` of `path`, in the page
    /// cache and on the platter alike (bit rot in synced data).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<()> {
        let mut st = self.lock();
        let node = named_inode(&mut st, path)?;
        let o = offset as usize;
        if o >= node.data.len() || o >= node.durable.len() {
            return Err(err(Op::Write, path, libc::EINVAL));
        }
        node.data[o] ^= 1 << (bit % 8);
        node.durable[o] ^= 1 << (bit % 8);
        st.stats.bit_flips += 1;
        Ok(())
    }

    /// A write of `len` bytes at `offset` that was acknowledged but never
    /// reached the platter: the range reads back as zeros (what a
    /// preallocated file held before).
    pub fn lose_write(&self, path: &Path, offset: u64, len: u64) -> Result<()> {
        let mut st = self.lock();
        let node = named_inode(&mut st, path)?;
        for buf in [&mut node.data, &mut node.durable] {
            let end = ((offset + len) as usize).min(buf.len());
            let start = (offset as usize).min(end);
            buf[start..end].fill(0);
        }
        st.stats.lost_writes += 1;
        Ok(())
    }

    /// Writes `bytes` at `offset` of `path` straight to the page cache and the
    /// platter alike, outside the fault model: no latency, no EIO (neither a
    /// random one nor one armed by [`SimDisk::fail_next_syncs`]), nothing
    /// left unsynced for a power loss to tear. It models an operator
    /// restoring a range from a replica, and undoes [`SimDisk::lose_write`]
    /// exactly. (A restore through `write_at` + `sync_data` could itself hit
    /// an injected EIO, leaving the restored bytes in the page cache only.)
    pub fn restore_write(&self, path: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut st = self.lock();
        let node = named_inode(&mut st, path)?;
        let op = PendingOp::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        apply(&mut node.data, &op);
        apply(&mut node.durable, &op);
        Ok(())
    }

    /// The bytes of `path` that would survive a power loss with nothing
    /// unsynced kept (its durable view), if the file has a durable name.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.durable_names.get(path)?;
        st.inodes.get(ino).map(|n| n.durable.clone())
    }

    /// Total bytes written but not yet synced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        let st = self.lock();
        st.inodes
            .values()
            .flat_map(|n| n.pending.iter())
            .map(|(_, op)| match op {
                PendingOp::Write { bytes, .. } => bytes.len() as u64,
                PendingOp::SetLen(_) => 0,
            })
            .sum()
    }

    async fn delay(&self, kind: Lat) {
        let d = {
            let mut st = self.lock();
            let mean = match kind {
                Lat::Read => st.cfg.read_latency_mean,
                Lat::Write => st.cfg.write_latency_mean,
                Lat::Sync => st.cfg.sync_latency_mean,
            };
            if mean.is_zero() {
                return;
            }
            st.stats.latency_sleeps += 1;
            Duration::from_secs_f64(st.rng.exponential(mean.as_secs_f64()))
        };
        tokio::time::sleep(d).await;
    }

    /// The wait inside a split read: long enough, on average, for a
    /// writer to land a couple of writes.
    async fn read_gap(&self) {
        let d = {
            let mut st = self.lock();
            let mean = 2.0 * st.cfg.write_latency_mean.as_secs_f64() + 20e-6;
            Duration::from_secs_f64(st.rng.exponential(mean))
        };
        tokio::time::sleep(d).await;
    }

    fn open_handle(&self, st: &State, ino: u64, path: &Path) -> SimFile {
        SimFile {
            disk: self.clone(),
            inode: ino,
            generation: st.generation,
            path: Arc::new(path.to_path_buf()),
        }
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn create(&self, path: &Path) -> Result<SimFile> {
        self.delay(Lat::Write).await;
        let mut st = self.lock();
        if !st.dirs.contains(parent(path)) {
            return Err(err(Op::Create, path, libc::ENOENT));
        }
        let ino = if let Some(&ino) = st.names.get(path) {
            if let Some(node) = st.inodes.get_mut(&ino) {
                node.push(PendingOp::SetLen(0));
            }
            ino
        } else {
            let ino = st.next_inode;
            st.next_inode += 1;
            st.inodes.insert(ino, Inode::default());
            st.names.insert(path.to_path_buf(), ino);
            st.name_changes += 1;
            ino
        };
        Ok(self.open_handle(&st, ino, path))
    }

    async fn open(&self, path: &Path) -> Result<SimFile> {
        self.delay(Lat::Read).await;
        let st = self.lock();
        let ino = *st
            .names
            .get(path)
            .ok_or_else(|| err(Op::Open, path, libc::ENOENT))?;
        Ok(self.open_handle(&st, ino, path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.delay(Lat::Write).await;
        let mut st = self.lock();
        if !st.dirs.contains(parent(to)) {
            return Err(err(Op::Rename, to, libc::ENOENT));
        }
        let ino = st
            .names
            .remove(from)
            .ok_or_else(|| err(Op::Rename, from, libc::ENOENT))?;
        st.names.insert(to.to_path_buf(), ino);
        st.name_changes += 1;
        st.gc();
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.delay(Lat::Write).await;
        let mut st = self.lock();
        st.names
            .remove(path)
            .ok_or_else(|| err(Op::Remove, path, libc::ENOENT))?;
        st.name_changes += 1;
        st.gc();
        Ok(())
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.delay(Lat::Read).await;
        let st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(err(Op::List, dir, libc::ENOENT));
        }
        Ok(st
            .names
            .keys()
            .filter(|p| parent(p) == dir)
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let (mut entries, generation, changes) = {
            let st = self.lock();
            if !st.dirs.contains(dir) {
                return Err(err(Op::SyncDir, dir, libc::ENOENT));
            }
            let entries: Vec<(PathBuf, u64)> = st
                .names
                .iter()
                .filter(|(p, _)| parent(p) == dir)
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            (entries, st.generation, st.name_changes)
        };
        self.delay(Lat::Sync).await;
        let mut st = self.lock();
        if st.generation != generation {
            st.stats.stale_handle_ops += 1;
            return Err(err(Op::SyncDir, dir, libc::ESTALE));
        }
        // A file removed meanwhile, whose inode a later directory sync let
        // go, must not come back as a name without a file.
        entries.retain(|(_, i)| st.inodes.contains_key(i));
        // A sync that began later and finished first made a newer state
        // durable; this one's older view must not replace it.
        if st.durable_changes.get(dir).is_none_or(|&c| c <= changes) {
            st.durable_names.retain(|p, _| parent(p) != dir);
            st.durable_names.extend(entries);
            st.durable_changes.insert(dir.to_path_buf(), changes);
        }
        st.stats.dir_syncs += 1;
        st.gc();
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut st = self.lock();
        let mut d = Some(dir);
        while let Some(p) = d {
            st.dirs.insert(p.to_path_buf());
            d = p.parent();
        }
        st.dirs.insert(PathBuf::new());
        Ok(())
    }

    async fn free_space(&self, _dir: &Path) -> Result<u64> {
        let st = self.lock();
        Ok(st.cfg.capacity_bytes.saturating_sub(st.used_bytes()))
    }
}

impl SimFile {
    /// Runs `f` on the file's inode if the handle is still valid.
    fn with<T>(&self, op: Op, f: impl FnOnce(&mut State, u64) -> Result<T>) -> Result<T> {
        let mut st = self.disk.lock();
        if st.generation != self.generation {
            st.stats.stale_handle_ops += 1;
            return Err(err(op, &self.path, libc::ESTALE));
        }
        if !st.inodes.contains_key(&self.inode) {
            return Err(err(op, &self.path, libc::ENOENT));
        }
        f(&mut st, self.inode)
    }

    async fn sync(&self, op: Op) -> Result<()> {
        let upto = self.with(op, |st, ino| {
            Ok(st.inodes.get(&ino).map_or(0, |n| n.next_seq))
        })?;
        self.disk.delay(Lat::Sync).await;
        self.with(op, |st, ino| {
            let eio = if st.fail_next_syncs > 0 {
                st.fail_next_syncs -= 1;
                true
            } else {
                let p = st.cfg.eio_probability;
                st.rng.chance(p)
            };
            let State { inodes, rng, .. } = st;
            let Some(node) = inodes.get_mut(&ino) else {
                return Err(err(op, &self.path, libc::ENOENT));
            };
            if eio {
                // The kernel marks the pages clean: each op did or did not land.
                node.settle(upto, || rng.chance(0.5));
                st.stats.eio_injected += 1;
                Err(err(op, &self.path, libc::EIO))
            } else {
                node.settle(upto, || true);
                st.stats.syncs += 1;
                Ok(())
            }
        })
    }
}

impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.disk.delay(Lat::Write).await;
        self.with(Op::Write, |st, ino| {
            let old = st.inodes.get(&ino).map_or(0, |n| n.data.len() as u64);
            st.check_space(Op::Write, &self.path, old, offset + buf.len() as u64)?;
            if let Some(node) = st.inodes.get_mut(&ino) {
                node.push(PendingOp::Write {
                    offset,
                    bytes: buf.to_vec(),
                });
            }
            st.stats.writes += 1;
            Ok(())
        })
    }

    async fn read_at(&self, offset: u64, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        self.disk.delay(Lat::Read).await;
        // The pages before the cut (all of them, unsplit) now; the rest, if
        // the file reaches it, after a wait.
        let len = buf.len();
        let (cut, mut n) = self.with(Op::Read, |st, ino| {
            let cut = st.read_cut(offset, len).unwrap_or(len);
            Ok((cut, st.copy_out(ino, offset, &mut buf[..cut])))
        })?;
        if n == cut && cut < len {
            self.disk.read_gap().await;
            let rest = offset + cut as u64;
            n += self.with(Op::Read, |st, ino| {
                Ok(st.copy_out(ino, rest, &mut buf[cut..]))
            })?;
        }
        buf.truncate(n);
        self.with(Op::Read, |st, _| {
            st.stats.reads += 1;
            Ok(())
        })?;
        Ok(buf)
    }

    async fn size(&self) -> Result<u64> {
        self.with(Op::Len, |st, ino| {
            Ok(st.inodes.get(&ino).map_or(0, |n| n.data.len() as u64))
        })
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.disk.delay(Lat::Write).await;
        self.with(Op::SetLen, |st, ino| {
            let old = st.inodes.get(&ino).map_or(0, |n| n.data.len() as u64);
            st.check_space(Op::SetLen, &self.path, old, len)?;
            if let Some(node) = st.inodes.get_mut(&ino) {
                node.push(PendingOp::SetLen(len));
            }
            Ok(())
        })
    }

    async fn allocate(&self, len: u64) -> Result<()> {
        self.disk.delay(Lat::Write).await;
        self.with(Op::Allocate, |st, ino| {
            let old = st.inodes.get(&ino).map_or(0, |n| n.data.len() as u64);
            st.check_space(Op::Allocate, &self.path, old, len)?;
            if len > old {
                if let Some(node) = st.inodes.get_mut(&ino) {
                    node.push(PendingOp::SetLen(len));
                }
            }
            Ok(())
        })
    }

    async fn sync_data(&self) -> Result<()> {
        self.sync(Op::SyncData).await
    }

    async fn sync_all(&self) -> Result<()> {
        self.sync(Op::SyncAll).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_runtime::block_on_paused as block_on;

    /// The sectors of the one write [`unsynced_write_then_power_loss`] makes.
    const SECTORS: usize = 8;
    /// The byte that write fills them with.
    const WRITTEN: u8 = 0xab;

    /// Writes [`SECTORS`] sectors of [`WRITTEN`] to a new file of a disk
    /// with `cfg`, never syncs them, and cuts the power: what the file then
    /// holds, and the disk's counters.
    fn unsynced_write_then_power_loss(seed: u64, cfg: SimDiskConfig) -> (Vec<u8>, SimDiskStats) {
        block_on(async {
            let disk = SimDisk::new(seed, cfg);
            let dir = Path::new("/d");
            let path = dir.join("f");
            disk.create_dir_all(dir)
                .await
                .expect("create the directory");
            let f = disk.create(&path).await.expect("create the file");
            let bytes = vec![WRITTEN; SECTORS * SECTOR as usize];
            f.write_at(0, &bytes).await.expect("write");
            disk.power_loss();
            let left = disk.durable_contents(&path).expect("the name survives");
            (left, disk.stats())
        })
    }

    /// A new file `/d/f` on `disk` (its directory made, nothing synced).
    async fn file_in_d(disk: &SimDisk) -> SimFile {
        disk.create_dir_all(Path::new("/d")).await.expect("mkdir");
        disk.create(Path::new("/d/f")).await.expect("create")
    }

    /// Torn prefixes and reordered sectors on a power loss, no garbage.
    fn tearing() -> SimDiskConfig {
        SimDiskConfig {
            torn_prefix: true,
            reorder_sectors: true,
            ..SimDiskConfig::default()
        }
    }

    /// How many sectors of `left` hold the write whole.
    fn sectors_kept(left: &[u8]) -> usize {
        left.chunks(SECTOR as usize)
            .filter(|s| s.len() == SECTOR as usize && s.iter().all(|&b| b == WRITTEN))
            .count()
    }

    #[test]
    fn torn_sectors_hold_zeros_when_garbage_is_not_configured() {
        let cfg = tearing();
        let mut zeroed = 0;
        for seed in 0..32 {
            let (left, stats) = unsynced_write_then_power_loss(seed, cfg.clone());
            for sector in left.chunks(SECTOR as usize) {
                let whole = sector.iter().all(|&b| b == WRITTEN);
                let zeros = sector.iter().all(|&b| b == 0);
                assert!(whole || zeros, "seed {seed}: a sector of {sector:?}");
            }
            assert_eq!(stats.torn_sectors_garbage, 0, "seed {seed}");
            zeroed += stats.torn_sectors_zeroed;
        }
        assert!(zeroed > 0, "no seed tore a sector");
    }

    #[test]
    fn a_power_loss_counts_as_lost_exactly_the_sectors_that_did_not_survive() {
        let cfg = tearing();
        let (mut reordered_partly, mut torn_partly) = (false, false);
        for seed in 0..32 {
            let (left, stats) = unsynced_write_then_power_loss(seed, cfg.clone());
            let kept = sectors_kept(&left);
            let lost = ((SECTORS - kept) as u64) * SECTOR;
            assert_eq!(stats.unsynced_bytes_lost, lost, "seed {seed}: {stats:?}");
            let partly = (1..SECTORS).contains(&kept);
            reordered_partly |= partly && stats.files_reordered == 1;
            torn_partly |= partly && stats.files_torn_prefix == 1;
        }
        assert!(
            reordered_partly && torn_partly,
            "no seed kept only some sectors in both modes"
        );
    }

    #[test]
    fn a_torn_prefix_keeps_the_first_sectors_anywhere_from_none_to_all() {
        let cfg = SimDiskConfig {
            torn_prefix: true,
            ..SimDiskConfig::default()
        };
        let mut prefixes = BTreeSet::new();
        for seed in 0..64 {
            let (left, stats) = unsynced_write_then_power_loss(seed, cfg.clone());
            if stats.files_torn_prefix == 0 {
                continue;
            }
            let kept = sectors_kept(&left);
            let rest = &left[(kept * SECTOR as usize).min(left.len())..];
            assert!(rest.iter().all(|&b| b == 0), "seed {seed}: not a prefix");
            prefixes.insert(kept);
        }
        assert!(
            prefixes.contains(&0) && prefixes.contains(&SECTORS),
            "{prefixes:?}"
        );
    }

    #[test]
    fn the_counters_count_each_operation_once() {
        let stats = block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let dir = Path::new("/d");
            let path = dir.join("f");
            disk.create_dir_all(dir)
                .await
                .expect("create the directory");
            let f = disk.create(&path).await.expect("create the file");
            for at in [0, 100, 200] {
                f.write_at(at, &[1; 100]).await.expect("write");
            }
            for _ in 0..2 {
                f.read_at(0, vec![0; 10]).await.expect("read");
            }
            f.sync_data().await.expect("sync");
            disk.sync_dir(dir).await.expect("sync the directory");
            disk.flip_bit(&path, 5, 0).expect("flip a bit");
            disk.lose_write(&path, 0, 10).expect("lose a write");
            disk.set_capacity(300);
            assert!(
                f.write_at(300, &[1]).await.is_err(),
                "a write past the capacity"
            );
            disk.set_capacity(u64::MAX);
            disk.fail_next_syncs(1);
            f.write_at(0, &[2]).await.expect("write");
            assert!(f.sync_data().await.is_err(), "an armed EIO");
            disk.crash_process();
            assert!(
                f.write_at(0, &[3]).await.is_err(),
                "a handle from before the crash"
            );
            let g = disk.open(&path).await.expect("reopen");
            g.write_at(0, &[4; 10]).await.expect("write");
            disk.power_loss();
            disk.stats()
        });
        let expected = SimDiskStats {
            writes: 5,
            reads: 2,
            syncs: 1,
            dir_syncs: 1,
            process_crashes: 1,
            power_losses: 1,
            files_unsynced_dropped: 1,
            unsynced_bytes_lost: 10,
            eio_injected: 1,
            enospc: 1,
            bit_flips: 1,
            lost_writes: 1,
            stale_handle_ops: 1,
            ..SimDiskStats::default()
        };
        assert_eq!(stats, expected);
    }

    /// A read of two pages is split at the page boundary: writes that land
    /// during the wait show in the second page and not in the first, as a
    /// kernel's page-by-page copy racing with a writer can show them.
    #[test]
    fn a_split_read_racing_with_writes_sees_the_later_write_and_misses_the_earlier() {
        let (read, stats) = block_on(async {
            let cfg = SimDiskConfig {
                split_reads: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(1, cfg);
            let f = file_in_d(&disk).await;
            f.write_at(0, &[0; 2 * PAGE as usize]).await.expect("write");
            let reader = f.clone();
            let read =
                tokio::spawn(async move { reader.read_at(0, vec![0; 2 * PAGE as usize]).await });
            tokio::task::yield_now().await; // the reader copies the first page, then waits
            f.write_at(0, &[1]).await.expect("the earlier write");
            f.write_at(PAGE, &[2]).await.expect("the later write");
            let read = read.await.expect("the reader").expect("read");
            (read, disk.stats())
        });
        assert_eq!(read.len(), 2 * PAGE as usize);
        assert_eq!((read[0], read[PAGE as usize]), (0, 2));
        assert_eq!((stats.reads, stats.reads_split), (1, 1));
        let whole = block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let f = file_in_d(&disk).await;
            f.write_at(0, &[7; 3 * PAGE as usize]).await.expect("write");
            f.read_at(10, vec![0; PAGE as usize]).await.expect("read");
            disk.stats()
        });
        assert_eq!(
            (whole.reads, whole.reads_split),
            (1, 0),
            "not split unless configured"
        );
    }

    #[test]
    fn a_directory_sync_across_a_crash_fails_stale_and_is_counted() {
        block_on(async {
            let cfg = SimDiskConfig {
                sync_latency_mean: Duration::from_millis(1),
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(1, cfg);
            let dir = Path::new("/d");
            disk.create_dir_all(dir)
                .await
                .expect("create the directory");
            disk.create(&dir.join("f")).await.expect("create the file");
            let syncing = tokio::spawn({
                let disk = disk.clone();
                async move { disk.sync_dir(Path::new("/d")).await }
            });
            tokio::task::yield_now().await; // the sync is now in its latency
            disk.crash_process();
            let result = syncing.await.expect("the sync's task");
            assert!(
                matches!(&result, Err(Error::Io { op: Op::SyncDir, source, .. })
                    if source.raw_os_error() == Some(libc::ESTALE)),
                "{result:?}"
            );
            let stats = disk.stats();
            assert_eq!((stats.stale_handle_ops, stats.dir_syncs), (1, 0));
        });
    }

    #[test]
    fn a_bit_flip_changes_exactly_that_bit_of_synced_bytes_and_nothing_unsynced() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let path = Path::new("/d/f");
            let f = file_in_d(&disk).await;
            disk.sync_dir(Path::new("/d")).await.expect("sync the name");
            f.write_at(0, &[0b1010_1010; 8]).await.expect("write");
            f.sync_data().await.expect("sync");
            f.write_at(8, &[0; 8]).await.expect("write, not synced");
            disk.flip_bit(path, 2, 3).expect("flip");
            let durable = disk.durable_contents(path).expect("durable");
            assert_eq!(durable[2], 0b1010_0010);
            let read = f.read_at(0, vec![0; 8]).await.expect("read");
            assert_eq!(read[2], 0b1010_0010);
            assert!(
                durable
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| i == 2 || b == 0b1010_1010)
            );
            // Unsynced bytes are not on the platter yet: nothing to flip.
            assert!(disk.flip_bit(path, 10, 0).is_err());
            assert!(disk.flip_bit(path, 16, 0).is_err());
        });
    }

    #[test]
    fn a_lost_write_zeroes_exactly_its_range() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let path = Path::new("/d/f");
            let f = file_in_d(&disk).await;
            disk.sync_dir(Path::new("/d")).await.expect("sync the name");
            f.write_at(0, &[9; 300]).await.expect("write");
            f.sync_data().await.expect("sync");
            disk.lose_write(path, 100, 50).expect("lose");
            let durable = disk.durable_contents(path).expect("durable");
            let zeros: Vec<usize> = (0..300).filter(|&i| durable[i] == 0).collect();
            assert_eq!(zeros, (100..150).collect::<Vec<_>>());
            assert_eq!(f.read_at(0, vec![0; 300]).await.expect("read"), durable);
        });
    }

    #[test]
    fn a_new_configuration_takes_effect_at_once() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            assert_eq!(disk.config(), SimDiskConfig::default());
            let failing = SimDiskConfig {
                eio_probability: 1.0,
                ..SimDiskConfig::power_faults()
            };
            disk.set_config(failing.clone());
            assert_eq!(disk.config(), failing);
            let f = file_in_d(&disk).await;
            f.write_at(0, b"x").await.expect("write");
            assert!(f.sync_data().await.is_err(), "every sync fails now");
        });
    }

    #[test]
    fn space_and_unsynced_bytes_are_counted_per_named_file() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let f = file_in_d(&disk).await;
            let g = disk.create(Path::new("/d/g")).await.expect("create");
            f.write_at(0, &[1; 100]).await.expect("write");
            g.write_at(50, &[1; 10]).await.expect("write");
            assert_eq!((disk.used_bytes(), disk.unsynced_bytes()), (160, 110));
            f.sync_data().await.expect("sync");
            assert_eq!(disk.unsynced_bytes(), 10);
            disk.remove(Path::new("/d/f")).await.expect("remove");
            assert_eq!(disk.used_bytes(), 60);
            assert_eq!(
                disk.free_space(Path::new("/d")).await.expect("free"),
                u64::MAX - 60
            );
        });
    }

    #[test]
    fn growing_a_file_needs_room_only_for_what_it_adds() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            disk.set_capacity(250);
            let f = file_in_d(&disk).await;
            f.write_at(0, &[1; 100]).await.expect("write");
            f.write_at(100, &[1; 100]).await.expect("200 of 250 bytes");
            assert_eq!(disk.used_bytes(), 200);
            let full = f.write_at(200, &[1; 51]).await.expect_err("251 bytes");
            assert!(full.is_no_space(), "{full}");
            assert_eq!(disk.used_bytes(), 200, "the refused write took nothing");
        });
    }

    #[test]
    fn an_armed_eio_fails_that_many_syncs_then_syncs_work_again() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let f = file_in_d(&disk).await;
            disk.fail_next_syncs(2);
            assert!(f.sync_data().await.is_err());
            assert!(f.sync_all().await.is_err());
            f.sync_data().await.expect("the third sync works");
        });
    }

    #[test]
    fn handles_from_before_a_power_loss_are_stale() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let f = file_in_d(&disk).await;
            disk.power_loss();
            assert!(f.write_at(0, b"x").await.is_err());
            assert_eq!(disk.stats().stale_handle_ops, 1);
        });
    }

    #[test]
    fn a_directory_lists_and_syncs_only_its_own_files() {
        block_on(async {
            let cfg = SimDiskConfig {
                lose_unsynced_dir_entries: true,
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(1, cfg);
            for dir in ["/a", "/b"] {
                disk.create_dir_all(Path::new(dir)).await.expect("mkdir");
            }
            disk.create(Path::new("/a/1")).await.expect("create");
            disk.sync_dir(Path::new("/a")).await.expect("sync /a");
            disk.create(Path::new("/b/2")).await.expect("create");
            disk.sync_dir(Path::new("/b")).await.expect("sync /b");
            disk.create(Path::new("/b/3"))
                .await
                .expect("create, not synced");
            assert_eq!(disk.list(Path::new("/a")).await.expect("list"), ["1"]);
            assert_eq!(disk.list(Path::new("/b")).await.expect("list"), ["2", "3"]);
            disk.power_loss();
            assert_eq!(disk.stats().dir_entries_lost, 1);
            assert_eq!(disk.list(Path::new("/a")).await.expect("list"), ["1"]);
            assert_eq!(disk.list(Path::new("/b")).await.expect("list"), ["2"]);
            assert!(disk.list(Path::new("/c")).await.is_err());
        });
    }

    #[test]
    fn a_read_past_the_end_returns_only_the_bytes_the_file_holds() {
        block_on(async {
            let disk = SimDisk::new(1, SimDiskConfig::default());
            let f = file_in_d(&disk).await;
            f.write_at(0, b"0123456789").await.expect("write");
            assert_eq!(f.read_at(4, vec![0; 16]).await.expect("read"), b"456789");
            assert_eq!(f.read_at(8, vec![0; 1]).await.expect("read"), b"8");
            assert!(f.read_at(12, vec![0; 4]).await.expect("read").is_empty());
            f.set_len(4).await.expect("truncate");
            assert_eq!(f.size().await.expect("size"), 4);
        });
    }

    #[test]
    fn a_sync_makes_durable_only_what_was_written_before_it_began() {
        block_on(async {
            let cfg = SimDiskConfig {
                sync_latency_mean: Duration::from_millis(1),
                ..SimDiskConfig::default()
            };
            let disk = SimDisk::new(1, cfg);
            let path = Path::new("/d/f");
            let f = file_in_d(&disk).await;
            f.write_at(0, &[1; 512]).await.expect("write");
            let syncing = tokio::spawn({
                let f = f.clone();
                async move { f.sync_data().await }
            });
            tokio::task::yield_now().await; // the sync is now in its latency
            f.write_at(512, &[2; 512])
                .await
                .expect("write during the sync");
            syncing.await.expect("the sync's task").expect("sync");
            disk.power_loss();
            let left = disk.durable_contents(path).expect("the name survives");
            assert_eq!(left, [1; 512]);
        });
    }

    /// The byte [`overwrite_then_power_loss`] synced first.
    const OLD: u8 = 0x11;

    /// Syncs [`SECTORS`] sectors of [`OLD`] to a new file, overwrites
    /// `len` bytes at `offset` with [`WRITTEN`] without syncing, and cuts
    /// the power: what the file then holds, and the disk's counters.
    fn overwrite_then_power_loss(
        seed: u64,
        cfg: SimDiskConfig,
        offset: u64,
        len: usize,
    ) -> (Vec<u8>, SimDiskStats) {
        block_on(async {
            let disk = SimDisk::new(seed, cfg);
            let path = Path::new("/d/f");
            let f = file_in_d(&disk).await;
            f.write_at(0, &vec![OLD; SECTORS * SECTOR as usize])
                .await
                .expect("write");
            f.sync_data().await.expect("sync");
            f.write_at(offset, &vec![WRITTEN; len])
                .await
                .expect("write");
            disk.power_loss();
            let left = disk.durable_contents(path).expect("the name survives");
            (left, disk.stats())
        })
    }

    #[test]
    fn a_tear_destroys_exactly_one_sector_of_what_was_there() {
        let mut torn = 0;
        for seed in 0..32 {
            let cfg = SimDiskConfig {
                torn_prefix: true,
                reorder_sectors: true,
                ..SimDiskConfig::default()
            };
            let len = SECTORS * SECTOR as usize;
            let (left, stats) = overwrite_then_power_loss(seed, cfg, 0, len);
            assert_eq!(left.len(), len, "seed {seed}");
            let mut zeroed = 0;
            for sector in left.chunks(SECTOR as usize) {
                let all = |b: u8| sector.iter().all(|&x| x == b);
                assert!(
                    all(OLD) || all(WRITTEN) || all(0),
                    "seed {seed}: {sector:?}"
                );
                zeroed += u64::from(all(0));
            }
            assert_eq!(zeroed, stats.torn_sectors_zeroed, "seed {seed}");
            torn += zeroed;
        }
        assert!(torn > 0, "no seed tore a sector");
    }

    #[test]
    fn torn_sectors_hold_garbage_half_the_time_when_configured() {
        let (mut garbage, mut zeroed) = (0, 0);
        for seed in 0..32 {
            let len = SECTORS * SECTOR as usize;
            let cfg = SimDiskConfig {
                lose_unsynced_dir_entries: false,
                ..SimDiskConfig::power_faults()
            };
            let (left, stats) = overwrite_then_power_loss(seed, cfg, 0, len);
            let random = left
                .chunks(SECTOR as usize)
                .filter(|s| !s.iter().all(|&x| x == OLD || x == WRITTEN || x == 0))
                .count() as u64;
            assert_eq!(random, stats.torn_sectors_garbage, "seed {seed}");
            garbage += stats.torn_sectors_garbage;
            zeroed += stats.torn_sectors_zeroed;
        }
        assert!(
            garbage > 0 && zeroed > 0,
            "{garbage} garbage, {zeroed} zeroed"
        );
    }

    #[test]
    fn an_unaligned_write_survives_or_tears_by_whole_sectors() {
        let cfg = tearing();
        let (offset, len) = (100usize, 1000usize);
        let mut kinds = BTreeSet::new();
        for seed in 0..64 {
            let (left, _) = overwrite_then_power_loss(seed, cfg.clone(), offset as u64, len);
            for (i, sector) in left.chunks(SECTOR as usize).enumerate() {
                let start = i * SECTOR as usize;
                let new = |at: usize| (offset..offset + len).contains(&(start + at));
                let old_here = sector.iter().all(|&x| x == OLD);
                let new_here = sector
                    .iter()
                    .enumerate()
                    .all(|(at, &x)| x == if new(at) { WRITTEN } else { OLD });
                let torn = sector.iter().all(|&x| x == 0);
                assert!(old_here || new_here || torn, "seed {seed}, sector {i}");
                if (1..3).contains(&i) {
                    kinds.insert((i, new_here && !old_here));
                }
            }
        }
        // The sectors the write spans partly kept it, partly not.
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }

    #[test]
    fn a_power_loss_never_leaves_a_file_longer_than_what_was_written() {
        let cfg = tearing();
        let (mut torn_in_prefix, mut torn_in_reorder) = (false, false);
        for seed in 0..64 {
            let (left, stats) = unsynced_write_then_power_loss(seed, cfg.clone());
            assert!(left.len() <= SECTORS * SECTOR as usize, "seed {seed}");
            if stats.files_torn_prefix == 1 {
                // The kept sectors, then the torn one if any.
                let kept = sectors_kept(&left) as u64;
                let len = (kept + stats.torn_sectors_zeroed) * SECTOR;
                assert_eq!(left.len() as u64, len, "seed {seed}");
                torn_in_prefix |= stats.torn_sectors_zeroed > 0;
            }
            torn_in_reorder |= stats.files_reordered == 1 && stats.torn_sectors_zeroed > 0;
        }
        assert!(torn_in_prefix && torn_in_reorder);
    }
}
