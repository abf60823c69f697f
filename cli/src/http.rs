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
use axum::routing::{get, post};
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

mod body;
mod leases;
mod queues;

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

/// The API router.
pub fn api_router(state: AppState, token: Option<Arc<str>>) -> Router {
    Router::new()
        .route("/v1/jobs", post(enqueue))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/requeue", post(requeue_one))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/status", get(status))
        .route("/v1/dead", get(list_dead))
        .route("/v1/dead/requeue", post(requeue_all))
        .route("/v1/ping", get(ping))
        .route("/v1/admin/snapshot", post(snapshot))
        .route("/v1/leases", post(leases::lease).get(leases::list))
        .route("/v1/leases/heartbeat", post(leases::heartbeat_batch))
        .route("/v1/leases/complete", post(leases::complete_batch))
        .route("/v1/leases/fail", post(leases::fail_batch))
        .route("/v1/leases/{lease_id}/heartbeat", post(leases::heartbeat))
        .route("/v1/leases/{lease_id}/complete", post(leases::complete))
        .route("/v1/leases/{lease_id}/fail", post(leases::fail))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/queues/{name}/purge", post(queues::purge))
        .route("/v1/queues/{name}/jobs", get(queues::jobs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, authorize))
        .with_state(Arc::new(state))
}

/// The metrics router (`GET /metrics`). Any other path is answered 404
/// with a message pointing at the API's address `api`: `/v1/status` asked
/// of the metrics port is a wrong port, not a missing route.
pub fn metrics_router(state: AppState, token: Option<Arc<str>>, api: SocketAddr) -> Router {
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
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(elsewhere)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(token, authorize))
        .with_state(Arc::new(state))
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

#[derive(Serialize)]
struct Requeued {
    requeued: u64,
}

async fn requeue_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let n = app.client.requeue(RequeueTarget::One(id)).await?;
    Ok(json(StatusCode::OK, &Requeued { requeued: n }))
}

async fn requeue_all(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let n = app.client.requeue(RequeueTarget::AllDead).await?;
    Ok(json(StatusCode::OK, &Requeued { requeued: n }))
}

#[derive(Serialize)]
struct Cancelled {
    id: String,
    state: &'static str,
}

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

/// `GET /v1/ping`: answers at once, touching neither the engine nor the
/// disk: the HTTP floor the benchmark compares every other route with, and
/// a liveness probe.
async fn ping() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        "{\"ok\":true}\n",
    )
        .into_response()
}

#[derive(Serialize)]
struct SnapshotStarted {
    lsn: u64,
}

/// `POST /v1/admin/snapshot`: starts a snapshot of the durable state (built
/// off the core's task) and answers with the LSN it will cover; it is
/// written in the background (`snapshot.lsn` of `/v1/status` reaches `lsn`
/// once it is).
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

async fn status(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &status_doc(&app).await?))
}

#[derive(Serialize)]
struct DeadList {
    jobs: Vec<JobDoc>,
}

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
                        // Per-connection errors (reset before accept) are
                        // harmless; others (EMFILE) need a pause.
                        if !matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                        ) {
                            tracing::warn!(error = %e, "accept failed; pausing for a second");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
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
