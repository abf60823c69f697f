//! The WAL task: encodes, writes and syncs the core's records; group commit.
//!
//! One write per batch of records that arrived together; one fdatasync in
//! flight at a time, with the next batch written while it runs; a record is
//! reported durable only when a sync that began after it was written has
//! returned.
//!
//! The log itself ([`Log`]) is shared: when it is idle (everything handed
//! over written and synced, no sync in flight), the core task may write and
//! sync a lone client's records itself instead of handing them over, which
//! saves the two thread wake-ups of a hand-off on each acknowledgement.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use beaver_core::{Record, codec};
use beaver_io::wal::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, pad_to_sector};
use beaver_io::wal::{SyncJob, SyncOutcome};
use beaver_io::{Disk, Wal};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use crate::figures::Figures;
use crate::observer::Observer;

/// What the core task sends the WAL task.
pub(crate) enum ToWal {
    /// Records to append, LSNs dense and increasing.
    Records(Vec<Arc<Record>>),
    /// Delete segments the given LSN covers entirely (the older kept snapshot's).
    DeleteThrough(u64, oneshot::Sender<()>),
    /// The core task's own commit used the prepared segment: prepare the next.
    Wake,
}

/// What the WAL task reports to the core task.
#[derive(Debug)]
pub(crate) enum WalEvent {
    /// Every LSN up to this is durable.
    Durable(u64),
    /// Records from this LSN on were not written (no space); the core reissues.
    AppendFailed { from_lsn: u64, error: String },
    /// The disk entered (`true`) or left the space reserve.
    DiskFull(bool),
    /// A fatal storage error: fail-stop.
    Fatal(beaver_io::Error),
    /// Enough log was written since the last snapshot: snapshot up to this LSN.
    SnapshotDue(u64),
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A sync begun, and how many records it makes durable.
type BegunSync<F> = (SyncJob<F>, u64);

/// The log's writing side, shared by the WAL task and the core task (see
/// [`Log::idle_for`]); each holds the lock for a whole operation.
pub(crate) struct Log<D: Disk, O: Observer> {
    wal: Wal<D>,
    figures: Arc<Figures>,
    observer: Arc<O>,
    settings: LogSettings,
    encoded: Vec<u8>,
    ends: Vec<(u64, usize)>,
    since_snapshot: u64,
    last_snapshot_at: Instant,
    /// `ToWal::Records` messages the WAL task has taken and written.
    taken: u64,
}

/// The settings a [`Log`] needs beside the WAL.
#[derive(Clone, Copy)]
pub(crate) struct LogSettings {
    pub snapshot_wal_bytes: u64,
    pub segment_bytes: u64,
    pub snapshot_interval_ms: u64,
}

impl<D: Disk, O: Observer> Log<D, O> {
    pub(crate) fn new(
        wal: Wal<D>,
        figures: Arc<Figures>,
        observer: Arc<O>,
        settings: LogSettings,
    ) -> Log<D, O> {
        Log {
            wal,
            figures,
            observer,
            settings,
            encoded: Vec::with_capacity(1 << 20),
            ends: Vec::new(),
            since_snapshot: 0,
            last_snapshot_at: Instant::now(),
            taken: 0,
        }
    }

    /// Whether the core task, having sent `sent` record messages, may write
    /// and sync records from `first_lsn` itself: every message was taken and
    /// written, everything written is durable, no sync is in flight, and the
    /// records continue the log. Order and the group-commit rule then hold
    /// whichever task writes.
    pub(crate) fn idle_for(&self, sent: u64, first_lsn: u64) -> bool {
        self.taken == sent
            && !self.wal.is_stopped()
            && !self.wal.sync_in_flight()
            && self.wal.written_lsn() == self.wal.durable_lsn()
            && self.wal.next_lsn() == first_lsn
    }

    /// Whether the next segment is neither prepared nor being prepared.
    pub(crate) fn next_segment_wanted(&self) -> bool {
        self.wal.next_segment_wanted()
    }

    /// Encodes and writes the records that continue the log; drops records
    /// of a generation the core has already been told failed. Records the
    /// WAL refuses (no space, too large) are reported in `events`.
    pub(crate) async fn write(
        &mut self,
        records: &[Arc<Record>],
        events: &mut Vec<WalEvent>,
    ) -> Result<(), beaver_io::Error> {
        let start = records.iter().position(|r| r.lsn == self.wal.next_lsn());
        let Some(start) = start else { return Ok(()) };
        let encoded = &mut self.encoded;
        let ends = &mut self.ends;
        encoded.clear();
        ends.clear();
        for (lsn, r) in (self.wal.next_lsn()..).zip(&records[start..]) {
            if r.lsn != lsn {
                break; // a later generation starts again at the failed LSN
            }
            codec::encode_record_into(r, encoded);
            ends.push((r.lsn, encoded.len()));
        }
        let max = self.wal.max_batch_bytes();
        let mut written = 0;
        let mut i = 0;
        while i < ends.len() {
            // Cut the records into batches that fit a segment.
            let begin_of = |k: usize| if k == 0 { 0 } else { ends[k - 1].1 };
            let mut slices: Vec<(u64, &[u8])> = Vec::new();
            let mut body = BATCH_HEADER_LEN as u64;
            let mut j = i;
            while j < ends.len() {
                let (l, end) = ends[j];
                let rec = &encoded[begin_of(j)..end];
                let framed = pad_to_sector(body + (RECORD_HEADER_LEN + rec.len()) as u64);
                if framed > max && !slices.is_empty() {
                    break;
                }
                body += (RECORD_HEADER_LEN + rec.len()) as u64;
                slices.push((l, rec));
                j += 1;
            }
            match self.wal.write_batch(&slices).await {
                Ok(info) => written += info.bytes,
                Err(e)
                    if e.is_no_space() || matches!(e, beaver_io::Error::RecordTooLarge { .. }) =>
                {
                    let from_lsn = slices[0].0;
                    error!(from_lsn, error = %e, "the WAL refused records; their requests are answered with the error");
                    events.push(WalEvent::AppendFailed {
                        from_lsn,
                        error: e.to_string(),
                    });
                    break;
                }
                Err(e) => return Err(e),
            }
            i = j;
        }
        if written > 0 {
            self.since_snapshot += written;
            self.observer.wal_written(written);
            #[cfg(feature = "mutants")]
            if beaver_core::mutants::active(beaver_core::mutants::Mutant::AckBeforeFsync) {
                events.push(WalEvent::Durable(self.wal.written_lsn()));
            }
        }
        Ok(())
    }

    /// Takes a finished sync's outcome; reports the durable LSN.
    fn synced(
        &mut self,
        outcome: SyncOutcome,
        began: Instant,
        records: u64,
        events: &mut Vec<WalEvent>,
    ) -> Result<(), beaver_io::Error> {
        let upto = self.wal.complete_sync(outcome)?;
        self.figures.durable_lsn.store(upto, Relaxed);
        self.figures.fsyncs.fetch_add(1, Relaxed);
        self.observer.fsync(began.elapsed().as_secs_f64(), records);
        self.observer.durable(upto);
        events.push(WalEvent::Durable(upto));
        Ok(())
    }

    /// Begins a sync of everything written, with the count of records it
    /// makes durable; `None` if nothing is to sync or one is in flight.
    fn begin_sync(&mut self) -> Result<Option<BegunSync<D::File>>, beaver_io::Error> {
        let durable = self.wal.durable_lsn();
        Ok(self.wal.begin_sync()?.map(|job| {
            let records = job.upto() - durable;
            (job, records)
        }))
    }

    /// Syncs everything written, in place (the core task's commit);
    /// `false` if there was nothing to sync.
    pub(crate) async fn sync_now(
        &mut self,
        events: &mut Vec<WalEvent>,
    ) -> Result<bool, beaver_io::Error> {
        let Some((job, records)) = self.begin_sync()? else {
            return Ok(false);
        };
        let began = Instant::now();
        let outcome = job.run().await;
        self.synced(outcome, began, records, events)?;
        Ok(true)
    }

    /// After any write: publishes the segment figures and asks for a
    /// snapshot when enough log (or time) has passed since the last one.
    pub(crate) fn housekeeping(&mut self, events: &mut Vec<WalEvent>) {
        let LogSettings {
            snapshot_wal_bytes,
            segment_bytes,
            snapshot_interval_ms,
        } = self.settings;
        // The files that exist: a segment that could not be created (no
        // space) is not one.
        let segments = self.wal.closed_segment_count() as u64
            + u64::from(self.wal.active_segment().is_some())
            + u64::from(self.wal.next_segment_ready());
        self.figures.wal_segments.store(segments, Relaxed);
        self.figures
            .wal_bytes
            .store(segments * segment_bytes, Relaxed);
        let interval_due = snapshot_interval_ms > 0
            && self.last_snapshot_at.elapsed() >= Duration::from_millis(snapshot_interval_ms)
            && self.since_snapshot > 0;
        if (self.since_snapshot >= snapshot_wal_bytes || interval_due) && self.wal.durable_lsn() > 0
        {
            self.since_snapshot = 0;
            self.last_snapshot_at = Instant::now();
            events.push(WalEvent::SnapshotDue(self.wal.durable_lsn()));
        }
    }
}

/// The WAL task: takes the core task's records, writes and syncs them, and
/// keeps the log's periodic work (segment preparation, space checks).
pub(crate) struct WalTask<D: Disk, O: Observer> {
    pub log: Arc<Mutex<Log<D, O>>>,
    pub rx: mpsc::UnboundedReceiver<ToWal>,
    pub events: mpsc::UnboundedSender<WalEvent>,
    pub space_check_interval_ms: u64,
    pub snapshot_estimate_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl<D: Disk, O: Observer> WalTask<D, O> {
    pub(crate) async fn run(mut self) {
        let mut sync: Option<(Boxed<SyncOutcome>, Instant, u64)> = None;
        let mut prepare: Option<Boxed<beaver_io::wal::PrepareOutcome<D::File>>> = None;
        let mut inbox: Vec<ToWal> = Vec::with_capacity(256);
        let mut out: Vec<WalEvent> = Vec::new();
        let mut pressure = false;
        let mut space_check = Instant::now();
        let space_every = Duration::from_millis(self.space_check_interval_ms.max(1));
        let mut prepare_after = Instant::now();
        loop {
            let begun = {
                let mut log = self.log.lock().await;
                if prepare.is_none() && prepare_after <= Instant::now() {
                    if let Some(job) = log.wal.begin_prepare() {
                        prepare = Some(Box::pin(job.run()));
                    }
                }
                if sync.is_none() && log.wal.written_lsn() > log.wal.durable_lsn() {
                    log.begin_sync()
                } else {
                    Ok(None)
                }
            };
            match begun {
                Ok(Some((job, records))) => {
                    sync = Some((Box::pin(job.run()), Instant::now(), records));
                }
                Ok(None) => {}
                Err(e) => return self.fatal(e),
            }
            tokio::select! {
                biased;
                outcome = async { sync.as_mut().map(|s| &mut s.0).expect("guarded").await }, if sync.is_some() => {
                    let Some((_, began, records)) = sync.take() else { continue };
                    let synced = self.log.lock().await.synced(outcome, began, records, &mut out);
                    if let Err(e) = synced {
                        return self.fatal(e);
                    }
                }
                outcome = async { prepare.as_mut().expect("guarded").await }, if prepare.is_some() => {
                    prepare = None;
                    let mut log = self.log.lock().await;
                    if let Err(e) = log.wal.finish_prepare(outcome).await {
                        if log.wal.is_stopped() {
                            drop(log);
                            return self.fatal(e);
                        }
                        // Not fatal: rotation will prepare inline (and report no space there).
                        // Wait before the next try, or a full disk makes this a hot loop.
                        prepare_after = Instant::now() + space_every;
                        warn!(error = %e, "could not prepare the next WAL segment ahead of need");
                    }
                }
                // Wakes an idle log for its periodic work: the space check
                // (a full disk must be noticed freed even when nothing is
                // written), a postponed preparation, the snapshot timer.
                _ = tokio::time::sleep_until(space_check + space_every) => {}
                n = self.rx.recv_many(&mut inbox, 256) => {
                    if n == 0 {
                        // The core task is gone: finish the sync in flight and stop.
                        if let Some((fut, began, records)) = sync.take() {
                            let outcome = fut.await;
                            let _ = self.log.lock().await.synced(outcome, began, records, &mut out);
                            self.report(&mut out);
                        }
                        return;
                    }
                    let mut log = self.log.lock().await;
                    let mut records: Vec<Arc<Record>> = Vec::new();
                    let mut deletions = Vec::new();
                    for msg in inbox.drain(..) {
                        match msg {
                            ToWal::Records(rs) => {
                                log.taken += 1;
                                records.extend(rs);
                            }
                            ToWal::DeleteThrough(lsn, done) => {
                                match log.wal.begin_delete_through(lsn) {
                                    Ok(job) => deletions.push((lsn, job, done)),
                                    Err(e) => {
                                        drop(log);
                                        return self.fatal(e);
                                    }
                                }
                            }
                            ToWal::Wake => {}
                        }
                    }
                    if let Err(e) = log.write(&records, &mut out).await {
                        drop(log);
                        return self.fatal(e);
                    }
                    // File removals and their directory fsync need nothing of
                    // the log: the core task may commit in place meanwhile.
                    drop(log);
                    for (lsn, job, done) in deletions {
                        if let Some(job) = job {
                            match job.run().await {
                                Ok(n) => debug!(segments = n, upto_lsn = lsn, "deleted WAL segments covered by the older snapshot"),
                                Err(e) => warn!(error = %e, "could not delete covered WAL segments"),
                            }
                        }
                        let _ = done.send(());
                    }
                }
            }
            // The durability report first, then the housekeeping's.
            if !self.report(&mut out) {
                return;
            }
            self.log.lock().await.housekeeping(&mut out);
            if !self.report(&mut out) {
                return;
            }
            if space_check.elapsed() >= space_every {
                space_check = Instant::now();
                let estimate = self.snapshot_estimate_bytes.load(Relaxed);
                let status = self.log.lock().await.wal.space_status(estimate).await;
                match status {
                    Ok(s) if s.pressure != pressure => {
                        pressure = s.pressure;
                        warn!(
                            free_bytes = s.free_bytes,
                            reserve_bytes = s.reserve_bytes,
                            full = pressure,
                            "disk space reserve"
                        );
                        let _ = self.events.send(WalEvent::DiskFull(pressure));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "could not read free disk space"),
                }
            }
        }
    }

    /// Sends the core task these events; `false` once it is gone.
    fn report(&self, out: &mut Vec<WalEvent>) -> bool {
        out.drain(..).all(|ev| self.events.send(ev).is_ok())
    }

    fn fatal(self, e: beaver_io::Error) {
        error!(error = %e, "storage failed: fail-stop");
        let _ = self.events.send(WalEvent::Fatal(e));
    }
}
