//! The client commands: `enqueue`, `status`, `job`, `requeue`, `cancel`.
//!
//! Each talks to a server over HTTP (or, for `status --data-dir`, reads a
//! stopped server's files) and prints human output, or the published JSON
//! with `--json`. Errors say what is wrong and what to do.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use beaver_core::JobSpec;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::value::RawValue;

use crate::client::{ClientError, Response, Server};
use crate::human;
use crate::parse::{BadJob, job_json, parse_job};
use crate::schema::{EnqueuedDoc, EnqueuedJob, JobDoc, StatusDoc};
use crate::settings::parse_duration_ms;

/// A command's failure: the message printed and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong and what to do.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let message = match e {
            ClientError::Unreachable(m) => format!(
                "{m}. Is it running? Start one with `beaver run`, or point --server (BEAVER_SERVER) at it"
            ),
            other => other.to_string(),
        };
        Failure::new(message)
    }
}

/// Percent-encodes a job id for a URL path.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn expect_ok(resp: Response, what: &str) -> Result<Response, Failure> {
    if resp.status == 200 {
        Ok(resp)
    } else {
        Err(Failure::new(format!(
            "{what}: the server answered {}: {}",
            resp.status,
            resp.error_message()
        )))
    }
}

/// The server's JSON, re-indented for reading (kept whole, unknown fields too).
fn pass_through(resp: &Response) -> Result<serde_json::Value, Failure> {
    serde_json::from_slice(&resp.body)
        .map_err(|e| Failure::new(format!("the server's answer is not JSON: {e}")))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure::new(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Options of `beaver enqueue` other than the server.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// `--file`: a path or `-` for stdin.
    pub file: Option<PathBuf>,
    /// `--payload`.
    pub payload: Option<String>,
    /// `--id` (only with `--payload`).
    pub id: Option<String>,
    /// `--queue`.
    pub queue: Option<String>,
    /// `--max-attempts`.
    pub max_attempts: Option<u32>,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// `--delay`.
    pub delay: Option<String>,
    /// `--priority`.
    pub priority: Option<i32>,
    /// `--batch`: jobs per request (at least 1).
    pub batch: usize,
    /// `--json`.
    pub json: bool,
}

/// One job to send and where it came from (1-based line).
struct Item {
    line: usize,
    spec: JobSpec,
}

fn line_of(text: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn at_line(line: usize, e: BadJob) -> Failure {
    Failure::new(format!(
        "line {line}: field `{}`: {}; nothing was enqueued",
        e.field, e.reason
    ))
}

/// Reads and validates every job before anything is sent.
fn read_jobs(o: &EnqueueOptions) -> Result<Vec<Item>, Failure> {
    let defaults = |mut s: JobSpec| -> Result<JobSpec, Failure> {
        if s.queue.is_none() {
            if let Some(q) = &o.queue {
                s.queue = Some(
                    beaver_core::QueueName::parse(q)
                        .map_err(|e| Failure::new(format!("--queue: {e}")))?,
                );
            }
        }
        if s.max_attempts.is_none() {
            s.max_attempts = o.max_attempts;
        }
        if s.timeout_ms.is_none() {
            if let Some(t) = &o.timeout {
                s.timeout_ms = Some(
                    parse_duration_ms(t).map_err(|e| Failure::new(format!("--timeout: {e}")))?,
                );
            }
        }
        if s.delay_ms == 0 {
            if let Some(d) = &o.delay {
                s.delay_ms =
                    parse_duration_ms(d).map_err(|e| Failure::new(format!("--delay: {e}")))?;
            }
        }
        if s.priority == 0 {
            s.priority = o.priority.unwrap_or(0);
        }
        Ok(s)
    };
    match (&o.payload, &o.file) {
        (Some(_), Some(_)) => Err(Failure::new("give either --payload or --file, not both")),
        (None, None) => Err(Failure::new(
            "nothing to enqueue: give --payload JSON, or --file FILE (a JSON array or one job object per line; - reads stdin)",
        )),
        (Some(p), None) => {
            let payload = beaver_core::Payload::from_json(p.as_bytes())
                .map_err(|e| Failure::new(format!("--payload: {e}")))?;
            let mut spec = JobSpec::new(payload);
            if let Some(id) = &o.id {
                spec.id = Some(
                    beaver_core::JobId::from_client(id)
                        .map_err(|e| Failure::new(format!("--id: {e}")))?,
                );
            }
            Ok(vec![Item {
                line: 1,
                spec: defaults(spec)?,
            }])
        }
        (None, Some(path)) => {
            if o.id.is_some() {
                return Err(Failure::new(
                    "--id names one job; with --file give each job an \"id\" field instead",
                ));
            }
            let mut bytes = Vec::new();
            let read = if path == Path::new("-") {
                std::io::stdin().lock().read_to_end(&mut bytes)
            } else {
                std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
            };
            read.map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|e| Failure::new(format!("{} is not UTF-8 text: {e}", path.display())))?;
            let mut items = Vec::new();
            if text.trim_start().starts_with('[') {
                let all: Vec<&RawValue> = serde_json::from_str(&text).map_err(|e| {
                    Failure::new(format!(
                        "line {}: the file is not a valid JSON array ({e}); nothing was enqueued",
                        e.line()
                    ))
                })?;
                for (i, raw) in all.iter().enumerate() {
                    let line = line_of(&text, raw.get());
                    let spec = parse_job(raw.get(), i).map_err(|e| at_line(line, e))?;
                    items.push(Item {
                        line,
                        spec: defaults(spec)?,
                    });
                }
            } else {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let raw: &RawValue = serde_json::from_str(line).map_err(|e| {
                        Failure::new(format!(
                            "line {}: not valid JSON ({e}); each line must hold one job object; nothing was enqueued",
                            n + 1
                        ))
                    })?;
                    let spec = parse_job(raw.get(), items.len()).map_err(|e| at_line(n + 1, e))?;
                    items.push(Item {
                        line: n + 1,
                        spec: defaults(spec)?,
                    });
                }
            }
            if items.is_empty() {
                return Err(Failure::new(format!("{} holds no job", path.display())));
            }
            Ok(items)
        }
    }
}

/// The most bytes of job JSON sent in one request.
const BATCH_BYTES_MAX: usize = 4 << 20;

/// `beaver enqueue`.
pub fn enqueue(server: &Server, o: &EnqueueOptions) -> Result<(), Failure> {
    let items = read_jobs(o)?;
    let mut per_batch = o.batch.max(1);
    let mut bytes_max = BATCH_BYTES_MAX;
    let bar = if items.len() > per_batch && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(items.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} jobs {per_sec} eta {eta}")
        {
            b.set_style(style);
        }
        b
    } else {
        ProgressBar::hidden()
    };
    let mut answers: Vec<EnqueuedJob> = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        // One batch: up to `per_batch` jobs and BATCH_BYTES_MAX bytes.
        let mut body = vec![b'['];
        let mut end = start;
        while end < items.len() && end - start < per_batch {
            let mut one = Vec::new();
            job_json(&items[end].spec, &mut one);
            if end > start && body.len() + one.len() > bytes_max {
                break;
            }
            if end > start {
                body.push(b',');
            }
            body.extend_from_slice(&one);
            end += 1;
        }
        body.push(b']');
        let batch = &items[start..end];
        let lines = format!("lines {}-{}", batch[0].line, batch[batch.len() - 1].line);
        let done_before = answers.len();
        let progress = |f: Failure| Failure {
            message: if done_before == 0 {
                f.message
            } else {
                format!(
                    "{}; the {} before {lines} {} enqueued",
                    f.message,
                    human::count(done_before as u64, "job"),
                    if done_before == 1 { "was" } else { "were" }
                )
            },
            code: f.code,
        };
        let resp = send_batch(
            server,
            &body,
            batch.iter().all(|i| i.spec.id.is_some()),
            &lines,
        )
        .map_err(progress)?;
        if splits_on(&resp) && batch.len() > 1 {
            // Too large as a whole, no single job at fault: send it in
            // halves (and smaller requests from here on).
            per_batch = batch.len() / 2;
            bytes_max = (body.len() / 2).max(1);
            tracing::debug!(
                per_batch,
                bytes_max,
                "{lines}: too large for the server; splitting"
            );
            continue;
        }
        if resp.status != 200 {
            let msg = match serde_json::from_slice::<crate::schema::ErrorDoc>(&resp.body) {
                Ok(d) => match d.error.index.and_then(|i| batch.get(i)) {
                    Some(item) => format!(
                        "line {}: {} (the server answered {}); nothing of {lines} was enqueued",
                        item.line, d.error.message, resp.status
                    ),
                    None => format!(
                        "{lines}: {} (the server answered {}); nothing of them was enqueued",
                        d.error.message, resp.status
                    ),
                },
                Err(_) => format!(
                    "{lines}: the server answered {}: {}",
                    resp.status,
                    resp.text().trim()
                ),
            };
            return Err(progress(Failure::new(msg)));
        }
        let doc: EnqueuedDoc = serde_json::from_slice(&resp.body).map_err(|e| {
            progress(Failure::new(format!(
                "{lines}: the server's answer is not understood: {e}"
            )))
        })?;
        if !o.json {
            bar.suspend(|| {
                for j in &doc.jobs {
                    if j.duplicate {
                        println!("{} (duplicate: already known, nothing added)", j.id);
                    } else {
                        println!("{}", j.id);
                    }
                }
            });
        }
        bar.inc(doc.jobs.len() as u64);
        answers.extend(doc.jobs);
        start = end;
    }
    bar.finish_and_clear();
    let dups = answers.iter().filter(|j| j.duplicate).count();
    if o.json {
        print_json(&EnqueuedDoc { jobs: answers })?;
    } else {
        eprintln!(
            "enqueued {} job{} ({dups} duplicate{})",
            answers.len() - dups,
            if answers.len() - dups == 1 { "" } else { "s" },
            if dups == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Whether a refused request would pass in smaller pieces: a 413 that
/// names no job (the body, the batch or its log record is too large).
fn splits_on(resp: &Response) -> bool {
    resp.status == 413
        && serde_json::from_slice::<crate::schema::ErrorDoc>(&resp.body)
            .map_or(true, |d| d.error.index.is_none())
}

/// Sends one batch, retrying while the server says it is busy, and after a
/// lost connection when every job has an id (so a retry cannot add twice).
fn send_batch(
    server: &Server,
    body: &[u8],
    idempotent: bool,
    lines: &str,
) -> Result<Response, Failure> {
    let mut tries = 0u32;
    loop {
        tries += 1;
        match server.post_json("/v1/jobs", body) {
            Ok(r) if r.status == 503 && tries < 60 => {
                let secs: u64 = r
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                std::thread::sleep(Duration::from_secs(secs.clamp(1, 10)));
            }
            Ok(r) => return Ok(r),
            Err(ClientError::Lost(m)) if idempotent && tries < 5 => {
                tracing::warn!(
                    "{m}; retrying {lines} (every job has an id, so this cannot add twice)"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(ClientError::Lost(m)) => {
                return Err(Failure::new(format!(
                    "{m}: {lines} may or may not have been enqueued; check with `beaver status`, and give jobs ids so that sending again is safe"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `beaver status` against a server.
pub fn status(server: &Server, json: bool) -> Result<(), Failure> {
    let resp = server.get("/v1/status").map_err(|e| match e {
        ClientError::Unreachable(m) => Failure::new(format!(
            "{m}. Is it running? To read a stopped server's files instead: beaver status --data-dir ./beaver-data"
        )),
        other => other.into(),
    })?;
    let resp = expect_ok(resp, "status")?;
    let doc: StatusDoc = serde_json::from_slice(&resp.body)
        .map_err(|e| Failure::new(format!("the server's status is not understood: {e}")))?;
    if json {
        return print_json(&doc);
    }
    print!("{}", human::status(&doc, &server.url));
    Ok(())
}

/// `beaver status --data-dir DIR`.
pub fn status_offline(dir: &Path, json: bool) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start: {e}")))?;
    let doc = rt
        .block_on(crate::offline::inspect_data_dir(
            dir,
            beaver_core::Config::default(),
        ))
        .map_err(|e| Failure::new(e.to_string()))?;
    if json {
        print_json(&doc)?;
    } else {
        print!("{}", human::status(&doc, ""));
    }
    match &doc.data_dir {
        Some(d) if !d.would_start => Err(Failure {
            message: "a restart would refuse to start: see the problems above".into(),
            code: 3,
        }),
        _ => Ok(()),
    }
}

/// `beaver job ID`.
pub fn job(server: &Server, id: &str, json: bool) -> Result<(), Failure> {
    let resp = server.get(&format!("/v1/jobs/{}", path_segment(id)))?;
    if resp.status == 404 {
        return Err(Failure::new(format!(
            "no job with id {id:?} (never enqueued, or purged by retention)"
        )));
    }
    let resp = expect_ok(resp, "job")?;
    let doc: JobDoc = serde_json::from_slice(&resp.body)
        .map_err(|e| Failure::new(format!("the server's answer is not understood: {e}")))?;
    if json {
        return print_json(&doc);
    }
    print!("{}", human::job(&doc));
    Ok(())
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Requeued {
    requeued: u64,
}

/// `beaver requeue ID` / `beaver requeue --all-dead`.
pub fn requeue(server: &Server, id: Option<&str>, json: bool) -> Result<(), Failure> {
    let path = match id {
        Some(id) => format!("/v1/jobs/{}/requeue", path_segment(id)),
        None => "/v1/dead/requeue".into(),
    };
    let resp = expect_ok(server.post_json(&path, b"")?, "requeue")?;
    let r: Requeued = serde_json::from_slice(&resp.body)
        .map_err(|e| Failure::new(format!("the server's answer is not understood: {e}")))?;
    if json {
        print_json(&r)
    } else {
        println!(
            "requeued {} job{}",
            r.requeued,
            if r.requeued == 1 { "" } else { "s" }
        );
        Ok(())
    }
}

/// `beaver cancel ID`.
pub fn cancel(server: &Server, id: &str, json: bool) -> Result<(), Failure> {
    let resp = expect_ok(
        server.post_json(&format!("/v1/jobs/{}/cancel", path_segment(id)), b"")?,
        "cancel",
    )?;
    if json {
        print_json(&pass_through(&resp)?)
    } else {
        println!("cancelled {id}");
        Ok(())
    }
}
