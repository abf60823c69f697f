//! insta snapshots of the recovered state after hand-written crash
//! schedules, each in its own madsim runtime with a fixed seed.
//!
//! Review changes with `cargo insta review`; under `CI=true` a missing or
//! different snapshot fails instead of being written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beaver_core::{JobId, JobSpec, Payload};
use beaver_io::{Disk, DiskFile, Result, SimDisk, SimDiskConfig, SimFile};
use beaver_runtime::executor::NoopExecutor;
use beaver_runtime::{Client, EngineConfig, NoObserver, RecoveryReport, SystemClock};
use madsim::runtime::{Handle, NodeHandle};
use tokio::sync::oneshot;

/// When a [`Trap`] springs: the engine's task freezes right there (the
/// crash comes next) and the scenario is told.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    Never,
    /// After a snapshot file was renamed into place, before the directory fsync.
    SnapshotRenamed,
    /// After the first write into a WAL segment other than the first one.
    RotationWrite,
}

#[derive(Clone)]
struct Trap {
    disk: SimDisk,
    at: At,
    renamed: Arc<Mutex<bool>>,
    headers: Arc<Mutex<u32>>,
    sprung: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

#[derive(Clone)]
struct TrapFile {
    inner: SimFile,
    trap: Trap,
}

impl Trap {
    async fn spring(&self) {
        let tx = self.sprung.lock().unwrap().take();
        if let Some(tx) = tx {
            let _ = tx.send(());
            std::future::pending::<()>().await;
        }
    }
}

impl Disk for Trap {
    type File = TrapFile;
    async fn create(&self, path: &Path) -> Result<TrapFile> {
        let inner = self.disk.create(path).await?;
        Ok(TrapFile {
            inner,
            trap: self.clone(),
        })
    }
    async fn open(&self, path: &Path) -> Result<TrapFile> {
        let inner = self.disk.open(path).await?;
        Ok(TrapFile {
            inner,
            trap: self.clone(),
        })
    }
    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.disk.rename(from, to).await?;
        if to.extension().is_some_and(|e| e == "snap") {
            *self.renamed.lock().unwrap() = true;
        }
        Ok(())
    }
    async fn remove(&self, path: &Path) -> Result<()> {
        self.disk.remove(path).await
    }
    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.disk.list(dir).await
    }
    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let renamed = std::mem::take(&mut *self.renamed.lock().unwrap());
        if self.at == At::SnapshotRenamed && renamed {
            self.spring().await;
        }
        self.disk.sync_dir(dir).await
    }
    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.disk.create_dir_all(dir).await
    }
    async fn free_space(&self, dir: &Path) -> Result<u64> {
        self.disk.free_space(dir).await
    }
}

impl DiskFile for TrapFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.inner.write_at(offset, buf).await?;
        let name = self
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if name.starts_with("wal-") && offset == 0 && buf.first().is_some_and(|&b| b != 0) {
            // A segment header: the first opens the log, a later one is a rotation.
            let n = {
                let mut h = self.trap.headers.lock().unwrap();
                *h += 1;
                *h
            };
            if self.trap.at == At::RotationWrite && n >= 2 {
                self.trap.spring().await;
            }
        }
        Ok(())
    }
    async fn read_at(&self, offset: u64, buf: Vec<u8>) -> Result<Vec<u8>> {
        self.inner.read_at(offset, buf).await
    }
    async fn size(&self) -> Result<u64> {
        self.inner.size().await
    }
    async fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len).await
    }
    async fn allocate(&self, len: u64) -> Result<()> {
        self.inner.allocate(len).await
    }
    async fn sync_data(&self) -> Result<()> {
        self.inner.sync_data().await
    }
    async fn sync_all(&self) -> Result<()> {
        self.inner.sync_all().await
    }
}

fn config(segment_bytes: u64, snapshot_wal_bytes: u64) -> EngineConfig {
    let mut c = EngineConfig {
        data_dir: PathBuf::from("/beaver"),
        segment_bytes,
        snapshot_wal_bytes,
        snapshot_interval_ms: 0,
        ..EngineConfig::default()
    };
    // No workers: jobs stay pending, so the snapshot shows exactly which
    // enqueues survived.
    c.queue.workers = 0;
    c.queue.hash_seed = 7;
    c
}

fn job(id: &str) -> JobSpec {
    let payload = Payload::from_json(format!("{{\"job\":\"{id}\"}}").as_bytes()).unwrap();
    JobSpec::new(payload).with_id(JobId::from_client(id).unwrap())
}

/// A running engine on its own node.
struct Node {
    handle: NodeHandle,
    client: Client,
    recovery: RecoveryReport,
}

async fn start(disk: Trap, cfg: EngineConfig) -> std::result::Result<Node, String> {
    let node = Handle::current().create_node().name("beaver").build();
    let (tx, rx) = oneshot::channel();
    node.spawn(async move {
        match beaver_runtime::start(cfg, disk, NoopExecutor, SystemClock::new(), NoObserver, 1)
            .await
        {
            Ok(e) => {
                let _ = tx.send(Ok((e.client, e.recovery)));
                let _ = e.handle.wait().await;
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        }
    });
    let (client, recovery) = rx.await.map_err(|_| "the node died".to_string())??;
    Ok(Node {
        handle: node,
        client,
        recovery,
    })
}

fn kill(node: &Node) {
    Handle::current().kill(node.handle.id());
}

/// The recovered state as stable text: what recovery found and every job.
async fn describe(node: &Node, ids: &[&str]) -> String {
    let r = &node.recovery;
    let st = node.client.status().await.unwrap();
    let c = st.queue.stats.jobs;
    let mut out = format!(
        "recovery: last_lsn {} snapshot_lsn {:?} replayed {} torn_bytes {}\njobs: pending {} in_flight {} completed {} dead {} cancelled {}\n",
        r.last_lsn,
        r.snapshot_lsn,
        r.replayed_records,
        r.torn_bytes,
        c.pending,
        c.in_flight,
        c.completed,
        c.dead,
        c.cancelled
    );
    for id in ids {
        let got = node
            .client
            .get(JobId::from_client(id).unwrap())
            .await
            .unwrap();
        let line = match got {
            Some(j) => format!("{id}: {} attempt {}\n", j.state.as_str(), j.attempt),
            None => format!("{id}: absent\n"),
        };
        out.push_str(&line);
    }
    out
}

fn trap(disk: &SimDisk, at: At) -> (Trap, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let t = Trap {
        disk: disk.clone(),
        at,
        renamed: Arc::new(Mutex::new(false)),
        headers: Arc::new(Mutex::new(0)),
        sprung: Arc::new(Mutex::new(Some(tx))),
    };
    (t, rx)
}

fn run<T>(seed: u64, f: impl std::future::Future<Output = T> + 'static) -> T {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(f)
}

fn slow(cfg: SimDiskConfig) -> SimDiskConfig {
    SimDiskConfig {
        write_latency_mean: Duration::from_micros(50),
        sync_latency_mean: Duration::from_millis(5),
        ..cfg
    }
}

/// Two batches acknowledged; a third is written and its fsync in flight
/// when the power fails (unsynced data dropped).
fn crash_mid_group_commit() -> String {
    run(1, async {
        let disk = SimDisk::new(1, slow(SimDiskConfig::default()));
        let (t, _) = trap(&disk, At::Never);
        let n = start(t.clone(), config(64 << 10, 1 << 30)).await.unwrap();
        n.client.enqueue(vec![job("a1"), job("a2")]).await.unwrap();
        n.client.enqueue(vec![job("a3")]).await.unwrap();
        let c = n.client.clone();
        tokio::spawn(async move { c.enqueue(vec![job("b1"), job("b2")]).await });
        tokio::time::sleep(Duration::from_micros(200)).await;
        kill(&n);
        disk.power_loss();
        let n = start(t, config(64 << 10, 1 << 30)).await.unwrap();
        describe(&n, &["a1", "a2", "a3", "b1", "b2"]).await
    })
}

/// A batch half on disk at power loss (torn prefix, garbage in the torn
/// sector): recovery discards and zeroes the torn tail.
fn torn_tail() -> String {
    // The first disk seed whose power loss tears the batch (deterministic).
    (0..64)
        .map(|s| (s, torn_tail_with(s)))
        .find(|(_, (torn, _))| *torn)
        .map(|(s, (_, text))| format!("disk seed {s}\n{text}"))
        .unwrap_or_else(|| "no disk seed tore the batch".into())
}

fn torn_tail_with(disk_seed: u64) -> (bool, String) {
    run(2, async move {
        let cfg = SimDiskConfig {
            torn_prefix: true,
            garbage_in_torn_sectors: true,
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(disk_seed, slow(cfg));
        let (t, _) = trap(&disk, At::Never);
        let n = start(t.clone(), config(64 << 10, 1 << 30)).await.unwrap();
        n.client.enqueue(vec![job("a1")]).await.unwrap();
        let c = n.client.clone();
        let big: Vec<JobSpec> = (0..12).map(|i| job(&format!("b{i}"))).collect();
        tokio::spawn(async move { c.enqueue(big).await });
        // Crash once the batch is written and its fsync not yet done.
        while disk.unsynced_bytes() < 600 {
            tokio::time::sleep(Duration::from_micros(10)).await;
        }
        kill(&n);
        disk.power_loss();
        let n = start(t, config(64 << 10, 1 << 30)).await.unwrap();
        let ids: Vec<String> = std::iter::once("a1".to_string())
            .chain((0..12).map(|i| format!("b{i}")))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        (n.recovery.torn_bytes > 0, describe(&n, &ids).await)
    })
}

/// The power fails after a snapshot was renamed into place but before
/// its directory was fsync'd: the name is lost; the log still has it all.
fn crash_between_snapshot_rename_and_dir_fsync() -> String {
    run(3, async {
        let cfg = SimDiskConfig {
            lose_unsynced_dir_entries: true,
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(3, slow(cfg));
        let (t, sprung) = trap(&disk, At::SnapshotRenamed);
        let n = start(t.clone(), config(64 << 10, 2_048)).await.unwrap();
        for i in 0..8 {
            n.client.enqueue(vec![job(&format!("a{i}"))]).await.unwrap();
        }
        sprung.await.unwrap();
        kill(&n);
        disk.power_loss();
        let (t, _) = trap(&disk, At::Never);
        let n = start(t, config(64 << 10, 1 << 30)).await.unwrap();
        let ids: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        describe(&n, &ids).await
    })
}

/// The fsync of a batch fails with EIO: the engine stops without
/// acknowledging it; after a restart the batch may or may not be there,
/// but everything acknowledged is.
fn eio_during_batch() -> String {
    run(4, async {
        let disk = SimDisk::new(4, slow(SimDiskConfig::default()));
        let (t, _) = trap(&disk, At::Never);
        let n = start(t.clone(), config(64 << 10, 1 << 30)).await.unwrap();
        n.client.enqueue(vec![job("a1")]).await.unwrap();
        // Let the next segment's preparation (which syncs too) finish first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        disk.fail_next_syncs(1);
        let refused = n.client.enqueue(vec![job("b1"), job("b2")]).await;
        let mut out = format!("enqueue during EIO: {refused:?}\n");
        kill(&n);
        disk.crash_process();
        let n = start(t, config(64 << 10, 1 << 30)).await.unwrap();
        out.push_str(&describe(&n, &["a1", "b1", "b2"]).await);
        out
    })
}

/// The power fails right after the first write into a new segment (the
/// rotation): acknowledged records in the old segment all survive.
fn power_loss_during_segment_rotation() -> String {
    run(5, async {
        let cfg = SimDiskConfig {
            torn_prefix: true,
            lose_unsynced_dir_entries: true,
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(6, slow(cfg));
        let (t, sprung) = trap(&disk, At::RotationWrite);
        let n = start(t.clone(), config(4_096, 1 << 30)).await.unwrap();
        let c = n.client.clone();
        let writer = tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20 {
                let id = format!("a{i}");
                if c.enqueue(vec![job(&id)]).await.is_ok() {
                    acked.push(id);
                }
            }
            acked
        });
        sprung.await.unwrap();
        kill(&n);
        drop(writer);
        disk.power_loss();
        let (t, _) = trap(&disk, At::Never);
        let n = start(t, config(4_096, 1 << 30)).await.unwrap();
        let ids: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        describe(&n, &ids).await
    })
}

/// Runs every scenario against its committed snapshot; false if one failed.
pub fn run_all() -> bool {
    type Scenario = (&'static str, fn() -> String);
    let scenarios: [Scenario; 5] = [
        ("crash_mid_group_commit", crash_mid_group_commit),
        ("torn_tail", torn_tail),
        (
            "crash_between_snapshot_rename_and_dir_fsync",
            crash_between_snapshot_rename_and_dir_fsync,
        ),
        ("eio_during_batch", eio_during_batch),
        (
            "power_loss_during_segment_rotation",
            power_loss_during_segment_rotation,
        ),
    ];
    let mut ok = true;
    for (name, f) in scenarios {
        let r = std::thread::spawn(move || {
            let state = f();
            insta::assert_snapshot!(name, state);
        })
        .join();
        match r {
            Ok(()) => println!("snapshot {name}: ok"),
            Err(_) => {
                println!("snapshot {name}: FAILED (see above; review with `cargo insta review`)");
                ok = false;
            }
        }
    }
    ok
}
