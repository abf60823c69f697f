//! `beaver work`: a worker process for any host. It leases jobs from a
//! beaver server over HTTP, runs each with the same `exec` executor as the
//! server's own pool (payload on stdin, `BEAVER_JOB_ID`, `BEAVER_ATTEMPT`,
//! `BEAVER_QUEUE`, the stderr tail as the error, the process group killed
//! past the job's timeout), renews the leases well before they end, and
//! reports each outcome once the command exits.
//!
//! Guarantees:
//! - a job is reported done only by the lease it ran under; a lease the
//!   server calls lost (or that ended by the worker's own clock with no
//!   renewal) has its process stopped and its result dropped, never sent
//!   as done;
//! - results the server could not take yet are kept (at most one per
//!   slot) and sent again with backoff until answered or their lease ends;
//! - the first SIGTERM/SIGINT stops leasing (a waiting lease request is
//!   dropped, so the server withdraws it) and the worker exits once every
//!   running job is finished and reported; a second kills the jobs' process
//!   groups and exits at once.

mod api;
mod backoff;
mod buffer;
mod events;
mod schedule;
mod worker;

use std::net::ToSocketAddrs as _;

use beaver_runtime::executor::ExecExecutor;

pub use backoff::{Backoff, Jitter};
pub use buffer::{Pending, Report, Results};
pub use events::Event;
pub use schedule::LeaseClock;

/// Jobs one worker process runs at once, at most.
pub const CONCURRENCY_MAX: u16 = 1_000;
/// Queues one worker serves, at most (the lease request's limit).
pub const QUEUES_MAX: usize = 16;
/// How long one lease request waits on the server for a job.
pub const LEASE_WAIT_MS: u64 = 10_000;

/// The flags of `beaver work`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkArgs {
    /// The server's URL
    #[arg(long, env = "BEAVER_SERVER", value_name = "URL")]
    pub server: String,
    /// A queue to take jobs from (repeat for more, up to 16)
    #[arg(long = "queue", value_name = "Q", required = true)]
    pub queues: Vec<String>,
    /// Jobs run at once, 1 to 1000
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(CONCURRENCY_MAX)))]
    pub concurrency: u16,
    /// The shell command run per job (`/bin/sh -c CMD`; the payload on its stdin)
    #[arg(long, value_name = "CMD")]
    pub exec: String,
    /// Print one JSON object per event on stdout (the log stays on stderr)
    #[arg(long)]
    pub json: bool,
    /// The server's token, if it requires one
    #[arg(long, env = "BEAVER_TOKEN", hide_env_values = true, value_name = "T")]
    pub token: Option<String>,
}

/// Runs the worker until it is stopped by a signal; `Err` if it cannot
/// start or the server refuses it for good (a bad token, a bad queue name).
pub fn run(args: &WorkArgs) -> Result<(), String> {
    if args.queues.len() > QUEUES_MAX {
        return Err(format!(
            "at most {QUEUES_MAX} --queue, got {}",
            args.queues.len()
        ));
    }
    for q in &args.queues {
        beaver_core::QueueName::parse(q).map_err(|e| format!("--queue {q}: {e}"))?;
    }
    beaver_runtime::executor::check_runnable(&args.exec).map_err(|e| format!("--exec: {e}"))?;
    let exec = ExecExecutor::new(args.exec.clone()).map_err(|e| format!("--exec: {e}"))?;
    let target = target(&args.server, args.token.clone())?;
    let config = worker::Config {
        target,
        url: args.server.clone(),
        queues: args.queues.clone(),
        concurrency: usize::from(args.concurrency),
        exec,
        json: args.json,
        name: worker_name(),
        wait_ms: LEASE_WAIT_MS,
    };
    // One thread: a worker waits on the network and its commands, and the
    // commands' parent-death signal follows the thread that spawned them,
    // which here lives as long as the process.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(worker::run(config))
}

/// Parses `http://HOST:PORT` as the command-line client does.
fn target(url: &str, token: Option<String>) -> Result<api::Target, String> {
    let server = crate::client::Server::new(url, None).map_err(|e| e.to_string())?;
    let host = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string();
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--server {}: {e}", server.url))?
        .next()
        .ok_or_else(|| format!("--server {}: it names no address", server.url))?;
    Ok(api::Target { addr, host, token })
}

/// `HOST/pid-PID`, at most 128 bytes of printable text, for the server's
/// list of leases.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = format!("{}/pid-{}", host.trim(), std::process::id());
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn worker_names_are_short_and_printable() {
        let n = worker_name();
        assert!(n.len() <= 128 && n.contains("/pid-"), "{n}");
        assert!(!n.chars().any(char::is_control));
    }

    #[test]
    fn targets_parse() {
        let t = target("http://127.0.0.1:7070/", Some("t".into())).unwrap();
        assert_eq!((t.host.as_str(), t.addr.port()), ("127.0.0.1:7070", 7070));
        assert!(target("https://x:1", None).is_err());
    }
}
