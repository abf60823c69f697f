//! A `Disk` that forwards to the `SimDisk` and records every WAL record
//! written (the shadow log), so the harness can fold the durable records
//! itself instead of trusting the engine's recovery.
//!
//! It only watches: no latency, no faults, no change to any byte. The one
//! exception is the planted bugs that are disk-level (with the `mutants`
//! feature, named by the node's [`TapDisk::planted`]): a failed fdatasync of
//! a WAL segment retried and its success believed, and the snapshot
//! directory's fsyncs skipped. They live here, beside the disk, not in the
//! storage code people read.

use std::path::Path;

use beaver_core::codec;
use beaver_io::wal::format::{SECTOR, SEGMENT_HEADER_LEN, SegmentHeader, decode_batch};
use beaver_io::{Disk, DiskFile, Result, SimDisk, SimFile};

use crate::world::Shared;

/// The tapped disk given to the engine.
#[derive(Debug, Clone)]
pub struct TapDisk {
    /// The disk underneath (shared with the harness).
    pub inner: SimDisk,
    /// Where the records go.
    pub world: Shared,
    /// The planted bug this node runs with, if any.
    #[cfg(feature = "mutants")]
    pub planted: Option<beaver_core::mutants::Mutant>,
}

/// A file of a [`TapDisk`].
#[derive(Debug, Clone)]
pub struct TapFile {
    inner: SimFile,
    world: Shared,
    wal: bool,
    #[cfg(feature = "mutants")]
    planted: Option<beaver_core::mutants::Mutant>,
}

fn is_wal(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("wal-") && n.ends_with(".seg"))
}

fn key(path: &Path) -> String {
    path.display().to_string()
}

impl TapDisk {
    fn wrap(&self, f: SimFile) -> TapFile {
        let wal = is_wal(f.path());
        TapFile {
            inner: f,
            world: self.world.clone(),
            wal,
            #[cfg(feature = "mutants")]
            planted: self.planted,
        }
    }

    /// The planted bug `skip-snapshot-dir-fsync`: a sync of the snapshot
    /// directory (after a rename or removal there) is skipped.
    fn skips_dir_sync(&self, dir: &Path) -> bool {
        #[cfg(feature = "mutants")]
        if self.planted == Some(beaver_core::mutants::Mutant::SkipSnapshotDirFsync) {
            return dir.file_name().is_some_and(|n| n == "snapshots");
        }
        let _ = dir;
        false
    }
}

impl Disk for TapDisk {
    type File = TapFile;

    async fn create(&self, path: &Path) -> Result<TapFile> {
        self.inner.create(path).await.map(|f| self.wrap(f))
    }
    async fn open(&self, path: &Path) -> Result<TapFile> {
        self.inner.open(path).await.map(|f| self.wrap(f))
    }
    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to).await
    }
    async fn remove(&self, path: &Path) -> Result<()> {
        let r = self.inner.remove(path).await;
        if r.is_ok() && is_wal(path) {
            let mut w = self.world.lock();
            w.mark("wal: segment deleted");
            w.dirty_wal.remove(&key(path));
            w.fresh_segments.remove(&key(path));
        }
        r
    }
    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.inner.list(dir).await
    }
    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        if self.skips_dir_sync(dir) {
            return Ok(());
        }
        self.inner.sync_dir(dir).await
    }
    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir).await
    }
    async fn free_space(&self, dir: &Path) -> Result<u64> {
        self.inner.free_space(dir).await
    }
}

impl TapFile {
    fn record_writes(&self, offset: u64, buf: &[u8]) {
        let mut w = self.world.lock();
        let k = key(self.inner.path());
        let mut at = 0usize;
        if offset == 0 && buf.len() as u64 >= SEGMENT_HEADER_LEN {
            if let Ok(h) = SegmentHeader::decode(buf) {
                w.salts.insert(k.clone(), h.salt);
                w.fresh_segments.insert(k.clone());
            }
            at = SEGMENT_HEADER_LEN as usize;
        }
        if buf.iter().all(|&b| b == 0) {
            return;
        }
        w.dirty_wal.insert(k.clone());
        let Some(&salt) = w.salts.get(&k) else { return };
        while at + 64 <= buf.len() {
            let mut records = Vec::new();
            match decode_batch(&buf[at..], salt, None, 0, |_, body| {
                records.push(codec::decode_record(body))
            }) {
                Ok(h) => {
                    for r in records.into_iter().flatten() {
                        w.shadow.insert(r.lsn, r);
                    }
                    at += h.framed_len() as usize;
                }
                Err(_) => at += SECTOR as usize,
            }
        }
    }

    /// The planted bug `retry-failed-fsync`: a failed fdatasync of a WAL
    /// segment is retried, and the retry's success believed (the pages the
    /// failure marked clean never reach the disk).
    fn retries_failed_sync(&self) -> bool {
        #[cfg(feature = "mutants")]
        if self.planted == Some(beaver_core::mutants::Mutant::RetryFailedFsync) {
            return self.wal;
        }
        false
    }

    fn synced(&self) {
        let mut w = self.world.lock();
        let k = key(self.inner.path());
        w.dirty_wal.remove(&k);
        w.fresh_segments.remove(&k);
    }
}

impl DiskFile for TapFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.inner.write_at(offset, buf).await?;
        if self.wal {
            self.record_writes(offset, buf);
        }
        Ok(())
    }
    async fn read_at(&self, offset: u64, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.inner.read_at(offset, buf).await
    }
    async fn size(&self) -> Result<u64> {
        self.inner.size().await
    }
    async fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len).await
    }
    async fn allocate(&self, len: u64) -> Result<()> {
        self.inner.allocate(len).await
    }
    async fn sync_data(&self) -> Result<()> {
        let r = self.inner.sync_data().await;
        let r = match r {
            Err(_) if self.retries_failed_sync() => self.inner.sync_data().await,
            r => r,
        };
        r?;
        if self.wal {
            self.synced();
        }
        Ok(())
    }
    async fn sync_all(&self) -> Result<()> {
        self.inner.sync_all().await?;
        if self.wal {
            self.synced();
        }
        Ok(())
    }
}
