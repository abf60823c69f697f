//! The `demo` and `noop` executors on tokio's paused clock: exact durations,
//! deterministic outcomes, timeouts.

use std::time::Duration;

use beaver_core::{Execution, JobId, Outcome, Payload};
use beaver_runtime::executor::{
    AnyExecutor, DemoConfig, DemoExecutor, Executor, ExecutorConfig, NoopExecutor,
};
use tokio::time::Instant;

fn execution(id: &str, attempt: u32, timeout_ms: u64) -> Execution {
    Execution {
        id: JobId::parse(id).expect("valid id"),
        attempt,
        payload: Payload::from_json(b"{}").expect("valid JSON"),
        timeout_ms,
    }
}

/// Runs one attempt and returns its outcome and the time it took in whole
/// milliseconds (tokio's paused clock is exact; madsim's timers add a few
/// microseconds).
async fn timed(executor: &impl Executor, exec: Execution) -> (Outcome, u64) {
    let start = Instant::now();
    let outcome = executor.execute(exec).await;
    let took_ms = u64::try_from(start.elapsed().as_millis()).expect("a short test");
    (outcome, took_ms)
}

fn demo(min_ms: u64, max_ms: u64, failure_rate: f64) -> DemoExecutor {
    DemoExecutor::new(DemoConfig::new(min_ms, max_ms, failure_rate).expect("valid config"))
}

const DEMO_FAILED: &str = "demo: simulated failure";

#[tokio::test(start_paused = true)]
async fn the_same_attempt_does_the_same_thing() {
    let executor = demo(5, 500, 0.5);
    for i in 0..50 {
        let id = format!("job-{i}");
        for attempt in 1..=3 {
            let first = timed(&executor, execution(&id, attempt, 10_000)).await;
            let again = timed(&executor, execution(&id, attempt, 10_000)).await;
            assert_eq!(first, again, "{id} attempt {attempt}");
            let plan = executor.plan(&JobId::parse(&id).expect("valid id"), attempt);
            assert_eq!(first.1, plan.duration_ms);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn durations_stay_in_range() {
    let executor = demo(20, 40, 0.3);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..200 {
        let (_, took) = timed(&executor, execution(&format!("j{i}"), 1, 10_000)).await;
        assert!((20..=40).contains(&took), "took {took} ms");
        seen.insert(took);
    }
    assert!(
        seen.len() > 15,
        "only {} distinct durations in 20..=40 ms",
        seen.len()
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_zero_never_fails_and_one_always_does() {
    let never = demo(0, 3, 0.0);
    let always = demo(0, 3, 1.0);
    for i in 0..300 {
        let id = format!("job-{i}");
        assert_eq!(
            timed(&never, execution(&id, 1, 1000)).await.0,
            Outcome::Succeeded
        );
        assert_eq!(
            timed(&always, execution(&id, 1, 1000)).await.0,
            Outcome::Failed(DEMO_FAILED.into())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn work_longer_than_the_timeout_times_out_at_the_timeout() {
    let executor = demo(100, 100, 0.0);
    let (outcome, took) = timed(&executor, execution("slow", 1, 30)).await;
    assert_eq!((outcome, took), (Outcome::TimedOut, 30));
    let (outcome, took) = timed(&executor, execution("slow", 1, 100)).await;
    assert_eq!((outcome, took), (Outcome::Succeeded, 100));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_demo_attempt_is_harmless() {
    let executor = demo(1000, 1000, 0.0);
    let cut = tokio::time::timeout(
        Duration::from_millis(10),
        executor.execute(execution("a", 1, 5000)),
    )
    .await;
    assert!(cut.is_err());
    assert_eq!(
        timed(&executor, execution("a", 1, 5000)).await.0,
        Outcome::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn noop_succeeds_at_once() {
    for timeout_ms in [0, 1, 60_000] {
        let (outcome, took) = timed(&NoopExecutor, execution("n", 1, timeout_ms)).await;
        assert_eq!((outcome, took), (Outcome::Succeeded, 0));
    }
}

#[tokio::test(start_paused = true)]
async fn any_executor_behaves_like_the_one_it_holds() {
    let config = DemoConfig::new(10, 90, 0.5).expect("valid config");
    let any = ExecutorConfig::Demo(config).build().expect("demo builds");
    assert!(matches!(any, AnyExecutor::Demo(_)));
    let direct = DemoExecutor::new(config);
    for attempt in 1..=20 {
        let exec = execution("same", attempt, 50);
        assert_eq!(timed(&any, exec.clone()).await, timed(&direct, exec).await);
    }
    let noop = ExecutorConfig::Noop.build().expect("noop builds");
    assert_eq!(
        timed(&noop, execution("n", 1, 0)).await.0,
        Outcome::Succeeded
    );
}
