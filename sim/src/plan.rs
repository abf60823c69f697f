//! From a seed: the engine's configuration, the workload and the fault
//! profile. Every seed draws its own fault rates (swarm testing), so some
//! runs are quiet and others are storms of one kind of fault.

use std::path::PathBuf;
use std::time::Duration;

use beaver_core::{Config, Dedup, Limits, QueueName, Retention, RetryPolicy};
use beaver_io::{DetRng, SimDiskConfig};
use beaver_runtime::EngineConfig;

/// The faults a run injects and how often.
#[derive(Debug, Clone)]
pub struct FaultProfile {
    /// Fault rounds (each a crash, an EIO, an ENOSPC episode, ...).
    pub rounds: u32,
    /// Mean simulated time between rounds.
    pub gap_ms_mean: f64,
    /// Relative weight of each kind, in the order of [`FaultKind::ALL`].
    pub weights: [u32; 6],
    /// Chance that a restart is itself killed during recovery.
    pub kill_in_recovery: f64,
    /// The disk's own fault model (torn writes, lost entries, EIO rate, latency).
    pub disk: SimDiskConfig,
}

/// What one fault round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `kill -9` of the server (the disk keeps what was written).
    Kill,
    /// Power loss: the disk keeps only what was synced, tearing the rest.
    PowerLoss,
    /// The next one or two fsyncs fail with EIO.
    EioBurst,
    /// The disk fills up for a while (ENOSPC).
    DiskFull,
    /// A crash, then a WAL segment is damaged while the server is down.
    WalCorruption,
    /// A crash, then the snapshot rots while the server is down.
    SnapshotRot,
}

impl FaultKind {
    /// Every kind, in the order of [`FaultProfile::weights`].
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::PowerLoss,
        FaultKind::EioBurst,
        FaultKind::DiskFull,
        FaultKind::WalCorruption,
        FaultKind::SnapshotRot,
    ];
}

impl FaultProfile {
    /// A kind drawn by weight, or `None` when every weight is 0 (one draw
    /// from `rng` otherwise, so seeds replay as they did).
    pub fn pick(&self, rng: &mut DetRng) -> Option<FaultKind> {
        let total: u32 = self.weights.iter().sum();
        if total == 0 {
            return None;
        }
        let mut left = rng.below(u64::from(total)) as u32;
        for (kind, &w) in FaultKind::ALL.iter().zip(&self.weights) {
            if left < w {
                return Some(*kind);
            }
            left -= w;
        }
        None
    }
}

/// The workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: u32,
    /// Operations per client.
    pub ops: u32,
    /// Mean simulated time between one client's operations.
    pub op_gap_ms_mean: f64,
    /// Largest enqueue batch.
    pub batch_max: u32,
    /// Chance an enqueued id is one already submitted (a duplicate).
    pub dup: f64,
    /// Chance of a cancel, a requeue, a status read (else an enqueue).
    pub cancel: f64,
    /// See `cancel`.
    pub requeue: f64,
    /// See `cancel`.
    pub status: f64,
    /// Outcome weights of an attempt: success, failure, hang past timeout.
    pub outcomes: [u32; 3],
    /// The id of a job that kills the server whenever an attempt of it
    /// starts (one of client 0's first jobs), if the run has one.
    pub crasher: Option<String>,
}

/// Everything a seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// The engine's configuration.
    pub engine: EngineConfig,
    /// The workload.
    pub workload: Workload,
    /// The faults.
    pub faults: FaultProfile,
    /// External worker nodes, if the run has them.
    pub external: Option<crate::external::ExtPlan>,
    /// A disk that stays nearly full while the jobs drain, if the run has one.
    pub squeeze: Option<Squeeze>,
    /// Beanstalk-style connections, if the run has them.
    pub sessions: Option<crate::sessions::SessionPlan>,
}

/// The convergence phase on a disk that stays nearly full: when the
/// faults stop, the capacity is cut to a little above what the server
/// needs (its files now, the space reserve, and room for the drained
/// log's segments and snapshots) and stays there. Once the jobs finish,
/// the engine must free its own log and accept an enqueue again.
#[derive(Debug, Clone)]
pub struct Squeeze {
    /// Bytes left free beyond the estimated reserve when the capacity is cut.
    pub room_bytes: u64,
    /// No size or time snapshot in the run (`snapshot_wal_bytes` beyond
    /// what it writes, none by time): only a compaction under pressure
    /// frees the log.
    pub pressure_only: bool,
}

/// Seeds whose plan is drawn as it was before the simulated disk could
/// split reads ([`SimDiskConfig::split_reads`]), snapshot builds read in
/// small pieces and the log wrote zeros ahead of its end: the regression
/// seeds of `crate::suite` found before any of these existed. A
/// regression seed must replay the schedule that found its bug; with
/// split reads, seed 54366 no longer met the one that catches
/// `trust-preallocated-length`.
pub const DRAWN_BEFORE_READ_FAULTS: &[u64] = &[54366, 2587, 73175, 61005613, 1754761];

fn pick<T: Copy>(rng: &mut DetRng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

impl Plan {
    /// The plan of `seed`.
    pub fn new(seed: u64) -> Plan {
        let mut rng = DetRng::new(seed ^ 0x5eed_b1a5_0000_0001);
        let r = &mut rng;
        let workers = pick(r, &[1, 2, 3, 4, 8]);
        let queue = Config {
            workers,
            prefetch: pick(r, &[0, 1, 2, 4, 8]),
            default_max_attempts: 1 + r.below(4) as u32,
            default_timeout_ms: pick(r, &[20, 50, 100, 300]),
            lease_slack_ms: pick(r, &[10, 50, 200]),
            retry: RetryPolicy {
                base_ms: pick(r, &[5, 20, 100]),
                max_ms: pick(r, &[50, 300, 1_000]),
            },
            retention: if r.chance(0.3) {
                Retention {
                    finished_age_ms: pick(r, &[200, 2_000]),
                    finished_count_max: pick(r, &[5, 50, 1_000]),
                }
            } else {
                Retention::default()
            },
            dedup: Dedup {
                window_ms: pick(r, &[500, 5_000, 24 * 3_600_000]),
                ids_max: pick(r, &[10, 1_000, 1_000_000]),
            },
            // The built-in pool serves every queue until external workers
            // join the simulation.
            pool_queues: None,
            limits: Limits {
                pending_jobs_max: pick(r, &[40, 1_000, 5_000_000]),
                batch_jobs_max: pick(r, &[4, 10_000]),
                // The beanstalk-style connections put jobs with unlimited
                // attempts, which the default `attempts_max` lets in.
                ..Limits::default()
            },
            hash_seed: r.next_u64(),
            // Set per run by the harness (`run`), on the node's copy only.
            #[cfg(feature = "mutants")]
            planted: None,
        };
        let segment_bytes = 512 * pick(r, &[8, 16, 32, 128]);
        let mut engine = EngineConfig {
            data_dir: PathBuf::from("/beaver"),
            queue,
            segment_bytes,
            snapshot_wal_bytes: pick(r, &[4_096, 16_384, 65_536, 1 << 30]),
            snapshot_interval_ms: pick(r, &[0, 300, 3_000]),
            requests_waiting_max: pick(r, &[8, 64, 1_024]),
            unsynced_records_max: pick(r, &[1, 16, 1_000]),
            shutdown_grace_ms: pick(r, &[50, 1_000]),
            space_check_interval_ms: pick(r, &[20, 200]),
            // Pacing sleeps a real thread; under madsim it never sleeps.
            snapshot_pace_percent: EngineConfig::default().snapshot_pace_percent,
            // Drawn at the end of the plan (see below).
            snapshot_read_piece_bytes: EngineConfig::default().snapshot_read_piece_bytes,
            wal_fill_ahead_bytes: EngineConfig::default().wal_fill_ahead_bytes,
        };
        let workload = Workload {
            clients: 1 + r.below(4) as u32,
            ops: pick(r, &[10, 25, 50]),
            op_gap_ms_mean: pick(r, &[2.0, 10.0, 50.0]),
            batch_max: pick(r, &[1, 3, 8]),
            dup: pick(r, &[0.0, 0.05, 0.2]),
            cancel: pick(r, &[0.0, 0.05, 0.15]),
            requeue: pick(r, &[0.0, 0.05, 0.1]),
            status: pick(r, &[0.05, 0.2]),
            outcomes: [
                pick(r, &[5, 10, 20]),
                pick(r, &[0, 2, 5]),
                pick(r, &[0, 1, 3]),
            ],
            crasher: None,
        };
        let us = |x: u64| Duration::from_micros(x);
        let slow = r.chance(0.7);
        let disk = SimDiskConfig {
            capacity_bytes: u64::MAX,
            read_latency_mean: if slow { us(pick(r, &[10, 100])) } else { us(0) },
            write_latency_mean: if slow { us(pick(r, &[20, 200])) } else { us(0) },
            sync_latency_mean: if slow {
                us(pick(r, &[100, 1_000, 5_000]))
            } else {
                us(0)
            },
            eio_probability: pick(r, &[0.0, 0.0, 0.001, 0.01]),
            torn_prefix: r.chance(0.7),
            reorder_sectors: r.chance(0.7),
            garbage_in_torn_sectors: r.chance(0.5),
            lose_unsynced_dir_entries: r.chance(0.7),
            // Drawn at the end of the plan (see below).
            split_reads: false,
        };
        let mut faults = FaultProfile {
            rounds: pick(r, &[0, 2, 4, 6]),
            gap_ms_mean: pick(r, &[20.0, 100.0, 400.0]),
            weights: [
                pick(r, &[0, 2, 4]),
                pick(r, &[0, 2, 4]),
                pick(r, &[0, 1, 2]),
                pick(r, &[0, 1, 2]),
                pick(r, &[0, 1]),
                pick(r, &[0, 1, 2]),
            ],
            kill_in_recovery: pick(r, &[0.0, 0.2]),
            disk,
        };
        // Drawn last, so every draw above is what it was before crashers.
        let mut workload = workload;
        if r.chance(0.2) {
            workload.crasher = Some(format!("c0-{}", r.below(4)));
        }
        // Drawn after the crasher, for the same reason.
        let external = r
            .chance(0.25)
            .then(|| crate::external::ExtPlan::draw(r, &mut engine.queue));
        // Drawn after the external workers, for the same reason.
        let mut squeeze = r.chance(0.1).then(|| Squeeze {
            room_bytes: r.below(2 * segment_bytes),
            pressure_only: false,
        });
        // Drawn after the squeeze, for the same reason: in half the
        // squeezed seeds the size and time snapshots are out of the run's
        // reach, so only a compaction under pressure can free the log.
        if let Some(s) = squeeze.as_mut() {
            s.pressure_only = r.chance(0.5);
            if s.pressure_only {
                engine.snapshot_wal_bytes = 1 << 30;
                engine.snapshot_interval_ms = 0;
            }
        }
        // Drawn after the squeeze, for the same reason. The connections'
        // tube is one the built-in pool does not serve.
        let sessions = r
            .chance(0.25)
            .then(|| crate::sessions::SessionPlan::draw(r));
        if sessions.is_some() && engine.queue.pool_queues.is_none() {
            let all = ["default", "q1", "q2"].iter();
            engine.queue.pool_queues = Some(all.filter_map(|q| QueueName::parse(q).ok()).collect());
        }
        // Drawn after the sessions, for the same reason; not for the seeds
        // kept as regression cases before the fault existed.
        let before_read_faults = DRAWN_BEFORE_READ_FAULTS.contains(&seed);
        faults.disk.split_reads = !before_read_faults && r.chance(0.3);
        // Drawn after the split reads, for the same reason: a build reads
        // the previous snapshot in many pieces, each decoded as it comes.
        if !before_read_faults && r.chance(0.3) {
            engine.snapshot_read_piece_bytes = pick(r, &[7, 64, 509, 4_096]);
        }
        // Drawn after the read pieces, for the same reason: the log writes
        // zeros ahead of its end by less than a segment, or by more (to its
        // end), or not at all, as it did before the regression seeds.
        engine.wal_fill_ahead_bytes = if before_read_faults {
            0
        } else {
            pick(r, &[0, 512, 4_096, beaver_io::FILL_AHEAD_BYTES])
        };
        Plan {
            seed,
            engine,
            workload,
            faults,
            external,
            squeeze,
            sessions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regression_seeds_are_drawn_as_before_the_read_faults_and_they_draw_none() {
        for &seed in DRAWN_BEFORE_READ_FAULTS {
            assert!(crate::suite::REGRESSION_SEEDS.contains(&seed), "{seed}");
            let plan = Plan::new(seed);
            assert!(!plan.faults.disk.split_reads, "{seed}");
            let default = EngineConfig::default().snapshot_read_piece_bytes;
            assert_eq!(plan.engine.snapshot_read_piece_bytes, default, "{seed}");
            assert_eq!(plan.engine.wal_fill_ahead_bytes, 0, "{seed}");
        }
        let split = (0..100)
            .filter(|&s| Plan::new(s).faults.disk.split_reads)
            .count();
        assert!(
            (15..=45).contains(&split),
            "{split} of 100 seeds split reads"
        );
        let default = EngineConfig::default().snapshot_read_piece_bytes;
        let pieces = (0..100)
            .filter(|&s| Plan::new(s).engine.snapshot_read_piece_bytes < default)
            .count();
        assert!(
            (15..=45).contains(&pieces),
            "{pieces} of 100 seeds read snapshots in small pieces"
        );
        let reaches: std::collections::BTreeSet<u64> = (0..100)
            .map(|s| Plan::new(s).engine.wal_fill_ahead_bytes)
            .collect();
        assert_eq!(
            reaches.into_iter().collect::<Vec<_>>(),
            [0, 512, 4_096, beaver_io::FILL_AHEAD_BYTES],
            "the log's reaches of zeros ahead drawn in 100 seeds"
        );
    }
}
