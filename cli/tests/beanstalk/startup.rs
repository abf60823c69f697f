//! What `beaver beanstalkd` says when it starts, beyond the protocol.
//! beaver only: Debian's beanstalkd says nothing of the kind.

use std::io::Write;
use std::time::Duration;

use crate::kill9::{ask, beaver, connect, read_lines};
use crate::server::{Options, Server};
use crate::unix::UnixServer;

/// The start-up notices: where jobs are kept (a temporary dir, removed at
/// exit, without `-b`), and that `-f` changes nothing.
#[test]
fn start_up_says_where_jobs_are_kept_and_that_f_changes_nothing() {
    let mut server = Server::start(
        &beaver(),
        Options {
            persist: false,
            args: vec!["-f".into(), "200".into()],
            open_to_all: false,
        },
    );
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
    // Transparent huge pages are off for the server (kernels since 6.x
    // print the flag; then so must the server's status).
    let thp = |pid: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:"));
        line.and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let server_pid = server.pid().expect("running").to_string();
    if thp("self").is_some() {
        assert_eq!(thp(&server_pid).as_deref(), Some("0"));
    }
    // Nor is any of its memory advised into them (`hg` in smaps): the
    // allocator's advice made its first heap touch, before `main` turns
    // them off, wait 30-100 ms for a huge page, so start-up was slow.
    let smaps = std::fs::read_to_string(format!("/proc/{server_pid}/smaps")).unwrap_or_default();
    let advised: Vec<&str> = smaps
        .lines()
        .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "hg"))
        .collect();
    assert!(advised.is_empty(), "advised into huge pages: {advised:?}");
    server.stop();
    let log = server.log();
    assert!(
        log.contains("-f 200 changes nothing: every change is fdatasynced before its reply"),
        "{log}"
    );
    assert!(log.contains("no -b given"), "{log}");
    let temp = log
        .split("jobs are kept in the temporary ")
        .nth(1)
        .and_then(|rest| rest.split(" and removed at exit").next())
        .unwrap_or_else(|| panic!("no temporary dir named: {log}"));
    assert!(
        !std::path::Path::new(temp).exists(),
        "{temp} is still there after the stop"
    );
}

/// A fail-stop of the engine (here its data dir is moved away under it, so
/// the next log segment cannot be made) ends the process with an error
/// that says to restart it: a supervisor then restarts it and recovery
/// reads what is on disk. It used to keep serving, every put answered
/// `DRAINING`, until someone noticed.
#[test]
fn a_storage_failure_stops_the_server_with_an_error_that_says_to_restart_it() {
    let mut server = Server::start(&beaver(), Options::persistent(&[]));
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
    // Moved away in one step: removing it file by file raced with the
    // server's own writes into it (`Directory not empty`).
    let moved = server.data_dir().with_file_name("binlog-moved-away");
    std::fs::rename(server.data_dir(), &moved).expect("move the data dir away");
    // Bodies of 60,000 bytes fill a 10 MiB log segment in about 175 puts.
    let body = "b".repeat(60_000);
    let put = format!("put 0 0 60 {}\r\n{body}\r\n", body.len());
    let refused = (0..1_000).find_map(|_| {
        if c.write_all(put.as_bytes()).is_err() {
            return Some("(connection closed)".to_string());
        }
        let reply = read_lines(&mut c, 1).into_iter().next().unwrap_or_default();
        (!reply.starts_with("INSERTED ")).then_some(reply)
    });
    assert!(
        refused.is_some(),
        "1,000 puts of 60,000 bytes were all INSERTED without a data dir"
    );
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    let status = status.unwrap_or_else(|| panic!("still running 10 s after a fail-stop: {log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("storage failed"), "{log}");
    assert!(log.contains("restart it to recover"), "{log}");
}

/// beanstalkd's other options: `-s` sizes the log's segments (rounded up
/// to 4,096 bytes, raised to what the largest job needs, and shown as
/// `binlog-max-size`), `-F` is accepted and said to be moot, `-V` (as
/// deployment scripts and test harnesses start beanstalkd: `-V -p PORT`,
/// `-VVV`) serves with more log lines, and `-v` prints the version.
#[test]
fn s_sizes_the_log_segments_f_is_moot_v_says_more_and_v_is_the_version() {
    for (asked, size) in [("16777216", "16777216"), ("20000", "2097152")] {
        let mut server = Server::start(&beaver(), Options::persistent(&["-s", asked, "-F", "-VV"]));
        let max_size = crate::wire::yaml_value(server.addr, "stats\r\n", "binlog-max-size");
        assert_eq!(max_size, size, "-s {asked}");
        let mut c = connect(server.addr);
        assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
        let pid = server.pid().expect("running");
        server.stop();
        let log = server.log();
        assert!(log.contains("-F changes nothing"), "{log}");
        assert_eq!(
            log.contains("log segments are 2097152 bytes"),
            size == "2097152",
            "{log}"
        );
        let said = format!("pid {pid}, listening on 127.0.0.1:");
        assert!(log.contains(&said), "-VV says where it serves: {log}");
    }
    for version in ["-v", "--version"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_beaver"))
            .args(["beanstalkd", version])
            .output()
            .expect("run -v");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(env!("CARGO_PKG_VERSION")),
            "{version}: {out:?}"
        );
    }
}

/// Runs `beaver beanstalkd ARGS` expecting it to exit by itself within
/// 20 s (killed by PID otherwise); its exit status and stderr.
pub(crate) fn run_to_exit(args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("stderr");
    // A Unix socket of its own, not a TCP port: a port the kernel picks
    // for `-p 0` may be the one another test's harness has just chosen
    // for its server, whose readiness probe would then reach this one.
    let socket = format!("unix:{}", dir.path().join("bs.sock").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_beaver"))
        .arg("beanstalkd")
        .args(["-l", &socket])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start beaver beanstalkd");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while !exited && std::time::Instant::now() < deadline {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        std::thread::sleep(Duration::from_millis(10));
    }
    if !exited {
        let _ = child.kill();
    }
    // Reaped either way (at once if it exited by itself).
    let status = child.wait().ok().filter(|_| exited);
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// `-u USER` becomes that user once listening: as root, `nobody` runs the
/// server and owns the data dir it makes; as anyone else, becoming
/// another user is refused with an error that says root is needed. An
/// unknown user is named in the error.
#[test]
fn u_becomes_the_user_once_listening() {
    let (status, log) = run_to_exit(&["-u", "no-such-user-beaver"]);
    assert!(status.is_some_and(|s| !s.success()), "{status:?} {log}");
    assert!(
        log.contains("-u no-such-user-beaver: no such user"),
        "{log}"
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let (status, log) = run_to_exit(&["-u", "nobody"]);
        assert!(status.is_some_and(|s| !s.success()), "{status:?} {log}");
        assert!(log.contains("needs root"), "{log}");
        return;
    }
    let nobody = user_id("nobody");
    let mut server = Server::start(
        &beaver(),
        Options {
            open_to_all: true,
            ..Options::persistent(&["-u", "nobody"])
        },
    );
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
    let pid = server.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
    assert_eq!(uids, vec![nobody.to_string().as_str(); 4], "{uid_line}");
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(server.data_dir().join("wal")).map(|m| m.uid());
    assert_eq!(owner.ok(), Some(nobody), "{}", server.log());
    server.stop();
}

/// The user id of `name`.
fn user_id(name: &str) -> u32 {
    let c_name = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static entry, read
    // at once on this thread.
    unsafe {
        let p = libc::getpwnam(c_name.as_ptr());
        assert!(!p.is_null(), "{name} is a user here");
        (*p).pw_uid
    }
}

/// A `-b` dir whose beanstalkd log beaver cannot read stops the start,
/// the error naming the file and what is wrong, before anything is written
/// to the dir (beanstalkd's jobs are never left out silently).
#[test]
fn a_beanstalkd_log_beaver_cannot_read_stops_the_start_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("binlog.3"), b"beanstalkd's").expect("binlog");
    std::fs::write(dir.path().join("binlog.12"), b"beanstalkd's").expect("binlog");
    std::fs::write(dir.path().join("binlog.x"), b"not one").expect("other");
    let b = dir.path().display().to_string();
    let (status, log) = run_to_exit(&["-b", &b]);
    assert!(status.is_some_and(|s| !s.success()), "{status:?} {log}");
    assert!(
        log.contains("beanstalkd's log binlog.3, byte 0: format version"),
        "{log}"
    );
    assert!(log.contains("beaver cannot take its jobs over"), "{log}");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["binlog.12", "binlog.3", "binlog.x"], "written to");
}

/// `beaver beanstalkd` on `dir/bs.sock` with its data in `dir/data`, its
/// log in `dir/server.log` and the open-file limit `soft`/`hard`.
fn start_with_open_files(dir: &std::path::Path, soft: u64, hard: u64) -> UnixServer {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    let (socket, data, log) = (
        dir.join("bs.sock"),
        dir.join("data"),
        dir.join("server.log"),
    );
    UnixServer::start_with_open_files(&socket, &data, &log, limit)
}

/// Under an open-file limit it cannot raise (64, hard 64), connections
/// past what the limit leaves room for wait to be accepted: the server
/// says so, does not spin on the refused accepts (it used a whole CPU),
/// and the log still opens its next segment (it used to run out of
/// descriptors and fail-stop). A limit it can raise (64, hard 4,096) is
/// raised.
#[test]
fn connections_leave_the_log_room_under_a_low_open_file_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start_with_open_files(dir.path(), 64, 64);
    let sock = dir.path().join("bs.sock");
    let mut c = server.connect(&sock);
    let held: Vec<_> = (0..100)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    let before = server.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let spent = server.cpu_ticks() - before;
    assert!(
        spent < 30,
        "{spent} CPU ticks in a second with connections waiting"
    );
    // Bodies of 60,000 bytes: 200 of them fill a 10 MiB segment and more.
    let body = "b".repeat(60_000);
    let put = format!("put 0 0 60 {}\r\n{body}\r\n", body.len());
    for i in 1..=200 {
        let reply = crate::unix::ask(&mut c, &put);
        assert_eq!(reply, format!("INSERTED {i}"), "{}", server.log());
    }
    drop(held);
    let log = server.log();
    assert!(
        log.contains("the open-file limit (64) leaves room for 32 connections"),
        "{log}"
    );
    drop(server);

    let raised = tempfile::tempdir().expect("temp dir");
    let mut server = start_with_open_files(raised.path(), 64, 4_096);
    let _c = server.connect(&raised.path().join("bs.sock"));
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default();
    assert_eq!(line.split_whitespace().nth(3), Some("4096"), "{line}");
    let log = server.log();
    assert!(!log.contains("leaves room for"), "{log}");
}
