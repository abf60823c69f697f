//! `FileDisk`: the real file system (Linux).
//!
//! Not compiled under `cfg(madsim)`: it uses real files and blocking threads.
//! Writes of small buffers go straight to the page cache with `pwrite` on the
//! calling task (a few microseconds, cheaper than a thread hop); `fdatasync`,
//! `fsync`, `fallocate` and reads go to `spawn_blocking` so a slow disk never
//! stalls the executor — except on a handle from [`Disk::dedicated`], meant
//! for a thread that does nothing but I/O (the WAL's), where every call runs
//! inline: two thread hops per fdatasync cost more than the fdatasync's own
//! wait on this kind of machine.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Op, Result};

/// The real disk. Cheap to clone; holds no state but its calling mode.
#[derive(Debug, Clone, Default)]
pub struct FileDisk {
    /// Run blocking calls on the calling thread (a dedicated I/O thread).
    inline: bool,
}

impl FileDisk {
    /// A handle on the real file system.
    pub fn new() -> Self {
        Self::default()
    }
}

/// An open real file. Clones share the file descriptor.
#[derive(Debug, Clone)]
pub struct RealFile {
    inner: Arc<RealInner>,
}

#[derive(Debug)]
struct RealInner {
    file: File,
    path: PathBuf,
    /// Opened through a dedicated handle: blocking calls run inline.
    inline: bool,
}

/// Runs a blocking closure on the blocking pool and maps a join failure to an
/// I/O error (the pool only fails when the runtime shuts down).
async fn blocking<T: Send + 'static>(
    inline: bool,
    op: Op,
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    if inline {
        return f().map_err(|e| Error::io(op, path, e));
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| Error::io(op, path, e)),
        Err(join) => Err(Error::io(op, path, io::Error::other(join.to_string()))),
    }
}

impl Disk for FileDisk {
    type File = RealFile;

    fn dedicated(&self) -> Self {
        FileDisk { inline: true }
    }

    async fn create(&self, path: &Path) -> Result<RealFile> {
        let p = path.to_path_buf();
        let file = blocking(self.inline, Op::Create, path, move || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
        })
        .await?;
        Ok(RealFile::new(file, path, self.inline))
    }

    async fn open(&self, path: &Path) -> Result<RealFile> {
        let p = path.to_path_buf();
        let file = blocking(self.inline, Op::Open, path, move || {
            OpenOptions::new().read(true).write(true).open(&p)
        })
        .await?;
        Ok(RealFile::new(file, path, self.inline))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        blocking(self.inline, Op::Rename, from, move || {
            std::fs::rename(&f, &t)
        })
        .await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        let p = path.to_path_buf();
        blocking(self.inline, Op::Remove, path, move || {
            std::fs::remove_file(&p)
        })
        .await
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let d = dir.to_path_buf();
        blocking(self.inline, Op::List, dir, move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let d = dir.to_path_buf();
        blocking(self.inline, Op::SyncDir, dir, move || {
            File::open(&d)?.sync_all()
        })
        .await
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let d = dir.to_path_buf();
        blocking(self.inline, Op::CreateDir, dir, move || {
            std::fs::create_dir_all(&d)
        })
        .await
    }

    async fn free_space(&self, dir: &Path) -> Result<u64> {
        let d = dir.to_path_buf();
        blocking(self.inline, Op::FreeSpace, dir, move || {
            statvfs_available(&d)
        })
        .await
    }
}

fn statvfs_available(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to writable
    // memory of the right size; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl RealFile {
    fn new(file: File, path: &Path, inline: bool) -> Self {
        RealFile {
            inner: Arc::new(RealInner {
                file,
                inline,
                path: path.to_path_buf(),
            }),
        }
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        op: Op,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        blocking(self.inner.inline, op, &self.inner.path, move || {
            f(&inner.file)
        })
        .await
    }
}

impl DiskFile for RealFile {
    fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        // Inline: a pwrite into the page cache costs less than a thread hop.
        self.inner
            .file
            .write_all_at(buf, offset)
            .map_err(|e| Error::io(Op::Write, &self.inner.path, e))
    }

    async fn read_at(&self, offset: u64, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        self.on_pool(Op::Read, move |f| {
            let mut done = 0;
            while done < buf.len() {
                match f.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(done);
            Ok(buf)
        })
        .await
    }

    async fn size(&self) -> Result<u64> {
        self.inner
            .file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(Op::Len, &self.inner.path, e))
    }

    async fn set_len(&self, len: u64) -> Result<()> {
        self.on_pool(Op::SetLen, move |f| f.set_len(len)).await
    }

    async fn allocate(&self, len: u64) -> Result<()> {
        self.on_pool(Op::Allocate, move |f| fallocate(f, len)).await
    }

    async fn sync_data(&self) -> Result<()> {
        self.on_pool(Op::SyncData, |f| f.sync_data()).await
    }

    async fn sync_all(&self) -> Result<()> {
        self.on_pool(Op::SyncAll, |f| f.sync_all()).await
    }
}

pub(crate) fn fallocate(f: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len_i = i64::try_from(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    loop {
        // SAFETY: plain syscall on a file descriptor we own for the call's duration.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len_i) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A file system without fallocate: extend with zeros instead
            // (ENOSPC then shows up on the first write that needs a block).
            Some(libc::EOPNOTSUPP) => {
                if f.metadata()?.len() < len {
                    f.set_len(len)?;
                }
                return Ok(());
            }
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_runtime::block_on;

    #[test]
    fn allocate_extends_a_file_to_that_length_and_never_shrinks_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        block_on(async {
            let f = FileDisk::new()
                .create(&tmp.path().join("f"))
                .await
                .expect("create");
            f.allocate(8192).await.expect("allocate");
            assert_eq!(f.size().await.expect("size"), 8192);
            f.write_at(0, b"kept").await.expect("write");
            f.allocate(100).await.expect("allocate less");
            assert_eq!(f.size().await.expect("size"), 8192);
            let head = f.read_at(0, vec![0; 4]).await.expect("read");
            assert_eq!(head, b"kept");
        });
    }

    #[test]
    fn a_read_past_the_end_returns_only_the_bytes_the_file_holds() {
        let tmp = tempfile::tempdir().expect("temp dir");
        block_on(async {
            let f = FileDisk::new()
                .create(&tmp.path().join("f"))
                .await
                .expect("create");
            f.write_at(0, b"0123456789").await.expect("write");
            let tail = f
                .read_at(4, vec![0; 16])
                .await
                .expect("read across the end");
            assert_eq!(tail, b"456789");
            let last = f.read_at(8, vec![0; 4]).await.expect("read the last bytes");
            assert_eq!(last, b"89");
            let none = f.read_at(12, vec![0; 16]).await.expect("read past the end");
            assert!(none.is_empty(), "{none:?}");
        });
    }

    #[test]
    fn free_space_is_counted_in_bytes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let free = block_on(FileDisk::new().free_space(tmp.path())).expect("free space");
        // The volume the tests were built on has far more than a MiB free.
        assert!(free > 1 << 20, "{free} bytes free");
        let missing = block_on(FileDisk::new().free_space(&tmp.path().join("missing")));
        assert!(
            matches!(
                &missing,
                Err(Error::Io {
                    op: Op::FreeSpace,
                    ..
                })
            ),
            "{missing:?}"
        );
    }

    #[test]
    fn remove_and_set_len_change_the_file_and_its_path_is_kept() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("f");
        block_on(async {
            let disk = FileDisk::new();
            let f = disk.create(&path).await.expect("create");
            assert_eq!(f.path(), path);
            f.set_len(1000).await.expect("extend");
            assert_eq!(f.size().await.expect("size"), 1000);
            f.set_len(10).await.expect("truncate");
            assert_eq!(f.size().await.expect("size"), 10);
            disk.remove(&path).await.expect("remove");
            assert!(!path.exists());
        });
    }

    #[test]
    fn syncs_report_their_failures_naming_the_operation() {
        let tmp = tempfile::tempdir().expect("temp dir");
        block_on(async {
            let disk = FileDisk::new();
            let missing = disk.sync_dir(&tmp.path().join("missing")).await;
            assert!(
                matches!(
                    &missing,
                    Err(Error::Io {
                        op: Op::SyncDir,
                        ..
                    })
                ),
                "{missing:?}"
            );
            // A character device cannot be synced: fsync and fdatasync fail.
            let null = disk.open(Path::new("/dev/null")).await.expect("open");
            let data = null.sync_data().await;
            assert!(
                matches!(
                    &data,
                    Err(Error::Io {
                        op: Op::SyncData,
                        ..
                    })
                ),
                "{data:?}"
            );
            let all = null.sync_all().await;
            assert!(
                matches!(
                    &all,
                    Err(Error::Io {
                        op: Op::SyncAll,
                        ..
                    })
                ),
                "{all:?}"
            );
        });
    }

    /// Polls `f` once, outside any runtime.
    fn poll_once<F: std::future::Future>(f: F) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::pin!(f).poll(&mut cx)
    }

    #[test]
    fn a_dedicated_handle_runs_its_calls_on_the_calling_thread() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("f");
        // No runtime, no thread pool: each call is done when first polled.
        let disk = FileDisk::new().dedicated();
        let std::task::Poll::Ready(created) = poll_once(disk.create(&path)) else {
            panic!("a dedicated handle's create waited");
        };
        let f = created.expect("create");
        assert!(matches!(
            poll_once(f.allocate(4096)),
            std::task::Poll::Ready(Ok(()))
        ));
        assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 4096);
    }

    #[test]
    fn a_failed_read_is_an_error_naming_the_file() {
        // Address 0 of a process is never mapped: reading it fails (EIO).
        let memory = Path::new("/proc/self/mem");
        block_on(async {
            let f = FileDisk::new().open(memory).await.expect("open");
            let read = f.read_at(0, vec![0; 16]).await;
            assert!(
                matches!(&read, Err(Error::Io { op: Op::Read, path, .. }) if path == memory),
                "{read:?}"
            );
        });
    }
}
