//! Commands, and reading one from a command line the way beanstalkd 1.12
//! does, quirks included.

use super::framer::{ProtocolError, Refusal};
use super::name::{TubeName, name_chars};
use super::scan::{read_u32, read_u64, strtol, strtoul};
use super::{LINE_BYTES_MAX, TUBE_NAME_BYTES_MAX};

/// One well-formed command. Numbers are as the client sent them; the rules
/// a server applies on top (a `ttr` of 0 runs as 1) are the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `put <pri> <delay> <ttr> <bytes>` and its body (CRLF stripped; at
    /// most the framer's `job_bytes_max` bytes).
    Put {
        /// Priority: lower runs first.
        pri: u32,
        /// Seconds the job stays delayed.
        delay_s: u32,
        /// Time to run, in seconds; beanstalkd raises 0 to 1.
        ttr_s: u32,
        /// The job body.
        body: Vec<u8>,
    },
    /// `use <tube>`: later puts go to this tube.
    Use(TubeName),
    /// `reserve`: wait as long as it takes.
    Reserve,
    /// `reserve-with-timeout <seconds>`. beanstalkd reads the number with
    /// `strtol` and keeps its low 32 bits: `x` reads as 0, `-1` as
    /// 4,294,967,295 (about forever), and only a value outside 64 bits is
    /// `BAD_FORMAT`.
    ReserveWithTimeout {
        /// Seconds to wait for a job; 0 answers at once.
        timeout_s: u32,
    },
    /// `reserve-job <id>`.
    ReserveJob {
        /// The job.
        id: u64,
    },
    /// `delete <id>`.
    Delete {
        /// The job.
        id: u64,
    },
    /// `release <id> <pri> <delay>`.
    Release {
        /// The job.
        id: u64,
        /// Its new priority.
        pri: u32,
        /// Seconds it stays delayed.
        delay_s: u32,
    },
    /// `bury <id> <pri>`.
    Bury {
        /// The job.
        id: u64,
        /// Its new priority.
        pri: u32,
    },
    /// `touch <id>`.
    Touch {
        /// The job.
        id: u64,
    },
    /// `watch <tube>`.
    Watch(TubeName),
    /// `ignore <tube>`.
    Ignore(TubeName),
    /// `peek <id>`.
    Peek {
        /// The job.
        id: u64,
    },
    /// `peek-ready`.
    PeekReady,
    /// `peek-delayed`.
    PeekDelayed,
    /// `peek-buried`.
    PeekBuried,
    /// `kick <bound>`. beanstalkd reads the bound with `strtoul` and keeps
    /// its low 32 bits: `+3`, `3x` and `-1` (4,294,967,295) are accepted.
    Kick {
        /// The most jobs to kick.
        bound: u32,
    },
    /// `kick-job <id>`.
    KickJob {
        /// The job.
        id: u64,
    },
    /// `stats-job <id>`.
    StatsJob {
        /// The job.
        id: u64,
    },
    /// `stats-tube <tube>`.
    StatsTube(TubeName),
    /// `stats`.
    Stats,
    /// `list-tubes`.
    ListTubes,
    /// `list-tube-used`.
    ListTubeUsed,
    /// `list-tubes-watched`.
    ListTubesWatched,
    /// `pause-tube <tube> <delay>`.
    PauseTube {
        /// The tube.
        tube: TubeName,
        /// Seconds no job may be reserved from it.
        delay_s: u32,
    },
    /// `quit` (or any line starting with `quit`): close the connection.
    Quit,
}

/// The kind of a command, without its arguments: what `cmd-*` counters and
/// logs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // Each variant is the command of the same name.
pub enum Verb {
    Put,
    Use,
    Reserve,
    ReserveWithTimeout,
    ReserveJob,
    Delete,
    Release,
    Bury,
    Touch,
    Watch,
    Ignore,
    Peek,
    PeekReady,
    PeekDelayed,
    PeekBuried,
    Kick,
    KickJob,
    StatsJob,
    StatsTube,
    Stats,
    ListTubes,
    ListTubeUsed,
    ListTubesWatched,
    PauseTube,
    Quit,
}

impl Verb {
    /// Every verb, in the protocol document's order.
    pub const ALL: [Verb; 25] = [
        Verb::Put,
        Verb::Use,
        Verb::Reserve,
        Verb::ReserveWithTimeout,
        Verb::ReserveJob,
        Verb::Delete,
        Verb::Release,
        Verb::Bury,
        Verb::Touch,
        Verb::Watch,
        Verb::Ignore,
        Verb::Peek,
        Verb::PeekReady,
        Verb::PeekDelayed,
        Verb::PeekBuried,
        Verb::Kick,
        Verb::KickJob,
        Verb::StatsJob,
        Verb::StatsTube,
        Verb::Stats,
        Verb::ListTubes,
        Verb::ListTubeUsed,
        Verb::ListTubesWatched,
        Verb::PauseTube,
        Verb::Quit,
    ];

    /// The command's name on the wire (`"reserve-with-timeout"`).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Put => "put",
            Verb::Use => "use",
            Verb::Reserve => "reserve",
            Verb::ReserveWithTimeout => "reserve-with-timeout",
            Verb::ReserveJob => "reserve-job",
            Verb::Delete => "delete",
            Verb::Release => "release",
            Verb::Bury => "bury",
            Verb::Touch => "touch",
            Verb::Watch => "watch",
            Verb::Ignore => "ignore",
            Verb::Peek => "peek",
            Verb::PeekReady => "peek-ready",
            Verb::PeekDelayed => "peek-delayed",
            Verb::PeekBuried => "peek-buried",
            Verb::Kick => "kick",
            Verb::KickJob => "kick-job",
            Verb::StatsJob => "stats-job",
            Verb::StatsTube => "stats-tube",
            Verb::Stats => "stats",
            Verb::ListTubes => "list-tubes",
            Verb::ListTubeUsed => "list-tube-used",
            Verb::ListTubesWatched => "list-tubes-watched",
            Verb::PauseTube => "pause-tube",
            Verb::Quit => "quit",
        }
    }
}

impl Command {
    /// The command's kind.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Put { .. } => Verb::Put,
            Command::Use(_) => Verb::Use,
            Command::Reserve => Verb::Reserve,
            Command::ReserveWithTimeout { .. } => Verb::ReserveWithTimeout,
            Command::ReserveJob { .. } => Verb::ReserveJob,
            Command::Delete { .. } => Verb::Delete,
            Command::Release { .. } => Verb::Release,
            Command::Bury { .. } => Verb::Bury,
            Command::Touch { .. } => Verb::Touch,
            Command::Watch(_) => Verb::Watch,
            Command::Ignore(_) => Verb::Ignore,
            Command::Peek { .. } => Verb::Peek,
            Command::PeekReady => Verb::PeekReady,
            Command::PeekDelayed => Verb::PeekDelayed,
            Command::PeekBuried => Verb::PeekBuried,
            Command::Kick { .. } => Verb::Kick,
            Command::KickJob { .. } => Verb::KickJob,
            Command::StatsJob { .. } => Verb::StatsJob,
            Command::StatsTube(_) => Verb::StatsTube,
            Command::Stats => Verb::Stats,
            Command::ListTubes => Verb::ListTubes,
            Command::ListTubeUsed => Verb::ListTubeUsed,
            Command::ListTubesWatched => Verb::ListTubesWatched,
            Command::PauseTube { .. } => Verb::PauseTube,
            Command::Quit => Verb::Quit,
        }
    }

    /// Appends the command as a client sends it (its canonical form, body
    /// and CRLFs included) to `out`. The framer reads it back as `self`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let name = self.verb().name();
        // Writing to a Vec cannot fail.
        let _ = match self {
            Command::Put {
                pri,
                delay_s,
                ttr_s,
                body,
            } => {
                let _ = write!(out, "put {pri} {delay_s} {ttr_s} {}\r\n", body.len());
                out.extend_from_slice(body);
                Ok(())
            }
            Command::Use(t) | Command::Watch(t) | Command::Ignore(t) | Command::StatsTube(t) => {
                write!(out, "{name} {t}")
            }
            Command::ReserveWithTimeout { timeout_s } => write!(out, "{name} {timeout_s}"),
            Command::ReserveJob { id }
            | Command::Delete { id }
            | Command::Touch { id }
            | Command::Peek { id }
            | Command::KickJob { id }
            | Command::StatsJob { id } => write!(out, "{name} {id}"),
            Command::Release { id, pri, delay_s } => write!(out, "{name} {id} {pri} {delay_s}"),
            Command::Bury { id, pri } => write!(out, "{name} {id} {pri}"),
            Command::Kick { bound } => write!(out, "{name} {bound}"),
            Command::PauseTube { tube, delay_s } => write!(out, "{name} {tube} {delay_s}"),
            Command::Reserve
            | Command::PeekReady
            | Command::PeekDelayed
            | Command::PeekBuried
            | Command::Stats
            | Command::ListTubes
            | Command::ListTubeUsed
            | Command::ListTubesWatched
            | Command::Quit => write!(out, "{name}"),
        };
        out.extend_from_slice(b"\r\n");
    }
}

/// What one command line (CRLF stripped) asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// A complete command.
    Command(Command),
    /// A `put` whose `bytes + 2` bytes of body (CRLF included) follow.
    Put {
        pri: u32,
        delay_s: u32,
        ttr_s: u32,
        bytes: u32,
    },
    /// A `put` of more than the largest job: beanstalkd reads and drops
    /// `bytes + 2` bytes, then answers `JOB_TOO_BIG`.
    PutTooBig { bytes: u32 },
    /// Answer this error and read the next line.
    Refused(Refusal),
}

/// A `BAD_FORMAT` refusal that no `cmd-*` counter sees.
fn bad_format() -> Line {
    Line::Refused(Refusal::new(ProtocolError::BadFormat, None))
}

/// The command prefixes in the order beanstalkd 1.12 tries them: the first
/// one the line starts with decides the command. Order matters where one
/// is a prefix of another (`stats-job ` before `stats`). Prefixes without a
/// trailing space take no argument; `quit` and `pause-tube` are matched
/// loosely, exactly as beanstalkd does (`quitx` quits, `pause-tubefoo 1`
/// pauses `foo`).
const PREFIXES: [(&[u8], Verb); 25] = [
    (b"put ", Verb::Put),
    (b"peek ", Verb::Peek),
    (b"peek-ready", Verb::PeekReady),
    (b"peek-delayed", Verb::PeekDelayed),
    (b"peek-buried", Verb::PeekBuried),
    (b"reserve-with-timeout ", Verb::ReserveWithTimeout),
    (b"reserve-job ", Verb::ReserveJob),
    (b"reserve", Verb::Reserve),
    (b"delete ", Verb::Delete),
    (b"release ", Verb::Release),
    (b"bury ", Verb::Bury),
    (b"kick ", Verb::Kick),
    (b"kick-job ", Verb::KickJob),
    (b"touch ", Verb::Touch),
    (b"stats-job ", Verb::StatsJob),
    (b"stats-tube ", Verb::StatsTube),
    (b"stats", Verb::Stats),
    (b"use ", Verb::Use),
    (b"watch ", Verb::Watch),
    (b"ignore ", Verb::Ignore),
    (b"list-tubes-watched", Verb::ListTubesWatched),
    (b"list-tube-used", Verb::ListTubeUsed),
    (b"list-tubes", Verb::ListTubes),
    (b"quit", Verb::Quit),
    (b"pause-tube", Verb::PauseTube),
];

/// Reads one command line, its CRLF already stripped, as beanstalkd 1.12
/// does. `job_bytes_max` decides `JOB_TOO_BIG`.
pub(super) fn parse_line(line: &[u8], job_bytes_max: u32) -> Line {
    // beanstalkd handles the line as a C string and refuses one that a NUL
    // would cut short, before even looking at the command.
    if line.contains(&0) {
        return bad_format();
    }
    let Some(&(prefix, verb)) = PREFIXES.iter().find(|(p, _)| line.starts_with(p)) else {
        return Line::Refused(Refusal::new(ProtocolError::UnknownCommand, None));
    };
    let args = &line[prefix.len()..];
    match verb {
        Verb::Put => parse_put(args, job_bytes_max),
        Verb::PauseTube => parse_pause_tube(args),
        Verb::Quit => Line::Command(Command::Quit),
        Verb::ReserveWithTimeout => match strtol(args) {
            // Truncating to 32 bits is beanstalkd's behaviour, kept on purpose.
            Some(t) => Line::Command(Command::ReserveWithTimeout {
                timeout_s: t as u32,
            }),
            None => bad_format(),
        },
        Verb::Kick => match strtoul(args) {
            Some(bound) => Line::Command(Command::Kick {
                bound: bound as u32,
            }),
            None => bad_format(),
        },
        Verb::Use | Verb::Watch | Verb::Ignore | Verb::StatsTube => match TubeName::new(args) {
            Some(tube) => Line::Command(match verb {
                Verb::Use => Command::Use(tube),
                Verb::Watch => Command::Watch(tube),
                Verb::Ignore => Command::Ignore(tube),
                _ => Command::StatsTube(tube),
            }),
            None => bad_format(),
        },
        _ => parse_numeric(verb, args),
    }
}

/// The commands whose arguments are strict numbers (or none at all).
fn parse_numeric(verb: Verb, args: &[u8]) -> Line {
    let command = match verb {
        Verb::Release => id_pri(args).and_then(|(id, pri, rest)| {
            let delay_s = last_u32(rest)?;
            Some(Command::Release { id, pri, delay_s })
        }),
        Verb::Bury => id_pri(args)
            .and_then(|(id, pri, rest)| rest.is_empty().then_some(Command::Bury { id, pri })),
        Verb::ReserveJob => last_u64(args).map(|id| Command::ReserveJob { id }),
        Verb::Delete => last_u64(args).map(|id| Command::Delete { id }),
        Verb::Touch => last_u64(args).map(|id| Command::Touch { id }),
        Verb::Peek => last_u64(args).map(|id| Command::Peek { id }),
        Verb::KickJob => last_u64(args).map(|id| Command::KickJob { id }),
        Verb::StatsJob => last_u64(args).map(|id| Command::StatsJob { id }),
        // The argument-less commands: trailing bytes (even a space) refuse.
        _ if !args.is_empty() => None,
        Verb::Reserve => Some(Command::Reserve),
        Verb::PeekReady => Some(Command::PeekReady),
        Verb::PeekDelayed => Some(Command::PeekDelayed),
        Verb::PeekBuried => Some(Command::PeekBuried),
        Verb::Stats => Some(Command::Stats),
        Verb::ListTubes => Some(Command::ListTubes),
        Verb::ListTubeUsed => Some(Command::ListTubeUsed),
        Verb::ListTubesWatched => Some(Command::ListTubesWatched),
        // parse_line handles the rest before calling here.
        _ => None,
    };
    command.map_or_else(bad_format, Line::Command)
}

/// An id then a priority.
fn id_pri(args: &[u8]) -> Option<(u64, u32, &[u8])> {
    let (id, rest) = read_u64(args)?;
    let (pri, rest) = read_u32(rest)?;
    Some((id, pri, rest))
}

/// A last argument: a strict `u64` with nothing after it.
fn last_u64(args: &[u8]) -> Option<u64> {
    read_u64(args).and_then(|(v, rest)| rest.is_empty().then_some(v))
}

/// A last argument: a strict `u32` with nothing after it.
fn last_u32(args: &[u8]) -> Option<u32> {
    read_u32(args).and_then(|(v, rest)| rest.is_empty().then_some(v))
}

/// `put`'s line. beanstalkd checks the size before the end of the line,
/// so `put 0 0 1 99999 junk` drops 100,001 bytes and says `JOB_TOO_BIG`;
/// once the four numbers read, the line counts in `cmd-put` whatever
/// follows.
fn parse_put(args: &[u8], job_bytes_max: u32) -> Line {
    let numbers = (|| {
        let (pri, rest) = read_u32(args)?;
        let (delay_s, rest) = read_u32(rest)?;
        let (ttr_s, rest) = read_u32(rest)?;
        let (bytes, rest) = read_u32(rest)?;
        Some((pri, delay_s, ttr_s, bytes, rest))
    })();
    let Some((pri, delay_s, ttr_s, bytes, rest)) = numbers else {
        return bad_format();
    };
    if bytes > job_bytes_max {
        return Line::PutTooBig { bytes };
    }
    if !rest.is_empty() {
        return Line::Refused(Refusal::new(ProtocolError::BadFormat, Some(Verb::Put)));
    }
    Line::Put {
        pri,
        delay_s,
        ttr_s,
        bytes,
    }
}

/// `pause-tube`'s line: unlike the other tube commands it skips spaces
/// before the name and ends the name at the first character that cannot
/// be in one. The delay is read before the name is checked, and a line
/// with a well-read delay counts in `cmd-pause-tube` even when the name is
/// then refused (too long, or starting with `-`).
fn parse_pause_tube(args: &[u8]) -> Line {
    let start = args.iter().take_while(|&&b| b == b' ').count();
    let args = &args[start..];
    let len = name_chars(args);
    if len == 0 {
        return bad_format();
    }
    let (name, rest) = args.split_at(len);
    let Some(delay_s) = last_u32(rest) else {
        return bad_format();
    };
    match TubeName::new(name) {
        Some(tube) => Line::Command(Command::PauseTube { tube, delay_s }),
        None => Line::Refused(Refusal::new(
            ProtocolError::BadFormat,
            Some(Verb::PauseTube),
        )),
    }
}

// beanstalkd sizes its line buffer for its longest valid command line: a
// `pause-tube` of the longest name and the largest delay. Keep it so.
const _: () = assert!(
    b"pause-tube ".len() + TUBE_NAME_BYTES_MAX + b" 4294967295\r\n".len() == LINE_BYTES_MAX
);
