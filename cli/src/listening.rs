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

pub use beaver_runtime::executor::open_files::{current as open_files, raise as raise_open_files};

/// How many connections `open_files` descriptors hold beside
/// [`RESERVED_FDS`]: at most `wanted`, at least 1.
pub fn connections_within(open_files: u64, wanted: usize) -> usize {
    let [n] = connection_shares(open_files, RESERVED_FDS, [wanted]);
    n
}

/// How many connections each of several listeners may hold at once when
/// `open_files` descriptors must also leave `reserved` free: each its
/// `wanted` when all fit, else a share of the room left in proportion to
/// what it wants; at least 1 each (0 for a listener that wants none). The
/// shares never add up to more than the room (unless there is less room
/// than listeners).
pub fn connection_shares<const N: usize>(
    open_files: u64,
    reserved: u64,
    wanted: [usize; N],
) -> [usize; N] {
    let room = u128::from(open_files.saturating_sub(reserved));
    let total: u128 = wanted.iter().map(|&w| w as u128).sum();
    wanted.map(|w| {
        let share = if total <= room {
            w as u128
        } else {
            w as u128 * room / total
        };
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .max(usize::from(w > 0))
    })
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
    fn listeners_share_what_the_limit_leaves_in_proportion() {
        // All fit: each gets what it wants.
        assert_eq!(
            connection_shares(1 << 20, 100, [512, 512, 1_024]),
            [512, 512, 1_024]
        );
        assert_eq!(
            connection_shares(2_148, 100, [512, 512, 1_024]),
            [512, 512, 1_024]
        );
        // One short: each gives up its share, and the sum fits the room.
        let shares = connection_shares(1_124, 100, [512, 512, 1_024]);
        assert_eq!(shares, [256, 256, 512]);
        let shares = connection_shares(1_000, 32, [512, 512, 1_024]);
        assert!(shares.iter().sum::<usize>() <= 968, "{shares:?}");
        assert!(shares[2] > shares[0], "{shares:?}");
        // No room: one each, so every listener still serves.
        assert_eq!(connection_shares(64, 100, [512, 512]), [1, 1]);
        // A listener that is off wants none and gets none.
        assert_eq!(connection_shares(64, 100, [512, 0]), [1, 0]);
    }
}
