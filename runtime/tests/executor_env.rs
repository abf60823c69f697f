//! The `exec` executor keeps beaver's own variables (the token!) from jobs,
//! and gives them the job id, attempt and queue.
//!
//! A file of its own with a single test: it sets process-wide environment
//! variables, which is only sound while no other thread reads them.
#![cfg(all(target_os = "linux", not(madsim)))]

use std::time::Duration;

use beaver_core::{Execution, JobId, Outcome, Payload, QueueName};
use beaver_runtime::executor::{ExecExecutor, Executor};

#[test]
fn only_the_attempts_beaver_variables_reach_the_job() {
    // SAFETY: this binary runs this one test, and the variables are set
    // before the tokio runtime (or anything else that reads them) starts.
    unsafe {
        std::env::set_var("BEAVER_TOKEN", "s3cret");
        std::env::set_var("BEAVER_DATA_DIR", "/var/lib/beaver");
        std::env::set_var("BEAVER_JOB_ID", "forged");
        std::env::set_var("NOT_BEAVER_VAR", "kept");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("env");
    let command = format!("env > {}", out.display());
    let executor = ExecExecutor::new(command).expect("valid command");
    let exec = Execution {
        id: JobId::parse("job-env").expect("valid id"),
        attempt: 3,
        payload: Payload::from_json(b"null").expect("valid JSON"),
        timeout_ms: 10_000,
    };
    let outcome = runtime.block_on(async {
        let queue = QueueName::parse("emails").expect("valid queue");
        tokio::time::timeout(
            Duration::from_secs(20),
            executor.execute_in(exec, Some(queue)),
        )
        .await
        .expect("the attempt hung")
    });
    assert_eq!(outcome, Outcome::Succeeded);

    let env = std::fs::read_to_string(&out).expect("the job wrote its environment");
    let mut beaver: Vec<&str> = env.lines().filter(|l| l.starts_with("BEAVER_")).collect();
    beaver.sort_unstable();
    assert_eq!(
        beaver,
        [
            "BEAVER_ATTEMPT=3",
            "BEAVER_JOB_ID=job-env",
            "BEAVER_QUEUE=emails"
        ]
    );
    assert!(
        env.lines().any(|l| l == "NOT_BEAVER_VAR=kept"),
        "other variables pass through:\n{env}"
    );
    assert!(!env.contains("s3cret"));
}
