//! What the worker tells people and scripts: every event goes to the log
//! (tracing, on stderr), and with `--json` also to stdout as one JSON
//! object per line (`schema_version`, `event`, `at_ms`, then the event's
//! fields, none left out: `null` where one does not apply).

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::schema::SCHEMA_VERSION;

/// One thing the worker did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// It started serving these queues.
    Started {
        /// The server's URL.
        server: &'a str,
        /// The queues.
        queues: &'a [String],
        /// Jobs run at once at most.
        concurrency: usize,
    },
    /// A job was leased and its command started.
    Leased(&'a Lease<'a>),
    /// The server recorded the job completed.
    Completed(&'a Lease<'a>),
    /// The server recorded the attempt failed with this error.
    Failed(&'a Lease<'a>, &'a str),
    /// The lease is no longer this worker's: the job's process was stopped
    /// (or its result dropped) and it is not reported.
    Lost(&'a Lease<'a>, &'a str),
    /// The server refused a report for another reason; it is dropped.
    Refused(&'a Lease<'a>, &'a str),
    /// The server could not be reached; the next try is in `retry_in_ms`.
    Unreachable {
        /// What failed.
        error: &'a str,
        /// When the worker tries again.
        retry_in_ms: u64,
    },
    /// The server answered again after being unreachable.
    Reachable,
    /// A first signal: no more leases; the running jobs finish.
    Stopping {
        /// Jobs still running or waiting to be reported.
        running: usize,
    },
    /// A second signal: the running jobs were killed.
    Killed {
        /// How many.
        running: usize,
    },
    /// The worker exits.
    Stopped,
}

/// The job a lease event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease<'a> {
    /// The lease id.
    pub lease_id: &'a str,
    /// The job's id.
    pub id: &'a str,
    /// Its queue.
    pub queue: &'a str,
    /// Its attempt.
    pub attempt: u32,
}

impl Event<'_> {
    /// The event as one JSON object.
    pub fn doc(&self, at_ms: u64) -> Value {
        let (name, fields) = match self {
            Event::Started {
                server,
                queues,
                concurrency,
            } => (
                "started",
                json!({"server": server, "queues": queues, "concurrency": concurrency}),
            ),
            Event::Leased(l) => ("leased", lease_fields(l, None)),
            Event::Completed(l) => ("completed", lease_fields(l, None)),
            Event::Failed(l, e) => ("failed", lease_fields(l, Some(e))),
            Event::Lost(l, e) => ("lost", lease_fields(l, Some(e))),
            Event::Refused(l, e) => ("refused", lease_fields(l, Some(e))),
            Event::Unreachable { error, retry_in_ms } => (
                "server_unreachable",
                json!({"error": error, "retry_in_ms": retry_in_ms}),
            ),
            Event::Reachable => ("server_reachable", json!({})),
            Event::Stopping { running } => ("stopping", json!({"running": running})),
            Event::Killed { running } => ("killed", json!({"running": running})),
            Event::Stopped => ("stopped", json!({})),
        };
        let mut doc = json!({"schema_version": SCHEMA_VERSION, "event": name, "at_ms": at_ms});
        if let (Some(d), Value::Object(f)) = (doc.as_object_mut(), fields) {
            d.extend(f);
        }
        doc
    }

    /// Logs the event, and with `json` prints its line on stdout.
    pub fn emit(&self, json: bool) {
        self.log();
        if json {
            let line = self.doc(now_ms()).to_string();
            let mut out = std::io::stdout().lock();
            // A closed stdout (`| head`) must not stop the jobs: the log has it.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }

    fn log(&self) {
        match self {
            Event::Started {
                server,
                queues,
                concurrency,
            } => tracing::info!(%server, ?queues, concurrency, "serving"),
            Event::Leased(l) => tracing::info!(
                lease = l.lease_id,
                job = l.id,
                queue = l.queue,
                attempt = l.attempt,
                "leased"
            ),
            Event::Completed(l) => tracing::info!(
                lease = l.lease_id,
                job = l.id,
                attempt = l.attempt,
                "completed"
            ),
            Event::Failed(l, e) => tracing::info!(
                lease = l.lease_id,
                job = l.id,
                attempt = l.attempt,
                error = e,
                "failed"
            ),
            Event::Lost(l, e) => tracing::warn!(
                lease = l.lease_id,
                job = l.id,
                attempt = l.attempt,
                why = e,
                "lease lost: not reported"
            ),
            Event::Refused(l, e) => tracing::warn!(
                lease = l.lease_id,
                job = l.id,
                attempt = l.attempt,
                error = e,
                "report refused, dropped"
            ),
            Event::Unreachable { error, retry_in_ms } => {
                tracing::warn!(error, retry_in_ms, "server unreachable")
            }
            Event::Reachable => tracing::info!("server reachable again"),
            Event::Stopping { running } => tracing::info!(
                running,
                "stopping: no more leases, finishing the running jobs (a second signal kills them)"
            ),
            Event::Killed { running } => {
                tracing::warn!(running, "second signal: running jobs killed")
            }
            Event::Stopped => tracing::info!("stopped"),
        }
    }
}

fn lease_fields(l: &Lease<'_>, error: Option<&str>) -> Value {
    json!({"lease_id": l.lease_id, "id": l.id, "queue": l.queue, "attempt": l.attempt, "error": error})
}

/// The wall clock in unix milliseconds (0 if it is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_every_field() {
        let l = Lease {
            lease_id: "12",
            id: "j",
            queue: "q",
            attempt: 2,
        };
        let d = Event::Failed(&l, "exit status 1").doc(5);
        assert_eq!(
            d.to_string(),
            r#"{"at_ms":5,"attempt":2,"error":"exit status 1","event":"failed","id":"j","lease_id":"12","queue":"q","schema_version":1}"#
        );
        assert_eq!(Event::Completed(&l).doc(5)["error"], Value::Null);
        let u = Event::Unreachable {
            error: "refused",
            retry_in_ms: 200,
        }
        .doc(1);
        assert_eq!(u["event"], "server_unreachable");
        assert_eq!(u["retry_in_ms"], 200);
    }
}
