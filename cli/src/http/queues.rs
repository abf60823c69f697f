//! Queue controls and listings: pause, resume, purge, a queue's jobs by
//! state, every queue's figures. Pause and purge are answered once their
//! record is durable; listings read the durable state.
//!
//! A queue that holds no job and is not paused is unknown here: listing
//! or purging it is 404 `not_found` (a misspelt name should not look like
//! an empty queue), while pausing it is allowed (a queue may be paused
//! before its first job).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use beaver_core::protocol::LIST_JOBS_MAX;
use beaver_core::{JobState, QueueName, QueueStatus};
use beaver_runtime::QueuePause;

use super::body::{Fields, invalid};
use super::{ApiError, AppState, json, read_body};
use crate::schema::{
    ErrorDoc, JobDoc, JobListDoc, QueueDoc, QueueListDoc, QueuePauseDoc, QueuePurgedDoc,
    SCHEMA_VERSION,
};

/// The fields of a pause's body.
pub(crate) const PAUSE_FIELDS: [&str; 1] = ["for_ms"];

/// The default `limit` of a job listing.
const LIST_JOBS_DEFAULT: usize = 100;

fn queue_name(name: &str) -> Result<QueueName, ApiError> {
    QueueName::parse(name).map_err(|reason| invalid(None, "queue", reason))
}

/// The figures of queue `name`, if it holds jobs or is paused.
async fn find(app: &AppState, name: &QueueName) -> Result<Option<QueueStatus>, ApiError> {
    let st = app.client.status().await?;
    Ok(st.queue.queues.into_iter().find(|q| &q.name == name))
}

/// [`find`], or 404.
async fn known(app: &AppState, name: &QueueName) -> Result<QueueStatus, ApiError> {
    find(app, name).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no queue \"{name}\" holds jobs or is paused; GET /v1/queues lists those that do"
            ),
        )
    })
}

/// `GET /v1/queues`: every queue that holds jobs or is paused, by name.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    responses(
        (status = 200, description = "Every queue that holds jobs or is paused, by name", body = QueueListDoc),
    ),
)]
pub(super) async fn list(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let st = app.client.status().await?;
    let doc = QueueListDoc {
        schema_version: SCHEMA_VERSION,
        queues: st.queue.queues.iter().map(QueueDoc::from).collect(),
    };
    Ok(json(StatusCode::OK, &doc))
}

async fn pause_answer(app: &AppState, queue: &QueueName) -> Result<Response, ApiError> {
    let doc = QueueDoc::from(&find(app, queue).await?.unwrap_or(QueueStatus {
        name: queue.clone(),
        pending: 0,
        ready: 0,
        scheduled: 0,
        in_flight: 0,
        completed: 0,
        dead: 0,
        cancelled: 0,
        paused_until: None,
    }));
    let doc = QueuePauseDoc {
        schema_version: SCHEMA_VERSION,
        queue: doc.name,
        paused: doc.paused,
        paused_until_ms: doc.paused_until_ms,
    };
    Ok(json(StatusCode::OK, &doc))
}

/// `POST /v1/queues/{name}/pause`: the queue hands out nothing, until
/// resumed or for `for_ms`; durable.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/pause",
    tag = "queues",
    params(crate::openapi::workers::QueueNameParam),
    request_body(content = Option<crate::openapi::workers::PauseRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "The queue is paused, durably (a queue may be paused before its first job)", body = QueuePauseDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn pause(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let queue = queue_name(&name)?;
    let bytes = read_body(body, &app.limits).await?;
    let f = Fields::parse(&bytes, &PAUSE_FIELDS)?;
    let pause = match f.u64_in("for_ms", 1..=app.queue_limits.delay_ms_max)? {
        Some(ms) => QueuePause::ForMs(ms),
        None => QueuePause::UntilResumed,
    };
    app.client.pause_queue(queue.clone(), pause).await?;
    pause_answer(&app, &queue).await
}

/// `POST /v1/queues/{name}/resume`: the queue hands out jobs again; durable.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/resume",
    tag = "queues",
    params(crate::openapi::workers::QueueNameParam),
    request_body(content = Option<crate::openapi::workers::EmptyRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "The queue hands out jobs again, durably", body = QueuePauseDoc),
        crate::openapi::workers::BodyRefusals,
    ),
)]
pub(super) async fn resume(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let queue = queue_name(&name)?;
    let bytes = read_body(body, &app.limits).await?;
    Fields::parse(&bytes, &[])?;
    app.client
        .pause_queue(queue.clone(), QueuePause::Resume)
        .await?;
    pause_answer(&app, &queue).await
}

/// `POST /v1/queues/{name}/purge`: every pending job of the queue is
/// cancelled; durable.
#[utoipa::path(
    post,
    path = "/v1/queues/{name}/purge",
    tag = "queues",
    params(crate::openapi::workers::QueueNameParam),
    request_body(content = Option<crate::openapi::workers::EmptyRequest>, description = "May be left out"),
    responses(
        (status = 200, description = "Every pending job of the queue is cancelled, durably", body = QueuePurgedDoc),
        crate::openapi::workers::BodyRefusals,
        (status = 404, description = "`not_found`: no queue of that name holds jobs or is paused", body = ErrorDoc),
    ),
)]
pub(super) async fn purge(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let queue = queue_name(&name)?;
    let bytes = read_body(body, &app.limits).await?;
    Fields::parse(&bytes, &[])?;
    known(&app, &queue).await?;
    let cancelled = app.client.purge_queue(queue.clone()).await?;
    let doc = QueuePurgedDoc {
        schema_version: SCHEMA_VERSION,
        queue: queue.to_string(),
        cancelled,
    };
    Ok(json(StatusCode::OK, &doc))
}

/// What a job listing asks.
struct ListQuery {
    state: Option<JobState>,
    after: Option<u64>,
    limit: usize,
}

fn job_state(text: &str) -> Option<JobState> {
    [
        JobState::Pending,
        JobState::InFlight,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
}

fn parse_list_query(q: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut out = ListQuery {
        state: None,
        after: None,
        limit: LIST_JOBS_DEFAULT,
    };
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "state" => {
                out.state = Some(job_state(v).ok_or_else(|| {
                    invalid(
                        None,
                        "state",
                        "must be pending, in_flight, completed, dead or cancelled",
                    )
                })?);
            }
            "after" => {
                out.after = Some(v.parse::<u64>().map_err(|_| {
                    invalid(None, "after", "must be a job number: a page's `next`")
                })?);
            }
            "limit" => {
                out.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=LIST_JOBS_MAX).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            None,
                            "limit",
                            format!("must be a whole number from 1 to {LIST_JOBS_MAX}"),
                        )
                    })?;
            }
            _ => {
                return Err(invalid(
                    None,
                    k,
                    "unknown parameter; they are state, after and limit",
                ));
            }
        }
    }
    Ok(out)
}

/// `GET /v1/queues/{name}/jobs?state=S&after=N&limit=M`: one page of the
/// queue's jobs in order of their numbers, without payloads.
#[utoipa::path(
    get,
    path = "/v1/queues/{name}/jobs",
    tag = "queues",
    params(crate::openapi::workers::QueueNameParam, crate::openapi::workers::JobsQuery),
    responses(
        (status = 200, description = "One page of the queue's jobs, in order of their numbers, without payloads", body = JobListDoc),
        (status = 400, description = "`invalid`: a bad queue name or query parameter (`field` names it)", body = ErrorDoc),
        (status = 404, description = "`not_found`: no queue of that name holds jobs or is paused", body = ErrorDoc),
    ),
)]
pub(super) async fn jobs(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let queue = queue_name(&name)?;
    let ask = parse_list_query(q.as_deref())?;
    known(&app, &queue).await?;
    let page = app
        .client
        .list_jobs(Some(queue), ask.state, ask.after, ask.limit)
        .await?;
    let doc = JobListDoc {
        schema_version: SCHEMA_VERSION,
        jobs: page.jobs.iter().map(|j| JobDoc::new(j, false)).collect(),
        next: page.next,
    };
    Ok(json(StatusCode::OK, &doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_name_the_bad_parameter() {
        let ok = parse_list_query(Some("state=in_flight&after=7&limit=1000"));
        let ok = ok.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.state, Some(JobState::InFlight));
        assert_eq!((ok.after, ok.limit), (Some(7), 1000));
        for (q, field) in [
            ("state=running", "state"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("after=-1", "after"),
            ("colour=red", "colour"),
        ] {
            let e = parse_list_query(Some(q)).err();
            let got = e.and_then(|e| e.body.field);
            assert_eq!(got.as_deref(), Some(field), "{q}");
        }
    }
}
