//! `kill -9` of `beaver beanstalkd` in the middle of a burst: every put
//! answered `INSERTED` is there after the restart, every delete answered
//! `DELETED` stays deleted. beaver only: Debian's beanstalkd syncs its
//! binlog at most every 50 ms by default, so it promises neither.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::server::{Options, Server, ServerCmd};

/// Puts sent in the burst the kill cuts short.
const BURST: usize = 400;
/// How long the test reads replies at most, in all.
const READ_WITHIN: Duration = Duration::from_secs(20);

pub(crate) fn beaver() -> ServerCmd {
    ServerCmd {
        argv: vec![env!("CARGO_BIN_EXE_beaver").to_owned(), "beanstalkd".into()],
    }
}

pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

/// Reads whole reply lines until `n` arrived, the peer closed, or
/// [`READ_WITHIN`] passed.
pub(crate) fn read_lines(s: &mut TcpStream, n: usize) -> Vec<String> {
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let end = Instant::now() + READ_WITHIN;
    while buf.iter().filter(|&&b| b == b'\n').count() < n && Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    // A line cut short by the kill is not a reply.
    text.split_inclusive("\r\n")
        .filter(|l| l.ends_with("\r\n"))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

fn inserted(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("INSERTED ")?.parse().ok())
        .collect()
}

pub(crate) fn ask(s: &mut TcpStream, line: &str) -> String {
    s.write_all(line.as_bytes()).expect("send");
    read_lines(s, 1).into_iter().next().unwrap_or_default()
}

#[test]
fn acknowledged_puts_and_deletes_survive_kill_9() {
    let mut server = Server::start(&beaver(), Options::persistent(&[]));
    let mut c = connect(server.addr);
    let mut first = Vec::new();
    for i in 0..20 {
        first.extend(inserted(&[ask(
            &mut c,
            &format!("put 0 0 60 2\r\n{i:02}\r\n"),
        )]));
    }
    assert_eq!(first.len(), 20, "{}", server.log());
    let deleted: Vec<u64> = first.iter().copied().step_by(2).collect();
    for id in &deleted {
        assert_eq!(ask(&mut c, &format!("delete {id}\r\n")), "DELETED");
    }
    // A burst the kill cuts short: every put is sent at once.
    let burst: String = (0..BURST)
        .map(|i| format!("put 0 0 60 3\r\n{i:03}\r\n"))
        .collect();
    c.write_all(burst.as_bytes()).expect("send the burst");
    let some = read_lines(&mut c, 10);
    server.kill9_restart();
    let mut acked = inserted(&some);
    acked.extend(inserted(&read_lines(&mut c, BURST)));
    acked.extend(first.iter().copied().skip(1).step_by(2));
    let mut c = connect(server.addr);
    for id in &acked {
        c.write_all(format!("peek {id}\r\n").as_bytes())
            .expect("send");
        let found = read_lines(&mut c, 2); // the reply line and the body
        let line = found.first().map_or("", String::as_str);
        assert!(line.starts_with(&format!("FOUND {id} ")), "{id}: {found:?}");
    }
    for id in &deleted {
        assert_eq!(ask(&mut c, &format!("peek {id}\r\n")), "NOT_FOUND", "{id}");
    }
    let next = inserted(&[ask(&mut c, "put 0 0 60 1\r\nz\r\n")]);
    let highest = acked.iter().chain(&deleted).max().copied().unwrap_or(0);
    assert!(
        next.first().is_some_and(|&n| n > highest),
        "ids are never reused: {next:?}"
    );
}
