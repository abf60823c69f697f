//! The core's configuration: limits, retry, retention and deduplication.
//!
//! Configuration shapes what the core *proposes*; it never changes how a
//! record is applied, so a log replays identically under any configuration.

use serde::{Deserialize, Serialize};

/// Everything the core can be told to do differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Concurrent attempts the executor runs (the built-in pool); 0: the
    /// pool runs nothing and every job waits for external workers.
    pub workers: u32,
    /// The queues the built-in pool serves (`None`: every queue). Jobs of
    /// the others wait for external workers ([`crate::Input::Lease`]).
    pub pool_queues: Option<Vec<crate::job::QueueName>>,
    /// Jobs dispatched ahead of free workers, so a worker that frees up
    /// starts its next job without waiting for a sync.
    pub prefetch: u32,
    /// Attempts a job gets when the client names none.
    pub default_max_attempts: u32,
    /// Time limit of one attempt when the client names none.
    pub default_timeout_ms: u64,
    /// Added to a job's timeout to form its lease: the executor's own
    /// timeout should fire first; the lease is the backstop.
    pub lease_slack_ms: u64,
    /// Retry backoff.
    pub retry: RetryPolicy,
    /// How long finished jobs are kept.
    pub retention: Retention,
    /// How long purged ids are remembered for deduplication.
    pub dedup: Dedup,
    /// Size and capacity limits.
    pub limits: Limits,
    /// Seed of the id hash. The driver should pick it at random at start-up
    /// (so clients cannot craft colliding ids); it never affects behaviour.
    pub hash_seed: u64,
    /// The planted bug this node runs with (the simulator's own test; the
    /// driver hands it on to the storage and the runtime).
    #[cfg(feature = "mutants")]
    #[serde(skip)]
    pub planted: Option<crate::mutants::Mutant>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 8,
            pool_queues: None,
            // Deep enough that short jobs never wait for a group commit to
            // be dispatched; a crash counts an attempt for each job
            // dispatched but not started (a graceful stop gives them back).
            prefetch: 64,
            default_max_attempts: 3,
            default_timeout_ms: 30_000,
            lease_slack_ms: 5_000,
            retry: RetryPolicy::default(),
            retention: Retention::default(),
            dedup: Dedup::default(),
            limits: Limits::default(),
            hash_seed: 0,
            #[cfg(feature = "mutants")]
            planted: None,
        }
    }
}

/// Exponential backoff with deterministic jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (before jitter).
    pub base_ms: u64,
    /// The delay never exceeds this.
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

/// Retention of finished (completed, dead, cancelled) jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Finished jobs older than this are purged.
    pub finished_age_ms: u64,
    /// At most this many finished jobs are kept (oldest purged first).
    pub finished_count_max: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            finished_age_ms: 7 * 24 * 3_600_000,
            finished_count_max: 100_000,
        }
    }
}

/// Deduplication of ids after their job is purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dedup {
    /// A purged job's id is remembered this long after the purge.
    pub window_ms: u64,
    /// At most this many ids are remembered; past it the oldest are
    /// forgotten early (and counted).
    pub ids_max: u64,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            window_ms: 24 * 3_600_000,
            ids_max: 1_000_000,
        }
    }
}

/// Limits: each is answered with a clear rejection, never by running out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Pending plus in-flight jobs.
    pub pending_jobs_max: u64,
    /// Payload bytes of pending plus in-flight jobs.
    pub pending_payload_bytes_max: u64,
    /// One payload.
    pub payload_bytes_max: u64,
    /// Jobs in one enqueue request.
    pub batch_jobs_max: u64,
    /// Payload bytes in one enqueue request.
    pub batch_bytes_max: u64,
    /// `max_attempts` a client may ask for ([`crate::UNLIMITED_ATTEMPTS`],
    /// a job never given up, is always allowed: it is no count).
    pub attempts_max: u32,
    /// `timeout_ms` a client may ask for.
    pub timeout_ms_max: u64,
    /// `delay_ms` a client may ask for.
    pub delay_ms_max: u64,
    /// Distinct queue names.
    pub queues_max: u64,
    /// An error text is cut to this many bytes (its tail is kept).
    pub error_bytes_max: u64,
    /// Jobs named in one purge or requeue record.
    pub ids_per_record_max: u64,
    /// Jobs one lease request may ask for.
    pub lease_batch_max: u32,
    /// Lease requests waiting for jobs at once; past it one more is
    /// answered busy.
    pub lease_waiters_max: u64,
    /// How far ahead a lease request may wait for jobs.
    pub lease_wait_max_ms: u64,
    /// How far a heartbeat may move a lease's deadline past now.
    pub lease_extend_max_ms: u64,
    /// Ended leases remembered (oldest forgotten first), so that a retried
    /// complete or fail of one is answered as the first was.
    pub lease_ended_max: u64,
    /// The longest encoded log record. Not a setting: the engine sets it
    /// from its log segment size (at least
    /// [`RECORD_BYTES_MIN`](crate::record_size::RECORD_BYTES_MIN)), and every
    /// record the core proposes fits in it.
    #[serde(skip)]
    pub record_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pending_jobs_max: 5_000_000,
            pending_payload_bytes_max: 2 << 30,
            payload_bytes_max: 1 << 20,
            batch_jobs_max: 10_000,
            batch_bytes_max: 16 << 20,
            attempts_max: 100,
            timeout_ms_max: 24 * 3_600_000,
            delay_ms_max: 365 * 24 * 3_600_000,
            queues_max: 1_000,
            error_bytes_max: 4_096,
            ids_per_record_max: 1_000,
            lease_batch_max: 100,
            lease_waiters_max: 1_024,
            lease_wait_max_ms: 300_000,
            lease_extend_max_ms: 24 * 3_600_000,
            lease_ended_max: 65_536,
            record_bytes_max: u64::MAX,
        }
    }
}
