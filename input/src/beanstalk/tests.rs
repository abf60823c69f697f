//! The framer against what Debian's beanstalkd 1.12 was seen to answer
//! (the transcripts in `cli/tests/beanstalk/transcripts` replay the same
//! inputs against the real server), and properties over arbitrary bytes.

use proptest::prelude::*;

use super::*;

/// What the framer makes of `input`, one word per frame: the command's
/// name, or the error reply's text.
fn words(input: &[u8], job_bytes_max: u32) -> Vec<String> {
    let mut framer = Framer::new(job_bytes_max);
    let mut frames = Vec::new();
    framer.push_all(input, &mut frames);
    frames
        .iter()
        .map(|f| match f {
            Frame::Command(c) => c.verb().name().to_owned(),
            Frame::Refused(r) => {
                let bytes = r.reply().to_bytes();
                String::from_utf8_lossy(&bytes).trim_end().to_owned()
            }
        })
        .collect()
}

/// The one command `line` (CRLF added) reads as.
fn command(line: &str) -> Command {
    let mut framer = Framer::new(JOB_BYTES_MAX_DEFAULT);
    let mut frames = Vec::new();
    framer.push_all(format!("{line}\r\n").as_bytes(), &mut frames);
    match frames.as_slice() {
        [Frame::Command(c)] => c.clone(),
        other => panic!("{line:?} gave {other:?}"),
    }
}

/// The refusal `input` reads as (its first frame).
fn refusal(input: &[u8], job_bytes_max: u32) -> Refusal {
    let mut framer = Framer::new(job_bytes_max);
    let mut frames = Vec::new();
    framer.push_all(input, &mut frames);
    match frames.first() {
        Some(Frame::Refused(r)) => *r,
        other => panic!("{input:?} gave {other:?}"),
    }
}

const BAD: &str = "BAD_FORMAT";
const UNKNOWN: &str = "UNKNOWN_COMMAND";

#[test]
fn command_lines_read_as_beanstalkd_reads_them() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"stats\r\nfoo\r\n", &["stats", UNKNOWN]),
        (b"stats \r\n", &[BAD]),
        (b"statsx\r\n", &[BAD]),
        (b"stats-job\r\n", &[BAD]),
        (b"stats-job 1 \r\n", &[BAD]),
        (b"stats-job  1\r\n", &["stats-job"]),
        (b"stats-job +1\r\n", &[BAD]),
        (b"stats-job -1\r\n", &[BAD]),
        (b"stats-job 18446744073709551615\r\n", &["stats-job"]),
        (b"stats-job 18446744073709551616\r\n", &[BAD]),
        (b"stats-tube  default\r\n", &[BAD]),
        (b"stats-tube -foo\r\n", &[BAD]),
        (b"reserve \r\n", &[BAD]),
        (b"reserve-with-timeout\r\n", &[BAD]),
        (b"reserve-job\r\n", &[BAD]),
        (b"reserve-with-timeout 9223372036854775808\r\n", &[BAD]),
        (b"quit \r\n", &["quit"]),
        (b"quitx\r\n", &["quit"]),
        (b"QUIT\r\n", &[UNKNOWN]),
        (b"\r\n", &[UNKNOWN]),
        (b" stats\r\n", &[UNKNOWN]),
        (b"stats\n", &[]),
        (b"stats\r\r\n", &[]),
        (b"peek\r\n", &[UNKNOWN]),
        (b"peek \r\n", &[BAD]),
        (b"peek-readyx\r\n", &[BAD]),
        (b"delete\r\n", &[UNKNOWN]),
        (b"delete 1 2\r\n", &[BAD]),
        (b"delete \t1\r\n", &[BAD]),
        (b"kick x\r\n", &[BAD]),
        (b"kick 18446744073709551616\r\n", &[BAD]),
        (b"bury 1\r\n", &[BAD]),
        (b"bury 1 4294967296\r\n", &[BAD]),
        (b"release 1 2\r\n", &[BAD]),
        (b"release 1 2 3 4\r\n", &[BAD]),
        (b"use foo bar\r\n", &[BAD]),
        (b"use  foo\r\n", &[BAD]),
        (b"use foo \r\n", &[BAD]),
        (b"use a:b\r\n", &[BAD]),
        (b"usefoo\r\n", &[UNKNOWN]),
        (b"list-tubesx\r\n", &[BAD]),
        (b"list-tubes-watched \r\n", &[BAD]),
        (b"pause-tube default\r\n", &[BAD]),
        (b"pause-tube default 0 \r\n", &[BAD]),
        (b"pause-tube default\t0\r\n", &[BAD]),
        (b"pause-tube def*ault 0\r\n", &[BAD]),
        (b"stats\x00\r\n", &[BAD]),
        (b"quit\x00\r\n", &[BAD]),
        (b"foo\x00\r\n", &[BAD]),
        (b"put\r\n", &[UNKNOWN]),
        (b"put \r\n", &[BAD]),
    ];
    for (input, expected) in cases {
        assert_eq!(words(input, JOB_BYTES_MAX_DEFAULT), *expected, "{input:?}");
    }
}

#[test]
fn arguments_keep_beanstalkds_leniency() {
    let rwt = |t| Command::ReserveWithTimeout { timeout_s: t };
    assert_eq!(command("reserve-with-timeout "), rwt(0));
    assert_eq!(command("reserve-with-timeout x"), rwt(0));
    assert_eq!(command("reserve-with-timeout  -1"), rwt(u32::MAX));
    assert_eq!(command("reserve-with-timeout 4294967296"), rwt(0));
    assert_eq!(command("reserve-with-timeout 4294967297"), rwt(1));
    assert_eq!(command("reserve-with-timeout -4294967295"), rwt(1));
    assert_eq!(command("reserve-with-timeout \t+2x"), rwt(2));
    let kick = |bound| Command::Kick { bound };
    assert_eq!(command("kick 4294967296"), kick(0));
    assert_eq!(command("kick 4294967297"), kick(1));
    assert_eq!(command("kick -1"), kick(u32::MAX));
    assert_eq!(command("kick 1x"), kick(1));
    assert_eq!(command("kick \t+3 "), kick(3));
    assert_eq!(
        command("release  1  2  3"),
        Command::Release {
            id: 1,
            pri: 2,
            delay_s: 3
        }
    );
    let pause = |name: &str, delay_s| Command::PauseTube {
        tube: TubeName::new(name.as_bytes()).expect("name"),
        delay_s,
    };
    assert_eq!(command("pause-tubedefault 0"), pause("default", 0));
    assert_eq!(command("pause-tube  default  7"), pause("default", 7));
    assert_eq!(command("pause-tube default;x 0"), pause("default;x", 0));
    assert_eq!(command("pause-tube x 4294967295"), pause("x", u32::MAX));
    assert_eq!(
        command("use (x$)"),
        Command::Use(TubeName::new(b"(x$)").expect("name"))
    );
    assert_eq!(command("stats-job 007"), Command::StatsJob { id: 7 });
}

#[test]
fn put_reads_its_body_or_drops_it() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"put 0 0 1 10\r\n0123456789\r\n", &["put"]),
        (
            b"put 0 0 1 11\r\n01234567890\r\nstats-job 1\r\n",
            &["JOB_TOO_BIG", "stats-job"],
        ),
        // The size is checked before the end of the line.
        (
            b"put 0 0 1 11 junk\r\n01234567890\r\nlist-tube-used\r\n",
            &["JOB_TOO_BIG", "list-tube-used"],
        ),
        // Exactly size + 2 bytes are dropped, whatever they are.
        (
            b"put 0 0 1 11\r\n0123456789012\r\nlist-tube-used\r\n",
            &["JOB_TOO_BIG", UNKNOWN, "list-tube-used"],
        ),
        (b"put 0 0 1 4294967296\r\nabc\r\n", &[BAD, UNKNOWN]),
        (
            b"put 0 0 1 5\r\nhelloXYlist-tube-used\r\n",
            &["EXPECTED_CRLF", "list-tube-used"],
        ),
        (
            b"put 0 0 1 5\r\nhello\nlist-tube-used\r\n",
            &["EXPECTED_CRLF", UNKNOWN],
        ),
        (b"put 0 0 1 5 \r\nhello\r\n", &[BAD, UNKNOWN]),
        (b"put  0  0  1  5\r\nhello\r\n", &["put"]),
        (b"put 0 0 1\r\nhello\r\n", &[BAD, UNKNOWN]),
        (b"put 0 0 0 0\r\n\r\n", &["put"]),
        (b"put 0 0 1 3\r\n\x00\r\n\r\n", &["put"]),
    ];
    for (input, expected) in cases {
        assert_eq!(words(input, 10), *expected, "{input:?}");
    }
    let mut framer = Framer::new(10);
    let mut frames = Vec::new();
    framer.push_all(b"put 4294967295 4294967295 0 3\r\na\r\n\r\n", &mut frames);
    let put = Command::Put {
        pri: u32::MAX,
        delay_s: u32::MAX,
        ttr_s: 0,
        body: b"a\r\n".to_vec(),
    };
    assert_eq!(frames, [Frame::Command(put)]);
}

#[test]
fn a_refusal_names_the_counter_beanstalkd_bumps() {
    let counted = |input: &[u8]| refusal(input, 10).counted_as;
    assert_eq!(counted(b"put 0 0 1 x\r\n"), None);
    assert_eq!(counted(b"put 0 0 1 3x\r\n"), Some(Verb::Put));
    assert_eq!(counted(b"put 0 0 1 11\r\n01234567890\r\n"), Some(Verb::Put));
    assert_eq!(counted(b"put 0 0 1 3\r\nabcXY"), Some(Verb::Put));
    assert_eq!(counted(b"pause-tube -x 1\r\n"), Some(Verb::PauseTube));
    assert_eq!(counted(b"pause-tube x y\r\n"), None);
    assert_eq!(counted(b"use -x\r\n"), None);
    assert_eq!(counted(b"delete x\r\n"), None);
    let long = format!("pause-tube {} 0\r\n", "a".repeat(201));
    assert_eq!(counted(long.as_bytes()), Some(Verb::PauseTube));
}

#[test]
fn long_lines_are_dropped_up_to_their_end() {
    let line = |n: usize, tail: &str| format!("stats-job {}{tail}", "0".repeat(n)).into_bytes();
    // 224 bytes with the CRLF: the longest line.
    assert_eq!(words(&line(212, "\r\n"), 65_535), ["stats-job"]);
    // 225: the CR ends the first window, so the CRLF is no line end, and the
    // next line is dropped with the rest.
    assert_eq!(
        words(&line(213, "\r\nstats-job 1\r\nstats\r\n"), 65_535),
        [BAD, "stats"]
    );
    let x = |n: usize, tail: &str| {
        let mut v = vec![b'x'; n];
        v.extend_from_slice(tail.as_bytes());
        v
    };
    assert_eq!(
        words(&x(500, "\r\nlist-tube-used\r\n"), 65_535),
        [BAD, "list-tube-used"]
    );
    assert_eq!(words(&x(448, "list-tube-used\r\n"), 65_535), [BAD]);
    assert_eq!(words(&x(447, "\rlist-tube-used\r\n"), 65_535), [BAD]);
    let mut stuck = b"stats\r\r\n".to_vec();
    stuck.extend(x(216, "list-tube-used\r\nstats\r\n"));
    assert_eq!(words(&stuck, 65_535), [BAD, "stats"]);
    let name = |n: usize| format!("use {}\r\n", "a".repeat(n)).into_bytes();
    assert_eq!(words(&name(200), 65_535), ["use"]);
    assert_eq!(words(&name(201), 65_535), [BAD]);
}

#[test]
fn every_command_reads_back_from_its_encoding() {
    let tube = || TubeName::new(b"t(1)").expect("name");
    let all = [
        Command::Put {
            pri: 1,
            delay_s: 2,
            ttr_s: 3,
            body: b"x\r\ny".to_vec(),
        },
        Command::Use(tube()),
        Command::Reserve,
        Command::ReserveWithTimeout { timeout_s: 9 },
        Command::ReserveJob { id: 1 },
        Command::Delete { id: 2 },
        Command::Release {
            id: 3,
            pri: 4,
            delay_s: 5,
        },
        Command::Bury { id: 6, pri: 7 },
        Command::Touch { id: 8 },
        Command::Watch(tube()),
        Command::Ignore(tube()),
        Command::Peek { id: u64::MAX },
        Command::PeekReady,
        Command::PeekDelayed,
        Command::PeekBuried,
        Command::Kick { bound: u32::MAX },
        Command::KickJob { id: 9 },
        Command::StatsJob { id: 10 },
        Command::StatsTube(tube()),
        Command::Stats,
        Command::ListTubes,
        Command::ListTubeUsed,
        Command::ListTubesWatched,
        Command::PauseTube {
            tube: tube(),
            delay_s: 11,
        },
        Command::Quit,
    ];
    let mut wire = Vec::new();
    for c in &all {
        c.encode(&mut wire);
    }
    let mut frames = Vec::new();
    Framer::new(JOB_BYTES_MAX_DEFAULT).push_all(&wire, &mut frames);
    let expected: Vec<Frame> = all.into_iter().map(Frame::Command).collect();
    assert_eq!(frames, expected);
}

/// Pieces that make interesting streams: command words, separators, the
/// numbers at the edges of each reader, overlong runs, and noise.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "put ",
        "peek ",
        "peek-ready",
        "peek-delayed",
        "peek-buried",
        "reserve",
        "reserve-with-timeout ",
        "reserve-job ",
        "delete ",
        "release ",
        "bury ",
        "kick ",
        "kick-job ",
        "touch ",
        "stats",
        "stats-job ",
        "stats-tube ",
        "use ",
        "watch ",
        "ignore ",
        "list-tubes",
        "list-tube-used",
        "list-tubes-watched",
        "pause-tube ",
        "quit",
        "default",
        "-x",
        " ",
        "  ",
        "\t",
        "\r\n",
        "\r",
        "\n",
        "\0",
        "0",
        "1 ",
        "5",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "-1",
        "+1",
        "put 0 0 1 3\r\n",
        "put 0 0 1 40\r\n",
        "abc\r\n",
    ]);
    prop_oneof![
        4 => words.prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => (0usize..600, prop::sample::select(vec![b'x', b'\r', b' '])).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..40).prop_map(|v| v.concat())
}

/// Pushes `input` in pieces of the given sizes (cycled), checking the
/// framer's contract on every push.
fn chunked(framer: &mut Framer, mut input: &[u8], sizes: &[usize]) -> Vec<Frame> {
    let bound = LINE_BYTES_MAX.max(framer.job_bytes_max() as usize + 2);
    let mut frames = Vec::new();
    let mut i = 0;
    while !input.is_empty() {
        let size = sizes[i % sizes.len()].clamp(1, input.len());
        i += 1;
        let mut chunk = &input[..size];
        input = &input[size..];
        while !chunk.is_empty() {
            let (used, frame) = framer.push(chunk);
            assert!(used <= chunk.len());
            assert!(
                frame.is_some() || used == chunk.len(),
                "no frame, bytes left"
            );
            assert!(framer.buffered_bytes() <= bound);
            chunk = &chunk[used..];
            frames.extend(frame);
        }
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the bytes and however they are cut, the framer never
    /// panics, stays within its bounds, and yields the same frames.
    #[test]
    fn frames_do_not_depend_on_chunking(
        input in stream(),
        sizes in prop::collection::vec(1usize..300, 1..20),
        job_bytes_max in prop_oneof![0u32..64, Just(JOB_BYTES_MAX_DEFAULT)],
    ) {
        let mut whole = Vec::new();
        Framer::new(job_bytes_max).push_all(&input, &mut whole);
        let bytewise = chunked(&mut Framer::new(job_bytes_max), &input, &[1]);
        let pieces = chunked(&mut Framer::new(job_bytes_max), &input, &sizes);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &pieces);
    }

    /// Arbitrary bytes, not only likely ones.
    #[test]
    fn raw_bytes_never_break_the_framer(
        input in prop::collection::vec(any::<u8>(), 0..2000),
        sizes in prop::collection::vec(1usize..500, 1..8),
    ) {
        let mut whole = Vec::new();
        Framer::new(16).push_all(&input, &mut whole);
        prop_assert_eq!(whole, chunked(&mut Framer::new(16), &input, &sizes));
    }
}
