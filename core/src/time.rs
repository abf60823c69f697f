//! Time as the core sees it: wall-clock milliseconds handed in by the caller.

/// Milliseconds since the Unix epoch. The core never reads a clock: every
/// timestamp it uses arrives as an argument or inside a recovered record.
pub type UnixMillis = u64;

/// A clock reading clamped to never go backwards.
///
/// Guarantees: [`MonotonicNow::observe`] returns a value that is `>=` every
/// value it returned before, whatever the caller passes in, so a wall clock
/// stepping back never reorders or expires anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonotonicNow {
    latest: UnixMillis,
}

impl MonotonicNow {
    /// Takes a reading and returns it clamped to the latest one seen.
    pub fn observe(&mut self, now: UnixMillis) -> UnixMillis {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// The latest reading seen (0 before any).
    pub fn latest(&self) -> UnixMillis {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_going_back_is_clamped() {
        let mut clock = MonotonicNow::default();
        assert_eq!(clock.observe(100), 100);
        assert_eq!(clock.observe(40), 100);
        assert_eq!(clock.observe(150), 150);
        assert_eq!(clock.latest(), 150);
    }
}
