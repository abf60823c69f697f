//! The README's Python worker, run as written (extracted from README.md by
//! its marker, so the doc and the test cannot drift) against a real
//! `beaver run --workers 0`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

const MARKER: &str = "<!-- worker.py:";

fn readme_worker() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let at = readme
        .find(MARKER)
        .expect("the README marks its Python worker");
    let rest = &readme[at..];
    let open = rest
        .find("```python\n")
        .expect("a python block after the marker")
        + 10;
    let len = rest[open..].find("```").expect("a closed block");
    rest[open..open + len].to_string()
}

#[test]
fn the_readmes_python_worker_completes_jobs() {
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is needed to test the README's Python worker"
    );
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--workers", "0"]);
    let file = s.dir.path().join("worker.py");
    std::fs::write(&file, readme_worker()).expect("worker.py");
    let jobs: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"payload":{{"n":{i}}},"queue":"py"}}"#))
        .collect();
    let r = post(&p, "/v1/jobs", &format!("[{}]", jobs.join(",")));
    assert_eq!(r.status, 200, "{}", r.text());
    let out = s.dir.path().join("worker.out");
    let mut worker = Command::new("python3")
        .arg(&file)
        .arg("py")
        .env("BEAVER_SERVER", &p.api)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(s.dir.path().join("worker.err")).expect("err"))
        .spawn()
        .expect("python3");
    let done = wait_for(Duration::from_secs(60), || {
        p.status()
            .queues
            .iter()
            .any(|q| q.name == "py" && q.completed == 20)
    });
    let still_running = worker.try_wait().ok().flatten().is_none();
    let _ = worker.kill();
    let _ = worker.wait();
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        still_running,
        "the worker exited early; it printed:\n{printed}"
    );
    assert!(
        done,
        "the worker did not complete the 20 jobs: {:?}",
        p.status().queues
    );
    assert_eq!(printed.matches("working on").count(), 20, "{printed}");
    let l = p.status().leases.expect("lease figures");
    assert_eq!((l.granted, l.refused_lost, l.active), (20, 0, 0));
}
