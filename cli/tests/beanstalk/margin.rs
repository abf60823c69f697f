//! The last second of a reservation (beanstalkd's safety margin) is said
//! no earlier than a second after the reservation was made, measured by
//! the client. beaver's clock counts whole milliseconds; it used to say
//! `DEADLINE_SOON` up to a millisecond early (a Python client's test suite
//! that checks this failed about one run in three).

use std::time::{Duration, Instant};

use crate::server::{Options, Server, server_or_skip};
use crate::wire::Conn;

/// Connections that each make one reservation of TTR 2 s at once: the
/// old rounding showed in about a third of them.
const CONNECTIONS: usize = 6;

#[test]
fn deadline_soon_comes_no_earlier_than_the_last_second() {
    let Some(cmd) = server_or_skip("deadline_soon_comes_no_earlier_than_the_last_second") else {
        return;
    };
    let server = Server::start(&cmd, Options::default());
    let addr = server.addr;
    let took: Vec<Result<Duration, String>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                s.spawn(move || -> Result<Duration, String> {
                    let mut c = Conn::connect(addr)?;
                    let tube = format!("margin{i}");
                    let mut ask = |cmd: String| -> Result<String, String> {
                        c.send(cmd.as_bytes())?;
                        let reply = c.read_reply(Duration::from_secs(10))?;
                        Ok(String::from_utf8_lossy(&reply).into_owned())
                    };
                    ask(format!("use {tube}\r\n"))?;
                    ask(format!("watch {tube}\r\n"))?;
                    ask("ignore default\r\n".into())?;
                    ask("put 0 0 2 1\r\nx\r\n".into())?;
                    let start = Instant::now();
                    let reserved = ask("reserve\r\n".into())?;
                    if !reserved.starts_with("RESERVED ") {
                        return Err(format!("reserve: {reserved:?}"));
                    }
                    let soon = ask("reserve\r\n".into())?;
                    if soon != "DEADLINE_SOON\r\n" {
                        return Err(format!("second reserve: {soon:?}"));
                    }
                    Ok(start.elapsed())
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("thread"))
            .collect()
    });
    for (i, t) in took.into_iter().enumerate() {
        let t = t.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(
            t >= Duration::from_secs(1),
            "connection {i}: DEADLINE_SOON {t:?} after its reserve was sent against `{}`",
            cmd.describe()
        );
        assert!(t < Duration::from_secs(2), "connection {i}: {t:?}");
    }
}
