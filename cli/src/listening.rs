//! Listening sockets: the backlog every listener beaver binds gets, what
//! an accept error costs, and the open-file limit connections must leave
//! room in.
//!
//! tokio binds with a backlog of 128; beanstalkd listens with 1,024. Past
//! the backlog the kernel drops a new connection's first packet, and the
//! client retries a second or more later: a burst of clients connecting
//! together (workers restarted at once, a deploy) waits instead.

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Connections held until accepted, as beanstalkd's `listen(fd, 1024)`.
pub const BACKLOG: libc::c_int = 1_024;

/// Descriptors kept free of connections: the engine's log segments,
/// snapshots, lock and wake-ups, and the rest of the process (an idle
/// `beaver beanstalkd` holds 18). Connections that took them all would
/// leave the log unable to open its next segment: a fail-stop.
pub const RESERVED_FDS: u64 = 32;

/// How long accepting pauses after an error that is not one connection's
/// own (out of descriptors: the listener stays readable, so trying again
/// at once would spin). Each pause logs a warning: one a second at most.
pub const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Sets the backlog of the listening socket `listener` to [`BACKLOG`].
pub fn widen_backlog(listener: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: listen(2) on a socket the caller owns; on one that already
    // listens it only sets the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits as long as the accept error `e` calls for: not at all when one
/// connection failed on its own (reset before it was accepted), else
/// [`ACCEPT_PAUSE`], with a warning.
pub async fn pause_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset};
    if !matches!(e.kind(), ConnectionAborted | ConnectionReset) {
        tracing::warn!(error = %e, "accept failed; pausing for a second");
        tokio::time::sleep(ACCEPT_PAUSE).await;
    }
}

/// This process's open-file limits (soft and hard), if the kernel says.
fn open_file_limits() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, ours.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// This process's open-file limit (the soft one; 1,024, the usual
/// default, if the kernel does not say).
pub fn open_files() -> u64 {
    open_file_limits().map_or(1_024, |lim| lim.rlim_cur)
}

/// Raises this process's open-file limit to its hard limit (at most
/// 1,048,576), as a server that holds a descriptor per connection should;
/// the limit in effect after. For a process that starts no other program
/// (a child would inherit the raised limit).
pub fn raise_open_files() -> u64 {
    if let Some(lim) = open_file_limits() {
        let target = lim.rlim_max.min(1 << 20);
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
    open_files()
}

/// How many connections `open_files` descriptors hold beside
/// [`RESERVED_FDS`]: at most `wanted`, at least 1.
pub fn connections_within(open_files: u64, wanted: usize) -> usize {
    let room = open_files.saturating_sub(RESERVED_FDS);
    usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(1, wanted.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_the_reserve_free() {
        assert_eq!(connections_within(1_024, 1_024), 992);
        assert_eq!(connections_within(1_000_000, 1_024), 1_024);
        assert_eq!(connections_within(32, 1_024), 1);
        assert_eq!(connections_within(64, 1_024), 32);
        assert_eq!(connections_within(10, 1_024), 1);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_one() {
        let before = open_files();
        let after = raise_open_files();
        assert!(after >= before, "{before} -> {after}");
        let lim = open_file_limits().expect("the kernel says");
        assert!(after >= lim.rlim_max.min(1 << 20), "{after}");
    }
}
