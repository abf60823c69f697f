//! The group commit, driven by [`Appender`]'s proposer: many concurrent
//! appenders share fsyncs, a lone appender's records are committed in
//! place, every acknowledged record survives a power loss, and a stopped
//! WAL answers every waiter with an error.
// Test helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use beaver_io::wal::segment::segment_name;
use beaver_io::wal::{
    CommitEvent, CommitHooks, CommitSettings, GroupCommit, LogEntry, LoneClient, NoHooks, Proposer,
};
use beaver_io::{Appender, Disk, Error, Op, SimDisk, SimDiskConfig};
use common::{DIR, opts, recover, rt, write};
use tokio::task::JoinHandle;

/// The proposer task and the WAL task of an [`Appender`].
struct Tasks {
    proposer: JoinHandle<beaver_io::Result<()>>,
    wal: JoinHandle<()>,
}

impl Tasks {
    /// Waits for both to end; the proposer's result.
    async fn ended(self) -> beaver_io::Result<()> {
        let result = self.proposer.await.unwrap();
        self.wal.await.unwrap();
        result
    }
}

/// An appender on a WAL recovered from `disk` (segments of
/// `segment_bytes`, a channel of `depth` appends).
async fn spawn(disk: &SimDisk, segment_bytes: u64, depth: usize) -> (Appender, Tasks) {
    let (wal, _) = recover(disk, Path::new(DIR), opts(segment_bytes, 1), 0)
        .await
        .unwrap();
    let (appender, proposer, wal_task) = Appender::start(wal, depth);
    let tasks = Tasks {
        proposer: tokio::spawn(proposer),
        wal: tokio::spawn(wal_task),
    };
    (appender, tasks)
}

/// Appends one at a time, each after the last was acknowledged.
async fn one_at_a_time(
    appender: &Appender,
    bodies: impl Iterator<Item = Vec<u8>>,
) -> Vec<(u64, Vec<u8>)> {
    let mut acked = Vec::new();
    for body in bodies {
        acked.push((appender.append(body.clone()).await.unwrap(), body));
    }
    acked
}

/// Recovers the log after a power loss and checks every acknowledged
/// record at its LSN.
async fn survive_power_loss(disk: &SimDisk, segment_bytes: u64, acked: &[(u64, Vec<u8>)]) {
    disk.power_loss();
    let (_, got) = recover(disk, Path::new(DIR), opts(segment_bytes, 2), 0)
        .await
        .unwrap();
    for (lsn, body) in acked {
        assert_eq!(got.get(*lsn as usize - 1), Some(&(*lsn, body.clone())));
    }
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
        let (appender, tasks) = spawn(&disk, 256 << 10, 1024).await;
        let mut appenders = Vec::new();
        for a in 0..64u32 {
            let ap = appender.clone();
            appenders.push(tokio::spawn(async move {
                let bodies =
                    (0..20u32).map(move |i| format!("appender {a} record {i}").into_bytes());
                one_at_a_time(&ap, bodies).await
            }));
        }
        let mut acked = Vec::new();
        for t in appenders {
            acked.extend(t.await.unwrap());
        }
        let stats = appender.stats();
        drop(appender);
        tasks.ended().await.unwrap();
        assert_eq!(stats.records, 64 * 20);
        let per_sync = stats.records as f64 / stats.syncs as f64;
        assert!(
            per_sync >= 32.0,
            "{per_sync:.1} records per fsync ({stats:?})"
        );
        assert_eq!(acked.len(), 64 * 20);
        survive_power_loss(&disk, 256 << 10, &acked).await;
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
        let (appender, tasks) = spawn(&disk, 64 << 10, 64).await;
        appender.append(b"first".to_vec()).await.unwrap();
        // Let the background preparation of the next segment finish first,
        // so the failing fsync is a batch's.
        tokio::time::sleep(Duration::from_millis(50)).await;
        disk.fail_next_syncs(1);
        let mut appends = Vec::new();
        for i in 0..8u8 {
            let ap = appender.clone();
            appends.push(tokio::spawn(async move { ap.append(vec![i; 10]).await }));
        }
        // Nothing after a failed fsync is acknowledged: every waiter gets
        // that failure.
        for t in appends {
            let answer = t.await.unwrap();
            assert!(
                matches!(
                    &answer,
                    Err(Error::Io {
                        op: Op::SyncData,
                        ..
                    })
                ),
                "{answer:?}"
            );
        }
        assert!(matches!(
            appender.append(b"late".to_vec()).await,
            Err(Error::Stopped { .. })
        ));
        assert!(tasks.ended().await.is_err());
    });
}

#[test]
fn a_lone_appender_commits_in_place_and_overlapping_appends_go_through_the_wal_task() {
    rt().block_on(async {
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(1),
            ..SimDiskConfig::power_faults()
        };
        let disk = SimDisk::new(5, cfg);
        let (appender, tasks) = spawn(&disk, 64 << 10, 64).await;
        // One at a time: after two syncs of one append each, the proposer
        // commits in place.
        let mut acked = one_at_a_time(&appender, (0..20u8).map(|i| vec![i; 30])).await;
        let lone = appender.stats();
        assert_eq!((lone.records, lone.syncs, lone.in_place), (20, 20, 18));
        // Overlapping: they go through the WAL task and share its fsyncs.
        let mut appends = Vec::new();
        for i in 0..16u8 {
            let ap = appender.clone();
            appends.push(tokio::spawn(async move {
                let body = vec![100 + i; 30];
                (ap.append(body.clone()).await.unwrap(), body)
            }));
        }
        for t in appends {
            acked.push(t.await.unwrap());
        }
        let all = appender.stats();
        assert_eq!(all.records, 36);
        assert!(all.in_place - lone.in_place <= 1, "{all:?}");
        assert!(
            all.syncs - lone.syncs < 8,
            "overlapping appends share fsyncs: {all:?}"
        );
        drop(appender);
        tasks.ended().await.unwrap();
        // Every acknowledged record, committed in place or not, survives a
        // power loss at its LSN.
        survive_power_loss(&disk, 64 << 10, &acked).await;
    });
}

#[test]
fn a_rotation_in_an_in_place_commit_has_the_next_segment_prepared_at_once() {
    rt().block_on(async {
        let disk = SimDisk::new(6, SimDiskConfig::default());
        let dir = Path::new(DIR);
        // 4 KiB segments hold two batches of one 1,000-byte record each:
        // the third append rotates into the segment prepared ahead, and it
        // is the first committed in place (after two syncs of one append).
        let (appender, tasks) = spawn(&disk, 4096, 8).await;
        one_at_a_time(&appender, (0..2u8).map(|i| vec![i; 1000])).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(disk.list(dir).await.unwrap().len(), 2, "one ahead");
        one_at_a_time(&appender, std::iter::once(vec![2; 1000])).await;
        assert_eq!(appender.stats().in_place, 1);
        // Well before the WAL task's next space check (a second away), the
        // proposer's word has it prepare the next segment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listed = disk.list(dir).await.unwrap();
        assert_eq!(listed.len(), 3, "the next one is prepared: {listed:?}");
        drop(appender);
        tasks.ended().await.unwrap();
    });
}

#[test]
fn a_failed_fsync_of_an_in_place_commit_stops_the_wal() {
    rt().block_on(async {
        let disk = SimDisk::new(9, SimDiskConfig::default());
        let (appender, tasks) = spawn(&disk, 64 << 10, 64).await;
        one_at_a_time(&appender, (0..3u8).map(|i| vec![i; 10])).await;
        assert_eq!(
            appender.stats().in_place,
            1,
            "the third is committed in place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        disk.fail_next_syncs(1);
        assert!(appender.append(b"fourth".to_vec()).await.is_err());
        assert_eq!(
            appender.stats().in_place,
            1,
            "the fourth was not acknowledged"
        );
        // Both tasks end with the error, and nothing more is acknowledged.
        let ended = tokio::time::timeout(Duration::from_secs(5), tasks.ended()).await;
        assert!(ended.expect("the tasks end").is_err());
        assert!(matches!(
            appender.append(b"late".to_vec()).await,
            Err(Error::Stopped { .. })
        ));
    });
}

#[test]
fn an_append_given_up_during_its_in_place_commit_leaves_the_log_whole() {
    rt().block_on(async {
        // Power loss drops every unsynced byte (no torn prefixes).
        let cfg = SimDiskConfig {
            sync_latency_mean: Duration::from_millis(5),
            write_latency_mean: Duration::ZERO,
            ..SimDiskConfig::default()
        };
        let disk = SimDisk::new(21, cfg);
        let (appender, tasks) = spawn(&disk, 64 << 10, 64).await;
        let mut acked = one_at_a_time(&appender, (0..3u8).map(|i| vec![i; 20])).await;
        assert_eq!(appender.stats().in_place, 1);
        // Give up on an append while its fdatasync is running.
        let dropped = tokio::time::timeout(
            Duration::from_micros(50),
            appender.append(b"dropped".to_vec()),
        )
        .await;
        assert!(dropped.is_err(), "the append was cut off");
        // Later appends are acknowledged only once durable: the commit went
        // on without the one who asked, and the WAL is not wedged.
        acked.extend(one_at_a_time(&appender, (10..15u8).map(|i| vec![i; 20])).await);
        drop(appender);
        tasks.ended().await.unwrap();
        survive_power_loss(&disk, 64 << 10, &acked).await;
    });
}

/// A record of the group commit in [`handles_name_themselves_in_debug_output`].
struct Record(u64);

impl LogEntry for Record {
    fn lsn(&self) -> u64 {
        self.0
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

#[test]
fn handles_name_themselves_in_debug_output() {
    rt().block_on(async {
        let disk = SimDisk::new(31, SimDiskConfig::default());
        let (wal, _) = recover(&disk, Path::new(DIR), opts(64 << 10, 1), 0)
            .await
            .unwrap();
        let (commit, task) =
            GroupCommit::<_, Record, _>::new(wal, CommitSettings::default(), Arc::new(NoHooks));
        let lone = format!("{:?}", LoneClient::default());
        assert_eq!(
            format!("{commit:?}"),
            format!("GroupCommit {{ sent: 0, lone: {lone}, .. }}")
        );
        assert_eq!(format!("{:?}", commit.deleter()), "SegmentDeleter { .. }");
        assert_eq!(format!("{task:?}"), "WalTask { .. }");
        let (wal, _) = recover(&disk, Path::new("/data/other"), opts(64 << 10, 1), 0)
            .await
            .unwrap();
        let (appender, _, _) = Appender::start(wal, 1);
        assert_eq!(format!("{appender:?}"), "Appender { .. }");
    });
}

#[test]
fn a_segment_deleter_has_the_wal_task_delete_the_covered_segments() {
    rt().block_on(async {
        let disk = SimDisk::new(41, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let (mut wal, _) = recover(&disk, dir, opts(16 << 10, 1), 0).await.unwrap();
        for _ in 0..40 {
            write(&mut wal, 2, 700).await.unwrap();
            wal.sync().await.unwrap();
        }
        let closed = wal.closed_segments();
        assert!(closed.len() >= 3, "{closed:?}");
        let newest = closed.last().map(|&(_, last)| last);
        assert_eq!(wal.closed_segments_last_lsn(), newest);
        let (_, last1) = closed[1];
        let (commit, task) =
            GroupCommit::<_, Record, _>::new(wal, CommitSettings::default(), Arc::new(NoHooks));
        let task = tokio::spawn(task.run());
        commit.deleter().delete_through(last1).await;
        let listed = disk.list(dir).await.unwrap();
        let name = |i: usize| segment_name(closed[i].0);
        assert!(
            !listed.contains(&name(0)) && !listed.contains(&name(1)),
            "{listed:?}"
        );
        assert!(listed.contains(&name(2)), "{listed:?}");
        drop(commit);
        task.await.unwrap();
    });
}

/// Every report the group commit makes within `window` (simulated time).
async fn reports_within<H: CommitHooks>(
    commit: &mut GroupCommit<SimDisk, Record, H>,
    window: Duration,
) -> Vec<CommitEvent> {
    let deadline = tokio::time::Instant::now() + window;
    let mut got = Vec::new();
    while let Ok(n) = tokio::time::timeout_at(deadline, commit.reports(&mut got, 64)).await {
        if n == 0 {
            break; // the WAL task ended
        }
    }
    got
}

#[test]
fn the_wal_task_prepares_ahead_and_reports_the_reserve_only_when_entered_or_left() {
    rt().block_on(async {
        let disk = SimDisk::new(51, SimDiskConfig::default());
        let dir = Path::new(DIR);
        let (wal, _) = recover(&disk, dir, opts(4096, 1), 0).await.unwrap();
        let settings = CommitSettings {
            space_check_interval_ms: 10,
            ..CommitSettings::default()
        };
        let (mut commit, task) = GroupCommit::<_, Record, _>::new(wal, settings, Arc::new(NoHooks));
        let task = tokio::spawn(task.run());
        let second = Duration::from_secs(1);
        // A hundred space checks, nothing to report; the first segment is
        // prepared ahead of the first write meanwhile.
        let quiet = reports_within(&mut commit, second).await;
        assert!(quiet.is_empty(), "{quiet:?}");
        assert_eq!(disk.list(dir).await.unwrap(), [segment_name(1)]);
        disk.set_capacity(disk.used_bytes());
        let full = reports_within(&mut commit, second).await;
        assert!(
            matches!(full.as_slice(), [CommitEvent::DiskFull(true)]),
            "{full:?}"
        );
        disk.set_capacity(u64::MAX);
        let freed = reports_within(&mut commit, second).await;
        assert!(
            matches!(freed.as_slice(), [CommitEvent::DiskFull(false)]),
            "{freed:?}"
        );
        drop(commit);
        task.await.unwrap();
    });
}

#[test]
fn on_a_full_disk_the_wal_task_retries_its_preparation_once_per_space_check() {
    rt().block_on(async {
        let disk = SimDisk::new(52, SimDiskConfig::default());
        let (mut wal, _) = recover(&disk, Path::new(DIR), opts(4096, 1), 0)
            .await
            .unwrap();
        write(&mut wal, 1, 10).await.unwrap();
        wal.sync().await.unwrap();
        assert!(wal.next_segment_wanted());
        disk.set_capacity(disk.used_bytes());
        let settings = CommitSettings {
            space_check_interval_ms: 10,
            ..CommitSettings::default()
        };
        let (mut commit, task) = GroupCommit::<_, Record, _>::new(wal, settings, Arc::new(NoHooks));
        let task = tokio::spawn(task.run());
        let full = reports_within(&mut commit, Duration::from_secs(1)).await;
        assert!(
            matches!(full.as_slice(), [CommitEvent::DiskFull(true)]),
            "{full:?}"
        );
        // A hundred space checks in that second: as many tries at most.
        let tries = disk.stats().enospc;
        assert!((1..=101).contains(&tries), "{tries} tries");
        drop(commit);
        task.await.unwrap();
    });
}

/// A proposer that is never alone (its records always go to the WAL task).
#[derive(Default)]
struct Crowd {
    proposed: Vec<Record>,
    next_lsn: u64,
}

impl Proposer<Record> for Crowd {
    type Error = Error;

    fn take_proposed(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.proposed)
    }

    fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    fn others_waiting(&self) -> bool {
        true
    }

    fn report(&mut self, _event: CommitEvent) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_failed_sync_of_the_wal_task_is_reported_as_fatal_and_ends_it() {
    rt().block_on(async {
        let disk = SimDisk::new(53, SimDiskConfig::default());
        let (wal, _) = recover(&disk, Path::new(DIR), opts(4096, 1), 0)
            .await
            .unwrap();
        let settings = CommitSettings::default();
        let (mut commit, task) = GroupCommit::<_, Record, _>::new(wal, settings, Arc::new(NoHooks));
        let task = tokio::spawn(task.run());
        // The first segment is prepared (synced) ahead; the next sync fails.
        assert!(
            reports_within(&mut commit, Duration::from_secs(1))
                .await
                .is_empty()
        );
        disk.fail_next_syncs(1);
        let mut crowd = Crowd {
            proposed: vec![Record(1)],
            next_lsn: 2,
        };
        commit.commit(1, &mut crowd).await.unwrap();
        let reports = reports_within(&mut commit, Duration::from_secs(1)).await;
        assert!(
            matches!(reports.as_slice(), [CommitEvent::Fatal(Error::Io { .. })]),
            "{reports:?}"
        );
        assert!(task.is_finished());
    });
}
