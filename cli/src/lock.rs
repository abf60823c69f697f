//! The data-dir lock: one server per data dir.
//!
//! `beaver run` holds an exclusive `flock` on `<data dir>/LOCK` for its
//! whole life and writes its process id into the file. The kernel drops the
//! lock when the process dies (even by `kill -9`), so a crash never leaves a
//! stale lock behind. `status --data-dir` takes a shared lock, without
//! creating or writing anything, so it never reads a log a live server is
//! writing.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = "LOCK";

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it.
    Held {
        /// The data dir.
        dir: PathBuf,
        /// The holder's process id, as it wrote it (if readable).
        pid: Option<u32>,
    },
    /// The data dir's path names something that is not a directory.
    NotADirectory {
        /// The data dir.
        dir: PathBuf,
    },
    /// The data dir could not be created.
    Create {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The lock file could not be created or opened in the data dir
    /// (usually: the directory is not writable by this user).
    Open {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The lock file could not be opened or locked.
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.say(f, "--data-dir")
    }
}

impl LockError {
    /// The error in the words of a command whose data dir is given with
    /// `flag` (`beaver beanstalkd` takes it as `-b`).
    pub fn naming(&self, flag: &str) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = self.say(&mut text, flag);
        text
    }

    fn say(&self, f: &mut impl std::fmt::Write, flag: &str) -> std::fmt::Result {
        match self {
            LockError::Held { dir, pid } => {
                let who = match pid {
                    Some(p) => format!("process {p}"),
                    None => "another process".into(),
                };
                write!(
                    f,
                    "the data dir {} is in use by a running beaver ({who}); stop that server first, or give another {flag}",
                    dir.display()
                )
            }
            LockError::NotADirectory { dir } => write!(
                f,
                "the data dir {} is not a directory: give {flag} a directory (beaver creates it when it is missing)",
                dir.display()
            ),
            LockError::Create { dir, error } => write!(
                f,
                "cannot create the data dir {}: {error}; create it (writable by the user beaver runs as) or give another {flag}",
                dir.display()
            ),
            LockError::Open { dir, error } => write!(
                f,
                "cannot create files in the data dir {}: {error}; make it writable by the user beaver runs as (uid {}), or give another {flag}",
                dir.display(),
                // SAFETY: getuid has no arguments and cannot fail.
                unsafe { libc::getuid() }
            ),
            LockError::Io { path, error } => {
                write!(f, "cannot lock {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LockError {}

enum Mode {
    Exclusive,
    Shared,
}

fn flock(file: &File, mode: Mode) -> std::io::Result<bool> {
    let op = match mode {
        Mode::Exclusive => libc::LOCK_EX,
        Mode::Shared => libc::LOCK_SH,
    } | libc::LOCK_NB;
    // SAFETY: flock takes a file descriptor we own (borrowed from `file`,
    // which outlives the call) and an operation flag; it touches no memory.
    let r = unsafe { libc::flock(file.as_raw_fd(), op) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn refuse_non_directory(dir: &Path) -> Result<(), LockError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(LockError::NotADirectory {
            dir: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn holder(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Takes the exclusive lock for a server (creating the dir and lock file),
/// and writes this process's id into it.
pub fn lock_exclusive(dir: &Path) -> Result<DirLock, LockError> {
    refuse_non_directory(dir)?;
    let path = dir.join(LOCK_FILE);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(|error| LockError::Create {
        dir: dir.to_path_buf(),
        error,
    })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| LockError::Open {
            dir: dir.to_path_buf(),
            error,
        })?;
    if !flock(&file, Mode::Exclusive).map_err(io)? {
        return Err(LockError::Held {
            dir: dir.to_path_buf(),
            pid: holder(&mut file),
        });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DirLock { _file: file })
}

/// For reading a stopped server's files: a shared lock if a lock file
/// exists (`Ok(None)` if none does: no server ever ran there); nothing is
/// created or written.
pub fn lock_shared(dir: &Path) -> Result<Option<DirLock>, LockError> {
    refuse_non_directory(dir)?;
    let path = dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LockError::Io { path, error }),
    };
    match flock(&file, Mode::Shared) {
        Ok(true) => Ok(Some(DirLock { _file: file })),
        Ok(false) => Err(LockError::Held {
            dir: dir.to_path_buf(),
            pid: holder(&mut file),
        }),
        Err(error) => Err(LockError::Io { path, error }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        assert!(lock_shared(d.path()).unwrap().is_none());
        let held = lock_exclusive(d.path()).unwrap();
        // flock locks belong to the open file, so a second open in the same
        // process conflicts just as another process would.
        let e = lock_exclusive(d.path()).unwrap_err();
        assert!(matches!(e, LockError::Held { pid: Some(p), .. } if p == std::process::id()));
        assert!(e.to_string().contains(&std::process::id().to_string()));
        assert!(matches!(lock_shared(d.path()), Err(LockError::Held { .. })));
        drop(held);
        let shared = lock_shared(d.path()).unwrap();
        assert!(shared.is_some());
        assert!(lock_exclusive(d.path()).is_err());
        drop(shared);
        assert!(lock_exclusive(d.path()).is_ok());
    }

    #[test]
    fn a_file_given_as_the_data_dir_is_named_as_such() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("data");
        std::fs::write(&file, b"not a dir").unwrap();
        for e in [
            lock_exclusive(&file).unwrap_err(),
            lock_shared(&file).unwrap_err(),
        ] {
            assert!(matches!(e, LockError::NotADirectory { .. }), "{e}");
            assert!(e.to_string().contains("is not a directory"), "{e}");
            assert!(e.to_string().contains("give --data-dir a directory"), "{e}");
            let b = e.naming("-b");
            assert!(
                b.contains("give -b a directory") && !b.contains("--data-dir"),
                "{b}"
            );
        }
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"not a dir",
            "left as it was"
        );
    }
}
