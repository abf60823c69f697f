//! A handler's stdout and stderr, line by line into the server's log, with
//! bounds on line length and rate.
//!
//! Each line is one `tracing` event of target [`OUTPUT_LOG_TARGET`] at
//! level INFO, with the job id, attempt, queue and stream as fields. Lines
//! longer than [`OUTPUT_LINE_BYTES_MAX`] are cut (the event says how many
//! bytes were left out); each attempt may log [`OUTPUT_LINES_BURST`] lines
//! at once and [`OUTPUT_LINES_PER_SEC`] a second after that, and all
//! attempts together [`OUTPUT_LINES_PER_SEC_TOTAL`] a second. Lines over a
//! rate are dropped and counted; the count is logged when the attempt ends.
//! Nothing a handler writes can block it: both pipes are always read.

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use beaver_core::{JobId, QueueName};
use tracing::{info, warn};

/// The `tracing` target of a handler's output lines (filter it with
/// `RUST_LOG`, e.g. `RUST_LOG=info,beaver::handler=off`).
pub const OUTPUT_LOG_TARGET: &str = "beaver::handler";
/// The longest line logged; the rest of a longer line is left out.
pub const OUTPUT_LINE_BYTES_MAX: usize = 4096;
/// Lines one attempt may log at once before its rate applies.
pub const OUTPUT_LINES_BURST: u32 = 1000;
/// Lines one attempt may log per second, past its burst.
pub const OUTPUT_LINES_PER_SEC: u32 = 100;
/// Lines all attempts together may log per second (and at once).
pub const OUTPUT_LINES_PER_SEC_TOTAL: u32 = 2000;

/// A token bucket: `burst` at once, refilled at `rate` a second.
#[derive(Debug)]
pub(super) struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(burst: u32, rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            rate: f64::from(rate),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + secs * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Every attempt's lines together.
static TOTAL: LazyLock<Mutex<Bucket>> = LazyLock::new(|| {
    Mutex::new(Bucket::new(
        OUTPUT_LINES_PER_SEC_TOTAL,
        OUTPUT_LINES_PER_SEC_TOTAL,
        Instant::now(),
    ))
});

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One attempt's output on its way to the log.
pub(super) struct OutputLog {
    id: JobId,
    attempt: u32,
    queue: Option<QueueName>,
    /// The line being read from each stream (at most the line limit).
    partial: [Vec<u8>; 2],
    /// Bytes of each stream's current line left out.
    cut: [u64; 2],
    bucket: Bucket,
    dropped: u64,
}

impl OutputLog {
    pub(super) fn new(id: JobId, attempt: u32, queue: Option<QueueName>) -> OutputLog {
        OutputLog {
            id,
            attempt,
            queue,
            partial: [Vec::new(), Vec::new()],
            cut: [0, 0],
            bucket: Bucket::new(OUTPUT_LINES_BURST, OUTPUT_LINES_PER_SEC, Instant::now()),
            dropped: 0,
        }
    }

    /// Takes a chunk read from `stream`, logging each line it completes.
    pub(super) fn push(&mut self, stream: Stream, mut bytes: &[u8]) {
        let s = stream as usize;
        while !bytes.is_empty() {
            let (piece, rest, ends) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            let room = OUTPUT_LINE_BYTES_MAX - self.partial[s].len();
            let kept = piece.len().min(room);
            self.partial[s].extend_from_slice(&piece[..kept]);
            self.cut[s] += (piece.len() - kept) as u64;
            if ends {
                self.line(stream);
            }
            bytes = rest;
        }
    }

    /// Logs the line gathered from `stream` (if the rates allow) and starts
    /// the next one.
    fn line(&mut self, stream: Stream) {
        let s = stream as usize;
        let bytes = std::mem::take(&mut self.partial[s]);
        let cut = std::mem::take(&mut self.cut[s]);
        let now = Instant::now();
        let allowed =
            self.bucket.take(now) && TOTAL.lock().unwrap_or_else(|e| e.into_inner()).take(now);
        if !allowed {
            self.dropped += 1;
            return;
        }
        let text = printable(&bytes);
        let queue = self.queue.as_ref().map_or("", |q| q.as_str());
        if cut > 0 {
            info!(target: OUTPUT_LOG_TARGET, job = %self.id, attempt = self.attempt, queue, stream = stream.name(), cut_bytes = cut, "{text}");
        } else {
            info!(target: OUTPUT_LOG_TARGET, job = %self.id, attempt = self.attempt, queue, stream = stream.name(), "{text}");
        }
    }
}

impl Drop for OutputLog {
    /// The attempt is over: a last line without its newline is logged, and
    /// so is the count of lines the rates left out.
    fn drop(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if !self.partial[stream as usize].is_empty() || self.cut[stream as usize] > 0 {
                self.line(stream);
            }
        }
        if self.dropped > 0 {
            warn!(
                target: OUTPUT_LOG_TARGET,
                job = %self.id,
                attempt = self.attempt,
                dropped_lines = self.dropped,
                "the handler wrote more lines than the log takes ({OUTPUT_LINES_BURST} at once, then {OUTPUT_LINES_PER_SEC}/s per attempt, {OUTPUT_LINES_PER_SEC_TOTAL}/s in all); these were left out"
            );
        }
    }
}

/// The line as text a terminal shows as is: invalid UTF-8 replaced,
/// a trailing carriage return dropped, control characters escaped.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, 2, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(
            b.take(t0 + Duration::from_millis(500)),
            "one token after 0.5 s at 2/s"
        );
        assert!(!b.take(t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            (0..10).filter(|_| b.take(later)).count(),
            3,
            "never more than the burst"
        );
    }

    #[test]
    fn lines_are_split_cut_and_escaped() {
        let id = JobId::parse("j").unwrap_or_else(|e| panic!("{e}"));
        let mut log = OutputLog::new(id, 1, None);
        log.push(Stream::Stdout, b"one\ntw");
        assert!(log.partial[0] == b"tw");
        log.push(Stream::Stdout, b"o\n");
        assert!(log.partial[0].is_empty());
        let long = vec![b'x'; OUTPUT_LINE_BYTES_MAX + 10];
        log.push(Stream::Stderr, &long);
        assert_eq!(log.partial[1].len(), OUTPUT_LINE_BYTES_MAX);
        assert_eq!(log.cut[1], 10);
        log.push(Stream::Stderr, b"\n");
        assert_eq!((log.partial[1].len(), log.cut[1]), (0, 0));
        assert_eq!(printable(b"a\x1b[31mred\r"), "a\\u{1b}[31mred");
        assert_eq!(printable(b"tab\there \xff"), "tab\there \u{fffd}");
    }
}
