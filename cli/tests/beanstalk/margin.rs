//! Spans a client names end no earlier than the client can measure: the
//! last second of a reservation (beanstalkd's safety margin) is said no
//! earlier than a second after the reservation was made, and a delay (of a
//! put or a release) or a pause is over no earlier than its length after
//! it was asked for. beaver's clock counts whole milliseconds; it used to
//! say `DEADLINE_SOON` up to a millisecond early (a Python client's test
//! suite that checks this failed about one run in three), and to end delays
//! up to a millisecond early where an fdatasync costs nothing (tmpfs).

use std::time::{Duration, Instant};

use crate::server::{Options, Server, server_or_skip};
use crate::wire::Conn;

/// Connections that each time their spans at once: the old rounding of
/// `DEADLINE_SOON` showed in about a third of them.
const CONNECTIONS: usize = 6;

#[test]
fn deadline_soon_comes_no_earlier_than_the_last_second() {
    let Some(cmd) = server_or_skip("deadline_soon_comes_no_earlier_than_the_last_second") else {
        return;
    };
    let server = Server::start(&cmd, Options::default());
    let took = on_connections(server.addr, |ask| {
        ask("put 0 0 2 1\r\nx\r\n".into())?;
        let start = Instant::now();
        reserved_id(&ask("reserve\r\n".into())?)?;
        let soon = ask("reserve\r\n".into())?;
        if soon != "DEADLINE_SOON\r\n" {
            return Err(format!("second reserve: {soon:?}"));
        }
        Ok(vec![start.elapsed()])
    });
    for (i, t) in took.into_iter().enumerate() {
        let t = t.unwrap_or_else(|e| panic!("connection {i}: {e}"))[0];
        assert!(
            t >= Duration::from_secs(1),
            "connection {i}: DEADLINE_SOON {t:?} after its reserve was sent against `{}`",
            cmd.describe()
        );
        assert!(t < Duration::from_secs(2), "connection {i}: {t:?}");
    }
}

/// Runs `each` on [`CONNECTIONS`] connections at once, each with a tube of
/// its own that it uses and watches alone; the durations each returned.
fn on_connections(
    addr: std::net::SocketAddr,
    each: impl Fn(&mut dyn FnMut(String) -> Result<String, String>) -> Result<Vec<Duration>, String>
    + Sync,
) -> Vec<Result<Vec<Duration>, String>> {
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let each = &each;
                s.spawn(move || -> Result<Vec<Duration>, String> {
                    let mut c = Conn::connect(addr)?;
                    let mut ask = |cmd: String| -> Result<String, String> {
                        c.send(cmd.as_bytes())?;
                        let reply = c.read_reply(Duration::from_secs(10))?;
                        Ok(String::from_utf8_lossy(&reply).into_owned())
                    };
                    let tube = format!("span{i}");
                    ask(format!("use {tube}\r\n"))?;
                    ask(format!("watch {tube}\r\n"))?;
                    ask("ignore default\r\n".into())?;
                    each(&mut ask)
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("thread"))
            .collect()
    })
}

/// The job id of a `RESERVED` reply.
fn reserved_id(reply: &str) -> Result<String, String> {
    match reply.split_whitespace().collect::<Vec<_>>()[..] {
        ["RESERVED", id, _, ..] => Ok(id.to_owned()),
        _ => Err(format!("reserve: {reply:?}")),
    }
}

#[test]
fn delays_and_pauses_end_no_earlier_than_asked() {
    let Some(cmd) = server_or_skip("delays_and_pauses_end_no_earlier_than_asked") else {
        return;
    };
    let server = Server::start(&cmd, Options::default());
    let took = on_connections(server.addr, |ask| {
        // A put delayed by 1 s.
        let start = Instant::now();
        ask("put 0 1 60 1\r\nx\r\n".into())?;
        let id = reserved_id(&ask("reserve\r\n".into())?)?;
        let put = start.elapsed();
        // Its release, delayed by 1 s.
        let start = Instant::now();
        let released = ask(format!("release {id} 0 1\r\n"))?;
        if released != "RELEASED\r\n" {
            return Err(format!("release: {released:?}"));
        }
        let id = reserved_id(&ask("reserve\r\n".into())?)?;
        let release = start.elapsed();
        ask(format!("delete {id}\r\n"))?;
        // A pause of 1 s of the tube, a ready job in it.
        let tube = ask("list-tube-used\r\n".into())?;
        let tube = tube.trim_end().trim_start_matches("USING ").to_owned();
        let start = Instant::now();
        ask(format!("pause-tube {tube} 1\r\n"))?;
        ask("put 0 0 60 1\r\ny\r\n".into())?;
        reserved_id(&ask("reserve\r\n".into())?)?;
        Ok(vec![put, release, start.elapsed()])
    });
    for (i, t) in took.into_iter().enumerate() {
        let t = t.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        for (what, t) in ["put delay", "release delay", "pause"].iter().zip(t) {
            assert!(
                t >= Duration::from_secs(1),
                "connection {i}: {what} of 1 s over after {t:?} against `{}`",
                cmd.describe()
            );
            assert!(t < Duration::from_secs(3), "connection {i}: {what}: {t:?}");
        }
    }
}
