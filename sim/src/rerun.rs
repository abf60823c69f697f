//! Turning the simulator on from a plain `cargo test --features sim`.
//!
//! madsim simulates only under `--cfg madsim`, a rustflag that no cargo
//! feature can set. So the simulation test target, when it finds itself
//! built without it, re-runs cargo on this crate with `--cfg madsim`
//! appended to `CARGO_ENCODED_RUSTFLAGS` (which outranks `RUSTFLAGS` and
//! `build.rustflags`, and keeps the user's own flags), forwarding its
//! arguments (test filters) and the environment (`MADSIM_*`, `BEAVER_*`).
//! An environment guard stops a second re-run: if the re-run binary is
//! still not simulated, that is a hard failure, never a pass with 0 tests.

use std::process::{Command, ExitCode};

/// Set in the re-run's environment.
pub const GUARD: &str = "BEAVER_SIM_REEXEC";

/// Whether this binary was built with `--cfg madsim`.
pub const ACTIVE: bool = cfg!(madsim);

/// Re-runs the simulation target under `--cfg madsim` (release mode), or
/// fails if this already is the re-run.
pub fn rerun_under_madsim(args: &[String]) -> ExitCode {
    if std::env::var_os(GUARD).is_some() {
        eprintln!(
            "error: the simulator is not active: this test binary was re-run with --cfg madsim \
             in CARGO_ENCODED_RUSTFLAGS but was built without it; nothing was simulated"
        );
        return ExitCode::FAILURE;
    }
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(s) if !s.is_empty() => s.split('\x1f').map(str::to_owned).collect(),
        _ => std::env::var("RUSTFLAGS")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    flags.push("--cfg".into());
    flags.push("madsim".into());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let features = if cfg!(feature = "mutants") {
        "sim,mutants"
    } else {
        "sim"
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "--release", "--manifest-path", manifest])
        .args([
            "-p",
            "beaver-sim",
            "--features",
            features,
            "--test",
            "sim",
            "--",
        ])
        .args(args)
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env(GUARD, "1");
    eprintln!("beaver-sim: re-running under --cfg madsim (release): {cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("beaver-sim: the simulation run failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("beaver-sim: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}
