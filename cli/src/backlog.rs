//! The backlog of every listening socket beaver binds: connections the
//! kernel completes and holds until they are accepted.
//!
//! tokio binds with a backlog of 128; beanstalkd listens with 1,024. Past
//! the backlog the kernel drops a new connection's first packet, and the
//! client retries a second or more later: a burst of clients connecting
//! together (workers restarted at once, a deploy) waits instead.

use std::os::fd::AsRawFd;

/// Connections held until accepted, as beanstalkd's `listen(fd, 1024)`.
pub const BACKLOG: libc::c_int = 1_024;

/// Sets the backlog of the listening socket `listener` to [`BACKLOG`].
pub fn widen(listener: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: listen(2) on a socket the caller owns; on one that already
    // listens it only sets the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
