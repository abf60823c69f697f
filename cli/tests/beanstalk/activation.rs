//! Socket activation, as Debian's `beanstalkd.socket` unit has systemd
//! start beanstalkd: the listening socket comes as descriptor 3 with
//! `LISTEN_PID` and `LISTEN_FDS` set, and `-l`/`-p` are not used. Each
//! case runs against beaver and against Debian's beanstalkd, so the test
//! checks the reference does what it claims. Every server is started by
//! this test and stopped by its PID.

use std::net::TcpListener;
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::kill9::{ask, beaver, connect};
use crate::server::{ServerCmd, available_or_skip};

/// How long a server may take to start, answer or exit.
const WITHIN: Duration = Duration::from_secs(20);

/// A server started as a service manager starts one, `passed` as its
/// descriptor 3; stderr to `log`. SIGKILLed by PID on drop.
struct Activated(Child);

impl Activated {
    fn start(cmd: &ServerCmd, args: &[&str], passed: RawFd, log: &Path) -> Activated {
        let err = std::fs::File::create(log).expect("log file");
        // `sh` sets LISTEN_PID to its own pid, which exec keeps.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
            .args(&cmd.argv)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        // SAFETY: dup2 and fcntl are async-signal-safe; they only touch
        // descriptors of the child between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if passed != 3 && libc::dup2(passed, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::fcntl(3, libc::F_SETFD, 0); // kept across exec
                Ok(())
            });
        }
        Activated(command.spawn().expect("start the server"))
    }

    /// Its exit status, once it exits within [`WITHIN`].
    fn exit_status(&mut self) -> Option<ExitStatus> {
        crate::server::exit_within(&mut self.0, WITHIN)
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Both servers, each as `(name, command)`; `None` (the test says why)
/// when the reference is not installed.
fn both(test: &str) -> Option<[(&'static str, ServerCmd); 2]> {
    let reference = available_or_skip(ServerCmd::reference(), test)?;
    Some([("beanstalkd", reference), ("beaver", beaver())])
}

/// Served on the passed socket, not on `-l`/`-p`: those name the passed
/// socket's own port, which a server that bound it itself could not
/// take. So also with `-l 0.0.0.0`, which beaver alone refuses without
/// `--allow-remote`. A job put there is inserted.
#[test]
fn a_socket_passed_by_the_service_manager_is_served_on() {
    let Some(servers) = both("a_socket_passed_by_the_service_manager_is_served_on") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = servers
        .into_iter()
        .flat_map(|(name, cmd)| ["127.0.0.1", "0.0.0.0"].map(|l| (name, cmd.clone(), l)));
    for (name, cmd, l) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let port = addr.port().to_string();
        let log = dir.path().join(format!("{name}-{l}.log"));
        let args = ["-l", l, "-p", &port];
        let mut server = Activated::start(&cmd, &args, listener.as_raw_fd(), &log);
        // Ours is closed: only the server's copy accepts now.
        drop(listener);
        let mut c = connect(addr);
        let reply = ask(&mut c, "put 0 0 60 2\r\nhi\r\n");
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(reply, "INSERTED 1", "{name} -l {l}: {said}");
        assert_eq!(ask(&mut c, "peek 1\r\n"), "FOUND 1 2", "{name}");
        assert!(
            server.0.try_wait().ok().flatten().is_none(),
            "{name} exited"
        );
        if name == "beaver" {
            let want = format!("serving on the socket the service manager passed ({addr})");
            assert!(said.contains(&want), "{said}");
            assert!(said.contains("-l and -p are not used"), "{said}");
        }
    }
}

/// A passed descriptor that is not a listening socket stops the start:
/// beaver says what it is and what to do.
#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_stops_the_start() {
    let test = "a_passed_descriptor_that_is_not_a_listening_socket_stops_the_start";
    let Some(servers) = both(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = std::fs::File::create(dir.path().join("not-a-socket")).expect("file");
    for (name, cmd) in servers {
        let log = dir.path().join(format!("{name}.log"));
        let mut server = Activated::start(&cmd, &["-p", "0"], file.as_raw_fd(), &log);
        let status = server.exit_status();
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name}: {status:?} {said}"
        );
        if name == "beaver" {
            assert!(
                said.contains("descriptor 3 (LISTEN_FDS), but it is not a socket"),
                "{said}"
            );
            assert!(said.contains("start beaver without LISTEN_FDS"), "{said}");
        }
    }
}

/// A passed Unix socket is served on too; beaver leaves its file to the
/// service manager that made it when it stops.
#[test]
fn a_passed_unix_socket_is_served_on_and_its_file_left_in_place() {
    let test = "a_passed_unix_socket_is_served_on_and_its_file_left_in_place";
    let Some(servers) = both(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, cmd) in servers {
        let path = dir.path().join(format!("{name}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let log = dir.path().join(format!("{name}.log"));
        let args = ["-l", "127.0.0.1", "-p", "0"];
        let mut server = Activated::start(&cmd, &args, listener.as_raw_fd(), &log);
        drop(listener);
        let mut c = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        c.set_read_timeout(Some(WITHIN)).expect("timeout");
        let reply = crate::unix::ask(&mut c, "put 0 0 60 2\r\nhi\r\n");
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(reply, "INSERTED 1", "{name}: {said}");
        if name == "beaver" {
            let pid = i32::try_from(server.0.id()).expect("pid fits");
            // SAFETY: kill(2) on a child this test spawned and has not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let status = server.exit_status();
            assert!(status.is_some_and(|s| s.success()), "{status:?}: {said}");
            assert!(path.exists(), "the passed socket's file was removed");
        }
    }
}
