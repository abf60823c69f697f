//! The external-worker routes as `beaver work` calls them, over one
//! keep-alive connection each (the benchmark's [`Conn`]): a long poll must
//! be dropped when the worker stops leasing, and dropping its connection
//! is what tells the server to withdraw it (the blocking client cannot be
//! cancelled).
//!
//! Nothing the server sends is trusted: a body that does not parse is an
//! error of the call, never a panic.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::bench::conn::Conn;
use crate::schema::{ErrorDoc, JobDoc};

/// How long any call may take beyond the long poll's own wait.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body the worker builds (100 errors of 4 KiB tails).
const BODY_BYTES_MAX: usize = 1 << 20;

/// Why a call got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The server could not be reached, the connection failed, it is busy
    /// or stopping, or it answered 5xx: try again later.
    Unreachable(String),
    /// The server refused the request itself (a 4xx other than
    /// `lease_lost`): trying again cannot help.
    Refused(u16, String),
    /// The lease is not current (409 `lease_lost`).
    LeaseLost(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(m) | CallError::LeaseLost(m) => f.write_str(m),
            CallError::Refused(s, m) => write!(f, "the server answered {s}: {m}"),
        }
    }
}

/// One lease granted. Its end is kept on the worker's clock (see
/// `schedule`), not from `lease_until_ms`: the hosts' clocks may differ.
#[derive(Debug, Deserialize)]
pub struct Grant {
    /// The lease id (a decimal string).
    pub lease_id: String,
    /// The job, with its payload.
    pub job: JobDoc,
}

#[derive(Deserialize)]
struct Grants {
    leases: Vec<Grant>,
}

/// The server's answer for one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// Done (for a heartbeat: renewed).
    Ok,
    /// The lease is not current.
    Lost(String),
    /// Refused for another reason.
    Refused(String),
}

#[derive(Deserialize)]
struct Items {
    results: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    lease_id: String,
    ok: bool,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    kind: String,
    message: String,
}

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The bearer token, if any.
    pub token: Option<String>,
}

impl Target {
    fn request(&self, path: &str, body: &[u8]) -> Vec<u8> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// One connection to the server; a failed call closes it and the next
/// opens a new one.
pub struct Api {
    target: Target,
    conn: Conn,
}

impl Api {
    /// A connection to `target`, opened at the first call.
    pub fn new(target: Target) -> Api {
        let conn = Conn::new(target.addr);
        Api { target, conn }
    }

    /// POSTs `body` to `path`; `Ok((status, body))` for any answer.
    async fn post(
        &mut self,
        path: &str,
        body: &[u8],
        within: Duration,
    ) -> Result<(u16, Vec<u8>), CallError> {
        if body.len() > BODY_BYTES_MAX {
            return Err(CallError::Refused(0, "request body too large".into()));
        }
        let req = self.target.request(path, body);
        let addr = self.target.addr;
        match tokio::time::timeout(within, self.conn.call(&req)).await {
            Ok(Ok(a)) => Ok((a.status, a.body.to_vec())),
            Ok(Err(e)) => Err(CallError::Unreachable(format!(
                "POST {path} to {addr} failed: {e}"
            ))),
            Err(_) => {
                // Half a response may be in flight: never reuse the stream.
                self.conn = Conn::new(addr);
                Err(CallError::Unreachable(format!(
                    "POST {path} to {addr}: no answer within {within:?}"
                )))
            }
        }
    }

    /// Leases up to `max` jobs of `queues`, waiting up to `wait_ms` for one.
    pub async fn lease(
        &mut self,
        queues: &[String],
        max: usize,
        wait_ms: u64,
        worker: &str,
    ) -> Result<Vec<Grant>, CallError> {
        let body = serde_json::json!({
            "queues": queues, "max": max, "wait_ms": wait_ms, "worker": worker,
        });
        let within = Duration::from_millis(wait_ms) + CALL_TIMEOUT;
        let (status, body) = self
            .post("/v1/leases", body.to_string().as_bytes(), within)
            .await?;
        if status != 200 {
            return Err(classify(status, &body));
        }
        serde_json::from_slice::<Grants>(&body)
            .map(|g| g.leases)
            .map_err(|e| CallError::Unreachable(format!("unreadable answer to a lease: {e}")))
    }

    /// Renews these leases (by each job's timeout).
    pub async fn heartbeat(&mut self, leases: &[String]) -> Result<Vec<ItemResult>, CallError> {
        let body = serde_json::json!({ "leases": leases });
        self.batch("/v1/leases/heartbeat", &body, leases).await
    }

    /// Completes these leases.
    pub async fn complete(&mut self, leases: &[String]) -> Result<Vec<ItemResult>, CallError> {
        let body = serde_json::json!({ "leases": leases });
        self.batch("/v1/leases/complete", &body, leases).await
    }

    /// Fails these leases, each with its error; the job's policy decides
    /// whether and when it runs again.
    pub async fn fail(&mut self, items: &[(String, String)]) -> Result<Vec<ItemResult>, CallError> {
        let leases: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
        let list: Vec<serde_json::Value> = items
            .iter()
            .map(|(l, e)| serde_json::json!({ "lease_id": l, "error": e }))
            .collect();
        let body = serde_json::json!({ "leases": list });
        self.batch("/v1/leases/fail", &body, &leases).await
    }

    /// One batch call; the answer must name the leases asked about, in order.
    async fn batch(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        leases: &[String],
    ) -> Result<Vec<ItemResult>, CallError> {
        let (status, answer) = self
            .post(path, body.to_string().as_bytes(), CALL_TIMEOUT)
            .await?;
        if status != 200 {
            return Err(classify(status, &answer));
        }
        let items = serde_json::from_slice::<Items>(&answer)
            .map_err(|e| CallError::Unreachable(format!("unreadable answer to {path}: {e}")))?;
        let named = items.results.len() == leases.len()
            && items
                .results
                .iter()
                .zip(leases)
                .all(|(i, l)| i.lease_id == *l);
        if !named {
            return Err(CallError::Unreachable(format!(
                "the answer to {path} does not name the leases asked about"
            )));
        }
        Ok(items.results.into_iter().map(item_result).collect())
    }
}

fn item_result(i: Item) -> ItemResult {
    if i.ok {
        return ItemResult::Ok;
    }
    match i.error {
        Some(e) if e.kind == "lease_lost" => ItemResult::Lost(e.message),
        Some(e) => ItemResult::Refused(format!("{}: {}", e.kind, e.message)),
        None => ItemResult::Refused("refused without a reason".into()),
    }
}

/// What a non-200 answer means for the worker.
pub fn classify(status: u16, body: &[u8]) -> CallError {
    let (kind, message) = match serde_json::from_slice::<ErrorDoc>(body) {
        Ok(d) => (d.error.kind, d.error.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    };
    match status {
        409 if kind == "lease_lost" => CallError::LeaseLost(message),
        429 | 503 | 500..=599 => {
            CallError::Unreachable(format!("the server answered {status}: {message}"))
        }
        _ => CallError::Refused(status, message),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_are_classified() {
        let lost = br#"{"error":{"kind":"lease_lost","message":"gone","index":null,"field":null,"retry_after_ms":null}}"#;
        assert_eq!(classify(409, lost), CallError::LeaseLost("gone".into()));
        assert!(matches!(
            classify(503, b"stopping"),
            CallError::Unreachable(_)
        ));
        assert!(matches!(classify(429, b""), CallError::Unreachable(_)));
        assert!(matches!(classify(401, b"no"), CallError::Refused(401, _)));
        assert!(matches!(classify(409, b"{}"), CallError::Refused(409, _)));
    }

    #[test]
    fn items_parse_and_requests_carry_the_token() {
        let items: Items = serde_json::from_str(
            r#"{"schema_version":1,"results":[{"lease_id":"1","ok":true,"lease_until_ms":5},
            {"lease_id":"2","ok":false,"lease_until_ms":null,"error":{"kind":"lease_lost","message":"m"}}]}"#,
        )
        .unwrap();
        let r: Vec<ItemResult> = items.results.into_iter().map(item_result).collect();
        assert_eq!(r, vec![ItemResult::Ok, ItemResult::Lost("m".into())]);
        let t = Target {
            addr: "127.0.0.1:1".parse().unwrap(),
            host: "h:1".into(),
            token: Some("s3".into()),
        };
        let req = String::from_utf8(t.request("/v1/leases", b"{}")).unwrap();
        assert!(
            req.starts_with("POST /v1/leases HTTP/1.1\r\nHost: h:1\r\n"),
            "{req}"
        );
        assert!(req.contains("Authorization: Bearer s3\r\n") && req.ends_with("\r\n\r\n{}"));
    }
}
