//! The simulation suite (`cargo sim`, `cargo test --features sim`).
//!
//! Without `--cfg madsim` this binary re-runs cargo with it (see
//! `beaver_sim::rerun`); with it, it runs the stages named by the filters
//! given after `--` (`seeds`, `snapshots`, `mutants`; all by default), or
//! replays one seed when `BEAVER_SEED` is set.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::process::ExitCode;

#[cfg(madsim)]
mod scenarios;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !beaver_sim::rerun::ACTIVE {
        return beaver_sim::rerun::rerun_under_madsim(&args);
    }
    #[cfg(madsim)]
    return simulated(&args);
    #[cfg(not(madsim))]
    ExitCode::FAILURE
}

#[cfg(madsim)]
fn simulated(args: &[String]) -> ExitCode {
    use beaver_sim::suite;
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |stage: &str| filters.is_empty() || filters.iter().any(|f| stage.contains(f));
    let mutant_name = std::env::var("BEAVER_MUTANT").ok();
    if let Ok(seed) = std::env::var("BEAVER_SEED") {
        let Ok(seed) = seed.trim().parse::<u64>() else {
            eprintln!("BEAVER_SEED must be a number, got {seed:?}");
            return ExitCode::FAILURE;
        };
        #[cfg(feature = "mutants")]
        let mutant = match mutant_name
            .as_deref()
            .map(beaver_core::mutants::Mutant::from_name)
        {
            Some(None) => {
                eprintln!(
                    "unknown BEAVER_MUTANT; known: {:?}",
                    beaver_core::mutants::Mutant::ALL.map(|m| m.name())
                );
                return ExitCode::FAILURE;
            }
            Some(m) => m,
            None => None,
        };
        #[cfg(not(feature = "mutants"))]
        let mutant = match mutant_name {
            Some(_) => {
                eprintln!("BEAVER_MUTANT needs the mutants feature: cargo sim --features mutants");
                return ExitCode::FAILURE;
            }
            None => None,
        };
        let ok = suite::replay(seed, mutant, mutant_name.as_deref());
        println!("{} passed, {} failed", u32::from(ok), u32::from(!ok));
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let mut ok = true;
    let mut ran = 0;
    if wants("snapshots") {
        ran += 1;
        ok &= scenarios::run_all();
    }
    if wants("seeds") {
        ran += 1;
        ok &= suite::seeds();
    }
    #[cfg(feature = "mutants")]
    if wants("mutants") {
        ran += 1;
        // `BEAVER_MUTANT=name` checks that planted bug alone.
        let only = mutant_name
            .as_deref()
            .map(|n| beaver_core::mutants::Mutant::from_name(n).ok_or(n));
        match only {
            Some(Err(n)) => {
                eprintln!(
                    "unknown BEAVER_MUTANT {n:?}; known: {:?}",
                    beaver_core::mutants::Mutant::ALL.map(|m| m.name())
                );
                return ExitCode::FAILURE;
            }
            Some(Ok(m)) => ok &= suite::mutants(Some(m)),
            None => ok &= suite::mutants(None),
        }
    }
    #[cfg(not(feature = "mutants"))]
    if !filters.is_empty() && wants("mutants") && filters.iter().any(|f| f.contains("mutant")) {
        eprintln!(
            "the planted bugs need the mutants feature: cargo sim --features mutants -- mutants"
        );
        return ExitCode::FAILURE;
    }
    if ran == 0 {
        eprintln!("no stage matches the filters {filters:?}; stages: seeds, snapshots, mutants");
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
