//! The HTTP API: a thin adapter over the runtime's in-process [`Client`].
//!
//! No queue logic lives here: requests are parsed, handed to the client,
//! and answered only once the client's future resolves (for an enqueue:
//! once the jobs are durable). Every error is `{"error": {...}}` with the
//! status the README documents.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use beaver_core::{JobId, Rejection, RequeueTarget};
use beaver_runtime::{Client, RecoveryReport};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::parse::{BadJob, parse_body, parse_ndjson};
use crate::schema::{EnqueuedDoc, EnqueuedJob, ErrorBody, ErrorDoc, JobDoc, StatusDoc};
use crate::settings::HttpLimits;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod body;
pub(crate) mod leases;
pub(crate) mod queues;

/// What every handler shares (behind one `Arc`: each request clones it).
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub client: Client,
    /// What start-up recovery found.
    pub recovery: RecoveryReport,
    /// Where snapshots live (their age is read from the files).
    pub snapshot_dir: PathBuf,
    /// HTTP limits.
    pub limits: HttpLimits,
    /// The metrics, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The engine's limits, which request bodies are checked against
    /// before anything is sent to it.
    pub queue_limits: beaver_core::Limits,
}

/// The largest `limit` of `GET /v1/dead`.
pub const DEAD_LIST_MAX: usize = 1_000;

/// An API error, rendered as `{"error": {...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                kind: kind.into(),
                message: message.into(),
                index: None,
                field: None,
                retry_after_ms: None,
            },
        }
    }

    fn retry(mut self, ms: u64) -> ApiError {
        self.body.retry_after_ms = Some(ms);
        self
    }
}

impl From<BadJob> for ApiError {
    fn from(b: BadJob) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid", b.to_string());
        e.body.index = b.index;
        e.body.field = Some(b.field);
        e
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        let message = r.to_string();
        match r {
            Rejection::Invalid { index, field, .. } => {
                let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
                e.body.index = index;
                e.body.field = Some(field);
                e
            }
            Rejection::TooLarge { index, .. } => {
                let mut e = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message);
                e.body.index = index;
                e
            }
            Rejection::Busy { retry_after_ms, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
                    .retry(retry_after_ms)
            }
            Rejection::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            Rejection::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            Rejection::Storage { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", message).retry(1_000)
            }
            Rejection::Stopping => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", message).retry(1_000)
            }
            Rejection::LeaseLost { .. } => {
                ApiError::new(StatusCode::CONFLICT, "lease_lost", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.body.retry_after_ms;
        let mut resp = json(self.status, &ErrorDoc { error: self.body });
        if let Some(ms) = retry {
            let secs = ms.div_ceil(1_000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        )
            .into_response(),
    }
}

/// Every route of the API listener, each registered once with the
/// `#[utoipa::path]` of its handler: the router and the OpenAPI document
/// ([`crate::openapi`]) are both built from this list. A new route is one
/// line here (and its handler's attribute).
pub fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(enqueue))
        .routes(routes!(get_job))
        .routes(routes!(requeue_one))
        .routes(routes!(cancel))
        .routes(routes!(status))
        .routes(routes!(list_dead))
        .routes(routes!(requeue_all))
        .routes(routes!(ping))
        .routes(routes!(snapshot))
        .routes(routes!(leases::lease, leases::list))
        .routes(routes!(leases::heartbeat))
        .routes(routes!(leases::complete))
        .routes(routes!(leases::fail))
        .routes(routes!(leases::heartbeat_batch))
        .routes(routes!(leases::complete_batch))
        .routes(routes!(leases::fail_batch))
        .routes(routes!(queues::list))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(queues::purge))
        .routes(routes!(queues::jobs))
        .routes(routes!(crate::openapi::serve))
}

/// Every route of the metrics listener, as [`api_routes`].
pub fn metrics_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// The API router before its state is given: [`api_routes`] with the
/// fallbacks and the token check.
pub fn api_router_stateless(token: Option<Arc<str>>) -> Router<Arc<AppState>> {
    let (routes, _) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, authorize))
}

/// The API router.
pub fn api_router(state: AppState, token: Option<Arc<str>>) -> Router {
    api_router_stateless(token).with_state(Arc::new(state))
}

/// The metrics router before its state is given (see [`metrics_router`]).
pub fn metrics_router_stateless(token: Option<Arc<str>>, api: SocketAddr) -> Router<Arc<AppState>> {
    let elsewhere = move |method: Method, uri: axum::http::Uri| async move {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no route {method} {} on the metrics listener, which serves only GET /metrics; the API is at http://{api}",
                uri.path()
            ),
        )
    };
    let (routes, _) = metrics_routes().split_for_parts();
    routes
        .fallback(elsewhere)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, authorize))
}

/// The metrics router (`GET /metrics`). Any other path is answered 404
/// with a message pointing at the API's address `api`: `/v1/status` asked
/// of the metrics port is a wrong port, not a missing route.
pub fn metrics_router(state: AppState, token: Option<Arc<str>>, api: SocketAddr) -> Router {
    metrics_router_stateless(token, api).with_state(Arc::new(state))
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

async fn authorize(State(token): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let why = match given {
        None => {
            "this server needs a token: send `Authorization: Bearer <token>` (beaver's commands read --token or BEAVER_TOKEN)"
        }
        Some(given) if !same_secret(given.as_bytes(), token.as_bytes()) => {
            "the token sent is not this server's: check --token or BEAVER_TOKEN on both sides"
        }
        Some(_) => return next.run(req).await,
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why).into_response()
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's
/// name is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {method} {}; the API is under /v1 (see the README's HTTP API section)",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}", uri.path()),
    )
}

/// Reads a body within the size and time limits.
async fn read_body(body: Body, limits: &HttpLimits) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than {} bytes; send fewer jobs per request",
                limits.body_bytes_max
            ),
        )
    };
    let read = axum::body::to_bytes(body, limits.body_bytes_max);
    match tokio::time::timeout(Duration::from_millis(limits.body_timeout_ms), read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body took longer than {} ms to arrive",
                limits.body_timeout_ms
            ),
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = s.source();
            }
            if e.to_string().contains("length limit") {
                return Err(too_large());
            }
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the body could not be read: {e}"),
            ))
        }
    }
}

/// `POST /v1/jobs`: all or nothing; answered once every job is durable.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body(
        description = "One job object or a non-empty array of them, or, with `Content-Type: application/x-ndjson`, one job object per line (blank lines skipped). Any other content type, or none, is read as JSON (so `curl -d` works as is)",
        content(
            (crate::openapi::EnqueueBody = "application/json"),
            (crate::openapi::NdjsonBody = "application/x-ndjson"),
            (crate::openapi::EnqueueBody = "*/*"),
        ),
    ),
    responses(
        (status = 200, description = "Every job is durable (fdatasync'd); a known id adds nothing and says `duplicate`", body = EnqueuedDoc),
        (status = 400, description = "`invalid`: malformed JSON, a wrong type, an unknown field, a bad id or queue, a value out of the server's limits; `index` is the job's position, `field` the offending field; nothing was applied", body = ErrorDoc),
        (status = 408, description = "`timeout`: the body took longer than `http.body_timeout_ms` to arrive", body = ErrorDoc),
        (status = 413, description = "`too_large`: the body, a payload or the batch is over a limit; nothing was applied", body = ErrorDoc),
    ),
)]
async fn enqueue(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    match enqueue_inner(&app, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn enqueue_inner(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > app.limits.body_bytes_max as u64 {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is {len} bytes; the limit is {} bytes; send fewer jobs per request",
                    app.limits.body_bytes_max
                ),
            ));
        }
    }
    let bytes = read_body(body, &app.limits).await?;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let specs = if ndjson {
        parse_ndjson(&bytes)?
    } else {
        parse_body(&bytes)?
    };
    let done = app.client.enqueue(specs).await?;
    let doc = EnqueuedDoc {
        jobs: done
            .into_iter()
            .map(|e| EnqueuedJob {
                id: e.id.to_string(),
                duplicate: e.duplicate,
            })
            .collect(),
    };
    Ok(json(StatusCode::OK, &doc))
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    JobId::parse(id).map_err(|reason| {
        ApiError::from(BadJob {
            index: None,
            field: "id".into(),
            reason,
        })
    })
}

/// `GET /v1/jobs/{id}`: the job, with its payload while it holds one.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job", body = JobDoc),
        (status = 400, description = "`invalid`: the id is not a valid job id (`field` is `id`)", body = ErrorDoc),
        (status = 404, description = "`not_found`: no such job (never known, or purged)", body = ErrorDoc),
    ),
)]
async fn get_job(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    match app.client.get(id.clone()).await? {
        Some(j) => Ok(json(StatusCode::OK, &JobDoc::new(&j, true))),
        None => Err(Rejection::NotFound { id }.into()),
    }
}

/// The answer to a requeue.
#[derive(Serialize, ToSchema)]
struct Requeued {
    /// How many dead jobs now run again with fresh attempts.
    requeued: u64,
}

/// `POST /v1/jobs/{id}/requeue`: a dead job runs again with fresh attempts.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/requeue",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job is pending again (`requeued` is 1)", body = Requeued),
        (status = 400, description = "`invalid`: the id is not a valid job id", body = ErrorDoc),
        (status = 404, description = "`not_found`: no such job", body = ErrorDoc),
        (status = 409, description = "`conflict`: the job is not dead", body = ErrorDoc),
    ),
)]
async fn requeue_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let n = app.client.requeue(RequeueTarget::One(id)).await?;
    Ok(json(StatusCode::OK, &Requeued { requeued: n }))
}

/// `POST /v1/dead/requeue`: every dead job runs again.
#[utoipa::path(
    post,
    path = "/v1/dead/requeue",
    tag = "dead",
    responses((status = 200, description = "How many dead jobs were requeued (0 when none)", body = Requeued)),
)]
async fn requeue_all(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let n = app.client.requeue(RequeueTarget::AllDead).await?;
    Ok(json(StatusCode::OK, &Requeued { requeued: n }))
}

/// The answer to a cancel.
#[derive(Serialize, ToSchema)]
struct Cancelled {
    /// The job.
    id: String,
    /// Always `cancelled`.
    #[schema(pattern = "^cancelled$")]
    state: &'static str,
}

/// `POST /v1/jobs/{id}/cancel`: a pending job (or one handed out but still
/// waiting for a free worker) never runs; a retried cancel succeeds.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(crate::openapi::JobIdParam),
    responses(
        (status = 200, description = "The job is cancelled (also when it already was)", body = Cancelled),
        (status = 400, description = "`invalid`: the id is not a valid job id", body = ErrorDoc),
        (status = 404, description = "`not_found`: no such job", body = ErrorDoc),
        (status = 409, description = "`conflict`: the job is running, completed or dead", body = ErrorDoc),
    ),
)]
async fn cancel(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut id = job_id(&id)?;
    // The engine finds a job by number too; the answer names its id.
    if id.number().is_some() {
        if let Some(job) = app.client.get(id.clone()).await? {
            id = job.id;
        }
    }
    app.client.cancel(id.clone()).await?;
    Ok(json(
        StatusCode::OK,
        &Cancelled {
            id: id.to_string(),
            state: "cancelled",
        },
    ))
}

/// The answer to a ping.
#[derive(Serialize, ToSchema)]
struct Pong {
    /// Always true.
    ok: bool,
}

/// `GET /v1/ping`: answers at once, touching neither the engine nor the
/// disk: the HTTP floor the benchmark compares every other route with, and
/// a liveness probe.
#[utoipa::path(
    get,
    path = "/v1/ping",
    tag = "server",
    responses((status = 200, description = "The server is up (`{\"ok\": true}`)", body = Pong)),
)]
async fn ping() -> Response {
    json(StatusCode::OK, &Pong { ok: true })
}

/// The answer to a snapshot request.
#[derive(Serialize, ToSchema)]
struct SnapshotStarted {
    /// The LSN the compaction's snapshots will cover at least;
    /// `snapshot.lsn` of `/v1/status` reaches or passes it once they are
    /// written.
    lsn: u64,
}

/// `POST /v1/admin/snapshot`: starts a compaction (a checkpoint and a
/// snapshot at it, twice if that frees more of the log; see
/// `Client::snapshot`) and answers with the durable LSN it will cover; it
/// is written in the background (`snapshot.lsn` of `/v1/status` passes
/// `lsn` once it is).
#[utoipa::path(
    post,
    path = "/v1/admin/snapshot",
    tag = "server",
    responses((status = 200, description = "The compaction started; its snapshots are written in the background", body = SnapshotStarted)),
)]
async fn snapshot(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let lsn = app.client.snapshot().await?;
    Ok(json(StatusCode::OK, &SnapshotStarted { lsn }))
}

/// The live status document.
pub async fn status_doc(app: &AppState) -> Result<StatusDoc, Rejection> {
    let st = app.client.status().await?;
    let written = crate::offline::newest_snapshot_written_at_ms(&app.snapshot_dir);
    Ok(StatusDoc::from_engine(&st, &app.recovery, written))
}

/// `GET /v1/status`: what `beaver status --json` prints.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "server",
    responses((status = 200, description = "The live status document", body = StatusDoc)),
)]
async fn status(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &status_doc(&app).await?))
}

/// Dead jobs, newest first.
#[derive(Serialize, ToSchema)]
struct DeadList {
    /// At most `limit`; each with `payload` `null` (the job keeps it).
    jobs: Vec<JobDoc>,
}

/// `GET /v1/dead?limit=N`: dead jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/dead",
    tag = "dead",
    params(crate::openapi::DeadQuery),
    responses(
        (status = 200, description = "Dead jobs, newest first", body = DeadList),
        (status = 400, description = "`invalid`: `limit` is not a whole number from 1 to 1000, or a parameter other than `limit` was given (`field` names it)", body = ErrorDoc),
    ),
)]
async fn list_dead(
    State(app): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut limit = 100;
    for pair in q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |reason: String| {
            ApiError::from(BadJob {
                index: None,
                field: k.into(),
                reason,
            })
        };
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=DEAD_LIST_MAX).contains(n))
                    .ok_or_else(|| {
                        bad(format!("must be a whole number from 1 to {DEAD_LIST_MAX}"))
                    })?;
            }
            _ => return Err(bad("unknown parameter; the only one is `limit`".into())),
        }
    }
    let dead = app.client.list_dead(limit).await?;
    let doc = DeadList {
        jobs: dead.iter().map(|j| JobDoc::new(j, false)).collect(),
    };
    Ok(json(StatusCode::OK, &doc))
}

/// `GET /metrics` on the metrics listener.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Prometheus metrics (text exposition format 0.0.4). Served on the metrics listener (`--metrics-listen`), not the API's", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
async fn metrics(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let st = app.client.status().await?;
    let text = app.metrics.render(&st);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// A TCP listener that holds at most `max` connections open: past it, a new
/// connection is answered `503` with `Retry-After` and closed. A connection
/// that moves no byte either way for between `idle` and twice `idle` is
/// closed, so idle keep-alive connections cannot hold every permit.
pub struct LimitedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl LimitedListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener, max: usize, idle: Duration) -> LimitedListener {
        LimitedListener {
            listener,
            permits: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

/// A connection holding its permit.
pub struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: IdleTimer,
}

/// Watches a connection for idleness without reading the clock per byte:
/// each read or write only marks the connection as moved; when the timer
/// fires, a connection that moved is given another period.
struct IdleTimer {
    period: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    moved: bool,
}

impl IdleTimer {
    fn new(period: Duration) -> IdleTimer {
        IdleTimer {
            period,
            timer: Box::pin(tokio::time::sleep(period)),
            moved: false,
        }
    }

    /// True once a whole period passed without a byte moving.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            if !self.moved {
                return true;
            }
            self.moved = false;
            let next = tokio::time::Instant::now() + self.period;
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.idle.moved = true;
                Poll::Ready(r)
            }
            // Idle too long: the end of the stream, which closes it.
            Poll::Pending if this.idle.expired(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.idle.moved = true;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.idle.moved = true;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The answer to a connection past the limit (it is then closed).
fn too_many_connections() -> Vec<u8> {
    let body = "{\"error\":{\"kind\":\"busy\",\"message\":\"too many open connections; retry shortly\",\"index\":null,\"field\":null,\"retry_after_ms\":1000}}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Limited, SocketAddr) {
        {
            loop {
                let (stream, addr) = match self.listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        crate::listening::pause_after_accept_error(&e).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        return (
                            Limited {
                                stream,
                                _permit: permit,
                                idle: IdleTimer::new(self.idle),
                            },
                            addr,
                        );
                    }
                    Err(_) => {
                        tokio::spawn(async move {
                            let mut stream = stream;
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                let _ = stream.write_all(&too_many_connections()).await;
                                let _ = stream.shutdown().await;
                            })
                            .await;
                        });
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_case() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER  t0k"] {
            assert_eq!(bearer_token(v), Some("t0k"), "{v}");
        }
        for v in ["Basic t0k", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }

    #[test]
    fn the_canned_503_is_valid_json() {
        let bytes = too_many_connections();
        let text = String::from_utf8(bytes).unwrap_or_default();
        let (_, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
        assert!(serde_json::from_str::<ErrorDoc>(body).is_ok(), "{body}");
    }
}
