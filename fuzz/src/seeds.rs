//! The seed corpus: real files made by the code the tests run (a queue's
//! records and snapshots, a WAL written on the simulated disk, then torn
//! by a power loss or hit by bit rot), the core's golden files, and
//! hand-written request bodies and config files.
//!
//! `cargo run --example seeds` (in `fuzz/`) writes them to `seeds/<target>/`;
//! the crate's test checks that the committed files are exactly these.

use std::path::Path;

use beaver_core::codec::{encode_queue_snapshot, encode_record};
use beaver_core::{
    Config, Core, Effect, Input, JobId, JobSpec, Outcome, Payload, QueueName, QueuePause, Record,
    RequestId, RequeueTarget,
};
use beaver_io::wal::segment::segment_name;
use beaver_io::{
    Disk, DiskFile, MIN_SEGMENT_BYTES, SimDisk, SimDiskConfig, SnapshotStore, Wal, WalOptions,
};

use crate::block_on;
use crate::wal::WAL_DIR;

/// One seed: its target, its file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Drives a queue through a scripted workload, keeping every record.
struct Driver {
    q: Core,
    now: u64,
    req: u64,
    records: Vec<Record>,
    runs: Vec<(JobId, u32)>,
}

impl Driver {
    fn new() -> Driver {
        let config = Config {
            workers: 2,
            // One attempt handed out ahead: its start is a record too.
            prefetch: 1,
            ..Config::default()
        };
        Driver {
            q: Core::new(config),
            now: 1_700_000_000_000,
            req: 0,
            records: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Steps `input`, then reports every appended record durable until
    /// the queue appends no more.
    fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.q.step(self.now, input, &mut out);
        self.now += 25;
        loop {
            let mut last = None;
            for e in out.drain(..) {
                match e {
                    Effect::Append(r) => {
                        last = Some(r.lsn);
                        self.records.push((*r).clone());
                    }
                    Effect::Execute(x) => self.runs.push((x.id, x.attempt)),
                    _ => {}
                }
            }
            let Some(upto) = last else { break };
            self.q.step(self.now, Input::Durable { upto }, &mut out);
        }
    }

    fn request(&mut self) -> RequestId {
        self.req += 1;
        RequestId(self.req)
    }

    /// Starts every attempt handed out and ends it with `outcome(i)`.
    fn finish_runs(&mut self, outcome: impl Fn(usize) -> Outcome) {
        for (i, (id, attempt)) in std::mem::take(&mut self.runs).into_iter().enumerate() {
            self.step(Input::Started {
                id: id.clone(),
                attempt,
            });
            self.step(Input::Outcome {
                id,
                attempt,
                outcome: outcome(i),
            });
        }
    }
}

fn spec(id: Option<&str>, queue: Option<&str>, payload: &str) -> JobSpec {
    let mut s = JobSpec::new(Payload::from_json(payload.as_bytes()).expect("seed payload is JSON"));
    s.id = id.map(|i| JobId::from_client(i).expect("seed id"));
    s.queue = queue.map(|q| QueueName::parse(q).expect("seed queue"));
    s
}

/// A workload touching every record type but purge: enqueues (client and
/// assigned ids, two queues, priorities), an attempt handed out ahead and
/// started, successes, failures, retries, timeouts, dead jobs, a cancel, a
/// requeue, a queue paused and purged, a checkpoint. Returns the records
/// and the queue at two points (midway, end).
fn workload() -> (Vec<Record>, Core, Core) {
    let mut d = Driver::new();
    let mut jobs = vec![
        spec(
            Some("order-1"),
            Some("emails"),
            r#"{"to":"ada@example.com","n":1}"#,
        ),
        spec(None, None, "[1,2,3]"),
        spec(Some("report:7"), None, r#""text""#),
        spec(None, Some("emails"), "null"),
    ];
    jobs[0].priority = 3;
    jobs[0].max_attempts = Some(2);
    jobs[2].timeout_ms = Some(500);
    jobs[3].delay_ms = 60_000;
    let req = d.request();
    d.step(Input::Enqueue { req, jobs });
    let req = d.request();
    d.step(Input::Cancel {
        req,
        id: JobId::parse("4").expect("assigned id"),
    });
    d.finish_runs(|i| match i % 3 {
        0 => Outcome::Failed("exit status 3: smtp down".into()),
        1 => Outcome::Succeeded,
        _ => Outcome::TimedOut,
    });
    let midway = Core::recover(Config::default(), None, d.records.clone()).expect("replay midway");
    for _ in 0..4 {
        d.now += 10 * 60_000;
        d.step(Input::Tick);
        d.finish_runs(|_| Outcome::Failed("exit status 1".into()));
    }
    let req = d.request();
    d.step(Input::Requeue {
        req,
        target: RequeueTarget::AllDead,
    });
    let req = d.request();
    d.step(Input::Enqueue {
        req,
        jobs: vec![spec(Some("order-1"), None, "{}")],
    });
    let emails = QueueName::parse("emails").expect("queue");
    let req = d.request();
    d.step(Input::PauseQueue {
        req,
        queue: emails.clone(),
        pause: QueuePause::UntilResumed,
    });
    let req = d.request();
    d.step(Input::PurgeQueue { req, queue: emails });
    let req = d.request();
    d.step(Input::Checkpoint { req });
    (d.records, midway, d.q)
}

fn framed(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let b = encode_record(r);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

fn core_golden(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn record_seeds(records: &[Record]) -> Vec<Seed> {
    let mut out = vec![
        (
            "record",
            "golden-records-v1".to_string(),
            core_golden("records-v1.bin"),
        ),
        (
            "record",
            "golden-records-v2".to_string(),
            core_golden("records-v2.bin"),
        ),
        (
            "record",
            "golden-history-v1".to_string(),
            core_golden("history-v1-log.bin"),
        ),
        ("record", "workload".to_string(), framed(records)),
    ];
    for (i, r) in records.iter().enumerate().take(3) {
        out.push((
            "record",
            format!("one-{i}-{}", r.op.name()),
            encode_record(r),
        ));
    }
    out
}

fn snapshot_seeds(midway: &Core, end: &Core) -> Vec<Seed> {
    let body = encode_queue_snapshot(end);
    let disk = SimDisk::new(3, SimDiskConfig::default());
    let dir = Path::new("/data/snapshots");
    let file = block_on(async {
        let mut store = SnapshotStore::open(disk.clone(), dir)
            .await
            .expect("snapshot store");
        let saved = store
            .save(end.applied_lsn(), &body)
            .await
            .expect("snapshot save");
        read_file(&disk, &saved.path).await
    });
    vec![
        (
            "snapshot",
            "golden-snapshot-v1".to_string(),
            core_golden("snapshot-v1.bin"),
        ),
        (
            "snapshot",
            "golden-snapshot-v2".to_string(),
            core_golden("snapshot-v2.bin"),
        ),
        (
            "snapshot",
            "golden-history-v1".to_string(),
            core_golden("history-v1-snapshot.bin"),
        ),
        (
            "snapshot",
            "workload-midway".to_string(),
            encode_queue_snapshot(midway),
        ),
        ("snapshot", "workload-end".to_string(), body),
        ("snapshot", "workload-end-file".to_string(), file),
        (
            "snapshot",
            "empty".to_string(),
            encode_queue_snapshot(&Core::new(Config::default())),
        ),
    ]
}

async fn read_file(disk: &SimDisk, path: &Path) -> Vec<u8> {
    let f = disk.open(path).await.expect("open on SimDisk");
    let size = f.size().await.expect("size on SimDisk");
    f.read_at(0, vec![0; size as usize])
        .await
        .expect("read on SimDisk")
}

/// Every segment file of the WAL, concatenated in order.
async fn segments(disk: &SimDisk) -> Vec<u8> {
    let dir = Path::new(WAL_DIR);
    let mut out = Vec::new();
    for name in disk.list(dir).await.expect("list on SimDisk") {
        if name.ends_with(".seg") {
            out.extend(read_file(disk, &dir.join(name)).await);
        }
    }
    out
}

fn with_control(after_lsn: u8, recover: bool, files: Vec<u8>) -> Vec<u8> {
    let mut out = vec![after_lsn, u8::from(recover)];
    out.extend(files);
    out
}

/// The workload's records written as a WAL of the smallest segments, one
/// batch per two records, synced after every batch but the last; then
/// the same log after a power loss dropped the last batch, with garbage
/// in the last batch (a torn write), and after bit rot hit an acknowledged
/// batch.
fn wal_seeds(records: &[Record]) -> Vec<Seed> {
    let bodies: Vec<(u64, Vec<u8>)> = records.iter().map(|r| (r.lsn, encode_record(r))).collect();
    let disk = SimDisk::new(5, SimDiskConfig::power_faults());
    let dir = Path::new(WAL_DIR);
    let opts = WalOptions {
        segment_bytes: MIN_SEGMENT_BYTES,
        salt_seed: 11,
        ..WalOptions::default()
    };
    let (clean, torn, rotted) = block_on(async {
        let (mut wal, _) = Wal::open(disk.clone(), dir, opts.clone(), 0, |_, _| {})
            .await
            .expect("open");
        let batches: Vec<&[(u64, Vec<u8>)]> = bodies.chunks(2).collect();
        for (i, batch) in batches.iter().enumerate() {
            let recs: Vec<(u64, &[u8])> = batch.iter().map(|(l, b)| (*l, b.as_slice())).collect();
            wal.write_batch(&recs).await.expect("write");
            if i + 1 < batches.len() {
                wal.sync().await.expect("sync");
            }
        }
        let clean = segments(&disk).await;
        drop(wal);
        disk.power_loss();
        let torn = segments(&disk).await;
        let _ = Wal::open(disk.clone(), dir, opts.clone(), 0, |_, _| {})
            .await
            .expect("recover");
        // Bit rot in the second batch, which later watermarks vouch for.
        let first = dir.join(segment_name(1));
        disk.flip_bit(&first, 512 + 512 + 70, 3).expect("flip");
        (clean, torn, segments(&disk).await)
    });
    let first_segment = clean[..MIN_SEGMENT_BYTES as usize].to_vec();
    // A torn write by hand: garbage in the last batch (the second
    // segment's second, at byte 1024 of it), which no watermark vouches for.
    let mut garbled = clean.clone();
    let last_batch = MIN_SEGMENT_BYTES as usize + 1024;
    garbled[last_batch + 100..last_batch + 140].fill(0xa5);
    vec![
        (
            "wal_scan",
            "clean".to_string(),
            with_control(0, true, clean.clone()),
        ),
        (
            "wal_scan",
            "clean-after-5".to_string(),
            with_control(5, true, clean),
        ),
        (
            "wal_scan",
            "power-loss".to_string(),
            with_control(0, true, torn),
        ),
        (
            "wal_scan",
            "torn-last-batch".to_string(),
            with_control(0, true, garbled),
        ),
        (
            "wal_scan",
            "bit-rot".to_string(),
            with_control(0, true, rotted),
        ),
        (
            "wal_scan",
            "one-segment-inspect".to_string(),
            with_control(0, false, first_segment),
        ),
    ]
}

const BODIES: &[(&str, &str)] = &[
    ("one", r#"{"payload": {"to": "ada"}}"#),
    (
        "every-field",
        r#"{"id": "order-17", "queue": "emails", "payload": {"x": [1, 2.5, "é"]}, "max_attempts": 3, "timeout_ms": 30000, "delay_ms": 100, "priority": -2}"#,
    ),
    (
        "array",
        r#"[{"payload": 1}, {"payload": null, "queue": "q"}, {"id": "a", "payload": "s"}]"#,
    ),
    (
        "ndjson",
        "{\"payload\": 1}\n\n{\"id\": \"b\", \"payload\": [true]}\r\n{\"payload\": {}}\n",
    ),
    (
        "nested",
        r#"{"payload": {"a": {"b": {"c": [[[{"d": "\u00e9\n"}]]]}}}}"#,
    ),
    ("bad-field", r#"{"payload": 1, "colour": "red"}"#),
    (
        "bad-number",
        r#"[{"payload": 1}, {"payload": 1, "max_attempts": -1}]"#,
    ),
    ("reserved-id", r#"{"payload": 1, "id": "~7"}"#),
];

const CONFIGS: &[(&str, &str)] = &[
    (
        "full",
        "data_dir = \"./beaver-data\"\nworkers = 3\nthreads = 2\nlisten = \"127.0.0.1:7171\"\nmetrics_listen = \"off\"\nhandler = \"demo\"\n\n[demo]\nmin_ms = 5\nmax_ms = 50\nfailure_rate = 0.25\n\n[http]\nbody_bytes_max = 1048576\nconnections_max = 64\nbody_timeout_ms = 5000\nidle_timeout_ms = 10000\n",
    ),
    (
        "engine",
        "handler = \"noop\"\n[engine]\nsegment_bytes = 1048576\nsnapshot_pace_percent = 50\n[engine.queue]\nworkers = 4\nprefetch = 8\n[engine.queue.retry]\nbase_ms = 50\n[engine.queue.limits]\npayload_bytes_max = 65536\n",
    ),
    (
        "exec-token",
        "exec = \"./handle-job.sh\"\nlisten = \"0.0.0.0:7070\"\ntoken = \"s3cret\"\n",
    ),
    ("unknown-key", "wrokers = 3\n"),
];

/// beanstalkd sessions: (name, body-size byte, chunk byte, stream); see
/// `beanstalk::check_beanstalk` for what the two bytes pick.
const SESSIONS: &[(&str, u8, u8, &str)] = &[
    (
        "every-command",
        0,
        63,
        "use jobs\r\nput 0 0 60 5\r\nhello\r\nwatch jobs\r\nignore default\r\nreserve\r\nreserve-with-timeout 0\r\nreserve-job 1\r\ntouch 1\r\nrelease 1 10 0\r\nbury 1 5\r\nkick 3\r\nkick-job 1\r\ndelete 1\r\npeek 1\r\npeek-ready\r\npeek-delayed\r\npeek-buried\r\nstats-job 1\r\nstats-tube jobs\r\nstats\r\nlist-tubes\r\nlist-tube-used\r\nlist-tubes-watched\r\npause-tube jobs 1\r\nquit\r\n",
    ),
    (
        "refusals",
        9,
        2,
        "bogus\r\nput 0 0 60 20\r\ntoo big for eight..\r\nput 0 0 60 2\r\nabc\r\nput x\r\nstats\r\r\n",
    ),
    (
        "lenient-numbers",
        0,
        7,
        "reserve-with-timeout  -1\r\npause-tubedefault 0\r\nput 4294967296 0 0 1\r\nx\r\n",
    ),
];

/// Every seed, built afresh.
pub fn all() -> Vec<Seed> {
    let (records, midway, end) = workload();
    let mut out = record_seeds(&records);
    out.extend(snapshot_seeds(&midway, &end));
    out.extend(wal_seeds(&records));
    for (name, text) in BODIES {
        out.push(("job_body", name.to_string(), text.as_bytes().to_vec()));
    }
    for (name, text) in CONFIGS {
        out.push(("settings", name.to_string(), text.as_bytes().to_vec()));
    }
    for (name, size, chunk, stream) in SESSIONS {
        let mut bytes = vec![*size, *chunk];
        bytes.extend_from_slice(stream.as_bytes());
        out.push(("beanstalk_command", name.to_string(), bytes));
    }
    out.extend(binlog_seeds());
    out
}

/// beanstalkd logs as beanstalkd 1.12 writes them: a job in each state
/// across two files, then the same cut short, and a body too large.
fn binlog_seeds() -> Vec<Seed> {
    use beaver_input::beanstalk::binlog::{encode_record, file_header};
    let s = 1_000_000_000;
    let mut one = file_header().to_vec();
    for r in [
        encode_record(b"default", 1, 7, 60 * s, 0, 1, b"hello"),
        encode_record(b"other", 2, 3, 30 * s, 1_700_000_100 * s, 4, b"ab"),
        encode_record(b"other", 3, 9, 60 * s, 0, 1, b"xyz"),
        encode_record(b"", 1, 7, 60 * s, 0, 2, b""),
    ] {
        one.extend_from_slice(&r);
    }
    let mut two = file_header().to_vec();
    for r in [
        encode_record(b"", 3, 9, 60 * s, 0, 3, b""),
        encode_record(b"", 2, 3, 30 * s, 0, 0, b""),
        encode_record(b"default", 4, 0, s, 0, 1, &[0xff, 0, b'\r']),
    ] {
        two.extend_from_slice(&r);
    }
    two.extend_from_slice(&[0; 96]); // the preallocated rest
    // The first file's length, then both files (see `check_binlog`).
    let input = |a: &[u8], b: &[u8]| {
        let len = u16::try_from(a.len()).unwrap_or(u16::MAX);
        [&len.to_le_bytes()[..], a, b].concat()
    };
    let mut cut_short = input(&one, &two);
    cut_short.truncate(cut_short.len() - 130);
    let big = encode_record(b"default", 5, 0, s, 0, 1, &[b'x'; 100]);
    let too_big = [&file_header()[..], &big].concat();
    vec![
        ("beanstalkd_binlog", "two-files".into(), input(&one, &two)),
        ("beanstalkd_binlog", "cut-short".into(), cut_short),
        ("beanstalkd_binlog", "too-big".into(), input(&too_big, &[])),
    ]
}
