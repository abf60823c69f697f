//! Starting a beanstalkd-protocol server on 127.0.0.1 and a free port, and
//! stopping it by its PID.
//!
//! Which server: `BEAVER_BEANSTALK_SERVER` holds a command line (split on
//! white space) that accepts beanstalkd's `-l ADDR -p PORT [-b DIR]
//! [-z BYTES]`. Unset, it is Debian's `beanstalkd` (the reference). To
//! run everything against beaver later:
//! `BEAVER_BEANSTALK_SERVER="target/debug/beaver beanstalkd" cargo test -p beaver --test beanstalk`.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reference: Debian's beanstalkd 1.12, as `.ci/run` installs it.
pub const REFERENCE: &str = "beanstalkd";

/// How long a server may take to accept connections.
const START_WITHIN: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// A command line that starts a server speaking beanstalkd's protocol.
#[derive(Debug, Clone)]
pub struct ServerCmd {
    /// Program and leading arguments.
    pub argv: Vec<String>,
}

impl ServerCmd {
    /// Debian's beanstalkd.
    pub fn reference() -> ServerCmd {
        ServerCmd {
            argv: vec![REFERENCE.to_owned()],
        }
    }

    /// The server chosen by `BEAVER_BEANSTALK_SERVER` (the reference when
    /// unset).
    pub fn selected() -> ServerCmd {
        match std::env::var("BEAVER_BEANSTALK_SERVER") {
            Ok(line) if !line.trim().is_empty() => ServerCmd {
                argv: line.split_whitespace().map(str::to_owned).collect(),
            },
            _ => ServerCmd::reference(),
        }
    }

    /// Whether the program can be run at all.
    pub fn available(&self) -> bool {
        Command::new(&self.argv[0])
            .arg("-h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    /// The command for logs.
    pub fn describe(&self) -> String {
        self.argv.join(" ")
    }
}

/// Waits up to `within` for `child` to exit (polling every 10 ms); its
/// exit status, or `None` if it still runs.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Returns the server to test, or `None` after saying loudly why the test
/// does not run: the reference is not installed here. Under CI (`CI` set)
/// a missing server fails instead, since `.ci/run` installs it.
pub fn server_or_skip(test: &str) -> Option<ServerCmd> {
    available_or_skip(ServerCmd::selected(), test)
}

/// `cmd` if it can run; else `None`, after saying so as
/// [`server_or_skip`] does.
pub fn available_or_skip(cmd: ServerCmd, test: &str) -> Option<ServerCmd> {
    if cmd.available() {
        return Some(cmd);
    }
    let msg = format!(
        "SKIPPED {test}: `{}` is not installed, so nothing was checked \
         (install it: apt-get install -y beanstalkd=1.12-2+b1)",
        cmd.describe()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}; CI must run it");
    // Straight to the process's stderr: the test harness captures print
    // macros of passing tests, and a skip must not be silent.
    let _ = writeln!(std::io::stderr(), "{msg}");
    None
}

/// Options for one server start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep jobs in a temp dir (`-b`), across [`Server::restart`].
    pub persist: bool,
    /// More arguments (`-z 10`).
    pub args: Vec<String>,
    /// Make the temp dir and the `-b` dir writable by every user (for a
    /// server that becomes another user, `-u`).
    pub open_to_all: bool,
}

impl Options {
    /// Jobs kept in a temp `-b` dir, with more arguments.
    pub fn persistent(args: &[&str]) -> Options {
        Options {
            persist: true,
            args: args.iter().map(|a| a.to_string()).collect(),
            open_to_all: false,
        }
    }
}

/// A running server, stopped (SIGTERM, then SIGKILL) by its PID on drop.
pub struct Server {
    cmd: ServerCmd,
    options: Options,
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Holds the log and the `-b` dir.
    scratch: tempfile::TempDir,
    starts: u32,
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Whether a server listens on `addr`. A connection to itself does not
/// count: while nothing listens on a port of the ephemeral range, a
/// connect whose source port happens to be that same port meets itself
/// (TCP simultaneous open) and succeeds. A start then looked ready before
/// the server had bound, and its transcript's first connect was refused.
fn accepts(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        Ok(s) => !is_self_connected(&s),
        Err(_) => false,
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (found in `/proc/net/tcp` by its inode, then among the process's
/// descriptors).
fn listens_on(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let tables = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let inode = tables.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address, state (0A: LISTEN), inode.
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")).then(|| f.get(9).copied())
    });
    let Some(Some(inode)) = inode else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == wanted.as_str()))
    })
}

/// Whether `s` is connected to itself (same address at both ends).
fn is_self_connected(s: &TcpStream) -> bool {
    matches!((s.local_addr(), s.peer_addr()), (Ok(l), Ok(p)) if l == p)
}

impl Server {
    /// Starts `cmd` on a free port and waits until it accepts connections.
    pub fn start(cmd: &ServerCmd, options: Options) -> Server {
        let scratch = tempfile::tempdir().expect("temp dir");
        let mut s = Server {
            cmd: cmd.clone(),
            options,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            scratch,
            starts: 0,
        };
        s.launch();
        s
    }

    /// The `-b` dir (used with [`Options::persist`]).
    pub fn data_dir(&self) -> PathBuf {
        self.scratch.path().join("binlog")
    }

    /// Waits up to `within` for the process to exit on its own (polling
    /// every 10 ms); its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let status = exit_within(self.child.as_mut()?, within);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    fn log_path(&self) -> PathBuf {
        self.scratch
            .path()
            .join(format!("server-{}.log", self.starts))
    }

    /// Starts the process; retries on another port if the chosen one was
    /// taken between the probe and the bind (at most 5 tries).
    fn launch(&mut self) {
        for _ in 0..5 {
            self.starts += 1;
            let port = free_port();
            let mut c = Command::new(&self.cmd.argv[0]);
            c.args(&self.cmd.argv[1..])
                .args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .args(&self.options.args);
            if self.options.persist {
                std::fs::create_dir_all(self.data_dir()).expect("binlog dir");
                c.arg("-b").arg(self.data_dir());
            }
            if self.options.open_to_all {
                use std::os::unix::fs::PermissionsExt;
                for d in [self.scratch.path().to_path_buf(), self.data_dir()] {
                    let all = std::fs::Permissions::from_mode(0o777);
                    std::fs::set_permissions(&d, all).expect("open the dir to all");
                }
            }
            let log = std::fs::File::create(self.log_path()).expect("log file");
            c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            let child = c
                .spawn()
                .unwrap_or_else(|e| panic!("start `{}`: {e}", self.cmd.describe()));
            self.child = Some(child);
            self.addr = SocketAddr::from(([127, 0, 0, 1], port));
            if self.wait_ready() {
                return;
            }
            self.stop();
        }
        panic!("`{}` did not start: {}", self.cmd.describe(), self.log());
    }

    /// Polls until the server accepts a connection (true) or the process
    /// exits or [`START_WITHIN`] passes (false).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if accepts(self.addr) {
                // Another test's server may have taken the same free port
                // first (ours then exits): only our own listener counts.
                return self
                    .pid()
                    .is_some_and(|pid| listens_on(pid, self.addr.port()));
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the server by PID.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("running");
        let pid = i32::try_from(pid).expect("pid fits");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(r, 0, "kill({pid}, {signal})");
    }

    /// Stops the server (SIGTERM, then SIGKILL after [`STOP_WITHIN`]) and
    /// starts it again on the same `-b` dir and a new port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the server and starts `cmd` in its place on the same `-b`
    /// dir and a new port.
    pub fn restart_as(&mut self, cmd: &ServerCmd) {
        self.stop();
        self.cmd = cmd.clone();
        self.launch();
    }

    /// Kills the server by its PID with SIGKILL (no chance to flush or
    /// clean up) and starts it again on the same `-b` dir and a new port.
    pub fn kill9_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    /// Stops the server by its PID: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's stderr so far (all starts).
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let p = self.scratch.path().join(format!("server-{n}.log"));
                std::fs::read_to_string(p).unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A socket bound to a port and then connected to that same port: what a
/// readiness probe meets by chance while nothing listens there.
fn self_connected_socket() -> TcpStream {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a descriptor this function owns; on
    // success it is handed to a TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let stream = TcpStream::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p: *mut libc::sockaddr = (&raw mut sa).cast();
        assert_eq!(libc::bind(fd, p, len), 0, "bind 127.0.0.1:0");
        let mut got = len;
        assert_eq!(libc::getsockname(fd, p, &mut got), 0, "getsockname");
        assert_eq!(libc::connect(fd, p, len), 0, "connect to itself");
        stream
    }
}

#[test]
fn a_probe_that_met_itself_is_not_a_listening_server() {
    let itself = self_connected_socket();
    assert!(is_self_connected(&itself));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let real = TcpStream::connect(addr).expect("connect");
    assert!(!is_self_connected(&real));
    assert!(accepts(addr));
    drop(listener);
    assert!(!accepts(addr), "nothing listens there any more");
}
