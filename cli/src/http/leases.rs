//! External workers' routes: lease, heartbeat, complete and fail, one at a
//! time or in batches. Each is a thin adapter over the client: a lease is
//! answered once its dispatch records are durable, a complete or fail once
//! its record is. A lease request whose HTTP client leaves is dropped with
//! its handler's future (axum drops it when the connection closes), which
//! withdraws it from the engine: no job is handed to nobody.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use beaver_core::protocol::{HOLDER_BYTES_MAX, LEASE_QUEUES_MAX};
use beaver_core::{LeaseId, QueueName, Rejection, Retry};
use serde_json::Value;

use super::body::{Fields, invalid, lease_id, lease_id_value};
use super::{ApiError, AppState, json, read_body};
use crate::schema::{
    BatchDoc, BatchResultDoc, HeartbeatDoc, JobDoc, LeaseEndedDoc, LeaseListDoc, LeaseViewDoc,
    LeasedDoc, LeasesDoc, SCHEMA_VERSION,
};

/// What a lease request asks, checked.
struct LeaseAsk {
    queues: Vec<QueueName>,
    max: u32,
    wait: Option<Duration>,
    worker: String,
}

/// The longest `wait_ms` the API takes: the engine's limit, and at most
/// half the idle timeout, so an idle-connection close (which comes no
/// sooner than `idle_timeout_ms` after the request's last byte) never
/// cuts a long poll short.
fn wait_ms_max(app: &AppState) -> u64 {
    app.queue_limits
        .lease_wait_max_ms
        .min(app.limits.idle_timeout_ms / 2)
}

fn parse_lease(app: &AppState, bytes: &[u8]) -> Result<LeaseAsk, ApiError> {
    let f = Fields::parse(bytes, &LEASE_FIELDS)?;
    let queues = match (f.get("queues"), f.get("queue")) {
        (Some(_), Some(_)) => return Err(f.bad("queue", "give `queues` or `queue`, not both")),
        (None, None) => {
            return Err(f.bad(
                "queues",
                format!("missing: name 1 to {LEASE_QUEUES_MAX} queues, such as \"queues\": [\"default\"] (or \"queue\": \"default\")"),
            ));
        }
        (Some(Value::Array(items)), None) => {
            if items.is_empty() || items.len() > LEASE_QUEUES_MAX {
                return Err(f.bad(
                    "queues",
                    format!("name 1 to {LEASE_QUEUES_MAX} queues, got {}", items.len()),
                ));
            }
            let mut names = Vec::with_capacity(items.len());
            for v in items {
                names.push(queue_name(&f, "queues", v)?);
            }
            names
        }
        (Some(v), None) => {
            return Err(f.bad(
                "queues",
                format!("must be an array of queue names, got {v}"),
            ));
        }
        (None, Some(v)) => vec![queue_name(&f, "queue", v)?],
    };
    let batch_max = u64::from(app.queue_limits.lease_batch_max);
    let max = f.u64_in("max", 1..=batch_max)?.unwrap_or(1);
    let wait_ms = f.u64_in("wait_ms", 0..=wait_ms_max(app))?.unwrap_or(0);
    let worker = f.str("worker")?.unwrap_or("");
    if worker.len() > HOLDER_BYTES_MAX || worker.chars().any(char::is_control) {
        return Err(f.bad(
            "worker",
            format!(
                "must be at most {HOLDER_BYTES_MAX} bytes without control characters, got {} bytes",
                worker.len()
            ),
        ));
    }
    Ok(LeaseAsk {
        queues,
        // Within lease_batch_max, a u32.
        max: u32::try_from(max).unwrap_or(u32::MAX),
        wait: (wait_ms > 0).then(|| Duration::from_millis(wait_ms)),
        worker: worker.to_owned(),
    })
}

fn queue_name(f: &Fields, field: &str, v: &Value) -> Result<QueueName, ApiError> {
    match v {
        Value::String(s) => QueueName::parse(s).map_err(|reason| f.bad(field, reason)),
        other => Err(f.bad(field, format!("a queue name is a string, got {other}"))),
    }
}

/// `POST /v1/leases`: up to `max` ready jobs of the queues named, waiting
/// up to `wait_ms` for some.
#[utoipa::path(
    post,
    path = "/v1/leases",
    tag = "workers",
    request_body = crate::openapi::workers::LeaseRequest,
    responses(
        (status = 200, description = "The jobs leased, each with its lease id and deadline; their dispatch is durable. Empty when nothing was ready within `wait_ms`", body = LeasesDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn lease(
    State(app): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &app.limits).await?;
    let ask = parse_lease(&app, &bytes)?;
    let leased = app
        .client
        .lease(ask.queues, ask.max, ask.wait, &ask.worker)
        .await?;
    let doc = LeasesDoc {
        schema_version: SCHEMA_VERSION,
        leases: leased
            .iter()
            .map(|l| LeasedDoc {
                lease_id: l.lease_id.to_string(),
                lease_until_ms: l.lease_until,
                job: JobDoc::new(&l.job, true),
            })
            .collect(),
    };
    Ok(json(StatusCode::OK, &doc))
}

fn extend_ms(app: &AppState, f: &Fields) -> Result<Option<u64>, ApiError> {
    f.u64_in("extend_ms", 1..=app.queue_limits.lease_extend_max_ms)
}

/// `POST /v1/leases/{lease_id}/heartbeat`: renews a current lease.
#[utoipa::path(
    post,
    path = "/v1/leases/{lease_id}/heartbeat",
    tag = "workers",
    params(crate::openapi::workers::LeaseIdParam),
    request_body(content = Option<crate::openapi::workers::HeartbeatRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "The lease's new deadline", body = HeartbeatDoc),
        crate::openapi::workers::BodyRefusals,
        crate::openapi::workers::LeaseLost,
    ),
)]
pub(super) async fn heartbeat(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let lease = lease_id(&id, None, "lease_id")?;
    let bytes = read_body(body, &app.limits).await?;
    let f = Fields::parse(&bytes, &HEARTBEAT_FIELDS)?;
    let until = app.client.heartbeat(lease, extend_ms(&app, &f)?).await?;
    let doc = HeartbeatDoc {
        schema_version: SCHEMA_VERSION,
        lease_id: lease.to_string(),
        lease_until_ms: until,
    };
    Ok(json(StatusCode::OK, &doc))
}

fn ended(lease: LeaseId, state: &str) -> Response {
    let doc = LeaseEndedDoc {
        schema_version: SCHEMA_VERSION,
        lease_id: lease.to_string(),
        state: state.into(),
    };
    json(StatusCode::OK, &doc)
}

/// `POST /v1/leases/{lease_id}/complete`: the job completes, once durable;
/// a retry of a complete that took effect is answered alike.
#[utoipa::path(
    post,
    path = "/v1/leases/{lease_id}/complete",
    tag = "workers",
    params(crate::openapi::workers::LeaseIdParam),
    request_body(content = Option<crate::openapi::workers::EmptyRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "The job is completed, durably (also when this lease's complete was already applied)", body = LeaseEndedDoc),
        crate::openapi::workers::BodyRefusals,
        crate::openapi::workers::LeaseLost,
    ),
)]
pub(super) async fn complete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let lease = lease_id(&id, None, "lease_id")?;
    let bytes = read_body(body, &app.limits).await?;
    Fields::parse(&bytes, &[])?;
    app.client.complete(lease).await?;
    Ok(ended(lease, "completed"))
}

/// A failure's error text and retry, checked.
fn parse_failure(app: &AppState, f: &Fields) -> Result<(String, Retry), ApiError> {
    let error = f
        .str("error")?
        .ok_or_else(|| f.bad("error", "missing: say why the attempt failed, as a string"))?;
    let retry_in = f.u64_in("retry_in_ms", 0..=app.queue_limits.delay_ms_max)?;
    let retry = match (retry_in, f.bool("give_up")?) {
        (Some(_), Some(true)) => {
            return Err(f.bad("give_up", "give `retry_in_ms` or `give_up: true`, not both"));
        }
        (_, Some(true)) => Retry::GiveUp,
        (Some(ms), _) => Retry::InMs(ms),
        (None, _) => Retry::Policy,
    };
    Ok((error.to_owned(), retry))
}

/// The fields of a fail's body.
pub(crate) const FAIL_FIELDS: [&str; 3] = ["error", "retry_in_ms", "give_up"];
/// The fields of a lease request.
pub(crate) const LEASE_FIELDS: [&str; 5] = ["queues", "queue", "max", "wait_ms", "worker"];
/// The fields of a heartbeat's body.
pub(crate) const HEARTBEAT_FIELDS: [&str; 1] = ["extend_ms"];
/// The fields of a batch heartbeat.
pub(crate) const HEARTBEAT_BATCH_FIELDS: [&str; 2] = ["leases", "extend_ms"];
/// The fields of a batch complete or fail.
pub(crate) const BATCH_FIELDS: [&str; 1] = ["leases"];

/// `POST /v1/leases/{lease_id}/fail`: the attempt fails, once durable; the
/// job retries as asked (or per its backoff) while attempts are left.
#[utoipa::path(
    post,
    path = "/v1/leases/{lease_id}/fail",
    tag = "workers",
    params(crate::openapi::workers::LeaseIdParam),
    request_body = crate::openapi::workers::FailRequest,
    responses(
        (status = 200, description = "The attempt failed, durably; the job retries or is dead", body = LeaseEndedDoc),
        crate::openapi::workers::BodyRefusals,
        crate::openapi::workers::LeaseLost,
    ),
)]
pub(super) async fn fail(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let lease = lease_id(&id, None, "lease_id")?;
    let bytes = read_body(body, &app.limits).await?;
    let f = Fields::parse(&bytes, &FAIL_FIELDS)?;
    let (error, retry) = parse_failure(&app, &f)?;
    app.client.fail(lease, error, retry).await?;
    Ok(ended(lease, "failed"))
}

/// The `leases` array of a batch: 1 to `lease_batch_max` items.
fn batch_items(app: &AppState, f: &mut Fields) -> Result<Vec<Value>, ApiError> {
    let max = app.queue_limits.lease_batch_max as usize;
    match f.take("leases") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= max => Ok(items),
        Some(Value::Array(items)) => Err(f.bad(
            "leases",
            format!("give 1 to {max} leases, got {}", items.len()),
        )),
        Some(v) => Err(f.bad("leases", format!("must be an array, got {v}"))),
        None => Err(f.bad("leases", format!("missing: give 1 to {max} leases"))),
    }
}

/// One item's result in a batch.
fn result_of(lease: LeaseId, r: Result<Option<u64>, Rejection>) -> BatchResultDoc {
    match r {
        Ok(until) => BatchResultDoc {
            lease_id: lease.to_string(),
            ok: true,
            lease_until_ms: until,
            error: None,
        },
        Err(rejection) => BatchResultDoc {
            lease_id: lease.to_string(),
            ok: false,
            lease_until_ms: None,
            error: Some(ApiError::from(rejection).body),
        },
    }
}

/// Awaits every ask (all sent before any is awaited, so the engine takes
/// them in one go) and answers one result per lease, in request order;
/// `until` reads a heartbeat's new deadline from an answer.
async fn batch<T>(
    leases: &[LeaseId],
    asks: impl IntoIterator<Item = impl Future<Output = Result<T, Rejection>>>,
    until: impl Fn(T) -> Option<u64>,
) -> Response {
    let answers = futures_util::future::join_all(asks).await;
    let results = leases
        .iter()
        .zip(answers)
        .map(|(&l, r)| result_of(l, r.map(&until)))
        .collect();
    let doc = BatchDoc {
        schema_version: SCHEMA_VERSION,
        results,
    };
    json(StatusCode::OK, &doc)
}

/// The lease ids of a batch of strings.
fn lease_ids(items: &[Value]) -> Result<Vec<LeaseId>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| lease_id_value(v, Some(i), "leases"))
        .collect()
}

/// `POST /v1/leases/heartbeat`: renews many leases, each answered alone.
#[utoipa::path(
    post,
    path = "/v1/leases/heartbeat",
    tag = "workers",
    request_body = crate::openapi::workers::HeartbeatBatchRequest,
    responses(
        (status = 200, description = "One result per lease, in order: `lease_lost` and the like are per item", body = BatchDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn heartbeat_batch(
    State(app): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &app.limits).await?;
    let mut f = Fields::parse(&bytes, &HEARTBEAT_BATCH_FIELDS)?;
    let extend = extend_ms(&app, &f)?;
    let leases = lease_ids(&batch_items(&app, &mut f)?)?;
    let asks = leases.iter().map(|&l| app.client.heartbeat(l, extend));
    Ok(batch(&leases, asks, Some).await)
}

/// `POST /v1/leases/complete`: completes many leases, each answered alone
/// once durable.
#[utoipa::path(
    post,
    path = "/v1/leases/complete",
    tag = "workers",
    request_body = crate::openapi::workers::CompleteBatchRequest,
    responses(
        (status = 200, description = "One result per lease, in order; each `ok` one is durable", body = BatchDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn complete_batch(
    State(app): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &app.limits).await?;
    let mut f = Fields::parse(&bytes, &BATCH_FIELDS)?;
    let leases = lease_ids(&batch_items(&app, &mut f)?)?;
    let asks = leases.iter().map(|&l| app.client.complete(l));
    Ok(batch(&leases, asks, |()| None).await)
}

/// `POST /v1/leases/fail`: fails many leases, each answered alone once
/// durable. Every item is checked before any is sent.
#[utoipa::path(
    post,
    path = "/v1/leases/fail",
    tag = "workers",
    request_body = crate::openapi::workers::FailBatchRequest,
    responses(
        (status = 200, description = "One result per lease, in order; each `ok` one is durable", body = BatchDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn fail_batch(
    State(app): State<Arc<AppState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &app.limits).await?;
    let mut f = Fields::parse(&bytes, &BATCH_FIELDS)?;
    let mut items = Vec::new();
    for (i, v) in batch_items(&app, &mut f)?.into_iter().enumerate() {
        let mut fields = ["lease_id"].to_vec();
        fields.extend(FAIL_FIELDS);
        let item = Fields::of(v, &fields, Some(i))?;
        let lease = match item.get("lease_id") {
            Some(v) => lease_id_value(v, Some(i), "lease_id")?,
            None => return Err(invalid(Some(i), "lease_id", "missing: name the lease")),
        };
        let (error, retry) = parse_failure(&app, &item)?;
        items.push((lease, error, retry));
    }
    let leases: Vec<LeaseId> = items.iter().map(|(l, _, _)| *l).collect();
    let asks = items
        .into_iter()
        .map(|(l, error, retry)| app.client.fail(l, error, retry));
    Ok(batch(&leases, asks, |()| None).await)
}

/// `GET /v1/leases`: the current leases (the lowest ids, at most 1,000)
/// and how many in all.
#[utoipa::path(
    get,
    path = "/v1/leases",
    tag = "workers",
    responses((status = 200, description = "The current leases (the lowest ids, at most 1,000) and how many in all", body = LeaseListDoc)),
)]
pub(super) async fn list(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let list = app.client.list_leases().await?;
    let doc = LeaseListDoc {
        schema_version: SCHEMA_VERSION,
        total: list.total,
        leases: list.leases.iter().map(LeaseViewDoc::from).collect(),
    };
    Ok(json(StatusCode::OK, &doc))
}
