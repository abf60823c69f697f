//! How a server process's memory is paged: transparent huge pages off.

/// Turns transparent huge pages off for this process (Linux
/// `PR_SET_THP_DISABLE`; Redis does the same by default). With them on,
/// the allocator's heap is backed by 2 MiB pages, each zeroed whole in
/// the page fault of its first touch: on the benchmark machine every
/// request waited 5-8 ms each time the heap grew by one (about every
/// 5,000 puts), and 1,000,000 jobs held more memory (docs/performance.md).
/// Job handlers get the system's setting back before they start
/// (`beaver_runtime::executor`). Returns whether the kernel took it; a
/// kernel that refuses it leaves the default, which is only slower.
pub fn disable_transparent_huge_pages() -> bool {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and changes
    // only how this process's future page faults are served.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_status_says_huge_pages_are_off() {
        assert!(disable_transparent_huge_pages());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        // Kernels since 6.x print the flag; older ones say nothing of it.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
