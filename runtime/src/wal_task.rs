//! The WAL task: encodes, writes and syncs the core's records; group commit.
//!
//! One write per batch of records that arrived together; one fdatasync in
//! flight at a time, with the next batch written while it runs; a record is
//! reported durable only when a sync that began after it was written has
//! returned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use beaver_core::{Record, codec};
use beaver_io::wal::format::{BATCH_HEADER_LEN, RECORD_HEADER_LEN, pad_to_sector};
use beaver_io::{Disk, Wal};
use tokio::sync::{mpsc, oneshot};
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

pub(crate) struct WalTask<D: Disk, O: Observer> {
    pub wal: Wal<D>,
    pub rx: mpsc::UnboundedReceiver<ToWal>,
    pub events: mpsc::UnboundedSender<WalEvent>,
    pub figures: Arc<Figures>,
    pub observer: Arc<O>,
    pub snapshot_wal_bytes: u64,
    pub segment_bytes: u64,
    pub snapshot_interval_ms: u64,
    pub space_check_interval_ms: u64,
    pub snapshot_estimate_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl<D: Disk, O: Observer> WalTask<D, O> {
    pub(crate) async fn run(mut self) {
        let mut sync: Option<(Boxed<beaver_io::wal::SyncOutcome>, Instant, u64)> = None;
        let mut prepare: Option<Boxed<beaver_io::wal::PrepareOutcome<D::File>>> = None;
        let mut inbox: Vec<ToWal> = Vec::with_capacity(256);
        let mut encoded: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut ends: Vec<(u64, usize)> = Vec::new();
        let mut since_snapshot: u64 = 0;
        let mut last_snapshot_at = Instant::now();
        let mut pressure = false;
        let mut space_check = Instant::now();
        let space_every = Duration::from_millis(self.space_check_interval_ms.max(1));
        let mut prepare_after = Instant::now();
        loop {
            if sync.is_none() && self.wal.written_lsn() > self.wal.durable_lsn() {
                match self.wal.begin_sync() {
                    Ok(Some(job)) => {
                        let records = job.upto() - self.wal.durable_lsn();
                        sync = Some((Box::pin(job.run()), Instant::now(), records));
                    }
                    Ok(None) => {}
                    Err(e) => return self.fatal(e),
                }
            }
            if prepare.is_none() && prepare_after <= Instant::now() {
                if let Some(job) = self.wal.begin_prepare() {
                    prepare = Some(Box::pin(job.run()));
                }
            }
            tokio::select! {
                biased;
                outcome = async { sync.as_mut().map(|s| &mut s.0).expect("guarded").await }, if sync.is_some() => {
                    let Some((_, began, records)) = sync.take() else { continue };
                    match self.wal.complete_sync(outcome) {
                        Ok(upto) => {
                            self.figures.durable_lsn.store(upto, Relaxed);
                            self.figures.fsyncs.fetch_add(1, Relaxed);
                            self.observer.fsync(began.elapsed().as_secs_f64(), records);
                            self.observer.durable(upto);
                            if self.events.send(WalEvent::Durable(upto)).is_err() {
                                return;
                            }
                        }
                        Err(e) => return self.fatal(e),
                    }
                }
                outcome = async { prepare.as_mut().expect("guarded").await }, if prepare.is_some() => {
                    prepare = None;
                    if let Err(e) = self.wal.finish_prepare(outcome).await {
                        if self.wal.is_stopped() {
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
                        if let Some((fut, _, _)) = sync.take() {
                            if let Ok(upto) = self.wal.complete_sync(fut.await) {
                                let _ = self.events.send(WalEvent::Durable(upto));
                            }
                        }
                        return;
                    }
                    let mut records: Vec<Arc<Record>> = Vec::new();
                    for msg in inbox.drain(..) {
                        match msg {
                            ToWal::Records(rs) => records.extend(rs),
                            ToWal::DeleteThrough(lsn, done) => {
                                match self.wal.delete_through(lsn).await {
                                    Ok(n) => debug!(segments = n, upto_lsn = lsn, "deleted WAL segments covered by the older snapshot"),
                                    Err(e) if self.wal.is_stopped() => return self.fatal(e),
                                    Err(e) => warn!(error = %e, "could not delete covered WAL segments"),
                                }
                                let _ = done.send(());
                            }
                        }
                    }
                    match self.write(&records, &mut encoded, &mut ends).await {
                        Ok(bytes) => {
                            since_snapshot += bytes;
                            self.observer.wal_written(bytes);
                            #[cfg(feature = "mutants")]
                            if beaver_core::mutants::active(beaver_core::mutants::Mutant::AckBeforeFsync) {
                                let _ = self.events.send(WalEvent::Durable(self.wal.written_lsn()));
                            }
                        }
                        Err(e) => return self.fatal(e),
                    }
                }
            }
            let segments = self.wal.closed_segments().len() as u64 + 1;
            self.figures.wal_segments.store(segments, Relaxed);
            self.figures
                .wal_bytes
                .store(segments * self.segment_bytes, Relaxed);
            let interval_due = self.snapshot_interval_ms > 0
                && last_snapshot_at.elapsed() >= Duration::from_millis(self.snapshot_interval_ms)
                && since_snapshot > 0;
            if (since_snapshot >= self.snapshot_wal_bytes || interval_due)
                && self.wal.durable_lsn() > 0
            {
                since_snapshot = 0;
                last_snapshot_at = Instant::now();
                let _ = self
                    .events
                    .send(WalEvent::SnapshotDue(self.wal.durable_lsn()));
            }
            if space_check.elapsed() >= space_every {
                space_check = Instant::now();
                let estimate = self.snapshot_estimate_bytes.load(Relaxed);
                match self.wal.space_status(estimate).await {
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

    /// Encodes and writes the records that continue the log; drops records
    /// of a generation the core has already been told failed.
    async fn write(
        &mut self,
        records: &[Arc<Record>],
        encoded: &mut Vec<u8>,
        ends: &mut Vec<(u64, usize)>,
    ) -> Result<u64, beaver_io::Error> {
        let start = records.iter().position(|r| r.lsn == self.wal.next_lsn());
        let Some(start) = start else { return Ok(0) };
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
                    let _ = self.events.send(WalEvent::AppendFailed {
                        from_lsn,
                        error: e.to_string(),
                    });
                    return Ok(written);
                }
                Err(e) => return Err(e),
            }
            i = j;
        }
        Ok(written)
    }

    fn fatal(self, e: beaver_io::Error) {
        error!(error = %e, "storage failed: fail-stop");
        let _ = self.events.send(WalEvent::Fatal(e));
    }
}
