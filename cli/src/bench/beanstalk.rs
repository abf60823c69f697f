//! The beanstalkd workloads (issue 24): the same client code against
//! Debian's `beanstalkd -b DIR -f0` (its durable mode: an fsync per
//! command) and against `beaver beanstalkd -b DIR`, each on 127.0.0.1, a
//! free port and a temp data dir of its own, stopped by its PID. Wb1-Wb3
//! run both servers side by side and time them in turns ([`ROUNDS`]);
//! Wbmem runs one after the other.
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
use super::workloads::{CONCURRENT_CLIENTS, Ctx, bench_cpu_secs, seed};

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
    let mut tally = Tally::default();
    tally.time(s, load)?;
    Ok(tally.row(s, name, what, jobs_per_request))
}

/// One server's figures, summed over the rounds it was timed in.
#[derive(Debug)]
struct Tally {
    requests: u64,
    secs: f64,
    latency_ns: Vec<u64>,
    /// CPU seconds (server, benchmark) over the timed rounds; `None` once
    /// a reading failed.
    cpu: Option<(f64, f64)>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            requests: 0,
            secs: 0.0,
            latency_ns: Vec::new(),
            cpu: Some((0.0, 0.0)),
        }
    }
}

impl Tally {
    /// Runs `load` against `s`, adding its requests, time, latencies and
    /// the CPU both processes used meanwhile.
    fn time(
        &mut self,
        s: &BsServer,
        load: impl FnOnce() -> Result<Load, String>,
    ) -> Result<(), String> {
        let stat = format!("/proc/{}/stat", s.pid);
        let before = (cpu_secs(&stat), bench_cpu_secs());
        let load = load()?;
        let used = (cpu_secs(&stat), bench_cpu_secs());
        self.cpu = match (self.cpu, before, used) {
            (Some((s, b)), (Some(s0), Some(b0)), (Some(s1), Some(b1))) => {
                Some((s + s1 - s0, b + b1 - b0))
            }
            _ => None,
        };
        self.requests += load.requests;
        self.secs += load.secs;
        self.latency_ns.extend_from_slice(&load.latency_ns);
        Ok(())
    }

    /// The row of server `s` (data: the sum of its data dir's file sizes).
    fn row(mut self, s: &BsServer, name: &str, what: String, jobs_per_request: u64) -> Row {
        self.latency_ns.sort_unstable();
        let secs = self.secs.max(1e-9);
        let load = Load {
            requests: self.requests,
            secs: self.secs,
            latency_ns: self.latency_ns,
            busy: 0,
        };
        Row {
            name: name.into(),
            what,
            unit: "jobs",
            count: load.requests * jobs_per_request,
            secs: load.secs,
            latency_ms: load.latency_ms(),
            fsyncs: None,
            cores: self
                .cpu
                .map(|(server, bench)| (server / secs, bench / secs)),
            rss_peak: memory(s.pid).map(|m| m.0),
            data_bytes: Some(dir_usage(&s.data_dir).1),
            note: String::new(),
        }
    }
}

/// Starts a `kind` server for `workload` on a fresh data dir under the
/// run's root.
fn start(ctx: &mut Ctx, workload: &str, kind: Kind) -> Result<BsServer, String> {
    ctx.dirs += 1;
    let dir = ctx
        .root
        .join(format!("{}-{}-{}", ctx.dirs, workload, kind.name()));
    BsServer::start(kind, &dir)
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
        let mut s = start(ctx, workload, kind)?;
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

/// Rounds a timed load of Wb1, Wb2 and Wb3 is cut into. Both servers run
/// side by side and take the rounds in turn, the reference first in
/// rounds 1 and 4, beaver first in rounds 2 and 3: a slow spell of a
/// shared machine (its disk or its CPUs) then falls on both rather than
/// on whichever ran second, and their ratio reads the servers, not the
/// minute. One server's rounds add up to the workload's whole count.
pub const ROUNDS: u64 = 4;

/// Which server goes first in `round` (0-based): ABBA.
fn first_in(round: u64) -> Kind {
    if matches!(round % 4, 1 | 2) {
        Kind::Beaver
    } else {
        Kind::Reference
    }
}

/// The requests of `round` (0-based) when `total` are cut into [`ROUNDS`]:
/// as even as can be, the first rounds taking what does not divide.
fn round_share(total: u64, round: u64) -> u64 {
    total / ROUNDS + u64::from(round < total % ROUNDS)
}

/// One Wb workload run side by side (see [`ROUNDS`]).
struct SideBySide<'a> {
    workload: &'a str,
    what: String,
    /// Requests in all; a request is `jobs_per_request` jobs.
    requests: u64,
    jobs_per_request: u64,
}

impl SideBySide<'_> {
    /// Starts both servers, gives each `prepare` (untimed), times `round`
    /// for each round's share of the requests against each in turn, then
    /// gives each `check` (untimed) and stops both; a row per server,
    /// the reference's first. Nothing (after saying so) without the
    /// reference.
    fn run(
        &self,
        ctx: &mut Ctx,
        prepare: impl Fn(&Ctx, &BsServer, &str) -> Result<(), String>,
        round: impl Fn(&Ctx, &BsServer, &str, u64) -> Result<Load, String>,
        check: impl Fn(&Ctx, &BsServer, &str) -> Result<(), String>,
    ) -> Result<Vec<Row>, String> {
        let Some(version) = reference(self.workload) else {
            return Ok(Vec::new());
        };
        let kinds = [Kind::Reference, Kind::Beaver];
        let mut servers = Vec::with_capacity(kinds.len());
        for kind in kinds {
            servers.push(start(ctx, self.workload, kind)?);
        }
        let names = kinds.map(|k| format!("{} {}", self.workload, k.name()));
        let fail = |i: usize, e: String| format!("{}: {e}", names[i]);
        for (i, s) in servers.iter().enumerate() {
            prepare(ctx, s, &names[i]).map_err(|e| fail(i, e))?;
        }
        eprintln!(
            "== {}: {}, {ROUNDS} rounds each in turn ({} pid {}, {} pid {})",
            self.workload,
            self.what,
            kinds[0].name(),
            servers[0].pid,
            kinds[1].name(),
            servers[1].pid
        );
        let mut tallies = [Tally::default(), Tally::default()];
        for r in 0..ROUNDS {
            let share = round_share(self.requests, r);
            if share == 0 {
                continue;
            }
            let order = if first_in(r) == Kind::Reference {
                [0, 1]
            } else {
                [1, 0]
            };
            for i in order {
                let s = &servers[i];
                tallies[i]
                    .time(s, || round(ctx, s, &names[i], share))
                    .map_err(|e| fail(i, e))?;
            }
        }
        let mut rows = Vec::with_capacity(kinds.len());
        for (i, (mut s, tally)) in servers.into_iter().zip(tallies).enumerate() {
            check(ctx, &s, &names[i]).map_err(|e| fail(i, e))?;
            let mut row = tally.row(&s, &names[i], self.what.clone(), self.jobs_per_request);
            if kinds[i] == Kind::Reference {
                row.note = version.clone();
            }
            s.stop().map_err(|e| fail(i, e))?;
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Nothing to prepare or check.
fn nothing(_: &Ctx, _: &BsServer, _: &str) -> Result<(), String> {
    Ok(())
}

/// Wb1: 20,000 puts from 1 connection, each waiting for `INSERTED`.
pub fn wb1(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let w = SideBySide {
        workload: "Wb1",
        what: "puts, 1 connection".into(),
        requests: ctx.n(20_000),
        jobs_per_request: 1,
    };
    w.run(
        ctx,
        nothing,
        |ctx, s, name, n| put_load(ctx, s, name, 1, n, 1),
        nothing,
    )
}

/// Wb2: 100,000 puts over 32 connections.
pub fn wb2(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let w = SideBySide {
        workload: "Wb2",
        what: format!("puts, {CONCURRENT_CLIENTS} connections"),
        requests: ctx.n(100_000),
        jobs_per_request: 1,
    };
    let round =
        |ctx: &Ctx, s: &BsServer, name: &str, n| put_load(ctx, s, name, CONCURRENT_CLIENTS, n, 1);
    w.run(ctx, nothing, round, nothing)
}

/// Wb3: 100,000 jobs put (untimed), then reserved and deleted by 8
/// connections until all are gone (checked by a last reserve that times
/// out).
pub fn wb3(ctx: &mut Ctx) -> Result<Vec<Row>, String> {
    let jobs = (ctx.n(100_000) / PIPELINE as u64).max(1) * PIPELINE as u64;
    let w = SideBySide {
        workload: "Wb3",
        what: "reserve-with-timeout 1 + delete, 8 connections".into(),
        requests: jobs,
        jobs_per_request: 1,
    };
    let fill = |ctx: &Ctx, s: &BsServer, name: &str| {
        put_load(ctx, s, name, 8, jobs / PIPELINE as u64, PIPELINE).map(drop)
    };
    let drain = |ctx: &Ctx, s: &BsServer, name: &str, n| {
        ctx.rt
            .block_on(drive_clients(8, n, LOAD_WITHIN, || Deleter {
                conn: BsConn::new(s.addr, name),
                timeouts: 0,
            }))
    };
    let all_gone = |ctx: &Ctx, s: &BsServer, name: &str| {
        let mut last = BsConn::new(s.addr, name);
        let left = ctx.rt.block_on(async {
            last.open().await?;
            last.reserve_delete(0).await
        })?;
        if left {
            return Err(format!("a job was left after {jobs} deletes"));
        }
        Ok(())
    };
    w.run(ctx, fill, drain, all_gone)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rounds_share_out_every_request_as_evenly_as_can_be() {
        for total in [0, 1, 3, 4, 5, 2_000, 20_001, 100_000] {
            let shares: Vec<u64> = (0..ROUNDS).map(|r| round_share(total, r)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total}: {shares:?}");
            let (lo, hi) = (shares.iter().min(), shares.iter().max());
            assert!(
                hi.zip(lo).is_some_and(|(h, l)| h - l <= 1),
                "{total}: {shares:?}"
            );
        }
    }

    #[test]
    fn each_server_goes_first_in_half_the_rounds_abba() {
        let order: Vec<Kind> = (0..ROUNDS).map(first_in).collect();
        use Kind::{Beaver as B, Reference as R};
        assert_eq!(order, vec![R, B, B, R]);
    }
}
