//! The framer's verdict on random requests against the server's: every
//! refusal it predicts must be the server's reply byte for byte, and every
//! command it accepts must get one of that command's non-error replies.
//!
//! One server serves all cases, a fresh connection each. Requests that
//! would wait (`reserve`, or a positive timeout) are not sent; the
//! transcripts cover waiting.

use std::time::Duration;

use beaver_cli::beanstalk::{Command, Frame, Framer, Refusal};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::server::{Options, Server, server_or_skip};
use super::transcript::show;
use super::wire::Conn;

/// The server's `-z` here: small, so `JOB_TOO_BIG` comes up often.
const JOB_BYTES_MAX: u32 = 64;
/// How long one reply may take.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// Argument-ish pieces, at the edges of each number reader and name rule.
fn arg() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "0",
        "1",
        "7",
        "007",
        "60",
        "+1",
        "-1",
        "-",
        "x",
        "1x",
        "0x10",
        "4294967295",
        "4294967296",
        "4294967297",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "default",
        "t1",
        "-t",
        "a:b",
        "a-b+c/d;e.f$g_h(i)",
        "(",
        " ",
        "  ",
        "\t",
        "\n",
        "\x0b",
        "\0",
        "\r",
    ]);
    prop_oneof![
        8 => words.prop_map(|w| w.as_bytes().to_vec()),
        1 => (195usize..206).prop_map(|n| vec![b'a'; n]),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// A command word, sometimes cut short or glued to junk.
fn verb() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "put",
        "use",
        "reserve",
        "reserve-with-timeout",
        "reserve-job",
        "delete",
        "release",
        "bury",
        "touch",
        "watch",
        "ignore",
        "peek",
        "peek-ready",
        "peek-delayed",
        "peek-buried",
        "kick",
        "kick-job",
        "stats-job",
        "stats-tube",
        "stats",
        "list-tubes",
        "list-tube-used",
        "list-tubes-watched",
        "pause-tube",
        "quit",
        "QUIT",
        "stat",
        "",
    ]);
    (words, prop::sample::select(vec!["", " ", "  ", "x", "\t"]))
        .prop_map(|(w, s)| format!("{w}{s}").into_bytes())
}

/// A command line (CRLF included): a word and arguments joined by spaces,
/// sometimes with a body after it, sometimes overlong.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let line = (verb(), prop::collection::vec(arg(), 0..5)).prop_map(|(v, args)| {
        let mut line = v;
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            line.extend_from_slice(a);
        }
        line
    });
    let body = prop_oneof![
        3 => Just(Vec::new()),
        1 => (0usize..80, prop::sample::select(vec!["\r\n", "XY", "\r", ""])).prop_map(|(n, end)| {
            let mut b = vec![b'b'; n];
            b.extend_from_slice(end.as_bytes());
            b
        }),
    ];
    (line, body, 0usize..8).prop_map(|(mut line, body, pad)| {
        if pad == 0 {
            // Sometimes push the line past 224 bytes.
            line.extend(std::iter::repeat_n(b'p', 230));
        }
        line.extend_from_slice(b"\r\n");
        line.extend(body);
        line
    })
}

/// The input of one case: one to three requests on one connection.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(request(), 1..4).prop_map(|v| v.concat())
}

/// Whether the server may answer `command` with `line` (CRLF stripped).
fn fits(command: &Command, line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let word = line.split(' ').next().unwrap_or("");
    let allowed: &[&str] = match command {
        Command::Put { .. } => &["INSERTED"],
        Command::Use(t) => return line == format!("USING {t}"),
        Command::ReserveWithTimeout { .. } => &["RESERVED", "TIMED_OUT", "DEADLINE_SOON"],
        Command::ReserveJob { .. } => &["RESERVED", "NOT_FOUND"],
        Command::Delete { .. } => &["DELETED", "NOT_FOUND"],
        Command::Release { .. } => &["RELEASED", "BURIED", "NOT_FOUND"],
        Command::Bury { .. } => &["BURIED", "NOT_FOUND"],
        Command::Touch { .. } => &["TOUCHED", "NOT_FOUND"],
        Command::Watch(_) => &["WATCHING"],
        Command::Ignore(_) => &["WATCHING", "NOT_IGNORED"],
        Command::Peek { .. } | Command::PeekReady | Command::PeekDelayed | Command::PeekBuried => {
            &["FOUND", "NOT_FOUND"]
        }
        Command::Kick { .. } => &["KICKED"],
        Command::KickJob { .. } => return line == "KICKED" || line == "NOT_FOUND",
        Command::StatsJob { .. } | Command::StatsTube(_) => &["OK", "NOT_FOUND"],
        Command::Stats | Command::ListTubes | Command::ListTubesWatched => &["OK"],
        Command::ListTubeUsed => &["USING"],
        Command::PauseTube { .. } => &["PAUSED", "NOT_FOUND"],
        Command::Reserve | Command::Quit => return false,
    };
    allowed.contains(&word)
}

/// Plays one input; `Ok(false)` when it was not sent (it would wait).
fn check(server: &Server, input: &[u8]) -> Result<bool, TestCaseError> {
    let mut framer = Framer::new(JOB_BYTES_MAX);
    let mut frames = Vec::new();
    framer.push_all(input, &mut frames);
    let waits = |f: &Frame| {
        matches!(
            f,
            Frame::Command(Command::Reserve)
                | Frame::Command(Command::ReserveWithTimeout { timeout_s: 1.. })
        )
    };
    if frames.iter().any(waits) {
        return Ok(false);
    }
    let fail = |e: String| TestCaseError::fail(format!("input {}: {e}", show(input)));
    let mut conn = Conn::connect(server.addr).map_err(fail)?;
    conn.send(input).map_err(fail)?;
    for frame in &frames {
        let command = match frame {
            Frame::Command(Command::Quit) => {
                return expect_closed(&mut conn).map(|()| true).map_err(fail);
            }
            Frame::Command(c) => c,
            Frame::Refused(r) => {
                expect_refusal(&mut conn, r).map_err(fail)?;
                continue;
            }
        };
        let reply = conn.read_reply(REPLY_WAIT).map_err(fail)?;
        let line_end = reply
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(reply.len());
        if !fits(command, &reply[..line_end]) {
            return Err(fail(format!("{command:?} got {}", show(&reply))));
        }
    }
    if framer.is_between_requests() {
        // Nothing more may come before the answer to this.
        conn.send(b"list-tube-used\r\n").map_err(fail)?;
        let reply = conn.read_reply(REPLY_WAIT).map_err(fail)?;
        if !reply.starts_with(b"USING ") {
            return Err(fail(format!("expected nothing more, got {}", show(&reply))));
        }
    } else {
        // Mid-request: the server must wait for more too.
        let until = std::time::Instant::now() + Duration::from_millis(20);
        while conn.fill(until).map_err(fail)? {}
        if !conn.pending().is_empty() {
            return Err(fail(format!(
                "expected silence, got {}",
                show(conn.pending())
            )));
        }
    }
    Ok(true)
}

fn expect_refusal(conn: &mut Conn, r: &Refusal) -> Result<(), String> {
    let want = r.reply().to_bytes();
    let got = conn.read_reply(REPLY_WAIT)?;
    if got != want {
        return Err(format!("expected {}, got {}", show(&want), show(&got)));
    }
    Ok(())
}

fn expect_closed(conn: &mut Conn) -> Result<(), String> {
    let until = std::time::Instant::now() + REPLY_WAIT;
    while !conn.eof && std::time::Instant::now() < until {
        conn.fill(until)?;
    }
    if !conn.eof || !conn.pending().is_empty() {
        return Err(format!(
            "quit: expected a close, got {}",
            show(conn.pending())
        ));
    }
    Ok(())
}

#[test]
fn the_framer_reads_requests_as_the_server_does() {
    let Some(cmd) = server_or_skip("the_framer_reads_requests_as_the_server_does") else {
        return;
    };
    let options = Options {
        persist: false,
        args: vec!["-z".into(), JOB_BYTES_MAX.to_string()],
        open_to_all: false,
    };
    let server = Server::start(&cmd, options);
    let cases: u32 = std::env::var("BEAVER_BEANSTALK_CONFORMANCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(800);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let sent = std::cell::Cell::new(0u32);
    let result = runner.run(&input(), |input| {
        if check(&server, &input)? {
            sent.set(sent.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log: {}", server.log());
    }
    // Most cases must have been played, not skipped as waiting.
    assert!(
        sent.get() * 2 > cases,
        "only {} of {cases} cases were sent",
        sent.get()
    );
}
