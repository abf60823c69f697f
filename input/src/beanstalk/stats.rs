//! The YAML documents of `stats`, `stats-job`, `stats-tube`, `list-tubes`
//! and `list-tubes-watched`, with beanstalkd 1.12's keys in its order.
//!
//! The key lists were read from the real server's output, which differs
//! from its protocol document: `stats` also has `cmd-reserve-with-timeout`
//! and `cmd-touch`, and `stats-tube` puts `current-watching` before
//! `current-waiting` and `pause` after `cmd-pause-tube`. Clients compare
//! these dictionaries whole, so the order is part of the contract; the
//! tests in `cli/tests/beanstalk` check these lists against the server.
//!
//! Values are written as beanstalkd writes them: numbers bare, `version`
//! in double quotes, every other string bare (even the `os` string, whose
//! `#` a YAML parser takes for a comment).

use std::io::Write as _;

use super::{TubeName, Verb};

/// `stats-job`'s keys, in order.
pub const JOB_STATS_KEYS: [&str; 14] = [
    "id",
    "tube",
    "state",
    "pri",
    "age",
    "delay",
    "ttr",
    "time-left",
    "file",
    "reserves",
    "timeouts",
    "releases",
    "buries",
    "kicks",
];

/// `stats-tube`'s keys, in order.
pub const TUBE_STATS_KEYS: [&str; 14] = [
    "name",
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "total-jobs",
    "current-using",
    "current-watching",
    "current-waiting",
    "cmd-delete",
    "cmd-pause-tube",
    "pause",
    "pause-time-left",
];

/// `stats`'s keys, in order.
pub const SERVER_STATS_KEYS: [&str; 51] = [
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "cmd-put",
    "cmd-peek",
    "cmd-peek-ready",
    "cmd-peek-delayed",
    "cmd-peek-buried",
    "cmd-reserve",
    "cmd-reserve-with-timeout",
    "cmd-delete",
    "cmd-release",
    "cmd-use",
    "cmd-watch",
    "cmd-ignore",
    "cmd-bury",
    "cmd-kick",
    "cmd-touch",
    "cmd-stats",
    "cmd-stats-job",
    "cmd-stats-tube",
    "cmd-list-tubes",
    "cmd-list-tube-used",
    "cmd-list-tubes-watched",
    "cmd-pause-tube",
    "job-timeouts",
    "total-jobs",
    "max-job-size",
    "current-tubes",
    "current-connections",
    "current-producers",
    "current-workers",
    "current-waiting",
    "total-connections",
    "pid",
    "version",
    "rusage-utime",
    "rusage-stime",
    "uptime",
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
    "draining",
    "id",
    "hostname",
    "os",
    "platform",
];

/// The commands with a `cmd-*` counter in `stats`, in its order.
/// `reserve-job`, `kick-job` and `quit` have none, and bump none.
pub const COUNTED_VERBS: [Verb; 22] = [
    Verb::Put,
    Verb::Peek,
    Verb::PeekReady,
    Verb::PeekDelayed,
    Verb::PeekBuried,
    Verb::Reserve,
    Verb::ReserveWithTimeout,
    Verb::Delete,
    Verb::Release,
    Verb::Use,
    Verb::Watch,
    Verb::Ignore,
    Verb::Bury,
    Verb::Kick,
    Verb::Touch,
    Verb::Stats,
    Verb::StatsJob,
    Verb::StatsTube,
    Verb::ListTubes,
    Verb::ListTubeUsed,
    Verb::ListTubesWatched,
    Verb::PauseTube,
];

/// The `cmd-*` counters of `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCounts {
    counts: [u64; COUNTED_VERBS.len()],
}

impl CommandCounts {
    /// Counts one `verb` command; a verb without a counter is ignored.
    pub fn bump(&mut self, verb: Verb) {
        if let Some(i) = COUNTED_VERBS.iter().position(|&v| v == verb) {
            self.counts[i] = self.counts[i].saturating_add(1);
        }
    }

    /// The count of `verb` commands (`None`: beanstalkd keeps no counter
    /// for it).
    pub fn get(&self, verb: Verb) -> Option<u64> {
        let i = COUNTED_VERBS.iter().position(|&v| v == verb)?;
        Some(self.counts[i])
    }
}

/// Jobs by state (and the urgent ones among the ready), for a tube or the
/// whole server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Ready jobs with a priority below [`super::URGENT_PRIORITY`].
    pub urgent: u64,
    /// Ready jobs.
    pub ready: u64,
    /// Reserved jobs.
    pub reserved: u64,
    /// Delayed jobs.
    pub delayed: u64,
    /// Buried jobs.
    pub buried: u64,
}

/// A job's state as `stats-job` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to be reserved.
    Ready,
    /// Waiting for its delay to pass.
    Delayed,
    /// Reserved by a connection.
    Reserved,
    /// Buried until kicked.
    Buried,
}

impl JobState {
    /// The state's name in `stats-job`.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Delayed => "delayed",
            JobState::Reserved => "reserved",
            JobState::Buried => "buried",
        }
    }
}

/// What `stats-job` reports. Durations are whole seconds, rounded down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats<'a> {
    /// The job's id.
    pub id: u64,
    /// Its tube.
    pub tube: &'a TubeName,
    /// Its state.
    pub state: JobState,
    /// Its priority.
    pub pri: u32,
    /// Seconds since its `put`.
    pub age_s: u64,
    /// The delay of its last `put` or `release`, in seconds.
    pub delay_s: u64,
    /// Its time to run, in seconds.
    pub ttr_s: u64,
    /// Seconds until it becomes ready (delayed) or times out (reserved);
    /// 0 otherwise.
    pub time_left_s: u64,
    /// beanstalkd's oldest binlog file holding the job (0 without `-b`).
    pub file: u64,
    /// Times reserved.
    pub reserves: u64,
    /// Times its reservation timed out.
    pub timeouts: u64,
    /// Times released.
    pub releases: u64,
    /// Times buried.
    pub buries: u64,
    /// Times kicked.
    pub kicks: u64,
}

/// What `stats-tube` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TubeStats<'a> {
    /// The tube.
    pub name: &'a TubeName,
    /// Its jobs by state.
    pub jobs: JobCounts,
    /// Jobs ever put into it since the server started.
    pub total_jobs: u64,
    /// Connections using it.
    pub current_using: u64,
    /// Connections watching it.
    pub current_watching: u64,
    /// Connections waiting in a reserve while watching it.
    pub current_waiting: u64,
    /// `delete` commands on its jobs.
    pub cmd_delete: u64,
    /// `pause-tube` commands on it.
    pub cmd_pause_tube: u64,
    /// The delay of its last `pause-tube`, in seconds.
    pub pause_s: u64,
    /// Seconds until it is unpaused.
    pub pause_time_left_s: u64,
}

/// What `stats` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStats<'a> {
    /// All jobs by state.
    pub jobs: JobCounts,
    /// The `cmd-*` counters.
    pub cmd: CommandCounts,
    /// Reservations that timed out.
    pub job_timeouts: u64,
    /// Jobs created since start.
    pub total_jobs: u64,
    /// The largest job body, in bytes.
    pub max_job_size: u64,
    /// Tubes that exist.
    pub current_tubes: u64,
    /// Open connections.
    pub current_connections: u64,
    /// Open connections that have put a job.
    pub current_producers: u64,
    /// Open connections that have reserved.
    pub current_workers: u64,
    /// Connections waiting in a reserve.
    pub current_waiting: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// The server's process id.
    pub pid: u32,
    /// The server's version (written quoted).
    pub version: &'a str,
    /// User CPU time, in microseconds.
    pub rusage_utime_us: u64,
    /// System CPU time, in microseconds.
    pub rusage_stime_us: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// beanstalkd's `binlog-oldest-index`.
    pub binlog_oldest_index: u64,
    /// beanstalkd's `binlog-current-index`.
    pub binlog_current_index: u64,
    /// beanstalkd's `binlog-records-migrated`.
    pub binlog_records_migrated: u64,
    /// beanstalkd's `binlog-records-written`.
    pub binlog_records_written: u64,
    /// beanstalkd's `binlog-max-size`, in bytes.
    pub binlog_max_size: u64,
    /// Whether the server refuses new jobs.
    pub draining: bool,
    /// A random id for this server process.
    pub id: &'a str,
    /// `uname`'s node name.
    pub hostname: &'a str,
    /// `uname`'s version.
    pub os: &'a str,
    /// `uname`'s machine.
    pub platform: &'a str,
}

/// A value as beanstalkd writes it.
enum Value<'a> {
    Num(u64),
    Text(&'a str),
    Quoted(&'a str),
    Bool(bool),
    /// Microseconds written as `seconds.micros`.
    Micros(u64),
}

/// `---\n` then `key: value\n` per pair, in order.
fn dictionary<'a>(pairs: impl IntoIterator<Item = (&'a str, Value<'a>)>) -> Vec<u8> {
    let mut out = b"---\n".to_vec();
    for (key, value) in pairs {
        // Writing to a Vec cannot fail.
        let _ = match value {
            Value::Num(n) => writeln!(out, "{key}: {n}"),
            Value::Text(s) => writeln!(out, "{key}: {s}"),
            Value::Quoted(s) => writeln!(out, "{key}: \"{s}\""),
            Value::Bool(b) => writeln!(out, "{key}: {b}"),
            Value::Micros(us) => writeln!(out, "{key}: {}.{:06}", us / 1_000_000, us % 1_000_000),
        };
    }
    out
}

fn job_count_values(j: &JobCounts) -> [Value<'static>; 5] {
    [
        Value::Num(j.urgent),
        Value::Num(j.ready),
        Value::Num(j.reserved),
        Value::Num(j.delayed),
        Value::Num(j.buried),
    ]
}

impl JobStats<'_> {
    /// The YAML document, for [`super::Reply::Ok`].
    pub fn to_yaml(&self) -> Vec<u8> {
        let values = [
            Value::Num(self.id),
            Value::Text(self.tube.as_str()),
            Value::Text(self.state.name()),
            Value::Num(u64::from(self.pri)),
            Value::Num(self.age_s),
            Value::Num(self.delay_s),
            Value::Num(self.ttr_s),
            Value::Num(self.time_left_s),
            Value::Num(self.file),
            Value::Num(self.reserves),
            Value::Num(self.timeouts),
            Value::Num(self.releases),
            Value::Num(self.buries),
            Value::Num(self.kicks),
        ];
        dictionary(JOB_STATS_KEYS.into_iter().zip(values))
    }
}

impl TubeStats<'_> {
    /// The YAML document, for [`super::Reply::Ok`].
    pub fn to_yaml(&self) -> Vec<u8> {
        let [urgent, ready, reserved, delayed, buried] = job_count_values(&self.jobs);
        let values = [
            Value::Text(self.name.as_str()),
            urgent,
            ready,
            reserved,
            delayed,
            buried,
            Value::Num(self.total_jobs),
            Value::Num(self.current_using),
            Value::Num(self.current_watching),
            Value::Num(self.current_waiting),
            Value::Num(self.cmd_delete),
            Value::Num(self.cmd_pause_tube),
            Value::Num(self.pause_s),
            Value::Num(self.pause_time_left_s),
        ];
        dictionary(TUBE_STATS_KEYS.into_iter().zip(values))
    }
}

impl ServerStats<'_> {
    /// The YAML document, for [`super::Reply::Ok`].
    pub fn to_yaml(&self) -> Vec<u8> {
        let cmd = COUNTED_VERBS.map(|v| Value::Num(self.cmd.get(v).unwrap_or(0)));
        let rest = [
            Value::Num(self.job_timeouts),
            Value::Num(self.total_jobs),
            Value::Num(self.max_job_size),
            Value::Num(self.current_tubes),
            Value::Num(self.current_connections),
            Value::Num(self.current_producers),
            Value::Num(self.current_workers),
            Value::Num(self.current_waiting),
            Value::Num(self.total_connections),
            Value::Num(u64::from(self.pid)),
            Value::Quoted(self.version),
            Value::Micros(self.rusage_utime_us),
            Value::Micros(self.rusage_stime_us),
            Value::Num(self.uptime_s),
            Value::Num(self.binlog_oldest_index),
            Value::Num(self.binlog_current_index),
            Value::Num(self.binlog_records_migrated),
            Value::Num(self.binlog_records_written),
            Value::Num(self.binlog_max_size),
            Value::Bool(self.draining),
            Value::Text(self.id),
            Value::Text(self.hostname),
            Value::Text(self.os),
            Value::Text(self.platform),
        ];
        let values = job_count_values(&self.jobs)
            .into_iter()
            .chain(cmd)
            .chain(rest);
        dictionary(SERVER_STATS_KEYS.into_iter().zip(values))
    }
}

/// The YAML list of `list-tubes` and `list-tubes-watched`: `---\n` then
/// `- name\n` per tube, in the order given (beanstalkd's is creation order
/// with removals filled by the last entry; see the transcripts).
pub fn tube_list_yaml<'a>(names: impl IntoIterator<Item = &'a TubeName>) -> Vec<u8> {
    let mut out = b"---\n".to_vec();
    for name in names {
        out.extend_from_slice(b"- ");
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b'\n');
    }
    out
}

// The server document has one value per key: 5 job counts, the counters,
// and 24 more.
const _: () = assert!(5 + COUNTED_VERBS.len() + 24 == SERVER_STATS_KEYS.len());

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(yaml: &[u8]) -> Vec<String> {
        let text = String::from_utf8(yaml.to_vec()).expect("ascii");
        let body = text.strip_prefix("---\n").expect("document start");
        body.lines()
            .map(|l| l.split(": ").next().expect("key").to_owned())
            .collect()
    }

    #[test]
    fn every_document_has_its_keys_in_order() {
        let tube = TubeName::default_tube();
        let job = JobStats {
            id: 1,
            tube: &tube,
            state: JobState::Ready,
            pri: 0,
            age_s: 0,
            delay_s: 0,
            ttr_s: 1,
            time_left_s: 0,
            file: 0,
            reserves: 0,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
        };
        assert_eq!(keys(&job.to_yaml()), JOB_STATS_KEYS);
        let tube_stats = TubeStats {
            name: &tube,
            jobs: JobCounts::default(),
            total_jobs: 0,
            current_using: 1,
            current_watching: 1,
            current_waiting: 0,
            cmd_delete: 0,
            cmd_pause_tube: 0,
            pause_s: 0,
            pause_time_left_s: 0,
        };
        assert_eq!(keys(&tube_stats.to_yaml()), TUBE_STATS_KEYS);
        assert_eq!(keys(&sample_server().to_yaml()), SERVER_STATS_KEYS);
    }

    fn sample_server() -> ServerStats<'static> {
        let mut cmd = CommandCounts::default();
        cmd.bump(Verb::Stats);
        cmd.bump(Verb::ReserveJob);
        ServerStats {
            jobs: JobCounts::default(),
            cmd,
            job_timeouts: 0,
            total_jobs: 0,
            max_job_size: 65_535,
            current_tubes: 1,
            current_connections: 1,
            current_producers: 0,
            current_workers: 0,
            current_waiting: 0,
            total_connections: 1,
            pid: 42,
            version: "1.12",
            rusage_utime_us: 1_002_003,
            rusage_stime_us: 0,
            uptime_s: 5,
            binlog_oldest_index: 0,
            binlog_current_index: 0,
            binlog_records_migrated: 0,
            binlog_records_written: 0,
            binlog_max_size: 10_485_760,
            draining: false,
            id: "02027fee4a39ffe1",
            hostname: "vm",
            os: "#1 SMP",
            platform: "x86_64",
        }
    }

    #[test]
    fn values_are_written_as_beanstalkd_writes_them() {
        let text = String::from_utf8(sample_server().to_yaml()).expect("ascii");
        for line in [
            "cmd-stats: 1\n",
            "version: \"1.12\"\n",
            "rusage-utime: 1.002003\n",
            "rusage-stime: 0.000000\n",
            "draining: false\n",
            "os: #1 SMP\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        let a = TubeName::new(b"a").expect("name");
        let list = tube_list_yaml([&TubeName::default_tube(), &a]);
        assert_eq!(list, b"---\n- default\n- a\n");
    }
}
