//! Parsing enqueue requests: JSON job objects into [`JobSpec`]s.
//!
//! Shared by the HTTP API and `beaver enqueue`, so both accept exactly the
//! same input and name the same field when something is wrong. Payloads are
//! kept as raw JSON: they are validated but never parsed into a tree.

use beaver_core::{JobId, JobSpec, Payload, QueueName};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a request body or one job in it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadJob {
    /// The job's index in the batch (`None`: the body as a whole).
    pub index: Option<usize>,
    /// The offending field (`body` or `job` when it is not one field's fault).
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl std::fmt::Display for BadJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "job {i}: field `{}`: {}", self.field, self.reason),
            None => write!(f, "`{}`: {}", self.field, self.reason),
        }
    }
}

/// One job object as sent: every field kept raw so that a wrong type is
/// reported against its field by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobIn<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    queue: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(borrow, default)]
    max_attempts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timeout_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delay_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
}

/// The fields a job object may have, for error messages.
pub const JOB_FIELDS: &str = "id, queue, payload, max_attempts, timeout_ms, delay_ms, priority";

/// Parses a body holding one job object or an array of them.
pub fn parse_body(body: &[u8]) -> Result<Vec<JobSpec>, BadJob> {
    let whole = |reason: String| BadJob {
        index: None,
        field: "body".into(),
        reason,
    };
    let text = std::str::from_utf8(body)
        .map_err(|e| whole(format!("the body is not UTF-8 ({e}); send JSON")))?;
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)
                .map_err(|e| whole(format!("the body is not valid JSON: {e}")))?;
            if items.is_empty() {
                return Err(whole("the array is empty; send at least one job".into()));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, raw)| parse_job(raw.get(), i))
                .collect()
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_str(text)
                .map_err(|e| whole(format!("the body is not valid JSON: {e}")))?;
            Ok(vec![parse_job(raw.get(), 0)?])
        }
        Some(_) => Err(whole(
            "the body must be a job object or an array of job objects, such as {\"payload\": {\"x\": 1}}"
                .into(),
        )),
        None => Err(whole(
            "the body is empty; send a job object such as {\"payload\": {\"x\": 1}}".into(),
        )),
    }
}

/// Parses one job object (`text` is its JSON), reporting faults at `index`.
pub fn parse_job(text: &str, index: usize) -> Result<JobSpec, BadJob> {
    let bad = |field: &str, reason: String| BadJob {
        index: Some(index),
        field: field.into(),
        reason,
    };
    if !text.trim_start().starts_with('{') {
        return Err(bad(
            "job",
            "a job must be a JSON object such as {\"payload\": {\"x\": 1}}".into(),
        ));
    }
    let job: JobIn<'_> = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if let Some(name) = quoted_after(&msg, "unknown field `") {
            bad(
                &name,
                format!("unknown field; a job has the fields {JOB_FIELDS}"),
            )
        } else if let Some(name) = quoted_after(&msg, "missing field `") {
            bad(
                &name,
                "missing: every job needs a payload (any JSON value)".into(),
            )
        } else if let Some(name) = quoted_after(&msg, "duplicate field `") {
            bad(&name, "given twice; give each field once".into())
        } else {
            bad("job", format!("not a valid job object: {msg}"))
        }
    })?;
    let id = match job.id {
        None => None,
        Some(raw) => {
            let s: String = serde_json::from_str(raw.get())
                .map_err(|_| bad("id", "must be a string such as \"order-17\"".into()))?;
            Some(JobId::from_client(&s).map_err(|e| bad("id", e))?)
        }
    };
    let queue = match job.queue {
        None => None,
        Some(raw) => {
            let s: String = serde_json::from_str(raw.get())
                .map_err(|_| bad("queue", "must be a string such as \"emails\"".into()))?;
            Some(QueueName::parse(&s).map_err(|e| bad("queue", e))?)
        }
    };
    let payload =
        Payload::from_json(job.payload.get().as_bytes()).map_err(|e| bad("payload", e))?;
    let max_attempts = match job.max_attempts {
        None => None,
        Some(raw) => Some(attempts(raw).map_err(|r| bad("max_attempts", r))?),
    };
    let timeout_ms = match job.timeout_ms {
        None => None,
        Some(raw) => Some(
            number::<u64>(raw, "a whole, non-negative number of milliseconds")
                .map_err(|r| bad("timeout_ms", r))?,
        ),
    };
    let delay_ms = match job.delay_ms {
        None => 0,
        Some(raw) => number::<u64>(raw, "a whole, non-negative number of milliseconds")
            .map_err(|r| bad("delay_ms", r))?,
    };
    let priority = match job.priority {
        None => 0,
        Some(raw) => number::<i32>(raw, "a whole number from -2147483648 to 2147483647")
            .map_err(|r| bad("priority", r))?,
    };
    Ok(JobSpec {
        id,
        queue,
        payload,
        priority,
        max_attempts,
        timeout_ms,
        delay_ms,
    })
}

/// Parses an NDJSON body (`application/x-ndjson`): one job object per
/// line; blank lines are skipped, and a fault's `index` counts jobs (not
/// lines).
pub fn parse_ndjson(bytes: &[u8]) -> Result<Vec<JobSpec>, BadJob> {
    let text = std::str::from_utf8(bytes).map_err(|e| BadJob {
        index: None,
        field: "body".into(),
        reason: format!("the body is not UTF-8 ({e}); send JSON"),
    })?;
    let jobs: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<&serde_json::value::RawValue>(line)
                .map_err(|e| BadJob {
                    index: Some(i),
                    field: "job".into(),
                    reason: format!("not valid JSON: {e}"),
                })
                .and_then(|raw| parse_job(raw.get(), i))
        })
        .collect::<Result<_, _>>()?;
    if jobs.is_empty() {
        return Err(BadJob {
            index: None,
            field: "body".into(),
            reason: "the body holds no job; send one JSON job object per line".into(),
        });
    }
    Ok(jobs)
}

/// Appends the JSON of one job as the API takes it (`beaver enqueue` sends
/// it): [`parse_job`] of it gives `s` back, and so does [`parse_ndjson`]
/// when the payload holds no line break.
pub fn job_json(s: &JobSpec, out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(id) = &s.id {
        out.extend_from_slice(b"\"id\":");
        let _ = serde_json::to_writer(&mut *out, id.as_str());
        out.push(b',');
    }
    if let Some(q) = &s.queue {
        out.extend_from_slice(b"\"queue\":");
        let _ = serde_json::to_writer(&mut *out, q.as_str());
        out.push(b',');
    }
    if let Some(n) = s.max_attempts {
        out.extend_from_slice(format!("\"max_attempts\":{n},").as_bytes());
    }
    if let Some(n) = s.timeout_ms {
        out.extend_from_slice(format!("\"timeout_ms\":{n},").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "\"delay_ms\":{},\"priority\":{},\"payload\":",
            s.delay_ms, s.priority
        )
        .as_bytes(),
    );
    out.extend_from_slice(s.payload.as_bytes());
    out.push(b'}');
}

/// A job's `max_attempts`: a count. The core's
/// [`beaver_core::UNLIMITED_ATTEMPTS`] (a job never given up, beanstalk
/// puts' default) is refused here, so that an HTTP client stays within
/// `attempts_max` as before.
fn attempts(raw: &RawValue) -> Result<u32, String> {
    const WHAT: &str = "a whole number of attempts such as 3 (the server's limit applies)";
    let n = number::<u32>(raw, WHAT)?;
    if n == beaver_core::UNLIMITED_ATTEMPTS {
        return Err(format!(
            "must be {WHAT}; {n} is too large (the most is {})",
            n - 1
        ));
    }
    Ok(n)
}

fn number<T: serde::de::DeserializeOwned + std::fmt::Display + Bounded>(
    raw: &RawValue,
    what: &str,
) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|_| {
        let text = raw.get().trim();
        let digits = text.strip_prefix('-').unwrap_or(text);
        let whole = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        match (whole, text.starts_with('-')) {
            // A whole number out of range is too large (or too small), not
            // "not a whole number".
            (true, false) => format!(
                "must be {what}; {} is too large (the most is {})",
                clip(text),
                T::MAX
            ),
            (true, true) if T::MIN_TEXT != "0" => {
                format!(
                    "must be {what}; {} is too small (the least is {})",
                    clip(text),
                    T::MIN_TEXT
                )
            }
            _ => format!("must be {what}, not {}", clip(text)),
        }
    })
}

/// The range of a number a job field takes, for messages.
trait Bounded: Sized {
    const MAX: Self;
    const MIN_TEXT: &'static str;
}

impl Bounded for u32 {
    const MAX: u32 = u32::MAX;
    const MIN_TEXT: &'static str = "0";
}

impl Bounded for u64 {
    const MAX: u64 = u64::MAX;
    const MIN_TEXT: &'static str = "0";
}

impl Bounded for i32 {
    const MAX: i32 = i32::MAX;
    const MIN_TEXT: &'static str = "-2147483648";
}

/// A value shown in an error message, cut so a huge value cannot flood it.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The text between `prefix` and the next backtick in `msg`, cut like any
/// value an error quotes (a field name is the client's to make as long as
/// the body).
fn quoted_after(msg: &str, prefix: &str) -> Option<String> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(clip(&rest[..rest.find('`')?]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_object_or_an_array() {
        let one = parse_body(br#"{"payload": {"x": 1}, "id": "a", "priority": -3}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id.as_ref().unwrap().as_str(), "a");
        assert_eq!(one[0].priority, -3);
        assert_eq!(one[0].payload.as_bytes(), br#"{"x": 1}"#);
        let many = parse_body(br#"[{"payload": 1}, {"payload": null, "queue": "q"}]"#).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].payload.as_bytes(), b"null");
    }

    #[test]
    fn unlimited_attempts_are_not_offered_over_http() {
        let most = parse_body(br#"{"payload": 1, "max_attempts": 4294967294}"#).unwrap();
        assert_eq!(most[0].max_attempts, Some(4_294_967_294));
        let e = parse_body(br#"{"payload": 1, "max_attempts": 4294967295}"#).unwrap_err();
        assert_eq!(e.field, "max_attempts");
        assert!(e.reason.contains("the most is 4294967294"), "{e}");
    }

    #[test]
    fn faults_name_the_field_and_index() {
        let e = parse_body(br#"[{"payload": 1}, {"payload": 1, "max_attempts": -1}]"#).unwrap_err();
        assert_eq!((e.index, e.field.as_str()), (Some(1), "max_attempts"));
        assert!(e.reason.contains("-1"), "{e}");
        let e = parse_body(br#"{"payload": 1, "max_attempts": "3"}"#).unwrap_err();
        assert!(
            e.reason.contains("a whole number of attempts such as 3")
                && !e.reason.contains("4294967295"),
            "{e}"
        );
        let e = parse_body(br#"{"payload": 1, "timeout_ms": "5s"}"#).unwrap_err();
        assert_eq!(e.field, "timeout_ms");
        // Whole numbers out of range are called too large, not "not whole".
        let e = parse_body(br#"{"payload": 1, "timeout_ms": 99999999999999999999}"#).unwrap_err();
        assert_eq!(e.field, "timeout_ms");
        assert!(
            e.reason.contains("is too large") && !e.reason.contains(", not"),
            "{e}"
        );
        let e = parse_body(br#"{"payload": 1, "max_attempts": 5000000000}"#).unwrap_err();
        assert!(
            e.reason.contains("is too large (the most is 4294967295)"),
            "{e}"
        );
        let e = parse_body(br#"{"payload": 1, "priority": -3000000000}"#).unwrap_err();
        assert!(e.reason.contains("is too small"), "{e}");
        let e = parse_body(br#"{"payload": 1, "timeout_ms": 1.5}"#).unwrap_err();
        assert!(
            e.reason.contains("whole") && e.reason.contains("not 1.5"),
            "{e}"
        );
        let e = parse_body(br#"{"payload": 1, "colour": "red"}"#).unwrap_err();
        assert_eq!(e.field, "colour");
        let e = parse_body(br#"{"id": "x"}"#).unwrap_err();
        assert_eq!(e.field, "payload");
        let e = parse_body(br#"{"payload": 1, "id": 7}"#).unwrap_err();
        assert_eq!(e.field, "id");
        let e = parse_body(br#"{"payload": 1, "id": "~7"}"#).unwrap_err();
        assert!(e.reason.contains("reserved"));
        let e = parse_body(br#"{"payload": 1, "id": "7"}"#).unwrap_err();
        assert_eq!(e.field, "id");
        assert!(
            e.reason
                .contains("digits only are beaver's own job numbers"),
            "{e}"
        );
        let e = parse_body(br#"[1]"#).unwrap_err();
        assert_eq!((e.index, e.field.as_str()), (Some(0), "job"));
        for body in [&b"{"[..], b"", b"42", b"[]", b"\xff"] {
            let e = parse_body(body).unwrap_err();
            assert_eq!((e.index, e.field.as_str()), (None, "body"), "{e}");
        }
    }

    #[test]
    fn a_huge_unknown_field_name_is_quoted_cut_short() {
        // Found by the job_body fuzz target: the name was echoed whole.
        for body in [
            format!(r#"{{"{}": 1, "payload": 1}}"#, "~".repeat(600)),
            format!(r#"{{"payload": 1, "{0}": 1, "{0}": 2}}"#, "k".repeat(600)),
        ] {
            let e = parse_body(body.as_bytes()).unwrap_err();
            assert!(e.field.len() <= 43 && e.field.ends_with("..."), "{e}");
            assert!(e.to_string().len() < 200, "{e}");
        }
    }
}
