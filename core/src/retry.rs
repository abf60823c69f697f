//! Retry backoff: exponential, capped, with jitter derived from (id, attempt).

use crate::config::RetryPolicy;
use crate::job::JobId;

/// The delay before the attempt after failed attempt `attempt` (1-based).
///
/// Guarantees: deterministic in (policy, id, attempt); within
/// `[d/2, d]` where `d = min(base * 2^(attempt-1), max)` ("equal jitter"),
/// so retries of many jobs that failed together spread out.
pub fn backoff_ms(policy: &RetryPolicy, id: &JobId, attempt: u32) -> u64 {
    let exp = attempt.saturating_sub(1).min(62);
    let full = policy
        .base_ms
        .saturating_mul(1u64 << exp)
        .min(policy.max_ms);
    let half = full / 2;
    let span = full - half;
    if span == 0 {
        return full;
    }
    half + jitter(id.as_str(), attempt) % (span + 1)
}

/// FNV-1a over the id and attempt, then a final avalanche: stable across
/// platforms and releases, unlike std's hasher.
fn jitter(id: &str, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> JobId {
        JobId::parse(s).unwrap()
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_deterministically() {
        let p = RetryPolicy {
            base_ms: 1_000,
            max_ms: 10_000,
        };
        for attempt in 1..=10 {
            let full = (1_000u64 << (attempt - 1)).min(10_000);
            let d = backoff_ms(&p, &id("a"), attempt);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d} not in [{}, {full}]",
                full / 2
            );
            assert_eq!(d, backoff_ms(&p, &id("a"), attempt));
        }
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| backoff_ms(&p, &id(&format!("j{i}")), 3))
            .collect();
        assert!(
            spread.len() > 10,
            "jitter should spread retries: {spread:?}"
        );
        assert_eq!(backoff_ms(&p, &id("a"), 200), backoff_ms(&p, &id("a"), 200));
        assert_eq!(
            backoff_ms(
                &RetryPolicy {
                    base_ms: 0,
                    max_ms: 0
                },
                &id("a"),
                3
            ),
            0
        );
    }

    /// The jitter is FNV-1a and an avalanche, not std's hasher, so that a
    /// delay is the same on every platform and in every release: these are
    /// the delays it gives (worked out apart from this code, from the
    /// algorithm its doc names).
    #[test]
    fn backoff_gives_the_same_delays_in_every_release() {
        let p = RetryPolicy {
            base_ms: 1_000,
            max_ms: 3_600_000,
        };
        let pinned = [
            ("a", 1, 752),
            ("a", 2, 1_508),
            ("order-17", 5, 10_045),
            ("order-17", 20, 3_033_758),
            ("report:2026-12-05", 3, 3_477),
        ];
        for (i, attempt, ms) in pinned {
            assert_eq!(backoff_ms(&p, &id(i), attempt), ms, "{i} attempt {attempt}");
        }
    }
}
