//! `beaver status --data-dir`: what a restart would recover, read from a
//! stopped server's files without changing anything.
//!
//! Files are read through [`ReadOnlyDisk`], which opens them read-only and
//! refuses every write, rename or sync; the data dir's lock is taken shared
//! (never created), so a live server's log is never read mid-write.
//! Corruption is reported, never hidden: the document says whether a restart
//! would start and why not.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use beaver_core::{Config, Core, codec};
use beaver_io::LogEnd;
use beaver_io::snapshot::{SnapshotFileError, decode_snapshot_file};

use crate::lock::{LockError, lock_shared};
use crate::rodisk::ReadOnlyDisk;
use crate::schema::{DataDirDoc, SnapshotDoc, SnapshotFileDoc, StatusDoc, WalDoc};

/// Why a data dir could not be inspected at all.
#[derive(Debug)]
pub enum InspectError {
    /// There is no such directory.
    Missing(String),
    /// A live server holds the data dir.
    Live(LockError),
    /// Anything else (unreadable directory).
    Other(String),
}

impl std::fmt::Display for InspectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectError::Missing(d) => write!(
                f,
                "there is no data dir at {d}; give the --data-dir the server ran with"
            ),
            InspectError::Live(e) => write!(
                f,
                "{e}. A live server owns its files: ask it instead with `beaver status --server URL`"
            ),
            InspectError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for InspectError {}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The file name of the snapshot covering `lsn`, if `name` is one.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()) {
        d.parse().ok()
    } else {
        None
    }
}

/// When the newest snapshot file in `snapshot_dir` was written (its mtime).
pub fn newest_snapshot_written_at_ms(snapshot_dir: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(snapshot_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            Some((parse_snapshot_name(&name)?, e))
        })
        .max_by_key(|(lsn, _)| *lsn)?;
    mtime_ms(&newest.1.path())
}

fn mtime_ms(path: &Path) -> Option<u64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Reads the data dir read-only and reports what a restart would recover.
/// `config` is the queue configuration the server runs with (it shapes
/// nothing that is replayed; it is needed to build the queue).
pub async fn inspect_data_dir(dir: &Path, config: Config) -> Result<StatusDoc, InspectError> {
    if dir.exists() && !dir.is_dir() {
        return Err(InspectError::Other(format!(
            "{} is a file, not a data dir; give --data-dir the directory the server ran with",
            dir.display()
        )));
    }
    if !dir.is_dir() {
        return Err(InspectError::Missing(dir.display().to_string()));
    }
    let _lock = lock_shared(dir).map_err(|e| match e {
        LockError::Held { .. } => InspectError::Live(e),
        other => InspectError::Other(other.to_string()),
    })?;
    let disk = ReadOnlyDisk;
    let snap_dir = dir.join("snapshots");
    let wal_dir = dir.join("wal");
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).display().to_string();
    let mut problems = Vec::new();
    let mut would_start = true;

    // Snapshots, newest first: the first that validates is what a restart uses.
    let mut names: Vec<(u64, String)> = match std::fs::read_dir(&snap_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                if name.starts_with("snap-") && name.ends_with(".tmp") {
                    problems.push(format!(
                        "snapshots/{name} is an unfinished snapshot; a restart removes it"
                    ));
                }
                Some((parse_snapshot_name(&name)?, name))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(InspectError::Other(format!(
                "cannot list {}: {e}",
                snap_dir.display()
            )));
        }
    };
    names.sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
    let mut files = Vec::new();
    let mut chosen = None;
    for (lsn, name) in names {
        let path = snap_dir.join(&name);
        // What is wrong with the file, and whether a restart refuses to
        // start over it (true) or sets it aside for the older one (false).
        let found: Option<(String, bool)> = if chosen.is_some() {
            None
        } else {
            match std::fs::read(&path) {
                Err(e) => Some((format!("unreadable: {e}"), true)),
                Ok(bytes) => match decode_snapshot_file(&bytes) {
                    Ok((l, _)) if l != lsn => {
                        Some((format!("holds LSN {l} but is named for LSN {lsn}"), false))
                    }
                    Ok((_, body)) => match codec::decode_snapshot(body) {
                        Ok(s) if s.lsn == lsn => {
                            chosen = Some((s, mtime_ms(&path)));
                            None
                        }
                        Ok(s) => Some((
                            format!(
                                "passed its checksum but holds LSN {} while named for LSN {lsn}",
                                s.lsn
                            ),
                            true,
                        )),
                        Err(e) => Some((
                            format!("passed its checksum but does not decode ({e})"),
                            true,
                        )),
                    },
                    Err(e) => {
                        let refuses = matches!(e, SnapshotFileError::Version(_));
                        Some((e.to_string(), refuses))
                    }
                },
            }
        };
        match &found {
            Some((p, true)) => {
                would_start = false;
                problems.push(format!(
                    "snapshots/{name}: {p}; a restart refuses to start"
                ));
            }
            Some((p, false)) => problems.push(format!(
                "snapshots/{name} is corrupt ({p}); a restart renames it to {name}.broken and uses the older snapshot plus more of the log"
            )),
            None => {}
        }
        let problem = found.map(|(p, _)| p);
        files.push(SnapshotFileDoc {
            file: name,
            lsn,
            problem,
        });
    }
    let (snapshot, written_at) = match chosen {
        Some((s, w)) => (Some(s), w),
        None => (None, None),
    };
    let snapshot_lsn = snapshot.as_ref().map(|s| s.lsn);
    let mut queue = match snapshot {
        Some(s) => {
            let lsn = s.lsn;
            match Core::recover(config.clone(), Some(s), []) {
                Ok(q) => q,
                Err(e) => {
                    would_start = false;
                    problems.push(format!(
                        "the snapshot at LSN {lsn} does not restore ({e}); a restart refuses to start"
                    ));
                    Core::new(config)
                }
            }
        }
        None => Core::new(config),
    };

    // The log.
    let mut log_end = "clean".to_string();
    let mut torn_bytes = 0;
    let mut log_lsns = None;
    let mut watermark = 0;
    let mut wal_bytes = 0;
    let mut segments = 0;
    let mut replayed = 0u64;
    match beaver_io::inspect(&disk, &wal_dir, snapshot_lsn.unwrap_or(0)).await {
        Err(e) => {
            would_start = false;
            log_end = "corrupt".into();
            problems.push(format!(
                "the log cannot be read: {e}; a restart refuses to start"
            ));
        }
        Ok(ins) => {
            segments = ins.segments.len() as u64;
            wal_bytes = ins.segments.iter().map(|s| s.size).sum();
            watermark = ins.watermark;
            log_lsns = ins.first_lsn.zip(ins.last_lsn);
            match &ins.end {
                LogEnd::Clean => {}
                LogEnd::Torn {
                    path,
                    offset,
                    bytes,
                    reason,
                } => {
                    log_end = "torn".into();
                    torn_bytes = *bytes;
                    problems.push(format!(
                        "the log ends in a torn write: {bytes} bytes from {} offset {offset} on ({reason}), which no later batch vouches for: a write a crash cut off, which a restart discards (had the disk damaged them instead, they held the last batch acknowledged before the crash)",
                        rel(path)
                    ));
                }
                LogEnd::Corrupt {
                    path,
                    offset,
                    detail,
                } => {
                    log_end = "corrupt".into();
                    would_start = false;
                    problems.push(format!(
                        "corruption in {} at offset {offset}: {detail}; acknowledged records are damaged, so a restart refuses to start",
                        rel(path)
                    ));
                }
            }
            let after = queue.applied_lsn();
            let last = ins.last_lsn.unwrap_or(0);
            if would_start && last > after {
                let mut failure: Option<String> = None;
                let read = beaver_io::wal::read_records(
                    &disk,
                    &wal_dir,
                    after,
                    last,
                    beaver_io::Planted::default(),
                    |lsn, body| {
                        if failure.is_some() {
                            return;
                        }
                        let applied = codec::decode_logged_record(lsn, body)
                            .map_err(|e| e.to_string())
                            .and_then(|r| queue.apply_owned(r).map_err(|e| e.to_string()));
                        match applied {
                            Ok(()) => replayed += 1,
                            Err(e) => failure = Some(format!("record {lsn}: {e}")),
                        }
                    },
                )
                .await;
                if let Err(e) = read {
                    failure.get_or_insert(e.to_string());
                }
                if let Some(f) = failure {
                    would_start = false;
                    problems.push(format!(
                        "the log cannot be replayed: {f}; a restart refuses to start"
                    ));
                }
            }
        }
    }

    let now = now_ms();
    let mut doc = StatusDoc::from_queue(
        "data_dir",
        &queue.status(),
        WalDoc {
            bytes: wal_bytes,
            segments,
            last_lsn: queue.applied_lsn(),
        },
        SnapshotDoc {
            lsn: snapshot_lsn,
            written_at_ms: written_at,
            age_ms: written_at.map(|w| now.saturating_sub(w)),
        },
    );
    doc.data_dir = Some(DataDirDoc {
        path: dir.display().to_string(),
        would_start,
        log_end,
        torn_bytes,
        log_lsns,
        watermark,
        replay_records: replayed,
        snapshot_files: files,
        problems,
    });
    Ok(doc)
}
