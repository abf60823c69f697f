//! Why the engine could not start, or stopped.

/// An engine failure. Every variant says what to do.
#[derive(Debug)]
pub enum EngineError {
    /// Storage failed (including fsync EIO: fail-stop). Restart recovers
    /// from what is on disk.
    Storage(beaver_io::Error),
    /// A snapshot that passed its checksum does not decode (a newer format,
    /// or a bug).
    Snapshot {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A WAL record that passed its checksum does not decode or apply.
    Replay {
        /// The record's LSN.
        lsn: u64,
        /// Why.
        reason: String,
    },
    /// The configuration is unusable.
    Config(String),
    /// A task of the engine ended without saying why (it panicked, or its
    /// thread could not start): a bug or an exhausted resource. Nothing
    /// more was acknowledged; restart recovers from disk.
    TaskFailed(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Storage(e @ beaver_io::Error::Corruption { .. }) => write!(
                f,
                "the data on disk is damaged: {e}; beaver does not start rather than lose acknowledged jobs (a restart finds the same): `beaver status --data-dir` shows what it found; restore the file from a copy, or move the data dir aside to start empty"
            ),
            EngineError::Storage(e @ beaver_io::Error::Version { .. }) => {
                write!(f, "{e}: a newer beaver wrote it; upgrade beaver")
            }
            EngineError::Storage(beaver_io::Error::Usage(e)) => write!(f, "configuration: {e}"),
            EngineError::Storage(e) => write!(
                f,
                "storage failed: {e}; beaver stopped without acknowledging anything more; restart it to recover from disk"
            ),
            EngineError::Snapshot { path, reason } => write!(
                f,
                "snapshot {} cannot be read: {reason}; if it was written by a newer beaver, upgrade",
                path.display()
            ),
            EngineError::Replay { lsn, reason } => {
                write!(f, "WAL record {lsn} cannot be replayed: {reason}")
            }
            EngineError::Config(e) => write!(f, "configuration: {e}"),
            EngineError::TaskFailed(e) => write!(
                f,
                "{e}; beaver stopped without acknowledging anything more; restart it to recover from disk"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<beaver_io::Error> for EngineError {
    fn from(e: beaver_io::Error) -> Self {
        EngineError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_storage_failure_says_what_helps() {
        let damaged = EngineError::Storage(beaver_io::Error::Corruption {
            path: "wal/wal-1.seg".into(),
            offset: 512,
            detail: "batch body checksum mismatch".into(),
        })
        .to_string();
        assert!(
            damaged.contains("wal/wal-1.seg at byte offset 512"),
            "{damaged}"
        );
        assert!(damaged.contains("beaver status --data-dir"), "{damaged}");
        assert!(!damaged.contains("restart it"), "{damaged}");
        let newer = EngineError::Storage(beaver_io::Error::Version {
            path: "wal/wal-1.seg".into(),
            found: 2,
            supported: 1,
        })
        .to_string();
        assert!(newer.ends_with("upgrade beaver"), "{newer}");
        let usage = EngineError::Storage(beaver_io::Error::Usage("segment_bytes 1".into()));
        assert!(
            usage
                .to_string()
                .starts_with("configuration: segment_bytes 1")
        );
        let eio = EngineError::Storage(beaver_io::Error::Stopped {
            cause: "fdatasync: EIO".into(),
        })
        .to_string();
        assert!(eio.ends_with("restart it to recover from disk"), "{eio}");
    }
}
