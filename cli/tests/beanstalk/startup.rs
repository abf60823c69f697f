//! What `beaver beanstalkd` says when it starts, beyond the protocol.
//! beaver only: Debian's beanstalkd says nothing of the kind.

use crate::kill9::{ask, beaver, connect};
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
