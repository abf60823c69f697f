//! What ships beside the binary: the systemd unit, shell completions and
//! the manual page.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// The unit file in the repository.
fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/beaver.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `ExecStart=` words.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED the_systemd_unit_passes_systemd_analyze_verify: systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)"
        );
        return;
    }
    let unit = unit_text();
    let program = exec_start(&unit)[0].clone();
    // verify checks that the program exists: point it at the one built.
    let s = Scratch::new("");
    let copy = s.dir.path().join("beaver.service");
    std::fs::write(&copy, unit.replace(&program, BIN)).expect("unit copy");
    let (code, out, err) = run_cmd(
        std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy),
    );
    assert_eq!(code, 0, "{out}{err}");
    // It exits 0 even for a setting it ignores: any message is a fault.
    assert!(err.trim().is_empty() && out.trim().is_empty(), "{out}{err}");
}

#[test]
fn the_systemd_units_command_line_runs_and_stops_on_sigterm() {
    let unit = unit_text();
    let words = exec_start(&unit);
    assert!(
        words[0].ends_with("/beaver") && words[1] == "run",
        "{words:?}"
    );
    let s = Scratch::new(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nhandler = \"noop\"\n",
    );
    // The unit's own flags, with its paths moved into the scratch dir.
    let args: Vec<String> = words[2..]
        .iter()
        .map(|w| match w.as_str() {
            "/var/lib/beaver/data" => s.data().display().to_string(),
            "/etc/beaver/beaver.toml" => s.config().display().to_string(),
            other => other.to_owned(),
        })
        .collect();
    assert!(args.contains(&s.config().display().to_string()), "{args:?}");
    let mut cmd = beaver();
    cmd.arg("run")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("beaver");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut said = String::new();
    while !said.contains("metrics  ") {
        let mut line = String::new();
        match std::io::BufRead::read_line(&mut out, &mut line) {
            Ok(n) if n > 0 => said.push_str(&line),
            _ => break,
        }
    }
    // SAFETY: kill(2) on the child this test spawned, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_within(&mut child, Duration::from_secs(30), "the unit's beaver");
    assert!(said.contains("recovered 0 jobs"), "{said:?}");
    assert!(
        status.success(),
        "KillSignal=SIGTERM stops it cleanly: {status:?}"
    );
    assert!(unit.contains("KillSignal=SIGTERM"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = run_cmd(beaver().args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["enqueue", "completions", "kill-grace", "data-dir"] {
            assert!(out.contains(word), "{shell}: no {word}");
        }
    }
    let (_, script, _) = run_cmd(beaver().args(["completions", "bash"]));
    let s = Scratch::new("");
    let path = s.dir.path().join("beaver.bash");
    std::fs::write(&path, script).expect("script");
    let (code, _, err) = run_cmd(std::process::Command::new("bash").arg("-n").arg(&path));
    assert_eq!(code, 0, "the bash completion script is valid bash: {err}");
    let (code, _, err) = run_cmd(beaver().args(["completions", "tcsh"]));
    assert_ne!(code, 0);
    assert!(err.contains("possible values"), "{err}");
}

#[test]
fn the_manual_page_covers_every_command() {
    let (code, page, err) = run_cmd(beaver().arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH beaver 1"), "{page}");
    for sub in [
        "RUN",
        "ENQUEUE",
        "STATUS",
        "JOB",
        "REQUEUE",
        "BENCH",
        "CANCEL",
        "COMPLETIONS",
        "MAN",
    ] {
        assert!(
            page.contains(&format!(".SH \"BEAVER {sub}\"")),
            "no section for beaver {sub}"
        );
    }
    for flag in [
        "kill\\-grace",
        "data\\-dir",
        "BEAVER_KILL_GRACE",
        "max\\-attempts",
    ] {
        assert!(page.contains(flag), "no {flag} in the page");
    }
}
