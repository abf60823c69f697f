//! When to renew a lease, and when to give it up. Pure: times are passed in.
//!
//! The worker cannot read the server's clock, so it keeps each lease's end
//! on its own monotonic clock: a renewal counts from when its request was
//! *sent* (the server started its count later, so the worker's end comes
//! first); a grant counts from when its answer arrived, since a long poll
//! may wait long before the server grants anything (the worker's end is
//! then later than the server's by at most the answer's trip, well within
//! the lease slack the server allows).

use std::time::{Duration, Instant};

/// The shortest time between two renewals of one lease, so a job with a
/// tiny timeout cannot make the worker heartbeat in a busy loop.
pub const HEARTBEAT_MIN: Duration = Duration::from_millis(50);

/// One lease's clock, on the worker's monotonic time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    /// When the lease ends at the latest (the server's end is later).
    pub ends: Instant,
    /// When to send the next heartbeat.
    pub next_beat: Instant,
}

impl LeaseClock {
    /// The clock of a lease granted (or renewed) for `granted`, counted
    /// from `sent` (see the module docs): the next heartbeat is due once a third of
    /// that time has passed, leaving two thirds for retries.
    pub fn granted(sent: Instant, granted: Duration) -> LeaseClock {
        LeaseClock {
            ends: sent + granted,
            next_beat: sent + (granted / 3).max(HEARTBEAT_MIN),
        }
    }

    /// Whether a heartbeat is due at `now`.
    pub fn beat_due(&self, now: Instant) -> bool {
        now >= self.next_beat
    }

    /// A heartbeat failed to reach the server: try again after `retry`,
    /// but never later than the lease's end (so a lease is tried at least
    /// once more before it is given up).
    pub fn beat_failed(&mut self, now: Instant, retry: Duration) {
        self.next_beat = (now + retry.max(HEARTBEAT_MIN)).min(self.ends);
    }

    /// Whether the lease is over by the worker's clock: no renewal reached
    /// the server in time, so another worker may now hold the job.
    pub fn ended(&self, now: Instant) -> bool {
        now >= self.ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_beat_is_at_a_third_and_the_end_counts_from_the_send() {
        let t0 = Instant::now();
        let c = LeaseClock::granted(t0, Duration::from_secs(30));
        assert_eq!(c.next_beat, t0 + Duration::from_secs(10));
        assert_eq!(c.ends, t0 + Duration::from_secs(30));
        assert!(!c.beat_due(t0 + Duration::from_millis(9_999)));
        assert!(c.beat_due(t0 + Duration::from_secs(10)));
        assert!(!c.ended(t0 + Duration::from_millis(29_999)));
        assert!(c.ended(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn tiny_leases_beat_no_faster_than_the_floor() {
        let t0 = Instant::now();
        let c = LeaseClock::granted(t0, Duration::from_millis(3));
        assert_eq!(c.next_beat, t0 + HEARTBEAT_MIN);
    }

    #[test]
    fn failed_beats_retry_before_the_end() {
        let t0 = Instant::now();
        let mut c = LeaseClock::granted(t0, Duration::from_secs(3));
        let now = t0 + Duration::from_secs(1);
        c.beat_failed(now, Duration::from_millis(400));
        assert_eq!(c.next_beat, now + Duration::from_millis(400));
        c.beat_failed(now, Duration::from_secs(60));
        assert_eq!(c.next_beat, c.ends);
        // Renewed: the clock starts over from the renewal's send.
        let renewed = LeaseClock::granted(now, Duration::from_secs(3));
        assert!(renewed.ends > c.ends);
    }
}
