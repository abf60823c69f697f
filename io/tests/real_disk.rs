//! The WAL and snapshot store on the real file system, including a child
//! process that is SIGKILLed while writing under load: every record it
//! reported durable is recovered.
// Test helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beaver_io::{Appender, FileDisk, SnapshotStore, Wal, WalOptions};
use common::{assert_dense, opts, recover, write};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn wal_round_trip_with_rotation_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    runtime().block_on(async {
        let disk = FileDisk::new();
        let (mut wal, rec) = recover(&disk, &dir, opts(32 << 10, 1), 0).await.unwrap();
        assert_eq!(rec.len(), 0);
        for _ in 0..50 {
            write(&mut wal, 10, 200).await.unwrap();
            wal.sync().await.unwrap();
        }
        assert!(wal.closed_segments().len() >= 2);
        let space = wal.space_status(0).await.unwrap();
        assert!(space.free_bytes > 0);
        drop(wal);
        let (wal, got) = recover(&disk, &dir, opts(32 << 10, 2), 100).await.unwrap();
        assert_dense(&got, 101, 500, 200);
        assert_eq!(wal.next_lsn(), 501);
        let ins = beaver_io::inspect(&disk, &dir, 0).await.unwrap();
        assert_eq!(ins.end, beaver_io::LogEnd::Clean);
        assert_eq!(ins.last_lsn, Some(500));
    });
}

#[test]
fn snapshot_store_on_real_files_keeps_two_and_falls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    runtime().block_on(async {
        let disk = FileDisk::new();
        let mut store = SnapshotStore::open(disk.clone(), &dir).await.unwrap();
        for lsn in [10, 20, 30] {
            store
                .save(lsn, format!("state {lsn}").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(store.kept(), &[20, 30]);
        assert_eq!(store.older_kept_lsn(), Some(20));
        // Corrupt the newest: it is renamed aside and the older one loads.
        let newest = dir.join(beaver_io::snapshot::snapshot_name(30));
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&newest, bytes).unwrap();
        let mut store = SnapshotStore::open(disk.clone(), &dir).await.unwrap();
        let snap = store.load().await.unwrap().unwrap();
        assert_eq!((snap.lsn, snap.body()), (20, &b"state 20"[..]));
        assert!(dir.join("snap-00000000000000000030.snap.broken").exists());
        assert_eq!(store.older_kept_lsn(), None);
    });
}

const CHILD_ENV: &str = "BEAVER_IO_TEST_CHILD_DIR";

/// Not a test of its own: the writer process of the kill test. With
/// `BEAVER_IO_TEST_CHILD_DIR` set it recovers the WAL there and appends
/// from 8 tasks until killed, printing `ACK <lsn> <body>` per durable record.
#[test]
fn child_writer_under_load() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    runtime().block_on(async move {
        let o = WalOptions {
            segment_bytes: 256 << 10,
            salt_seed: beaver_io::entropy_seed(),
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(FileDisk::new(), Path::new(&dir), o, 0, |_, _| {})
            .await
            .unwrap();
        let (appender, proposer, wal_task) = Appender::start(wal, 256);
        tokio::spawn(proposer);
        tokio::spawn(wal_task);
        let round = std::process::id();
        let mut tasks = Vec::new();
        for a in 0..8 {
            let ap = appender.clone();
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut i = 0u64;
                // Bounded: the parent kills us long before this.
                while start.elapsed() < Duration::from_secs(20) {
                    let body = format!("p{round}-a{a}-{i}-{}", "x".repeat(60));
                    let lsn = ap.append(body.clone().into_bytes()).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {lsn} {body}").unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for _round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_writer_under_load",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let start = Instant::now();
        let mut n = 0;
        while n < 300 && start.elapsed() < Duration::from_secs(10) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (lsn, body) = rest.split_once(' ').unwrap();
                acked.insert(lsn.parse().unwrap(), body.to_owned());
                n += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(n > 0, "the child acknowledged nothing");
        // Lines printed before the kill but read after it count too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (lsn, body) = rest.split_once(' ').unwrap();
                acked.insert(lsn.parse().unwrap(), body.to_owned());
            }
        }
        let got = runtime().block_on(async {
            recover(&FileDisk::new(), &dir, opts(256 << 10, 9), 0)
                .await
                .unwrap()
                .1
        });
        let recovered: BTreeMap<u64, Vec<u8>> = got.into_iter().collect();
        for (lsn, body) in &acked {
            assert_eq!(
                recovered.get(lsn).map(|b| b.as_slice()),
                Some(body.as_bytes()),
                "acknowledged LSN {lsn} lost"
            );
        }
    }
}

#[test]
fn a_file_longer_than_any_segment_is_refused_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    runtime().block_on(async {
        let disk = FileDisk::new();
        let (mut wal, _) = recover(&disk, &dir, opts(32 << 10, 1), 0).await.unwrap();
        write(&mut wal, 3, 200).await.unwrap();
        wal.sync().await.unwrap();
        drop(wal);
        // A sparse file of 8 TiB under a segment's name: reading it whole
        // would ask for 8 TiB of memory.
        let stray = dir.join("wal-00000000000000000009.seg");
        std::fs::File::create(&stray)
            .unwrap()
            .set_len(8 << 40)
            .unwrap();
        for err in [
            recover(&disk, &dir, opts(32 << 10, 2), 0).await.err(),
            beaver_io::inspect(&disk, &dir, 0).await.err(),
        ] {
            match err {
                Some(beaver_io::Error::Corruption { path, detail, .. }) => {
                    assert_eq!(path, stray);
                    assert!(detail.contains("more than any WAL segment"), "{detail}");
                }
                other => panic!("{other:?}"),
            }
        }
    });
}

/// The file's extents as FIEMAP reports them: `(logical offset, length,
/// flags)`, at most 64.
fn extents(path: &Path) -> Vec<(u64, u64, u32)> {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const MAX: usize = 64;
    // struct fiemap (32 bytes) then MAX struct fiemap_extent (56 bytes each).
    let mut buf = vec![0u64; (32 + 56 * MAX) / 8];
    buf[1] = u64::MAX; // fm_length
    let words = buf.as_mut_ptr().cast::<u32>();
    // SAFETY: the buffer is at least 32 bytes; words 4 and 6 are fm_flags
    // and fm_extent_count.
    unsafe {
        *words.add(4) = FIEMAP_FLAG_SYNC;
        *words.add(6) = MAX as u32;
    }
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: FS_IOC_FIEMAP reads and writes the fiemap struct we own,
    // sized for the extent count it was given.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "FIEMAP on {}: {} (the test needs a file system that maps extents, as ext4 and xfs do)",
        path.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: as above; word 5 is fm_mapped_extents, written by the kernel.
    let mapped = unsafe { *words.add(5) } as usize;
    (0..mapped.min(MAX))
        .map(|i| {
            // Extent i: fe_logical at u64 4 + 7i, fe_length two further,
            // fe_flags at byte 40 of it (u32 18 + 14i).
            let e = &buf[4 + i * 7..4 + (i + 1) * 7];
            // SAFETY: within the buffer, as sized for MAX extents.
            let flags = unsafe { *words.add(18 + 14 * i) };
            (e[0], e[2], flags)
        })
        .collect()
}

#[test]
fn the_log_writes_zeros_ahead_of_its_end_so_its_syncs_change_no_extents() {
    // Under the target dir, on the repository's file system (a temp dir
    // may be tmpfs, which has no extents).
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("wal");
    const SEGMENT: u64 = 1 << 20;
    let written = runtime().block_on(async {
        let disk = FileDisk::new();
        let (mut wal, _) = recover(&disk, &dir, opts(SEGMENT, 1), 0).await.unwrap();
        let mut bytes = 0;
        for _ in 0..10 {
            let before = wal.next_lsn();
            write(&mut wal, 10, 100).await.unwrap();
            wal.sync().await.unwrap();
            bytes += (wal.next_lsn() - before) * 100;
        }
        assert!(wal.closed_segments().is_empty());
        bytes
    });
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() == SEGMENT)
        .expect("the active segment");
    let ext = extents(&segment);
    // Where the first block that is allocated but not written begins.
    let unwritten_from = ext
        .iter()
        .find(|e| e.2 & FIEMAP_EXTENT_UNWRITTEN != 0)
        .map_or(SEGMENT, |e| e.0);
    assert!(
        written < 16 << 10,
        "the log holds {written} bytes of records"
    );
    assert!(
        unwritten_from >= 256 << 10,
        "only the first {unwritten_from} bytes of {} are written: the next \
         syncs would each write the file's extents too ({ext:?})",
        segment.display()
    );
}
