//! Fixtures of the transition tests: one configuration, and the exact
//! effects it produces, built in one place.

// Each test file uses a different part of these.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // fixtures of tests: a failure is the point

use std::sync::Arc;

use beaver_core::testing::{Driver, job_id};
use beaver_core::{
    Config, Effect, Enqueued, Execution, JobId, JobSpec, NewJob, Op, Payload, QueueName, Record,
    Rejection, Reply, RequestId, RetryPolicy,
};

pub fn id(s: &str) -> JobId {
    job_id(s)
}

pub fn payload(s: &str) -> Payload {
    Payload::from_json(s.as_bytes()).unwrap()
}

/// A job with id `i` and payload `1`.
pub fn spec(i: &str) -> JobSpec {
    JobSpec::new(payload("1")).with_id(id(i))
}

/// One worker, no prefetch, two attempts of 100 ms (a lease of 110 ms),
/// a retry after 500 to 1,000 ms.
pub fn config() -> Config {
    Config {
        workers: 1,
        prefetch: 0,
        default_max_attempts: 2,
        default_timeout_ms: 100,
        lease_slack_ms: 10,
        retry: RetryPolicy {
            base_ms: 1_000,
            max_ms: 1_000,
        },
        ..Config::default()
    }
}

/// [`config`] without pool workers: jobs stay where the test puts them.
pub fn no_workers() -> Config {
    Config {
        workers: 0,
        ..config()
    }
}

/// The retry delay of attempt `attempt` of job `i` under [`config`].
pub fn backoff(i: &str, attempt: u32) -> u64 {
    beaver_core::retry::backoff_ms(&config().retry, &id(i), attempt)
}

/// Enqueues `a` at t=10 and makes it durable at t=11 (its dispatch is LSN 2,
/// not yet durable).
pub fn with_one_job() -> Driver {
    let mut d = Driver::new(config());
    d.at(10).enqueue(1, vec![spec("a")]);
    d.at(11).durable(1);
    d
}

/// [`with_one_job`], its dispatch durable at t=12: `a` attempt 1 is
/// handed out (not started).
pub fn with_one_attempt() -> Driver {
    let mut d = with_one_job();
    d.at(12).durable(2);
    d
}

pub fn append(lsn: u64, at: u64, op: Op) -> Effect {
    Effect::Append(Arc::new(Record { lsn, at, op }))
}

/// Job `i` as [`config`] resolves `spec(i)` at time `at`.
pub fn new_job(i: &str, at: u64) -> NewJob {
    NewJob {
        id: id(i),
        queue: QueueName::default(),
        payload: payload("1"),
        priority: 0,
        max_attempts: 2,
        timeout_ms: 100,
        run_at: at,
    }
}

/// The enqueue record of `spec(i)` for each of `ids`.
pub fn enqueue(lsn: u64, at: u64, ids: &[&str]) -> Effect {
    let jobs = ids.iter().map(|i| new_job(i, at)).collect();
    append(lsn, at, Op::Enqueue { jobs })
}

/// The acknowledgement of an enqueue: `(id, duplicate)` per job.
pub fn ok(req: u64, ids: &[(&str, bool)]) -> Effect {
    Effect::Reply {
        req: RequestId(req),
        reply: Reply::Enqueued(Ok(ids
            .iter()
            .map(|&(i, duplicate)| Enqueued {
                id: id(i),
                duplicate,
            })
            .collect())),
    }
}

pub fn reply(req: u64, reply: Reply) -> Effect {
    Effect::Reply {
        req: RequestId(req),
        reply,
    }
}

/// The dispatch record of attempt `attempt` of `i` proposed at `at` for
/// a free worker (it counts at once).
pub fn dispatch(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    dispatch_op(lsn, at, i, attempt, true)
}

/// The dispatch record of attempt `attempt` of `i` proposed at `at` ahead
/// of a free worker (it counts once started).
pub fn dispatch_ahead(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    dispatch_op(lsn, at, i, attempt, false)
}

fn dispatch_op(lsn: u64, at: u64, i: &str, attempt: u32, started: bool) -> Effect {
    append(
        lsn,
        at,
        Op::Dispatch {
            id: id(i),
            attempt,
            lease_until: at + 110,
            started,
        },
    )
}

/// The start record of attempt `attempt` of `i`, dispatched ahead.
pub fn start(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    append(lsn, at, Op::Start { id: id(i), attempt })
}

pub fn execute(i: &str, attempt: u32) -> Effect {
    Effect::Execute(Execution {
        id: id(i),
        attempt,
        payload: payload("1"),
        timeout_ms: 100,
    })
}

pub fn abort(i: &str, attempt: u32) -> Effect {
    Effect::Abort { id: id(i), attempt }
}

pub fn complete(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    append(lsn, at, Op::Complete { id: id(i), attempt })
}

pub fn fail(
    lsn: u64,
    at: u64,
    i: &str,
    attempt: u32,
    error: &str,
    retry_at: Option<u64>,
) -> Effect {
    append(
        lsn,
        at,
        Op::Fail {
            id: id(i),
            attempt,
            error: error.into(),
            retry_at,
        },
    )
}

/// The one rejection of an enqueue in `out`; panics on anything else.
pub fn rejection(out: Vec<Effect>) -> Rejection {
    match out.as_slice() {
        [
            Effect::Reply {
                reply: Reply::Enqueued(Err(r)),
                ..
            },
        ] => r.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The reply that `out` consists of; panics on anything else.
pub fn only_reply(out: &[Effect]) -> &Reply {
    match out {
        [Effect::Reply { reply, .. }] => reply,
        other => panic!("expected one reply, got {other:?}"),
    }
}

/// The records among `out`.
pub fn appended(out: &[Effect]) -> Vec<Arc<Record>> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Append(r) => Some(Arc::clone(r)),
            _ => None,
        })
        .collect()
}
