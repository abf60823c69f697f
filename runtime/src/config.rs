//! The engine's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the engine runs: where its files live and its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The data directory (WAL under `wal/`, snapshots under `snapshots/`).
    pub data_dir: PathBuf,
    /// The queue's own configuration (workers, limits, retry, retention).
    pub queue: beaver_core::Config,
    /// Size of each preallocated WAL segment.
    pub segment_bytes: u64,
    /// Take a snapshot once this many WAL bytes were written since the last.
    pub snapshot_wal_bytes: u64,
    /// Take a snapshot at least this often while the log grows (0: never by time).
    pub snapshot_interval_ms: u64,
    /// The share of time (1-100) a snapshot build may work; it sleeps the
    /// rest, so that requests keep their throughput and latency while it
    /// runs. 100 builds at full speed (still at nice 19). Lower: a
    /// longer build, so a longer log to replay if the process dies during
    /// one.
    pub snapshot_pace_percent: u8,
    /// Requests waiting for the core; past it clients are told to retry.
    pub requests_waiting_max: usize,
    /// Records proposed but not yet durable; past it no new requests are taken.
    pub unsynced_records_max: u64,
    /// How long a graceful shutdown waits for running jobs.
    pub shutdown_grace_ms: u64,
    /// How often free disk space is checked against the reserve.
    pub space_check_interval_ms: u64,
    /// The most of the previous snapshot a build reads at once (default
    /// [`beaver_io::snapshot::LOAD_PIECE_BYTES`]). Not a setting: the
    /// simulator draws small pieces so that its snapshots are read in
    /// many.
    #[serde(skip, default = "load_piece_bytes")]
    pub snapshot_read_piece_bytes: usize,
    /// How far ahead of its end the log writes zeros over its segment's
    /// blocks (default [`beaver_io::FILL_AHEAD_BYTES`]). Not a setting:
    /// the simulator draws smaller reaches (or none) than its segments.
    #[serde(skip, default = "fill_ahead_bytes")]
    pub wal_fill_ahead_bytes: u64,
}

fn fill_ahead_bytes() -> u64 {
    beaver_io::FILL_AHEAD_BYTES
}

fn load_piece_bytes() -> usize {
    beaver_io::snapshot::LOAD_PIECE_BYTES
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("beaver-data"),
            queue: beaver_core::Config::default(),
            // Above the largest enqueue batch (16 MiB) with room to spare;
            // recovery reads the active and the preallocated segment whole.
            segment_bytes: 32 << 20,
            // Bounds the log a restart replays (and the records a snapshot
            // build holds in memory).
            snapshot_wal_bytes: 64 << 20,
            snapshot_interval_ms: 10 * 60_000,
            // W2 during a 1.1M-job build on 2 cores: 67-72% of its
            // throughput unpaced, 79-85% at 50, 89-96% at 30.
            snapshot_pace_percent: 30,
            requests_waiting_max: 16_384,
            unsynced_records_max: 200_000,
            shutdown_grace_ms: 10_000,
            space_check_interval_ms: 1_000,
            snapshot_read_piece_bytes: load_piece_bytes(),
            wal_fill_ahead_bytes: fill_ahead_bytes(),
        }
    }
}

impl EngineConfig {
    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// The planted bug the node runs with, named by the core's
    /// configuration (always none without the `mutants` feature).
    pub fn planted(&self) -> beaver_io::Planted {
        planted_of(&self.queue)
    }
}

/// The planted bug a core configuration names, for the storage (always
/// none without the `mutants` feature).
pub(crate) fn planted_of(config: &beaver_core::Config) -> beaver_io::Planted {
    #[cfg(feature = "mutants")]
    return beaver_io::Planted(config.planted);
    #[cfg(not(feature = "mutants"))]
    {
        let _ = config;
        beaver_io::Planted::default()
    }
}
