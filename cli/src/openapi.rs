//! The HTTP API as an OpenAPI 3.1 document, generated from the code.
//!
//! One source for the router and the document: every route is registered
//! once, as `.routes(routes!(handler))` in [`crate::http::api_routes`] (or
//! [`crate::http::metrics_routes`]), and the handler's `#[utoipa::path]`
//! attribute gives its method, path, parameters, body and answers. The
//! router is built from that list ([`OpenApiRouter::split_for_parts`]) and
//! so is the document, so neither has a route the other lacks; tests check
//! the router actually served against the document, and the copy committed
//! as `docs/openapi.json` against what the code generates.
//!
//! Adding a route:
//! 1. put `#[utoipa::path(post, path = "/v1/...", tag = "...", responses(...))]`
//!    on its handler (copy a neighbour's; errors are `body = ErrorDoc`; the
//!    401 and 503 every route can give are added here, by [`CommonAnswers`]);
//!    derive `utoipa::ToSchema` on the types it answers with;
//! 2. add the one line `.routes(routes!(handler))` to `api_routes`;
//! 3. regenerate the committed copy:
//!    `BEAVER_WRITE_OPENAPI=1 cargo test -p beaver --lib openapi`.
//!
//! Request bodies are parsed by hand ([`crate::parse`]), so their schemas
//! ([`EnqueueBody`], [`NdjsonBody`]) are written here, next to a test that
//! keeps their fields equal to what the parser takes.
//!
//! The dashboard's `/ui/` files are not in the document: they are a page
//! for a browser (HTML, scripts, styles) rather than the API, need no token,
//! and `--no-ui` removes them.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beaver_core::job::{JOB_ID_BYTES_MAX, QUEUE_NAME_BYTES_MAX};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder,
};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::http::{AppState, DEAD_LIST_MAX};
use crate::schema::ErrorDoc;

/// The parts of the document that are not routes: its title, the token
/// scheme, and the answers every route shares.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "beaver",
        description = "The HTTP API of beaver, a crash-safe job queue. Routes and shapes only grow; times are unix milliseconds in fields ending `_ms`/`_at_ms`; a field that does not apply is `null`, never absent. Every error is `{\"error\": {...}}` (`ErrorDoc`). A path that is not here is answered 404 `not_found`, a method a path does not take 405 `method_not_allowed`, both with that body.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorDoc)),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Enqueueing and managing jobs"),
        (name = "dead", description = "Jobs out of attempts"),
        (name = "workers", description = "External workers: lease jobs, renew, complete and fail them (one at a time or in batches)"),
        (name = "queues", description = "Queue figures, pause, resume, purge and job listings"),
        (name = "server", description = "The server's state and upkeep"),
        (name = "metrics", description = "The metrics listener"),
    ),
)]
struct Base;

/// Adds the bearer-token scheme and, to every operation, the answers any
/// route can give: 401 when the server has a token and the request lacks
/// it, 503 when a limit is reached (also the connection limit, answered
/// before routing) or the server is stopping.
pub struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed only when the server has a token (`--token`, `BEAVER_TOKEN`): \
                         `Authorization: Bearer <token>`. A server without one takes requests \
                         without the header.",
                    ))
                    .build(),
            ),
        );
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorDoc::name())))
                .build()
        };
        let unauthorized = ResponseBuilder::new()
            .description(
                "`unauthorized`: the server has a token and the request lacks \
                 `Authorization: Bearer <token>` or sends another one",
            )
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some("`Bearer`"))
                    .build(),
            )
            .content("application/json", error())
            .build();
        let unavailable = ResponseBuilder::new()
            .description(
                "`busy`, `storage` or `stopping`: a limit is reached (pending jobs or bytes, \
                 requests waiting, unsynced records, open connections), the disk is in its \
                 space reserve, the log refused a write, or the server is shutting down; \
                 nothing was applied",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(u64::schema())
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .content("application/json", error())
            .build();
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                let answers = &mut op.responses.responses;
                answers.insert("401".into(), unauthorized.clone().into());
                answers.insert("503".into(), unavailable.clone().into());
            }
        }
    }
}

/// The document for every route the server has (both listeners).
pub fn document() -> Document {
    let mut doc = Base::openapi();
    doc.merge(crate::http::api_routes().into_openapi());
    doc.merge(crate::http::metrics_routes().into_openapi());
    // The shared answers go on after the routes are in.
    CommonAnswers.modify(&mut doc);
    doc
}

/// [`document`] as pretty JSON with a final newline: what
/// `GET /v1/openapi.json` answers and `docs/openapi.json` holds.
pub fn document_json() -> String {
    match document().to_pretty_json() {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serialising a tree of strings and maps cannot fail; if it ever
        // did, an empty document is better than a panic in a handler.
        Err(e) => format!("{{\"error\": \"cannot encode the document: {e}\"}}\n"),
    }
}

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "server",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn serve(State(_): State<Arc<AppState>>) -> Response {
    // Built once: the document is a constant of the binary.
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(document_json).as_str();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A schema of one type, or of that type or `null` (the parser takes
/// `null` for an optional field as if it were left out).
fn typed(t: Type, nullable: bool) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::Array(vec![t, Type::Null])
    } else {
        SchemaType::Type(t)
    };
    ObjectBuilder::new().schema_type(ty)
}

/// Any printable ASCII but space and `/ ? # %` (the rule of
/// [`beaver_core::JobId::parse`]).
const ID_CHARS: &str = "!-\"$&-.0->@-~";

/// [`ID_CHARS`] but the digits: a client's id holds one (ids of digits only
/// are job numbers, [`beaver_core::JobId::from_client`]).
const NON_DIGIT: &str = "!-\"$&-.:->@-~";

/// [`NON_DIGIT`] but `~`, which starts only ids beaver assigned.
const FIRST: &str = "!-\"$&-.:->@-}";

/// The job object of an enqueue, as [`crate::parse::parse_job`] takes it.
pub struct JobRequest;

impl PartialSchema for JobRequest {
    fn schema() -> RefOr<Schema> {
        let whole = |nullable: bool, min: i64, max: u64, what: &str| {
            typed(Type::Integer, nullable)
                .minimum(Some(min as isize))
                .maximum(Some(max as usize))
                .description(Some(what))
        };
        let id = typed(Type::String, true)
            .min_length(Some(1))
            .max_length(Some(JOB_ID_BYTES_MAX))
            .pattern(Some(format!(
                "^(?:[{FIRST}][{ID_CHARS}]*|[0-9]+[{NON_DIGIT}][{ID_CHARS}]*)$"
            )))
            .description(Some(
                "The job's id: printable ASCII without spaces or `/ ? # %`, neither digits only \
                 (beaver's job numbers) nor starting with `~` (beaver's own ids). Left out or \
                 `null`: beaver assigns a number. A known id adds nothing and answers \
                 `duplicate: true`.",
            ));
        let queue = typed(Type::String, true)
            .min_length(Some(1))
            .max_length(Some(QUEUE_NAME_BYTES_MAX))
            .pattern(Some("^[A-Za-z0-9._-]+$"))
            .description(Some("The queue; left out or `null`: `default`."));
        let payload = ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("Any JSON value, handed to the handler as sent."));
        let obj = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One job. Unknown fields and fields given twice are refused. Numbers are whole \
                 JSON numbers without a fraction or exponent; the server's configured limits \
                 (`[engine.queue.limits]`) apply on top of the bounds given here.",
            ))
            .property("id", id)
            .property("queue", queue)
            .property("payload", payload)
            .property(
                "max_attempts",
                whole(
                    true,
                    1,
                    u64::from(beaver_core::UNLIMITED_ATTEMPTS - 1),
                    "Attempts allowed; left out or `null`: the server's default.",
                ),
            )
            .property(
                "timeout_ms",
                whole(
                    true,
                    1,
                    u64::MAX,
                    "Limit on one attempt; left out or `null`: the server's default.",
                ),
            )
            .property(
                "delay_ms",
                whole(
                    true,
                    0,
                    u64::MAX,
                    "How long to wait before the first attempt; left out or `null`: 0.",
                ),
            )
            .property(
                "priority",
                typed(Type::Integer, true)
                    .minimum(Some(i32::MIN as isize))
                    .maximum(Some(i32::MAX as usize))
                    .description(Some("Higher runs first; left out or `null`: 0.")),
            )
            .required("payload")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        RefOr::T(Schema::Object(obj.build()))
    }
}

impl ToSchema for JobRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JobRequest")
    }
}

/// The JSON body of `POST /v1/jobs`: one [`JobRequest`] or a non-empty
/// array of them.
pub struct EnqueueBody;

impl PartialSchema for EnqueueBody {
    fn schema() -> RefOr<Schema> {
        let many = ArrayBuilder::new()
            .items(Ref::from_schema_name(JobRequest::name()))
            .min_items(Some(1))
            .description(Some("A batch: all jobs are accepted or none."));
        OneOfBuilder::new()
            .item(Ref::from_schema_name(JobRequest::name()))
            .item(many)
            .description(Some("One job object, or a non-empty array of them."))
            .into()
    }
}

impl ToSchema for EnqueueBody {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((JobRequest::name().into(), JobRequest::schema()));
    }
}

/// The NDJSON body of `POST /v1/jobs`: one [`JobRequest`] per line.
pub struct NdjsonBody;

impl PartialSchema for NdjsonBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "One JSON job object (`JobRequest`) per line; blank lines are skipped; at least \
                 one job. A fault's `index` counts jobs, not lines.",
            ))
            .into()
    }
}

impl ToSchema for NdjsonBody {}

/// The `{id}` of the job routes.
pub struct JobIdParam;

impl IntoParams for JobIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = typed(Type::String, false)
            .min_length(Some(1))
            .max_length(Some(JOB_ID_BYTES_MAX))
            .pattern(Some(format!("^[{ID_CHARS}]+$")));
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "The job's id (given by the client, or the number beaver assigned)",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// The query of `GET /v1/dead`.
pub struct DeadQuery;

impl IntoParams for DeadQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = typed(Type::Integer, false)
            .minimum(Some(1))
            .maximum(Some(DEAD_LIST_MAX))
            .default(Some(100.into()));
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "How many dead jobs at most; no other parameter is taken",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

pub mod workers;

#[cfg(test)]
mod tests;
