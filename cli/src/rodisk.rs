//! A read-only [`Disk`] for `status --data-dir`: files are opened
//! read-only and every operation that would change anything fails, so
//! inspecting a stopped server's files cannot alter them by construction.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use beaver_io::{Disk, DiskFile, Error, Op, Result};

/// The real file system, read-only.
#[derive(Debug, Clone, Default)]
pub struct ReadOnlyDisk;

/// A file opened read-only.
#[derive(Debug, Clone)]
pub struct ReadOnlyFile {
    file: Arc<File>,
    path: PathBuf,
}

fn refused(op: Op, path: &Path) -> Error {
    Error::io(
        op,
        path,
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "beaver is reading this data dir read-only",
        ),
    )
}

impl Disk for ReadOnlyDisk {
    type File = ReadOnlyFile;

    async fn create(&self, path: &Path) -> Result<ReadOnlyFile> {
        Err(refused(Op::Create, path))
    }

    async fn open(&self, path: &Path) -> Result<ReadOnlyFile> {
        let file = File::open(path).map_err(|e| Error::io(Op::Open, path, e))?;
        Ok(ReadOnlyFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
        })
    }

    async fn rename(&self, from: &Path, _to: &Path) -> Result<()> {
        Err(refused(Op::Rename, from))
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        Err(refused(Op::Remove, path))
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(Error::io(Op::List, dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(Op::List, dir, e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| Error::io(Op::List, dir, e))?
                .is_file();
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        Err(refused(Op::SyncDir, dir))
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        Err(refused(Op::CreateDir, dir))
    }

    async fn free_space(&self, _dir: &Path) -> Result<u64> {
        Ok(0)
    }
}

impl DiskFile for ReadOnlyFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<()> {
        Err(refused(Op::Write, &self.path))
    }

    async fn read_at(&self, offset: u64, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(Op::Read, &self.path, e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    async fn size(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(Op::Len, &self.path, e))
    }

    async fn set_len(&self, _len: u64) -> Result<()> {
        Err(refused(Op::SetLen, &self.path))
    }

    async fn allocate(&self, _len: u64) -> Result<()> {
        Err(refused(Op::Allocate, &self.path))
    }

    async fn sync_data(&self) -> Result<()> {
        Err(refused(Op::SyncData, &self.path))
    }

    async fn sync_all(&self) -> Result<()> {
        Err(refused(Op::SyncAll, &self.path))
    }
}
