//! What the jobs held add up to, kept as they change, for the figures the
//! runtime's disk reserve needs at every segment close: the snapshot's
//! job bytes and the drain ([`crate::Drain`]).
//!
//! The invariant: the [`Footprint`] a [`crate::table::Table`] keeps equals
//! the sum of [`Footprint::of`] over its jobs (checked with the other
//! figures by `Core::check_invariants`). Keeping it costs two sizings per
//! durable change of a job, where a recount costs a pass over every job:
//! tens of milliseconds at a million jobs, on the core task, once a
//! segment.

use crate::table::Entry;

/// One job's share of the figures, or the sum of many jobs' shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// The job's encoding in a snapshot, less its queue number's.
    pub snapshot_job_bytes: u64,
    /// The most log records the job can still make, if unfinished.
    pub drain_records: u64,
    /// The payload bytes the job lets go once final, if unfinished and
    /// its attempts are limited.
    pub drain_payload_bytes: u64,
}

impl Footprint {
    /// The job's share (see [`crate::Core::drain`] for the drain's rule).
    pub(crate) fn of(e: &Entry) -> Footprint {
        let mut f = Footprint {
            snapshot_job_bytes: crate::snapshot::job_len(e),
            ..Footprint::default()
        };
        if e.state.is_final() {
            return f;
        }
        let attempts = if e.max_attempts == crate::UNLIMITED_ATTEMPTS {
            1
        } else {
            f.drain_payload_bytes = e.payload.as_ref().map_or(0, |p| p.len() as u64);
            e.max_attempts.saturating_sub(e.attempt).max(1)
        };
        f.drain_records = u64::from(attempts) * 3;
        f
    }

    /// Adds a job's share.
    pub(crate) fn add(&mut self, job: Footprint) {
        self.snapshot_job_bytes += job.snapshot_job_bytes;
        self.drain_records += job.drain_records;
        self.drain_payload_bytes += job.drain_payload_bytes;
    }

    /// Takes away a share added before.
    pub(crate) fn sub(&mut self, job: Footprint) {
        self.snapshot_job_bytes -= job.snapshot_job_bytes;
        self.drain_records -= job.drain_records;
        self.drain_payload_bytes -= job.drain_payload_bytes;
    }
}
