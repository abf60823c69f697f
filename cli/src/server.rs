//! `beaver run`: lock the data dir, recover, serve the API and metrics,
//! stop gracefully on SIGTERM/SIGINT (a second one stops at once).

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
    let data_dir = settings.engine.data_dir.clone();
    let _lock = lock_exclusive(&data_dir).map_err(|e| e.to_string())?;
    // Bind before recovering so a busy port fails at once, not after a
    // long recovery; nothing is accepted until recovery is done.
    let api = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (--listen): {e}", settings.listen))?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    let metrics_listener = match settings.metrics_listen {
        Some(a) => Some(TcpListener::bind(a).await.map_err(|e| {
            format!("cannot listen on {a} (--metrics-listen): {e}; give another address or `off`")
        })?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let e = &settings.engine;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        workers = e.queue.workers,
        // What the runtime has, not what was asked: the log shows the truth.
        threads = tokio::runtime::Handle::current().metrics().num_workers(),
        executor = ?settings.executor,
        segment_bytes = e.segment_bytes,
        snapshot_wal_bytes = e.snapshot_wal_bytes,
        snapshot_pace_percent = e.snapshot_pace_percent,
        body_bytes_max = settings.http.body_bytes_max,
        connections_max = settings.http.connections_max,
        token = settings.token.is_some(),
        "starting"
    );
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    let executor = settings.executor.build()?;
    let engine = beaver_runtime::start(
        settings.engine.clone(),
        FileDisk::new(),
        executor,
        SystemClock::new(),
        MetricsObserver(metrics.clone()),
        beaver_io::entropy_seed(),
    )
    .await
    .map_err(|e| format!("cannot start on {}: {e}", data_dir.display()))?;
    let r = engine.recovery;
    say(format_args!(
        "beaver {}: recovered {} jobs in {} ms from {} (snapshot LSN {}, {} records replayed, {} torn bytes discarded)",
        env!("CARGO_PKG_VERSION"),
        r.jobs,
        r.duration_ms,
        data_dir.display(),
        r.snapshot_lsn.unwrap_or(0),
        r.replayed_records,
        r.torn_bytes
    ));

    let state = AppState {
        client: engine.client.clone(),
        recovery: engine.recovery,
        snapshot_dir: settings.engine.snapshot_dir(),
        limits: settings.http,
        metrics,
    };
    let token: Option<Arc<str>> = settings.token.as_deref().map(Arc::from);
    let idle = Duration::from_millis(settings.http.idle_timeout_ms);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut routes = api_router(state.clone(), token.clone());
    if settings.ui {
        routes = routes.merge(crate::ui::router());
    }
    let api_task = tokio::spawn(
        axum::serve(
            LimitedListener::new(api, settings.http.connections_max, idle),
            routes,
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future(),
    );
    let metrics_task = metrics_listener.map(|l| {
        tokio::spawn(
            axum::serve(
                LimitedListener::new(l, settings.http.connections_max, idle),
                metrics_router(state.clone(), token.clone()),
            )
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
        )
    });
    say(format_args!("API      http://{api_addr}"));
    if settings.ui {
        say(format_args!("UI       http://{api_addr}/ui/"));
    }
    match metrics_addr {
        Some(a) => say(format_args!("metrics  http://{a}/metrics")),
        None => say(format_args!("metrics  off")),
    }
    info!(api = %api_addr, metrics = ?metrics_addr, "serving");

    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let handle = engine.handle;
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
    info!(
        reason = why,
        grace_ms = settings.engine.shutdown_grace_ms,
        "shutting down"
    );
    handle.shutdown();
    let result = tokio::select! {
        r = handle.wait() => r,
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
    };
    let _ = stop_tx.send(true);
    // Requests still open get a bounded moment to be answered (the engine
    // already answered or refused them).
    let _ = tokio::time::timeout(Duration::from_secs(2), api_task).await;
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
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

/// Prints a line on stdout; a closed stdout (`beaver run | head -1`) must
/// not stop the server, so errors are ignored.
fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
