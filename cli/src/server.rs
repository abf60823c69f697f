//! `beaver run`: lock the data dir, recover, serve the API and metrics,
//! stop gracefully on SIGTERM/SIGINT (a second one stops at once).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use beaver_io::FileDisk;
use beaver_runtime::SystemClock;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::http::{AppState, LimitedListener, api_router, metrics_router};
use crate::lock::lock_exclusive;
use crate::metrics::{Metrics, MetricsObserver};
use crate::settings::Settings;

/// The exit status after a second SIGTERM or SIGINT cut a graceful
/// shutdown short (128 + SIGINT, as shells report an interrupted command).
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// Runs a server until a signal or a fail-stop. `Ok` means it stopped
/// cleanly (everything acknowledged is durable and a snapshot was taken).
pub async fn run(settings: Settings) -> Result<(), String> {
    // A descriptor per connection: the soft limit goes up to the hard one;
    // job handlers get the old one back (`beaver_runtime::executor`).
    crate::listening::raise_open_files();
    let data_dir = settings.engine.data_dir.clone();
    // Whether the job command can run at all is known before anything is
    // created on disk.
    let executor = settings.executor.build()?;
    let fresh = !data_dir.exists();
    let started = start(&settings, executor).await;
    let Ok(started) = started else {
        if fresh {
            remove_fresh_data_dir(&data_dir);
        }
        return started.map(|_| ());
    };
    serve(settings, started).await
}

/// A server past recovery, not yet serving.
struct Started {
    _lock: crate::lock::DirLock,
    api: TcpListener,
    metrics: Option<TcpListener>,
    beanstalk: Option<crate::beanstalkd::Listener>,
    engine: beaver_runtime::Engine,
    metrics_registry: Arc<Metrics>,
}

/// Binds `addr` with beaver's backlog ([`crate::listening`]).
async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    crate::listening::widen_backlog(&listener)?;
    Ok(listener)
}

/// Locks the data dir, checks its volume, binds the listeners and recovers.
async fn start(
    settings: &Settings,
    executor: beaver_runtime::AnyExecutor,
) -> Result<Started, String> {
    let data_dir = settings.engine.data_dir.clone();
    let lock = lock_exclusive(&data_dir).map_err(|e| e.to_string())?;
    check_volume(&settings.engine).await?;
    // Bind before recovering so a busy port fails at once, not after a
    // long recovery; nothing is accepted until recovery is done.
    let api = bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (--listen): {e}", settings.listen))?;
    let metrics_listener = match settings.metrics_listen {
        Some(a) => Some(bind(a).await.map_err(|e| {
            format!("cannot listen on {a} (--metrics-listen): {e}; give another address or `off`")
        })?),
        None => None,
    };
    let beanstalk = match &settings.beanstalk_listen {
        Some(l) => Some(
            crate::beanstalkd::Listener::bind(l)
                .await
                .map_err(|e| format!("{e} (--beanstalk-listen)"))?,
        ),
        None => None,
    };
    let e = &settings.engine;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        workers = e.queue.workers,
        // What the runtime has, not what was asked: the log shows the truth.
        threads = tokio::runtime::Handle::current().metrics().num_workers(),
        executor = %settings.executor,
        segment_bytes = e.segment_bytes,
        snapshot_wal_bytes = e.snapshot_wal_bytes,
        snapshot_pace_percent = e.snapshot_pace_percent,
        body_bytes_max = settings.http.body_bytes_max,
        connections_max = settings.http.connections_max,
        token = settings.token.is_some(),
        "starting"
    );
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let engine = beaver_runtime::start(
        settings.engine.clone(),
        FileDisk::new(),
        executor,
        // The beanstalkd listener reads the same clock (its DEADLINE_SOON).
        SystemClock::process(),
        MetricsObserver(metrics.clone()),
        beaver_io::entropy_seed(),
    )
    .await
    .map_err(|e| format!("cannot start on {}: {e}", data_dir.display()))?;
    Ok(Started {
        _lock: lock,
        api,
        metrics: metrics_listener,
        beanstalk,
        engine,
        metrics_registry: metrics,
    })
}

/// Refuses a volume too small to hold the log's preallocated segments and
/// its reserve (see [`beaver_io::space`]); counts beaver's own files as
/// room, so a disk its own jobs filled still starts (and drains).
async fn check_volume(e: &beaver_runtime::EngineConfig) -> Result<(), String> {
    use beaver_io::Disk as _;
    let free = FileDisk::new()
        .free_space(&e.data_dir)
        .await
        .map_err(|err| {
            format!(
                "cannot read the free space of {}: {err}",
                e.data_dir.display()
            )
        })?;
    let files = |dir: &Path| -> Vec<(String, u64)> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|f| f.ok())
                    .filter_map(|f| {
                        let len = f.metadata().ok().filter(|m| m.is_file())?.len();
                        Some((f.file_name().to_string_lossy().into_owned(), len))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (wal, snaps) = (files(&e.wal_dir()), files(&e.snapshot_dir()));
    let own: u64 = wal.iter().chain(&snaps).map(|f| f.1).sum();
    let newest_snapshot = snaps
        .iter()
        .filter_map(|(name, len)| Some((crate::offline::parse_snapshot_name(name)?, *len)))
        .max()
        .map_or(0, |s| s.1);
    match beaver_io::space::shortfall(e.segment_bytes, newest_snapshot, free, own) {
        Some(short) => Err(format!("{}: {short}", e.data_dir.display())),
        None => Ok(()),
    }
}

/// Removes what a failed first start created in a data dir that did not
/// exist before it: the lock file, then each directory if it is empty.
fn remove_fresh_data_dir(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(crate::lock::LOCK_FILE));
    for sub in ["wal", "snapshots"] {
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Serves the API and metrics until a signal or a fail-stop, then stops.
async fn serve(settings: Settings, started: Started) -> Result<(), String> {
    let Started {
        _lock,
        api,
        metrics: metrics_listener,
        beanstalk,
        engine,
        metrics_registry: metrics,
    } = started;
    let data_dir = settings.engine.data_dir.clone();
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    // Before the lines that say it is up: a SIGTERM after them stops it
    // gracefully, never by the default action.
    let signals = Signals::install()?;
    say(format_args!(
        "{}",
        recovered_line(&engine.recovery, &data_dir)
    ));

    let state = AppState {
        client: engine.client.clone(),
        recovery: engine.recovery,
        snapshot_dir: settings.engine.snapshot_dir(),
        limits: settings.http,
        metrics,
        queue_limits: settings.engine.queue.limits,
    };
    let token: Option<Arc<str>> = settings.token.as_deref().map(Arc::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut routes = api_router(state.clone(), token.clone());
    if settings.ui {
        routes = routes.merge(crate::ui::router());
    }
    let idle = Duration::from_millis(settings.http.idle_timeout_ms);
    let [api_max, metrics_max, beanstalk_max] =
        connection_budget(&settings, metrics_listener.is_some(), beanstalk.is_some());
    let mut tasks = vec![(
        spawn_http(api, routes, api_max, idle, stopped(stop_rx.clone())),
        Duration::from_secs(2),
    )];
    if let Some(l) = metrics_listener {
        let routes = metrics_router(state.clone(), token.clone(), api_addr);
        let task = spawn_http(l, routes, metrics_max, idle, stopped(stop_rx.clone()));
        tasks.push((task, Duration::from_secs(1)));
    }
    let metrics_shown = announce(api_addr, settings.ui, metrics_addr);
    if let Some(l) = beanstalk {
        let stop = stopped(stop_rx.clone());
        let task = serve_beanstalk(l, &settings, &engine.client, beanstalk_max, stop)?;
        tasks.push((task, Duration::from_secs(1)));
    }
    info!(api = %api_addr, metrics = %metrics_shown, "serving");

    let result = run_until_stopped(engine.handle, &settings, signals).await?;
    let _ = stop_tx.send(true);
    // Requests still open get a bounded moment to be answered (the engine
    // already answered or refused them).
    for (task, bound) in tasks {
        let _ = tokio::time::timeout(bound, task).await;
    }
    match result {
        Ok(()) => {
            info!("shutdown complete");
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "the engine failed");
            warn!("restart beaver to recover from what is on disk");
            Err(e.to_string())
        }
    }
}

/// A listener's task: its result once it stopped serving.
type ServeTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Descriptors a running job handler holds in the server: its stdout and
/// stderr pipes, its stdin's until the payload is written, and the child's
/// own handle.
const FDS_PER_HANDLER: u64 = 4;

/// Connections the API, metrics and beanstalk listeners each serve at once
/// (0 for one that is off): what the settings ask, or shares of what the
/// open-file limit leaves beside the engine's descriptors and the running
/// handlers' (a connection that took the log's next segment would stop
/// the engine); then it says so.
fn connection_budget(settings: &Settings, metrics: bool, beanstalk: bool) -> [usize; 3] {
    let open_files = crate::listening::open_files();
    let http = settings.http.connections_max;
    let wanted = [
        http,
        if metrics { http } else { 0 },
        if beanstalk {
            crate::beanstalkd::CONNECTIONS_MAX
        } else {
            0
        },
    ];
    let handlers = u64::from(settings.engine.queue.workers).saturating_mul(FDS_PER_HANDLER);
    let reserved = crate::listening::RESERVED_FDS.saturating_add(handlers);
    let shares = crate::listening::connection_shares(open_files, reserved, wanted);
    if shares != wanted {
        warn!(
            open_files,
            api = shares[0],
            metrics = shares[1],
            beanstalk = shares[2],
            "the open-file limit leaves room for fewer connections at once than configured (more wait to be accepted); raise it (ulimit -n, LimitNOFILE=)"
        );
    }
    shares
}

/// Serves `routes` on `listener` until `stop`: at most `connections_max`
/// connections at once, each closed after `idle` without a request.
fn spawn_http(
    listener: TcpListener,
    routes: axum::Router,
    connections_max: usize,
    idle: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> ServeTask {
    tokio::spawn(
        axum::serve(
            LimitedListener::new(listener, connections_max, idle),
            routes,
        )
        .with_graceful_shutdown(stop)
        .into_future(),
    )
}

/// Prints where the API, the dashboard and metrics are served (tests
/// parse these lines); what the metrics line says.
fn announce(api: std::net::SocketAddr, ui: bool, metrics: Option<std::net::SocketAddr>) -> String {
    say(format_args!("API      http://{api}"));
    if ui {
        say(format_args!("UI       http://{api}/ui/"));
    }
    let shown = match metrics {
        Some(a) => format!("http://{a}/metrics"),
        None => "off".into(),
    };
    say(format_args!("metrics  {shown}"));
    shown
}

/// Serves beanstalkd's protocol on `listener` (the same code as `beaver
/// beanstalkd`; at most `connections_max` connections at once) with the
/// engine's client until `stop`, and prints where (`beanstalk ADDR`, the
/// real port when 0 was asked).
fn serve_beanstalk(
    listener: crate::beanstalkd::Listener,
    settings: &Settings,
    client: &beaver_runtime::Client,
    connections_max: usize,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<ServeTask, String> {
    let limits = crate::beanstalkd::ServeLimits::for_engine(
        &settings.engine,
        settings.beanstalk_put_attempts,
    )?;
    let shared = Arc::new(crate::beanstalkd::Shared::new(client.clone(), limits));
    let addr = listener.address();
    let task = tokio::spawn(async move {
        crate::beanstalkd::serve(listener, shared, connections_max, stop).await;
        Ok(())
    });
    say(format_args!("beanstalk {addr}"));
    info!(beanstalk = %addr, "serving beanstalkd's protocol");
    Ok(task)
}

/// Runs until SIGTERM, SIGINT or the engine's own end, then stops the
/// engine gracefully; a second signal exits at once. The engine's result.
async fn run_until_stopped(
    handle: beaver_runtime::EngineHandle,
    settings: &Settings,
    signals: Signals,
) -> Result<Result<(), beaver_runtime::EngineError>, String> {
    let Signals { mut term, mut int } = signals;
    let why = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if handle.is_finished() {
                    break "the engine stopped";
                }
            }
        }
    };
    let kill_grace_ms = settings.executor.kill_grace_ms().unwrap_or(0);
    info!(
        reason = why,
        grace_ms = settings.engine.shutdown_grace_ms,
        kill_grace_ms,
        "shutting down"
    );
    handle.shutdown();
    let stopping = async {
        let result = handle.wait().await;
        // Attempts stopped at the end of the grace get their kill grace
        // (SIGTERM, then SIGKILL) before this process exits.
        let bound = Duration::from_millis(kill_grace_ms.saturating_add(1_000));
        if !beaver_runtime::executor::attempts_stopped(bound).await {
            warn!("some handlers were still being stopped; they get SIGKILL as beaver exits");
        }
        result
    };
    tokio::select! {
        r = stopping => Ok(r),
        again = async {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        } => {
            // Safe at any instant, like a crash: what was acknowledged is on
            // disk, and attempts cut short are retried after a restart.
            let killed = beaver_runtime::executor::kill_running_attempts();
            warn!(
                signal = again,
                killed,
                "a second signal: stopping now, without the grace period; every acknowledged job is on disk, the attempts still running were killed (process groups included) and are retried after a restart"
            );
            std::process::exit(EXIT_SECOND_SIGNAL);
        }
    }
}

/// The stop signals, caught from [`Signals::install`] on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, String> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?,
            int: signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?,
        })
    }
}

/// The line `beaver run` prints once recovery is done.
pub fn recovered_line(r: &beaver_runtime::RecoveryReport, data_dir: &Path) -> String {
    format!(
        "beaver {}: recovered {} in {} ms from {} (snapshot LSN {}, {} replayed, {} torn bytes discarded)",
        env!("CARGO_PKG_VERSION"),
        crate::human::count(r.jobs, "job"),
        r.duration_ms,
        data_dir.display(),
        r.snapshot_lsn.unwrap_or(0),
        crate::human::count(r.replayed_records, "record"),
        r.torn_bytes
    )
}

/// Prints a line on stdout; a closed stdout (`beaver run | head -1`) must
/// not stop the server, so errors are ignored.
fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
