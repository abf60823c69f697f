//! The `--config` TOML file: parsed, merged under no flags, checked.

use beaver_input::settings::{
    FileConfig, KILL_GRACE_MS_MAX, RunArgs, THREADS_MAX, parse_config, resolve_with,
};
use beaver_runtime::ExecutorConfig;
use beaver_runtime::executor::{COMMAND_BYTES_MAX, DEMO_DURATION_MS_MAX};

/// A host name would be looked up (DNS) on every run: numeric addresses
/// and `off` are kept, anything else falls back to the default address.
fn numeric_addresses_only(file: &mut FileConfig) {
    let numeric = |a: &Option<String>| {
        a.as_deref()
            .is_some_and(|t| t == "off" || t.parse::<std::net::SocketAddr>().is_ok())
    };
    if !numeric(&file.listen) {
        file.listen = None;
    }
    if !numeric(&file.metrics_listen) {
        file.metrics_listen = None;
    }
}

/// The `settings` target: any text parses to a config or an error; a
/// config that resolves gives settings within every documented bound.
pub fn check_settings(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((mut file, queue_workers_set)) = parse_config(text) else {
        return;
    };
    numeric_addresses_only(&mut file);
    let Ok(s) = resolve_with(&RunArgs::default(), &file, queue_workers_set) else {
        return;
    };
    assert!(
        s.engine.queue.workers <= 4096,
        "workers {}",
        s.engine.queue.workers
    );
    assert!(
        (1..=THREADS_MAX).contains(&s.threads),
        "threads {}",
        s.threads
    );
    let h = s.http;
    assert!(
        h.body_bytes_max > 0
            && h.connections_max > 0
            && h.body_timeout_ms > 0
            && h.idle_timeout_ms > 0,
        "an HTTP limit of 0: {h:?}"
    );
    let attempts = s.beanstalk_put_attempts;
    assert!(
        attempts == beaver_core::UNLIMITED_ATTEMPTS
            || (1..=s.engine.queue.limits.attempts_max).contains(&attempts),
        "beanstalk put attempts {attempts}"
    );
    if let Some(t) = &s.token {
        assert!(
            !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
            "token {t:?}"
        );
    }
    for addr in std::iter::once(s.listen).chain(s.metrics_listen) {
        assert!(
            addr.ip().is_loopback() || s.token.is_some(),
            "{addr} without a token"
        );
    }
    match &s.executor {
        ExecutorConfig::Exec {
            command,
            kill_grace_ms,
        } => {
            assert!(
                !command.trim().is_empty()
                    && command.len() <= COMMAND_BYTES_MAX
                    && !command.contains('\0'),
                "command {command:?}"
            );
            // The kill grace ends before the lease does.
            let slack = s.engine.queue.lease_slack_ms;
            assert!(
                *kill_grace_ms < slack.max(1) && *kill_grace_ms <= KILL_GRACE_MS_MAX,
                "kill grace {kill_grace_ms} ms, lease slack {slack} ms"
            );
        }
        ExecutorConfig::Demo(d) => assert!(
            d.duration_ms_min() <= d.duration_ms_max()
                && d.duration_ms_max() <= DEMO_DURATION_MS_MAX
                && (0.0..=1.0).contains(&d.failure_rate()),
            "demo {d:?}"
        ),
        ExecutorConfig::Noop => {}
    }
}
