//! Bounded exponential backoff with jitter, for retrying an unreachable
//! server. Pure: the caller supplies the random bits, so the schedule is
//! testable and the same bits give the same delays.

use std::time::Duration;

/// The first retry's delay (before jitter).
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// No retry waits longer than this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The delays of successive retries: doubling from `base` up to `max`,
/// each drawn uniformly from its upper half so workers that lost the same
/// server do not all come back in the same millisecond.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_BASE, BACKOFF_MAX)
    }
}

impl Backoff {
    /// A backoff from `base` (at least 1 ms) to `max` (at least `base`).
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let base = base.max(Duration::from_millis(1));
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and gives the delay before the next try:
    /// within `[d/2, d]` where `d = min(base * 2^failures, max)`; `random`
    /// picks the point.
    pub fn fail(&mut self, random: u64) -> Duration {
        let doubled = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let ms = u64::try_from(doubled.as_millis()).unwrap_or(u64::MAX);
        let half = ms / 2;
        let spread = ms - half + 1;
        Duration::from_millis(half + random % spread)
    }

    /// The server answered: the next failure starts from `base` again.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }
}

/// A small generator for jitter (splitmix64): spreading retries needs
/// varied bits, not secrecy.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded; give each process a different seed (its pid and the time).
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_upper_half_and_stop_at_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let mut j = Jitter::new(1);
        let expect = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for (i, d) in expect.into_iter().enumerate() {
            let got = b.fail(j.next_u64()).as_millis() as u64;
            assert!(
                got >= d / 2 && got <= d,
                "failure {i}: {got} ms not in [{}, {d}]",
                d / 2
            );
        }
        assert_eq!(b.failures(), 7);
        // Both ends of the range are reachable.
        let mut lo = Backoff::new(Duration::from_millis(100), Duration::from_millis(100));
        assert_eq!(lo.fail(0), Duration::from_millis(50));
        assert_eq!(lo.fail(50), Duration::from_millis(100));
    }

    #[test]
    fn success_starts_over_and_many_failures_do_not_overflow() {
        let mut b = Backoff::default();
        for _ in 0..10_000 {
            assert!(b.fail(u64::MAX) <= BACKOFF_MAX);
        }
        b.succeed();
        assert!(b.fail(u64::MAX) <= BACKOFF_BASE);
    }

    #[test]
    fn jitter_varies() {
        let mut j = Jitter::new(7);
        let (a, b) = (j.next_u64(), j.next_u64());
        assert_ne!(a, b);
        assert_eq!(Jitter::new(7).next_u64(), a);
    }
}
