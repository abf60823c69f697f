//! Starting and stopping the real `beaver` binary on a temp dir and free
//! loopback ports. Every process started here is stopped by its PID.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use beaver_cli::client::{Response, Server};
use beaver_cli::schema::StatusDoc;

/// The binary under test (built by cargo for this package's tests).
pub const BIN: &str = env!("CARGO_BIN_EXE_beaver");

/// A config file for fast tests: small segments, frequent snapshots,
/// quick retries.
pub const FAST_CONFIG: &str = r#"
[engine]
segment_bytes = 1048576
snapshot_wal_bytes = 2097152
shutdown_grace_ms = 5000
[engine.queue.retry]
base_ms = 20
max_ms = 200
"#;

/// A running server.
pub struct Proc {
    child: Option<Child>,
    /// Its pid.
    pub pid: u32,
    /// The API URL.
    pub api: String,
    /// The metrics URL (`http://addr/metrics`).
    pub metrics: String,
    /// The log file (stderr).
    pub log: PathBuf,
    /// Every line it printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A fresh temp dir with `data/` for the server and a config file.
pub struct Scratch {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(config: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("beaver.toml"), config).expect("config");
        Scratch { dir }
    }
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("beaver.toml")
    }
}

/// A command for the binary with the test's environment cleaned of
/// `BEAVER_*` variables a developer may have set.
pub fn beaver() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BEAVER_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

impl Proc {
    /// Starts `beaver run` on the scratch dir with `args` added; waits
    /// (at most 60 s) until it prints its addresses.
    pub fn start(s: &Scratch, args: &[&str]) -> Proc {
        Proc::start_with_env(s, args, &[])
    }

    /// As [`Proc::start`], with these environment variables set.
    pub fn start_with_env(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::start_listening(s, "127.0.0.1:0", args, env)
    }

    /// As [`Proc::start_with_env`], the API on `listen` (a restart on the
    /// port a client already knows).
    pub fn start_listening(s: &Scratch, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn(s, listen, args, env, None)
    }

    /// As [`Proc::start`], under the open-file limits `limit` (soft and
    /// hard), set in the child before it runs beaver.
    pub fn start_with_open_files(s: &Scratch, args: &[&str], limit: libc::rlimit) -> Proc {
        Proc::spawn(s, "127.0.0.1:0", args, &[], Some(limit))
    }

    fn spawn(
        s: &Scratch,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Option<libc::rlimit>,
    ) -> Proc {
        let n = std::fs::read_dir(s.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = s.dir.path().join(format!("server-{n}.log"));
        let mut cmd = beaver();
        cmd.arg("run")
            .arg("--data-dir")
            .arg(s.data())
            .arg("--config")
            .arg(s.config())
            .args(["--listen", listen, "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(lim) = limit {
            crate::open_files::limit_open_files(&mut cmd, lim);
        }
        let mut child = cmd.spawn().expect("spawn beaver");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut kept) = keep.lock() {
                    kept.push(line.clone());
                }
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut api, mut metrics) = (None, None);
        while api.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("API      ") {
                        api = Some(u.trim().to_string());
                    } else if let Some(u) = line.strip_prefix("metrics  ") {
                        metrics = Some(u.trim().to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "beaver did not start within 60 s; its log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        Proc {
            child: Some(child),
            pid,
            api: api.expect("api"),
            metrics: metrics.expect("metrics"),
            log,
            stdout: printed,
        }
    }

    /// The lines it printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (at most `within`) until its log holds `needle`; the log.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log after {within:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client for the API.
    pub fn server(&self) -> Server {
        Server::new(&self.api, None)
            .expect("url")
            .with_timeout(Duration::from_secs(30))
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: i32) {
        let c = self.child.as_ref().expect("running");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let r = unsafe { libc::kill(c.id() as i32, signal) };
        assert_eq!(r, 0, "signal {signal} failed");
    }

    /// SIGTERM, then wait (at most `within`) for the exit status.
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.exit_status(within)
    }

    /// Waits (at most `within`) for the exit status.
    pub fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        wait_within(&mut c, within, "beaver to exit")
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The live status document.
    pub fn status(&self) -> StatusDoc {
        let r = self.server().get("/v1/status").expect("status");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).expect("status json")
    }

    /// Waits (at most `within`) until no job is pending or in flight.
    pub fn wait_idle(&self, within: Duration) -> StatusDoc {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status();
            if s.jobs.pending == 0 && s.jobs.in_flight == 0 {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "jobs still pending after {within:?}: {:?}",
                s.jobs
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// POSTs JSON to the server.
pub fn post(p: &Proc, path: &str, body: &str) -> Response {
    p.server()
        .post_json(path, body.as_bytes())
        .expect("request")
}

/// Runs a client command to completion (killed after 60 s) and returns
/// (exit code, stdout, stderr).
pub fn run_cmd(cmd: &mut Command) -> (i32, String, String) {
    run_cmd_within(cmd, Duration::from_secs(60))
}

/// Runs a command to completion, killed by PID after `within` (its own
/// children die with it), and returns (exit code, stdout, stderr).
pub fn run_cmd_within(cmd: &mut Command, within: Duration) -> (i32, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run beaver");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_within(&mut child, within, &format!("{cmd:?}"));
    (
        status.code().unwrap_or(-1),
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

/// The error document's (kind, index, field).
pub fn error_of(r: &Response) -> (String, Option<usize>, Option<String>) {
    let d: beaver_cli::schema::ErrorDoc = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not an error doc ({e}): {}", r.text()));
    (d.error.kind, d.error.index, d.error.field)
}

/// Waits for `child` to exit, at most `within`; past it, kills it by PID,
/// reaps it and fails the test naming `what`.
pub fn wait_within(child: &mut std::process::Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (at most `within`) until `done` holds; whether it did.
pub fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Whether process `pid` is alive (a zombie is not: it runs no more).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    !matches!(
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().chars().next()),
        Some(Some('Z' | 'X'))
    )
}

/// Writes an executable shell script.
pub fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
