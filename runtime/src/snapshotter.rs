//! The snapshot task: builds snapshots off the core's task.
//!
//! A snapshot is the previous snapshot plus the durable log up to a cut,
//! folded with the same pure recovery the start-up uses — so building one
//! never touches (or stalls) the live queue. The fold runs on a blocking
//! thread in production (inline under madsim). After a save, WAL segments
//! the *older* kept snapshot covers are deleted, so a corrupt newest
//! snapshot can always fall back to the older one plus the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use beaver_core::{Config, Queue, Record, codec};
use beaver_io::{Disk, SnapshotStore};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::figures::Figures;
use crate::observer::Observer;
use crate::wal_task::ToWal;

/// What the snapshot task is asked to do.
pub(crate) enum ToSnapshotter {
    /// Fold the newest snapshot and the log up to `upto` into a new one.
    Build { upto: u64 },
    /// Save these bytes (the core's own state at shutdown) as the snapshot at `lsn`.
    Save {
        lsn: u64,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

pub(crate) struct Snapshotter<D: Disk, O: Observer, C: Clock> {
    pub disk: D,
    pub store: SnapshotStore<D>,
    pub wal_dir: PathBuf,
    pub config: Config,
    pub rx: mpsc::UnboundedReceiver<ToSnapshotter>,
    pub to_wal: mpsc::UnboundedSender<ToWal>,
    pub figures: Arc<Figures>,
    pub observer: Arc<O>,
    pub clock: Arc<C>,
    pub estimate_bytes: Arc<AtomicU64>,
}

impl<D: Disk, O: Observer, C: Clock> Snapshotter<D, O, C> {
    pub(crate) async fn run(mut self) {
        while let Some(msg) = self.rx.recv().await {
            match msg {
                ToSnapshotter::Build { upto } => {
                    if self.store.newest_lsn().is_some_and(|n| n >= upto) {
                        continue;
                    }
                    let began = Instant::now();
                    match self.build(upto).await {
                        Ok(bytes) => {
                            let secs = began.elapsed().as_secs_f64();
                            if let Err(e) = self.save(upto, &bytes, secs).await {
                                warn!(error = %e, "could not save a snapshot; the log keeps everything");
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, upto_lsn = upto, "could not build a snapshot; the log keeps everything")
                        }
                    }
                }
                ToSnapshotter::Save { lsn, bytes, done } => {
                    let r = self.save(lsn, &bytes, 0.0).await;
                    let _ = done.send(r);
                }
            }
        }
    }

    async fn build(&mut self, upto: u64) -> Result<Vec<u8>, String> {
        let prev = self.store.load().await.map_err(|e| e.to_string())?;
        let after = prev.as_ref().map_or(0, |p| p.lsn);
        let mut records: Vec<Record> = Vec::new();
        let mut bad: Option<String> = None;
        beaver_io::wal::read_records(&self.disk, &self.wal_dir, after, upto, |lsn, body| {
            match codec::decode_record(body) {
                Ok(r) if bad.is_none() => records.push(r),
                Ok(_) => {}
                Err(e) => bad = Some(format!("record {lsn}: {e}")),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Some(e) = bad {
            return Err(e);
        }
        let config = self.config.clone();
        let prev_body = prev.map(|p| p.body);
        let fold = move || -> Result<Vec<u8>, String> {
            let snapshot = match prev_body {
                Some(b) => Some(codec::decode_snapshot(&b).map_err(|e| e.to_string())?),
                None => None,
            };
            let q = Queue::recover(config, snapshot, records).map_err(|e| e.to_string())?;
            Ok(codec::encode_snapshot(&q.snapshot()))
        };
        tokio::task::spawn_blocking(fold)
            .await
            .map_err(|e| format!("snapshot fold panicked: {e}"))?
    }

    async fn save(&mut self, lsn: u64, bytes: &[u8], secs: f64) -> Result<(), String> {
        let path = self
            .store
            .save(lsn, bytes)
            .await
            .map_err(|e| e.to_string())?;
        self.estimate_bytes.store(bytes.len() as u64, Relaxed);
        self.figures.snapshot_lsn.store(lsn, Relaxed);
        self.figures
            .snapshot_at_ms
            .store(self.clock.now_ms(), Relaxed);
        self.figures.snapshots.fetch_add(1, Relaxed);
        self.observer
            .snapshot_written(lsn, bytes.len() as u64, secs);
        info!(lsn, bytes = bytes.len(), secs, path = %path.display(), "snapshot written");
        if let Some(older) = self.store.older_kept_lsn() {
            let (done, wait) = oneshot::channel();
            if self.to_wal.send(ToWal::DeleteThrough(older, done)).is_ok() {
                let _ = wait.await;
            }
        }
        Ok(())
    }
}
