//! `beaver run --beanstalk-listen`: beanstalkd's protocol beside the HTTP
//! API on the same queue (a job put through one is seen, reserved and
//! deleted through the other), set by flag or config file, loopback only
//! without the opt-in, stopped by SIGTERM with the rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use beaver_cli::schema::JobDoc;

use crate::common::*;

/// A beanstalkd protocol connection with bounded reads.
struct Beanstalk {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Beanstalk {
    fn connect(addr: &str) -> Beanstalk {
        let s = TcpStream::connect(addr).expect("connect to the beanstalk listener");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        Beanstalk {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// Sends `bytes` and reads one reply line (without its `\r\n`).
    fn ask(&mut self, bytes: &[u8]) -> String {
        self.writer.write_all(bytes).expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reply line");
        line.trim_end_matches("\r\n").to_string()
    }

    /// Reads a body of `len` bytes and its `\r\n`.
    fn body(&mut self, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len + 2];
        self.reader.read_exact(&mut b).expect("body");
        assert_eq!(&b[len..], b"\r\n");
        b.truncate(len);
        b
    }
}

/// The address `beaver run` printed as `beanstalk ADDR` (it follows the
/// metrics line [`Proc::start`] waits for).
fn beanstalk_addr(p: &Proc) -> String {
    let mut addr = None;
    let printed = wait_for(Duration::from_secs(30), || {
        addr = p
            .stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("beanstalk ").map(str::to_string));
        addr.is_some()
    });
    assert!(printed, "no `beanstalk ADDR` line: {:?}", p.stdout_lines());
    addr.expect("printed")
}

fn job(p: &Proc, id: u64) -> JobDoc {
    let r = p.server().get(&format!("/v1/jobs/{id}")).expect("job");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("job json")
}

#[test]
fn a_job_put_over_beanstalk_is_visible_over_http_and_sigterm_stops_both() {
    let s = Scratch::new(FAST_CONFIG);
    let mut p = Proc::start(&s, &["--workers", "0", "--beanstalk-listen", "127.0.0.1:0"]);
    let addr = beanstalk_addr(&p);
    assert!(!addr.ends_with(":0"), "the real port is printed: {addr}");
    let mut bs = Beanstalk::connect(&addr);
    let inserted = bs.ask(b"put 0 0 60 5\r\nhello\r\n");
    let n: u64 = inserted
        .strip_prefix("INSERTED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("put: {inserted}"));
    let j = job(&p, n);
    assert_eq!(j.id, n.to_string());
    assert_eq!((j.queue.as_str(), j.state.as_str()), ("default", "pending"));
    assert_eq!(j.payload.as_deref().map(|r| r.get()), Some("\"hello\""));
    assert_eq!(j.max_attempts, u32::MAX, "never given up, as beanstalkd");
    let st = p.sigterm(Duration::from_secs(30));
    assert!(st.success(), "SIGTERM: {st:?}");
    // A connect that met itself (its source port drawn equal to the closed
    // port, TCP simultaneous open) is not a listener.
    let listening =
        TcpStream::connect(&addr).is_ok_and(|c| c.local_addr().ok() != c.peer_addr().ok());
    assert!(!listening, "the beanstalk listener is closed after exit");
}

/// fdatasyncs the engine made so far (the count of its fsync histogram).
fn fsyncs(p: &Proc) -> f64 {
    let m = beaver_cli::client::Server::new(p.metrics.trim_end_matches("/metrics"), None)
        .expect("metrics url");
    let text = m.get("/metrics").expect("scrape").text();
    text.lines()
        .find_map(|l| l.strip_prefix("beaver_wal_fsync_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fsync count in {text}"))
}

#[test]
fn puts_sent_together_are_answered_in_order_and_share_fdatasyncs() {
    const PUTS: u64 = 64;
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--workers", "0", "--beanstalk-listen", "127.0.0.1:0"]);
    let mut bs = Beanstalk::connect(&beanstalk_addr(&p));
    let first = bs.ask(b"put 0 0 60 1\r\nx\r\n");
    let first: u64 = first
        .strip_prefix("INSERTED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("put: {first}"));
    let before = fsyncs(&p);
    let burst: String = (0..PUTS)
        .map(|i| format!("put 0 0 60 2\r\n{i:02}\r\n"))
        .collect();
    bs.writer
        .write_all(burst.as_bytes())
        .expect("send the puts");
    for i in 1..=PUTS {
        let mut line = String::new();
        bs.reader.read_line(&mut line).expect("reply line");
        assert_eq!(
            line,
            format!("INSERTED {}\r\n", first + i),
            "reply {i}, in order"
        );
    }
    let syncs = fsyncs(&p) - before;
    // One at a time, each put would wait for its own fdatasync.
    assert!(
        syncs <= (PUTS / 2) as f64,
        "{syncs} fdatasyncs for {PUTS} puts sent together"
    );
}

#[test]
fn a_job_enqueued_over_http_is_reserved_and_deleted_over_beanstalk() {
    // Set by the config file this time.
    let s = Scratch::new(&format!(
        "beanstalk_listen = \"127.0.0.1:0\"\n{FAST_CONFIG}"
    ));
    let p = Proc::start(&s, &["--workers", "0"]);
    let r = post(&p, "/v1/jobs", r#"{"queue":"q","payload":{"to":"ada"}}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut bs = Beanstalk::connect(&beanstalk_addr(&p));
    assert_eq!(bs.ask(b"use q\r\n"), "USING q");
    assert_eq!(bs.ask(b"watch q\r\n"), "WATCHING 2");
    assert_eq!(bs.ask(b"ignore default\r\n"), "WATCHING 1");
    let reserved = bs.ask(b"reserve-with-timeout 10\r\n");
    let parts: Vec<&str> = reserved.split(' ').collect();
    assert_eq!(parts.first(), Some(&"RESERVED"), "{reserved}");
    let (id, len): (u64, usize) = (
        parts[1].parse().expect("id"),
        parts[2].parse().expect("bytes"),
    );
    assert_eq!(bs.body(len), br#"{"to":"ada"}"#);
    assert_eq!(job(&p, id).state, "in_flight");
    assert_eq!(bs.ask(format!("delete {id}\r\n").as_bytes()), "DELETED");
    assert_eq!(job(&p, id).state, "completed");
    assert_eq!(bs.ask(b"reserve-with-timeout 0\r\n"), "TIMED_OUT");
}

#[test]
fn a_remote_beanstalk_address_is_refused_without_the_opt_in() {
    let s = Scratch::new(FAST_CONFIG);
    let (code, _, err) = run_cmd(beaver().args(["run", "--data-dir"]).arg(s.data()).args([
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--beanstalk-listen",
        "0.0.0.0:0",
    ]));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("--beanstalk-listen 0.0.0.0")
            && err.contains("no authentication")
            && err.contains("--beanstalk-allow-remote"),
        "{err}"
    );
    assert!(!s.data().exists(), "nothing is created on a refused start");
}

/// Puts a job with a TTR of 1 s, reserves it on `holder` and lets the TTR
/// run out; returns the job's number and the reply of a 3 s reserve on
/// `other`. (Both stay open: a closed connection's reservations are
/// released.)
fn ttr_runs_out(holder: &mut Beanstalk, other: &mut Beanstalk) -> (u64, String) {
    let inserted = holder.ask(b"put 0 0 1 2\r\nhi\r\n");
    let id: u64 = inserted
        .strip_prefix("INSERTED ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("put: {inserted}"));
    let reserved = holder.ask(b"reserve-with-timeout 0\r\n");
    assert_eq!(reserved, format!("RESERVED {id} 2"));
    assert_eq!(holder.body(2), b"hi");
    (id, other.ask(b"reserve-with-timeout 3\r\n"))
}

#[test]
fn a_beanstalk_job_whose_ttr_runs_out_is_never_given_up_unless_attempts_are_set() {
    // A reservation ends at its TTR, with no slack.
    let config = format!("{FAST_CONFIG}[engine.queue]\nlease_slack_ms = 0\n");
    let s = Scratch::new(&config);
    let p = Proc::start(&s, &["--workers", "0", "--beanstalk-listen", "127.0.0.1:0"]);
    let addr = beanstalk_addr(&p);
    let (mut holder, mut other) = (Beanstalk::connect(&addr), Beanstalk::connect(&addr));
    let (id, again) = ttr_runs_out(&mut holder, &mut other);
    assert_eq!(
        again,
        format!("RESERVED {id} 2"),
        "ready again after its TTR"
    );
    let j = job(&p, id);
    assert_eq!((j.attempt, j.max_attempts), (2, u32::MAX), "{j:?}");
    drop(p);

    let s = Scratch::new(&config);
    let flags = [
        "--workers",
        "0",
        "--beanstalk-listen",
        "127.0.0.1:0",
        "--beanstalk-put-attempts",
        "1",
    ];
    let p = Proc::start(&s, &flags);
    let addr = beanstalk_addr(&p);
    let (mut holder, mut other) = (Beanstalk::connect(&addr), Beanstalk::connect(&addr));
    let (id, again) = ttr_runs_out(&mut holder, &mut other);
    assert_eq!(again, "TIMED_OUT", "out of attempts: buried, not ready");
    let j = job(&p, id);
    assert_eq!((j.state.as_str(), j.max_attempts), ("dead", 1));
    assert!(j.last_error.is_some(), "its last error is shown: {j:?}");
    assert_eq!(other.ask(b"peek-buried\r\n"), format!("FOUND {id} 2"));
}

/// Under an open-file limit it cannot raise (128, hard 128), `beaver run`
/// shares what the limit leaves beside the engine's descriptors and the
/// handlers' among its listeners, and says so; with every listener
/// flooded, the log still opens its next segments (the HTTP listeners'
/// connections used to be counted against nothing, so they could take the
/// descriptor the next segment needed: a fail-stop).
#[test]
fn flooded_listeners_leave_the_log_room_under_a_low_open_file_limit() {
    let s = Scratch::new(FAST_CONFIG);
    let limit = libc::rlimit {
        rlim_cur: 128,
        rlim_max: 128,
    };
    let p = Proc::start_with_open_files(&s, &["--beanstalk-listen", "127.0.0.1:0"], limit);
    let addr = beanstalk_addr(&p);
    let mut bs = Beanstalk::connect(&addr);
    assert_eq!(bs.ask(b"use flood\r\n"), "USING flood");
    let host_port = |url: &str| {
        let rest = url.trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest).to_string()
    };
    let (api, metrics) = (host_port(&p.api), host_port(&p.metrics));
    let mut held = Vec::new();
    for (to, n) in [(&api, 40), (&metrics, 40), (&addr, 60)] {
        for _ in 0..n {
            held.push(TcpStream::connect(to.as_str()).expect("connect"));
        }
    }
    // 100 bodies of 30,000 bytes: three 1 MiB segments and more, and a
    // snapshot (every 2 MiB of log), each a file the engine must open.
    let body = "f".repeat(30_000);
    let put = format!("put 0 0 60 {}\r\n{body}\r\n", body.len());
    for i in 0..100 {
        let reply = bs.ask(put.as_bytes());
        assert!(
            reply.starts_with("INSERTED "),
            "put {i}: {reply}; log:\n{}",
            p.log_text()
        );
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", p.pid)).map_or(0, |d| d.count());
    assert!(fds <= 128, "{fds} descriptors open");
    drop(held);
    let log = p.log_text();
    assert!(
        log.contains("leaves room for fewer connections") && log.contains("beanstalk=32"),
        "{log}"
    );
}
