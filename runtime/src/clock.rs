//! The engine's clock: wall-clock milliseconds that never jump while running.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of time for the engine.
///
/// Guarantees of [`SystemClock`]: wall-clock time at start-up plus monotonic
/// time elapsed since, so a wall-clock step while running never expires
/// every lease at once; and deadlines convert to timer instants exactly.
pub trait Clock: Send + Sync + 'static {
    /// Whole milliseconds since the Unix epoch, rounded down: the true time
    /// is less than a millisecond past the reading (what
    /// [`beaver_core::span_end`] counts on, also across restarts).
    fn now_ms(&self) -> u64;
    /// The timer instant at which [`Clock::now_ms`] will read `ms`.
    fn instant_at(&self, ms: u64) -> Instant;
}

/// The production clock (deterministic under madsim, which simulates both
/// `SystemTime` and `Instant`).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    /// The wall clock at `start`, to the nanosecond: a base rounded to
    /// the millisecond would put every reading of this process up to a
    /// millisecond further behind the true time, and a deadline set before
    /// a restart could then end early after it.
    wall_at_start: Duration,
    start: Instant,
}

impl SystemClock {
    /// Reads the wall clock once, now.
    pub fn new() -> SystemClock {
        let wall_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        SystemClock {
            wall_at_start,
            start: Instant::now(),
        }
    }

    /// The process's one clock, read from the wall clock at its first use:
    /// every caller shares its base, so an engine started with it and the
    /// protocol layers that compare its deadlines with the time agree to
    /// the millisecond, and a wall-clock step moves none of them.
    pub fn process() -> SystemClock {
        static PROCESS: std::sync::OnceLock<SystemClock> = std::sync::OnceLock::new();
        *PROCESS.get_or_init(SystemClock::new)
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let now = self.wall_at_start.saturating_add(self.start.elapsed());
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
    }

    fn instant_at(&self, ms: u64) -> Instant {
        let offset = Duration::from_millis(ms).saturating_sub(self.wall_at_start);
        self.start + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock whose wall clock read `wall` when its instant was `start`.
    fn clock(wall: Duration, start: Instant) -> SystemClock {
        SystemClock {
            wall_at_start: wall,
            start,
        }
    }

    #[test]
    fn a_reading_rounds_the_true_time_down_once_not_its_base_and_its_elapsed_apart() {
        // Started at 1,000.6 ms of wall time; 0.6 ms later the true time
        // is 1,001.2 ms. Base and elapsed rounded apart would read 1,000.
        let start = Instant::now() - Duration::from_micros(600);
        let c = clock(Duration::from_micros(1_000_600), start);
        assert!(c.now_ms() >= 1_001, "{}", c.now_ms());
    }

    #[test]
    fn the_instant_of_a_reading_is_when_the_true_time_reaches_it() {
        let start = Instant::now();
        let c = clock(Duration::from_micros(1_000_600), start);
        assert_eq!(c.instant_at(1_002), start + Duration::from_micros(1_400));
        assert_eq!(c.instant_at(900), start, "a reading already past");
    }
}
