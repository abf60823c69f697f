//! The engine's clock: wall-clock milliseconds that never jump while running.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of time for the engine.
///
/// Guarantees of [`SystemClock`]: wall-clock time at start-up plus monotonic
/// time elapsed since, so a wall-clock step while running never expires
/// every lease at once; and deadlines convert to timer instants exactly.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// The timer instant at which [`Clock::now_ms`] will read `ms`.
    fn instant_at(&self, ms: u64) -> Instant;
}

/// The production clock (deterministic under madsim, which simulates both
/// `SystemTime` and `Instant`).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    wall_ms_at_start: u64,
    start: Instant,
}

impl SystemClock {
    /// Reads the wall clock once, now.
    pub fn new() -> SystemClock {
        let wall_ms_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        SystemClock {
            wall_ms_at_start,
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
        self.wall_ms_at_start + self.start.elapsed().as_millis() as u64
    }

    fn instant_at(&self, ms: u64) -> Instant {
        let offset = ms.saturating_sub(self.wall_ms_at_start);
        self.start + std::time::Duration::from_millis(offset)
    }
}
