//! Time as the core sees it: wall-clock milliseconds handed in by the caller.

/// Milliseconds since the Unix epoch. The core never reads a clock: every
/// timestamp it uses arrives as an argument or inside a recovered record.
pub type UnixMillis = u64;

/// The first reading at which a span of `ms` milliseconds, begun when the
/// clock read `now`, has surely passed.
///
/// Guarantees: a deadline it gives is never early. Readings are whole
/// milliseconds rounded down, so the span truly began up to 1 ms after
/// `now`; a span of 1 ms or more therefore ends at `now + ms + 1`, and
/// one of 0 ms at `now`. Saturates instead of overflowing.
pub fn span_end(now: UnixMillis, ms: u64) -> UnixMillis {
    if ms == 0 {
        now
    } else {
        now.saturating_add(ms).saturating_add(1)
    }
}

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
    fn a_span_ends_a_millisecond_after_its_whole_milliseconds() {
        assert_eq!(span_end(100, 0), 100);
        assert_eq!(span_end(100, 1), 102);
        assert_eq!(span_end(100, 5_000), 5_101);
        assert_eq!(span_end(u64::MAX - 3, 5_000), u64::MAX);
    }

    #[test]
    fn clock_going_back_is_clamped() {
        let mut clock = MonotonicNow::default();
        assert_eq!(clock.observe(100), 100);
        assert_eq!(clock.observe(40), 100);
        assert_eq!(clock.observe(150), 150);
        assert_eq!(clock.latest(), 150);
    }
}
