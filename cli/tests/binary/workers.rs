//! External workers over HTTP against the real binary (`--workers 0`):
//! the lease cycle, fencing, retried completes, batches, the long poll,
//! queue controls, listings, bad input, and a `kill -9` with leases out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use beaver_cli::schema::{BatchDoc, JobDoc, JobListDoc, LeasesDoc, QueueListDoc, StatusDoc};

use crate::common::*;

/// Leases with a short default timeout so expiry is quick to reach.
const CONFIG: &str = r#"
[engine.queue]
lease_slack_ms = 200
"#;

fn start(extra: &[&str]) -> (Scratch, Proc) {
    let s = Scratch::new(&format!("{FAST_CONFIG}{CONFIG}"));
    let mut args = vec!["--workers", "0"];
    args.extend_from_slice(extra);
    let p = Proc::start(&s, &args);
    (s, p)
}

fn enqueue(p: &Proc, body: &str) {
    let r = post(p, "/v1/jobs", body);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn lease(p: &Proc, body: &str) -> LeasesDoc {
    let r = post(p, "/v1/leases", body);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("leases json")
}

fn job(p: &Proc, id: &str) -> JobDoc {
    let r = p.server().get(&format!("/v1/jobs/{id}")).expect("job");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("job json")
}

/// The status with the fields that move by themselves (the clock, the
/// lease counters) blanked, for before/after comparisons.
fn settled(p: &Proc) -> String {
    let mut s: StatusDoc = p.status();
    s.now_ms = 0;
    s.leases = None;
    s.snapshot.age_ms = None;
    serde_json::to_string(&(s.jobs, &s.queues, s.wal.last_lsn)).expect("json")
}

#[test]
fn a_job_is_leased_renewed_completed_and_a_retried_complete_is_answered_again() {
    let (_s, p) = start(&[]);
    enqueue(
        &p,
        r#"[{"id":"a","payload":{"n":1}},{"id":"b","payload":2,"queue":"other"}]"#,
    );
    let got = lease(
        &p,
        r#"{"queues":["default","other"],"max":10,"worker":"w-1"}"#,
    );
    assert_eq!(got.leases.len(), 2);
    let a = got
        .leases
        .iter()
        .find(|l| l.job.id == "a")
        .expect("a leased");
    assert_eq!(a.job.payload.as_ref().map(|p| p.get()), Some(r#"{"n":1}"#));
    assert_eq!((a.job.attempt, a.job.state.as_str()), (1, "in_flight"));
    let listed = p.server().get("/v1/leases").expect("leases");
    assert!(
        listed.text().contains("\"worker\":\"w-1\""),
        "{}",
        listed.text()
    );

    let hb = post(
        &p,
        &format!("/v1/leases/{}/heartbeat", a.lease_id),
        r#"{"extend_ms":60000}"#,
    );
    assert_eq!(hb.status, 200, "{}", hb.text());
    assert!(
        hb.text()
            .contains(&format!("\"lease_id\":\"{}\"", a.lease_id))
    );
    for _ in 0..2 {
        let c = post(&p, &format!("/v1/leases/{}/complete", a.lease_id), "");
        assert_eq!(c.status, 200, "{}", c.text());
        assert!(c.text().contains("\"state\":\"completed\""), "{}", c.text());
    }
    assert_eq!(job(&p, "a").state, "completed");

    let b = got
        .leases
        .iter()
        .find(|l| l.job.id == "b")
        .expect("b leased");
    let f = post(
        &p,
        &format!("/v1/leases/{}/fail", b.lease_id),
        r#"{"error":"no","give_up":true}"#,
    );
    assert_eq!(f.status, 200, "{}", f.text());
    let b_now = job(&p, "b");
    assert_eq!(
        (b_now.state.as_str(), b_now.last_error.as_deref()),
        ("dead", Some("no"))
    );
    let s = p.status();
    let l = s.leases.expect("lease figures");
    assert_eq!((l.granted, l.renewed, l.active), (2, 1, 0));
}

#[test]
fn a_stale_lease_is_refused_as_lost_and_changes_nothing() {
    let (_s, p) = start(&[]);
    enqueue(&p, r#"{"id":"x","payload":1,"timeout_ms":300}"#);
    let first = lease(&p, r#"{"queue":"default"}"#);
    let stale = first.leases[0].lease_id.clone();
    // Past the timeout and the slack, the lease expires; the job retries.
    let second = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            let l = lease(&p, r#"{"queue":"default","wait_ms":100}"#);
            (!l.leases.is_empty()).then_some(l)
        })
        .expect("the job is leased again after its lease expired");
    assert_eq!(second.leases[0].job.attempt, 2);
    let before = settled(&p);
    for (route, body) in [
        ("heartbeat", ""),
        ("complete", ""),
        ("fail", r#"{"error":"late"}"#),
    ] {
        let r = post(&p, &format!("/v1/leases/{stale}/{route}"), body);
        assert_eq!(r.status, 409, "{route}: {}", r.text());
        assert_eq!(error_of(&r).0, "lease_lost", "{route}");
    }
    assert_eq!(settled(&p), before, "a stale lease changed something");
    let l = p.status().leases.expect("figures");
    assert!(l.expired >= 1 && l.refused_lost >= 3, "{l:?}");
    let c = post(
        &p,
        &format!("/v1/leases/{}/complete", second.leases[0].lease_id),
        "",
    );
    assert_eq!(c.status, 200, "{}", c.text());
}

#[test]
fn batches_answer_each_lease_in_order() {
    let (_s, p) = start(&[]);
    let jobs: Vec<String> = (0..5).map(|i| format!(r#"{{"payload":{i}}}"#)).collect();
    enqueue(&p, &format!("[{}]", jobs.join(",")));
    let got = lease(&p, r#"{"queue":"default","max":5}"#);
    assert_eq!(got.leases.len(), 5);
    let ids: Vec<&str> = got.leases.iter().map(|l| l.lease_id.as_str()).collect();
    let hb = post(
        &p,
        "/v1/leases/heartbeat",
        &format!(r#"{{"leases":["{}","999999"]}}"#, ids[0]),
    );
    let hb: BatchDoc = serde_json::from_slice(&hb.body).expect("batch");
    assert!(hb.results[0].ok && hb.results[0].lease_until_ms.is_some());
    let lost = hb.results[1].error.as_ref().map(|e| e.kind.as_str());
    assert_eq!((hb.results[1].ok, lost), (false, Some("lease_lost")));

    let body = format!(r#"{{"leases":["{}","{}","{}"]}}"#, ids[0], ids[1], ids[0]);
    let done: BatchDoc =
        serde_json::from_slice(&post(&p, "/v1/leases/complete", &body).body).expect("batch");
    let order: Vec<&str> = done.results.iter().map(|r| r.lease_id.as_str()).collect();
    assert_eq!(order, [ids[0], ids[1], ids[0]]);
    assert!(done.results.iter().all(|r| r.ok), "{done:?}");

    let body = format!(
        r#"{{"leases":[{{"lease_id":"{}","error":"e","retry_in_ms":0}},{{"lease_id":"{}","error":"e","give_up":true}}]}}"#,
        ids[2], ids[3]
    );
    let failed: BatchDoc =
        serde_json::from_slice(&post(&p, "/v1/leases/fail", &body).body).expect("batch");
    assert!(failed.results.iter().all(|r| r.ok), "{failed:?}");
    let s = p.status();
    assert_eq!((s.jobs.completed, s.jobs.dead, s.jobs.in_flight), (2, 1, 1));
}

#[test]
fn a_long_poll_is_answered_as_soon_as_a_job_is_enqueued_and_a_gone_client_takes_none() {
    let (_s, p) = start(&[]);
    // A client that leaves while waiting: its request is withdrawn.
    let mut gone = TcpStream::connect(p.api.trim_start_matches("http://")).expect("connect");
    let body = r#"{"queue":"late","wait_ms":20000}"#;
    write!(
        gone,
        "POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    assert!(
        wait_for(Duration::from_secs(10), || p
            .status()
            .leases
            .is_some_and(|l| l.requests_waiting == 1)),
        "the request never waited"
    );
    drop(gone);
    assert!(
        wait_for(Duration::from_secs(10), || p
            .status()
            .leases
            .is_some_and(|l| l.requests_waiting == 0)),
        "the request of a client that left still waits"
    );
    let api = p.api.clone();
    let waiter = std::thread::spawn(move || {
        let server = beaver_cli::client::Server::new(&api, None).expect("url");
        let t = Instant::now();
        let r = server
            .post_json("/v1/leases", br#"{"queue":"late","wait_ms":20000}"#)
            .expect("lease");
        (t.elapsed(), r)
    });
    assert!(wait_for(Duration::from_secs(10), || {
        p.status().leases.is_some_and(|l| l.requests_waiting == 1)
    }));
    enqueue(&p, r#"{"id":"j","payload":1,"queue":"late"}"#);
    let (took, r) = waiter.join().expect("waiter");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let got: LeasesDoc = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(got.leases.len(), 1);
    assert_eq!(
        job(&p, "j").attempt,
        1,
        "the withdrawn request took nothing"
    );
}

#[test]
fn queues_pause_resume_purge_and_list_their_jobs_by_page() {
    let (_s, p) = start(&[]);
    let jobs: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"payload":{i},"queue":"q"}}"#))
        .collect();
    enqueue(&p, &format!("[{}]", jobs.join(",")));
    let r = post(&p, "/v1/queues/q/pause", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"paused\":true"), "{}", r.text());
    assert!(
        lease(&p, r#"{"queue":"q","wait_ms":200}"#)
            .leases
            .is_empty()
    );
    let r = post(&p, "/v1/queues/q/resume", "");
    assert!(r.text().contains("\"paused\":false"), "{}", r.text());
    assert_eq!(lease(&p, r#"{"queue":"q","max":2}"#).leases.len(), 2);

    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let r = p
            .server()
            .get(&format!("/v1/queues/q/jobs?state=pending&limit=2{after}"))
            .expect("jobs");
        assert_eq!(r.status, 200, "{}", r.text());
        let page: JobListDoc = serde_json::from_slice(&r.body).expect("page");
        assert!(
            page.jobs
                .iter()
                .all(|j| j.state == "pending" && j.payload.is_none())
        );
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let r = post(&p, "/v1/queues/q/purge", "");
    assert!(r.text().contains("\"cancelled\":5"), "{}", r.text());
    let qs: QueueListDoc =
        serde_json::from_slice(&p.server().get("/v1/queues").expect("queues").body).expect("json");
    let q = qs.queues.iter().find(|q| q.name == "q").expect("q listed");
    assert_eq!((q.pending, q.in_flight, q.cancelled), (0, 2, 5));
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (_s, p) = start(&[]);
    enqueue(&p, r#"{"id":"keep","payload":1}"#);
    let before = settled(&p);
    let cases: &[(&str, &str, u16, &str, Option<&str>)] = &[
        ("/v1/leases", "{", 400, "invalid", Some("body")),
        ("/v1/leases", "[]", 400, "invalid", Some("body")),
        ("/v1/leases", r#"{"max":1}"#, 400, "invalid", Some("queues")),
        (
            "/v1/leases",
            r#"{"queue":"default","max":0}"#,
            400,
            "invalid",
            Some("max"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"default","max":101}"#,
            400,
            "invalid",
            Some("max"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"default","wait_ms":-1}"#,
            400,
            "invalid",
            Some("wait_ms"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"default","wait_ms":99999999}"#,
            400,
            "invalid",
            Some("wait_ms"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"bad name"}"#,
            400,
            "invalid",
            Some("queue"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"a","queues":["b"]}"#,
            400,
            "invalid",
            Some("queue"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"default","colour":1}"#,
            400,
            "invalid",
            Some("colour"),
        ),
        (
            "/v1/leases",
            r#"{"queue":"default","worker":"a\nb"}"#,
            400,
            "invalid",
            Some("worker"),
        ),
        (
            "/v1/leases/12x/complete",
            "",
            400,
            "invalid",
            Some("lease_id"),
        ),
        ("/v1/leases/99999/complete", "", 409, "lease_lost", None),
        (
            "/v1/leases/99999/heartbeat",
            r#"{"extend_ms":0}"#,
            400,
            "invalid",
            Some("extend_ms"),
        ),
        (
            "/v1/leases/99999/fail",
            r#"{"error":"x","retry_in_ms":5,"give_up":true}"#,
            400,
            "invalid",
            Some("give_up"),
        ),
        ("/v1/leases/99999/fail", "{}", 400, "invalid", Some("error")),
        (
            "/v1/leases/complete",
            r#"{"leases":[]}"#,
            400,
            "invalid",
            Some("leases"),
        ),
        (
            "/v1/leases/complete",
            r#"{"leases":[1]}"#,
            400,
            "invalid",
            Some("leases"),
        ),
        (
            "/v1/leases/fail",
            r#"{"leases":[{"error":"x"}]}"#,
            400,
            "invalid",
            Some("lease_id"),
        ),
        ("/v1/queues/nope/purge", "", 404, "not_found", None),
        (
            "/v1/queues/bad%20name/pause",
            "",
            400,
            "invalid",
            Some("queue"),
        ),
        (
            "/v1/queues/default/pause",
            r#"{"for_ms":0}"#,
            400,
            "invalid",
            Some("for_ms"),
        ),
    ];
    for &(path, body, status, kind, field) in cases {
        let r = post(&p, path, body);
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        let (k, _, f) = error_of(&r);
        assert_eq!((k.as_str(), f.as_deref()), (kind, field), "{path} {body}");
    }
    for (path, status, field) in [
        ("/v1/queues/nope/jobs", 404, None),
        ("/v1/queues/default/jobs?state=running", 400, Some("state")),
        ("/v1/queues/default/jobs?limit=1001", 400, Some("limit")),
    ] {
        let r = p.server().get(path).expect("get");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(error_of(&r).2.as_deref(), field, "{path}");
    }
    assert_eq!(settled(&p), before, "bad input changed something");
    assert_eq!(job(&p, "keep").state, "pending");
}

#[test]
fn after_a_kill_9_old_leases_are_lost_and_their_jobs_pending_with_the_attempt_counted() {
    let (s, mut p) = start(&[]);
    enqueue(&p, r#"[{"id":"k1","payload":1},{"id":"k2","payload":2}]"#);
    let got = lease(&p, r#"{"queue":"default","max":2}"#);
    assert_eq!(got.leases.len(), 2);
    p.kill9();
    let p = Proc::start(&s, &["--workers", "0"]);
    for l in &got.leases {
        let r = post(&p, &format!("/v1/leases/{}/complete", l.lease_id), "");
        assert_eq!(r.status, 409, "{}", r.text());
        assert_eq!(error_of(&r).0, "lease_lost");
    }
    // The first step after recovery fails the interrupted attempts (a
    // logged record), and the jobs are pending again, the attempt counted.
    for id in ["k1", "k2"] {
        assert!(
            wait_for(Duration::from_secs(10), || job(&p, id).state == "pending"),
            "{id} is not pending after the restart: {:?}",
            job(&p, id).state
        );
        assert_eq!(job(&p, id).attempt, 1, "{id}");
    }
    let again = lease(&p, r#"{"queue":"default","max":2,"wait_ms":5000}"#);
    assert!(
        again.leases.iter().all(|l| l.job.attempt == 2),
        "the attempt counted"
    );
}

#[test]
fn the_pool_serves_only_its_queues() {
    let (_s, p) = {
        let s = Scratch::new(FAST_CONFIG);
        let p = Proc::start(&s, &["--handler", "noop", "--pool-queue", "mine"]);
        (s, p)
    };
    enqueue(
        &p,
        r#"[{"id":"m","payload":1,"queue":"mine"},{"id":"t","payload":1,"queue":"theirs"}]"#,
    );
    assert!(wait_for(Duration::from_secs(20), || job(&p, "m").state
        == "completed"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        job(&p, "t").state,
        "pending",
        "the pool ran a job of another queue"
    );
    let got = lease(&p, r#"{"queue":"theirs"}"#);
    assert_eq!(got.leases.len(), 1);
    let mut raw = String::new();
    let mut conn = TcpStream::connect(
        p.metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics"),
    )
    .expect("metrics");
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("send");
    conn.read_to_string(&mut raw).expect("read");
    assert!(raw.contains("beaver_leases_granted_total 1"), "{raw}");
    assert!(
        raw.contains("beaver_queue_pending_jobs{queue=\"theirs\"} 0"),
        "{raw}"
    );
}
