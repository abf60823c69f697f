//! What `beaver beanstalkd` says when it starts, beyond the protocol.
//! beaver only: Debian's beanstalkd says nothing of the kind.

use std::io::Write;
use std::time::Duration;

use crate::kill9::{ask, beaver, connect, read_lines};
use crate::server::{Options, Server};

/// The start-up notices: where jobs are kept (a temporary dir, removed at
/// exit, without `-b`), and that `-f` changes nothing.
#[test]
fn start_up_says_where_jobs_are_kept_and_that_f_changes_nothing() {
    let mut server = Server::start(
        &beaver(),
        Options {
            persist: false,
            args: vec!["-f".into(), "200".into()],
        },
    );
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
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

/// A fail-stop of the engine (here its data dir is removed under it, so
/// the next log segment cannot be made) ends the process with an error
/// that says to restart it: a supervisor then restarts it and recovery
/// reads what is on disk. It used to keep serving, every put answered
/// `DRAINING`, until someone noticed.
#[test]
fn a_storage_failure_stops_the_server_with_an_error_that_says_to_restart_it() {
    let mut server = Server::start(
        &beaver(),
        Options {
            persist: true,
            args: Vec::new(),
        },
    );
    let mut c = connect(server.addr);
    assert_eq!(ask(&mut c, "put 0 0 60 1\r\nz\r\n"), "INSERTED 1");
    std::fs::remove_dir_all(server.data_dir()).expect("remove the data dir");
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
