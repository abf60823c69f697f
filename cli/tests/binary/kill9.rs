//! `kill -9` at random moments while concurrent clients enqueue 10,000
//! jobs (retrying with the same ids when a reply is lost) and the server
//! runs them; then every acknowledged job is present and finished, and no
//! job exists that was never sent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use beaver_cli::client::{ClientError, Server};
use beaver_cli::schema::EnqueuedDoc;

use crate::common::*;

const CLIENTS: usize = 4;
const JOBS_PER_CLIENT: usize = 2_500;
const BATCH: usize = 25;
const CYCLES_MIN: usize = 22;

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn kill_9_cycles_lose_no_acknowledged_job_and_invent_none() {
    let began = Instant::now();
    let seed = std::env::var("BEAVER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("kill -9 suite: seed {seed} (replay the kill timings with BEAVER_KILL_SEED={seed})");
    let mut rng = Rng(seed);
    let s = Scratch::new(FAST_CONFIG);
    let args = [
        "--handler",
        "demo",
        "--demo-ms",
        "0-8",
        "--demo-failure-rate",
        "0.2",
        "--workers",
        "8",
    ];
    let mut proc = Proc::start(&s, &args);
    let url: Arc<RwLock<String>> = Arc::new(RwLock::new(proc.api.clone()));
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let lost_replies = Arc::new(AtomicUsize::new(0));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, acked, done, stop, lost) = (
                url.clone(),
                acked.clone(),
                done.clone(),
                stop.clone(),
                lost_replies.clone(),
            );
            std::thread::spawn(move || {
                for b in 0..JOBS_PER_CLIENT / BATCH {
                    let ids: Vec<String> = (0..BATCH)
                        .map(|i| format!("c{c}-{}", b * BATCH + i))
                        .collect();
                    let body = format!(
                        "[{}]",
                        ids.iter()
                            .map(|id| format!(
                                r#"{{"id":"{id}","payload":{{"client":{c}}},"max_attempts":3}}"#
                            ))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    // Retry the same batch, same ids, until it is acknowledged.
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let current = url.read().map(|u| u.clone()).unwrap_or_default();
                        let srv = match Server::new(&current, None) {
                            Ok(s) => s.with_timeout(Duration::from_secs(10)),
                            Err(_) => continue,
                        };
                        match srv.post_json("/v1/jobs", body.as_bytes()) {
                            Ok(r) if r.status == 200 => {
                                let doc: EnqueuedDoc =
                                    serde_json::from_slice(&r.body).expect("enqueue answer");
                                let got: Vec<&str> =
                                    doc.jobs.iter().map(|j| j.id.as_str()).collect();
                                assert_eq!(got, ids.iter().map(|s| s.as_str()).collect::<Vec<_>>());
                                acked.lock().expect("lock").extend(ids.iter().cloned());
                                break;
                            }
                            Ok(r) if r.status == 503 => {
                                std::thread::sleep(Duration::from_millis(20))
                            }
                            Ok(r) => panic!("enqueue answered {}: {}", r.status, r.text()),
                            Err(ClientError::Lost(_)) => {
                                lost.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();

    // Kill at random moments: while the clients enqueue, then while the
    // server works through the backlog.
    let mut cycles = 0;
    let mut recovery_ms = Vec::new();
    while cycles < CYCLES_MIN || done.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            began.elapsed() < Duration::from_secs(100),
            "the kill -9 suite ran out of time after {cycles} cycles"
        );
        std::thread::sleep(Duration::from_millis(80 + rng.below(400)));
        proc.kill9();
        cycles += 1;
        proc = Proc::start(&s, &args);
        let st = proc.status();
        recovery_ms.push(st.recovery.map(|r| r.duration_ms).unwrap_or(0));
        *url.write().expect("lock") = proc.api.clone();
    }
    for c in clients {
        c.join().expect("client thread");
    }
    stop.store(true, Ordering::Relaxed);

    // Let the last server finish every job, then check.
    let st = proc.wait_idle(Duration::from_secs(60));
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), CLIENTS * JOBS_PER_CLIENT);
    let total = st.jobs.total();
    assert_eq!(
        total as usize,
        acked.len(),
        "the server holds {total} jobs but {} were acknowledged (and no other was sent): {:?}",
        acked.len(),
        st.jobs
    );
    assert_eq!(st.jobs.completed + st.jobs.dead, total, "{:?}", st.jobs);
    let srv = proc.server();
    for id in &acked {
        let r = srv.get(&format!("/v1/jobs/{id}")).expect("get");
        assert_eq!(
            r.status,
            200,
            "acknowledged job {id} is missing: {}",
            r.text()
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        let state = v["state"].as_str().unwrap_or("");
        assert!(state == "completed" || state == "dead", "{id} is {state}");
    }
    eprintln!(
        "kill -9 suite: {cycles} cycles, {} jobs ({} completed, {} dead), {} lost replies retried, recovery ms {:?}, {:.1} s",
        acked.len(),
        st.jobs.completed,
        st.jobs.dead,
        lost_replies.load(Ordering::Relaxed),
        recovery_ms,
        began.elapsed().as_secs_f64()
    );
}
