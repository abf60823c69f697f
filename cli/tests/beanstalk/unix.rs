//! `-l unix:PATH`: beanstalkd's protocol over a Unix socket, its file
//! removed at a clean stop, and a socket left by a killed server replaced
//! at the next start (as beanstalkd does), while a socket a live server
//! accepts on, or any other file, is never replaced. beaver only: each
//! test starts `beaver beanstalkd` itself in a temp dir, stopped by PID.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a start, a reply or an exit may take.
const WITHIN: Duration = Duration::from_secs(20);

/// A `beaver beanstalkd` on a Unix socket; SIGKILLed by PID on drop.
pub(crate) struct UnixServer {
    child: Child,
    log: PathBuf,
}

impl UnixServer {
    /// Starts it on `socket` with the data dir `data`; its stderr goes
    /// to `log`.
    pub(crate) fn start(socket: &Path, data: &Path, log: &Path) -> UnixServer {
        UnixServer::spawn(socket, data, log, None)
    }

    /// As [`UnixServer::start`], with the open-file limit `limit`.
    pub(crate) fn start_with_open_files(
        socket: &Path,
        data: &Path,
        log: &Path,
        limit: libc::rlimit,
    ) -> UnixServer {
        UnixServer::spawn(socket, data, log, Some(limit))
    }

    fn spawn(socket: &Path, data: &Path, log: &Path, limit: Option<libc::rlimit>) -> UnixServer {
        let err = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_beaver"));
        cmd.args(["beanstalkd", "-l"])
            .arg(format!("unix:{}", socket.display()))
            .arg("-b")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        if let Some(lim) = limit {
            crate::open_files::limit_open_files(&mut cmd, lim);
        }
        UnixServer {
            child: cmd.spawn().expect("start beaver beanstalkd"),
            log: log.to_path_buf(),
        }
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU ticks (user + system) it has used so far.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let at = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        at(11) + at(12)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A connection, once it accepts one; panics (with its log) if it
    /// exits or does not within [`WITHIN`].
    pub(crate) fn connect(&mut self, socket: &Path) -> UnixStream {
        let deadline = Instant::now() + WITHIN;
        while Instant::now() < deadline {
            if let Ok(s) = UnixStream::connect(socket) {
                s.set_read_timeout(Some(WITHIN)).expect("timeout");
                return s;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited ({st}) before serving: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "not serving on {} within {WITHIN:?}: {}",
            socket.display(),
            self.log()
        );
    }

    /// Its exit status if it has exited, without waiting.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its exit status, once it exits within [`WITHIN`].
    fn exit_status(&mut self) -> Option<ExitStatus> {
        crate::server::exit_within(&mut self.child, WITHIN)
    }

    /// SIGTERM by PID, and its exit status.
    fn terminate(&mut self) -> Option<ExitStatus> {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.exit_status()
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `line` and reads the reply up to its first `\r\n`.
pub(crate) fn ask(s: &mut UnixStream, line: &str) -> String {
    s.write_all(line.as_bytes()).expect("send");
    let (mut got, mut byte) = (Vec::new(), [0u8; 1]);
    while !got.ends_with(b"\r\n") && got.len() < 4_096 {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).trim_end().to_string()
}

#[test]
fn serves_on_a_unix_socket_and_a_restart_after_kill_9_replaces_the_stale_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, data) = (dir.path().join("bs.sock"), dir.path().join("data"));
    let mut first = UnixServer::start(&socket, &data, &dir.path().join("1.log"));
    let mut c = first.connect(&socket);
    assert_eq!(ask(&mut c, "put 0 0 60 5\r\nhello\r\n"), "INSERTED 1");
    drop(c);
    drop(first); // SIGKILL: the socket file stays behind
    assert!(socket.exists(), "a killed server leaves its socket file");

    let mut second = UnixServer::start(&socket, &data, &dir.path().join("2.log"));
    let mut c = second.connect(&socket);
    assert_eq!(ask(&mut c, "reserve-with-timeout 0\r\n"), "RESERVED 1 5");
    drop(c);
    let status = second.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        second.log()
    );
    assert!(!socket.exists(), "a clean stop removes its socket file");
}

#[test]
fn a_socket_a_live_server_accepts_on_or_another_file_is_never_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("bs.sock");
    let mut live = UnixServer::start(&socket, &dir.path().join("a"), &dir.path().join("a.log"));
    let mut c = live.connect(&socket);
    let mut late = UnixServer::start(&socket, &dir.path().join("b"), &dir.path().join("b.log"));
    let status = late.exit_status();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(
        late.log()
            .contains("another server accepts connections there"),
        "{}",
        late.log()
    );
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nx\r\n"), "INSERTED 1");

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("write a file");
    let mut onto_file = UnixServer::start(&file, &dir.path().join("c"), &dir.path().join("c.log"));
    let status = onto_file.exit_status();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(
        onto_file
            .log()
            .contains("a file that is not a socket is there"),
        "{}",
        onto_file.log()
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
}
