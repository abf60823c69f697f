//! beanstalkd's protocol, checked against a real server: the transcripts
//! (`transcripts/*.txt`), the framer's verdict on random command lines,
//! and random command sequences run against two servers side by side.
//!
//! The server is Debian's beanstalkd 1.12 unless `BEAVER_BEANSTALK_SERVER`
//! names another command (see `server.rs`); without it installed, each test
//! says SKIPPED on stderr (and fails under CI, which installs it). Every
//! server binds 127.0.0.1 on a free port and is stopped by its PID.
#![allow(clippy::unwrap_used)]

mod activation;
mod conformance;
mod differential;
mod kill9;
mod listening;
mod margin;
#[path = "../support/open_files.rs"]
mod open_files;
mod server;
mod startup;
mod takeover;
mod transcript;
mod unix;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Instant;

use beaver_cli::beanstalk::Verb;

use server::server_or_skip;
use transcript::{Step, Token, Transcript};

/// How many transcripts run at once (each has its own server).
const PARALLEL: usize = 4;

fn transcript_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/beanstalk/transcripts")
}

/// Every transcript, parsed, sorted by name. `BEAVER_TRANSCRIPT` keeps the
/// ones whose name contains it.
fn transcripts() -> Vec<Transcript> {
    let filter = std::env::var("BEAVER_TRANSCRIPT").unwrap_or_default();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(transcript_dir())
        .expect("transcript dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(p).expect("read transcript");
            transcript::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"))
        })
        .filter(|t| t.name.contains(&filter))
        .collect()
}

#[test]
fn transcripts_describe_the_server() {
    let Some(cmd) = server_or_skip("transcripts_describe_the_server") else {
        return;
    };
    let reference = cmd.argv[0] == server::REFERENCE;
    let all: Vec<Transcript> = transcripts()
        .into_iter()
        .filter(|t| !(reference && t.not_reference.is_some()))
        .collect();
    assert!(!all.is_empty(), "no transcript matched");
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                let (all, cmd) = (&all, &cmd);
                s.spawn(move || {
                    all.iter()
                        .skip(w)
                        .step_by(PARALLEL)
                        .filter_map(|t| transcript::run(t, cmd).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} transcripts failed against `{}`:\n\n{}",
        failures.len(),
        all.len(),
        cmd.describe(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} transcripts passed against `{}` in {:?}",
        all.len(),
        cmd.describe(),
        started.elapsed()
    );
}

/// The bytes a transcript sends, and the bytes it expects, each step's
/// literal pieces joined.
fn literal_text(steps: &[(usize, Step)], sent: bool) -> Vec<String> {
    let lits = |tokens: &[Token]| -> String {
        tokens
            .iter()
            .filter_map(|t| match t {
                Token::Lit(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    };
    steps
        .iter()
        .filter_map(|(_, s)| match s {
            Step::Send(_, t) if sent => Some(lits(t)),
            Step::Expect(_, t) if !sent => Some(lits(t)),
            _ => None,
        })
        .collect()
}

#[test]
fn transcripts_cover_every_command_and_error_reply() {
    let all = transcripts();
    if !std::env::var("BEAVER_TRANSCRIPT")
        .unwrap_or_default()
        .is_empty()
    {
        return;
    }
    let sent: Vec<String> = all
        .iter()
        .flat_map(|t| literal_text(&t.steps, true))
        .collect();
    let got: Vec<String> = all
        .iter()
        .flat_map(|t| literal_text(&t.steps, false))
        .collect();
    for verb in Verb::ALL {
        let line = format!("{}\r\n", verb.name());
        let with_args = format!("{} ", verb.name());
        assert!(
            sent.iter()
                .any(|s| s.starts_with(&line) || s.starts_with(&with_args)),
            "no transcript sends `{}`",
            verb.name()
        );
    }
    // OUT_OF_MEMORY and INTERNAL_ERROR cannot be provoked in beanstalkd.
    let errors = [
        "BAD_FORMAT\r\n",
        "UNKNOWN_COMMAND\r\n",
        "EXPECTED_CRLF\r\n",
        "JOB_TOO_BIG\r\n",
        "DRAINING\r\n",
        "DEADLINE_SOON\r\n",
        "TIMED_OUT\r\n",
        "NOT_FOUND\r\n",
        "NOT_IGNORED\r\n",
    ];
    for e in errors {
        assert!(
            got.iter().any(|g| g.contains(e)),
            "no transcript expects {e:?}"
        );
    }
}
