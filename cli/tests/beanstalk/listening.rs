//! How a server listens, beyond the protocol: a burst of connections
//! waits in a backlog of 1,024, and `-l` takes a host name. Each case runs
//! against beaver and against Debian's beanstalkd (the reference), every
//! server bound to 127.0.0.1 and stopped by its PID.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use crate::kill9::{ask, beaver, connect};
use crate::server::{Options, Server, ServerCmd, available_or_skip};

/// Connections opened at once while the server cannot accept: more than
/// tokio's default backlog of 128, fewer than beanstalkd's 1,024.
const BURST: usize = 300;

/// Both servers, `(name, command)`; `None` (the test says why) when the
/// reference is not installed.
fn both(test: &str) -> Option<[(&'static str, ServerCmd); 2]> {
    let reference = available_or_skip(ServerCmd::reference(), test)?;
    Some([("beanstalkd", reference), ("beaver", beaver())])
}

/// The kernel's cap on every listening socket's backlog (4,096 since
/// Linux 5.4, 128 before).
fn somaxconn() -> usize {
    let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
    text.trim().parse().unwrap_or(128)
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    let pid = i32::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) on a server this test started and has not reaped.
    unsafe { libc::kill(pid, signal) };
}

/// While the server cannot accept (stopped with SIGSTOP, as a busy or
/// paused process is), [`BURST`] clients connecting at once all get their
/// connection from the kernel's backlog at once, none dropped to retry a
/// second later; served once it runs again.
#[test]
fn a_burst_of_connections_waits_in_the_backlog() {
    let test = "a_burst_of_connections_waits_in_the_backlog";
    let cap = somaxconn();
    if cap <= BURST {
        let said = format!("SKIPPED {test}: net.core.somaxconn is {cap}, which caps every backlog");
        let _ = writeln!(std::io::stderr(), "{said}");
        return;
    }
    let Some(servers) = both(test) else {
        return;
    };
    for (name, cmd) in servers {
        let server = Server::start(&cmd, Options::default());
        let pid = server.pid().expect("running");
        signal(pid, libc::SIGSTOP);
        let mut held = Vec::new();
        for _ in 0..BURST {
            match TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)) {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        signal(pid, libc::SIGCONT);
        assert_eq!(
            held.len(),
            BURST,
            "{name}: connections held while it could not accept"
        );
        let mut last = connect(server.addr);
        assert_eq!(
            ask(&mut last, "put 0 0 60 1\r\nz\r\n"),
            "INSERTED 1",
            "{name}"
        );
        drop(held);
    }
}

/// `-l localhost` (a host name, resolved as beanstalkd resolves it) is
/// served on; the later of two `-l` options wins, as beanstalkd's getopt
/// has it (the harness gives `-l 127.0.0.1` first). Where `localhost`
/// resolves to `::1` first, both servers would listen there, off the
/// harness's 127.0.0.1: the test then says it did not run.
#[test]
fn l_takes_a_host_name_and_the_last_l_wins() {
    use std::net::ToSocketAddrs as _;
    let test = "l_takes_a_host_name_and_the_last_l_wins";
    let first = ("localhost", 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    if first.map(|a| a.ip()) != Some(std::net::Ipv4Addr::LOCALHOST.into()) {
        // Straight to stderr: the harness captures print macros.
        let said =
            format!("SKIPPED {test}: localhost resolves to {first:?} first here, not 127.0.0.1");
        let _ = writeln!(std::io::stderr(), "{said}");
        return;
    }
    let Some(servers) = both(test) else {
        return;
    };
    for (name, cmd) in servers {
        let options = Options {
            args: vec!["-l".into(), "localhost".into()],
            ..Options::default()
        };
        let server = Server::start(&cmd, options);
        let mut c = connect(server.addr);
        let reply = ask(&mut c, "put 0 0 60 1\r\nz\r\n");
        assert_eq!(reply, "INSERTED 1", "{name}: {}", server.log());
    }
}
