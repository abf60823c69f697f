//! Differential testing: random command sequences from several
//! connections, run in lockstep against two servers, must get the same
//! replies once ids and time-dependent fields are normalised.
//!
//! The left server is always Debian's beanstalkd; the right one is
//! [`ServerCmd::selected`], so `BEAVER_BEANSTALK_SERVER` pointing at beaver
//! compares beaver with the reference, and unset it compares the reference
//! with itself (which proves the harness deterministic).
//!
//! Several connections may wait at once, so which of them a job goes to
//! (beanstalkd's waiting order) is compared too.
//!
//! A close waits until the server has closed its side (see [`close`]), so
//! the reservations it releases are back before the next command.
//!
//! Time never decides an outcome: delays and ttrs are 0 or 100 s (longer
//! than a case), and a waiting reserve waits 100 s, so it ends only when a
//! job comes or its connection closes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::server::{Options, Server, ServerCmd, available_or_skip, server_or_skip};
use super::transcript::show;
use super::wire::{Conn, data_len};

/// Connections per case.
const CONNS: usize = 3;
/// The tubes commands name.
const TUBES: [&str; 3] = ["default", "t1", "t2"];
/// A delay, ttr or timeout no case outlives, in seconds.
const LONG_S: u32 = 100;
/// How long a reply may take.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// How long to watch waiting connections after a command that may wake
/// one. Also how long a server gets to start waiting on a
/// `reserve-with-timeout` before the next command (nothing answers when
/// it has): the one place where the harness trusts timing.
const WAKE_WAIT: Duration = Duration::from_millis(50);
/// How long one read of a waiting connection may block while others wait
/// their turn.
const POLL_SLICE: Duration = Duration::from_millis(5);
/// `stats` keys whose values belong to the process or the clock.
const MASKED_STATS: [&str; 15] = [
    "pid",
    "version",
    "rusage-utime",
    "rusage-stime",
    "uptime",
    "id",
    "hostname",
    "os",
    "platform",
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
    "total-connections",
];
/// `stats-job` and `stats-tube` keys that depend on the clock or the disk.
const MASKED_JOB_TUBE: [&str; 4] = ["age", "time-left", "file", "pause-time-left"];

/// One client action. `job` picks among the ids seen so far (one past the
/// end: an id that never existed).
#[derive(Debug, Clone)]
enum Op {
    Put {
        conn: usize,
        pri: u32,
        delayed: bool,
        body: u8,
    },
    Use {
        conn: usize,
        tube: usize,
    },
    Watch {
        conn: usize,
        tube: usize,
    },
    Ignore {
        conn: usize,
        tube: usize,
    },
    ReserveNow {
        conn: usize,
    },
    ReserveWait {
        conn: usize,
    },
    ReserveJob {
        conn: usize,
        job: usize,
    },
    Release {
        conn: usize,
        job: usize,
        pri: u32,
        delayed: bool,
    },
    Bury {
        conn: usize,
        job: usize,
        pri: u32,
    },
    Touch {
        conn: usize,
        job: usize,
    },
    Delete {
        conn: usize,
        job: usize,
    },
    Kick {
        conn: usize,
        bound: u32,
    },
    KickJob {
        conn: usize,
        job: usize,
    },
    Peek {
        conn: usize,
        job: usize,
    },
    PeekState {
        conn: usize,
        which: usize,
    },
    StatsJob {
        conn: usize,
        job: usize,
    },
    StatsTube {
        conn: usize,
        tube: usize,
    },
    Stats {
        conn: usize,
    },
    /// `pause-tube` for [`LONG_S`] or for 0 s (which ends a pause).
    PauseTube {
        conn: usize,
        tube: usize,
        long: bool,
    },
    List {
        conn: usize,
        which: usize,
    },
    Close {
        conn: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CONNS;
    let t = 0..TUBES.len();
    let j = 0usize..12;
    let pri = prop::sample::select(vec![0u32, 1, 1023, 1024, u32::MAX]);
    prop_oneof![
        6 => (c.clone(), pri.clone(), prop::bool::weighted(0.2), 0u8..4)
            .prop_map(|(conn, pri, delayed, body)| Op::Put { conn, pri, delayed, body }),
        2 => (c.clone(), t.clone()).prop_map(|(conn, tube)| Op::Use { conn, tube }),
        2 => (c.clone(), t.clone()).prop_map(|(conn, tube)| Op::Watch { conn, tube }),
        1 => (c.clone(), t.clone()).prop_map(|(conn, tube)| Op::Ignore { conn, tube }),
        5 => c.clone().prop_map(|conn| Op::ReserveNow { conn }),
        3 => c.clone().prop_map(|conn| Op::ReserveWait { conn }),
        1 => (c.clone(), j.clone()).prop_map(|(conn, job)| Op::ReserveJob { conn, job }),
        3 => (c.clone(), j.clone(), pri.clone(), prop::bool::weighted(0.3))
            .prop_map(|(conn, job, pri, delayed)| Op::Release { conn, job, pri, delayed }),
        2 => (c.clone(), j.clone(), pri).prop_map(|(conn, job, pri)| Op::Bury { conn, job, pri }),
        1 => (c.clone(), j.clone()).prop_map(|(conn, job)| Op::Touch { conn, job }),
        3 => (c.clone(), j.clone()).prop_map(|(conn, job)| Op::Delete { conn, job }),
        2 => (c.clone(), 0u32..4).prop_map(|(conn, bound)| Op::Kick { conn, bound }),
        1 => (c.clone(), j.clone()).prop_map(|(conn, job)| Op::KickJob { conn, job }),
        1 => (c.clone(), j.clone()).prop_map(|(conn, job)| Op::Peek { conn, job }),
        2 => (c.clone(), 0usize..3).prop_map(|(conn, which)| Op::PeekState { conn, which }),
        2 => (c.clone(), j).prop_map(|(conn, job)| Op::StatsJob { conn, job }),
        1 => (c.clone(), t.clone()).prop_map(|(conn, tube)| Op::StatsTube { conn, tube }),
        1 => (c.clone(), t, prop::bool::ANY)
            .prop_map(|(conn, tube, long)| Op::PauseTube { conn, tube, long }),
        1 => c.clone().prop_map(|conn| Op::Stats { conn }),
        1 => (c.clone(), 0usize..3).prop_map(|(conn, which)| Op::List { conn, which }),
        1 => c.prop_map(|conn| Op::Close { conn }),
    ]
}

impl Op {
    fn conn(&self) -> usize {
        match *self {
            Op::Put { conn, .. }
            | Op::Use { conn, .. }
            | Op::Watch { conn, .. }
            | Op::Ignore { conn, .. }
            | Op::ReserveNow { conn }
            | Op::ReserveWait { conn }
            | Op::ReserveJob { conn, .. }
            | Op::Release { conn, .. }
            | Op::Bury { conn, .. }
            | Op::Touch { conn, .. }
            | Op::Delete { conn, .. }
            | Op::Kick { conn, .. }
            | Op::KickJob { conn, .. }
            | Op::Peek { conn, .. }
            | Op::PeekState { conn, .. }
            | Op::StatsJob { conn, .. }
            | Op::StatsTube { conn, .. }
            | Op::PauseTube { conn, .. }
            | Op::Stats { conn }
            | Op::List { conn, .. }
            | Op::Close { conn } => conn,
        }
    }

    /// Whether the command may hand a job to a waiting reserve (a
    /// waiting reserve may be served at once).
    fn may_wake(&self) -> bool {
        matches!(
            self,
            Op::ReserveWait { .. }
                | Op::Put { delayed: false, .. }
                | Op::Release { delayed: false, .. }
                | Op::Kick { .. }
                | Op::KickJob { .. }
                | Op::Close { .. }
                | Op::PauseTube { long: false, .. }
        )
    }
}

/// One server's side of a case: its connections and the ids it gave.
struct Side {
    server: Server,
    conns: Vec<Option<Conn>>,
    waiting: Vec<bool>,
    /// Ids in the order `INSERTED` reported them.
    ids: Vec<u64>,
}

impl Side {
    fn new(cmd: &ServerCmd) -> Side {
        Side {
            server: Server::start(cmd, Options::default()),
            conns: (0..CONNS).map(|_| None).collect(),
            waiting: vec![false; CONNS],
            ids: Vec::new(),
        }
    }

    fn conn(&mut self, i: usize) -> Result<&mut Conn, String> {
        if self.conns[i].is_none() {
            self.conns[i] = Some(Conn::connect(self.server.addr)?);
        }
        self.conns[i].as_mut().ok_or_else(|| "no connection".into())
    }

    fn job(&self, k: usize) -> u64 {
        self.ids.get(k).copied().unwrap_or(999_999_999)
    }

    /// The command line(s) for `op` with this server's ids.
    fn render(&self, op: &Op) -> String {
        let d = |delayed: bool| if delayed { LONG_S } else { 0 };
        match *op {
            Op::Put {
                pri, delayed, body, ..
            } => {
                let body: String = "xyzw".chars().take(body as usize).collect();
                format!(
                    "put {pri} {} {LONG_S} {}\r\n{body}\r\n",
                    d(delayed),
                    body.len()
                )
            }
            Op::Use { tube, .. } => format!("use {}\r\n", TUBES[tube]),
            Op::Watch { tube, .. } => format!("watch {}\r\n", TUBES[tube]),
            Op::Ignore { tube, .. } => format!("ignore {}\r\n", TUBES[tube]),
            Op::ReserveNow { .. } => "reserve-with-timeout 0\r\n".into(),
            Op::ReserveWait { .. } => format!("reserve-with-timeout {LONG_S}\r\n"),
            Op::ReserveJob { job, .. } => format!("reserve-job {}\r\n", self.job(job)),
            Op::Release {
                job, pri, delayed, ..
            } => {
                format!("release {} {pri} {}\r\n", self.job(job), d(delayed))
            }
            Op::Bury { job, pri, .. } => format!("bury {} {pri}\r\n", self.job(job)),
            Op::Touch { job, .. } => format!("touch {}\r\n", self.job(job)),
            Op::Delete { job, .. } => format!("delete {}\r\n", self.job(job)),
            Op::Kick { bound, .. } => format!("kick {bound}\r\n"),
            Op::KickJob { job, .. } => format!("kick-job {}\r\n", self.job(job)),
            Op::Peek { job, .. } => format!("peek {}\r\n", self.job(job)),
            Op::PeekState { which, .. } => {
                ["peek-ready\r\n", "peek-delayed\r\n", "peek-buried\r\n"][which].into()
            }
            Op::StatsJob { job, .. } => format!("stats-job {}\r\n", self.job(job)),
            Op::StatsTube { tube, .. } => format!("stats-tube {}\r\n", TUBES[tube]),
            Op::PauseTube { tube, long, .. } => {
                format!("pause-tube {} {}\r\n", TUBES[tube], d(long))
            }
            Op::Stats { .. } => "stats\r\n".into(),
            Op::List { which, .. } => [
                "list-tubes\r\n",
                "list-tube-used\r\n",
                "list-tubes-watched\r\n",
            ][which]
                .into(),
            Op::Close { .. } => String::new(),
        }
    }

    /// Plays `op`; returns its normalised reply (`None` when it has none
    /// yet: a waiting reserve, or a close).
    fn play(&mut self, op: &Op) -> Result<Option<String>, String> {
        let i = op.conn();
        if let Op::Close { .. } = op {
            self.waiting[i] = false;
            let Some(mut conn) = self.conns[i].take() else {
                return Ok(None);
            };
            return close(&mut conn).map(Some);
        }
        let line = self.render(op);
        let conn = self.conn(i)?;
        conn.send(line.as_bytes())?;
        if let Op::ReserveWait { .. } = op {
            self.waiting[i] = true;
            return Ok(None);
        }
        let reply = conn.read_reply(REPLY_WAIT)?;
        Ok(Some(self.normalise(&reply)))
    }

    /// What waiting connections received within `within`, normalised, in
    /// the order of the connections; stops early once `expect` of them
    /// have answered. Every waiting connection is read in turn, a slice at
    /// a time, so one that stays silent does not use up the time of one
    /// that answers. With no time given, only what has already arrived.
    fn woken(
        &mut self,
        within: Duration,
        expect: Option<usize>,
    ) -> Result<Vec<(usize, String)>, String> {
        let until = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let mut silent = false;
            for i in 0..CONNS {
                if !self.waiting[i] {
                    continue;
                }
                let Some(conn) = self.conns[i].as_mut() else {
                    continue;
                };
                if conn.pending().is_empty() && !conn.eof && !within.is_zero() {
                    conn.fill((Instant::now() + POLL_SLICE).min(until))?;
                }
                if conn.pending().is_empty() {
                    // A closed connection has nothing more to say.
                    silent |= !conn.eof;
                    continue;
                }
                let reply = conn.read_reply(REPLY_WAIT)?;
                self.waiting[i] = false;
                out.push((i, self.normalise(&reply)));
            }
            let enough = expect.is_some_and(|n| out.len() >= n);
            if enough || !silent || Instant::now() >= until {
                break;
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// The reply with ids replaced by their order of appearance (`J0`,
    /// `J1`...) and clock- or process-bound values masked.
    fn normalise(&mut self, reply: &[u8]) -> String {
        let text = String::from_utf8_lossy(reply).into_owned();
        let (line, data) = text.split_once("\r\n").unwrap_or((&text, ""));
        let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        match words[0].as_str() {
            "INSERTED" => {
                if let Ok(id) = words[1].parse() {
                    self.ids.push(id);
                }
                words[1] = self.name(&words[1]);
            }
            "RESERVED" | "FOUND" => words[1] = self.name(&words[1]),
            "OK" => words[1] = "<n>".into(),
            _ => {}
        }
        let mut out = words.join(" ");
        if data_len(line.as_bytes()).is_some() {
            out.push('\n');
            for row in data.lines() {
                let masked = match row.split_once(": ") {
                    Some((k, _)) if MASKED_STATS.contains(&k) || MASKED_JOB_TUBE.contains(&k) => {
                        format!("{k}: <masked>")
                    }
                    Some(("id", v)) => format!("id: {}", self.name(v)),
                    _ => row.to_owned(),
                };
                let _ = writeln!(out, "{masked}");
            }
        }
        out
    }

    fn name(&self, id: &str) -> String {
        let known = id
            .parse()
            .ok()
            .and_then(|id: u64| self.ids.iter().position(|&k| k == id));
        known.map_or_else(|| format!("J?{id}"), |k| format!("J{k}"))
    }
}

/// Closes `conn` so that the server has finished with it on return: the
/// client half-closes, and the server closes its side once it has
/// released the connection's jobs (a waiting reserve answers TIMED_OUT
/// first). Returns what came before the close.
fn close(conn: &mut Conn) -> Result<String, String> {
    conn.shutdown_write()?;
    let until = Instant::now() + REPLY_WAIT;
    while !conn.eof && Instant::now() < until {
        conn.fill(until)?;
    }
    if !conn.eof {
        return Err(format!("not closed within {REPLY_WAIT:?}"));
    }
    Ok(format!(
        "{} <closed>",
        String::from_utf8_lossy(conn.pending())
    ))
}

/// A failure at op `n`, with what came before.
fn fail(n: usize, op: &Op, log: &str, e: String) -> TestCaseError {
    TestCaseError::fail(format!("op {n} {op:?}: {e}\nso far:\n{log}"))
}

/// What a run exercised: commands played, and waiting reserves that a
/// later command served.
#[derive(Debug, Default)]
struct Tally {
    played: u32,
    woken: u32,
}

/// Runs `ops` on both servers in lockstep; the first difference fails.
fn compare(
    left: &ServerCmd,
    right: &ServerCmd,
    ops: &[Op],
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    let mut a = Side::new(left);
    let mut b = Side::new(right);
    let mut log = String::new();
    for (n, op) in ops.iter().enumerate() {
        if a.waiting[op.conn()] && !matches!(op, Op::Close { .. }) {
            // beanstalkd answers nothing else on a waiting connection.
            continue;
        }
        tally.played += 1;
        let ra = a.play(op).map_err(|e| fail(n, op, &log, e))?;
        let rb = b.play(op).map_err(|e| fail(n, op, &log, e))?;
        let _ = writeln!(
            log,
            "  {op:?} -> {}",
            show(ra.as_deref().unwrap_or("-").as_bytes())
        );
        if ra != rb {
            return Err(fail(n, op, &log, format!("left: {ra:?}\nright: {rb:?}")));
        }
        let wait = if op.may_wake() {
            WAKE_WAIT
        } else {
            Duration::ZERO
        };
        let wa = a.woken(wait, None).map_err(|e| fail(n, op, &log, e))?;
        // The right server gets as long as it needs for what the left did.
        let wb = if wa.is_empty() {
            b.woken(wait, None)
        } else {
            b.woken(REPLY_WAIT, Some(wa.len()))
        };
        let wb = wb.map_err(|e| fail(n, op, &log, e))?;
        if wa != wb {
            let e = format!("woken left: {wa:?}\nwoken right: {wb:?}");
            return Err(fail(n, op, &log, e));
        }
        tally.woken += wa.len() as u32;
        for (i, r) in &wa {
            let _ = writeln!(log, "  (woken c{i}) -> {}", show(r.as_bytes()));
        }
    }
    Ok(())
}

#[test]
fn random_sessions_get_the_same_replies_from_both_servers() {
    let test = "random_sessions_get_the_same_replies_from_both_servers";
    let Some(left) = available_or_skip(ServerCmd::reference(), test) else {
        return;
    };
    let Some(right) = server_or_skip(test) else {
        return;
    };
    let cases: u32 = std::env::var("BEAVER_BEANSTALK_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        compare(&left, &right, &ops, &mut tally.borrow_mut())
    });
    if let Err(e) = result {
        panic!(
            "`{}` and `{}` differ: {e}",
            left.describe(),
            right.describe()
        );
    }
    let tally = tally.into_inner();
    eprintln!(
        "{cases} random sessions agreed in {:?}: {} commands, {} waiting reserves served",
        started.elapsed(),
        tally.played,
        tally.woken
    );
}
