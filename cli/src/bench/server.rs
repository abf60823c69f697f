//! The server under test: a real `beaver run` child process (this same
//! executable) on loopback ports the benchmark picks, stopped by its PID.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::{ClientError, Server};
use crate::schema::StatusDoc;

/// How long a server may take to print its addresses (recovery included).
const START_WITHIN: Duration = Duration::from_secs(120);
/// How long a graceful stop may take before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Loopback ports for one server, chosen before it starts so a restart
/// can be timed from the spawn (the server prints its address only after
/// recovery).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The API.
    pub api: SocketAddr,
    /// `/metrics`.
    pub metrics: SocketAddr,
}

impl Ports {
    /// Two free loopback ports (the OS picks them; they are released at
    /// once for the server to bind).
    pub fn free() -> Result<Ports, String> {
        let pick = free_port;
        let api = pick()?;
        let mut metrics = pick()?;
        // Both listeners were dropped: the OS could hand out the same port twice.
        let mut tries = 0;
        while metrics == api && tries < 100 {
            metrics = pick()?;
            tries += 1;
        }
        Ok(Ports { api, metrics })
    }
}

/// A free loopback port (the OS picks it; it is released at once for a
/// server to bind).
pub fn free_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map_err(|e| format!("no free port: {e}"))
}

/// A running `beaver run`.
pub struct ServerProc {
    child: Option<Child>,
    /// Its pid.
    pub pid: u32,
    /// Its addresses.
    pub ports: Ports,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    lines: mpsc::Receiver<String>,
    /// When it was spawned.
    pub spawned: Instant,
}

impl ServerProc {
    /// Spawns `beaver run` with the `noop` handler and `workers` workers on
    /// `data_dir`, without waiting for it.
    pub fn spawn(data_dir: &Path, workers: u32, ports: Ports) -> Result<ServerProc, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable to start the server: {e}"))?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let log = data_dir.with_extension("log");
        let stderr = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(exe);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BEAVER_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "warn")
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--handler", "noop", "--workers"])
            .arg(workers.to_string())
            .arg("--listen")
            .arg(ports.api.to_string())
            .arg("--metrics-listen")
            .arg(ports.metrics.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `beaver run`: {e}"))?;
        let pid = child.id();
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    // Keep draining after the receiver is gone, so the
                    // server never blocks on a full pipe.
                    let _ = tx.send(line);
                }
            });
        }
        Ok(ServerProc {
            child: Some(child),
            pid,
            ports,
            data_dir: data_dir.to_path_buf(),
            log,
            lines,
            spawned,
        })
    }

    /// Spawns and waits until it serves.
    pub fn start(data_dir: &Path, workers: u32) -> Result<ServerProc, String> {
        let mut p = ServerProc::spawn(data_dir, workers, Ports::free()?)?;
        p.wait_serving()?;
        Ok(p)
    }

    /// Waits (at most [`START_WITHIN`]) until the server prints its API line.
    pub fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("API ") => return Ok(()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.died("exited before serving"));
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(self.died(&format!("exited before serving ({st})")));
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(self.died(&format!("did not serve within {START_WITHIN:?}")));
            }
        }
    }

    fn died(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "the server (pid {}) {what}; its log {}:\n{}",
            self.pid,
            self.log.display(),
            tail.join("\n")
        )
    }

    /// A blocking client for one-off requests (status, metrics, admin).
    pub fn client(&self) -> Result<Server, String> {
        Server::new(&format!("http://{}", self.ports.api), None)
            .map(|s| s.with_timeout(Duration::from_secs(120)))
            .map_err(|e| e.to_string())
    }

    /// The live status.
    pub fn status(&self) -> Result<StatusDoc, String> {
        status_at(self.ports.api)
    }

    /// The status, or `None` while nothing answers yet (used to time a
    /// restart: the listener is bound before recovery, so a request that
    /// connects waits for the first moment the server serves).
    pub fn try_status(&self) -> Result<Option<StatusDoc>, String> {
        match self.client()?.get("/v1/status") {
            Ok(r) if r.status == 200 => serde_json::from_slice(&r.body)
                .map(Some)
                .map_err(|e| format!("GET /v1/status: {e}")),
            Ok(r) => Err(format!("GET /v1/status: {} {}", r.status, r.text())),
            Err(ClientError::Unreachable(_)) => Ok(None),
            Err(e) => Err(format!("GET /v1/status: {e}")),
        }
    }

    /// Fsyncs, the records they made durable and the time they took since
    /// the server started, from `/metrics`.
    pub fn fsyncs(&self) -> Result<Fsyncs, String> {
        let s = Server::new(&format!("http://{}", self.ports.metrics), None)
            .map_err(|e| e.to_string())?
            .with_timeout(Duration::from_secs(60));
        let r = s
            .get("/metrics")
            .map_err(|e| format!("GET /metrics: {e}"))?;
        if r.status != 200 {
            return Err(format!("GET /metrics: {} {}", r.status, r.text()));
        }
        let text = r.text();
        let value = |name: &str| -> Result<f64, String> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| format!("/metrics has no {name}"))
        };
        Ok(Fsyncs {
            fsyncs: value("beaver_wal_fsync_duration_seconds_count")? as u64,
            records: value("beaver_wal_group_commit_records_sum")? as u64,
            seconds: value("beaver_wal_fsync_duration_seconds_sum")?,
        })
    }

    /// CPU time the server has used (user + system, all threads), in
    /// seconds, from `/proc/<pid>/stat`.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(&format!("/proc/{}/stat", self.pid))
    }

    /// Peak and current resident memory (`VmHWM`, `VmRSS`) in bytes.
    pub fn memory(&self) -> Option<(u64, u64)> {
        memory(self.pid)
    }

    /// SIGKILL (by pid, through the child handle), then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait (bounded) for a clean exit, SIGKILL if it does not come.
    pub fn stop(&mut self) -> Result<(), String> {
        match self.child.take() {
            Some(c) => stop_child(c, false),
            None => Ok(()),
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes a server the benchmark spawns die with it: if the benchmark dies
/// (killed, or a panic on this thread), the child gets SIGKILL when the
/// thread that spawned it ends (the benchmark spawns from its main
/// thread, which lives for the whole run).
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only prctl(2), which is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// SIGTERM to `c` by its pid, a bounded wait for its exit, SIGKILL if it
/// does not come. A clean exit is status 0, or death by that SIGTERM
/// when `sigterm_kills` (a server that keeps the signal's default action).
pub fn stop_child(mut c: Child, sigterm_kills: bool) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(c.id()).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_WITHIN;
    loop {
        match c.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) if sigterm_kills && st.signal() == Some(libc::SIGTERM) => return Ok(()),
            Ok(Some(st)) => return Err(format!("the server (pid {pid}) exited with {st}")),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!(
                    "the server (pid {pid}) did not stop within {STOP_WITHIN:?} of SIGTERM; killed"
                ));
            }
        }
    }
}

/// Peak and current resident memory (`VmHWM`, `VmRSS`) of process `pid`
/// in bytes, from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some((kib("VmHWM:")?, kib("VmRSS:")?))
}

/// User + system CPU seconds from a `/proc/.../stat` file.
pub fn cpu_secs(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// The live status of the server at `api`.
pub fn status_at(api: SocketAddr) -> Result<StatusDoc, String> {
    let r = Server::new(&format!("http://{api}"), None)
        .map_err(|e| e.to_string())?
        .with_timeout(Duration::from_secs(120))
        .get("/v1/status")
        .map_err(|e| format!("GET /v1/status: {e}"))?;
    if r.status != 200 {
        return Err(format!("GET /v1/status: {} {}", r.status, r.text()));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("GET /v1/status: {e}"))
}

/// Group-commit counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fsyncs {
    /// fdatasyncs of the WAL.
    pub fsyncs: u64,
    /// Records they made durable.
    pub records: u64,
    /// Seconds they took, in all.
    pub seconds: f64,
}

impl std::ops::Sub for Fsyncs {
    type Output = Fsyncs;
    fn sub(self, o: Fsyncs) -> Fsyncs {
        Fsyncs {
            fsyncs: self.fsyncs.saturating_sub(o.fsyncs),
            records: self.records.saturating_sub(o.records),
            seconds: (self.seconds - o.seconds).max(0.0),
        }
    }
}
