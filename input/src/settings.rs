//! `beaver run`'s configuration: flags > `BEAVER_*` environment > TOML
//! file > defaults.
//!
//! Flags and environment variables are merged by clap (a flag wins over its
//! variable); what neither gives comes from the `--config` file, then from
//! the defaults. Everything is checked before anything starts, and every
//! error says which setting is wrong and how to fix it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use beaver_runtime::executor::DEFAULT_KILL_GRACE_MS;
use beaver_runtime::{EngineConfig, ExecutorConfig};
use serde::Deserialize;

/// The handlers `--handler` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handler {
    /// Simulated work with a duration and a failure rate (`--demo-ms`, `--demo-failure-rate`).
    Demo,
    /// Succeeds at once (benchmarks).
    Noop,
}

/// The flags of `beaver run` (each also read from its `BEAVER_*` variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Where the WAL and snapshots live [default: ./beaver-data]
    #[arg(long, env = "BEAVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Jobs run at once; 0 accepts and keeps jobs but runs none (benchmarks, maintenance) [default: 8]
    #[arg(long, env = "BEAVER_WORKERS", value_name = "N")]
    pub workers: Option<u32>,
    /// Threads serving HTTP and the queue's core; the WAL, snapshots and recovery have their own [default: CPUs - 1, at least 1]
    #[arg(long, env = "BEAVER_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Run each job with `sh -c CMD` (payload on stdin; exit 0 = success; a simple command is exec'd)
    #[arg(
        long,
        env = "BEAVER_EXEC",
        value_name = "CMD",
        conflicts_with = "handler"
    )]
    pub exec: Option<String>,
    /// Time an --exec handler has between SIGTERM and SIGKILL when it is stopped, such as 3s [default: 3s, less than the lease slack]
    #[arg(long, env = "BEAVER_KILL_GRACE", value_name = "DURATION")]
    pub kill_grace: Option<String>,
    /// A built-in handler instead of --exec [default: demo]
    #[arg(long, env = "BEAVER_HANDLER", value_enum)]
    pub handler: Option<Handler>,
    /// Address of the HTTP API [default: 127.0.0.1:7070]
    #[arg(long, env = "BEAVER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the Prometheus endpoint, or `off` [default: 127.0.0.1:9090]
    #[arg(long, env = "BEAVER_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Bearer token every request must carry; required off loopback
    #[arg(long, env = "BEAVER_TOKEN", hide_env_values = true, value_name = "T")]
    pub token: Option<String>,
    /// A TOML file with any of these settings and the engine's limits
    #[arg(long, env = "BEAVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The demo handler's attempt duration range in ms, as MIN-MAX [default: 20-200]
    #[arg(long, env = "BEAVER_DEMO_MS", value_name = "MIN-MAX")]
    pub demo_ms: Option<String>,
    /// The demo handler's failure probability, 0.0 to 1.0 [default: 0.1]
    #[arg(long, env = "BEAVER_DEMO_FAILURE_RATE", value_name = "P")]
    pub demo_failure_rate: Option<f64>,
    /// A queue the built-in workers serve (repeat for more; comma-separated in the variable); jobs of other queues wait for external workers [default: every queue]
    #[arg(
        long = "pool-queue",
        env = "BEAVER_POOL_QUEUES",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub pool_queues: Vec<String>,
    /// Do not serve the web dashboard at /ui/ on the API's address
    #[arg(long, env = "BEAVER_NO_UI", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_ui: bool,
    /// Also serve beanstalkd's protocol on the same queue, at IP:PORT or unix:PATH, or `off`: tubes are queues, job ids are job numbers (loopback only without --beanstalk-allow-remote; leave tubes' queues out of the built-in pool, e.g. --workers 0 or --pool-queue, or it runs their jobs) [default: off]
    #[arg(long, env = "BEAVER_BEANSTALK_LISTEN", value_name = "ADDR")]
    pub beanstalk_listen: Option<String>,
    /// Allow --beanstalk-listen on an address other than loopback: the protocol has no authentication, so anyone who reaches the port can read and delete every job
    #[arg(long, env = "BEAVER_BEANSTALK_ALLOW_REMOTE", value_parser = clap::builder::BoolishValueParser::new())]
    pub beanstalk_allow_remote: bool,
    /// The attempts of a job put over --beanstalk-listen: `unlimited` (beanstalkd never gives a job up), or 1 to `[engine.queue.limits] attempts_max`; a job whose TTR runs out that often is buried, its last error shown over HTTP [default: unlimited]
    #[arg(long, env = "BEAVER_BEANSTALK_PUT_ATTEMPTS", value_name = "N")]
    pub beanstalk_put_attempts: Option<String>,
}

/// The `--config` file. Every key is optional; unknown keys are an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// As `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// As `--workers`.
    pub workers: Option<u32>,
    /// As `--threads`.
    pub threads: Option<usize>,
    /// As `--exec`.
    pub exec: Option<String>,
    /// As `--handler`.
    pub handler: Option<Handler>,
    /// As `--kill-grace`, in milliseconds.
    pub kill_grace_ms: Option<u64>,
    /// As `--listen`.
    pub listen: Option<String>,
    /// As `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// As `--token`.
    pub token: Option<String>,
    /// `false`: as `--no-ui`.
    pub ui: Option<bool>,
    /// As `--beanstalk-listen`.
    pub beanstalk_listen: Option<String>,
    /// As `--beanstalk-allow-remote`.
    pub beanstalk_allow_remote: Option<bool>,
    /// As `--beanstalk-put-attempts`: a number or `"unlimited"`.
    pub beanstalk_put_attempts: Option<PutAttempts>,
    /// The demo handler.
    pub demo: DemoFile,
    /// HTTP limits.
    pub http: HttpFile,
    /// The engine's settings (segment size, snapshots, queue limits, retry...).
    pub engine: EngineConfig,
}

/// `[demo]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoFile {
    /// Shortest attempt.
    pub min_ms: Option<u64>,
    /// Longest attempt.
    pub max_ms: Option<u64>,
    /// Failure probability.
    pub failure_rate: Option<f64>,
}

/// `[http]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpFile {
    /// Largest request body.
    pub body_bytes_max: Option<usize>,
    /// Open connections per listener.
    pub connections_max: Option<usize>,
    /// Time allowed to send a request body.
    pub body_timeout_ms: Option<u64>,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout_ms: Option<u64>,
}

/// HTTP limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body; past it, 413.
    pub body_bytes_max: usize,
    /// Open connections per listener; past it, 503 and the connection closes.
    pub connections_max: usize,
    /// Time allowed to send a request body; past it, 408.
    pub body_timeout_ms: u64,
    /// A connection that moves no byte either way for this long (up to
    /// twice as long) is closed.
    pub idle_timeout_ms: u64,
}

/// Everything `beaver run` needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine.
    pub engine: EngineConfig,
    /// What runs jobs.
    pub executor: ExecutorConfig,
    /// The API address.
    pub listen: SocketAddr,
    /// The metrics address (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// The token requests must carry.
    pub token: Option<String>,
    /// HTTP limits.
    pub http: HttpLimits,
    /// Threads of the runtime serving HTTP and the core (at least 1).
    pub threads: usize,
    /// Whether the API's address also serves the web dashboard at `/ui/`.
    pub ui: bool,
    /// Where beanstalkd's protocol is also served (`None`: nowhere).
    pub beanstalk_listen: Option<crate::listen::Listen>,
    /// The attempts a job put over beanstalkd's protocol gets:
    /// [`beaver_core::UNLIMITED_ATTEMPTS`] unless set, else at most
    /// `attempts_max`.
    pub beanstalk_put_attempts: u32,
}

/// `beanstalk_put_attempts` in the config file: a TOML integer or a word.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PutAttempts {
    /// A count.
    Count(i64),
    /// `"unlimited"` (anything else is refused when resolved).
    Word(String),
}

/// The most `--threads` takes.
pub const THREADS_MAX: usize = 1024;

/// The default `--threads` on a machine with `cpus` CPUs: all but one, at
/// least one. The WAL's fdatasyncs, snapshot builds and recovery run on
/// threads of their own, and on 2 CPUs a second runtime thread measured
/// slower: a lone client's acks 21-33% fewer, the others no better
/// (docs/performance.md).
pub fn default_threads(cpus: usize) -> usize {
    cpus.saturating_sub(1).max(1)
}

/// The default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";
/// The default server URL of the client commands.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Reads the config file (if any) and merges it under the flags.
pub fn resolve(args: &RunArgs) -> Result<Settings, String> {
    let (file, queue_workers_set) = match &args.config {
        Some(path) => read_file(path)?,
        None => (FileConfig::default(), false),
    };
    resolve_with(args, &file, queue_workers_set)
}

/// Parses the text of a config file, pure (no file, environment or
/// network): its settings, and whether it sets `[engine.queue] workers`
/// (which a top-level `workers` would otherwise override unseen). An error
/// names the key or line that is wrong.
pub fn parse_config(text: &str) -> Result<(FileConfig, bool), String> {
    let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    let raw: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let queue_workers = raw
        .get("engine")
        .and_then(|e| e.get("queue"))
        .is_some_and(|q| q.get("workers").is_some());
    Ok((file, queue_workers))
}

/// Merges a parsed config file (as [`parse_config`] gives it) under the
/// flags and checks the result, as [`resolve`] does (`args.config` is not
/// read). Host names in the addresses are looked up (DNS); numeric
/// addresses are not.
pub fn resolve_with(
    args: &RunArgs,
    file: &FileConfig,
    queue_workers_set: bool,
) -> Result<Settings, String> {
    if file.workers.is_some() && queue_workers_set {
        return Err(
            "the config file sets both `workers` and `[engine.queue] workers`; keep one (they are the same setting)"
                .into(),
        );
    }
    let mut engine = file.engine.clone();
    if let Some(d) = args.data_dir.clone().or(file.data_dir.clone()) {
        engine.data_dir = d;
    }
    if let Some(w) = args.workers.or(file.workers) {
        engine.queue.workers = w;
    }
    // 0 is allowed: the queue takes and keeps jobs but dispatches none
    // (the core proposes no dispatch without workers), which the benchmark
    // uses to hold a backlog.
    if engine.queue.workers > 4096 {
        return Err(format!(
            "workers is {}; give 0 to 4096 (--workers, BEAVER_WORKERS or `workers` in the config file)",
            engine.queue.workers
        ));
    }
    pool_queues(args, &mut engine)?;
    engine.queue.hash_seed = beaver_io::entropy_seed();
    let threads = match args.threads.or(file.threads) {
        Some(n) if (1..=THREADS_MAX).contains(&n) => n,
        Some(n) => {
            return Err(format!(
                "threads is {n}; give 1 to {THREADS_MAX} (--threads, BEAVER_THREADS or `threads` in the config file), or leave it out for one per CPU but one"
            ));
        }
        None => default_threads(std::thread::available_parallelism().map_or(1, |n| n.get())),
    };

    // The executor: flags/environment first; --exec and --handler exclude
    // each other at each level.
    let (exec, handler) = if args.exec.is_some() || args.handler.is_some() {
        (args.exec.clone(), args.handler)
    } else {
        if file.exec.is_some() && file.handler.is_some() {
            return Err("the config file sets both `exec` and `handler`; keep one".into());
        }
        (file.exec.clone(), file.handler)
    };
    let executor = match (exec, handler.unwrap_or(Handler::Demo)) {
        (Some(cmd), _) => ExecutorConfig::exec(cmd)
            .map_err(|e| format!("--exec: {e}"))?
            .with_kill_grace_ms(kill_grace_ms(args, file, &engine)?),
        (None, Handler::Noop) => ExecutorConfig::Noop,
        (None, Handler::Demo) => {
            let (mut min, mut max) = (
                file.demo.min_ms.unwrap_or(20),
                file.demo.max_ms.unwrap_or(200),
            );
            if let Some(range) = &args.demo_ms {
                (min, max) = parse_range(range)?;
            }
            let rate = args
                .demo_failure_rate
                .or(file.demo.failure_rate)
                .unwrap_or(0.1);
            ExecutorConfig::demo(min, max, rate).map_err(|e| format!("demo handler: {e}"))?
        }
    };

    let listen = address(
        "--listen",
        args.listen
            .as_deref()
            .or(file.listen.as_deref())
            .unwrap_or(DEFAULT_LISTEN),
    )?;
    let metrics_text = args
        .metrics_listen
        .as_deref()
        .or(file.metrics_listen.as_deref())
        .unwrap_or(DEFAULT_METRICS_LISTEN);
    let metrics_listen = if metrics_text == "off" {
        None
    } else {
        Some(address("--metrics-listen", metrics_text)?)
    };
    let token = args.token.clone().or(file.token.clone());
    if let Some(t) = &token {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be non-empty printable ASCII without spaces".into());
        }
    }
    for (flag, addr) in [
        ("--listen", Some(listen)),
        ("--metrics-listen", metrics_listen),
    ] {
        if let Some(a) = addr {
            if !a.ip().is_loopback() && token.is_none() {
                return Err(format!(
                    "{flag} {a} is reachable from other machines, so a token is required: give --token T (or BEAVER_TOKEN) and send `Authorization: Bearer T` with every request; or listen on 127.0.0.1"
                ));
            }
        }
    }
    for (key, zero) in [
        ("connections_max", file.http.connections_max == Some(0)),
        ("body_bytes_max", file.http.body_bytes_max == Some(0)),
        ("body_timeout_ms", file.http.body_timeout_ms == Some(0)),
        ("idle_timeout_ms", file.http.idle_timeout_ms == Some(0)),
    ] {
        if zero {
            return Err(format!(
                "[http] {key} = 0 would refuse every request: give at least 1, or leave it out for its default"
            ));
        }
    }
    let beanstalk_listen = beanstalk_listen(args, file)?;
    let beanstalk_put_attempts = beanstalk_put_attempts(args, file, &engine)?;
    if beanstalk_listen.is_some() {
        // Checked before anything starts, like every other setting.
        crate::beanstalk::ServeLimits::for_engine(&engine, beanstalk_put_attempts)?;
    }
    let http = HttpLimits {
        body_bytes_max: file.http.body_bytes_max.unwrap_or(
            usize::try_from(engine.queue.limits.batch_bytes_max)
                .unwrap_or(usize::MAX / 2)
                .saturating_add(1 << 20),
        ),
        connections_max: file.http.connections_max.unwrap_or(512),
        body_timeout_ms: file.http.body_timeout_ms.unwrap_or(30_000),
        idle_timeout_ms: file.http.idle_timeout_ms.unwrap_or(60_000),
    };
    Ok(Settings {
        engine,
        executor,
        listen,
        metrics_listen,
        token,
        http,
        threads,
        ui: !args.no_ui && file.ui.unwrap_or(true),
        beanstalk_listen,
        beanstalk_put_attempts,
    })
}

/// The attempts of a job put over beanstalkd's protocol:
/// `--beanstalk-put-attempts` (or `BEAVER_BEANSTALK_PUT_ATTEMPTS`), else
/// the file's `beanstalk_put_attempts`, else unlimited; a count must be
/// 1 to `attempts_max`.
fn beanstalk_put_attempts(
    args: &RunArgs,
    file: &FileConfig,
    engine: &EngineConfig,
) -> Result<u32, String> {
    let (text, source) = match (&args.beanstalk_put_attempts, &file.beanstalk_put_attempts) {
        (Some(t), _) => (t.trim().to_string(), "--beanstalk-put-attempts"),
        (None, Some(PutAttempts::Count(n))) => (n.to_string(), "beanstalk_put_attempts"),
        (None, Some(PutAttempts::Word(w))) => (w.trim().to_string(), "beanstalk_put_attempts"),
        (None, None) => return Ok(beaver_core::UNLIMITED_ATTEMPTS),
    };
    if text == "unlimited" {
        return Ok(beaver_core::UNLIMITED_ATTEMPTS);
    }
    let max = engine.queue.limits.attempts_max;
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(format!(
            "{source} is {text:?}; give `unlimited` or 1 to {max} (`[engine.queue.limits] attempts_max`)"
        )),
    }
}

/// Where beanstalkd's protocol is served: `--beanstalk-listen` (or
/// `BEAVER_BEANSTALK_LISTEN`), else the file's `beanstalk_listen`; `off`
/// or nothing: nowhere. Loopback only unless allowed.
fn beanstalk_listen(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<Option<crate::listen::Listen>, String> {
    let text = args
        .beanstalk_listen
        .as_deref()
        .or(file.beanstalk_listen.as_deref());
    let allow_remote = args.beanstalk_allow_remote || file.beanstalk_allow_remote.unwrap_or(false);
    match text {
        None | Some("off") => Ok(None),
        Some(t) => crate::listen::Listen::parse(
            t,
            allow_remote,
            "--beanstalk-listen",
            "--beanstalk-allow-remote",
        )
        .map(Some),
    }
}

/// The queues the built-in pool serves: `--pool-queue` (or
/// `BEAVER_POOL_QUEUES`) replaces `[engine.queue] pool_queues` of the
/// file; each name is checked, and at most `limits.queues_max` are given.
fn pool_queues(args: &RunArgs, engine: &mut EngineConfig) -> Result<(), String> {
    if !args.pool_queues.is_empty() {
        let names = args
            .pool_queues
            .iter()
            .map(|n| {
                beaver_core::QueueName::parse(n).map_err(|e| format!("--pool-queue {n:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        engine.queue.pool_queues = Some(names);
    }
    let max = engine.queue.limits.queues_max;
    if let Some(names) = &engine.queue.pool_queues {
        if names.len() as u64 > max {
            return Err(format!(
                "the pool is given {} queues; at most {max} queues exist ([engine.queue.limits] queues_max)",
                names.len()
            ));
        }
    }
    Ok(())
}

/// The most `kill_grace_ms` takes.
pub const KILL_GRACE_MS_MAX: u64 = 3_600_000;

/// The kill grace in force: `--kill-grace`, else the file's `kill_grace_ms`,
/// else [`DEFAULT_KILL_GRACE_MS`] (or half the lease slack when the slack
/// is not longer than that). It must end before the lease does (timeout + `lease_slack_ms`),
/// or the lease would end the attempt first.
fn kill_grace_ms(args: &RunArgs, file: &FileConfig, engine: &EngineConfig) -> Result<u64, String> {
    let slack = engine.queue.lease_slack_ms;
    let given = match &args.kill_grace {
        Some(text) => Some(parse_duration_ms(text).map_err(|e| format!("--kill-grace: {e}"))?),
        None => file.kill_grace_ms,
    };
    let Some(ms) = given else {
        return Ok(if DEFAULT_KILL_GRACE_MS < slack {
            DEFAULT_KILL_GRACE_MS
        } else {
            slack / 2
        });
    };
    if ms >= slack || ms > KILL_GRACE_MS_MAX {
        return Err(format!(
            "the kill grace is {ms} ms; give less than [engine.queue] lease_slack_ms ({slack} ms: a timed-out job's lease ends that long after its timeout) and at most {KILL_GRACE_MS_MAX} ms (--kill-grace, BEAVER_KILL_GRACE or `kill_grace_ms` in the config file), or raise lease_slack_ms"
        ));
    }
    Ok(ms)
}

/// Reads the config file, and whether it sets `[engine.queue] workers`
/// (which a top-level `workers` would otherwise override unseen).
fn read_file(path: &Path) -> Result<(FileConfig, bool), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    parse_config(&text).map_err(|e| format!("the config file {} is invalid: {e}", path.display()))
}

/// Resolves `host:port` (the first address it names).
pub fn address(flag: &str, text: &str) -> Result<SocketAddr, String> {
    let bad = |why: String| format!("{flag} {text}: {why}; give HOST:PORT such as 127.0.0.1:7070");
    text.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("it names no address".into()))
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--demo-ms {text}: give MIN-MAX in milliseconds, such as 20-200");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h` or `1d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "{text:?} is not a duration; give a whole number with a unit: 500ms, 30s, 5m, 2h or 1d"
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert!(parse_duration_ms("30").is_err());
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("1w").is_err());
        assert!(parse_duration_ms("99999999999999999999s").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beaver.toml");
        std::fs::write(
            &path,
            "workers = 3\nlisten = \"127.0.0.1:7171\"\nhandler = \"noop\"\n[engine]\nsegment_bytes = 1048576\n[engine.queue.retry]\nbase_ms = 50\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            workers: Some(5),
            ..RunArgs::default()
        };
        let s = resolve(&args).unwrap();
        assert_eq!(s.engine.queue.workers, 5);
        assert_eq!(s.listen.port(), 7171);
        assert_eq!(s.executor, ExecutorConfig::Noop);
        assert_eq!(s.engine.segment_bytes, 1 << 20);
        assert_eq!(s.engine.queue.retry.base_ms, 50);
        assert_eq!(s.metrics_listen.map(|a| a.port()), Some(9090));
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let e = resolve(&args).unwrap_err();
        assert!(e.contains("wrokers"), "{e}");
        // The log's record size follows segment_bytes; it is not a setting.
        std::fs::write(&path, "[engine.queue.limits]\nrecord_bytes_max = 5\n").unwrap();
        let e = resolve(&args).unwrap_err();
        assert!(e.contains("unknown field `record_bytes_max`"), "{e}");
    }

    #[test]
    fn beanstalk_puts_get_unlimited_attempts_unless_a_count_within_the_limit_is_set() {
        let resolved = |flag: Option<&str>, file: &str| {
            let args = RunArgs {
                beanstalk_put_attempts: flag.map(str::to_string),
                ..RunArgs::default()
            };
            let (file, set) = parse_config(file).unwrap();
            resolve_with(&args, &file, set).map(|s| s.beanstalk_put_attempts)
        };
        let unlimited = beaver_core::UNLIMITED_ATTEMPTS;
        assert_eq!(resolved(None, ""), Ok(unlimited));
        assert_eq!(resolved(None, "beanstalk_put_attempts = 5\n"), Ok(5));
        let word = "beanstalk_put_attempts = \"unlimited\"\n";
        assert_eq!(resolved(None, word), Ok(unlimited));
        assert_eq!(resolved(Some("7"), word), Ok(7), "the flag wins");
        assert_eq!(
            resolved(Some("unlimited"), "beanstalk_put_attempts = 5\n"),
            Ok(unlimited)
        );
        let raised = "[engine.queue.limits]\nattempts_max = 500\n";
        assert_eq!(resolved(Some("500"), raised), Ok(500));
        for (flag, file, source) in [
            (Some("0"), "", "--beanstalk-put-attempts"),
            (Some("101"), "", "--beanstalk-put-attempts"),
            (Some("many"), "", "--beanstalk-put-attempts"),
            (
                None,
                "beanstalk_put_attempts = -1\n",
                "beanstalk_put_attempts",
            ),
            (
                None,
                "beanstalk_put_attempts = \"forever\"\n",
                "beanstalk_put_attempts",
            ),
        ] {
            let e = resolved(flag, file).unwrap_err();
            assert!(e.starts_with(source), "{e}");
            assert!(e.contains("give `unlimited` or 1 to 100"), "{e}");
        }
    }

    #[test]
    fn the_beanstalk_listener_is_off_by_default_set_by_flag_or_file_and_loopback_only() {
        use crate::listen::Listen;
        let resolved = |args: &RunArgs, file: &str| {
            let (file, set) = parse_config(file).unwrap();
            resolve_with(args, &file, set).map(|s| s.beanstalk_listen)
        };
        let none = RunArgs::default();
        assert_eq!(resolved(&none, ""), Ok(None));
        let tcp = Listen::Tcp("127.0.0.1:11300".parse().unwrap());
        let file = "beanstalk_listen = \"127.0.0.1:11300\"\n";
        assert_eq!(resolved(&none, file), Ok(Some(tcp)));
        let off = RunArgs {
            beanstalk_listen: Some("off".into()),
            ..RunArgs::default()
        };
        assert_eq!(resolved(&off, file), Ok(None));
        let unix = RunArgs {
            beanstalk_listen: Some("unix:/run/b.sock".into()),
            ..RunArgs::default()
        };
        let sock = Listen::Unix("/run/b.sock".into());
        assert_eq!(resolved(&unix, file), Ok(Some(sock)));
        let remote = "beanstalk_listen = \"0.0.0.0:11300\"\n";
        let e = resolved(&none, remote).unwrap_err();
        assert!(e.contains("--beanstalk-allow-remote"), "{e}");
        let allowed = format!("{remote}beanstalk_allow_remote = true\n");
        assert!(matches!(
            resolved(&none, &allowed),
            Ok(Some(Listen::Tcp(_)))
        ));
        let e = resolved(&none, "beanstalk_listen = \"localhost\"\n").unwrap_err();
        assert!(e.contains("IP:PORT"), "{e}");
    }

    #[test]
    fn threads_default_to_all_cpus_but_one_and_are_checked() {
        assert_eq!(default_threads(1), 1);
        assert_eq!(default_threads(2), 1);
        assert_eq!(default_threads(8), 7);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            resolve(&RunArgs::default()).unwrap().threads,
            default_threads(cpus)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beaver.toml");
        std::fs::write(&path, "threads = 3\n").unwrap();
        let from_file = RunArgs {
            config: Some(path),
            ..RunArgs::default()
        };
        assert_eq!(resolve(&from_file).unwrap().threads, 3);
        let flag = RunArgs {
            threads: Some(2),
            ..from_file
        };
        assert_eq!(resolve(&flag).unwrap().threads, 2);
        for bad in [0, THREADS_MAX + 1] {
            let e = resolve(&RunArgs {
                threads: Some(bad),
                ..RunArgs::default()
            })
            .unwrap_err();
            assert!(
                e.contains(&format!("threads is {bad}; give 1 to 1024")),
                "{e}"
            );
        }
    }

    #[test]
    fn an_http_limit_of_zero_is_refused_not_bent_to_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beaver.toml");
        let args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        for key in [
            "connections_max",
            "body_bytes_max",
            "body_timeout_ms",
            "idle_timeout_ms",
        ] {
            std::fs::write(&path, format!("[http]\n{key} = 0\n")).unwrap();
            let e = resolve(&args).unwrap_err();
            assert!(e.contains(&format!("[http] {key} = 0")), "{e}");
            std::fs::write(&path, format!("[http]\n{key} = 1\n")).unwrap();
            assert!(resolve(&args).is_ok(), "{key} = 1");
        }
    }

    #[test]
    fn workers_set_twice_in_the_file_is_refused_not_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beaver.toml");
        let args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        std::fs::write(&path, "workers = 3\n[engine.queue]\nworkers = 5\n").unwrap();
        let e = resolve(&args).unwrap_err();
        assert!(
            e.contains("both `workers` and `[engine.queue] workers`"),
            "{e}"
        );
        std::fs::write(&path, "[engine.queue]\nworkers = 5\n").unwrap();
        assert_eq!(resolve(&args).unwrap().engine.queue.workers, 5);
        let flag = RunArgs {
            workers: Some(2),
            ..args.clone()
        };
        assert_eq!(
            resolve(&flag).unwrap().engine.queue.workers,
            2,
            "a flag wins"
        );
    }

    #[test]
    fn the_kill_grace_defaults_below_the_lease_slack_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("beaver.toml");
        let exec = RunArgs {
            exec: Some("true".into()),
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        std::fs::write(&path, "").unwrap();
        let grace = |a: &RunArgs| resolve(a).map(|s| s.executor.kill_grace_ms());
        assert_eq!(grace(&exec), Ok(Some(3_000)));
        std::fs::write(&path, "kill_grace_ms = 1500\n").unwrap();
        assert_eq!(grace(&exec), Ok(Some(1_500)));
        let flag = RunArgs {
            kill_grace: Some("250ms".into()),
            ..exec.clone()
        };
        assert_eq!(grace(&flag), Ok(Some(250)), "the flag wins");
        std::fs::write(&path, "kill_grace_ms = 5000\n").unwrap();
        let e = grace(&exec).unwrap_err();
        assert!(
            e.contains("less than [engine.queue] lease_slack_ms (5000 ms"),
            "{e}"
        );
        std::fs::write(&path, "[engine.queue]\nlease_slack_ms = 2000\n").unwrap();
        assert_eq!(grace(&exec), Ok(Some(1_000)), "half a short slack");
        let demo = RunArgs {
            config: None,
            ..RunArgs::default()
        };
        assert_eq!(grace(&demo), Ok(None));
    }

    #[test]
    fn off_loopback_needs_a_token() {
        let args = RunArgs {
            listen: Some("0.0.0.0:7070".into()),
            ..RunArgs::default()
        };
        assert!(resolve(&args).unwrap_err().contains("token"));
        let args = RunArgs {
            token: Some("s3cret-token".into()),
            ..args
        };
        assert!(resolve(&args).is_ok());
    }
}
