//! The log's writing side, shared by the WAL task and the proposer's
//! in-place commits: batch cutting, syncs and their reports, housekeeping.
//! Whoever holds it holds it for one whole operation.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::error;

use crate::disk::Disk;
use crate::error::{Error, Result};
use crate::wal::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, pad_to_sector};
use crate::wal::group::{CommitEvent, CommitHooks, CommitSettings, LogEntry};
use crate::wal::writer::{SyncJob, SyncOutcome, Wal};

/// A sync begun, and how many records it makes durable.
pub(crate) type BegunSync<F> = (SyncJob<F>, u64);

pub(crate) struct Log<D: Disk, H: CommitHooks> {
    pub(crate) wal: Wal<D>,
    pub(crate) hooks: Arc<H>,
    settings: CommitSettings,
    /// The bodies of the records being written, back to back.
    encoded: Vec<u8>,
    /// Each record's LSN and where its body ends in `encoded`.
    ends: Vec<(u64, usize)>,
    since_snapshot: u64,
    last_snapshot_at: Instant,
    /// Record hand-overs the WAL task has taken and written.
    pub(crate) taken: u64,
}

impl<D: Disk, H: CommitHooks> Log<D, H> {
    pub(crate) fn new(wal: Wal<D>, hooks: Arc<H>, settings: CommitSettings) -> Log<D, H> {
        Log {
            wal,
            hooks,
            settings,
            encoded: Vec::with_capacity(1 << 20),
            ends: Vec::new(),
            since_snapshot: 0,
            last_snapshot_at: Instant::now(),
            taken: 0,
        }
    }

    /// Whether the proposer, having sent `sent` record hand-overs, may
    /// write and sync records from `first_lsn` itself: every hand-over was
    /// taken and written, everything written is durable, no sync is in
    /// flight, and the records continue the log. Order and the
    /// group-commit rule then hold whichever task writes.
    pub(crate) fn idle_for(&self, sent: u64, first_lsn: u64) -> bool {
        self.taken == sent
            && !self.wal.is_stopped()
            && !self.wal.sync_in_flight()
            && self.wal.written_lsn() == self.wal.durable_lsn()
            && self.wal.next_lsn() == first_lsn
    }

    /// Encodes and writes the records that continue the log; drops records
    /// of a generation the proposer has already been told failed. Records
    /// the WAL refuses (no space, too large) are reported in `events`.
    pub(crate) async fn write<R: LogEntry>(
        &mut self,
        records: &[R],
        events: &mut Vec<CommitEvent>,
    ) -> Result<()> {
        if !self.encode(records) {
            return Ok(());
        }
        let max = self.wal.max_batch_bytes();
        let mut written = 0;
        let mut i = 0;
        while i < self.ends.len() {
            let mut slices: Vec<(u64, &[u8])> = Vec::new();
            let j = next_batch(&self.encoded, &self.ends, i, max, &mut slices);
            match self.wal.write_batch(&slices).await {
                Ok(info) => written += info.bytes,
                Err(e) if e.is_no_space() || matches!(e, Error::RecordTooLarge { .. }) => {
                    let from_lsn = slices[0].0;
                    error!(from_lsn, error = %e, "the WAL refused records; their requests are answered with the error");
                    events.push(CommitEvent::AppendFailed { from_lsn, error: e });
                    break;
                }
                Err(e) => return Err(e),
            }
            i = j;
        }
        if written > 0 {
            self.since_snapshot += written;
            self.hooks.written(written);
            self.planted_ack_before_fsync(events);
        }
        Ok(())
    }

    /// The planted bug `ack-before-fsync`: what was written is reported
    /// durable at once. Nothing without it.
    fn planted_ack_before_fsync(&self, _events: &mut Vec<CommitEvent>) {
        #[cfg(feature = "mutants")]
        if self
            .wal
            .planted()
            .is(beaver_planted::Mutant::AckBeforeFsync)
        {
            _events.push(CommitEvent::Durable(self.wal.written_lsn()));
        }
    }

    /// Encodes the records that continue the log into `encoded`/`ends`;
    /// `false` if none does.
    fn encode<R: LogEntry>(&mut self, records: &[R]) -> bool {
        let next = self.wal.next_lsn();
        let Some(start) = records.iter().position(|r| r.lsn() == next) else {
            return false;
        };
        self.encoded.clear();
        self.ends.clear();
        for (lsn, r) in (next..).zip(&records[start..]) {
            if r.lsn() != lsn {
                break; // a later generation starts again at the failed LSN
            }
            r.encode_into(&mut self.encoded);
            self.ends.push((lsn, self.encoded.len()));
        }
        true
    }

    /// Takes a finished sync's outcome; reports the durable LSN.
    pub(crate) fn synced(
        &mut self,
        outcome: SyncOutcome,
        began: Instant,
        records: u64,
        events: &mut Vec<CommitEvent>,
    ) -> Result<()> {
        let upto = self.wal.complete_sync(outcome)?;
        self.hooks
            .synced(upto, records, began.elapsed().as_secs_f64());
        events.push(CommitEvent::Durable(upto));
        Ok(())
    }

    /// Begins a sync of everything written, with the count of records it
    /// makes durable; `None` if nothing is to sync or one is in flight.
    pub(crate) fn begin_sync(&mut self) -> Result<Option<BegunSync<D::File>>> {
        let durable = self.wal.durable_lsn();
        Ok(self.wal.begin_sync()?.map(|job| {
            let records = job.upto() - durable;
            (job, records)
        }))
    }

    /// Syncs everything written, here (the proposer's in-place commit);
    /// `false` if there was nothing to sync.
    pub(crate) async fn sync_now(&mut self, events: &mut Vec<CommitEvent>) -> Result<bool> {
        let Some((job, records)) = self.begin_sync()? else {
            return Ok(false);
        };
        let began = Instant::now();
        let outcome = job.run().await;
        self.synced(outcome, began, records, events)?;
        Ok(true)
    }

    /// After any write: publishes the segment count and asks for a
    /// snapshot when enough log (or time) has passed since the last one.
    pub(crate) fn housekeeping(&mut self, events: &mut Vec<CommitEvent>) {
        let CommitSettings {
            snapshot_wal_bytes,
            snapshot_interval_ms,
            ..
        } = self.settings;
        // The files that exist: a segment that could not be created (no
        // space) is not one.
        let segments = self.wal.closed_segment_count() as u64
            + u64::from(self.wal.active_segment().is_some())
            + u64::from(self.wal.next_segment_ready());
        self.hooks.segments(segments, self.wal.segment_bytes());
        let closed = self.wal.closed_segments_last_lsn().unwrap_or(0);
        self.hooks.closed_through(closed);
        let interval_due = snapshot_interval_ms > 0
            && self.last_snapshot_at.elapsed() >= Duration::from_millis(snapshot_interval_ms)
            && self.since_snapshot > 0;
        if (self.since_snapshot >= snapshot_wal_bytes || interval_due) && self.wal.durable_lsn() > 0
        {
            self.since_snapshot = 0;
            self.last_snapshot_at = Instant::now();
            events.push(CommitEvent::SnapshotDue(self.wal.durable_lsn()));
        }
    }
}

/// Cuts the next batch, from record `from` on, that fits `max` framed
/// bytes (a record larger than that goes alone, for the WAL to refuse);
/// fills `slices` and returns the index after it.
fn next_batch<'a>(
    encoded: &'a [u8],
    ends: &[(u64, usize)],
    from: usize,
    max: u64,
    slices: &mut Vec<(u64, &'a [u8])>,
) -> usize {
    let begin_of = |k: usize| if k == 0 { 0 } else { ends[k - 1].1 };
    let mut body = BATCH_HEADER_LEN as u64;
    let mut j = from;
    while j < ends.len() {
        let (lsn, end) = ends[j];
        let rec = &encoded[begin_of(j)..end];
        let framed = pad_to_sector(body + (RECORD_HEADER_LEN + rec.len()) as u64);
        if framed > max && !slices.is_empty() {
            break;
        }
        body += (RECORD_HEADER_LEN + rec.len()) as u64;
        slices.push((lsn, rec));
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` record bodies of `len` bytes back to back, and where each ends.
    fn records(n: usize, len: usize) -> (Vec<u8>, Vec<(u64, usize)>) {
        let encoded = vec![7; n * len];
        let ends = (1..=n).map(|i| (i as u64, i * len)).collect();
        (encoded, ends)
    }

    /// The batches `next_batch` cuts, as the LSNs of each.
    fn batches(encoded: &[u8], ends: &[(u64, usize)], max: u64) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < ends.len() {
            let mut slices = Vec::new();
            let after = next_batch(encoded, ends, i, max, &mut slices);
            assert!(after > i, "no record taken from record {i} on");
            i = after;
            out.push(slices.iter().map(|(lsn, _)| *lsn).collect());
        }
        out
    }

    #[test]
    fn a_batch_takes_records_until_the_next_would_not_fit() {
        // 64 + 3 × (17 + 100) = 415 bytes pad to one sector; a fourth
        // record would need two.
        let (encoded, ends) = records(7, 100);
        let cut = batches(&encoded, &ends, 512);
        assert_eq!(cut, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    }

    #[test]
    fn a_batch_may_fill_its_room_exactly() {
        // 64 + 4 × (17 + 95) = 512 bytes: one sector, exactly.
        let (encoded, ends) = records(5, 95);
        let cut = batches(&encoded, &ends, 512);
        assert_eq!(cut, [vec![1, 2, 3, 4], vec![5]]);
    }

    #[test]
    fn a_record_larger_than_a_batch_goes_alone() {
        let (mut encoded, mut ends) = records(1, 100);
        encoded.extend([8; 1000]);
        ends.push((2, 1100));
        encoded.extend([9; 100]);
        ends.push((3, 1200));
        let mut slices = Vec::new();
        let after = next_batch(&encoded, &ends, 1, 512, &mut slices);
        assert_eq!(after, 2);
        assert_eq!(slices, [(2, &[8; 1000][..])]);
        assert_eq!(batches(&encoded, &ends, 512), [vec![1], vec![2], vec![3]]);
    }
}
