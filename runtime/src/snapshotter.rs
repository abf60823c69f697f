//! The snapshot task: builds snapshots off the core's task.
//!
//! A snapshot is the previous snapshot plus the durable log up to a cut,
//! folded with the same pure recovery the start-up uses — so building one
//! never touches the live queue. In production the whole job (reading the
//! log, folding, encoding, writing the file) runs on a dedicated thread at
//! lowered priority with its own small runtime, so neither the core task
//! nor the WAL task competes with it for a worker thread; under madsim it
//! runs inline (threads are not simulated). The build is paced (it works
//! `snapshot_pace_percent` of the time); once the engine begins to stop, a
//! build still reading the log is abandoned (the engine writes its own
//! snapshot of everything before it stops) and one past it goes on
//! unpaced. After a save, WAL segments the *older* kept snapshot covers are
//! deleted, so a corrupt newest snapshot can always fall back to the older
//! one plus the log.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use beaver_core::{Config, Core, codec};
use beaver_io::{Disk, SavedSnapshot, SegmentDeleter, SnapshotStore};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::commit::Logged;
use crate::figures::Figures;
use crate::observer::Observer;
use crate::pace::Pace;

/// What the snapshot task is asked to do.
pub(crate) enum ToSnapshotter {
    /// Fold the newest snapshot and the log up to `upto` into a new one;
    /// `done` (if any) learns whether a snapshot now covers `upto`, once
    /// the segments it lets go are deleted.
    Build {
        upto: u64,
        done: Option<oneshot::Sender<bool>>,
    },
    /// Save the core's own state at shutdown as the snapshot at `lsn`,
    /// encoded piece by piece as it is written.
    Save {
        lsn: u64,
        core: Box<Core>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

pub(crate) struct Snapshotter<D: Disk, O: Observer, C: Clock> {
    pub disk: D,
    pub snapshot_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub config: Config,
    /// The share of time a build may work.
    pub pace_percent: u8,
    /// The most of the previous snapshot a build reads at once.
    pub read_piece_bytes: usize,
    /// Set when the engine begins to shut down: a build under way stops at
    /// the next record (the engine writes its own snapshot of everything
    /// before it stops) or, past the log, goes on without pacing.
    pub engine_stopping: Arc<AtomicBool>,
    pub rx: mpsc::Receiver<ToSnapshotter>,
    /// Deletes the segments the older kept snapshot covers.
    pub segments: SegmentDeleter<Logged>,
    pub figures: Arc<Figures>,
    pub observer: Arc<O>,
    pub clock: Arc<C>,
    pub estimate_bytes: Arc<AtomicU64>,
}

/// Why a snapshot job failed.
struct Failed {
    text: String,
    /// The build found what it folds corrupt: the log, or a snapshot file
    /// whose checksum held but whose body does not decode.
    input_corrupt: bool,
}

impl From<String> for Failed {
    fn from(text: String) -> Self {
        Failed {
            text,
            input_corrupt: false,
        }
    }
}

/// A snapshot written to disk.
struct Saved {
    lsn: u64,
    bytes: u64,
    path: PathBuf,
    /// The LSN the WAL may now be deleted through.
    older_kept: Option<u64>,
}

impl<D: Disk, O: Observer, C: Clock> Snapshotter<D, O, C> {
    pub(crate) async fn run(mut self) {
        let mut next: Option<ToSnapshotter> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match self.rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            // Requests that queued up during a build become one build, at
            // the newest LSN asked for (a save is kept for its turn).
            let mut built = Vec::new();
            let msg = match msg {
                ToSnapshotter::Build { mut upto, done } => {
                    built.extend(done);
                    while next.is_none() {
                        match self.rx.try_recv() {
                            Ok(ToSnapshotter::Build { upto: later, done }) => {
                                upto = upto.max(later);
                                built.extend(done);
                            }
                            Ok(save) => next = Some(save),
                            Err(_) => break,
                        }
                    }
                    ToSnapshotter::Build { upto, done: None }
                }
                save => save,
            };
            let began = Instant::now();
            let (result, done) = match msg {
                ToSnapshotter::Build { upto, .. } => {
                    if self.figures.snapshot_covers(upto) {
                        built.into_iter().for_each(|d| {
                            let _ = d.send(true);
                        });
                        continue;
                    }
                    let (alive, _guard) = alive();
                    let job = build_and_save(
                        self.disk.dedicated(),
                        self.snapshot_dir.clone(),
                        self.wal_dir.clone(),
                        (self.config.clone(), self.read_piece_bytes),
                        upto,
                        Pace::new(self.pace_percent, self.engine_stopping.clone()),
                        alive,
                    );
                    (off_task(job).await, None)
                }
                ToSnapshotter::Save { lsn, core, done } => {
                    if self.figures.snapshot_covers(lsn) {
                        // A build that was under way when the engine began
                        // to stop already wrote this state: same bytes, not
                        // worth writing twice.
                        let _ = done.send(Ok(()));
                        continue;
                    }
                    let (alive, _guard) = alive();
                    let job = save(
                        self.disk.dedicated(),
                        self.snapshot_dir.clone(),
                        crate::config::planted_of(&self.config),
                        (lsn, core),
                        alive,
                    );
                    (off_task(job).await, Some(done))
                }
            };
            let reported = match result {
                Ok(Some(saved)) => {
                    self.saved(&saved, began.elapsed().as_secs_f64()).await;
                    Ok(())
                }
                Ok(None) => {
                    info!("snapshot build abandoned: the engine is stopping and writes its own");
                    Ok(())
                }
                Err(e) => {
                    warn!(error = %e.text, "could not write a snapshot; the log keeps everything");
                    self.observer.snapshot_failed(&e.text, e.input_corrupt);
                    Err(e.text)
                }
            };
            let covered = reported.is_ok() && !self.engine_stopping.load(Relaxed);
            for d in built {
                let _ = d.send(covered);
            }
            if let Some(done) = done {
                let _ = done.send(reported);
            }
        }
    }

    async fn saved(&mut self, s: &Saved, secs: f64) {
        self.estimate_bytes.store(s.bytes, Relaxed);
        self.figures.snapshot_lsn.store(s.lsn, Relaxed);
        self.figures
            .snapshot_at_ms
            .store(self.clock.now_ms(), Relaxed);
        self.figures.snapshots.fetch_add(1, Relaxed);
        self.observer.snapshot_written(s.lsn, s.bytes, secs);
        info!(lsn = s.lsn, bytes = s.bytes, secs, path = %s.path.display(), "snapshot written");
        if let Some(older) = s.older_kept {
            self.segments.delete_through(older).await;
            self.figures.deletable_lsn.store(older, Relaxed);
        }
    }
}

async fn build_and_save<D: Disk>(
    disk: D,
    snapshot_dir: PathBuf,
    wal_dir: PathBuf,
    (config, read_piece_bytes): (Config, usize),
    upto: u64,
    // Hurried once the engine is stopping: then the build stops folding.
    mut pace: Pace,
    alive: Alive,
) -> Result<Option<Saved>, Failed> {
    let planted = crate::config::planted_of(&config);
    let mut store = SnapshotStore::open(disk.clone(), &snapshot_dir)
        .await
        .map_err(|e| e.to_string())?
        .with_planted(planted)
        .with_piece_bytes(read_piece_bytes);
    // The previous snapshot, decoded as it is read (never whole in
    // memory), then each record folded in as it is read.
    let mut sink = CoreSink::new(config);
    let loaded = store
        .load_in_pieces(&mut sink)
        .await
        .map_err(|e| e.to_string())?;
    let after = loaded.unwrap_or(0);
    if after >= upto {
        return Err(format!("a snapshot at LSN {after} already covers {upto}").into());
    }
    let mut q = match sink.finish(loaded.is_some()) {
        Ok(q) => q,
        Err(e) => {
            let path = store.dir().join(beaver_io::snapshot::snapshot_name(after));
            return Err(Failed {
                text: format!("{}: {e}", path.display()),
                input_corrupt: true,
            });
        }
    };
    let mut bad: Option<String> = None;
    let mut abandoned = false;
    beaver_io::wal::read_records(&disk, &wal_dir, after, upto, planted, |lsn, body| {
        pace.worked_on(body.len());
        if bad.is_some() || abandoned {
            return;
        }
        if pace.hurried() {
            abandoned = true;
            return;
        }
        let applied = codec::decode_logged_record(lsn, body)
            .map_err(|e| e.to_string())
            .and_then(|r| q.apply_owned(r).map_err(|e| e.to_string()));
        if let Err(e) = applied {
            bad = Some(format!("record {lsn}: {e}"));
        }
    })
    .await
    .map_err(|e| Failed {
        input_corrupt: e.is_corruption(),
        text: e.to_string(),
    })?;
    if let Some(e) = bad {
        return Err(e.into());
    }
    if abandoned {
        return Ok(None);
    }
    alive.check()?;
    // Encoded piece by piece as it is written: the encoding is never whole
    // in memory (for a million jobs, 160 MiB of fresh pages fewer).
    let mut encoder = codec::SnapshotEncoder::new(&q);
    let saved = store
        .save_pieces(upto, |piece, at_least| {
            pace.check();
            encoder.fill(piece, at_least)
        })
        .await;
    Ok(Some(saved_as(&store, upto, saved)?))
}

/// Decodes the previous snapshot into a core as
/// [`SnapshotStore::load_in_pieces`] reads it.
struct CoreSink {
    config: Config,
    /// The snapshot begun, as far as it decoded (`Err`: why it stopped).
    fed: Option<Result<beaver_core::SnapshotFeed, String>>,
}

impl CoreSink {
    fn new(config: Config) -> CoreSink {
        CoreSink { config, fed: None }
    }

    /// The core the snapshot gave (`loaded`: one was), else an empty one.
    fn finish(self, loaded: bool) -> Result<Core, String> {
        match (loaded, self.fed) {
            (false, _) => Ok(Core::new(self.config)),
            (true, Some(Ok(feed))) => feed.finish().map_err(|e| e.to_string()),
            (true, Some(Err(e))) => Err(e),
            (true, None) => Err("the snapshot's body was never handed out".into()),
        }
    }
}

impl beaver_io::SnapshotSink for CoreSink {
    fn begin(&mut self, body_len: u64) {
        let len = usize::try_from(body_len).unwrap_or(usize::MAX);
        self.fed = Some(Ok(Core::recover_in_pieces(self.config.clone(), len)));
    }

    fn piece(&mut self, piece: &[u8]) -> bool {
        let refused = match self.fed.as_mut() {
            Some(Ok(feed)) => feed.feed(piece).err().map(|e| e.to_string()),
            Some(Err(_)) => return false,
            None => Some("a piece before the snapshot began".into()),
        };
        match refused {
            Some(e) => {
                self.fed = Some(Err(e));
                false
            }
            None => true,
        }
    }
}

async fn save<D: Disk>(
    disk: D,
    snapshot_dir: PathBuf,
    planted: beaver_io::Planted,
    (lsn, core): (u64, Box<Core>),
    alive: Alive,
) -> Result<Option<Saved>, Failed> {
    let mut store = SnapshotStore::open(disk, &snapshot_dir)
        .await
        .map_err(|e| e.to_string())?
        .with_planted(planted);
    alive.check()?;
    let mut encoder = codec::SnapshotEncoder::new(&core);
    let saved = store
        .save_pieces(lsn, |piece, at_least| encoder.fill(piece, at_least))
        .await;
    Ok(Some(saved_as(&store, lsn, saved)?))
}

/// Whether the engine that asked for a snapshot job still waits for it. A
/// job on its own thread outlives an engine whose runtime was dropped (as
/// tests that emulate a crash in-process do); it must then not write files
/// the dead engine never would have.
#[derive(Clone)]
struct Alive(Arc<std::sync::atomic::AtomicBool>);

impl Alive {
    fn check(&self) -> Result<(), String> {
        if self.0.load(Relaxed) {
            Ok(())
        } else {
            Err("the engine stopped; the snapshot job is abandoned".into())
        }
    }
}

/// Clears [`Alive`] when the waiting engine task is dropped.
struct AliveGuard(Arc<std::sync::atomic::AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

fn alive() -> (Alive, AliveGuard) {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
    (Alive(flag.clone()), AliveGuard(flag))
}

fn saved_as<D: Disk>(
    store: &SnapshotStore<D>,
    lsn: u64,
    saved: beaver_io::Result<SavedSnapshot>,
) -> Result<Saved, String> {
    let saved = saved.map_err(|e| e.to_string())?;
    Ok(Saved {
        lsn,
        bytes: saved.bytes,
        path: saved.path,
        older_kept: store.older_kept_lsn(),
    })
}

/// Runs `job` away from the engine's tasks: on its own thread at lowered
/// priority in production, inline under madsim.
#[cfg(not(madsim))]
async fn off_task<T: Send + 'static, E: From<String> + Send + 'static>(
    job: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("beaver-snapshot".into())
        .spawn(move || {
            lower_priority();
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(job),
                Err(e) => Err(format!("cannot start the snapshot thread's runtime: {e}").into()),
            };
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the snapshot thread: {e}").into());
    }
    rx.await
        .map_err(|_| E::from("the snapshot thread ended abnormally".to_string()))?
}

#[cfg(madsim)]
async fn off_task<T: Send + 'static, E: From<String> + Send + 'static>(
    job: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E> {
    job.await
}

/// Lets the engine's threads go first: the lowest normal priority (nice
/// 19), so this thread (and the I/O threads it starts, which inherit it)
/// gets about 1.5% of a CPU that the engine's threads want, and what they
/// leave. Not `SCHED_IDLE`: under sustained full load from anything else a
/// `SCHED_IDLE` thread gets no CPU at all, so a build could not even notice
/// that the engine is stopping, and a graceful shutdown waited for it.
#[cfg(all(not(madsim), target_os = "linux"))]
fn lower_priority() {
    // SAFETY: `setpriority` on the calling thread's id; failure only means
    // normal priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[cfg(all(not(madsim), not(target_os = "linux")))]
fn lower_priority() {}

#[cfg(all(test, not(madsim)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use beaver_io::{CommitSettings, FileDisk, GroupCommit, Wal, WalOptions, wal::NoHooks};

    use crate::clock::SystemClock;
    use crate::observer::NoObserver;
    use crate::testing::enqueue;

    /// The shutdown's save of LSN 2 queued behind a build up to LSN 2 (the
    /// build was under way when the engine began to stop): the build's
    /// snapshot stands and the save writes nothing.
    #[test]
    fn a_save_that_a_finished_build_already_covers_writes_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (wal_dir, snapshot_dir) = (dir.path().join("wal"), dir.path().join("snapshots"));
            let opts = WalOptions {
                segment_bytes: 1 << 20,
                salt_seed: 7,
                ..WalOptions::default()
            };
            let (mut wal, _) = Wal::open(FileDisk::new(), &wal_dir, opts, 0, |_, _| {})
                .await
                .unwrap();
            let (one, two) = (enqueue(1, 1), enqueue(2, 1));
            wal.append(&[(1, &one), (2, &two)]).await.unwrap();
            // Its WAL task never runs: the test deletes no segment.
            let (commit, _wal_task) =
                GroupCommit::<_, Logged, _>::new(wal, CommitSettings::default(), Arc::new(NoHooks));

            let (tx, rx) = mpsc::channel(crate::engine::SNAPSHOT_ASKS_MAX);
            let figures = Arc::new(Figures::default());
            let snapshotter = Snapshotter {
                disk: FileDisk::new(),
                snapshot_dir: snapshot_dir.clone(),
                wal_dir,
                config: Config::default(),
                pace_percent: 100,
                read_piece_bytes: 7,
                engine_stopping: Arc::new(AtomicBool::new(false)),
                rx,
                segments: commit.deleter(),
                figures: figures.clone(),
                observer: Arc::new(NoObserver),
                clock: Arc::new(SystemClock::new()),
                estimate_bytes: Arc::new(AtomicU64::new(0)),
            };
            let (done, saved) = oneshot::channel();
            // A state that would be told apart from the build's on disk.
            let empty = Box::new(Core::new(Config::default()));
            tx.send(ToSnapshotter::Build {
                upto: 2,
                done: None,
            })
            .await
            .unwrap();
            tx.send(ToSnapshotter::Save {
                lsn: 2,
                core: empty,
                done,
            })
            .await
            .unwrap();
            drop(tx);
            snapshotter.run().await;

            assert_eq!(saved.await.unwrap(), Ok(()), "the save is answered");
            assert_eq!(figures.snapshots.load(Relaxed), 1, "one snapshot written");
            let mut store = SnapshotStore::open(FileDisk::new(), &snapshot_dir)
                .await
                .unwrap();
            let loaded = store.load().await.unwrap().unwrap();
            let q = Core::recover_encoded(Config::default(), loaded.body(), []).unwrap();
            assert_eq!(
                (loaded.lsn, q.stats().jobs.pending),
                (2, 2),
                "the build's snapshot stands"
            );
        });
    }
}
