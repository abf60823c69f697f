//! The OpenAPI document against the live server: it is what the code
//! generates, every documented operation is routed and every other method
//! of a documented path is 405; and the findings of schemathesis
//! (scripts/schemathesis/run) kept as regression tests.

use beaver_cli::client::Server;

use crate::common::*;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

#[test]
fn the_served_document_is_the_generated_one_and_routes_every_operation() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop"]);
    let api = p.server();
    let r = api.get("/v1/openapi.json").expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), beaver_cli::openapi::document_json());
    let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 11, "{}", paths.len());
    let metrics_url = p.metrics.trim_end_matches("/metrics").to_string();
    let metrics = Server::new(&metrics_url, None).expect("url");
    for (path, item) in paths {
        let srv = if path == "/metrics" { &metrics } else { &api };
        let concrete = path.replace("{id}", "probe-id");
        for method in METHODS {
            let documented = item.get(method.to_lowercase()).is_some();
            let body = (method != "GET").then_some(("application/json", &b"{}"[..]));
            let r = srv.request(method, &concrete, body).expect("request");
            if documented {
                assert_ne!(r.status, 405, "{method} {path}: {}", r.text());
                let unrouted = r.status == 404 && r.text().contains("no route");
                assert!(!unrouted, "{method} {path} is documented but not routed");
            } else {
                assert_eq!(
                    r.status, 405,
                    "{method} {path} is routed but not documented"
                );
                assert_eq!(error_of(&r).0, "method_not_allowed");
            }
        }
    }
}

#[test]
fn the_document_needs_the_token_like_every_route() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--token", "t0ken"]);
    let r = p.server().get("/v1/openapi.json").expect("get");
    assert_eq!((r.status, error_of(&r).0.as_str()), (401, "unauthorized"));
    let with = Server::new(&p.api, Some("t0ken".into())).expect("url");
    let r = with.get("/v1/openapi.json").expect("get");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// schemathesis's "unsupported content type" probes sent valid job
/// bodies as `text/plain` and `multipart/form-data`, and they were
/// enqueued: the API reads any body but NDJSON as JSON (so `curl -d`
/// works), which the document now says (`*/*`).
#[test]
fn a_json_body_is_read_as_json_whatever_its_content_type() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--workers", "0"]);
    let srv = p.server();
    let types = [
        "text/plain",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
    ];
    for (i, ty) in types.iter().enumerate() {
        let body = format!(r#"{{"id": "ct-{i}", "payload": {{"n": {i}}}}}"#);
        let r = srv
            .request("POST", "/v1/jobs", Some((ty, body.as_bytes())))
            .expect("post");
        assert_eq!(r.status, 200, "{ty}: {}", r.text());
        let got = srv.get(&format!("/v1/jobs/ct-{i}")).expect("get");
        assert_eq!(got.status, 200, "{ty}: {}", got.text());
    }
    let r = srv
        .request("POST", "/v1/jobs", Some(("text/plain", b"{\"payload\": ")))
        .expect("post");
    assert_eq!((r.status, error_of(&r).0.as_str()), (400, "invalid"));
    let doc = beaver_cli::openapi::document_json();
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
    let content = &doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"];
    assert!(content.get("*/*").is_some(), "{content}");
}

/// The document gives every optional job field as "its type or null",
/// because the parser takes `null` as left out.
#[test]
fn null_optional_fields_are_taken_as_left_out() {
    let s = Scratch::new(FAST_CONFIG);
    let p = Proc::start(&s, &["--handler", "noop", "--workers", "0"]);
    let body = r#"{"id": null, "queue": null, "payload": null, "max_attempts": null,
        "timeout_ms": null, "delay_ms": null, "priority": null}"#;
    let r = post(&p, "/v1/jobs", body);
    assert_eq!(r.status, 200, "{}", r.text());
    let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let id = doc["jobs"][0]["id"].as_str().expect("id");
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    let job = p.server().get(&format!("/v1/jobs/{id}")).expect("get");
    let job: serde_json::Value = serde_json::from_slice(&job.body).expect("json");
    assert_eq!(job["queue"], "default");
    assert_eq!(job["priority"], 0);
}
