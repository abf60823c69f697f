//! One scenario per test: the exact effects of each transition.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::sync::Arc;

use beaver_core::{
    Config, Core, Effect, Enqueued, Execution, Input, JobId, JobSpec, JobState, Limits, NewJob, Op,
    Outcome, Payload, QueueName, Record, Rejection, Reply, RequestId, RequeueTarget, Retention,
    RetryPolicy,
};

fn id(s: &str) -> JobId {
    JobId::parse(s).unwrap()
}

fn payload(s: &str) -> Payload {
    Payload::from_json(s.as_bytes()).unwrap()
}

fn spec(i: &str) -> JobSpec {
    JobSpec::new(payload("1")).with_id(id(i))
}

fn config() -> Config {
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

/// A queue on a scripted timeline.
struct Script {
    q: Core,
}

impl Script {
    fn new(config: Config) -> Script {
        Script {
            q: Core::new(config),
        }
    }

    fn step(&mut self, now: u64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        self.q.step(now, input, &mut out);
        self.q.check_invariants().unwrap();
        out
    }

    fn enqueue(&mut self, now: u64, req: u64, jobs: Vec<JobSpec>) -> Vec<Effect> {
        self.step(
            now,
            Input::Enqueue {
                req: RequestId(req),
                jobs,
            },
        )
    }

    fn durable(&mut self, now: u64, upto: u64) -> Vec<Effect> {
        self.step(now, Input::Durable { upto })
    }
}

fn append(lsn: u64, at: u64, op: Op) -> Effect {
    Effect::Append(Arc::new(Record { lsn, at, op }))
}

fn new_job(i: &str, at: u64) -> NewJob {
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

fn ok(req: u64, ids: &[(&str, bool)]) -> Effect {
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

fn dispatch(lsn: u64, at: u64, i: &str, attempt: u32) -> Effect {
    append(
        lsn,
        at,
        Op::Dispatch {
            id: id(i),
            attempt,
            lease_until: at + 110,
        },
    )
}

fn execute(i: &str, attempt: u32) -> Effect {
    Effect::Execute(Execution {
        id: id(i),
        attempt,
        payload: payload("1"),
        timeout_ms: 100,
    })
}

/// Enqueues `a` at t=10 and makes it durable at t=11 (its dispatch is LSN 2).
fn with_one_job() -> Script {
    let mut s = Script::new(config());
    s.enqueue(10, 1, vec![spec("a")]);
    s.durable(11, 1);
    s
}

#[test]
fn enqueue_is_acknowledged_only_after_durable_then_dispatched() {
    let mut s = Script::new(config());
    assert_eq!(
        s.enqueue(10, 1, vec![spec("a")]),
        vec![append(
            1,
            10,
            Op::Enqueue {
                jobs: vec![new_job("a", 10)]
            }
        )]
    );
    assert_eq!(s.q.job("a"), None, "not visible before durable");
    assert_eq!(
        s.durable(11, 1),
        vec![ok(1, &[("a", false)]), dispatch(2, 11, "a", 1)]
    );
    assert_eq!(s.q.job("a").unwrap().state, JobState::Pending);
    assert_eq!(s.durable(12, 2), vec![execute("a", 1)]);
    assert_eq!(s.q.job("a").unwrap().state, JobState::InFlight);
}

#[test]
fn dispatch_runs_ahead_by_prefetch() {
    let mut s = Script::new(Config {
        prefetch: 2,
        ..config()
    });
    s.enqueue(10, 1, vec![spec("a"), spec("b"), spec("c"), spec("d")]);
    let out = s.durable(11, 1);
    assert_eq!(
        out,
        vec![
            ok(1, &[("a", false), ("b", false), ("c", false), ("d", false)]),
            dispatch(2, 11, "a", 1),
            dispatch(3, 11, "b", 1),
            dispatch(4, 11, "c", 1),
        ],
        "one worker plus two prefetched"
    );
    // The worker finishes `a` before `b`'s dispatch is durable: `d` is proposed at once.
    s.durable(12, 2);
    let out = s.step(
        13,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Succeeded,
        },
    );
    assert_eq!(
        out,
        vec![
            append(
                5,
                13,
                Op::Complete {
                    id: id("a"),
                    attempt: 1
                }
            ),
            dispatch(6, 13, "d", 1)
        ]
    );
}

#[test]
fn success_completes_the_job() {
    let mut s = with_one_job();
    s.durable(12, 2);
    let out = s.step(
        20,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Succeeded,
        },
    );
    assert_eq!(
        out,
        vec![append(
            3,
            20,
            Op::Complete {
                id: id("a"),
                attempt: 1
            }
        )]
    );
    assert_eq!(s.durable(21, 3), vec![]);
    let job = s.q.job("a").unwrap();
    assert_eq!(
        (job.state, job.finished_at, job.payload),
        (JobState::Completed, Some(20), None)
    );
}

#[test]
fn failure_retries_with_backoff_then_dies() {
    let mut s = with_one_job();
    s.durable(12, 2);
    let out = s.step(
        20,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Failed("boom".into()),
        },
    );
    let backoff = beaver_core::retry::backoff_ms(&config().retry, &id("a"), 1);
    assert!((500..=1_000).contains(&backoff));
    let retry_at = 20 + backoff;
    assert_eq!(
        out,
        vec![append(
            3,
            20,
            Op::Fail {
                id: id("a"),
                attempt: 1,
                error: "boom".into(),
                retry_at: Some(retry_at)
            }
        )]
    );
    assert_eq!(s.durable(21, 3), vec![], "not ready before its backoff");
    assert_eq!(s.q.next_deadline(), Some(retry_at));
    assert_eq!(
        s.step(retry_at, Input::Tick),
        vec![dispatch(4, retry_at, "a", 2)]
    );
    s.durable(retry_at, 4);
    let out = s.step(
        retry_at + 5,
        Input::Outcome {
            id: id("a"),
            attempt: 2,
            outcome: Outcome::Failed("again".into()),
        },
    );
    assert_eq!(
        out,
        vec![append(
            5,
            retry_at + 5,
            Op::Fail {
                id: id("a"),
                attempt: 2,
                error: "again".into(),
                retry_at: None
            }
        )]
    );
    s.durable(retry_at + 6, 5);
    let job = s.q.job("a").unwrap();
    assert_eq!(
        (job.state, job.attempt, job.last_error.as_deref()),
        (JobState::Dead, 2, Some("again"))
    );
    assert_eq!(s.q.dead_jobs(10).len(), 1);
}

#[test]
fn timeout_is_a_failed_attempt() {
    let mut s = with_one_job();
    s.durable(12, 2);
    let out = s.step(
        50,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::TimedOut,
        },
    );
    let Effect::Append(r) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        matches!(&r.op, Op::Fail { error, retry_at: Some(_), .. } if error == "timed out after 100 ms")
    );
}

#[test]
fn an_expired_lease_aborts_the_attempt_and_fails_it() {
    let mut s = with_one_job();
    s.durable(12, 2);
    // The lease counts from the start, not from the dispatch.
    assert_eq!(s.q.next_deadline(), None);
    s.step(
        12,
        Input::Started {
            id: id("a"),
            attempt: 1,
        },
    );
    assert_eq!(s.q.next_deadline(), Some(122));
    assert_eq!(s.step(121, Input::Tick), vec![]);
    let out = s.step(122, Input::Tick);
    let backoff = beaver_core::retry::backoff_ms(&config().retry, &id("a"), 1);
    assert_eq!(
        out,
        vec![
            Effect::Abort {
                id: id("a"),
                attempt: 1
            },
            append(
                3,
                122,
                Op::Fail {
                    id: id("a"),
                    attempt: 1,
                    error: "lease expired: no outcome within 110 ms".into(),
                    retry_at: Some(122 + backoff)
                }
            ),
        ]
    );
    // The late outcome of the aborted attempt is ignored.
    assert_eq!(
        s.step(
            122,
            Input::Outcome {
                id: id("a"),
                attempt: 1,
                outcome: Outcome::Succeeded
            }
        ),
        vec![]
    );
}

#[test]
fn an_attempt_waiting_for_a_worker_has_no_deadline_until_it_starts() {
    let mut s = with_one_job();
    assert_eq!(s.durable(12, 2), vec![execute("a", 1)]);
    let lease = |s: &Script| {
        let st = s.q.status();
        assert_eq!(st.in_flight.len(), 1);
        let view = s.q.job("a").map(|j| j.lease_until);
        (st.in_flight[0].lease_until, view)
    };
    // Dispatched ahead of a free worker: it may wait any time.
    assert_eq!(s.step(50_000, Input::Tick), vec![]);
    assert_eq!(s.q.next_deadline(), None);
    assert_eq!(lease(&s), (None, Some(None)));
    // A start reported for another attempt is stale.
    let start = |attempt| Input::Started {
        id: id("a"),
        attempt,
    };
    s.step(50_000, start(2));
    assert_eq!(lease(&s), (None, Some(None)));
    s.step(50_000, start(1));
    assert_eq!(lease(&s), (Some(50_110), Some(Some(50_110))));
    // A second report does not move the deadline.
    s.step(50_100, start(1));
    assert_eq!(s.q.next_deadline(), Some(50_110));
    assert_eq!(s.step(50_109, Input::Tick), vec![]);
    assert!(matches!(
        s.step(50_110, Input::Tick).first(),
        Some(Effect::Abort { attempt: 1, .. })
    ));
}

#[test]
fn duplicate_before_durable_waits_for_the_original() {
    let mut s = Script::new(config());
    s.enqueue(10, 1, vec![spec("a")]);
    assert_eq!(
        s.enqueue(10, 2, vec![spec("a")]),
        vec![],
        "no second record, no early reply"
    );
    assert_eq!(
        s.durable(11, 1),
        vec![
            ok(1, &[("a", false)]),
            ok(2, &[("a", true)]),
            dispatch(2, 11, "a", 1)
        ]
    );
}

#[test]
fn duplicate_after_durable_answers_at_once() {
    let mut s = with_one_job();
    assert_eq!(
        s.enqueue(12, 2, vec![spec("a")]),
        vec![ok(2, &[("a", true)])]
    );
}

#[test]
fn a_batch_mixing_new_and_known_ids_adds_only_the_new() {
    let mut s = with_one_job();
    let out = s.enqueue(12, 2, vec![spec("a"), spec("b")]);
    assert_eq!(
        out,
        vec![append(
            3,
            12,
            Op::Enqueue {
                jobs: vec![new_job("b", 12)]
            }
        )]
    );
    assert_eq!(
        s.durable(13, 3),
        vec![execute("a", 1), ok(2, &[("a", true), ("b", false)])]
    );
}

#[test]
fn append_failure_releases_reservations_and_answers_with_the_error() {
    let mut s = Script::new(config());
    s.enqueue(10, 1, vec![spec("a")]);
    s.enqueue(10, 2, vec![spec("a")]);
    let out = s.step(
        11,
        Input::AppendFailed {
            from_lsn: 1,
            error: "no space left on device".into(),
        },
    );
    let err = || {
        Reply::Enqueued(Err(Rejection::Storage {
            reason: "no space left on device".into(),
        }))
    };
    assert_eq!(
        out,
        vec![
            Effect::Reply {
                req: RequestId(1),
                reply: err()
            },
            Effect::Reply {
                req: RequestId(2),
                reply: err()
            }
        ]
    );
    // LSN 1 is reissued, and the id is free again.
    assert_eq!(
        s.enqueue(12, 3, vec![spec("a")]),
        vec![append(
            1,
            12,
            Op::Enqueue {
                jobs: vec![new_job("a", 12)]
            }
        )]
    );
}

#[test]
fn append_failure_of_a_dispatch_returns_the_job_to_ready_after_a_pause() {
    let mut s = with_one_job();
    assert_eq!(
        s.step(
            12,
            Input::AppendFailed {
                from_lsn: 2,
                error: "full".into()
            }
        ),
        vec![]
    );
    assert_eq!(
        s.q.next_deadline(),
        None,
        "nothing timed; the next input retries"
    );
    assert_eq!(
        s.step(500, Input::Tick),
        vec![],
        "internal proposals pause after a failed append"
    );
    assert_eq!(s.step(1_012, Input::Tick), vec![dispatch(2, 1_012, "a", 1)]);
}

#[test]
fn append_failure_of_an_outcome_proposes_it_again_later() {
    let mut s = with_one_job();
    s.durable(12, 2);
    s.step(
        20,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Succeeded,
        },
    );
    assert_eq!(
        s.step(
            21,
            Input::AppendFailed {
                from_lsn: 3,
                error: "full".into()
            }
        ),
        vec![]
    );
    assert_eq!(s.q.next_deadline(), Some(1_021));
    assert_eq!(
        s.step(1_021, Input::Tick),
        vec![append(
            3,
            1_021,
            Op::Complete {
                id: id("a"),
                attempt: 1
            }
        )]
    );
}

#[test]
fn requeue_one_dead_job_keeps_its_payload() {
    let mut s = Script::new(Config {
        default_max_attempts: 1,
        ..config()
    });
    s.enqueue(10, 1, vec![spec("a")]);
    s.durable(11, 1);
    s.durable(12, 2);
    s.step(
        13,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Failed("x".into()),
        },
    );
    s.durable(14, 3);
    assert_eq!(s.q.job("a").unwrap().state, JobState::Dead);
    let out = s.step(
        15,
        Input::Requeue {
            req: RequestId(9),
            target: RequeueTarget::One(id("a")),
        },
    );
    assert_eq!(out, vec![append(4, 15, Op::Requeue { ids: vec![id("a")] })]);
    let out = s.durable(16, 4);
    assert_eq!(
        out,
        vec![
            Effect::Reply {
                req: RequestId(9),
                reply: Reply::Requeued(Ok(1))
            },
            dispatch(5, 16, "a", 1)
        ]
    );
    let job = s.q.job("a").unwrap();
    assert_eq!(
        (job.state, job.attempt, job.payload),
        (JobState::Pending, 0, Some(payload("1")))
    );
}

#[test]
fn requeue_all_dead_and_requeue_of_a_live_job() {
    let mut s = Script::new(Config {
        default_max_attempts: 1,
        workers: 2,
        ..config()
    });
    s.enqueue(10, 1, vec![spec("a"), spec("b"), spec("c")]);
    s.durable(11, 1);
    s.durable(12, 3);
    for (i, j) in ["a", "b"].iter().enumerate() {
        s.step(
            13,
            Input::Outcome {
                id: id(j),
                attempt: 1,
                outcome: Outcome::Failed("x".into()),
            },
        );
        let _ = i;
    }
    s.durable(14, 6);
    let out = s.step(
        15,
        Input::Requeue {
            req: RequestId(7),
            target: RequeueTarget::One(id("c")),
        },
    );
    let Effect::Reply {
        reply: Reply::Requeued(Err(Rejection::Conflict { reason })),
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert!(reason.contains("only dead jobs"), "{reason}");
    let out = s.step(
        15,
        Input::Requeue {
            req: RequestId(8),
            target: RequeueTarget::AllDead,
        },
    );
    assert_eq!(out.len(), 1);
    let Effect::Append(r) = &out[0] else { panic!() };
    let Op::Requeue { ids } = &r.op else { panic!() };
    assert_eq!(ids.len(), 2);
    let out = s.durable(16, r.lsn);
    assert_eq!(
        out[0],
        Effect::Reply {
            req: RequestId(8),
            reply: Reply::Requeued(Ok(2))
        }
    );
}

#[test]
fn cancel_pending_running_finished_and_unknown() {
    let mut s = Script::new(config());
    s.enqueue(10, 1, vec![spec("a"), spec("b")]);
    s.durable(11, 1); // `a` is being dispatched; `b` waits
    let out = s.step(
        12,
        Input::Cancel {
            req: RequestId(2),
            id: id("b"),
        },
    );
    assert_eq!(out, vec![append(3, 12, Op::Cancel { id: id("b") })]);
    assert_eq!(
        s.durable(13, 3),
        vec![
            execute("a", 1),
            Effect::Reply {
                req: RequestId(2),
                reply: Reply::Cancelled(Ok(()))
            }
        ]
    );
    assert_eq!(s.q.job("b").unwrap().state, JobState::Cancelled);
    assert_eq!(
        s.step(
            14,
            Input::Cancel {
                req: RequestId(3),
                id: id("b")
            }
        ),
        vec![Effect::Reply {
            req: RequestId(3),
            reply: Reply::Cancelled(Ok(()))
        }],
        "cancelling twice is fine"
    );
    s.step(
        14,
        Input::Started {
            id: id("a"),
            attempt: 1,
        },
    );
    let out = s.step(
        14,
        Input::Cancel {
            req: RequestId(4),
            id: id("a"),
        },
    );
    assert!(
        matches!(&out[..], [Effect::Reply { reply: Reply::Cancelled(Err(Rejection::Conflict { reason })), .. }] if reason.contains("running"))
    );
    let out = s.step(
        14,
        Input::Cancel {
            req: RequestId(5),
            id: id("zz"),
        },
    );
    assert_eq!(
        out,
        vec![Effect::Reply {
            req: RequestId(5),
            reply: Reply::Cancelled(Err(Rejection::NotFound { id: id("zz") }))
        }]
    );
}

#[test]
fn an_attempt_waiting_for_a_worker_is_taken_back_when_its_job_is_cancelled() {
    let mut s = with_one_job();
    assert_eq!(s.durable(12, 2), vec![execute("a", 1)]);
    let out = s.step(
        13,
        Input::Cancel {
            req: RequestId(2),
            id: id("a"),
        },
    );
    assert_eq!(
        out,
        vec![
            Effect::Abort {
                id: id("a"),
                attempt: 1
            },
            append(3, 13, Op::Cancel { id: id("a") }),
        ],
        "taken back from the worker's queue, the cancel logged"
    );
    // A start reported for it now is stale: no lease, nothing to run.
    s.step(
        13,
        Input::Started {
            id: id("a"),
            attempt: 1,
        },
    );
    assert_eq!(s.q.next_deadline(), None);
    assert_eq!(
        s.durable(14, 3),
        vec![Effect::Reply {
            req: RequestId(2),
            reply: Reply::Cancelled(Ok(()))
        }]
    );
    let a = s.q.job("a").unwrap();
    assert_eq!(
        (a.state, a.attempt),
        (JobState::Cancelled, 0),
        "the attempt never ran"
    );
    s.q.check_invariants().unwrap();
}

#[test]
fn a_cancel_of_a_waiting_attempt_that_cannot_be_logged_gives_the_attempt_back() {
    let mut s = with_one_job();
    s.durable(12, 2);
    s.step(
        13,
        Input::Cancel {
            req: RequestId(2),
            id: id("a"),
        },
    );
    let out = s.step(
        13,
        Input::AppendFailed {
            from_lsn: 3,
            error: "no space".into(),
        },
    );
    assert!(
        matches!(
            &out[..],
            [Effect::Reply {
                reply: Reply::Cancelled(Err(_)),
                ..
            }]
        ),
        "{out:?}"
    );
    // Once the log takes records again the attempt is released, uncounted,
    // and the job runs.
    let out = s.step(2_000, Input::Tick);
    assert_eq!(
        out.first(),
        Some(&append(
            3,
            2_000,
            Op::Release {
                id: id("a"),
                attempt: 1
            }
        )),
        "{out:?}"
    );
}

#[test]
fn each_limit_is_answered_with_a_reason() {
    let limits = Limits {
        pending_jobs_max: 2,
        payload_bytes_max: 8,
        batch_jobs_max: 3,
        batch_bytes_max: 12,
        pending_payload_bytes_max: 100,
        ..Limits::default()
    };
    let mut s = Script::new(Config { limits, ..config() });
    let reject = |out: Vec<Effect>| match out.as_slice() {
        [
            Effect::Reply {
                reply: Reply::Enqueued(Err(r)),
                ..
            },
        ] => r.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    };
    let r = reject(s.enqueue(1, 1, vec![]));
    assert!(
        matches!(&r, Rejection::Invalid { field, .. } if field == "jobs"),
        "{r:?}"
    );
    let r = reject(s.enqueue(1, 1, vec![spec("a"), spec("b"), spec("c"), spec("d")]));
    assert!(
        matches!(&r, Rejection::TooLarge { index: None, reason } if reason.contains("4 jobs")),
        "{r:?}"
    );
    let big = JobSpec::new(payload("\"123456789\""));
    let r = reject(s.enqueue(1, 1, vec![spec("a"), big]));
    assert!(
        matches!(&r, Rejection::TooLarge { index: Some(1), reason } if reason.contains("11 bytes")),
        "{r:?}"
    );
    let r = reject(s.enqueue(
        1,
        1,
        vec![
            JobSpec::new(payload("1234567")),
            JobSpec::new(payload("1234567")),
        ],
    ));
    assert!(
        matches!(&r, Rejection::TooLarge { index: None, reason } if reason.contains("14 bytes")),
        "{r:?}"
    );
    let r = reject(s.enqueue(
        1,
        1,
        vec![JobSpec {
            max_attempts: Some(0),
            ..spec("a")
        }],
    ));
    assert!(
        matches!(&r, Rejection::Invalid { index: Some(0), field, .. } if field == "max_attempts"),
        "{r:?}"
    );
    let r = reject(s.enqueue(
        1,
        1,
        vec![JobSpec {
            timeout_ms: Some(0),
            ..spec("a")
        }],
    ));
    assert!(
        matches!(&r, Rejection::Invalid { field, .. } if field == "timeout_ms"),
        "{r:?}"
    );
    let r = reject(s.enqueue(1, 1, vec![spec("a"), spec("a")]));
    assert!(
        matches!(&r, Rejection::Invalid { index: Some(1), field, reason } if field == "id" && reason.contains("twice")),
        "{r:?}"
    );
    let r = reject(s.enqueue(1, 1, vec![spec("a"), spec("b"), spec("c")]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("limit is 2")),
        "{r:?}"
    );
    assert_eq!(s.q.next_lsn(), 1, "no rejected batch left a record");
    s.step(1, Input::DiskFull(true));
    let r = reject(s.enqueue(1, 1, vec![spec("a")]));
    assert!(
        matches!(&r, Rejection::Busy { reason, .. } if reason.contains("disk is full")),
        "{r:?}"
    );
    s.step(1, Input::DiskFull(false));
    assert_eq!(s.enqueue(1, 1, vec![spec("a")]).len(), 1);
}

#[test]
fn retention_purges_by_age_and_count_and_remembers_ids() {
    let retention = Retention {
        finished_age_ms: 1_000,
        finished_count_max: 1,
    };
    let mut s = Script::new(Config {
        retention,
        workers: 0,
        ..config()
    });
    s.enqueue(10, 1, vec![spec("a"), spec("b")]);
    s.durable(11, 1);
    s.step(
        12,
        Input::Cancel {
            req: RequestId(2),
            id: id("a"),
        },
    );
    s.durable(13, 2);
    assert_eq!(
        s.q.next_deadline(),
        Some(12 + 1_000),
        "finished at the cancel record's time"
    );
    s.step(
        14,
        Input::Cancel {
            req: RequestId(3),
            id: id("b"),
        },
    );
    let out = s.durable(15, 3);
    // Two finished, one allowed: the older is purged at once.
    assert_eq!(
        out[1],
        append(
            4,
            15,
            Op::Purge {
                jobs: vec![id("a")],
                forget: vec![]
            }
        )
    );
    s.durable(16, 4);
    assert_eq!(s.q.job("a"), None);
    assert_eq!(
        s.enqueue(17, 4, vec![spec("a")]),
        vec![ok(4, &[("a", true)])],
        "purged ids still deduplicate"
    );
    assert_eq!(
        s.step(15 + 1_000, Input::Tick),
        vec![append(
            5,
            1_015,
            Op::Purge {
                jobs: vec![id("b")],
                forget: vec![]
            }
        )]
    );
    s.durable(1_016, 5);
    assert_eq!(s.q.stats().remembered_ids, 2);
}

#[test]
fn dedup_window_forgets_ids_and_the_cap_forgets_early() {
    let mut c = Config {
        workers: 0,
        ..config()
    };
    c.retention = Retention {
        finished_age_ms: 0,
        finished_count_max: 10,
    };
    c.dedup.window_ms = 5_000;
    c.dedup.ids_max = 1;
    let mut s = Script::new(c);
    s.enqueue(10, 1, vec![spec("a"), spec("b")]);
    s.durable(10, 1);
    s.step(
        10,
        Input::Cancel {
            req: RequestId(2),
            id: id("a"),
        },
    );
    let out = s.durable(10, 2);
    assert_eq!(
        out[1],
        append(
            3,
            10,
            Op::Purge {
                jobs: vec![id("a")],
                forget: vec![]
            }
        )
    );
    s.durable(10, 3);
    s.step(
        11,
        Input::Cancel {
            req: RequestId(3),
            id: id("b"),
        },
    );
    let out = s.durable(11, 4);
    assert_eq!(
        out[1],
        append(
            5,
            11,
            Op::Purge {
                jobs: vec![id("b")],
                forget: vec![id("a")]
            }
        ),
        "the cap forgets `a` early"
    );
    s.durable(11, 5);
    assert_eq!(s.q.stats().totals.dedup_early_expiries, 1);
    assert_eq!(
        s.step(5_011, Input::Tick),
        vec![append(
            6,
            5_011,
            Op::Purge {
                jobs: vec![],
                forget: vec![id("b")]
            }
        )]
    );
    s.durable(5_011, 6);
    assert_eq!(
        s.enqueue(5_012, 4, vec![spec("b")]).len(),
        1,
        "a forgotten id is new again"
    );
}

#[test]
fn clock_going_back_is_clamped_and_reorders_nothing() {
    let mut s = with_one_job();
    s.durable(12, 2);
    let out = s.step(
        5,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::Succeeded,
        },
    );
    assert_eq!(
        out,
        vec![append(
            3,
            12,
            Op::Complete {
                id: id("a"),
                attempt: 1
            }
        )],
        "time 5 is read as 12"
    );
    assert_eq!(s.q.now(), 12);
}

#[test]
fn delayed_jobs_wait_for_run_at_and_priority_orders_ready_jobs() {
    let mut s = Script::new(Config {
        workers: 0,
        ..config()
    });
    let mut late = spec("late");
    late.delay_ms = 100;
    let mut high = spec("high");
    high.priority = 5;
    s.enqueue(10, 1, vec![late, spec("low"), high]);
    s.durable(10, 1);
    assert_eq!(s.q.next_deadline(), Some(110));
    let mut s2 = Script {
        q: Core::recover(
            Config {
                workers: 1,
                ..config()
            },
            Some(s.q.snapshot()),
            [],
        )
        .unwrap(),
    };
    let out = s2.step(20, Input::Tick);
    assert_eq!(
        out,
        vec![dispatch(2, 20, "high", 1)],
        "higher priority first"
    );
}

#[test]
fn a_rebuild_indexes_its_ids_at_its_end_or_first_step_and_finds_them_before() {
    let assigned = |seq: u64| NewJob {
        id: JobId::assigned(seq),
        ..new_job("x", 10)
    };
    let enqueue = |lsn: u64, jobs: Vec<NewJob>| Record {
        lsn,
        at: 10,
        op: Op::Enqueue { jobs },
    };
    let log = vec![
        enqueue(1, (1..=300).map(assigned).collect()),
        enqueue(2, (301..=600).map(assigned).collect()),
    ];
    let rebuilt = |log: &[Record]| {
        let mut q = Core::new(config());
        for r in log {
            q.apply_owned(r.clone()).unwrap();
        }
        q
    };
    let mut q = rebuilt(&log);
    assert_eq!(
        q.ids_awaiting_index(),
        600,
        "assigned ids wait for one pass"
    );
    assert_eq!(q.job("~457").map(|j| j.state), Some(JobState::Pending));
    assert!(q.job("~601").is_none());
    q.check_invariants().unwrap();
    q.finish_rebuild();
    assert_eq!(q.ids_awaiting_index(), 0);
    assert_eq!(q.job("~457").map(|j| j.state), Some(JobState::Pending));
    assert_eq!(
        q.snapshot(),
        Core::recover(config(), None, log.clone())
            .unwrap()
            .snapshot()
    );

    // Without `finish_rebuild`, the first step indexes them.
    let mut s = Script { q: rebuilt(&log) };
    s.step(20, Input::Tick);
    assert_eq!(s.q.ids_awaiting_index(), 0);
    s.q.check_invariants().unwrap();

    // A client's id is checked against every job: a record naming one
    // indexes what waits first, and a duplicate is still refused.
    let mut q = rebuilt(&log);
    q.apply_owned(enqueue(3, vec![new_job("mine", 10)]))
        .unwrap();
    assert_eq!(q.ids_awaiting_index(), 1, "only the new record's job waits");
    let mut dup = new_job("mine", 10);
    dup.id = id("mine");
    let e = q.apply_owned(enqueue(4, vec![dup])).unwrap_err();
    assert!(e.reason.contains("job mine is enqueued twice"), "{e}");
    q.check_invariants().unwrap();
}

#[test]
fn recovery_fails_interrupted_attempts_so_they_count() {
    let mut s = with_one_job();
    s.durable(12, 2);
    let log: Vec<Record> = vec![
        Record {
            lsn: 1,
            at: 10,
            op: Op::Enqueue {
                jobs: vec![new_job("a", 10)],
            },
        },
        Record {
            lsn: 2,
            at: 11,
            op: Op::Dispatch {
                id: id("a"),
                attempt: 1,
                lease_until: 121,
            },
        },
    ];
    let mut r = Script {
        q: Core::recover(config(), None, log).unwrap(),
    };
    assert_eq!(
        r.q.snapshot(),
        s.q.snapshot(),
        "recovery gives exactly the applied state"
    );
    let out = r.step(30, Input::Tick);
    let backoff = beaver_core::retry::backoff_ms(&config().retry, &id("a"), 1);
    assert_eq!(
        out,
        vec![append(
            3,
            30,
            Op::Fail {
                id: id("a"),
                attempt: 1,
                error: "interrupted: beaver stopped while this attempt ran".into(),
                retry_at: Some(30 + backoff)
            }
        )]
    );
}

#[test]
fn graceful_stop_releases_unstarted_attempts_without_counting_them() {
    let mut s = with_one_job();
    s.durable(12, 2);
    assert_eq!(s.step(13, Input::StopDispatching), vec![]);
    let out = s.step(
        14,
        Input::Outcome {
            id: id("a"),
            attempt: 1,
            outcome: Outcome::NotStarted,
        },
    );
    assert_eq!(
        out,
        vec![append(
            3,
            14,
            Op::Release {
                id: id("a"),
                attempt: 1
            }
        )]
    );
    assert_eq!(s.durable(15, 3), vec![], "no dispatch while stopping");
    let job = s.q.job("a").unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Pending, 0));
    let out = s.enqueue(16, 9, vec![spec("z")]);
    assert_eq!(
        out,
        vec![Effect::Reply {
            req: RequestId(9),
            reply: Reply::Enqueued(Err(Rejection::Stopping))
        }]
    );
}

#[test]
fn assigned_ids_carry_the_reserved_prefix_and_clients_cannot_use_it() {
    let mut s = Script::new(config());
    s.enqueue(
        10,
        1,
        vec![JobSpec::new(payload("1")), JobSpec::new(payload("2"))],
    );
    let out = s.durable(10, 1);
    assert_eq!(out[0], ok(1, &[("~1", false), ("~2", false)]));
    assert!(JobId::from_client("~3").is_err());
}

#[test]
fn reads_answer_at_once_from_durable_state() {
    let mut s = with_one_job();
    let out = s.step(
        12,
        Input::Get {
            req: RequestId(5),
            id: id("a"),
        },
    );
    let [
        Effect::Reply {
            req: RequestId(5),
            reply: Reply::Job(Some(job)),
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(job.state, JobState::Pending);
    let out = s.step(12, Input::Status { req: RequestId(6) });
    let [
        Effect::Reply {
            reply: Reply::Status(st),
            ..
        },
    ] = out.as_slice()
    else {
        panic!()
    };
    assert_eq!(st.stats.jobs.pending, 1);
    assert_eq!(st.stats.proposed_lsn, 2);
    let out = s.step(
        12,
        Input::ListDead {
            req: RequestId(7),
            limit: 5,
        },
    );
    assert_eq!(
        out,
        vec![Effect::Reply {
            req: RequestId(7),
            reply: Reply::Dead(vec![])
        }]
    );
}

#[test]
fn recovery_refuses_records_that_do_not_fit_the_state() {
    let enqueue = Record {
        lsn: 1,
        at: 10,
        op: Op::Enqueue {
            jobs: vec![new_job("a", 10)],
        },
    };
    let cases = [
        (
            Op::Dispatch {
                id: id("a"),
                attempt: 2,
                lease_until: 99,
            },
            "dispatch names attempt 2",
        ),
        (
            Op::Complete {
                id: id("a"),
                attempt: 1,
            },
            "expected in_flight",
        ),
        (
            Op::Dispatch {
                id: id("zz"),
                attempt: 1,
                lease_until: 99,
            },
            "unknown",
        ),
        (Op::Requeue { ids: vec![id("a")] }, "expected dead"),
    ];
    for (op, why) in cases {
        let bad = Record { lsn: 2, at: 11, op };
        let e = Core::recover(config(), None, [enqueue.clone(), bad])
            .err()
            .expect("refused");
        assert!(e.to_string().contains(why), "{e}");
    }
    // A retry after the last allowed attempt is impossible.
    let log = [
        enqueue,
        Record {
            lsn: 2,
            at: 11,
            op: Op::Dispatch {
                id: id("a"),
                attempt: 1,
                lease_until: 99,
            },
        },
        Record {
            lsn: 3,
            at: 12,
            op: Op::Fail {
                id: id("a"),
                attempt: 1,
                error: "x".into(),
                retry_at: Some(20),
            },
        },
        Record {
            lsn: 4,
            at: 20,
            op: Op::Dispatch {
                id: id("a"),
                attempt: 2,
                lease_until: 99,
            },
        },
        Record {
            lsn: 5,
            at: 21,
            op: Op::Fail {
                id: id("a"),
                attempt: 2,
                error: "y".into(),
                retry_at: Some(30),
            },
        },
    ];
    let e = Core::recover(config(), None, log).err().expect("refused");
    assert!(e.to_string().contains("a retry is impossible"), "{e}");
}

/// Makes everything appended durable, failing every attempt it starts,
/// until nothing more happens; returns every record appended.
fn settle(s: &mut Script, now: u64, mut out: Vec<Effect>) -> Vec<Arc<Record>> {
    let mut records = Vec::new();
    loop {
        let mut upto = None;
        let mut next = Vec::new();
        for e in out {
            match e {
                Effect::Append(r) => {
                    upto = Some(r.lsn);
                    records.push(r);
                }
                Effect::Execute(x) => next.extend(s.step(
                    now,
                    Input::Outcome {
                        id: x.id,
                        attempt: x.attempt,
                        outcome: Outcome::Failed("x".into()),
                    },
                )),
                _ => {}
            }
        }
        match upto {
            Some(upto) => next.extend(s.durable(now, upto)),
            None if next.is_empty() => return records,
            None => {}
        }
        out = next;
    }
}

/// Jobs `from..to` with 120-byte ids.
fn long_ids(from: usize, to: usize) -> Vec<JobSpec> {
    (from..to).map(|i| spec(&format!("{i:0>120}"))).collect()
}

#[test]
fn records_are_sized_to_what_the_log_holds() {
    let max = beaver_core::record_size::RECORD_BYTES_MIN;
    let fits = |r: &Record| {
        let len = beaver_core::encode_record(r).len() as u64;
        assert!(len <= max, "a {len}-byte {} record", r.op.name());
    };
    let mut s = Script::new(Config {
        workers: 64,
        default_max_attempts: 1,
        retention: Retention {
            finished_age_ms: 1_000_000,
            finished_count_max: 1_000,
        },
        dedup: beaver_core::Dedup {
            window_ms: 1_000_000,
            ids_max: 0,
        },
        limits: Limits {
            record_bytes_max: max,
            ..Limits::default()
        },
        ..config()
    });
    // An enqueue that cannot fit is refused, naming the setting to change.
    let big = |n| JobSpec::new(payload(&format!("\"{}\"", "x".repeat(n))));
    let out = s.enqueue(10, 1, vec![big(1_990)]);
    let [
        Effect::Reply {
            reply: Reply::Enqueued(Err(Rejection::TooLarge { reason, .. })),
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert!(reason.contains("segment_bytes"), "{reason}");
    let out = s.enqueue(10, 2, vec![big(1_800)]);
    assert!(matches!(&out[..], [Effect::Append(_)]), "{out:?}");
    let mut records = settle(&mut s, 10, out);
    assert!(
        matches!(
            &s.enqueue(10, 3, long_ids(0, 20))[..],
            [Effect::Reply { .. }]
        ),
        "twenty 120-byte ids make a record too large"
    );
    for (req, from) in (4..).zip((0..40).step_by(8)) {
        let out = s.enqueue(10, req, long_ids(from, from + 8));
        records.extend(settle(&mut s, 11, out));
    }
    assert_eq!(s.q.stats().jobs.dead, 41);
    // Requeueing them all takes several records; the answer counts all.
    let out = s.step(
        12,
        Input::Requeue {
            req: RequestId(99),
            target: RequeueTarget::AllDead,
        },
    );
    let requeues: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Append(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(requeues.len() > 1, "{} requeue record", requeues.len());
    let out = s.durable(12, requeues.last().unwrap().lsn);
    assert!(
        out.contains(&Effect::Reply {
            req: RequestId(99),
            reply: Reply::Requeued(Ok(41))
        }),
        "{out:?}"
    );
    records.extend(requeues);
    records.extend(settle(&mut s, 13, out));
    // Dead again, then purged and forgotten in records that each fit.
    let out = s.step(1_000_100, Input::Tick);
    records.extend(settle(&mut s, 1_000_100, out));
    assert_eq!(s.q.stats().jobs.dead, 0, "all purged");
    assert_eq!(s.q.stats().remembered_ids, 0, "all forgotten");
    let purges = records.iter().filter(|r| r.op.name() == "purge").count();
    assert!(purges > 2, "{purges} purge records");
    records.iter().for_each(|r| fits(r));
}

#[test]
fn a_log_that_holds_enqueue_bytes_max_takes_every_batch_the_limits_allow() {
    let mut limits = Limits {
        batch_jobs_max: 5,
        payload_bytes_max: 300,
        batch_bytes_max: 1_000,
        ..Limits::default()
    };
    limits.record_bytes_max = beaver_core::record_size::enqueue_bytes_max(&limits);
    let mut s = Script::new(Config { limits, ..config() });
    // The worst batch: most jobs, longest ids and queue names, most bytes.
    let jobs = (0..5)
        .map(|i| {
            let mut j = JobSpec::new(payload(&format!("\"{}\"", "x".repeat(198))))
                .with_id(id(&format!("{i:0>128}")));
            j.queue = Some(QueueName::parse(&format!("{i:q>64}")).unwrap());
            j
        })
        .collect();
    let out = s.enqueue(10, 1, jobs);
    let [Effect::Append(r)] = &out[..] else {
        panic!("{out:?}")
    };
    let len = beaver_core::encode_record(r).len() as u64;
    assert!(len <= limits.record_bytes_max, "{len}");
}
