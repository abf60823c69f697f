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
