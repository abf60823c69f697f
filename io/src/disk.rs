//! The `Disk` trait: the few file-system operations beaver's storage needs.
//!
//! Two implementations exist: [`crate::FileDisk`] (real files, Linux, not
//! compiled under `cfg(madsim)`) and [`crate::SimDisk`] (in memory, with
//! faults). Every method returns an [`Error`](crate::Error) naming the path and
//! the operation.

use std::future::Future;
use std::path::Path;

use crate::error::Result;

/// A file system holding beaver's data directory.
///
/// Guarantees expected of an implementation (the real one gives Linux's):
/// - data written with [`DiskFile::write_at`] is durable only after a later
///   [`DiskFile::sync_data`] on that file returned `Ok`;
/// - a created, renamed or removed directory entry is durable only after a
///   later [`Disk::sync_dir`] on its directory returned `Ok`;
/// - [`Disk::rename`] is atomic: the target names either the old or the new
///   file, never neither.
pub trait Disk: Clone + Send + Sync + 'static {
    /// An open file.
    type File: DiskFile;

    /// A handle for a thread that does nothing but this storage's I/O: its
    /// blocking calls may run inline instead of hopping to a thread pool.
    /// Use it only where blocking the calling thread blocks nothing else.
    fn dedicated(&self) -> Self {
        self.clone()
    }

    /// Creates `path` (truncating it if it exists) and opens it for reading and writing.
    fn create(&self, path: &Path) -> impl Future<Output = Result<Self::File>> + Send;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> impl Future<Output = Result<Self::File>> + Send;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = Result<()>> + Send;
    /// Removes a file.
    fn remove(&self, path: &Path) -> impl Future<Output = Result<()>> + Send;
    /// The names (not paths) of the regular files in `dir`, sorted.
    fn list(&self, dir: &Path) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> impl Future<Output = Result<()>> + Send;
    /// Creates a directory and its parents (no-op if it exists).
    fn create_dir_all(&self, dir: &Path) -> impl Future<Output = Result<()>> + Send;
    /// Bytes still available to an unprivileged writer on the file system of `dir`.
    fn free_space(&self, dir: &Path) -> impl Future<Output = Result<u64>> + Send;
}

/// An open file of a [`Disk`].
///
/// Handles are cheap to clone (they share the open file), so a sync can run
/// on one clone while another clone writes.
pub trait DiskFile: Clone + Send + Sync + 'static {
    /// The path the file was opened under (for error messages).
    fn path(&self) -> &Path;
    /// Writes all of `buf` at `offset` (page cache; not durable).
    fn write_at(&self, offset: u64, buf: &[u8]) -> impl Future<Output = Result<()>> + Send;
    /// Reads up to `buf.len()` bytes at `offset` into `buf`, returning the
    /// buffer truncated to what was read (shorter only at end of file).
    fn read_at(&self, offset: u64, buf: Vec<u8>) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// The file's current length in bytes.
    fn size(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Sets the file's length (truncating or extending with zeros).
    fn set_len(&self, len: u64) -> impl Future<Output = Result<()>> + Send;
    /// Reserves space so that writes below `len` cannot fail with ENOSPC,
    /// extending the file with zeros to at least `len`.
    fn allocate(&self, len: u64) -> impl Future<Output = Result<()>> + Send;
    /// fdatasync: the file's data (and the metadata needed to read it) is durable on `Ok`.
    fn sync_data(&self) -> impl Future<Output = Result<()>> + Send;
    /// fsync: data and all metadata durable on `Ok`.
    fn sync_all(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Reads the whole of `file` (`size` bytes, as its length said) into `buf`,
/// reusing `buf`'s allocation. A file too large to hold in memory is an
/// error naming it, never an abort: a damaged or foreign file's length
/// decides how much is asked for.
pub(crate) async fn read_whole<F: DiskFile>(
    file: &F,
    size: u64,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    let too_large = || {
        crate::Error::io(
            crate::Op::Read,
            file.path(),
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("the file is {size} bytes, more than this process can hold in memory"),
            ),
        )
    };
    let len = usize::try_from(size).map_err(|_| too_large())?;
    if len > buf.len() {
        buf.try_reserve_exact(len - buf.len())
            .map_err(|_| too_large())?;
    }
    // No re-zeroing of a reused buffer: the read overwrites it and
    // truncates it to what the file held.
    buf.resize(len, 0);
    file.read_at(0, buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Op};
    use crate::sim_disk::{SimDisk, SimDiskConfig};

    use crate::test_runtime::block_on;

    /// A simulated file holding `len` bytes counting up from 0 (mod 251).
    async fn file_of(len: usize) -> crate::SimFile {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        disk.create_dir_all(Path::new("/d")).await.expect("mkdir");
        let f = disk.create(Path::new("/d/f")).await.expect("create");
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        f.write_at(0, &bytes).await.expect("write");
        f
    }

    #[test]
    fn a_whole_file_is_read_into_exactly_its_length_of_memory() {
        block_on(async {
            let f = file_of(150).await;
            let got = read_whole(&f, 150, vec![9; 100]).await.expect("read");
            assert_eq!(got.len(), 150);
            assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
            assert_eq!(got.capacity(), 150, "reserved exactly what was missing");
        });
    }

    #[test]
    fn a_larger_buffer_is_reused_for_a_shorter_file() {
        block_on(async {
            let f = file_of(10).await;
            let got = read_whole(&f, 10, vec![9; 100]).await.expect("read");
            assert_eq!(got, (0..10).collect::<Vec<u8>>());
            assert_eq!(got.capacity(), 100);
        });
    }

    #[test]
    fn a_file_too_large_for_memory_is_an_error_naming_it() {
        block_on(async {
            let f = file_of(10).await;
            let r = read_whole(&f, u64::MAX, Vec::new()).await;
            assert!(
                matches!(&r, Err(Error::Io { op: Op::Read, path, source })
                    if path == Path::new("/d/f")
                        && source.kind() == std::io::ErrorKind::OutOfMemory),
                "{r:?}"
            );
        });
    }
}
