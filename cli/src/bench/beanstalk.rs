//! The beanstalkd workloads (issue 24): the same client code against
//! Debian's `beanstalkd -b DIR -f0` (its durable mode: an fsync per
//! command) and against `beaver beanstalkd -b DIR`, each on 127.0.0.1, a
//! free port and a temp data dir of its own, stopped by its PID.
//!
//! - Wb1: 20,000 puts from 1 connection, each waiting for `INSERTED`.
//! - Wb2: 100,000 puts over 32 connections.
//! - Wb3: 100,000 jobs put first (untimed), then reserved
//!   (`reserve-with-timeout 1`) and deleted by 8 connections until all
//!   are gone.
//! - Wbmem: 1,000,000 puts, 8 connections each sending 100 at a time:
//!   the server's peak RSS and its data dir's size.
//!
//! Payloads are 100 bytes. Without `/usr/bin/beanstalkd` each says so and
//! is skipped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bs_conn::BsConn;
use super::load::{Client, Load, Step, Text, drive_clients};
use super::probe::dir_usage;
use super::report::Row;
use super::server::{cpu_secs, die_with_parent, free_port, memory, stop_child};
use super::workloads::{CONCURRENT_CLIENTS, Ctx, bench_cpu_secs, cores, seed};

/// The reference server: Debian's beanstalkd 1.12.
pub const REFERENCE: &str = "/usr/bin/beanstalkd";
/// A job body's bytes.
const PAYLOAD_BYTES: usize = 100;
/// Distinct bodies, cycled through.
const BODIES: usize = 256;
/// Puts one connection of Wbmem (and Wb3's fill) sends at a time.
const PIPELINE: usize = 100;
/// A put's priority and TTR (seconds).
const PRI: u32 = 1_024;
const TTR: u32 = 60;
/// The longest one workload's commands may take.
const LOAD_WITHIN: Duration = Duration::from_secs(900);
/// How long a server may take to answer its first command.
const START_WITHIN: Duration = Duration::from_secs(60);
/// `TIMED_OUT` answers one Wb3 connection may retry while jobs are left.
const TIMEOUTS_MAX: u32 = 5;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `beanstalkd -b DIR -f0`.
    Reference,
    /// `beaver beanstalkd -b DIR`.
    Beaver,
}

impl Kind {
    /// Its name in rows and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reference => "beanstalkd",
            Kind::Beaver => "beaver",
        }
    }
}

/// A running beanstalkd-protocol server.
pub struct BsServer {
    child: Option<Child>,
    kind: Kind,
    /// Its pid.
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data dir (`-b`).
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl BsServer {
    /// Starts a `kind` server on `data_dir` and waits until it answers.
    pub fn start(kind: Kind, data_dir: &Path) -> Result<BsServer, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let addr = free_port()?;
        let mut cmd = match kind {
            Kind::Reference => {
                let mut c = Command::new(REFERENCE);
                c.arg("-f0");
                c
            }
            Kind::Beaver => {
                let exe = std::env::current_exe()
                    .map_err(|e| format!("cannot find this executable: {e}"))?;
                let mut c = Command::new(exe);
                for (k, _) in std::env::vars_os() {
                    if k.to_string_lossy().starts_with("BEAVER_") {
                        c.env_remove(k);
                    }
                }
                c.env("RUST_LOG", "warn").arg("beanstalkd");
                c
            }
        };
        let log = data_dir.with_extension("log");
        let stderr = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        cmd.args(["-l", "127.0.0.1", "-p"])
            .arg(addr.port().to_string())
            .arg("-b")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let mut s = BsServer {
            pid: child.id(),
            child: Some(child),
            kind,
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        s.wait_serving()?;
        Ok(s)
    }

    /// Polls (every 20 ms, at most [`START_WITHIN`]) until `use default`
    /// is answered.
    fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_WITHIN;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        loop {
            let mut c = BsConn::new(self.addr, self.kind.name());
            let answered = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), async {
                    c.open().await?;
                    c.hello().await
                })
                .await
            });
            if let Ok(Ok(())) = answered {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                return Err(self.died(&format!("exited before serving ({st})")));
            }
            if Instant::now() > deadline {
                return Err(self.died(&format!("did not serve within {START_WITHIN:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn died(&self, what: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "{} (pid {}) {what}; its log {}:\n{}",
            self.kind.name(),
            self.pid,
            self.log.display(),
            log.lines().take(20).collect::<Vec<_>>().join("\n")
        )
    }

    /// SIGTERM by its pid, a bounded wait, SIGKILL if it does not exit.
    pub fn stop(&mut self) -> Result<(), String> {
        match self.child.take() {
            // beanstalkd keeps SIGTERM's default action: dying of it is its exit.
            Some(c) => stop_child(c, self.kind == Kind::Reference),
            None => Ok(()),
        }
    }
}

impl Drop for BsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The reference's version line, or `None` after saying why `workload`
/// is skipped.
fn reference(workload: &str) -> Option<String> {
    let out = Command::new(REFERENCE)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success());
    match out {
        Some(o) => Some(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        None => {
            println!(
                "{workload:<9} SKIPPED: {REFERENCE} (Debian's beanstalkd 1.12) is not installed \
                 (apt-get install beanstalkd); nothing to compare with"
            );
            None
        }
    }
}

/// 100-byte bodies, [`BODIES`] of them.
fn bodies() -> Arc<Vec<Vec<u8>>> {
    let mut t = Text::new(seed());
    Arc::new(
        (0..BODIES)
            .map(|_| t.word(PAYLOAD_BYTES).into_bytes())
            .collect(),
    )
}

/// A connection putting `batch` jobs per request (each waiting for all
/// of its `INSERTED`s).
struct Putter {
    conn: BsConn,
    batch: usize,
    bodies: Arc<Vec<Vec<u8>>>,
}

impl Client for Putter {
    async fn open(&mut self) -> Result<(), String> {
        self.conn.open().await
    }

    async fn call(&mut self, i: u64) -> Result<Step, String> {
        let body = &self.bodies[(i % self.bodies.len() as u64) as usize];
        self.conn.puts(self.batch, PRI, TTR, body).await?;
        Ok(Step::Done)
    }
}

/// A connection reserving a job and deleting it per request.
struct Deleter {
    conn: BsConn,
    timeouts: u32,
}

impl Client for Deleter {
    async fn open(&mut self) -> Result<(), String> {
        self.conn.open().await
    }

    async fn call(&mut self, _: u64) -> Result<Step, String> {
        if self.conn.reserve_delete(1).await? {
            return Ok(Step::Done);
        }
        self.timeouts += 1;
        if self.timeouts > TIMEOUTS_MAX {
            return Err(format!(
                "`reserve-with-timeout 1` timed out {TIMEOUTS_MAX} times with jobs left"
            ));
        }
        Ok(Step::Retry)
    }
}

/// `clients` connections putting `requests` x `batch` jobs.
fn put_load(
    ctx: &Ctx,
    s: &BsServer,
    label: &str,
    clients: usize,
    requests: u64,
    batch: usize,
) -> Result<Load, String> {
    let bodies = bodies();
    ctx.rt
        .block_on(drive_clients(clients, requests, LOAD_WITHIN, || Putter {
            conn: BsConn::new(s.addr, label),
            batch,
            bodies: bodies.clone(),
        }))
}

/// Times `load` against `s` and makes its row (data: the sum of the data
/// dir's file sizes).
fn measure(
    s: &BsServer,
    name: &str,
    what: String,
    jobs_per_request: u64,
    load: impl FnOnce() -> Result<Load, String>,
) -> Result<Row, String> {
    eprintln!("== {name}: {what} (server pid {})", s.pid);
    let cpu_before = (cpu_secs(&format!("/proc/{}/stat", s.pid)), bench_cpu_secs());
    let load = load()?;
    let server_now = cpu_secs(&format!("/proc/{}/stat", s.pid));
    Ok(Row {
        name: name.into(),
        what,
        unit: "jobs",
        count: load.requests * jobs_per_request,
        secs: load.secs,
        latency_ms: load.latency_ms(),
        fsyncs: None,
        cores: cores(server_now, cpu_before, load.secs),
        rss_peak: memory(s.pid).map(|m| m.0),
        data_bytes: Some(dir_usage(&s.data_dir).1),
        note: String::new(),
    })
}

/// Runs `one` against the reference, then against beaver, each on a fresh
/// server; nothing (after saying so) without the reference.
fn both(
    ctx: &mut Ctx,
    workload: &str,
    one: impl Fn(&Ctx, &BsServer, &str) -> Result<Row, String>,
) -> Result<Vec<Row>, String> {
    let Some(version) = reference(workload) else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for kind in [Kind::Reference, Kind::Beaver] {
        ctx.dirs += 1;
        let dir = ctx
            .root
            .join(format!("{}-{}-{}", ctx.dirs, workload, kind.name()));
        let mut s = BsServer::start(kind, &dir)?;
        let name = format!("{workload} {}", kind.name());
        let mut row = one(ctx, &s, &name).map_err(|e| format!("{workload}: {e}"))?;
        if kind == Kind::Reference {
            row.note = version.clone();
        }
        s.stop().map_err(|e| format!("{name}: {e}"))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Wb1: 20,000 puts from 1 connection, each waiting for `INSERTED`.
pub fn wb1(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = ctx.n(20_000);
    both(ctx, "Wb1", |ctx, s, name| {
        measure(s, name, "puts, 1 connection".into(), 1, || {
            put_load(ctx, s, name, 1, n, 1)
        })
    })
}

/// Wb2: 100,000 puts over 32 connections.
pub fn wb2(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let n = ctx.n(100_000);
    both(ctx, "Wb2", |ctx, s, name| {
        let what = format!("puts, {CONCURRENT_CLIENTS} connections");
        measure(s, name, what, 1, || {
            put_load(ctx, s, name, CONCURRENT_CLIENTS, n, 1)
        })
    })
}

/// Wb3: 100,000 jobs put (untimed), then reserved and deleted by 8
/// connections until all are gone (checked by a last reserve that times
/// out).
pub fn wb3(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let jobs = (ctx.n(100_000) / PIPELINE as u64).max(1) * PIPELINE as u64;
    both(ctx, "Wb3", |ctx, s, name| {
        put_load(ctx, s, name, 8, jobs / PIPELINE as u64, PIPELINE)?;
        let what = "reserve-with-timeout 1 + delete, 8 connections".to_string();
        let row = measure(s, name, what, 1, || {
            ctx.rt
                .block_on(drive_clients(8, jobs, LOAD_WITHIN, || Deleter {
                    conn: BsConn::new(s.addr, name),
                    timeouts: 0,
                }))
        })?;
        let mut last = BsConn::new(s.addr, name);
        let left = ctx.rt.block_on(async {
            last.open().await?;
            last.reserve_delete(0).await
        })?;
        if left {
            return Err(format!("{name}: a job was left after {jobs} deletes"));
        }
        Ok(row)
    })
}

/// Wbmem: 1,000,000 puts, 8 connections each sending 100 at a time; the
/// row's RSS and data dir are the figures.
pub fn wbmem(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let requests = (ctx.n(1_000_000) / PIPELINE as u64).max(1);
    both(ctx, "Wbmem", |ctx, s, name| {
        let what = format!(
            "puts, 8 connections, {PIPELINE} in flight each; RSS: peak; data: sum of file sizes"
        );
        measure(s, name, what, PIPELINE as u64, || {
            put_load(ctx, s, name, 8, requests, PIPELINE)
        })
    })
}
