//! The group-commit task: many concurrent appenders share fsyncs, every
//! acknowledged record survives a power loss, and a stopped WAL answers
//! every waiter with an error.
// Test helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use beaver_io::wal::Appender;
use beaver_io::{Error, GroupCommit, SimDisk, SimDiskConfig, Wal};
use common::{DIR, opts, recover, rt};

/// A group-commit task on a WAL recovered from `disk` (segments of
/// `segment_bytes`, a channel of `depth` requests).
async fn spawn(
    disk: &SimDisk,
    segment_bytes: u64,
    depth: usize,
) -> (
    Appender<SimDisk>,
    tokio::task::JoinHandle<beaver_io::Result<Wal<SimDisk>>>,
) {
    let (wal, _) = recover(disk, Path::new(DIR), opts(segment_bytes, 1), 0)
        .await
        .unwrap();
    GroupCommit::spawn(wal, depth)
}

#[test]
fn many_appenders_share_each_fsync_and_every_ack_survives_power_loss() {
    rt().block_on(async {
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(1),
            write_latency_mean: Duration::from_micros(5),
            ..SimDiskConfig::power_faults()
        };
        let disk = SimDisk::new(11, cfg);
        let (appender, task) = spawn(&disk, 256 << 10, 1024).await;
        let mut tasks = Vec::new();
        for a in 0..64u32 {
            let ap = appender.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20u32 {
                    let body = format!("appender {a} record {i}").into_bytes();
                    let lsn = ap.append(body.clone()).await.unwrap();
                    acked.push((lsn, body));
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        let stats = appender.stats();
        drop(appender);
        let wal = task.await.unwrap().unwrap();
        assert_eq!(stats.records, 64 * 20);
        let per_sync = stats.records as f64 / stats.syncs as f64;
        assert!(
            per_sync >= 32.0,
            "{per_sync:.1} records per fsync ({stats:?})"
        );
        drop(wal);

        disk.power_loss();
        let (_, got) = recover(&disk, Path::new(DIR), opts(256 << 10, 2), 0)
            .await
            .unwrap();
        assert_eq!(got.len(), 64 * 20);
        for (lsn, body) in acked {
            assert_eq!(got[lsn as usize - 1], (lsn, body));
        }
    });
}

#[test]
fn a_failed_fsync_answers_every_waiter_and_stops() {
    rt().block_on(async {
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(1),
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(3, cfg);
        let (appender, task) = spawn(&disk, 64 << 10, 64).await;
        appender.append(b"first".to_vec()).await.unwrap();
        // Let the background preparation of the next segment finish first,
        // so the failing fsync is a batch's.
        tokio::time::sleep(Duration::from_millis(50)).await;
        disk.fail_next_syncs(1);
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let ap = appender.clone();
            tasks.push(tokio::spawn(async move { ap.append(vec![i; 10]).await }));
        }
        for t in tasks {
            assert!(
                t.await.unwrap().is_err(),
                "nothing after a failed fsync is acknowledged"
            );
        }
        assert!(matches!(
            appender.append(b"late".to_vec()).await,
            Err(Error::Stopped { .. })
        ));
        assert!(task.await.unwrap().is_err());
    });
}

#[test]
fn a_lone_appender_commits_inline_and_overlapping_appends_go_through_the_task() {
    rt().block_on(async {
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(1),
            ..SimDiskConfig::power_faults()
        };
        let disk = SimDisk::new(5, cfg);
        let (appender, task) = spawn(&disk, 64 << 10, 64).await;
        // One at a time: the task is idle at every append.
        let mut acked = Vec::new();
        for i in 0..20u8 {
            let body = vec![i; 30];
            acked.push((appender.append(body.clone()).await.unwrap(), body));
        }
        let lone = appender.stats();
        assert_eq!((lone.records, lone.inline, lone.syncs), (20, 20, 20));
        // Overlapping: all but (at most) the first go through the task and
        // share its fsyncs.
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let ap = appender.clone();
            tasks.push(tokio::spawn(async move {
                let body = vec![100 + i; 30];
                (ap.append(body.clone()).await.unwrap(), body)
            }));
        }
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        let all = appender.stats();
        assert_eq!(all.records, 36);
        assert!(all.inline <= 21, "{all:?}");
        assert!(
            all.syncs - lone.syncs < 8,
            "overlapping appends share fsyncs: {all:?}"
        );
        drop(appender);
        drop(task.await.unwrap().unwrap());

        // Every acknowledged record, inline or not, survives a power loss
        // at its LSN.
        disk.power_loss();
        let (_, got) = recover(&disk, Path::new(DIR), opts(64 << 10, 2), 0)
            .await
            .unwrap();
        assert_eq!(got.len(), 36);
        for (lsn, body) in acked {
            assert_eq!(got[lsn as usize - 1], (lsn, body));
        }
    });
}

#[test]
fn a_failed_fsync_in_an_inline_append_stops_the_task() {
    rt().block_on(async {
        let disk = SimDisk::new(9, SimDiskConfig::default());
        let (appender, task) = spawn(&disk, 64 << 10, 64).await;
        appender.append(b"first".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        disk.fail_next_syncs(1);
        assert!(appender.append(b"second".to_vec()).await.is_err());
        assert_eq!(
            appender.stats().inline,
            1,
            "only the first was acknowledged"
        );
        // The task ends with the error although no request reached it, and
        // nothing more is acknowledged.
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(ended.expect("the task ends").unwrap().is_err());
        assert!(matches!(
            appender.append(b"late".to_vec()).await,
            Err(Error::Stopped { .. })
        ));
    });
}

#[test]
fn an_inline_append_dropped_midway_leaves_the_log_whole() {
    rt().block_on(async {
        // Power loss drops every unsynced byte (no torn prefixes).
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(5),
            write_latency_mean: Duration::ZERO,
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(21, cfg);
        let (appender, task) = spawn(&disk, 64 << 10, 64).await;
        // The first append also makes the first segment.
        let first = appender.append(b"first".to_vec()).await.unwrap();
        // Give up on an append while its fdatasync is running.
        let dropped = tokio::time::timeout(
            Duration::from_micros(50),
            appender.append(b"dropped".to_vec()),
        )
        .await;
        assert!(dropped.is_err(), "the append was cut off");
        // Later appends are acknowledged only once durable: the dropped
        // one's sync finished (or was taken over), it did not wedge the WAL.
        let mut acked = vec![(first, b"first".to_vec())];
        for i in 0..5u8 {
            let body = vec![i; 20];
            acked.push((appender.append(body.clone()).await.unwrap(), body));
        }
        drop(appender);
        drop(task.await.unwrap().unwrap());
        disk.power_loss();
        let (_, got) = recover(&disk, Path::new(DIR), opts(64 << 10, 2), 0)
            .await
            .unwrap();
        for (lsn, body) in acked {
            assert_eq!(got.get(lsn as usize - 1), Some(&(lsn, body)));
        }
    });
}
