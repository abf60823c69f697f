//! Socket activation: the listening socket a service manager passes, as
//! Debian's `beanstalkd.socket` unit has systemd do (`LISTEN_PID`,
//! `LISTEN_FDS`, the sockets from descriptor 3 on). beanstalkd 1.12 then
//! serves on the first one and ignores `-l` and `-p`; so does beaver.
//!
//! The variables are left in the environment: `beaver beanstalkd` starts
//! no other program, and the socket itself is closed on exec.

use std::os::fd::{FromRawFd as _, RawFd};

/// The first passed descriptor (systemd's `SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// A listening socket a service manager passed.
#[derive(Debug)]
pub enum Passed {
    /// A TCP one.
    Tcp(std::net::TcpListener),
    /// A Unix one (its file belongs to the service manager).
    Unix(std::os::unix::net::UnixListener),
}

/// Whether this process was passed sockets: `LISTEN_PID` is its pid and
/// `LISTEN_FDS` a count of at least one. `Err` if `LISTEN_FDS` is not a
/// number.
fn passed_count(pid: Option<String>, fds: Option<String>) -> Result<usize, String> {
    let ours = pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
    let Some(fds) = fds.filter(|_| ours) else {
        return Ok(0);
    };
    fds.trim().parse().map_err(|_| {
        format!("LISTEN_FDS={fds:?} is not a count of sockets; start beaver without it, or fix the service manager's setting")
    })
}

/// [`passed_count`] of this process's environment.
fn passed_count_here() -> Result<usize, String> {
    passed_count(
        std::env::var("LISTEN_PID").ok(),
        std::env::var("LISTEN_FDS").ok(),
    )
}

/// Whether the environment says sockets were passed to this process (or
/// says it wrongly: [`passed_listener`] then says how).
pub fn socket_passed() -> bool {
    passed_count_here() != Ok(0)
}

/// The listening socket the service manager passed, if it passed one
/// (the first, with a warning, if more); `Err` says why a passed
/// descriptor cannot be served on.
pub fn passed_listener() -> Result<Option<Passed>, String> {
    let count = passed_count_here()?;
    if count == 0 {
        return Ok(None);
    }
    if count > 1 {
        eprintln!(
            "beaver beanstalkd: the service manager passed {count} sockets; serving on the first, as beanstalkd does"
        );
    }
    let domain = listening_stream_domain(FIRST_FD)?;
    // SAFETY: the service manager handed descriptor 3 to this process, it
    // is an open listening stream socket (checked above), and nothing else
    // here takes it: this is called once, before anything is served.
    let passed = unsafe {
        match domain {
            libc::AF_UNIX => Passed::Unix(std::os::unix::net::UnixListener::from_raw_fd(FIRST_FD)),
            _ => Passed::Tcp(std::net::TcpListener::from_raw_fd(FIRST_FD)),
        }
    };
    // SAFETY: fcntl on the descriptor just taken.
    unsafe { libc::fcntl(FIRST_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let nonblocking = match &passed {
        Passed::Tcp(l) => l.set_nonblocking(true),
        Passed::Unix(l) => l.set_nonblocking(true),
    };
    nonblocking.map_err(|e| format!("cannot use the passed socket: {e}"))?;
    Ok(Some(passed))
}

/// The address family of `fd` if it is a listening stream socket of TCP
/// (IPv4 or IPv6) or a Unix one; else an error that says what it is.
fn listening_stream_domain(fd: RawFd) -> Result<libc::c_int, String> {
    let not = |what: String| {
        format!(
            "the service manager passed descriptor {fd} (LISTEN_FDS), but it is {what}, not a listening TCP or Unix stream socket; fix the socket unit, or start beaver without LISTEN_FDS"
        )
    };
    let domain =
        socket_option(fd, libc::SO_DOMAIN).map_err(|e| not(format!("not a socket ({e})")))?;
    let kind = socket_option(fd, libc::SO_TYPE).map_err(|e| not(e.to_string()))?;
    let listening = socket_option(fd, libc::SO_ACCEPTCONN).map_err(|e| not(e.to_string()))?;
    let family_ok = [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX].contains(&domain);
    if !family_ok || kind != libc::SOCK_STREAM {
        return Err(not(format!("a socket of family {domain} and type {kind}")));
    }
    if listening == 0 {
        return Err(not("a socket that does not listen".to_string()));
    }
    Ok(domain)
}

/// An integer socket option of `fd` at `SOL_SOCKET`.
fn socket_option(fd: RawFd, name: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which is
    // ours and that size; a descriptor that is not a socket is an error.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_passed_only_to_the_pid_named() {
        let me = Some(std::process::id().to_string());
        let other = Some((std::process::id() + 1).to_string());
        assert_eq!(passed_count(me.clone(), Some("1".into())), Ok(1));
        assert_eq!(passed_count(me.clone(), Some("2".into())), Ok(2));
        assert_eq!(passed_count(me.clone(), None), Ok(0));
        assert_eq!(passed_count(other, Some("1".into())), Ok(0));
        assert_eq!(passed_count(None, Some("1".into())), Ok(0));
        let e = passed_count(me, Some("one".into())).unwrap_err();
        assert!(e.contains("LISTEN_FDS=\"one\" is not a count"), "{e}");
    }

    #[test]
    fn only_a_listening_stream_socket_is_taken() {
        use std::os::fd::AsRawFd as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let fd = listener.as_raw_fd();
        assert_eq!(listening_stream_domain(fd), Ok(libc::AF_INET));
        let file = tempfile::tempfile().expect("temp file");
        let e = listening_stream_domain(file.as_raw_fd()).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let e = listening_stream_domain(udp.as_raw_fd()).unwrap_err();
        assert!(
            e.contains("not a listening TCP or Unix stream socket"),
            "{e}"
        );
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let e = listening_stream_domain(client.as_raw_fd()).unwrap_err();
        assert!(e.contains("does not listen"), "{e}");
    }
}
