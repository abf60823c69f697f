use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;
use crate::parse::JOB_FIELDS;

/// Where the committed copy lives, from the crate's directory.
fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = document_json();
    let path = committed_path();
    if std::env::var_os("BEAVER_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the code generates; regenerate it with\n  \
         BEAVER_WRITE_OPENAPI=1 cargo test -p beaver --lib openapi\nand commit it"
    );
}

/// The paths an axum router holds, read from its `Debug` form (axum has
/// no other way to list them): its path router's quoted `/...` strings,
/// before the fallback router's.
fn router_paths<S>(router: &axum::Router<S>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let routes = text.split("fallback_router").next().unwrap_or("");
    routes
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_routers_serve_exactly_the_documented_paths() {
    let api = "127.0.0.1:7070".parse().expect("address");
    let mut served = router_paths(&crate::http::api_router_stateless(None));
    // Guards the Debug reading itself: a route known to be there is found.
    assert!(served.contains("/v1/jobs/{id}"), "{served:?}");
    served.extend(router_paths(&crate::http::metrics_router_stateless(
        None, api,
    )));
    let documented: BTreeSet<String> = document().paths.paths.keys().cloned().collect();
    assert_eq!(
        served, documented,
        "a route is served but not documented, or the other way round: register routes only \
         with `.routes(routes!(handler))` in http::api_routes (see the openapi module's doc)"
    );
}

#[test]
fn every_operation_answers_401_and_503_with_the_error_body() {
    let doc = document();
    for (path, item) in &doc.paths.paths {
        let ops = [&item.get, &item.post, &item.put, &item.delete, &item.patch];
        for op in ops.into_iter().flatten() {
            for status in ["401", "503"] {
                assert!(
                    op.responses.responses.contains_key(status),
                    "{path} {status}"
                );
            }
        }
    }
}

#[test]
fn the_job_schema_has_the_fields_the_parser_takes() {
    let RefOr::T(Schema::Object(obj)) = JobRequest::schema() else {
        panic!("the job schema is an object");
    };
    let documented: BTreeSet<&str> = obj.properties.keys().map(String::as_str).collect();
    let parsed: BTreeSet<&str> = JOB_FIELDS.split(", ").collect();
    assert_eq!(documented, parsed);
    assert_eq!(obj.required, vec!["payload".to_string()]);
}

#[test]
fn every_documented_route_is_under_v1_or_is_metrics() {
    for path in document().paths.paths.keys() {
        assert!(path.starts_with("/v1/") || path == "/metrics", "{path}");
    }
}

/// The property names of a derived request schema.
fn properties<T: utoipa::PartialSchema>() -> BTreeSet<String> {
    let RefOr::T(Schema::Object(obj)) = T::schema() else {
        panic!("a request schema is an object");
    };
    obj.properties.keys().cloned().collect()
}

fn names(fields: &[&str]) -> BTreeSet<String> {
    fields.iter().map(|f| (*f).to_string()).collect()
}

#[test]
fn the_worker_and_queue_schemas_have_the_fields_their_routes_take() {
    use super::workers::*;
    use crate::http::{leases, queues};
    assert_eq!(properties::<LeaseRequest>(), names(&leases::LEASE_FIELDS));
    assert_eq!(
        properties::<HeartbeatRequest>(),
        names(&leases::HEARTBEAT_FIELDS)
    );
    assert_eq!(properties::<FailRequest>(), names(&leases::FAIL_FIELDS));
    let mut item = names(&leases::FAIL_FIELDS);
    item.insert("lease_id".into());
    assert_eq!(properties::<FailItem>(), item);
    assert_eq!(
        properties::<HeartbeatBatchRequest>(),
        names(&leases::HEARTBEAT_BATCH_FIELDS)
    );
    assert_eq!(
        properties::<CompleteBatchRequest>(),
        names(&leases::BATCH_FIELDS)
    );
    assert_eq!(
        properties::<FailBatchRequest>(),
        names(&leases::BATCH_FIELDS)
    );
    assert_eq!(properties::<PauseRequest>(), names(&queues::PAUSE_FIELDS));
    assert!(properties::<EmptyRequest>().is_empty());
}
