//! beanstalkd's own log, read so that `beaver beanstalkd` started in
//! beanstalkd's place on the same `-b` dir takes its jobs over. Pure: the
//! caller reads the files; whatever their bytes, [`read`] returns the
//! jobs or an error naming the file and the byte, and never panics.
//!
//! The `binlog.N` files of beanstalkd 1.10 to 1.12 (format version 7), in
//! the order of N. Each holds a 4-byte version, then records: a 4-byte
//! tube-name length, the name (only in a full record), beanstalkd's
//! 80-byte job record (`Jobrec`, as 64-bit Linux lays it out: little
//! endian on x86-64 and aarch64), and, in a full record, the body with its
//! `\r\n`. A zero job id ends a file (the preallocated rest). A job's
//! records follow each other across the files; its latest state counts,
//! and state 0 means it was deleted. A reserved job is ready again, as
//! beanstalkd makes it when it restarts.

use std::collections::BTreeMap;

use beaver_io::le::{u32_at, u64_at};

/// The format version this reads.
pub const VERSION: i32 = 7;
/// beanstalkd's job record.
const JOBREC_BYTES: usize = 80;
/// The longest tube name (beanstalkd's `MAX_TUBE_NAME_LEN` less its NUL).
const TUBE_NAME_MAX: usize = 200;

/// A job's state in beanstalkd's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldState {
    /// Ready (or reserved when beanstalkd stopped).
    Ready,
    /// Buried.
    Buried,
    /// Delayed until [`OldJob::deadline_ns`].
    Delayed,
}

/// A job beanstalkd's log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldJob {
    /// beanstalkd's job id.
    pub id: u64,
    /// Its tube's name.
    pub tube: Vec<u8>,
    /// Its priority.
    pub pri: u32,
    /// Its time to run, in nanoseconds.
    pub ttr_ns: i64,
    /// When a delayed job becomes ready, in nanoseconds since the epoch.
    pub deadline_ns: i64,
    /// Its state.
    pub state: OldState,
    /// Its body, without the `\r\n`.
    pub body: Vec<u8>,
}

/// A little-endian reader over one file, each read naming what is short.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let piece = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(piece)
    }
}

/// Reads beanstalkd's files one at a time (only the jobs are kept).
#[derive(Debug)]
pub struct LogReader {
    jobs: BTreeMap<u64, OldJob>,
    body_max: u64,
}

impl LogReader {
    /// A reader of jobs whose bodies are at most `body_max` bytes.
    pub fn new(body_max: u64) -> LogReader {
        LogReader {
            jobs: BTreeMap::new(),
            body_max,
        }
    }

    /// Applies the file `name` (the next in beanstalkd's order). A body
    /// longer than the limit, a version other than [`VERSION`], or a
    /// record cut or out of range is an error naming the file and the
    /// byte.
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), String> {
        read_file(bytes, self.body_max, &mut self.jobs).map_err(|(at, what)| {
            format!("beanstalkd's log {name}, byte {at}: {what}; beaver cannot take its jobs over")
        })
    }

    /// The jobs the files hold at their end, by id.
    pub fn jobs(self) -> Vec<OldJob> {
        self.jobs.into_values().collect()
    }
}

/// The jobs `files` (`(name, bytes)` in beanstalkd's order) hold at their
/// end, by id; see [`LogReader::file`] for the errors.
pub fn read(files: &[(String, Vec<u8>)], body_max: u64) -> Result<Vec<OldJob>, String> {
    let mut reader = LogReader::new(body_max);
    for (name, bytes) in files {
        reader.file(name, bytes)?;
    }
    Ok(reader.jobs())
}

/// Applies one file's records to `jobs`; an error is `(offset, what)`.
fn read_file(
    bytes: &[u8],
    body_max: u64,
    jobs: &mut BTreeMap<u64, OldJob>,
) -> Result<(), (usize, String)> {
    let mut c = Cursor { bytes, at: 0 };
    let version = c.take(4).map(|v| u32_at(v, 0) as i32);
    match version {
        Some(VERSION) => {}
        None => return Ok(()), // an empty file: beanstalkd made it, wrote nothing
        Some(v) => {
            return Err((
                0,
                format!(
                    "format version {v}: beaver reads version {VERSION} (beanstalkd 1.10 to 1.12)"
                ),
            ));
        }
    }
    while let Some(len) = c.take(4) {
        let at = c.at - 4;
        let name_len = u32_at(len, 0) as usize;
        if name_len > TUBE_NAME_MAX {
            return Err((at, format!("a tube name of {name_len} bytes")));
        }
        let name = c
            .take(name_len)
            .ok_or((at, "a cut tube name".to_string()))?;
        let Some(rec) = c.take(JOBREC_BYTES) else {
            return Ok(()); // a record cut by a crash: beanstalkd stops there too
        };
        let id = u64_at(rec, 0);
        if id == 0 {
            return Ok(()); // the preallocated rest
        }
        apply(&mut c, at, name, rec, body_max, jobs)?;
    }
    Ok(())
}

/// Applies the record of job `rec` (with tube `name`, empty in a short
/// record) at `at`, reading its body from `c` in a full record.
fn apply(
    c: &mut Cursor<'_>,
    at: usize,
    name: &[u8],
    rec: &[u8],
    body_max: u64,
    jobs: &mut BTreeMap<u64, OldJob>,
) -> Result<(), (usize, String)> {
    let id = u64_at(rec, 0);
    let state = match rec[76] {
        0 => {
            jobs.remove(&id);
            return Ok(());
        }
        1 | 2 => OldState::Ready,
        3 => OldState::Buried,
        4 => OldState::Delayed,
        s => return Err((at, format!("job {id} in an unknown state {s}"))),
    };
    let body_size = u32_at(rec, 32) as i32;
    let full = !name.is_empty();
    let body = if full {
        let size = u64::try_from(body_size).ok().filter(|&s| s >= 2);
        let size = size.ok_or((at, format!("job {id} with a body of {body_size} bytes")))?;
        if size - 2 > body_max {
            return Err((
                at,
                format!(
                    "job {id} of {} bytes, more than -z allows ({body_max})",
                    size - 2
                ),
            ));
        }
        let body = c
            .take(size as usize)
            .ok_or((at, format!("job {id}'s body cut short")))?;
        Some(body[..body.len() - 2].to_vec())
    } else {
        None
    };
    let pri = u32_at(rec, 8);
    let ttr_ns = u64_at(rec, 24) as i64;
    let deadline_ns = u64_at(rec, 48) as i64;
    match (jobs.get_mut(&id), body) {
        (Some(j), _) => {
            (j.pri, j.ttr_ns, j.deadline_ns, j.state) = (pri, ttr_ns, deadline_ns, state);
        }
        (None, Some(body)) => {
            let tube = name.to_vec();
            let job = OldJob {
                id,
                tube,
                pri,
                ttr_ns,
                deadline_ns,
                state,
                body,
            };
            jobs.insert(id, job);
        }
        // A short record of a job whose full one was in a file beanstalkd
        // already removed: the job was deleted or moved on since.
        (None, None) => {}
    }
    Ok(())
}

/// The version word a file starts with.
pub fn file_header() -> [u8; 4] {
    VERSION.to_le_bytes()
}

/// One record as beanstalkd 1.12 writes it, for tests and seed inputs: a
/// full record (with the tube name and the body) when `tube` is not empty,
/// else a short one. `state` is beanstalkd's: 0 deleted, 1 ready, 2
/// reserved, 3 buried, 4 delayed.
pub fn encode_record(
    tube: &[u8],
    id: u64,
    pri: u32,
    ttr_ns: i64,
    deadline_ns: i64,
    state: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut r = (tube.len() as u32).to_le_bytes().to_vec();
    r.extend_from_slice(tube);
    let mut rec = [0u8; JOBREC_BYTES];
    rec[0..8].copy_from_slice(&id.to_le_bytes());
    rec[8..12].copy_from_slice(&pri.to_le_bytes());
    rec[24..32].copy_from_slice(&ttr_ns.to_le_bytes());
    rec[32..36].copy_from_slice(&((body.len() + 2) as u32).to_le_bytes());
    rec[48..56].copy_from_slice(&deadline_ns.to_le_bytes());
    rec[76] = state;
    r.extend_from_slice(&rec);
    if !tube.is_empty() {
        r.extend_from_slice(body);
        r.extend_from_slice(b"\r\n");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tube: &str, id: u64, pri: u32, ttr_s: i64, state: u8, body: &[u8]) -> Vec<u8> {
        let ttr_ns = ttr_s * 1_000_000_000;
        encode_record(tube.as_bytes(), id, pri, ttr_ns, 7_000_000_000, state, body)
    }

    fn file(records: &[Vec<u8>]) -> Vec<u8> {
        let mut f = file_header().to_vec();
        for r in records {
            f.extend_from_slice(r);
        }
        f.extend_from_slice(&[0u8; 200]); // the preallocated rest
        f
    }

    #[test]
    fn the_latest_record_of_each_job_counts_across_files() {
        let one = file(&[
            record("default", 1, 7, 60, 1, b"hello"),
            record("other", 2, 3, 30, 4, b"ab"),
            record("other", 3, 9, 60, 1, b"xyz"),
            record("", 1, 7, 60, 2, b""), // reserved
        ]);
        let two = file(&[
            record("", 3, 9, 60, 3, b""), // buried
            record("", 2, 3, 30, 0, b""), // deleted
            record("", 99, 1, 1, 1, b""), // its full record is gone: skipped
            record("default", 4, 0, 1, 1, b""),
        ]);
        let files = vec![("binlog.1".to_string(), one), ("binlog.2".to_string(), two)];
        let jobs = read(&files, 65_535).expect("reads");
        let seen: Vec<(u64, &[u8], OldState, &[u8])> = jobs
            .iter()
            .map(|j| (j.id, &j.tube[..], j.state, &j.body[..]))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, &b"default"[..], OldState::Ready, &b"hello"[..]),
                (3, &b"other"[..], OldState::Buried, &b"xyz"[..]),
                (4, &b"default"[..], OldState::Ready, &b""[..]),
            ]
        );
        assert_eq!((jobs[0].pri, jobs[0].ttr_ns), (7, 60_000_000_000));
        assert_eq!(jobs[1].deadline_ns, 7_000_000_000);
    }

    #[test]
    fn a_record_cut_at_the_end_ends_the_file_and_an_empty_file_holds_nothing() {
        let mut f = file(&[record("default", 1, 0, 1, 1, b"a")]);
        f.truncate(4 + 4 + 7 + JOBREC_BYTES + 3); // the first one only
        let mut cut = f;
        cut.extend_from_slice(&record("default", 2, 0, 1, 1, b"b")[..20]);
        let files = vec![
            ("binlog.1".to_string(), cut),
            ("binlog.2".to_string(), Vec::new()),
        ];
        let jobs = read(&files, 10).expect("reads");
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn what_beaver_cannot_take_is_named_with_the_file_and_the_byte() {
        let bad = |bytes: Vec<u8>| read(&[("binlog.7".to_string(), bytes)], 4).unwrap_err();
        let e = bad(5_i32.to_le_bytes().to_vec());
        assert!(e.contains("binlog.7, byte 0: format version 5"), "{e}");
        let e = bad(file(&[record("default", 1, 0, 1, 1, b"too long")]));
        assert!(
            e.contains("binlog.7, byte 4: job 1 of 8 bytes, more than -z allows (4)"),
            "{e}"
        );
        let e = bad(file(&[record("default", 1, 0, 1, 9, b"a")]));
        assert!(e.contains("job 1 in an unknown state 9"), "{e}");
        let mut long_name = VERSION.to_le_bytes().to_vec();
        long_name.extend_from_slice(&500_u32.to_le_bytes());
        let e = bad(long_name);
        assert!(e.contains("byte 4: a tube name of 500 bytes"), "{e}");
        let mut cut_body = file(&[record("default", 1, 0, 1, 1, b"abcd")]);
        cut_body.truncate(4 + 4 + 7 + JOBREC_BYTES + 2);
        let e = bad(cut_body);
        assert!(e.contains("job 1's body cut short"), "{e}");
    }
}
