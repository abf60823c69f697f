//! What a data dir's volume must hold before beaver can accept any job:
//! the start-up check that a small volume is refused with numbers, instead
//! of serving and then refusing every job at 0% used.
//!
//! The log keeps two segments preallocated (the one being written and the
//! next, prepared ahead), and [`crate::Wal::space_status`] refuses new jobs
//! while less than its reserve is free: two more segments and a snapshot.
//! So a volume that cannot hold four segments and a snapshot beside what
//! else it holds is in the reserve from the start.

/// Segments the log keeps preallocated: the active one and the next.
pub const PREALLOCATED_SEGMENTS: u64 = 2;
/// Segments in the reserve [`crate::Wal::space_status`] keeps free.
pub const RESERVE_SEGMENTS: u64 = 2;

/// The reserve [`crate::Wal::space_status`] keeps free for a snapshot
/// estimate of `snapshot_bytes`: new jobs are refused below it.
pub fn reserve_bytes(segment_bytes: u64, snapshot_bytes: u64) -> u64 {
    segment_bytes
        .saturating_mul(RESERVE_SEGMENTS)
        .saturating_add(snapshot_bytes)
}

/// The bytes beaver's files need on their volume to accept a job: the
/// preallocated segments and the reserve.
pub fn needed_bytes(segment_bytes: u64, snapshot_bytes: u64) -> u64 {
    segment_bytes
        .saturating_mul(PREALLOCATED_SEGMENTS)
        .saturating_add(reserve_bytes(segment_bytes, snapshot_bytes))
}

/// A volume too small for the log: the numbers, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeShortfall {
    /// The segment size in force.
    pub segment_bytes: u64,
    /// The newest snapshot's size (the reserve's estimate of the next one).
    pub snapshot_bytes: u64,
    /// What the volume must hold for beaver's files ([`needed_bytes`]).
    pub needed_bytes: u64,
    /// Free on the volume now.
    pub free_bytes: u64,
    /// Held by beaver's own log and snapshot files already.
    pub own_bytes: u64,
}

/// Compares what the volume offers beaver (its free space and what
/// beaver's own files already hold) with what it needs; `Some` when short.
pub fn shortfall(
    segment_bytes: u64,
    snapshot_bytes: u64,
    free_bytes: u64,
    own_bytes: u64,
) -> Option<VolumeShortfall> {
    let needed_bytes = needed_bytes(segment_bytes, snapshot_bytes);
    (free_bytes.saturating_add(own_bytes) < needed_bytes).then_some(VolumeShortfall {
        segment_bytes,
        snapshot_bytes,
        needed_bytes,
        free_bytes,
        own_bytes,
    })
}

/// `512 B`, `32.0 MiB`...
fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl std::fmt::Display for VolumeShortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seg = self.segment_bytes;
        // The largest power-of-two segment (at least the minimum) whose
        // need fits what the volume offers, as a suggestion.
        let offered = self.free_bytes.saturating_add(self.own_bytes);
        let mut fits = crate::MIN_SEGMENT_BYTES.next_power_of_two();
        while fits.saturating_mul(2) < seg
            && needed_bytes(fits.saturating_mul(2), self.snapshot_bytes) <= offered
        {
            fits *= 2;
        }
        let suggestion = if needed_bytes(fits, self.snapshot_bytes) <= offered {
            format!(
                "set `segment_bytes = {fits}` under [engine] in the config file (then it needs {})",
                size(needed_bytes(fits, self.snapshot_bytes))
            )
        } else {
            "even the smallest segment (`segment_bytes` under [engine]) needs more than that".into()
        };
        write!(
            f,
            "the volume is too small for beaver's log: it needs {} ({} segments of {} being written and prepared ahead, and a reserve kept free for compaction of {} more and a snapshot of {}), and it offers {} ({} free, {} in beaver's own files); {suggestion}, or give the data dir a larger volume",
            size(self.needed_bytes),
            PREALLOCATED_SEGMENTS,
            size(seg),
            RESERVE_SEGMENTS,
            size(self.snapshot_bytes),
            size(offered),
            size(self.free_bytes),
            size(self.own_bytes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_must_hold_four_segments_and_a_snapshot() {
        let mib = 1 << 20;
        assert_eq!(needed_bytes(32 * mib, 100), 128 * mib + 100);
        assert_eq!(shortfall(32 * mib, 0, 128 * mib, 0), None);
        assert_eq!(shortfall(32 * mib, 0, 64 * mib, 64 * mib), None);
        let short = shortfall(32 * mib, 0, 20 * mib, 0).expect("20 MiB is short");
        let text = short.to_string();
        assert!(text.contains("it needs 128.0 MiB"), "{text}");
        assert!(text.contains("20.0 MiB free"), "{text}");
        assert!(
            text.contains("`segment_bytes = 4194304` under [engine]"),
            "the largest that fits 20 MiB is 4 MiB (16 MiB needed): {text}"
        );
        let tiny = shortfall(32 * mib, 0, 1000, 0).expect("short").to_string();
        assert!(tiny.contains("even the smallest segment"), "{tiny}");
    }

    #[test]
    fn sizes_read_in_the_largest_unit_that_keeps_them_at_least_one() {
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
        assert_eq!(size(1 << 50), "1024.0 TiB");
    }
}
