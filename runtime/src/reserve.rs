//! The part of the disk's space reserve that grows with what the queue
//! holds.
//!
//! The invariant: **new work is refused before the space that the drain
//! and the compaction after it need is spent.** Enqueues are refused
//! (503, "the disk is full") while the free space is below
//!
//! ```text
//! the next segment, if one is due and not prepared yet
//! + two segments                      (the compaction's checkpoints, a rotation)
//! + the drain: Core::drain()'s records x a sector, in whole segments
//! + max(the newest snapshot, two snapshots of the drained state)
//! ```
//!
//! Transitions of the jobs already held (dispatches, starts, outcomes,
//! cancels) are never refused for space: the drain's share is theirs, at
//! a sector a record (a record written alone takes a whole sector). Once
//! every job is final, a compaction writes at most two snapshots of the
//! drained state (its first round's and its second's, before the older
//! one goes) and its two checkpoints, so it finds its room, and the
//! segments it lets go bring the disk out of its reserve.
//!
//! The drained state's snapshot is measured, not guessed: the snapshot
//! of the state now, less the payloads of the unfinished jobs (a final
//! job keeps none), plus [`FINAL_JOB_BYTES`] for each of them (times,
//! counters, an error text). A job with unlimited attempts (beanstalkd's)
//! has no drain of its own: it counts for one attempt's records and keeps
//! its payload in the drained state, so the compactions that free what
//! its later attempts write always fit (`Core::drain`). It is measured
//! again when the log closes a segment and, while the disk is in its
//! reserve, at most once a space check interval while records are
//! applied; in between, at most a segment of work goes in under the old
//! figure, which the drain's share, rounded up to whole segments, absorbs.
//! Measuring reads sums the core keeps as jobs change (constant in the
//! jobs held), so it never pauses the core task.

use std::sync::atomic::Ordering::Relaxed;

use beaver_core::{Core, codec};

use crate::figures::Figures;

/// The most a record takes in the log when written alone: one sector.
const SECTOR_BYTES: u64 = 512;
/// What an unfinished job's entry may grow by on its way to final, beside
/// its payload going: a finish time, counters, a short error text.
pub(crate) const FINAL_JOB_BYTES: u64 = 256;
/// Beside each snapshot: its header, sector rounding, the directory's entry.
const SNAPSHOT_SLACK_BYTES: u64 = 4 << 10;

/// Measures the queue's share of the reserve and publishes it in
/// `figures` (read by the WAL task's space check).
pub(crate) fn measure(queue: &Core, segment_bytes: u64, figures: &Figures) {
    let forecast = queue.drain();
    let drain = forecast
        .records
        .saturating_mul(SECTOR_BYTES)
        .div_ceil(segment_bytes.max(1))
        .saturating_mul(segment_bytes);
    let stats = queue.stats();
    let unfinished = stats.jobs.pending + stats.jobs.in_flight;
    // The snapshot's size now, computed without encoding it (from sums
    // the core keeps).
    let drained = codec::queue_snapshot_len(queue)
        .saturating_sub(forecast.payload_bytes_freed)
        .saturating_add(unfinished.saturating_mul(FINAL_JOB_BYTES))
        .saturating_add(SNAPSHOT_SLACK_BYTES);
    figures.drain_bytes.store(drain, Relaxed);
    figures
        .drained_snapshots_bytes
        .store(drained.saturating_mul(2), Relaxed);
}

/// The reserve beyond its two segments, as the WAL task's space check
/// takes it: the drain's share, and the larger of the newest snapshot
/// (`newest_snapshot`) and two of the drained state.
pub(crate) fn variable_bytes(newest_snapshot: u64, figures: &Figures) -> u64 {
    newest_snapshot
        .max(figures.drained_snapshots_bytes.load(Relaxed))
        .saturating_add(figures.drain_bytes.load(Relaxed))
}
