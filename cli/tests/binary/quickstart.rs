//! The newcomer path: the README's quickstart, run as written.
//!
//! The server line (`cargo run --release -- run`) is run as `beaver run` on
//! the binary cargo built for the tests, in an empty directory so the
//! default `./beaver-data` is used; only the ports come from the
//! environment (`BEAVER_LISTEN`, `BEAVER_SERVER`...), so a developer's own
//! server on 7070 cannot interfere. Every other command line of the
//! quickstart runs through `sh` exactly as written.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn quickstart_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let start = readme
        .find("\n## Quickstart\n")
        .expect("the README has a Quickstart section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map(|e| start + 1 + e)
        .expect("a heading after the quickstart");
    let section = &readme[start..end];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("closed block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 3..];
    }
    blocks
}

/// A command line without its trailing `# comment`.
fn strip_comment(line: &str) -> &str {
    match line.find("  #") {
        Some(i) => line[..i].trim_end(),
        None => line.trim_end(),
    }
}

#[test]
fn the_readme_quickstart_works_as_written() {
    let blocks = quickstart_blocks();
    assert!(
        blocks.len() >= 2,
        "the quickstart needs a server block and a client block"
    );
    let lines: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b.lines())
        .map(strip_comment)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines[0], "cargo run --release -- run",
        "the quickstart starts the server"
    );
    let cwd = tempfile::tempdir().expect("temp dir");
    let bin_dir = Path::new(BIN).parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = cwd.path().join("server.log");
    // The server, as `beaver run` with every default but the ports.
    let mut child = beaver()
        .arg("run")
        .current_dir(cwd.path())
        .env("BEAVER_LISTEN", "127.0.0.1:0")
        .env("BEAVER_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    // Read the address, then keep draining stdout so the server never
    // writes into a full or closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(u) = line.strip_prefix("API      ") {
                let _ = tx.send(u.trim().to_string());
            }
        }
    });
    let api = rx.recv_timeout(Duration::from_secs(60)).ok();
    let Some(api) = api else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the server did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    assert!(
        cwd.path().join("beaver-data").join("wal").is_dir(),
        "the default data dir is ./beaver-data"
    );
    let mut outputs = String::new();
    for line in &lines[1..] {
        if line.starts_with("export PATH=") || line.starts_with("cargo install") {
            continue; // the test's PATH already holds the binary
        }
        let (code, out, err) = run_cmd(
            std::process::Command::new("sh")
                .args(["-c", line])
                .current_dir(cwd.path())
                .env("PATH", &path)
                .env("BEAVER_SERVER", &api),
        );
        assert_eq!(code, 0, "`{line}` failed:\n{out}\n{err}");
        outputs.push_str(&out);
    }
    // Watch the jobs finish: the demo handler completes them within seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = run_cmd(
            std::process::Command::new("sh")
                .args(["-c", "beaver status --json"])
                .current_dir(cwd.path())
                .env("PATH", &path)
                .env("BEAVER_SERVER", &api),
        );
        assert_eq!(code, 0, "{err}");
        let doc: beaver_cli::schema::StatusDoc = serde_json::from_str(&out).expect("status json");
        if doc.jobs.total() > 0 && doc.jobs.pending == 0 && doc.jobs.in_flight == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart jobs did not finish: {:?}",
            doc.jobs
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: kill(2) on the pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_within(
        &mut child,
        Duration::from_secs(30),
        "the server after SIGTERM",
    );
    assert!(status.success(), "{status:?}");
}
