//! The open-file limit: a server raises its own soft limit to the hard
//! one (it holds a descriptor per connection), and the job handlers it
//! starts get back the limit it started with, as Go's runtime does for the
//! programs it starts: a program written for a limit of 1,024 (`select(2)`
//! and its fixed `fd_set`) is not handed a million.

use std::sync::OnceLock;

/// The limits this process had before [`raise`] first raised them.
static STARTED_WITH: OnceLock<libc::rlimit> = OnceLock::new();

/// The highest soft limit [`raise`] sets.
const RAISED_MAX: libc::rlim_t = 1 << 20;

/// This process's open-file limits (soft and hard), if the kernel says.
pub fn limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, ours.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// This process's soft open-file limit (1,024, the usual default, if the
/// kernel does not say).
pub fn current() -> u64 {
    limits().map_or(1_024, |lim| lim.rlim_cur)
}

/// Raises this process's soft open-file limit to its hard limit (at most
/// 1,048,576) and returns the limit in effect after. Handlers started by
/// [`super::ExecExecutor`] from then on start with the limits this process
/// had before its first call.
pub fn raise() -> u64 {
    if let Some(lim) = limits() {
        let _ = STARTED_WITH.set(lim);
        let target = lim.rlim_max.min(RAISED_MAX);
        if target > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads the struct it is given; raising the
            // soft limit up to the hard one needs no privilege.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        }
    }
    current()
}

/// The limits a handler is to start with: `Some` once [`raise`] ran.
pub(crate) fn for_handlers() -> Option<libc::rlimit> {
    STARTED_WITH.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_goes_to_the_hard_limit_and_remembers_the_old_one() {
        let before = limits().expect("the kernel says");
        let after = raise();
        assert!(after >= before.rlim_cur, "{} -> {after}", before.rlim_cur);
        assert_eq!(after, before.rlim_max.min(RAISED_MAX).max(before.rlim_cur));
        // Another test of this binary may have raised it first.
        let kept = for_handlers().expect("recorded");
        assert_eq!(kept.rlim_max, before.rlim_max);
        assert!(kept.rlim_cur <= after);
    }
}
