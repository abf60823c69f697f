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
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
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
        }
    }
}

impl std::error::Error for EngineError {}

impl From<beaver_io::Error> for EngineError {
    fn from(e: beaver_io::Error) -> Self {
        EngineError::Storage(e)
    }
}
