//! The request shapes of the external-worker and queue routes, for the
//! document. Their bodies are read by hand ([`crate::http`]'s `body`
//! module: an object whose keys are checked against the route's list,
//! `null` taken as absent), so these types only describe; a test keeps each
//! one's fields equal to the keys its route takes. Bounds the server's
//! configuration sets (`[engine.queue.limits]`) are said, not encoded: the
//! schema is never stricter than the server. [`BodyRefusals`] gives the
//! refusals every route with a body shares.

use std::collections::BTreeMap;

use beaver_core::job::QUEUE_NAME_BYTES_MAX;
use beaver_core::protocol::{HOLDER_BYTES_MAX, LEASE_QUEUES_MAX, LIST_JOBS_MAX};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, ToSchema};

/// A lease id as answers give it: a decimal string (u64).
fn lease_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some("^[0-9]{1,20}$"))
        .description(Some("A lease id, as `POST /v1/leases` gave it"))
}

fn queue_name_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .min_length(Some(1))
        .max_length(Some(QUEUE_NAME_BYTES_MAX))
        .pattern(Some("^[A-Za-z0-9._-]+$"))
}

fn queue_names() -> RefOr<Schema> {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(queue_name_schema())
        .min_items(Some(1))
        .max_items(Some(LEASE_QUEUES_MAX))
        .description(Some(
            "The queues to take jobs from (give this or `queue`, not both)",
        ))
        .into()
}

fn one_queue() -> RefOr<Schema> {
    queue_name_schema()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some("One queue to take jobs from (instead of `queues`)"))
        .into()
}

fn worker_name() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(HOLDER_BYTES_MAX))
        .description(Some(
            "How the worker names itself in lease listings: no control characters; left out: empty",
        ))
        .into()
}

fn lease_ids() -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(lease_id_schema())
        .min_items(Some(1))
        .description(Some(
            "The leases, 1 to `lease_batch_max` (100 by default); each is answered alone",
        ))
        .into()
}

fn one_lease_id() -> RefOr<Schema> {
    lease_id_schema().into()
}

/// The body of `POST /v1/leases`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LeaseRequest {
    /// The queues to take jobs from (give this or `queue`, not both).
    #[schema(schema_with = queue_names)]
    queues: Option<Vec<String>>,
    /// One queue (instead of `queues`).
    #[schema(schema_with = one_queue)]
    queue: Option<String>,
    /// How many jobs at most, up to `lease_batch_max` (100 by default); left out: 1.
    #[schema(minimum = 1)]
    max: Option<u64>,
    /// How long to wait for a ready job, up to `lease_wait_max_ms` and half
    /// the idle timeout; left out or 0: answer at once (maybe empty).
    #[schema(minimum = 0)]
    wait_ms: Option<u64>,
    /// The worker's name, shown in lease listings.
    #[schema(schema_with = worker_name)]
    worker: Option<String>,
}

/// The body of a heartbeat (may be left out).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct HeartbeatRequest {
    /// Extend the lease by this much from now, up to `lease_extend_max_ms`;
    /// left out: by the job's timeout.
    #[schema(minimum = 1)]
    extend_ms: Option<u64>,
}

/// The body of a complete, a resume or a purge: nothing, or `{}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// The body of a fail.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FailRequest {
    /// Why the attempt failed (kept as the job's last error).
    error: String,
    /// Retry in this much time (up to `delay_ms_max`) instead of by the
    /// job's backoff; not with `give_up`.
    #[schema(minimum = 0)]
    retry_in_ms: Option<u64>,
    /// `true`: the job is dead now, whatever attempts are left.
    give_up: Option<bool>,
}

/// One item of `POST /v1/leases/fail`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FailItem {
    /// The lease.
    #[schema(schema_with = one_lease_id)]
    lease_id: String,
    /// As in [`FailRequest`].
    error: String,
    /// As in [`FailRequest`].
    #[schema(minimum = 0)]
    retry_in_ms: Option<u64>,
    /// As in [`FailRequest`].
    give_up: Option<bool>,
}

/// The body of `POST /v1/leases/heartbeat`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct HeartbeatBatchRequest {
    /// The leases to renew.
    #[schema(schema_with = lease_ids)]
    leases: Vec<String>,
    /// As in a single heartbeat, for every lease.
    #[schema(minimum = 1)]
    extend_ms: Option<u64>,
}

/// The body of `POST /v1/leases/complete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CompleteBatchRequest {
    /// The leases to complete.
    #[schema(schema_with = lease_ids)]
    leases: Vec<String>,
}

/// The body of `POST /v1/leases/fail`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct FailBatchRequest {
    /// The failures, 1 to `lease_batch_max` (100 by default).
    #[schema(min_items = 1)]
    leases: Vec<FailItem>,
}

/// The body of a pause (may be left out).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PauseRequest {
    /// Pause for this long (up to `delay_ms_max`); left out: until resumed.
    #[schema(minimum = 1)]
    for_ms: Option<u64>,
}

fn path_param(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The `{lease_id}` of the single-lease routes.
pub struct LeaseIdParam;

impl IntoParams for LeaseIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![path_param("lease_id", "The lease", lease_id_schema())]
    }
}

/// The `{name}` of the queue routes.
pub struct QueueNameParam;

impl IntoParams for QueueNameParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![path_param("name", "The queue", queue_name_schema())]
    }
}

/// The query of `GET /v1/queues/{name}/jobs`; no other parameter is taken.
pub struct JobsQuery;

impl IntoParams for JobsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        let integer = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer));
        vec![
            query(
                "state",
                "Only jobs in this state",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some([
                        "pending",
                        "in_flight",
                        "completed",
                        "dead",
                        "cancelled",
                    ])),
            ),
            query(
                "after",
                "Jobs numbered above this: the previous page's `next`",
                integer().minimum(Some(0)),
            ),
            query(
                "limit",
                "How many jobs at most (default 100)",
                integer()
                    .minimum(Some(1))
                    .maximum(Some(LIST_JOBS_MAX))
                    .default(Some(100.into())),
            ),
        ]
    }
}

/// The refusals of a route that reads a JSON body (400, 408, 413), each
/// with the error body; every such route lists them once by this name.
pub struct BodyRefusals;

/// An answer with the error body.
fn error(description: &str) -> RefOr<Response> {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorDoc")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
        .into()
}

/// The 409 of a route that names one lease; every such route lists it once
/// by this name.
pub struct LeaseLost;

impl IntoResponses for LeaseLost {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "409".to_owned(),
            error(
                "`lease_lost`: the lease is not current (it expired, its job was leased \
                 again, or it never was); nothing changed",
            ),
        )])
    }
}

impl IntoResponses for BodyRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            (
                "400".to_owned(),
                error(
                    "`invalid`: a bad path parameter, or the body is not JSON, or a field is \
                     unknown, of the wrong type or out of the server's limits (`field` names \
                     it; in a batch, `index` the item); nothing was applied",
                ),
            ),
            (
                "408".to_owned(),
                error("`timeout`: the body took longer than `http.body_timeout_ms` to arrive"),
            ),
            (
                "413".to_owned(),
                error("`too_large`: the body is over `http.body_bytes_max`"),
            ),
        ])
    }
}
