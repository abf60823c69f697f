//! Errors: every one names the file (or directory) and the operation.

use std::io;
use std::path::PathBuf;

/// The result type of every fallible `beaver-io` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An operation on the disk, named in errors so that a log line says what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Creating a file.
    Create,
    /// Opening an existing file.
    Open,
    /// Writing at an offset.
    Write,
    /// Reading at an offset.
    Read,
    /// Changing a file's length.
    SetLen,
    /// Reserving space for a file (fallocate).
    Allocate,
    /// fdatasync.
    SyncData,
    /// fsync.
    SyncAll,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Listing a directory.
    List,
    /// fsync of a directory.
    SyncDir,
    /// Creating a directory.
    CreateDir,
    /// Asking for free space.
    FreeSpace,
    /// Reading a file's length.
    Len,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Op::Create => "create",
            Op::Open => "open",
            Op::Write => "write",
            Op::Read => "read",
            Op::SetLen => "set_len",
            Op::Allocate => "allocate",
            Op::SyncData => "fdatasync",
            Op::SyncAll => "fsync",
            Op::Rename => "rename",
            Op::Remove => "remove",
            Op::List => "list",
            Op::SyncDir => "fsync directory",
            Op::CreateDir => "create directory",
            Op::FreeSpace => "free space",
            Op::Len => "length",
        };
        f.write_str(s)
    }
}

/// Everything that can go wrong in storage.
///
/// Guarantees: every variant that concerns a file carries its path; disk
/// failures also carry the operation and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A disk operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// The OS error (ENOSPC, EIO, ...).
        #[source]
        source: io::Error,
    },
    /// Bytes that an acknowledged record or a validated structure needs do not
    /// validate. Recovery refuses to go on (no silent skip).
    #[error("corruption in {} at byte offset {offset}: {detail}", path.display())]
    Corruption {
        /// The file.
        path: PathBuf,
        /// The byte offset of the first invalid byte range.
        offset: u64,
        /// What did not validate.
        detail: String,
    },
    /// A record (or batch) can never fit in one segment.
    #[error(
        "record of {len} bytes (framed) cannot fit in a WAL segment of {capacity} usable bytes"
    )]
    RecordTooLarge {
        /// The framed length of the record or batch.
        len: u64,
        /// The bytes a segment can hold after its header.
        capacity: u64,
    },
    /// No new segment could be allocated: the append was refused and nothing
    /// of it was written. Appending works again once space is freed.
    #[error("no space for a new WAL segment in {}: {source}", path.display())]
    NoSpace {
        /// The segment file that could not be allocated.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
    /// The WAL stopped after a fatal error (a failed fsync or write); it
    /// refuses every later operation. Restart and recover.
    #[error("the WAL has stopped after a fatal error: {cause}")]
    Stopped {
        /// What stopped it.
        cause: String,
    },
    /// The caller broke the API contract (for example, non-dense LSNs).
    #[error("invalid use of the WAL: {0}")]
    Usage(String),
    /// A file has a format version this build cannot read.
    #[error("{} has format version {found}, this build reads up to {supported}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
}

impl Error {
    /// Wraps an OS error with its operation and path.
    pub fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the underlying cause is "no space left on device".
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_enospc(source),
            Error::NoSpace { .. } => true,
            _ => false,
        }
    }

    /// True for a corruption report (recovery refused to go on).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// True when an OS error is ENOSPC (or EDQUOT).
pub fn is_enospc(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(libc::ENOSPC)
}

impl Error {
    /// A copy for fanning one failure out to many waiters. The OS error keeps
    /// its errno (or kind) and message; nested errors are copied the same way.
    pub fn clone_lossy(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op: *op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Corruption {
                path,
                offset,
                detail,
            } => Error::Corruption {
                path: path.clone(),
                offset: *offset,
                detail: detail.clone(),
            },
            Error::RecordTooLarge { len, capacity } => Error::RecordTooLarge {
                len: *len,
                capacity: *capacity,
            },
            Error::NoSpace { path, source } => Error::NoSpace {
                path: path.clone(),
                source: Box::new(source.clone_lossy()),
            },
            Error::Stopped { cause } => Error::Stopped {
                cause: cause.clone(),
            },
            Error::Usage(s) => Error::Usage(s.clone()),
            Error::Version {
                path,
                found,
                supported,
            } => Error::Version {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_read_as_what_was_done() {
        let names = [
            (Op::Create, "create"),
            (Op::Open, "open"),
            (Op::Write, "write"),
            (Op::Read, "read"),
            (Op::SetLen, "set_len"),
            (Op::Allocate, "allocate"),
            (Op::SyncData, "fdatasync"),
            (Op::SyncAll, "fsync"),
            (Op::Rename, "rename"),
            (Op::Remove, "remove"),
            (Op::List, "list"),
            (Op::SyncDir, "fsync directory"),
            (Op::CreateDir, "create directory"),
            (Op::FreeSpace, "free space"),
            (Op::Len, "length"),
        ];
        for (op, name) in names {
            assert_eq!(op.to_string(), name);
        }
        let e = Error::io(
            Op::SyncData,
            "/w/f",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(e.to_string().starts_with("fdatasync /w/f: "), "{e}");
    }

    fn os(errno: i32) -> Error {
        Error::io(Op::Write, "/w/f", io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn no_space_is_enospc_or_edquot_directly_or_behind_a_segment_allocation() {
        assert!(os(libc::ENOSPC).is_no_space());
        assert!(os(libc::EDQUOT).is_no_space());
        assert!(!os(libc::EIO).is_no_space());
        let kind_only = io::Error::new(io::ErrorKind::StorageFull, "full");
        assert!(Error::io(Op::Write, "/w/f", kind_only).is_no_space());
        let segment = Error::NoSpace {
            path: "/w/seg".into(),
            source: Box::new(os(libc::ENOSPC)),
        };
        assert!(segment.is_no_space());
        assert!(!Error::Usage("no".into()).is_no_space());
    }

    #[test]
    fn only_a_corruption_report_is_corruption() {
        let corrupt = Error::Corruption {
            path: "/w/seg".into(),
            offset: 512,
            detail: "bad checksum".into(),
        };
        assert!(corrupt.is_corruption());
        assert!(!os(libc::EIO).is_corruption());
    }
}
