//! Decoding an encoded snapshot fed in pieces of any size, straight into a
//! fresh state, as its file is read.
//!
//! The guarantee: feeding the bytes in any pieces restores the same state
//! as feeding them whole, and refuses the same inputs. Only what is fed
//! and not yet decoded is held: at most one job, remembered id or header
//! (plus the piece being fed), never the whole snapshot.
//!
//! The encoding is postcard's of [`crate::snapshot::Snapshot`] behind its
//! version byte: the fields before the jobs, the jobs' count and each job,
//! the remembered ids' count and each id, then (version 2 on) the paused
//! queues. Each part is decoded once all its bytes are there; a part cut
//! by the end of a piece waits for the next.

use crate::codec::{DecodeError, SNAPSHOT_FORMAT_VERSION, readable_version};
use crate::job::{JobId, QueueName};
use crate::legacy::SnapshotJobV1;
use crate::record::Lsn;
use crate::snapshot::{SnapshotJob, restored_entry};
use crate::state::{Restorer, State};
use crate::time::UnixMillis;

/// What comes next in the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Version,
    Head,
    Jobs { left: u64 },
    RememberedCount,
    Remembered { left: u64 },
    Paused,
    Done,
}

/// The snapshot's fields before the jobs, and the jobs' count.
type Head = (Lsn, UnixMillis, u64, Vec<QueueName>, u64);

/// Decodes a snapshot fed in pieces into the state it was made for (a
/// fresh one: see [`State::restorer`]).
pub(crate) struct SnapshotDecoder {
    next: Next,
    version: u8,
    /// Bytes fed and not decoded yet: the start of a part cut by a piece's end.
    carry: Vec<u8>,
    /// No snapshot holds more jobs than its bytes / 8: room is made for
    /// at most that many at once.
    len_cap: usize,
    /// The state's index of each of the snapshot's queue numbers.
    queues: Vec<u32>,
    restorer: Option<Restorer>,
}

impl SnapshotDecoder {
    /// A decoder of a snapshot of `len` bytes in all (0 if unknown: room
    /// for the jobs is then made as they come).
    pub(crate) fn new(len: usize) -> SnapshotDecoder {
        SnapshotDecoder {
            next: Next::Version,
            version: 0,
            carry: Vec::new(),
            len_cap: len / 8,
            queues: Vec::new(),
            restorer: None,
        }
    }

    /// Decodes what `piece` completes. `Err` leaves the state unusable.
    pub(crate) fn feed(&mut self, state: &mut State, piece: &[u8]) -> Result<(), DecodeError> {
        if self.carry.is_empty() {
            let used = self.decode(state, piece)?;
            self.carry.extend_from_slice(&piece[used..]);
            return Ok(());
        }
        let mut carry = std::mem::take(&mut self.carry);
        carry.extend_from_slice(piece);
        let used = self.decode(state, &carry)?;
        carry.drain(..used);
        self.carry = carry;
        Ok(())
    }

    /// Ends the snapshot: `Err` if it stopped short of its end.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.next {
            Next::Version => Err(DecodeError::Empty),
            Next::Done => Ok(()),
            _ => Err(malformed("the snapshot ends early")),
        }
    }

    /// Decodes every part `bytes` holds whole; returns the bytes used.
    fn decode(&mut self, state: &mut State, bytes: &[u8]) -> Result<usize, DecodeError> {
        let mut at = 0;
        // Each step takes a part or moves past an empty one, and `Done`
        // takes nothing: the loop ends.
        while let Some(used) = self.step(state, &bytes[at..])? {
            at += used;
        }
        Ok(at)
    }

    /// Decodes the next part if `b` holds it whole: the bytes it took
    /// (0 for a part of no bytes), or `None` to wait for more.
    fn step(&mut self, state: &mut State, b: &[u8]) -> Result<Option<usize>, DecodeError> {
        match self.next {
            Next::Version => self.version(b),
            Next::Head => self.head(state, b),
            Next::Jobs { left: 0 } => {
                let r = self
                    .restorer
                    .take()
                    .ok_or_else(|| malformed("jobs decoded twice"))?;
                r.finish(state).map_err(DecodeError::Malformed)?;
                self.next = Next::RememberedCount;
                Ok(Some(0))
            }
            Next::Jobs { left } => self.job(state, b, left),
            Next::RememberedCount => Ok(take::<u64>(b)?.map(|(n, used)| {
                self.next = Next::Remembered { left: n };
                used
            })),
            Next::Remembered { left: 0 } => {
                self.next = if self.version >= 2 {
                    Next::Paused
                } else {
                    Next::Done
                };
                Ok(Some(0))
            }
            Next::Remembered { left } => self.remembered(state, b, left),
            Next::Paused => self.paused(state, b),
            Next::Done if b.is_empty() => Ok(None),
            Next::Done => Err(malformed(format!("{} bytes after the snapshot", b.len()))),
        }
    }

    fn version(&mut self, b: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(&v) = b.first() else {
            return Ok(None);
        };
        self.version = readable_version(v, SNAPSHOT_FORMAT_VERSION)?;
        self.next = Next::Head;
        Ok(Some(1))
    }

    fn head(&mut self, state: &mut State, b: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(((lsn, log_time, next_seq, names, jobs), used)) = take::<Head>(b)? else {
            return Ok(None);
        };
        self.queues = state.restore_head(lsn, log_time, next_seq, &names);
        let room = usize::try_from(jobs)
            .unwrap_or(usize::MAX)
            .min(self.len_cap);
        self.restorer = Some(state.restorer(room));
        self.next = Next::Jobs { left: jobs };
        Ok(Some(used))
    }

    fn job(
        &mut self,
        state: &mut State,
        b: &[u8],
        left: u64,
    ) -> Result<Option<usize>, DecodeError> {
        let decoded = match self.version {
            1 => take::<SnapshotJobV1>(b)?.map(|(j, used)| (SnapshotJob::from(j), used)),
            _ => take::<SnapshotJob>(b)?,
        };
        let Some((job, used)) = decoded else {
            return Ok(None);
        };
        let r = self
            .restorer
            .as_mut()
            .ok_or_else(|| malformed("a job after the jobs"))?;
        let entry = restored_entry(job, &self.queues).map_err(DecodeError::Malformed)?;
        r.push(state, entry).map_err(DecodeError::Malformed)?;
        self.next = Next::Jobs { left: left - 1 };
        Ok(Some(used))
    }

    fn remembered(
        &mut self,
        state: &mut State,
        b: &[u8],
        left: u64,
    ) -> Result<Option<usize>, DecodeError> {
        let Some(((t, id), used)) = take::<(UnixMillis, JobId)>(b)? else {
            return Ok(None);
        };
        state
            .restore_remembered(t, id)
            .map_err(DecodeError::Malformed)?;
        self.next = Next::Remembered { left: left - 1 };
        Ok(Some(used))
    }

    fn paused(&mut self, state: &mut State, b: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some((paused, used)) = take::<Vec<(QueueName, UnixMillis)>>(b)? else {
            return Ok(None);
        };
        for (q, until) in &paused {
            state
                .restore_pause(q, *until)
                .map_err(DecodeError::Malformed)?;
        }
        self.next = Next::Done;
        Ok(Some(used))
    }
}

/// One `T` from the start of `b` and the bytes it took, or `None` if `b`
/// ends inside it.
fn take<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<Option<(T, usize)>, DecodeError> {
    match postcard::take_from_bytes::<T>(b) {
        Ok((value, rest)) => Ok(Some((value, b.len() - rest.len()))),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Ok(None),
        Err(e) => Err(malformed(e.to_string())),
    }
}

fn malformed(why: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(why.into())
}
