//! Encoding of records and snapshots: a format version byte, then postcard.
//!
//! Every binary reads every older version and refuses a newer one with an
//! error naming both. Decoding never panics, whatever the bytes.
//!
//! Versions: 1, the first; 2 (this build) adds whether a dispatched attempt
//! started, the start, queue-control and checkpoint records, and paused
//! queues in snapshots (see `legacy` for how version 1 is read).

use crate::legacy::{RecordV1, SnapshotV1};
use crate::record::Record;
use crate::snapshot::Snapshot;

/// The record format this build writes (and the newest it reads).
pub const RECORD_FORMAT_VERSION: u8 = 2;
/// The snapshot format this build writes (and the newest it reads).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Nothing to decode.
    Empty,
    /// Written by a newer beaver.
    NewerVersion {
        /// What the bytes say.
        found: u8,
        /// The newest this build reads.
        supported: u8,
    },
    /// Version 0 is not a version any beaver wrote.
    UnknownVersion(u8),
    /// The bytes do not form a valid value.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("no bytes to decode"),
            DecodeError::NewerVersion { found, supported } => write!(
                f,
                "written in format version {found}, but this beaver reads versions up to {supported}: upgrade beaver"
            ),
            DecodeError::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            DecodeError::Malformed(e) => write!(f, "malformed: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The version byte and the postcard body after it, the version checked.
fn body(bytes: &[u8], supported: u8) -> Result<(u8, &[u8]), DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    Ok((readable_version(version, supported)?, rest))
}

/// `version` if this build reads it (newest: `supported`).
pub(crate) fn readable_version(version: u8, supported: u8) -> Result<u8, DecodeError> {
    match version {
        0 => Err(DecodeError::UnknownVersion(0)),
        v if v > supported => Err(DecodeError::NewerVersion {
            found: v,
            supported,
        }),
        v => Ok(v),
    }
}

/// Decodes one `T` that takes all of `body`; `what` names it in errors.
fn whole<'a, T: serde::Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, tail)) => Err(DecodeError::Malformed(format!(
            "{} bytes after the {what}",
            tail.len()
        ))),
        Err(e) => Err(DecodeError::Malformed(e.to_string())),
    }
}

/// Encodes a record (version byte + postcard).
pub fn encode_record(record: &Record) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT_VERSION];
    encode_into(record, &mut out);
    out
}

/// Appends a record's encoding to `out` (no allocation if it has room).
pub fn encode_record_into(record: &Record, out: &mut Vec<u8>) {
    out.push(RECORD_FORMAT_VERSION);
    encode_into(record, out);
}

pub(crate) fn encode_into<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    match postcard::to_extend(value, std::mem::take(out)) {
        Ok(v) => *out = v,
        // Serializing into a Vec cannot fail for these plain data types.
        Err(e) => unreachable!("postcard failed to encode into memory: {e}"),
    }
}

/// Decodes a record of any version this build reads (version 1 in
/// today's form); trailing bytes are an error.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    match body(bytes, RECORD_FORMAT_VERSION)? {
        (1, rest) => whole::<RecordV1>(rest, "record").map(Record::from),
        (_, rest) => whole(rest, "record"),
    }
}

/// Decodes the record the log holds at `lsn`: as [`decode_record`], and a
/// record naming another LSN than its frame is refused too.
pub fn decode_logged_record(lsn: u64, bytes: &[u8]) -> Result<Record, DecodeError> {
    let r = decode_record(bytes)?;
    if r.lsn == lsn {
        Ok(r)
    } else {
        Err(DecodeError::Malformed(format!(
            "the frame says LSN {lsn}, the record {}",
            r.lsn
        )))
    }
}

/// Encodes a snapshot (version byte + postcard).
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + snapshot.jobs.len() * 96);
    out.push(SNAPSHOT_FORMAT_VERSION);
    encode_into(snapshot, &mut out);
    out
}

/// Encodes the core's snapshot: the same bytes as
/// `encode_snapshot(&core.snapshot())`, without copying the jobs first.
pub fn encode_queue_snapshot(core: &crate::machine::Core) -> Vec<u8> {
    let mut encoder = SnapshotEncoder::new(core);
    let mut out = Vec::with_capacity(64 + encoder.view.job_count() * 128);
    encoder.fill(&mut out, usize::MAX);
    out
}

/// The length of [`encode_queue_snapshot`]'s bytes, computed without
/// encoding them: a pass over the jobs that neither copies a payload nor
/// puts the jobs in order (for a million jobs, tens of milliseconds less
/// than encoding). Guarantees: equal to `encode_queue_snapshot(core).len()`.
pub fn queue_snapshot_len(core: &crate::machine::Core) -> u64 {
    crate::snapshot::encoded_len(core.state())
}

/// Encodes a core's snapshot piece by piece, so that it can be written
/// out without ever being whole in memory.
///
/// Guarantees: the pieces, concatenated, are exactly the bytes of
/// [`encode_queue_snapshot`] (and of `encode_snapshot(&core.snapshot())`),
/// whatever sizes are asked for.
pub struct SnapshotEncoder<'a> {
    view: crate::snapshot::SnapshotRef<'a>,
    next: NextPiece,
}

/// What the encoder appends next.
#[derive(Debug, Clone, Copy)]
enum NextPiece {
    /// The version byte, the fields before the jobs, the jobs' count.
    Head,
    /// The job with this index in acceptance order.
    Job(usize),
    /// The fields after the jobs.
    Tail,
    /// Nothing: the encoding is complete.
    Done,
}

impl<'a> SnapshotEncoder<'a> {
    /// An encoder of the core's current state (borrowed until it is done).
    pub fn new(core: &'a crate::machine::Core) -> Self {
        SnapshotEncoder {
            view: crate::snapshot::SnapshotRef::of(core.state()),
            next: NextPiece::Head,
        }
    }

    /// Appends the next part of the encoding to `out`, stopping as soon as
    /// `out` holds at least `at_least` bytes (one job may overshoot it) or
    /// the encoding is complete. Returns whether anything remains.
    pub fn fill(&mut self, out: &mut Vec<u8>, at_least: usize) -> bool {
        while out.len() < at_least {
            self.next = match self.next {
                NextPiece::Head => {
                    out.push(SNAPSHOT_FORMAT_VERSION);
                    self.view.encode_head(out);
                    self.after_job(0)
                }
                NextPiece::Job(i) => {
                    self.view.encode_job(i, out);
                    self.after_job(i + 1)
                }
                NextPiece::Tail => {
                    self.view.encode_tail(out);
                    NextPiece::Done
                }
                NextPiece::Done => break,
            };
        }
        !matches!(self.next, NextPiece::Done)
    }

    fn after_job(&self, i: usize) -> NextPiece {
        if i < self.view.job_count() {
            NextPiece::Job(i)
        } else {
            NextPiece::Tail
        }
    }
}

/// Decodes a snapshot of any version this build reads (version 1 in
/// today's form); trailing bytes are an error.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    match body(bytes, SNAPSHOT_FORMAT_VERSION)? {
        (1, rest) => whole::<SnapshotV1>(rest, "snapshot").map(Snapshot::from),
        (_, rest) => whole(rest, "snapshot"),
    }
}
