//! Driving the server: N keep-alive clients, one request in flight each,
//! taking requests from a shared counter until the workload's count is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use super::conn::Conn;

/// Busy answers (503) one workload may retry before it is called failed.
const BUSY_RETRIES_MAX: u64 = 100_000;

/// What one run of requests measured.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Requests answered 200.
    pub requests: u64,
    /// Wall time from the moment every client was connected to the last answer.
    pub secs: f64,
    /// Latency of each answered request (send to whole answer), sorted, in ns.
    pub latency_ns: Vec<u64>,
    /// 503 answers that were retried (2 ms later, on the same connection).
    pub busy: u64,
}

impl Load {
    /// (p50, p99, max) latency in ms, as a row shows them.
    pub fn latency_ms(&self) -> Option<(f64, f64, f64)> {
        Some((
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
        ))
    }

    /// The `q` quantile (0..=1) of latency in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return 0.0;
        }
        let i = ((self.latency_ns.len() - 1) as f64 * q).round() as usize;
        self.latency_ns[i.min(self.latency_ns.len() - 1)] as f64 / 1e6
    }
}

/// What one call of a [`Client`] came to.
pub enum Step {
    /// Answered: its latency counts.
    Done,
    /// Refused for now (busy): the same request is sent again.
    Retry,
}

/// One connection of a closed-loop load: opened before the clock starts,
/// then asked for request after request.
pub trait Client: Send + 'static {
    /// Connects (not timed).
    fn open(&mut self) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends request `i` and reads its whole answer.
    fn call(&mut self, i: u64) -> impl Future<Output = Result<Step, String>> + Send;
}

/// Runs `requests` requests from `clients` connections made by `connect`,
/// each taking the next request number from a shared counter until all
/// are sent; fails on the first error, or after `within`. Latency is of
/// each answered call (a retried one from its last send).
pub async fn drive_clients<C: Client>(
    clients: usize,
    requests: u64,
    within: Duration,
    mut connect: impl FnMut() -> C,
) -> Result<Load, String> {
    if clients == 0 {
        return Err("nothing to send".into());
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    let per_client = usize::try_from(requests / clients as u64 + 1).unwrap_or(0);
    for _ in 0..clients {
        let (next, start, mut client) = (next.clone(), start.clone(), connect());
        tasks.push(tokio::spawn(async move {
            let opened = client.open().await;
            // Always reach the barrier, or the others would wait forever.
            start.wait().await;
            opened?;
            let mut latency = Vec::with_capacity(per_client);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= requests {
                    break;
                }
                // Bounded: a client's retries are bounded by the client.
                loop {
                    let t = Instant::now();
                    if let Step::Done = client.call(i).await? {
                        latency.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                        break;
                    }
                }
            }
            Ok::<Vec<u64>, String>(latency)
        }));
    }
    start.wait().await;
    let t = Instant::now();
    let joined = tokio::time::timeout(within, async {
        let mut all = Vec::with_capacity(usize::try_from(requests).unwrap_or(0));
        let mut first_error = None;
        for task in tasks {
            match task.await {
                Ok(Ok(l)) => all.extend(l),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(format!("a client task failed: {e}"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(all),
        }
    })
    .await
    .map_err(|_| format!("the workload did not finish within {within:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    let mut latency_ns = joined?;
    latency_ns.sort_unstable();
    Ok(Load {
        requests: latency_ns.len() as u64,
        secs,
        latency_ns,
        busy: 0,
    })
}

/// An HTTP client of [`drive`]: request `i` is `pool[i % pool.len()]`.
struct Http {
    conn: Conn,
    addr: SocketAddr,
    pool: Arc<Vec<Vec<u8>>>,
    busy: Arc<AtomicU64>,
}

impl Client for Http {
    async fn open(&mut self) -> Result<(), String> {
        let addr = self.addr;
        self.conn
            .open()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }

    async fn call(&mut self, i: u64) -> Result<Step, String> {
        let (addr, n) = (self.addr, self.pool.len() as u64);
        let req = &self.pool[(i % n) as usize];
        let a = self
            .conn
            .call(req)
            .await
            .map_err(|e| format!("request to {addr} failed: {e}"))?;
        match a.status {
            200 => Ok(Step::Done),
            503 => {
                if self.busy.fetch_add(1, Relaxed) >= BUSY_RETRIES_MAX {
                    return Err(format!(
                        "the server answered 503 more than {BUSY_RETRIES_MAX} times: {}",
                        String::from_utf8_lossy(a.body).trim()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(Step::Retry)
            }
            s => Err(format!(
                "the server answered {s}: {}",
                String::from_utf8_lossy(a.body).trim()
            )),
        }
    }
}

/// Sends `requests` requests from `clients` connections; request `i` is
/// `pool[i % pool.len()]`. Fails on a connection error or an answer other
/// than 200 or 503, or after `within`.
pub async fn drive(
    addr: SocketAddr,
    clients: usize,
    requests: u64,
    pool: Arc<Vec<Vec<u8>>>,
    within: Duration,
) -> Result<Load, String> {
    if pool.is_empty() {
        return Err("nothing to send".into());
    }
    let busy = Arc::new(AtomicU64::new(0));
    let mut load = drive_clients(clients, requests, within, || Http {
        conn: Conn::new(addr),
        addr,
        pool: pool.clone(),
        busy: busy.clone(),
    })
    .await?;
    load.busy = busy.load(Relaxed);
    Ok(load)
}

/// A small deterministic generator for payload text (splitmix64): the
/// benchmark needs varied bytes, not secrecy.
pub struct Text(u64);

impl Text {
    /// Seeded.
    pub fn new(seed: u64) -> Text {
        Text(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` random letters and digits.
    pub fn word(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    /// A job object whose payload is a JSON string of 100 bytes (98
    /// random characters between the quotes).
    pub fn job(&mut self) -> String {
        format!("{{\"payload\":\"{}\"}}", self.word(98))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_are_100_bytes_of_json() {
        let mut t = Text::new(7);
        let job = t.job();
        let v: serde_json::Value = serde_json::from_str(&job).unwrap();
        assert_eq!(serde_json::to_string(&v["payload"]).unwrap().len(), 100);
        assert_ne!(job, t.job());
    }

    #[test]
    fn quantiles() {
        let l = Load {
            latency_ns: (1..=100).map(|i| i * 1_000_000).collect(),
            ..Load::default()
        };
        assert_eq!(l.quantile_ms(0.5), 51.0);
        assert_eq!(l.quantile_ms(0.99), 99.0);
        assert_eq!(l.quantile_ms(1.0), 100.0);
    }
}
