//! `beaver beanstalkd` started in beanstalkd's place on the same `-b` dir
//! takes over the jobs of beanstalkd's log: Debian's beanstalkd makes the
//! log, beaver reads it (needs the reference; see `server.rs`).

use std::net::SocketAddr;

use crate::kill9::{ask, beaver, connect};
use crate::server::{Options, Server, ServerCmd, available_or_skip};
use crate::wire::{self, yaml_value as yaml};

/// The reply line and the body a peek command in `tube` gets.
fn peek_found(addr: SocketAddr, tube: &str, cmd: &str) -> (String, String) {
    let text = wire::last_reply(addr, &[&format!("use {tube}\r\n"), cmd]);
    let mut parts = text.split("\r\n");
    let line = parts.next().unwrap_or_default().to_string();
    (line, parts.next().unwrap_or_default().to_string())
}

/// The body a peek command in `tube` finds.
fn peek(addr: SocketAddr, tube: &str, cmd: &str) -> String {
    peek_found(addr, tube, cmd).1
}

/// Every state comes over: ready, reserved (ready again), delayed (with
/// its time left), buried; a deleted job does not. Tubes, priorities and
/// TTRs are kept; beanstalkd's files are moved aside, and a restart takes
/// nothing over twice.
#[test]
fn beaver_takes_over_the_jobs_of_beanstalkds_log() {
    let test = "beaver_takes_over_the_jobs_of_beanstalkds_log";
    let Some(reference) = available_or_skip(ServerCmd::reference(), test) else {
        return;
    };
    let mut server = Server::start(&reference, Options::persistent(&[]));
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 5 0 60 7\r\nready-a\r\n"), "INSERTED 1");
    assert_eq!(ask(&mut c, "use other\r\n"), "USING other");
    assert_eq!(
        ask(&mut c, "put 7 3600 30 9\r\ndelayed-b\r\n"),
        "INSERTED 2"
    );
    assert_eq!(ask(&mut c, "put 9 0 60 8\r\nburied-c\r\n"), "INSERTED 3");
    assert_eq!(ask(&mut c, "use default\r\n"), "USING default");
    assert_eq!(ask(&mut c, "put 1 0 60 10\r\nreserved-d\r\n"), "INSERTED 4");
    assert_eq!(ask(&mut c, "put 0 0 60 9\r\ndeleted-e\r\n"), "INSERTED 5");
    assert_eq!(ask(&mut c, "delete 5\r\n"), "DELETED");
    assert_eq!(ask(&mut c, "reserve-job 3\r\n"), "RESERVED 3 8");
    assert_eq!(ask(&mut c, "bury 3 9\r\n"), "BURIED");
    assert_eq!(ask(&mut c, "reserve-job 4\r\n"), "RESERVED 4 10");
    drop(c);

    server.restart_as(&beaver());
    let check = |server: &Server| {
        let addr = server.addr;
        let default = |k: &str| yaml(addr, "stats-tube default\r\n", k);
        let other = |k: &str| yaml(addr, "stats-tube other\r\n", k);
        assert_eq!(default("current-jobs-ready"), "2", "{}", server.log());
        assert_eq!(default("current-jobs-buried"), "0");
        assert_eq!(other("current-jobs-delayed"), "1");
        assert_eq!(other("current-jobs-buried"), "1");
        assert_eq!(other("current-jobs-ready"), "0");
        assert_eq!(peek(addr, "default", "peek-ready\r\n"), "reserved-d");
        assert_eq!(peek(addr, "other", "peek-buried\r\n"), "buried-c");
        assert_eq!(peek(addr, "other", "peek-delayed\r\n"), "delayed-b");
    };
    check(&server);
    let log = server.log();
    assert!(
        log.contains("took over the jobs of beanstalkd's log: 4 (2 ready, 1 delayed, 1 buried)"),
        "{log}"
    );
    let dir = server.data_dir();
    assert!(dir.join("beanstalkd-taken-over/binlog.1").exists(), "{log}");
    assert!(!dir.join("binlog.1").exists(), "{log}");
    // The delayed job keeps its time left, priority and TTR.
    let (found, _) = peek_found(server.addr, "other", "peek-delayed\r\n");
    let id = found
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let job = |k: &str| yaml(server.addr, &format!("stats-job {id}\r\n"), k);
    assert_eq!(
        (job("pri").as_str(), job("ttr").as_str()),
        ("7", "30"),
        "{found}"
    );
    let left: u64 = job("time-left").parse().expect("a number");
    assert!((3_500..=3_600).contains(&left), "time-left {left}");
    server.restart();
    check(&server);
    assert_eq!(
        server.log().matches("took over").count(),
        1,
        "{}",
        server.log()
    );
}

/// A takeover cut short goes on from its progress file: the jobs it
/// recorded as taken are not put again.
#[test]
fn a_takeover_cut_short_goes_on_from_its_progress() {
    let test = "a_takeover_cut_short_goes_on_from_its_progress";
    let Some(reference) = available_or_skip(ServerCmd::reference(), test) else {
        return;
    };
    let mut server = Server::start(&reference, Options::persistent(&[]));
    let mut c = connect(server.addr);
    for (i, body) in ["one", "two", "three"].iter().enumerate() {
        let put = format!("put 0 0 60 {}\r\n{body}\r\n", body.len());
        assert_eq!(ask(&mut c, &put), format!("INSERTED {}", i + 1));
    }
    drop(c);
    server.stop();
    // As a crash after the first two were durable leaves it.
    std::fs::write(server.data_dir().join("beanstalkd-takeover"), "2\n").expect("progress");
    server.restart_as(&beaver());
    let addr = server.addr;
    assert_eq!(
        yaml(addr, "stats-tube default\r\n", "current-jobs-ready"),
        "1"
    );
    assert_eq!(peek(addr, "default", "peek-ready\r\n"), "three");
    assert!(!server.data_dir().join("beanstalkd-takeover").exists());
    let log = server.log();
    assert!(
        log.contains("beanstalkd's log: 1 (1 ready, 0 delayed, 0 buried)"),
        "{log}"
    );
}

/// Each tube's jobs by state as a takeover sees them: (ready, counting the
/// reserved ones, which come back ready; delayed; buried), or `None` for a
/// tube the server does not know.
fn counts(addr: SocketAddr, tube: &str) -> Option<(u64, u64, u64)> {
    let text = wire::last_reply(addr, &[&format!("stats-tube {tube}\r\n")]);
    if text.starts_with("NOT_FOUND") {
        return None;
    }
    let n = |k: &str| -> u64 {
        let key = format!("current-jobs-{k}: ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    Some((n("ready") + n("reserved"), n("delayed"), n("buried")))
}

/// Differential: a random history of puts (some delayed), reserves,
/// deletes, buries and releases in three tubes, on beanstalkd with log
/// files of 64 KiB (so that it writes many and moves live jobs out of old
/// ones, as it compacts); then beaver takes the log over and must hold, in
/// every tube, as many jobs in each state as beanstalkd said it held. A
/// new seed each run; `BEAVER_TAKEOVER_SEED=N` replays one.
#[test]
fn a_random_history_of_beanstalkd_comes_over_state_for_state() {
    let test = "a_random_history_of_beanstalkd_comes_over_state_for_state";
    let Some(reference) = available_or_skip(ServerCmd::reference(), test) else {
        return;
    };
    // A failure names its seed; BEAVER_TAKEOVER_SEED replays it.
    let seed = std::env::var("BEAVER_TAKEOVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(beaver_io::entropy_seed);
    let mut rng = beaver_io::DetRng::new(seed);
    let mut server = Server::start(&reference, Options::persistent(&["-s", "65536"]));
    let mut c = connect(server.addr);
    let tubes = ["default", "t1", "t2"];
    let mut held: Vec<String> = Vec::new();
    for _ in 0..3_000 {
        let tube = tubes[rng.below(3) as usize];
        let roll = rng.unit();
        if roll < 0.5 {
            assert_eq!(
                ask(&mut c, &format!("use {tube}\r\n")),
                format!("USING {tube}")
            );
            let body = "x".repeat(rng.below(300) as usize);
            let delay = if rng.chance(0.25) { 3_600 } else { 0 };
            let put = format!(
                "put {} {delay} 60 {}\r\n{body}\r\n",
                rng.below(2_000),
                body.len()
            );
            assert!(
                ask(&mut c, &put).starts_with("INSERTED "),
                "BEAVER_TAKEOVER_SEED={seed}"
            );
        } else if roll < 0.8 {
            ask(&mut c, &format!("watch {tube}\r\n"));
            let got = ask(&mut c, "reserve-with-timeout 0\r\n");
            if let Some(id) = got.strip_prefix("RESERVED ") {
                held.push(id.split(' ').next().unwrap_or_default().to_string());
            }
        } else if !held.is_empty() {
            let id = held.swap_remove(rng.below(held.len() as u64) as usize);
            let end = match rng.below(4) {
                0 | 1 => format!("delete {id}\r\n"),
                2 => format!("bury {id} 5\r\n"),
                _ => format!("release {id} 7 0\r\n"),
            };
            let reply = ask(&mut c, &end);
            assert!(
                ["DELETED", "BURIED", "RELEASED"].contains(&reply.as_str()),
                "BEAVER_TAKEOVER_SEED={seed}: {reply}"
            );
        }
    }
    drop(c);
    let before: Vec<_> = tubes.iter().map(|t| counts(server.addr, t)).collect();
    let files = std::fs::read_dir(server.data_dir()).expect("dir").count();
    assert!(
        files > 4,
        "BEAVER_TAKEOVER_SEED={seed}: only {files} files: no compaction exercised"
    );
    server.restart_as(&beaver());
    let after: Vec<_> = tubes.iter().map(|t| counts(server.addr, t)).collect();
    assert_eq!(
        after,
        before,
        "BEAVER_TAKEOVER_SEED={seed} (tubes {tubes:?}): {}",
        server.log()
    );
}

/// While beanstalkd still runs on the dir, beaver refuses to take its log
/// over (it would read a log still being written) and says to stop it
/// first; beanstalkd goes on serving.
#[test]
fn a_beanstalkd_still_running_on_the_dir_is_not_taken_over() {
    let test = "a_beanstalkd_still_running_on_the_dir_is_not_taken_over";
    let Some(reference) = available_or_skip(ServerCmd::reference(), test) else {
        return;
    };
    let server = Server::start(&reference, Options::persistent(&[]));
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\na\r\n"), "INSERTED 1");
    let dir = server.data_dir().display().to_string();
    let (status, log) = crate::startup::run_to_exit(&["-b", &dir]);
    assert!(status.is_some_and(|s| !s.success()), "{status:?} {log}");
    assert!(log.contains("a beanstalkd still runs on"), "{log}");
    assert!(log.contains("stop it first"), "{log}");
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nb\r\n"), "INSERTED 2");
    assert!(server.data_dir().join("binlog.1").exists());
}

/// Jobs in the log the kill -9 test writes: twenty of the takeover's
/// chunks of 1,000, so that kills land between its progress records.
const KILLED_JOBS: u64 = 20_000;
/// Kills in the middle of that takeover.
const KILLS: usize = 4;
/// The takeover's chunk: the most jobs a kill may make it put twice.
const CHUNK: u64 = 1_000;

/// A beanstalkd log of [`KILLED_JOBS`] jobs in two tubes and three files
/// (even ids in `default`, odd ones in `odd`; every 10th buried, every
/// 7th delayed an hour), bodies `job-N`.
fn write_beanstalkd_log(dir: &std::path::Path) {
    use beaver_cli::beanstalk::binlog::{encode_record, file_header};
    let hour_on = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
        + 3_600_000_000_000;
    std::fs::create_dir_all(dir).expect("data dir");
    for (n, ids) in [
        (1, 1..7_000),
        (2, 7_000..14_000),
        (3, 14_000..KILLED_JOBS + 1),
    ] {
        let mut bytes = file_header().to_vec();
        for id in ids {
            let tube: &[u8] = if id % 2 == 0 { b"default" } else { b"odd" };
            let state = match id {
                _ if id % 10 == 0 => 3,
                _ if id % 7 == 0 => 4,
                _ => 1,
            };
            let body = format!("job-{id}");
            let ttr = 60_000_000_000;
            let rec = encode_record(tube, id, 100, ttr, hour_on, state, body.as_bytes());
            bytes.extend_from_slice(&rec);
        }
        std::fs::write(dir.join(format!("binlog.{n}")), bytes).expect("write binlog");
    }
}

/// The body of job `id`, or `None` if there is no such job.
fn peek_body(c: &mut std::os::unix::net::UnixStream, id: u64) -> Option<String> {
    use std::io::Read as _;
    let line = crate::unix::ask(c, &format!("peek {id}\r\n"));
    let found = line.strip_prefix(&format!("FOUND {id} "))?;
    let len: usize = found.parse().unwrap_or_else(|_| panic!("{line}"));
    let mut body = vec![0u8; len + 2];
    c.read_exact(&mut body).expect("the body");
    body.truncate(len);
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// kill -9 in the middle of a takeover, again and again: each start goes
/// on from the progress the last one recorded, no job of beanstalkd's log
/// is lost, and a job is put twice only within a chunk a kill cut short.
/// Every buried and delayed job has a copy in that state (a chunk's
/// progress is recorded after its buries). The kills fall a random few
/// milliseconds after a progress record (a failure names its seed;
/// `BEAVER_TAKEOVER_SEED` replays it). Recording the progress before its
/// chunk's puts, tried by hand, lost 3,744 jobs here.
#[test]
fn kill_9_during_a_takeover_loses_no_job() {
    let seed = std::env::var("BEAVER_TAKEOVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(beaver_io::entropy_seed);
    let mut rng = beaver_io::DetRng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let (socket, data) = (dir.path().join("bs.sock"), dir.path().join("data"));
    write_beanstalkd_log(&data);
    let progress = data.join("beanstalkd-takeover");
    let mut cut_short = 0;
    for k in 0..KILLS {
        let log = dir.path().join(format!("{k}.log"));
        let mut server = crate::unix::UnixServer::start(&socket, &data, &log);
        let before = std::fs::read_to_string(&progress).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let now = std::fs::read_to_string(&progress).unwrap_or_default();
            // beanstalkd's files are moved aside once every job is taken.
            let done = !data.join("binlog.3").exists();
            if now != before || done {
                break;
            }
            if let Some(st) = server.exited() {
                panic!(
                    "BEAVER_TAKEOVER_SEED={seed}: exited ({st}): {}",
                    server.log()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no progress: {}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_micros(rng.below(5_000)));
        drop(server); // SIGKILL
        cut_short += usize::from(data.join("binlog.1").exists());
    }
    assert!(
        cut_short > 0,
        "BEAVER_TAKEOVER_SEED={seed}: no kill fell inside the takeover"
    );
    let mut server = crate::unix::UnixServer::start(&socket, &data, &dir.path().join("last.log"));
    let mut c = server.connect(&socket);
    let most = KILLED_JOBS + CHUNK * KILLS as u64;
    // A job put now has the highest id there is.
    let last = crate::unix::ask(&mut c, "put 0 0 60 4\r\nlast\r\n");
    let last: u64 = last
        .strip_prefix("INSERTED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    let mut seen = vec![0u32; KILLED_JOBS as usize + 1];
    let mut found = 0;
    for id in 1..last {
        let Some(body) = peek_body(&mut c, id) else {
            continue;
        };
        found += 1;
        let n: usize = body
            .strip_prefix("job-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("job {id}: unexpected body {body:?}"));
        seen[n] += 1;
    }
    let lost: Vec<usize> = (1..seen.len()).filter(|&n| seen[n] == 0).collect();
    assert!(
        lost.is_empty(),
        "BEAVER_TAKEOVER_SEED={seed}: {} jobs lost, the first {:?}: {}",
        lost.len(),
        &lost[..lost.len().min(10)],
        server.log()
    );
    assert!(
        (KILLED_JOBS..=most).contains(&found),
        "BEAVER_TAKEOVER_SEED={seed}: {found} jobs after {KILLS} kills"
    );
    for (tube, parity) in [("default", 0), ("odd", 1)] {
        let stats = stats_tube(&mut c, tube);
        // Jobs of this tube whose id is a multiple of `every` and not of `not`.
        let of = |every: u64, not: u64| {
            (1..=KILLED_JOBS)
                .filter(|id| id % 2 == parity && id % every == 0 && id % not != 0)
                .count() as u64
        };
        for (key, want) in [("buried", of(10, u64::MAX)), ("delayed", of(7, 10))] {
            let got = stats.get(&format!("current-jobs-{key}"));
            let got: u64 = got.and_then(|v| v.parse().ok()).unwrap_or(0);
            assert!(
                got >= want,
                "BEAVER_TAKEOVER_SEED={seed}: {tube}: {got} {key}, want {want} or more"
            );
        }
    }
    assert!(!progress.exists(), "the progress file is left behind");
    assert!(data.join("beanstalkd-taken-over/binlog.3").exists());
    assert!(!data.join("binlog.3").exists());
}

/// `stats-tube TUBE`'s keys and values.
fn stats_tube(
    c: &mut std::os::unix::net::UnixStream,
    tube: &str,
) -> std::collections::HashMap<String, String> {
    use std::io::Read as _;
    let line = crate::unix::ask(c, &format!("stats-tube {tube}\r\n"));
    let len: usize = line
        .strip_prefix("OK ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("stats-tube {tube}: {line}"));
    let mut yaml = vec![0u8; len + 2];
    c.read_exact(&mut yaml).expect("stats-tube's body");
    String::from_utf8_lossy(&yaml)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}
