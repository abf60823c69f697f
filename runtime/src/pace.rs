//! Pacing of background work on its own thread: a snapshot build works at
//! most a set share of the time and sleeps the rest, so that the engine's
//! threads keep their throughput and latency while it runs (measured on 2
//! cores: a full-speed build, even at idle priority, cost 32 enqueueing
//! clients 30-33% of their throughput; at work 30% of the time, 6-11%).
//! The price is a longer build, so a longer log to replay if the process
//! dies meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Paces the work of the calling thread; call [`Pace::worked_on`] or
/// [`Pace::check`] often.
///
/// Guarantees: with `percent` below 100, each stretch of at least one slice
/// (2 ms) of work is followed by a sleep long enough that the thread was at
/// work at most `percent`% of the time. At 100, under madsim (where
/// threads are not simulated and the build runs as a task), and once
/// `hurry` is set (the engine is shutting down and waits for the build), it
/// never sleeps (a rest under way ends within 10 ms).
pub(crate) struct Pace {
    percent: u32,
    hurry: Arc<AtomicBool>,
    /// When the current stretch of work began (`None`: never sleeps).
    working_since: Option<Instant>,
    /// Bytes worked on since the last check.
    bytes: usize,
}

/// Work between rests.
const SLICE: Duration = Duration::from_millis(2);
/// The longest sleep between two looks at `hurry`.
const NAP: Duration = Duration::from_millis(10);
/// Bytes worked on between two checks of the clock.
const CHECK_EVERY_BYTES: usize = 64 << 10;

impl Pace {
    /// A pace of work `percent`% (1-100) of the time, until `hurry` is set.
    pub(crate) fn new(percent: u8, hurry: Arc<AtomicBool>) -> Self {
        let percent = u32::from(percent.clamp(1, 100));
        let paced = percent < 100 && cfg!(not(madsim));
        Pace {
            percent,
            hurry,
            working_since: paced.then(Instant::now),
            bytes: 0,
        }
    }

    /// For callers doing work in proportion to `bytes` per call (folding
    /// one record): a [`Pace::check`] per 64 KiB (reading the clock for
    /// each small record would cost more than folding it).
    pub(crate) fn worked_on(&mut self, bytes: usize) {
        self.bytes += bytes;
        if self.bytes >= CHECK_EVERY_BYTES {
            self.bytes = 0;
            self.check();
        }
    }

    /// Whether `hurry` is set.
    pub(crate) fn hurried(&self) -> bool {
        self.hurry.load(Relaxed)
    }

    /// Sleeps if the current stretch of work has used up its share.
    pub(crate) fn check(&mut self) {
        let Some(since) = self.working_since else {
            return;
        };
        let worked = since.elapsed();
        if worked < SLICE || self.hurried() {
            return;
        }
        // In naps, so that a hurry cuts the rest short.
        let mut rest = worked * (100 - self.percent) / self.percent;
        while !rest.is_zero() && !self.hurried() {
            let nap = rest.min(NAP);
            std::thread::sleep(nap);
            rest -= nap;
        }
        self.working_since = Some(Instant::now());
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// Works for `work` of wall time (not counting sleeps) through `pace`;
    /// returns the wall time it took in all.
    fn work(pace: &mut Pace, work: Duration) -> Duration {
        let began = Instant::now();
        let mut worked = Duration::ZERO;
        while worked < work {
            let t = Instant::now();
            std::hint::black_box((0..1000u64).fold(0, |a, i| a ^ i.wrapping_mul(31)));
            worked += t.elapsed();
            pace.worked_on(1 << 10);
        }
        // Clocks are read once per 64 KiB, so a thread preempted between two
        // looks could end with a long unrested stretch: close it, so that
        // what is left unrested is under one slice (the bound below).
        pace.check();
        began.elapsed()
    }

    #[test]
    fn a_paced_thread_rests_in_proportion_until_hurried_and_an_unpaced_one_never() {
        // At 25%, each stretch of at least 2 ms of work is followed by three
        // times as long asleep (sleeps never end early), and what is left
        // unrested at the end is under 2 ms: 40 ms of work take at least
        // 40 + 3 * (40 - 2) ms.
        let hurry = Arc::new(AtomicBool::new(false));
        let mut paced = Pace::new(25, hurry.clone());
        let took = work(&mut paced, Duration::from_millis(40));
        assert!(
            took >= Duration::from_millis(40 + 3 * (40 - 2)),
            "paced at 25%: {took:?} for 40 ms of work"
        );
        // Once hurried it never rests again: its stretch of work, which
        // only a rest ends, goes on.
        hurry.store(true, Relaxed);
        let since = paced.working_since;
        work(&mut paced, Duration::from_millis(10));
        assert_eq!(paced.working_since, since, "a hurried pace rested");
        // At 100% it never even reads the clock, so it cannot sleep.
        let mut full = Pace::new(100, Arc::new(AtomicBool::new(false)));
        assert!(full.working_since.is_none());
        work(&mut full, Duration::from_millis(5));
        assert!(full.working_since.is_none());
    }
}
