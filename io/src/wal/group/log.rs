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
    use std::path::Path;
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::sim_disk::{SimDisk, SimDiskConfig};
    use crate::wal::writer::WalOptions;

    use crate::test_runtime::block_on_paused as block_on;

    /// A record of `len` bytes.
    struct Record(u64, usize);

    impl LogEntry for Record {
        fn lsn(&self) -> u64 {
            self.0
        }

        fn encode_into(&self, out: &mut Vec<u8>) {
            out.resize(out.len() + self.1, b'r');
        }
    }

    /// What the log reported to its hooks, newest last.
    #[derive(Default)]
    struct Heard {
        written: StdMutex<Vec<u64>>,
        synced: StdMutex<Vec<(u64, u64)>>,
        segments: StdMutex<Vec<(u64, u64)>>,
        closed_through: StdMutex<Vec<u64>>,
    }

    impl CommitHooks for Heard {
        fn written(&self, bytes: u64) {
            self.written.lock().expect("lock").push(bytes);
        }

        fn synced(&self, upto: u64, records: u64, _secs: f64) {
            self.synced.lock().expect("lock").push((upto, records));
        }

        fn segments(&self, count: u64, bytes: u64) {
            self.segments.lock().expect("lock").push((count, bytes));
        }

        fn closed_through(&self, lsn: u64) {
            self.closed_through.lock().expect("lock").push(lsn);
        }
    }

    /// A log of 4 KiB segments on a new simulated disk.
    async fn new_log(settings: CommitSettings) -> (Log<SimDisk, Heard>, SimDisk) {
        let disk = SimDisk::new(1, SimDiskConfig::default());
        let opts = WalOptions {
            segment_bytes: 4096,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(disk.clone(), Path::new("/w"), opts, 0, |_, _| {})
            .await
            .expect("open");
        (Log::new(wal, Arc::new(Heard::default()), settings), disk)
    }

    /// Writes `n` records of `len` bytes that continue the log.
    async fn write(log: &mut Log<SimDisk, Heard>, n: u64, len: usize) {
        let first = log.wal.next_lsn();
        let records: Vec<Record> = (first..first + n).map(|l| Record(l, len)).collect();
        let mut events = Vec::new();
        log.write(&records, &mut events).await.expect("write");
        assert!(events.is_empty(), "{events:?}");
    }

    /// What the housekeeping reports now: the segment files and the last
    /// LSN of the newest closed segment.
    fn segments_and_closed_through(log: &mut Log<SimDisk, Heard>) -> ((u64, u64), u64) {
        log.housekeeping(&mut Vec::new());
        let segments = log.hooks.segments.lock().expect("lock").last().copied();
        let closed = log
            .hooks
            .closed_through
            .lock()
            .expect("lock")
            .last()
            .copied();
        (segments.expect("segments"), closed.expect("closed through"))
    }

    /// The snapshots the housekeeping asks for now.
    fn snapshots_due(log: &mut Log<SimDisk, Heard>) -> Vec<u64> {
        let mut events = Vec::new();
        log.housekeeping(&mut events);
        events
            .iter()
            .filter_map(|e| match e {
                CommitEvent::SnapshotDue(lsn) => Some(*lsn),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_log_is_idle_only_when_every_hand_over_is_written_and_durable() {
        block_on(async {
            let (mut log, disk) = new_log(CommitSettings::default()).await;
            assert!(log.idle_for(0, 1));
            assert!(!log.idle_for(1, 1), "a hand-over not taken yet");
            assert!(!log.idle_for(0, 2), "records that do not continue the log");
            write(&mut log, 1, 10).await;
            assert!(!log.idle_for(0, 2), "written, not durable");
            let (job, _) = log.begin_sync().expect("begin").expect("a sync");
            assert!(!log.idle_for(0, 2), "a sync in flight");
            let outcome = job.run().await;
            log.synced(outcome, Instant::now(), 1, &mut Vec::new())
                .expect("synced");
            assert!(log.idle_for(0, 2));
            log.taken = 3;
            assert!(log.idle_for(3, 2));
            // A failed sync stops the WAL: never idle again.
            write(&mut log, 1, 10).await;
            disk.fail_next_syncs(1);
            assert!(log.sync_now(&mut Vec::new()).await.is_err());
            assert!(log.wal.is_stopped());
            assert!(!log.idle_for(3, 3));
        });
    }

    #[test]
    fn housekeeping_reports_the_segment_files_and_the_last_closed_lsn() {
        block_on(async {
            let (mut log, _disk) = new_log(CommitSettings::default()).await;
            assert_eq!(segments_and_closed_through(&mut log), ((0, 4096), 0));
            write(&mut log, 1, 10).await; // the first segment is made
            assert_eq!(segments_and_closed_through(&mut log), ((1, 4096), 0));
            // Three 1 KiB records fill a segment: the log rotates.
            while log.wal.closed_segment_count() < 2 {
                write(&mut log, 1, 1000).await;
            }
            let closed = log.wal.closed_segments_last_lsn().expect("closed");
            assert_eq!(segments_and_closed_through(&mut log), ((3, 4096), closed));
            let job = log.wal.begin_prepare().expect("a next segment is wanted");
            let prepared = job.run().await;
            log.wal.finish_prepare(prepared).await.expect("prepare");
            // Two closed, the active one and the prepared one.
            assert_eq!(segments_and_closed_through(&mut log), ((4, 4096), closed));
        });
    }

    #[test]
    fn a_snapshot_is_due_once_enough_log_is_durable() {
        block_on(async {
            // Enough is one byte more than the first batch.
            let (mut probe, _disk) = new_log(CommitSettings::default()).await;
            write(&mut probe, 1, 1000).await;
            let first = probe.hooks.written.lock().expect("lock")[0];
            let settings = CommitSettings {
                snapshot_wal_bytes: first + 1,
                ..CommitSettings::default()
            };
            let (mut log, _disk) = new_log(settings).await;
            assert_eq!(
                snapshots_due(&mut log),
                Vec::<u64>::new(),
                "nothing written"
            );
            write(&mut log, 1, 1000).await;
            log.sync_now(&mut Vec::new()).await.expect("sync");
            assert_eq!(snapshots_due(&mut log), Vec::<u64>::new(), "not enough");
            write(&mut log, 1, 1000).await; // enough; the second not durable
            assert_eq!(snapshots_due(&mut log), [1], "durable up to 1");
            assert_eq!(snapshots_due(&mut log), Vec::<u64>::new(), "asked once");
        });
    }

    #[test]
    fn no_snapshot_is_due_before_anything_is_durable() {
        block_on(async {
            let settings = CommitSettings {
                snapshot_wal_bytes: 1,
                ..CommitSettings::default()
            };
            let (mut log, _disk) = new_log(settings).await;
            write(&mut log, 2, 100).await;
            assert_eq!(snapshots_due(&mut log), Vec::<u64>::new());
            log.sync_now(&mut Vec::new()).await.expect("sync");
            assert_eq!(snapshots_due(&mut log), [2]);
        });
    }

    #[test]
    fn a_sync_reports_how_many_records_it_made_durable() {
        block_on(async {
            let (mut log, _disk) = new_log(CommitSettings::default()).await;
            write(&mut log, 1, 10).await;
            assert!(log.sync_now(&mut Vec::new()).await.expect("sync"));
            write(&mut log, 3, 10).await;
            assert!(log.sync_now(&mut Vec::new()).await.expect("sync"));
            assert!(
                !log.sync_now(&mut Vec::new())
                    .await
                    .expect("nothing to sync")
            );
            let synced = log.hooks.synced.lock().expect("lock").clone();
            assert_eq!(synced, [(1, 1), (4, 3)]);
        });
    }

    #[test]
    fn records_the_wal_refuses_are_reported_and_the_log_goes_on() {
        block_on(async {
            let (mut log, disk) = new_log(CommitSettings::default()).await;
            write(&mut log, 1, 10).await;
            let reports = |log: &Log<SimDisk, Heard>| log.hooks.written.lock().expect("lock").len();
            let before = reports(&log);
            let mut events = Vec::new();
            log.write(&[Record(2, 8192)], &mut events)
                .await
                .expect("not fatal");
            assert!(
                matches!(
                    events.as_slice(),
                    [CommitEvent::AppendFailed {
                        from_lsn: 2,
                        error: Error::RecordTooLarge { .. }
                    }]
                ),
                "{events:?}"
            );
            assert_eq!(reports(&log), before, "nothing written, nothing reported");
            // A segment full, no room for the next: refused for lack of space.
            while log.wal.closed_segment_count() == 0 {
                write(&mut log, 1, 1000).await;
            }
            disk.set_capacity(disk.used_bytes());
            let before = reports(&log);
            let next = log.wal.next_lsn();
            let mut events = Vec::new();
            let records: Vec<Record> = (next..next + 4).map(|l| Record(l, 1000)).collect();
            log.write(&records, &mut events).await.expect("not fatal");
            assert!(
                matches!(
                    events.as_slice(),
                    [CommitEvent::AppendFailed { from_lsn, error }]
                        if *from_lsn == next && error.is_no_space()
                ),
                "{events:?}"
            );
            assert_eq!(reports(&log), before, "nothing written, nothing reported");
            assert!(!log.wal.is_stopped());
        });
    }

    #[test]
    fn a_failed_write_is_fatal() {
        block_on(async {
            let (mut log, disk) = new_log(CommitSettings::default()).await;
            write(&mut log, 1, 10).await;
            disk.crash_process(); // every open handle is unusable now
            let mut events = Vec::new();
            let r = log.write(&[Record(2, 10)], &mut events).await;
            assert!(r.is_err() && events.is_empty(), "{r:?} {events:?}");
            assert!(log.wal.is_stopped());
        });
    }

    #[test]
    fn a_snapshot_is_due_after_the_interval_if_the_log_grew() {
        block_on(async {
            let settings = CommitSettings {
                snapshot_interval_ms: 1000,
                ..CommitSettings::default()
            };
            let (mut log, _disk) = new_log(settings).await;
            tokio::time::advance(Duration::from_millis(1500)).await;
            assert_eq!(
                snapshots_due(&mut log),
                Vec::<u64>::new(),
                "nothing written"
            );
            write(&mut log, 1, 10).await;
            log.sync_now(&mut Vec::new()).await.expect("sync");
            assert_eq!(snapshots_due(&mut log), [1]);
            write(&mut log, 1, 10).await;
            log.sync_now(&mut Vec::new()).await.expect("sync");
            tokio::time::advance(Duration::from_millis(999)).await;
            assert_eq!(snapshots_due(&mut log), Vec::<u64>::new(), "too soon");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(snapshots_due(&mut log), [2]);
            tokio::time::advance(Duration::from_millis(1000)).await;
            assert_eq!(snapshots_due(&mut log), Vec::<u64>::new(), "nothing since");
        });
    }

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
